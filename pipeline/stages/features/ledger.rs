//! The bills of every subscriber, grouped once and sorted by month, for
//! the billing features of many events at a time ([`Ledger::build_coded`]
//! streams billing twice: the ids, then the amounts).
//!
//! The features stage computes billing features for about ten events per
//! subscriber (each defection, the as-of date, every churn snapshot). The
//! plain way, joining every bill to every event of its subscriber and
//! aggregating, reads each bill once per event. [`Ledger`] groups the bills
//! by subscriber once; each event then walks its own subscriber's bills up to
//! the latest month known at its date, so the cost is the bills once plus
//! the events, whatever the number of snapshots. The second lifetimes read
//! their bills from it too ([`Ledger::lifetime_bills`]), where joining
//! every bill to the returns took 2 of the stage's 14 s at 1M subscribers.
//!
//! Where the subscribers are more than a block ([`Blocks`]), the bills are
//! spilled to disk by block of subscribers in one pass, and the stage
//! holds one block's ledger at a time.
//!
//! Where there is one event per subscriber (scoring), holding every bill
//! is not worth it: [`stream`] adds each bill, as it streams past, to the
//! sums of its subscriber's events, holding only the events' sums. Both
//! give the same sums as joining the bills to the events
//! ([`super::behaviour`] rounds all to the 1e-9 grid) and are tested
//! against that join, which is not used outside the tests.

use std::sync::{Arc, Mutex};

use polars::prelude::*;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::schema::col;
use crate::stages::collect;
use crate::stages::validate::BillBatch;

use super::calendar::{MonthMemo, month_of_day};
use super::frames::read_bill;
use super::ids::{Ids, NO_CODE, StrIndex, codes_in_runs, is_valid};
use super::manifest::f;

/// Every bill with a revenue, grouped by subscriber and sorted by month.
pub struct Ledger {
    /// How the subscribers are keyed.
    keys: Keys,
    /// Bills of subscriber `c` are `bills[offsets[c]..offsets[c + 1]]`.
    offsets: Vec<usize>,
    bills: Vec<Bill>,
    /// Whether every bill is dated on its month's first day, as the
    /// contract has it: a bill's date is then its month's.
    first_days: bool,
    /// The margin rate the margins were computed with.
    pub(crate) margin_rate: f64,
}

/// A bill as the ledger holds it: its fields side by side (24 bytes), so
/// that placing a bill writes one place, not one per column, and walking a
/// subscriber's bills reads one run of memory.
#[derive(Debug, Default, Clone, Copy, PartialEq, bytemuck::Zeroable)]
struct Bill {
    /// Month index (`year * 12 + month`).
    month: i32,
    /// Whether the bill has a cost to serve.
    costed: bool,
    revenue: f64,
    /// Revenue less cost to serve, or revenue times the margin rate.
    margin: f64,
}

/// How a [`Ledger`]'s subscribers are keyed.
enum Keys {
    /// On the inputs' subscriber codes ([`Ids`]): a code is its index in
    /// the offsets.
    Codes,
    /// On text ids: `subscriber_id` and `__code`, its index in the
    /// offsets.
    Text(DataFrame),
}

/// One event's bill sums: over every bill known at its date, over its
/// current lifetime, and over the last three and the three before those
/// of the lifetime's months (72 bytes: scoring at 10M subscribers holds
/// one per subscriber while validation's pass over the bills runs, beside
/// billing's mapped file, when the process's memory peaks).
#[derive(Clone, Copy)]
struct Sums {
    margin_all: f64,
    life_revenue: f64,
    life_margin: f64,
    last3_revenue: f64,
    last3_margin: f64,
    prev3_revenue: f64,
    /// The largest revenue of the last three months: NaN until the first
    /// (`f64::max` then takes the bill's), read only when `n3 > 0`.
    max3: f64,
    n_life: u32,
    n3: u32,
    n_prev3: u32,
}

// The size the docs give, held by the compiler.
const _: () = assert!(std::mem::size_of::<Sums>() == 72);

impl Default for Sums {
    fn default() -> Sums {
        Sums {
            margin_all: 0.0,
            life_revenue: 0.0,
            life_margin: 0.0,
            last3_revenue: 0.0,
            last3_margin: 0.0,
            prev3_revenue: 0.0,
            max3: f64::NAN,
            n_life: 0,
            n3: 0,
            n_prev3: 0,
        }
    }
}

impl Sums {
    /// Adds a bill of month `m` (revenue `r`, margin `g`) known by month
    /// `known` (`m <= known`), to the lifetime from month `life` (no
    /// lifetime bills when unknown).
    fn add(&mut self, m: i32, r: f64, g: f64, known: i32, life: Option<i32>) {
        self.margin_all += g;
        if life.is_none_or(|l| m < l) {
            return;
        }
        self.n_life += 1;
        self.life_revenue += r;
        self.life_margin += g;
        let ago = known - m;
        if ago < 3 {
            self.n3 += 1;
            self.last3_revenue += r;
            self.last3_margin += g;
            self.max3 = self.max3.max(r);
        } else if ago < 6 {
            self.n_prev3 += 1;
            self.prev3_revenue += r;
        }
    }
}

/// The aggregates' columns: `event` beside one column per sum, named as
/// [`super::behaviour`] reads them.
fn sums_frame(event: Column, sums: &[Sums]) -> Result<DataFrame> {
    let f = |v: fn(&Sums) -> f64, name: &str| {
        Column::new(name.into(), sums.iter().map(v).collect::<Vec<f64>>())
    };
    let n = |v: fn(&Sums) -> u32, name: &str| {
        Column::new(name.into(), sums.iter().map(v).collect::<Vec<u32>>())
    };
    DataFrame::new(
        sums.len(),
        vec![
            event,
            f(|s| s.margin_all, "__margin_all"),
            n(|s| s.n_life, "__n_life"),
            f(|s| s.life_revenue, "__rev_life"),
            f(|s| s.life_margin, "__margin_life"),
            n(|s| s.n3, "__n3"),
            f(|s| s.last3_revenue, "__rev3"),
            f(|s| s.last3_margin, "__margin3"),
            n(|s| s.n_prev3, "__n_prev3"),
            f(|s| s.prev3_revenue, "__rev_prev3"),
            Column::new(
                "__revenue_max3".into(),
                sums.iter()
                    .map(|s| (s.n3 > 0).then_some(s.max3))
                    .collect::<Vec<Option<f64>>>(),
            ),
        ],
    )
    .map_err(Error::polars("features: billing aggregates"))
}

