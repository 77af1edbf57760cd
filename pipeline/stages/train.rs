//! `train`: the return-likelihood, churn and second-lifetime models.
//!
//! Every model is a probability model fitted the same way
//! ([`fit_binary`]): a time-based split (fit on earlier defections,
//! snapshots or returns; evaluate on later ones, with training labels that
//! end before the holdout begins), then the candidate learners side by side:
//!
//! - logistic regression on the design matrix, its numeric features with
//!   quantile step columns whose number (`train.step_bins`, 0 = linear) and
//!   L2 strength are chosen by k-fold cross-validation within the training
//!   period;
//! - gradient-boosted trees with early stopping and Platt calibration on
//!   training rows the trees never saw.
//!
//! `train.learner = "auto"` keeps the one with the lower holdout log loss.
//!
//! - Return: P(return within the response window | features, arm), with
//!   arm main effects (control is the reference) and arm x feature
//!   interactions (leave reason by default), so each lapsed subscriber gets
//!   a probability under every arm; Qini of each arm over control.
//! - Churn: P(churn within the horizon | features as of a snapshot), on the
//!   stacked snapshots.
//! - Second lifetime: a discrete-time hazard on subscriber-months after a
//!   return (month bands, leave reason, the arm that won the subscriber
//!   back, first-lifetime behaviour) giving S(t), and a ridge regression of
//!   the monthly margin; predicted against Kaplan–Meier restricted mean
//!   duration by leave reason on the holdout.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use ndarray::Array2;
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use winback_models::boosted::{BoostedModel, BoostedParams, row_key};
use winback_models::learner::{Classifier, Learner, Ridge};
use winback_models::logistic::{AlphaScore, LogisticModel, choose_alpha};
use winback_models::metrics;
use winback_models::survival;
use winback_models::uncertainty::LinearPart;
use winback_models::uplift::{Qini, qini};

use super::design::{Design, DesignColumn};
use super::features::{DAYS_PER_MONTH, Encoding, FeatureSpec, Manifest, Unseen, epoch_days, f};
use crate::error::{Error, Result};
use crate::schema::{ARMS, LEAVE_REASONS, col};
use winback_models::economics::{Arm, Economics};

/// Version of the model artifact layout.
pub const FORMAT_VERSION: u32 = 1;

/// Which learner a model keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LearnerChoice {
    /// The one with the lower holdout log loss.
    #[default]
    Auto,
    /// Logistic regression (with cross-validated quantile steps).
    Logistic,
    /// Gradient-boosted trees.
    Boosted,
}

/// Settings of the train stage (`[train]` in the config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSettings {
    /// Which learner each model keeps.
    pub learner: LearnerChoice,
    /// Latest share of rows held out for evaluation.
    pub holdout_share: f64,
    /// Cross-validation folds.
    pub folds: usize,
    /// Seed of folds, splits and subsamples.
    pub seed: u64,
    /// Candidate numbers of quantile steps per numeric feature (0: linear).
    pub step_bins: Vec<usize>,
    /// Candidate L2 strengths.
    pub alphas: Vec<f64>,
    /// Most rows used by cross-validation (a seeded subsample above it;
    /// the final fit uses every training row).
    pub cv_max_rows: usize,
    /// Boosted trees' hyper-parameters.
    pub boosted: BoostedParams,
    /// Features of the return model (empty: every manifest feature).
    pub return_features: Vec<String>,
    /// Features of the churn model (empty: every manifest feature present
    /// in the snapshots).
    pub churn_features: Vec<String>,
    /// Features interacted with each arm in the return model.
    pub interactions: Vec<String>,
    /// Months of second lifetime modelled (and the survival curve's length).
    pub survival_months: u32,
    /// First months of the hazard model's month bands.
    pub hazard_bands: Vec<u32>,
    /// Months over which predicted and observed durations are compared.
    pub duration_check_months: u32,
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            learner: LearnerChoice::Auto,
            holdout_share: 0.25,
            folds: 4,
            seed: 1,
            step_bins: vec![0, 5],
            alphas: vec![0.01, 0.1, 1.0, 10.0, 100.0],
            cv_max_rows: 50_000,
            boosted: BoostedParams::default(),
            return_features: Vec::new(),
            churn_features: Vec::new(),
            interactions: vec![f::LEAVE_REASON.to_string()],
            survival_months: 60,
            hazard_bands: vec![1, 4, 7, 13, 25, 37],
            duration_check_months: 24,
        }
    }
}

/// Evaluation of a probability model on held-out rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Held-out rows.
    pub rows: usize,
    /// Observed rate.
    pub observed_rate: f64,
    /// Mean prediction.
    pub mean_predicted: f64,
    /// ROC AUC.
    pub roc_auc: Option<f64>,
    /// PR AUC (average precision).
    pub pr_auc: Option<f64>,
    /// Log loss.
    pub log_loss: f64,
    /// Brier score.
    pub brier: f64,
    /// Expected calibration error over 10 bins.
    pub ece: f64,
    /// Calibration table.
    pub calibration: Vec<metrics::CalibrationBin>,
    /// Gains and lift by decile.
    pub gains: Vec<metrics::Decile>,
}

fn metric_error(e: metrics::MetricError) -> Error {
    Error::Fit {
        model: "evaluation".into(),
        message: e.to_string(),
    }
}

/// Evaluates predictions against outcomes.
pub fn evaluate(p: &[f64], y: &[bool]) -> Result<Evaluation> {
    let (calibration, ece) = metrics::calibration(p, y, 10).map_err(metric_error)?;
    Ok(Evaluation {
        rows: p.len(),
        observed_rate: y.iter().filter(|v| **v).count() as f64 / y.len().max(1) as f64,
        mean_predicted: p.iter().sum::<f64>() / p.len().max(1) as f64,
        roc_auc: metrics::roc_auc(p, y).map_err(metric_error)?,
        pr_auc: metrics::pr_auc(p, y).map_err(metric_error)?,
        log_loss: metrics::log_loss(p, y).map_err(metric_error)?,
        brier: metrics::brier(p, y).map_err(metric_error)?,
        ece,
        calibration,
        gains: metrics::gains(p, y).map_err(metric_error)?,
    })
}

/// How a frame becomes a model's matrix: the design's columns, then (for
/// models with arms) `arm=<a>` per treated arm and `arm=<a>:<column>` per
/// interacted design column, then (for hazards) `month>=<b>` per band
/// after the first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Layout {
    /// The features' design.
    pub design: Design,
    /// Column holding the arm (empty: no arm columns).
    pub arm_column: String,
    /// Arms with their own columns (control, the reference, has none).
    pub arms: Vec<String>,
    /// Design columns interacted with each arm.
    pub interact: Vec<usize>,
    /// First months of the month bands (hazards only).
    pub bands: Vec<u32>,
}

impl Layout {
    /// Column names, in matrix order.
    pub fn names(&self) -> Vec<String> {
        let mut v = self.design.names();
        let design = self.design.names();
        v.extend(self.arms.iter().map(|a| format!("arm={a}")));
        for a in &self.arms {
            v.extend(
                self.interact
                    .iter()
                    .map(|j| format!("arm={a}:{}", design[*j])),
            );
        }
        v.extend(self.bands.iter().skip(1).map(|b| format!("month>={b}")));
        v
    }

