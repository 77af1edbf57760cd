//! `validate`: holds the input to the data contract, table by table.
//!
//! Two steps. [`conform`] checks a table's schema (from the files' footers,
//! before any data is read): contract columns present under their configured
//! names, types as the contract allows (timestamps truncated to dates, ids
//! cast to text, integers widened to floats, each reported); every problem in
//! every table is collected before failing. [`check_rows`] then evaluates
//! every row rule of `shared/docs/data-contract.md` lazily (non-null, unique
//! ids, referential integrity against the accepted subscribers, dates in
//! order, allowed values, month starts) and counts, per table, rows read,
//! accepted and rejected, with the rules each rejected row broke.
//!
//! In strict mode any violation is an error listing every violated rule with
//! counts and example ids. In quarantine mode the offending rows come back
//! with a `reason` column for the catalog to write, and the accepted rows go
//! on as lazy frames, so memory stays bounded by the plan.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, Violation};
use crate::schema::{ARMS, ColumnSpec, Kind, LEAVE_REASONS, Table, col};
use crate::stages::features::ids::{NO_CODE, StrIndex, codes_in_runs, ids_and_days};
use std::sync::Arc;

mod months;

pub use months::{BillBatch, BillTap};

/// How validation treats rows that break a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Fail with every violated rule listed.
    #[default]
    Strict,
    /// Set offending rows aside with a reason and go on.
    Quarantine,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Strict => "strict",
            Mode::Quarantine => "quarantine",
        })
    }
}

/// How billing's `month` dates a bill (`validate.billing_months`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BillingMonths {
    /// The contract's: the first day of the month; any other day breaks
    /// the rule `month_not_first_day`.
    #[default]
    FirstDay,
    /// Any day of the month dates that month's bill (extracts dated at the
    /// month's end, or on a billing day within the month charged): each
    /// date is read as its month's first day.
    AnyDay,
}

/// Settings of the validate stage (`[validate]` in the config).
#[derive(Debug, Clone, Serialize)]
pub struct ValidateSettings {
    /// Strict or quarantine.
    pub mode: Mode,
    /// Example ids per violated rule.
    pub max_examples: usize,
    /// Most bytes of bits (one per subscriber and month) the duplicate-month
    /// rule holds at once; one month's always fit.
    pub duplicate_check_bytes: usize,
    /// Earliest plausible date.
    pub min_date: NaiveDate,
    /// Latest plausible date (default [`LATEST_DATE`]).
    pub max_date: NaiveDate,
    /// Per table: canonical column name to the name in the files.
    pub columns: BTreeMap<String, BTreeMap<String, String>>,
    /// How billing's `month` dates a bill.
    pub billing_months: BillingMonths,
}

impl ValidateSettings {
    /// The name in the files of `table`'s canonical column `canonical`.
    pub fn source_name<'a>(&'a self, table: Table, canonical: &'a str) -> &'a str {
        self.columns
            .get(table.name())
            .and_then(|m| m.get(canonical))
            .map(String::as_str)
            .unwrap_or(canonical)
    }
}

/// A polars failure while reading a table's rows, as the input's fault:
/// names the table and its files.
fn unreadable(table: Table, files: &[String]) -> impl FnOnce(Error) -> Error + '_ {
    move |e| match e {
        Error::Polars { source, .. } => Error::Data {
            table: table.name().into(),
            message: format!(
                "cannot read its rows from {}: {}",
                files.join(", "),
                source.to_string().lines().next().unwrap_or_default()
            ),
        },
        other => other,
    }
}

/// An id as shown in a message: at most 40 characters.
pub fn readable_id(id: &str) -> String {
    if id.chars().count() <= 40 {
        id.to_string()
    } else {
        let head: String = id.chars().take(37).collect();
        format!("{head}... ({} characters)", id.chars().count())
    }
}

/// The name an input's own `reason` column goes on under.
pub const INPUT_REASON: &str = "input_reason";

/// A file's schema and row count, read from its footer by the catalog.
#[derive(Debug, Clone)]
pub struct FileSchema {
    /// The file, for messages.
    pub path: String,
    /// Its schema.
    pub schema: Schema,
    /// Rows in its footer.
    pub rows: usize,
}

/// How a table's columns are brought to the contract's names and types.
#[derive(Debug, Clone)]
pub struct Conformed {
    /// The table.
    pub table: Table,
    /// Expressions that produce the canonical columns, then the extra columns.
    exprs: Vec<Expr>,
    /// Output column names, in order.
    pub columns: Vec<String>,
    /// What was changed on the way (casts, truncations).
    pub notes: Vec<String>,
    /// Rows according to the files' footers.
    pub rows_in_files: usize,
    /// The files, for messages.
    pub files: Vec<String>,
    /// Columns parsed from text (or a flag from integers), each with its
    /// working column, true where a value was given but did not parse,
    /// and what it must read as: the rule `unparsable_<column>`.
    pub parsed: Vec<(&'static str, String, &'static str)>,
    /// Columns of allowed values compared in lower case without
    /// surrounding spaces, each with its working column, true where that
    /// changed the value (counted in a note).
    pub normalized: Vec<(&'static str, String)>,
}

impl Conformed {
    /// Whether [`Conformed::apply`]'s scan carries working columns (of the
    /// values parsed or normalized), which the accepted rows leave out.
    fn has_working_columns(&self) -> bool {
        !self.parsed.is_empty() || !self.normalized.is_empty()
    }

