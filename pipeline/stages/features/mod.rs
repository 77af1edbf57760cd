//! `features`: point-in-time features and training labels.
//!
//! Every feature is computed for an *event*: a subscriber and an as-of date.
//! [`behaviour`] joins each input table to the events on the subscriber (or,
//! for the bills in [`build`], walks each subscriber's bills in the
//! [`ledger::Ledger`]) and keeps only rows dated on or before the event's
//! as-of date (`month`,
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
//!
//! Files: [`settings`] (`[features]` and its defaults), [`manifest`]
//! (feature names, the manifest, conforming categories), [`frames`] (the
//! inputs and shared expressions), [`behaviour`] (point-in-time
//! aggregates), [`ledger`] (the bills grouped by subscriber once, for the
//! billing features of many events), [`labels`] (events and
//! forward-looking labels); [`build`] and [`current`] tie them together.

pub mod behaviour;
pub mod calendar;
pub mod frames;
pub mod ids;
pub mod labels;
pub mod ledger;
pub mod manifest;
pub mod settings;
mod walk;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::NaiveDate;
use polars::prelude::*;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::schema::{Table, col};
use crate::stages::validate::BillTap;

pub use behaviour::behaviour;
use behaviour::behaviour_columns;
use frames::*;
pub use frames::{
    DAYS_PER_MONTH, DataEnd, Inputs, data_end, empty_table, epoch_days, from_epoch_days,
};
pub use labels::default_snapshots;
use labels::*;
pub use manifest::{Encoding, FeatureSpec, Manifest, OTHER_LEVEL, Unseen, conform_categories, f};
pub use settings::{BillKnown, FeatureSettings};

/// The features stage's outputs, as the sink was handed them: what the
/// summary and the manifest say of them (the rows themselves are the
/// sink's).
pub struct Features {
    /// Rows of the lapsed set (one per churn event, features as of the
    /// defection).
    pub lapsed_rows: usize,
    /// Rows of the active set (one per subscriber active at the as-of
    /// date).
    pub active_rows: usize,
    /// Null values of each column of the lapsed rows.
    pub lapsed_nulls: BTreeMap<String, usize>,
    /// Null values of each column of the active rows.
    pub active_nulls: BTreeMap<String, usize>,
    /// Rows of the offers set (one per win-back offer: features of the
    /// defection it answers, the arm, and whether the subscriber returned
    /// within the window).
    pub offer_rows: usize,
    /// The days the offers were made whose response window ends after
    /// the data's end, one per such offer.
    pub offers_unobserved: Vec<NaiveDate>,
    /// Rows of the second lifetimes (one per return: months retained and
    /// margin of the second lifetime, censoring, and the arm that won the
    /// subscriber back).
    pub second_lifetime_rows: usize,
    /// Rows of all churn snapshots.
    pub snapshot_rows: usize,
    /// The as-of date used for `active`.
    pub as_of: NaiveDate,
    /// Last day covered by the data.
    pub data_end: NaiveDate,
    /// Snapshot dates used.
    pub snapshots: Vec<NaiveDate>,
    /// Snapshots left out or whose horizon is not observed, and why.
    pub snapshot_notes: Vec<String>,
    /// Blocks of subscribers the outputs were built in (1: all at once).
    pub blocks: usize,
    /// Feature manifest (categories seen in the lapsed and snapshot rows).
    pub manifest: Manifest,
    /// Categorical features whose rare levels were left to `other`.
    pub level_notes: Vec<String>,
}

/// Categories seen so far and their rows, per one-hot feature.
pub(crate) type Seen = BTreeMap<String, BTreeMap<String, u64>>;

pub(crate) fn see(seen: &mut Seen, df: &DataFrame, names: &[String]) {
    for name in names {
        if let Ok(c) = df.column(name)
            && let Ok(s) = c.str()
        {
            let counts = seen.entry(name.clone()).or_default();
            for v in s.iter().flatten() {
                match counts.get_mut(v) {
                    Some(n) => *n += 1,
                    None => {
                        counts.insert(v.to_string(), 1);
                    }
                }
            }
        }
    }
}

/// The levels a one-hot feature keeps, in name order: the `s.max_levels`
/// most frequent (ties by name) of those seen in at least
/// `s.min_level_rows` rows; the others are read as `other`, so that a
/// column of free text (a plan name per subscriber) cannot make a design
/// of thousands of columns. With a note when any is left out.
fn kept_levels(
    name: &str,
    counts: &BTreeMap<String, u64>,
    s: &FeatureSettings,
) -> (Vec<String>, Option<String>) {
    let mut by_rows: Vec<(&String, u64)> = counts.iter().map(|(l, n)| (l, *n)).collect();
    by_rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let kept: Vec<(&String, u64)> = by_rows
        .iter()
        .copied()
        .filter(|(_, n)| *n >= u64::from(s.min_level_rows))
        .take(s.max_levels as usize)
        .collect();
    let left = by_rows.len() - kept.len();
    let note = (left > 0).then(|| {
        let rows: u64 = by_rows.iter().map(|(_, n)| n).sum::<u64>()
            - kept.iter().map(|(_, n)| n).sum::<u64>();
        format!(
            "{name}: {} levels seen, {} kept (the most frequent, at most features.max_levels = {}, each in at least features.min_level_rows = {} rows); the other {left} ({rows} rows) are read as `{OTHER_LEVEL}`",
            by_rows.len(),
            kept.len(),
            s.max_levels,
            s.min_level_rows
        )
    });
    let mut levels: Vec<String> = kept.into_iter().map(|(l, _)| l.clone()).collect();
    levels.sort();
    (levels, note)
}