    /// The feature each matrix column belongs to (`None` for the arm
    /// indicators and month bands); an arm interaction belongs to the
    /// feature it interacts.
    pub fn column_features(&self) -> Vec<Option<String>> {
        let feature = |c: &DesignColumn| match c {
            DesignColumn::Numeric { feature, .. }
            | DesignColumn::AtLeast { feature, .. }
            | DesignColumn::Missing { feature }
            | DesignColumn::Flag { feature }
            | DesignColumn::Level { feature, .. } => feature.clone(),
        };
        let mut v: Vec<Option<String>> = self
            .design
            .columns
            .iter()
            .map(|c| Some(feature(c)))
            .collect();
        v.extend(self.arms.iter().map(|_| None));
        for _ in &self.arms {
            v.extend(
                self.interact
                    .iter()
                    .map(|j| Some(feature(&self.design.columns[*j]))),
            );
        }
        v.extend(self.bands.iter().skip(1).map(|_| None));
        v
    }

    /// Columns before the band columns.
    pub fn base_width(&self) -> usize {
        self.design.columns.len() + self.arms.len() * (1 + self.interact.len())
    }

    /// The matrix of `df` without band columns (row-major), under the
    /// frame's own arm or `arm` for every row.
    pub fn base(&self, df: &DataFrame, arm: Option<&str>) -> Result<(Vec<f64>, Unseen)> {
        let (x0, unseen) = self.design.matrix(df)?;
        if self.arms.is_empty() {
            return Ok((x0, unseen));
        }
        Ok((self.with_arms(&x0, df, arm)?, unseen))
    }

    /// The design matrix `x0` of `df` with the arm and interaction columns.
    fn with_arms(&self, x0: &[f64], df: &DataFrame, arm: Option<&str>) -> Result<Vec<f64>> {
        let k0 = self.design.columns.len();
        let k = self.base_width();
        let n = df.height();
        if self.arms.is_empty() {
            return Ok(x0.to_vec());
        }
        let arms: Vec<Option<String>> = match arm {
            Some(a) => vec![Some(a.to_string()); n],
            None => df
                .column(&self.arm_column)
                .and_then(|c| c.str().cloned())
                .map_err(Error::polars(format!("model: column {}", self.arm_column)))?
                .iter()
                .map(|v| v.map(str::to_string))
                .collect(),
        };
        let m = self.interact.len();
        let mut x = vec![0.0; n * k];
        for i in 0..n {
            let row = &x0[i * k0..(i + 1) * k0];
            x[i * k..i * k + k0].copy_from_slice(row);
            if let Some(ai) = arms[i]
                .as_deref()
                .and_then(|a| self.arms.iter().position(|x| x == a))
            {
                x[i * k + k0 + ai] = 1.0;
                let start = i * k + k0 + self.arms.len() + ai * m;
                for (q, j) in self.interact.iter().enumerate() {
                    x[start + q] = row[*j];
                }
            }
        }
        Ok(x)
    }

    /// Band indicators of month `t` (1-based).
    fn band_row(&self, t: u32) -> Vec<f64> {
        self.bands
            .iter()
            .skip(1)
            .map(|b| if t >= *b { 1.0 } else { 0.0 })
            .collect()
    }

    /// The features of the manifest this layout reads.
    pub fn features(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for c in &self.design.columns {
            let name = match c {
                DesignColumn::Numeric { feature, .. }
                | DesignColumn::AtLeast { feature, .. }
                | DesignColumn::Missing { feature }
                | DesignColumn::Flag { feature }
                | DesignColumn::Level { feature, .. } => feature,
            };
            if !v.contains(name) {
                v.push(name.clone());
            }
        }
        v
    }
}

/// How rows of a frame become (matrix rows, labels) for one model.
enum Rows<'a> {
    /// One row per frame row, the label a boolean column.
    Plain { label: &'a str },
    /// Subscriber-months of durations (hazard models).
    Months {
        duration: &'a str,
        censored: &'a str,
        max_months: u32,
    },
}

fn bool_column(df: &DataFrame, name: &str) -> Result<Vec<bool>> {
    Ok(df
        .column(name)
        .and_then(|c| c.bool().cloned())
        .map_err(Error::polars(format!("model: column {name}")))?
        .iter()
        .map(|v| v.unwrap_or(false))
        .collect())
}

fn f64_column(df: &DataFrame, name: &str) -> Result<Vec<f64>> {
    Ok(df
        .column(name)
        .and_then(|c| c.cast(&DataType::Float64))
        .map_err(Error::polars(format!("model: column {name}")))?
        .f64()
        .map_err(Error::polars(format!("model: column {name}")))?
        .iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect())
}

fn to_array(x: Vec<f64>, k: usize) -> Result<Array2<f64>> {
    let n = x.len() / k.max(1);
    Array2::from_shape_vec((n, k), x).map_err(|e| Error::Fit {
        model: "matrix".into(),
        message: e.to_string(),
    })
}

impl Rows<'_> {
    fn build(&self, layout: &Layout, df: &DataFrame) -> Result<(Array2<f64>, Vec<bool>)> {
        let (base, _) = layout.base(df, None)?;
        let kb = layout.base_width();
        match self {
            Rows::Plain { label } => Ok((to_array(base, kb)?, bool_column(df, label)?)),
            Rows::Months {
                duration,
                censored,
                max_months,
            } => {
                let d = f64_column(df, duration)?;
                let c = bool_column(df, censored)?;
                let k = kb + layout.bands.len().saturating_sub(1);
                let mut x = Vec::new();
                let mut y = Vec::new();
                for i in 0..df.height() {
                    for (t, e) in survival::person_months(d[i], c[i], *max_months) {
                        x.extend_from_slice(&base[i * kb..(i + 1) * kb]);
                        x.extend(layout.band_row(t));
                        y.push(e);
                    }
                }
                Ok((to_array(x, k)?, y))
            }
        }
    }
}

/// Cross-validation result of one logistic candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepScore {
    /// Quantile steps per numeric feature.
    pub step_bins: usize,
    /// Chosen L2 strength for it.
    pub alpha: f64,
    /// Its cross-validated log loss.
    pub cv_log_loss: f64,
    /// Every alpha's score.
    pub alphas: Vec<AlphaScore>,
}

/// One candidate learner, evaluated on the holdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// `logistic` or `boosted`.
    pub learner: String,
    /// What was chosen for it: steps and alpha, or trees.
    pub hyper_parameters: BTreeMap<String, f64>,
    /// Holdout evaluation.
    pub holdout: Evaluation,
}

/// One term of a model as an analyst reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    /// Column name (`has_referred`, `arm=upgrade`, `plan=premium`).
    pub term: String,
    /// Logistic coefficient per raw unit.
    pub coefficient: Option<f64>,
    /// exp(coefficient): the odds multiplied per unit (per level, for 0/1).
    pub odds_ratio: Option<f64>,
    /// Coefficient per standard deviation (comparable across terms).
    pub per_sd: Option<f64>,
    /// Share of the boosted trees' total split gain.
    pub importance: Option<f64>,
}

