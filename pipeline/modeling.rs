//! The `train` and `score` commands: read the features stage's output, fit
//! the models, store them as a numbered version under `<out>/models/`, and
//! apply a version to the subscribers active or lapsed at a date.

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use polars::prelude::*;
use serde::Serialize;
use tracing::{info, warn};

use crate::catalog::{self, StagedDir};
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::schema::{ARMS, col};
use crate::stages::features::{self, Inputs as FeatureInputs, Manifest, Unseen, f};
use crate::stages::train::{self, ModelArtifact};
use crate::stages::validate::Validated;

/// Model names, in the order they are trained and listed.
pub const MODELS: [&str; 3] = ["return", "churn", "second_lifetime"];

/// A model not fitted, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// Model.
    pub model: String,
    /// Why.
    pub reason: String,
}

/// What `train` did.
#[derive(Debug, Serialize)]
pub struct TrainSummary {
    /// The version directory written.
    pub version: PathBuf,
    /// Per model: chosen learner, candidates' holdout metrics.
    pub models: Vec<ModelSummary>,
    /// Models not fitted.
    pub skipped: Vec<Skipped>,
}

/// One trained model in the summary.
#[derive(Debug, Serialize)]
pub struct ModelSummary {
    /// Model.
    pub model: String,
    /// Kept learner.
    pub chosen: String,
    /// Training rows.
    pub training_rows: usize,
    /// Holdout from.
    pub holdout_from: String,
    /// Per candidate: learner, holdout evaluation.
    pub candidates: Vec<train::Candidate>,
    /// Return model: Qini per arm.
    pub uplift: Vec<(String, winback_models::uplift::Qini)>,
    /// Second lifetime: durations by leave reason.
    pub durations: Vec<train::DurationCheck>,
    /// Second lifetime: margin model holdout.
    pub margin: Option<std::collections::BTreeMap<String, f64>>,
}

/// Reads a Parquet file or a directory of parts.
pub fn read_parquet(path: &Path) -> Result<DataFrame> {
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(Error::io("read directory", path))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .collect();
        v.sort();
        v
    } else {
        vec![path.to_path_buf()]
    };
    if files.is_empty() {
        return Ok(DataFrame::empty());
    }
    let paths: Vec<PlRefPath> = files
        .iter()
        .map(|p| PlRefPath::from(p.to_string_lossy().as_ref()))
        .collect();
    LazyFrame::scan_parquet_files(paths.into_iter().collect(), ScanArgsParquet::default())
        .and_then(|lf| lf.collect())
        .map_err(Error::polars(format!("read {}", path.display())))
}

fn read_manifest(path: &Path) -> Result<Manifest> {
    let text = std::fs::read_to_string(path).map_err(Error::io("read", path))?;
    serde_json::from_str(&text).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// The versions under `dir`, oldest first (`v0001`, `v0002`, ...).
pub fn versions(dir: &Path) -> Vec<(u32, PathBuf)> {
    let mut v: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let n = name.strip_prefix('v')?.parse::<u32>().ok()?;
            e.path().is_dir().then(|| (n, e.path()))
        })
        .collect();
    v.sort();
    v
}

