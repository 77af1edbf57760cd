//! `winback models`: the model registry. Versions are `<out>/models/vNNNN/`
//! (each `train` writes a new candidate); `models/production` is a link to
//! the version in production, moved atomically by `promote` and `rollback`
//! and by `train` itself when `train.auto_promote` is set and the new
//! version passes the gate; every move is a line of
//! `models/registry.jsonl` (when, who, what, from which version, why).
//! `score`, `simulate` and `nightly` use production unless `--model` names
//! a version, and the newest version while none was promoted.

use std::io::Write;
use std::path::Path;

use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::catalog::{self, Catalog};
use crate::cli::ModelsAction;
use crate::config::Settings;
use crate::error::{Error, Result};

use super::common::{catalog as run_catalog, stdout};

fn name_of(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn evaluation(dir: &Path) -> Result<Option<Value>> {
    catalog::read_json_if_present(&catalog::version_file(dir, "evaluation.json"))
}

/// Each model's chosen learner and its holdout ROC AUC and log loss.
fn figures(ev: &Value) -> Vec<(String, String, Option<f64>, Option<f64>)> {
    ev.get("models")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| {
            let name = m.get("model")?.as_str()?.to_string();
            let chosen = m.get("chosen")?.as_str()?.to_string();
            let h = m
                .get("candidates")?
                .as_array()?
                .iter()
                .find(|c| c.get("learner").and_then(Value::as_str) == Some(&chosen))?
                .get("holdout")?;
            Some((
                name,
                chosen,
                h.get("roc_auc").and_then(Value::as_f64),
                h.get("log_loss").and_then(Value::as_f64),
            ))
        })
        .collect()
}

fn who() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

