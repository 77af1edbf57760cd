//! The billing rules that need the accepted subscribers, in one streaming
//! pass over the bills: `unknown_subscriber` (counted), `duplicate_month`
//! (found) and the note on bills before the signup month (counted).
//!
//! Joining every bill to the subscribers, as the smaller tables are,
//! cost memory growing with the bills on polars' streaming engine (a left
//! join of 314M bills to 10M subscribers passed 10 GB within 25 s, where an
//! `is_in` on the same ids stayed at 2.1 GB), and grouping the bills by
//! (subscriber, month) holds a key per bill. Here each batch of bills goes
//! through an index of the subscriber ids to a row number ([`StrIndex`]), and each
//! (row number, calendar month) to one bit: a bit found already set is a
//! duplicate. The bits of a month take a bit per subscriber; the months
//! that do not fit in `validate.duplicate_check_bytes` wait for another
//! pass, so memory is bounded by the setting (and by one month's bits)
//! whatever the size of billing.

use std::sync::{Arc, Mutex};

use polars::prelude::*;

use crate::error::{Error, Result};
use crate::schema::{Table, col};
use crate::stages::collect;
use crate::stages::features::calendar::{MEMO_SLOTS, MonthMemo, memo_slot};
use crate::stages::features::frames::month_index;
use crate::stages::features::ids::{NO_CODE, StrIndex, codes_in_runs, is_valid};

/// The month index column (`year * 12 + month`) the duplicates are keyed on.
pub(super) const MONTH_INDEX: &str = "__month_index";

/// The bills' month as a day number, as the pass reads it.
const MONTH_DAY: &str = "__month_day";

/// One batch of bills as the first pass reads them, for a [`BillTap`].
pub struct BillBatch<'a> {
    /// Each bill's subscriber: its row among the accepted subscribers
    /// (the index's code; [`NO_CODE`] for a null or unknown id).
    pub subscribers: &'a [u32],
    /// The month as a day number (one chunk).
    pub days: &'a Int32Chunked,
    /// Revenue, as a float.
    pub revenue: &'a Float64Chunked,
    /// Cost to serve, as a float (null where unknown).
    pub cost: &'a Float64Chunked,
}

/// Sees every bill of the first pass, batch by batch, so that a later
/// stage that needs one pass over the bills (scoring's sums) has it from
/// this read instead of reading billing again.
pub type BillTap = Box<dyn FnMut(&BillBatch<'_>) + Send>;

/// What the pass found.
pub(super) struct MonthCheck {
    /// The duplicated (`subscriber_id`, [`MONTH_INDEX`]) pairs, once each.
    pub duplicates: DataFrame,
    /// Bills whose subscriber is not among the accepted ones.
    pub unknown: u64,
    /// Bills of a known subscriber for a month before its signup month.
    pub before_signup: u64,
    /// Passes over billing (more than one when the months' bits did not
    /// fit in the budget at once).
    pub passes: usize,
    /// Billing's row rules counted in the first pass; none when the bills
    /// lack the `revenue` or `cost_to_serve` column.
    pub rows: Option<RowCounts>,
    /// Whether the tap saw every bill (it was given, and the bills have
    /// both amounts).
    pub tapped: bool,
}

/// Counts of billing's rules on each row alone, and of its notes, taken in
/// the first pass: when every count is zero, validation needs no pass of
/// its own to count them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct RowCounts {
    /// Rows read.
    pub rows: u64,
    pub null_id: u64,
    pub null_month: u64,
    pub null_revenue: u64,
    pub non_finite_revenue: u64,
    pub non_finite_cost: u64,
    /// Months outside the plausible range.
    pub out_of_range: u64,
    /// Months not dated on their first day.
    pub not_first_day: u64,
    /// Negative revenues (a note).
    pub refunds: u64,
    /// Bills without a cost to serve (a note).
    pub no_cost: u64,
}

/// The bills' revenue and cost to serve, as the first pass reads them.
const REVENUE: &str = "__revenue";
const COST: &str = "__cost";

/// The state the batches update.
struct State {
    /// The months of this pass and their bits: bit `i` of a month's words
    /// is set once subscriber `i` has a bill for it.
    bits: Vec<(i32, Vec<u64>)>,
    /// Each month's place in `bits`.
    slot: PlHashMap<i32, usize>,
    /// Months whose bits were filled in an earlier pass.
    done: PlHashSet<i32>,
    /// A month was skipped for want of room: another pass is needed.
    deferred: bool,
    duplicates: Vec<(u32, i32)>,
    /// Unknown subscribers are counted in the first pass only.
    first_pass: bool,
    unknown: u64,
    before_signup: u64,
    rows: RowCounts,
    /// The plausible months' range, in day numbers.
    range: (i32, i32),
    /// Sees the first pass's batches.
    tap: Option<BillTap>,
}

