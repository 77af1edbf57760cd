//! `features`: point-in-time features and training labels.
//!
//! Every feature is computed for an *event*: a subscriber and an as-of date.
//! [`behaviour`] joins each input table to the events on the subscriber and
//! keeps only rows dated on or before the event's as-of date (`month`,
//! `opened_at`, `referred_at`, `returned_at`, `churned_at`), then aggregates
//! per event. A resolution or satisfaction counts only once `resolved_at` is
//! on or before the as-of date. So a feature as of a date reads nothing dated
//! after it, whatever the table; `tests/features.rs` proves it by altering
//! every later row and comparing.
//!
//! Three kinds of events use the one function:
//! - lapsed subscribers, as of each defection (one row per churn event);
//! - active subscribers, as of the run's as-of date;
//! - churn snapshots, active subscribers as of each snapshot date.
//!
//! Labels look only forward from their as-of date and never into the feature
//! window: an offer's response is a return within `(offered_at, offered_at +
//! window]`, a snapshot's label is a churn within `(date, date + horizon]`,
//! a second lifetime runs from the return to the next churn (or the data's
//! end, censored).

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::schema::{Table, col};

/// Days per month used to express day counts in months.
pub const DAYS_PER_MONTH: f64 = 30.4375;

/// Settings of the features stage (`[features]` in the config).
#[derive(Debug, Clone, Serialize)]
pub struct FeatureSettings {
    /// As-of date of the active subscribers' features; `None`: the data's end.
    pub as_of: Option<NaiveDate>,
    /// Days after an offer within which a return counts as its response.
    pub response_window_days: u32,
    /// Churn label horizon of the snapshots, in days.
    pub churn_horizon_days: u32,
    /// Snapshot dates; empty: `snapshot_count` dates `snapshot_every_months`
    /// apart, the last one the latest month start whose horizon is observed.
    pub snapshots: Vec<NaiveDate>,
    /// Spacing of the default snapshots.
    pub snapshot_every_months: u32,
    /// Number of default snapshots.
    pub snapshot_count: u32,
    /// Margin share of revenue where billing has no cost to serve.
    pub margin_rate: f64,
    /// Extra numeric columns of `subscribers` to carry as features.
    pub extra_numeric: Vec<String>,
    /// Extra categorical columns of `subscribers` to carry as features.
    pub extra_categorical: Vec<String>,
}

impl Default for FeatureSettings {
    fn default() -> Self {
        FeatureSettings {
            as_of: None,
            response_window_days: 90,
            churn_horizon_days: 90,
            snapshots: Vec::new(),
            snapshot_every_months: 3,
            snapshot_count: 8,
            margin_rate: 0.45,
            extra_numeric: Vec::new(),
            extra_categorical: Vec::new(),
        }
    }
}

/// Column names of the features and labels.
pub mod f {
    #![allow(missing_docs)]
    pub const AS_OF: &str = "as_of";
    pub const EVENT: &str = "__event";
    pub const LIFETIME_START: &str = "lifetime_start";
    pub const TENURE_MONTHS: &str = "tenure_months";
    pub const BILLED_MONTHS: &str = "billed_months";
    pub const REVENUE_MEAN: &str = "revenue_mean";
    pub const MARGIN_MEAN: &str = "margin_mean";
    pub const REVENUE_LAST3: &str = "revenue_last3";
    pub const MARGIN_LAST3: &str = "margin_last3";
    pub const REVENUE_TREND: &str = "revenue_trend";
    pub const BILL_RATIO_MAX3: &str = "bill_ratio_max3";
    pub const LIFETIME_VALUE: &str = "lifetime_value";
    pub const VALUE_TO_DATE: &str = "value_to_date";
    pub const PLAN: &str = "plan";
    pub const FEE: &str = "monthly_fee";
    pub const COMPLAINTS: &str = "complaints";
    pub const COMPLAINTS_SATISFIED: &str = "complaints_satisfied";
    pub const COMPLAINTS_UNSATISFIED: &str = "complaints_unsatisfied";
    pub const COMPLAINTS_OPEN: &str = "complaints_open";
    pub const COMPLAINTS_6M: &str = "complaints_6m";
    pub const SHARE_SATISFIED: &str = "share_satisfied";
    pub const DAYS_SINCE_COMPLAINT: &str = "days_since_complaint";
    pub const NEVER_COMPLAINED: &str = "never_complained";
    pub const REFERRALS: &str = "referrals";
    pub const HAS_REFERRED: &str = "has_referred";
    pub const WAS_REFERRED: &str = "was_referred";
    pub const EARLIER_DEFECTIONS: &str = "earlier_defections";
    pub const MONTHS_SINCE_RETURN: &str = "months_since_return";
    pub const REGION: &str = "region";
    pub const CHANNEL: &str = "channel";
    pub const LEAVE_REASON: &str = "leave_reason";
    pub const DAYS_SINCE_DEFECTION: &str = "days_since_defection";
    pub const RETURNED: &str = "returned";
    pub const RETURNED_AT: &str = "returned_at";
    pub const WINDOW_OBSERVED: &str = "window_observed";
    pub const CHURNED: &str = "churned_within_horizon";
    pub const HORIZON_OBSERVED: &str = "horizon_observed";
    pub const SNAPSHOT: &str = "snapshot";
    pub const MONTHS_RETAINED: &str = "months_retained";
    pub const SECOND_MARGIN: &str = "second_lifetime_margin";
    pub const SECOND_BILLS: &str = "second_lifetime_bills";
    pub const CENSORED: &str = "censored";
    pub const WON_BACK_BY: &str = "won_back_by";
}

/// How a feature is turned into numbers by the models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// Used as a number (standardised by the model; nulls imputed by it).
    Numeric,
    /// 0 or 1.
    Flag,
    /// One indicator per category seen in training; a category not seen
    /// in training, and a null, fall into the `other` level.
    OneHot,
}

/// One feature of the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    /// Column name.
    pub name: String,
    /// Arrow type of the column.
    pub dtype: String,
    /// Encoding.
    pub encoding: Encoding,
    /// Input columns it is computed from (`table.column`).
    pub sources: Vec<String>,
    /// Categories seen in the training rows (one-hot features only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
}

/// The level unseen categories and nulls of a one-hot feature map to.
pub const OTHER_LEVEL: &str = "other";

/// The features a frame carries, saved with the output so that training and
/// scoring encode identically.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Version of this layout.
    pub version: u32,
    /// Features, in model order.
    pub features: Vec<FeatureSpec>,
    /// What happens to a category not seen in training.
    pub unseen_category_policy: String,
}

