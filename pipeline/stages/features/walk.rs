//! Point-in-time aggregates of the smaller tables by walking each event's
//! own subscriber's rows, without a join.
//!
//! With the subscriber ids coded ([`super::ids::Ids`]), each smaller table's
//! rows are grouped once by code (a counting sort). An event (a code and an
//! as-of date) then reads only its subscriber's rows of each table and keeps
//! those dated on or before its date, as the joins of [`super::behaviour`]
//! do: about ten event sets times six joins each become one walk per event.
//! A unit test there checks the walk against the joins, column by column.

use std::collections::BTreeMap;

use polars::prelude::*;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::schema::{Table, col};

use super::manifest::f;
use super::settings::FeatureSettings;

/// A table's rows grouped by subscriber code: the rows of code `c` are
/// `rows[offsets[c]..offsets[c + 1]]`, in table order.
struct Grouped {
    offsets: Vec<u32>,
    rows: Vec<u32>,
}

impl Grouped {
    /// Groups the rows by `codes` (rows without a code are left out).
    fn new(codes: &[Option<u32>], n: usize) -> Grouped {
        let mut offsets = vec![0u32; n + 1];
        for c in codes.iter().flatten() {
            offsets[*c as usize + 1] += 1;
        }
        for i in 1..offsets.len() {
            offsets[i] += offsets[i - 1];
        }
        let mut next = offsets.clone();
        let mut rows = vec![0u32; offsets[n] as usize];
        for (row, c) in codes.iter().enumerate() {
            if let Some(c) = c {
                rows[next[*c as usize] as usize] = row as u32;
                next[*c as usize] += 1;
            }
        }
        Grouped { offsets, rows }
    }

    fn of(&self, code: u32) -> &[u32] {
        let c = code as usize;
        if c + 1 >= self.offsets.len() {
            return &[];
        }
        &self.rows[self.offsets[c] as usize..self.offsets[c + 1] as usize]
    }
}

/// The coded smaller tables, grouped by subscriber, with the columns the
/// walk reads.
pub(crate) struct Walk {
    subscribers: DataFrame,
    /// Each subscriber row's signup day, read once (a snapshot's active
    /// subscribers read those of their block's codes).
    signup: Vec<Option<i32>>,
    by_subscriber: Grouped,
    returns: DataFrame,
    by_return: Grouped,
    returned_at: Vec<Option<i32>>,
    /// Whether each return has a plan, and a fee.
    plan_known: Vec<bool>,
    fee_known: Vec<bool>,
    churn_by: Grouped,
    churned_at: Vec<Option<i32>>,
    complaints_by: Grouped,
    opened_at: Vec<Option<i32>>,
    resolved_at: Vec<Option<i32>>,
    satisfied: Vec<Option<bool>>,
    referrals_by: Grouped,
    referred_by: Grouped,
    referred_at: Vec<Option<i32>>,
}

fn err(what: &str) -> impl FnOnce(PolarsError) -> Error {
    Error::polars(format!("features: {what}"))
}

/// A coded id column's codes, nulls as `None`.
pub(crate) fn codes(df: &DataFrame, name: &str) -> Result<Vec<Option<u32>>> {
    Ok(df
        .column(name)
        .map_err(err(name))?
        .u32()
        .map_err(err(name))?
        .iter()
        .collect())
}

/// A date (or integer) column's day numbers, nulls as `None`.
pub(crate) fn day_numbers(df: &DataFrame, name: &str) -> Result<Vec<Option<i32>>> {
    Ok(df
        .column(name)
        .map_err(err(name))?
        .cast(&DataType::Int32)
        .map_err(err(name))?
        .i32()
        .map_err(err(name))?
        .iter()
        .collect())
}

fn known(df: &DataFrame, name: &str) -> Result<Vec<bool>> {
    Ok(df
        .column(name)
        .map_err(err(name))?
        .is_not_null()
        .iter()
        .map(|v| v.unwrap_or(false))
        .collect())
}

/// One event's aggregates of the smaller tables.
#[derive(Default, Clone, Copy)]
struct Row {
    subscriber: Option<u32>,
    last_return: Option<i32>,
    plan_return: Option<u32>,
    fee_return: Option<u32>,
    defections: i32,
    complaints: i32,
    satisfied: i32,
    open: i32,
    recent: i32,
    since_complaint: Option<i32>,
    referrals: i32,
    referred: bool,
}

