//! `winback features`: point-in-time features and labels under
//! `<out>/features/`, written all or nothing (churn snapshots as parts, one
//! per snapshot date, as they are built).

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;
use tracing::info;

use crate::catalog::{FeatureSet, Output};
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::schema::Table;
use crate::stages::features::{self as stage, Features, Inputs};
use crate::stages::validate::Validated;

use super::common::{catalog, dates, stdout};

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
    let inputs = Inputs::new(validated.tables);
    let dates = dates(&inputs, settings)?;
    let staged = catalog(settings).stage(Output::Features)?;
    // Churn snapshots are written as parts of one table (the contract's
    // directory layout), one per snapshot date, as they are built.
    let mut sink = |i: usize, date: chrono::NaiveDate, df: &mut polars::prelude::DataFrame| {
        info!(snapshot = %date, rows = df.height(), "churn snapshot");
        staged.write_part(FeatureSet::ChurnSnapshots, i, df)
    };
    let mut built = stage::build(&inputs, s, dates, &mut sink)?;
    let mut rows = Vec::new();
    for (set, df) in [
        (FeatureSet::Lapsed, &mut built.lapsed),
        (FeatureSet::Active, &mut built.active),
        (FeatureSet::Offers, &mut built.offers),
        (FeatureSet::SecondLifetime, &mut built.second_lifetime),
    ] {
        rows.push((set.file_name(), df.height()));
        staged.write_parquet(set.name(), df)?;
    }
    rows.push((FeatureSet::ChurnSnapshots.file_name(), built.snapshot_rows));
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
    staged.write_json("manifest", &built.manifest)?;
    staged.write_json("summary", &summary)?;
    let dir = staged.commit()?;
    info!(seconds = started.elapsed().as_secs_f64(), "features done");
    print_features(out, &summary, &dir).map_err(stdout)?;
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