impl State {
    /// Where month `m`'s bits are in this pass: made when there is room
    /// (always for the pass's first month); none when they were filled in
    /// an earlier pass, or wait for a later one.
    fn place(&mut self, m: i32, month_bytes: usize, budget: usize) -> Option<usize> {
        if let Some(&place) = self.slot.get(&m) {
            return Some(place);
        }
        if self.done.contains(&m) {
            return None;
        }
        if self.bits.is_empty() || (self.bits.len() + 1) * month_bytes <= budget {
            self.bits.push((m, vec![0u64; month_bytes / 8]));
            self.slot.insert(m, self.bits.len() - 1);
            return Some(self.bits.len() - 1);
        }
        self.deferred = true;
        None
    }
}

/// Checks the bills (`bills` with `subscriber_id` and `month`, and
/// `revenue` and `cost_to_serve` for [`MonthCheck::rows`]) against the
/// accepted subscribers `keys` (`subscriber_id`, unique, and `signup`, the
/// name of their signup date column; `index`, their ids' index), holding at most `budget` bytes of
/// bits (and always one month's); `range`: the first and last plausible
/// days; `files`: the bills' files, named when they cannot be read.
#[allow(clippy::too_many_arguments)]
pub(super) fn check(
    bills: LazyFrame,
    keys: &DataFrame,
    index: &Arc<StrIndex>,
    signup: &str,
    budget: usize,
    range: (i32, i32),
    files: &[String],
    tap: Option<BillTap>,
) -> Result<MonthCheck> {
    let err = || Error::polars("validate billing: subscribers' months");
    let ids = keys
        .column(col::SUBSCRIBER_ID)
        .and_then(|c| c.str().cloned())
        .map_err(err())?;
    let signup_month = keys
        .clone()
        .lazy()
        .select([month_index(col(signup)).alias(MONTH_INDEX)])
        .collect()
        .map_err(err())?;
    // An unknown signup as `i32::MIN`, before every month: 4 bytes a
    // subscriber, held through the pass (at 10M subscribers the pass is
    // where scoring's memory peaks).
    let signup_month: Vec<i32> = signup_month
        .column(MONTH_INDEX)
        .and_then(|c| c.i32().cloned())
        .map_err(err())?
        .iter()
        .map(|m| m.unwrap_or(i32::MIN))
        .collect();
    let subscribers = ids.len();
    let month_bytes = subscribers.div_ceil(64) * 8;
    let signup_month = Arc::new(signup_month);
    let state = Arc::new(Mutex::new(State {
        bits: Vec::new(),
        slot: PlHashMap::default(),
        done: PlHashSet::default(),
        deferred: false,
        duplicates: Vec::new(),
        first_pass: true,
        unknown: 0,
        before_signup: 0,
        rows: RowCounts::default(),
        range,
        tap: None,
    }));
    // The month's day number: its index is computed as the rows are read
    // ([`MonthMemo`]), cheaper than as an expression. The first pass also
    // reads the amounts, for the row rules' counts.
    let mut bills = bills;
    let schema = bills.collect_schema().map_err(err())?;
    let amounts = schema.contains(col::REVENUE) && schema.contains(col::COST_TO_SERVE);
    let tapped = amounts && tap.is_some();
    if amounts {
        state.lock().unwrap_or_else(|e| e.into_inner()).tap = tap;
    }
    let keyed = [
        col(col::SUBSCRIBER_ID),
        col(col::MONTH).cast(DataType::Int32).alias(MONTH_DAY),
    ];
    let mut first = keyed.to_vec();
    if amounts {
        first.push(col(col::REVENUE).cast(DataType::Float64).alias(REVENUE));
        first.push(col(col::COST_TO_SERVE).cast(DataType::Float64).alias(COST));
    }
    let mut passes = 0;
    loop {
        passes += 1;
        let plan = if passes == 1 {
            bills.clone().select(first.clone())
        } else {
            bills
                .clone()
                .filter(col(col::SUBSCRIBER_ID).is_not_null())
                .select(keyed.clone())
        };
        let (index, signup_month, state_in) = (index.clone(), signup_month.clone(), state.clone());
        // Entered by each batch: its close reports the batches' own
        // (serial) work as `time.busy` (`-vv`).
        let batches = tracing::trace_span!("bills' batches", pass = passes);
        let sink = plan.sink_batches(
            PlanCallback::new(move |batch: DataFrame| {
                let _batch = batches.enter();
                let mut st = state_in.lock().unwrap_or_else(|e| e.into_inner());
                batch_into(&batch, &index, &signup_month, month_bytes, budget, &mut st)?;
                Ok(false)
            }),
            true,
            None,
        );
        let sink = sink.map_err(err())?;
        read_rows(sink, files)?;
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        st.first_pass = false;
        st.tap = None;
        if !st.deferred {
            break;
        }
        let filled: Vec<i32> = st.bits.iter().map(|b| b.0).collect();
        st.done.extend(filled);
        st.bits.clear();
        st.slot.clear();
        st.deferred = false;
        tracing::debug!(
            pass = passes,
            months = st.done.len(),
            "duplicate months: another pass"
        );
    }
    let st = state.lock().unwrap_or_else(|e| e.into_inner());
    let mut pairs = st.duplicates.clone();
    pairs.sort_unstable();
    pairs.dedup();
    let rows: Vec<IdxSize> = pairs.iter().map(|p| p.0 as IdxSize).collect();
    let dup_ids = ids.take(&IdxCa::from_vec("".into(), rows)).map_err(err())?;
    let months: Vec<i32> = pairs.iter().map(|p| p.1).collect();
    let duplicates = DataFrame::new(
        pairs.len(),
        vec![
            dup_ids
                .into_series()
                .with_name(col::SUBSCRIBER_ID.into())
                .into(),
            Column::new(MONTH_INDEX.into(), months),
        ],
    )
    .map_err(err())?;
    Ok(MonthCheck {
        duplicates,
        unknown: st.unknown,
        before_signup: st.before_signup,
        passes,
        rows: amounts.then_some(st.rows),
        tapped,
    })
}