/// `winback train`: fits every model the features support.
pub fn train(settings: &Settings, out: &mut dyn Write) -> Result<TrainSummary> {
    let started = Instant::now();
    let fdir = settings.out_dir.join("features");
    if !fdir.join("manifest.json").exists() {
        return Err(Error::Setting {
            key: "train".into(),
            message: format!(
                "no features in {}: run `winback features` (or `winback run`) first",
                fdir.display()
            ),
        });
    }
    let manifest = read_manifest(&fdir.join("manifest.json"))?;
    let s = &settings.train;
    let hash = &settings.config_hash;
    let mut artifacts: Vec<ModelArtifact> = Vec::new();
    let mut skipped = Vec::new();
    let mut attempt = |name: &str, fit: &mut dyn FnMut() -> Result<ModelArtifact>| {
        let t = Instant::now();
        match fit() {
            Ok(a) => {
                info!(model = name, seconds = t.elapsed().as_secs_f64(), chosen = %a.chosen, "trained");
                artifacts.push(a);
                Ok(())
            }
            Err(Error::Fit { message, .. }) => {
                warn!(model = name, "skipped: {message}");
                skipped.push(Skipped {
                    model: name.into(),
                    reason: message,
                });
                Ok(())
            }
            Err(e) => Err(e),
        }
    };
    let offers = read_parquet(&fdir.join("offers.parquet"))?;
    attempt("return", &mut || {
        if offers.height() == 0 {
            skipped_reason(
                "return",
                "no win-back offers in the data (no winback_offers table, or it is empty)",
            )
        } else {
            train::fit_return(
                &offers,
                &manifest,
                settings.features.response_window_days,
                s,
                hash,
            )
        }
    })?;
    drop(offers);
    attempt("churn", &mut || {
        let snapshots = read_parquet(&fdir.join("churn_snapshots"))?;
        if snapshots.height() == 0 {
            skipped_reason(
                "churn",
                "no churn snapshots (no subscribers active at the snapshot dates)",
            )
        } else {
            train::fit_churn(
                &snapshots,
                &manifest,
                settings.features.churn_horizon_days,
                s,
                hash,
            )
        }
    })?;
    attempt("second_lifetime", &mut || {
        let second = read_parquet(&fdir.join("second_lifetime.parquet"))?;
        if second.height() == 0 {
            skipped_reason(
                "second_lifetime",
                "no returns in the data (no reactivations table, or it is empty)",
            )
        } else {
            let lapsed = read_parquet(&fdir.join("lapsed.parquet"))?;
            train::fit_second_lifetime(&second, &lapsed, &manifest, &settings.economics, s, hash)
        }
    })?;
    if artifacts.is_empty() {
        return Err(Error::Fit {
            model: "every".into(),
            message: format!(
                "nothing could be fitted: {}",
                skipped
                    .iter()
                    .map(|k| format!("{}: {}", k.model, k.reason))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        });
    }
    let models_dir = settings.out_dir.join("models");
    let next = versions(&models_dir)
        .last()
        .map(|(n, _)| n + 1)
        .unwrap_or(1);
    let staged = StagedDir::new(&models_dir.join(format!("v{next:04}")))?;
    let mut models = Vec::new();
    let mut effects = Vec::new();
    for a in &artifacts {
        catalog::write_json(&staged.path().join(format!("{}.json", a.model)), a)?;
        for e in &a.effects {
            effects.push((a.model.clone(), e.clone()));
        }
        models.push(ModelSummary {
            model: a.model.clone(),
            chosen: a.chosen.clone(),
            training_rows: a.provenance.training_rows,
            holdout_from: a.provenance.holdout_from.clone(),
            candidates: a.candidates.clone(),
            uplift: a.uplift.clone(),
            durations: a.durations.clone(),
            margin: a.margin.as_ref().map(|m| m.holdout.clone()),
        });
    }
    let mut summary = TrainSummary {
        version: models_dir.join(format!("v{next:04}")),
        models,
        skipped,
    };
    catalog::write_json(&staged.path().join("evaluation.json"), &summary)?;
    catalog::write_csv(
        &staged.path().join("effects.csv"),
        &mut effects_frame(&effects)?,
    )?;
    let text = render(&summary, &artifacts);
    catalog::write_atomic(&staged.path().join("summary.txt"), |f| {
        f.write_all(text.as_bytes())
            .map_err(Error::io("write", "summary.txt"))
    })?;
    summary.version = staged.commit()?;
    info!(seconds = started.elapsed().as_secs_f64(), "train done");
    write!(out, "{text}").map_err(Error::io("write", "stdout"))?;
    writeln!(out, "  written to {}", summary.version.display())
        .map_err(Error::io("write", "stdout"))?;
    Ok(summary)
}

fn skipped_reason(model: &str, reason: &str) -> Result<ModelArtifact> {
    Err(Error::Fit {
        model: model.into(),
        message: reason.into(),
    })
}

fn effects_frame(effects: &[(String, train::Effect)]) -> Result<DataFrame> {
    let opt = |g: fn(&train::Effect) -> Option<f64>| -> Vec<Option<f64>> {
        effects.iter().map(|(_, e)| g(e)).collect()
    };
    DataFrame::new(
        effects.len(),
        vec![
            Column::new(
                "model".into(),
                effects.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>(),
            ),
            Column::new(
                "term".into(),
                effects
                    .iter()
                    .map(|(_, e)| e.term.as_str())
                    .collect::<Vec<_>>(),
            ),
            Column::new("coefficient".into(), opt(|e| e.coefficient)),
            Column::new("odds_ratio".into(), opt(|e| e.odds_ratio)),
            Column::new("per_sd".into(), opt(|e| e.per_sd)),
            Column::new("importance".into(), opt(|e| e.importance)),
        ],
    )
    .map_err(Error::polars("effects table"))
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into())
}

