//! `winback nightly`: the scheduler's one job. Under the output directory's
//! lock: validate, score with the model version, simulate and report as of
//! the date, all into a staging folder under `<out>/runs/` that is swapped
//! in whole as `runs/<as-of>/`; `runs/latest` is moved (an atomic link
//! swap) only after all of it succeeded, so a killed or failed night never
//! shows half a list and never touches the previous one. Each night
//! carries `run.json`, its record.
//!
//! A night with the same inputs (file fingerprints from the Parquet
//! footers), model version, config, code and dates as a published one is a
//! no-op (`--force` recomputes it, to the same bytes). Data whose end is
//! older than `nightly.max_data_age_days` before the as-of date is refused
//! (exit 4, a record in `runs/refused-<as-of>.json`, `latest` unchanged).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::artifact::ModelKind;
use crate::catalog::{self, Catalog, FileFingerprint, has_model};
use crate::cli::{NightlyArgs, RunsAction};
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::schema::Table;
use crate::stages::drift::{self, Drift, DriftReference};
use crate::stages::features::Inputs;

use crate::config::fnv1a;

use super::common::{catalog as run_catalog, dates, stdout};
use super::report::RunNotes;
use super::{report, score, simulate};

/// One input table's files, as fingerprinted before the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableInput {
    /// Table.
    pub table: String,
    /// Its files.
    pub files: Vec<FileFingerprint>,
}

/// A table's rows as validation counted them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableRows {
    /// Table.
    pub table: String,
    /// Rows read.
    pub read: u64,
    /// Rows accepted.
    pub accepted: u64,
    /// Rows rejected.
    pub rejected: u64,
}

/// The model version a night used.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelRef {
    /// Version name (`v0003`).
    pub version: String,
    /// Its directory.
    pub path: PathBuf,
    /// FNV-1a hash of every file of the version.
    pub fingerprint: String,
}

/// `runs/<as-of>/run.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run's id: a hash of its inputs, model, config, code and dates,
    /// so that the same night gets the same id (and the same bytes).
    pub run_id: String,
    /// `published`, or `refused`.
    pub status: String,
    /// The process's exit code.
    pub exit_code: u8,
    /// Why it was refused.
    pub reason: Option<String>,
    /// As-of date.
    pub as_of: String,
    /// The data's end.
    pub data_end: String,
    /// What set the data's end.
    pub data_end_set_by: String,
    /// Start, UTC.
    pub started_at: String,
    /// End, UTC.
    pub finished_at: String,
    /// winback's version.
    pub code_version: String,
    /// The config file.
    pub config_path: Option<PathBuf>,
    /// Its hash.
    pub config_hash: String,
    /// The model version.
    pub model: ModelRef,
    /// Every input file's fingerprint.
    pub inputs: Vec<TableInput>,
    /// Rows per table.
    pub rows: Vec<TableRows>,
    /// Rows per output.
    pub outputs: Vec<(String, usize)>,
    /// Seconds per stage.
    pub seconds: Vec<(String, f64)>,
    /// Notes worth a look (validation notes, defaults taken, skipped
    /// stages, repairs after a killed run, shifted features).
    pub warnings: Vec<String>,
    /// Each feature's and the score's population stability index against
    /// the model's training population, highest first.
    #[serde(default)]
    pub drift: Vec<Drift>,
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn version_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Records a refused night (`runs/refused-<as-of>.json`) and the error
/// that exits with code 4; `latest` is not touched.
fn refuse(cat: &Catalog, record: &mut RunRecord, reason: String) -> Result<Error> {
    record.status = "refused".into();
    record.exit_code = 4;
    record.reason = Some(reason.clone());
    record.finished_at = now();
    let path = cat.run_dir(&format!("refused-{}.json", record.as_of));
    catalog::write_json(&path, record)?;
    Ok(Error::Refused {
        reason,
        record: path,
    })
}