pub(crate) fn one_hot_names(s: &FeatureSettings) -> Vec<String> {
    let mut v: Vec<String> = behaviour_columns(s)
        .into_iter()
        .filter(|(_, e, _)| *e == Encoding::OneHot)
        .map(|(n, _, _)| n)
        .collect();
    v.push(f::LEAVE_REASON.to_string());
    v
}

/// The manifest of the features the lapsed rows and snapshots carry, and
/// notes on the levels left to `other` ([`kept_levels`]).
pub(crate) fn manifest(
    s: &FeatureSettings,
    lapsed: &Schema,
    seen: &Seen,
) -> (Manifest, Vec<String>) {
    let mut specs = Vec::new();
    let mut notes = Vec::new();
    let mut cols = behaviour_columns(s);
    cols.push((
        f::LEAVE_REASON.to_string(),
        Encoding::OneHot,
        vec!["churn_events.leave_reason".to_string()],
    ));
    for (name, encoding, sources) in cols {
        let dtype = lapsed
            .get(&name)
            .map(|d| d.to_string())
            .unwrap_or_else(|| "unknown".into());
        let categories = match seen.get(&name) {
            Some(counts) if encoding == Encoding::OneHot => {
                let (levels, note) = kept_levels(&name, counts, s);
                notes.extend(note);
                levels
            }
            _ => Vec::new(),
        };
        specs.push(FeatureSpec {
            name,
            dtype,
            encoding,
            sources,
            categories,
        });
    }
    // The calendar quarter in which a churn horizon starts (the day after
    // the as-of date), on the snapshots and the active subscribers only:
    // churn is seasonal (the fourth quarter highest, in the reference
    // figures and the generator), and a model without the season is
    // miscalibrated for a quarter its snapshots under-represent. All four
    // levels always, so the levels do not depend on which snapshots exist.
    specs.push(FeatureSpec {
        name: f::HORIZON_QUARTER.to_string(),
        dtype: DataType::String.to_string(),
        encoding: Encoding::OneHot,
        sources: vec!["(the as-of date)".to_string()],
        categories: (1..=4).map(|q| format!("q{q}")).collect(),
    });
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
    let manifest = Manifest {
        version: 1,
        features: specs,
        unseen_category_policy: format!(
            "a category not seen in training, or left out there as rare (features.min_level_rows, \
             features.max_levels), and a null, are encoded as the level `{OTHER_LEVEL}` \
             (all indicators of the kept categories zero) and counted in the scoring summary"
        ),
    };
    (manifest, notes)
}

/// The dates a features run is anchored on, resolved once by the command
/// (the as-of date from the flag or the config, else the data's end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dates {
    /// As-of date of the active and lapsed subscribers' features.
    pub as_of: NaiveDate,
    /// The data's end ([`data_end`], or `features.data_end`).
    pub data_end: NaiveDate,
    /// What set it: `table.column`, or `features.data_end`.
    pub data_end_set_by: String,
    /// Stray dates left out of it ([`DataEnd::notes`]).
    pub data_end_notes: Vec<String>,
}

/// A part of the stage's output, handed to [`build`]'s sink with its rows
/// as soon as it is built (the sets in their final order, before the
/// first snapshot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// [`Features::lapsed`].
    Lapsed,
    /// [`Features::active`].
    Active,
    /// [`Features::offers`].
    Offers,
    /// [`Features::second_lifetime`].
    SecondLifetime,
    /// Churn snapshot `index`, as of `date`.
    Snapshot(usize, NaiveDate),
}

/// Runs the stage. Each output goes to `sink` as soon as it is built (the
/// four sets first, in their final order, then each churn snapshot), so
/// that the caller can write one while the next is built. Where the
/// subscribers are more than `s.block_subscribers`, the bills are spilled
/// to disk by block of subscribers ([`ledger::Blocks`]) and the outputs
/// built a block at a time: each block hands the sink every part in the
/// same order, its rows the block's share of the whole, in the whole's
/// order (blocks are ranges of the ids' sort order), so that the parts
/// appended block after block are the outputs built at once. Memory then
/// holds a block's bills and rows, not billing's.
pub fn build(
    inputs: &Inputs,
    s: &FeatureSettings,
    dates: Dates,
    sink: &mut dyn FnMut(Part, &DataFrame) -> Result<()>,
) -> Result<Features> {
    let step = |name: &str| tracing::debug!(step = name, "features");
    let end = dates.data_end;
    // About ten events per subscriber (each defection, the as-of date, each
    // snapshot): their billing features walk the bills grouped once.
    // The smaller tables read once, their ids coded, for the event sets'
    // joins; the outputs get the text ids back.
    let inputs = inputs.clone().with_codes()?;
    let subscribers = inputs.ids().map_or(0, |ids| ids.len());
    let (snapshots, snapshot_notes) = snapshot_dates(&inputs, s, end)?;
    let mut built = Built::new(s);
    let blocks = if subscribers <= s.block_subscribers as usize {
        let inputs = inputs.with_ledger(s.margin_rate)?;
        step("bills by subscriber");
        built.block(&inputs, s, &dates, &snapshots, sink)?;
        1
    } else {
        let ids = inputs.ids().expect("coded above");
        let mut blocks = ledger::Blocks::spill(
            inputs.bill_columns(s.margin_rate, true),
            s.margin_rate,
            ids,
            s.block_subscribers as usize,
            inputs.spill()?,
        )?;
        step("bills by block");
        for b in 0..blocks.len() {
            let codes = blocks.codes(b);
            let ledger = blocks.ledger(b)?;
            tracing::debug!(block = b, codes = ?codes, "features: block's bills");
            let block = inputs.restricted(codes, ledger);
            built.block(&block, s, &dates, &snapshots, sink)?;
        }
        blocks.len()
    };
    step("snapshots");
    let (manifest, level_notes) = manifest(s, &built.lapsed_schema, &built.seen);
    Ok(Features {
        lapsed_rows: built.lapsed_rows,
        active_rows: built.active_rows,
        lapsed_nulls: built.lapsed_nulls,
        active_nulls: built.active_nulls,
        offer_rows: built.offer_rows,
        offers_unobserved: built.offers_unobserved,
        second_lifetime_rows: built.second_lifetime_rows,
        snapshot_rows: built.snapshot_rows,
        as_of: dates.as_of,
        data_end: end,
        snapshots,
        snapshot_notes,
        blocks,
        manifest,
        level_notes,
    })
}