/// The features stage's outputs.
pub struct Features {
    /// One row per churn event, features as of the defection.
    pub lapsed: DataFrame,
    /// One row per subscriber active at the as-of date.
    pub active: DataFrame,
    /// One row per win-back offer: features of the defection it answers,
    /// the arm, and whether the subscriber returned within the window.
    pub offers: DataFrame,
    /// One row per return: months retained and margin of the second
    /// lifetime, censoring, and the arm that won the subscriber back.
    pub second_lifetime: DataFrame,
    /// Rows of all churn snapshots (handed to the sink one by one).
    pub snapshot_rows: usize,
    /// The as-of date used for `active`.
    pub as_of: NaiveDate,
    /// Last day covered by the data (end of the latest billed month).
    pub data_end: NaiveDate,
    /// Snapshot dates used.
    pub snapshots: Vec<NaiveDate>,
    /// Feature manifest (categories seen in the lapsed and snapshot rows).
    pub manifest: Manifest,
}

/// Input tables, canonical names and types; absent optional tables are
/// empty frames of the contract's schema.
#[derive(Clone)]
pub struct Inputs {
    tables: BTreeMap<Table, LazyFrame>,
}

/// An empty frame with `table`'s contract columns.
pub fn empty_table(table: Table) -> LazyFrame {
    let columns: Vec<Column> = table
        .columns()
        .iter()
        .map(|c| Column::new_empty(c.name.into(), &c.kind.dtype()))
        .collect();
    DataFrame::new(0, columns)
        .expect("contract columns are distinct")
        .lazy()
}

impl Inputs {
    /// From the validated tables.
    pub fn new(mut tables: BTreeMap<Table, LazyFrame>) -> Self {
        for t in Table::ALL {
            tables.entry(t).or_insert_with(|| empty_table(t));
        }
        Inputs { tables }
    }

    /// A table (empty when absent).
    pub fn get(&self, t: Table) -> LazyFrame {
        self.tables[&t].clone()
    }
}

fn days(c: &str) -> Expr {
    col(c).cast(DataType::Int32)
}

fn date_lit(d: NaiveDate) -> Expr {
    lit(epoch_days(d)).cast(DataType::Date)
}

fn month_index(e: Expr) -> Expr {
    e.clone().dt().year().cast(DataType::Int32) * lit(12) + e.dt().month().cast(DataType::Int32)
}

/// `value` where `mask` holds, null elsewhere.
fn masked(mask: Expr, value: Expr, name: &str) -> Expr {
    when(mask)
        .then(value)
        .otherwise(lit(NULL).cast(DataType::Float64))
        .alias(name)
}

/// Days since 1970-01-01.
pub fn epoch_days(d: NaiveDate) -> i32 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid")).num_days() as i32
}

fn from_epoch_days(n: i32) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid") + chrono::Duration::days(n as i64)
}

fn join(a: LazyFrame, b: LazyFrame, on: &[&str], how: JoinType) -> LazyFrame {
    let k: Vec<Expr> = on.iter().map(|c| col(*c)).collect();
    a.join(b, k.clone(), k, JoinArgs::new(how))
}

fn collect(lf: LazyFrame, step: &str) -> Result<DataFrame> {
    super::collect(lf, format!("features: {step}"))
}

/// The margin of a bill: revenue less cost to serve, or revenue times the
/// margin rate where the cost is unknown.
fn margin(rate: f64) -> Expr {
    (col(col::REVENUE) - col(col::COST_TO_SERVE))
        .fill_null(col(col::REVENUE) * lit(rate))
        .alias("__margin")
}

/// Last day of the latest billed month.
pub fn data_end(inputs: &Inputs) -> Result<NaiveDate> {
    let df = collect(
        inputs
            .get(Table::Billing)
            .select([col(col::MONTH).max().alias("m")]),
        "data end",
    )?;
    let m = df
        .column("m")
        .ok()
        .and_then(|c| c.get(0).ok())
        .and_then(|v| match v {
            AnyValue::Date(d) => Some(d),
            _ => None,
        })
        .ok_or_else(|| Error::Setting {
            key: "billing".into(),
            message: "billing has no rows: features need at least one billed month".into(),
        })?;
    let first = from_epoch_days(m);
    let next = first
        .checked_add_months(chrono::Months::new(1))
        .expect("date in range");
    Ok(next.pred_opt().expect("date in range"))
}