/// The published night with run id `id`, if any.
fn published(cat: &Catalog, id: &str) -> Option<String> {
    cat.list_runs().into_iter().find_map(|(name, _)| {
        let r: RunRecord = catalog::read_json_if_present(&cat.run_file(&name, "run.json"))
            .ok()
            .flatten()?;
        (r.run_id == id && r.status == "published").then_some(name)
    })
}

/// `winback nightly`: the stages' summaries go to `stages`, the one-line
/// result to `out` (with `-q`, `stages` is a sink).
pub fn nightly(
    settings: &Settings,
    args: &NightlyArgs,
    stages: &mut dyn Write,
    out: &mut dyn Write,
) -> Result<()> {
    let _progress = crate::progress::stage("nightly");
    let cat = run_catalog(settings);
    let _lock = cat.lock("nightly", args.wait)?;
    let started_at = now();
    let mut warnings = Vec::new();
    for note in cat.recover_runs()? {
        warn!("{note}");
        warnings.push(note);
    }
    // What the night rests on, before any work.
    cat.check_data_dir()?;
    let mut inputs = Vec::new();
    for table in Table::ALL {
        if let Some(source) = cat.locate(table)? {
            inputs.push(TableInput {
                table: table.name().to_string(),
                files: catalog::fingerprint(&source)?,
            });
        }
    }
    let model_dir = cat.model_version(args.model.as_deref())?;
    let mut model_bytes = Vec::new();
    for (name, bytes) in catalog::version_files(&model_dir)? {
        model_bytes.extend_from_slice(name.as_bytes());
        model_bytes.extend_from_slice(&fnv1a(&bytes).into_bytes());
    }
    let model = ModelRef {
        version: version_name(&model_dir),
        path: model_dir.clone(),
        fingerprint: fnv1a(&model_bytes),
    };
    let key = serde_json::json!({
        "inputs": inputs,
        "model": model.fingerprint,
        "config": settings.config_hash,
        "code": env!("CARGO_PKG_VERSION"),
        "as_of": settings.as_of,
        "data_end": settings.data_end,
        "mode": settings.validate.mode,
    });
    let run_id = fnv1a(key.to_string().as_bytes());
    if !args.force
        && let Some(name) = published(&cat, &run_id)
    {
        writeln!(
            out,
            "already published: runs/{name} has the same inputs, model {}, config and dates (run {run_id}); nothing to do (--force recomputes)",
            model.version
        )
        .map_err(stdout)?;
        return Ok(());
    }

    let mut staged = cat.stage_run()?;
    let mut night = settings.clone();
    night.out_dir = staged.path().to_path_buf();
    let mut seconds = Vec::new();
    let clock = Instant::now();
    // Scoring's events are found as validation goes, and its pass over
    // the bills adds them up ([`score::validate_for_scoring`]).
    let (validated, prepared) = score::validate_for_scoring(&night, stages)?;
    seconds.push(("validate".to_string(), clock.elapsed().as_secs_f64()));
    let rows: Vec<TableRows> = validated
        .reports
        .iter()
        .map(|r| TableRows {
            table: r.table.clone(),
            read: r.rows_read,
            accepted: r.rows_accepted,
            rejected: r.rows_rejected,
        })
        .collect();
    for r in &validated.reports {
        warnings.extend(r.notes.iter().map(|n| format!("{}: {n}", r.table)));
    }
    warnings.extend(settings.history_note.clone());
    let tables = validated.tables.clone();
    // Found once: validation's tap found them already where it kept its
    // sums (a pass over billing and, for stray dates, a warning saved).
    let d = match prepared.as_ref() {
        Some(p) => p.dates.clone(),
        None => dates(&Inputs::new(tables.clone()), settings)?,
    };
    let as_of = d.as_of.to_string();
    let mut record = RunRecord {
        run_id: run_id.clone(),
        status: "published".into(),
        exit_code: 0,
        reason: None,
        as_of: as_of.clone(),
        data_end: d.data_end.to_string(),
        data_end_set_by: d.data_end_set_by.clone(),
        started_at,
        finished_at: String::new(),
        code_version: env!("CARGO_PKG_VERSION").to_string(),
        config_path: settings.config_path.clone(),
        config_hash: settings.config_hash.clone(),
        model,
        inputs,
        rows,
        outputs: Vec::new(),
        seconds,
        warnings,
        drift: Vec::new(),
    };

    // Freshness: stale data is refused, the previous night kept.
    let age = (d.as_of - d.data_end).num_days();
    if age > settings.nightly.max_data_age_days as i64 {
        let reason = format!(
            "the data ends {} ({} days before the as-of date {as_of}); nightly.max_data_age_days is {}",
            d.data_end, age, settings.nightly.max_data_age_days
        );
        drop(staged);
        return Err(refuse(&cat, &mut record, reason)?);
    }

    // The features as of the date, built once for the drift check, the
    // scores and the simulation.
    let clock = Instant::now();
    let inputs = Inputs::new(tables.clone());
    let current = score::current_features(settings, &inputs, prepared)?;
    record
        .seconds
        .push(("features".into(), clock.elapsed().as_secs_f64()));

    // Drift: the scoring population against the model's training one.
    let clock = Instant::now();
    match catalog::read_json_if_present::<DriftReference>(&catalog::version_file(
        &model_dir,
        "drift_reference.json",
    ))? {
        None => record.warnings.push(format!(
            "model version {} has no drift reference (no churn model, or trained before drift checks): drift not checked",
            record.model.version
        )),
        Some(reference) => {
            let set = catalog::load_models(&model_dir)?;
            let score = match &set.churn {
                Some(m) => m.predict_arms(&current.active, &[None])?.0.pop(),
                None => None,
            };
            record.drift = drift::psi(
                &reference,
                &current.active,
                score.as_deref(),
                settings.nightly.psi_warn,
                settings.nightly.psi_fail,
            )?;
            for x in record.drift.iter().filter(|x| x.status != "stable") {
                record.warnings.push(format!(
                    "{} {} from the training population ({}): PSI {:.3}",
                    x.feature, x.status, reference.population, x.psi
                ));
            }
        }
    }
    record
        .seconds
        .push(("drift".into(), clock.elapsed().as_secs_f64()));
    let drifted: Vec<String> = record
        .drift
        .iter()
        .filter(|x| x.status == "drifted" && x.feature != "score")
        .map(|x| format!("{} (PSI {:.2})", x.feature, x.psi))
        .collect();
    if !drifted.is_empty() {
        let reason = format!(
            "the scoring population drifted from the model's training population: {} (nightly.psi_fail is {})",
            drifted.join(", "),
            settings.nightly.psi_fail
        );
        drop(staged);
        return Err(refuse(&cat, &mut record, reason)?);
    }

    night.parquet_metadata = vec![
        ("winback.as_of".into(), as_of.clone()),
        ("winback.model_version".into(), record.model.version.clone()),
        ("winback.config_hash".into(), settings.config_hash.clone()),
        (
            "winback.code_version".into(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        ("winback.run_id".into(), run_id.clone()),
    ];
    night.as_of = Some(d.as_of);
    night.data_end = Some(d.data_end);
    let clock = Instant::now();
    let scored = score::score_current(&night, &current, Some(&model_dir), clock, stages)?;
    record
        .seconds
        .push(("score".into(), clock.elapsed().as_secs_f64()));
    record.outputs.extend(
        scored
            .rows
            .iter()
            .map(|(name, n)| (format!("score/{name}"), *n)),
    );
    let mut notes = RunNotes::default();
    let absent: Vec<&str> = [ModelKind::Return, ModelKind::SecondLifetime]
        .into_iter()
        .filter(|k| !has_model(&model_dir, *k))
        .map(|k| k.name())
        .collect();
    let clock = Instant::now();
    if absent.is_empty() {
        let s =
            simulate::simulate_current(&night, &inputs, &current, Some(&model_dir), &cat, stages)?;
        record
            .outputs
            .push(("simulate/target_list.parquet".into(), s.eligible));
    } else {
        let why = format!(
            "model version {} has no {} model, which the simulation needs",
            record.model.version,
            absent.join(" / ")
        );
        record.warnings.push(format!("simulate skipped: {why}"));
        notes.skipped_simulate = Some(why);
    }
    record
        .seconds
        .push(("simulate".into(), clock.elapsed().as_secs_f64()));
    let clock = Instant::now();
    report::report(&night, &notes, stages)?;
    record
        .seconds
        .push(("report".into(), clock.elapsed().as_secs_f64()));
    record.finished_at = now();
    staged.write_json("run", &record)?;
    staged.retarget(&cat.run_dir(&as_of));
    let written = staged.commit()?;
    // `latest` follows the newest as-of date: a backfill of an older date
    // is published beside it without moving it back.
    let moved = match cat.latest_run() {
        Some(l) if l.as_str() > as_of.as_str() && cat.list_runs().iter().any(|(n, _)| *n == l) => {
            false
        }
        _ => {
            cat.set_latest(&as_of)?;
            true
        }
    };
    let pruned = cat.prune_runs(settings.runs.keep)?;
    writeln!(
        out,
        "published {} (run {run_id}, model {}, data to {}){}{}",
        written.display(),
        record.model.version,
        record.data_end,
        if moved {
            "; latest moved to it"
        } else {
            "; latest left on a newer night"
        },
        if pruned.is_empty() {
            String::new()
        } else {
            format!("; removed {} older night(s)", pruned.len())
        }
    )
    .map_err(stdout)?;
    Ok(())
}

/// `winback runs list | show DATE`.
pub fn runs(settings: &Settings, action: &RunsAction, out: &mut dyn Write) -> Result<()> {
    let cat = run_catalog(settings);
    let latest = cat.latest_run();
    match action {
        RunsAction::List => {
            let runs = cat.list_runs();
            if runs.is_empty() {
                writeln!(out, "no nightly runs under {}", cat.runs_dir().display())
                    .map_err(stdout)?;
            }
            for (name, _) in runs {
                let r: Option<RunRecord> =
                    catalog::read_json_if_present(&cat.run_file(&name, "run.json"))?;
                let mark = if Some(&name) == latest.as_ref() {
                    "*"
                } else {
                    " "
                };
                match r {
                    Some(r) => writeln!(
                        out,
                        "{mark} {name}  {:<9}  data to {}  model {}  {}  run {}",
                        r.status,
                        r.data_end,
                        r.model.version,
                        r.outputs
                            .iter()
                            .map(|(o, n)| format!("{o} {n}"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        r.run_id
                    ),
                    None => writeln!(out, "{mark} {name}  (no run record)"),
                }
                .map_err(stdout)?;
            }
            writeln!(out, "(* = latest: {})", latest.as_deref().unwrap_or("none"))
                .map_err(stdout)?;
        }
        RunsAction::Show { date } => {
            let name = if date == "latest" {
                latest.clone().ok_or_else(|| Error::Setting {
                    key: "date".into(),
                    message: "no published night yet: `latest` points nowhere".into(),
                })?
            } else {
                date.clone()
            };
            let published: Option<serde_json::Value> =
                catalog::read_json_if_present(&cat.run_file(&name, "run.json"))?;
            let refused_path = cat.run_dir(&format!("refused-{name}.json"));
            let refused: Option<serde_json::Value> = catalog::read_json_if_present(&refused_path)?;
            match published.or(refused) {
                Some(v) => writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&v).unwrap_or_default()
                )
                .map_err(stdout)?,
                None => {
                    return Err(Error::Setting {
                        key: "date".into(),
                        message: format!("no run for {name} under {}", cat.runs_dir().display()),
                    });
                }
            }
        }
    }
    Ok(())
}