/// The readable summary (stdout and `summary.txt`).
pub fn render(summary: &TrainSummary, artifacts: &[ModelArtifact]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "models trained (holdout = the latest rows in time)");
    for (m, a) in summary.models.iter().zip(artifacts) {
        let _ = writeln!(
            s,
            "\n{}: {} rows fitted, holdout from {}; kept {}",
            m.model, m.training_rows, m.holdout_from, m.chosen
        );
        let _ = writeln!(
            s,
            "  {:<9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9}",
            "learner", "rows", "ROC AUC", "PR AUC", "log loss", "Brier", "ECE", "top-10% lift"
        );
        for c in &m.candidates {
            let h = &c.holdout;
            let lift = h.gains.first().map(|d| d.lift);
            let _ = writeln!(
                s,
                "  {:<9} {:>8} {:>8} {:>8} {:>8.4} {:>8.4} {:>9.4} {:>9}",
                c.learner,
                h.rows,
                fmt_opt(h.roc_auc),
                fmt_opt(h.pr_auc),
                h.log_loss,
                h.brier,
                h.ece,
                fmt_opt(lift)
            );
        }
        if !m.uplift.is_empty() {
            let _ = writeln!(
                s,
                "  uplift over control (holdout): {:<9} {:>8} {:>8} {:>9} {:>8}",
                "arm", "observed", "± s.e.", "predicted", "Qini"
            );
            for (arm, q) in &m.uplift {
                let _ = writeln!(
                    s,
                    "  {:<30} {:<9} {:>8.3} {:>8.3} {:>9.3} {:>8.4}",
                    "",
                    arm,
                    q.observed_uplift,
                    q.observed_se,
                    q.predicted_uplift,
                    q.qini_coefficient
                );
            }
        }
        if !m.durations.is_empty() {
            let _ = writeln!(
                s,
                "  months retained within {} (holdout returns): {:<8} {:>7} {:>9} {:>9}",
                m.durations[0].months, "reason", "returns", "observed", "predicted"
            );
            for d in &m.durations {
                let _ = writeln!(
                    s,
                    "  {:<44} {:<8} {:>7} {:>9.2} {:>9.2}",
                    "", d.leave_reason, d.returns, d.observed, d.predicted
                );
            }
        }
        if let Some(mm) = &m.margin {
            let g = |k: &str| mm.get(k).copied().unwrap_or(f64::NAN);
            let _ = writeln!(
                s,
                "  monthly margin (holdout): observed {:.2}, predicted {:.2}, RMSE {:.2}, R² {:.3}",
                g("observed_mean"),
                g("predicted_mean"),
                g("rmse"),
                g("r2")
            );
        }
        // The logistic terms an analyst checks first: largest per-SD effects.
        let mut terms: Vec<&train::Effect> =
            a.effects.iter().filter(|e| e.per_sd.is_some()).collect();
        terms.sort_by(|x, y| {
            y.per_sd
                .unwrap_or(0.0)
                .abs()
                .total_cmp(&x.per_sd.unwrap_or(0.0).abs())
        });
        if !terms.is_empty() {
            let _ = writeln!(
                s,
                "  strongest logistic terms (odds ratio per unit; per SD):"
            );
            for e in terms.iter().take(10) {
                let _ = writeln!(
                    s,
                    "    {:<44} {:>9} {:>8}",
                    e.term,
                    fmt_opt(e.odds_ratio),
                    fmt_opt(e.per_sd)
                );
            }
        }
    }
    for k in &summary.skipped {
        let _ = writeln!(s, "\nskipped {}: {}", k.model, k.reason);
    }
    let _ = writeln!(s, "\nall terms: effects.csv; all metrics: evaluation.json");
    s
}