/// A fitted binary model with its selection record.
#[derive(Debug, Clone)]
pub struct Fitted {
    /// The kept learner's layout.
    pub layout: Layout,
    /// The kept learner.
    pub learner: Learner,
    /// Which learner was kept.
    pub chosen: String,
    /// Every candidate's holdout evaluation.
    pub candidates: Vec<Candidate>,
    /// Cross-validation of the logistic candidates.
    pub steps: Vec<StepScore>,
    /// The kept learner's holdout evaluation.
    pub holdout: Evaluation,
    /// Terms of the logistic candidate and the trees' importances.
    pub effects: Vec<Effect>,
    /// Training rows (matrix rows) and their positives.
    pub training_rows: usize,
    /// Positives among them.
    pub training_positives: usize,
    /// Fingerprint of the training matrix and labels.
    pub fingerprint: String,
}

/// What a model is fitted on: its frames, features and matrix template.
pub struct Problem<'a> {
    /// Model name, for messages.
    pub name: &'a str,
    /// Feature manifest.
    pub manifest: &'a Manifest,
    /// Features used.
    pub features: Vec<String>,
    /// Training rows.
    pub train: DataFrame,
    /// Holdout rows.
    pub test: DataFrame,
    /// Arm column and arms (empty: none).
    pub arm_column: String,
    /// Arms with columns.
    pub arms: Vec<String>,
    /// Features interacted with each arm.
    pub interact: Vec<String>,
    /// Month bands (hazards).
    pub bands: Vec<u32>,
}

/// FNV-1a over the bits of a matrix and its labels (hex).
fn fingerprint(x: &Array2<f64>, y: &[bool]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    let mut eat = |b: &[u8]| {
        for v in b {
            h ^= u64::from(*v);
            h = h.wrapping_mul(0x100000001b3);
        }
    };
    eat(&(x.nrows() as u64).to_le_bytes());
    eat(&(x.ncols() as u64).to_le_bytes());
    for v in x.iter() {
        eat(&v.to_bits().to_le_bytes());
    }
    for v in y {
        eat(&[u8::from(*v)]);
    }
    format!("{h:016x}")
}

fn layout_for(p: &Problem<'_>, bins: usize) -> Result<Layout> {
    let names: Vec<&str> = p.features.iter().map(String::as_str).collect();
    let design = Design::fit_binned(p.manifest, &p.train, &names, bins)?;
    let interact = design
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            let feature = match c {
                DesignColumn::Level { feature, .. } | DesignColumn::Flag { feature } => feature,
                DesignColumn::Numeric { feature, .. } => feature,
                _ => return false,
            };
            p.interact.contains(feature)
        })
        .map(|(j, _)| j)
        .collect();
    Ok(Layout {
        design,
        arm_column: p.arm_column.clone(),
        arms: p.arms.clone(),
        interact,
        bands: p.bands.clone(),
    })
}

/// Seeded subsample of at most `max` row indices.
fn subsample(n: usize, max: usize, seed: u64) -> Vec<usize> {
    if n <= max {
        return (0..n).collect();
    }
    let mut keyed: Vec<(u64, usize)> = (0..n).map(|i| (row_key(seed, i), i)).collect();
    keyed.select_nth_unstable(max - 1);
    let mut rows: Vec<usize> = keyed[..max].iter().map(|(_, i)| *i).collect();
    rows.sort_unstable();
    rows
}

/// Fits the candidate learners of `problem` and keeps one (see the module
/// documentation).
fn fit_binary(problem: &Problem<'_>, rows: &Rows<'_>, s: &TrainSettings) -> Result<Fitted> {
    let fit_err = |e: winback_models::logistic::FitError| Error::Fit {
        model: problem.name.to_string(),
        message: e.to_string(),
    };
    let mut candidates = Vec::new();
    let mut steps = Vec::new();
    let mut kept: Vec<(Layout, Learner, Evaluation)> = Vec::new();
    let mut effects: Vec<Effect> = Vec::new();
    let mut training = (0, 0, String::new());
    if s.learner != LearnerChoice::Boosted {
        let mut best: Option<(f64, Layout, f64, usize)> = None;
        for &bins in &s.step_bins {
            let layout = layout_for(problem, bins)?;
            let (x, y) = rows.build(&layout, &problem.train)?;
            let sub = subsample(x.nrows(), s.cv_max_rows, s.seed);
            let xs = x.select(ndarray::Axis(0), &sub);
            let ys: Vec<bool> = sub.iter().map(|i| y[*i]).collect();
            let (alpha, scores) =
                choose_alpha(xs.view(), &ys, &layout.names(), &s.alphas, s.folds, s.seed)
                    .map_err(fit_err)?;
            let loss = scores
                .iter()
                .find(|a| a.alpha == alpha)
                .map(|a| a.mean_log_loss)
                .unwrap_or(f64::INFINITY);
            tracing::info!(
                model = problem.name,
                bins,
                alpha,
                cv_log_loss = loss,
                "logistic candidate"
            );
            steps.push(StepScore {
                step_bins: bins,
                alpha,
                cv_log_loss: loss,
                alphas: scores,
            });
            if best.as_ref().is_none_or(|(l, _, _, _)| loss < *l) {
                best = Some((loss, layout, alpha, bins));
            }
        }
        let (_, layout, alpha, bins) = best.ok_or_else(|| Error::Setting {
            key: "train.step_bins".into(),
            message: "no candidate step counts".into(),
        })?;
        let (x, y) = rows.build(&layout, &problem.train)?;
        training = (
            x.nrows(),
            y.iter().filter(|v| **v).count(),
            fingerprint(&x, &y),
        );
        let model = LogisticModel::fit(x.view(), &y, &layout.names(), alpha)
            .and_then(|m| m.with_covariance(x.view()))
            .map_err(fit_err)?;
        let (xv, yv) = rows.build(&layout, &problem.test)?;
        let holdout = evaluate(&model.predict(xv.view()).map_err(fit_err)?, &yv)?;
        let (_, raw) = model.raw_coefficients();
        effects = layout
            .names()
            .into_iter()
            .zip(raw)
            .zip(&model.coefficients)
            .map(|((term, b), sd)| Effect {
                term,
                coefficient: Some(b),
                odds_ratio: Some(b.exp()),
                per_sd: Some(*sd),
                importance: None,
            })
            .collect();
        candidates.push(Candidate {
            learner: "logistic".into(),
            hyper_parameters: BTreeMap::from([
                ("step_bins".to_string(), bins as f64),
                ("alpha".to_string(), alpha),
            ]),
            holdout: holdout.clone(),
        });
        kept.push((layout, Learner::Logistic(model), holdout));
    }
    if s.learner != LearnerChoice::Logistic {
        let layout = layout_for(problem, 0)?;
        let (x, y) = rows.build(&layout, &problem.train)?;
        if training.0 == 0 {
            training = (
                x.nrows(),
                y.iter().filter(|v| **v).count(),
                fingerprint(&x, &y),
            );
        }
        let params = BoostedParams {
            seed: s.seed,
            ..s.boosted
        };
        let model = BoostedModel::fit(x.view(), &y, &layout.names(), params).map_err(fit_err)?;
        let (xv, yv) = rows.build(&layout, &problem.test)?;
        let holdout = evaluate(&model.predict(xv.view()).map_err(fit_err)?, &yv)?;
        tracing::info!(
            model = problem.name,
            trees = model.trees,
            log_loss = holdout.log_loss,
            "boosted candidate"
        );
        let total: f64 = model.importance.iter().sum::<f64>().max(f64::MIN_POSITIVE);
        for (name, g) in model.names.iter().zip(&model.importance) {
            let share = g / total;
            match effects.iter_mut().find(|e| e.term == *name) {
                Some(e) => e.importance = Some(share),
                None => effects.push(Effect {
                    term: name.clone(),
                    coefficient: None,
                    odds_ratio: None,
                    per_sd: None,
                    importance: Some(share),
                }),
            }
        }
        candidates.push(Candidate {
            learner: "boosted".into(),
            hyper_parameters: BTreeMap::from([
                ("trees".to_string(), model.trees as f64),
                ("learning_rate".to_string(), model.params.learning_rate),
                ("max_depth".to_string(), model.params.max_depth as f64),
            ]),
            holdout: holdout.clone(),
        });
        kept.push((layout, Learner::Boosted(Box::new(model)), holdout));
    }
    let best = (0..kept.len())
        .min_by(|a, b| kept[*a].2.log_loss.total_cmp(&kept[*b].2.log_loss))
        .expect("at least one learner");
    let (layout, learner, holdout) = kept.swap_remove(best);
    let chosen = match learner {
        Learner::Logistic(_) => "logistic",
        Learner::Boosted(_) => "boosted",
    }
    .to_string();
    Ok(Fitted {
        layout,
        learner,
        chosen,
        candidates,
        steps,
        holdout,
        effects,
        training_rows: training.0,
        training_positives: training.1,
        fingerprint: training.2,
    })
}

