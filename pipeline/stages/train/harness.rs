//! The harness every model is fitted through: splits in time (training
//! labels that end before the holdout begins), matrices from frames, the
//! candidate learners side by side with cross-validated logistic steps and
//! penalties, holdout evaluation, the stored model's record, and the refit.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use ndarray::Array2;
use polars::prelude::*;
use winback_models::boosted::{
    BoostedModel, BoostedParams, CheckedBoostedParams, RowPlan, row_key,
};
use winback_models::error::FitError;
use winback_models::learner::{Classifier, Learner, PerArm};
use winback_models::logistic::{LogisticModel, Precision, Start, choose_alpha};
use winback_models::metrics;
use winback_models::survival;

use crate::error::{Error, Result};
use crate::schema::col;
use crate::stages::features::{Manifest, epoch_days};

use crate::artifact::design::{Design, DesignColumn};
use crate::artifact::evaluation::{Candidate, Effect, Evaluation, StepScore};
use crate::artifact::layout::{Layout, to_array};
use crate::artifact::split::{Split, SplitKind, subscriber_key};
use crate::artifact::{EvaluatedFit, FORMAT_VERSION, Model, ModelKind, Provenance};

use super::settings::{LearnerChoice, TrainSettings};

pub(crate) fn metric_error(e: metrics::MetricError) -> Error {
    Error::Fit {
        model: "evaluation".into(),
        message: e.to_string(),
    }
}

/// Evaluates predictions against outcomes.
pub fn evaluate(p: &[f64], y: &[bool]) -> Result<Evaluation> {
    let c = metrics::calibration(p, y, 10).map_err(metric_error)?;
    Ok(Evaluation {
        rows: p.len(),
        observed_rate: y.iter().filter(|v| **v).count() as f64 / y.len().max(1) as f64,
        mean_predicted: p.iter().sum::<f64>() / p.len().max(1) as f64,
        roc_auc: metrics::roc_auc(p, y).map_err(metric_error)?,
        pr_auc: metrics::pr_auc(p, y).map_err(metric_error)?,
        log_loss: metrics::log_loss(p, y).map_err(metric_error)?,
        brier: metrics::brier(p, y).map_err(metric_error)?,
        ece: c.ece,
        calibration_intercept: c.intercept,
        calibration_slope: c.slope,
        calibration: c.bins,
        gains: metrics::gains(p, y).map_err(metric_error)?,
    })
}

/// How rows of a frame become (matrix rows, labels) for one model.
pub(crate) enum Rows<'a> {
    /// One row per frame row, the label a boolean column.
    Plain { label: &'a str },
    /// Subscriber-months of durations (hazard models).
    Months {
        duration: &'a str,
        censored: &'a str,
        max_months: u32,
    },
}

pub(crate) fn bool_column(df: &DataFrame, name: &str) -> Result<Vec<bool>> {
    Ok(df
        .column(name)
        .and_then(|c| c.bool().cloned())
        .map_err(Error::polars(format!("model: column {name}")))?
        .iter()
        .map(|v| v.unwrap_or(false))
        .collect())
}