/// Loads the models of a version directory (those present).
pub fn load_version(dir: &Path) -> Result<Vec<ModelArtifact>> {
    if !dir.is_dir() {
        return Err(Error::Model {
            path: dir.to_path_buf(),
            message: "no such model directory".into(),
        });
    }
    let mut v = Vec::new();
    for name in MODELS {
        let path = dir.join(format!("{name}.json"));
        if !path.exists() {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(Error::io("read", &path))?;
        let a: ModelArtifact = serde_json::from_str(&text).map_err(|e| Error::Model {
            path: path.clone(),
            message: format!("not a winback model: {e}"),
        })?;
        if a.provenance.format_version != train::FORMAT_VERSION {
            return Err(Error::Model {
                path,
                message: format!(
                    "artifact format {} (this winback reads {})",
                    a.provenance.format_version,
                    train::FORMAT_VERSION
                ),
            });
        }
        v.push(a);
    }
    if v.is_empty() {
        return Err(Error::Model {
            path: dir.to_path_buf(),
            message: "holds no model (return.json, churn.json, second_lifetime.json)".into(),
        });
    }
    Ok(v)
}

/// `model`, or the newest version under `<out>/models/`.
pub fn model_dir(settings: &Settings, model: Option<&Path>) -> Result<PathBuf> {
    match model {
        Some(d) => Ok(d.to_path_buf()),
        None => versions(&settings.out_dir.join("models"))
            .pop()
            .map(|(_, p)| p)
            .ok_or_else(|| Error::Model {
                path: settings.out_dir.join("models"),
                message: "no trained model version here (run `winback train` first)".into(),
            }),
    }
}

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
    validated: Validated,
    model: Option<&Path>,
    out: &mut dyn Write,
) -> Result<ScoreSummary> {
    let started = Instant::now();
    let dir = model_dir(settings, model)?;
    let models = load_version(&dir)?;
    let inputs = FeatureInputs::new(validated.tables);
    let current = features::current(&inputs, &settings.features)?;
    info!(
        as_of = %current.as_of,
        active = current.active.height(),
        lapsed = current.lapsed.height(),
        seconds = started.elapsed().as_secs_f64(),
        "features for scoring"
    );
    for m in &models {
        m.check_manifest(&current.manifest, &dir.join(format!("{}.json", m.model)))?;
    }
    let staged = StagedDir::new(&settings.out_dir.join("scores"))?;
    let mut rows = Vec::new();
    let mut unseen: Vec<(String, usize)> = Vec::new();
    let mut note_unseen = |m: &ModelArtifact, u: Unseen| {
        for (name, n) in u {
            if n > 0 {
                unseen.push((format!("{}.{name}", m.model), n));
            }
        }
    };
    if let Some(m) = models.iter().find(|m| m.model == "churn") {
        let df = &current.active;
        let (mut p, u) = m.predict_arms(df, &[None])?;
        note_unseen(m, u);
        let p = p.pop().unwrap_or_default();
        let decile = risk_deciles(&p);
        let mut out_df = DataFrame::new(
            df.height(),
            vec![
                df.column(col::SUBSCRIBER_ID)
                    .map_err(Error::polars("score: subscriber_id"))?
                    .clone(),
                Column::new("p_churn".into(), p),
                Column::new("risk_decile".into(), decile),
                df.column(f::VALUE_TO_DATE)
                    .map_err(Error::polars("score: value_to_date"))?
                    .clone()
                    .with_name("realised_value".into()),
            ],
        )
        .map_err(Error::polars("score: churn scores"))?;
        rows.push(("churn_scores.parquet".to_string(), out_df.height()));
        catalog::write_parquet(&staged.path().join("churn_scores.parquet"), &mut out_df)?;
    } else {
        warn!("the model version has no churn model: churn_scores.parquet not written");
    }
    if let Some(m) = models.iter().find(|m| m.model == "return") {
        let df = &current.lapsed;
        let mut columns = vec![
            df.column(col::SUBSCRIBER_ID)
                .map_err(Error::polars("score: subscriber_id"))?
                .clone(),
            df.column(col::CHURNED_AT)
                .map_err(Error::polars("score: churned_at"))?
                .clone(),
            df.column(f::LEAVE_REASON)
                .map_err(Error::polars("score: leave_reason"))?
                .clone(),
            df.column(f::DAYS_SINCE_DEFECTION)
                .map_err(Error::polars("score: days_since_defection"))?
                .clone(),
        ];
        let arms: Vec<Option<&str>> = ARMS.iter().map(|a| Some(*a)).collect();
        let (p, u) = m.predict_arms(df, &arms)?;
        note_unseen(m, u);
        for (arm, p) in ARMS.iter().zip(p) {
            columns.push(Column::new(format!("p_return_{arm}").into(), p));
        }
        let mut out_df =
            DataFrame::new(df.height(), columns).map_err(Error::polars("score: return scores"))?;
        rows.push(("return_scores.parquet".to_string(), out_df.height()));
        catalog::write_parquet(&staged.path().join("return_scores.parquet"), &mut out_df)?;
    } else {
        warn!("the model version has no return model: return_scores.parquet not written");
    }
    let summary = ScoreSummary {
        as_of: current.as_of.to_string(),
        model: dir,
        rows,
        unseen_categories: unseen,
    };
    catalog::write_json(&staged.path().join("summary.json"), &summary)?;
    let written = staged.commit()?;
    info!(seconds = started.elapsed().as_secs_f64(), "score done");
    let w = |e| Error::io("write", "stdout")(e);
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

/// Decile of risk per row: 1 for the highest tenth of probabilities.
pub fn risk_deciles(p: &[f64]) -> Vec<u32> {
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|a, b| p[*b].total_cmp(&p[*a]));
    let mut d = vec![0u32; p.len()];
    for (rank, i) in order.into_iter().enumerate() {
        d[i] = (rank * 10 / p.len().max(1)) as u32 + 1;
    }
    d
}

