//! `train`: the return-likelihood, churn and second-lifetime models, fitted
//! on the features stage's frames into the typed models of
//! [`crate::artifact`].
//!
//! Every model is a probability model fitted the same way
//! ([`harness::fit_binary`]): a time-based split (fit on earlier defections,
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
//! The return model also has a model per arm of each kind (a T-learner)
//! and is chosen by its policy's value on past offers no model saw (see
//! [`return_model`]); the hazard may have a model per month band
//! (`train.hazard_per_band`).
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
//!
//! Files: [`settings`] (the `[train]` section and its defaults),
//! [`harness`] (splits, matrices, candidates, evaluation, refit),
//! [`return_model`], [`churn`], [`second_lifetime`].

pub mod churn;
pub mod harness;
pub mod return_model;
pub mod second_lifetime;
pub mod settings;

pub use churn::{ChurnFit, fit_churn};
pub use harness::Stamp;
pub use return_model::{Choice, ReturnCandidates, fit_return, fit_return_candidates};
pub use second_lifetime::fit_second_lifetime;
pub use settings::{LearnerChoice, TrainSettings};
