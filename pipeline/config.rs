//! Configuration in layers: raw TOML structs (unknown keys are errors), then
//! command-line overrides, then validated [`Settings`] that stages receive a
//! section at a time.
//!
//! Relative paths in a config file are relative to the file's directory, so
//! a config works from any working directory (the scheduler's included);
//! paths given as flags are relative to the working directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::catalog;
use crate::error::{Error, Result};
use crate::schema::Table;
use crate::stages::features::FeatureSettings;
use crate::stages::simulate::SimulateSettings;
use crate::stages::train::{LearnerChoice, TrainSettings};
use crate::stages::validate::{BillingMonths, Mode, ValidateSettings};
use winback_models::economics::{Arm, Economics, OfferTerms};

/// The config file as written. Every field documents its default.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[data]`: where the input tables are.
    #[serde(default)]
    pub data: RawData,
    /// `[output]`: where a run writes.
    #[serde(default)]
    pub output: RawOutput,
    /// `[validate]`: the ingestion stage.
    #[serde(default)]
    pub validate: RawValidate,
    /// `[economics]`: offer terms, contact cost, value discounting.
    #[serde(default)]
    pub economics: RawEconomics,
    /// `[history]`: the terms the historical offers had (absent: those of
    /// `[economics]`, with a note).
    #[serde(default)]
    pub history: Option<RawHistory>,
    /// `[features]`: point-in-time features and labels.
    #[serde(default)]
    pub features: RawFeatures,
    /// `[train]`: the models.
    #[serde(default)]
    pub train: RawTrain,
    /// `[simulate]`: eligibility, budget, hold-out and intervals.
    #[serde(default)]
    pub simulate: RawSimulate,
    /// `[nightly]`: the nightly job's guards.
    #[serde(default)]
    pub nightly: RawNightly,
    /// `[runs]`: the nightly runs kept under `<out>/runs/`.
    #[serde(default)]
    pub runs: RawRuns,
}

/// `[nightly]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawNightly {
    /// Refuse to publish (exit 4) when the data's end is more than this
    /// many days before the as-of date. Default 45.
    pub max_data_age_days: Option<u32>,
    /// A feature (or the score) whose population stability index against
    /// the model's training population reaches this is named in the
    /// night's warnings. Default 0.1.
    pub psi_warn: Option<f64>,
    /// A feature whose PSI reaches this stops the night (exit 4); the
    /// score's PSI only warns (churn is seasonal). Default 0.25.
    pub psi_fail: Option<f64>,
}

/// `[runs]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRuns {
    /// Nights kept under `<out>/runs/` (the oldest go first; never the one
    /// `latest` points at). Default 30.
    pub keep: Option<usize>,
}

/// `[nightly]`, validated.
#[derive(Debug, Clone, Serialize)]
pub struct NightlySettings {
    /// Most days between the data's end and the as-of date.
    pub max_data_age_days: u32,
    /// PSI that warns.
    pub psi_warn: f64,
    /// PSI that refuses.
    pub psi_fail: f64,
}

/// `[runs]`, validated.
#[derive(Debug, Clone, Serialize)]
pub struct RunsSettings {
    /// Nights kept.
    pub keep: usize,
}

/// `[simulate]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSimulate {
    /// Campaign name, the key of the hold-out hash. Default `winback-<as-of>`.
    pub campaign: Option<String>,
    /// Fewest days since the defection. Default 14.
    pub min_days_since_defection: Option<u32>,
    /// Most days since the defection. Default 120.
    pub max_days_since_defection: Option<u32>,
    /// No offer to anyone offered anything within this many days. Default 180.
    pub no_offer_within_days: Option<u32>,
    /// Boolean `subscribers` columns that exclude when true or null. Default none.
    pub exclude_flags: Option<Vec<String>>,
    /// Arms the policy may choose. Default discount, upgrade, both, tailored.
    pub arms: Option<Vec<String>>,
    /// Randomised control share of the selected subscribers: withheld
    /// (`action = holdout` in the target list) so that the campaign can be
    /// measured against them. Default 0.05.
    pub control_share: Option<f64>,
    /// Renamed `control_share`; kept only to say so.
    #[serde(default, skip_serializing)]
    pub holdout_share: Option<toml::Value>,
    /// Most subscribers contacted. Default unlimited.
    pub max_contacts: Option<u64>,
    /// Most expected spend (contacts plus expected offer cost). Default unlimited.
    pub max_spend: Option<f64>,
    /// Most subscribers per arm, e.g. `{ both = 500 }`. Default unlimited.
    pub arm_capacity: Option<BTreeMap<String, u64>>,
    /// Monte Carlo replicates. Default 200.
    pub replicates: Option<usize>,
    /// Central share of the replicates in an interval. Default 0.90.
    pub interval: Option<f64>,
    /// Seed of the replicates. Default 1.
    pub seed: Option<u64>,
    /// Most subscribers recomputed per replicate. Default 20000.
    pub interval_rows: Option<usize>,
    /// Top share by current value (gold, silver). Default 0.2.
    pub high_value_share: Option<f64>,
    /// Top share by potential (gold, copper). Default 0.5.
    pub high_potential_share: Option<f64>,
    /// Share of decision replicates that must agree before a subscriber
    /// gets another action than the default arm. Default 0.8.
    pub switch_confidence: Option<f64>,
    /// Replicates behind that decision (0: point estimates). Default 100.
    pub decision_replicates: Option<usize>,
}

