//! Settings of the features stage (`[features]` in the config) and their
//! defaults.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// When a bill (dated on the first of its month, carrying the whole
/// month's usage and charges) counts as known to a feature as of a date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BillKnown {
    /// Once its month has ended: the bill of month M counts as of D when
    /// the last day of M is on or before D.
    #[default]
    MonthEnd,
    /// From the first of its month (for extracts whose `month` is the
    /// date the bill was issued, after the month it covers).
    MonthStart,
}

/// Settings of the features stage (`[features]` in the config).
#[derive(Debug, Clone, Serialize)]
pub struct FeatureSettings {
    /// Days after an offer within which a return counts as its response.
    pub response_window_days: u32,
    /// Churn label horizon of the snapshots, in days.
    pub churn_horizon_days: u32,
    /// Snapshot dates; empty: `snapshot_count` dates `snapshot_every_months`
    /// apart, the last one the latest month start whose horizon is observed.
    pub snapshots: Vec<NaiveDate>,
    /// Spacing of the default snapshots.
    pub snapshot_every_months: u32,
    /// Number of default snapshots.
    pub snapshot_count: u32,
    /// Margin share of revenue where billing has no cost to serve.
    pub margin_rate: f64,
    /// When a bill counts as known.
    pub bill_known: BillKnown,
    /// Extra numeric columns of `subscribers` to carry as features.
    pub extra_numeric: Vec<String>,
    /// Extra categorical columns of `subscribers` to carry as features.
    pub extra_categorical: Vec<String>,
    /// Subscribers whose bills the stage holds at once: with more, the
    /// bills are spilled to disk by block and the stage's outputs built
    /// a block at a time.
    pub block_subscribers: u32,
    /// Most levels a categorical feature keeps, the most frequent; the
    /// others are `other`.
    pub max_levels: u32,
    /// Fewest rows a categorical level needs to be kept.
    pub min_level_rows: u32,
}

impl Default for FeatureSettings {
    fn default() -> Self {
        FeatureSettings {
            response_window_days: 90,
            churn_horizon_days: 90,
            snapshots: Vec::new(),
            snapshot_every_months: 3,
            snapshot_count: 8,
            margin_rate: 0.45,
            bill_known: BillKnown::MonthEnd,
            extra_numeric: Vec::new(),
            extra_categorical: Vec::new(),
            block_subscribers: 1_000_000,
            max_levels: 50,
            min_level_rows: 20,
        }
    }
}

impl FeatureSettings {
    /// The subscriber's own columns an event's features take, as the
    /// joins and the walk both select them: signup date, plan and fee at
    /// signup (`__plan0`, `__fee0`), region, channel, and the extra
    /// columns (numeric as Float64, categorical as text).
    pub(crate) fn subscriber_columns(&self) -> Vec<polars::prelude::Expr> {
        use crate::schema::col;
        use polars::prelude::{DataType, col as c};
        let mut out = vec![
            c(col::SIGNUP_DATE),
            c(col::PLAN).alias("__plan0"),
            c(col::MONTHLY_FEE).alias("__fee0"),
            c(col::REGION),
            c(col::CHANNEL),
        ];
        for extra in self.extra_numeric.iter() {
            out.push(c(extra.as_str()).cast(DataType::Float64));
        }
        for extra in self.extra_categorical.iter() {
            out.push(c(extra.as_str()).cast(DataType::String));
        }
        out
    }
}