/// Features of each event row of `events` (which must hold
/// `subscriber_id`, `as_of` (Date) and a unique `__event` (UInt32)), using
/// only input rows dated on or before the event's `as_of`.
pub fn behaviour(inputs: &Inputs, events: LazyFrame, s: &FeatureSettings) -> LazyFrame {
    let ev = events.select([col(f::EVENT), col(col::SUBSCRIBER_ID), col(f::AS_OF)]);
    let keyed = |t: Table| {
        let id = t.id_column();
        let lf = inputs.get(t);
        if id == col::SUBSCRIBER_ID {
            lf
        } else {
            lf.rename([id], [col::SUBSCRIBER_ID], true)
        }
    };
    let per_event = |lf: LazyFrame, date: &str, aggs: Vec<Expr>| {
        join(lf, ev.clone(), &[col::SUBSCRIBER_ID], JoinType::Inner)
            .filter(col(date).lt_eq(col(f::AS_OF)))
            .group_by([col(f::EVENT)])
            .agg(aggs)
    };

    // Returns and defections before the as-of date: where the current
    // lifetime started, plan and fee in force.
    let returns = per_event(
        keyed(Table::Reactivations),
        col::RETURNED_AT,
        vec![
            col(col::RETURNED_AT).max().alias("__last_return"),
            col(col::PLAN)
                .sort_by([col(col::RETURNED_AT)], SortMultipleOptions::default())
                .drop_nulls()
                .last()
                .alias("__return_plan"),
            col(col::MONTHLY_FEE)
                .sort_by([col(col::RETURNED_AT)], SortMultipleOptions::default())
                .drop_nulls()
                .last()
                .alias("__return_fee"),
        ],
    );
    let defections = join(
        keyed(Table::ChurnEvents),
        ev.clone(),
        &[col::SUBSCRIBER_ID],
        JoinType::Inner,
    )
    .filter(col(col::CHURNED_AT).lt(col(f::AS_OF)))
    .group_by([col(f::EVENT)])
    .agg([len().cast(DataType::Int32).alias(f::EARLIER_DEFECTIONS)]);
    let mut subs_cols = vec![
        col(col::SUBSCRIBER_ID),
        col(col::SIGNUP_DATE),
        col(col::PLAN).alias("__plan0"),
        col(col::MONTHLY_FEE).alias("__fee0"),
        col(col::REGION),
        col(col::CHANNEL),
    ];
    for extra in s.extra_numeric.iter() {
        subs_cols.push(col(extra.as_str()).cast(DataType::Float64));
    }
    for extra in s.extra_categorical.iter() {
        subs_cols.push(col(extra.as_str()).cast(DataType::String));
    }
    let subs = inputs.get(Table::Subscribers).select(subs_cols);
    let base = join(ev.clone(), subs, &[col::SUBSCRIBER_ID], JoinType::Left);
    let base = join(base, returns, &[f::EVENT], JoinType::Left);
    let base = join(base, defections, &[f::EVENT], JoinType::Left).with_columns([
        when(
            col("__last_return")
                .is_not_null()
                .and(col("__last_return").gt(col(col::SIGNUP_DATE))),
        )
        .then(col("__last_return"))
        .otherwise(col(col::SIGNUP_DATE))
        .alias(f::LIFETIME_START),
        col(f::EARLIER_DEFECTIONS).fill_null(lit(0)),
    ]);

    // Bills of the current lifetime (from its first month) up to the as-of
    // date, and all bills up to it for the value to date.
    let lifetimes = base.clone().select([
        col(f::EVENT),
        col(col::SUBSCRIBER_ID),
        col(f::AS_OF),
        col(f::LIFETIME_START),
    ]);
    // The table streams through; the events (the smaller side) are the
    // join's build side, so memory follows the events, not the bills.
    let bills = join(
        keyed(Table::Billing),
        lifetimes,
        &[col::SUBSCRIBER_ID],
        JoinType::Inner,
    )
    .filter(col(col::MONTH).lt_eq(col(f::AS_OF)))
    .with_columns([
        margin(s.margin_rate),
        col(col::MONTH)
            .gt_eq(col(f::LIFETIME_START).dt().month_start())
            .alias("__in_life"),
        // Calendar months between the bill and the as-of date: 0 for
        // the as-of month, so "last 3 months" is 0, 1 and 2.
        (month_index(col(f::AS_OF)) - month_index(col(col::MONTH))).alias("__ago"),
    ])
    // Masked copies, so that the aggregation below is plain sums and
    // means (nulls ignored), which polars runs vectorised per group.
    .with_columns([
        masked(col("__in_life"), col(col::REVENUE), "__rev_life"),
        masked(col("__in_life"), col("__margin"), "__margin_life"),
        masked(
            col("__in_life").and(col("__ago").lt(lit(3))),
            col(col::REVENUE),
            "__rev3",
        ),
        masked(
            col("__in_life").and(col("__ago").lt(lit(3))),
            col("__margin"),
            "__margin3",
        ),
        masked(
            col("__in_life")
                .and(col("__ago").gt_eq(lit(3)))
                .and(col("__ago").lt(lit(6))),
            col(col::REVENUE),
            "__rev_prev3",
        ),
    ]);
    let billing = bills.group_by([col(f::EVENT)]).agg([
        col("__margin").sum().alias(f::VALUE_TO_DATE),
        col("__margin_life").sum().alias(f::LIFETIME_VALUE),
        col("__rev_life")
            .count()
            .cast(DataType::Int32)
            .alias(f::BILLED_MONTHS),
        col("__rev_life").mean().alias(f::REVENUE_MEAN),
        col("__margin_life").mean().alias(f::MARGIN_MEAN),
        col("__rev3").mean().alias(f::REVENUE_LAST3),
        col("__margin3").mean().alias(f::MARGIN_LAST3),
        col("__rev_prev3").mean().alias("__revenue_prev3"),
        col("__rev3").max().alias("__revenue_max3"),
    ]);

    let complaints = join(
        keyed(Table::Complaints),
        ev.clone(),
        &[col::SUBSCRIBER_ID],
        JoinType::Inner,
    )
    .filter(col(col::OPENED_AT).lt_eq(col(f::AS_OF)))
    .with_columns([
        col(col::SATISFIED)
            .eq(lit(true))
            .and(col(col::RESOLVED_AT).lt_eq(col(f::AS_OF)))
            .fill_null(lit(false))
            .cast(DataType::Int32)
            .alias("__sat"),
        col(col::RESOLVED_AT)
            .is_null()
            .or(col(col::RESOLVED_AT).gt(col(f::AS_OF)))
            .cast(DataType::Int32)
            .alias("__open"),
        (days(f::AS_OF) - days(col::OPENED_AT)).alias("__age"),
    ])
    .with_columns([col("__age")
        .lt(lit(183))
        .cast(DataType::Int32)
        .alias("__recent")])
    .group_by([col(f::EVENT)])
    .agg([
        len().cast(DataType::Int32).alias(f::COMPLAINTS),
        col("__sat").sum().alias(f::COMPLAINTS_SATISFIED),
        col("__open").sum().alias(f::COMPLAINTS_OPEN),
        col("__recent").sum().alias(f::COMPLAINTS_6M),
        col("__age").min().alias(f::DAYS_SINCE_COMPLAINT),
    ]);
    let referrals = per_event(
        keyed(Table::Referrals),
        col::REFERRED_AT,
        vec![len().cast(DataType::Int32).alias(f::REFERRALS)],
    );
    // Referred by someone: the acquisition channel, or a referral naming
    // the subscriber dated on or before the as-of date.
    let referred = join(
        ev.clone(),
        inputs
            .get(Table::Referrals)
            .filter(col(col::REFERRED_ID).is_not_null())
            .select([
                col(col::REFERRED_ID).alias(col::SUBSCRIBER_ID),
                col(col::REFERRED_AT),
            ]),
        &[col::SUBSCRIBER_ID],
        JoinType::Inner,
    )
    .filter(col(col::REFERRED_AT).lt_eq(col(f::AS_OF)))
    .group_by([col(f::EVENT)])
    .agg([lit(true).first().alias("__named_referred")]);

    let mut x = join(base, billing, &[f::EVENT], JoinType::Left);
    x = join(x, complaints, &[f::EVENT], JoinType::Left);
    x = join(x, referrals, &[f::EVENT], JoinType::Left);
    x = join(x, referred, &[f::EVENT], JoinType::Left);
    let zero = |c: &str| col(c).fill_null(lit(0)).alias(c);
    let x = x.with_columns([
        zero(f::COMPLAINTS),
        zero(f::COMPLAINTS_SATISFIED),
        zero(f::COMPLAINTS_OPEN),
        zero(f::COMPLAINTS_6M),
        zero(f::REFERRALS),
        zero(f::BILLED_MONTHS),
        col(f::LIFETIME_VALUE).fill_null(lit(0.0)),
        col(f::VALUE_TO_DATE).fill_null(lit(0.0)),
    ]);
    let x = x.with_columns([
        col("__return_plan")
            .fill_null(col("__plan0"))
            .alias(f::PLAN),
        col("__return_fee").fill_null(col("__fee0")).alias(f::FEE),
        ((days(f::AS_OF) - days(f::LIFETIME_START)).cast(DataType::Float64) / lit(DAYS_PER_MONTH))
            .alias(f::TENURE_MONTHS),
        (col(f::REVENUE_LAST3) - col("__revenue_prev3")).alias(f::REVENUE_TREND),
        (col(f::COMPLAINTS) - col(f::COMPLAINTS_SATISFIED)).alias(f::COMPLAINTS_UNSATISFIED),
        when(col(f::COMPLAINTS).gt(lit(0)))
            .then(
                col(f::COMPLAINTS_SATISFIED).cast(DataType::Float64)
                    / col(f::COMPLAINTS).cast(DataType::Float64),
            )
            .otherwise(lit(NULL).cast(DataType::Float64))
            .alias(f::SHARE_SATISFIED),
        col(f::COMPLAINTS).eq(lit(0)).alias(f::NEVER_COMPLAINED),
        col(f::REFERRALS).gt(lit(0)).alias(f::HAS_REFERRED),
        col(col::CHANNEL)
            .eq(lit("referral"))
            .fill_null(lit(false))
            .or(col("__named_referred").fill_null(lit(false)))
            .alias(f::WAS_REFERRED),
        ((days(f::AS_OF) - days("__last_return")).cast(DataType::Float64) / lit(DAYS_PER_MONTH))
            .alias(f::MONTHS_SINCE_RETURN),
    ]);
    let x = x.with_columns([(col("__revenue_max3") / col(f::FEE)).alias(f::BILL_RATIO_MAX3)]);
    let mut keep = vec![
        col(f::EVENT),
        col(col::SUBSCRIBER_ID),
        col(f::AS_OF),
        col(f::LIFETIME_START),
    ];
    keep.extend(behaviour_columns(s).into_iter().map(|(n, _, _)| col(n)));
    // Sums over groups run in parallel, in an order that varies between
    // runs, so a sum or mean can differ in its last bits from run to run (a
    // trend that is exactly zero comes out as -3.6e-15 one time in five),
    // and a tree split or quantile step sitting on such a value would score
    // the same subscriber differently on a rerun. Money has at most 4
    // decimals (2 in the bills, 4 with a margin rate), so an exact sum lies
    // on the 1e-9 grid and its noise (about 1e-11 at the largest values) is
    // far from the grid's half-way points: rounding to 9 decimals gives the
    // exact sum every time. Means divide such a sum by a count, so they are
    // exact too, except a mean over exactly 64 months of 4-decimal margins,
    // which can fall on a half-way point (documented in the README).
    let summed = [
        f::REVENUE_MEAN,
        f::MARGIN_MEAN,
        f::REVENUE_LAST3,
        f::MARGIN_LAST3,
        f::REVENUE_TREND,
        f::LIFETIME_VALUE,
        f::VALUE_TO_DATE,
    ];
    x.select(keep).with_columns(
        summed
            .iter()
            .map(|c| col(*c).round(9, RoundMode::HalfToEven).alias(*c))
            .collect::<Vec<_>>(),
    )
}

