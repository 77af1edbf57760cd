//! `winback report`: the I/O edge of the campaign report
//! ([`crate::stages::report`]). Reads a run's outputs through the catalog
//! (validate, features and score summaries, the simulation's frames, the
//! model version the list was made with and its evaluation) and writes
//! `<out>/report/` all or nothing: `index.html` and one CSV per chart.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tracing::info;

use crate::catalog::{self, Output};
use crate::config::Settings;
use crate::error::Result;
use crate::stages::report::{self as stage, ReportInputs};

use super::common::{catalog as run_catalog, stdout};

/// What the run knows about its own stages: why one was skipped, so that
/// the report says so instead of showing an earlier run's output.
#[derive(Debug, Default, Clone)]
pub struct RunNotes {
    /// Why this run did not simulate.
    pub skipped_simulate: Option<String>,
    /// Why this run did not score.
    pub skipped_score: Option<String>,
}

fn version_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}

/// `winback report`: writes `<out>/report/` and returns its path.
pub fn report(settings: &Settings, notes: &RunNotes, out: &mut dyn Write) -> Result<PathBuf> {
    let _progress = crate::progress::stage("report");
    let cat = run_catalog(settings);
    let json = |o: Output, f: &str| catalog::read_json_if_present::<Value>(&cat.output_file(o, f));
    let parquet = |o: Output, f: &str| catalog::read_parquet_if_present(&cat.output_file(o, f));
    let mut inp = ReportInputs {
        validate: json(Output::Validate, "report.json")?,
        features: json(Output::Features, "summary.json")?,
        economics: Some(settings.economics),
        budget: (settings.simulate.max_contacts, settings.simulate.max_spend),
        churn_horizon_days: Some(settings.features.churn_horizon_days),
        config_hash: settings.config_hash.clone(),
        code_version: env!("CARGO_PKG_VERSION").to_string(),
        ..Default::default()
    };
    match &notes.skipped_simulate {
        Some(why) => inp.why_no_simulate = Some(why.clone()),
        None => {
            inp.simulate = json(Output::Simulate, "summary.json")?;
            if inp.simulate.is_some() {
                inp.arms = parquet(Output::Simulate, "arm_summary.parquet")?;
                inp.targets = parquet(Output::Simulate, "target_list.parquet")?;
                inp.policies = parquet(Output::Simulate, "policy_evaluation.parquet")?;
            }
        }
    }
    // The model version the list was made with, else the newest.
    let simulated_with = inp
        .simulate
        .as_ref()
        .and_then(|s| s.get("model"))
        .and_then(Value::as_str)
        .map(PathBuf::from);
    let version = match simulated_with
        .as_deref()
        .and_then(|p| cat.existing_version(p))
    {
        Some(v) => Some(v),
        None => cat.model_version(None).ok(),
    };
    if let Some(dir) = &version {
        inp.model_version = Some(version_name(dir));
        inp.evaluation =
            catalog::read_json_if_present(&catalog::version_file(dir, "evaluation.json"))?;
        for kind in ["return", "churn", "second_lifetime"] {
            let model: Option<Value> = catalog::read_json_if_present(&catalog::version_file(
                dir,
                &format!("{kind}.json"),
            ))?;
            if let Some(p) = model.and_then(|m| m.get("provenance").cloned()) {
                inp.provenance.push((kind.to_string(), p));
            }
        }
    }
    match &notes.skipped_score {
        Some(why) => inp.why_no_scores = Some(why.clone()),
        None => {
            let summary = json(Output::Score, "summary.json")?;
            let scored_with = summary
                .as_ref()
                .and_then(|s| s.get("model"))
                .and_then(Value::as_str)
                .map(|p| version_name(Path::new(p)));
            let scored_as_of = summary
                .as_ref()
                .and_then(|s| s.get("as_of"))
                .and_then(Value::as_str)
                .map(str::to_string);
            let listed_as_of = inp
                .simulate
                .as_ref()
                .and_then(|s| s.get("as_of"))
                .and_then(Value::as_str)
                .map(str::to_string);
            if summary.is_none() {
                // Left to the stage's own message.
            } else if scored_with.is_some() && scored_with != inp.model_version {
                inp.why_no_scores = Some(format!(
                    "score/ was made with model {}, not {} that this report describes (rerun `winback score`)",
                    scored_with.unwrap_or_default(),
                    inp.model_version.clone().unwrap_or_default()
                ));
            } else if listed_as_of.is_some() && scored_as_of != listed_as_of {
                inp.why_no_scores = Some(format!(
                    "score/ is as of {}, the list as of {} (rerun `winback score`)",
                    scored_as_of.unwrap_or_default(),
                    listed_as_of.unwrap_or_default()
                ));
            } else {
                inp.churn = parquet(Output::Score, "churn_scores.parquet")?;
            }
        }
    }
    let report = stage::render(&inp)?;
    let staged = cat.stage(Output::Report)?;
    staged.write_text("index.html", &report.html)?;
    for (name, mut frame) in report.data {
        staged.write_csv(&name, &mut frame)?;
    }
    let written = staged.commit()?;
    info!(dir = %written.display(), "report written");
    writeln!(
        out,
        "report: {} ({} sections; open it in a browser)",
        catalog::version_file(&written, "index.html").display(),
        report.sections.len()
    )
    .map_err(stdout)?;
    Ok(written)
}