impl Walk {
    /// From the coded tables (each present, possibly empty), `n` codes.
    pub(crate) fn new(tables: &BTreeMap<Table, DataFrame>, n: usize) -> Result<Walk> {
        let get = |t: Table| -> Result<&DataFrame> {
            tables.get(&t).ok_or_else(|| Error::Data {
                table: t.name().into(),
                message: "not read".into(),
            })
        };
        let subscribers = get(Table::Subscribers)?.clone();
        let returns = get(Table::Reactivations)?.clone();
        let churn = get(Table::ChurnEvents)?;
        let complaints = get(Table::Complaints)?;
        let referrals = get(Table::Referrals)?;
        let walk = Walk {
            by_subscriber: Grouped::new(&codes(&subscribers, col::SUBSCRIBER_ID)?, n),
            by_return: Grouped::new(&codes(&returns, col::SUBSCRIBER_ID)?, n),
            returned_at: day_numbers(&returns, col::RETURNED_AT)?,
            plan_known: known(&returns, col::PLAN)?,
            fee_known: known(&returns, col::MONTHLY_FEE)?,
            churn_by: Grouped::new(&codes(churn, col::SUBSCRIBER_ID)?, n),
            churned_at: day_numbers(churn, col::CHURNED_AT)?,
            complaints_by: Grouped::new(&codes(complaints, col::SUBSCRIBER_ID)?, n),
            opened_at: day_numbers(complaints, col::OPENED_AT)?,
            resolved_at: day_numbers(complaints, col::RESOLVED_AT)?,
            satisfied: complaints
                .column(col::SATISFIED)
                .map_err(err("satisfied"))?
                .bool()
                .map_err(err("satisfied"))?
                .iter()
                .collect(),
            referrals_by: Grouped::new(&codes(referrals, col::REFERRER_ID)?, n),
            referred_by: Grouped::new(&codes(referrals, col::REFERRED_ID)?, n),
            referred_at: day_numbers(referrals, col::REFERRED_AT)?,
            signup: day_numbers(&subscribers, col::SIGNUP_DATE)?,
            subscribers,
            returns,
        };
        Ok(walk)
    }

    /// One event's aggregates: subscriber `code`'s rows dated on or before
    /// day `at`.
    fn row(&self, code: u32, at: i32) -> Row {
        let mut r = Row {
            subscriber: self.by_subscriber.of(code).first().copied(),
            ..Row::default()
        };
        // The latest return on or before the date, and the plan and fee of
        // the latest return that has one (of returns on one day, the last
        // in table order).
        let (mut plan_at, mut fee_at) = (None::<i32>, None::<i32>);
        for &i in self.by_return.of(code) {
            let Some(d) = self.returned_at[i as usize].filter(|d| *d <= at) else {
                continue;
            };
            r.last_return = Some(r.last_return.map_or(d, |x| x.max(d)));
            if self.plan_known[i as usize] && plan_at.is_none_or(|p| d >= p) {
                plan_at = Some(d);
                r.plan_return = Some(i);
            }
            if self.fee_known[i as usize] && fee_at.is_none_or(|p| d >= p) {
                fee_at = Some(d);
                r.fee_return = Some(i);
            }
        }
        for &i in self.churn_by.of(code) {
            if self.churned_at[i as usize].is_some_and(|d| d < at) {
                r.defections += 1;
            }
        }
        for &i in self.complaints_by.of(code) {
            let i = i as usize;
            let Some(opened) = self.opened_at[i].filter(|d| *d <= at) else {
                continue;
            };
            r.complaints += 1;
            let resolved = self.resolved_at[i].filter(|d| *d <= at);
            if self.satisfied[i] == Some(true) && resolved.is_some() {
                r.satisfied += 1;
            }
            if resolved.is_none() {
                r.open += 1;
            }
            let age = at - opened;
            if age < 183 {
                r.recent += 1;
            }
            r.since_complaint = Some(r.since_complaint.map_or(age, |x| x.min(age)));
        }
        for &i in self.referrals_by.of(code) {
            if self.referred_at[i as usize].is_some_and(|d| d <= at) {
                r.referrals += 1;
            }
        }
        r.referred = self
            .referred_by
            .of(code)
            .iter()
            .any(|&i| self.referred_at[i as usize].is_some_and(|d| d <= at));
        r
    }

