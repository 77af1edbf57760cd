//! `winback generate`: a calibrated subscriber history with known ground
//! truth, written chunk by chunk into a staged directory and swapped into
//! place at the end.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;
use tracing::info;
use winback_models::economics::Economics;

use crate::catalog::{ParquetBatches, StagedDir};
use crate::cli::GenerateArgs;
use crate::config;
use crate::error::Result;
use crate::generate::{GenerateOptions, Generator};
use crate::schema::Table;

use super::common::stdout;

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
pub(crate) fn generate_with(
    args: &GenerateArgs,
    economics: Option<Economics>,
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
        known_on: args.known_on,
    };
    let mut generator = Generator::new(opts)?;
    let progress = crate::progress::counted("generate", args.subscribers, "subscribers");
    let staged = StagedDir::new(&args.out)?;
    let mut writers: Vec<(Table, ParquetBatches)> = Table::ALL
        .into_iter()
        .map(|t| (t, staged.batches(t.name())))
        .collect();
    let mut rows = [0u64; 7];
    let mut empty = None;
    let mut truth_offers = staged.batches("truth_offers");
    let mut truth_lapsed = staged.batches("truth_lapsed");
    let mut empty_truth = None;
    while let Some(chunk) = generator.next_chunk()? {
        truth_offers.write(&chunk.offer_truth)?;
        if args.known_on.is_none() {
            truth_lapsed.write(&chunk.lapsed_truth)?;
        }
        if empty_truth.is_none() {
            empty_truth = Some((chunk.offer_truth.clear(), chunk.lapsed_truth.clear()));
        }
        for (i, ((_, df), (_, w))) in chunk.tables.iter().zip(writers.iter_mut()).enumerate() {
            rows[i] += df.height() as u64;
            w.write(df)?;
        }
        progress.set(chunk.range.end);
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
    drop(progress);
    let empty = empty.expect("at least one chunk");
    for ((_, w), e) in writers.into_iter().zip(&empty) {
        w.finish(e)?;
    }
    let (empty_offers, empty_lapsed) = empty_truth.expect("at least one chunk");
    truth_offers.finish(&empty_offers)?;
    if args.known_on.is_none() {
        truth_lapsed.finish(&empty_lapsed)?;
    }
    let truth = generator.truth();
    staged.write_json("truth", &truth)?;
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
    let w = stdout;
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
