//! `train` (first part): the return-likelihood model.
//!
//! P(return within the response window | features, arm) as a logistic
//! regression on the design matrix of the defection's features, plus arm
//! main effects (control is the reference) and arm x leave-reason
//! interactions, so that every lapsed subscriber gets a probability under
//! every arm. The L2 strength is chosen by cross-validation on the training
//! period; the evaluation uses a time-based holdout (the latest offers).

use polars::prelude::*;
use serde::{Deserialize, Serialize};
use winback_models::logistic::{AlphaScore, LogisticModel, choose_alpha};
use winback_models::metrics;

use super::design::Design;
use super::features::{Manifest, f};
use crate::error::{Error, Result};
use crate::schema::{ARMS, LEAVE_REASONS, col};

/// Candidate L2 strengths for cross-validation.
pub const ALPHAS: [f64; 5] = [0.01, 0.1, 1.0, 10.0, 100.0];

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

/// Evaluates predictions against outcomes.
pub fn evaluate(p: &[f64], y: &[bool]) -> Result<Evaluation> {
    let m = |e: metrics::MetricError| Error::Setting {
        key: "evaluation".into(),
        message: e.to_string(),
    };
    let (calibration, ece) = metrics::calibration(p, y, 10).map_err(m)?;
    Ok(Evaluation {
        rows: p.len(),
        observed_rate: y.iter().filter(|v| **v).count() as f64 / y.len().max(1) as f64,
        mean_predicted: p.iter().sum::<f64>() / p.len().max(1) as f64,
        roc_auc: metrics::roc_auc(p, y).map_err(m)?,
        pr_auc: metrics::pr_auc(p, y).map_err(m)?,
        log_loss: metrics::log_loss(p, y).map_err(m)?,
        brier: metrics::brier(p, y).map_err(m)?,
        ece,
        calibration,
        gains: metrics::gains(p, y).map_err(m)?,
    })
}

/// The fitted return model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReturnModel {
    /// The features' design.
    pub design: Design,
    /// Leave reasons with interaction columns (all but the reference).
    pub reasons: Vec<String>,
    /// Column names of the full matrix (design, arms, interactions).
    pub names: Vec<String>,
    /// The logistic regression.
    pub model: LogisticModel,
    /// Cross-validation of the L2 strength.
    pub cross_validation: Vec<AlphaScore>,
    /// Evaluation on the time holdout.
    pub holdout: Evaluation,
    /// Offers fitted on (those before the holdout).
    pub training_rows: usize,
    /// First `offered_at` of the holdout.
    pub holdout_from: String,
}

/// The arms with their own columns (control is the reference).
fn treated_arms() -> &'static [&'static str] {
    &ARMS[1..]
}

/// The full matrix: design columns, then `arm=<a>`, then `arm=<a>:<reason>`.
fn matrix(
    design: &Design,
    reasons: &[String],
    df: &DataFrame,
    arm_override: Option<&str>,
) -> Result<(Vec<f64>, usize)> {
    let (base, _) = design.matrix(df)?;
    let k0 = design.columns.len();
    let n = df.height();
    let arms: Vec<Option<String>> = match arm_override {
        Some(a) => vec![Some(a.to_string()); n],
        None => df
            .column(col::ARM)
            .map_err(Error::polars("train: arm"))?
            .str()
            .map_err(Error::polars("train: arm"))?
            .iter()
            .map(|v| v.map(str::to_string))
            .collect(),
    };
    let reason: Vec<Option<String>> = df
        .column(f::LEAVE_REASON)
        .map_err(Error::polars("train: leave_reason"))?
        .str()
        .map_err(Error::polars("train: leave_reason"))?
        .iter()
        .map(|v| v.map(str::to_string))
        .collect();
    let t = treated_arms();
    let k = k0 + t.len() * (1 + reasons.len());
    let mut x = vec![0.0; n * k];
    for i in 0..n {
        x[i * k..i * k + k0].copy_from_slice(&base[i * k0..(i + 1) * k0]);
        if let Some(a) = arms[i].as_deref()
            && let Some(ai) = t.iter().position(|x| *x == a)
        {
            x[i * k + k0 + ai] = 1.0;
            if let Some(ri) = reason[i]
                .as_deref()
                .and_then(|r| reasons.iter().position(|x| x == r))
            {
                x[i * k + k0 + t.len() + ai * reasons.len() + ri] = 1.0;
            }
        }
    }
    Ok((x, k))
}

