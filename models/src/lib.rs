//! # winback-models
//!
//! Estimators, metrics and offer economics for the winback pipeline. This
//! crate does no I/O: it takes numbers and returns numbers, so the pipeline
//! crate owns every path, file and clock.
//!
//! - [`economics`]: the four offer arms, their terms and the discounted
//!   lifetime-value arithmetic shared by the generator's ground truth and,
//!   later, the offer simulation.
//! - [`logistic`]: L2 logistic regression on standardised columns (linfa),
//!   with the penalty chosen by cross-validation and odds ratios per raw unit.
//! - [`boosted`]: gradient-boosted trees (forust-ml) with early stopping
//!   and Platt calibration on rows the trees never saw.
//! - [`learner`]: one face ([`learner::Classifier`]) for both learners, a
//!   stored enum of them, and ridge regression for continuous outcomes.
//! - [`metrics`]: ROC and PR AUC, log loss, Brier score, calibration over
//!   equal-count bins with its intercept and slope, gains and lift by
//!   decile.
//! - [`survival`]: subscriber-month expansion, survival curves from
//!   monthly hazards, restricted means, Kaplan–Meier.
//! - [`uplift`]: Qini curve and coefficient, uplift by decile.
//! - [`tail`]: the last columns that complete a base matrix's rows (an
//!   arm's or a month band's), scored without building each matrix.
//! - [`uncertainty`]: coefficient covariances and draws from them.
//! - [`offers`]: per subscriber and arm, expected value, cost and profit of
//!   an offer, and Monte Carlo replicates over the models' uncertainty.
//! - [`allocate`]: the budgeted choice of one arm per subscriber.
//! - [`policy_value`]: off-policy values of a policy on randomised logged
//!   decisions (inverse propensity, doubly robust) with normal intervals.
//! - [`error`]: [`error::FitError`], the crate's one error type.
//!
//! Parameters are checked before a fit ([`boosted::BoostedParams::check`]
//! gives the only kind of parameters a boosted fit takes). The crate may
//! not touch files, the clock or the environment: clippy's
//! `disallowed_methods` (listed in the workspace's `clippy.toml`) is denied
//! here.

#![deny(clippy::disallowed_methods)]

pub mod allocate;
pub mod boosted;
pub mod economics;
pub mod error;
pub mod learner;
pub mod logistic;
pub mod metrics;
pub mod offers;
pub mod policy_value;
pub mod survival;
pub mod tail;
pub mod uncertainty;
pub mod uplift;
