//! Pipeline stages. Each is a function from typed tables (polars frames) and
//! its own settings to typed results; none opens a path, reads the clock or
//! the environment. The catalog does the I/O around them.

pub mod design;
pub mod features;
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
