//! `winback run`: every stage from one config, generating the demo sample
//! first when the config asks for it and the input directory is absent.

use std::io::Write;

use tracing::info;

use crate::cli::GenerateArgs;
use crate::config::Settings;
use crate::error::Result;
use crate::generate::GenerateOptions;

use super::common::catalog;
use super::{features, generate, simulate, train, validate};

/// `winback run`: every stage that exists, from one config.
pub fn run(settings: &Settings, out: &mut dyn Write) -> Result<()> {
    if let Some(demo) = &settings.demo
        && !catalog(settings).data_present()
    {
        info!(dir = %settings.data_dir.display(), "input directory absent: generating the demo sample");
        let args = GenerateArgs {
            subscribers: demo.subscribers,
            seed: demo.seed,
            out: settings.data_dir.clone(),
            start: GenerateOptions::default().start,
            months: GenerateOptions::default().months,
            chunk_size: GenerateOptions::default().chunk_size,
            config: None,
        };
        generate::generate_with(&args, Some(settings.economics), out)?;
    }
    let validated = validate::validate(settings, out)?;
    let tables = validated.tables.clone();
    features::features(settings, validated, out)?;
    train::train(settings, out)?;
    simulate::simulate(settings, tables, None, out)?;
    Ok(())
}