impl Ledger {
    /// Groups `bills` (`subscriber_id`, `d`: the month's day number, `r`:
    /// the revenue, `g`: the margin, computed with `margin_rate`, `k`:
    /// whether the bill has a cost to serve; the rows the features read,
    /// [`super::frames::Inputs::bill_rows`]) by subscriber, keyed on the
    /// text ids in order of first appearance: the bills read into memory
    /// at once. Where the ids are coded, [`Ledger::build_coded`] streams
    /// them instead.
    pub fn build(bills: LazyFrame, margin_rate: f64) -> Result<Ledger> {
        let err = || Error::polars("features: bills by subscriber");
        let mut bills = collect(bills, "features: bills")?;
        let rows = bills.height();
        tracing::debug!(rows, "ledger: bills read");
        let ids = bills
            .column(col::SUBSCRIBER_ID)
            .map_err(err())?
            .str()
            .map_err(err())?;
        let (code_of, names) = first_appearance_codes(ids);
        let ids = DataFrame::new(
            names.len(),
            vec![
                Column::new(col::SUBSCRIBER_ID.into(), &names),
                Column::new(
                    "__code".into(),
                    (0..names.len() as IdxSize).collect::<Vec<IdxSize>>(),
                ),
            ],
        )
        .map_err(err())?;
        let offsets = offsets_of(&code_of, ids.height());
        // The ids are coded: their column goes before the others' chunks
        // are aligned (copied, where they differ).
        bills.drop_in_place(col::SUBSCRIBER_ID).map_err(err())?;
        let copied = bills.should_rechunk();
        bills.align_chunks_par();
        tracing::trace!(copied, "ledger: bills' chunks aligned");
        let mut places = Places::new(offsets, rayon::current_num_threads());
        places.place(&bill_chunks(&bills).map_err(err())?, &code_of);
        drop((code_of, bills));
        let (offsets, bills, first_days) = places.finish();
        tracing::debug!("ledger: bills placed");
        Ok(Ledger {
            keys: Keys::Text(ids),
            offsets,
            bills,
            first_days,
            margin_rate,
        })
    }

    /// Groups every bill of `bills` (the columns of [`Ledger::build`],
    /// unfiltered: [`super::frames::Inputs::bill_columns`]) by subscriber,
    /// keyed on the subscribers' codes (`coded`; a bill of an id no other
    /// table holds has none, and no event reads it), in two streaming
    /// passes, so that the bills as read are never held whole: the first
    /// reads the ids and whether each bill is read at all
    /// ([`super::frames::read_bill`]) and keeps each bill's code (4 bytes
    /// a bill); the second reads the other columns, in the same order, and
    /// places each bill. The stage then holds the ledger (24 bytes a bill)
    /// and the codes beside a batch. At 10M subscribers (314M bills),
    /// collecting the bills first, their text ids with them, took the
    /// features stage to a peak of 23.2 GB (README, Performance).
    pub fn build_coded(bills: LazyFrame, margin_rate: f64, coded: &Ids) -> Result<Ledger> {
        let err = || Error::polars("features: bills by subscriber");
        let subscribers = coded.len();
        if subscribers >= LEFT_OUT as usize {
            return Err(Error::Data {
                table: "subscribers".into(),
                message: format!(
                    "{subscribers} distinct subscriber ids: at most {} are supported",
                    LEFT_OUT - 1
                ),
            });
        }
        // Pass one: each bill's code ([`LEFT_OUT`] for a bill not read).
        let index = coded.str_index();
        let codes = Arc::new(Mutex::new(Vec::<u32>::new()));
        let into = codes.clone();
        let batches = tracing::trace_span!("bills' ids");
        let sink = bills
            .clone()
            .select([col(col::SUBSCRIBER_ID), read_bill().alias("__read")])
            .sink_batches(
                PlanCallback::new(move |batch: DataFrame| {
                    let _batch = batches.enter();
                    let ids = batch.column(col::SUBSCRIBER_ID)?.str()?;
                    let read = batch.column("__read")?.bool()?;
                    let mut code = codes_in_runs(ids, |id, before| index.get_after(id, before));
                    for (c, read) in code.iter_mut().zip(read.iter()) {
                        if read != Some(true) {
                            *c = LEFT_OUT;
                        }
                    }
                    into.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend_from_slice(&code);
                    Ok(false)
                }),
                true,
                None,
            )
            .map_err(err())?;
        collect(sink, "features: bills' subscribers")?;
        let code_of = std::mem::take(&mut *codes.lock().unwrap_or_else(|e| e.into_inner()));
        let rows = code_of.len();
        let offsets = offsets_of(&code_of, subscribers);
        tracing::debug!(rows, subscribers, "ledger: bills' subscribers coded");
        // Pass two: the bills placed, batch by batch, in pass one's order.
        struct Pass {
            places: Places,
            code_of: Vec<u32>,
            row: usize,
        }
        let pass = Arc::new(Mutex::new(Some(Pass {
            places: Places::new(offsets, rayon::current_num_threads()),
            code_of,
            row: 0,
        })));
        let into = pass.clone();
        let batches = tracing::trace_span!("bills' batches");
        let sink = bills
            .select([col("d"), col("r"), col("g"), col("k")])
            .sink_batches(
                PlanCallback::new(move |mut batch: DataFrame| {
                    let _batch = batches.enter();
                    let mut p = into.lock().unwrap_or_else(|e| e.into_inner());
                    let Some(Pass {
                        places,
                        code_of,
                        row,
                    }) = p.as_mut()
                    else {
                        return Ok(true);
                    };
                    let n = batch.height();
                    polars_ensure!(
                        *row + n <= code_of.len(),
                        ComputeError: "billing has more rows than when its ids were read"
                    );
                    batch.align_chunks_par();
                    places.place(&bill_chunks(&batch)?, &code_of[*row..*row + n]);
                    *row += n;
                    Ok(false)
                }),
                true,
                None,
            )
            .map_err(err())?;
        collect(sink, "features: bills")?;
        let taken = pass.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(Pass {
            places,
            row,
            code_of,
        }) = taken
        else {
            return Err(Error::Data {
                table: "billing".into(),
                message: "the bills were not placed".into(),
            });
        };
        drop(code_of);
        if row != rows {
            return Err(Error::Data {
                table: "billing".into(),
                message: format!(
                    "{rows} bills when their ids were read, {row} when their amounts were: \
                     billing changed while it was read"
                ),
            });
        }
        let (offsets, bills, first_days) = places.finish();
        tracing::debug!("ledger: bills placed");
        Ok(Ledger {
            keys: Keys::Codes,
            offsets,
            bills,
            first_days,
            margin_rate,
        })
    }

