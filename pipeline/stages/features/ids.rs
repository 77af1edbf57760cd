//! Subscriber ids as dense integer codes, for the features stage's joins.
//!
//! Training features join the smaller tables (subscribers, defections,
//! returns, offers, complaints, referrals) to about ten event sets (the
//! defections, the active subscribers, every churn snapshot), each on the
//! subscriber. On text ids every one of those joins hashes and compares
//! strings, and every event set re-reads the tables' files. [`Ids`] reads
//! each smaller table once, replaces its id columns by a `u32` code, and
//! keeps the coded tables in memory; the joins then compare integers, and
//! [`Ids::decode`] puts the text ids back on the stage's outputs.
//!
//! The codes follow the ids' sort order, so sorting by the code sorts by
//! the id, and the outputs come out in the same order as from text ids.

use std::collections::BTreeMap;

use polars::prelude::*;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::schema::{Table, col};

fn collect(lf: LazyFrame, step: &str) -> Result<DataFrame> {
    crate::stages::collect(lf, format!("features: {step}"))
}

/// The code [`codes_in_runs`] gives a null id or one it does not know.
pub(crate) const NO_CODE: u32 = u32::MAX;

/// The code `find` gives each id of `ids` ([`NO_CODE`] for a null or an
/// unknown id), in parallel blocks. Within a block, a row whose id is the
/// previous row's takes its code without a look-up: bills and most event
/// tables come grouped by subscriber, so one hash in thirty is enough.
/// The previous row's id is first compared by its view (16 bytes: the
/// length and the bytes inline, or where in the array's buffers they are):
/// equal views are equal ids, and only rows whose views differ compare
/// their text. `find` also gets the code of the block's last id it found
/// ([`NO_CODE`] before any): where `ids` come in the order of `find`'s
/// codes, the next id is usually the next code, which it can check
/// before hashing ([`StrIndex::get_after`]).
pub(crate) fn codes_in_runs<F>(ids: &StringChunked, find: F) -> Vec<u32>
where
    F: Fn(&str, u32) -> Option<u32> + Sync,
{
    const BLOCK: usize = 1 << 14;
    let ids = ids.rechunk();
    let ids = ids.downcast_as_array();
    let views = ids.views();
    let valid = is_valid(ids);
    let mut out = vec![NO_CODE; ids.len()];
    out.par_chunks_mut(BLOCK)
        .enumerate()
        .for_each(|(block, out)| {
            let start = block * BLOCK;
            let mut last = None;
            let mut found = NO_CODE;
            for (k, code) in out.iter_mut().enumerate() {
                let i = start + k;
                if !valid(i) {
                    continue;
                }
                let view = views[i];
                *code = match last {
                    Some((seen, _, c)) if seen == view => c,
                    _ => {
                        let id = ids.value(i);
                        let c = match last {
                            Some((_, seen, c)) if seen == id => c,
                            _ => find(id, found).unwrap_or(NO_CODE),
                        };
                        if c != NO_CODE {
                            found = c;
                        }
                        last = Some((view, id, c));
                        c
                    }
                };
            }
        });
    out
}

/// The row of each distinct id of a text column: an open-addressing table
/// of row numbers (4 bytes a slot, at most half full) probed by the ids'
/// hashes, each candidate compared with the id at its row. The ids stay in
/// their column: no key is copied, where a hash map of owned ids held
/// about 40 bytes an id and took 6 s to fill with 10M subscribers.
pub(crate) struct StrIndex {
    ids: StringChunked,
    /// Row + 1 of an id; 0 for an empty slot. A power of two long.
    slots: Vec<u32>,
    state: PlFixedStateQuality,
    /// Whether no id is repeated (so each row is its id's first).
    distinct: bool,
}

