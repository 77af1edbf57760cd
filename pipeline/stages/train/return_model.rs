//! The return model: P(return within the response window | features,
//! arm), with arm main effects (control is the reference) and arm x
//! feature interactions, so each lapsed subscriber gets a probability under
//! every arm; Qini of each arm over control on the holdout.

use polars::prelude::*;
use winback_models::uplift::qini;

use crate::error::{Error, Result};
use crate::schema::{ARMS, col};
use crate::stages::features::{Manifest, f};

use crate::artifact::{ModelKind, ReturnModel};

use super::harness::*;
use super::settings::TrainSettings;

/// Fits the return model on the offers whose window is observed.
pub fn fit_return(
    offers: &DataFrame,
    manifest: &Manifest,
    window_days: u32,
    s: &TrainSettings,
    stamp: &Stamp,
) -> Result<ReturnModel> {
    let SplitRows { train, test, split } = split_rows(
        &observed(offers, f::WINDOW_OBSERVED, "return")?,
        col::OFFERED_AT,
        i64::from(window_days),
        s,
        "return",
        Event {
            label: f::RETURNED,
            when: true,
        },
        None,
    )?;
    let features = choose_features(
        manifest,
        &train,
        &s.return_features,
        &[],
        "train.return_features",
    )?;
    // `["all"]`: every feature interacted with each arm (the S-learner at
    // its most flexible: a separate slope per arm for every feature).
    let interact: Vec<String> = if s.interactions == ["all"] {
        features.clone()
    } else {
        s.interactions.clone()
    };
    if let Some(bad) = interact.iter().find(|n| !features.contains(n)) {
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
        interact,
        bands: Vec::new(),
        rare_event_ratio: 0.0,
    };
    let fitted = fit_binary(&problem, &Rows::Plain { label: f::RETURNED }, s)?;
    let model = stored(ModelKind::Return, f::RETURNED, fitted, split, stamp, s);
    let mut artifact = ReturnModel {
        model,
        uplift: Vec::new(),
    };
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
        &mut artifact.model,
        &Rows::Plain { label: f::RETURNED },
        &observed,
    )?;
    Ok(artifact)
}
