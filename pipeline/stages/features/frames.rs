//! The input tables as the features stage reads them, and the lazy
//! expressions its steps share (dates as day numbers, joins, margins, the
//! data's end).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use polars::prelude::*;

use crate::error::{Error, Result};
use crate::schema::{Table, col};

#[cfg(test)]
use super::calendar::{MonthMemo, month_of_day};
use super::ids::Ids;
use super::ledger::{Ledger, MemorySpill, Spill, Spills};
use super::manifest::f;
use super::walk::Walk;

/// Days per month used to express day counts in months.
pub const DAYS_PER_MONTH: f64 = 30.4375;

/// Input tables, canonical names and types; absent optional tables are
/// empty frames of the contract's schema.
#[derive(Clone)]
pub struct Inputs {
    tables: BTreeMap<Table, LazyFrame>,
    /// The bills grouped by subscriber, when built ([`Inputs::with_ledger`]).
    ledger: Option<Arc<Ledger>>,
    /// The billing aggregates by joining the bills to the events, the
    /// plain polars way ([`Inputs::with_joined_bills`], the tests' check of
    /// the ledger and of the streamed sums).
    pub(crate) joined_bills: bool,
    /// The subscriber ids' codes, when the smaller tables' ids are coded
    /// ([`Inputs::with_codes`]).
    ids: Option<Arc<Ids>>,
    /// The coded smaller tables grouped by subscriber, built with the codes.
    walk: Option<Arc<Walk>>,
    /// The codes whose events these inputs give, where restricted to a
    /// block of subscribers ([`Inputs::restricted`]).
    block: Option<std::ops::Range<u32>>,
    /// Where the bills are spilled by block (default: memory).
    spills: Option<Spills>,
}