impl StrIndex {
    /// The index of `ids` (nulls left out; a repeated id keeps its first
    /// row), and each row's first row with the same id ([`NO_CODE`] for a
    /// null).
    pub(crate) fn build(ids: &StringChunked) -> (StrIndex, Vec<u32>) {
        use std::hash::BuildHasher;
        let ids = ids.rechunk().into_owned();
        let n = ids.len();
        assert!(n < u32::MAX as usize, "at most 2^32 - 2 ids");
        let mut slots = vec![0u32; (2 * n).next_power_of_two().max(16)];
        let mask = slots.len() - 1;
        let state = PlFixedStateQuality::default();
        let mut firsts = vec![NO_CODE; n];
        let mut distinct = true;
        {
            let arr = ids.downcast_as_array();
            let valid = is_valid(arr);
            for (row, first) in firsts.iter_mut().enumerate() {
                if !valid(row) {
                    continue;
                }
                let id = arr.value(row);
                let mut i = state.hash_one(id) as usize & mask;
                *first = loop {
                    match slots[i] {
                        0 => {
                            slots[i] = row as u32 + 1;
                            break row as u32;
                        }
                        s if arr.value(s as usize - 1) == id => {
                            distinct = false;
                            break s - 1;
                        }
                        _ => i = (i + 1) & mask,
                    }
                };
            }
        }
        let index = StrIndex {
            ids,
            slots,
            state,
            distinct,
        };
        (index, firsts)
    }

    /// Whether no id is repeated (nulls aside).
    pub(crate) fn distinct(&self) -> bool {
        self.distinct
    }

    /// The index reading `ids` in place of the ids it was built from,
    /// which must be the same ids row for row (their buffers may be
    /// shared with a frame the caller keeps).
    pub(crate) fn over(mut self, ids: StringChunked) -> StrIndex {
        debug_assert!(self.ids.len() == ids.len() && self.ids.equal_missing(&ids).all());
        self.ids = ids.rechunk().into_owned();
        self
    }

    /// Rows of the indexed column: every row number it gives is below.
    pub(crate) fn rows(&self) -> usize {
        self.ids.len()
    }

    /// An index of no id.
    pub(crate) fn empty() -> StrIndex {
        let none = StringChunked::from_iter_options("".into(), std::iter::empty::<Option<&str>>());
        StrIndex::build(&none).0
    }

    /// [`StrIndex::get`] of `id`, trying first the rows after `before`
    /// ([`next_row_holding`]; none for [`NO_CODE`]): ids looked up in the
    /// order of the index's rows (bills sorted by subscriber against
    /// subscribers in the same order) then read the next rows, in the
    /// nearest cache, instead of a random slot and row each. Only where no
    /// id is repeated, so that the row found is the id's first.
    #[inline]
    pub(crate) fn get_after(&self, id: &str, before: u32) -> Option<u32> {
        if self.distinct
            && let Some(next) = next_row_holding(self.ids.downcast_as_array(), before, id)
        {
            return Some(next);
        }
        self.get(id)
    }

    /// The (first) row of `id`.
    #[inline]
    pub(crate) fn get(&self, id: &str) -> Option<u32> {
        use std::hash::BuildHasher;
        let arr = self.ids.downcast_as_array();
        let mask = self.slots.len() - 1;
        let mut i = self.state.hash_one(id) as usize & mask;
        loop {
            match self.slots[i] {
                0 => return None,
                s if arr.value(s as usize - 1) == id => return Some(s - 1),
                _ => i = (i + 1) & mask,
            }
        }
    }
}

/// How many rows after `before` [`next_row_holding`] reads.
const AHEAD: usize = 8;

/// The first of the [`AHEAD`] rows after `before` (none after
/// [`NO_CODE`]) of `ids` that holds `id`, if one does. Bills sorted by
/// subscriber find their id at the next row; bills sorted by month, then
/// by subscriber (an extract's other usual order), find it a few rows on,
/// past the subscribers without a bill that month: at 1M subscribers so
/// sorted, the row after alone left the look-ups of the features' ledger
/// to the hash: 2.5 to 3.4 s for 31.4M bills, against 0.9 to 1.35 s with
/// 8 rows (five runs each, `-v`).
#[inline]
fn next_row_holding(
    ids: &<StringType as PolarsDataType>::Array,
    before: u32,
    id: &str,
) -> Option<u32> {
    if before == NO_CODE {
        return None;
    }
    let valid = is_valid(ids);
    let from = before as usize + 1;
    (from..(from + AHEAD).min(ids.len()))
        .find(|&row| valid(row) && ids.value(row) == id)
        .map(|row| row as u32)
}

/// Column `id` of `df` as text and column `day` as day numbers (dates
/// since 1970-01-01), as the look-ups by [`StrIndex`] read them; `step`
/// names a failure.
pub(crate) fn ids_and_days(
    df: &DataFrame,
    id: &str,
    day: &str,
    step: &str,
) -> Result<(StringChunked, Vec<Option<i32>>)> {
    let ids = df
        .column(id)
        .and_then(|c| c.str().cloned())
        .map_err(Error::polars(step))?;
    let days = df
        .column(day)
        .and_then(|c| c.cast(&DataType::Int32))
        .map_err(Error::polars(step))?;
    let days = days.i32().map_err(Error::polars(step))?.iter().collect();
    Ok((ids, days))
}

