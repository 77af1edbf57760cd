//! The command line: one subcommand per stage, and `run` for all of them.

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand};

use crate::config::Overrides;
use crate::stages::validate::Mode;

/// winback: rank telecom win-back offers and lapsed subscribers by profit.
///
/// Exit codes: 0 success (a nightly run already done is a success); 1
/// failure of the machine or an internal error; 2 bad command line or
/// config; 3 the input data broke the data contract or cannot support what
/// was asked (no billed month, nobody eligible); 4 a nightly run refused to
/// publish (stale data, or drift from the training population); 5 another winback job holds the output directory.
#[derive(Debug, Parser)]
#[command(name = "winback", version, about, long_about = None)]
pub struct Cli {
    /// More log lines on stderr (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only warnings and errors on stderr (and no progress lines).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Log lines on stderr as text (timestamped; with a line of progress
    /// per running stage when stderr is a terminal) or as JSON, one object
    /// per line with `timestamp`, `level`, `message` and the event's
    /// fields, for log shippers (errors included).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Timestamped text lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands, one per stage, each named as its stage, config section,
/// module and output folder.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a calibrated subscriber history with known ground truth.
    Generate(GenerateArgs),
    /// Check input tables against the data contract and report row counts.
    Validate(ValidateArgs),
    /// Point-in-time features of lapsed and active subscribers, and labels.
    Features(DatedArgs),
    /// Fit the return, churn and second-lifetime models on the features
    /// (run `features` first); writes a new version under <out>/models/.
    Train(TrainArgs),
    /// Score subscribers active and lapsed at --as-of with a model version.
    Score(ModelArgs),
    /// Simulate the offer arms on the subscribers lapsed at --as-of, rank
    /// arms and subscribers by profit, and write the target list.
    Simulate(ModelArgs),
    /// The nightly job: validate, score with the model version, simulate
    /// and report as of the date into <out>/runs/<as-of>/, staged and
    /// swapped in whole; <out>/runs/latest moves only when all succeeded.
    Nightly(NightlyArgs),
    /// List the nightly runs or show one's record.
    Runs(RunsArgs),
    /// Write the campaign report (<out>/report/index.html, one page with
    /// its charts inline, and the data of each chart as CSV) from a run's
    /// outputs.
    Report(ReportArgs),
    /// The model registry: list the versions, show one, promote one to
    /// production, roll back to the previous production version.
    Models(ModelsArgs),
    /// Time model fitting and scoring at a chosen scale (figures for the
    /// README's performance table).
    Bench(BenchArgs),
    /// Run every stage from one config (creating the demo sample if configured).
    Run(DatedArgs),
    /// Print the resolved settings (config file merged with flags) as TOML.
    Config(DatedArgs),
}

/// The config file and the output directory: every stage's flags.
#[derive(Debug, Clone, Args)]
pub struct OutArgs {
    /// Config file (TOML).
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Output directory; overrides `output.dir`.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// The input directory and how to treat rows that break the contract:
/// the flags of the stages that read the input tables.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// Input directory; overrides `data.dir`.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Validation mode; overrides `validate.mode`.
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
}

/// `winback validate`.
#[derive(Debug, Clone, Args)]
pub struct ValidateArgs {
    /// Config and output.
    #[command(flatten)]
    pub out: OutArgs,
    /// Input and mode.
    #[command(flatten)]
    pub data: DataArgs,
}

/// The flags of the stages that compute features as of a date.
#[derive(Debug, Clone, Args)]
pub struct DatedArgs {
    /// Config and output.
    #[command(flatten)]
    pub out: OutArgs,
    /// Input and mode.
    #[command(flatten)]
    pub data: DataArgs,
    /// As-of date (YYYY-MM-DD) of the active and lapsed subscribers'
    /// features; overrides `features.as_of` (default: the data's end).
    #[arg(long, value_name = "DATE")]
    pub as_of: Option<NaiveDate>,
    /// The data's end (YYYY-MM-DD); overrides `features.data_end`
    /// (default: the last day of the month of the latest date recorded).
    #[arg(long, value_name = "DATE")]
    pub data_end: Option<NaiveDate>,
}

/// `winback train`: reads only the features stage's output.
#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// Config and output (features are read from <out>/features/).
    #[command(flatten)]
    pub out: OutArgs,
    /// Wait for another job's lock on the output directory instead of
    /// exiting with code 5.
    #[arg(long)]
    pub wait: bool,
}

/// `winback report`.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// Config and output (the run's outputs are read from <out>/).
    #[command(flatten)]
    pub out: OutArgs,
}

/// `winback models`.
#[derive(Debug, Clone, Args)]
pub struct ModelsArgs {
    /// Config and output (versions under <out>/models/).
    #[command(flatten)]
    pub out: OutArgs,
    /// What to do.
    #[command(subcommand)]
    pub action: ModelsAction,
}

