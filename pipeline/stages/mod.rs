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

/// Runs a plan on polars' streaming engine, which processes the inputs in
/// morsels, so memory follows the plan's state (group and join tables), not
/// the size of the scanned files. `context` names the step in errors.
pub fn collect(lf: LazyFrame, context: impl Into<String>) -> Result<DataFrame> {
    lf.collect_with_engine(Engine::Streaming)
        .map(|r| r.unwrap_single())
        .map_err(Error::polars(context))
}