    /// Applies the conforming expressions to a scan of the table.
    pub fn apply(&self, scan: LazyFrame) -> LazyFrame {
        scan.select(self.exprs.clone())
    }
}

/// Words a text flag may say for true, in lower case.
const TRUE_WORDS: [&str; 5] = ["true", "t", "yes", "y", "1"];
/// And for false.
const FALSE_WORDS: [&str; 5] = ["false", "f", "no", "n", "0"];

/// How a column of text (or of integers, for a flag) is read as the
/// contract's `kind` where not every value need parse: the parsed column,
/// one true where a value was given but did not parse (blank text is
/// null), and the note. CSV-born extracts carry dates, amounts and flags
/// as text; a database's flags are often 0 and 1.
fn parsed(kind: Kind, dtype: &DataType, c: Expr) -> Option<(Expr, Expr, String, &'static str)> {
    let text = || c.clone().str().strip_chars(lit(NULL));
    let is_any = |t: Expr, words: &[&str]| {
        words
            .iter()
            .map(|w| t.clone().eq(lit(*w)))
            .reduce(|a, b| a.or(b))
            .expect("words")
    };
    let (value, what, requirement) = match (kind, dtype) {
        (Kind::Date, DataType::String) => (
            text().str().to_date(StrptimeOptions {
                format: Some("%Y-%m-%d".into()),
                strict: false,
                exact: true,
                cache: true,
            }),
            "text dates read as YYYY-MM-DD",
            "a date written YYYY-MM-DD",
        ),
        (Kind::Float, DataType::String) => (
            text().cast(DataType::Float64),
            "text amounts read as numbers",
            "a number",
        ),
        (Kind::Bool, DataType::String) => {
            let t = text().str().to_lowercase();
            (
                when(is_any(t.clone(), &TRUE_WORDS))
                    .then(lit(true))
                    .when(is_any(t, &FALSE_WORDS))
                    .then(lit(false))
                    .otherwise(lit(NULL).cast(DataType::Boolean)),
                "text flags read as true (true, t, yes, y, 1) or false (false, f, no, n, 0), in any case",
                "true, t, yes, y, 1, false, f, no, n or 0",
            )
        }
        (Kind::Bool, d) if d.is_integer() => (
            when(c.clone().eq(lit(1)))
                .then(lit(true))
                .when(c.clone().eq(lit(0)))
                .then(lit(false))
                .otherwise(lit(NULL).cast(DataType::Boolean)),
            "integer flags read as 1 true, 0 false",
            "1 (true) or 0 (false)",
        ),
        _ => return None,
    };
    let given = if dtype.is_string() {
        text().is_not_null().and(text().neq(lit("")))
    } else {
        c.clone().is_not_null()
    };
    let failed = given.and(value.clone().is_null());
    Some((value, failed, format!("{dtype} {what}"), requirement))
}

/// How a column of `dtype` becomes the contract's `kind` (from the
/// column `c`), and what to note about it; `None` when it cannot.
fn type_ok(kind: Kind, dtype: &DataType, c: Expr) -> Option<(Expr, Option<String>)> {
    let plain = |note: Option<String>| Some((c.clone().cast(kind.dtype()), note));
    match (kind, dtype) {
        (Kind::Id, DataType::String) => plain(None),
        (Kind::Id, d) if d.is_integer() => plain(Some(format!("{dtype} ids read as text"))),
        // A database's whole-number type (NUMBER(38,0) and the like).
        (Kind::Id, DataType::Decimal(_, 0)) => plain(Some(format!("{dtype} ids read as text"))),
        // pandas writes an integer column with a missing value as floats,
        // NaN for the missing: whole numbers are read as the integers'
        // text, NaN as null; any other value as its own text, which then
        // names no subscriber.
        (Kind::Id, DataType::Float32 | DataType::Float64) => Some((
            when(c.clone().is_nan())
                .then(lit(NULL).cast(DataType::String))
                .when(c.clone().is_finite().and(c.clone().eq(c.clone().floor())))
                .then(c.clone().cast(DataType::Int64).cast(DataType::String))
                .otherwise(c.clone().cast(DataType::String)),
            Some(format!(
                "{dtype} ids read as text (whole numbers as integers, NaN as null, as pandas writes integer ids with missing values)"
            )),
        )),
        // Dictionary-encoded text (pandas' `category`, Arrow's
        // dictionary, polars' Categorical and Enum) is text.
        (Kind::Id | Kind::Str, d) if d.is_categorical() || d.is_enum() => {
            plain(Some(format!("categorical ({dtype}) read as text")))
        }
        (Kind::Date, DataType::Date) => plain(None),
        // A timestamp in a time zone is cut to the day in that zone (local
        // midnight stays on its day), a naive one as it stands.
        (Kind::Date, DataType::Datetime(_, Some(tz))) => Some((
            c.clone()
                .dt()
                .replace_time_zone(None, lit("earliest"), NonExistent::Null)
                .cast(DataType::Date),
            Some(format!(
                "timestamp ({dtype}) cut to the day in its time zone {tz}"
            )),
        )),
        (Kind::Date, DataType::Datetime(_, None)) => {
            plain(Some(format!("timestamp ({dtype}) truncated to the day")))
        }
        (Kind::Str, DataType::String) => plain(None),
        (Kind::Float, DataType::Float64) => plain(None),
        (Kind::Float, d) if d.is_integer() || matches!(d, DataType::Float32) => {
            plain(Some(format!("{dtype} widened to Float64")))
        }
        (Kind::Float, DataType::Decimal(..)) => plain(Some(format!("{dtype} read as Float64"))),
        (Kind::Bool, DataType::Boolean) => plain(None),
        _ => None,
    }
}

/// Checks a table's file schemas against the contract. Returns every problem
/// found (as messages naming table, file, column and expectation).
pub fn conform(
    table: Table,
    files: &[FileSchema],
    settings: &ValidateSettings,
) -> std::result::Result<Conformed, Vec<String>> {
    let mut problems = Vec::new();
    let first = &files[0];
    for other in &files[1..] {
        let a: Vec<_> = first
            .schema
            .iter()
            .map(|(n, d)| format!("{n}: {d}"))
            .collect();
        let b: Vec<_> = other
            .schema
            .iter()
            .map(|(n, d)| format!("{n}: {d}"))
            .collect();
        if a != b {
            problems.push(format!(
                "table `{table}`: part {} has schema [{}], unlike part {} [{}]",
                other.path,
                b.join(", "),
                first.path,
                a.join(", ")
            ));
        }
    }
    let schema = &first.schema;
    let present: Vec<&str> = schema.iter_names().map(|n| n.as_str()).collect();
    let mut exprs = Vec::new();
    let mut columns = Vec::new();
    let mut notes = Vec::new();
    let mut used_sources = Vec::new();
    let mut parsed_columns = Vec::new();
    let mut normalized = Vec::new();
    for ColumnSpec {
        name,
        kind,
        nullable,
    } in table.columns()
    {
        let mut source = settings.source_name(table, name);
        let mapped = if source != *name {
            format!(" (mapped from `{source}`)")
        } else {
            String::new()
        };
        // A column whose name differs only in case (`SUBSCRIBER_ID`, as
        // many databases export) is that column, when it is the only one.
        if !schema.contains(source) {
            let near: Vec<&str> = present
                .iter()
                .copied()
                .filter(|p| p.eq_ignore_ascii_case(source))
                .collect();
            if let [one] = near[..] {
                notes.push(format!(
                    "{name}: read from `{one}`, whose name differs only in case"
                ));
                source = one;
            }
        }
        let Some(dtype) = schema.get(source) else {
            if *nullable {
                // The contract allows nulls here: an absent column is a
                // column of nulls (a missing cost to serve takes the
                // margin rate, a missing region the level `other`).
                exprs.push(lit(NULL).cast(kind.dtype()).alias(*name));
                columns.push(name.to_string());
                notes.push(format!(
                    "{name}: absent (nullable in the contract): read as all null"
                ));
                continue;
            }
            problems.push(format!(
                "table `{table}`: no column `{source}`{mapped} for contract column `{name}`; columns present: {}",
                present.join(", ")
            ));
            continue;
        };
        if dtype.is_null() {
            // A column of Parquet's null type holds no value at all: pandas
            // writes an all-empty object column so.
            if *nullable {
                exprs.push(col(source).cast(kind.dtype()).alias(*name));
                columns.push(name.to_string());
                used_sources.push(source.to_string());
                notes.push(format!(
                    "{name}: of the null type, no value in any row (nullable in the contract): read as all null"
                ));
            } else {
                problems.push(format!(
                    "table `{table}`: column `{source}`{mapped} is of the null type, no value in any row; the contract requires a value in every row ({})",
                    kind.expected()
                ));
            }
            continue;
        }
        let read = type_ok(*kind, dtype, col(source))
            .map(|(expr, note)| (expr, note, None))
            .or_else(|| {
                parsed(*kind, dtype, col(source)).map(|(expr, failed, note, requirement)| {
                    (expr, Some(note), Some((failed, requirement)))
                })
            });
        match read {
            Some((mut expr, note, failed)) => {
                if let Some(n) = note {
                    notes.push(format!("{name}: {n}"));
                }
                if let Some((failed, requirement)) = failed {
                    let working = format!("__unparsed_{name}");
                    exprs.push(failed.alias(working.as_str()));
                    parsed_columns.push((*name, working, requirement));
                }
                // A leave reason or an arm of the allowed values in
                // another case or with spaces around it (`Price`,
                // ` discount`) is that value.
                if matches!(
                    (table, *name),
                    (Table::ChurnEvents, col::LEAVE_REASON) | (Table::WinbackOffers, col::ARM)
                ) {
                    let raw = expr.clone();
                    expr = raw
                        .clone()
                        .str()
                        .strip_chars(lit(NULL))
                        .str()
                        .to_lowercase();
                    let working = format!("__normalized_{name}");
                    exprs.push(raw.neq(expr.clone()).alias(working.as_str()));
                    normalized.push((*name, working));
                }
                if table == Table::Billing
                    && *name == col::MONTH
                    && settings.billing_months == BillingMonths::AnyDay
                {
                    expr = expr.dt().month_start();
                    notes.push(format!(
                        "{name}: each date read as its month's first day (validate.billing_months = \"any_day\")"
                    ));
                }
                exprs.push(expr.alias(*name));
                columns.push(name.to_string());
                used_sources.push(source.to_string());
            }
            None => problems.push(format!(
                "table `{table}`: column `{source}`{mapped} has type {dtype}; expected {}",
                kind.expected()
            )),
        }
    }
    for n in present {
        let canonical_taken = table.columns().iter().any(|c| c.name == n);
        if used_sources.iter().any(|u| u == n) || canonical_taken {
            continue;
        }
        if n.starts_with("__") {
            // Working columns are named `__...`; a user column so named
            // could be mistaken for one.
            problems.push(format!(
                "table `{table}`: column `{n}` starts with `__`, which winback reserves for its working columns; rename it in the files"
            ));
        } else if n == col::REASON {
            // Rejected rows carry winback's `reason`; the input's own
            // column of that name goes on as `input_reason`.
            exprs.push(col(n).alias(INPUT_REASON));
            columns.push(INPUT_REASON.to_string());
            notes.push(format!(
                "extra column `{n}` carried as `{INPUT_REASON}` (rejected rows name their rule in `reason`)"
            ));
        } else {
            exprs.push(col(n));
            columns.push(n.to_string());
        }
    }
    if problems.is_empty() {
        Ok(Conformed {
            table,
            exprs,
            columns,
            notes,
            rows_in_files: files.iter().map(|f| f.rows).sum(),
            files: files.iter().map(|f| f.path.clone()).collect(),
            parsed: parsed_columns,
            normalized,
        })
    } else {
        Err(problems)
    }
}

/// Per-table figures for the validate report.
#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    /// Table.
    pub table: String,
    /// Rows read.
    pub rows_read: u64,
    /// Rows accepted.
    pub rows_accepted: u64,
    /// Rows rejected (each counted once, whatever the number of rules).
    pub rows_rejected: u64,
    /// Violated rules.
    pub violations: Vec<Violation>,
    /// Facts worth knowing that reject nothing (refunds, casts).
    pub notes: Vec<String>,
}