/// [`collect`] of a plan over billing's rows, its read failures the
/// input's fault, naming its files.
fn read_rows(lf: LazyFrame, files: &[String]) -> Result<DataFrame> {
    collect(lf, "validate billing: subscribers' months").map_err(|e| match e {
        Error::Polars { source, .. } => Error::Data {
            table: Table::Billing.name().into(),
            message: format!(
                "cannot read its rows from {}: {}",
                files.join(", "),
                source.to_string().lines().next().unwrap_or_default()
            ),
        },
        other => other,
    })
}

/// The row rules' counts of one batch (the first pass's), its days' months
/// through the batch's memo.
fn count_rows(batch: &DataFrame, st: &mut State, months: &mut MonthMemo) -> PolarsResult<()> {
    let rc = &mut st.rows;
    rc.rows += batch.height() as u64;
    rc.null_id += batch.column(col::SUBSCRIBER_ID)?.null_count() as u64;
    let days = batch.column(MONTH_DAY)?.i32()?;
    rc.null_month += days.null_count() as u64;
    let (lo, hi) = st.range;
    for_values(days, |d| {
        rc.out_of_range += u64::from(d < lo || d > hi);
        rc.not_first_day += u64::from(!months.is_first(d));
    });
    let (Ok(revenue), Ok(cost)) = (batch.column(REVENUE), batch.column(COST)) else {
        return Ok(());
    };
    let (revenue, cost) = (revenue.f64()?, cost.f64()?);
    rc.null_revenue += revenue.null_count() as u64;
    rc.no_cost += cost.null_count() as u64;
    for_values(revenue, |v| {
        rc.non_finite_revenue += u64::from(!v.is_finite());
        rc.refunds += u64::from(v < 0.0);
    });
    for_values(cost, |v| rc.non_finite_cost += u64::from(!v.is_finite()));
    Ok(())
}

/// `f` of each non-null value of `ca`, straight from each chunk's values
/// where it has no nulls.
fn for_values<T: PolarsNumericType>(ca: &ChunkedArray<T>, mut f: impl FnMut(T::Native)) {
    for chunk in ca.downcast_iter() {
        match chunk.validity().filter(|v| v.unset_bits() > 0) {
            None => chunk.values().iter().for_each(|v| f(*v)),
            Some(valid) => chunk
                .values()
                .iter()
                .zip(valid.iter())
                .filter(|(_, ok)| *ok)
                .for_each(|(v, _)| f(*v)),
        }
    }
}