/// Whether row `i` of `a` holds a value (not null).
pub(crate) fn is_valid<A: StaticArray>(a: &A) -> impl Fn(usize) -> bool + '_ {
    let validity = a.validity();
    move |i| validity.is_none_or(|v| v.get_bit(i))
}

/// Every subscriber id the smaller tables hold, sorted; an id's code is its
/// position.
pub struct Ids {
    names: StringChunked,
}

/// The id columns of a table: its own, and for referrals the subscriber
/// referred.
fn id_columns(t: Table) -> &'static [&'static str] {
    match t {
        Table::Referrals => &[col::REFERRER_ID, col::REFERRED_ID],
        _ => &[col::SUBSCRIBER_ID],
    }
}

/// The tables coded: all but billing, which the ledger reads on its own.
const CODED: [Table; 6] = [
    Table::Subscribers,
    Table::ChurnEvents,
    Table::Reactivations,
    Table::WinbackOffers,
    Table::Complaints,
    Table::Referrals,
];

impl Ids {
    /// Reads the smaller tables once, codes their ids, and returns the
    /// codes with the coded tables (in memory, rows in their order).
    pub(crate) fn code(
        tables: &BTreeMap<Table, LazyFrame>,
    ) -> Result<(Ids, BTreeMap<Table, DataFrame>)> {
        let mut read = BTreeMap::new();
        for t in CODED {
            if let Some(lf) = tables.get(&t) {
                let df = collect(lf.clone(), &format!("{} (coding ids)", t.name()))?;
                read.insert(t, df);
            }
        }
        // Every id, once, sorted.
        let mut all: Vec<LazyFrame> = Vec::new();
        for (t, df) in &read {
            for c in id_columns(*t) {
                if let Ok(column) = df.column(c) {
                    all.push(
                        DataFrame::new(
                            df.height(),
                            vec![column.cast(&DataType::String).map_err(err(*t))?],
                        )
                        .map_err(err(*t))?
                        .lazy()
                        .select([col(*c).alias("id")]),
                    );
                }
            }
        }
        let names = if all.is_empty() {
            StringChunked::full_null("id".into(), 0)
        } else {
            let ids = concat(all, UnionArgs::default())
                .map_err(Error::polars("features: subscriber ids"))?
                .filter(col("id").is_not_null())
                .unique(None, UniqueKeepStrategy::Any)
                .sort(["id"], SortMultipleOptions::default());
            let ids = collect(ids, "subscriber ids")?;
            ids.column("id")
                .and_then(|c| c.str().cloned())
                .map_err(Error::polars("features: subscriber ids"))?
                .rechunk()
                .into_owned()
        };
        let ids = Ids { names };
        let index = ids.index();
        let mut coded = BTreeMap::new();
        for (t, mut df) in read {
            for c in id_columns(t) {
                if df.column(c).is_ok() {
                    let codes = ids.codes(&index, df.column(c).map_err(err(t))?)?;
                    df.with_column(Column::new((*c).into(), codes))
                        .map_err(err(t))?;
                }
            }
            coded.insert(t, df);
        }
        drop(index);
        Ok((ids, coded))
    }

    /// How many ids.
    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    /// An index from each id to its code, owning what it reads.
    pub(crate) fn str_index(&self) -> StrIndex {
        StrIndex::build(&self.names).0
    }

    /// A hash map from each id to its code.
    pub(crate) fn index(&self) -> PlHashMap<&str, u32> {
        let mut map = PlHashMap::with_capacity(self.names.len());
        for (code, id) in self.names.iter().enumerate() {
            if let Some(id) = id {
                map.insert(id, code as u32);
            }
        }
        map
    }

    /// The codes of a column of ids (null where null or not an id here).
    pub(crate) fn codes(
        &self,
        index: &PlHashMap<&str, u32>,
        ids: &Column,
    ) -> Result<Vec<Option<u32>>> {
        let ids = ids
            .cast(&DataType::String)
            .map_err(Error::polars("features: subscriber ids"))?;
        let ids = ids
            .str()
            .map_err(Error::polars("features: subscriber ids"))?;
        Ok(self
            .code_of(index, ids)
            .into_iter()
            .map(|c| (c != NO_CODE).then_some(c))
            .collect())
    }

