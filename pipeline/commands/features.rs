//! `winback features`: point-in-time features and labels under
//! `<out>/features/`, written all or nothing (churn snapshots as parts, one
//! per snapshot date, as they are built).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use chrono::NaiveDate;
use polars::prelude::DataFrame;
use serde::Serialize;
use tracing::info;

use crate::catalog::{FeatureSet, Output, ParquetBatches};
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::schema::Table;
use crate::stages::features::{self as stage, Features, Inputs, Part};
use crate::stages::validate::Validated;

use super::common::{catalog, dates, stdout};

/// Per-output row counts and per-feature null counts (`features/summary.json`).
#[derive(Debug, Serialize)]
pub struct FeatureSummary {
    /// As-of date of the active subscribers.
    pub as_of: String,
    /// Last day covered by the data.
    pub data_end: String,
    /// What set it: the `table.column` holding the latest date, or
    /// `features.data_end`.
    pub data_end_set_by: String,
    /// Churn snapshot dates.
    pub snapshots: Vec<String>,
    /// Snapshots left out or whose horizon is not observed, and offers
    /// whose window is not, with their dates and the data's end.
    pub notes: Vec<String>,
    /// Offers whose response window ends after the data's end (not used
    /// to train or evaluate the return model).
    pub offers_window_unobserved: usize,
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
    let _progress = crate::progress::stage("features");
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
    let not_numeric: Vec<String> = s
        .extra_numeric
        .iter()
        .filter_map(|n| {
            names
                .get(n.as_str())
                .filter(|d| !(d.is_primitive_numeric() || d.is_bool()))
                .map(|d| format!("`{n}` is {d}"))
        })
        .collect();
    if !not_numeric.is_empty() {
        return Err(Error::Setting {
            key: "features.extra_numeric".into(),
            message: format!(
                "subscribers columns listed as numeric are not: {}; list them under features.extra_categorical, or convert them",
                not_numeric.join(", ")
            ),
        });
    }
    if !validated.tables.contains_key(&Table::ChurnEvents) {
        info!("no churn_events: lapsed features, offer labels and churn labels are empty");
    }
    let staged = catalog(settings).stage(Output::Features)?;
    // The bills spilled by block, where the subscribers are more than a
    // block, go beside the outputs: removed with the stage's directory if
    // the run stops.
    let inputs = Inputs::new(validated.tables).with_spills(crate::catalog::spill_in(staged.path()));
    let dates = dates(&inputs, settings)?;
    let data_end_set_by = dates.data_end_set_by.clone();
    let dates_notes = dates.data_end_notes.clone();
    // The outputs are written on threads of their own while the next is
    // built (building is mostly one core's work; writing, LZ4 and the
    // files' sync, another's): the four sets as they come, the churn
    // snapshots through a rendezvous, so that memory holds at most the
    // snapshot being written and the one being built. Each output is one
    // file written a row group at a time, as its parts come (one, or one
    // per block of subscribers). Snapshots are parts of one table (the
    // contract's directory layout), one per snapshot date.
    let built = std::thread::scope(|scope| -> Result<Features> {
        let staged = &staged;
        let (sets, sets_rx) = std::sync::mpsc::sync_channel::<(FeatureSet, DataFrame)>(4);
        let (snapshots, snapshots_rx) =
            std::sync::mpsc::sync_channel::<(usize, NaiveDate, DataFrame)>(0);
        let sets_writer = scope.spawn(move || -> Result<()> {
            let mut files: BTreeMap<FeatureSet, (ParquetBatches, DataFrame)> = BTreeMap::new();
            for (set, df) in sets_rx {
                let (file, _) = files
                    .entry(set)
                    .or_insert_with(|| (staged.batches_lz4(set.name()), df.clear()));
                file.write(&df)?;
            }
            for (_, (file, empty)) in files {
                file.finish(&empty)?;
            }
            Ok(())
        });
        let snapshots_writer = scope.spawn(move || -> Result<()> {
            let mut files: BTreeMap<usize, (ParquetBatches, DataFrame, NaiveDate, usize)> =
                BTreeMap::new();
            for (i, date, df) in snapshots_rx {
                let (file, _, _, rows) = files.entry(i).or_insert_with(|| {
                    (
                        staged.part_batches(FeatureSet::ChurnSnapshots, i),
                        df.clear(),
                        date,
                        0,
                    )
                });
                file.write(&df)?;
                *rows += df.height();
            }
            for (_, (file, empty, date, rows)) in files {
                file.finish(&empty)?;
                info!(snapshot = %date, rows, "churn snapshot");
            }
            Ok(())
        });
        let built = {
            // A refused hand-over means a writer stopped on an error, which
            // its join below reports.
            let stopped = || Error::Setting {
                key: "output.dir".into(),
                message: "a writer of the features stopped".into(),
            };
            let mut sink = |part: Part, df: &DataFrame| -> Result<()> {
                let set = match part {
                    Part::Snapshot(i, date) => {
                        return snapshots.send((i, date, df.clone())).map_err(|_| stopped());
                    }
                    Part::Lapsed => FeatureSet::Lapsed,
                    Part::Active => FeatureSet::Active,
                    Part::Offers => FeatureSet::Offers,
                    Part::SecondLifetime => FeatureSet::SecondLifetime,
                };
                sets.send((set, df.clone())).map_err(|_| stopped())
            };
            stage::build(&inputs, s, dates, &mut sink)
        };
        drop((sets, snapshots));
        let join = |w: std::thread::ScopedJoinHandle<'_, Result<()>>| {
            w.join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        };
        // The writers' errors first: they are the cause when both failed.
        join(sets_writer)?;
        join(snapshots_writer)?;
        built
    })?;
    if built.blocks > 1 {
        info!(
            blocks = built.blocks,
            block_subscribers = s.block_subscribers,
            "features built a block of subscribers at a time, their bills spilled to disk"
        );
    }
    let mut rows = Vec::new();
    for (set, n) in [
        (FeatureSet::Lapsed, built.lapsed_rows),
        (FeatureSet::Active, built.active_rows),
        (FeatureSet::Offers, built.offer_rows),
        (FeatureSet::SecondLifetime, built.second_lifetime_rows),
    ] {
        rows.push((set.file_name(), n));
    }
    rows.push((FeatureSet::ChurnSnapshots.file_name(), built.snapshot_rows));
    let nulls = built
        .manifest
        .features
        .iter()
        .map(|spec| {
            (
                spec.name.clone(),
                format!("{:?}", spec.encoding).to_lowercase(),
                built.lapsed_nulls.get(&spec.name).copied(),
                built.active_nulls.get(&spec.name).copied(),
            )
        })
        .collect();
    // Offers whose response window the data does not cover: how many, and
    // the dates they were made on.
    let unobserved = &built.offers_unobserved;
    let offers_window_unobserved = unobserved.len();
    let offers_window_note = (!unobserved.is_empty()).then(|| {
        format!(
            "{} offers made {} to {}: their {}-day response windows end after the data's end {}; not used to train or evaluate",
            unobserved.len(),
            unobserved.iter().min().expect("not empty"),
            unobserved.iter().max().expect("not empty"),
            s.response_window_days,
            built.data_end
        )
    });
    let summary = FeatureSummary {
        as_of: built.as_of.to_string(),
        data_end: built.data_end.to_string(),
        data_end_set_by,
        snapshots: built.snapshots.iter().map(|d| d.to_string()).collect(),
        notes: built
            .snapshot_notes
            .iter()
            .cloned()
            .chain(offers_window_note)
            .chain(built.level_notes.iter().cloned())
            .chain(dates_notes)
            .collect(),
        offers_window_unobserved,
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
        "features as of {} (data end {}, set by {}; {} churn snapshots {} to {})",
        s.as_of,
        s.data_end,
        s.data_end_set_by,
        s.snapshots.len(),
        s.snapshots.first().map(String::as_str).unwrap_or("-"),
        s.snapshots.last().map(String::as_str).unwrap_or("-")
    )?;
    for n in &s.notes {
        writeln!(out, "  note: {n}")?;
    }
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