/// Whether a bill of [`Inputs::bill_columns`] is read: it has a
/// subscriber, a month and a revenue.
pub(crate) fn read_bill() -> Expr {
    col(col::SUBSCRIBER_ID)
        .is_not_null()
        .and(col("r").is_not_null())
        .and(col("d").is_not_null())
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
        Inputs {
            tables,
            ledger: None,
            joined_bills: false,
            ids: None,
            walk: None,
            block: None,
            spills: None,
        }
    }

    /// These inputs with the bills spilled by block to `spills`' spills
    /// ([`super::ledger::Blocks`]; the commands give files beside the
    /// outputs, `catalog::spill_in`).
    pub fn with_spills(mut self, spills: Spills) -> Self {
        self.spills = Some(spills);
        self
    }

    /// A new spill for the bills by block: memory where none was given.
    pub(crate) fn spill(&self) -> Result<Box<dyn Spill>> {
        match &self.spills {
            Some(make) => make(),
            None => Ok(Box::new(MemorySpill::default())),
        }
    }

    /// The subscriber codes, when coded.
    pub(crate) fn ids(&self) -> Option<&Ids> {
        self.ids.as_deref()
    }

    /// The codes whose events these inputs give: a block's, or every code
    /// (none when not coded).
    pub(crate) fn block(&self) -> Option<std::ops::Range<u32>> {
        match (&self.block, &self.ids) {
            (Some(b), _) => Some(b.clone()),
            (None, Some(ids)) => Some(0..ids.len() as u32),
            (None, None) => None,
        }
    }

    /// These coded inputs restricted to the subscribers coded `codes`,
    /// with `ledger` (their bills): the tables keyed on a subscriber hold
    /// only their rows (those of no code go with the first block, as they
    /// sort first), so that every event set built from them is the
    /// block's share of the whole, in the same order. The walk keeps every
    /// subscriber (an event reads only its own); billing is left whole, for
    /// the ways that join it.
    pub(crate) fn restricted(&self, codes: std::ops::Range<u32>, ledger: Ledger) -> Self {
        let mut out = self.clone();
        let keep = col(col::SUBSCRIBER_ID)
            .gt_eq(lit(codes.start))
            .and(col(col::SUBSCRIBER_ID).lt(lit(codes.end)));
        let keep = if codes.start == 0 {
            col(col::SUBSCRIBER_ID).is_null().or(keep)
        } else {
            keep
        };
        for t in [
            Table::Subscribers,
            Table::ChurnEvents,
            Table::Reactivations,
            Table::WinbackOffers,
            Table::Complaints,
        ] {
            let lf = out.get(t).filter(keep.clone());
            out.tables.insert(t, lf);
        }
        out.ledger = Some(Arc::new(ledger));
        out.block = Some(codes);
        out
    }

    /// These inputs with the smaller tables read once into memory, their
    /// subscriber ids replaced by integer codes ([`Ids`]): worth it where
    /// many event sets join them. Billing stays as it is (the ledger reads
    /// it). Frames built from coded tables carry codes in `subscriber_id`
    /// until [`Inputs::decode`].
    pub fn with_codes(mut self) -> Result<Self> {
        if self.ids.is_some() {
            return Ok(self);
        }
        let (ids, coded) = Ids::code(&self.tables)?;
        tracing::debug!(ids = ids.len(), "features: subscriber ids coded");
        self.walk = Some(Arc::new(Walk::new(&coded, ids.len())?));
        tracing::debug!("features: smaller tables grouped by subscriber");
        self.tables
            .extend(coded.into_iter().map(|(t, df)| (t, df.lazy())));
        self.ids = Some(Arc::new(ids));
        // A ledger built before is keyed on the text ids: built again.
        match self.ledger.take() {
            Some(ledger) => {
                let rate = ledger.margin_rate;
                drop(ledger);
                self.with_ledger(rate)
            }
            None => Ok(self),
        }
    }

    /// Events (`subscriber_id` as text) with their ids coded as these
    /// inputs' tables are (as is when not coded): an id no table holds
    /// gets a null code.
    #[cfg(test)]
    pub(crate) fn code_events(&self, mut events: DataFrame) -> Result<DataFrame> {
        let Some(ids) = &self.ids else {
            return Ok(events);
        };
        let index = ids.index();
        let codes = ids.codes(
            &index,
            events
                .column(col::SUBSCRIBER_ID)
                .map_err(Error::polars("events"))?,
        )?;
        drop(index);
        events
            .with_column(Column::new(col::SUBSCRIBER_ID.into(), codes))
            .map_err(Error::polars("events"))?;
        Ok(events)
    }

    /// `df` with text ids in `subscriber_id` (as is when not coded).
    pub fn decode(&self, df: DataFrame) -> Result<DataFrame> {
        match &self.ids {
            Some(ids) => ids.decode(df),
            None => Ok(df),
        }
    }

    /// A lazy frame with text ids in `subscriber_id` (its columns may come
    /// in another order).
    pub(crate) fn decode_lazy(&self, lf: LazyFrame) -> LazyFrame {
        match &self.ids {
            Some(ids) => ids.decode_lazy(lf),
            None => lf,
        }
    }

    /// These inputs with the bills read once and grouped by subscriber
    /// ([`Ledger`]): the billing features of every event then walk their
    /// own subscriber's bills instead of joining the table. Worth it where
    /// there are several events per subscriber; it holds every bill in
    /// memory (24 bytes each).
    pub fn with_ledger(mut self, margin_rate: f64) -> Result<Self> {
        let ledger = match self.ids.as_deref() {
            Some(ids) => {
                Ledger::build_coded(self.bill_columns(margin_rate, true), margin_rate, ids)?
            }
            None => Ledger::build(self.bill_rows(margin_rate, true), margin_rate)?,
        };
        self.ledger = Some(Arc::new(ledger));
        Ok(self)
    }

    /// These inputs with the billing aggregates joined, not streamed.
    #[cfg(test)]
    pub(crate) fn with_joined_bills(mut self) -> Self {
        self.joined_bills = true;
        self
    }

    /// The bills as the billing aggregates read them: `subscriber_id`, `d`
    /// (the month's day number; [`super::calendar::month_of_day`] gives its
    /// index, in the readers, cheaper than as an expression), `r` (the
    /// revenue) and `g` (the margin at `margin_rate` where the cost is
    /// missing) and, when `costed`, `k` (whether the cost is there). Bills
    /// without a subscriber, a revenue or a month (the contract allows none
    /// of these) carry no feature and are left out ([`read_bill`]).
    pub(crate) fn bill_rows(&self, margin_rate: f64, costed: bool) -> LazyFrame {
        self.bill_columns(margin_rate, costed).filter(read_bill())
    }

    /// [`Inputs::bill_rows`]' columns of every bill, none left out.
    pub(crate) fn bill_columns(&self, margin_rate: f64, costed: bool) -> LazyFrame {
        let mut columns = vec![
            col(col::SUBSCRIBER_ID),
            col(col::MONTH).cast(DataType::Int32).alias("d"),
            col(col::REVENUE).alias("r"),
            margin(margin_rate).alias("g"),
        ];
        if costed {
            columns.push(col(col::COST_TO_SERVE).is_not_null().alias("k"));
        }
        self.get(Table::Billing).select(columns)
    }

    /// The smaller tables grouped by subscriber, when the ids are coded.
    pub(crate) fn walk(&self) -> Option<&Walk> {
        self.walk.as_deref()
    }

    /// The grouped bills, if built with the margin rate `margin_rate`.
    pub(crate) fn ledger(&self, margin_rate: f64) -> Option<&Ledger> {
        self.ledger
            .as_deref()
            .filter(|l| l.margin_rate.to_bits() == margin_rate.to_bits())
    }

    /// A table (empty when absent).
    pub fn get(&self, t: Table) -> LazyFrame {
        self.tables[&t].clone()
    }
}

