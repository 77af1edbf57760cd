//! The I/O edge: one file per command, named as the command. Each loads
//! its settings, asks the [`catalog`] for inputs, calls its stage, hands
//! the results to the catalog and prints a summary to the given writer
//! (stdout in the binary). Only here (and in `main.rs`) are the clock and
//! the file system's answers read; the stages get dates, seeds and frames.

pub mod bench;
mod common;
pub mod config;
pub mod features;
pub mod generate;
pub mod models;
pub mod nightly;
pub mod report;
pub mod run;
pub mod score;
pub mod simulate;
pub mod train;
pub mod validate;

use std::io::Write;

use std::collections::BTreeMap;
use std::path::Path;

use polars::prelude::LazyFrame;

use crate::cli::{Command, ModelArgs};
use crate::config::Settings;
use crate::error::Result;
use crate::schema::Table;
use common::settings;

/// Runs one subcommand.
pub fn execute(command: &Command, out: &mut dyn Write) -> Result<()> {
    execute_with(command, out, false)
}

/// Runs one subcommand; `quiet` (`-q`) keeps a nightly run's stage
/// summaries off stdout, leaving its one-line result.
pub fn execute_with(command: &Command, out: &mut dyn Write, quiet: bool) -> Result<()> {
    match command {
        Command::Generate(args) => generate::generate(args, out).map(|_| ()),
        Command::Validate(args) => {
            let settings = settings(args.out.config.as_deref(), args.overrides())?;
            validate::validate(&settings, out).map(|_| ())
        }
        Command::Features(args) => {
            let settings = settings(args.out.config.as_deref(), args.overrides())?;
            let validated = validate::validate(&settings, out)?;
            features::features(&settings, validated, out).map(|_| ())
        }
        Command::Train(args) => {
            let settings = settings(args.out.config.as_deref(), args.out.overrides())?;
            let _lock = common::catalog(&settings).lock("train", args.wait)?;
            let summary = train::train(&settings, out)?;
            models::after_training(&settings, &summary.version, out)
        }
        Command::Models(args) => {
            let settings = settings(args.out.config.as_deref(), args.out.overrides())?;
            models::models(&settings, &args.action, out)
        }
        Command::Score(args) => as_of_the_date(
            args,
            out,
            Box::new(|s, tables, prepared, model, out| {
                score::score_prepared(s, tables, prepared, model, out).map(|_| ())
            }),
        ),
        Command::Simulate(args) => as_of_the_date(
            args,
            out,
            Box::new(|s, tables, prepared, model, out| {
                simulate::simulate(s, tables, prepared, model, out).map(|_| ())
            }),
        ),
        Command::Bench(args) => {
            let settings = settings(args.out.config.as_deref(), args.out.overrides())?;
            bench::bench(&settings, args.task, args.rows, out)
        }
        Command::Run(args) => run::run(
            &settings(args.out.config.as_deref(), args.overrides())?,
            out,
        ),
        Command::Nightly(args) => {
            let settings = settings(args.stage.out.config.as_deref(), args.stage.overrides())?;
            if quiet {
                nightly::nightly(&settings, args, &mut std::io::sink(), out)
            } else {
                // The stages' summaries first, the one-line result last.
                let mut result = Vec::new();
                let r = nightly::nightly(&settings, args, out, &mut result);
                out.write_all(&result)
                    .map_err(crate::error::Error::io("write", "stdout"))?;
                r
            }
        }
        Command::Runs(args) => {
            let settings = settings(args.out.config.as_deref(), args.out.overrides())?;
            nightly::runs(&settings, &args.action, out)
        }
        Command::Report(args) => {
            let settings = settings(args.out.config.as_deref(), args.out.overrides())?;
            report::report(&settings, &report::RunNotes::default(), out).map(|_| ())
        }
        Command::Config(args) => {
            let settings = settings(args.out.config.as_deref(), args.overrides())?;
            config::print(&settings, out)
        }
    }
}

/// What a command on the subscribers as of a date (`score`, `simulate`)
/// is given: its settings, the validated tables, the features' events and
/// bills prepared during validation, the model version asked for.
type OnTheDate<'a> = dyn FnOnce(
        &Settings,
        BTreeMap<Table, LazyFrame>,
        Option<score::Prepared>,
        Option<&Path>,
        &mut dyn Write,
    ) -> Result<()>
    + 'a;

/// Runs `then` on validated tables, scoring's bills summed by
/// validation's pass over them ([`score::validate_for_scoring`]).
fn as_of_the_date(args: &ModelArgs, out: &mut dyn Write, then: Box<OnTheDate<'_>>) -> Result<()> {
    let settings = settings(args.stage.out.config.as_deref(), args.stage.overrides())?;
    let (validated, prepared) = score::validate_for_scoring(&settings, out)?;
    then(
        &settings,
        validated.tables,
        prepared,
        args.model.as_deref(),
        out,
    )
}
