//! Pipeline stages. Each is a function from typed tables (polars frames),
//! its own settings and explicit inputs (dates, seeds, the training time) to
//! frames or typed results; none opens a path, reads the clock or the
//! environment, and clippy's `disallowed_methods` (see `clippy.toml`) holds
//! them to it. The commands do the I/O around them through the catalog.

#![deny(clippy::disallowed_methods)]

pub mod drift;
pub mod features;
pub mod report;
pub mod score;
pub mod simulate;
pub mod train;
pub mod validate;

use polars::prelude::{DataFrame, Engine, LazyFrame};

use crate::error::{Error, Result};

/// The message of a caught panic (empty when it carried none).
pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Runs a plan on polars' streaming engine, which processes the inputs in
/// morsels, so memory follows the plan's state (group and join tables), not
/// the size of the scanned files. `context` names the step in errors.
///
/// A damaged file can make polars' readers panic in a worker thread (an
/// out-of-range page offset, seen by the random-damage test); that panic
/// reaches this thread and becomes a data error naming the step, so that
/// no input makes the binary panic.
pub fn collect(lf: LazyFrame, context: impl Into<String>) -> Result<DataFrame> {
    collect_with(lf, Engine::Streaming, context.into())
}

/// [`collect`] on polars' in-memory engine, for plans whose inputs are
/// frames already in memory and whose steps keep one row per input row
/// (columns computed row by row, frames placed side by side): there the
/// streaming engine only splits the rows into morsels and gathers them
/// again, and its output need not keep the rows' order.
pub fn collect_in_memory(lf: LazyFrame, context: impl Into<String>) -> Result<DataFrame> {
    collect_with(lf, Engine::InMemory, context.into())
}

fn collect_with(lf: LazyFrame, engine: Engine, context: String) -> Result<DataFrame> {
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        lf.collect_with_engine(engine).map(|r| r.unwrap_single())
    }));
    match run {
        Ok(r) => r.map_err(Error::polars(context)),
        Err(panic) => {
            let what = panic_text(panic.as_ref());
            Err(Error::Data {
                table: context,
                message: format!(
                    "polars failed reading it ({what}): a damaged or truncated Parquet page?"
                ),
            })
        }
    }
}
