//! The churn model: P(churn within the horizon | features as of a
//! snapshot), on the stacked snapshots.

use polars::prelude::*;

use crate::error::{Error, Result};
use crate::stages::features::{Manifest, f};

use crate::artifact::{ChurnModel, ModelKind};

use super::harness::*;
use super::settings::TrainSettings;

/// The churn model, with the latest snapshot's rows and its scores on them.
#[derive(Debug)]
pub struct ChurnFit {
    /// The model.
    pub model: ChurnModel,
    /// The rows of the latest snapshot, which the drift reference
    /// describes.
    pub latest: DataFrame,
    /// The kept learner's scores on every row of the latest snapshot, in
    /// the holdout's order (the drift reference bins them, so any order
    /// serves), when the holdout holds them all (a time split does: they
    /// are its latest rows); `None` otherwise. The drift reference's score
    /// then needs no second prediction of those rows.
    pub latest_scores: Option<Vec<f64>>,
}

/// Fits the churn model on the stacked snapshots whose horizon is observed.
/// Takes the snapshots by value: they are dropped once split into the
/// training and holdout rows, so the frame is not held twice while the
/// candidates are fitted (at 1M subscribers, 4.6M rows).
pub fn fit_churn(
    snapshots: DataFrame,
    manifest: &Manifest,
    horizon_days: u32,
    s: &TrainSettings,
    stamp: &Stamp,
) -> Result<ChurnFit> {
    // The drift reference needs only the latest snapshot's rows; the
    // whole frame is dropped once split.
    let latest = snapshots
        .clone()
        .lazy()
        .filter(col(f::SNAPSHOT).eq(col(f::SNAPSHOT).max()))
        .collect()
        .map_err(Error::polars("churn: the latest snapshot"))?;
    let day = snapshot_days(&latest)?.max();
    let observed = observed(&snapshots, f::HORIZON_OBSERVED, "churn")?;
    drop(snapshots);
    let SplitRows { train, test, split } = split_rows(
        &observed,
        f::AS_OF,
        i64::from(horizon_days),
        s,
        "churn",
        Event {
            label: f::CHURNED,
            when: true,
        },
        None,
    )?;
    drop(observed);
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
        rare_event_ratio: s.churn_rare_event_ratio,
    };
    // Churn is rare: both candidates are fitted on every churner and a
    // seeded share of the rest (the logistic weighted back to every row's
    // share); the trees' calibration and the holdout see every row.
    let sampled = TrainSettings {
        boosted: winback_models::boosted::BoostedParams {
            rare_event_ratio: s.churn_rare_event_ratio,
            ..s.boosted
        },
        ..s.clone()
    };
    let mut fitted = fit_binary(&problem, &Rows::Plain { label: f::CHURNED }, &sampled)?;
    let scores = std::mem::take(&mut fitted.holdout_scores);
    // Without the column in the holdout (never expected), the reference
    // predicts the rows instead.
    let in_holdout: Vec<f64> = match snapshot_days(&problem.test) {
        Ok(days) => days
            .iter()
            .zip(scores)
            .filter(|(d, _)| day.is_some() && *d == day)
            .map(|(_, p)| p)
            .collect(),
        Err(_) => Vec::new(),
    };
    Ok(ChurnFit {
        model: ChurnModel {
            model: stored(ModelKind::Churn, f::CHURNED, fitted, split, stamp, s),
        },
        latest_scores: (latest.height() > 0 && in_holdout.len() == latest.height())
            .then_some(in_holdout),
        latest,
    })
}

/// The snapshot column's days (since the epoch).
fn snapshot_days(df: &DataFrame) -> Result<Int32Chunked> {
    df.column(f::SNAPSHOT)
        .and_then(|c| c.cast(&DataType::Int32))
        .and_then(|c| c.i32().cloned())
        .map_err(Error::polars("churn: the snapshot dates"))
}
