//! Settings of the train stage (`[train]` in the config) and their
//! defaults.

use serde::{Deserialize, Serialize};
use winback_models::boosted::BoostedParams;

use crate::stages::features::f;

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
    /// Which learner the return and churn models keep.
    pub learner: LearnerChoice,
    /// Which learner the second lifetime's hazard keeps. Logistic by
    /// default: on generated truth the trees' lower holdout log loss (on
    /// the months the holdout follows) came with a second-lifetime value
    /// 4 to 6% below the truth over the 60-month horizon, where the
    /// logistic's proportional month bands stayed within 3% (README,
    /// Models).
    #[serde(default = "default_hazard_learner")]
    pub hazard_learner: LearnerChoice,
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
    /// The churn model's rare-event sampling: both candidates are fitted
    /// on every churner and at most this many non-churners per churner
    /// (0: every row): the logistic on the draw weighted back to every
    /// row's share, the trees as [`BoostedParams::rare_event_ratio`] says.
    #[serde(default)]
    pub churn_rare_event_ratio: f64,
    /// Features of the return model (empty: every manifest feature).
    pub return_features: Vec<String>,
    /// Features of the churn model (empty: every manifest feature present
    /// in the snapshots).
    pub churn_features: Vec<String>,
    /// Features interacted with each arm in the return model.
    pub interactions: Vec<String>,
    /// Also fit the return model with one learner per arm (a T-learner)
    /// of each kind `learner` allows; the return model is then chosen by
    /// the policy value on past offers no model saw.
    #[serde(default = "default_true")]
    pub return_per_arm: bool,
    /// Also fit the second lifetime's hazard with one learner per month
    /// band of each kind `learner` allows (every feature's effect free to
    /// change with the months since the return); kept by log loss. Off
    /// by default: on generated truth it lowered the hazard's log loss but
    /// biased the second lifetime's value (README, Models).
    #[serde(default)]
    pub hazard_per_band: bool,
    /// Months of second lifetime modelled (and the survival curve's length).
    pub survival_months: u32,
    /// First months of the hazard model's month bands.
    pub hazard_bands: Vec<u32>,
    /// Months over which predicted and observed durations are compared.
    pub duration_check_months: u32,
    /// Promote a new version to production when it passes the gate below
    /// against the production version (not a setting of the fit).
    #[serde(default)]
    pub auto_promote: bool,
    /// The gate: the largest rise of any model's holdout log loss.
    #[serde(default = "default_log_loss_rise")]
    pub promote_max_log_loss_increase: f64,
    /// The gate: the largest fall of any model's holdout ROC AUC.
    #[serde(default = "default_auc_fall")]
    pub promote_max_auc_decrease: f64,
}

impl TrainSettings {
    /// These settings with `hazard_learner` as the learner: what the
    /// second lifetime's hazard is fitted with.
    pub fn for_hazard(&self) -> TrainSettings {
        TrainSettings {
            learner: self.hazard_learner,
            ..self.clone()
        }
    }

    /// The kinds of learner `learner` allows: both for `auto`.
    pub fn learner_kinds(&self) -> Vec<LearnerChoice> {
        match self.learner {
            LearnerChoice::Auto => vec![LearnerChoice::Logistic, LearnerChoice::Boosted],
            one => vec![one],
        }
    }
}

fn default_hazard_learner() -> LearnerChoice {
    LearnerChoice::Logistic
}

fn default_true() -> bool {
    true
}

fn default_log_loss_rise() -> f64 {
    0.005
}

fn default_auc_fall() -> f64 {
    0.01
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            learner: LearnerChoice::Auto,
            hazard_learner: default_hazard_learner(),
            holdout_share: 0.25,
            folds: 4,
            seed: 1,
            step_bins: vec![0, 5],
            alphas: vec![0.01, 0.1, 1.0, 10.0, 100.0],
            cv_max_rows: 50_000,
            boosted: BoostedParams::default(),
            churn_rare_event_ratio: 3.0,
            return_features: Vec::new(),
            churn_features: Vec::new(),
            interactions: vec![f::LEAVE_REASON.to_string()],
            return_per_arm: true,
            hazard_per_band: false,
            survival_months: 60,
            hazard_bands: vec![1, 4, 7, 13, 25, 37],
            duration_check_months: 24,
            auto_promote: false,
            promote_max_log_loss_increase: default_log_loss_rise(),
            promote_max_auc_decrease: default_auc_fall(),
        }
    }
}