/// `[train]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrain {
    /// `auto` (lower holdout log loss), `logistic` or `boosted`, for the
    /// return and churn models. Default auto.
    pub learner: Option<LearnerChoice>,
    /// The same for the second lifetime's hazard. Default logistic.
    pub hazard_learner: Option<LearnerChoice>,
    /// Latest share of rows held out for evaluation. Default 0.25.
    pub holdout_share: Option<f64>,
    /// Cross-validation folds. Default 4.
    pub folds: Option<usize>,
    /// Seed of folds, splits and subsamples. Default 1.
    pub seed: Option<u64>,
    /// Candidate quantile steps per numeric feature (0: linear). Default [0, 5].
    pub step_bins: Option<Vec<usize>>,
    /// Candidate L2 strengths. Default [0.01, 0.1, 1, 10, 100].
    pub alphas: Option<Vec<f64>>,
    /// Most rows used by cross-validation. Default 50000.
    pub cv_max_rows: Option<usize>,
    /// Most boosted trees. Default 400.
    pub boosted_max_trees: Option<usize>,
    /// Boosted learning rate. Default 0.1.
    pub boosted_learning_rate: Option<f64>,
    /// Boosted tree depth. Default 4.
    pub boosted_max_depth: Option<usize>,
    /// Gradient-based one-side sampling of the boosted trees' rows (each
    /// tree on the fifth with the largest gradients and a tenth of the
    /// rest). Default false.
    pub boosted_goss: Option<bool>,
    /// Share of the fitting rows each tree is grown on, drawn afresh per
    /// tree (0 to 1; 1: every row). Default 1.
    pub boosted_subsample: Option<f64>,
    /// Boosted trees' histograms filled row by row from a tiled copy of
    /// the binned rows (forust-ml's `tiled_histograms`) instead of a column
    /// at a time. Default true.
    pub boosted_tiled_histograms: Option<bool>,
    /// Rare-event sampling of the churn model: both candidates fitted on
    /// every churner and at most this many non-churners per churner (0:
    /// every row). Default 3.
    pub churn_rare_event_ratio: Option<f64>,
    /// Return-model features. Default: every feature.
    pub return_features: Option<Vec<String>>,
    /// Churn-model features. Default: every feature of the snapshots.
    pub churn_features: Option<Vec<String>>,
    /// Features interacted with each arm in the return model; `["all"]`
    /// interacts every feature. Default ["leave_reason"].
    pub interactions: Option<Vec<String>>,
    /// Also fit the return model as one model per arm (a T-learner,
    /// logistic and boosted), chosen against the pooled model by the
    /// policy value on past offers no model saw. Default true.
    pub return_per_arm: Option<bool>,
    /// Also fit the hazard with one model per month band, kept by log
    /// loss. Default false.
    pub hazard_per_band: Option<bool>,
    /// Months of second lifetime modelled. Default 60.
    pub survival_months: Option<u32>,
    /// First months of the hazard's month bands. Default [1, 4, 7, 13, 25, 37].
    pub hazard_bands: Option<Vec<u32>>,
    /// Months of the predicted-against-observed duration check. Default 24.
    pub duration_check_months: Option<u32>,
    /// Promote each new version to production when it passes the gate
    /// against production's holdout figures. Default false.
    pub auto_promote: Option<bool>,
    /// The gate: largest rise of any model's holdout log loss. Default 0.005.
    pub promote_max_log_loss_increase: Option<f64>,
    /// The gate: largest fall of any model's holdout ROC AUC. Default 0.01.
    pub promote_max_auc_decrease: Option<f64>,
}

/// `[features]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawFeatures {
    /// As-of date (`YYYY-MM-DD`) of the active subscribers' features.
    /// Default: the last day of the latest billed month. `--as-of` overrides.
    pub as_of: Option<String>,
    /// The data's end (`YYYY-MM-DD`): labels whose window ends after it are
    /// not observed. Default: the last day of the month of the latest date
    /// any table records. `--data-end` overrides.
    pub data_end: Option<String>,
    /// Days after an offer within which a return is its response. Default 90.
    pub response_window_days: Option<u32>,
    /// Horizon of the churn label, in days. Default 90.
    pub churn_horizon_days: Option<u32>,
    /// Churn snapshot dates (`YYYY-MM-DD`). Default: `snapshot_count` month
    /// starts `snapshot_every_months` apart, ending at the latest whose
    /// horizon is observed.
    pub snapshots: Option<Vec<String>>,
    /// Spacing of the default snapshots, in months. Default 3.
    pub snapshot_every_months: Option<u32>,
    /// Number of default snapshots. Default 8.
    pub snapshot_count: Option<u32>,
    /// When a bill counts as known to a feature as of a date: `month_end`
    /// (its month has ended by the date) or `month_start` (from the first
    /// of its month, for extracts dating a bill when it was issued, after
    /// the month it covers). Default month_end.
    pub bill_known: Option<crate::stages::features::BillKnown>,
    /// Extra numeric columns of `subscribers` to use as features. Default none.
    pub extra_numeric: Option<Vec<String>>,
    /// Extra categorical columns of `subscribers` to use as features. Default none.
    pub extra_categorical: Option<Vec<String>>,
    /// Subscribers whose bills the features stage holds at once; with
    /// more, the bills are spilled to disk by block. Default 1000000.
    pub block_subscribers: Option<u32>,
    /// Most levels a categorical feature keeps (the most frequent in the
    /// lapsed and snapshot rows); the others are read as `other`.
    /// Default 50.
    pub max_levels: Option<u32>,
    /// Fewest rows a categorical level needs to be kept; rarer levels are
    /// read as `other`. Default 20.
    pub min_level_rows: Option<u32>,
}

/// `[economics]`. Every key is optional; the defaults are the reference
/// study's (see [`Economics::default`]).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawEconomics {
    /// Amount off the monthly bill under the discount offer. Default 20.
    pub discount_per_month: Option<f64>,
    /// Months the discount runs. Default 6.
    pub discount_months: Option<u32>,
    /// Monthly cost to the operator of the upgrade offer. Default 35.
    pub upgrade_cost_per_month: Option<f64>,
    /// Months the upgrade runs. Default 3.
    pub upgrade_months: Option<u32>,
    /// Cost of sending one offer. Default 2.
    pub contact_cost: Option<f64>,
    /// Annual discount rate of future margin. Default 0.10.
    pub annual_discount_rate: Option<f64>,
    /// Months of second lifetime counted in its value. Default 60.
    pub horizon_months: Option<u32>,
    /// Margin share of revenue where billing has no cost to serve. Default 0.45.
    pub margin_rate: Option<f64>,
    /// Cost of acquiring a new subscriber, for comparison. Default 185.
    pub acquisition_cost: Option<f64>,
    /// The package the tailored arm gives per leave reason: a table with
    /// keys price, service, both, other, unknown and values none,
    /// discount, upgrade, both. Default: price discount, service upgrade,
    /// both both, other and unknown discount.
    pub tailored: Option<BTreeMap<String, winback_models::economics::Package>>,
}