/// Provenance and training facts stored with every model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// Artifact layout version.
    pub format_version: u32,
    /// winback version that trained it.
    pub code_version: String,
    /// When (UTC, RFC 3339).
    pub trained_at: String,
    /// Hash of the config file.
    pub config_hash: String,
    /// Fingerprint of the training matrix and labels.
    pub data_fingerprint: String,
    /// Matrix rows fitted on.
    pub training_rows: usize,
    /// Positive labels among them.
    pub training_positives: usize,
    /// First date of the holdout (rows from it on are held out).
    pub holdout_from: String,
    /// Rows of the final refit on every row, holdout included, when the
    /// stored learner was refitted after its evaluation (the second
    /// lifetime: the holdout's returns and the follow-up after the cut
    /// carry most of what is known of long second lifetimes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refit_rows: Option<usize>,
    /// Training settings.
    pub settings: TrainSettings,
}

/// A trained model as stored (`<out>/models/<version>/<name>.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelArtifact {
    /// `return`, `churn` or `second_lifetime`.
    pub model: String,
    /// The label modelled.
    pub label: String,
    /// Provenance.
    pub provenance: Provenance,
    /// How frames become matrices (holds the feature manifest).
    pub layout: Layout,
    /// The kept learner.
    pub learner: Learner,
    /// Which learner was kept.
    pub chosen: String,
    /// Every candidate's holdout evaluation.
    pub candidates: Vec<Candidate>,
    /// Cross-validation of the logistic candidates.
    pub cross_validation: Vec<StepScore>,
    /// Holdout evaluation of the kept learner.
    pub holdout: Evaluation,
    /// Coefficients, odds ratios and importances.
    pub effects: Vec<Effect>,
    /// Return model: uplift of each arm over control on the holdout.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uplift: Vec<(String, Qini)>,
    /// Second lifetime: the monthly margin model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub margin: Option<MarginModel>,
    /// Second lifetime: predicted against observed duration by leave reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub durations: Vec<DurationCheck>,
}

impl ModelArtifact {
    fn new(
        model: &str,
        label: &str,
        fitted: Fitted,
        holdout_from: NaiveDate,
        config_hash: &str,
        s: &TrainSettings,
    ) -> ModelArtifact {
        ModelArtifact {
            model: model.into(),
            label: label.into(),
            provenance: Provenance {
                format_version: FORMAT_VERSION,
                code_version: env!("CARGO_PKG_VERSION").into(),
                trained_at: now_utc(),
                config_hash: config_hash.into(),
                data_fingerprint: fitted.fingerprint,
                training_rows: fitted.training_rows,
                training_positives: fitted.training_positives,
                holdout_from: holdout_from.to_string(),
                refit_rows: None,
                settings: s.clone(),
            },
            layout: fitted.layout,
            learner: fitted.learner,
            chosen: fitted.chosen,
            candidates: fitted.candidates,
            cross_validation: fitted.steps,
            holdout: fitted.holdout,
            effects: fitted.effects,
            uplift: Vec::new(),
            margin: None,
            durations: Vec::new(),
        }
    }

    /// The feature manifest the model was trained with.
    pub fn manifest(&self) -> &Manifest {
        &self.layout.design.manifest
    }

    /// P(label) of each row of `df` (under `arm` for every row when given).
    pub fn predict(&self, df: &DataFrame, arm: Option<&str>) -> Result<Vec<f64>> {
        Ok(self.predict_arms(df, &[arm])?.0.pop().unwrap_or_default())
    }

    /// P(label) of each row of `df` under each of `arms` (`None`: the
    /// frame's own arm), in blocks of rows so that memory stays bounded and
    /// the design matrix is built once per block for all arms; and, per
    /// one-hot feature, how many values were null or not seen in training
    /// (scored as `other`).
    pub fn predict_arms(
        &self,
        df: &DataFrame,
        arms: &[Option<&str>],
    ) -> Result<(Vec<Vec<f64>>, Unseen)> {
        const BLOCK: usize = 262_144;
        let n = df.height();
        let k = self.layout.base_width();
        let mut out = vec![Vec::with_capacity(n); arms.len()];
        let mut unseen: Unseen = Vec::new();
        for start in (0..n).step_by(BLOCK) {
            let part = df.slice(start as i64, BLOCK.min(n - start));
            let (x0, u) = self.layout.design.matrix(&part)?;
            for (name, count) in u {
                match unseen.iter_mut().find(|(f, _)| *f == name) {
                    Some((_, total)) => *total += count,
                    None => unseen.push((name, count)),
                }
            }
            for (j, arm) in arms.iter().enumerate() {
                let x = to_array(self.layout.with_arms(&x0, &part, *arm)?, k)?;
                let p = self.learner.predict(x.view()).map_err(|e| Error::Fit {
                    model: self.model.clone(),
                    message: e.to_string(),
                })?;
                out[j].extend(p);
            }
        }
        Ok((out, unseen))
    }