/// `rows` rows made of `df`'s rows repeated in order.
pub fn repeat_to(df: &DataFrame, rows: usize) -> Result<DataFrame> {
    if df.height() == 0 {
        return Err(Error::Setting {
            key: "bench".into(),
            message: "no input rows to repeat".into(),
        });
    }
    let mut out = df.clone();
    while out.height() < rows {
        let take = (rows - out.height()).min(out.height());
        out.vstack_mut_owned(out.head(Some(take)))
            .map_err(Error::polars("bench: repeat rows"))?;
    }
    out.rechunk_mut_par();
    Ok(out.head(Some(rows)))
}

/// `winback bench`: times one task at `rows` rows and prints the figures.
pub fn bench(
    settings: &Settings,
    task: crate::cli::BenchTask,
    rows: usize,
    out: &mut dyn Write,
) -> Result<()> {
    let fdir = settings.out_dir.join("features");
    let w = |e| Error::io("write", "stdout")(e);
    match task {
        crate::cli::BenchTask::Simulate => {
            crate::simulation::bench(settings, rows, out)?;
        }
        crate::cli::BenchTask::TrainReturn => {
            let manifest = read_manifest(&fdir.join("manifest.json"))?;
            let offers = read_parquet(&fdir.join("offers.parquet"))?;
            let offers = repeat_to(&offers, rows)?;
            let t = Instant::now();
            let a = train::fit_return(
                &offers,
                &manifest,
                settings.features.response_window_days,
                &settings.train,
                &settings.config_hash,
            )?;
            let secs = t.elapsed().as_secs_f64();
            writeln!(
                out,
                "train-return: {} offers ({} fitted, {} held out), {} design columns: {secs:.1} s; kept {}",
                offers.height(),
                a.provenance.training_rows,
                a.holdout.rows,
                a.layout.names().len(),
                a.chosen
            )
            .map_err(w)?;
        }
        crate::cli::BenchTask::Score => {
            let models = load_version(&model_dir(settings, None)?)?;
            let active = read_parquet(&fdir.join("active.parquet"))?;
            let mut active = repeat_to(&active, rows)?;
            // The return model reads the leave reason and the days since
            // defection: give the repeated rows some.
            active
                .with_column(Column::new(
                    f::LEAVE_REASON.into(),
                    (0..rows)
                        .map(|i| crate::schema::LEAVE_REASONS[i % 5])
                        .collect::<Vec<_>>(),
                ))
                .map_err(Error::polars("bench"))?;
            active
                .with_column(Column::new(
                    f::DAYS_SINCE_DEFECTION.into(),
                    (0..rows).map(|i| (i % 120) as i32).collect::<Vec<_>>(),
                ))
                .map_err(Error::polars("bench"))?;
            for m in &models {
                if m.model == "second_lifetime" {
                    continue;
                }
                let t = Instant::now();
                let arms: Vec<Option<&str>> = if m.model == "return" {
                    ARMS.iter().map(|a| Some(*a)).collect()
                } else {
                    vec![None]
                };
                let n: usize = m.predict_arms(&active, &arms)?.0.iter().map(Vec::len).sum();
                let secs = t.elapsed().as_secs_f64();
                writeln!(
                    out,
                    "score {} ({}): {} rows x {} arm(s) = {n} predictions: {secs:.1} s ({:.0} rows/s)",
                    m.model,
                    m.chosen,
                    rows,
                    arms.len(),
                    n as f64 / secs
                )
                .map_err(w)?;
            }
        }
    }
    Ok(())
}
