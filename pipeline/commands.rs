//! The edge between the command line and the stages: loads settings, asks
//! the catalog for frames, calls the stages, has the catalog write results,
//! and prints summaries to the given writer (stdout in the binary).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use tracing::info;

use crate::catalog::{self, ParquetBatches, StagedDir, TableSource};
use crate::cli::{Command, GenerateArgs, StageArgs};
use crate::config::{self, Mode, Settings};
use crate::error::{Error, Result};
use crate::generate::{GenerateOptions, Generator};
use crate::schema::Table;
use crate::stages::{
    self,
    features::{Features, Inputs as FeatureInputs},
    validate::{self, FileSchema, TableReport, Validated},
};

/// Runs one subcommand.
pub fn execute(command: &Command, out: &mut dyn Write) -> Result<()> {
    match command {
        Command::Generate(args) => generate(args, out).map(|_| ()),
        Command::Validate(args) => {
            let settings = settings(args)?;
            validate(&settings, out).map(|_| ())
        }
        Command::Features(args) => {
            let settings = settings(args)?;
            let validated = validate(&settings, out)?;
            features(&settings, validated, out).map(|_| ())
        }
        Command::Train(args) => {
            let settings = settings(args)?;
            crate::modeling::train(&settings, out).map(|_| ())
        }
        Command::Score(args) => {
            let settings = settings(&args.stage)?;
            let validated = validate(&settings, out)?;
            crate::modeling::score(&settings, validated, args.model.as_deref(), out).map(|_| ())
        }
        Command::Simulate(args) => {
            let settings = settings(&args.stage)?;
            let validated = validate(&settings, out)?;
            crate::simulation::simulate(&settings, validated.tables, args.model.as_deref(), out)
                .map(|_| ())
        }
        Command::Bench(args) => {
            let settings = settings(&args.stage)?;
            crate::modeling::bench(&settings, args.task, args.rows, out)
        }
        Command::Run(args) => run(&settings(args)?, out),
        Command::Config(args) => {
            let settings = settings(args)?;
            let text = toml::to_string_pretty(&settings).map_err(|e| Error::Setting {
                key: "-".into(),
                message: e.to_string(),
            })?;
            write!(out, "{text}").map_err(Error::io("write", "stdout"))
        }
    }
}

fn settings(args: &StageArgs) -> Result<Settings> {
    let raw = match &args.config {
        Some(p) => config::load(p)?,
        None => config::RawConfig::default(),
    };
    config::resolve(args.config.as_deref(), raw, args.overrides())
}

/// What `generate` did.
#[derive(Debug, Serialize)]
pub struct GenerateSummary {
    /// Output directory.
    pub dir: PathBuf,
    /// Rows per table.
    pub rows: Vec<(String, u64)>,
    /// Wall seconds.
    pub seconds: f64,
}

/// `winback generate`: writes the seven tables and `truth.json` into a staged
/// directory, chunk by chunk, and swaps it into place at the end.
pub fn generate(args: &GenerateArgs, out: &mut dyn Write) -> Result<GenerateSummary> {
    generate_with(args, None, out)
}