/// The behavioural features, their encodings and sources, in model order.
fn behaviour_columns(s: &FeatureSettings) -> Vec<(String, Encoding, Vec<String>)> {
    use Encoding::*;
    let v = |n: &str, e: Encoding, src: &[&str]| {
        (
            n.to_string(),
            e,
            src.iter().map(|x| x.to_string()).collect(),
        )
    };
    let mut out = vec![
        v(
            f::TENURE_MONTHS,
            Numeric,
            &["subscribers.signup_date", "reactivations.returned_at"],
        ),
        v(f::BILLED_MONTHS, Numeric, &["billing.month"]),
        v(f::REVENUE_MEAN, Numeric, &["billing.revenue"]),
        v(
            f::MARGIN_MEAN,
            Numeric,
            &["billing.revenue", "billing.cost_to_serve"],
        ),
        v(f::REVENUE_LAST3, Numeric, &["billing.revenue"]),
        v(
            f::MARGIN_LAST3,
            Numeric,
            &["billing.revenue", "billing.cost_to_serve"],
        ),
        v(f::REVENUE_TREND, Numeric, &["billing.revenue"]),
        v(
            f::BILL_RATIO_MAX3,
            Numeric,
            &["billing.revenue", "subscribers.monthly_fee"],
        ),
        v(
            f::LIFETIME_VALUE,
            Numeric,
            &["billing.revenue", "billing.cost_to_serve"],
        ),
        v(
            f::VALUE_TO_DATE,
            Numeric,
            &["billing.revenue", "billing.cost_to_serve"],
        ),
        v(f::PLAN, OneHot, &["subscribers.plan", "reactivations.plan"]),
        v(
            f::FEE,
            Numeric,
            &["subscribers.monthly_fee", "reactivations.monthly_fee"],
        ),
        v(f::COMPLAINTS, Numeric, &["complaints.opened_at"]),
        v(
            f::COMPLAINTS_SATISFIED,
            Numeric,
            &["complaints.satisfied", "complaints.resolved_at"],
        ),
        v(
            f::COMPLAINTS_UNSATISFIED,
            Numeric,
            &["complaints.satisfied", "complaints.resolved_at"],
        ),
        v(f::COMPLAINTS_OPEN, Numeric, &["complaints.resolved_at"]),
        v(f::COMPLAINTS_6M, Numeric, &["complaints.opened_at"]),
        v(f::SHARE_SATISFIED, Numeric, &["complaints.satisfied"]),
        v(f::DAYS_SINCE_COMPLAINT, Numeric, &["complaints.opened_at"]),
        v(f::NEVER_COMPLAINED, Flag, &["complaints.opened_at"]),
        v(f::REFERRALS, Numeric, &["referrals.referred_at"]),
        v(f::HAS_REFERRED, Flag, &["referrals.referred_at"]),
        v(
            f::WAS_REFERRED,
            Flag,
            &["subscribers.channel", "referrals.referred_id"],
        ),
        v(f::EARLIER_DEFECTIONS, Numeric, &["churn_events.churned_at"]),
        v(
            f::MONTHS_SINCE_RETURN,
            Numeric,
            &["reactivations.returned_at"],
        ),
        v(f::REGION, OneHot, &["subscribers.region"]),
        v(f::CHANNEL, OneHot, &["subscribers.channel"]),
    ];
    for e in &s.extra_numeric {
        out.push((e.clone(), Numeric, vec![format!("subscribers.{e}")]));
    }
    for e in &s.extra_categorical {
        out.push((e.clone(), OneHot, vec![format!("subscribers.{e}")]));
    }
    out
}