/// The churn snapshots' dates, and notes on those left out or whose
/// horizon is not observed.
fn snapshot_dates(
    inputs: &Inputs,
    s: &FeatureSettings,
    end: NaiveDate,
) -> Result<(Vec<NaiveDate>, Vec<String>)> {
    let mut notes = Vec::new();
    let snapshots = if s.snapshots.is_empty() {
        // A default snapshot whose horizon ends before the first recorded
        // defection is left out: the history records no churn then (a
        // cross-sectional extract records only the churn after its one
        // snapshot), and its rows would all say "stayed".
        let first = first_churn(inputs)?;
        let mut kept = Vec::new();
        for d in default_snapshots(
            end,
            s.churn_horizon_days,
            s.snapshot_every_months,
            s.snapshot_count,
        ) {
            let horizon_end = d + chrono::Duration::days(i64::from(s.churn_horizon_days));
            match first {
                Some(f) if horizon_end < f => notes.push(format!(
                    "snapshot {d} left out: its {}-day horizon ends {horizon_end}, before the first recorded defection ({f})",
                    s.churn_horizon_days
                )),
                _ => kept.push(d),
            }
        }
        kept
    } else {
        s.snapshots.clone()
    };
    for d in &snapshots {
        let horizon_end = *d + chrono::Duration::days(i64::from(s.churn_horizon_days));
        if horizon_end > end {
            notes.push(format!(
                "snapshot {d}: its {}-day horizon ends {horizon_end}, after the data's end {end}; its rows are not used to train (set [features] data_end if the extract covers it)",
                s.churn_horizon_days
            ));
        }
    }
    Ok((snapshots, notes))
}

/// What [`build`] keeps of the parts handed on, block after block.
struct Built {
    names: Vec<String>,
    seen: Seen,
    lapsed_schema: Schema,
    lapsed_rows: usize,
    active_rows: usize,
    lapsed_nulls: BTreeMap<String, usize>,
    active_nulls: BTreeMap<String, usize>,
    offer_rows: usize,
    offers_unobserved: Vec<NaiveDate>,
    second_lifetime_rows: usize,
    snapshot_rows: usize,
}

/// Adds `df`'s null counts to `nulls`, column by column.
fn count_nulls(nulls: &mut BTreeMap<String, usize>, df: &DataFrame) {
    for c in df.columns() {
        *nulls.entry(c.name().to_string()).or_default() += c.null_count();
    }
}

impl Built {
    fn new(s: &FeatureSettings) -> Built {
        Built {
            names: one_hot_names(s),
            seen: Seen::new(),
            lapsed_schema: Schema::default(),
            lapsed_rows: 0,
            active_rows: 0,
            lapsed_nulls: BTreeMap::new(),
            active_nulls: BTreeMap::new(),
            offer_rows: 0,
            offers_unobserved: Vec::new(),
            second_lifetime_rows: 0,
            snapshot_rows: 0,
        }
    }

