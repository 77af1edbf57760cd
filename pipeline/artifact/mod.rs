//! The trained models, as `train` writes them and `score` and `simulate`
//! read them: one type per kind, a [`ModelSet`] with a named field per
//! kind, the provenance every model carries, how frames become matrices
//! ([`layout`], [`design`]) and how a model is applied ([`predict`]'s
//! probabilities, linear forms, contributions and survival curves).
//!
//! Each kind is stored as `<out>/models/<version>/<kind>.json` (the catalog
//! owns the paths): [`ReturnModel`] (P(return) under every arm, with its
//! uplift record), [`ChurnModel`], and [`SecondLifetimeModel`] (the monthly
//! hazard with its margin model and duration check). The shared part,
//! [`Model`], is flattened into each file, so every file reads as one
//! object. Nothing here reads a file, the clock or the environment: the
//! training time is an input of [`Provenance`].

#![deny(clippy::disallowed_methods)]

pub mod design;
pub mod evaluation;
pub mod layout;
mod predict;
pub mod split;

use std::collections::BTreeMap;
use std::ops::Deref;
use std::path::Path;

use serde::{Deserialize, Serialize};
use winback_models::learner::{Learner, Ridge};
use winback_models::uplift::Qini;

use crate::error::{Error, Result};
use crate::stages::features::Manifest;
use crate::stages::train::settings::TrainSettings;
use evaluation::{Candidate, DurationCheck, Effect, Evaluation, StepScore};
use layout::Layout;
use split::Split;

/// Version of the model artifact layout.
pub const FORMAT_VERSION: u32 = 2;

/// The arm that won a return back, as the hazard's arm column.
pub const WON_BACK_BY: &str = "won_back_by";

/// The kinds of model, in the order they are trained and listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// P(return within the response window | features, arm).
    Return,
    /// P(churn within the horizon | features as of a snapshot).
    Churn,
    /// Monthly hazard of a second lifetime, with its margin model.
    SecondLifetime,
}

impl ModelKind {
    /// The name used in files, messages and summaries.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Return => "return",
            ModelKind::Churn => "churn",
            ModelKind::SecondLifetime => "second_lifetime",
        }
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Provenance and training facts stored with every model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// Artifact layout version.
    pub format_version: u32,
    /// winback version that trained it.
    pub code_version: String,
    /// When (UTC, RFC 3339), as given to `train` by its command.
    pub trained_at: String,
    /// Hash of the config file.
    pub config_hash: String,
    /// Fingerprint of the training matrix and labels.
    pub data_fingerprint: String,
    /// Matrix rows fitted on.
    pub training_rows: usize,
    /// Positive labels among them.
    pub training_positives: usize,
    /// How the rows were split into training and holdout.
    pub split: Split,
    /// Rows of the final refit on every row, holdout included, when the
    /// stored learner was refitted after its evaluation (the second
    /// lifetime: the holdout's returns and the follow-up after the cut
    /// carry most of what is known of long second lifetimes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refit_rows: Option<usize>,
    /// Training settings.
    pub settings: TrainSettings,
}

/// What every trained model holds, whatever its kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Model {
    /// Which model.
    pub model: ModelKind,
    /// The label modelled.
    pub label: String,
    /// Provenance.
    pub provenance: Provenance,
    /// How frames become matrices (holds the feature manifest).
    pub layout: Layout,
    /// The kept learner.
    pub learner: Learner,
    /// Which learner was kept.
    pub chosen: String,
    /// Every candidate's holdout evaluation.
    pub candidates: Vec<Candidate>,
    /// Cross-validation of the logistic candidates.
    pub cross_validation: Vec<StepScore>,
    /// Holdout evaluation of the kept learner.
    pub holdout: Evaluation,
    /// Coefficients, odds ratios and importances.
    pub effects: Vec<Effect>,
}

impl Model {
    /// The feature manifest the model was trained with.
    pub fn manifest(&self) -> &Manifest {
        &self.layout.design.manifest
    }