/// Defections as events: one per churn event, as of its date.
fn defection_events(inputs: &Inputs) -> LazyFrame {
    inputs
        .get(Table::ChurnEvents)
        .select([
            col(col::SUBSCRIBER_ID),
            col(col::CHURNED_AT).alias(f::AS_OF),
            col(col::LEAVE_REASON).fill_null(lit("unknown")),
        ])
        .sort(
            [col::SUBSCRIBER_ID, f::AS_OF],
            SortMultipleOptions::default(),
        )
        .with_row_index(f::EVENT, None)
}

/// Subscribers active at `date`: signed up on or before it, and either never
/// churned on or before it or returned after their last churn.
fn active_at(inputs: &Inputs, date: NaiveDate) -> LazyFrame {
    let d = date_lit(date);
    let last_churn = inputs
        .get(Table::ChurnEvents)
        .filter(col(col::CHURNED_AT).lt_eq(d.clone()))
        .group_by([col(col::SUBSCRIBER_ID)])
        .agg([col(col::CHURNED_AT).max().alias("__last_churn")]);
    let last_return = inputs
        .get(Table::Reactivations)
        .filter(col(col::RETURNED_AT).lt_eq(d.clone()))
        .group_by([col(col::SUBSCRIBER_ID)])
        .agg([col(col::RETURNED_AT).max().alias("__last_ret")]);
    let subs = inputs
        .get(Table::Subscribers)
        .filter(col(col::SIGNUP_DATE).lt_eq(d.clone()))
        .select([col(col::SUBSCRIBER_ID)]);
    join(
        join(subs, last_churn, &[col::SUBSCRIBER_ID], JoinType::Left),
        last_return,
        &[col::SUBSCRIBER_ID],
        JoinType::Left,
    )
    .filter(
        col("__last_churn").is_null().or(col("__last_ret")
            .is_not_null()
            .and(col("__last_ret").gt(col("__last_churn")))),
    )
    .select([col(col::SUBSCRIBER_ID), d.alias(f::AS_OF)])
}

/// Lapsed subscribers: features as of each defection.
fn lapsed(inputs: &Inputs, s: &FeatureSettings) -> LazyFrame {
    let events = defection_events(inputs);
    let reasons = events
        .clone()
        .select([col(f::EVENT), col(col::LEAVE_REASON)]);
    join(
        behaviour(inputs, events, s),
        reasons,
        &[f::EVENT],
        JoinType::Left,
    )
    .rename([f::AS_OF], [col::CHURNED_AT], true)
}

/// Offers with the features of the defection each answers (the latest
/// churn before the offer) and the response label.
fn offers(
    inputs: &Inputs,
    lapsed: &DataFrame,
    s: &FeatureSettings,
    end: NaiveDate,
) -> Result<DataFrame> {
    let window = s.response_window_days as i32;
    let offers = inputs
        .get(Table::WinbackOffers)
        .with_row_index("__offer", None)
        .select([
            col("__offer"),
            col(col::SUBSCRIBER_ID),
            col(col::OFFERED_AT),
            col(col::ARM),
            col(col::PROPENSITY),
        ]);
    let answered = join(
        offers.clone(),
        lapsed.clone().lazy().select([
            col(col::SUBSCRIBER_ID),
            col(col::CHURNED_AT),
            col(f::EVENT),
        ]),
        &[col::SUBSCRIBER_ID],
        JoinType::Inner,
    )
    .filter(col(col::CHURNED_AT).lt(col(col::OFFERED_AT)))
    .sort(["__offer", col::CHURNED_AT], SortMultipleOptions::default())
    .group_by([col("__offer")])
    .agg([col(f::EVENT).last()]);
    let returned = join(
        offers.clone(),
        inputs
            .get(Table::Reactivations)
            .select([col(col::SUBSCRIBER_ID), col(col::RETURNED_AT)]),
        &[col::SUBSCRIBER_ID],
        JoinType::Inner,
    )
    .filter(
        days(col::RETURNED_AT)
            .gt(days(col::OFFERED_AT))
            .and(days(col::RETURNED_AT).lt_eq(days(col::OFFERED_AT) + lit(window))),
    )
    .group_by([col("__offer")])
    .agg([col(col::RETURNED_AT).min().alias(f::RETURNED_AT)]);
    let x = join(offers, answered, &["__offer"], JoinType::Inner);
    let x = join(x, returned, &["__offer"], JoinType::Left);
    let features = lapsed.clone().lazy().drop(cols([col::SUBSCRIBER_ID]));
    let x = join(x, features, &[f::EVENT], JoinType::Left)
        .with_columns([
            col(f::RETURNED_AT).is_not_null().alias(f::RETURNED),
            (days(col::OFFERED_AT) + lit(window))
                .lt_eq(lit(epoch_days(end)))
                .alias(f::WINDOW_OBSERVED),
            (days(col::OFFERED_AT) - days(col::CHURNED_AT)).alias(f::DAYS_SINCE_DEFECTION),
        ])
        .sort(["__offer"], SortMultipleOptions::default())
        .drop(cols(["__offer"]));
    collect(x, "offer labels")
}

