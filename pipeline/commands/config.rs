//! `winback config`: the resolved settings (config file merged with the
//! flags) as TOML.

use std::io::Write;

use crate::config::Settings;
use crate::error::{Error, Result};

use super::common::stdout;

/// Prints the resolved settings.
pub fn print(settings: &Settings, out: &mut dyn Write) -> Result<()> {
    let text = toml::to_string_pretty(settings).map_err(|e| Error::Setting {
        key: "-".into(),
        message: e.to_string(),
    })?;
    write!(out, "{text}").map_err(stdout)
}