    /// Checks that `data` (the manifest of the frames to score) describes
    /// every feature this model reads with the same type and encoding.
    pub fn check_manifest(&self, data: &Manifest, path: &std::path::Path) -> Result<()> {
        let mut problems = Vec::new();
        if data.version != self.manifest().version {
            problems.push(format!(
                "manifest version {} in the data, {} in the model",
                data.version,
                self.manifest().version
            ));
        }
        // `won_back_by` is the hazard's own column (the arm to simulate),
        // not a feature of the data.
        for name in self
            .layout
            .features()
            .into_iter()
            .filter(|n| n != WON_BACK_BY)
        {
            let Some(want) = self.manifest().features.iter().find(|f| f.name == name) else {
                continue;
            };
            match data.features.iter().find(|f| f.name == name) {
                None => problems.push(format!("feature `{name}` is not in the data's manifest")),
                Some(have) if have.dtype != want.dtype || have.encoding != want.encoding => {
                    problems.push(format!(
                        "feature `{name}`: the model was trained on {} {:?}, the data has {} {:?}",
                        want.dtype, want.encoding, have.dtype, have.encoding
                    ))
                }
                Some(_) => {}
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Model {
                path: path.to_path_buf(),
                message: format!(
                    "{} model does not match the data's features:\n  {}",
                    self.model,
                    problems.join("\n  ")
                ),
            })
        }
    }
}

fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// The features of `manifest` that are columns of `df` (or the named ones,
/// which must be), except those in `exclude`.
fn choose_features(
    manifest: &Manifest,
    df: &DataFrame,
    named: &[String],
    exclude: &[&str],
    key: &str,
) -> Result<Vec<String>> {
    if !named.is_empty() {
        let missing: Vec<&String> = named
            .iter()
            .filter(|n| {
                !manifest.features.iter().any(|f| &f.name == *n) || df.column(n.as_str()).is_err()
            })
            .collect();
        if !missing.is_empty() {
            let valid: Vec<&str> = manifest.features.iter().map(|f| f.name.as_str()).collect();
            return Err(Error::Setting {
                key: key.into(),
                message: format!(
                    "not a feature of this model's rows: {}; features: {}",
                    missing
                        .iter()
                        .map(|m| format!("`{m}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    valid.join(", ")
                ),
            });
        }
        return Ok(named.to_vec());
    }
    Ok(manifest
        .features
        .iter()
        .filter(|f| df.column(&f.name).is_ok() && !exclude.contains(&f.name.as_str()))
        .map(|f| f.name.clone())
        .collect())
}

fn date_lit(d: NaiveDate) -> Expr {
    lit(epoch_days(d)).cast(DataType::Date)
}

fn first_date(df: &DataFrame, column: &str) -> Option<NaiveDate> {
    let c = df.column(column).ok()?.cast(&DataType::Int32).ok()?;
    let v = c.i32().ok()?.get(0)?;
    NaiveDate::from_ymd_opt(1970, 1, 1)?.checked_add_signed(chrono::Duration::days(v.into()))
}

/// Rows sorted by `date`; the latest `share` of them (from the first date
/// at the cut on) are the holdout; training keeps rows whose label window
/// (`date + window_days`) ends by the holdout's first date.
fn time_split(
    df: &DataFrame,
    date: &str,
    window_days: i64,
    share: f64,
    name: &str,
) -> Result<(DataFrame, DataFrame, NaiveDate)> {
    let sorted = df
        .sort(
            [date],
            SortMultipleOptions::default().with_maintain_order(true),
        )
        .map_err(Error::polars(format!("{name}: sort")))?;
    let n = sorted.height();
    let cut = ((n as f64) * (1.0 - share)).round() as usize;
    if cut < 100 || n.saturating_sub(cut) < 50 {
        return Err(Error::Fit {
            model: name.into(),
            message: format!(
                "{n} rows: too few to fit and hold out {:.0}%",
                share * 100.0
            ),
        });
    }
    let from = first_date(&sorted.slice(cut as i64, 1), date).ok_or_else(|| Error::Fit {
        model: name.into(),
        message: format!("no `{date}` at the holdout cut"),
    })?;
    let train = sorted
        .clone()
        .lazy()
        .filter(
            (col(date).cast(DataType::Int32) + lit(window_days as i32))
                .lt_eq(lit(epoch_days(from))),
        )
        .collect()
        .map_err(Error::polars(format!("{name}: training rows")))?;
    let test = sorted
        .lazy()
        .filter(col(date).gt_eq(date_lit(from)))
        .collect()
        .map_err(Error::polars(format!("{name}: holdout rows")))?;
    Ok((train, test, from))
}

/// [`time_split`] of the rows whose label is observed (`observed` true).
fn observed_split(
    df: &DataFrame,
    observed: &str,
    date: &str,
    window_days: u32,
    share: f64,
    name: &str,
) -> Result<(DataFrame, DataFrame, NaiveDate)> {
    let rows = df
        .clone()
        .lazy()
        .filter(col(observed))
        .collect()
        .map_err(Error::polars(format!(
            "{name} model: rows with an observed label"
        )))?;
    time_split(&rows, date, window_days as i64, share, name)
}

/// Fits the return model on the offers whose window is observed.
pub fn fit_return(
    offers: &DataFrame,
    manifest: &Manifest,
    window_days: u32,
    s: &TrainSettings,
    config_hash: &str,
) -> Result<ModelArtifact> {
    let (train, test, from) = observed_split(
        offers,
        f::WINDOW_OBSERVED,
        col::OFFERED_AT,
        window_days,
        s.holdout_share,
        "return",
    )?;
    let features = choose_features(
        manifest,
        &train,
        &s.return_features,
        &[],
        "train.return_features",
    )?;
    if let Some(bad) = s.interactions.iter().find(|n| !features.contains(n)) {
        return Err(Error::Setting {
            key: "train.interactions".into(),
            message: format!(
                "`{bad}` is not a feature of the return model; features: {}",
                features.join(", ")
            ),
        });
    }
    let problem = Problem {
        name: "return",
        manifest,
        features,
        train,
        test,
        arm_column: col::ARM.into(),
        arms: ARMS[1..].iter().map(|a| a.to_string()).collect(),
        interact: s.interactions.clone(),
        bands: Vec::new(),
    };
    let fitted = fit_binary(&problem, &Rows::Plain { label: f::RETURNED }, s)?;
    let mut artifact = ModelArtifact::new("return", f::RETURNED, fitted, from, config_hash, s);
    // Uplift of each arm over control among the held-out offers.
    let test = &problem.test;
    let y = bool_column(test, f::RETURNED)?;
    let arm: Vec<Option<String>> = test
        .column(col::ARM)
        .and_then(|c| c.str().cloned())
        .map_err(Error::polars("return model: arm"))?
        .iter()
        .map(|v| v.map(str::to_string))
        .collect();
    let arms: Vec<Option<&str>> = ARMS.iter().map(|a| Some(*a)).collect();
    let (p, _) = artifact.predict_arms(test, &arms)?;
    let p_control = &p[0];
    for (a, p_arm) in ARMS[1..].iter().zip(&p[1..]) {
        let rows: Vec<usize> = (0..test.height())
            .filter(|i| matches!(arm[*i].as_deref(), Some(x) if x == *a || x == ARMS[0]))
            .collect();
        let u: Vec<f64> = rows.iter().map(|i| p_arm[*i] - p_control[*i]).collect();
        let yy: Vec<bool> = rows.iter().map(|i| y[*i]).collect();
        let t: Vec<bool> = rows.iter().map(|i| arm[*i].as_deref() == Some(a)).collect();
        match qini(&u, &yy, &t) {
            Ok(q) => artifact.uplift.push((a.to_string(), q)),
            Err(e) => tracing::warn!(arm = a, "no Qini: {e}"),
        }
    }
    // The stored model is refitted on every offer with an observed window,
    // the held-out ones included (the evaluation above is of the model
    // fitted before the cut).
    let observed = offers
        .clone()
        .lazy()
        .filter(col(f::WINDOW_OBSERVED))
        .collect()
        .map_err(Error::polars("return model: rows with an observed label"))?;
    refit(
        &mut artifact,
        &Rows::Plain { label: f::RETURNED },
        &observed,
    )?;
    Ok(artifact)
}

/// Refits the artifact's learner on `df` with the same layout, learner
/// and hyper-parameters, and records the rows in its provenance.
fn refit(artifact: &mut ModelArtifact, rows: &Rows<'_>, df: &DataFrame) -> Result<()> {
    let (x, y) = rows.build(&artifact.layout, df)?;
    let names = artifact.layout.names();
    let model = artifact.model.clone();
    let fit_err = |e: winback_models::logistic::FitError| Error::Fit {
        model: model.clone(),
        message: e.to_string(),
    };
    artifact.learner = match &artifact.learner {
        Learner::Logistic(m) => Learner::Logistic(
            LogisticModel::fit(x.view(), &y, &names, m.alpha)
                .and_then(|r| r.with_covariance(x.view()))
                .map_err(fit_err)?,
        ),
        Learner::Boosted(m) => Learner::Boosted(Box::new(
            BoostedModel::fit(x.view(), &y, &names, m.params).map_err(fit_err)?,
        )),
    };
    artifact.provenance.refit_rows = Some(x.nrows());
    Ok(())
}

/// Fits the churn model on the stacked snapshots whose horizon is observed.
pub fn fit_churn(
    snapshots: &DataFrame,
    manifest: &Manifest,
    horizon_days: u32,
    s: &TrainSettings,
    config_hash: &str,
) -> Result<ModelArtifact> {
    let (train, test, from) = observed_split(
        snapshots,
        f::HORIZON_OBSERVED,
        f::AS_OF,
        horizon_days,
        s.holdout_share,
        "churn",
    )?;
    if train.height() == 0 {
        return Err(Error::Fit {
            model: "churn".into(),
            message: format!(
                "no snapshot's {horizon_days}-day horizon ends before the holdout ({from}); add snapshot dates"
            ),
        });
    }
    let features = choose_features(
        manifest,
        &train,
        &s.churn_features,
        &[f::LEAVE_REASON],
        "train.churn_features",
    )?;
    let problem = Problem {
        name: "churn",
        manifest,
        features,
        train,
        test,
        arm_column: String::new(),
        arms: Vec::new(),
        interact: Vec::new(),
        bands: Vec::new(),
    };
    let fitted = fit_binary(&problem, &Rows::Plain { label: f::CHURNED }, s)?;
    Ok(ModelArtifact::new(
        "churn",
        f::CHURNED,
        fitted,
        from,
        config_hash,
        s,
    ))
}

/// Expected monthly margin of a second lifetime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarginModel {
    /// Layout (design and arm columns).
    pub layout: Layout,
    /// Ridge regression of the mean monthly margin.
    pub ridge: Ridge,
    /// Holdout: rows, mean observed and predicted, RMSE, R².
    pub holdout: BTreeMap<String, f64>,
}

impl MarginModel {
    /// The linear form of each row of `df` (which must hold the
    /// `won_back_by` column) with the coefficients' covariance.
    pub fn linear_part(&self, df: &DataFrame) -> Result<LinearPart> {
        let (x, _) = self.layout.base(df, None)?;
        let x = to_array(x, self.layout.base_width())?;
        self.ridge.linear_part(x.view()).map_err(|e| Error::Fit {
            model: "second-lifetime margin".into(),
            message: e.to_string(),
        })
    }

    /// Expected monthly margin of each row (under `arm` when given).
    pub fn predict(&self, df: &DataFrame, arm: Option<&str>) -> Result<Vec<f64>> {
        let (x, _) = self.layout.base(df, arm)?;
        let x = to_array(x, self.layout.base_width())?;
        self.ridge.predict(x.view()).map_err(|e| Error::Fit {
            model: "second-lifetime margin".into(),
            message: e.to_string(),
        })
    }
}

/// Predicted against observed mean months retained, within the first
/// `months`, for one leave reason on the holdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DurationCheck {
    /// Leave reason (or `all`).
    pub leave_reason: String,
    /// Returns in the holdout.
    pub returns: usize,
    /// Months of the comparison.
    pub months: u32,
    /// Kaplan–Meier restricted mean months retained.
    pub observed: f64,
    /// Mean of the model's restricted mean months retained.
    pub predicted: f64,
}