/// Second lifetimes: per return, months until the next churn (or the data's
/// end, censored), margin billed over them, and the arm whose response
/// window holds the return.
fn second_lifetimes(
    inputs: &Inputs,
    lapsed: &DataFrame,
    s: &FeatureSettings,
    end: NaiveDate,
) -> Result<DataFrame> {
    let window = s.response_window_days as i32;
    let returns = inputs
        .get(Table::Reactivations)
        .select([col(col::SUBSCRIBER_ID), col(col::RETURNED_AT)])
        .with_row_index("__ret", None);
    let next_churn = join(
        returns.clone(),
        inputs
            .get(Table::ChurnEvents)
            .select([col(col::SUBSCRIBER_ID), col(col::CHURNED_AT)]),
        &[col::SUBSCRIBER_ID],
        JoinType::Inner,
    )
    .filter(col(col::CHURNED_AT).gt(col(col::RETURNED_AT)))
    .group_by([col("__ret")])
    .agg([col(col::CHURNED_AT).min().alias("__next_churn")]);
    let previous = join(
        returns.clone(),
        lapsed.clone().lazy().select([
            col(col::SUBSCRIBER_ID),
            col(col::CHURNED_AT),
            col(f::EVENT),
        ]),
        &[col::SUBSCRIBER_ID],
        JoinType::Inner,
    )
    .filter(col(col::CHURNED_AT).lt(col(col::RETURNED_AT)))
    .sort(["__ret", col::CHURNED_AT], SortMultipleOptions::default())
    .group_by([col("__ret")])
    .agg([col(f::EVENT).last()]);
    let won_by = join(
        returns.clone(),
        inputs.get(Table::WinbackOffers).select([
            col(col::SUBSCRIBER_ID),
            col(col::OFFERED_AT),
            col(col::ARM),
        ]),
        &[col::SUBSCRIBER_ID],
        JoinType::Inner,
    )
    .filter(
        days(col::RETURNED_AT)
            .gt(days(col::OFFERED_AT))
            .and(days(col::RETURNED_AT).lt_eq(days(col::OFFERED_AT) + lit(window))),
    )
    .sort(["__ret", col::OFFERED_AT], SortMultipleOptions::default())
    .group_by([col("__ret")])
    .agg([col(col::ARM).last().alias(f::WON_BACK_BY)]);
    let x = join(returns, next_churn, &["__ret"], JoinType::Left);
    let x = join(x, previous, &["__ret"], JoinType::Left);
    let x = join(x, won_by, &["__ret"], JoinType::Left).with_columns([
        col("__next_churn").is_null().alias(f::CENSORED),
        col("__next_churn")
            .fill_null(date_lit(end))
            .alias("__life_end"),
    ]);
    let margins = join(
        inputs.get(Table::Billing),
        x.clone().select([
            col("__ret"),
            col(col::SUBSCRIBER_ID),
            col(col::RETURNED_AT),
            col("__life_end"),
        ]),
        &[col::SUBSCRIBER_ID],
        JoinType::Inner,
    )
    .filter(
        col(col::MONTH)
            .gt_eq(col(col::RETURNED_AT).dt().month_start())
            .and(col(col::MONTH).lt_eq(col("__life_end"))),
    )
    .with_columns([margin(s.margin_rate)])
    .group_by([col("__ret")])
    .agg([
        col("__margin").sum().alias(f::SECOND_MARGIN),
        len().cast(DataType::Int32).alias(f::SECOND_BILLS),
    ]);
    let x = join(x, margins, &["__ret"], JoinType::Left).with_columns([
        ((days("__life_end") - days(col::RETURNED_AT)).cast(DataType::Float64)
            / lit(DAYS_PER_MONTH))
        .alias(f::MONTHS_RETAINED),
        col(f::SECOND_MARGIN)
            .fill_null(lit(0.0))
            .round(9, RoundMode::HalfToEven),
        col(f::SECOND_BILLS).fill_null(lit(0)),
        col("__next_churn").alias("next_churned_at"),
    ]);
    let reasons = lapsed.clone().lazy().select([
        col(f::EVENT),
        col(col::CHURNED_AT).alias("previous_churned_at"),
        col(col::LEAVE_REASON),
        col(f::LIFETIME_VALUE).alias("first_lifetime_value"),
        col(f::TENURE_MONTHS).alias("first_lifetime_months"),
    ]);
    let x = join(x, reasons, &[f::EVENT], JoinType::Left)
        .sort(["__ret"], SortMultipleOptions::default())
        .select([
            col(col::SUBSCRIBER_ID),
            col(col::RETURNED_AT),
            col("previous_churned_at"),
            col(col::LEAVE_REASON),
            col(f::WON_BACK_BY),
            col("first_lifetime_months"),
            col("first_lifetime_value"),
            col("next_churned_at"),
            col(f::MONTHS_RETAINED),
            col(f::CENSORED),
            col(f::SECOND_MARGIN),
            col(f::SECOND_BILLS),
        ]);
    collect(x, "second lifetimes")
}

/// Default snapshot dates: `count` month starts `every` months apart, the
/// last the latest month start whose horizon ends by the data's end.
pub fn default_snapshots(
    end: NaiveDate,
    horizon_days: u32,
    every: u32,
    count: u32,
) -> Vec<NaiveDate> {
    let latest = end - chrono::Duration::days(horizon_days as i64);
    let mut d = latest.with_day(1).expect("day 1 exists");
    let mut out = Vec::new();
    for _ in 0..count {
        out.push(d);
        match d.checked_sub_months(chrono::Months::new(every.max(1))) {
            Some(p) => d = p,
            None => break,
        }
    }
    out.reverse();
    out
}

/// Stacked snapshots: active subscribers' features as of each date, and
/// whether they churned within the horizon after it.
fn churn_snapshot(
    inputs: &Inputs,
    date: NaiveDate,
    index: u32,
    s: &FeatureSettings,
    end: NaiveDate,
) -> Result<DataFrame> {
    let horizon = s.churn_horizon_days as i32;
    let events = active_at(inputs, date)
        .sort([col::SUBSCRIBER_ID], SortMultipleOptions::default())
        .with_row_index(f::EVENT, None);
    let events = collect(events, "snapshot events")?.lazy();
    let x = behaviour(inputs, events.clone(), s);
    let churned = join(
        inputs
            .get(Table::ChurnEvents)
            .select([col(col::SUBSCRIBER_ID), col(col::CHURNED_AT)]),
        events.select([col(f::EVENT), col(col::SUBSCRIBER_ID), col(f::AS_OF)]),
        &[col::SUBSCRIBER_ID],
        JoinType::Inner,
    )
    .filter(
        days(col::CHURNED_AT)
            .gt(days(f::AS_OF))
            .and(days(col::CHURNED_AT).lt_eq(days(f::AS_OF) + lit(horizon))),
    )
    .group_by([col(f::EVENT)])
    .agg([lit(true).first().alias(f::CHURNED)]);
    let x = join(x, churned, &[f::EVENT], JoinType::Left)
        .with_columns([
            col(f::CHURNED).fill_null(lit(false)),
            lit(epoch_days(date) + horizon <= epoch_days(end)).alias(f::HORIZON_OBSERVED),
            lit(index).alias(f::SNAPSHOT),
        ])
        .sort([f::EVENT], SortMultipleOptions::default())
        .drop(cols([f::EVENT]));
    collect(x, "churn snapshot")
}