/// `generate` with the economics given (by `run`) instead of read from
/// `args.config`.
fn generate_with(
    args: &GenerateArgs,
    economics: Option<winback_models::economics::Economics>,
    out: &mut dyn Write,
) -> Result<GenerateSummary> {
    let started = Instant::now();
    let opts = GenerateOptions {
        subscribers: args.subscribers,
        seed: args.seed,
        start: args.start,
        months: args.months,
        chunk_size: args.chunk_size,
        economics: match (economics, &args.config) {
            (Some(e), _) => e,
            (None, Some(path)) => config::economics_of(path)?,
            (None, None) => Default::default(),
        },
    };
    let mut generator = Generator::new(opts)?;
    let staged = StagedDir::new(&args.out)?;
    let mut writers: Vec<(Table, ParquetBatches)> = Table::ALL
        .into_iter()
        .map(|t| {
            (
                t,
                ParquetBatches::new(staged.path().join(format!("{}.parquet", t.name()))),
            )
        })
        .collect();
    let mut rows = [0u64; 7];
    let mut empty = None;
    let mut truth_offers = ParquetBatches::new(staged.path().join("truth_offers.parquet"));
    let mut truth_lapsed = ParquetBatches::new(staged.path().join("truth_lapsed.parquet"));
    let mut empty_truth = None;
    while let Some(chunk) = generator.next_chunk()? {
        truth_offers.write(&chunk.offer_truth)?;
        truth_lapsed.write(&chunk.lapsed_truth)?;
        if empty_truth.is_none() {
            empty_truth = Some((chunk.offer_truth.clear(), chunk.lapsed_truth.clear()));
        }
        for (i, ((_, df), (_, w))) in chunk.tables.iter().zip(writers.iter_mut()).enumerate() {
            rows[i] += df.height() as u64;
            w.write(df)?;
        }
        info!(
            subscribers = chunk.range.end,
            elapsed_s = started.elapsed().as_secs_f64(),
            "generated"
        );
        if empty.is_none() {
            empty = Some(
                chunk
                    .tables
                    .iter()
                    .map(|(_, df)| df.clear())
                    .collect::<Vec<_>>(),
            );
        }
    }
    let empty = empty.expect("at least one chunk");
    for ((_, w), e) in writers.into_iter().zip(&empty) {
        w.finish(e)?;
    }
    let (empty_offers, empty_lapsed) = empty_truth.expect("at least one chunk");
    truth_offers.finish(&empty_offers)?;
    truth_lapsed.finish(&empty_lapsed)?;
    let truth = generator.truth();
    catalog::write_json(&staged.path().join("truth.json"), &truth)?;
    let dir = staged.commit()?;
    let seconds = started.elapsed().as_secs_f64();
    let total: u64 = rows.iter().sum();
    let summary = GenerateSummary {
        dir: dir.clone(),
        rows: Table::ALL
            .iter()
            .zip(rows)
            .map(|(t, n)| (t.name().to_string(), n))
            .collect(),
        seconds,
    };
    let w = |e| Error::io("write", "stdout")(e);
    writeln!(
        out,
        "generated {} subscribers into {}",
        args.subscribers,
        dir.display()
    )
    .map_err(w)?;
    for (t, n) in &summary.rows {
        writeln!(out, "  {t:<16} {n:>12} rows").map_err(w)?;
    }
    writeln!(
        out,
        "  {seconds:.1} s: {:.0} subscribers/s, {:.0} rows/s",
        args.subscribers as f64 / seconds,
        total as f64 / seconds
    )
    .map_err(w)?;
    writeln!(out, "  truth: reacquisition among targeted by arm:").map_err(w)?;
    for a in &truth.arms {
        writeln!(
            out,
            "    {:<9} {:>6.1}%  profit/targeted {:>8.2}  roi {}",
            a.arm,
            100.0 * a.return_rate,
            a.profit_per_targeted,
            a.roi
                .map(|r| format!("{:.0}%", 100.0 * r))
                .unwrap_or_else(|| "-".into())
        )
        .map_err(w)?;
    }
    Ok(summary)
}