    /// Billing aggregates of each event of `events` (`__event`,
    /// `subscriber_id`, `__known`: the latest month whose bill is known,
    /// `__life_month`: the month the current lifetime started), as the
    /// columns [`super::behaviour`] aggregates from the joined bills.
    pub fn aggregate(&self, events: DataFrame) -> Result<DataFrame> {
        let err = || Error::polars("features: billing aggregates");
        let ids = match &self.keys {
            Keys::Text(ids) => ids,
            // Coded events (the inputs' events are coded with their
            // tables) on a ledger keyed on the codes.
            Keys::Codes => {
                let codes = events
                    .column(col::SUBSCRIBER_ID)
                    .and_then(|c| c.u32())
                    .map_err(err())?;
                return self.aggregate_coded(codes, &events);
            }
        };
        let coded = events
            .lazy()
            .join(
                ids.clone().lazy(),
                [col(col::SUBSCRIBER_ID)],
                [col(col::SUBSCRIBER_ID)],
                JoinArgs::new(JoinType::Left),
            )
            .select([
                col(f::EVENT),
                col("__code"),
                col("__known"),
                col("__life_month"),
            ]);
        let coded = collect(coded, "features: events' bills")?;
        let get = |name: &str| coded.column(name).map_err(err());
        let event = get(f::EVENT)?.clone();
        let code = get("__code")?.idx().map_err(err())?.clone();
        let known = get("__known")?.i32().map_err(err())?.clone();
        let life = get("__life_month")?.i32().map_err(err())?.clone();
        let code: Vec<Option<IdxSize>> = code.iter().collect();
        let known: Vec<Option<i32>> = known.iter().collect();
        let life: Vec<Option<i32>> = life.iter().collect();
        let sums: Vec<Sums> = (0..code.len())
            .into_par_iter()
            .with_min_len(4096)
            .map(|i| match (code[i], known[i]) {
                (Some(c), Some(k)) => self.sums(c as usize, k, life[i]),
                _ => Sums::default(),
            })
            .collect();
        sums_frame(event, &sums)
    }

    /// The sums of subscriber `code`'s bills known by month `known`, with
    /// the lifetime from month `life` (no lifetime bills when unknown).
    fn sums(&self, code: usize, known: i32, life: Option<i32>) -> Sums {
        let mut s = Sums::default();
        let range = self.offsets[code]..self.offsets[code + 1];
        for b in &self.bills[range] {
            if b.month > known {
                break;
            }
            s.add(b.month, b.revenue, b.margin, known, life);
        }
        s
    }
}

impl Ledger {
    /// How many subscribers the ledger keys (codes or text ids).
    fn subscribers(&self) -> usize {
        self.offsets.len() - 1
    }

    /// The ledger's row of code `c`, where the ledger is keyed on codes.
    fn of_code(&self, c: u32) -> Option<usize> {
        let c = c as usize;
        (c < self.subscribers()).then_some(c)
    }

    /// [`Ledger::aggregate`] of events whose `subscriber_id` is `codes`.
    fn aggregate_coded(&self, codes: &UInt32Chunked, events: &DataFrame) -> Result<DataFrame> {
        let err = || Error::polars("features: billing aggregates");
        let codes = codes.rechunk();
        let codes = codes.downcast_as_array();
        let month = |name: &str| -> Result<Int32Chunked> {
            Ok(events
                .column(name)
                .map_err(err())?
                .i32()
                .map_err(err())?
                .rechunk()
                .into_owned())
        };
        let (known, life) = (month("__known")?, month("__life_month")?);
        let (known, life) = (known.downcast_as_array(), life.downcast_as_array());
        let sums: Vec<Sums> = (0..codes.len())
            .into_par_iter()
            .with_min_len(4096)
            .map(
                |i| match (codes.get(i).and_then(|c| self.of_code(c)), known.get(i)) {
                    (Some(c), Some(k)) => self.sums(c, k, life.get(i)),
                    _ => Sums::default(),
                },
            )
            .collect();
        let event = events.column(f::EVENT).map_err(err())?.clone();
        sums_frame(event, &sums)
    }

    /// Whether [`Ledger::lifetime_bills`] can read the bills: the ledger
    /// is keyed on coded ids, and every bill is dated on its month's first
    /// day (a later day would decide, by itself, whether a lifetime
    /// ending that month covers the bill).
    pub(crate) fn reads_lifetimes(&self) -> bool {
        matches!(self.keys, Keys::Codes) && self.first_days
    }

    /// The bills of each lifetime `i`, the subscriber coded `codes[i]`
    /// from day `from[i]`'s month through day `to[i]` (both included), in
    /// month order, as the columns the second lifetimes join from billing:
    /// the margins' sum, the number of bills, and each bill's month (its
    /// first day), margin and whether it had a cost to serve; all null for
    /// a lifetime with no bill. `None` where [`Ledger::reads_lifetimes`]
    /// does not hold.
    pub(crate) fn lifetime_bills(
        &self,
        codes: &[Option<u32>],
        from: &[Option<i32>],
        to: &[Option<i32>],
    ) -> Result<Option<Vec<Column>>> {
        if !self.reads_lifetimes() {
            return Ok(None);
        }
        let err = || Error::polars("features: second lifetimes' bills");
        // Each lifetime's bills, a range of the ledger's rows.
        let ranges: Vec<std::ops::Range<usize>> = (0..codes.len())
            .map(|i| {
                let (Some(c), Some(a), Some(b)) = (codes[i], from[i], to[i]) else {
                    return 0..0;
                };
                let Some(l) = self.of_code(c) else {
                    return 0..0;
                };
                let (lo, hi) = (self.offsets[l], self.offsets[l + 1]);
                let bills = &self.bills[lo..hi];
                let (a, b) = (month_of_day(a), month_of_day(b));
                let start = lo + bills.partition_point(|bill| bill.month < a);
                let end = lo + bills.partition_point(|bill| bill.month <= b);
                start..end.max(start)
            })
            .collect();
        let n = ranges.len();
        let values: usize = ranges.iter().map(|r| r.len()).sum();
        let mut sum = Vec::with_capacity(n);
        let mut count = Vec::with_capacity(n);
        let mut months = ListPrimitiveChunkedBuilder::<Int32Type>::new(
            f::BILL_MONTHS.into(),
            n,
            values,
            DataType::Int32,
        );
        let mut margins = ListPrimitiveChunkedBuilder::<Float64Type>::new(
            f::BILL_MARGINS.into(),
            n,
            values,
            DataType::Float64,
        );
        // As 0 and 1, cast to booleans at the end: the boolean lists'
        // builder counts the nulls of every value so far at each list it
        // appends (quadratic: 9 s for the 213k lifetimes of 1M
        // subscribers).
        let mut costed = ListPrimitiveChunkedBuilder::<Int32Type>::new(
            f::BILL_COSTED.into(),
            n,
            values,
            DataType::Int32,
        );
        let mut first_day = FirstDays::default();
        for r in ranges {
            if r.is_empty() {
                sum.push(None);
                count.push(None);
                months.append_null();
                margins.append_null();
                costed.append_null();
                continue;
            }
            let bills = &self.bills[r];
            sum.push(Some(bills.iter().map(|b| b.margin).sum::<f64>()));
            count.push(Some(bills.len() as i32));
            months.append_values_iter(bills.iter().map(|b| first_day.of(b.month)));
            margins.append_values_iter(bills.iter().map(|b| b.margin));
            costed.append_values_iter(bills.iter().map(|b| i32::from(b.costed)));
        }
        let months = months
            .finish()
            .cast(&DataType::List(Box::new(DataType::Date)))
            .map_err(err())?;
        Ok(Some(vec![
            Column::new(f::SECOND_MARGIN.into(), sum),
            Column::new(f::SECOND_BILLS.into(), count),
            months.into_column(),
            margins.finish().into_column(),
            costed
                .finish()
                .cast(&DataType::List(Box::new(DataType::Boolean)))
                .map_err(err())?
                .into_column(),
        ]))
    }
}