/// `winback models list | show V | promote V | rollback`.
#[derive(Debug, Clone, Subcommand)]
pub enum ModelsAction {
    /// One line per version: its models, learners and holdout figures;
    /// `*` marks production.
    List,
    /// A version's evaluation and provenance.
    Show {
        /// Version (`v0002`), or `production`.
        version: String,
    },
    /// Make a version the production one (what score, simulate and
    /// nightly use without --model); logged with who, when and why.
    Promote {
        /// Version (`v0002`).
        version: String,
        /// Why, for the registry's log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Make the previous production version production again.
    Rollback {
        /// Why, for the registry's log.
        #[arg(long)]
        reason: Option<String>,
    },
}

/// `winback score` and `winback simulate`.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Config, input, output, mode and as-of flags.
    #[command(flatten)]
    pub stage: DatedArgs,
    /// Model version directory (default: the newest under <out>/models/).
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
}

impl ValidateArgs {
    /// The flags that override config values.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            data: self.data.data.clone(),
            out: self.out.out.clone(),
            mode: self.data.mode,
            as_of: None,
            data_end: None,
            needs_data: true,
            out_optional: true,
        }
    }
}

impl DatedArgs {
    /// The flags that override config values.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            as_of: self.as_of,
            data_end: self.data_end,
            out_optional: false,
            ..ValidateArgs {
                out: self.out.clone(),
                data: self.data.clone(),
            }
            .overrides()
        }
    }
}

impl OutArgs {
    /// The flags that override config values, for a command that reads no
    /// input table.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            out: self.out.clone(),
            needs_data: false,
            ..Overrides::default()
        }
    }
}

/// `winback nightly`.
#[derive(Debug, Clone, Args)]
pub struct NightlyArgs {
    /// Config, input, output, mode and as-of flags.
    #[command(flatten)]
    pub stage: DatedArgs,
    /// Model version directory (default: the newest under <out>/models/).
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Recompute even when a run with the same inputs, model, config and
    /// as-of date is already published.
    #[arg(long)]
    pub force: bool,
    /// Wait for another job's lock on the output directory instead of
    /// exiting with code 5.
    #[arg(long)]
    pub wait: bool,
}

/// `winback runs`.
#[derive(Debug, Clone, Args)]
pub struct RunsArgs {
    /// Config and output.
    #[command(flatten)]
    pub out: OutArgs,
    /// What to do.
    #[command(subcommand)]
    pub action: RunsAction,
}

/// `winback runs list | show DATE`.
#[derive(Debug, Clone, Subcommand)]
pub enum RunsAction {
    /// One line per run: as-of date, status, data end, model, rows listed.
    List,
    /// A run's record (run.json).
    Show {
        /// The run's as-of date (YYYY-MM-DD), or `latest`.
        date: String,
    },
}

/// What `winback bench` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchTask {
    /// Fit the return model on the features' offers, repeated to --rows.
    TrainReturn,
    /// Score the features' active subscribers, repeated to --rows, with the
    /// newest model version (churn model, and the return model under every arm).
    Score,
    /// Simulate the arms on the features' lapsed subscribers, repeated to
    /// --rows, with the newest model version: point estimates, the guarded
    /// policy, a budgeted allocation, intervals and reason codes.
    Simulate,
}

/// `winback bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Config and output (features are read from <out>/features/, models
    /// from <out>/models/).
    #[command(flatten)]
    pub out: OutArgs,
    /// What to time.
    #[arg(long, value_enum)]
    pub task: BenchTask,
    /// Rows to reach by repeating the input rows.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: usize,
}

/// `winback generate`.
#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    /// Number of subscribers.
    #[arg(long, default_value_t = 50_000)]
    pub subscribers: u64,
    /// Seed; the same seed gives the same bytes.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Output directory (replaced atomically when generation completes).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Config whose `[economics]` values the arms in truth.json (default:
    /// the reference study's economics).
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// First month of the history.
    #[arg(long, default_value = "2019-01-01")]
    pub start: NaiveDate,
    /// Months of history.
    #[arg(long, default_value_t = 84)]
    pub months: u32,
    /// Subscribers per chunk: bounds memory, does not change the output.
    #[arg(long, default_value_t = 100_000)]
    pub chunk_size: u64,
    /// Write the history as it was known on this day (YYYY-MM-DD): rows
    /// dated after it dropped, bills only of months ended by it, complaints
    /// resolved after it still open. The same seed with a later day gives
    /// the same history grown by the days between (a nightly feed).
    /// `truth_lapsed.parquet`, which describes the history's end, is then
    /// not written.
    #[arg(long, value_name = "DATE")]
    pub known_on: Option<NaiveDate>,
}
