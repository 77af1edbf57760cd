//! `winback validate`: reads every table's footer, checks schemas, then
//! every row rule of the contract; writes `validate/report.json` (and, in
//! quarantine mode, `validate/rejected/<table>.parquet`) all or nothing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use polars::prelude::LazyFrame;
use serde::Serialize;
use tracing::info;

use crate::catalog::{self, TableSource};
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::schema::Table;
use crate::stages::validate::{self as stage, Conformed, FileSchema, Mode, TableReport, Validated};

use super::common::{catalog as run_catalog, stdout};

/// The validate report (`validate/report.json`).
#[derive(Debug, Serialize)]
pub struct ValidateReport {
    /// `passed`, or `failed` when strict validation found violations.
    pub status: &'static str,
    /// Mode used.
    pub mode: Mode,
    /// Input directory.
    pub data_dir: PathBuf,
    /// Hash of the config file.
    pub config_hash: String,
    /// Where each present table was read from.
    pub sources: Vec<TableSource>,
    /// Optional tables that are absent.
    pub missing_optional: Vec<String>,
    /// Per table counts, violations and notes.
    pub tables: Vec<TableReport>,
}

/// What [`read_tables`] found: where each table was read from, each table's
/// conforming plan, and the optional tables that are absent.
type Ingested = (Vec<TableSource>, Vec<(Conformed, LazyFrame)>, Vec<String>);

/// Reads the footers of every table and checks schemas; every problem in
/// every table is reported at once.
fn read_tables(settings: &Settings) -> Result<Ingested> {
    let cat = run_catalog(settings);
    cat.check_data_dir()?;
    let dir = cat.data_dir();
    let mut problems = Vec::new();
    let mut sources = Vec::new();
    let mut inputs = Vec::new();
    let mut missing = Vec::new();
    for table in Table::ALL {
        let source = match cat.locate(table) {
            Ok(Some(s)) => s,
            Ok(None) if table.required() => {
                problems.push(Error::MissingTable {
                    table: table.name().into(),
                    dir: dir.to_path_buf(),
                });
                continue;
            }
            Ok(None) => {
                missing.push(table.name().to_string());
                continue;
            }
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        let mut files = Vec::new();
        let mut bad = false;
        // A partitioned table's partition values are columns after the
        // files' own, as the scan reads them.
        let partitions = source.partition_schema();
        for f in &source.files {
            match catalog::read_schema(table, f) {
                Ok((mut schema, rows)) => {
                    for (key, dtype) in &partitions {
                        if schema.contains(key) && !bad {
                            problems.push(Error::BadFile {
                                table: table.name().into(),
                                path: f.clone(),
                                reason: format!(
                                    "column `{key}` is both in the file and a partition directory's key"
                                ),
                            });
                            bad = true;
                        }
                        schema.with_column(key.as_str().into(), dtype.clone());
                    }
                    files.push(FileSchema {
                        path: f.display().to_string(),
                        schema,
                        rows,
                    })
                }
                Err(e) => {
                    problems.push(e);
                    bad = true;
                }
            }
        }
        if bad {
            continue;
        }
        if table.required() && files.iter().all(|f| f.rows == 0) {
            problems.push(Error::Data {
                table: table.name().into(),
                message: format!(
                    "the table has no rows ({}); it is required: at least one row",
                    source.path.display()
                ),
            });
            continue;
        }
        match stage::conform(table, &files, &settings.validate) {
            Ok(c) => {
                let lf = c.apply(catalog::scan(&source)?);
                inputs.push((c, lf));
                sources.push(source);
            }
            Err(lines) => problems.push(Error::Schema { problems: lines }),
        }
    }
    match Error::from_many(problems) {
        Some(e) => Err(e),
        None => Ok((sources, inputs, missing)),
    }
}

/// `winback validate`: checks the input and writes `validate/report.json`
/// (and, in quarantine mode, `validate/rejected/<table>.parquet`).
pub fn validate(settings: &Settings, out: &mut dyn Write) -> Result<Validated> {
    validate_tapped(settings, out, &mut |_, _, _| Ok(None))
}

/// [`validate`], `before_billing`'s tap seeing its pass over the bills
/// ([`stage::check_rows_tapped`]).
pub(crate) fn validate_tapped(
    settings: &Settings,
    out: &mut dyn Write,
    before_billing: stage::BeforeBilling<'_>,
) -> Result<Validated> {
    let _progress = crate::progress::stage("validate");
    let started = Instant::now();
    let (sources, inputs, missing_optional) = read_tables(settings)?;
    let mut validated = stage::check_rows_tapped(inputs, &settings.validate, before_billing)?;
    let violations = validated.violations();
    let failed = settings.validate.mode == Mode::Strict && !violations.is_empty();
    let report = ValidateReport {
        status: if failed { "failed" } else { "passed" },
        mode: settings.validate.mode,
        data_dir: settings.data_dir.clone(),
        config_hash: settings.config_hash.clone(),
        sources,
        missing_optional,
        tables: validated.reports.clone(),
    };
    // Without an output directory (`validate` alone), check and print only.
    let dir = if settings.out_dir.as_os_str().is_empty() {
        None
    } else {
        let staged = run_catalog(settings).stage(catalog::Output::Validate)?;
        for (table, df) in validated.rejected.iter_mut() {
            staged.write_rejected(*table, df)?;
        }
        staged.write_json("report", &report)?;
        Some(staged.commit()?)
    };
    info!(seconds = started.elapsed().as_secs_f64(), "validate done");
    print_validate(out, &report, dir.as_deref()).map_err(stdout)?;
    if failed {
        return Err(Error::Rules { violations });
    }
    Ok(validated)
}

fn print_validate(
    out: &mut dyn Write,
    report: &ValidateReport,
    dir: Option<&Path>,
) -> std::io::Result<()> {
    writeln!(out, "validate ({} mode): {}", report.mode, report.status)?;
    writeln!(
        out,
        "  {:<16} {:>12} {:>12} {:>10}",
        "table", "read", "accepted", "rejected"
    )?;
    for t in &report.tables {
        writeln!(
            out,
            "  {:<16} {:>12} {:>12} {:>10}",
            t.table, t.rows_read, t.rows_accepted, t.rows_rejected
        )?;
        for n in &t.notes {
            writeln!(out, "      note: {n}")?;
        }
    }
    for m in &report.missing_optional {
        writeln!(out, "  {m:<16} absent (optional)")?;
    }
    match dir {
        Some(d) => writeln!(out, "  written to {}", d.display()),
        None => writeln!(out, "  nothing written (no --out or output.dir)"),
    }
}
