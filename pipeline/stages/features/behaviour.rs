//! Point-in-time aggregates: every feature of an (event, as-of date) from
//! the input rows dated on or before the as-of date.

use polars::prelude::*;

use crate::error::{Error, Result};
use crate::schema::{Table, col};

use super::calendar::month_of_day;
use super::frames::*;
use super::manifest::{Encoding, f};
use super::settings::{BillKnown, FeatureSettings};

/// The index ([`month_index`]) of the latest month whose bill is known as
/// of each row's `as_of`: under [`BillKnown::MonthEnd`] the month that has
/// ended by then (the as-of month itself only on its last day), under
/// [`BillKnown::MonthStart`] the as-of month.
pub(crate) fn known_through(rule: BillKnown) -> Expr {
    match rule {
        BillKnown::MonthStart => month_index(col(f::AS_OF)),
        BillKnown::MonthEnd => {
            let next_day = (col(f::AS_OF).cast(DataType::Int32) + lit(1)).cast(DataType::Date);
            month_index(next_day) - lit(1)
        }
    }
}

/// Features of each event row of `events` (which must hold
/// `subscriber_id`, `as_of` (Date) and a unique `__event` (UInt32)), using
/// only input rows dated on or before the event's `as_of`.
pub fn behaviour(inputs: &Inputs, events: LazyFrame, s: &FeatureSettings) -> Result<LazyFrame> {
    behaviour_through(inputs, events, s, None)
}

/// [`behaviour`] for events none of which is dated after `through`: each
/// table's rows dated after it are dropped before the joins (no event could
/// read them), so a churn snapshot reads only the history up to its date
/// (and the Parquet reader can skip the rest).
pub fn behaviour_through(
    inputs: &Inputs,
    events: LazyFrame,
    s: &FeatureSettings,
    through: Option<chrono::NaiveDate>,
) -> Result<LazyFrame> {
    let staged = behaviour_staged(inputs, events, s, through)?;
    behaviour_finished(inputs, staged, s, through, None)
}

/// [`behaviour_through`]'s work before the bills: the events with their
/// subscribers' columns, returns and defections, and their lifetimes.
pub(crate) struct Staged {
    /// Whether the smaller tables were walked ([`super::walk`]).
    walked: bool,
    /// The events (`__event`, `subscriber_id`, `as_of`) with their
    /// lifetimes ([`f::LIFETIME_START`]).
    base: DataFrame,
}

impl Staged {
    /// The events' bill months (`__event`, `subscriber_id`, `__known`,
    /// `__life_month`): what their bills' sums are kept by.
    pub(crate) fn bill_months(&self, s: &FeatureSettings) -> Result<DataFrame> {
        bill_months(&self.base, s.bill_known)
    }
}

/// `t`'s rows, those dated after `through` dropped (no event could read
/// them).
fn dated(inputs: &Inputs, t: Table, through: Option<chrono::NaiveDate>) -> LazyFrame {
    let lf = inputs.get(t);
    let column = match t {
        Table::Billing => col::MONTH,
        Table::Reactivations => col::RETURNED_AT,
        Table::ChurnEvents => col::CHURNED_AT,
        Table::Complaints => col::OPENED_AT,
        Table::Referrals => col::REFERRED_AT,
        _ => return lf,
    };
    match through {
        Some(d) => lf.filter(col(column).lt_eq(date_lit(d))),
        None => lf,
    }
}

/// [`dated`], its id column named `subscriber_id`.
fn keyed(inputs: &Inputs, t: Table, through: Option<chrono::NaiveDate>) -> LazyFrame {
    let id = t.id_column();
    let lf = dated(inputs, t, through);
    if id == col::SUBSCRIBER_ID {
        lf
    } else {
        lf.rename([id], [col::SUBSCRIBER_ID], true)
    }
}

/// `aggs` of each event over the rows of `lf` of its subscriber dated
/// (`date`) on or before its `as_of`.
fn per_event(ev: &LazyFrame, lf: LazyFrame, date: &str, aggs: Vec<Expr>) -> LazyFrame {
    join(lf, ev.clone(), &[col::SUBSCRIBER_ID], JoinType::Inner)
        .filter(col(date).lt_eq(col(f::AS_OF)))
        .group_by([col(f::EVENT)])
        .agg(aggs)
}

