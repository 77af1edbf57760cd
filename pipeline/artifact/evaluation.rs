//! The records a trained model carries about its own evaluation: holdout
//! metrics, the candidates compared, cross-validation, the terms an
//! analyst reads, and the second lifetime's duration check.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use winback_models::logistic::AlphaScore;
use winback_models::metrics;

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
    /// Expected calibration error over 10 bins of equal count.
    pub ece: f64,
    /// Calibration intercept (0 when right on average; see
    /// [`metrics::Calibration`]).
    pub calibration_intercept: Option<f64>,
    /// Calibration slope (1 when the predictions spread as the outcomes do).
    pub calibration_slope: Option<f64>,
    /// Predicted against observed by decile of prediction (equal-count
    /// bins).
    pub calibration: Vec<metrics::CalibrationBin>,
    /// Gains and lift by decile.
    pub gains: Vec<metrics::Decile>,
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
    /// Return model: uplift (Qini) of each arm over control on the
    /// holdout.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uplift: Vec<(String, winback_models::uplift::Qini)>,
    /// Return model: the value of the policy its probabilities imply, on
    /// past offers no model was fitted on (IPS, self-normalised IPS and
    /// doubly robust, profit per offer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_value: Option<winback_models::policy_value::PolicyValue>,
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

/// Predicted against observed mean months retained in the `months` months
/// after month `after_month` (the longest past offer term), among the
/// returns retained at its end, for one leave reason on the holdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DurationCheck {
    /// Leave reason (or `all`).
    pub leave_reason: String,
    /// Returns in the holdout.
    pub returns: usize,
    /// The window starts after this month of the second lifetime.
    pub after_month: u32,
    /// Months of the window.
    pub months: u32,
    /// Kaplan–Meier: sum over the window of S(t) / S(after_month).
    pub observed: f64,
    /// The evaluated model's: the same sum on the group's mean curve.
    pub predicted: f64,
}