/// What validation hands on. In strict mode the caller fails when
/// [`Validated::violations`] is not empty.
pub struct Validated {
    /// Accepted rows of every present table, canonical names and types.
    pub tables: BTreeMap<Table, LazyFrame>,
    /// Report rows, in table order.
    pub reports: Vec<TableReport>,
    /// Rejected rows with a `reason` column (quarantine mode only).
    pub rejected: BTreeMap<Table, DataFrame>,
    /// Whether the [`BillTap`] given to [`check_rows_tapped`] saw every
    /// accepted bill and no other: it saw the first pass over billing,
    /// and no bill was rejected.
    pub bills_tapped: bool,
}

impl Validated {
    /// Every violated rule, in table order.
    pub fn violations(&self) -> Vec<Violation> {
        self.reports
            .iter()
            .flat_map(|r| r.violations.iter().cloned())
            .collect()
    }
}

struct Rule {
    name: String,
    column: &'static str,
    requirement: String,
    violated: Expr,
}

fn rule(
    name: impl Into<String>,
    column: &'static str,
    requirement: impl Into<String>,
    violated: Expr,
) -> Rule {
    Rule {
        name: name.into(),
        column,
        requirement: requirement.into(),
        violated,
    }
}

/// Row number of the subscriber in the accepted subscribers; null for an
/// unknown subscriber.
const KNOWN: &str = "__known";
const SIGNUP: &str = "__signup";
const FIRST_CHURN: &str = "__first_churn";
const DUP: &str = "__dup";

