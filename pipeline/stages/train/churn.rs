//! The churn model: P(churn within the horizon | features as of a
//! snapshot), on the stacked snapshots.

use polars::prelude::*;

use crate::error::{Error, Result};
use crate::stages::features::{Manifest, f};

use crate::artifact::{ChurnModel, ModelKind};

use super::harness::*;
use super::settings::TrainSettings;

/// Fits the churn model on the stacked snapshots whose horizon is observed.
pub fn fit_churn(
    snapshots: &DataFrame,
    manifest: &Manifest,
    horizon_days: u32,
    s: &TrainSettings,
    stamp: &Stamp,
) -> Result<ChurnModel> {
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
    Ok(ChurnModel {
        model: stored(ModelKind::Churn, f::CHURNED, fitted, from, stamp, s),
    })
}