/// The arm that won a return back, as the hazard's arm column.
pub const WON_BACK_BY: &str = "won_back_by";

/// Second lifetimes with the first lifetime's features (as of the
/// defection they followed) and `monthly_margin`: the margin per month of
/// the whole second lifetime before offer costs (the realised margin plus
/// the discount and upgrade cost `economics` says the winning arm gave
/// over the months retained), so the offer simulation can charge each
/// arm's own terms.
fn second_lifetime_rows(
    second: &DataFrame,
    lapsed: &DataFrame,
    economics: &Economics,
) -> Result<DataFrame> {
    let features = lapsed.clone().lazy().drop(cols([f::LEAVE_REASON])).rename(
        [col::CHURNED_AT],
        ["previous_churned_at"],
        true,
    );
    let df = second
        .clone()
        .lazy()
        .join(
            features,
            [col(col::SUBSCRIBER_ID), col("previous_churned_at")],
            [col(col::SUBSCRIBER_ID), col("previous_churned_at")],
            JoinArgs::new(JoinType::Inner),
        )
        .sort(
            [col::SUBSCRIBER_ID, f::RETURNED_AT],
            SortMultipleOptions::default().with_maintain_order(true),
        )
        .collect()
        .map_err(Error::polars("second-lifetime model: rows"))?;
    let months = f64_column(&df, f::MONTHS_RETAINED)?;
    let margin = f64_column(&df, f::SECOND_MARGIN)?;
    let text = |name: &str| -> Result<Vec<Option<String>>> {
        Ok(df
            .column(name)
            .and_then(|c| c.str().cloned())
            .map_err(Error::polars(format!("second-lifetime model: {name}")))?
            .iter()
            .map(|v| v.map(str::to_string))
            .collect())
    };
    let (arm, reason) = (text(WON_BACK_BY)?, text(f::LEAVE_REASON)?);
    // Bills of the second lifetime: the margin is per billed month (a
    // lifetime from the 20th of one month to the 10th of the sixth after
    // has seven bills in 5.7 months).
    let bills: Vec<f64> = df
        .column(f::SECOND_BILLS)
        .and_then(|c| c.cast(&DataType::Float64))
        .and_then(|c| c.f64().cloned())
        .map_err(Error::polars("second-lifetime model: bills"))?
        .iter()
        .zip(&months)
        .map(|(b, m)| b.unwrap_or(m.max(0.0).ceil()))
        .collect();
    let monthly: Vec<f64> = (0..df.height())
        .map(|i| {
            let a = Arm::ALL
                .iter()
                .copied()
                .find(|a| arm[i].as_deref() == Some(a.name()))
                .unwrap_or(Arm::Control);
            let r = reason[i]
                .as_deref()
                .and_then(|r| LEAVE_REASONS.iter().position(|x| *x == r))
                .unwrap_or(LEAVE_REASONS.len() - 1);
            let package = economics.package(a, r);
            let billed = bills[i].max(0.0) as u32;
            let cost: f64 = (1..=billed)
                .map(|t| economics.offer_cost_in_month(package, t))
                .sum();
            (margin[i] + cost) / bills[i].max(1.0)
        })
        .collect();
    // Durations in billed months: a return billed for k months churned in
    // month k of its second lifetime (or, censored, survived k months),
    // the month grid on which the simulation values S(t - 1).
    let billed_months: Vec<f64> = bills
        .iter()
        .zip(&months)
        .map(|(b, m)| if *b >= 1.0 { *b } else { *m })
        .collect();
    let mut df = df;
    df.with_column(Column::new("monthly_margin".into(), monthly))
        .and_then(|d| d.with_column(Column::new(f::MONTHS_RETAINED.into(), billed_months)))
        .map_err(Error::polars("second-lifetime model: monthly margin"))?;
    Ok(df)
}