/// [`behaviour_through`] up to the bills ([`Staged`]).
pub(crate) fn behaviour_staged(
    inputs: &Inputs,
    events: LazyFrame,
    s: &FeatureSettings,
    through: Option<chrono::NaiveDate>,
) -> Result<Staged> {
    let ev = events.select([col(f::EVENT), col(col::SUBSCRIBER_ID), col(f::AS_OF)]);
    let keyed = |t: Table| keyed(inputs, t, through);
    let per_event = |lf: LazyFrame, date: &str, aggs: Vec<Expr>| per_event(&ev, lf, date, aggs);

    // With coded ids, each event walks its own subscriber's rows of the
    // smaller tables (subscriber, returns, defections, complaints,
    // referrals; [`super::walk`]); otherwise they are joined to the events.
    let walked = match inputs.walk() {
        Some(walk) => Some(walk.aggregate(&collect(ev.clone(), "events")?, s)?),
        None => None,
    };
    let base = if let Some(walked) = &walked {
        walked.clone().lazy()
    } else {
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
        let mut subs_cols = vec![col(col::SUBSCRIBER_ID)];
        subs_cols.extend(s.subscriber_columns());
        let subs = inputs.get(Table::Subscribers).select(subs_cols);
        let base = collect(
            join(ev.clone(), subs, &[col::SUBSCRIBER_ID], JoinType::Left),
            "events' subscribers",
        )?;
        tracing::trace!("features: events' subscribers");
        let parts = vec![
            collect(returns, "events' returns")?,
            collect(defections, "events' defections")?,
        ];
        beside_or_joined(base, parts)?
    };
    let base = base.with_columns([
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

    // Built once: the billing aggregates read it, and so do the rows.
    let base = collect(base, "events' lifetimes")?;
    tracing::trace!("features: events' lifetimes");
    Ok(Staged {
        walked: walked.is_some(),
        base,
    })
}

/// [`behaviour_through`] from [`Staged`]: the bills' sums (`sums`, when
/// given: the columns [`super::ledger::stream`] gives for the events of
/// [`Staged::bill_months`]) and the other tables' aggregates.
pub(crate) fn behaviour_finished(
    inputs: &Inputs,
    staged: Staged,
    s: &FeatureSettings,
    through: Option<chrono::NaiveDate>,
    sums: Option<DataFrame>,
) -> Result<LazyFrame> {
    let Staged { walked, base } = staged;
    // The events' keys from their rows (the same columns, not copied),
    // so that the frame the events were found in need not be held while
    // the bills are summed.
    let ev = base
        .select([f::EVENT, col::SUBSCRIBER_ID, f::AS_OF])
        .map_err(Error::polars("features: events' keys"))?
        .lazy();
    let keyed = |t: Table| keyed(inputs, t, through);
    let dated = |t: Table| dated(inputs, t, through);
    let per_event = |lf: LazyFrame, date: &str, aggs: Vec<Expr>| per_event(&ev, lf, date, aggs);
    // Bills of the current lifetime (from its first month) up to the as-of
    // date, and all bills up to it for the value to date.
    let ledger = inputs.ledger(s.margin_rate);
    // Month indexes on the events' side (one row per event), so that the
    // joined bills compare integers only.
    // The bills' side has text ids: the events' ids decoded for the join
    // and the stream (the ledger is keyed as the events are).
    let billing = if inputs.joined_bills {
        let lifetimes = base.clone().lazy().select([
            col(f::EVENT),
            col(col::SUBSCRIBER_ID),
            known_through(s.bill_known).alias("__known"),
            month_index(col(f::LIFETIME_START)).alias("__life_month"),
        ]);
        billing_joined(keyed(Table::Billing), inputs.decode_lazy(lifetimes), s)
    } else {
        let sums = match (sums, ledger) {
            (Some(sums), _) => sums,
            (None, Some(ledger)) => {
                let lifetimes = bill_months(&base, s.bill_known)?;
                tracing::trace!("features: events' bill months");
                let sums = ledger.aggregate(lifetimes)?;
                tracing::trace!("features: events' bills summed");
                sums
            }
            (None, None) => {
                let lifetimes = bill_months(&base, s.bill_known)?;
                let sums = super::ledger::stream(
                    inputs.bill_rows(s.margin_rate, false),
                    inputs.decode(lifetimes)?,
                )?;
                tracing::trace!("features: events' bills streamed");
                sums
            }
        };
        let mean = |sum: &str, n: &str| mean_of(col(sum), col(n));
        sums.lazy().select([
            col(f::EVENT),
            col("__margin_all").alias(f::VALUE_TO_DATE),
            col("__margin_life").alias(f::LIFETIME_VALUE),
            col("__n_life")
                .cast(DataType::Int32)
                .alias(f::BILLED_MONTHS),
            mean("__rev_life", "__n_life").alias(f::REVENUE_MEAN),
            mean("__margin_life", "__n_life").alias(f::MARGIN_MEAN),
            mean("__rev3", "__n3").alias(f::REVENUE_LAST3),
            mean("__margin3", "__n3").alias(f::MARGIN_LAST3),
            mean("__rev_prev3", "__n_prev3").alias("__revenue_prev3"),
            col("__revenue_max3"),
        ])
    };

    let mut parts = vec![collect(billing, "events' bills")?];
    if !walked {
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
            dated(Table::Referrals)
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

        // Each table's aggregates in a query of its own, one after the
        // other: run as one plan, the three joins of the events' text ids
        // held their hash tables at once.
        parts.push(collect(complaints, "events' complaints")?);
        parts.push(collect(referrals, "events' referrals")?);
        parts.push(collect(referred, "events' referrers")?);
    }
    tracing::trace!("features: events' aggregates");
    // The aggregates beside their events' rows (one per event), or joined
    // to them on the event. At 10M subscribers (`winback score`) the query
    // of the joins took 15 to 21 s and held 6.5 GB at its peak; placed,
    // the rows took 3.4 s and the peak was 4.2 GB (anonymous memory).
    let x = beside_or_joined(base, parts)?;
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
    // A free plan (fee 0) or an unknown fee has no bill ratio: null, not
    // infinity.
    let x = x.with_columns([when(col(f::FEE).gt(lit(0.0)))
        .then(col("__revenue_max3") / col(f::FEE))
        .otherwise(lit(NULL).cast(DataType::Float64))
        .alias(f::BILL_RATIO_MAX3)]);
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
    // exact sum every time. Means divide such a rounded sum by a count
    // ([`exact_mean`]), so they are the same bits every time too.
    let summed = [
        f::REVENUE_MEAN,
        f::MARGIN_MEAN,
        f::REVENUE_LAST3,
        f::MARGIN_LAST3,
        f::REVENUE_TREND,
        f::LIFETIME_VALUE,
        f::VALUE_TO_DATE,
    ];
    Ok(x.select(keep).with_columns(
        summed
            .iter()
            .map(|c| col(*c).round(9, RoundMode::HalfToEven).alias(*c))
            .collect::<Vec<_>>(),
    ))
}

/// The events of `base` with the month indexes their bills are compared
/// with: `__known`, [`known_through`]'s, and `__life_month`, the month of
/// the lifetime's start; the expressions' arithmetic ([`month_of_day`])
/// row by row, where the expressions took a tenth of a second a churn
/// snapshot at 1M subscribers.
fn bill_months(base: &DataFrame, rule: BillKnown) -> Result<DataFrame> {
    let err = |what: &str| Error::polars(format!("features: events' bill months ({what})"));
    let column = |name: &str| base.column(name).map_err(err(name));
    let days = |name: &str| super::walk::day_numbers(base, name);
    let known: Vec<Option<i32>> = days(f::AS_OF)?
        .into_iter()
        .map(|d| {
            d.map(|d| match rule {
                BillKnown::MonthStart => month_of_day(d),
                BillKnown::MonthEnd => month_of_day(d.saturating_add(1)) - 1,
            })
        })
        .collect();
    let life: Vec<Option<i32>> = days(f::LIFETIME_START)?
        .into_iter()
        .map(|d| d.map(month_of_day))
        .collect();
    DataFrame::new(
        base.height(),
        vec![
            column(f::EVENT)?.clone(),
            column(col::SUBSCRIBER_ID)?.clone(),
            Column::new("__known".into(), known),
            Column::new("__life_month".into(), life),
        ],
    )
    .map_err(err("frame"))
}

/// The billing aggregates of each event by joining every bill to the
/// events of its subscriber, the plain polars way: the tests' reference for
/// [`super::ledger::Ledger`] and [`super::ledger::stream`].
fn billing_joined(billing: LazyFrame, lifetimes: LazyFrame, s: &FeatureSettings) -> LazyFrame {
    // The table streams through; the events (the smaller side) are the
    // join's build side, so memory follows the events, not the bills.
    let bills = join(billing, lifetimes, &[col::SUBSCRIBER_ID], JoinType::Inner)
        .with_column(month_index(col(col::MONTH)).alias("__month"))
        .filter(col("__month").lt_eq(col("__known")))
        .with_columns([
            margin(s.margin_rate),
            col("__month").gt_eq(col("__life_month")).alias("__in_life"),
            // Calendar months between the bill and the latest month known at
            // the as-of date: 0 for that month, so "last 3 months" is 0, 1
            // and 2.
            (col("__known") - col("__month")).alias("__ago"),
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
    bills.group_by([col(f::EVENT)]).agg([
        col("__margin").sum().alias(f::VALUE_TO_DATE),
        col("__margin_life").sum().alias(f::LIFETIME_VALUE),
        col("__rev_life")
            .count()
            .cast(DataType::Int32)
            .alias(f::BILLED_MONTHS),
        exact_mean("__rev_life").alias(f::REVENUE_MEAN),
        exact_mean("__margin_life").alias(f::MARGIN_MEAN),
        exact_mean("__rev3").alias(f::REVENUE_LAST3),
        exact_mean("__margin3").alias(f::MARGIN_LAST3),
        exact_mean("__rev_prev3").alias("__revenue_prev3"),
        col("__rev3").max().alias("__revenue_max3"),
    ])
}

/// The mean of a money column over a group (null when the group has no
/// value), computed from its sum rounded to the 1e-9 grid: parallel sums
/// differ between runs in their last bits, and a mean taken from such a sum
/// could fall either side of a rounding half-way point; a sum on the grid
/// divided by a count gives the same bits every time.
fn exact_mean(c: &str) -> Expr {
    mean_of(col(c).sum(), col(c).count())
}

/// `sum` rounded to the 1e-9 grid over `n` (null when `n` is 0): the
/// means of [`exact_mean`] and of the ledger's sums.
fn mean_of(sum: Expr, n: Expr) -> Expr {
    when(n.clone().gt(lit(0)))
        .then(sum.round(9, RoundMode::HalfToEven) / n.cast(DataType::Float64))
        .otherwise(lit(NULL).cast(DataType::Float64))
}

/// The behavioural features, their encodings and sources, in model order.
pub(crate) fn behaviour_columns(s: &FeatureSettings) -> Vec<(String, Encoding, Vec<String>)> {
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

#[cfg(test)]
mod tests {
    //! The billing features from the bills grouped by subscriber
    //! ([`super::super::ledger::Ledger`]) and streamed
    //! ([`super::super::ledger::stream`]) against the join.

    use std::collections::BTreeMap;

    use chrono::{Datelike, NaiveDate};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn date_column(name: &str, days: Vec<Option<i32>>) -> Column {
        Column::new(name.into(), days)
            .cast(&DataType::Date)
            .unwrap()
    }

    /// Random histories: signups from 2019, bills in any row order (or
    /// grouped by subscriber), some
    /// dated mid-month, some months billed twice, some before the signup
    /// month or missing a cost, returns with and without a plan, and
    /// subscribers with no bill at all.
    fn inputs(seed: u64) -> Inputs {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let start = epoch_days(NaiveDate::from_ymd_opt(2019, 1, 1).unwrap());
        let (mut ids, mut signups) = (Vec::new(), Vec::new());
        let (mut b_id, mut b_month, mut b_rev, mut b_cost) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut r_id, mut r_at, mut r_plan, mut r_fee) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for s in 0..300 {
            let id = format!("s{s:04}");
            let signup = start + rng.random_range(0..1500);
            ids.push(id.clone());
            signups.push(Some(signup));
            let months = if s % 17 == 0 {
                0
            } else {
                rng.random_range(1..60)
            };
            let first = NaiveDate::from_ymd_opt(2019, 1, 1).unwrap()
                + chrono::Months::new(rng.random_range(0..50));
            for k in 0..months {
                let d = first + chrono::Months::new(k);
                let mut day = epoch_days(d);
                if rng.random_bool(0.1) {
                    day += rng.random_range(1..27);
                }
                let copies = if rng.random_bool(0.05) { 2 } else { 1 };
                for _ in 0..copies {
                    b_id.push(id.clone());
                    b_month.push(Some(day));
                    b_rev.push(Some(f64::from(rng.random_range(-500..20_000)) / 100.0));
                    b_cost.push(if rng.random_bool(0.2) {
                        None
                    } else {
                        Some(f64::from(rng.random_range(0..9_000)) / 100.0)
                    });
                }
            }
            for _ in 0..rng.random_range(0..3) {
                r_id.push(id.clone());
                r_at.push(Some(signup + rng.random_range(30..2000)));
                let plan = rng.random_bool(0.5);
                r_plan.push(plan.then_some("plus"));
                r_fee.push(plan.then_some(30.0));
            }
        }
        // Bills of an id no other table holds: no event reads them.
        for k in 0..3 {
            b_id.push("zz-billed-only".to_string());
            b_month.push(Some(epoch_days(
                NaiveDate::from_ymd_opt(2020, 1 + k, 1).unwrap(),
            )));
            b_rev.push(Some(10.0));
            b_cost.push(None);
        }
        // Bills without a month or a revenue (the contract allows neither):
        // every path leaves them out.
        let feb = epoch_days(NaiveDate::from_ymd_opt(2020, 2, 1).unwrap());
        for (id, month, revenue) in [("s0001", None, Some(25.0)), ("s0002", Some(feb), None)] {
            b_id.push(id.to_string());
            b_month.push(month);
            b_rev.push(revenue);
            b_cost.push(Some(1.0));
        }
        // Defections, complaints (open, resolved before and after a date,
        // satisfied or not or unknown), referrals (naming a subscriber, an
        // id no table holds, or no one), and two extra subscriber columns.
        let mut rng2 = ChaCha8Rng::seed_from_u64(seed ^ 0xc0ffee);
        let (mut c_id, mut c_at) = (Vec::new(), Vec::new());
        let (mut k_id, mut k_open, mut k_res, mut k_sat) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut f_id, mut f_at, mut f_to) = (Vec::new(), Vec::new(), Vec::new());
        let (mut age, mut segment) = (Vec::new(), Vec::new());
        for (id, signup) in ids.iter().zip(&signups) {
            let signup = signup.unwrap();
            for _ in 0..rng2.random_range(0..3) {
                c_id.push(id.clone());
                c_at.push(Some(signup + rng2.random_range(10..2000)));
            }
            for _ in 0..rng2.random_range(0..4) {
                let opened = signup + rng2.random_range(0..2000);
                k_id.push(id.clone());
                k_open.push(Some(opened));
                k_res.push(if rng2.random_bool(0.2) {
                    None
                } else {
                    Some(opened + rng2.random_range(0..200))
                });
                k_sat.push(match rng2.random_range(0..3) {
                    0 => None,
                    1 => Some(true),
                    _ => Some(false),
                });
            }
            for _ in 0..rng2.random_range(0..3) {
                f_id.push(id.clone());
                f_at.push(Some(signup + rng2.random_range(0..2000)));
                f_to.push(match rng2.random_range(0..10) {
                    0..=2 => None,
                    3 => Some("zz-unknown".to_string()),
                    _ => Some(format!("s{:04}", rng2.random_range(0..300))),
                });
            }
            age.push(rng2.random_bool(0.9).then(|| rng2.random_range(18i64..90)));
            segment.push(match rng2.random_range(0..3) {
                0 => None,
                1 => Some("a"),
                _ => Some("b"),
            });
        }
        // Shuffle the bills' rows (odd seeds), or keep them grouped by
        // subscriber (even seeds, the ledger's fast path).
        let mut order: Vec<usize> = (0..b_id.len()).collect();
        if seed % 2 == 1 {
            for i in (1..order.len()).rev() {
                order.swap(i, rng.random_range(0..=i));
            }
        }
        fn pick<T: Copy>(order: &[usize], v: &[T]) -> Vec<T> {
            order.iter().map(|&i| v[i]).collect()
        }
        let b_months = pick(&order, &b_month);
        let (b_revs, b_costs) = (pick(&order, &b_rev), pick(&order, &b_cost));
        let b_ids: Vec<String> = order.iter().map(|&i| b_id[i].clone()).collect();
        let n = ids.len();
        let subscribers = DataFrame::new(
            n,
            vec![
                Column::new(col::SUBSCRIBER_ID.into(), &ids),
                date_column(col::SIGNUP_DATE, signups),
                Column::new(col::PLAN.into(), vec!["basic"; n]),
                Column::new(col::MONTHLY_FEE.into(), vec![20.0; n]),
                Column::new(col::REGION.into(), vec![Some("north"); n]),
                Column::new(col::CHANNEL.into(), vec![Some("web"); n]),
                Column::new("age".into(), age),
                Column::new("segment".into(), segment),
            ],
        )
        .unwrap();
        let billing = DataFrame::new(
            b_ids.len(),
            vec![
                Column::new(col::SUBSCRIBER_ID.into(), b_ids),
                date_column(col::MONTH, b_months),
                Column::new(col::REVENUE.into(), b_revs),
                Column::new(col::COST_TO_SERVE.into(), b_costs),
            ],
        )
        .unwrap();
        let reactivations = DataFrame::new(
            r_id.len(),
            vec![
                Column::new(col::SUBSCRIBER_ID.into(), r_id),
                date_column(col::RETURNED_AT, r_at),
                Column::new(col::PLAN.into(), r_plan),
                Column::new(col::MONTHLY_FEE.into(), r_fee),
            ],
        )
        .unwrap();
        let churn = DataFrame::new(
            c_id.len(),
            vec![
                Column::new(col::SUBSCRIBER_ID.into(), c_id.clone()),
                date_column(col::CHURNED_AT, c_at),
                Column::new(col::LEAVE_REASON.into(), vec!["price"; c_id.len()]),
            ],
        )
        .unwrap();
        let complaints = DataFrame::new(
            k_id.len(),
            vec![
                Column::new(col::SUBSCRIBER_ID.into(), k_id.clone()),
                date_column(col::OPENED_AT, k_open),
                date_column(col::RESOLVED_AT, k_res),
                Column::new(col::SATISFIED.into(), k_sat),
                Column::new(col::CATEGORY.into(), vec![Some("network"); k_id.len()]),
            ],
        )
        .unwrap();
        let referrals = DataFrame::new(
            f_id.len(),
            vec![
                Column::new(col::REFERRER_ID.into(), f_id),
                date_column(col::REFERRED_AT, f_at),
                Column::new(col::REFERRED_ID.into(), f_to),
            ],
        )
        .unwrap();
        let mut tables = BTreeMap::new();
        tables.insert(Table::ChurnEvents, churn.lazy());
        tables.insert(Table::Complaints, complaints.lazy());
        tables.insert(Table::Referrals, referrals.lazy());
        tables.insert(Table::Subscribers, subscribers.lazy());
        tables.insert(Table::Billing, billing.lazy());
        tables.insert(Table::Reactivations, reactivations.lazy());
        Inputs::new(tables)
    }

    /// Every subscriber (and one unknown id) as of several dates: month
    /// starts and ends, mid-month, before any bill and after all.
    fn events(seed: u64) -> DataFrame {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
        let (mut ids, mut at) = (Vec::new(), Vec::new());
        for s in 0..301 {
            for _ in 0..4 {
                ids.push(format!("s{s:04}"));
                let d = NaiveDate::from_ymd_opt(2018, 6, 1).unwrap()
                    + chrono::Months::new(rng.random_range(0..90));
                let d = match rng.random_range(0..3) {
                    0 => d,
                    1 => d - chrono::Duration::days(1),
                    _ => d + chrono::Duration::days(rng.random_range(1..28)),
                };
                // Now and then an event without a date.
                at.push((ids.len() % 97 != 0).then(|| epoch_days(d)));
            }
        }
        let n = ids.len();
        DataFrame::new(
            n,
            vec![
                Column::new(f::EVENT.into(), (0..n as u32).collect::<Vec<_>>()),
                Column::new(col::SUBSCRIBER_ID.into(), ids),
                date_column(f::AS_OF, at),
            ],
        )
        .unwrap()
    }

    /// The events' features; on coded inputs the events' ids are coded
    /// first, and the features' ids decoded.
    fn features(inputs: &Inputs, events: &DataFrame, s: &FeatureSettings) -> DataFrame {
        let coded = inputs.code_events(events.clone()).unwrap();
        let df = behaviour(inputs, coded.lazy(), s).unwrap();
        let df = df
            .sort([f::EVENT], SortMultipleOptions::default())
            .collect()
            .unwrap();
        let mut df = inputs.decode(df).unwrap();
        // Decoded, the ids are the events' own, but for the id no table
        // holds (null when coded); that one is put back.
        let ids = events.column(col::SUBSCRIBER_ID).unwrap();
        let decoded = df.column(col::SUBSCRIBER_ID).unwrap();
        for i in 0..ids.len() {
            let (a, b) = (ids.get(i).unwrap(), decoded.get(i).unwrap());
            assert!(
                a == b || (b.is_null() && a == AnyValue::String("s0300")),
                "{a} decoded as {b}"
            );
        }
        df.with_column(ids.clone()).unwrap();
        df
    }

    /// `b` has `a`'s columns, in order, with their types and values
    /// (nulls where `a` has them).
    fn assert_same_frame(a: &DataFrame, b: &DataFrame, what: &str) {
        assert_eq!(a.get_column_names(), b.get_column_names(), "{what}");
        assert_eq!(a.height(), b.height(), "{what}");
        for c in a.columns() {
            let other = b.column(c.name()).unwrap();
            assert_eq!(c.dtype(), other.dtype(), "{what}: {}", c.name());
            assert!(
                c.equals_missing(other),
                "{what}: column {} differs:\n{c:?}\n{other:?}",
                c.name()
            );
        }
    }

    /// Churn snapshots from coded inputs (the active subscribers, their
    /// features and churn labels walked) are those from the joins.
    #[test]
    fn walked_snapshots_are_the_joins() {
        use super::super::labels::churn_snapshot;
        let s = FeatureSettings::default();
        let end = NaiveDate::from_ymd_opt(2024, 12, 31).unwrap();
        for seed in [4, 5] {
            let text = inputs(seed);
            let coded = text.clone().with_codes().unwrap();
            let mut churned = 0;
            // Dates on the boundaries: a churn exactly a horizon later, a
            // churn on the day, a signup on the day; and a plain date.
            let day_of = |t: Table, c: &str, row: usize| {
                let df = text.get(t).collect().unwrap();
                let d = df.column(c).unwrap().cast(&DataType::Int32).unwrap();
                from_epoch_days(d.i32().unwrap().get(row).unwrap())
            };
            let churn = day_of(Table::ChurnEvents, col::CHURNED_AT, 3);
            let dates = [
                churn - chrono::Duration::days(i64::from(s.churn_horizon_days)),
                churn,
                day_of(Table::Subscribers, col::SIGNUP_DATE, 5),
                NaiveDate::from_ymd_opt(2023, 12, 31).unwrap(),
            ];
            for (i, date) in dates.into_iter().enumerate() {
                let a = churn_snapshot(&text, date, i as u32, &s, end).unwrap();
                let b = coded
                    .decode(churn_snapshot(&coded, date, i as u32, &s, end).unwrap())
                    .unwrap();
                assert!(a.height() > 20, "{date}: {} active", a.height());
                assert_same_frame(&a, &b, &format!("seed {seed}, {date}"));
                churned += a
                    .column(f::CHURNED)
                    .unwrap()
                    .bool()
                    .unwrap()
                    .sum()
                    .unwrap_or(0);
            }
            assert!(churned > 10, "seed {seed}: {churned} churned");
        }
    }

    /// Second lifetimes with their bills walked in the ledger (coded ids,
    /// every bill dated on its month's first day, as validated data are)
    /// are those from joining billing: the sums, counts and each bill's
    /// month, margin and cost flag, in month order.
    #[test]
    fn second_lifetimes_from_the_ledger_are_the_joins() {
        use super::super::labels::{lapsed, second_lifetimes};
        let s = FeatureSettings::default();
        let end = NaiveDate::from_ymd_opt(2024, 12, 31).unwrap();
        for seed in [1, 2, 3] {
            // The generator's bills, less those dated after their month's
            // first day and the second bill of a month.
            let raw = inputs(seed);
            let mut tables = BTreeMap::new();
            for t in Table::ALL {
                tables.insert(t, raw.get(t));
            }
            let bills = raw
                .get(Table::Billing)
                .filter(col(col::MONTH).dt().day().eq(lit(1)))
                .collect()
                .unwrap()
                .unique_stable(
                    Some(&[col::SUBSCRIBER_ID.into(), col::MONTH.into()]),
                    UniqueKeepStrategy::First,
                    None,
                )
                .unwrap();
            tables.insert(Table::Billing, bills.lazy());
            let text = Inputs::new(tables);
            let coded = text
                .clone()
                .with_codes()
                .unwrap()
                .with_ledger(s.margin_rate)
                .unwrap();
            assert!(coded.ledger(s.margin_rate).unwrap().reads_lifetimes());
            let lives = |inputs: &Inputs| {
                let gone = lapsed(inputs, &s).unwrap().collect().unwrap();
                let x = second_lifetimes(inputs, &gone, &s, end).unwrap();
                inputs.decode(x).unwrap()
            };
            let (a, b) = (lives(&text), lives(&coded));
            assert_same_frame(&a, &b, &format!("seed {seed}"));
            // The test has teeth: lifetimes with several bills, with none,
            // and with costed and uncosted bills.
            let n = a.column(f::SECOND_BILLS).unwrap().i32().unwrap().clone();
            assert!(n.iter().any(|v| v == Some(0)), "seed {seed}");
            assert!(n.iter().any(|v| v.is_some_and(|v| v > 3)), "seed {seed}");
            let lists = a.column(f::BILL_COSTED).unwrap().list().unwrap().clone();
            let (mut yes, mut no) = (0, 0);
            for list in lists.amortized_iter().flatten() {
                for v in list.as_ref().bool().unwrap().iter().flatten() {
                    if v { yes += 1 } else { no += 1 }
                }
            }
            assert!(yes > 0 && no > 0, "seed {seed}: {yes} costed, {no} not");
        }
        // Bills dated after their month's first day: the ledger cannot
        // tell whether a lifetime ending that month covers them.
        let raw = inputs(1)
            .with_codes()
            .unwrap()
            .with_ledger(s.margin_rate)
            .unwrap();
        assert!(!raw.ledger(s.margin_rate).unwrap().reads_lifetimes());
    }

    #[test]
    fn first_days_of_month_indexes_are_the_calendars() {
        use super::super::calendar::month_of_day;
        use super::super::ledger::first_day_of_month;
        let mut day = NaiveDate::from_ymd_opt(1899, 12, 1).unwrap();
        while day < NaiveDate::from_ymd_opt(2101, 3, 1).unwrap() {
            let first = epoch_days(day.with_day(1).unwrap());
            assert_eq!(
                first_day_of_month(month_of_day(epoch_days(day))),
                first,
                "{day}"
            );
            day += chrono::Duration::days(13);
        }
    }

    /// Each block's ledger, read back from the bills spilled by block,
    /// holds the bills of its codes that the ledger of every subscriber
    /// holds, in the same order, and billing's first-day flag (every bill's,
    /// not the block's), whatever the block's width (1 is widened to keep
    /// to the most blocks), with bills grouped by subscriber (seed 2) or
    /// not (seed 1), bills of no subscriber and bills not read. (Spilled
    /// to memory here; to files, and removed, in `tests/features.rs`.)
    #[test]
    fn each_blocks_ledger_is_its_share_of_the_ledger() {
        use super::super::ledger::{Blocks, Ledger, MAX_BLOCKS};
        for seed in [1, 2] {
            let coded = inputs(seed).with_codes().unwrap();
            let ids = coded.ids().unwrap();
            let all = coded.bill_columns(0.45, true);
            let firsts = all.clone().filter(
                col("d")
                    .cast(DataType::Date)
                    .dt()
                    .day()
                    .eq(lit(1))
                    .fill_null(lit(true)),
            );
            for (what, bills, first_days) in [("all", all, false), ("firsts", firsts, true)] {
                let whole = Ledger::build_coded(bills.clone(), 0.45, ids).unwrap();
                assert_eq!(whole.first_days(), first_days, "seed {seed} {what}");
                let mut totals = Vec::new();
                for width in [1, 7, 64, 10_000] {
                    let spill = Box::new(super::super::ledger::MemorySpill::default());
                    let mut blocks = Blocks::spill(bills.clone(), 0.45, ids, width, spill).unwrap();
                    let n = ids.len();
                    assert_eq!(
                        blocks.len(),
                        n.div_ceil(width.max(n.div_ceil(MAX_BLOCKS))),
                        "seed {seed} {what} width {width}"
                    );
                    assert!(blocks.len() <= MAX_BLOCKS);
                    let mut total = 0;
                    for b in 0..blocks.len() {
                        let ledger = blocks.ledger(b).unwrap();
                        total += whole
                            .same_share(&ledger, blocks.codes(b))
                            .unwrap_or_else(|e| {
                                panic!("seed {seed} {what} width {width} block {b}: {e}")
                            });
                    }
                    assert_eq!(blocks.codes(blocks.len() - 1).end as usize, n);
                    totals.push(total);
                }
                assert!(totals[0] > 1_000, "seed {seed} {what}: {totals:?}");
                assert!(totals.iter().all(|t| *t == totals[0]), "{totals:?}");
            }
        }
    }

    #[test]
    fn grouped_and_streamed_bills_give_the_joins_features() {
        for (seed, rule) in [
            (1, BillKnown::MonthEnd),
            (2, BillKnown::MonthStart),
            (3, BillKnown::MonthEnd),
        ] {
            let s = FeatureSettings {
                bill_known: rule,
                extra_numeric: vec!["age".into()],
                extra_categorical: vec!["segment".into()],
                ..FeatureSettings::default()
            };
            let streamed = inputs(seed);
            let joined = streamed.clone().with_joined_bills();
            let grouped = streamed.clone().with_ledger(s.margin_rate).unwrap();
            // Coded ids, with the ledger built after the codes and before.
            let coded = streamed.clone().with_codes().unwrap();
            let coded_grouped = coded.clone().with_ledger(s.margin_rate).unwrap();
            let grouped_coded = grouped.clone().with_codes().unwrap();
            let ev = events(seed);
            let a = features(&joined, &ev, &s);
            assert_eq!(a.height(), ev.height());
            for (path, inputs) in [
                ("ledger", &grouped),
                ("streamed", &streamed),
                ("coded, streamed", &coded),
                ("coded, then ledger", &coded_grouped),
                ("ledger, then coded", &grouped_coded),
            ] {
                let b = features(inputs, &ev, &s);
                assert_same_frame(&a, &b, &format!("seed {seed}, {path}"));
            }
            // The test has teeth: the events read bills in and out of
            // their lifetimes, and some read none.
            let billed = a.column(f::BILLED_MONTHS).unwrap().i32().unwrap().clone();
            let value = a.column(f::VALUE_TO_DATE).unwrap().f64().unwrap().clone();
            let life = a.column(f::LIFETIME_VALUE).unwrap().f64().unwrap().clone();
            assert!(billed.iter().any(|v| v == Some(0)));
            assert!(billed.iter().any(|v| v.is_some_and(|v| v > 12)));
            assert!(value.iter().zip(life.iter()).any(|(v, l)| v != l));
            // And they read the smaller tables: counts above zero, named
            // referrals, plans from returns, complaints still open.
            let positive = |name: &str| {
                let c = a.column(name).unwrap().i32().unwrap().clone();
                c.iter().any(|v| v.is_some_and(|v| v > 0))
            };
            for name in [
                f::EARLIER_DEFECTIONS,
                f::COMPLAINTS,
                f::COMPLAINTS_SATISFIED,
                f::COMPLAINTS_OPEN,
                f::COMPLAINTS_6M,
                f::REFERRALS,
            ] {
                assert!(positive(name), "seed {seed}: no {name} above zero");
            }
            let referred = a.column(f::WAS_REFERRED).unwrap().bool().unwrap().clone();
            assert!(referred.iter().any(|v| v == Some(true)));
            let plan = a.column(f::PLAN).unwrap().str().unwrap().clone();
            assert!(plan.iter().any(|v| v == Some("plus")));
            assert!(a.column(f::DAYS_SINCE_COMPLAINT).unwrap().null_count() < a.height());
            assert!(a.column(f::REVENUE_TREND).unwrap().null_count() < a.height());
        }
    }
}