    /// The aggregates of each event of `events` (`__event`, `subscriber_id`
    /// coded, `as_of`), in its order, named as [`super::behaviour`]'s joins
    /// name them.
    pub(crate) fn aggregate(&self, events: &DataFrame, s: &FeatureSettings) -> Result<DataFrame> {
        let code = codes(events, col::SUBSCRIBER_ID)?;
        let at = day_numbers(events, f::AS_OF)?;
        let rows: Vec<Row> = (0..code.len())
            .into_par_iter()
            .with_min_len(4096)
            .map(|i| match (code[i], at[i]) {
                (Some(c), Some(a)) => self.row(c, a),
                (Some(c), None) => Row {
                    subscriber: self.by_subscriber.of(c).first().copied(),
                    ..Row::default()
                },
                _ => Row::default(),
            })
            .collect();
        let idx = |v: fn(&Row) -> Option<u32>| -> IdxCa { rows.iter().map(v).collect::<IdxCa>() };
        let int = |v: fn(&Row) -> i32, name: &str| {
            Column::new(name.into(), rows.iter().map(v).collect::<Vec<i32>>())
        };
        // The subscriber's own columns, as the join took them (chosen
        // first, so that only they are gathered).
        let subs_cols = s.subscriber_columns();
        let subs = self
            .subscribers
            .clone()
            .lazy()
            .select(subs_cols)
            .collect()
            .map_err(err("subscribers"))?
            .take(&idx(|r| r.subscriber))
            .map_err(err("subscribers"))?;
        let take = |name: &str, rows: &IdxCa, alias: &str| -> Result<Column> {
            Ok(self
                .returns
                .column(name)
                .map_err(err(name))?
                .take(rows)
                .map_err(err(name))?
                .with_name(alias.into()))
        };
        let dates = |v: Vec<Option<i32>>, name: &str| -> Result<Column> {
            Column::new(name.into(), v)
                .cast(&DataType::Date)
                .map_err(err(name))
        };
        let mut columns: Vec<Column> = vec![
            events.column(f::EVENT).map_err(err("events"))?.clone(),
            events
                .column(col::SUBSCRIBER_ID)
                .map_err(err("events"))?
                .clone(),
            events.column(f::AS_OF).map_err(err("events"))?.clone(),
        ];
        columns.extend(subs.columns().iter().cloned());
        columns.extend([
            dates(
                rows.iter().map(|r| r.last_return).collect(),
                "__last_return",
            )?,
            take(col::PLAN, &idx(|r| r.plan_return), "__return_plan")?,
            take(col::MONTHLY_FEE, &idx(|r| r.fee_return), "__return_fee")?,
            int(|r| r.defections, f::EARLIER_DEFECTIONS),
            int(|r| r.complaints, f::COMPLAINTS),
            int(|r| r.satisfied, f::COMPLAINTS_SATISFIED),
            int(|r| r.open, f::COMPLAINTS_OPEN),
            int(|r| r.recent, f::COMPLAINTS_6M),
            Column::new(
                f::DAYS_SINCE_COMPLAINT.into(),
                rows.iter().map(|r| r.since_complaint).collect::<Vec<_>>(),
            ),
            int(|r| r.referrals, f::REFERRALS),
            Column::new(
                "__named_referred".into(),
                rows.iter()
                    .map(|r| r.referred.then_some(true))
                    .collect::<Vec<_>>(),
            ),
        ]);
        DataFrame::new(rows.len(), columns).map_err(err("events' aggregates"))
    }
}

impl Walk {
    /// The subscribers of `codes` active on day `at`, as events in code
    /// order (which is the ids' order): `__event` (0, 1, ...),
    /// `subscriber_id` (coded) and `as_of`. What [`super::labels::active_at`] selects: signed up on
    /// or before the day, and either never churned on or before it or
    /// returned after their last churn by then.
    pub(crate) fn active_events(&self, at: i32, codes: std::ops::Range<u32>) -> Result<DataFrame> {
        let n = self.by_subscriber.offsets.len().saturating_sub(1) as u32;
        let signup = &self.signup;
        let active: Vec<u32> = (codes.start.min(n)..codes.end.min(n))
            .into_par_iter()
            .with_min_len(1 << 14)
            .filter(|&c| {
                let Some(&row) = self.by_subscriber.of(c).first() else {
                    return false;
                };
                if signup[row as usize].is_none_or(|d| d > at) {
                    return false;
                }
                let latest = |rows: &[u32], days: &[Option<i32>]| {
                    rows.iter()
                        .filter_map(|&i| days[i as usize].filter(|d| *d <= at))
                        .max()
                };
                match latest(self.churn_by.of(c), &self.churned_at) {
                    None => true,
                    Some(churn) => latest(self.by_return.of(c), &self.returned_at)
                        .is_some_and(|ret| ret > churn),
                }
            })
            .collect();
        let rows = active.len();
        DataFrame::new(
            rows,
            vec![
                Column::new(f::EVENT.into(), (0..rows as IdxSize).collect::<Vec<_>>()),
                Column::new(col::SUBSCRIBER_ID.into(), active),
                Column::new(f::AS_OF.into(), vec![at; rows])
                    .cast(&DataType::Date)
                    .map_err(err("active subscribers"))?,
            ],
        )
        .map_err(err("active subscribers"))
    }

    /// `__event` and, for events whose subscriber churned within
    /// `(as_of, as_of + horizon]` days, `true` (null otherwise) under
    /// `name`: the churn label of [`super::labels::churn_snapshot`].
    pub(crate) fn churned_within(
        &self,
        events: &DataFrame,
        horizon: i32,
        name: &str,
    ) -> Result<DataFrame> {
        let code = codes(events, col::SUBSCRIBER_ID)?;
        let at = day_numbers(events, f::AS_OF)?;
        let churned: Vec<Option<bool>> = (0..code.len())
            .into_par_iter()
            .with_min_len(4096)
            .map(|i| {
                let (Some(c), Some(a)) = (code[i], at[i]) else {
                    return None;
                };
                let within = |r: &u32| {
                    self.churned_at[*r as usize].is_some_and(|d| d > a && d <= a + horizon)
                };
                self.churn_by.of(c).iter().any(within).then_some(true)
            })
            .collect();
        DataFrame::new(
            code.len(),
            vec![
                events.column(f::EVENT).map_err(err("events"))?.clone(),
                Column::new(name.into(), churned),
            ],
        )
        .map_err(err("churn labels"))
    }
}