/// The bills spilled to disk in blocks of subscriber codes, for a ledger
/// of one block at a time ([`Blocks::ledger`]): what holds the features
/// stage's memory to a block of subscribers' bills, not billing's, where
/// the subscribers are more than a block ([`Blocks::spill`]).
pub(crate) struct Blocks {
    /// The bills spilled, a stream per block.
    spill: Box<dyn Spill>,
    /// Codes per block: block `b` is `b * block..(b + 1) * block`.
    block: usize,
    subscribers: usize,
    /// The bills read of each code.
    counts: Vec<u32>,
    /// Whether every bill read (of a subscriber or not) is dated on its
    /// month's first day: billing's, not a block's ([`Ledger::reads_lifetimes`]).
    first_days: bool,
    margin_rate: f64,
}

/// Bytes of a spilled bill: code (4), month (4), costed (1), revenue (8),
/// margin (8), little-endian.
const RECORD: usize = 25;

/// The most blocks a spill writes (a file each, open through the pass):
/// a block is widened to keep to it.
pub(crate) const MAX_BLOCKS: usize = 256;

/// Numbered streams of bytes that a stage spills and reads back: files
/// of the edge's (`catalog::ScratchDir`, removed with the spill), or
/// memory ([`MemorySpill`]).
pub trait Spill: Send {
    /// Appends `bytes` to stream `i`.
    fn append(&mut self, i: usize, bytes: &[u8]) -> Result<()>;
    /// Stream `i` as appended, a chunk at a time, to `each`.
    fn read(&mut self, i: usize, each: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()>;
}

/// Makes an empty [`Spill`].
pub type Spills = Arc<dyn Fn() -> Result<Box<dyn Spill>> + Send + Sync>;

/// A [`Spill`] held in memory: where no scratch space is given (it bounds
/// nothing; the commands spill to files).
#[derive(Default)]
pub struct MemorySpill(Vec<Vec<u8>>);

impl Spill for MemorySpill {
    fn append(&mut self, i: usize, bytes: &[u8]) -> Result<()> {
        if self.0.len() <= i {
            self.0.resize_with(i + 1, Vec::new);
        }
        self.0[i].extend_from_slice(bytes);
        Ok(())
    }

    /// In chunks of 4,093 bytes (a prime), so that records are cut
    /// between chunks, as a file's reads cut them.
    fn read(&mut self, i: usize, each: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        for chunk in self
            .0
            .get(i)
            .map_or(&[][..], |v| v.as_slice())
            .chunks(4_093)
        {
            each(chunk)?;
        }
        Ok(())
    }
}

fn encode(out: &mut Vec<u8>, code: u32, b: &Bill) {
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&b.month.to_le_bytes());
    out.push(u8::from(b.costed));
    out.extend_from_slice(&b.revenue.to_le_bytes());
    out.extend_from_slice(&b.margin.to_le_bytes());
}

fn decode(r: &[u8]) -> (u32, Bill) {
    let word = |i: usize| <[u8; 4]>::try_from(&r[i..i + 4]).expect("4 bytes");
    let double = |i: usize| <[u8; 8]>::try_from(&r[i..i + 8]).expect("8 bytes");
    (
        u32::from_le_bytes(word(0)),
        Bill {
            month: i32::from_le_bytes(word(4)),
            costed: r[8] != 0,
            revenue: f64::from_le_bytes(double(9)),
            margin: f64::from_le_bytes(double(17)),
        },
    )
}

impl Blocks {
    /// The codes per block for `subscribers` and a block of `block`
    /// subscribers: `block`, widened where it would make more than
    /// [`MAX_BLOCKS`].
    pub(crate) fn width(subscribers: usize, block: usize) -> usize {
        block.max(subscribers.div_ceil(MAX_BLOCKS)).max(1)
    }

    /// One streaming pass over `bills` (the columns of
    /// [`Ledger::build_coded`], unfiltered) that codes each bill read
    /// ([`super::frames::read_bill`]) by `coded` and appends it to its
    /// block's stream of `spill` (25 bytes a bill), in the order read; a
    /// bill of no code is only checked for its day. Memory holds a batch,
    /// a buffer per block and a count per subscriber.
    pub(crate) fn spill(
        bills: LazyFrame,
        margin_rate: f64,
        coded: &Ids,
        block: usize,
        spill: Box<dyn Spill>,
    ) -> Result<Blocks> {
        let err = || Error::polars("features: bills by block");
        let subscribers = coded.len();
        let block = Blocks::width(subscribers, block);
        let n_blocks = subscribers.div_ceil(block).max(1);
        struct Pass {
            spill: Box<dyn Spill>,
            buffers: Vec<Vec<u8>>,
            counts: Vec<u32>,
            first_days: bool,
            memo: MonthMemo,
            index: StrIndex,
            failed: Option<Error>,
        }
        const FLUSH: usize = 1 << 20;
        let pass = Arc::new(Mutex::new(Pass {
            spill,
            buffers: vec![Vec::with_capacity(FLUSH + RECORD); n_blocks],
            counts: vec![0; subscribers],
            first_days: true,
            memo: MonthMemo::new(),
            index: coded.str_index(),
            failed: None,
        }));
        let into = pass.clone();
        let batches = tracing::trace_span!("bills' batches");
        let sink = bills
            .select([
                col(col::SUBSCRIBER_ID),
                read_bill().alias("__read"),
                col("d"),
                col("r"),
                col("g"),
                col("k"),
            ])
            .sink_batches(
                PlanCallback::new(move |batch: DataFrame| {
                    let _batch = batches.enter();
                    let mut p = into.lock().unwrap_or_else(|e| e.into_inner());
                    let p = &mut *p;
                    let ids = batch.column(col::SUBSCRIBER_ID)?.str()?;
                    let code = codes_in_runs(ids, |id, before| p.index.get_after(id, before));
                    let read = batch.column("__read")?.bool()?.rechunk();
                    let (d, r, g) = amounts(&batch)?;
                    let k = batch.column("k")?.bool()?.rechunk();
                    let (read, d, r, g, k) = (
                        read.downcast_as_array(),
                        d.downcast_as_array(),
                        r.downcast_as_array(),
                        g.downcast_as_array(),
                        k.downcast_as_array(),
                    );
                    let (days, revenues, margins) = (d.values(), r.values(), g.values());
                    let (rn, gn) = (is_valid(r), is_valid(g));
                    for (i, &c) in code.iter().enumerate() {
                        // Read: a subscriber, a month and a revenue.
                        if read.get(i) != Some(true) {
                            continue;
                        }
                        let day = days[i];
                        p.first_days &= p.memo.is_first(day);
                        if c == NO_CODE {
                            continue;
                        }
                        let bill = Bill {
                            month: p.memo.month(day),
                            costed: k.value(i),
                            revenue: if rn(i) { revenues[i] } else { f64::NAN },
                            margin: if gn(i) { margins[i] } else { f64::NAN },
                        };
                        p.counts[c as usize] += 1;
                        let b = c as usize / block;
                        encode(&mut p.buffers[b], c, &bill);
                        if p.buffers[b].len() >= FLUSH {
                            let written = p.spill.append(b, &p.buffers[b]);
                            p.buffers[b].clear();
                            if let Err(e) = written {
                                let message = e.to_string();
                                p.failed = Some(e);
                                polars_bail!(ComputeError: "{message}");
                            }
                        }
                    }
                    Ok(false)
                }),
                true,
                None,
            )
            .map_err(err())?;
        let read = collect(sink, "features: bills by block");
        let mut p = pass.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = p.failed.take() {
            return Err(e);
        }
        read?;
        let p = &mut *p;
        for (b, buffer) in p.buffers.iter().enumerate() {
            p.spill.append(b, buffer)?;
        }
        let counts = std::mem::take(&mut p.counts);
        tracing::debug!(
            bills = counts.iter().map(|&c| c as u64).sum::<u64>(),
            blocks = n_blocks,
            block,
            "ledger: bills spilled by block"
        );
        let spill = std::mem::replace(&mut p.spill, Box::new(MemorySpill::default()));
        Ok(Blocks {
            spill,
            block,
            subscribers,
            counts,
            first_days: p.first_days,
            margin_rate,
        })
    }