/// `[history]`: the terms the past offers in `winback_offers` had, which
/// the second lifetime's margin model adds back to the bills (their
/// discount lowered the revenue, their upgrade raised the cost to serve),
/// separate from the terms `[economics]` simulates. Every key defaults to
/// `[economics]`'s value.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawHistory {
    /// Amount the past discount took off the monthly bill.
    pub discount_per_month: Option<f64>,
    /// Months the past discount ran.
    pub discount_months: Option<u32>,
    /// Monthly cost to the operator of the past upgrade.
    pub upgrade_cost_per_month: Option<f64>,
    /// Months the past upgrade ran.
    pub upgrade_months: Option<u32>,
    /// The package the past tailored arm gave per leave reason.
    pub tailored: Option<BTreeMap<String, winback_models::economics::Package>>,
}

/// `[data]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawData {
    /// Input directory (one entry per table). Default: none, then `--data`
    /// is required.
    pub dir: Option<PathBuf>,
    /// `[data.demo]`: when present, `winback run` generates a sample into
    /// `dir` if `dir` does not exist yet. Default: absent.
    pub demo: Option<RawDemo>,
}

/// `[data.demo]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawDemo {
    /// Subscribers to generate. Default 50000.
    #[serde(default = "default_demo_subscribers")]
    pub subscribers: u64,
    /// Generator seed. Default 42.
    #[serde(default = "default_seed")]
    pub seed: u64,
}

fn default_demo_subscribers() -> u64 {
    50_000
}
fn default_seed() -> u64 {
    42
}

/// `[output]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutput {
    /// Output directory of a run. Default: none, then `--out` is required.
    pub dir: Option<PathBuf>,
}

/// `[validate]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawValidate {
    /// `strict` (default): any rule violation fails the run. `quarantine`:
    /// offending rows go to `validate/rejected/<table>.parquet` with a
    /// `reason`, and the run goes on with the rest.
    pub mode: Option<Mode>,
    /// Example subscriber ids shown per violated rule. Default 5.
    pub max_examples: Option<usize>,
    /// Most bytes the duplicate-month rule holds at once: a bit per
    /// accepted subscriber and billed month (10M subscribers, 10 years:
    /// 150 MB). Months beyond it are checked in further passes over billing;
    /// one month's bits always fit. Default 1073741824 (1 GiB).
    pub duplicate_check_bytes: Option<usize>,
    /// Earliest plausible date in any date column (`YYYY-MM-DD`); earlier
    /// rows break the rule `date_out_of_range`. Default 1900-01-01.
    pub min_date: Option<String>,
    /// Latest plausible date (`YYYY-MM-DD`). Default 2200-12-31.
    pub max_date: Option<String>,
    /// How billing's `month` dates a bill. `first_day`: the first day of
    /// its month, as the contract says; another day breaks the rule
    /// `month_not_first_day`. `any_day`: any day of the month charged (an
    /// extract dated at the month's end, or on the billing day) is read as
    /// that month's first day; two bills of one month then break
    /// `duplicate_month`. Default first_day.
    pub billing_months: Option<BillingMonths>,
    /// `[validate.columns.<table>]`: `canonical_name = "name in the files"`.
    /// Default: the contract's names.
    #[serde(default)]
    pub columns: BTreeMap<String, BTreeMap<String, String>>,
}

/// Overrides from the command line.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--data`.
    pub data: Option<PathBuf>,
    /// `--out`.
    pub out: Option<PathBuf>,
    /// `--mode`.
    pub mode: Option<Mode>,
    /// `--as-of`.
    pub as_of: Option<NaiveDate>,
    /// `--data-end`.
    pub data_end: Option<NaiveDate>,
    /// Whether the command may run without an output directory
    /// (`validate`, which then writes nothing).
    pub out_optional: bool,
    /// Whether the command reads the input tables (`train` and `bench`
    /// do not, and need no `data.dir`).
    pub needs_data: bool,
}

/// Validated settings.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// The config file, if any.
    pub config_path: Option<PathBuf>,
    /// FNV-1a hash of the config file's bytes (hex), for provenance.
    pub config_hash: String,
    /// Input directory.
    pub data_dir: PathBuf,
    /// Demo sample to create when `data_dir` is absent (`run` only).
    pub demo: Option<DemoSettings>,
    /// Output directory.
    pub out_dir: PathBuf,
    /// The validate stage's section.
    pub validate: ValidateSettings,
    /// Offer economics.
    pub economics: Economics,
    /// The terms the historical offers had (`[history]`, defaulting to
    /// `[economics]`'s terms and tailored packages).
    pub history: Economics,
    /// Why `history` is `[economics]`'s, when `[history]` is absent.
    pub history_note: Option<String>,
    /// As-of date of the features, scores and simulation (`--as-of`, else
    /// `features.as_of`); `None`: the data's end, resolved by the command.
    pub as_of: Option<NaiveDate>,
    /// The data's end (`--data-end`, else `features.data_end`); `None`:
    /// what the tables record, resolved by the command.
    pub data_end: Option<NaiveDate>,
    /// The features stage's section.
    pub features: FeatureSettings,
    /// The train stage's section.
    pub train: TrainSettings,
    /// The simulate stage's section.
    pub simulate: SimulateSettings,
    /// The nightly job's guards.
    pub nightly: NightlySettings,
    /// The nightly runs kept.
    pub runs: RunsSettings,
    /// Key-value metadata written into every Parquet output (set by
    /// `nightly`: as-of date, model version, config hash, code version,
    /// run id); not a config key.
    #[serde(skip)]
    pub parquet_metadata: Vec<(String, String)>,
}

/// `[data.demo]`, validated.
#[derive(Debug, Clone, Serialize)]
pub struct DemoSettings {
    /// Subscribers.
    pub subscribers: u64,
    /// Seed.
    pub seed: u64,
}

/// Reads and parses a config file.
pub fn load(path: &Path) -> Result<RawConfig> {
    let text = catalog::read_text(path).map_err(|e| Error::Config {
        path: path.to_path_buf(),
        message: format!("cannot read: {e}"),
    })?;
    parse(path, &text)
}

/// The `[economics]` of a config file, checked (for `generate`, which
/// needs nothing else of a config).
pub fn economics_of(path: &Path) -> Result<Economics> {
    let raw = load(path)?;
    let mut problems = Vec::new();
    let e = resolve_economics(&raw.economics, &mut problems);
    if problems.is_empty() {
        Ok(e)
    } else {
        Err(Error::Config {
            path: path.to_path_buf(),
            message: problems.join("\n"),
        })
    }
}