/// The ingest report (`validate/report.json`).
#[derive(Debug, Serialize)]
pub struct IngestReport {
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

/// What [`ingest`] found: where each table was read from, each table's
/// conforming plan, and the optional tables that are absent.
type Ingested = (
    Vec<TableSource>,
    Vec<(validate::Conformed, polars::prelude::LazyFrame)>,
    Vec<String>,
);

/// Reads the footers of every table and checks schemas; every problem in
/// every table is reported at once.
fn ingest(settings: &Settings) -> Result<Ingested> {
    let dir = &settings.data_dir;
    if !dir.is_dir() {
        return Err(Error::Io {
            action: "read input directory",
            path: dir.clone(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
        });
    }
    let mut problems = Vec::new();
    let mut sources = Vec::new();
    let mut inputs = Vec::new();
    let mut missing = Vec::new();
    for table in Table::ALL {
        let source = match catalog::locate(dir, table) {
            Ok(Some(s)) => s,
            Ok(None) if table.required() => {
                problems.push(Error::MissingTable {
                    table: table.name().into(),
                    dir: dir.clone(),
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
        for f in &source.files {
            match catalog::read_schema(table, f) {
                Ok((schema, rows)) => files.push(FileSchema {
                    path: f.display().to_string(),
                    schema,
                    rows,
                }),
                Err(e) => {
                    problems.push(e);
                    bad = true;
                }
            }
        }
        if bad {
            continue;
        }
        match validate::conform(table, &files, &settings.validate) {
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
    let started = Instant::now();
    let (sources, inputs, missing_optional) = ingest(settings)?;
    let mut validated = validate::check_rows(inputs, &settings.validate)?;
    let violations = validated.violations();
    let failed = settings.validate.mode == Mode::Strict && !violations.is_empty();
    let report = IngestReport {
        status: if failed { "failed" } else { "passed" },
        mode: settings.validate.mode,
        data_dir: settings.data_dir.clone(),
        config_hash: settings.config_hash.clone(),
        sources,
        missing_optional,
        tables: validated.reports.clone(),
    };
    let staged = StagedDir::new(&settings.out_dir.join("validate"))?;
    for (table, df) in validated.rejected.iter_mut() {
        catalog::write_parquet(
            &staged
                .path()
                .join("rejected")
                .join(format!("{}.parquet", table.name())),
            df,
        )?;
    }
    catalog::write_json(&staged.path().join("report.json"), &report)?;
    let dir = staged.commit()?;
    info!(seconds = started.elapsed().as_secs_f64(), "validate done");
    print_validate(out, &report, &dir).map_err(Error::io("write", "stdout"))?;
    if failed {
        return Err(Error::Rules { violations });
    }
    Ok(validated)
}

fn print_validate(out: &mut dyn Write, report: &IngestReport, dir: &Path) -> std::io::Result<()> {
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
    writeln!(out, "  report: {}", dir.join("report.json").display())
}

/// `winback run`: every stage that exists, from one config.
pub fn run(settings: &Settings, out: &mut dyn Write) -> Result<()> {
    if let Some(demo) = &settings.demo
        && !settings.data_dir.exists()
    {
        info!(dir = %settings.data_dir.display(), "input directory absent: generating the demo sample");
        let args = GenerateArgs {
            subscribers: demo.subscribers,
            seed: demo.seed,
            out: settings.data_dir.clone(),
            start: GenerateOptions::default().start,
            months: GenerateOptions::default().months,
            chunk_size: GenerateOptions::default().chunk_size,
            config: None,
        };
        generate_with(&args, Some(settings.economics), out)?;
    }
    let validated = validate(settings, out)?;
    let tables = validated.tables.clone();
    features(settings, validated, out)?;
    crate::modeling::train(settings, out)?;
    crate::simulation::simulate(settings, tables, None, out)?;
    Ok(())
}

/// Per-output row counts and per-feature null counts (`features/summary.json`).
#[derive(Debug, Serialize)]
pub struct FeatureSummary {
    /// As-of date of the active subscribers.
    pub as_of: String,
    /// Last day covered by the data.
    pub data_end: String,
    /// Churn snapshot dates.
    pub snapshots: Vec<String>,
    /// Rows per output file.
    pub rows: Vec<(String, usize)>,
    /// Per feature: name, encoding, nulls among lapsed rows, nulls among
    /// active rows (none where the frame has no such column).
    pub nulls: Vec<(String, String, Option<usize>, Option<usize>)>,
}

/// `winback features`: point-in-time features and labels under
/// `<out>/features/`, written all or nothing.
pub fn features(
    settings: &Settings,
    validated: Validated,
    out: &mut dyn Write,
) -> Result<Features> {
    let started = Instant::now();
    let s = &settings.features;
    let mut subs = validated
        .tables
        .get(&Table::Subscribers)
        .cloned()
        .expect("subscribers are required");
    let names = subs
        .collect_schema()
        .map_err(Error::polars("features: subscribers schema"))?;
    let missing: Vec<String> = s
        .extra_numeric
        .iter()
        .chain(&s.extra_categorical)
        .filter(|n| !names.contains(n.as_str()))
        .map(|n| format!("`{n}`"))
        .collect();
    if !missing.is_empty() {
        let present: Vec<&str> = names.iter_names().map(|n| n.as_str()).collect();
        return Err(Error::Setting {
            key: "features.extra_numeric / features.extra_categorical".into(),
            message: format!(
                "subscribers has no column {}; columns present: {}",
                missing.join(", "),
                present.join(", ")
            ),
        });
    }
    if !validated.tables.contains_key(&Table::ChurnEvents) {
        info!("no churn_events: lapsed features, offer labels and churn labels are empty");
    }
    let inputs = FeatureInputs::new(validated.tables);
    let staged = StagedDir::new(&settings.out_dir.join("features"))?;
    // Churn snapshots are written as parts of one table (the contract's
    // directory layout), one per snapshot date, as they are built.
    let parts = staged.path().join("churn_snapshots");
    let mut sink = |i: usize, date: chrono::NaiveDate, df: &mut polars::prelude::DataFrame| {
        info!(snapshot = %date, rows = df.height(), "churn snapshot");
        catalog::write_parquet(&parts.join(format!("part-{i:05}.parquet")), df)
    };
    let mut built = stages::features::build(&inputs, s, &mut sink)?;
    let mut rows = Vec::new();
    for (name, df) in [
        ("lapsed", &mut built.lapsed),
        ("active", &mut built.active),
        ("offers", &mut built.offers),
        ("second_lifetime", &mut built.second_lifetime),
    ] {
        rows.push((format!("{name}.parquet"), df.height()));
        catalog::write_parquet(&staged.path().join(format!("{name}.parquet")), df)?;
    }
    rows.push(("churn_snapshots/".to_string(), built.snapshot_rows));
    let nulls = built
        .manifest
        .features
        .iter()
        .map(|spec| {
            let n = |df: &polars::prelude::DataFrame| {
                df.column(&spec.name).ok().map(|c| c.null_count())
            };
            (
                spec.name.clone(),
                format!("{:?}", spec.encoding).to_lowercase(),
                n(&built.lapsed),
                n(&built.active),
            )
        })
        .collect();
    let summary = FeatureSummary {
        as_of: built.as_of.to_string(),
        data_end: built.data_end.to_string(),
        snapshots: built.snapshots.iter().map(|d| d.to_string()).collect(),
        rows,
        nulls,
    };
    catalog::write_json(&staged.path().join("manifest.json"), &built.manifest)?;
    catalog::write_json(&staged.path().join("summary.json"), &summary)?;
    let dir = staged.commit()?;
    info!(seconds = started.elapsed().as_secs_f64(), "features done");
    print_features(out, &summary, &dir).map_err(Error::io("write", "stdout"))?;
    Ok(built)
}

fn print_features(out: &mut dyn Write, s: &FeatureSummary, dir: &Path) -> std::io::Result<()> {
    writeln!(
        out,
        "features as of {} (data end {}; {} churn snapshots {} to {})",
        s.as_of,
        s.data_end,
        s.snapshots.len(),
        s.snapshots.first().map(String::as_str).unwrap_or("-"),
        s.snapshots.last().map(String::as_str).unwrap_or("-")
    )?;
    for (name, n) in &s.rows {
        writeln!(out, "  {name:<24} {n:>12} rows")?;
    }
    writeln!(
        out,
        "  {:<24} {:<9} {:>12} {:>12}",
        "feature", "encoding", "null lapsed", "null active"
    )?;
    let show = |n: &Option<usize>| n.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
    for (name, enc, a, b) in &s.nulls {
        writeln!(out, "  {name:<24} {enc:<9} {:>12} {:>12}", show(a), show(b))?;
    }
    writeln!(out, "  written to {}", dir.display())
}