    /// Checks that `data` (the manifest of the frames to score) describes
    /// every feature this model reads with the same type and encoding;
    /// `path` is the model's file, for the message.
    pub fn check_manifest(&self, data: &Manifest, path: &Path) -> Result<()> {
        let mut problems = Vec::new();
        if data.version != self.manifest().version {
            problems.push(format!(
                "manifest version {} in the data, {} in the model",
                data.version,
                self.manifest().version
            ));
        }
        // `won_back_by` is the hazard's own column (the arm to simulate),
        // not a feature of the data.
        for name in self
            .layout
            .features()
            .into_iter()
            .filter(|n| n != WON_BACK_BY)
        {
            let Some(want) = self.manifest().features.iter().find(|f| f.name == name) else {
                continue;
            };
            match data.features.iter().find(|f| f.name == name) {
                None => problems.push(format!("feature `{name}` is not in the data's manifest")),
                Some(have) if have.dtype != want.dtype || have.encoding != want.encoding => {
                    problems.push(format!(
                        "feature `{name}`: the model was trained on {} {:?}, the data has {} {:?}",
                        want.dtype, want.encoding, have.dtype, have.encoding
                    ))
                }
                Some(_) => {}
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Model {
                path: path.to_path_buf(),
                message: format!(
                    "{} model does not match the data's features:\n  {}",
                    self.model,
                    problems.join("\n  ")
                ),
            })
        }
    }

    /// Checks the artifact layout version; `path` names the file.
    pub fn check_format(&self, path: &Path) -> Result<()> {
        if self.provenance.format_version == FORMAT_VERSION {
            Ok(())
        } else {
            Err(Error::Model {
                path: path.to_path_buf(),
                message: format!(
                    "artifact format {} (this winback reads {})",
                    self.provenance.format_version, FORMAT_VERSION
                ),
            })
        }
    }
}

/// The return model with its uplift record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReturnModel {
    /// The model.
    #[serde(flatten)]
    pub model: Model,
    /// Uplift of each arm over control on the holdout.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uplift: Vec<(String, Qini)>,
}

/// The churn model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChurnModel {
    /// The model.
    #[serde(flatten)]
    pub model: Model,
}

/// The second lifetime: the monthly hazard, its margin model and the
/// predicted-against-observed durations.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecondLifetimeModel {
    /// The hazard model.
    #[serde(flatten)]
    pub model: Model,
    /// The monthly margin model.
    pub margin: MarginModel,
    /// Predicted against observed duration by leave reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub durations: Vec<DurationCheck>,
}

macro_rules! deref_to_model {
    ($($t:ty),*) => {$(
        impl Deref for $t {
            type Target = Model;
            fn deref(&self) -> &Model {
                &self.model
            }
        }
    )*};
}
deref_to_model!(ReturnModel, ChurnModel, SecondLifetimeModel);

/// Expected monthly margin of a second lifetime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarginModel {
    /// Layout (design and arm columns).
    pub layout: Layout,
    /// Ridge regression of the mean monthly margin.
    pub ridge: Ridge,
    /// Holdout: rows, mean observed and predicted, RMSE, R².
    pub holdout: BTreeMap<String, f64>,
}

/// The models of one version, by kind (a kind the data could not support
/// is absent).
#[derive(Debug, Clone, Default)]
pub struct ModelSet {
    /// The return model.
    pub return_model: Option<ReturnModel>,
    /// The churn model.
    pub churn: Option<ChurnModel>,
    /// The second-lifetime model.
    pub second_lifetime: Option<SecondLifetimeModel>,
}

impl ModelSet {
    /// The shared part of each present model, in training order (return, churn, second lifetime).
    pub fn models(&self) -> Vec<&Model> {
        let mut v: Vec<&Model> = Vec::new();
        if let Some(m) = &self.return_model {
            v.push(m);
        }
        if let Some(m) = &self.churn {
            v.push(m);
        }
        if let Some(m) = &self.second_lifetime {
            v.push(m);
        }
        v
    }

    /// True when no model is present.
    pub fn is_empty(&self) -> bool {
        self.models().is_empty()
    }
}