    /// How many blocks.
    pub(crate) fn len(&self) -> usize {
        self.subscribers.div_ceil(self.block).max(1)
    }

    /// The codes of block `b`.
    pub(crate) fn codes(&self, b: usize) -> std::ops::Range<u32> {
        let lo = (b * self.block).min(self.subscribers);
        let hi = ((b + 1) * self.block).min(self.subscribers);
        lo as u32..hi as u32
    }

    /// The ledger of block `b`'s subscribers (keyed on the codes: every
    /// other code has no bill), read back from its file: the bills, and
    /// their order, of [`Ledger::build_coded`]'s ledger for those codes.
    pub(crate) fn ledger(&mut self, b: usize) -> Result<Ledger> {
        let codes = self.codes(b);
        let (lo, hi) = (codes.start as usize, codes.end as usize);
        let mut offsets = vec![0usize; self.subscribers + 1];
        for c in lo..hi {
            offsets[c + 1] = self.counts[c] as usize;
        }
        for i in 1..offsets.len() {
            offsets[i] += offsets[i - 1];
        }
        let total = offsets[self.subscribers];
        let mut next = offsets[lo..hi].to_vec();
        let mut bills: Vec<Bill> = bytemuck::zeroed_vec(total);
        let (mut kept, mut placed) = (Vec::<u8>::with_capacity(RECORD), 0usize);
        let bad = |message: String| Error::Data {
            table: "billing".into(),
            message: format!("the bills spilled for block {b}: {message}"),
        };
        let mut place = |record: &[u8]| -> Result<()> {
            let (c, bill) = decode(record);
            let c = c as usize;
            if !(lo..hi).contains(&c) || next[c - lo] >= offsets[c + 1] {
                return Err(bad(format!("a bill of code {c} not counted in the block")));
            }
            bills[next[c - lo]] = bill;
            next[c - lo] += 1;
            placed += 1;
            Ok(())
        };
        self.spill.read(b, &mut |mut chunk: &[u8]| {
            // A record cut between chunks: completed from this one.
            if !kept.is_empty() {
                let take = (RECORD - kept.len()).min(chunk.len());
                kept.extend_from_slice(&chunk[..take]);
                chunk = &chunk[take..];
                if kept.len() < RECORD {
                    return Ok(());
                }
                place(&kept)?;
                kept.clear();
            }
            let whole = chunk.len() - chunk.len() % RECORD;
            for r in chunk[..whole].chunks_exact(RECORD) {
                place(r)?;
            }
            kept.extend_from_slice(&chunk[whole..]);
            Ok(())
        })?;
        if !kept.is_empty() || placed != total {
            return Err(bad(format!(
                "{placed} whole bills read back of {total} spilled"
            )));
        }
        for w in offsets[lo..=hi].windows(2) {
            sort_by_month(&mut bills[w[0]..w[1]]);
        }
        Ok(Ledger {
            keys: Keys::Codes,
            offsets,
            bills,
            first_days: self.first_days,
            margin_rate: self.margin_rate,
        })
    }
}

/// The first day (a day number) of a month index, behind a memo of the
/// last month asked.
#[derive(Default)]
struct FirstDays {
    last: Option<(i32, i32)>,
}

impl FirstDays {
    fn of(&mut self, month: i32) -> i32 {
        match self.last {
            Some((m, d)) if m == month => d,
            _ => {
                let d = first_day_of_month(month);
                self.last = Some((month, d));
                d
            }
        }
    }
}

/// The day number of the first day of month index `m` (`year * 12 +
/// month`, [`month_of_day`]'s).
pub(crate) fn first_day_of_month(m: i32) -> i32 {
    let (year, month) = ((m - 1).div_euclid(12), (m - 1).rem_euclid(12) + 1);
    // Civil days from H. Hinnant's days_from_civil, as month_of_day
    // reverses it: years counted from 1 March.
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(month) + 9) % 12;
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe - 719_468) as i32
}

/// The same aggregates as [`Ledger::aggregate`], from one streaming pass
/// over `bills` (the ledger's columns) that holds no bill: each batch's ids
/// are looked up in a hash map of the events' subscribers (in parallel),
/// then each bill is added to its subscriber's events. Memory follows the
/// events (one set of sums each, about 100 bytes), not the bills: for
/// scoring, with one event per subscriber and one pass.
pub fn stream(bills: LazyFrame, events: DataFrame) -> Result<DataFrame> {
    let err = || Error::polars("features: billing aggregates");
    let event = events.column(f::EVENT).map_err(err())?.clone();
    let ids = events
        .column(col::SUBSCRIBER_ID)
        .and_then(|c| c.str().cloned())
        .map_err(err())?;
    // The events' ids indexed in their sort order: bills sorted by
    // subscriber then find each next subscriber at the index's next row
    // ([`StrIndex::get_after`]) rather than at a random slot.
    let order = ids.arg_sort(SortOptions::default());
    let sorted = ids.take(&order).map_err(err())?;
    let (codes, code_of) = StrIndex::build(&sorted);
    drop(sorted);
    let subscribers = code_of.len();
    let coded: Vec<(u32, u32)> = order.into_no_null_iter().zip(code_of).collect();
    let pass = EventSums::new(&events, &coded, subscribers)?;
    drop(coded);
    struct Pass {
        codes: StrIndex,
        sums: EventSums,
    }
    let pass = Arc::new(Mutex::new(Pass { codes, sums: pass }));
    let into = pass.clone();
    // Entered by each batch: its close reports the batches' own (serial)
    // work as `time.busy` (`-vv`), the rest of the pass as `time.idle`.
    let batches = tracing::trace_span!("bills' batches");
    let sink = bills
        .sink_batches(
            PlanCallback::new(move |batch: DataFrame| {
                let _batch = batches.enter();
                let mut p = into.lock().unwrap_or_else(|e| e.into_inner());
                let p = &mut *p;
                let ids = batch.column(col::SUBSCRIBER_ID)?.str()?;
                let code = codes_in_runs(ids, |id, before| p.codes.get_after(id, before));
                let (d, r, g) = amounts(&batch)?;
                let (d, r, g) = (
                    d.downcast_as_array(),
                    r.downcast_as_array(),
                    g.downcast_as_array(),
                );
                let (days, revenues, margins) = (d.values(), r.values(), g.values());
                let valid = (is_valid(d), is_valid(r), is_valid(g));
                let valid = |i: usize| valid.0(i) && valid.1(i) && valid.2(i);
                let mut memo = MonthMemo::new();
                for (i, c) in code.iter().enumerate() {
                    if *c == NO_CODE || !valid(i) {
                        continue;
                    }
                    let m = memo.month(days[i]);
                    p.sums.add(*c, m, revenues[i], margins[i]);
                }
                Ok(false)
            }),
            true,
            None,
        )
        .map_err(err())?;
    collect(sink, "features: bills")?;
    // The sums taken out, and the look-ups freed, before their columns are
    // built (at 10M subscribers the map of ids alone holds hundreds of MB).
    let sums = {
        let mut p = pass.lock().unwrap_or_else(|e| e.into_inner());
        p.codes = StrIndex::empty();
        std::mem::take(&mut p.sums)
    };
    drop(pass);
    sums.frame(event)
}

