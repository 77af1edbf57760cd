//! `winback score`: a model version applied to the subscribers active and
//! lapsed at the as-of date; `<out>/score/` written all or nothing.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use polars::prelude::LazyFrame;
use serde::Serialize;
use tracing::info;

use crate::catalog::{self, Output};
use crate::config::Settings;
use crate::error::Result;
use crate::schema::Table;
use crate::stages::features::{self as feature_stage, Current, Inputs};
use crate::stages::score as stage;

use super::common::{catalog as run_catalog, dates, stdout};

/// What `score` wrote.
#[derive(Debug, Serialize)]
pub struct ScoreSummary {
    /// As-of date.
    pub as_of: String,
    /// Model version used.
    pub model: PathBuf,
    /// Rows per output.
    pub rows: Vec<(String, usize)>,
    /// Values null or not seen in training, per model and feature (scored as `other`).
    pub unseen_categories: Vec<(String, usize)>,
}

/// `winback score`: applies a model version to the subscribers active and
/// lapsed at the as-of date.
pub fn score(
    settings: &Settings,
    tables: BTreeMap<Table, LazyFrame>,
    model: Option<&Path>,
    out: &mut dyn Write,
) -> Result<ScoreSummary> {
    let _progress = crate::progress::stage("score");
    let started = Instant::now();
    let inputs = Inputs::new(tables);
    let current = current_features(settings, &inputs)?;
    score_current(settings, &current, model, started, out)
}

/// The features as of the configured date of the subscribers active and
/// lapsed then, which `score` and `simulate` both use (`run` takes them
/// from the features stage's rows, [`crate::stages::features::Features::current`]).
pub(crate) fn current_features(settings: &Settings, inputs: &Inputs) -> Result<Current> {
    let started = Instant::now();
    let current = feature_stage::current(inputs, &settings.features, dates(inputs, settings)?)?;
    info!(
        as_of = %current.as_of,
        active = current.active.height(),
        lapsed = current.lapsed.height(),
        seconds = started.elapsed().as_secs_f64(),
        "features for scoring"
    );
    Ok(current)
}

/// `winback score` on features already built (timed from `started`).
pub(crate) fn score_current(
    settings: &Settings,
    current: &Current,
    model: Option<&Path>,
    started: Instant,
    out: &mut dyn Write,
) -> Result<ScoreSummary> {
    let cat = run_catalog(settings);
    let dir = cat.model_version(model)?;
    let models = {
        let _span = tracing::debug_span!("load models").entered();
        catalog::load_models(&dir)?
    };
    for m in models.models() {
        m.check_manifest(&current.manifest, &catalog::model_file(&dir, m.model))?;
    }
    let scores = {
        let _span = tracing::debug_span!("apply models").entered();
        stage::score(current, &models)?
    };
    let _span = tracing::debug_span!("write scores").entered();
    let staged = cat.stage(Output::Score)?;
    let mut rows = Vec::new();
    for (name, df) in [
        ("churn_scores", scores.churn),
        ("return_scores", scores.returns),
    ] {
        if let Some(mut df) = df {
            rows.push((format!("{name}.parquet"), df.height()));
            staged.write_parquet(name, &mut df)?;
        }
    }
    let summary = ScoreSummary {
        as_of: current.as_of.to_string(),
        model: dir,
        rows,
        unseen_categories: scores.unseen,
    };
    staged.write_json("summary", &summary)?;
    let written = staged.commit()?;
    info!(seconds = started.elapsed().as_secs_f64(), "score done");
    let w = stdout;
    writeln!(
        out,
        "scored as of {} with {}",
        summary.as_of,
        summary.model.display()
    )
    .map_err(w)?;
    for (name, n) in &summary.rows {
        writeln!(out, "  {name:<24} {n:>12} rows").map_err(w)?;
    }
    for (name, n) in &summary.unseen_categories {
        writeln!(
            out,
            "  {n} values of {name} null or not seen in training: scored as `other`"
        )
        .map_err(w)?;
    }
    writeln!(out, "  written to {}", written.display()).map_err(w)?;
    Ok(summary)
}
