//! `winback train`: reads the features stage's output, fits every model
//! the data supports, and writes them as a new version under
//! `<out>/models/` with `evaluation.json`, `effects.csv` and
//! `summary.txt`.

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use polars::prelude::*;
use serde::Serialize;
use tracing::{info, warn};

use crate::artifact::evaluation::{Candidate, DurationCheck, Effect};
use crate::artifact::split::Split;
use crate::artifact::{
    ChurnModel, FitRole, Model, ModelKind, ModelSet, ReturnModel, SecondLifetimeModel,
};
use crate::catalog::{self, FeatureSet};
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::stages::drift;
use crate::stages::features::{Encoding, Manifest, f};
use crate::stages::simulate::policy::candidate_values;
use crate::stages::train::{self as stage, Stamp};

use super::common::{catalog as run_catalog, stdout};

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
    /// Notes on the settings (the past offers' terms).
    pub notes: Vec<String>,
}

/// One trained model in the summary.
#[derive(Debug, Serialize)]
pub struct ModelSummary {
    /// Model.
    pub model: String,
    /// Kept learner.
    pub chosen: String,
    /// Rows the evaluated fit was trained on (before the holdout).
    pub training_rows: usize,
    /// What is stored for scoring: the evaluated fit, or a refit on every
    /// row (whose figures would be in sample, so none are reported).
    pub stored: String,
    /// How the rows were split into training and holdout.
    pub split: Split,
    /// Per candidate: learner, holdout evaluation.
    pub candidates: Vec<Candidate>,
    /// Return model: how the learner was chosen among the candidates.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub choice: String,
    /// Return model: Qini per arm.
    pub uplift: Vec<(String, winback_models::uplift::Qini)>,
    /// Second lifetime: durations by leave reason.
    pub durations: Vec<DurationCheck>,
    /// Second lifetime: margin model holdout.
    pub margin: Option<std::collections::BTreeMap<String, f64>>,
}