/// A batch of bills' day numbers, revenues and margins (`d`, `r`, `g`),
/// each in one chunk.
fn amounts(batch: &DataFrame) -> PolarsResult<(Int32Chunked, Float64Chunked, Float64Chunked)> {
    Ok((
        batch.column("d")?.i32()?.rechunk().into_owned(),
        batch.column("r")?.f64()?.rechunk().into_owned(),
        batch.column("g")?.f64()?.rechunk().into_owned(),
    ))
}

/// An unknown month in [`EventSums`].
const NO_MONTH: i32 = i32::MIN;

/// Events' bill sums, added to bill by bill as the bills stream past in
/// any order ([`stream`], and validation's pass over the bills through
/// [`BillSums`]): each bill goes to the sums of its subscriber's events.
/// Memory follows the events (one set of sums each, about 100 bytes), not
/// the bills.
#[derive(Default)]
pub(crate) struct EventSums {
    /// The events of the subscriber coded `c`:
    /// `members[starts[c]..starts[c + 1]]` (a counting sort by code).
    starts: Vec<u32>,
    members: Vec<u32>,
    /// Each event's latest known month ([`NO_MONTH`] when unknown: no bill
    /// is known) and its lifetime's first month ([`NO_MONTH`]: no bill is
    /// of its lifetime), 4 bytes each.
    known: Vec<i32>,
    life: Vec<i32>,
    sums: Vec<Sums>,
}

impl EventSums {
    /// The sums of the events of `events` (`__known` and `__life_month`,
    /// [`super::behaviour`]'s bill months), each event (its row) coded by
    /// `codes`, (event, code) pairs, the codes below `subscribers`
    /// ([`NO_CODE`]: the event gets no bill).
    pub(crate) fn new(
        events: &DataFrame,
        codes: &[(u32, u32)],
        subscribers: usize,
    ) -> Result<EventSums> {
        let err = || Error::polars("features: billing aggregates");
        let months = |name: &str| -> Result<Vec<i32>> {
            Ok(events
                .column(name)
                .and_then(|c| c.i32().cloned())
                .map_err(err())?
                .iter()
                .map(|m| m.unwrap_or(NO_MONTH))
                .collect())
        };
        let (known, life) = (months("__known")?, months("__life_month")?);
        let mut starts = vec![0u32; subscribers + 1];
        for &(_, c) in codes.iter().filter(|(_, c)| *c != NO_CODE) {
            starts[c as usize + 1] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let mut members = vec![0u32; starts[subscribers] as usize];
        let mut next = starts.clone();
        for &(e, c) in codes.iter().filter(|(_, c)| *c != NO_CODE) {
            members[next[c as usize] as usize] = e;
            next[c as usize] += 1;
        }
        Ok(EventSums {
            starts,
            members,
            sums: vec![Sums::default(); known.len()],
            known,
            life,
        })
    }

    /// Adds a bill of the subscriber coded `c` (below the subscribers
    /// given to [`EventSums::new`]), for month index `m`, of revenue `r`
    /// and margin `g`, to each of its events that knows the month.
    #[inline]
    pub(crate) fn add(&mut self, c: u32, m: i32, r: f64, g: f64) {
        let (a, b) = (self.starts[c as usize], self.starts[c as usize + 1]);
        for k in a..b {
            let e = self.members[k as usize] as usize;
            let (known, life) = (self.known[e], self.life[e]);
            if known != NO_MONTH && m <= known {
                let life = (life != NO_MONTH).then_some(life);
                self.sums[e].add(m, r, g, known, life);
            }
        }
    }

    /// Adds a batch of bills as validation's first pass over billing reads
    /// them ([`BillBatch`]): each bill of a known subscriber with a month
    /// and a revenue, its margin the revenue less the cost to serve, or
    /// the revenue times `margin_rate` where the cost is unknown (as
    /// [`super::frames::margin`] computes it for [`stream`]).
    pub(crate) fn add_batch(&mut self, b: &BillBatch<'_>, margin_rate: f64) {
        let (d, r, c) = (b.days.rechunk(), b.revenue.rechunk(), b.cost.rechunk());
        let (d, r, c) = (
            d.downcast_as_array(),
            r.downcast_as_array(),
            c.downcast_as_array(),
        );
        let (day_valid, revenue_valid, cost_valid) = (is_valid(d), is_valid(r), is_valid(c));
        let subscribers = self.starts.len().saturating_sub(1);
        let mut memo = MonthMemo::new();
        for (i, &code) in b.subscribers.iter().enumerate() {
            if code as usize >= subscribers || !day_valid(i) || !revenue_valid(i) {
                continue;
            }
            let revenue = r.value(i);
            let margin = if cost_valid(i) {
                revenue - c.value(i)
            } else {
                revenue * margin_rate
            };
            self.add(code, memo.month(d.value(i)), revenue, margin);
        }
    }

    /// The sums' columns beside `event` (the events' keys, in their rows'
    /// order), as [`stream`] gives them.
    pub(crate) fn frame(self, event: Column) -> Result<DataFrame> {
        let EventSums { sums, .. } = self;
        sums_frame(event, &sums)
    }
}

/// The ledger's places being filled: each subscriber's next place, and the
/// bills placed so far. The bills' columns (`d`, `r`, `g`, `k` of
/// [`Ledger::build`]) go to their subscriber's places in the order they
/// are read (a stable counting sort), with their month indexes, batch by
/// batch or at once; and whether every bill is dated on its month's first
/// day is kept. The codes are split into ranges of about equal bills, one
/// per core: each range reads every bill's code and places only those of
/// its range, into its own part of the ledger. Bills grouped by subscriber
/// are written in order. Bills sorted by month go to places far apart;
/// each writes one [`Bill`]. At 1M subscribers with the bills sorted by
/// month, the list of places and a gather per column, after a copy of each
/// column, took 1.74 s against 1.09 s (medians of three, `-v`; single
/// runs of the old way from 1.4 to 4.1 s) and held about 0.9 GB more at the
/// stage's peak.
struct Places {
    /// Bills of code `c` at `offsets[c]..offsets[c + 1]`.
    offsets: Vec<usize>,
    /// The next place of code `c`'s next bill (from `offsets[c]` up).
    next: Vec<usize>,
    placed: Vec<Bill>,
    /// The codes' ranges placed side by side: `bounds[p]..bounds[p + 1]`.
    bounds: Vec<usize>,
    first_days: bool,
}

/// One chunk of each of the bills' columns `d`, `r`, `g` and `k`.
type BillChunk<'a> = (
    &'a <Int32Type as PolarsDataType>::Array,
    &'a <Float64Type as PolarsDataType>::Array,
    &'a <Float64Type as PolarsDataType>::Array,
    &'a <BooleanType as PolarsDataType>::Array,
);

