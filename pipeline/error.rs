//! The one error type of the `winback` library.
//!
//! Every variant carries the context a user needs to act: the file, the
//! table, the column, the rule and offending subscriber ids. The binary's
//! edge (`main.rs`) turns these into messages with `hint:` lines and exit
//! codes; nothing in the library prints or exits.

use std::path::PathBuf;

use serde::Serialize;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config file could not be read or did not parse into settings.
    #[error("config {path}: {message}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong, naming the key and what was expected.
        message: String,
    },

    /// A setting has a value that parses but makes no sense.
    #[error("invalid setting `{key}`: {message}")]
    Setting {
        /// Dotted key, e.g. `validate.mode`.
        key: String,
        /// What was expected.
        message: String,
    },

    /// A required input table is absent from the data directory.
    #[error(
        "table `{table}` is missing from {dir}: expected `{table}.parquet` or a directory `{table}/` of part files"
    )]
    MissingTable {
        /// Canonical table name.
        table: String,
        /// The data directory searched.
        dir: PathBuf,
    },

    /// A file is not a readable Parquet file (empty, truncated, other format).
    #[error("table `{table}`: {path} is not a readable Parquet file: {reason}")]
    BadFile {
        /// Canonical table name.
        table: String,
        /// The offending file.
        path: PathBuf,
        /// Why it could not be read.
        reason: String,
    },

    /// One or more schema problems (missing columns, wrong types) in the input.
    #[error("input schema does not meet the data contract:\n{}", .problems.join("\n"))]
    Schema {
        /// One line per problem, each naming table, column and expectation.
        problems: Vec<String>,
    },

    /// Strict validation found rows that break the contract's rules.
    #[error("input rows break the data contract ({} rule(s) violated):\n{}", .violations.len(), .violations.iter().map(|v| format!("  - {v}")).collect::<Vec<_>>().join("\n"))]
    Rules {
        /// Every violated rule, with counts and example ids.
        violations: Vec<Violation>,
    },

    /// The data, though it meets the contract row by row, cannot support
    /// what was asked of it (no billed month, no eligible subscriber, a
    /// subscriber matching several rows of another table).
    #[error("{table}: {message}")]
    Data {
        /// The table (or stage input) at fault.
        table: String,
        /// What is wrong and what to do.
        message: String,
    },

    /// Several independent problems, all reported at once.
    #[error("{} problems:\n{}", .0.len(), .0.iter().map(|e| format!("  - {}", e.to_string().replace('\n', "\n    "))).collect::<Vec<_>>().join("\n"))]
    Many(Vec<Error>),

    /// Reading or writing a file failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("write", "read", "rename", ...).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A dataframe operation failed; `context` says which dataset or step.
    #[error("{context}: {source}")]
    Polars {
        /// Dataset or step.
        context: String,
        /// The underlying polars error.
        #[source]
        source: polars::error::PolarsError,
    },

    /// A trained model cannot be used: absent, unreadable, or trained on
    /// features that differ from the data's.
    #[error("model {path}: {message}")]
    Model {
        /// The model directory or file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },

    /// A model could not be fitted or evaluated.
    #[error("{model} model: {message}")]
    Fit {
        /// Which model.
        model: String,
        /// What went wrong.
        message: String,
    },

    /// Another winback job holds the output directory's lock.
    #[error(
        "{path} is locked by another winback job ({holder}); it exits when done (pass --wait to wait for it)"
    )]
    Busy {
        /// The lock file.
        path: PathBuf,
        /// Who holds it: command, process id, start time.
        holder: String,
    },

    /// A nightly run refused to publish (stale data or drift): its run
    /// record says why and the previous `latest` stays.
    #[error("refused to publish: {reason} (the run record is {record}; `latest` is unchanged)")]
    Refused {
        /// Why.
        reason: String,
        /// The run record written.
        record: PathBuf,
    },

    /// A chart or a workbook of the report could not be drawn.
    #[error("report: {what}: {message}")]
    Render {
        /// Which chart or file.
        what: String,
        /// What went wrong.
        message: String,
    },

    /// Serialising or parsing a JSON artifact failed.
    #[error("{path}: {source}")]
    Json {
        /// The artifact.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// One error, or all of them.
    pub fn from_many(mut errors: Vec<Error>) -> Option<Self> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(Error::Many(errors)),
        }
    }

    /// Wraps an I/O error with the action and path.
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }

    /// Wraps a polars error with the dataset or step it happened in.
    pub fn polars(context: impl Into<String>) -> impl FnOnce(polars::error::PolarsError) -> Self {
        let context = context.into();
        move |source| Error::Polars { context, source }
    }

    /// True when the error is the input data's fault (exit code 3), not the
    /// configuration's (2) or the machine's (1): the contract broken, or the
    /// data unable to support what was asked (a model that cannot be fitted
    /// on it included).
    pub fn is_data_error(&self) -> bool {
        match self {
            Error::MissingTable { .. }
            | Error::BadFile { .. }
            | Error::Schema { .. }
            | Error::Rules { .. }
            | Error::Data { .. }
            | Error::Fit { .. } => true,
            Error::Many(all) => all.iter().all(Error::is_data_error),
            _ => false,
        }
    }

    /// The exit code of the error: 2 the command line's or config's fault,
    /// 3 the data's, 4 a nightly run that refused to publish, 5 the output
    /// directory locked by another job, 1 anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Refused { .. } => 4,
            Error::Busy { .. } => 5,
            e if e.is_config_error() => 2,
            e if e.is_data_error() => 3,
            _ => 1,
        }
    }

    /// True when a write failed for want of room: the disk or its quota is
    /// full (ENOSPC, EDQUOT) or a file-size limit was reached (EFBIG, as
    /// under `ulimit -f`). Polars and parquet keep only the text of the
    /// I/O error they met, so the text is read as well.
    pub fn is_out_of_space(&self) -> bool {
        const CODES: [i32; 3] = [27, 28, 122];
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = cur {
            if let Some(io) = e.downcast_ref::<std::io::Error>()
                && io.raw_os_error().is_some_and(|c| CODES.contains(&c))
            {
                return true;
            }
            let text = e.to_string();
            if CODES
                .iter()
                .any(|c| text.contains(&format!("(os error {c})")))
            {
                return true;
            }
            cur = e.source();
        }
        if let Error::Many(all) = self {
            return all.iter().any(Error::is_out_of_space);
        }
        false
    }

    /// True when the error is the configuration's or the command line's fault.
    pub fn is_config_error(&self) -> bool {
        matches!(
            self,
            Error::Config { .. } | Error::Setting { .. } | Error::Model { .. }
        )
    }
}

/// One violated rule of the data contract (see [`crate::stages::validate`]).
#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    /// Table.
    pub table: String,
    /// Column the rule is about.
    pub column: String,
    /// Rule name (also the `reason` of quarantined rows).
    pub rule: String,
    /// What the rule requires.
    pub requirement: String,
    /// Offending rows.
    pub rows: u64,
    /// First few subscriber ids of offending rows.
    pub examples: Vec<String>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{}: rule `{}` ({}): {} row(s), e.g. subscriber_id {}",
            self.table,
            self.column,
            self.rule,
            self.requirement,
            self.rows,
            if self.examples.is_empty() {
                "(null)".to_string()
            } else {
                self.examples.join(", ")
            }
        )
    }
}