/// One batch: row numbers looked up in parallel, then each known bill's
/// bit set in turn.
fn batch_into(
    batch: &DataFrame,
    index: &StrIndex,
    signup_month: &[i32],
    month_bytes: usize,
    budget: usize,
    st: &mut State,
) -> PolarsResult<()> {
    let mut months = MonthMemo::new();
    if st.first_pass {
        count_rows(batch, st, &mut months)?;
    }
    let ids = batch.column(col::SUBSCRIBER_ID)?.str()?;
    let rows = codes_in_runs(ids, |id, before| index.get_after(id, before));
    let days = batch.column(MONTH_DAY)?.i32()?.rechunk();
    if let Some(tap) = st.tap.as_mut() {
        tap(&BillBatch {
            subscribers: &rows,
            days: &days,
            revenue: batch.column(REVENUE)?.f64()?,
            cost: batch.column(COST)?.f64()?,
        });
    }
    let days = days.downcast_as_array();
    let day_valid = is_valid(days);
    // Each month's place in `st.bits` (none: not filled in this pass), as
    // decided for its first bill; the decision holds for the whole pass, so
    // a direct-mapped memo keeps it for the batch.
    let mut places: Vec<Option<(i32, Option<usize>)>> = vec![None; MEMO_SLOTS];
    for (i, &row) in rows.iter().enumerate() {
        if row == NO_CODE {
            if st.first_pass && ids.get(i).is_some() {
                st.unknown += 1;
            }
            continue;
        }
        if !day_valid(i) {
            continue;
        }
        let m = months.month(days.value(i));
        let memo = &mut places[memo_slot(m)];
        let place = match *memo {
            Some((seen, place)) if seen == m => place,
            _ => {
                let place = st.place(m, month_bytes, budget);
                *memo = Some((m, place));
                place
            }
        };
        let Some(place) = place else {
            continue;
        };
        if m < signup_month[row as usize] {
            st.before_signup += 1;
        }
        let words = &mut st.bits[place].1;
        let (w, b) = (row as usize / 64, row % 64);
        if words[w] >> b & 1 == 1 {
            st.duplicates.push((row, m));
        } else {
            words[w] |= 1 << b;
        }
    }
    Ok(())
}