/// A bill read but left out of the ledger and of the first-day check: one
/// without a subscriber, a month or a revenue (the contract allows none of
/// these), as the pass over the ids marks it.
const LEFT_OUT: u32 = NO_CODE - 1;

impl Places {
    /// Places for the bills counted by `offsets`, in `parts` ranges.
    fn new(offsets: Vec<usize>, parts: usize) -> Places {
        let subscribers = offsets.len() - 1;
        let total = offsets[subscribers];
        let parts = parts.max(1);
        let mut bounds = vec![0usize];
        for p in 1..parts {
            let target = total * p / parts;
            let c = offsets.partition_point(|o| *o < target).min(subscribers);
            bounds.push(c.max(*bounds.last().expect("not empty")));
        }
        bounds.push(subscribers);
        Places {
            next: offsets[..subscribers].to_vec(),
            placed: bytemuck::zeroed_vec(total),
            offsets,
            bounds,
            first_days: true,
        }
    }

    /// Places the bills of `chunks`, whose codes are `code_of` in the same
    /// order: [`NO_CODE`] for a subscriber the ledger does not key (its
    /// day is checked), [`LEFT_OUT`] for a bill not read at all.
    fn place(&mut self, chunks: &[BillChunk<'_>], code_of: &[u32]) {
        let Places {
            offsets,
            next,
            placed,
            bounds,
            first_days,
        } = self;
        let mut work = Vec::with_capacity(bounds.len() - 1);
        let (mut rest, mut rest_next) = (placed.as_mut_slice(), next.as_mut_slice());
        for w in bounds.windows(2) {
            let (lo, hi) = (w[0], w[1]);
            let (part, after) = rest.split_at_mut(offsets[hi] - offsets[lo]);
            rest = after;
            let (next, after) = rest_next.split_at_mut(hi - lo);
            rest_next = after;
            work.push((lo as u32..hi as u32, offsets[lo], next, part));
        }
        let firsts = work
            .into_par_iter()
            .enumerate()
            .map(|(p, (codes, base, next, part))| {
                let mut memo = MonthMemo::new();
                let mut first_days = true;
                let mut row = 0usize;
                for (d, r, g, k) in chunks {
                    let (dv, rv, gv, kv) = (d.values(), r.values(), g.values(), k.values());
                    let (dn, rn, gn) = (is_valid(*d), is_valid(*r), is_valid(*g));
                    for i in 0..d.len() {
                        let c = code_of[row + i];
                        if c == LEFT_OUT {
                            continue;
                        }
                        let day = dn(i).then(|| dv[i]);
                        // Every bill's day is checked once: by its part,
                        // and those without a code by the first part.
                        if !codes.contains(&c) {
                            if p == 0
                                && c == NO_CODE
                                && let Some(day) = day
                            {
                                first_days &= memo.is_first(day);
                            }
                            continue;
                        }
                        let month = match day {
                            Some(day) => {
                                first_days &= memo.is_first(day);
                                memo.month(day)
                            }
                            None => i32::MAX,
                        };
                        let at = &mut next[(c - codes.start) as usize];
                        part[*at - base] = Bill {
                            month,
                            // Never null (an `is_not_null`): the values' bits.
                            costed: kv.get_bit(i),
                            revenue: if rn(i) { rv[i] } else { f64::NAN },
                            margin: if gn(i) { gv[i] } else { f64::NAN },
                        };
                        *at += 1;
                    }
                    row += d.len();
                }
                first_days
            })
            .collect::<Vec<bool>>();
        *first_days &= firsts.into_iter().all(|f| f);
    }

    /// Each subscriber's bills sorted by month: the offsets, the bills,
    /// and whether every bill is dated on its month's first day.
    fn finish(self) -> (Vec<usize>, Vec<Bill>, bool) {
        let Places {
            offsets,
            mut placed,
            first_days,
            ..
        } = self;
        for w in offsets.windows(2) {
            sort_by_month(&mut placed[w[0]..w[1]]);
        }
        (offsets, placed, first_days)
    }
}

/// The chunks of the bills' columns `d`, `r`, `g` and `k` of `bills`,
/// side by side (their chunks aligned).
fn bill_chunks(bills: &DataFrame) -> PolarsResult<Vec<BillChunk<'_>>> {
    let d = bills.column("d")?.i32()?;
    let r = bills.column("r")?.f64()?;
    let g = bills.column("g")?.f64()?;
    let k = bills.column("k")?.bool()?;
    Ok(d.downcast_iter()
        .zip(r.downcast_iter())
        .zip(g.downcast_iter())
        .zip(k.downcast_iter())
        .map(|(((d, r), g), k)| (d, r, g, k))
        .collect())
}

/// Each code's bills at `offsets[c]..offsets[c + 1]`, from each bill's
/// code: those of no code below `subscribers` ([`NO_CODE`], [`LEFT_OUT`])
/// are left out.
fn offsets_of(code_of: &[u32], subscribers: usize) -> Vec<usize> {
    let mut offsets = vec![0usize; subscribers + 1];
    for &c in code_of {
        if (c as usize) < subscribers {
            offsets[c as usize + 1] += 1;
        }
    }
    for i in 1..offsets.len() {
        offsets[i] += offsets[i - 1];
    }
    offsets
}

/// Each id's code in order of first appearance, and the ids so coded: a
/// hash map of the ids, where a bill of the previous bill's subscriber
/// takes its code unhashed (a null id codes as the empty one).
fn first_appearance_codes(ids: &StringChunked) -> (Vec<u32>, Vec<&str>) {
    let mut codes: PlHashMap<&str, u32> = PlHashMap::default();
    let mut names: Vec<&str> = Vec::new();
    let mut code_of: Vec<u32> = Vec::with_capacity(ids.len());
    let mut last: Option<(&str, u32)> = None;
    for id in ids.iter() {
        let id = id.unwrap_or_default();
        let code = match last {
            Some((seen, c)) if seen == id => c,
            _ => {
                let next = names.len() as u32;
                let c = *codes.entry(id).or_insert_with(|| {
                    names.push(id);
                    next
                });
                last = Some((id, c));
                c
            }
        };
        code_of.push(code);
    }
    (code_of, names)
}

