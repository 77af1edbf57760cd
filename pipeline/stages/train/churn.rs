//! The churn model: P(churn within the horizon | features as of a
//! snapshot), on the stacked snapshots.

use polars::prelude::*;

use crate::error::Result;
use crate::stages::features::{Manifest, f};

use crate::artifact::{ChurnModel, ModelKind};

use super::harness::*;
use super::settings::TrainSettings;

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
) -> Result<ChurnModel> {
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
    let fitted = fit_binary(&problem, &Rows::Plain { label: f::CHURNED }, &sampled)?;
    Ok(ChurnModel {
        model: stored(ModelKind::Churn, f::CHURNED, fitted, split, stamp, s),
    })
}
