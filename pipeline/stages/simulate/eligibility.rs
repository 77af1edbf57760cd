//! Who may be offered anything: days since the defection within the
//! window, no exclusion flag true or unknown, no offer within the recent
//! days; the first rule each excluded subscriber fails, counted.

use std::collections::BTreeMap;

use polars::prelude::*;

use crate::error::{Error, Result};
use crate::schema::{Table, col};
use crate::stages::features::{Inputs as FeatureInputs, epoch_days, f};

use super::settings::SimulateSettings;

/// Why a lapsed subscriber is not eligible, the first rule that fails:
/// `flags` are the exclusion flags' names and this subscriber's values.
pub(crate) fn exclusion<'a>(
    days: Option<i32>,
    flags: impl Iterator<Item = (&'a String, Option<bool>)>,
    offered_recently: bool,
    s: &SimulateSettings,
) -> Option<String> {
    let d = days.unwrap_or(i32::MAX);
    if d < s.min_days_since_defection as i32 {
        return Some(format!(
            "defected under {} days ago",
            s.min_days_since_defection
        ));
    }
    if d > s.max_days_since_defection as i32 {
        return Some(format!(
            "defected over {} days ago",
            s.max_days_since_defection
        ));
    }
    for (name, v) in flags {
        if v.unwrap_or(true) {
            return Some(format!("{name} true or unknown"));
        }
    }
    if offered_recently {
        return Some(format!("offered within {} days", s.no_offer_within_days));
    }
    None
}

/// The eligible rows of the lapsed frame and the exclusion counts.
pub(crate) fn eligible(
    lapsed: &DataFrame,
    inputs: &FeatureInputs,
    as_of: chrono::NaiveDate,
    s: &SimulateSettings,
) -> Result<(DataFrame, Vec<(String, usize)>)> {
    let mut subs = inputs.get(Table::Subscribers);
    let schema = subs
        .collect_schema()
        .map_err(Error::polars("simulate: subscribers schema"))?;
    let missing: Vec<&String> = s
        .exclude_flags
        .iter()
        .filter(|n| !schema.contains(n.as_str()))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Setting {
            key: "simulate.exclude_flags".into(),
            message: format!(
                "not a column of subscribers: {}; columns: {}",
                missing
                    .iter()
                    .map(|m| format!("`{m}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                schema
                    .iter_names()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    let mut select = vec![col(col::SUBSCRIBER_ID)];
    select.extend(
        s.exclude_flags
            .iter()
            .map(|n| col(n.as_str()).cast(DataType::Boolean)),
    );
    let recent = inputs
        .get(Table::WinbackOffers)
        .filter(
            col(col::OFFERED_AT)
                .cast(DataType::Int32)
                .lt_eq(lit(epoch_days(as_of)))
                .and(
                    col(col::OFFERED_AT)
                        .cast(DataType::Int32)
                        .gt(lit(epoch_days(as_of) - s.no_offer_within_days as i32)),
                ),
        )
        .group_by([col(col::SUBSCRIBER_ID)])
        .agg([lit(true).alias("__offered").first()]);
    let checked = lapsed
        .clone()
        .lazy()
        .select([col(col::SUBSCRIBER_ID), col(f::DAYS_SINCE_DEFECTION)])
        .with_row_index("__row", None)
        .join(
            subs.select(select),
            [col(col::SUBSCRIBER_ID)],
            [col(col::SUBSCRIBER_ID)],
            JoinArgs::new(JoinType::Left),
        )
        .join(
            recent,
            [col(col::SUBSCRIBER_ID)],
            [col(col::SUBSCRIBER_ID)],
            JoinArgs::new(JoinType::Left),
        )
        .sort(["__row"], SortMultipleOptions::default())
        .collect()
        .map_err(Error::polars("simulate: eligibility"))?;
    if checked.height() != lapsed.height() {
        return Err(Error::Data {
            table: "subscribers".into(),
            message: format!(
                "{} lapsed subscribers matched {} subscriber rows: a lapsed subscriber matches several subscriber rows (validate's unique-id rule catches this in the input)",
                lapsed.height(),
                checked.height()
            ),
        });
    }
    let days: Vec<Option<i32>> = checked
        .column(f::DAYS_SINCE_DEFECTION)
        .and_then(|c| c.cast(&DataType::Int32))
        .and_then(|c| c.i32().cloned())
        .map_err(Error::polars("simulate: days_since_defection"))?
        .iter()
        .collect();
    let flag_values: Vec<Vec<Option<bool>>> = s
        .exclude_flags
        .iter()
        .map(|n| {
            Ok(checked
                .column(n)
                .and_then(|c| c.bool().cloned())
                .map_err(Error::polars(format!("simulate: flag {n}")))?
                .iter()
                .collect())
        })
        .collect::<Result<_>>()?;
    let offered: Vec<bool> = checked
        .column("__offered")
        .and_then(|c| c.bool().cloned())
        .map_err(Error::polars("simulate: recent offers"))?
        .iter()
        .map(|v| v.unwrap_or(false))
        .collect();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut keep = Vec::with_capacity(lapsed.height());
    for i in 0..lapsed.height() {
        let flags = s.exclude_flags.iter().zip(flag_values.iter().map(|v| v[i]));
        match exclusion(days[i], flags, offered[i], s) {
            None => keep.push(true),
            Some(reason) => {
                keep.push(false);
                *counts.entry(reason).or_default() += 1;
            }
        }
    }
    let mask = BooleanChunked::from_slice("keep".into(), &keep);
    let df = lapsed
        .filter(&mask)
        .map_err(Error::polars("simulate: eligible rows"))?;
    Ok((df, counts.into_iter().collect()))
}