    /// Builds every part of `inputs`' subscribers (all, or a block's) and
    /// hands each to `sink`: the four sets, then each snapshot of
    /// `snapshots`.
    fn block(
        &mut self,
        inputs: &Inputs,
        s: &FeatureSettings,
        dates: &Dates,
        snapshots: &[NaiveDate],
        sink: &mut dyn FnMut(Part, &DataFrame) -> Result<()>,
    ) -> Result<()> {
        let step = |name: &str| tracing::debug!(step = name, "features");
        let (as_of, end) = (dates.as_of, dates.data_end);
        let lapsed = collect(lapsed(inputs, s)?, "lapsed subscribers")?;
        step("lapsed");
        let active = {
            let events = active_events(inputs, as_of)?;
            collect(
                behaviour(inputs, events, s)?
                    .drop(cols([f::EVENT]))
                    .with_column(lit(horizon_quarter(as_of)).alias(f::HORIZON_QUARTER)),
                "active subscribers",
            )?
        };
        step("active");
        let offers = offers(inputs, &lapsed, s, end)?;
        step("offers");
        let second_lifetime = second_lifetimes(inputs, &lapsed, s, end)?;
        step("second lifetimes");
        // Rows in a stable order: the streaming engine does not keep one, and
        // the models' seeded splits and subsamples go by row position.
        // Codes sort as their ids do, so the order is the same either way.
        // The internal event key goes where a set carries it.
        let order = |df: DataFrame, by: &[&str], what: &str| -> Result<DataFrame> {
            let err = || Error::polars(format!("features: order of {what}"));
            let df = match df.get_column_index(f::EVENT) {
                Some(_) => df.drop(f::EVENT).map_err(err())?,
                None => df,
            };
            inputs.decode(
                df.sort(by.to_vec(), SortMultipleOptions::default())
                    .map_err(err())?,
            )
        };
        let lapsed = order(lapsed, &[col::SUBSCRIBER_ID, col::CHURNED_AT], "lapsed")?;
        let active = order(active, &[col::SUBSCRIBER_ID], "active")?;
        let offers = order(offers, &[col::SUBSCRIBER_ID, col::OFFERED_AT], "offers")?;
        let second_lifetime = order(
            second_lifetime,
            &[col::SUBSCRIBER_ID, col::RETURNED_AT],
            "second lifetimes",
        )?;
        for (part, df) in [
            (Part::Lapsed, &lapsed),
            (Part::Active, &active),
            (Part::Offers, &offers),
            (Part::SecondLifetime, &second_lifetime),
        ] {
            sink(part, df)?;
        }
        // The sets are the sink's from here: only what the summary and
        // the manifest say of them is kept through the snapshots.
        if self.lapsed_schema.is_empty() {
            self.lapsed_schema = lapsed.schema().as_ref().clone();
        }
        see(&mut self.seen, &lapsed, &self.names);
        self.lapsed_rows += lapsed.height();
        self.active_rows += active.height();
        count_nulls(&mut self.lapsed_nulls, &lapsed);
        count_nulls(&mut self.active_nulls, &active);
        self.offer_rows += offers.height();
        self.offers_unobserved.extend(unobserved_offers(&offers));
        self.second_lifetime_rows += second_lifetime.height();
        drop((lapsed, active, offers, second_lifetime));
        // One snapshot at a time, handed to the caller as soon as it is
        // built, so that memory holds a snapshot's rows or two (the one
        // being built, and the one the caller is writing), whatever their
        // number.
        for (i, d) in snapshots.iter().enumerate() {
            let df = inputs.decode(churn_snapshot(inputs, *d, i as u32, s, end)?)?;
            see(&mut self.seen, &df, &self.names);
            self.snapshot_rows += df.height();
            sink(Part::Snapshot(i, *d), &df)?;
            tracing::trace!("features: snapshot handed on");
        }
        Ok(())
    }
}

/// The days the offers of `offers` were made whose response window ends
/// after the data's end ([`f::WINDOW_OBSERVED`] false), one per such offer.
fn unobserved_offers(offers: &DataFrame) -> Vec<NaiveDate> {
    let (Ok(observed), Ok(made)) = (
        offers.column(f::WINDOW_OBSERVED),
        offers.column(col::OFFERED_AT),
    ) else {
        return Vec::new();
    };
    let (Ok(observed), Ok(made)) = (observed.bool(), made.cast(&DataType::Int32)) else {
        return Vec::new();
    };
    let Ok(made) = made.i32() else {
        return Vec::new();
    };
    observed
        .iter()
        .zip(made.iter())
        .filter(|(w, _)| *w == Some(false))
        .filter_map(|(_, d)| d.map(from_epoch_days))
        .collect()
}

/// The features as of `as_of` for scoring, from the features stage's
/// active and lapsed rows as written (`run` reads them back after
/// training): what [`current`] builds from the inputs, without building
/// it again. The active rows are the stage's; the lapsed rows are, per
/// subscriber not active at the date, the latest defection on or before
/// it (of defections on one day, the last leave reason in sort order, as
/// [`current`] picks), with `days_since_defection` at the date. A lapsed
/// row's features are as of its defection, whatever the date, so they are
/// the rows [`current`] computes.
pub fn current_of(
    active: DataFrame,
    lapsed: &DataFrame,
    as_of: NaiveDate,
    data_end: NaiveDate,
    s: &FeatureSettings,
) -> Result<Current> {
    {
        let err = || Error::polars("features: lapsed as of the date");
        let sorted = lapsed
            .clone()
            .lazy()
            .filter(col(col::CHURNED_AT).lt_eq(date_lit(as_of)))
            .sort(
                [col::SUBSCRIBER_ID, col::CHURNED_AT, col::LEAVE_REASON],
                SortMultipleOptions::default().with_nulls_last(false),
            );
        let sorted = collect(sorted, "lapsed as of the date")?;
        // Each subscriber's last row.
        let ids = sorted
            .column(col::SUBSCRIBER_ID)
            .map_err(err())?
            .str()
            .map_err(err())?
            .rechunk();
        let ids = ids.downcast_as_array();
        let last: BooleanChunked = (0..ids.len())
            .map(|i| i + 1 == ids.len() || ids.get(i) != ids.get(i + 1))
            .collect();
        let latest = sorted.filter(&last).map_err(err())?;
        let lapsed = join(
            latest.lazy(),
            active.clone().lazy().select([col(col::SUBSCRIBER_ID)]),
            &[col::SUBSCRIBER_ID],
            JoinType::Anti,
        )
        .sort([col::SUBSCRIBER_ID], SortMultipleOptions::default())
        .with_column(
            (lit(epoch_days(as_of)) - col(col::CHURNED_AT).cast(DataType::Int32))
                .alias(f::DAYS_SINCE_DEFECTION),
        );
        let lapsed = collect(lapsed, "lapsed as of the date")?;
        Ok(Current::new(lapsed, active, as_of, data_end, s))
    }
}

