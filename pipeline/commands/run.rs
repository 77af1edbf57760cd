//! `winback run`: every stage from one config, generating the demo sample
//! first when the config asks for it and the input directory is absent:
//! validate, features, train, score, simulate and the report. A model
//! version without the return or second-lifetime model (data with no
//! win-back offers, or no returns) skips the simulation, says why, and the
//! report's sections say it too.

use std::io::Write;
use std::time::Instant;

use serde::Serialize;
use tracing::info;

use crate::cli::GenerateArgs;
use crate::config::Settings;
use crate::error::Result;
use crate::generate::GenerateOptions;

use crate::artifact::ModelKind;
use crate::catalog::{FeatureSet, has_model, peak_rss_mib};

use super::common::{catalog, stdout};
use super::report::RunNotes;
use super::{features, generate, models, report, score, simulate, train, validate};

/// One stage of a run: wall seconds and the process's peak memory so far.
#[derive(Debug, Serialize)]
pub struct StageTiming {
    /// Stage.
    pub stage: &'static str,
    /// Wall seconds.
    pub seconds: f64,
    /// Peak resident memory of the process when the stage ended (MiB).
    pub peak_rss_mib_so_far: Option<f64>,
}

/// `<out>/timings.json`: what a run cost, stage by stage.
#[derive(Debug, Serialize)]
pub struct Timings {
    /// The stages in order.
    pub stages: Vec<StageTiming>,
    /// Wall seconds of the whole run.
    pub total_seconds: f64,
    /// Peak resident memory of the process (MiB).
    pub peak_rss_mib: Option<f64>,
}

/// Times the stages of a run.
struct Clock {
    started: Instant,
    last: Instant,
    stages: Vec<StageTiming>,
}

impl Clock {
    fn new() -> Self {
        let now = Instant::now();
        Clock {
            started: now,
            last: now,
            stages: Vec::new(),
        }
    }

    /// Ends `stage` now.
    fn lap(&mut self, stage: &'static str) {
        let now = Instant::now();
        let t = StageTiming {
            stage,
            seconds: (now - self.last).as_secs_f64(),
            peak_rss_mib_so_far: peak_rss_mib(),
        };
        info!(
            stage,
            seconds = t.seconds,
            peak_rss_mib = t.peak_rss_mib_so_far,
            "stage done"
        );
        self.stages.push(t);
        self.last = now;
    }

    fn finish(self) -> Timings {
        Timings {
            stages: self.stages,
            total_seconds: self.started.elapsed().as_secs_f64(),
            peak_rss_mib: peak_rss_mib(),
        }
    }
}

/// `winback run`: every stage that exists, from one config; ends by
/// writing `<out>/timings.json` and printing it.
pub fn run(settings: &Settings, out: &mut dyn Write) -> Result<()> {
    let mut clock = Clock::new();
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
        clock.lap("generate");
    }
    // One job at a time per output directory (a nightly run or another
    // `run`); exit code 5 when another holds it.
    let _lock = catalog(settings).lock("run", false)?;
    let validated = validate::validate(settings, out)?;
    clock.lap("validate");
    let tables = validated.tables.clone();
    // The features as of the date for scoring and the simulation are
    // taken from the features stage's active and lapsed rows (what `score`
    // builds from the inputs), read back after training.
    let built = features::features(settings, validated, out)?;
    let (as_of, data_end) = (built.as_of, built.data_end);
    drop(built);
    clock.lap("features");
    let trained = train::train(settings, out)?;
    models::after_training(settings, &trained.version, out)?;
    clock.lap("train");
    let version = catalog(settings).model_version(None)?;
    let scoring_started = std::time::Instant::now();
    let inputs = crate::stages::features::Inputs::new(tables);
    let current = {
        let cat = catalog(settings);
        crate::stages::features::current_of(
            cat.read_features(FeatureSet::Active)?,
            &cat.read_features(FeatureSet::Lapsed)?,
            as_of,
            data_end,
            &settings.features,
        )?
    };
    {
        let _progress = crate::progress::stage("score");
        score::score_current(settings, &current, None, scoring_started, out)?;
    }
    clock.lap("score");
    let mut notes = RunNotes::default();
    let absent: Vec<&str> = [ModelKind::Return, ModelKind::SecondLifetime]
        .into_iter()
        .filter(|k| !has_model(&version, *k))
        .map(|k| k.name())
        .collect();
    if absent.is_empty() {
        simulate::simulate_current(settings, &inputs, &current, None, &catalog(settings), out)?;
        clock.lap("simulate");
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
    clock.lap("report");
    let timings = clock.finish();
    catalog(settings).write_timings(&timings)?;
    writeln!(out, "\nstage        seconds  peak MiB so far").map_err(stdout)?;
    for t in &timings.stages {
        writeln!(
            out,
            "{:<10} {:>9.1}  {:>15}",
            t.stage,
            t.seconds,
            t.peak_rss_mib_so_far
                .map(|m| format!("{m:.0}"))
                .unwrap_or_else(|| "-".into())
        )
        .map_err(stdout)?;
    }
    writeln!(
        out,
        "total      {:>9.1}  (timings.json)",
        timings.total_seconds
    )
    .map_err(stdout)?;
    Ok(())
}
