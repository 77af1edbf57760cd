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

use crate::cli::Command;
use crate::error::Result;
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
        Command::Score(args) => {
            let settings = settings(args.stage.out.config.as_deref(), args.stage.overrides())?;
            let validated = validate::validate(&settings, out)?;
            score::score(&settings, validated.tables, args.model.as_deref(), out).map(|_| ())
        }
        Command::Simulate(args) => {
            let settings = settings(args.stage.out.config.as_deref(), args.stage.overrides())?;
            let validated = validate::validate(&settings, out)?;
            simulate::simulate(&settings, validated.tables, args.model.as_deref(), out).map(|_| ())
        }
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