/// Sorts one subscriber's bills by month, ties by revenue, margin, then
/// whether costed (a total order, so the sums do not depend on the rows'
/// order in the file).
fn sort_by_month(bills: &mut [Bill]) {
    if bills.windows(2).all(|w| w[0].month < w[1].month) {
        return;
    }
    bills.sort_by(|a, b| {
        a.month
            .cmp(&b.month)
            .then(a.revenue.total_cmp(&b.revenue))
            .then(a.margin.total_cmp(&b.margin))
            .then(a.costed.cmp(&b.costed))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Ledger {
        /// Whether `block` (a ledger of a block of codes, [`Blocks::ledger`])
        /// holds exactly this ledger's bills of `codes`, in the same order,
        /// none of any other code, and the same first-day flag; else what
        /// differs.
        pub(crate) fn same_share(
            &self,
            block: &Ledger,
            codes: std::ops::Range<u32>,
        ) -> std::result::Result<usize, String> {
            if self.first_days != block.first_days {
                return Err(format!(
                    "first days {} against {}",
                    self.first_days, block.first_days
                ));
            }
            if self.offsets.len() != block.offsets.len() {
                return Err("not keyed on the same codes".into());
            }
            let bits = |b: &Bill| (b.month, b.costed, b.revenue.to_bits(), b.margin.to_bits());
            let mut n = 0;
            for c in 0..self.offsets.len() - 1 {
                let theirs = &block.bills[block.offsets[c]..block.offsets[c + 1]];
                let mine = if codes.contains(&(c as u32)) {
                    &self.bills[self.offsets[c]..self.offsets[c + 1]]
                } else {
                    &[]
                };
                if mine.len() != theirs.len()
                    || mine.iter().zip(theirs).any(|(a, b)| bits(a) != bits(b))
                {
                    return Err(format!(
                        "code {c}: {} bills against {}",
                        mine.len(),
                        theirs.len()
                    ));
                }
                n += mine.len();
            }
            Ok(n)
        }

        /// Whether every bill is dated on its month's first day.
        pub(crate) fn first_days(&self) -> bool {
            self.first_days
        }
    }
    use rand::{Rng, SeedableRng};

    /// [`Places`] puts each subscriber's bills at its offsets in the order
    /// read, as a stable sort by code does, whatever the number of parts
    /// (more than the subscribers too) and whether the bills come at once
    /// or in batches, with null days, revenues and margins, bills of no
    /// code, bills left out, and columns read in chunks of their own sizes
    /// (aligned first, as [`Ledger::build`] does); a day not on its
    /// month's first anywhere, a coded bill's or not, is found, and one on
    /// a bill left out is not.
    #[test]
    fn placed_bills_are_a_stable_sort_by_subscriber() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let (n, subscribers) = (3_000usize, 97u32);
        let first = |m: i32| first_day_of_month(m);
        for mid_month in [None, Some(17usize), Some(2_999), Some(500)] {
            let mut code_of: Vec<u32> = (0..n)
                .map(|_| match rng.random_range(0..20) {
                    0 => NO_CODE,
                    1 => LEFT_OUT,
                    _ => rng.random_range(0..subscribers),
                })
                .collect();
            // The mid-month days: one on a bill of a subscriber in the
            // last range, one on a bill of no code.
            code_of[17] = subscribers - 1;
            code_of[2_999] = NO_CODE;
            code_of[500] = LEFT_OUT;
            let days: Vec<Option<i32>> = (0..n)
                .map(|i| {
                    let d = first(rng.random_range(24_000..24_200));
                    match (i % 101, mid_month) {
                        (7, _) => None,
                        (_, Some(j)) if j == i => Some(d + 3),
                        _ => Some(d),
                    }
                })
                .collect();
            let revenue: Vec<Option<f64>> = (0..n)
                .map(|i| (i % 89 != 5).then(|| rng.random_range(-5.0..90.0)))
                .collect();
            let margin: Vec<Option<f64>> = (0..n)
                .map(|i| (i % 83 != 9).then(|| rng.random_range(-5.0..50.0)))
                .collect();
            let costed: Vec<bool> = (0..n).map(|_| rng.random_bool(0.7)).collect();
            // Each column in chunks of other sizes.
            let chunked =
                |name: &str, cuts: &[usize], col: &dyn Fn(std::ops::Range<usize>) -> Series| {
                    let mut s = col(0..cuts[0]);
                    for w in cuts.windows(2) {
                        s.append(&col(w[0]..w[1])).expect("same type");
                    }
                    s.append(&col(*cuts.last().expect("cuts")..n))
                        .expect("same type");
                    s.with_name(name.into()).into_column()
                };
            let mut bills = DataFrame::new(
                n,
                vec![
                    chunked("d", &[700, 1_900], &|r| {
                        Series::new("".into(), &days[r])
                            .cast(&DataType::Int32)
                            .expect("i32")
                    }),
                    chunked("r", &[1_000], &|r| Series::new("".into(), &revenue[r])),
                    chunked("g", &[10, 2_500, 2_600], &|r| {
                        Series::new("".into(), &margin[r])
                    }),
                    chunked("k", &[1_500, 2_999], &|r| {
                        Series::new("".into(), &costed[r])
                    }),
                ],
            )
            .expect("frame");
            assert!(bills.should_rechunk(), "the test's chunks differ");
            bills.align_chunks_par();
            let offsets = offsets_of(&code_of, subscribers as usize);
            // The rows by code, in the order read.
            let mut order: Vec<usize> = (0..n).filter(|i| code_of[*i] < subscribers).collect();
            order.sort_by_key(|i| code_of[*i]);
            let month = |i: usize| days[i].map_or(i32::MAX, month_of_day);
            for (parts, batch) in [(1, n), (2, n), (3, 333), (7, n), (200, 1_024), (2, 1)] {
                let mut places = Places::new(offsets.clone(), parts);
                let mut row = 0;
                while row < n {
                    let len = batch.min(n - row);
                    let mut rows = bills.slice(row as i64, len);
                    rows.align_chunks_par();
                    let chunks = bill_chunks(&rows).expect("columns");
                    places.place(&chunks, &code_of[row..row + len]);
                    row += len;
                }
                let (placed, firsts) = (places.placed, places.first_days);
                let expected = mid_month.is_none_or(|i| i == 500);
                assert_eq!(firsts, expected, "parts {parts}, {mid_month:?}");
                assert_eq!(placed.len(), order.len());
                for (b, &i) in placed.iter().zip(&order) {
                    assert_eq!(b.month, month(i), "row {i}, parts {parts}");
                    assert_eq!(
                        b.revenue.to_bits(),
                        revenue[i].unwrap_or(f64::NAN).to_bits()
                    );
                    assert_eq!(b.margin.to_bits(), margin[i].unwrap_or(f64::NAN).to_bits());
                    assert_eq!(b.costed, costed[i], "row {i}, parts {parts}");
                }
            }
        }
    }
}