fn resolve(cat: &Catalog, version: &str) -> Result<std::path::PathBuf> {
    let dir = if version == "production" {
        cat.production_version().ok_or_else(|| Error::Setting {
            key: "version".into(),
            message: "no version has been promoted to production yet".into(),
        })?
    } else {
        cat.version_dir(version)
    };
    cat.existing_version(&dir).ok_or_else(|| Error::Model {
        path: dir.clone(),
        message: format!(
            "no such model version (versions: {})",
            cat.model_versions()
                .iter()
                .map(|(_, p)| name_of(p))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}

fn promote(
    cat: &Catalog,
    version: &str,
    action: &str,
    reason: Option<String>,
    out: &mut dyn Write,
) -> Result<()> {
    let previous = cat.production_version().map(|p| name_of(&p));
    cat.set_production(version)?;
    cat.log_registry(&json!({
        "at": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        "by": who(),
        "action": action,
        "version": version,
        "previous": previous,
        "reason": reason,
    }))?;
    writeln!(
        out,
        "production: {version} (was {}); {action} logged in models/registry.jsonl",
        previous.as_deref().unwrap_or("none")
    )
    .map_err(stdout)
}

/// The gate of `train.auto_promote`: why `candidate` may not replace
/// `production` (empty: it may). A model production has and the candidate
/// lacks, a holdout log loss risen by more than the allowed amount, or a
/// ROC AUC fallen by more, each stops it.
pub fn gate(candidate: &Value, production: &Value, settings: &Settings) -> Vec<String> {
    let new = figures(candidate);
    let mut why = Vec::new();
    for (model, _, auc, loss) in figures(production) {
        let Some((_, learner, new_auc, new_loss)) = new.iter().find(|f| f.0 == model) else {
            why.push(format!("no {model} model (production has one)"));
            continue;
        };
        if let (Some(a), Some(b)) = (loss, new_loss)
            && b - a > settings.train.promote_max_log_loss_increase
        {
            why.push(format!(
                "{model} ({learner}): holdout log loss {b:.4} against production's {a:.4} (at most +{} allowed)",
                settings.train.promote_max_log_loss_increase
            ));
        }
        if let (Some(a), Some(b)) = (auc, new_auc)
            && a - b > settings.train.promote_max_auc_decrease
        {
            why.push(format!(
                "{model} ({learner}): holdout ROC AUC {b:.4} against production's {a:.4} (at most -{} allowed)",
                settings.train.promote_max_auc_decrease
            ));
        }
    }
    why
}

/// After `train`: with `train.auto_promote`, promotes the new version
/// when it passes the gate (or when nothing is in production yet).
pub fn after_training(settings: &Settings, version: &Path, out: &mut dyn Write) -> Result<()> {
    if !settings.train.auto_promote {
        return Ok(());
    }
    let cat = run_catalog(settings);
    let name = name_of(version);
    let candidate = evaluation(version)?.unwrap_or(Value::Null);
    let blocked = match cat.production_version() {
        None => Vec::new(),
        Some(p) => gate(
            &candidate,
            &evaluation(&p)?.unwrap_or(Value::Null),
            settings,
        ),
    };
    if blocked.is_empty() {
        promote(
            &cat,
            &name,
            "auto-promote",
            Some("train.auto_promote: passed the gate".into()),
            out,
        )
    } else {
        writeln!(
            out,
            "not promoted: {name} stays a candidate ({}); production unchanged",
            blocked.join("; ")
        )
        .map_err(stdout)
    }
}

/// `winback models`.
pub fn models(settings: &Settings, action: &ModelsAction, out: &mut dyn Write) -> Result<()> {
    let cat = run_catalog(settings);
    let production = cat.production_version().map(|p| name_of(&p));
    match action {
        ModelsAction::List => {
            let versions = cat.model_versions();
            if versions.is_empty() {
                writeln!(out, "no model versions (run `winback train`)").map_err(stdout)?;
            }
            for (_, dir) in versions {
                let name = name_of(&dir);
                let mark = if Some(&name) == production.as_ref() {
                    "*"
                } else {
                    " "
                };
                let ev = evaluation(&dir)?.unwrap_or(Value::Null);
                let parts: Vec<String> = figures(&ev)
                    .into_iter()
                    .map(|(m, l, auc, loss)| {
                        format!(
                            "{m} {l} auc {} log loss {}",
                            auc.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into()),
                            loss.map(|v| format!("{v:.4}"))
                                .unwrap_or_else(|| "-".into())
                        )
                    })
                    .collect();
                writeln!(out, "{mark} {name}  {}", parts.join(" | ")).map_err(stdout)?;
            }
            writeln!(
                out,
                "(* = production: {}; holdout figures of the evaluated fits)",
                production
                    .as_deref()
                    .unwrap_or("none promoted, the newest is used")
            )
            .map_err(stdout)?;
        }
        ModelsAction::Show { version } => {
            let dir = resolve(&cat, version)?;
            let mut shown = json!({
                "version": name_of(&dir),
                "production": production.as_deref() == Some(name_of(&dir).as_str()),
                "evaluation": evaluation(&dir)?,
            });
            for kind in ["return", "churn", "second_lifetime"] {
                let m: Option<Value> = catalog::read_json_if_present(&catalog::version_file(
                    &dir,
                    &format!("{kind}.json"),
                ))?;
                if let Some(p) = m.and_then(|m| m.get("provenance").cloned()) {
                    shown[format!("{kind}_provenance")] = p;
                }
            }
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&shown).unwrap_or_default()
            )
            .map_err(stdout)?;
        }
        ModelsAction::Promote { version, reason } => {
            let _lock = cat.lock("models promote", false)?;
            let dir = resolve(&cat, version)?;
            promote(&cat, &name_of(&dir), "promote", reason.clone(), out)?;
        }
        ModelsAction::Rollback { reason } => {
            let _lock = cat.lock("models rollback", false)?;
            let current = production.clone().ok_or_else(|| Error::Setting {
                key: "rollback".into(),
                message: "no version is in production".into(),
            })?;
            // The version production held before the move that made the
            // current one production.
            let before = cat
                .registry_log()
                .iter()
                .rev()
                .find(|e| e.get("version").and_then(Value::as_str) == Some(current.as_str()))
                .and_then(|e| {
                    e.get("previous")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .ok_or_else(|| Error::Setting {
                    key: "rollback".into(),
                    message: format!(
                        "{current} is the first production version: nothing to roll back to"
                    ),
                })?;
            resolve(&cat, &before)?;
            promote(&cat, &before, "rollback", reason.clone(), out)?;
        }
    }
    Ok(())
}