fn names(design: &Design, reasons: &[String]) -> Vec<String> {
    let mut v = design.names();
    let t = treated_arms();
    v.extend(t.iter().map(|a| format!("arm={a}")));
    for a in t {
        v.extend(reasons.iter().map(|r| format!("arm={a}:leave_reason={r}")));
    }
    v
}

fn to_array(x: Vec<f64>, k: usize) -> Result<ndarray::Array2<f64>> {
    let n = x.len() / k.max(1);
    ndarray::Array2::from_shape_vec((n, k), x).map_err(|e| Error::Setting {
        key: "train".into(),
        message: e.to_string(),
    })
}

fn fit_error(e: winback_models::logistic::FitError) -> Error {
    Error::Setting {
        key: "train: return model".into(),
        message: e.to_string(),
    }
}

/// Fits the return model on the offers whose window is observed: the
/// latest `holdout_share` of them (by offer date) are held out for the
/// evaluation; the rest choose the L2 strength by `folds`-fold
/// cross-validation and are fitted on.
pub fn fit_return_model(
    offers: &DataFrame,
    manifest: &Manifest,
    features: &[&str],
    holdout_share: f64,
    folds: usize,
    seed: u64,
) -> Result<ReturnModel> {
    let rows = offers
        .clone()
        .lazy()
        .filter(col(f::WINDOW_OBSERVED))
        .sort([col::OFFERED_AT], SortMultipleOptions::default())
        .collect()
        .map_err(Error::polars("train: offers"))?;
    let n = rows.height();
    let cut = ((n as f64) * (1.0 - holdout_share)).round() as usize;
    if cut < 100 || n - cut < 50 {
        return Err(Error::Setting {
            key: "train: return model".into(),
            message: format!("{n} offers with an observed window: too few to fit and hold out"),
        });
    }
    let train = rows.slice(0, cut);
    let test = rows.slice(cut as i64, n - cut);
    let holdout_from = test
        .column(col::OFFERED_AT)
        .and_then(|c| c.get(0))
        .map(|v| v.to_string())
        .unwrap_or_default();
    let design = Design::fit(manifest, &train, features)?;
    let reasons: Vec<String> = LEAVE_REASONS[1..].iter().map(|s| s.to_string()).collect();
    let all_names = names(&design, &reasons);
    let label = |df: &DataFrame| -> Result<Vec<bool>> {
        Ok(df
            .column(f::RETURNED)
            .map_err(Error::polars("train: returned"))?
            .bool()
            .map_err(Error::polars("train: returned"))?
            .iter()
            .map(|v| v.unwrap_or(false))
            .collect())
    };
    let (xt, k) = matrix(&design, &reasons, &train, None)?;
    let xt = to_array(xt, k)?;
    let yt = label(&train)?;
    let (alpha, cross_validation) =
        choose_alpha(xt.view(), &yt, &all_names, &ALPHAS, folds, seed).map_err(fit_error)?;
    let model = LogisticModel::fit(xt.view(), &yt, &all_names, alpha).map_err(fit_error)?;
    let (xv, _) = matrix(&design, &reasons, &test, None)?;
    let p = model.predict(to_array(xv, k)?.view()).map_err(fit_error)?;
    let holdout = evaluate(&p, &label(&test)?)?;
    Ok(ReturnModel {
        design,
        reasons,
        names: all_names,
        model,
        cross_validation,
        holdout,
        training_rows: cut,
        holdout_from,
    })
}

impl ReturnModel {
    /// P(return) of every row under each arm, in [`ARMS`] order.
    pub fn predict_all_arms(&self, df: &DataFrame) -> Result<Vec<[f64; 5]>> {
        let mut out = vec![[0.0; 5]; df.height()];
        for (j, arm) in ARMS.iter().enumerate() {
            let (x, k) = matrix(&self.design, &self.reasons, df, Some(arm))?;
            let p = self
                .model
                .predict(to_array(x, k)?.view())
                .map_err(fit_error)?;
            for (i, v) in p.into_iter().enumerate() {
                out[i][j] = v;
            }
        }
        Ok(out)
    }
}