fn left_join(lf: LazyFrame, other: LazyFrame, on: &[&str]) -> LazyFrame {
    let keys: Vec<Expr> = on.iter().map(|c| col(*c)).collect();
    let mut args = JoinArgs::new(JoinType::Left);
    args.maintain_order = MaintainOrderJoin::Left;
    lf.join(other, keys.clone(), keys, args)
}

/// The accepted subscribers as the other tables' rules read them: `keys`
/// (`subscriber_id`, unique, and `signup_date`; a key's row is the
/// subscriber's number, [`KNOWN`]), an index of their ids, and by number
/// each one's signup day and (once the churn events are checked) first
/// churn day.
struct Subscribers {
    keys: DataFrame,
    index: Arc<StrIndex>,
    signup: Arc<Vec<Option<i32>>>,
    first_churn: Option<Arc<Vec<Option<i32>>>>,
}

impl Subscribers {
    /// The accepted subscribers `keys`, indexed: by `read`'s index where
    /// `keys` holds the very ids it indexed, row for row (no row dropped
    /// or rejected), otherwise by an index of their own.
    fn new(keys: DataFrame, read: Option<IdIndex>) -> Result<Subscribers> {
        let (ids, signup) = ids_and_days(
            &keys,
            col::SUBSCRIBER_ID,
            col::SIGNUP_DATE,
            "validate subscribers: accepted ids",
        )?;
        let index = match read {
            // The index then reads the keys' ids, so that the ids as read
            // are freed (at 10M subscribers a copy of 10M ids held through
            // billing's pass, when memory peaks).
            Some(read) if read.ids.len() == ids.len() && read.ids.equal_missing(&ids).all() => {
                read.index.over(ids.clone())
            }
            _ => StrIndex::build(&ids).0,
        };
        Ok(Subscribers {
            index: Arc::new(index),
            keys,
            signup: Arc::new(signup),
            first_churn: None,
        })
    }

    /// The subscriber's row number of each id of column `id` ([`KNOWN`]):
    /// null for a null or unknown id. Each batch of rows is looked up in
    /// the index, as billing's are, in place of a join that hashed every
    /// accepted id again for every table.
    fn known(&self, id: &str) -> Expr {
        let index = self.index.clone();
        col(id)
            .map(
                move |c| {
                    let codes = codes_in_runs(c.str()?, |id, before| index.get_after(id, before));
                    let known: UInt32Chunked = codes
                        .into_iter()
                        .map(|c| (c != NO_CODE).then_some(c))
                        .collect();
                    Ok(known.with_name(c.name().clone()).into_column())
                },
                |_, f| Ok(Field::new(f.name().clone(), DataType::UInt32)),
            )
            .alias(KNOWN)
    }

    /// The day of `days` (by row number) of each row's subscriber (by the
    /// [`KNOWN`] column), as a date named `name`.
    fn by_known(days: Arc<Vec<Option<i32>>>, name: &str) -> Expr {
        col(KNOWN)
            .map(
                move |c| {
                    let day: Int32Chunked = c
                        .u32()?
                        .iter()
                        .map(|k| k.and_then(|k| days.get(k as usize).copied().flatten()))
                        .collect();
                    day.into_column().cast(&DataType::Date)
                },
                |_, f| Ok(Field::new(f.name().clone(), DataType::Date)),
            )
            .alias(name)
    }

    /// Frees the days by subscriber that the other tables' rules read:
    /// billing's rules, checked last, read neither (at 10M subscribers
    /// 160 MB, held through billing's pass when memory peaks).
    fn for_billing(&mut self) {
        self.signup = Arc::new(Vec::new());
        self.first_churn = None;
    }

    /// Each subscriber's first churn day, from the churn events `events`
    /// (`subscriber_id`, `churned_at`).
    fn with_first_churn(mut self, events: &DataFrame) -> Result<Subscribers> {
        let (ids, days) = ids_and_days(
            events,
            col::SUBSCRIBER_ID,
            col::CHURNED_AT,
            "validate churn_events: churn dates",
        )?;
        let mut first: Vec<Option<i32>> = vec![None; self.signup.len()];
        let codes = codes_in_runs(&ids, |id, before| self.index.get_after(id, before));
        for (code, day) in codes.iter().zip(days) {
            if let (true, Some(day)) = (*code != NO_CODE, day) {
                let f = &mut first[*code as usize];
                *f = Some(f.map_or(day, |f| f.min(day)));
            }
        }
        self.first_churn = Some(Arc::new(first));
        Ok(self)
    }
}