/// The returns known before `d`: returned before it, durations censored
/// at it.
fn censor_at(df: &DataFrame, d: NaiveDate) -> Result<DataFrame> {
    let available = (lit(epoch_days(d)) - col(f::RETURNED_AT).cast(DataType::Int32))
        .cast(DataType::Float64)
        / lit(DAYS_PER_MONTH);
    let churned_before = col("next_churned_at")
        .is_not_null()
        .and(col("next_churned_at").lt(date_lit(d)));
    df.clone()
        .lazy()
        .filter(col(f::RETURNED_AT).lt(date_lit(d)))
        .with_columns([
            when(churned_before.clone())
                .then(col(f::MONTHS_RETAINED))
                .otherwise(available)
                .alias(f::MONTHS_RETAINED),
            when(churned_before)
                .then(col(f::CENSORED))
                .otherwise(lit(true))
                .alias(f::CENSORED),
        ])
        .collect()
        .map_err(Error::polars("second-lifetime model: training rows"))
}

/// Fits the second-lifetime hazard and margin models on returns joined to
/// the features of the defection they followed.
pub fn fit_second_lifetime(
    second: &DataFrame,
    lapsed: &DataFrame,
    manifest: &Manifest,
    economics: &Economics,
    s: &TrainSettings,
    config_hash: &str,
) -> Result<ModelArtifact> {
    let all = second_lifetime_rows(second, lapsed, economics)?;
    let (_, test, from) = time_split(&all, f::RETURNED_AT, 0, s.holdout_share, "second lifetime")?;
    // Training sees only what was known before the holdout: returns before
    // it, censored at its first day.
    let train = censor_at(&all, from)?;
    // The hazard's manifest adds the winning arm as a one-hot feature.
    let mut arms: Vec<String> = ARMS.iter().map(|a| a.to_string()).collect();
    arms.insert(0, "none".into());
    let mut hazard_manifest = manifest.clone();
    hazard_manifest.features.push(FeatureSpec {
        name: WON_BACK_BY.into(),
        dtype: "str".into(),
        encoding: Encoding::OneHot,
        sources: vec![
            "winback_offers.arm".into(),
            "reactivations.reactivated_at".into(),
        ],
        categories: arms,
    });
    let fill = |df: DataFrame| -> Result<DataFrame> {
        df.lazy()
            .with_column(col(WON_BACK_BY).fill_null(lit("none")))
            .collect()
            .map_err(Error::polars("second-lifetime model: won_back_by"))
    };
    let (train, test) = (fill(train)?, fill(test)?);
    let mut features = choose_features(manifest, &train, &[], &[], "")?;
    features.push(WON_BACK_BY.into());
    let problem = Problem {
        name: "second lifetime",
        manifest: &hazard_manifest,
        features,
        train,
        test,
        arm_column: String::new(),
        arms: Vec::new(),
        interact: Vec::new(),
        bands: s.hazard_bands.clone(),
    };
    let rows = Rows::Months {
        duration: f::MONTHS_RETAINED,
        censored: f::CENSORED,
        max_months: s.survival_months,
    };
    let fitted = fit_binary(&problem, &rows, s)?;
    let mut artifact = ModelArtifact::new(
        "second_lifetime",
        "churned_in_month",
        fitted,
        from,
        config_hash,
        s,
    );

    // Monthly margin: ridge on the returns with at least a month observed.
    let margin_rows = |df: &DataFrame| -> Result<DataFrame> {
        df.clone()
            .lazy()
            .filter(col(f::MONTHS_RETAINED).gt_eq(lit(1.0)))
            .collect()
            .map_err(Error::polars("second-lifetime margin: rows"))
    };
    let (mt, mv) = (margin_rows(&problem.train)?, margin_rows(&problem.test)?);
    let names: Vec<&str> = problem.features.iter().map(String::as_str).collect();
    let layout = Layout {
        design: Design::fit(&hazard_manifest, &mt, &names)?,
        arm_column: String::new(),
        arms: Vec::new(),
        interact: Vec::new(),
        bands: Vec::new(),
    };
    let (x, _) = layout.base(&mt, None)?;
    let x = to_array(x, layout.base_width())?;
    let y = f64_column(&mt, "monthly_margin")?;
    let ridge = Ridge::fit(x.view(), &y, &layout.names(), 0.01).map_err(|e| Error::Fit {
        model: "second-lifetime margin".into(),
        message: e.to_string(),
    })?;
    let mut margin = MarginModel {
        layout,
        ridge,
        holdout: BTreeMap::new(),
    };
    let pv = margin.predict(&mv, None)?;
    let yv = f64_column(&mv, "monthly_margin")?;
    let n = yv.len().max(1) as f64;
    let mean_y = yv.iter().sum::<f64>() / n;
    let sse: f64 = pv.iter().zip(&yv).map(|(p, y)| (p - y).powi(2)).sum();
    let sst: f64 = yv.iter().map(|y| (y - mean_y).powi(2)).sum();
    margin.holdout = BTreeMap::from([
        ("rows".to_string(), yv.len() as f64),
        ("observed_mean".to_string(), mean_y),
        ("predicted_mean".to_string(), pv.iter().sum::<f64>() / n),
        ("rmse".to_string(), (sse / n).sqrt()),
        ("r2".to_string(), 1.0 - sse / sst.max(f64::MIN_POSITIVE)),
    ]);
    artifact.margin = Some(margin);

    // Predicted against Kaplan–Meier mean months retained by leave reason.
    // Observed durations of the holdout returns are known only up to the
    // data's end: compare over at most half of the longest follow-up, so
    // the Kaplan-Meier curve rests on many subscribers at every month.
    let d = f64_column(&problem.test, f::MONTHS_RETAINED)?;
    let follow_up = d.iter().copied().fold(0.0, f64::max);
    let months = s
        .duration_check_months
        .min(s.survival_months)
        .min(((follow_up / 2.0).floor() as u32).max(1));
    let curves = artifact.survival(&problem.test, None, months)?;
    let rmst: Vec<f64> = curves
        .iter()
        .map(|c| survival::restricted_mean(c))
        .collect();
    let c = bool_column(&problem.test, f::CENSORED)?;
    let reason: Vec<String> = problem
        .test
        .column(f::LEAVE_REASON)
        .and_then(|c| c.str().cloned())
        .map_err(Error::polars("second-lifetime model: leave_reason"))?
        .iter()
        .map(|v| v.unwrap_or("unknown").to_string())
        .collect();
    let mut groups: Vec<String> = reason.clone();
    groups.sort();
    groups.dedup();
    groups.push("all".into());
    for g in groups {
        let rows: Vec<usize> = (0..d.len())
            .filter(|i| g == "all" || reason[*i] == g)
            .collect();
        if rows.len() < 20 {
            continue;
        }
        let dd: Vec<f64> = rows.iter().map(|i| d[*i]).collect();
        let cc: Vec<bool> = rows.iter().map(|i| c[*i]).collect();
        let km = survival::kaplan_meier(&dd, &cc, months);
        artifact.durations.push(DurationCheck {
            leave_reason: g,
            returns: rows.len(),
            months,
            observed: survival::restricted_mean(&km),
            predicted: rows.iter().map(|i| rmst[*i]).sum::<f64>() / rows.len() as f64,
        });
    }
    // The stored models are refitted on every return with its whole
    // follow-up (the evaluation above is of the models fitted before the
    // cut): same design, learner and hyper-parameters.
    let all = fill(all)?;
    refit(&mut artifact, &rows, &all)?;
    if let Some(margin) = artifact.margin.as_mut() {
        let rows_all = margin_rows(&all)?;
        let (xm, _) = margin.layout.base(&rows_all, None)?;
        let xm = to_array(xm, margin.layout.base_width())?;
        let ym = f64_column(&rows_all, "monthly_margin")?;
        margin.ridge =
            Ridge::fit(xm.view(), &ym, &margin.layout.names(), 0.01).map_err(|e| Error::Fit {
                model: "second-lifetime margin".into(),
                message: e.to_string(),
            })?;
    }
    Ok(artifact)
}