    /// The code of each id of `ids` ([`NO_CODE`] where null or not an id
    /// here), chunk by chunk: a column of many chunks (the bills as read)
    /// is not copied into one.
    pub(crate) fn code_of(&self, index: &PlHashMap<&str, u32>, ids: &StringChunked) -> Vec<u32> {
        let names = self.names.rechunk();
        let names = names.downcast_as_array();
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.downcast_iter() {
            let chunk = StringChunked::with_chunk(ids.name().clone(), chunk.clone());
            // The codes follow the ids' order: sorted ids take the next
            // code (the ids are distinct).
            out.extend(codes_in_runs(&chunk, |id, before| {
                next_row_holding(names, before, id).or_else(|| index.get(id).copied())
            }));
        }
        out
    }

    /// `df` with its `subscriber_id` codes replaced by the text ids (as is
    /// when that column is already text).
    pub(crate) fn decode(&self, mut df: DataFrame) -> Result<DataFrame> {
        let err = || Error::polars("features: subscriber ids");
        let Ok(column) = df.column(col::SUBSCRIBER_ID) else {
            return Ok(df);
        };
        if column.dtype() != &DataType::UInt32 {
            return Ok(df);
        }
        let codes: IdxCa = column
            .u32()
            .map_err(err())?
            .clone()
            .with_name(col::SUBSCRIBER_ID.into());
        let names = self
            .names
            .take(&codes)
            .map_err(err())?
            .with_name(col::SUBSCRIBER_ID.into());
        df.with_column(names.into_column()).map_err(err())?;
        Ok(df)
    }

    /// A lazy frame's `subscriber_id` codes replaced by the text ids.
    pub(crate) fn decode_lazy(&self, lf: LazyFrame) -> LazyFrame {
        let names = DataFrame::new(
            self.names.len(),
            vec![
                Column::new(
                    "__code".into(),
                    (0..self.names.len() as u32).collect::<Vec<u32>>(),
                ),
                self.names
                    .clone()
                    .with_name(col::SUBSCRIBER_ID.into())
                    .into_column(),
            ],
        )
        .expect("columns of one length");
        lf.rename([col::SUBSCRIBER_ID], ["__code"], true)
            .join(
                names.lazy(),
                [col("__code")],
                [col("__code")],
                JoinArgs::new(JoinType::Left),
            )
            .drop(cols(["__code"]))
    }
}