pub(crate) fn days(c: &str) -> Expr {
    col(c).cast(DataType::Int32)
}

pub(crate) fn date_lit(d: NaiveDate) -> Expr {
    lit(epoch_days(d)).cast(DataType::Date)
}

/// The calendar month of a date as `year * 12 + month` (1 to 12), in
/// integer arithmetic on the day number (the civil-from-days algorithm of
/// H. Hinnant, counting years from 1 March so that the leap day ends one):
/// polars' `dt().year()` and `dt().month()` convert every value through a
/// calendar type, about a fifth of a features run's samples when applied to
/// every bill.
pub(crate) fn month_index(e: Expr) -> Expr {
    let i = |v: i64| lit(v);
    // Days since 0000-03-01.
    let z = e.cast(DataType::Int32).cast(DataType::Int64) + i(719_468);
    let era = z.clone().floor_div(i(146_097));
    let doe = z - era.clone() * i(146_097);
    let yoe = (doe.clone() - doe.clone().floor_div(i(1_460)) + doe.clone().floor_div(i(36_524))
        - doe.clone().floor_div(i(146_096)))
    .floor_div(i(365));
    let doy =
        doe - (yoe.clone() * i(365) + yoe.clone().floor_div(i(4)) - yoe.clone().floor_div(i(100)));
    // Months since March of the year counted from 1 March (0 to 11).
    let mp = (doy * i(5) + i(2)).floor_div(i(153));
    ((era * i(400) + yoe) * i(12) + mp + i(3)).cast(DataType::Int32)
}

/// `value` where `mask` holds, null elsewhere.
pub(crate) fn masked(mask: Expr, value: Expr, name: &str) -> Expr {
    when(mask)
        .then(value)
        .otherwise(lit(NULL).cast(DataType::Float64))
        .alias(name)
}

/// The calendar quarter (`q1` to `q4`) of the day after `as_of`, where a
/// churn horizon from it starts.
pub fn horizon_quarter(as_of: NaiveDate) -> String {
    let d = as_of.succ_opt().unwrap_or(as_of);
    format!("q{}", d.month0() / 3 + 1)
}