/// The first recorded defection, if any.
fn first_churn(inputs: &Inputs) -> Result<Option<NaiveDate>> {
    let df = collect(
        inputs
            .get(Table::ChurnEvents)
            .select([col(col::CHURNED_AT).cast(DataType::Int32).min().alias("d")]),
        "first churn event",
    )?;
    Ok(df
        .column("d")
        .ok()
        .and_then(|c| c.i32().ok().and_then(|c| c.get(0)))
        .map(from_epoch_days))
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

impl Current {
    /// The rows with the manifest of the categories seen in them.
    fn new(
        lapsed: DataFrame,
        active: DataFrame,
        as_of: NaiveDate,
        data_end: NaiveDate,
        s: &FeatureSettings,
    ) -> Current {
        let mut seen = Seen::new();
        let names = one_hot_names(s);
        see(&mut seen, &lapsed, &names);
        see(&mut seen, &active, &names);
        let (manifest, _) = manifest(s, lapsed.schema(), &seen);
        Current {
            lapsed,
            active,
            as_of,
            data_end,
            manifest,
        }
    }
}

/// The lapsed subscribers among `defections` (`subscriber_id`, `as_of`,
/// `leave_reason`: each defection up to the date): per subscriber not in
/// `active`, the latest defection's day and, of that day's, the last leave
/// reason in sort order (a null day before any other, a null reason
/// before any other), in no particular order. The rows of a polars
/// `group_by` with `max` and `sort_by(..).last()` then an anti-join on
/// the active ids, without hashing owned ids: subscribers are grouped by
/// their first row through an index of the ids ([`ids::StrIndex`]), and
/// the active ones found through another (null ids are a subscriber of
/// their own, never active, as in the join).
fn lapsed_at(defections: &DataFrame, active: &StringChunked) -> Result<DataFrame> {
    let step = "features: lapsed subscribers";
    let err = || Error::polars(step);
    let (ids, days) = ids::ids_and_days(defections, col::SUBSCRIBER_ID, f::AS_OF, step)?;
    let reasons = defections
        .column(col::LEAVE_REASON)
        .and_then(|c| c.str().cloned())
        .map_err(err())?;
    let reasons: Vec<Option<&str>> = reasons.iter().collect();
    let (_, firsts) = ids::StrIndex::build(&ids);
    let null_group = firsts.iter().position(|g| *g == ids::NO_CODE);
    // Per subscriber (by its first row), the row of its latest defection.
    let mut latest = vec![ids::NO_CODE; firsts.len()];
    for (row, first) in firsts.iter().enumerate() {
        let group = match *first {
            ids::NO_CODE => null_group.unwrap_or(row),
            first => first as usize,
        };
        let at = &mut latest[group];
        let key = |r: usize| (days[r], reasons[r]);
        if *at == ids::NO_CODE || key(row) > key(*at as usize) {
            *at = row as u32;
        }
    }
    let (active, _) = ids::StrIndex::build(active);
    let rows: Vec<IdxSize> = latest
        .iter()
        .filter(|r| **r != ids::NO_CODE)
        .filter(|r| {
            ids.get(**r as usize)
                .is_none_or(|id| active.get(id).is_none())
        })
        .map(|r| *r as IdxSize)
        .collect();
    defections
        .take(&IdxCa::from_vec("".into(), rows))
        .map_err(err())
}

/// Builds [`Current`] as of `dates.as_of`; no labels, no snapshots. The
/// active and the lapsed subscribers are one set of events, so that each
/// table (billing above all) is read once for both.
pub fn current(inputs: &Inputs, s: &FeatureSettings, dates: Dates) -> Result<Current> {
    current_events(inputs, s, dates)?.finish(inputs, s, None)
}

/// [`current`]'s work before the bills: the events as of the date (the
/// active subscribers, then the lapsed ones) with their lifetimes. It
/// reads every table but billing, so it can be built before validation
/// reads the bills, and that read can add up the events' bills
/// ([`CurrentEvents::tap`]) in place of a pass of their own.
pub struct CurrentEvents {
    dates: Dates,
    n_active: usize,
    lapsed: DataFrame,
    staged: behaviour::Staged,
}

/// The events' bill sums that a [`BillTap`] adds up.
pub struct TappedBills {
    sums: Arc<Mutex<ledger::EventSums>>,
    event: Column,
}

/// [`CurrentEvents`] as of `dates.as_of`, from every table of `inputs` but
/// billing.
pub fn current_events(inputs: &Inputs, s: &FeatureSettings, dates: Dates) -> Result<CurrentEvents> {
    let as_of = dates.as_of;
    let err = || Error::polars("features: events as of the date");
    let active_ids = active_at(inputs, as_of);
    let active = collect(
        active_ids
            .clone()
            .sort([col::SUBSCRIBER_ID], SortMultipleOptions::default()),
        "active subscribers",
    )?;
    tracing::trace!(rows = active.height(), "features: active subscribers");
    let defections = collect(
        defections(inputs).filter(col(f::AS_OF).lt_eq(date_lit(as_of))),
        "lapsed subscribers",
    )?;
    let active_ids = active
        .column(col::SUBSCRIBER_ID)
        .and_then(|c| c.str().cloned())
        .map_err(err())?;
    let lapsed = collect(
        lapsed_at(&defections, &active_ids)?
            .lazy()
            .sort([col::SUBSCRIBER_ID], SortMultipleOptions::default()),
        "lapsed subscribers",
    )?;
    drop(defections);
    tracing::trace!(rows = lapsed.height(), "features: lapsed subscribers");
    // Events 0.. are the active subscribers, then the lapsed ones, each in
    // subscriber order.
    let n_active = active.height();
    let events = active
        .select([col::SUBSCRIBER_ID, f::AS_OF])
        .map_err(err())?
        .vstack(
            &lapsed
                .select([col::SUBSCRIBER_ID, f::AS_OF])
                .map_err(err())?,
        )
        .map_err(err())?
        .lazy()
        .with_row_index(f::EVENT, None);
    let staged = behaviour::behaviour_staged(inputs, events, s, None)?;
    Ok(CurrentEvents {
        dates,
        n_active,
        lapsed,
        staged,
    })
}

impl CurrentEvents {
    /// A tap on validation's pass over the bills ([`BillTap`]) that adds
    /// each bill to the sums of its subscriber's events, the subscribers
    /// coded by `index` (validation's accepted subscribers, as the tap's
    /// batches are); the sums to give [`CurrentEvents::finish`].
    pub(crate) fn tap(
        &self,
        s: &FeatureSettings,
        index: &ids::StrIndex,
    ) -> Result<(BillTap, TappedBills)> {
        let err = || Error::polars("features: events' bill months");
        let months = self.staged.bill_months(s)?;
        let ids = months
            .column(col::SUBSCRIBER_ID)
            .and_then(|c| c.str().cloned())
            .map_err(err())?;
        let codes = ids::codes_in_runs(&ids, |id, before| index.get_after(id, before));
        let coded: Vec<(u32, u32)> = (0..codes.len() as u32).zip(codes).collect();
        let sums = Arc::new(Mutex::new(ledger::EventSums::new(
            &months,
            &coded,
            index.rows(),
        )?));
        let event = months.column(f::EVENT).map_err(err())?.clone();
        let (into, rate) = (sums.clone(), s.margin_rate);
        let tap: BillTap = Box::new(move |batch| {
            into.lock()
                .unwrap_or_else(|e| e.into_inner())
                .add_batch(batch, rate);
        });
        Ok((tap, TappedBills { sums, event }))
    }

    /// [`Current`] from these events: their bills' sums from `bills` (a
    /// tap that saw every accepted bill) or else from a pass over billing,
    /// and the other tables' aggregates, from `inputs` (the same tables
    /// the events were found in, and billing).
    pub fn finish(
        self,
        inputs: &Inputs,
        s: &FeatureSettings,
        bills: Option<TappedBills>,
    ) -> Result<Current> {
        let CurrentEvents {
            dates,
            n_active,
            lapsed,
            staged,
        } = self;
        let (as_of, end) = (dates.as_of, dates.data_end);
        let sums = match bills {
            Some(TappedBills { sums, event }) => {
                let sums = std::mem::take(&mut *sums.lock().unwrap_or_else(|e| e.into_inner()));
                Some(sums.frame(event)?)
            }
            None => None,
        };
        let rows = collect(
            behaviour::behaviour_finished(inputs, staged, s, None, sums)?,
            "subscribers as of the date",
        )?;
        finish_current(rows, n_active, lapsed, as_of, end, s)
    }
}

/// [`current`]'s rows put in their events' order and cut into the active
/// and the lapsed subscribers.
fn finish_current(
    rows: DataFrame,
    n_active: usize,
    lapsed: DataFrame,
    as_of: NaiveDate,
    end: NaiveDate,
    s: &FeatureSettings,
) -> Result<Current> {
    let err = || Error::polars("features: events as of the date");
    tracing::trace!("features: events' rows collected");
    // One row per event (validation leaves each subscriber id once), or
    // the slices below would mix the two sets.
    let n_events = n_active + lapsed.height();
    let rows = in_event_order(rows, n_events)?.map_err(|height| Error::Data {
        table: Table::Subscribers.name().into(),
        message: format!(
            "{height} rows of features for {n_events} subscribers as of {as_of}: a `subscriber_id` is not unique"
        ),
    })?;
    tracing::trace!("features: rows in event order");
    // The two sets are slices of the rows, their new columns added in
    // place: a query over them would copy every column (at 10M subscribers
    // 31 columns of 6.5M rows).
    let mut active = rows.slice(0, n_active);
    let quarter = Scalar::new(
        DataType::String,
        AnyValue::StringOwned(horizon_quarter(as_of).into()),
    );
    active
        .with_column(Column::new_scalar(
            f::HORIZON_QUARTER.into(),
            quarter,
            n_active,
        ))
        .map_err(err())?;
    let mut lapsed_rows = rows.slice(n_active as i64, lapsed.height());
    drop(rows);
    lapsed_rows
        .with_column(lapsed.column(col::LEAVE_REASON).map_err(err())?.clone())
        .map_err(err())?;
    lapsed_rows
        .rename(f::AS_OF, col::CHURNED_AT.into())
        .map_err(err())?;
    let as_of_day = epoch_days(as_of);
    let since = lapsed_rows
        .column(col::CHURNED_AT)
        .and_then(|c| c.cast(&DataType::Int32))
        .map_err(err())?
        .i32()
        .map_err(err())?
        .apply_values(|day| as_of_day - day)
        .with_name(f::DAYS_SINCE_DEFECTION.into())
        .into_column();
    lapsed_rows.with_column(since).map_err(err())?;
    Ok(Current::new(lapsed_rows, active, as_of, end, s))
}

/// The rows of `rows` in the order of their [`f::EVENT`] (dropped), when
/// they are one row for each event `0..events`; otherwise their number, as
/// the error. A column at a time on each core, each freed once taken, so
/// that memory holds a column twice per core, not the whole frame, as a
/// sort does.
fn in_event_order(rows: DataFrame, events: usize) -> Result<std::result::Result<DataFrame, usize>> {
    let err = || Error::polars("features: rows in event order");
    let height = rows.height();
    if height != events {
        return Ok(Err(height));
    }
    let mut place: Vec<IdxSize> = vec![IdxSize::MAX; events];
    let event = rows.column(f::EVENT).map_err(err())?;
    let event = event.cast(&IDX_DTYPE).map_err(err())?;
    for (row, e) in event.idx().map_err(err())?.iter().enumerate() {
        match e.and_then(|e| place.get_mut(e as usize)) {
            Some(p) if *p == IdxSize::MAX => *p = row as IdxSize,
            _ => return Ok(Err(height)),
        }
    }
    // Rows in event order already (the joins kept the events' order): as
    // they are.
    if place.iter().enumerate().all(|(row, p)| *p as usize == row) {
        return rows.drop(f::EVENT).map(Ok).map_err(err());
    }
    let order = IdxCa::from_vec("".into(), place);
    // A column per task: each gather is serial, and at 10M subscribers
    // the 31 columns took 3 s on one core.
    let out = rows
        .into_columns()
        .into_par_iter()
        .filter(|c| c.name().as_str() != f::EVENT)
        .map(|c| {
            // One chunk first: the streaming engine leaves a hundred or so,
            // and a gather across them cost four times as much (at 10M
            // subscribers 10.5 s against 2.5 s for the 31 columns).
            c.rechunk().take(&order).map_err(err())
        })
        .collect::<Result<Vec<_>>>()?;
    DataFrame::new(events, out).map(Ok).map_err(err())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`kept_levels`] keeps the most frequent levels (ties by name) with
    /// enough rows, at most `max_levels`, in name order, and says what it
    /// left out; [`see`] counts the rows of each level.
    #[test]
    fn rare_and_surplus_levels_are_left_to_other() {
        let df = df! {
            "plan" => [Some("b"), Some("a"), Some("c"), Some("b"), None, Some("d"), Some("a"), Some("b"), Some("c")],
        }
        .unwrap();
        let mut seen = Seen::new();
        see(&mut seen, &df, &["plan".to_string()]);
        see(&mut seen, &df.slice(0, 3), &["plan".to_string()]);
        let counts = &seen["plan"];
        let got: Vec<(&str, u64)> = counts.iter().map(|(l, n)| (l.as_str(), *n)).collect();
        assert_eq!(got, [("a", 3), ("b", 4), ("c", 3), ("d", 1)]);
        let with = |max_levels, min_level_rows| FeatureSettings {
            max_levels,
            min_level_rows,
            ..FeatureSettings::default()
        };
        let (all, note) = kept_levels("plan", counts, &with(10, 1));
        assert_eq!(all, ["a", "b", "c", "d"]);
        assert_eq!(note, None);
        // `d` too rare; of a and c (3 rows each) the first by name.
        let (two, note) = kept_levels("plan", counts, &with(2, 2));
        assert_eq!(two, ["a", "b"]);
        let note = note.unwrap();
        assert!(
            note.starts_with("plan: 4 levels seen, 2 kept")
                && note.contains("the other 2 (4 rows) are read as `other`"),
            "{note}"
        );
        let (rare, _) = kept_levels("plan", counts, &with(50, 4));
        assert_eq!(rare, ["b"]);
        let (none, note) = kept_levels("plan", counts, &with(50, 5));
        assert!(none.is_empty());
        assert!(note.unwrap().contains("0 kept"));
    }

    /// [`unobserved_offers`] gives the day of each offer whose window the
    /// data does not cover, and only those: an observed window, an unknown
    /// one and an offer without a day give none.
    #[test]
    fn unobserved_offers_are_the_offers_whose_window_is_not_observed() {
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        let days = [
            Some(day(2025, 1, 5)),
            Some(day(2025, 11, 2)),
            Some(day(2025, 12, 30)),
            None,
            Some(day(2025, 12, 1)),
        ];
        let offers = DataFrame::new(
            days.len(),
            vec![
                Column::new(
                    f::WINDOW_OBSERVED.into(),
                    [Some(true), Some(false), None, Some(false), Some(false)],
                ),
                Column::new(
                    col::OFFERED_AT.into(),
                    days.iter().map(|d| d.map(epoch_days)).collect::<Vec<_>>(),
                )
                .cast(&DataType::Date)
                .unwrap(),
            ],
        )
        .unwrap();
        assert_eq!(
            unobserved_offers(&offers),
            vec![day(2025, 11, 2), day(2025, 12, 1)]
        );
        // Without the columns (no offers table), none.
        assert!(unobserved_offers(&DataFrame::empty()).is_empty());
    }

    /// [`lapsed_at`] gives the rows of the polars query it replaces: a
    /// `group_by` of the defections by subscriber with the latest day and,
    /// of that day's, the last reason in sort order, then an anti-join on
    /// the active ids; over ids repeated in and out of runs, null ids,
    /// days and reasons, ties on the day, and active subscribers.
    #[test]
    fn lapsed_subscribers_are_the_grouped_and_anti_joined_defections() {
        use rand::{Rng, SeedableRng};
        let reasons = ["price", "service", "both", "other", "unknown"];
        for seed in 0..4u64 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let n = [1, 40, 3_000, 20_000][seed as usize];
            let subscribers = (n / 3).max(1);
            let mut id = 0usize;
            let rows: Vec<(Option<String>, Option<i32>, Option<&str>)> = (0..n)
                .map(|_| {
                    if rng.random_bool(0.4) {
                        id = rng.random_range(0..subscribers);
                    }
                    (
                        (!rng.random_bool(0.02)).then(|| format!("S{id:07}")),
                        (!rng.random_bool(0.02)).then(|| 19_000 + rng.random_range(0..30)),
                        (!rng.random_bool(0.05)).then(|| reasons[rng.random_range(0..5)]),
                    )
                })
                .collect();
            let days = Column::new(
                f::AS_OF.into(),
                rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            )
            .cast(&DataType::Date)
            .unwrap();
            let defections = DataFrame::new(
                n,
                vec![
                    Column::new(
                        col::SUBSCRIBER_ID.into(),
                        rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
                    ),
                    days,
                    Column::new(
                        col::LEAVE_REASON.into(),
                        rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                    ),
                ],
            )
            .unwrap();
            let active: Vec<String> = (0..subscribers)
                .filter(|i| i % 4 == 1)
                .map(|i| format!("S{i:07}"))
                .chain(["S-not-lapsed".to_string()])
                .collect();
            let active =
                StringChunked::from_iter_values("id".into(), active.iter().map(|s| s.as_str()));
            let sort = |df: DataFrame| {
                df.lazy()
                    .sort([col::SUBSCRIBER_ID], SortMultipleOptions::default())
                    .collect()
                    .unwrap()
            };
            let ours = sort(lapsed_at(&defections, &active).unwrap());
            let theirs = sort(
                join(
                    defections
                        .clone()
                        .lazy()
                        .group_by([col(col::SUBSCRIBER_ID)])
                        .agg([
                            col(f::AS_OF).max(),
                            col(col::LEAVE_REASON)
                                .sort_by(
                                    [col(f::AS_OF), col(col::LEAVE_REASON)],
                                    SortMultipleOptions::default().with_nulls_last(false),
                                )
                                .last(),
                        ]),
                    DataFrame::new(
                        active.len(),
                        vec![
                            active
                                .clone()
                                .into_series()
                                .with_name(col::SUBSCRIBER_ID.into())
                                .into(),
                        ],
                    )
                    .unwrap()
                    .lazy(),
                    &[col::SUBSCRIBER_ID],
                    JoinType::Anti,
                )
                .collect()
                .unwrap(),
            );
            assert!(ours.height() > 0 || n < 3, "seed {seed}");
            assert_eq!(ours, theirs, "seed {seed}");
        }
    }

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

    /// Rows in any order come back in their events' order, the event
    /// column dropped, as a sort by it gives; a missing, repeated or
    /// unknown event is refused with the number of rows.
    #[test]
    fn rows_come_back_in_event_order_or_are_refused() {
        let rows = |events: Vec<u32>| {
            let n = events.len();
            let x: Vec<f64> = events.iter().map(|e| f64::from(*e) * 1.5).collect();
            let id: Vec<String> = events.iter().map(|e| format!("s{e}")).collect();
            DataFrame::new(
                n,
                vec![
                    Column::new("x".into(), x),
                    Column::new(f::EVENT.into(), events),
                    Column::new(col::SUBSCRIBER_ID.into(), id),
                ],
            )
            .unwrap()
        };
        for n in [0u32, 1, 2, 7, 1000] {
            let mut events: Vec<u32> = (0..n).collect();
            // A fixed shuffle: each event's place by a multiplicative step.
            events
                .sort_by_key(|e| (u64::from(*e) * 7919) % u64::from(n.max(1)) + u64::from(*e % 3));
            let df = rows(events);
            let want = df
                .sort([f::EVENT], SortMultipleOptions::default())
                .unwrap()
                .drop(f::EVENT)
                .unwrap();
            let got = in_event_order(df, n as usize).unwrap().unwrap();
            assert!(got.equals(&want), "{n} rows: {got} against {want}");
            let names: Vec<&str> = got.get_column_names().iter().map(|c| c.as_str()).collect();
            assert_eq!(names, ["x", col::SUBSCRIBER_ID]);
        }
        // Already in order: as they are, less the event.
        let df = rows((0..50).collect());
        let want = df.drop(f::EVENT).unwrap();
        assert!(in_event_order(df, 50).unwrap().unwrap().equals(&want));
        let refused = |events: Vec<u32>, n: usize| in_event_order(rows(events), n).unwrap();
        assert_eq!(refused(vec![0, 1, 1], 3).unwrap_err(), 3);
        assert_eq!(refused(vec![0, 1, 3], 3).unwrap_err(), 3);
        assert_eq!(refused(vec![0, 1, 2, 2], 3).unwrap_err(), 4);
        assert_eq!(refused(vec![0, 1], 3).unwrap_err(), 2);
    }

    #[test]
    fn default_snapshots_end_at_the_last_observed_month_start() {
        let end = NaiveDate::from_ymd_opt(2025, 12, 31).unwrap();
        let d = default_snapshots(end, 90, 3, 4);
        let s: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        assert_eq!(s, ["2025-01-01", "2025-04-01", "2025-07-01", "2025-10-01"]);
    }
}
