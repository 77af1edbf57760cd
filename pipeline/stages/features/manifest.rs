//! The features' names and the manifest that describes them (type,
//! encoding, sources, categories), written beside the features and stored
//! with every model; and the conforming of categories to a manifest.

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Column names of the features and labels.
pub mod f {
    #![allow(missing_docs)]
    pub const AS_OF: &str = "as_of";
    pub const EVENT: &str = "__event";
    pub const LIFETIME_START: &str = "lifetime_start";
    pub const TENURE_MONTHS: &str = "tenure_months";
    pub const BILLED_MONTHS: &str = "billed_months";
    pub const REVENUE_MEAN: &str = "revenue_mean";
    pub const MARGIN_MEAN: &str = "margin_mean";
    pub const REVENUE_LAST3: &str = "revenue_last3";
    pub const MARGIN_LAST3: &str = "margin_last3";
    pub const REVENUE_TREND: &str = "revenue_trend";
    pub const BILL_RATIO_MAX3: &str = "bill_ratio_max3";
    pub const LIFETIME_VALUE: &str = "lifetime_value";
    pub const VALUE_TO_DATE: &str = "value_to_date";
    pub const PLAN: &str = "plan";
    pub const FEE: &str = "monthly_fee";
    pub const COMPLAINTS: &str = "complaints";
    pub const COMPLAINTS_SATISFIED: &str = "complaints_satisfied";
    pub const COMPLAINTS_UNSATISFIED: &str = "complaints_unsatisfied";
    pub const COMPLAINTS_OPEN: &str = "complaints_open";
    pub const COMPLAINTS_6M: &str = "complaints_6m";
    pub const SHARE_SATISFIED: &str = "share_satisfied";
    pub const DAYS_SINCE_COMPLAINT: &str = "days_since_complaint";
    pub const NEVER_COMPLAINED: &str = "never_complained";
    pub const REFERRALS: &str = "referrals";
    pub const HAS_REFERRED: &str = "has_referred";
    pub const WAS_REFERRED: &str = "was_referred";
    pub const EARLIER_DEFECTIONS: &str = "earlier_defections";
    pub const MONTHS_SINCE_RETURN: &str = "months_since_return";
    pub const REGION: &str = "region";
    pub const CHANNEL: &str = "channel";
    pub const LEAVE_REASON: &str = "leave_reason";
    pub const DAYS_SINCE_DEFECTION: &str = "days_since_defection";
    pub const RETURNED: &str = "returned";
    pub const RETURNED_AT: &str = "returned_at";
    pub const WINDOW_OBSERVED: &str = "window_observed";
    pub const CHURNED: &str = "churned_within_horizon";
    pub const HORIZON_OBSERVED: &str = "horizon_observed";
    pub const HORIZON_QUARTER: &str = "horizon_quarter";
    pub const SNAPSHOT: &str = "snapshot";
    pub const MONTHS_RETAINED: &str = "months_retained";
    pub const SECOND_MARGIN: &str = "second_lifetime_margin";
    pub const SECOND_BILLS: &str = "second_lifetime_bills";
    pub const BILL_MONTHS: &str = "second_lifetime_bill_months";
    pub const BILL_MARGINS: &str = "second_lifetime_bill_margins";
    pub const BILL_COSTED: &str = "second_lifetime_bill_costed";
    pub const CENSORED: &str = "censored";
    pub const WON_BACK_BY: &str = "won_back_by";
}

/// How a feature is turned into numbers by the models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// Used as a number (standardised by the model; nulls imputed by it).
    Numeric,
    /// 0 or 1.
    Flag,
    /// One indicator per category seen in training; a category not seen
    /// in training, and a null, fall into the `other` level.
    OneHot,
}

/// One feature of the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    /// Column name.
    pub name: String,
    /// Arrow type of the column.
    pub dtype: String,
    /// Encoding.
    pub encoding: Encoding,
    /// Input columns it is computed from (`table.column`).
    pub sources: Vec<String>,
    /// Categories seen in the training rows (one-hot features only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
}

#[cfg(test)]
impl FeatureSpec {
    /// A feature of the tests' manifests: no type, no sources.
    pub(crate) fn of(name: &str, encoding: Encoding, categories: &[&str]) -> FeatureSpec {
        FeatureSpec {
            name: name.into(),
            dtype: String::new(),
            encoding,
            sources: vec![],
            categories: categories.iter().map(|c| c.to_string()).collect(),
        }
    }
}

/// The level unseen categories and nulls of a one-hot feature map to.
pub const OTHER_LEVEL: &str = "other";

/// The features a frame carries, saved with the output so that training and
/// scoring encode identically.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Version of this layout.
    pub version: u32,
    /// Features, in model order.
    pub features: Vec<FeatureSpec>,
    /// What happens to a category not seen in training.
    pub unseen_category_policy: String,
}

/// Per categorical feature, how many values were mapped to [`OTHER_LEVEL`].
pub type Unseen = Vec<(String, usize)>;

/// Brings a frame's one-hot features onto the manifest's categories: a value
/// seen in training stays, any other value and a null become
/// [`OTHER_LEVEL`]. Returns the frame and, per feature, how many values were
/// mapped to `other` (for the scoring summary), so nothing is mis-encoded
/// silently. A feature of the manifest missing from the frame is an error.
pub fn conform_categories(df: &DataFrame, manifest: &Manifest) -> Result<(DataFrame, Unseen)> {
    let mut out = df.clone();
    let mut unseen = Vec::new();
    for spec in manifest
        .features
        .iter()
        .filter(|s| s.encoding == Encoding::OneHot)
    {
        let column = df.column(&spec.name).map_err(|_| Error::Setting {
            key: spec.name.clone(),
            message: format!(
                "the frame has no column `{}`, which the feature manifest names; it was built by another features stage or config",
                spec.name
            ),
        })?;
        let values = column
            .cast(&DataType::String)
            .map_err(Error::polars(format!("features: category {}", spec.name)))?;
        let values = values
            .str()
            .map_err(Error::polars(format!("features: category {}", spec.name)))?;
        let known: std::collections::HashSet<&str> =
            spec.categories.iter().map(String::as_str).collect();
        let mut n = 0usize;
        let mapped: StringChunked = values
            .iter()
            .map(|v| match v {
                Some(v) if known.contains(v) => Some(v),
                _ => {
                    n += 1;
                    Some(OTHER_LEVEL)
                }
            })
            .collect();
        out.replace(
            &spec.name,
            mapped.with_name(spec.name.as_str().into()).into_column(),
        )
        .map_err(Error::polars(format!("features: category {}", spec.name)))?;
        unseen.push((spec.name.clone(), n));
    }
    Ok((out, unseen))
}