pub(crate) fn f64_column(df: &DataFrame, name: &str) -> Result<Vec<f64>> {
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

/// The matrix a model is fitted on, with a weight (the rows it stands
/// for) and a group (whose rows fall on one side of the trees' validation
/// split) per row where they apply.
struct Fitting {
    x: Array2<f64>,
    y: Vec<bool>,
    weights: Option<Vec<f64>>,
    groups: Option<Vec<usize>>,
}

impl Fitting {
    /// The rows they stand for (subscriber-months where weighted).
    fn count(&self) -> usize {
        weighted_count(&self.y, self.weights.as_deref())
    }

    /// Of them, the positives.
    fn positives(&self) -> usize {
        weighted_positives(&self.y, self.weights.as_deref())
    }

    /// [`fingerprint`] of the matrix and labels, with the weights.
    fn fingerprint(&self) -> String {
        let base = fingerprint(&self.x, &self.y);
        match &self.weights {
            None => base,
            Some(w) => {
                let mut h = u64::from_str_radix(&base, 16).unwrap_or(0);
                for v in w {
                    for b in v.to_bits().to_le_bytes() {
                        h ^= u64::from(b);
                        h = h.wrapping_mul(0x100000001b3);
                    }
                }
                format!("{h:016x}")
            }
        }
    }

    /// These rows at `rows` (positions).
    fn select(&self, rows: &[usize]) -> Fitting {
        let pick = |v: &Option<Vec<_>>| {
            v.as_ref()
                .map(|v: &Vec<_>| rows.iter().map(|i| v[*i]).collect())
        };
        Fitting {
            x: self.x.select(ndarray::Axis(0), rows),
            y: rows.iter().map(|i| self.y[*i]).collect(),
            weights: pick(&self.weights),
            groups: self
                .groups
                .as_ref()
                .map(|g| rows.iter().map(|i| g[*i]).collect()),
        }
    }

    fn fit_trees(
        &self,
        names: &[String],
        params: CheckedBoostedParams,
    ) -> std::result::Result<BoostedModel, FitError> {
        BoostedModel::fit_grouped(
            self.x.view(),
            &self.y,
            names,
            params,
            self.groups.as_deref(),
            self.weights.as_deref(),
        )
    }
}

/// A row of the subscriber-months grouped by subscriber, month band and
/// outcome ([`Rows::month_rows`]).
#[derive(Debug, Clone, Copy)]
struct MonthRow {
    /// The frame's row (the subscriber's lifetime): the row's group.
    row: usize,
    /// The band's first month, which sets its step columns.
    first: u32,
    /// Whether these months end with the event.
    label: bool,
    /// The months the row stands for: its weight.
    months: f64,
}

/// The fitting rows of `grouped` (of [`Rows::month_rows`] on `df`): each
/// its frame row's base columns and its band's step columns, weighted by
/// its months and grouped by its frame row.
fn month_fitting(layout: &Layout, df: &DataFrame, grouped: &[MonthRow]) -> Result<Fitting> {
    let (base, _) = layout.base(df, None)?;
    let kb = layout.base_width();
    let k = kb + layout.bands.len().saturating_sub(1);
    let mut x = Vec::with_capacity(grouped.len() * k);
    for r in grouped {
        x.extend_from_slice(&base[r.row * kb..(r.row + 1) * kb]);
        x.extend(layout.band_row(r.first));
    }
    Ok(Fitting {
        x: to_array(x, k)?,
        y: grouped.iter().map(|r| r.label).collect(),
        weights: Some(grouped.iter().map(|r| r.months).collect()),
        groups: Some(grouped.iter().map(|r| r.row).collect()),
    })
}

impl Rows<'_> {
    /// The rows a model is fitted on: for plain rows the matrix of
    /// [`Rows::build`] with no weights or groups; for subscriber-months,
    /// one row per subscriber, month band and outcome, weighted by its
    /// months (a subscriber's months of one band share every column, so
    /// the logistic likelihood and the trees' sums of gradients are those
    /// of every month, from a fraction of the rows), grouped by subscriber
    /// (the frame's row).
    fn fitting(&self, layout: &Layout, df: &DataFrame) -> Result<Fitting> {
        let Rows::Months { .. } = self else {
            let (x, y) = self.build(layout, df)?;
            let weights = match df.column(ROW_WEIGHT) {
                Ok(_) => Some(f64_column(df, ROW_WEIGHT)?),
                Err(_) => None,
            };
            return Ok(Fitting {
                x,
                y,
                weights,
                groups: None,
            });
        };
        let grouped = self.month_rows(layout, df)?;
        month_fitting(layout, df, &grouped)
    }

    /// For subscriber-months, the rows of [`Rows::fitting`] without their
    /// columns, in its order: per frame row and month band, the band's
    /// first month and the months without, then with, the event (a row
    /// for each count that is not zero). Empty for plain rows.
    fn month_rows(&self, layout: &Layout, df: &DataFrame) -> Result<Vec<MonthRow>> {
        let Rows::Months {
            duration,
            censored,
            max_months,
        } = self
        else {
            return Ok(Vec::new());
        };
        let d = f64_column(df, duration)?;
        let c = bool_column(df, censored)?;
        let bands = layout.bands.len().max(1);
        let mut rows = Vec::new();
        let mut count: Vec<(u32, f64, f64)> = vec![(0, 0.0, 0.0); bands];
        for i in 0..df.height() {
            // Per band: its first month, months without and with the event.
            count.fill((0, 0.0, 0.0));
            for (t, e) in survival::person_months(d[i], c[i], *max_months) {
                let b = layout
                    .bands
                    .iter()
                    .rposition(|first| t >= *first)
                    .unwrap_or(0);
                let slot = &mut count[b];
                if slot.1 + slot.2 == 0.0 {
                    slot.0 = t;
                }
                if e {
                    slot.2 += 1.0;
                } else {
                    slot.1 += 1.0;
                }
            }
            for &(first, without, with) in &count {
                for (label, months) in [(false, without), (true, with)] {
                    if months > 0.0 {
                        rows.push(MonthRow {
                            row: i,
                            first,
                            label,
                            months,
                        });
                    }
                }
            }
        }
        Ok(rows)
    }

    /// A seeded subsample of at most `max` of [`Rows::fitting`]'s rows
    /// (the cross-validation's): the frame's rows, or the subscriber-months'
    /// grouped rows, are drawn first, so the matrix of the rest is never
    /// built.
    fn sample(&self, layout: &Layout, df: &DataFrame, max: usize, seed: u64) -> Result<Fitting> {
        if let Rows::Plain { .. } = self {
            let sub = subsample(df.height(), max, seed);
            if sub.len() < df.height() {
                let idx =
                    IdxCa::from_vec("rows".into(), sub.iter().map(|i| *i as IdxSize).collect());
                let part = df
                    .take(&idx)
                    .map_err(Error::polars("model: cross-validation rows"))?;
                return self.fitting(layout, &part);
            }
            return self.fitting(layout, df);
        }
        let mut grouped = self.month_rows(layout, df)?;
        let sub = subsample(grouped.len(), max, seed);
        if sub.len() < grouped.len() {
            grouped = sub.iter().map(|&i| grouped[i]).collect();
        }
        month_fitting(layout, df, &grouped)
    }

    /// `predict` of the design of `df`'s rows ([`Rows::build`]), with its
    /// labels, built and predicted [`HOLDOUT_BLOCK`] frame rows at a time:
    /// a holdout's design (a million rows of a step design at 1M
    /// subscribers, with the standardised copy a prediction makes) is never
    /// whole in memory. The next block's design is built while this one's
    /// rows are predicted (`rayon::join`, on the pool the caller runs on),
    /// so at most two are held; building one is partly serial (a million
    /// rows' holdout took 2.6 s at about 1.15 cores, one block after the
    /// other). Each row's prediction is its own, so the values are those
    /// of the whole design.
    fn predict(
        &self,
        layout: &Layout,
        df: &DataFrame,
        predict: impl Fn(ndarray::ArrayView2<f64>) -> Result<Vec<f64>> + Sync,
    ) -> Result<(Vec<f64>, Vec<bool>)> {
        in_blocks(
            df,
            HOLDOUT_BLOCK,
            |part| self.build(layout, part),
            |x| predict(x.view()),
        )
    }

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

/// Frame rows of a holdout predicted at a time ([`Rows::predict`]).
const HOLDOUT_BLOCK: usize = 1 << 18;

/// `predict` of what `build` makes of consecutive slices of at most
/// `block` rows of `df`, with `build`'s labels, end to end (none for a
/// frame without rows). The next slice is built while this one is
/// predicted (`rayon::join`, on the caller's pool), so at most two built
/// slices are held. The first error, in the slices' order, ends it.
fn in_blocks<X: Send + Sync>(
    df: &DataFrame,
    block: usize,
    build: impl Fn(&DataFrame) -> Result<(X, Vec<bool>)> + Sync,
    predict: impl Fn(&X) -> Result<Vec<f64>> + Sync,
) -> Result<(Vec<f64>, Vec<bool>)> {
    let block = block.max(1);
    let build_at = |start: usize| build(&df.slice(start as i64, block));
    let mut starts = (0..df.height()).step_by(block);
    let (mut p, mut y) = (Vec::new(), Vec::new());
    let Some(first) = starts.next() else {
        return Ok((p, y));
    };
    let mut built = build_at(first)?;
    loop {
        let (x, by) = built;
        let next = starts.next();
        let (following, bp) = rayon::join(|| next.map(build_at), || predict(&x));
        drop(x);
        p.extend(bp?);
        y.extend(by);
        match following {
            Some(b) => built = b?,
            None => return Ok((p, y)),
        }
    }
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
    /// The kept learner's predictions on the holdout's matrix rows (one
    /// per frame row for [`Rows::Plain`]), in their order.
    pub holdout_scores: Vec<f64>,
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
    /// Rare-event sampling of the logistic candidate's plain rows: every
    /// row of the rarer class and at most this many of the other per rare
    /// row, weighted back to their share (0: every row).
    pub rare_event_ratio: f64,
}

/// The weight column [`rare_event_frame`] adds: the rows each row of a
/// sample stands for.
const ROW_WEIGHT: &str = "__row_weight";

/// Every row of `df` whose `label` is the rarer value and a seeded draw of
/// at most `ratio` of the others per rare row, with a [`ROW_WEIGHT`]
/// column: 1 for the rare rows, the inverse of the share drawn for the
/// others (the weighted likelihood is then an unbiased estimate of the
/// full one: calibrated probabilities from a fraction of the rows). `df`
/// itself when `ratio` is 0 or the rarer class is not that rare.
pub(crate) fn rare_event_frame(
    df: &DataFrame,
    label: &str,
    ratio: f64,
    seed: u64,
) -> Result<DataFrame> {
    let y = bool_column(df, label)?;
    let positives = y.iter().filter(|v| **v).count();
    let common = positives * 2 > y.len();
    let rare = if common {
        y.len() - positives
    } else {
        positives
    };
    let many = y.len() - rare;
    if ratio == 0.0 || rare == 0 || many as f64 <= ratio * rare as f64 {
        return Ok(df.clone());
    }
    let cut = (ratio * rare as f64 / many as f64 * u64::MAX as f64) as u64;
    let salt = seed ^ 0x0005_EED0_F5A3_F1E5;
    let keep: Vec<bool> = (0..y.len())
        .map(|i| y[i] != common || row_key(salt, i) < cut)
        .collect();
    let drawn = (0..y.len()).filter(|i| keep[*i] && y[*i] == common).count();
    let weight = many as f64 / drawn.max(1) as f64;
    let weights: Vec<f64> = (0..y.len())
        .filter(|i| keep[*i])
        .map(|i| if y[i] == common { weight } else { 1.0 })
        .collect();
    let mut sample = df
        .filter(&BooleanChunked::from_slice("keep".into(), &keep))
        .map_err(Error::polars("model: rare-event sample"))?;
    sample
        .with_column(Column::new(ROW_WEIGHT.into(), weights))
        .map_err(Error::polars("model: rare-event sample"))?;
    Ok(sample)
}

/// The rows labelled `y` stand for, with their weights.
fn weighted_count(y: &[bool], weights: Option<&[f64]>) -> usize {
    weights.map_or(y.len(), |w| w.iter().sum::<f64>().round() as usize)
}

/// Of them, the positives.
fn weighted_positives(y: &[bool], weights: Option<&[f64]>) -> usize {
    let w = |i: usize| weights.map_or(1.0, |w| w[i]);
    (0..y.len()).filter(|i| y[*i]).map(w).sum::<f64>().round() as usize
}

/// A fingerprint of a matrix and its labels (hex): FNV-1a over the shape
/// and the labels, then the matrix a 64-bit word at a time.
pub(crate) fn fingerprint(x: &Array2<f64>, y: &[bool]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    let mut eat = |b: &[u8]| {
        for v in b {
            h ^= u64::from(*v);
            h = h.wrapping_mul(0x100000001b3);
        }
    };
    eat(&(x.nrows() as u64).to_le_bytes());
    eat(&(x.ncols() as u64).to_le_bytes());
    for v in y {
        eat(&[u8::from(*v)]);
    }
    // The matrix a word at a time (eight times fewer steps than by byte:
    // a design of millions of rows is hashed in a fraction of a second).
    for v in x.iter() {
        h = (h ^ v.to_bits())
            .wrapping_mul(0x100000001b3)
            .rotate_left(23);
    }
    format!("{h:016x}")
}

pub(crate) fn layout_for(p: &Problem<'_>, bins: usize) -> Result<Layout> {
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
pub(crate) fn subsample(n: usize, max: usize, seed: u64) -> Vec<usize> {
    if n <= max {
        return (0..n).collect();
    }
    let mut keyed: Vec<(u64, usize)> = (0..n).map(|i| (row_key(seed, i), i)).collect();
    keyed.select_nth_unstable(max - 1);
    let mut rows: Vec<usize> = keyed[..max].iter().map(|(_, i)| *i).collect();
    rows.sort_unstable();
    rows
}

/// Fits the candidate learners of `problem` and keeps the one with the
/// lowest holdout log loss (see the module documentation).
pub(crate) fn fit_binary(
    problem: &Problem<'_>,
    rows: &Rows<'_>,
    s: &TrainSettings,
) -> Result<Fitted> {
    let fits = fit_candidates(problem, rows, s)?;
    let best = fits.lowest_log_loss();
    Ok(fits.keep(best))
}

/// A fitted candidate learner with its layout and holdout evaluation.
#[derive(Debug, Clone)]
pub(crate) struct Kept {
    pub layout: Layout,
    pub learner: Learner,
    pub holdout: Evaluation,
    /// Its predictions on the holdout's matrix rows, in their order.
    pub scores: Vec<f64>,
}

/// Every candidate of a model, fitted and evaluated on the holdout, with
/// what is recorded of the selection.
#[derive(Debug, Clone)]
pub(crate) struct Candidates {
    /// The fits, in the order of `candidates`.
    pub kept: Vec<Kept>,
    /// Their records.
    pub candidates: Vec<Candidate>,
    /// Cross-validation of the logistic candidates.
    pub steps: Vec<StepScore>,
    /// Terms of the logistic candidate and the trees' importances.
    pub effects: Vec<Effect>,
    /// Training rows, positives and fingerprint.
    pub training: (usize, usize, String),
    /// Quantile steps the logistic candidate's cross-validation chose.
    pub step_bins: Option<usize>,
}

impl Candidates {
    /// The candidate with the lowest holdout log loss.
    pub fn lowest_log_loss(&self) -> usize {
        (0..self.kept.len())
            .min_by(|a, b| {
                self.kept[*a]
                    .holdout
                    .log_loss
                    .total_cmp(&self.kept[*b].holdout.log_loss)
            })
            .expect("at least one learner")
    }

    /// Candidate `i` alone (its fit and record, not the others'), for a
    /// model of it that only predicts.
    pub fn only(&self, i: usize) -> Candidates {
        Candidates {
            kept: vec![self.kept[i].clone()],
            candidates: vec![self.candidates[i].clone()],
            steps: Vec::new(),
            effects: Vec::new(),
            training: self.training.clone(),
            step_bins: self.step_bins,
        }
    }

    /// Adds a candidate.
    pub fn push(&mut self, kept: Kept, candidate: Candidate) {
        self.kept.push(kept);
        self.candidates.push(candidate);
    }

    /// The model of candidate `best`, with every candidate's record.
    pub fn keep(mut self, best: usize) -> Fitted {
        let chosen = self.candidates[best].learner.clone();
        let Kept {
            layout,
            learner,
            holdout,
            scores,
        } = self.kept.swap_remove(best);
        // One learner's candidates share their terms (the logistic's
        // coefficients beside the trees' importances); a learner per arm
        // has terms of its own.
        let effects = match learner {
            Learner::PerArm(_) => effects_of(&layout, &learner),
            _ => self.effects,
        };
        Fitted {
            layout,
            learner,
            chosen,
            candidates: self.candidates,
            steps: self.steps,
            holdout,
            holdout_scores: scores,
            effects,
            training_rows: self.training.0,
            training_positives: self.training.1,
            fingerprint: self.training.2,
        }
    }
}

/// Fits the candidate learners of `problem`, each evaluated on the
/// holdout (see the module documentation).
///
/// The trees are fitted before the logistic candidate, though recorded
/// after it. Their rounds have serial steps: left alone at the end of
/// `train` on this 2-core machine, the churn trees kept 150% of the cores
/// busy at 1M subscribers (a per-second CPU sample), while the process
/// held 190 to 200% as long as the other models were fitted beside them.
/// Fitted first, the trees share the cores with the other models' fits,
/// and what runs alone at the end is the logistic (100 to 195% in the
/// same kind of sample). Each fit is the same in either order.
pub(crate) fn fit_candidates(
    problem: &Problem<'_>,
    rows: &Rows<'_>,
    s: &TrainSettings,
) -> Result<Candidates> {
    let with_logistic = s.learner != LearnerChoice::Boosted;
    let trees = if s.learner != LearnerChoice::Logistic {
        Some(boosted_candidate(problem, rows, s, !with_logistic)?)
    } else {
        None
    };
    let linear = if with_logistic {
        Some(logistic_candidate(problem, rows, s)?)
    } else {
        None
    };
    let mut out = Candidates {
        kept: Vec::new(),
        candidates: Vec::new(),
        steps: Vec::new(),
        effects: Vec::new(),
        training: (0, 0, String::new()),
        step_bins: None,
    };
    if let Some(l) = linear {
        out.steps = l.steps;
        out.step_bins = Some(l.bins);
        out.effects = l.effects;
        out.training = l.fit.training.clone();
        out.push_fit(l.fit);
    }
    if let Some(fit) = trees {
        if let Learner::Boosted(m) = &fit.learner {
            add_importances(&mut out.effects, m);
        }
        if out.training.0 == 0 {
            out.training = fit.training.clone();
        }
        out.push_fit(fit);
    }
    Ok(out)
}

/// One candidate learner, fitted and evaluated on the holdout.
struct CandidateFit {
    layout: Layout,
    learner: Learner,
    holdout: Evaluation,
    /// Its predictions on the holdout's matrix rows.
    scores: Vec<f64>,
    candidate: Candidate,
    /// Training rows, positives and fingerprint (of the rows it was fitted
    /// on; empty when not asked for).
    training: (usize, usize, String),
}

impl Candidates {
    fn push_fit(&mut self, fit: CandidateFit) {
        self.push(
            Kept {
                layout: fit.layout,
                learner: fit.learner,
                holdout: fit.holdout,
                scores: fit.scores,
            },
            fit.candidate,
        );
    }
}

/// The logistic candidate with its cross-validation.
struct LogisticCandidate {
    fit: CandidateFit,
    /// Cross-validation of each step count.
    steps: Vec<StepScore>,
    /// The step count chosen.
    bins: usize,
    /// Its terms.
    effects: Vec<Effect>,
}

/// A fit's error as the pipeline's, naming the model `name`.
fn candidate_error(name: &str) -> impl Fn(FitError) -> Error + Copy + '_ {
    move |e| Error::Fit {
        model: name.to_string(),
        message: e.to_string(),
    }
}

/// The logistic candidate: the step count and penalty chosen by
/// cross-validation on a subsample, then fitted on every training row (the
/// rare-event draw's, weighted back, where the problem samples).
fn logistic_candidate(
    problem: &Problem<'_>,
    rows: &Rows<'_>,
    s: &TrainSettings,
) -> Result<LogisticCandidate> {
    let fit_err = candidate_error(problem.name);
    let mut steps = Vec::new();
    let sampled = match rows {
        Rows::Plain { label } if problem.rare_event_ratio > 0.0 => Some(rare_event_frame(
            &problem.train,
            label,
            problem.rare_event_ratio,
            s.seed,
        )?),
        _ => None,
    };
    let train = sampled.as_ref().unwrap_or(&problem.train);
    let mut best: Option<(f64, Layout, f64, usize)> = None;
    for &bins in &s.step_bins {
        let _span = tracing::debug_span!("cross-validation", model = problem.name, bins).entered();
        let layout = layout_for(problem, bins)?;
        let cv = rows.sample(&layout, train, s.cv_max_rows, s.seed)?;
        let (alpha, scores) = choose_alpha(
            cv.x.view(),
            &cv.y,
            cv.weights.as_deref(),
            &layout.names(),
            &s.alphas,
            s.folds,
            s.seed,
        )
        .map_err(&fit_err)?;
        let loss = scores
            .iter()
            .find(|a| a.alpha == alpha)
            .map(|a| a.mean_log_loss)
            .unwrap_or(f64::INFINITY);
        crate::progress::note(format!("{} model: logistic candidates", problem.name));
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
    let span = tracing::debug_span!("logistic fit", model = problem.name, bins).entered();
    let f = rows.fitting(&layout, train)?;
    let training = (f.count(), f.positives(), f.fingerprint());
    // Started from the chosen penalty's fit on the cross-validation
    // subsample: the same optimum in fewer passes over every row.
    let sub = subsample(f.x.nrows(), s.cv_max_rows, s.seed);
    let names = layout.names();
    let screening = if sub.len() < f.x.nrows() {
        let cv = f.select(&sub);
        Some(
            LogisticModel::fit_to(
                cv.x.view(),
                &cv.y,
                cv.weights.as_deref(),
                &names,
                alpha,
                None,
                Precision::Screening,
            )
            .map_err(&fit_err)?,
        )
    } else {
        None
    };
    let model = LogisticModel::fit_owned(
        f.x,
        &f.y,
        f.weights.as_deref(),
        &names,
        alpha,
        screening.as_ref().map_or(Start::BaseRate, Start::From),
        Precision::Final,
        true,
    )
    .map_err(&fit_err)?;
    drop(span);
    let (p, yv) = rows.predict(&layout, &problem.test, |x| {
        model.predict(x).map_err(&fit_err)
    })?;
    let holdout = evaluate(&p, &yv)?;
    let effects = logistic_effects(&layout, &model);
    let candidate = Candidate {
        learner: "logistic".into(),
        hyper_parameters: BTreeMap::from([
            ("step_bins".to_string(), bins as f64),
            ("alpha".to_string(), alpha),
        ]),
        holdout: holdout.clone(),
        uplift: Vec::new(),
        policy_value: None,
    };
    Ok(LogisticCandidate {
        fit: CandidateFit {
            layout,
            learner: Learner::Logistic(model),
            holdout,
            scores: p,
            candidate,
            training,
        },
        steps,
        bins,
        effects,
    })
}

/// The boosted candidate; `training` asks for its training rows' count,
/// positives and fingerprint.
fn boosted_candidate(
    problem: &Problem<'_>,
    rows: &Rows<'_>,
    s: &TrainSettings,
    training: bool,
) -> Result<CandidateFit> {
    let fit_err = candidate_error(problem.name);
    crate::progress::note(format!("{} model: boosted candidate", problem.name));
    let _span = tracing::debug_span!("boosted fit", model = problem.name).entered();
    let layout = layout_for(problem, 0)?;
    let params = BoostedParams {
        seed: s.seed,
        ..s.boosted
    };
    let checked = params.check().map_err(&fit_err)?;
    let mut counted = (0, 0, String::new());
    let model = match rows {
        // Rows the rare-event draw leaves out are never built: the
        // plan, from the labels alone, says which rows the trees read.
        Rows::Plain { label } if params.rare_event_ratio > 0.0 => {
            let y = bool_column(&problem.train, label)?;
            let weights = match problem.train.column(ROW_WEIGHT) {
                Ok(_) => Some(f64_column(&problem.train, ROW_WEIGHT)?),
                Err(_) => None,
            };
            let plan = RowPlan::new(&y, checked, None, weights.as_deref()).map_err(&fit_err)?;
            let read = plan.read();
            let idx = IdxCa::from_vec(
                "".into(),
                read.iter().map(|&i| i as IdxSize).collect::<Vec<_>>(),
            );
            let part = problem
                .train
                .take(&idx)
                .map_err(Error::polars("model: the rows the trees read"))?;
            let (x, _) = rows.build(&layout, &part)?;
            drop(part);
            if training {
                // Every training row counted; the rows read printed.
                let w = weights.as_deref();
                let read_y: Vec<bool> = read.iter().map(|&i| y[i]).collect();
                counted = (
                    weighted_count(&y, w),
                    weighted_positives(&y, w),
                    fingerprint(&x, &read_y),
                );
            }
            // The matrix goes to the fit, which drops it once copied.
            BoostedModel::fit_read(x, &y, &layout.names(), checked, &plan, weights.as_deref())
                .map_err(&fit_err)?
        }
        _ => {
            let trees = rows.fitting(&layout, &problem.train)?;
            if training {
                counted = (trees.count(), trees.positives(), trees.fingerprint());
            }
            trees
                .fit_trees(&layout.names(), checked)
                .map_err(&fit_err)?
        }
    };
    let (p, yv) = rows.predict(&layout, &problem.test, |x| {
        model.predict(x).map_err(&fit_err)
    })?;
    let holdout = evaluate(&p, &yv)?;
    tracing::info!(
        model = problem.name,
        trees = model.trees,
        log_loss = holdout.log_loss,
        "boosted candidate"
    );
    let candidate = Candidate {
        learner: "boosted".into(),
        hyper_parameters: BTreeMap::from([
            ("trees".to_string(), model.trees as f64),
            ("learning_rate".to_string(), model.params.learning_rate),
            ("max_depth".to_string(), model.params.max_depth as f64),
        ]),
        holdout: holdout.clone(),
        uplift: Vec::new(),
        policy_value: None,
    };
    Ok(CandidateFit {
        layout,
        learner: Learner::Boosted(Box::new(model)),
        holdout,
        scores: p,
        candidate,
        training: counted,
    })
}

/// A logistic model's terms: coefficient per raw unit, odds ratio, per SD.
fn logistic_effects(layout: &Layout, model: &LogisticModel) -> Vec<Effect> {
    let (_, raw) = model.raw_coefficients();
    layout
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
        .collect()
}

/// The trees' shares of split gain, added to the terms of the same name.
fn add_importances(effects: &mut Vec<Effect>, model: &BoostedModel) {
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
}

/// The terms of one learner; a learner per arm's are each arm's learner's,
/// named `term | arm=<arm>`.
fn effects_of(layout: &Layout, learner: &Learner) -> Vec<Effect> {
    match learner {
        Learner::Logistic(m) => logistic_effects(layout, m),
        Learner::Boosted(m) => {
            let mut e = Vec::new();
            add_importances(&mut e, m);
            e
        }
        Learner::PerArm(m) => {
            // Each learner's terms on the columns it takes, named by its
            // arm or its month band.
            let (base, groups) = if m.steps {
                let base = Layout {
                    bands: Vec::new(),
                    ..layout.clone()
                };
                let bands = layout.bands.iter().map(|b| format!("band={b}")).collect();
                (base, bands)
            } else {
                let arms = arm_names(layout)
                    .into_iter()
                    .map(|a| format!("{}={a}", layout.arm_column))
                    .collect::<Vec<_>>();
                (without_arms(layout), arms)
            };
            m.learners
                .iter()
                .zip(groups)
                .flat_map(|(l, group)| {
                    effects_of(&base, l).into_iter().map(move |mut e| {
                        e.term = format!("{} | {group}", e.term);
                        e
                    })
                })
                .collect()
        }
    }
}

/// The layout's arms in a learner per arm's order: the reference (every
/// arm without columns, `control` in the return model) first.
pub(crate) fn arm_names(layout: &Layout) -> Vec<String> {
    std::iter::once(crate::schema::ARMS[0].to_string())
        .chain(layout.arms.iter().cloned())
        .collect()
}

/// The layout without arm and interaction columns: what each learner of a
/// learner per arm takes.
pub(crate) fn without_arms(layout: &Layout) -> Layout {
    Layout {
        arms: Vec::new(),
        interact: Vec::new(),
        ..layout.clone()
    }
}

/// The rows of `df` of each arm of `layout`, in a learner per arm's order:
/// the reference's (every row whose arm is none of the layout's, as its
/// columns score it) first.
pub(crate) fn rows_by_arm(df: &DataFrame, layout: &Layout) -> Result<Vec<DataFrame>> {
    let column = &layout.arm_column;
    let arm: Vec<usize> = df
        .column(column)
        .and_then(|c| c.str().cloned())
        .map_err(Error::polars(format!("model: column {column}")))?
        .iter()
        .map(|v| {
            v.and_then(|v| layout.arms.iter().position(|a| a == v))
                .map_or(0, |j| j + 1)
        })
        .collect();
    (0..=layout.arms.len())
        .map(|j| {
            let mask: Vec<bool> = arm.iter().map(|a| *a == j).collect();
            df.filter(&BooleanChunked::from_slice("arm".into(), &mask))
                .map_err(Error::polars(format!("model: rows of arm {j}")))
        })
        .collect()
}

/// Fits a learner per arm (the T-learner) of `kind` on `problem`: each
/// arm's training rows alone, on the features without arm columns, the
/// logistic's penalty cross-validated per arm on `bins` quantile steps
/// (the pooled candidate's choice); evaluated on the holdout like the
/// pooled candidates.
pub(crate) fn fit_per_arm(
    problem: &Problem<'_>,
    rows: &Rows<'_>,
    s: &TrainSettings,
    kind: LearnerChoice,
    bins: usize,
) -> Result<(Kept, Candidate)> {
    let mut layout = layout_for(problem, bins)?;
    layout.interact.clear();
    let base = without_arms(&layout);
    let parts = rows_by_arm(&problem.train, &layout)?
        .iter()
        .zip(arm_names(&layout))
        .map(|(part, arm)| Ok((format!("arm {arm}"), arm, rows.fitting(&base, part)?)))
        .collect::<Result<Vec<_>>>()?;
    fit_groups(problem, rows, s, kind, "arm", layout, bins, parts)
}

/// Fits a learner per month band of a hazard `problem` of `kind`: each
/// band's subscriber-months alone, on the columns without the bands (so
/// every feature's effect may change with the months since the return),
/// the logistic's penalty cross-validated per band on `bins` quantile
/// steps; evaluated on the holdout like the pooled candidates.
pub(crate) fn fit_per_band(
    problem: &Problem<'_>,
    rows: &Rows<'_>,
    s: &TrainSettings,
    kind: LearnerChoice,
    bins: usize,
) -> Result<(Kept, Candidate)> {
    let layout = layout_for(problem, bins)?;
    let width = layout.base_width();
    let f = rows.fitting(&layout, &problem.train)?;
    let parts = by_steps(&f, width, layout.bands.len().max(1))
        .into_iter()
        .zip(&layout.bands)
        .map(|(part, first)| {
            (
                format!("the band from month {first}"),
                first.to_string(),
                part,
            )
        })
        .collect();
    drop(f);
    fit_groups(problem, rows, s, kind, "band", layout, bins, parts)
}

/// Fits a learner of `kind` on each group's rows (`parts`: the group as
/// named in messages, as named in hyper-parameters, its rows on the
/// columns of `layout` before the group columns, one fewer than the
/// groups), the logistic's penalty cross-validated per group on `bins`
/// quantile steps; the learners as one ([`PerArm`], routed by arm indicators or,
/// for `band` groups, by steps), evaluated on the holdout.
#[allow(clippy::too_many_arguments)]
fn fit_groups(
    problem: &Problem<'_>,
    rows: &Rows<'_>,
    s: &TrainSettings,
    kind: LearnerChoice,
    by: &str,
    layout: Layout,
    bins: usize,
    parts: Vec<(String, String, Fitting)>,
) -> Result<(Kept, Candidate)> {
    let fit_err = candidate_error(problem.name);
    let label = match kind {
        LearnerChoice::Boosted => format!("boosted_per_{by}"),
        _ => format!("logistic_per_{by}"),
    };
    crate::progress::note(format!("{} model: {label} candidate", problem.name));
    let _span = tracing::debug_span!("fit per group", model = problem.name, %label).entered();
    let names = layout.names();
    let width = (names.len() + 1).saturating_sub(parts.len());
    let mut learners = Vec::with_capacity(parts.len());
    let mut hyper = BTreeMap::from([("step_bins".to_string(), bins as f64)]);
    // The groups share the model's cross-validation budget
    // (`train.cv_max_rows`): five arms cross-validate on as many rows in
    // all as one pooled model does.
    let cv_rows = s.cv_max_rows.div_ceil(parts.len().max(1));
    for (group, key, part) in parts {
        let positives = part.positives();
        if positives == 0 || positives == part.count() {
            return Err(Error::Fit {
                model: problem.name.to_string(),
                message: format!(
                    "{label}: {group} has {} rows, {positives} of them positive: no model of its own",
                    part.count()
                ),
            });
        }
        let learner = if kind == LearnerChoice::Boosted {
            let params = BoostedParams {
                seed: s.seed,
                ..s.boosted
            };
            let m = part
                .fit_trees(&names[..width], params.check().map_err(fit_err)?)
                .map_err(fit_err)?;
            hyper.insert(format!("trees[{key}]"), m.trees as f64);
            Learner::Boosted(Box::new(m))
        } else {
            let cv = part.select(&subsample(part.x.nrows(), cv_rows, s.seed));
            let (alpha, _) = choose_alpha(
                cv.x.view(),
                &cv.y,
                cv.weights.as_deref(),
                &names[..width],
                &s.alphas,
                s.folds,
                s.seed,
            )
            .map_err(fit_err)?;
            drop(cv);
            hyper.insert(format!("alpha[{key}]"), alpha);
            Learner::Logistic(
                LogisticModel::fit_owned(
                    part.x,
                    &part.y,
                    part.weights.as_deref(),
                    &names[..width],
                    alpha,
                    Start::BaseRate,
                    Precision::Final,
                    true,
                )
                .map_err(fit_err)?,
            )
        };
        learners.push(learner);
    }
    let per = if by == "band" {
        PerArm::by_steps(names, width, learners)
    } else {
        PerArm::new(names, width, learners)
    };
    let learner = Learner::PerArm(per.map_err(fit_err)?);
    let (p, yv) = rows.predict(&layout, &problem.test, |x| {
        learner.predict(x).map_err(fit_err)
    })?;
    let holdout = evaluate(&p, &yv)?;
    tracing::info!(
        model = problem.name,
        learner = label,
        log_loss = holdout.log_loss,
        "candidate per {by}"
    );
    let candidate = Candidate {
        learner: label,
        hyper_parameters: hyper,
        holdout: holdout.clone(),
        uplift: Vec::new(),
        policy_value: None,
    };
    Ok((
        Kept {
            layout,
            learner,
            holdout,
            scores: p,
        },
        candidate,
    ))
}

/// The features of `manifest` that are columns of `df` (or the named ones,
/// which must be), except those in `exclude`.
pub(crate) fn choose_features(
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

pub(crate) fn date_lit(d: NaiveDate) -> Expr {
    lit(epoch_days(d)).cast(DataType::Date)
}

pub(crate) fn first_date(df: &DataFrame, column: &str) -> Option<NaiveDate> {
    let c = df.column(column).ok()?.cast(&DataType::Int32).ok()?;
    let v = c.i32().ok()?.get(0)?;
    NaiveDate::from_ymd_opt(1970, 1, 1)?.checked_add_signed(chrono::Duration::days(v.into()))
}

/// A model's rows split into training and holdout, with the record.
pub(crate) struct SplitRows {
    /// Training rows.
    pub train: DataFrame,
    /// Holdout rows.
    pub test: DataFrame,
    /// How they were split.
    pub split: Split,
}

/// The training rows of a split in time at a date, when they are not
/// simply the rows whose label window ends by it.
pub(crate) type TrainBefore<'a> = &'a dyn Fn(&DataFrame, NaiveDate) -> Result<DataFrame>;

/// A split in time (training, holdout, first holdout date), or why none.
type TimeSplit = std::result::Result<(DataFrame, DataFrame, NaiveDate), String>;

/// What a side of a split must hold: the label column and the value that
/// counts as the event.
#[derive(Clone, Copy)]
pub(crate) struct Event<'a> {
    /// Label column (boolean).
    pub label: &'a str,
    /// The label's value for an event (`true` for a return or a churn,
    /// `false` for the hazard's `censored`).
    pub when: bool,
}

/// Rows, events and non-events of `df`.
fn counts(df: &DataFrame, event: Event<'_>) -> Result<(usize, usize, usize)> {
    let y = bool_column(df, event.label)?;
    let events = y.iter().filter(|v| **v == event.when).count();
    Ok((y.len(), events, y.len() - events))
}

/// Why `train` and `test` cannot support a fit and its evaluation, if
/// they cannot.
fn too_thin(train: &DataFrame, test: &DataFrame, event: Event<'_>) -> Result<Option<String>> {
    let (n, e, ne) = counts(train, event)?;
    let (m, f, nf) = counts(test, event)?;
    let mut why = Vec::new();
    if n < 100 || e < 10 || ne < 10 {
        why.push(format!(
            "training would hold {n} rows ({e} events, {ne} non-events; at least 100, 10 and 10 needed)"
        ));
    }
    if m < 50 || f < 5 || nf < 5 {
        why.push(format!(
            "the holdout would hold {m} rows ({f} events, {nf} non-events; at least 50, 5 and 5 needed)"
        ));
    }
    Ok((!why.is_empty()).then(|| why.join("; ")))
}

/// Splits a model's rows. In time first: rows sorted by `date`, the latest
/// `s.holdout_share` of them (from the first date at the cut on) held out,
/// training on the rows `train_before` keeps for the cut (by default those
/// whose label window, `date + window_days`, ends by it). When the dates
/// cannot support that (one date, or a side left with too few rows or one
/// class), a seeded split by subscriber instead: `s.holdout_share` of the
/// subscribers (a stable hash of the id) held out with all their rows; the
/// record says which and why.
pub(crate) fn split_rows(
    df: &DataFrame,
    date: &str,
    window_days: i64,
    s: &TrainSettings,
    name: &str,
    event: Event<'_>,
    train_before: Option<TrainBefore<'_>>,
) -> Result<SplitRows> {
    let share = s.holdout_share;
    let why_not_time = match time_split(df, date, window_days, share, name, train_before)? {
        Ok((train, test, from)) => match too_thin(&train, &test, event)? {
            None => {
                return Ok(SplitRows {
                    train,
                    test,
                    split: Split {
                        kind: SplitKind::Time,
                        share,
                        holdout_from: Some(from),
                        seed: s.seed,
                        reason: None,
                    },
                });
            }
            Some(why) => format!("split in time at {from}, {why}"),
        },
        Err(why) => why,
    };
    tracing::info!(
        model = name,
        "no split in time: {why_not_time}; splitting by subscriber"
    );
    let ids = df
        .column(col::SUBSCRIBER_ID)
        .and_then(|c| c.str().cloned())
        .map_err(Error::polars(format!("{name}: subscriber_id")))?;
    let held: Vec<bool> = ids
        .iter()
        .map(|id| subscriber_key(s.seed, id.unwrap_or("")) < share)
        .collect();
    let mask = BooleanChunked::from_slice("held".into(), &held);
    let test = df
        .filter(&mask)
        .map_err(Error::polars(format!("{name}: holdout rows")))?;
    let train = df
        .filter(&!&mask)
        .map_err(Error::polars(format!("{name}: training rows")))?;
    if let Some(why) = too_thin(&train, &test, event)? {
        return Err(Error::Fit {
            model: name.into(),
            message: format!(
                "too few rows to fit and evaluate: {why_not_time}; split by subscriber, {why}"
            ),
        });
    }
    Ok(SplitRows {
        train,
        test,
        split: Split {
            kind: SplitKind::Subscriber,
            share,
            holdout_from: None,
            seed: s.seed,
            reason: Some(why_not_time),
        },
    })
}

/// The split in time of [`split_rows`], or why there is none.
fn time_split(
    df: &DataFrame,
    date: &str,
    window_days: i64,
    share: f64,
    name: &str,
    train_before: Option<TrainBefore<'_>>,
) -> Result<TimeSplit> {
    // Rows already in date order (stacked snapshots are) are not copied:
    // a stable sort would give them back as they are.
    let sorted = if in_date_order(df, date) {
        df.clone()
    } else {
        df.sort(
            [date],
            SortMultipleOptions::default().with_maintain_order(true),
        )
        .map_err(Error::polars(format!("{name}: sort")))?
    };
    let n = sorted.height();
    let dates = sorted
        .column(date)
        .and_then(|c| c.n_unique())
        .map_err(Error::polars(format!("{name}: dates")))?;
    if dates < 2 {
        return Ok(Err(format!(
            "the {n} rows hold {dates} distinct `{date}`: nothing earlier to train on"
        )));
    }
    let cut = ((n as f64) * (1.0 - share)).round() as usize;
    if cut < 100 || n.saturating_sub(cut) < 50 {
        return Ok(Err(format!(
            "{n} rows: too few to hold out the latest {:.0}% in time",
            share * 100.0
        )));
    }
    let Some(from) = first_date(&sorted.slice(cut as i64, 1), date) else {
        return Ok(Err(format!("no `{date}` at the holdout cut")));
    };
    let train = match train_before {
        Some(f) => f(&sorted, from)?,
        None => rows_where(
            &sorted,
            (col(date).cast(DataType::Int32) + lit(window_days as i32))
                .lt_eq(lit(epoch_days(from))),
        )
        .map_err(Error::polars(format!("{name}: training rows")))?,
    };
    let test = rows_where(&sorted, col(date).gt_eq(date_lit(from)))
        .map_err(Error::polars(format!("{name}: holdout rows")))?;
    Ok(Ok((train, test, from)))
}

/// Whether `df`'s `date` column has no nulls and never decreases; false
/// when it cannot be read as a number (the rows are then sorted, as any
/// column can be).
fn in_date_order(df: &DataFrame, date: &str) -> bool {
    let Ok(days) = df.column(date).and_then(|c| c.cast(&DataType::Int64)) else {
        return false;
    };
    let Ok(days) = days.i64() else {
        return false;
    };
    if days.null_count() > 0 {
        return false;
    }
    let mut last = i64::MIN;
    days.into_no_null_iter().all(|d| {
        let ordered = d >= last;
        last = d;
        ordered
    })
}

/// The rows of `df` where `condition` is true, as `filter` keeps them;
/// when they are one run of consecutive rows (a side of a split in time of
/// rows in date order), a slice of `df` that shares its memory instead of
/// a copy.
fn rows_where(df: &DataFrame, condition: Expr) -> PolarsResult<DataFrame> {
    let mask = df
        .clone()
        .lazy()
        .select([condition.alias("keep")])
        .collect()?;
    let mask = mask.column("keep")?.bool()?.clone();
    let kept = mask.sum().unwrap_or(0) as usize;
    if kept == 0 {
        return Ok(df.clear());
    }
    let first = mask.iter().position(|v| v == Some(true)).unwrap_or(0);
    let last = mask.len() - 1 - mask.iter().rev().position(|v| v == Some(true)).unwrap_or(0);
    // As many kept rows as rows from the first to the last: all of them.
    if last + 1 - first == kept {
        Ok(df.slice(first as i64, kept))
    } else {
        df.filter(&mask)
    }
}

/// The rows of `df` whose label is observed (`observed` true).
pub(crate) fn observed(df: &DataFrame, observed: &str, name: &str) -> Result<DataFrame> {
    // Every row observed (the snapshots' horizons are chosen so): the
    // frame itself, not a copy.
    if let Ok(c) = df.column(observed).and_then(|c| c.bool().cloned())
        && c.null_count() == 0
        && c.all()
    {
        return Ok(df.clone());
    }
    df.clone()
        .lazy()
        .filter(col(observed))
        .collect()
        .map_err(Error::polars(format!(
            "{name} model: rows with an observed label"
        )))
}

/// Refits the artifact's learner on `df` with the same layout, learner
/// and hyper-parameters: the refit becomes the stored learner (with its
/// own terms, rows and fingerprint) and the fit before it is kept as the
/// evaluated one.
pub(crate) fn refit(model: &mut Model, rows: &Rows<'_>, df: &DataFrame) -> Result<()> {
    let kind = model.model;
    let _span = tracing::debug_span!("refit", model = kind.name()).entered();
    let fit_err = candidate_error(kind.name());
    let (learner, (count, positives, print)) =
        refit_learner(&model.learner, &model.layout, rows, df).map_err(|e| match e {
            RefitError::Data(e) => e,
            RefitError::Fit(e) => fit_err(e),
        })?;
    let effects = effects_of(&model.layout, &learner);
    let p = &mut model.provenance;
    let evaluated = EvaluatedFit {
        learner: std::mem::replace(&mut model.learner, learner),
        effects: std::mem::replace(&mut model.effects, effects),
        data_fingerprint: std::mem::replace(&mut p.data_fingerprint, print),
        training_rows: std::mem::replace(&mut p.training_rows, count),
        training_positives: std::mem::replace(&mut p.training_positives, positives),
    };
    model.evaluated = Some(evaluated);
    Ok(())
}

/// A fit of `learner`'s kind and hyper-parameters on `df`, with its rows,
/// positives and fingerprint; a learner per arm refits each arm's learner
/// on its arm's rows.
fn refit_learner(
    learner: &Learner,
    layout: &Layout,
    rows: &Rows<'_>,
    df: &DataFrame,
) -> std::result::Result<(Learner, (usize, usize, String)), RefitError> {
    let names = layout.names();
    Ok(match learner {
        Learner::PerArm(m) if m.steps => {
            // A learner per month band: the rows split by their band.
            let f = rows.fitting(layout, df)?;
            let record = (f.count(), f.positives(), f.fingerprint());
            let base = &names[..m.width];
            let learners = m
                .learners
                .iter()
                .zip(by_steps(&f, m.width, m.learners.len()))
                .map(|(l, part)| fit_like(l, part, base))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let learner = PerArm::by_steps(names, m.width, learners)?;
            (Learner::PerArm(learner), record)
        }
        Learner::PerArm(m) => {
            let base = without_arms(layout);
            let mut learners = Vec::with_capacity(m.learners.len());
            let (mut count, mut positives, mut prints) = (0, 0, String::new());
            for (l, part) in m.learners.iter().zip(rows_by_arm(df, layout)?) {
                let (fitted, (c, p, print)) = refit_learner(l, &base, rows, &part)?;
                learners.push(fitted);
                count += c;
                positives += p;
                prints.push_str(&print);
            }
            // One fingerprint of the arms' own, in order.
            let mut h: u64 = 0xcbf29ce484222325;
            for b in prints.bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
            }
            let learner = PerArm::new(names, base.base_width(), learners)?;
            (
                Learner::PerArm(learner),
                (count, positives, format!("{h:016x}")),
            )
        }
        _ => {
            let f = rows.fitting(layout, df)?;
            let record = (f.count(), f.positives(), f.fingerprint());
            (fit_like(learner, f, &names)?, record)
        }
    })
}

/// A fit of `learner`'s kind and hyper-parameters on `f` (a logistic
/// started from `learner`'s coefficients).
fn fit_like(
    learner: &Learner,
    f: Fitting,
    names: &[String],
) -> std::result::Result<Learner, RefitError> {
    Ok(match learner {
        Learner::Logistic(m) => Learner::Logistic(LogisticModel::fit_owned(
            f.x,
            &f.y,
            f.weights.as_deref(),
            names,
            m.alpha,
            Start::From(m),
            Precision::Final,
            true,
        )?),
        Learner::Boosted(m) => Learner::Boosted(Box::new(f.fit_trees(names, m.params.check()?)?)),
        Learner::PerArm(_) => {
            return Err(RefitError::Fit(FitError::Shape(
                "a learner per arm inside another".into(),
            )));
        }
    })
}

/// The rows of `f` of each of `groups` step groups (a hazard's month
/// bands: group `j` has the first `j` of the columns after `width` set),
/// each with only the first `width` columns.
fn by_steps(f: &Fitting, width: usize, groups: usize) -> Vec<Fitting> {
    let group: Vec<usize> =
        f.x.rows()
            .into_iter()
            .map(|r| r.iter().skip(width).filter(|v| **v > 0.5).count())
            .collect();
    (0..groups)
        .map(|j| {
            let rows: Vec<usize> = (0..group.len()).filter(|r| group[*r] == j).collect();
            let mut part = f.select(&rows);
            part.x = part
                .x
                .slice_axis(ndarray::Axis(1), ndarray::Slice::from(..width))
                .to_owned();
            part
        })
        .collect()
}

/// Why a refit failed: the data or the fit.
enum RefitError {
    Data(Error),
    Fit(FitError),
}

impl From<Error> for RefitError {
    fn from(e: Error) -> Self {
        RefitError::Data(e)
    }
}

impl From<FitError> for RefitError {
    fn from(e: FitError) -> Self {
        RefitError::Fit(e)
    }
}

/// Who trained a model and when: the inputs of its [`Provenance`] that are
/// not facts of the fit (the command reads the clock and hashes the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// Hash of the config file.
    pub config_hash: String,
    /// When (UTC, RFC 3339).
    pub trained_at: String,
}