/// Days since 1970-01-01.
pub fn epoch_days(d: NaiveDate) -> i32 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid")).num_days() as i32
}

/// The date `n` days after 1970-01-01.
pub fn from_epoch_days(n: i32) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1)
        .and_then(|e| e.checked_add_signed(chrono::Duration::days(n as i64)))
        .unwrap_or(if n < 0 {
            NaiveDate::MIN
        } else {
            NaiveDate::MAX
        })
}

pub(crate) fn join(a: LazyFrame, b: LazyFrame, on: &[&str], how: JoinType) -> LazyFrame {
    let k: Vec<Expr> = on.iter().map(|c| col(*c)).collect();
    a.join(b, k.clone(), k, JoinArgs::new(how))
}

/// `base` (one row per event, by [`f::EVENT`]) with the columns of each of
/// `parts` (at most one row per event, which they drop) beside its rows,
/// null where a part has no row of the event: the left joins of the parts
/// on the event, by placing each part's rows at their events' rows rather
/// than hashing them. `None` when an event is null or repeated in `base` or
/// in a part, the events are sparse (more than twice the rows), or a part
/// brings a column `base` or an earlier part has: the caller joins then.
pub(crate) fn beside(base: &DataFrame, parts: &[DataFrame]) -> Result<Option<DataFrame>> {
    let err = || Error::polars("features: events' columns");
    let events = |df: &DataFrame| -> Result<Option<Vec<IdxSize>>> {
        let c = events_of(df, "features: events' columns")?;
        if c.null_count() > 0 {
            return Ok(None);
        }
        Ok(Some(c.into_no_null_iter().collect()))
    };
    let Some(of_base) = events(base)? else {
        return Ok(None);
    };
    let top = of_base.iter().max().map_or(0, |e| *e as usize + 1);
    if top > 2 * of_base.len() + 1024 {
        return Ok(None);
    }
    // The base row of each event.
    let mut row = vec![IdxSize::MAX; top];
    for (r, e) in of_base.iter().enumerate() {
        let slot = &mut row[*e as usize];
        if *slot != IdxSize::MAX {
            return Ok(None);
        }
        *slot = r as IdxSize;
    }
    let mut names: PlHashSet<PlSmallStr> = base.get_column_names().into_iter().cloned().collect();
    let mut columns: Vec<Column> = base.columns().to_vec();
    for part in parts {
        let Some(of_part) = events(part)? else {
            return Ok(None);
        };
        // The part's row of each base row, if any.
        let mut take: Vec<Option<IdxSize>> = vec![None; of_base.len()];
        for (q, e) in of_part.iter().enumerate() {
            // An event the base lacks is left out, as a left join does.
            let Some(&r) = row.get(*e as usize).filter(|r| **r != IdxSize::MAX) else {
                continue;
            };
            if take[r as usize].replace(q as IdxSize).is_some() {
                return Ok(None);
            }
        }
        let take: IdxCa = take.into_iter().collect();
        for c in part.columns() {
            if c.name().as_str() == f::EVENT {
                continue;
            }
            if !names.insert(c.name().clone()) {
                return Ok(None);
            }
            columns.push(c.rechunk().take(&take).map_err(err())?);
        }
    }
    DataFrame::new(of_base.len(), columns)
        .map(Some)
        .map_err(err())
}

/// [`beside`], or where it declines the left joins of the parts on the
/// event.
pub(crate) fn beside_or_joined(base: DataFrame, parts: Vec<DataFrame>) -> Result<LazyFrame> {
    Ok(match beside(&base, &parts)? {
        Some(x) => x.lazy(),
        None => parts.into_iter().fold(base.lazy(), |x, part| {
            join(x, part.lazy(), &[f::EVENT], JoinType::Left)
        }),
    })
}

