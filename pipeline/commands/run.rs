//! `winback run`: every stage from one config, generating the demo sample
//! first when the config asks for it and the input directory is absent:
//! validate, features, train, score, simulate and the report. A model
//! version without the return or second-lifetime model (data with no
//! win-back offers, or no returns) skips the simulation, says why, and the
//! report's sections say it too.

use std::io::Write;

use tracing::info;

use crate::cli::GenerateArgs;
use crate::config::Settings;
use crate::error::Result;
use crate::generate::GenerateOptions;

use crate::artifact::ModelKind;
use crate::catalog::has_model;

use super::common::{catalog, stdout};
use super::report::RunNotes;
use super::{features, generate, models, report, score, simulate, train, validate};

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
            known_on: None,
        };
        generate::generate_with(&args, Some(settings.economics), out)?;
    }
    // One job at a time per output directory (a nightly run or another
    // `run`); exit code 5 when another holds it.
    let _lock = catalog(settings).lock("run", false)?;
    let validated = validate::validate(settings, out)?;
    let tables = validated.tables.clone();
    features::features(settings, validated, out)?;
    let trained = train::train(settings, out)?;
    models::after_training(settings, &trained.version, out)?;
    let version = catalog(settings).model_version(None)?;
    score::score(settings, tables.clone(), None, out)?;
    let mut notes = RunNotes::default();
    let absent: Vec<&str> = [ModelKind::Return, ModelKind::SecondLifetime]
        .into_iter()
        .filter(|k| !has_model(&version, *k))
        .map(|k| k.name())
        .collect();
    if absent.is_empty() {
        simulate::simulate(settings, tables, None, out)?;
    } else {
        let why = format!(
            "model version {} has no {} model (the evaluation's `skipped` list says why: the data holds no win-back offers or no returns to learn from), which the simulation needs",
            version.display(),
            absent.join(" / ")
        );
        writeln!(out, "simulate skipped: {why}").map_err(stdout)?;
        notes.skipped_simulate = Some(why);
    }
    report::report(settings, &notes, out)?;
    Ok(())
}