/// Parses config text; `path` names it in errors.
pub fn parse(path: &Path, text: &str) -> Result<RawConfig> {
    toml::from_str(text).map_err(|e| Error::Config {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })
}

/// FNV-1a hash of `bytes`, as 16 hex digits.
pub(crate) fn fnv1a(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

/// Merges the config with the flags and checks every value, reporting all
/// problems at once.
pub fn resolve(config_path: Option<&Path>, raw: RawConfig, over: Overrides) -> Result<Settings> {
    let base = config_path
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let from_config = |p: PathBuf| {
        if p.is_absolute() {
            p
        } else {
            catalog::relative_to(&base, &p)
        }
    };
    let config_hash = match config_path {
        Some(p) => fnv1a(&catalog::read_bytes(p).unwrap_or_default()),
        None => fnv1a(b""),
    };
    let mut problems = Vec::new();
    let data_dir = over.data.or(raw.data.dir.map(from_config));
    if data_dir.is_none() && over.needs_data {
        problems.push(
            "`data.dir`: no input directory; set it in the config or pass --data DIR".to_string(),
        );
    }
    let out_dir = over.out.or(raw.output.dir.map(from_config));
    if out_dir.is_none() && !over.out_optional {
        problems.push(
            "`output.dir`: no output directory; set it in the config or pass --out DIR".to_string(),
        );
    }
    let demo = raw.data.demo.map(|d| DemoSettings {
        subscribers: d.subscribers,
        seed: d.seed,
    });
    if let Some(d) = &demo
        && !(1..=99_999_999).contains(&d.subscribers)
    {
        problems.push(format!(
            "`data.demo.subscribers`: {} is out of range; expected 1 to 99999999",
            d.subscribers
        ));
    }
    let max_examples = bounded(
        &mut problems,
        "validate.max_examples",
        raw.validate.max_examples,
        5,
        1,
        100,
    );
    let min_date = raw
        .validate
        .min_date
        .as_deref()
        .and_then(|t| parse_date("validate.min_date", t, &mut problems))
        .unwrap_or(NaiveDate::from_ymd_opt(1900, 1, 1).expect("valid"));
    let max_date = raw
        .validate
        .max_date
        .as_deref()
        .and_then(|t| parse_date("validate.max_date", t, &mut problems));
    let max_date = max_date.unwrap_or(crate::stages::validate::LATEST_DATE);
    if max_date < min_date {
        problems.push(format!(
            "`validate.max_date`: {max_date} is before `validate.min_date` {min_date}"
        ));
    }
    let duplicate_check_bytes = bounded(
        &mut problems,
        "validate.duplicate_check_bytes",
        raw.validate.duplicate_check_bytes,
        1 << 30,
        1,
        usize::MAX,
    );
    for (table, map) in &raw.validate.columns {
        let Some(t) = Table::from_name(table) else {
            let valid: Vec<_> = Table::ALL.iter().map(|t| t.name()).collect();
            problems.push(format!(
                "`validate.columns.{table}`: no table `{table}`; valid: {}",
                valid.join(", ")
            ));
            continue;
        };
        for (canonical, source) in map {
            if !t.columns().iter().any(|c| c.name == canonical) {
                let valid: Vec<_> = t.columns().iter().map(|c| c.name).collect();
                problems.push(format!(
                    "`validate.columns.{table}.{canonical}`: `{table}` has no column `{canonical}`; valid: {}",
                    valid.join(", ")
                ));
            }
            if source.is_empty() {
                problems.push(format!(
                    "`validate.columns.{table}.{canonical}`: the source name is empty"
                ));
            }
        }
    }
    let economics = resolve_economics(&raw.economics, &mut problems);
    let (history, history_note) = match &raw.history {
        Some(h) => {
            let merged = RawEconomics {
                discount_per_month: h.discount_per_month.or(raw.economics.discount_per_month),
                discount_months: h.discount_months.or(raw.economics.discount_months),
                upgrade_cost_per_month: h
                    .upgrade_cost_per_month
                    .or(raw.economics.upgrade_cost_per_month),
                upgrade_months: h.upgrade_months.or(raw.economics.upgrade_months),
                tailored: h.tailored.clone().or(raw.economics.tailored.clone()),
                ..raw.economics.clone()
            };
            (resolve_section(&merged, "history", &mut problems), None)
        }
        None => (
            economics,
            Some(
                "[history] is not set: the past offers' terms are taken to be [economics]'s (set [history] when the simulated terms differ from those the past offers had)".to_string(),
            ),
        ),
    };
    let as_of = over.as_of.or_else(|| {
        raw.features
            .as_of
            .as_deref()
            .and_then(|t| parse_date("features.as_of", t, &mut problems))
    });
    let data_end = over.data_end.or_else(|| {
        raw.features
            .data_end
            .as_deref()
            .and_then(|t| parse_date("features.data_end", t, &mut problems))
    });
    let features = resolve_features(&raw.features, economics.margin_rate, &mut problems);
    let train = resolve_train(&raw.train, &mut problems);
    let simulate = resolve_simulate(&raw.simulate, &mut problems);
    let max_data_age_days = bounded(
        &mut problems,
        "nightly.max_data_age_days",
        raw.nightly.max_data_age_days,
        45,
        0,
        3650,
    );
    let keep = bounded(&mut problems, "runs.keep", raw.runs.keep, 30, 1, 100_000);
    let psi_warn = bounded(
        &mut problems,
        "nightly.psi_warn",
        raw.nightly.psi_warn,
        0.1,
        0.0,
        100.0,
    );
    let psi_fail = bounded(
        &mut problems,
        "nightly.psi_fail",
        raw.nightly.psi_fail,
        0.25,
        0.0,
        100.0,
    );
    if psi_fail < psi_warn {
        problems.push(format!(
            "`nightly.psi_fail`: {psi_fail} is below `nightly.psi_warn` {psi_warn}; expected at least it"
        ));
    }
    if !problems.is_empty() {
        return Err(Error::Config {
            path: config_path
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("<flags>")),
            message: problems.join("\n"),
        });
    }
    Ok(Settings {
        config_path: config_path.map(Path::to_path_buf),
        config_hash,
        // A command that reads no input table may have none.
        data_dir: data_dir.unwrap_or_default(),
        demo,
        // `validate` without an output directory checks and writes nothing.
        out_dir: out_dir.unwrap_or_default(),
        validate: ValidateSettings {
            mode: over.mode.or(raw.validate.mode).unwrap_or_default(),
            max_examples,
            duplicate_check_bytes,
            min_date,
            max_date,
            columns: raw.validate.columns,
            billing_months: raw.validate.billing_months.unwrap_or_default(),
        },
        economics,
        history,
        history_note,
        as_of,
        data_end,
        features,
        train,
        simulate,
        nightly: NightlySettings {
            max_data_age_days,
            psi_warn,
            psi_fail,
        },
        runs: RunsSettings { keep },
        parquet_metadata: Vec::new(),
    })
}