/// Categories seen so far, per one-hot feature.
type Seen = BTreeMap<String, std::collections::BTreeSet<String>>;

fn see(seen: &mut Seen, df: &DataFrame, names: &[String]) {
    for name in names {
        if let Ok(c) = df.column(name)
            && let Ok(s) = c.str()
        {
            let set = seen.entry(name.clone()).or_default();
            for v in s.iter().flatten() {
                if !set.contains(v) {
                    set.insert(v.to_string());
                }
            }
        }
    }
}

fn one_hot_names(s: &FeatureSettings) -> Vec<String> {
    let mut v: Vec<String> = behaviour_columns(s)
        .into_iter()
        .filter(|(_, e, _)| *e == Encoding::OneHot)
        .map(|(n, _, _)| n)
        .collect();
    v.push(f::LEAVE_REASON.to_string());
    v
}

/// The manifest of the features the lapsed rows and snapshots carry.
fn manifest(s: &FeatureSettings, lapsed: &DataFrame, seen: &Seen) -> Manifest {
    let mut specs = Vec::new();
    let mut cols = behaviour_columns(s);
    cols.push((
        f::LEAVE_REASON.to_string(),
        Encoding::OneHot,
        vec!["churn_events.leave_reason".to_string()],
    ));
    for (name, encoding, sources) in cols {
        let dtype = lapsed
            .column(&name)
            .map(|c| c.dtype().to_string())
            .unwrap_or_else(|_| "unknown".into());
        let categories = if encoding == Encoding::OneHot {
            seen.get(&name)
                .map(|c| c.iter().cloned().collect())
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        specs.push(FeatureSpec {
            name,
            dtype,
            encoding,
            sources,
            categories,
        });
    }
    // Days from the defection to the offer (offers) or to the scoring date
    // (lapsed subscribers being scored): the return model's timing feature.
    specs.push(FeatureSpec {
        name: f::DAYS_SINCE_DEFECTION.to_string(),
        dtype: DataType::Int32.to_string(),
        encoding: Encoding::Numeric,
        sources: vec![
            "churn_events.churned_at".to_string(),
            "winback_offers.offered_at".to_string(),
        ],
        categories: Vec::new(),
    });
    Manifest {
        version: 1,
        features: specs,
        unseen_category_policy: format!(
            "a category not seen in training, and a null, are encoded as the level `{OTHER_LEVEL}` \
             (all indicators of the seen categories zero) and counted in the scoring summary"
        ),
    }
}

/// Runs the stage.
/// Runs the stage. Each churn snapshot goes to `snapshot_sink` (index,
/// date, rows) as soon as it is built; the other outputs come back.
pub fn build(
    inputs: &Inputs,
    s: &FeatureSettings,
    snapshot_sink: &mut dyn FnMut(usize, NaiveDate, &mut DataFrame) -> Result<()>,
) -> Result<Features> {
    let clock = std::time::Instant::now();
    let step = |name: &str| {
        tracing::debug!(
            step = name,
            seconds = clock.elapsed().as_secs_f64(),
            "features"
        )
    };
    let end = data_end(inputs)?;
    let as_of = s.as_of.unwrap_or(end);
    let lapsed = collect(lapsed(inputs, s), "lapsed subscribers")?;
    step("lapsed");
    let active = {
        let events = active_at(inputs, as_of)
            .sort([col::SUBSCRIBER_ID], SortMultipleOptions::default())
            .with_row_index(f::EVENT, None);
        collect(
            behaviour(inputs, events, s).drop(cols([f::EVENT])),
            "active subscribers",
        )?
    };
    step("active");
    let offers = offers(inputs, &lapsed, s, end)?;
    step("offers");
    let second_lifetime = second_lifetimes(inputs, &lapsed, s, end)?;
    step("second lifetimes");
    let snapshots = if s.snapshots.is_empty() {
        default_snapshots(
            end,
            s.churn_horizon_days,
            s.snapshot_every_months,
            s.snapshot_count,
        )
    } else {
        s.snapshots.clone()
    };
    // One snapshot at a time, handed to the caller as soon as it is built,
    // so that memory holds one snapshot's rows, whatever their number.
    let names = one_hot_names(s);
    let mut seen = Seen::new();
    see(&mut seen, &lapsed, &names);
    let mut snapshot_rows = 0;
    for (i, d) in snapshots.iter().enumerate() {
        let mut df = churn_snapshot(inputs, *d, i as u32, s, end)?;
        see(&mut seen, &df, &names);
        snapshot_rows += df.height();
        snapshot_sink(i, *d, &mut df)?;
    }
    step("snapshots");
    let manifest = manifest(s, &lapsed, &seen);
    // Rows in a stable order: the streaming engine does not keep one, and
    // the models' seeded splits and subsamples go by row position.
    let order = |df: DataFrame, by: &[&str], what: &str| -> Result<DataFrame> {
        df.sort(by.to_vec(), SortMultipleOptions::default())
            .map_err(Error::polars(format!("features: order of {what}")))
    };
    let lapsed = order(
        lapsed
            .drop(f::EVENT)
            .map_err(Error::polars("features: lapsed"))?,
        &[col::SUBSCRIBER_ID, col::CHURNED_AT],
        "lapsed",
    )?;
    let active = order(active, &[col::SUBSCRIBER_ID], "active")?;
    let offers = order(
        offers
            .drop(f::EVENT)
            .map_err(Error::polars("features: offers"))?,
        &[col::SUBSCRIBER_ID, col::OFFERED_AT],
        "offers",
    )?;
    let second_lifetime = order(
        second_lifetime,
        &[col::SUBSCRIBER_ID, col::RETURNED_AT],
        "second lifetimes",
    )?;
    Ok(Features {
        lapsed,
        active,
        offers,
        second_lifetime,
        snapshot_rows,
        as_of,
        data_end: end,
        snapshots,
        manifest,
    })
}

/// Features as of one date, for scoring: the subscribers active then, and
/// those lapsed then (their latest defection on or before the date, not
/// followed by a return by then), each with features as of that defection
/// and `days_since_defection` at the date.
pub struct Current {
    /// Lapsed subscribers.
    pub lapsed: DataFrame,
    /// Active subscribers.
    pub active: DataFrame,
    /// The date.
    pub as_of: NaiveDate,
    /// Last day covered by the data.
    pub data_end: NaiveDate,
    /// Manifest of the features (categories seen in these rows).
    pub manifest: Manifest,
}

/// Builds [`Current`] for `s.as_of` (default: the data's end); no labels,
/// no snapshots.
pub fn current(inputs: &Inputs, s: &FeatureSettings) -> Result<Current> {
    let end = data_end(inputs)?;
    let as_of = s.as_of.unwrap_or(end);
    let active_ids = active_at(inputs, as_of);
    let active = {
        let events = active_ids
            .clone()
            .sort([col::SUBSCRIBER_ID], SortMultipleOptions::default())
            .with_row_index(f::EVENT, None);
        collect(
            behaviour(inputs, events, s).drop(cols([f::EVENT])),
            "active subscribers",
        )?
    };
    let events = defection_events(inputs)
        .filter(col(f::AS_OF).lt_eq(date_lit(as_of)))
        .group_by([col(col::SUBSCRIBER_ID)])
        .agg([
            col(f::AS_OF).max(),
            col(col::LEAVE_REASON)
                .sort_by([col(f::AS_OF)], SortMultipleOptions::default())
                .last(),
        ]);
    let events = join(
        events,
        active_ids.select([col(col::SUBSCRIBER_ID)]),
        &[col::SUBSCRIBER_ID],
        JoinType::Anti,
    )
    .sort([col::SUBSCRIBER_ID], SortMultipleOptions::default())
    .with_row_index(f::EVENT, None);
    let reasons = events
        .clone()
        .select([col(f::EVENT), col(col::LEAVE_REASON)]);
    let lapsed = join(
        behaviour(inputs, events, s),
        reasons,
        &[f::EVENT],
        JoinType::Left,
    )
    .sort([f::EVENT], SortMultipleOptions::default())
    .drop(cols([f::EVENT]))
    .rename([f::AS_OF], [col::CHURNED_AT], true)
    .with_column(
        (lit(epoch_days(as_of)) - col(col::CHURNED_AT).cast(DataType::Int32))
            .alias(f::DAYS_SINCE_DEFECTION),
    );
    // The lapsed rows are in event order, which is subscriber order; the
    // active ones come in the streaming engine's order.
    let lapsed = collect(lapsed, "lapsed subscribers")?;
    let active = active
        .sort([col::SUBSCRIBER_ID], SortMultipleOptions::default())
        .map_err(Error::polars("active subscribers: order"))?;
    let mut seen = Seen::new();
    let names = one_hot_names(s);
    see(&mut seen, &lapsed, &names);
    see(&mut seen, &active, &names);
    let manifest = manifest(s, &lapsed, &seen);
    Ok(Current {
        lapsed,
        active,
        as_of,
        data_end: end,
        manifest,
    })
}

/// Per categorical feature, how many values were mapped to [`OTHER_LEVEL`].
pub type Unseen = Vec<(String, usize)>;

/// Brings a frame's one-hot features onto the manifest's categories: a value
/// seen in training stays, any other value and a null become
/// [`OTHER_LEVEL`]. Returns the frame and, per feature, how many values were
/// mapped to `other` (for the scoring summary), so nothing is mis-encoded
/// silently. A feature of the manifest missing from the frame is an error.
pub fn conform_categories(df: &DataFrame, manifest: &Manifest) -> Result<(DataFrame, Unseen)> {
    let mut out = df.clone();
    let mut unseen = Vec::new();
    for spec in manifest
        .features
        .iter()
        .filter(|s| s.encoding == Encoding::OneHot)
    {
        let column = df.column(&spec.name).map_err(|_| Error::Setting {
            key: spec.name.clone(),
            message: format!(
                "the frame has no column `{}`, which the feature manifest names; it was built by another features stage or config",
                spec.name
            ),
        })?;
        let values = column
            .cast(&DataType::String)
            .map_err(Error::polars(format!("features: category {}", spec.name)))?;
        let values = values
            .str()
            .map_err(Error::polars(format!("features: category {}", spec.name)))?;
        let known: std::collections::HashSet<&str> =
            spec.categories.iter().map(String::as_str).collect();
        let mut n = 0usize;
        let mapped: StringChunked = values
            .iter()
            .map(|v| match v {
                Some(v) if known.contains(v) => Some(v),
                _ => {
                    n += 1;
                    Some(OTHER_LEVEL)
                }
            })
            .collect();
        out.replace(
            &spec.name,
            mapped.with_name(spec.name.as_str().into()).into_column(),
        )
        .map_err(Error::polars(format!("features: category {}", spec.name)))?;
        unseen.push((spec.name.clone(), n));
    }
    Ok((out, unseen))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            version: 1,
            features: vec![
                FeatureSpec {
                    name: "plan".into(),
                    dtype: "str".into(),
                    encoding: Encoding::OneHot,
                    sources: vec!["subscribers.plan".into()],
                    categories: vec!["basic".into(), "premium".into()],
                },
                FeatureSpec {
                    name: "tenure_months".into(),
                    dtype: "f64".into(),
                    encoding: Encoding::Numeric,
                    sources: vec![],
                    categories: vec![],
                },
            ],
            unseen_category_policy: String::new(),
        }
    }

    #[test]
    fn unseen_categories_and_nulls_become_other_and_are_counted() {
        let df = DataFrame::new(
            4,
            vec![
                Column::new(
                    "plan".into(),
                    [Some("basic"), Some("gold"), None, Some("premium")],
                ),
                Column::new("tenure_months".into(), [1.0, 2.0, 3.0, 4.0]),
            ],
        )
        .unwrap();
        let (out, unseen) = conform_categories(&df, &manifest()).unwrap();
        let plan: Vec<Option<&str>> = out.column("plan").unwrap().str().unwrap().iter().collect();
        assert_eq!(
            plan,
            [Some("basic"), Some("other"), Some("other"), Some("premium")]
        );
        assert_eq!(unseen, [("plan".to_string(), 2)]);
        assert!(
            out.column("tenure_months")
                .unwrap()
                .equals(df.column("tenure_months").unwrap())
        );
    }

    #[test]
    fn a_missing_feature_column_is_an_error() {
        let df = DataFrame::new(1, vec![Column::new("tenure_months".into(), [1.0])]).unwrap();
        let err = conform_categories(&df, &manifest())
            .unwrap_err()
            .to_string();
        assert!(err.contains("plan"), "{err}");
    }

    #[test]
    fn default_snapshots_end_at_the_last_observed_month_start() {
        let end = NaiveDate::from_ymd_opt(2025, 12, 31).unwrap();
        let d = default_snapshots(end, 90, 3, 4);
        let s: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        assert_eq!(s, ["2025-01-01", "2025-04-01", "2025-07-01", "2025-10-01"]);
    }
}
