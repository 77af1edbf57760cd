//! # winback
//!
//! A batch pipeline that reads a telecom operator's subscriber history from
//! Parquet and ranks win-back offers and lapsed subscribers by profit.
//!
//! ```text
//!  data dir (Parquet, see shared/docs/data-contract.md)   winback generate
//!        |                                                 (calibrated history
//!        v                                                  + truth.json)
//!   validate  -- contract checks, report.json, rejected/<table>.parquet
//!        |
//!        v
//!   features -> train -> score     models under <out>/models/vNNNN/
//!                      \-> simulate  arms, target list, policy evaluation
//!                              \-> report  report/index.html (reads them all)
//! ```
//!
//! One name per stage: its command, config section, module and output
//! folder. Where each lives and what it reads and writes:
//!
//! | stage | command (edge) | logic | config | reads | writes |
//! |---|---|---|---|---|---|
//! | generate | `commands/generate.rs` | `generate/` | `[economics]` | - | `<dir>/<table>.parquet`, `truth.json`, `truth_offers.parquet`, `truth_lapsed.parquet` |
//! | validate | `commands/validate.rs` | `stages/validate.rs` | `[data]`, `[validate]` | the input tables | `validate/report.json`, `validate/rejected/<table>.parquet` |
//! | features | `commands/features.rs` | `stages/features/` | `[features]` | validated tables | `features/{lapsed,active,offers,second_lifetime}.parquet`, `features/churn_snapshots/`, `manifest.json`, `summary.json` |
//! | train | `commands/train.rs` | `stages/train/` | `[train]`, `[economics]` | `features/` | `models/vNNNN/{return,churn,second_lifetime}.json`, `evaluation.json`, `effects.csv`, `summary.txt` |
//! | score | `commands/score.rs` | `stages/score.rs` | `[features]` | validated tables, a model version | `score/{churn_scores,return_scores}.parquet`, `summary.json` |
//! | simulate | `commands/simulate.rs` | `stages/simulate/` | `[simulate]`, `[economics]` | validated tables, a model version, `features/offers.parquet` | `simulate/{arm_summary,target_list,policy_evaluation}.{parquet,csv}`, `target_list.xlsx`, `summary.json` |
//! | report | `commands/report.rs` | `stages/report/` | `[economics]`, `[simulate]` (budget) | the outputs above, the list's model version | `report/index.html`, `report/<chart>.csv` |
//! | run | `commands/run.rs` | the above in order | all | the input tables | all of the above |
//! | nightly | `commands/nightly.rs` | validate, score, simulate, report | all, `[nightly]`, `[runs]` | the input tables, the production model version, `features/offers.parquet` | `runs/<as-of>/` (the stages' folders and `run.json`), `runs/latest` |
//! | runs | `commands/nightly.rs` | - | - | `runs/` | stdout only |
//! | models | `commands/models.rs` | - | `[train]` (the gate) | `models/` | `models/production`, `models/registry.jsonl` |
//! | bench | `commands/bench.rs` | the stages it times | all | `features/`, the newest model version | stdout only |
//! | config | `commands/config.rs` | `config.rs` | all | the config file | stdout only |
//!
//! Layers: [`cli`] parses flags; [`config`] turns the TOML file and the
//! flags into [`config::Settings`], built from each stage's own settings
//! type; [`commands`] is the I/O edge, one file per command; [`catalog`]
//! is the only code that touches files or builds a data path; [`stages`]
//! are pure (frames and settings in, frames or typed results out);
//! [`artifact`] is the trained models as stored; [`schema`] is the data
//! contract as code; [`generate`] the ground-truth history generator;
//! [`error`] the one error type. `tests/architecture.rs` checks that no
//! file imports in a circle and that only the catalog touches files.

pub mod artifact;
pub mod catalog;
pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod generate;
pub mod progress;
pub mod schema;
pub mod stages;

pub use error::{Error, Result};
