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
//!                                    under <out>/simulate/
//! ```
//!
//! Layout: [`cli`] parses flags, [`config`] merges them with the TOML config,
//! [`commands`] is the I/O edge that calls the [`stages`] through the
//! [`catalog`] (the only module that touches files); [`modeling`] is the edge
//! of `train` and `score` (model versions under `<out>/models/`), [`simulation`]
//! that of `simulate`. [`schema`] is the data
//! contract as code; [`generate`] the ground-truth history generator.

pub mod catalog;
pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod generate;
pub mod modeling;
pub mod schema;
pub mod simulation;
pub mod stages;

pub use error::{Error, Result};
