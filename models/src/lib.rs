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
//! - [`metrics`]: ROC and PR AUC, log loss, Brier score, calibration with
//!   expected calibration error, gains and lift by decile.

pub mod economics;
pub mod logistic;
pub mod metrics;