/// The [`f::EVENT`] column of `df` as indexes (`what` names the step in
/// an error).
fn events_of(df: &DataFrame, what: &str) -> Result<IdxCa> {
    let err = || Error::polars(what);
    df.column(f::EVENT)
        .map_err(err())?
        .cast(&IDX_DTYPE)
        .map_err(err())?
        .idx()
        .cloned()
        .map_err(err())
}

/// `df` in [`f::EVENT`] order, without that column. Sorted only where its
/// rows are not in that order already: the left joins that build a set
/// keep their events' order as a rule, but polars does not promise it, and
/// sorting a churn snapshot that is in order gathered each of its columns
/// again.
pub(crate) fn by_event(df: DataFrame) -> Result<DataFrame> {
    let err = || Error::polars("features: rows in event order");
    let events = events_of(&df, "features: rows in event order")?;
    let ordered = events.null_count() == 0
        && events
            .downcast_iter()
            .flat_map(|a| a.values().iter().copied())
            .try_fold(None::<IdxSize>, |last, e| match last {
                Some(l) if l >= e => None,
                _ => Some(Some(e)),
            })
            .is_some();
    let df = if ordered {
        df
    } else {
        df.sort([f::EVENT], SortMultipleOptions::default())
            .map_err(err())?
    };
    df.drop(f::EVENT).map_err(err())
}

pub(crate) fn collect(lf: LazyFrame, step: &str) -> Result<DataFrame> {
    crate::stages::collect(lf, format!("features: {step}"))
}

/// [`collect`] on polars' in-memory engine
/// ([`crate::stages::collect_in_memory`]).
pub(crate) fn collect_in_memory(lf: LazyFrame, step: &str) -> Result<DataFrame> {
    crate::stages::collect_in_memory(lf, format!("features: {step}"))
}

/// The margin of a bill: revenue less cost to serve, or revenue times the
/// margin rate where the cost is unknown.
pub(crate) fn margin(rate: f64) -> Expr {
    (col(col::REVENUE) - col(col::COST_TO_SERVE))
        .fill_null(col(col::REVENUE) * lit(rate))
        .alias("__margin")
}

/// The data's end as the input tables record it, and which table set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataEnd {
    /// The last day of the month of the latest date any table records.
    pub date: NaiveDate,
    /// `table.column` holding that latest date.
    pub set_by: String,
    /// Dates left out of it as stray (a few bills after billing's last
    /// busy month, events long after it), one note per table.
    pub notes: Vec<String>,
}

/// Fewest bills a month needs, as a share of the busiest month's, to end
/// billing: a month with fewer is a stray (a mistyped date), not the
/// extract's last.
const BILLING_END_SHARE: f64 = 0.001;