/// `[simulate]` with defaults filled in.
fn resolve_simulate(raw: &RawSimulate, problems: &mut Vec<String>) -> SimulateSettings {
    let d = SimulateSettings::default();
    let offer_arms: Vec<&str> = Arm::ALL[1..].iter().map(|a| a.name()).collect();
    let arm_of = |name: &str, key: &str, problems: &mut Vec<String>| -> Option<Arm> {
        let found = Arm::ALL[1..].iter().copied().find(|a| a.name() == name);
        if found.is_none() {
            problems.push(format!(
                "`{key}`: `{name}` is not an offer arm; expected one of {}",
                offer_arms.join(", ")
            ));
        }
        found
    };
    let arms = match &raw.arms {
        None => d.arms.clone(),
        Some(list) => {
            let v: Vec<Arm> = list
                .iter()
                .filter_map(|n| arm_of(n, "simulate.arms", problems))
                .collect();
            if list.is_empty() {
                problems.push("`simulate.arms`: empty; expected at least one offer arm".into());
            }
            v
        }
    };
    if raw.holdout_share.is_some() {
        problems.push(
            "`simulate.holdout_share` was renamed `simulate.control_share` (the randomised share of \
             the selected subscribers withheld from the campaign); `train.holdout_share` is the \
             models' evaluation share"
                .to_string(),
        );
    }
    let arm_capacity = raw.arm_capacity.clone().unwrap_or_default();
    for name in arm_capacity.keys() {
        arm_of(name, "simulate.arm_capacity", problems);
    }
    let min_days = bounded(
        problems,
        "simulate.min_days_since_defection",
        raw.min_days_since_defection,
        d.min_days_since_defection,
        0,
        36_500,
    );
    let max_days = bounded(
        problems,
        "simulate.max_days_since_defection",
        raw.max_days_since_defection,
        d.max_days_since_defection,
        0,
        36_500,
    );
    if max_days < min_days {
        problems.push(format!(
            "`simulate.max_days_since_defection`: {max_days} is below `min_days_since_defection` {min_days}"
        ));
    }
    if let Some(m) = raw.max_spend
        && !(m >= 0.0 && m.is_finite())
    {
        problems.push(format!(
            "`simulate.max_spend`: {m}; expected a non-negative number"
        ));
    }
    SimulateSettings {
        campaign: raw.campaign.clone().filter(|c| !c.is_empty()),
        min_days_since_defection: min_days,
        max_days_since_defection: max_days,
        no_offer_within_days: bounded(
            problems,
            "simulate.no_offer_within_days",
            raw.no_offer_within_days,
            d.no_offer_within_days,
            0,
            36_500,
        ),
        exclude_flags: raw.exclude_flags.clone().unwrap_or_default(),
        arms,
        control_share: bounded(
            problems,
            "simulate.control_share",
            raw.control_share,
            d.control_share,
            0.0,
            0.5,
        ),
        max_contacts: raw.max_contacts,
        max_spend: raw.max_spend,
        arm_capacity,
        replicates: bounded(
            problems,
            "simulate.replicates",
            raw.replicates,
            d.replicates,
            10,
            100_000,
        ),
        interval: bounded(
            problems,
            "simulate.interval",
            raw.interval,
            d.interval,
            0.5,
            0.999,
        ),
        seed: raw.seed.unwrap_or(d.seed),
        interval_rows: bounded(
            problems,
            "simulate.interval_rows",
            raw.interval_rows,
            d.interval_rows,
            100,
            100_000_000,
        ),
        high_value_share: bounded(
            problems,
            "simulate.high_value_share",
            raw.high_value_share,
            d.high_value_share,
            0.01,
            0.99,
        ),
        high_potential_share: bounded(
            problems,
            "simulate.high_potential_share",
            raw.high_potential_share,
            d.high_potential_share,
            0.01,
            0.99,
        ),
        switch_confidence: bounded(
            problems,
            "simulate.switch_confidence",
            raw.switch_confidence,
            d.switch_confidence,
            0.5,
            1.0,
        ),
        decision_replicates: bounded(
            problems,
            "simulate.decision_replicates",
            raw.decision_replicates,
            d.decision_replicates,
            0,
            100_000,
        ),
    }
}

