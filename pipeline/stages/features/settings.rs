//! Settings of the features stage (`[features]` in the config) and their
//! defaults.

use chrono::NaiveDate;
use serde::Serialize;

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
    /// Extra numeric columns of `subscribers` to carry as features.
    pub extra_numeric: Vec<String>,
    /// Extra categorical columns of `subscribers` to carry as features.
    pub extra_categorical: Vec<String>,
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
            extra_numeric: Vec::new(),
            extra_categorical: Vec::new(),
        }
    }
}