/// The last day of the month of the latest date recorded: billed months,
/// defections, returns, offers, complaints opened and referrals (extracts
/// are rarely cut on one day for every table, and a churn recorded after
/// the last billed month still happened before the extract). At least one
/// billed month is required.
///
/// A single mistyped date must not move it years ahead, where every
/// snapshot's horizon would hold no churn (the churn model was then
/// skipped) or, worse, a quiet one: billing ends with the months from its
/// busiest on, each with at least [`BILLING_END_SHARE`] of the busiest
/// month's bills and at most one month without bills before it; another
/// table's date counts only up to `horizon_days` after that month (a
/// cross-sectional extract records the churn after its one snapshot, over
/// the horizon). Dates beyond stay in the data, after its end (what is
/// known as of a date never reads them, and no label counts them), and are
/// noted.
pub fn data_end(inputs: &Inputs, horizon_days: u32) -> Result<DataEnd> {
    let months = collect(
        inputs
            .get(Table::Billing)
            .select([col(col::MONTH).cast(DataType::Date).alias("m")])
            .filter(col("m").is_not_null())
            .group_by([col("m")])
            .agg([len().alias("n")]),
        "data end",
    )?;
    let m = months
        .column("m")
        .and_then(|c| c.cast(&DataType::Int32))
        .map_err(Error::polars("features: data end"))?;
    let n = months
        .column("n")
        .and_then(|c| c.cast(&DataType::UInt64))
        .map_err(Error::polars("features: data end"))?;
    let m = m.i32().map_err(Error::polars("features: data end"))?;
    let n = n.u64().map_err(Error::polars("features: data end"))?;
    let counts: Vec<(i32, u64)> = m
        .iter()
        .zip(n.iter())
        .filter_map(|(m, n)| Some((m?, n?)))
        .collect();
    let busiest = counts
        .iter()
        .map(|(_, n)| *n)
        .max()
        .ok_or_else(|| Error::Data {
            table: "billing".into(),
            message: "no rows: features need at least one billed month".into(),
        })?;
    let enough = ((busiest as f64) * BILLING_END_SHARE).ceil().max(1.0) as u64;
    // From the busiest month on, each next billed month with enough bills
    // and at most one month without bills before it.
    let mut counts = counts;
    counts.sort_unstable();
    let index = |m: i32| {
        let d = from_epoch_days(m);
        d.year() * 12 + d.month0() as i32
    };
    let first = counts
        .iter()
        .position(|(_, n)| *n == busiest)
        .expect("the busiest is a month");
    let mut billed = counts[first].0;
    for &(m, n) in &counts[first + 1..] {
        if n < enough || index(m) - index(billed) > 2 {
            break;
        }
        billed = m;
    }
    let mut notes = Vec::new();
    let stray: Vec<&(i32, u64)> = counts.iter().filter(|(m, _)| *m > billed).collect();
    if !stray.is_empty() {
        notes.push(format!(
            "billing.month: {} bills in {} months after {} (billing's last month: the months from the busiest on, each with at least {enough} bills, {}% of the busiest month's {busiest}, and at most one month without bills before it), the latest {}: left out of the data's end as stray dates; set features.data_end if the data covers them",
            stray.iter().map(|(_, n)| n).sum::<u64>(),
            stray.len(),
            from_epoch_days(billed).format("%Y-%m"),
            BILLING_END_SHARE * 100.0,
            from_epoch_days(stray.iter().map(|(m, _)| *m).max().expect("not empty")),
        ));
    }
    let bound = month_end(epoch_days(month_end(billed)) + horizon_days as i32);
    let bound_days = epoch_days(bound);
    let mut end = (billed, format!("{}.{}", Table::Billing.name(), col::MONTH));
    for (t, c) in [
        (Table::ChurnEvents, col::CHURNED_AT),
        (Table::Reactivations, col::RETURNED_AT),
        (Table::WinbackOffers, col::OFFERED_AT),
        (Table::Complaints, col::OPENED_AT),
        (Table::Referrals, col::REFERRED_AT),
    ] {
        let day = col(c).cast(DataType::Date).cast(DataType::Int32);
        let df = collect(
            inputs.get(t).select([
                day.clone()
                    .filter(day.clone().lt_eq(lit(bound_days)))
                    .max()
                    .alias("within"),
                day.clone()
                    .gt(lit(bound_days))
                    .sum()
                    .cast(DataType::UInt64)
                    .alias("beyond"),
                day.max().alias("latest"),
            ]),
            "data end",
        )?;
        let get =
            |name: &str| -> Option<i64> { df.column(name).ok()?.get(0).ok()?.extract::<i64>() };
        if let Some(d) = get("within").map(|d| d as i32)
            && month_end(d) > month_end(end.0)
        {
            end = (d, format!("{}.{c}", t.name()));
        }
        if let (Some(beyond @ 1..), Some(latest)) = (get("beyond"), get("latest")) {
            notes.push(format!(
                "{}.{c}: {beyond} rows dated after {bound} ({horizon_days} days past billing's last month), the latest {}: left out of the data's end as stray dates; set features.data_end if the data covers them",
                t.name(),
                from_epoch_days(latest as i32)
            ));
        }
    }
    Ok(DataEnd {
        date: month_end(end.0),
        set_by: end.1,
        notes,
    })
}