/// The subscribers' ids as read, before any rule, and their index: built
/// once for both the uniqueness rule (no id repeated: no row breaks it,
/// and polars need not hash the ids again) and the accepted subscribers'
/// index ([`Subscribers::new`]), which at 10M subscribers took 1.5 to 2 s
/// each.
struct IdIndex {
    ids: StringChunked,
    index: StrIndex,
}

impl IdIndex {
    fn read(lf: &LazyFrame, files: &[String]) -> Result<IdIndex> {
        let df = super::collect(
            lf.clone().select([col(col::SUBSCRIBER_ID)]),
            "validate subscribers: ids",
        )
        .map_err(unreadable(Table::Subscribers, files))?;
        let ids = df
            .column(col::SUBSCRIBER_ID)
            .and_then(|c| c.str().cloned())
            .map_err(Error::polars("validate subscribers: ids"))?;
        let (index, _) = StrIndex::build(&ids);
        Ok(IdIndex { ids, index })
    }

    /// Whether no id is repeated (nulls aside).
    fn distinct(&self) -> bool {
        self.index.distinct()
    }
}

/// A table's rules, with the frame they read, notes from any pass of their
/// own, and what that pass counted.
type TableRules = (LazyFrame, Vec<Rule>, Vec<String>, Option<Precounted>);