fn err(t: Table) -> impl FnOnce(PolarsError) -> Error {
    Error::polars(format!("features: {} ids", t.name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs of one id that cross the parallel blocks' edges, a long id
    /// (kept out of line by polars), nulls inside and between runs, and
    /// unknown ids: every row gets the code a look-up of its own gives.
    #[test]
    fn an_index_of_ids_finds_each_ids_first_row() {
        let n = 5_000;
        let id = |i: usize| match i % 3 {
            0 => format!("s{}", i % 1_700),
            1 => format!("a-long-subscriber-id-{:08}", i % 900),
            _ => format!("{}", i % 2_100),
        };
        let ids: Vec<Option<String>> = (0..n).map(|i| (i % 41 != 7).then(|| id(i))).collect();
        let column =
            StringChunked::from_iter_options("id".into(), ids.iter().map(|s| s.as_deref()));
        let (index, firsts) = StrIndex::build(&column);
        let mut seen: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
        for (row, id) in ids.iter().enumerate() {
            let Some(id) = id else {
                assert_eq!(firsts[row], NO_CODE, "row {row}");
                continue;
            };
            let first = *seen.entry(id).or_insert(row as u32);
            assert_eq!(firsts[row], first, "row {row} ({id})");
            assert_eq!(index.get(id), Some(first), "{id}");
        }
        for absent in ["", "s1700x", "a-long-subscriber-id-00000900", "ghost"] {
            assert_eq!(index.get(absent), None, "{absent}");
        }
        let (empty, none) = StrIndex::build(&StringChunked::from_iter_options(
            "id".into(),
            [None::<&str>; 3].into_iter(),
        ));
        assert_eq!(none, vec![NO_CODE; 3]);
        assert_eq!(empty.get("a"), None);
    }

    /// [`StrIndex::get_after`] finds what [`StrIndex::get`] finds from
    /// any row before, whether the next row holds the id, another id, a
    /// null or nothing (the last row), and in an index with a repeated id,
    /// where the next row may not be the id's first. Through
    /// [`codes_in_runs`], ids sorted as the index and shuffled get the
    /// codes of a look-up each.
    #[test]
    fn a_look_up_after_a_row_finds_what_a_look_up_finds() {
        use rand::seq::SliceRandom;
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for repeated in [false, true] {
            let mut names: Vec<Option<String>> = (0..400)
                .map(|i| (i % 53 != 11).then(|| format!("id-{i:05}")))
                .collect();
            if repeated {
                // A later copy of row 30's id, right after row 40.
                names.insert(41, names[30].clone());
            }
            let column =
                StringChunked::from_iter_options("id".into(), names.iter().map(|s| s.as_deref()));
            let (index, _) = StrIndex::build(&column);
            let queries: Vec<&str> = names
                .iter()
                .flatten()
                .map(String::as_str)
                .chain(["ghost", ""])
                .collect();
            for id in &queries {
                let want = index.get(id);
                for before in (0..names.len() as u32).chain([NO_CODE, names.len() as u32 - 1]) {
                    assert_eq!(index.get_after(id, before), want, "{id} after {before}");
                }
            }
            // Bills: each name in runs, in the index's order, then shuffled.
            let mut bills: Vec<Option<&str>> = names
                .iter()
                .flat_map(|n| std::iter::repeat_n(n.as_deref(), rng.random_range(1..4)))
                .chain([Some("ghost")])
                .collect();
            for shuffle in [false, true] {
                if shuffle {
                    bills.shuffle(&mut rng);
                }
                let column = StringChunked::from_iter_options("id".into(), bills.iter().copied());
                let got = codes_in_runs(&column, |id, before| index.get_after(id, before));
                for (i, (id, code)) in bills.iter().zip(&got).enumerate() {
                    let want = id.and_then(|id| index.get(id)).unwrap_or(NO_CODE);
                    assert_eq!(*code, want, "row {i} ({id:?}), repeated {repeated}");
                }
            }
        }
    }

    /// [`Ids::codes`] takes a sorted id's code from the code before it
    /// where it can: ids in order, out of order, repeated, unknown and
    /// null get the code of the id's position among the sorted ids.
    #[test]
    fn coded_ids_in_and_out_of_order_get_their_sorted_position() {
        let names: Vec<String> = (0..300).map(|i| format!("s{i:04}")).collect();
        let ids = Ids {
            names: StringChunked::from_iter_values("id".into(), names.iter().map(String::as_str)),
        };
        let index = ids.index();
        let mut column: Vec<Option<&str>> = names.iter().map(|n| Some(n.as_str())).collect();
        column.extend([
            Some("s0299"),
            Some("s0000"),
            None,
            Some("zz"),
            Some("s0150"),
        ]);
        column.extend(names.iter().rev().step_by(7).map(|n| Some(n.as_str())));
        let got = ids
            .codes(&index, &Column::new("subscriber_id".into(), column.clone()))
            .unwrap();
        for (i, (id, code)) in column.iter().zip(&got).enumerate() {
            let want = id
                .and_then(|id| names.iter().position(|n| n == id))
                .map(|p| p as u32);
            assert_eq!(*code, want, "row {i} ({id:?})");
        }
    }

    #[test]
    fn codes_in_runs_are_each_rows_own_look_up() {
        let names = ["a", "b", "a-long-subscriber-id-000017", "ghost", "c"];
        let known: PlHashMap<&str, u32> = [
            ("a", 0),
            ("b", 1),
            ("a-long-subscriber-id-000017", 2),
            ("c", 3),
        ]
        .into_iter()
        .collect();
        let n = (1 << 14) * 2 + 999;
        let ids: Vec<Option<&str>> = (0..n)
            .map(|i| match i % 97 {
                13 => None,
                _ => Some(names[(i / 7 + i / 1000) % names.len()]),
            })
            .collect();
        let column = StringChunked::from_iter_options("id".into(), ids.iter().copied());
        let got = codes_in_runs(&column, |id, _| known.get(id).copied());
        assert_eq!(got.len(), n);
        for (i, (id, code)) in ids.iter().zip(&got).enumerate() {
            let want = id.and_then(|id| known.get(id).copied()).unwrap_or(NO_CODE);
            assert_eq!(*code, want, "row {i} ({id:?})");
        }
        // Rows both sides of a block's edge, in one run.
        assert_eq!(got[(1 << 14) - 1], got[1 << 14]);
    }
}
