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
pub mod predict;
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
pub const FORMAT_VERSION: u32 = 3;

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
    /// Fingerprint of the stored learner's training matrix and labels.
    pub data_fingerprint: String,
    /// Matrix rows the stored learner was fitted on.
    pub training_rows: usize,
    /// Positive labels among them.
    pub training_positives: usize,
    /// How the rows were split into training and holdout.
    pub split: Split,
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
    /// The stored learner, used for scoring and simulation: the evaluated
    /// fit itself, or (when `evaluated` is present) the kept learner
    /// refitted on every row, the holdout's included.
    pub learner: Learner,
    /// Which learner was kept.
    pub chosen: String,
    /// Every candidate's holdout evaluation (of the fits before the cut:
    /// out of sample).
    pub candidates: Vec<Candidate>,
    /// Cross-validation of the logistic candidates.
    pub cross_validation: Vec<StepScore>,
    /// Holdout evaluation of the kept learner as evaluated (out of sample).
    pub holdout: Evaluation,
    /// Terms of the stored learner (coefficients, odds ratios, importances;
    /// the evaluated fit's when nothing was refitted, with the other
    /// candidate's terms beside them).
    pub effects: Vec<Effect>,
    /// The evaluated fit, when the stored learner is a refit: the learner
    /// fitted before the cut that every holdout figure describes, its
    /// terms and its training rows. Absent: the stored learner is the
    /// evaluated one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluated: Option<EvaluatedFit>,
}

/// The fit before the cut of a model whose stored learner was refitted on
/// every row: what its out-of-sample figures describe.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvaluatedFit {
    /// The learner fitted on the training rows only.
    pub learner: Learner,
    /// Its terms (and the other candidate's).
    pub effects: Vec<Effect>,
    /// Fingerprint of its training matrix and labels.
    pub data_fingerprint: String,
    /// Matrix rows it was fitted on.
    pub training_rows: usize,
    /// Positive labels among them.
    pub training_positives: usize,
}

/// Which of a model's fits a figure or a prediction comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FitRole {
    /// Fitted before the holdout cut; evaluated on rows it never saw.
    Evaluated,
    /// Refitted on every row for scoring; its in-sample figures are fitted
    /// values, not evaluations.
    Refit,
}

impl FitRole {
    /// The name in tables.
    pub fn name(self) -> &'static str {
        match self {
            FitRole::Evaluated => "evaluated",
            FitRole::Refit => "refit",
        }
    }
}

impl Model {
    /// The model as evaluated: the learner fitted before the cut (itself
    /// when nothing was refitted), for figures on the holdout's rows.
    pub fn as_evaluated(&self) -> Model {
        let mut m = self.clone();
        if let Some(e) = m.evaluated.take() {
            m.learner = e.learner;
            m.effects = e.effects;
            m.provenance.data_fingerprint = e.data_fingerprint;
            m.provenance.training_rows = e.training_rows;
            m.provenance.training_positives = e.training_positives;
        }
        m
    }

    /// Each fit's terms with its role: the evaluated fit's, then the
    /// refit's when there is one.
    pub fn effects_by_fit(&self) -> Vec<(FitRole, &Effect)> {
        match &self.evaluated {
            None => self
                .effects
                .iter()
                .map(|e| (FitRole::Evaluated, e))
                .collect(),
            Some(ev) => ev
                .effects
                .iter()
                .map(|e| (FitRole::Evaluated, e))
                .chain(self.effects.iter().map(|e| (FitRole::Refit, e)))
                .collect(),
        }
    }

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
    /// How the learner was chosen among the candidates (log loss, or the
    /// policy value on past offers no model saw), in a sentence.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub choice: String,
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

impl ReturnModel {
    /// The return model as evaluated (see [`Model::as_evaluated`]).
    pub fn as_evaluated(&self) -> ReturnModel {
        ReturnModel {
            model: self.model.as_evaluated(),
            uplift: self.uplift.clone(),
            choice: self.choice.clone(),
        }
    }
}

impl SecondLifetimeModel {
    /// The hazard and margin models as evaluated (see
    /// [`Model::as_evaluated`]).
    pub fn as_evaluated(&self) -> SecondLifetimeModel {
        let mut margin = self.margin.clone();
        if let Some(r) = margin.evaluated.take() {
            margin.ridge = r;
        }
        SecondLifetimeModel {
            model: self.model.as_evaluated(),
            margin,
            durations: self.durations.clone(),
        }
    }
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
    /// Ridge regression of the mean monthly margin (stored: refitted on
    /// every return when `evaluated` is present).
    pub ridge: Ridge,
    /// The ridge fitted before the cut, which `holdout` describes, when
    /// the stored one is a refit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluated: Option<Ridge>,
    /// Holdout of the evaluated fit: rows, mean observed and predicted,
    /// RMSE, R².
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