/// Counts of a table's rules (by name) and notes (by [`note_aggs`]'s
/// names) that a pass of its own took (billing's, [`months::check`]), and
/// the rows it read: when it counted every rule, and each found none, the
/// counting pass over the rows is not needed.
struct Precounted {
    /// Whether the pass's [`BillTap`] saw every bill read.
    tapped: bool,
    read: u64,
    rules: BTreeMap<String, u64>,
    notes: Vec<(&'static str, u64)>,
}

impl Precounted {
    /// The one-row frame of counts the counting pass would give
    /// ([`check_rows`] reads it), when every rule of `rules` was counted
    /// and found no row.
    fn counts(&self, rules: &[Rule]) -> Option<DataFrame> {
        if !rules.iter().all(|r| self.rules.get(&r.name) == Some(&0)) {
            return None;
        }
        let mut columns = vec![
            Column::new("__read".into(), [self.read]),
            Column::new("__rejected".into(), [0u64]),
        ];
        columns.extend((0..rules.len()).map(|i| Column::new(format!("__v{i}").into(), [0u64])));
        columns.extend(
            self.notes
                .iter()
                .map(|(name, n)| Column::new((*name).into(), [*n])),
        );
        DataFrame::new(1, columns).ok()
    }
}

/// The rule that a subscriber id is unique.
const DUPLICATE_ID: &str = "duplicate_id";

/// Rules of `table`, and the frame with the columns they need joined on;
/// billing's first pass seen by `tap`.
#[allow(clippy::too_many_arguments)]
fn rules_for(
    table: Table,
    lf: LazyFrame,
    subs: Option<&Subscribers>,
    settings: &ValidateSettings,
    dates: (NaiveDate, NaiveDate),
    files: &[String],
    distinct: Option<bool>,
    tap: Option<BillTap>,
) -> Result<TableRules> {
    let id = table.id_column();
    let mut rules: Vec<Rule> = table
        .columns()
        .iter()
        .filter(|c| !c.nullable)
        .map(|c| {
            rule(
                format!("null_{}", c.name),
                c.name,
                format!("`{}` must not be null", c.name),
                col(c.name).is_null(),
            )
        })
        .collect();
    // Every amount finite; every date in the plausible range.
    let (first, last) = dates;
    for c in table.columns() {
        match c.kind {
            Kind::Float => rules.push(rule(
                format!("non_finite_{}", c.name),
                c.name,
                format!("`{}` must be a finite number (not NaN or infinite)", c.name),
                col(c.name).is_not_null().and(col(c.name).is_finite().not()),
            )),
            Kind::Date => rules.push(rule(
                "date_out_of_range",
                c.name,
                format!("`{}` must fall from {first} to {last}", c.name),
                col(c.name)
                    .cast(DataType::Int32)
                    .lt(lit(epoch_days(first)))
                    .or(col(c.name).cast(DataType::Int32).gt(lit(epoch_days(last)))),
            )),
            _ => {}
        }
    }
    let mut lf = lf;
    if table == Table::Subscribers {
        // Where the ids' index found every id once, no row breaks the rule.
        let repeated = if distinct == Some(true) {
            lit(false)
        } else {
            col(col::SUBSCRIBER_ID)
                .is_not_null()
                .and(col(col::SUBSCRIBER_ID).is_duplicated())
        };
        rules.push(rule(
            DUPLICATE_ID,
            col::SUBSCRIBER_ID,
            "`subscriber_id` must be unique",
            repeated,
        ));
        rules.push(rule(
            "negative_fee",
            col::MONTHLY_FEE,
            "`monthly_fee` must be >= 0",
            col(col::MONTHLY_FEE).lt(lit(0.0)),
        ));
        return Ok((lf, rules, Vec::new(), None));
    }
    let subs = subs.expect("subscribers are checked first");
    if table == Table::Billing {
        return billing_rules(lf, rules, subs, settings, dates, files, tap);
    }
    lf = lf
        .with_column(subs.known(id))
        .with_column(Subscribers::by_known(subs.signup.clone(), SIGNUP));
    rules.push(rule(
        "unknown_subscriber",
        id,
        format!("`{id}` must exist in the accepted subscribers"),
        col(id).is_not_null().and(col(KNOWN).is_null()),
    ));
    match table {
        Table::Complaints => {
            rules.push(rule(
                "opened_before_signup",
                col::OPENED_AT,
                "`opened_at` must not be before the subscriber's signup_date",
                col(col::OPENED_AT).lt(col(SIGNUP)),
            ));
            rules.push(rule(
                "resolved_before_opened",
                col::RESOLVED_AT,
                "`resolved_at` must not be before `opened_at`",
                col(col::RESOLVED_AT).lt(col(col::OPENED_AT)),
            ));
        }
        Table::ChurnEvents => {
            rules.push(rule(
                "churned_before_signup",
                col::CHURNED_AT,
                "`churned_at` must not be before the subscriber's signup_date",
                col(col::CHURNED_AT).lt(col(SIGNUP)),
            ));
            let allowed = Series::new("allowed".into(), LEAVE_REASONS);
            rules.push(rule(
                "unknown_leave_reason",
                col::LEAVE_REASON,
                format!("`leave_reason` must be one of {}", LEAVE_REASONS.join(", ")),
                col(col::LEAVE_REASON).is_not_null().and(
                    col(col::LEAVE_REASON)
                        .is_in(lit(allowed).implode(false), false)
                        .not(),
                ),
            ));
        }
        Table::Reactivations | Table::WinbackOffers => {
            let date = if table == Table::Reactivations {
                col::RETURNED_AT
            } else {
                col::OFFERED_AT
            };
            let churns = subs
                .first_churn
                .clone()
                .unwrap_or_else(|| Arc::new(Vec::new()));
            lf = lf.with_column(Subscribers::by_known(churns, FIRST_CHURN));
            let name = if table == Table::Reactivations {
                "return_without_churn"
            } else {
                "offer_without_churn"
            };
            rules.push(rule(
                name,
                date,
                format!("`{date}` must come after a churn event of the same subscriber"),
                col(col::SUBSCRIBER_ID)
                    .is_not_null()
                    .and(col(KNOWN).is_not_null())
                    .and(
                        col(FIRST_CHURN)
                            .is_null()
                            .or(col(date).lt_eq(col(FIRST_CHURN))),
                    ),
            ));
            if table == Table::WinbackOffers {
                let allowed = Series::new("allowed".into(), ARMS);
                rules.push(rule(
                    "unknown_arm",
                    col::ARM,
                    format!("`arm` must be one of {}", ARMS.join(", ")),
                    col(col::ARM).is_not_null().and(
                        col(col::ARM)
                            .is_in(lit(allowed).implode(false), false)
                            .not(),
                    ),
                ));
                rules.push(rule(
                    "propensity_out_of_range",
                    col::PROPENSITY,
                    "`propensity` must be in (0, 1]",
                    col(col::PROPENSITY)
                        .lt_eq(lit(0.0))
                        .or(col(col::PROPENSITY).gt(lit(1.0))),
                ));
            }
        }
        Table::Referrals | Table::Subscribers | Table::Billing => {}
    }
    Ok((lf, rules, Vec::new(), None))
}

/// Billing's rules. The rules that need the accepted subscribers come from
/// one pass of their own over the bills ([`months::check`]); the bills are
/// not joined to the subscribers, and the rules' own expressions only read
/// the ids (`is_in`) or the duplicated pairs (a join to them) when the pass
/// found any.
fn billing_rules(
    lf: LazyFrame,
    mut rules: Vec<Rule>,
    subs: &Subscribers,
    settings: &ValidateSettings,
    dates: (NaiveDate, NaiveDate),
    files: &[String],
    tap: Option<BillTap>,
) -> Result<TableRules> {
    let id = col::SUBSCRIBER_ID;
    let found = months::check(
        lf.clone(),
        &subs.keys,
        &subs.index,
        col::SIGNUP_DATE,
        settings.duplicate_check_bytes,
        (epoch_days(dates.0), epoch_days(dates.1)),
        files,
        tap,
    )?;
    tracing::debug!(
        unknown = found.unknown,
        duplicates = found.duplicates.height(),
        passes = found.passes,
        "validate billing: subscribers' months"
    );
    let unknown = if found.unknown == 0 {
        lit(false)
    } else {
        let ids = subs
            .keys
            .column(col::SUBSCRIBER_ID)
            .map_err(Error::polars("validate billing: ids"))?
            .as_materialized_series()
            .clone();
        col(id)
            .is_not_null()
            .and(col(id).is_in(lit(ids).implode(false), false).not())
    };
    rules.push(rule(
        "unknown_subscriber",
        id,
        format!("`{id}` must exist in the accepted subscribers"),
        unknown,
    ));
    rules.push(rule(
        "month_not_first_day",
        col::MONTH,
        "`month` must be the first day of a month",
        col(col::MONTH).dt().day().neq(lit(1)),
    ));
    let mut lf = lf;
    let duplicates = found.duplicates.height() as u64;
    let duplicated = if found.duplicates.height() == 0 {
        lit(false)
    } else {
        let dups = found.duplicates.lazy().with_column(lit(true).alias(DUP));
        lf = left_join(
            lf.with_column(months::month_key(col(col::MONTH))),
            dups,
            &[id, months::MONTH_INDEX],
        );
        col(DUP).is_not_null()
    };
    rules.push(rule(
        "duplicate_month",
        col::MONTH,
        "one billing row per subscriber and month",
        col(col::MONTH).is_not_null().and(duplicated),
    ));
    let mut notes = Vec::new();
    if found.before_signup > 0 {
        notes.push(format!(
            "{} row(s) billed for a month before the signup month, kept",
            found.before_signup
        ));
    }
    let tapped = found.tapped;
    let precounted = found.rows.map(|r| Precounted {
        tapped,
        read: r.rows,
        rules: [
            (format!("null_{}", col::SUBSCRIBER_ID), r.null_id),
            (format!("null_{}", col::MONTH), r.null_month),
            (format!("null_{}", col::REVENUE), r.null_revenue),
            (format!("non_finite_{}", col::REVENUE), r.non_finite_revenue),
            (
                format!("non_finite_{}", col::COST_TO_SERVE),
                r.non_finite_cost,
            ),
            ("date_out_of_range".to_string(), r.out_of_range),
            ("month_not_first_day".to_string(), r.not_first_day),
            ("unknown_subscriber".to_string(), found.unknown),
            ("duplicate_month".to_string(), duplicates),
        ]
        .into_iter()
        .collect(),
        notes: vec![("refunds", r.refunds), ("no_cost", r.no_cost)],
    });
    Ok((lf, rules, notes, precounted))
}

/// The first value of column `c` as a count (0 when absent or null).
fn first_u64(df: &DataFrame, c: &str) -> u64 {
    df.column(c)
        .ok()
        .and_then(|s| s.get(0).ok())
        .and_then(|v| v.extract::<u64>())
        .unwrap_or(0)
}

/// Aggregations behind a table's notes, evaluated in the same pass as the
/// rule counts.
fn note_aggs(table: Table) -> Vec<Expr> {
    if table != Table::Billing {
        return Vec::new();
    }
    vec![
        col(col::REVENUE).lt(lit(0.0)).sum().alias("refunds"),
        col(col::COST_TO_SERVE).is_null().sum().alias("no_cost"),
    ]
}

/// Notes from the counts of [`note_aggs`].
fn table_notes(table: Table, out: &DataFrame) -> Vec<String> {
    if table != Table::Billing {
        return Vec::new();
    }
    let get = |c: &str| first_u64(out, c);
    let mut notes = Vec::new();
    if get("refunds") > 0 {
        notes.push(format!(
            "{} row(s) with negative revenue (refunds), kept",
            get("refunds")
        ));
    }
    if get("no_cost") > 0 {
        notes.push(format!(
            "{} row(s) without cost_to_serve: the config's margin rate applies",
            get("no_cost")
        ));
    }
    notes
}

/// The range dates must fall in: `validate.min_date` to `validate.max_date`
/// (default [`LATEST_DATE`]). The default does not follow the latest billed
/// month: tables are extracted on different days, and a subscriber table
/// exported after billing holds valid signups later than any bill.
fn plausible_dates(settings: &ValidateSettings) -> (NaiveDate, NaiveDate) {
    (settings.min_date, settings.max_date)
}

/// No date after this is plausible in a subscriber history.
pub const LATEST_DATE: NaiveDate = match NaiveDate::from_ymd_opt(2200, 12, 31) {
    Some(d) => d,
    None => panic!("a valid date"),
};

fn epoch_days(d: NaiveDate) -> i32 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid")).num_days() as i32
}