/// The stored model of a fit: its kind, label, record and provenance.
pub(crate) fn stored(
    kind: ModelKind,
    label: &str,
    fitted: Fitted,
    split: Split,
    stamp: &Stamp,
    s: &TrainSettings,
) -> Model {
    Model {
        model: kind,
        label: label.into(),
        provenance: Provenance {
            format_version: FORMAT_VERSION,
            code_version: env!("CARGO_PKG_VERSION").into(),
            trained_at: stamp.trained_at.clone(),
            config_hash: stamp.config_hash.clone(),
            data_fingerprint: fitted.fingerprint,
            training_rows: fitted.training_rows,
            training_positives: fitted.training_positives,
            split,
            settings: s.clone(),
        },
        layout: fitted.layout,
        learner: fitted.learner,
        chosen: fitted.chosen,
        candidates: fitted.candidates,
        cross_validation: fitted.steps,
        holdout: fitted.holdout,
        effects: fitted.effects,
        evaluated: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rows a condition keeps are those `filter` keeps, whether they
    /// are one run of rows (a slice) or not, with nulls among the dates;
    /// and the split in time is the same whether the rows come in date
    /// order (not copied) or not (sorted first).
    #[test]
    fn rows_where_keeps_what_filter_keeps_and_splits_alike_in_any_order() {
        let day = |d: i32| d;
        let frame = |days: &[Option<i32>]| {
            let n = days.len();
            DataFrame::new(
                n,
                vec![
                    Column::new("as_of".into(), days.to_vec())
                        .cast(&DataType::Date)
                        .unwrap(),
                    Column::new("i".into(), (0..n as i64).collect::<Vec<_>>()),
                ],
            )
            .unwrap()
        };
        let sorted: Vec<Option<i32>> = (0..400).map(|i| Some(day(19_000 + i / 10))).collect();
        let mut shuffled = sorted.clone();
        shuffled.reverse();
        shuffled.swap(3, 200);
        let mut nulls = sorted.clone();
        nulls[0] = None;
        nulls[250] = None;
        for days in [&sorted, &shuffled, &nulls, &Vec::new()] {
            let df = frame(days);
            for cut in [18_990, 19_000, 19_013, 19_020, 19_039, 19_050] {
                for condition in [
                    col("as_of").cast(DataType::Int32).lt_eq(lit(cut)),
                    col("as_of").cast(DataType::Int32).gt_eq(lit(cut)),
                    (col("as_of").cast(DataType::Int32) % lit(7)).eq(lit(0)),
                ] {
                    let want = df
                        .clone()
                        .lazy()
                        .filter(condition.clone())
                        .collect()
                        .unwrap();
                    let got = rows_where(&df, condition).unwrap();
                    assert!(got.equals_missing(&want), "{cut}: {got} against {want}");
                }
            }
        }
        assert!(in_date_order(&frame(&sorted), "as_of"));
        assert!(!in_date_order(&frame(&shuffled), "as_of"));
        assert!(!in_date_order(&frame(&nulls), "as_of"));
        assert!(!in_date_order(&frame(&sorted), "no such column"));
        // The split of the rows in date order and of the same rows out of
        // order: the same training and holdout rows, in date order.
        let settle = |df: &DataFrame| {
            let Ok((train, test, from)) = time_split(df, "as_of", 5, 0.25, "test", None).unwrap()
            else {
                panic!("a split in time");
            };
            (train, test, from)
        };
        let (a, b) = (settle(&frame(&sorted)), settle(&frame(&shuffled)));
        assert_eq!(a.2, b.2);
        // 10 rows a day from day 19,000; the holdout from day 19,030 (the
        // latest quarter), training on days whose 5-day window ends by it.
        assert_eq!((a.0.height(), a.1.height()), (260, 100));
        for (x, y) in [(&a.0, &b.0), (&a.1, &b.1)] {
            assert!(
                x.column("as_of")
                    .unwrap()
                    .equals_missing(y.column("as_of").unwrap())
            );
        }
    }

    /// Slices of a frame cover its rows once, in order, whatever the block
    /// (one row, a block that does not divide them, more than them), a
    /// frame without rows gives nothing, and the first error in the
    /// slices' order, building or predicting, is the result.
    #[test]
    fn blocks_cover_the_rows_in_order() {
        let n = 10;
        let df = DataFrame::new(
            n,
            vec![Column::new(
                "v".into(),
                (0..n).map(|i| i as f64).collect::<Vec<_>>(),
            )],
        )
        .unwrap();
        let build = |part: &DataFrame| -> Result<(Vec<f64>, Vec<bool>)> {
            let v = f64_column(part, "v")?;
            let y = v.iter().map(|x| (*x as usize).is_multiple_of(3)).collect();
            Ok((v, y))
        };
        let predict =
            |v: &Vec<f64>| -> Result<Vec<f64>> { Ok(v.iter().map(|x| x * 2.0).collect()) };
        let (v, y) = build(&df).unwrap();
        let whole = (predict(&v).unwrap(), y);
        for block in [0, 1, 3, 10, 11, 1 << 18] {
            assert_eq!(
                in_blocks(&df, block, build, predict).unwrap(),
                whole,
                "block {block}"
            );
        }
        let empty = df.slice(0, 0);
        assert_eq!(
            in_blocks(&empty, 3, build, predict).unwrap(),
            (vec![], vec![])
        );
        // An error in a later slice, built or predicted, is the result.
        let fails = |at: f64| {
            move |what: &str| Error::Setting {
                key: format!("{what} {at}"),
                message: String::new(),
            }
        };
        let build_fails = |part: &DataFrame| {
            let (v, y) = build(part)?;
            match v.contains(&7.0) {
                true => Err(fails(7.0)("build")),
                false => Ok((v, y)),
            }
        };
        let predict_fails = |v: &Vec<f64>| match v.contains(&5.0) {
            true => Err(fails(5.0)("predict")),
            false => predict(v),
        };
        for block in [1, 3] {
            let key = |r: Result<(Vec<f64>, Vec<bool>)>| match r {
                Err(Error::Setting { key, .. }) => key,
                other => panic!("block {block}: {other:?}"),
            };
            assert_eq!(key(in_blocks(&df, block, build_fails, predict)), "build 7");
            assert_eq!(
                key(in_blocks(&df, block, build, predict_fails)),
                "predict 5"
            );
            // Slices in order: the prediction of the slice holding 5 fails
            // before the slice holding 7 is taken.
            assert_eq!(
                key(in_blocks(&df, block, build_fails, predict_fails)),
                "predict 5"
            );
        }
    }

    /// Every rare row is kept with weight 1; the common rows are thinned to
    /// about `ratio` per rare row and weighted back to their number, by the
    /// same draw on every call.
    #[test]
    fn a_rare_event_frame_keeps_every_rare_row_and_weighs_the_rest_back() {
        let n = 20_000;
        let y: Vec<bool> = (0..n).map(|i| i % 25 == 0).collect();
        let df = DataFrame::new(
            n,
            vec![
                Column::new("id".into(), (0..n as u32).collect::<Vec<_>>()),
                Column::new("label".into(), y.clone()),
            ],
        )
        .unwrap();
        let sample = rare_event_frame(&df, "label", 5.0, 3).unwrap();
        let ys = bool_column(&sample, "label").unwrap();
        let w = f64_column(&sample, ROW_WEIGHT).unwrap();
        let rare = ys.iter().filter(|v| **v).count();
        assert_eq!(rare, n / 25, "every rare row kept");
        let common = ys.len() - rare;
        assert!((common as f64 - 5.0 * rare as f64).abs() < 0.1 * 5.0 * rare as f64);
        for (v, wi) in ys.iter().zip(&w) {
            if *v {
                assert_eq!(*wi, 1.0);
            }
        }
        let total: f64 = w.iter().sum();
        assert!((total - n as f64).abs() < 1e-6 * n as f64, "{total}");
        assert!(sample.equals(&rare_event_frame(&df, "label", 5.0, 3).unwrap()));
        // Off, or not rare enough: every row, unweighted.
        for ratio in [0.0, 30.0] {
            let all = rare_event_frame(&df, "label", ratio, 3).unwrap();
            assert_eq!(all.height(), n);
            assert!(all.column(ROW_WEIGHT).is_err());
        }
        // The rarer class may be the `false` one.
        let flipped = DataFrame::new(
            n,
            vec![Column::new(
                "label".into(),
                y.iter().map(|v| !v).collect::<Vec<_>>(),
            )],
        )
        .unwrap();
        let s2 = rare_event_frame(&flipped, "label", 5.0, 3).unwrap();
        let y2 = bool_column(&s2, "label").unwrap();
        assert_eq!(y2.iter().filter(|v| !**v).count(), n / 25);
    }

    /// Subscriber-months grouped by frame row, band and outcome, weighted
    /// by their months; the cross-validation's sample of them drawn before
    /// any matrix is built gives the rows drawn from the whole matrix.
    #[test]
    fn subscriber_months_group_by_band_and_sample_before_building() {
        use crate::artifact::design::Design;
        // Lifetimes of 0 to 40 months (fractions too), a third censored,
        // with one numeric column that names the frame row.
        let n = 400;
        let df = df!(
            "row" => (0..n).map(|i| i as f64).collect::<Vec<_>>(),
            "duration" => (0..n).map(|i| ((i * 37) % 41) as f64 + (i % 4) as f64 * 0.25).collect::<Vec<_>>(),
            "censored" => (0..n).map(|i| i % 3 == 0).collect::<Vec<_>>(),
        )
        .unwrap();
        let layout = Layout {
            design: Design {
                manifest: Manifest {
                    version: 1,
                    features: Vec::new(),
                    unseen_category_policy: "other".into(),
                },
                columns: vec![DesignColumn::Numeric {
                    feature: "row".into(),
                    fill: 0.0,
                }],
            },
            arm_column: String::new(),
            arms: Vec::new(),
            interact: Vec::new(),
            bands: vec![1, 4, 13],
        };
        let rows = Rows::Months {
            duration: "duration",
            censored: "censored",
            max_months: 30,
        };
        let all = rows.fitting(&layout, &df).unwrap();
        // Every subscriber-month (one row each) counted once, in the
        // grouped row of its frame row, band and outcome.
        let (months, labels) = rows.build(&layout, &df).unwrap();
        let mut want: BTreeMap<(usize, Vec<u64>, bool), f64> = BTreeMap::new();
        for (r, y) in months.rows().into_iter().zip(&labels) {
            let key = (
                r[0] as usize,
                r.iter().skip(1).map(|v| v.to_bits()).collect(),
                *y,
            );
            *want.entry(key).or_default() += 1.0;
        }
        let weights = all.weights.as_ref().unwrap();
        let groups = all.groups.as_ref().unwrap();
        let mut got = BTreeMap::new();
        for (i, r) in all.x.rows().into_iter().enumerate() {
            assert_eq!(groups[i], r[0] as usize, "grouped by frame row");
            let key = (
                r[0] as usize,
                r.iter().skip(1).map(|v| v.to_bits()).collect(),
                all.y[i],
            );
            assert!(got.insert(key, weights[i]).is_none(), "row {i} repeated");
        }
        assert_eq!(got, want);
        assert!(all.x.nrows() < months.nrows());
        // The sample is the same rows as drawing from the whole matrix.
        for max in [
            1,
            10,
            100,
            all.x.nrows() - 1,
            all.x.nrows(),
            all.x.nrows() + 5,
        ] {
            let want = all.select(&subsample(all.x.nrows(), max, 7));
            let got = rows.sample(&layout, &df, max, 7).unwrap();
            assert_eq!(got.x, want.x, "max {max}");
            assert_eq!(got.y, want.y);
            assert_eq!(got.weights, want.weights);
            assert_eq!(got.groups, want.groups);
        }
    }

    /// Rows split by their month band (the count of band steps set), each
    /// part with the columns before the bands only, labels, weights and
    /// groups following their rows.
    #[test]
    fn rows_split_by_their_band_steps() {
        // Two base columns, then two band steps: bands 0, 1, 2.
        let steps = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]];
        let band = |r: usize| (r * 7) % 3;
        let n = 30;
        let x = Array2::from_shape_fn((n, 4), |(r, j)| match j {
            0 => r as f64,
            1 => -(r as f64),
            _ => steps[band(r)][j - 2],
        });
        let f = Fitting {
            x,
            y: (0..n).map(|r| r.is_multiple_of(4)).collect(),
            weights: Some((0..n).map(|r| 1.0 + r as f64).collect()),
            groups: Some((0..n).map(|r| r / 2).collect()),
        };
        let parts = by_steps(&f, 2, 3);
        assert_eq!(parts.len(), 3);
        let mut seen = 0;
        for (b, part) in parts.iter().enumerate() {
            assert_eq!(part.x.ncols(), 2, "band columns dropped");
            for (i, row) in part.x.rows().into_iter().enumerate() {
                let r = row[0] as usize;
                assert_eq!(band(r), b, "row {r} in band {b}");
                assert_eq!(row[1], -(r as f64));
                assert_eq!(part.y[i], r.is_multiple_of(4));
                assert_eq!(part.weights.as_ref().unwrap()[i], 1.0 + r as f64);
                assert_eq!(part.groups.as_ref().unwrap()[i], r / 2);
                seen += 1;
            }
        }
        assert_eq!(seen, n, "every row in one band");
    }
}