/// The time now, UTC, RFC 3339 (the stored models' `trained_at`).
fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// `winback train`: fits every model the features support.
pub fn train(settings: &Settings, out: &mut dyn Write) -> Result<TrainSummary> {
    let _progress = crate::progress::stage("train");
    let started = Instant::now();
    let cat = run_catalog(settings);
    if !cat.features_present() {
        return Err(Error::Setting {
            key: "train".into(),
            message: format!(
                "no features in {}: run `winback features` (or `winback run`) first",
                cat.output(catalog::Output::Features).display()
            ),
        });
    }
    let manifest = cat.read_manifest()?;
    let stamp = Stamp {
        config_hash: settings.config_hash.clone(),
        trained_at: now_utc(),
    };
    let mut set = ModelSet::default();
    let mut skipped = Vec::new();
    // A model the data cannot support is skipped with its reason; any
    // other error ends the run.
    let mut attempt = |kind: ModelKind, fit: Result<()>| -> Result<()> {
        match fit {
            Ok(()) => Ok(()),
            Err(Error::Fit { message, .. }) => {
                warn!(model = kind.name(), "skipped: {message}");
                skipped.push(Skipped {
                    model: kind.name().into(),
                    reason: message,
                });
                Ok(())
            }
            Err(e) => Err(e),
        }
    };
    // The churn model needs nothing of the others: it is fitted on a
    // thread of its own while this one fits the return model's candidates
    // and the second lifetime, which the return model's choice waits for.
    // The two chains' serial steps (reading, designs, the trees' rounds)
    // then share the cores. Each fit is the same either way: the parallel
    // sums are added in a fixed order, whatever the threads.
    //
    // The churn chain runs its parallel loops on a pool of its own: on the
    // one global pool, the other chain's loops (a prediction's, say) wait
    // until a worker finds no task of the churn trees' own left, which can
    // be most of their fit (one prediction of 116,356 rows took 30.2 s
    // there against 0.3 s). Two pools leave the sharing of the cores to
    // the operating system.
    let (churn, (return_fit, second_fit, choice)) = std::thread::scope(|scope| {
        let churn = scope.spawn(|| {
            let fit = || churn_model(&cat, &manifest, settings, &stamp);
            match rayon::ThreadPoolBuilder::new()
                .num_threads(rayon::current_num_threads())
                .thread_name(|i| format!("churn-{i}"))
                .build()
            {
                Ok(pool) => pool.install(fit),
                Err(e) => {
                    tracing::debug!("churn model on the global pool: {e}");
                    fit()
                }
            }
        });
        let others = return_and_second(&cat, &manifest, settings, &stamp);
        let churn = churn
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        others.map(|o| (churn, o))
    })?;
    let (churn_fit, drift_reference) = churn?;
    // Recorded in the models' order, as when they were fitted one by one.
    attempt(ModelKind::Return, return_fit.map(|_| ()))?;
    attempt(
        ModelKind::Churn,
        churn_fit.map(|m| {
            set.churn = Some(m);
        }),
    )?;
    attempt(
        ModelKind::SecondLifetime,
        second_fit.map(|m| {
            set.second_lifetime = Some(m);
        }),
    )?;
    if let Some(fit) = choice {
        attempt(
            ModelKind::Return,
            fit.map(|m| {
                set.return_model = Some(m);
            }),
        )?;
    }
    if set.is_empty() {
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
    let staged = cat.stage_model_version()?;
    catalog::write_models(&staged, &set)?;
    let mut models = Vec::new();
    let mut effects = Vec::new();
    for a in set.models() {
        for (role, e) in a.effects_by_fit() {
            effects.push((a.model.name().to_string(), role, e.clone()));
        }
        let evaluated = a.as_evaluated();
        models.push(ModelSummary {
            model: a.model.name().into(),
            chosen: a.chosen.clone(),
            training_rows: evaluated.provenance.training_rows,
            stored: match &a.evaluated {
                None => "the evaluated fit".into(),
                Some(_) => format!(
                    "refitted on every row ({} rows, the holdout's included): in sample; the figures here are the evaluated fit's",
                    a.provenance.training_rows
                ),
            },
            split: a.provenance.split.clone(),
            candidates: a.candidates.clone(),
            choice: match (a.model, &set.return_model) {
                (ModelKind::Return, Some(r)) => r.choice.clone(),
                _ => String::new(),
            },
            uplift: match (a.model, &set.return_model) {
                (ModelKind::Return, Some(r)) => r.uplift.clone(),
                _ => Vec::new(),
            },
            durations: match (a.model, &set.second_lifetime) {
                (ModelKind::SecondLifetime, Some(m)) => m.durations.clone(),
                _ => Vec::new(),
            },
            margin: match (a.model, &set.second_lifetime) {
                (ModelKind::SecondLifetime, Some(m)) => Some(m.margin.holdout.clone()),
                _ => None,
            },
        });
    }
    let mut summary = TrainSummary {
        version: staged.target().to_path_buf(),
        models,
        skipped,
        notes: match (&set.second_lifetime, &settings.history_note) {
            (Some(_), Some(note)) => vec![note.clone()],
            _ => Vec::new(),
        },
    };
    staged.write_json("evaluation", &summary)?;
    if let Some(r) = &drift_reference {
        staged.write_json("drift_reference", r)?;
    }
    staged.write_csv("effects", &mut effects_frame(&effects)?)?;
    let text = render(&summary, &set.models());
    staged.write_text("summary.txt", &text)?;
    summary.version = staged.commit()?;
    info!(seconds = started.elapsed().as_secs_f64(), "train done");
    write!(out, "{text}").map_err(stdout)?;
    writeln!(out, "  written to {}", summary.version.display()).map_err(stdout)?;
    Ok(summary)
}

/// The drift reference of the churn model: its population at its latest
/// training snapshot (`rows`, [`stage::ChurnFit::latest`]: the nearest in
/// time to the nights that score with it), binned per feature and on the
/// model's score, which is what `nightly` measures drift against. The
/// score is `scores` where the fit kept them (its holdout's predictions of
/// those rows), else predicted here. The calendar feature
/// (`horizon_quarter`) is left out: it changes with the date by design.
fn drift_reference(
    m: &Model,
    rows: &DataFrame,
    scores: Option<Vec<f64>>,
) -> Result<drift::DriftReference> {
    let day = rows
        .column(f::AS_OF)
        .or_else(|_| rows.column(f::SNAPSHOT))
        .ok()
        .and_then(|c| c.get(0).ok().map(|v| v.to_string()))
        .unwrap_or_default();
    let score = match scores {
        Some(p) => p,
        None => m.predict_arms(rows, &[None])?.0.pop().unwrap_or_default(),
    };
    let features: Vec<(String, bool)> = m
        .layout
        .design
        .manifest
        .features
        .iter()
        .filter(|x| x.name != f::HORIZON_QUARTER)
        .map(|x| (x.name.clone(), x.encoding == Encoding::OneHot))
        .collect();
    drift::reference(
        rows,
        &features,
        Some(&score),
        format!("subscribers active at the latest training snapshot ({day})"),
    )
}

/// Chooses the return model among its candidates: the one with the lowest
/// holdout log loss, unless another's policy (each offer's arm of highest
/// expected profit among no offer and `simulate.arms`) is worth more on the past randomised offers no model
/// was fitted on, by a doubly-robust gain per offer whose interval lies
/// above zero. Without a second lifetime or such offers, by log loss; each
/// candidate's policy value is recorded where there is one.
fn choose_return(
    c: &mut stage::ReturnCandidates,
    offers: &DataFrame,
    second: Option<&SecondLifetimeModel>,
    settings: &Settings,
    stamp: &Stamp,
) -> Result<stage::Choice> {
    let names = c.names();
    let reference = c.lowest_log_loss();
    let by_loss = |why: &str| stage::Choice {
        chosen: reference,
        note: format!(
            "{} kept: the lowest holdout log loss of {} candidates ({why})",
            names[reference],
            names.len()
        ),
    };
    if names.len() == 1 {
        return Ok(stage::Choice {
            chosen: 0,
            note: format!("{}: the only candidate", names[0]),
        });
    }
    let Some(second) = second else {
        return Ok(by_loss("no second-lifetime model, so no policy value"));
    };
    let evaluated = c.evaluated(stamp, &settings.train);
    let second = second.as_evaluated();
    let rets: Vec<(String, &ReturnModel)> = names.iter().cloned().zip(&evaluated).collect();
    let level = settings.simulate.interval;
    // The arms the campaign may offer (`simulate.arms`), as `simulate`
    // chooses among them.
    let allowed: Vec<usize> = settings.simulate.arms.iter().map(|a| a.index()).collect();
    let Some(v) = candidate_values(
        offers,
        &rets,
        &second,
        &settings.economics,
        &allowed,
        level,
        reference,
    )?
    else {
        return Ok(by_loss(
            "no past randomised offer that no model saw, so no policy value",
        ));
    };
    c.set_policy_values(v.values.clone());
    let best = (0..v.values.len())
        .max_by(|a, b| {
            v.values[*a]
                .dr
                .estimate
                .total_cmp(&v.values[*b].dr.estimate)
        })
        .unwrap_or(reference);
    let (dr, gain) = (|i: usize| v.values[i].dr.estimate, v.gains[best]);
    let pct = format!("{:.0}%", level * 100.0);
    let note = if best == reference {
        format!(
            "{} kept: the lowest holdout log loss of {} candidates and the highest doubly-robust profit per offer ({:.2}) on {} past offers no model saw",
            names[reference],
            names.len(),
            dr(reference),
            v.offers
        )
    } else if gain.lo > 0.0 {
        format!(
            "{} chosen by its policy value: on {} past offers no model saw, its doubly-robust profit per offer is {:.2} against {:.2} for {} (the lowest holdout log loss), gain {:.2}, {pct} interval {:.2} to {:.2}",
            names[best],
            v.offers,
            dr(best),
            dr(reference),
            names[reference],
            gain.estimate,
            gain.lo,
            gain.hi
        )
    } else {
        format!(
            "{} kept (the lowest holdout log loss): on {} past offers no model saw, {}'s doubly-robust profit per offer ({:.2} against {:.2}) is higher by {:.2}, {pct} interval {:.2} to {:.2}, not surely above zero",
            names[reference],
            v.offers,
            names[best],
            dr(best),
            dr(reference),
            gain.estimate,
            gain.lo,
            gain.hi
        )
    };
    Ok(stage::Choice {
        chosen: if gain.lo > 0.0 { best } else { reference },
        note,
    })
}

/// The churn model, on the stacked snapshots, and the drift reference
/// of its latest snapshot. The outer error ends the run (the features
/// could not be read); the inner one is the fit's, which may only skip
/// the model.
fn churn_model(
    cat: &catalog::Catalog,
    manifest: &Manifest,
    settings: &Settings,
    stamp: &Stamp,
) -> Result<(Result<ChurnModel>, Option<drift::DriftReference>)> {
    let t = Instant::now();
    crate::progress::note("churn model");
    let snapshots = cat.read_features(FeatureSet::ChurnSnapshots)?;
    if snapshots.height() == 0 {
        let reason = "no churn snapshots (no subscribers active at the snapshot dates)";
        return Ok((Err(skipped_reason(ModelKind::Churn, reason)), None));
    }
    let fit = stage::fit_churn(
        snapshots,
        manifest,
        settings.features.churn_horizon_days,
        &settings.train,
        stamp,
    );
    Ok(match fit {
        Ok(stage::ChurnFit {
            model,
            latest,
            latest_scores,
        }) => {
            log_trained(&model, t);
            let reference = drift_reference(&model, &latest, latest_scores)?;
            (Ok(model), Some(reference))
        }
        Err(e) => (Err(e), None),
    })
}

/// What [`return_and_second`] fitted: the return model's candidates, the
/// second lifetime, and the return model chosen among its candidates
/// (`None` when they could not be fitted).
type ReturnAndSecond = (
    Result<()>,
    Result<SecondLifetimeModel>,
    Option<Result<ReturnModel>>,
);

/// The return model's candidates, then the second lifetime, then the
/// return model's choice among its candidates, judged by their value on
/// past offers, which needs the second lifetime. The outer error ends the
/// run; the inner ones are the fits', which may only skip a model.
fn return_and_second(
    cat: &catalog::Catalog,
    manifest: &Manifest,
    settings: &Settings,
    stamp: &Stamp,
) -> Result<ReturnAndSecond> {
    let s = &settings.train;
    let t = Instant::now();
    crate::progress::note("return model");
    let offers = cat.read_features(FeatureSet::Offers)?;
    let candidates = if offers.height() == 0 {
        Err(skipped_reason(
            ModelKind::Return,
            "no win-back offers in the data (no winback_offers table, or it is empty)",
        ))
    } else {
        stage::fit_return_candidates(&offers, manifest, settings.features.response_window_days, s)
    };
    drop(offers);
    let return_seconds = t.elapsed();
    let t = Instant::now();
    crate::progress::note("second lifetime model");
    let second = cat.read_features(FeatureSet::SecondLifetime)?;
    let second_fit = if second.height() == 0 {
        Err(skipped_reason(
            ModelKind::SecondLifetime,
            "no returns in the data (no reactivations table, or it is empty)",
        ))
    } else {
        let lapsed = cat.read_features(FeatureSet::Lapsed)?;
        stage::fit_second_lifetime(&second, &lapsed, manifest, &settings.history, s, stamp)
            .inspect(|m| log_trained(m, t))
    };
    drop(second);
    let mut candidates = match candidates {
        Ok(c) => c,
        Err(e) => return Ok((Err(e), second_fit, None)),
    };
    // A second lifetime that failed otherwise than by its fit ends the
    // run (when its result is recorded): no choice is made without it.
    if matches!(&second_fit, Err(e) if !matches!(e, Error::Fit { .. })) {
        return Ok((Ok(()), second_fit, None));
    }
    let t = Instant::now();
    crate::progress::note("return model: choice");
    let offers = cat.read_features(FeatureSet::Offers)?;
    let choice = choose_return(
        &mut candidates,
        &offers,
        second_fit.as_ref().ok(),
        settings,
        stamp,
    )
    .and_then(|choice| {
        info!(model = "return", "{}", choice.note);
        candidates.finish(choice, &offers, stamp, s)
    })
    .inspect(|m| {
        info!(model = "return", seconds = (t.elapsed() + return_seconds).as_secs_f64(), chosen = %m.model.chosen, "trained");
    });
    Ok((Ok(()), second_fit, Some(choice)))
}

fn log_trained(m: &Model, t: Instant) {
    info!(model = m.model.name(), seconds = t.elapsed().as_secs_f64(), chosen = %m.chosen, "trained");
}

fn skipped_reason(kind: ModelKind, reason: &str) -> Error {
    Error::Fit {
        model: kind.name().into(),
        message: reason.into(),
    }
}

fn effects_frame(effects: &[(String, FitRole, Effect)]) -> Result<DataFrame> {
    let opt = |g: fn(&Effect) -> Option<f64>| -> Vec<Option<f64>> {
        effects.iter().map(|(_, _, e)| g(e)).collect()
    };
    DataFrame::new(
        effects.len(),
        vec![
            Column::new(
                "model".into(),
                effects
                    .iter()
                    .map(|(m, _, _)| m.as_str())
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "fit".into(),
                effects.iter().map(|(_, r, _)| r.name()).collect::<Vec<_>>(),
            ),
            Column::new(
                "term".into(),
                effects
                    .iter()
                    .map(|(_, _, e)| e.term.as_str())
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
pub fn render(summary: &TrainSummary, artifacts: &[&Model]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "models trained (each evaluated on rows it was not fitted on: the latest in time where the dates allow)"
    );
    for (m, a) in summary.models.iter().zip(artifacts) {
        let _ = writeln!(
            s,
            "\n{}: {} rows fitted before the holdout; kept {}\n  {}\n  stored for scoring: {}",
            m.model,
            m.training_rows,
            m.chosen,
            m.split.describe(),
            m.stored
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
                "  months retained in months {}-{} of those retained after the offer term (holdout returns):\n  {:<44} {:<8} {:>7} {:>9} {:>9}",
                m.durations[0].after_month + 1,
                m.durations[0].after_month + m.durations[0].months,
                "",
                "reason",
                "returns",
                "observed",
                "predicted"
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
        // The logistic terms an analyst checks first: largest per-SD
        // effects of the evaluated fit.
        let mut terms: Vec<&Effect> = a
            .effects_by_fit()
            .into_iter()
            .filter(|(r, e)| *r == FitRole::Evaluated && e.per_sd.is_some())
            .map(|(_, e)| e)
            .collect();
        terms.sort_by(|x, y| {
            y.per_sd
                .unwrap_or(0.0)
                .abs()
                .total_cmp(&x.per_sd.unwrap_or(0.0).abs())
        });
        if !terms.is_empty() {
            let _ = writeln!(
                s,
                "  strongest logistic terms of the evaluated fit (odds ratio per unit; per SD):"
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
    for n in &summary.notes {
        let _ = writeln!(s, "\nnote: {n}");
    }
    let _ = writeln!(
        s,
        "\nall terms (column `fit`: evaluated before the holdout, or refit on every row): effects.csv; all metrics: evaluation.json"
    );
    s
}