/// Evaluates every row rule on the conformed tables (in [`Table::ALL`]
/// order, so that references are checked against accepted rows, but
/// billing last; the reports in [`Table::ALL`] order).
pub fn check_rows(
    inputs: Vec<(Conformed, LazyFrame)>,
    settings: &ValidateSettings,
) -> Result<Validated> {
    check_rows_tapped(inputs, settings, &mut |_, _, _| Ok(None))
}

/// Called once every table but billing is checked, with their accepted
/// rows, billing's rows as read and the accepted subscribers' index (a
/// bill's subscriber in a [`BillBatch`] is its code there); the tap it
/// gives sees validation's first pass over the bills.
pub(crate) type BeforeBilling<'a> = &'a mut dyn FnMut(
    &BTreeMap<Table, LazyFrame>,
    &LazyFrame,
    &StrIndex,
) -> Result<Option<BillTap>>;

/// [`check_rows`], with `before_billing`'s tap on the first pass over
/// the bills ([`Validated::bills_tapped`] says whether it saw them all).
/// Billing is checked last, its rules reading only the subscribers, so
/// that a later stage's events can be found from the other tables before
/// the bills stream past.
pub(crate) fn check_rows_tapped(
    mut inputs: Vec<(Conformed, LazyFrame)>,
    settings: &ValidateSettings,
    before_billing: BeforeBilling<'_>,
) -> Result<Validated> {
    let mut out = Validated {
        tables: BTreeMap::new(),
        reports: Vec::new(),
        rejected: BTreeMap::new(),
        bills_tapped: false,
    };
    if let Some(i) = inputs.iter().position(|(c, _)| c.table == Table::Billing) {
        let billing = inputs.remove(i);
        inputs.push(billing);
    }
    let mut subscribers: Option<Subscribers> = None;
    let plausible = plausible_dates(settings);
    for (conformed, lf) in inputs {
        let table = conformed.table;
        let _span = tracing::debug_span!("validate", table = table.name()).entered();
        let ctx = |step: &str| format!("validate {table}: {step}");
        let conformed_scan = lf.clone();
        let mut id_index = match table {
            Table::Subscribers => Some(IdIndex::read(&lf, &conformed.files)?),
            _ => None,
        };
        // No tap where strict mode fails the run anyway.
        let failing =
            settings.mode == Mode::Strict && out.reports.iter().any(|r| !r.violations.is_empty());
        if table == Table::Billing
            && let Some(subs) = subscribers.as_mut()
        {
            subs.for_billing();
        }
        let tap = match (table, subscribers.as_ref()) {
            (Table::Billing, Some(subs)) if !failing => {
                before_billing(&out.tables, &lf, &subs.index)?
            }
            _ => None,
        };
        let (joined, mut rules, pass_notes, precounted) = rules_for(
            table,
            lf,
            subscribers.as_ref(),
            settings,
            plausible,
            &conformed.files,
            id_index.as_ref().map(IdIndex::distinct),
            tap,
        )?;
        for (column, working, expected) in &conformed.parsed {
            rules.push(rule(
                format!("unparsable_{column}"),
                column,
                format!("`{column}` must read as {expected}"),
                col(working.as_str()),
            ));
        }
        let flag = |i: usize| format!("__v{i}");
        let flagged = joined.with_columns(
            rules
                .iter()
                .enumerate()
                .map(|(i, r)| r.violated.clone().fill_null(lit(false)).alias(flag(i)))
                .collect::<Vec<_>>(),
        );
        let any = any_horizontal(
            rules
                .iter()
                .enumerate()
                .map(|(i, _)| col(flag(i)))
                .collect::<Vec<_>>(),
        )
        .map_err(Error::polars(ctx("rules")))?;
        let mut aggs: Vec<Expr> = rules
            .iter()
            .enumerate()
            .map(|(i, _)| col(flag(i)).sum().alias(flag(i)))
            .collect();
        aggs.push(any.clone().sum().alias("__rejected"));
        aggs.push(len().alias("__read"));
        aggs.extend(note_aggs(table));
        aggs.extend(
            conformed
                .normalized
                .iter()
                .map(|(_, working)| col(working.as_str()).sum().alias(working.as_str())),
        );
        // The first pass over every row: a page that cannot be decoded
        // (corrupt, invalid UTF-8) fails here, and is the input's fault.
        // Not needed when a pass of the table's own counted every rule and
        // found no row breaking one (billing's, which read every row).
        let counts = match precounted.as_ref().and_then(|p| p.counts(&rules)) {
            Some(counts) => counts,
            None => super::collect(flagged.clone().select(aggs), ctx("count"))
                .map_err(unreadable(table, &conformed.files))?,
        };
        let count = |c: &str| first_u64(&counts, c);
        let read = count("__read");
        let rejected = count("__rejected");
        if table == Table::Billing {
            out.bills_tapped = rejected == 0 && precounted.as_ref().is_some_and(|p| p.tapped);
        }
        let id = table.id_column();
        let mut violations = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let n = count(&flag(i));
            if n == 0 {
                continue;
            }
            let ex = super::collect(
                flagged
                    .clone()
                    .filter(col(flag(i)).and(col(id).is_not_null()))
                    .select([col(id)])
                    .unique_stable(None, UniqueKeepStrategy::First)
                    .limit(settings.max_examples as IdxSize),
                ctx("examples"),
            )?;
            let examples = ex
                .column(id)
                .and_then(|c| c.str().cloned())
                .map(|s| s.iter().flatten().map(readable_id).collect())
                .unwrap_or_default();
            violations.push(Violation {
                table: table.name().into(),
                column: r.column.into(),
                rule: r.name.clone(),
                requirement: r.requirement.clone(),
                rows: n,
                examples,
            });
        }
        let mut notes = conformed.notes.clone();
        notes.extend(table_notes(table, &counts));
        for (column, working) in &conformed.normalized {
            let n = first_u64(&counts, working);
            if n > 0 {
                notes.push(format!(
                    "{column}: {n} value(s) in another case or with spaces around them, read in lower case without the spaces"
                ));
            }
        }
        notes.extend(pass_notes);
        let original: Vec<Expr> = conformed.columns.iter().map(|c| col(c.as_str())).collect();
        let accepted = flagged
            .clone()
            .filter(any.clone().not())
            .select(original.clone());
        if settings.mode == Mode::Quarantine && rejected > 0 {
            let reason = concat_str(
                rules
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        when(col(flag(i)))
                            .then(lit(r.name.clone()))
                            .otherwise(lit(NULL).cast(DataType::String))
                    })
                    .collect::<Vec<_>>(),
                ";",
                true,
            );
            let mut cols = original.clone();
            cols.push(reason.alias(col::REASON));
            let rej = super::collect(
                flagged.clone().filter(any.clone()).select(cols),
                ctx("rejected rows"),
            )?;
            out.rejected.insert(table, rej);
        }
        let accepted_rows = read
            - if settings.mode == Mode::Quarantine {
                rejected
            } else {
                0
            };
        // Strict mode checks references against every subscriber, so that a
        // broken subscriber row is reported once, not again as orphans.
        let reference = if settings.mode == Mode::Strict {
            flagged.clone().select(original.clone())
        } else {
            accepted.clone()
        };
        if table == Table::Subscribers {
            let ids = reference
                .clone()
                .filter(col(col::SUBSCRIBER_ID).is_not_null())
                .select([col(col::SUBSCRIBER_ID), col(col::SIGNUP_DATE)]);
            // One key per id (strict mode sees duplicates): its row is the
            // subscriber's number ([`KNOWN`]). Where the rule found no
            // repeated id, the ids are not hashed again to drop repeats (at
            // 10M subscribers a pass over 10M text ids).
            let repeated = rules
                .iter()
                .position(|r| r.name == DUPLICATE_ID)
                .is_none_or(|i| count(&flag(i)) > 0);
            let keys = super::collect(
                if repeated {
                    ids.unique_stable(Some(cols([col::SUBSCRIBER_ID])), UniqueKeepStrategy::First)
                } else {
                    ids
                },
                ctx("accepted ids"),
            )?;
            subscribers = Some(Subscribers::new(keys, id_index.take())?);
        }
        if table == Table::ChurnEvents
            && let Some(subs) = subscribers.take()
        {
            let events = super::collect(
                reference
                    .clone()
                    .filter(col(col::CHURNED_AT).is_not_null())
                    .select([col(col::SUBSCRIBER_ID), col(col::CHURNED_AT)]),
                ctx("churn dates"),
            )?;
            subscribers = Some(subs.with_first_churn(&events)?);
        }
        out.reports.push(TableReport {
            table: table.name().into(),
            rows_read: read,
            rows_accepted: accepted_rows,
            rows_rejected: if settings.mode == Mode::Quarantine {
                rejected
            } else {
                0
            },
            violations,
            notes,
        });
        // Without rejections the accepted rows are the input itself: later
        // stages scan the files directly instead of re-running the rules.
        out.tables.insert(
            table,
            if rejected == 0 {
                // Without the working columns of the values parsed.
                if !conformed.has_working_columns() {
                    conformed_scan
                } else {
                    conformed_scan.select(
                        conformed
                            .columns
                            .iter()
                            .map(|c| col(c.as_str()))
                            .collect::<Vec<_>>(),
                    )
                }
            } else {
                accepted
            },
        );
    }
    let order = |name: &str| Table::ALL.iter().position(|t| t.name() == name);
    out.reports.sort_by_key(|r| order(&r.table));
    Ok(out)
}
