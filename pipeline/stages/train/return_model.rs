//! The return model: P(return within the response window | features,
//! arm), with arm main effects (control is the reference) and arm x
//! feature interactions (the pooled S-learner), or a model per arm (the
//! T-learner), so each lapsed subscriber gets a probability under every
//! arm; Qini of each arm over control on the holdout for every candidate.
//! The choice among the candidates waits for the second lifetime (the
//! `train` command values each candidate's policy on past offers no
//! model saw), then the chosen one is refitted.

use polars::prelude::*;
use winback_models::uplift::qini;

use crate::error::{Error, Result};
use crate::schema::{ARMS, col};
use crate::stages::features::{Manifest, f};

use crate::artifact::predict::predict_arms;
use crate::artifact::split::Split;
use crate::artifact::{ModelKind, ReturnModel};
use winback_models::policy_value::PolicyValue;

use super::harness::*;
use super::settings::TrainSettings;

/// The return model's candidates, fitted before the holdout cut and
/// evaluated on the holdout (metrics and Qini), waiting to be chosen.
pub struct ReturnCandidates {
    fits: Candidates,
    split: Split,
}

/// Fits the return model's candidates on the offers whose window is
/// observed: the pooled learners (one model with arm columns and arm x
/// feature interactions) and, with `train.return_per_arm`, a learner per
/// arm of each kind `train.learner` allows. A learner per arm the data
/// cannot support (an arm without returns) is left out with a warning.
pub fn fit_return_candidates(
    offers: &DataFrame,
    manifest: &Manifest,
    window_days: u32,
    s: &TrainSettings,
) -> Result<ReturnCandidates> {
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
    let rows = Rows::Plain { label: f::RETURNED };
    let mut fits = fit_candidates(&problem, &rows, s)?;
    if s.return_per_arm {
        for kind in s.learner_kinds() {
            let bins = fits.step_bins.unwrap_or(0);
            match fit_per_arm(&problem, &rows, s, kind, bins) {
                Ok((kept, candidate)) => fits.push(kept, candidate),
                Err(Error::Fit { message, .. }) => {
                    tracing::warn!(model = "return", "left out: {message}")
                }
                Err(e) => return Err(e),
            }
        }
    }
    // Uplift of each arm over control among the held-out offers, for
    // every candidate.
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
    for (kept, candidate) in fits.kept.iter().zip(fits.candidates.iter_mut()) {
        let (p, _) = predict_arms(&kept.layout, &kept.learner, "return", test, &arms)?;
        let p_control = &p[0];
        for (a, p_arm) in ARMS[1..].iter().zip(&p[1..]) {
            let rows: Vec<usize> = (0..test.height())
                .filter(|i| matches!(arm[*i].as_deref(), Some(x) if x == *a || x == ARMS[0]))
                .collect();
            let u: Vec<f64> = rows.iter().map(|i| p_arm[*i] - p_control[*i]).collect();
            let yy: Vec<bool> = rows.iter().map(|i| y[*i]).collect();
            let t: Vec<bool> = rows.iter().map(|i| arm[*i].as_deref() == Some(a)).collect();
            match qini(&u, &yy, &t) {
                Ok(q) => candidate.uplift.push((a.to_string(), q)),
                Err(e) => tracing::warn!(arm = a, learner = candidate.learner, "no Qini: {e}"),
            }
        }
    }
    Ok(ReturnCandidates { fits, split })
}

/// The return model of the candidates' lowest holdout log loss, without
/// policy values (which need a second lifetime): what `winback bench
/// --task train-return` times.
pub fn fit_return(
    offers: &DataFrame,
    manifest: &Manifest,
    window_days: u32,
    s: &TrainSettings,
    stamp: &Stamp,
) -> Result<ReturnModel> {
    let c = fit_return_candidates(offers, manifest, window_days, s)?;
    let chosen = c.lowest_log_loss();
    let note = format!("{}: the lowest holdout log loss", c.names()[chosen]);
    c.finish(Choice { chosen, note }, offers, stamp, s)
}

/// How the return model was chosen among its candidates.
pub struct Choice {
    /// The chosen candidate's position.
    pub chosen: usize,
    /// Why, in a sentence.
    pub note: String,
}

impl ReturnCandidates {
    /// The candidates' names (`logistic`, `boosted`, `logistic_per_arm`,
    /// `boosted_per_arm`), in order.
    pub fn names(&self) -> Vec<String> {
        self.fits
            .candidates
            .iter()
            .map(|c| c.learner.clone())
            .collect()
    }

    /// The candidate with the lowest holdout log loss.
    pub fn lowest_log_loss(&self) -> usize {
        self.fits.lowest_log_loss()
    }

    /// Each candidate as an evaluated return model (fitted before the
    /// cut), for the policy values.
    pub fn evaluated(&self, stamp: &Stamp, s: &TrainSettings) -> Vec<ReturnModel> {
        (0..self.fits.kept.len())
            .map(|i| ReturnModel {
                model: stored(
                    ModelKind::Return,
                    f::RETURNED,
                    self.fits.only(i).keep(0),
                    self.split.clone(),
                    stamp,
                    s,
                ),
                uplift: Vec::new(),
                choice: String::new(),
            })
            .collect()
    }

    /// Records each candidate's policy value.
    pub fn set_policy_values(&mut self, values: Vec<PolicyValue>) {
        for (c, v) in self.fits.candidates.iter_mut().zip(values) {
            c.policy_value = Some(v);
        }
    }

    /// The chosen candidate, stored: refitted on every offer with an
    /// observed window, the held-out ones included (the figures stay
    /// those of the fit before the cut).
    pub fn finish(
        self,
        choice: Choice,
        offers: &DataFrame,
        stamp: &Stamp,
        s: &TrainSettings,
    ) -> Result<ReturnModel> {
        let uplift = self.fits.candidates[choice.chosen].uplift.clone();
        let fitted = self.fits.keep(choice.chosen);
        let mut artifact = ReturnModel {
            model: stored(ModelKind::Return, f::RETURNED, fitted, self.split, stamp, s),
            uplift,
            choice: choice.note,
        };
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
}
