//! The input tables as the features stage reads them, and the lazy
//! expressions its steps share (dates as day numbers, joins, margins, the
//! data's end).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use polars::prelude::*;

use crate::error::{Error, Result};
use crate::schema::{Table, col};

/// Days per month used to express day counts in months.
pub const DAYS_PER_MONTH: f64 = 30.4375;

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

pub(crate) fn days(c: &str) -> Expr {
    col(c).cast(DataType::Int32)
}

pub(crate) fn date_lit(d: NaiveDate) -> Expr {
    lit(epoch_days(d)).cast(DataType::Date)
}

pub(crate) fn month_index(e: Expr) -> Expr {
    e.clone().dt().year().cast(DataType::Int32) * lit(12) + e.dt().month().cast(DataType::Int32)
}

/// `value` where `mask` holds, null elsewhere.
pub(crate) fn masked(mask: Expr, value: Expr, name: &str) -> Expr {
    when(mask)
        .then(value)
        .otherwise(lit(NULL).cast(DataType::Float64))
        .alias(name)
}

/// Days since 1970-01-01.
pub fn epoch_days(d: NaiveDate) -> i32 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid")).num_days() as i32
}

pub(crate) fn from_epoch_days(n: i32) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid") + chrono::Duration::days(n as i64)
}

pub(crate) fn join(a: LazyFrame, b: LazyFrame, on: &[&str], how: JoinType) -> LazyFrame {
    let k: Vec<Expr> = on.iter().map(|c| col(*c)).collect();
    a.join(b, k.clone(), k, JoinArgs::new(how))
}

pub(crate) fn collect(lf: LazyFrame, step: &str) -> Result<DataFrame> {
    crate::stages::collect(lf, format!("features: {step}"))
}

/// The margin of a bill: revenue less cost to serve, or revenue times the
/// margin rate where the cost is unknown.
pub(crate) fn margin(rate: f64) -> Expr {
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
        .ok_or_else(|| Error::Data {
            table: "billing".into(),
            message: "no rows: features need at least one billed month".into(),
        })?;
    let first = from_epoch_days(m);
    let next = first
        .checked_add_months(chrono::Months::new(1))
        .expect("date in range");
    Ok(next.pred_opt().expect("date in range"))
}