/// The last day of the month of day `n` (days since 1970-01-01).
fn month_end(n: i32) -> NaiveDate {
    let d = from_epoch_days(n);
    d.with_day(1)
        .and_then(|f| f.checked_add_months(chrono::Months::new(1)))
        .and_then(|n| n.pred_opt())
        .unwrap_or(NaiveDate::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    /// The left joins of `parts` to `base` on the event, rows by event.
    fn joined(base: &DataFrame, parts: &[DataFrame]) -> DataFrame {
        let x = parts.iter().fold(base.clone().lazy(), |x, p| {
            join(x, p.clone().lazy(), &[f::EVENT], JoinType::Left)
        });
        x.sort([f::EVENT], SortMultipleOptions::default())
            .collect()
            .unwrap()
    }

    #[test]
    fn beside_gives_the_left_joins_or_declines() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for (n, gap) in [(0usize, 0u32), (1, 0), (57, 0), (400, 3), (1000, 0)] {
            // Events 0..n (every `gap`-th left out of the base), shuffled.
            let mut events: Vec<u32> = (0..n as u32).filter(|e| gap == 0 || e % gap != 0).collect();
            events.shuffle(&mut rng);
            let m = events.len();
            let base = df!(
                f::EVENT => events.clone(),
                "id" => events.iter().map(|e| format!("S{e:05}")).collect::<Vec<_>>(),
                "fee" => (0..m).map(|i| (i % 7 != 0).then_some(i as f64 * 0.5)).collect::<Vec<_>>(),
            )
            .unwrap();
            // Parts over a random share of the events 0..n + 5 (some
            // absent from the base), in their own random order.
            let part = |rng: &mut rand_chacha::ChaCha8Rng, share: f64| {
                let mut own: Vec<u32> = (0..n as u32 + 5)
                    .filter(|_| rng.random_bool(share))
                    .collect();
                own.shuffle(rng);
                own
            };
            let a = part(&mut rng, 0.9);
            let b = part(&mut rng, 0.2);
            let c = part(&mut rng, 0.0);
            let parts = vec![
                df!(
                    f::EVENT => a.clone(),
                    "sum" => a.iter().map(|e| *e as f64 * 1.25).collect::<Vec<_>>(),
                    "n" => a.iter().map(|e| (e % 3 != 0).then_some(*e as i32)).collect::<Vec<_>>(),
                )
                .unwrap(),
                df!(
                    "flag" => b.iter().map(|e| e % 2 == 0).collect::<Vec<_>>(),
                    f::EVENT => b.clone(),
                    "plan" => b.iter().map(|e| (e % 5 != 0).then(|| format!("p{e}"))).collect::<Vec<_>>(),
                )
                .unwrap(),
                df!(f::EVENT => c.clone(), "k" => c.iter().map(|e| *e as i64).collect::<Vec<_>>())
                    .unwrap(),
            ];
            let placed = beside(&base, &parts).unwrap().expect("unique events");
            assert_eq!(placed.height(), m, "one row per base row");
            let placed = placed
                .sort([f::EVENT], SortMultipleOptions::default())
                .unwrap();
            let expected = joined(&base, &parts);
            assert_eq!(placed.get_column_names(), expected.get_column_names());
            assert_eq!(placed.dtypes(), expected.dtypes());
            assert!(
                placed.equals_missing(&expected),
                "n {n}: {placed} {expected}"
            );
        }
        // Declined: an event twice in a part, twice in the base, a null
        // event, a column name taken twice, sparse events.
        let base = df!(f::EVENT => [0u32, 1, 2], "x" => [1.0, 2.0, 3.0]).unwrap();
        let twice = df!(f::EVENT => [2u32, 2], "y" => [1, 2]).unwrap();
        assert!(beside(&base, &[twice]).unwrap().is_none());
        let base_twice = df!(f::EVENT => [0u32, 1, 1], "x" => [1.0, 2.0, 3.0]).unwrap();
        assert!(beside(&base_twice, &[]).unwrap().is_none());
        let null = df!(f::EVENT => [Some(0u32), None], "y" => [1, 2]).unwrap();
        assert!(beside(&base, &[null]).unwrap().is_none());
        let taken = df!(f::EVENT => [0u32], "x" => [9.0]).unwrap();
        assert!(beside(&base, &[taken]).unwrap().is_none());
        let sparse = df!(f::EVENT => [0u32, 5_000_000], "x" => [1.0, 2.0]).unwrap();
        assert!(beside(&sparse, &[]).unwrap().is_none());
    }

    /// [`by_event`] gives what sorting by the event gives, less the event:
    /// rows in order as they are, out of order or with a null event sorted.
    #[test]
    fn by_event_is_the_sort_by_event() {
        let frame = |events: Vec<Option<u32>>| {
            let x: Vec<f64> = (0..events.len()).map(|i| i as f64).collect();
            df!(f::EVENT => events, "x" => x).unwrap()
        };
        for events in [
            vec![],
            vec![Some(0)],
            vec![Some(0), Some(1), Some(5), Some(9)],
            vec![Some(1), Some(0), Some(2)],
            vec![Some(0), Some(2), Some(2), Some(3)],
            vec![Some(0), None, Some(1)],
        ] {
            let df = frame(events.clone());
            let want = df
                .sort([f::EVENT], SortMultipleOptions::default())
                .unwrap()
                .drop(f::EVENT)
                .unwrap();
            let got = by_event(df).unwrap();
            assert!(
                got.equals_missing(&want),
                "{events:?}: {got} against {want}"
            );
        }
    }

    #[test]
    fn month_index_matches_the_calendar() {
        // Every day from 1600 to 2400 (leap centuries and not), and dates
        // before the epoch and before year 1.
        let mut days: Vec<i32> = (epoch_days(NaiveDate::from_ymd_opt(1600, 1, 1).unwrap())
            ..=epoch_days(NaiveDate::from_ymd_opt(2400, 12, 31).unwrap()))
            .collect();
        days.extend([
            epoch_days(NaiveDate::from_ymd_opt(1, 1, 1).unwrap()),
            epoch_days(NaiveDate::from_ymd_opt(0, 2, 29).unwrap()),
            epoch_days(NaiveDate::from_ymd_opt(-1, 12, 31).unwrap()),
            epoch_days(NaiveDate::from_ymd_opt(-400, 3, 1).unwrap()),
        ]);
        let df = DataFrame::new(days.len(), vec![Column::new("d".into(), &days)])
            .unwrap()
            .lazy()
            .select([month_index(col("d").cast(DataType::Date)).alias("m")])
            .collect()
            .unwrap();
        let got: Vec<i32> = df
            .column("m")
            .unwrap()
            .i32()
            .unwrap()
            .into_no_null_iter()
            .collect();
        for (d, m) in days.iter().zip(&got) {
            let date = from_epoch_days(*d);
            assert_eq!(*m, date.year() * 12 + date.month() as i32, "{date}");
            assert_eq!(month_of_day(*d), *m, "{date}: the readers' version");
        }
        // The memo, on days that share its slots, over and over.
        let mut memo = MonthMemo::new();
        for pass in 0..3 {
            for (d, m) in days
                .iter()
                .step_by(29 + pass)
                .zip(got.iter().step_by(29 + pass))
            {
                assert_eq!(memo.month(*d), *m, "day {d}, pass {pass}");
            }
        }
        // Whether a day is its month's first, on every day.
        for d in &days {
            let first = from_epoch_days(*d).day() == 1;
            assert_eq!(memo.is_first(*d), first, "day {d}");
        }
        assert_eq!(memo.month(i32::MIN), month_of_day(i32::MIN));
        // The ends of a Date's range do not overflow.
        assert!(month_of_day(i32::MIN) < month_of_day(i32::MAX));
    }
}