impl ModelArtifact {
    /// The kept learner's linear form on the rows of `df` under `arm`
    /// (see [`winback_models::uncertainty`]).
    pub fn linear_part(&self, df: &DataFrame, arm: Option<&str>) -> Result<LinearPart> {
        let (x, _) = self.layout.base(df, arm)?;
        let x = to_array(x, self.layout.base_width())?;
        self.learner.linear_part(x.view()).map_err(|e| Error::Fit {
            model: self.model.clone(),
            message: e.to_string(),
        })
    }

    /// Per row of `df` under `arm`, each feature's contribution to the
    /// log-odds (see [`Learner::contributions`]), summed over the feature's
    /// columns: the feature names and the row-major `n x features` values.
    pub fn contributions(
        &self,
        df: &DataFrame,
        arm: Option<&str>,
    ) -> Result<(Vec<String>, Vec<f64>)> {
        let (x, _) = self.layout.base(df, arm)?;
        let k = self.layout.base_width();
        let x = to_array(x, k)?;
        let c = self
            .learner
            .contributions(x.view())
            .map_err(|e| Error::Fit {
                model: self.model.clone(),
                message: e.to_string(),
            })?;
        let owners = self.layout.column_features();
        let mut names: Vec<String> = Vec::new();
        let index: Vec<Option<usize>> = owners
            .iter()
            .map(|o| {
                o.as_ref().map(|f| match names.iter().position(|n| n == f) {
                    Some(j) => j,
                    None => {
                        names.push(f.clone());
                        names.len() - 1
                    }
                })
            })
            .collect();
        let m = names.len();
        let mut out = vec![0.0; df.height() * m];
        for (i, row) in c.chunks_exact(k).enumerate() {
            for (v, j) in row.iter().zip(&index) {
                if let Some(j) = j {
                    out[i * m + j] += v;
                }
            }
        }
        Ok((names, out))
    }

    /// A hazard model's linear form per month band on the rows of `df`,
    /// with `arm` as the winning arm when given (else the frame's own
    /// `won_back_by`).
    pub fn hazard_parts(&self, df: &DataFrame, arm: Option<&str>) -> Result<Vec<LinearPart>> {
        let frame;
        let df = match arm {
            Some(a) => {
                frame = df
                    .clone()
                    .lazy()
                    .with_column(lit(a).alias(WON_BACK_BY))
                    .collect()
                    .map_err(Error::polars("second lifetime: arm"))?;
                &frame
            }
            None => df,
        };
        let (base, _) = self.layout.base(df, None)?;
        let kb = self.layout.base_width();
        let bands = &self.layout.bands;
        let k = kb + bands.len().saturating_sub(1);
        let n = df.height();
        let firsts: Vec<u32> = if bands.is_empty() {
            vec![1]
        } else {
            bands.clone()
        };
        firsts
            .iter()
            .map(|first| {
                let mut x = Vec::with_capacity(n * k);
                for i in 0..n {
                    x.extend_from_slice(&base[i * kb..(i + 1) * kb]);
                    x.extend(self.layout.band_row(*first));
                }
                let x = to_array(x, k)?;
                self.learner.linear_part(x.view()).map_err(|e| Error::Fit {
                    model: self.model.clone(),
                    message: e.to_string(),
                })
            })
            .collect()
    }

    /// Survival curves S(1..=months) of each row of `df` (a hazard model
    /// only), under `arm` as the winning arm when given.
    pub fn survival(
        &self,
        df: &DataFrame,
        arm: Option<&str>,
        months: u32,
    ) -> Result<Vec<Vec<f64>>> {
        let parts = self.hazard_parts(df, arm)?;
        let bands = &self.layout.bands;
        Ok((0..df.height())
            .map(|i| {
                let by_band: Vec<f64> = parts.iter().map(|p| p.predict_row(i, &p.coef)).collect();
                let h: Vec<f64> = (1..=months)
                    .map(|t| {
                        let b = bands.iter().rposition(|first| t >= *first).unwrap_or(0);
                        by_band[b]
                    })
                    .collect();
                survival::survival(&h)
            })
            .collect())
    }
}
