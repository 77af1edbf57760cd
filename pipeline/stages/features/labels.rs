//! The events features are computed for and the labels that look forward
//! from them: defections (lapsed subscribers), active subscribers at a
//! date, offers and their responses, second lifetimes after a return, and
//! churn snapshots with their horizon labels.

use chrono::{Datelike, NaiveDate};
use polars::prelude::*;

use crate::error::{Error, Result};
use crate::schema::{Table, col};

use super::behaviour::{behaviour, behaviour_through};
use super::frames::*;
use super::manifest::f;
use super::settings::FeatureSettings;

/// Defections as events: one per churn event, as of its date.
pub(crate) fn defection_events(inputs: &Inputs) -> LazyFrame {
    defections(inputs)
        .sort(
            [col::SUBSCRIBER_ID, f::AS_OF],
            SortMultipleOptions::default(),
        )
        .with_row_index(f::EVENT, None)
}

/// The churn events as [`defection_events`] has them, in the table's
/// order and not numbered.
pub(crate) fn defections(inputs: &Inputs) -> LazyFrame {
    inputs.get(Table::ChurnEvents).select([
        col(col::SUBSCRIBER_ID),
        col(col::CHURNED_AT).alias(f::AS_OF),
        col(col::LEAVE_REASON).fill_null(lit("unknown")),
    ])
}