/// The [`MONTH_INDEX`] column of a month's date, to join the duplicates on.
pub(super) fn month_key(month: Expr) -> Expr {
    month_index(month).alias(MONTH_INDEX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, NaiveDate};

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn dates(v: &[Option<NaiveDate>]) -> Column {
        let days: Vec<Option<i32>> = v
            .iter()
            .map(|d| d.map(|d| (d - date(1970, 1, 1)).num_days() as i32))
            .collect();
        Column::new("d".into(), days).cast(&DataType::Date).unwrap()
    }

    const ANY_DAY: (i32, i32) = (i32::MIN, i32::MAX);

    fn index_of(keys: &DataFrame) -> Arc<StrIndex> {
        Arc::new(StrIndex::build(keys.column(col::SUBSCRIBER_ID).unwrap().str().unwrap()).0)
    }

    /// [`check`] of `bills` with every day plausible.
    fn any_day(bills: &DataFrame, keys: &DataFrame, budget: usize) -> MonthCheck {
        check(
            bills.clone().lazy(),
            keys,
            &index_of(keys),
            col::SIGNUP_DATE,
            budget,
            ANY_DAY,
            &[],
            None,
        )
        .unwrap()
    }

    /// The first pass counts each row rule as its expression over the rows
    /// does (nulls, non-finite amounts, months out of range or not on their
    /// first day, refunds, missing costs), over batches of any size; bills
    /// without the amounts have no counts.
    #[test]
    fn the_row_counts_are_the_rules_counts() {
        let keys = DataFrame::new(
            1,
            vec![
                Column::new(col::SUBSCRIBER_ID.into(), ["a"]),
                dates(&[Some(date(2000, 1, 1))]).with_name(col::SIGNUP_DATE.into()),
            ],
        )
        .unwrap();
        let n = 5_000;
        let months: Vec<Option<NaiveDate>> = (0..n)
            .map(|i| match i % 11 {
                0 => None,
                1 => Some(date(2020, 1 + (i % 12) as u32, 2 + (i % 27) as u32)),
                2 => Some(date(1960, 3, 1)),
                3 => Some(date(2031, 12, 31)),
                4 => Some(date(2024, 2, 29)),
                _ => Some(date(2010 + (i % 13) as i32, 1 + (i % 12) as u32, 1)),
            })
            .collect();
        let revenue: Vec<Option<f64>> = (0..n)
            .map(|i| match i % 7 {
                0 => None,
                1 => Some(f64::NAN),
                2 => Some(-3.5),
                3 => Some(f64::NEG_INFINITY),
                _ => Some(i as f64),
            })
            .collect();
        let cost: Vec<Option<f64>> = (0..n)
            .map(|i| match i % 5 {
                0 => None,
                1 => Some(f64::INFINITY),
                _ => Some(1.0),
            })
            .collect();
        let ids: Vec<Option<&str>> = (0..n)
            .map(|i| match i % 13 {
                0 => None,
                1 => Some("ghost"),
                _ => Some("a"),
            })
            .collect();
        let bills = DataFrame::new(
            n,
            vec![
                Column::new(col::SUBSCRIBER_ID.into(), ids),
                dates(&months).with_name(col::MONTH.into()),
                Column::new(col::REVENUE.into(), revenue),
                Column::new(col::COST_TO_SERVE.into(), cost),
            ],
        )
        .unwrap();
        let (lo, hi) = (date(1990, 1, 1), date(2030, 12, 31));
        let day = |d: NaiveDate| (d - date(1970, 1, 1)).num_days() as i32;
        let found = check(
            bills.clone().lazy(),
            &keys,
            &index_of(&keys),
            col::SIGNUP_DATE,
            1 << 20,
            (day(lo), day(hi)),
            &[],
            None,
        )
        .unwrap();
        let sum = |e: Expr| -> u64 {
            let df = bills
                .clone()
                .lazy()
                .select([e.fill_null(lit(false)).sum().alias("n")])
                .collect()
                .unwrap();
            df.column("n")
                .unwrap()
                .get(0)
                .unwrap()
                .extract::<u64>()
                .unwrap()
        };
        let (m, r, c) = (col(col::MONTH), col(col::REVENUE), col(col::COST_TO_SERVE));
        let want = RowCounts {
            rows: n as u64,
            null_id: sum(col(col::SUBSCRIBER_ID).is_null()),
            null_month: sum(m.clone().is_null()),
            null_revenue: sum(r.clone().is_null()),
            non_finite_revenue: sum(r.clone().is_not_null().and(r.clone().is_finite().not())),
            non_finite_cost: sum(c.clone().is_not_null().and(c.clone().is_finite().not())),
            out_of_range: sum(m
                .clone()
                .cast(DataType::Int32)
                .lt(lit(day(lo)))
                .or(m.clone().cast(DataType::Int32).gt(lit(day(hi))))),
            not_first_day: sum(m.clone().dt().day().neq(lit(1))),
            refunds: sum(r.clone().lt(lit(0.0))),
            no_cost: sum(c.clone().is_null()),
        };
        assert!(want.not_first_day > 0 && want.out_of_range > 0 && want.refunds > 0);
        assert_eq!(found.rows, Some(want));
        // The unknown ids are still counted once.
        assert_eq!(found.unknown, sum(col(col::SUBSCRIBER_ID).eq(lit("ghost"))));
        let plain = bills.select([col::SUBSCRIBER_ID, col::MONTH]).unwrap();
        let found = any_day(&plain, &keys, 1 << 20);
        assert_eq!(found.rows, None);
    }

    #[test]
    fn one_pass_and_many_find_the_same_months() {
        let keys = DataFrame::new(
            3,
            vec![
                Column::new(col::SUBSCRIBER_ID.into(), ["a", "b", "c"]),
                dates(&[Some(date(2024, 3, 15)), Some(date(2023, 1, 1)), None])
                    .with_name(col::SIGNUP_DATE.into()),
            ],
        )
        .unwrap();
        let rows: [(Option<&str>, Option<NaiveDate>); 12] = [
            (Some("a"), Some(date(2024, 2, 1))), // before signup
            (Some("a"), Some(date(2024, 3, 1))),
            (Some("a"), Some(date(2024, 3, 20))), // same month again
            (Some("b"), Some(date(2024, 3, 1))),
            (Some("b"), Some(date(2023, 5, 1))),
            (Some("b"), Some(date(2023, 5, 1))),
            (Some("b"), Some(date(2023, 5, 1))), // three times: one pair
            (Some("ghost"), Some(date(2023, 5, 1))),
            (Some("ghost"), Some(date(2023, 5, 1))), // unknown, not a duplicate
            (None, Some(date(2023, 5, 1))),
            (Some("c"), None),
            (Some("c"), Some(date(1999, 12, 1))),
        ];
        let bills = DataFrame::new(
            rows.len(),
            vec![
                Column::new(
                    col::SUBSCRIBER_ID.into(),
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                ),
                dates(&rows.iter().map(|r| r.1).collect::<Vec<_>>()).with_name(col::MONTH.into()),
            ],
        )
        .unwrap();
        let mut seen = Vec::new();
        for budget in [1 << 20, 1] {
            let found = any_day(&bills, &keys, budget);
            assert_eq!(found.unknown, 2, "budget {budget}: the ghost's bills, once");
            assert_eq!(found.before_signup, 1, "budget {budget}");
            let pairs: Vec<(String, i32)> = found
                .duplicates
                .column(col::SUBSCRIBER_ID)
                .unwrap()
                .str()
                .unwrap()
                .iter()
                .zip(
                    found
                        .duplicates
                        .column(MONTH_INDEX)
                        .unwrap()
                        .i32()
                        .unwrap()
                        .iter(),
                )
                .map(|(a, m)| (a.unwrap().to_string(), m.unwrap()))
                .collect();
            assert_eq!(
                pairs,
                vec![
                    ("a".to_string(), 2024 * 12 + 3),
                    ("b".to_string(), 2023 * 12 + 5)
                ],
                "budget {budget}"
            );
            seen.push(found.passes);
        }
        // Months 1999-12, 2023-05, 2024-02 and 2024-03: one a pass at one byte.
        assert_eq!(seen, vec![1, 4]);
    }

    /// Bills over 300 months (more than the memos' 64 slots, so months
    /// share slots), in an order that mixes subscribers and months, some
    /// pairs billed twice or three times: the duplicated pairs are those a
    /// count of every pair finds, in one pass or in many.
    #[test]
    fn duplicates_over_many_months_are_every_pair_billed_twice() {
        let names = ["a", "b", "c", "d"];
        let keys = DataFrame::new(
            names.len(),
            vec![
                Column::new(col::SUBSCRIBER_ID.into(), names),
                dates(&[Some(date(1990, 1, 1)); 4]).with_name(col::SIGNUP_DATE.into()),
            ],
        )
        .unwrap();
        let mut rows: Vec<(usize, NaiveDate)> = Vec::new();
        let mut x: u64 = 7;
        for k in 0..2_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let who = (x >> 33) as usize % names.len();
            let month = ((x >> 40) % 300) as i32 + k as i32 % 2;
            let (y, m) = (1995 + month / 12, month % 12 + 1);
            rows.push((who, date(y, m as u32, 1 + (x >> 20) as u32 % 28)));
        }
        let mut count: std::collections::BTreeMap<(String, i32), u32> = Default::default();
        for (who, d) in &rows {
            let m = d.year() * 12 + d.month() as i32;
            *count.entry((names[*who].to_string(), m)).or_default() += 1;
        }
        let want: Vec<(String, i32)> = count
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(pair, _)| pair)
            .collect();
        assert!(
            want.len() > 100,
            "{} pairs billed more than once",
            want.len()
        );
        let bills = DataFrame::new(
            rows.len(),
            vec![
                Column::new(
                    col::SUBSCRIBER_ID.into(),
                    rows.iter().map(|r| names[r.0]).collect::<Vec<_>>(),
                ),
                dates(&rows.iter().map(|r| Some(r.1)).collect::<Vec<_>>())
                    .with_name(col::MONTH.into()),
            ],
        )
        .unwrap();
        for budget in [1 << 20, 1, 8 * 7] {
            let found = any_day(&bills, &keys, budget);
            let ids = found
                .duplicates
                .column(col::SUBSCRIBER_ID)
                .unwrap()
                .str()
                .unwrap()
                .clone();
            let months = found
                .duplicates
                .column(MONTH_INDEX)
                .unwrap()
                .i32()
                .unwrap()
                .clone();
            let mut got: Vec<(String, i32)> = ids
                .iter()
                .zip(months.iter())
                .map(|(a, m)| (a.unwrap().to_string(), m.unwrap()))
                .collect();
            got.sort();
            assert_eq!(got, want, "budget {budget}");
            assert_eq!(found.unknown + found.before_signup, 0, "budget {budget}");
        }
    }
}