/// `[train]` with defaults filled in.
fn resolve_train(raw: &RawTrain, problems: &mut Vec<String>) -> TrainSettings {
    let d = TrainSettings::default();
    let holdout_share = bounded(
        problems,
        "train.holdout_share",
        raw.holdout_share,
        d.holdout_share,
        0.05,
        0.5,
    );
    let folds = bounded(problems, "train.folds", raw.folds, d.folds, 2, 20);
    let cv_max_rows = bounded(
        problems,
        "train.cv_max_rows",
        raw.cv_max_rows,
        d.cv_max_rows,
        1_000,
        usize::MAX,
    );
    let step_bins = raw.step_bins.clone().unwrap_or(d.step_bins.clone());
    if step_bins.is_empty() || step_bins.iter().any(|b| *b == 1 || *b > 50) {
        problems.push(format!(
            "`train.step_bins`: {step_bins:?}; expected a non-empty list of 0 (linear) or 2 to 50"
        ));
    }
    let alphas = raw.alphas.clone().unwrap_or(d.alphas.clone());
    if alphas.is_empty() || alphas.iter().any(|a| !(*a > 0.0 && a.is_finite())) {
        problems.push(format!(
            "`train.alphas`: {alphas:?}; expected a non-empty list of positive numbers"
        ));
    }
    let boosted = winback_models::boosted::BoostedParams {
        max_trees: bounded(
            problems,
            "train.boosted_max_trees",
            raw.boosted_max_trees,
            d.boosted.max_trees,
            1,
            10_000,
        ),
        learning_rate: bounded(
            problems,
            "train.boosted_learning_rate",
            raw.boosted_learning_rate,
            d.boosted.learning_rate,
            0.001,
            1.0,
        ),
        max_depth: bounded(
            problems,
            "train.boosted_max_depth",
            raw.boosted_max_depth,
            d.boosted.max_depth,
            1,
            12,
        ),
        goss: raw.boosted_goss.unwrap_or(d.boosted.goss),
        subsample: bounded(
            problems,
            "train.boosted_subsample",
            raw.boosted_subsample,
            d.boosted.subsample,
            0.05,
            1.0,
        ),
        tiled_histograms: raw
            .boosted_tiled_histograms
            .unwrap_or(d.boosted.tiled_histograms),
        ..d.boosted
    };
    let survival_months = bounded(
        problems,
        "train.survival_months",
        raw.survival_months,
        d.survival_months,
        1,
        240,
    );
    let hazard_bands = raw.hazard_bands.clone().unwrap_or(d.hazard_bands.clone());
    if hazard_bands.first() != Some(&1) || hazard_bands.windows(2).any(|w| w[0] >= w[1]) {
        problems.push(format!(
            "`train.hazard_bands`: {hazard_bands:?}; expected increasing first months starting at 1"
        ));
    }
    TrainSettings {
        learner: raw.learner.unwrap_or_default(),
        hazard_learner: raw.hazard_learner.unwrap_or(d.hazard_learner),
        holdout_share,
        folds,
        seed: raw.seed.unwrap_or(d.seed),
        step_bins,
        alphas,
        cv_max_rows,
        boosted,
        churn_rare_event_ratio: match raw.churn_rare_event_ratio {
            None => d.churn_rare_event_ratio,
            Some(r) if r == 0.0 || (r >= 1.0 && r.is_finite()) => r,
            Some(r) => {
                problems.push(format!(
                    "`train.churn_rare_event_ratio`: {r}; expected 0 (every row) or a number of at least 1"
                ));
                d.churn_rare_event_ratio
            }
        },
        return_features: raw.return_features.clone().unwrap_or_default(),
        churn_features: raw.churn_features.clone().unwrap_or_default(),
        interactions: raw.interactions.clone().unwrap_or(d.interactions),
        return_per_arm: raw.return_per_arm.unwrap_or(d.return_per_arm),
        hazard_per_band: raw.hazard_per_band.unwrap_or(d.hazard_per_band),
        survival_months,
        hazard_bands,
        duration_check_months: bounded(
            problems,
            "train.duration_check_months",
            raw.duration_check_months,
            d.duration_check_months,
            1,
            240,
        ),
        auto_promote: raw.auto_promote.unwrap_or(d.auto_promote),
        promote_max_log_loss_increase: bounded(
            problems,
            "train.promote_max_log_loss_increase",
            raw.promote_max_log_loss_increase,
            d.promote_max_log_loss_increase,
            -1.0,
            10.0,
        ),
        promote_max_auc_decrease: bounded(
            problems,
            "train.promote_max_auc_decrease",
            raw.promote_max_auc_decrease,
            d.promote_max_auc_decrease,
            -1.0,
            1.0,
        ),
    }
}

/// `value`, or `default` when absent; a problem naming `key` is recorded
/// when it lies outside `min..=max` (a NaN never lies inside).
fn bounded<T: PartialOrd + Copy + std::fmt::Display>(
    problems: &mut Vec<String>,
    key: &str,
    value: Option<T>,
    default: T,
    min: T,
    max: T,
) -> T {
    let v = value.unwrap_or(default);
    if !(min..=max).contains(&v) {
        problems.push(format!(
            "`{key}`: {v} is out of range; expected {min} to {max}"
        ));
    }
    v
}

fn parse_date(key: &str, text: &str, problems: &mut Vec<String>) -> Option<NaiveDate> {
    match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        Ok(d) => Some(d),
        Err(_) => {
            problems.push(format!(
                "`{key}`: \"{text}\" is not a date; expected YYYY-MM-DD"
            ));
            None
        }
    }
}

/// `[features]` with defaults filled in; `as_of` from the command line wins.
fn resolve_features(
    raw: &RawFeatures,
    margin_rate: f64,
    problems: &mut Vec<String>,
) -> FeatureSettings {
    let d = FeatureSettings::default();
    let mut range = |key: &str, v: Option<u32>, default: u32, min: u32, max: u32| {
        bounded(problems, &format!("features.{key}"), v, default, min, max)
    };
    let response_window_days = range(
        "response_window_days",
        raw.response_window_days,
        d.response_window_days,
        1,
        730,
    );
    let churn_horizon_days = range(
        "churn_horizon_days",
        raw.churn_horizon_days,
        d.churn_horizon_days,
        1,
        730,
    );
    let snapshot_every_months = range(
        "snapshot_every_months",
        raw.snapshot_every_months,
        d.snapshot_every_months,
        1,
        24,
    );
    let snapshot_count = range(
        "snapshot_count",
        raw.snapshot_count,
        d.snapshot_count,
        1,
        120,
    );
    let block_subscribers = range(
        "block_subscribers",
        raw.block_subscribers,
        d.block_subscribers,
        1,
        u32::MAX,
    );
    let max_levels = range("max_levels", raw.max_levels, d.max_levels, 1, 10_000);
    let min_level_rows = range(
        "min_level_rows",
        raw.min_level_rows,
        d.min_level_rows,
        1,
        u32::MAX,
    );
    let mut snapshots: Vec<NaiveDate> = raw
        .snapshots
        .iter()
        .flatten()
        .filter_map(|t| parse_date("features.snapshots", t, problems))
        .collect();
    snapshots.sort();
    snapshots.dedup();
    let extra_numeric = raw.extra_numeric.clone().unwrap_or_default();
    let extra_categorical = raw.extra_categorical.clone().unwrap_or_default();
    for name in extra_numeric.iter().chain(&extra_categorical) {
        if Table::Subscribers.columns().iter().any(|c| c.name == name) {
            problems.push(format!(
                "`features.extra_*`: `{name}` is a contract column of subscribers, already a feature"
            ));
        }
    }
    FeatureSettings {
        response_window_days,
        churn_horizon_days,
        snapshots,
        snapshot_every_months,
        snapshot_count,
        margin_rate,
        bill_known: raw.bill_known.unwrap_or(d.bill_known),
        extra_numeric,
        extra_categorical,
        block_subscribers,
        max_levels,
        min_level_rows,
    }
}