/// Subscribers active at `date`: signed up on or before it, and either never
/// churned on or before it or returned after their last churn.
pub(crate) fn active_at(inputs: &Inputs, date: NaiveDate) -> LazyFrame {
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

/// The subscribers active at `date` as events (`__event`, `subscriber_id`,
/// `as_of`), in the ids' order: walked where the ids are coded, else
/// [`active_at`].
pub(crate) fn active_events(inputs: &Inputs, date: NaiveDate) -> Result<LazyFrame> {
    Ok(match (inputs.walk(), inputs.block()) {
        (Some(walk), Some(codes)) => walk.active_events(epoch_days(date), codes)?.lazy(),
        _ => active_at(inputs, date)
            .sort([col::SUBSCRIBER_ID], SortMultipleOptions::default())
            .with_row_index(f::EVENT, None),
    })
}

/// Lapsed subscribers: features as of each defection.
pub(crate) fn lapsed(inputs: &Inputs, s: &FeatureSettings) -> Result<LazyFrame> {
    let events = defection_events(inputs);
    let reasons = events
        .clone()
        .select([col(f::EVENT), col(col::LEAVE_REASON)]);
    Ok(join(
        behaviour(inputs, events, s)?,
        reasons,
        &[f::EVENT],
        JoinType::Left,
    )
    .rename([f::AS_OF], [col::CHURNED_AT], true))
}

/// Offers with the features of the defection each answers (the latest
/// churn before the offer) and the response label.
pub(crate) fn offers(
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
pub(crate) fn second_lifetimes(
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
    let x = match from_ledger(inputs, s, x.clone())? {
        Some(x) => x,
        None => with_joined_bills(inputs, s, x),
    };
    let x = x.with_columns([
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
            col(f::BILL_MONTHS),
            col(f::BILL_MARGINS),
            col(f::BILL_COSTED),
        ]);
    collect(x, "second lifetimes")
}

/// The returns `x` (`__ret`, `subscriber_id` coded, `returned_at`,
/// `__life_end`) with their lifetimes' bills walked in the ledger
/// ([`super::ledger::Ledger::lifetime_bills`]), in `__ret` order: the
/// columns of [`with_joined_bills`], without joining every bill. `None`
/// without a ledger that can tell them.
fn from_ledger(inputs: &Inputs, s: &FeatureSettings, x: LazyFrame) -> Result<Option<LazyFrame>> {
    let Some(ledger) = inputs.ledger(s.margin_rate).filter(|l| l.reads_lifetimes()) else {
        return Ok(None);
    };
    let x = collect(
        x.sort(["__ret"], SortMultipleOptions::default()),
        "returns' lifetimes",
    )?;
    // Coded, as the ledger's keys are.
    let codes = super::walk::codes(&x, col::SUBSCRIBER_ID)?;
    let from = super::walk::day_numbers(&x, col::RETURNED_AT)?;
    let to = super::walk::day_numbers(&x, "__life_end")?;
    let Some(bills) = ledger.lifetime_bills(&codes, &from, &to)? else {
        return Ok(None);
    };
    let x = x
        .hstack(&bills)
        .map_err(Error::polars("features: second lifetimes' bills"))?;
    Ok(Some(x.lazy()))
}

/// The returns `x` with their lifetimes' bills joined from billing: the
/// margins' sum and count, and each bill's month, margin and whether it
/// had a cost to serve, in month order (null without a bill).
fn with_joined_bills(inputs: &Inputs, s: &FeatureSettings, x: LazyFrame) -> LazyFrame {
    let margins = join(
        inputs.get(Table::Billing),
        inputs.decode_lazy(
            x.clone().select([
                col("__ret"),
                col(col::SUBSCRIBER_ID),
                col(col::RETURNED_AT)
                    .dt()
                    .month_start()
                    .alias("__first_month"),
                col("__life_end"),
            ]),
        ),
        &[col::SUBSCRIBER_ID],
        JoinType::Inner,
    )
    .filter(
        col(col::MONTH)
            .gt_eq(col("__first_month"))
            .and(col(col::MONTH).lt_eq(col("__life_end"))),
    )
    .with_columns([margin(s.margin_rate)])
    .sort([col::MONTH], SortMultipleOptions::default())
    .group_by([col("__ret")])
    .agg([
        col("__margin").sum().alias(f::SECOND_MARGIN),
        len().cast(DataType::Int32).alias(f::SECOND_BILLS),
        // Each bill: its month, margin and whether it had a cost to serve
        // (where it had, the cost holds any upgrade the offer gave), so
        // that training can add back the past offer's terms bill by bill
        // and cut the bills at its holdout date.
        col(col::MONTH).alias(f::BILL_MONTHS),
        col("__margin").alias(f::BILL_MARGINS),
        col(col::COST_TO_SERVE).is_not_null().alias(f::BILL_COSTED),
    ]);
    join(x, margins, &["__ret"], JoinType::Left)
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
pub(crate) fn churn_snapshot(
    inputs: &Inputs,
    date: NaiveDate,
    index: u32,
    s: &FeatureSettings,
    end: NaiveDate,
) -> Result<DataFrame> {
    let horizon = s.churn_horizon_days as i32;
    let events = collect(active_events(inputs, date)?, "snapshot events")?;
    tracing::trace!(events = events.height(), "features: snapshot events");
    // The features and the labels are frames of the events' rows by now:
    // the labels go beside their rows (no join), and the columns are
    // computed on polars' in-memory engine, which keeps the rows' order.
    let x = collect_in_memory(
        behaviour_through(inputs, events.clone().lazy(), s, Some(date))?,
        "churn snapshot's features",
    )?;
    let churned = match inputs.walk() {
        Some(walk) => walk.churned_within(&events, horizon, f::CHURNED)?,
        None => collect(
            join(
                inputs
                    .get(Table::ChurnEvents)
                    .select([col(col::SUBSCRIBER_ID), col(col::CHURNED_AT)]),
                events
                    .lazy()
                    .select([col(f::EVENT), col(col::SUBSCRIBER_ID), col(f::AS_OF)]),
                &[col::SUBSCRIBER_ID],
                JoinType::Inner,
            )
            .filter(
                days(col::CHURNED_AT)
                    .gt(days(f::AS_OF))
                    .and(days(col::CHURNED_AT).lt_eq(days(f::AS_OF) + lit(horizon))),
            )
            .group_by([col(f::EVENT)])
            .agg([lit(true).first().alias(f::CHURNED)]),
            "churn labels",
        )?,
    };
    let x = beside_or_joined(x, vec![churned])?.with_columns([
        col(f::CHURNED).fill_null(lit(false)),
        lit(epoch_days(date) + horizon <= epoch_days(end)).alias(f::HORIZON_OBSERVED),
        lit(index).alias(f::SNAPSHOT),
        lit(horizon_quarter(date)).alias(f::HORIZON_QUARTER),
    ]);
    let x = by_event(collect_in_memory(x, "churn snapshot")?);
    tracing::trace!("features: snapshot built");
    x
}
