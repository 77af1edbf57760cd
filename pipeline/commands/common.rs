//! What the commands share: loading settings, the run's catalog, the
//! as-of date resolved once, stdout errors and money formatting.

use crate::catalog::Catalog;
use crate::config::{self as settings_layer, Overrides, Settings};
use crate::error::{Error, Result};
use crate::stages::features::{self as feature_stage, Dates, Inputs};

/// The config file (or the defaults) merged with the flags.
pub(crate) fn settings(config: Option<&std::path::Path>, overrides: Overrides) -> Result<Settings> {
    let raw = match config {
        Some(p) => settings_layer::load(p)?,
        None => settings_layer::RawConfig::default(),
    };
    settings_layer::resolve(config, raw, overrides)
}

/// The run's catalog.
pub(crate) fn catalog(settings: &Settings) -> Catalog {
    Catalog::new(&settings.data_dir, &settings.out_dir)
        .with_metadata(settings.parquet_metadata.clone())
}

/// The dates a run is anchored on, resolved once: the data's end (the
/// `features.data_end` setting or `--data-end`, else what the tables
/// record) and the as-of date (the flag's or the config's, else the data's
/// end).
pub(crate) fn dates(inputs: &Inputs, settings: &Settings) -> Result<Dates> {
    let (data_end, data_end_set_by, data_end_notes) = match settings.data_end {
        Some(d) => (d, "features.data_end".to_string(), Vec::new()),
        None => {
            let e = feature_stage::data_end(inputs, settings.features.churn_horizon_days)?;
            for note in &e.notes {
                tracing::warn!("the data's end: {note}");
            }
            (e.date, e.set_by, e.notes)
        }
    };
    Ok(Dates {
        as_of: settings.as_of.unwrap_or(data_end),
        data_end,
        data_end_set_by,
        data_end_notes,
    })
}

/// Maps a failed write to stdout.
pub(crate) fn stdout(e: std::io::Error) -> Error {
    Error::io("write", "stdout")(e)
}

/// A money amount with thousands separators and no decimals.
pub(crate) fn money(v: f64) -> String {
    let neg = v < 0.0;
    let digits = format!("{:.0}", v.abs());
    let mut s = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            s.push(',');
        }
        s.push(c);
    }
    if neg { format!("-{s}") } else { s }
}