/// `[economics]` with defaults filled in; every out-of-range value is added
/// to `problems`.
pub fn resolve_economics(raw: &RawEconomics, problems: &mut Vec<String>) -> Economics {
    resolve_section(raw, "economics", problems)
}

/// [`resolve_economics`] for a section named `section` (`economics`, or
/// `history` with `[economics]`'s values filled in).
fn resolve_section(raw: &RawEconomics, section: &str, problems: &mut Vec<String>) -> Economics {
    let d = Economics::default();
    let mut money = |key: &str, v: Option<f64>, default: f64, max: f64| {
        bounded(problems, &format!("{section}.{key}"), v, default, 0.0, max)
    };
    let discount_per_month = money(
        "discount_per_month",
        raw.discount_per_month,
        d.terms.discount_per_month,
        1e6,
    );
    let upgrade_cost_per_month = money(
        "upgrade_cost_per_month",
        raw.upgrade_cost_per_month,
        d.terms.upgrade_cost_per_month,
        1e6,
    );
    let contact_cost = money("contact_cost", raw.contact_cost, d.contact_cost, 1e6);
    let annual_discount_rate = money(
        "annual_discount_rate",
        raw.annual_discount_rate,
        d.annual_discount_rate,
        1.0,
    );
    let margin_rate = money("margin_rate", raw.margin_rate, d.margin_rate, 1.0);
    let acquisition_cost = money(
        "acquisition_cost",
        raw.acquisition_cost,
        d.acquisition_cost,
        1e6,
    );
    let mut months = |key: &str, v: Option<u32>, default: u32, min: u32, max: u32| {
        bounded(problems, &format!("{section}.{key}"), v, default, min, max)
    };
    let discount_months = months(
        "discount_months",
        raw.discount_months,
        d.terms.discount_months,
        0,
        60,
    );
    let upgrade_months = months(
        "upgrade_months",
        raw.upgrade_months,
        d.terms.upgrade_months,
        0,
        60,
    );
    let horizon_months = months(
        "horizon_months",
        raw.horizon_months,
        d.horizon_months,
        1,
        240,
    );
    Economics {
        terms: OfferTerms {
            discount_per_month,
            discount_months,
            upgrade_cost_per_month,
            upgrade_months,
        },
        contact_cost,
        annual_discount_rate,
        horizon_months,
        margin_rate,
        acquisition_cost,
        tailored: {
            let mut t = d.tailored;
            for (reason, package) in raw.tailored.iter().flatten() {
                match crate::schema::LEAVE_REASONS
                    .iter()
                    .position(|r| r == reason)
                {
                    Some(i) => t[i] = *package,
                    None => problems.push(format!(
                        "`{section}.tailored.{reason}`: not a leave reason; expected one of {}",
                        crate::schema::LEAVE_REASONS.join(", ")
                    )),
                }
            }
            t
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_values_are_all_reported() {
        let raw = parse(
            Path::new("c.toml"),
            "[validate]\nmax_examples = 0\n[economics]\nmargin_rate = nan\ncontact_cost = -1.0\n[features]\nsnapshot_count = 500\n",
        )
        .unwrap();
        let over = Overrides {
            data: Some("d".into()),
            out: Some("o".into()),
            ..Default::default()
        };
        let err = resolve(Some(Path::new("c.toml")), raw, over)
            .unwrap_err()
            .to_string();
        for key in [
            "validate.max_examples",
            "economics.margin_rate",
            "economics.contact_cost",
            "features.snapshot_count",
        ] {
            assert!(
                err.contains(&format!("`{key}`")),
                "{key} missing from:\n{err}"
            );
        }
    }

    #[test]
    fn config_relative_paths_are_cleaned() {
        assert_eq!(
            catalog::relative_to(Path::new("configs"), Path::new("../data/demo")),
            PathBuf::from("data/demo")
        );
        assert_eq!(
            catalog::relative_to(Path::new(""), Path::new("./x")),
            PathBuf::from("x")
        );
        assert_eq!(
            catalog::relative_to(Path::new("a"), Path::new("../..")),
            PathBuf::from("..")
        );
        assert_eq!(
            catalog::relative_to(Path::new("/etc/w"), Path::new("../d")),
            PathBuf::from("/etc/d")
        );
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let err = parse(Path::new("x.toml"), "[validate]\nmodee = \"strict\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("x.toml"), "{err}");
        assert!(err.contains("modee"), "{err}");
        assert!(err.contains("mode"), "{err}");
    }

    #[test]
    fn bad_value_names_expected_values() {
        let err = parse(Path::new("x.toml"), "[validate]\nmode = \"lenient\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("lenient") && err.contains("strict") && err.contains("quarantine"),
            "{err}"
        );
    }

    #[test]
    fn flags_override_config_paths_and_config_paths_are_relative_to_the_file() {
        let raw = parse(
            Path::new("c.toml"),
            "[data]\ndir = \"d\"\n[output]\ndir = \"o\"\n",
        )
        .unwrap();
        let s = resolve(
            Some(Path::new("configs/c.toml")),
            raw.clone(),
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(s.data_dir, PathBuf::from("configs/d"));
        assert_eq!(s.out_dir, PathBuf::from("configs/o"));
        let over = Overrides {
            data: Some("x".into()),
            out: Some("y".into()),
            mode: Some(Mode::Quarantine),
            as_of: None,
            data_end: None,
            needs_data: true,
            out_optional: false,
        };
        let s = resolve(Some(Path::new("configs/c.toml")), raw, over).unwrap();
        assert_eq!(s.data_dir, PathBuf::from("x"));
        assert_eq!(s.out_dir, PathBuf::from("y"));
        assert_eq!(s.validate.mode, Mode::Quarantine);
    }

    #[test]
    fn column_mapping_to_unknown_names_lists_valid_ones() {
        let raw = parse(
            Path::new("c.toml"),
            "[validate.columns.billing]\nmonht = \"m\"\n[validate.columns.bills]\nx = \"y\"\n",
        )
        .unwrap();
        let over = Overrides {
            data: Some("d".into()),
            out: Some("o".into()),
            mode: None,
            as_of: None,
            data_end: None,
            needs_data: true,
            out_optional: false,
        };
        let err = resolve(None, raw, over).unwrap_err().to_string();
        assert!(
            err.contains("no column `monht`; valid: subscriber_id, month"),
            "{err}"
        );
        assert!(err.contains("no table `bills`"), "{err}");
    }

    /// The value a doc comment states after `Default ` (up to the sentence's
    /// end), when it is a literal: a number, a list, a word or a list of words.
    fn stated_default(doc: &str) -> Option<String> {
        let at = doc.find("Default ")? + "Default ".len();
        let rest = &doc[at..];
        let end = if rest.starts_with('[') {
            rest.find(']')? + 1
        } else {
            rest.char_indices()
                .find(|(i, c)| {
                    (*c == '.' && !rest[i + 1..].starts_with(|d: char| d.is_ascii_digit()))
                        || *c == '('
                        || *c == ';'
                })
                .map(|(i, _)| i)
                .unwrap_or(rest.len())
        };
        Some(rest[..end].trim().to_string())
    }

    fn find_key<'a>(table: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
        if let Some(v) = table.get(key) {
            return Some(v);
        }
        table.values().find_map(|v| match v {
            toml::Value::Table(t) => {
                find_key(t, key).or_else(|| key.split_once('_').and_then(|(_, k)| find_key(t, k)))
            }
            _ => None,
        })
    }

    fn same(stated: &str, actual: Option<&toml::Value>) -> bool {
        if stated == "unlimited" || stated == "none" {
            return match actual {
                None => true,
                Some(toml::Value::Array(a)) => a.is_empty(),
                Some(toml::Value::Table(t)) => t.is_empty(),
                _ => false,
            };
        }
        let Some(actual) = actual else {
            return false;
        };
        let number = |v: &toml::Value| match v {
            toml::Value::Integer(i) => Some(*i as f64),
            toml::Value::Float(f) => Some(*f),
            _ => None,
        };
        if let Ok(t) = format!("v = {stated}").parse::<toml::Table>() {
            let want = &t["v"];
            return match (want, actual) {
                (toml::Value::Datetime(d), toml::Value::String(a)) => d.to_string() == *a,
                (toml::Value::Array(a), toml::Value::Array(b)) => {
                    a.len() == b.len()
                        && a.iter().zip(b).all(|(x, y)| match (number(x), number(y)) {
                            (Some(p), Some(q)) => (p - q).abs() < 1e-12,
                            _ => x == y,
                        })
                }
                _ => match (number(want), number(actual)) {
                    (Some(p), Some(q)) => (p - q).abs() < 1e-12,
                    _ => want == actual,
                },
            };
        }
        let words: Vec<&str> = stated.split(", ").collect();
        match actual {
            toml::Value::String(s) => words.len() == 1 && words[0] == s,
            toml::Value::Array(a) => {
                a.len() == words.len() && a.iter().zip(&words).all(|(x, w)| x.as_str() == Some(*w))
            }
            _ => false,
        }
    }

    /// Every `Default <literal>` in the doc comments of the raw config
    /// structs is the code's default (the resolved settings of an empty
    /// config), so the documentation cannot drift from the code.
    #[test]
    fn stated_defaults_are_the_codes_defaults() {
        let over = Overrides {
            data: Some("d".into()),
            out: Some("o".into()),
            ..Default::default()
        };
        let settings = resolve(None, RawConfig::default(), over).unwrap();
        let resolved: toml::Table = toml::to_string(&settings).unwrap().parse().unwrap();
        let source = include_str!("config.rs");
        let sections = [
            ("RawValidate", "validate"),
            ("RawEconomics", "economics"),
            ("RawFeatures", "features"),
            ("RawTrain", "train"),
            ("RawSimulate", "simulate"),
            ("RawNightly", "nightly"),
            ("RawRuns", "runs"),
        ];
        let mut checked = 0;
        let mut wrong = Vec::new();
        for (raw, section) in sections {
            let start = source.find(&format!("pub struct {raw} {{")).unwrap();
            let body = &source[start..start + source[start..].find("\n}").unwrap()];
            let table = resolved[section].as_table().unwrap();
            let mut doc = String::new();
            for line in body.lines().skip(1) {
                let t = line.trim();
                if let Some(d) = t.strip_prefix("///") {
                    doc.push_str(d);
                    doc.push(' ');
                    continue;
                }
                if let Some(field) = t.strip_prefix("pub ").and_then(|f| f.split(':').next()) {
                    if let Some(stated) = stated_default(&doc) {
                        let plain = stated
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || " ,._-[]".contains(c));
                        if plain && !stated.contains(" the ") {
                            checked += 1;
                            if !same(&stated, find_key(table, field)) {
                                wrong.push(format!(
                                    "{section}.{field}: doc says {stated}, code has {:?}",
                                    find_key(table, field)
                                ));
                            }
                        }
                    }
                    doc.clear();
                } else if !t.starts_with("#[") {
                    doc.clear();
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        assert!(checked >= 40, "only {checked} stated defaults checked");
    }

    #[test]
    fn the_renamed_control_share_key_names_its_new_name() {
        let raw = parse(Path::new("c.toml"), "[simulate]\nholdout_share = 0.1\n").unwrap();
        let over = Overrides {
            data: Some("d".into()),
            out: Some("o".into()),
            ..Default::default()
        };
        let err = resolve(None, raw, over).unwrap_err().to_string();
        assert!(err.contains("simulate.control_share"), "{err}");
    }

    #[test]
    fn only_commands_that_read_tables_need_a_data_directory() {
        let over = |needs_data| Overrides {
            out: Some("o".into()),
            needs_data,
            ..Default::default()
        };
        let err = resolve(None, RawConfig::default(), over(true))
            .unwrap_err()
            .to_string();
        assert!(err.contains("data.dir"), "{err}");
        assert!(resolve(None, RawConfig::default(), over(false)).is_ok());
    }
}
