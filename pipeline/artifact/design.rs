//! The design matrix: features (as the manifest describes them) turned into
//! the numbers a model takes, the same way at training and at scoring.
//!
//! - A numeric feature is one column; a null becomes the training mean, and
//!   when the training rows had nulls, an indicator column `<name>=missing`
//!   says so (so "no complaint yet" is not confused with an average).
//! - A flag is one 0/1 column (null is 0).
//! - A one-hot feature gets one column per category seen in training except
//!   the first (the reference level), plus `<name>=other` for values not
//!   seen and nulls (see [`super::features::conform_categories`]).
//!
//! The [`Design`] is fitted on training rows and stored with the model.

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::schema::col;
use crate::stages::features::{Encoding, Manifest, OTHER_LEVEL, Unseen, conform_categories};
use crate::stages::validate::readable_id;

/// One column of the design matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DesignColumn {
    /// A numeric feature, nulls filled with `fill` (the training mean).
    Numeric {
        /// Feature.
        feature: String,
        /// Value for nulls.
        fill: f64,
    },
    /// 1 where the numeric feature is at least `threshold` (a learned step:
    /// with the linear term, a piecewise-linear-plus-steps transform whose
    /// thresholds are training quantiles).
    AtLeast {
        /// Feature.
        feature: String,
        /// Threshold.
        threshold: f64,
    },
    /// 1 where the numeric feature is null.
    Missing {
        /// Feature.
        feature: String,
    },
    /// A 0/1 flag (null is 0).
    Flag {
        /// Feature.
        feature: String,
    },
    /// 1 where the categorical feature equals `level`.
    Level {
        /// Feature.
        feature: String,
        /// Category (or `other`).
        level: String,
    },
}

impl DesignColumn {
    /// Readable name: `tenure_months`, `plan=premium`, `share_satisfied=missing`.
    pub fn name(&self) -> String {
        match self {
            DesignColumn::Numeric { feature, .. } | DesignColumn::Flag { feature } => {
                feature.clone()
            }
            DesignColumn::Missing { feature } => format!("{feature}=missing"),
            DesignColumn::AtLeast { feature, threshold } => format!("{feature}>={threshold}"),
            DesignColumn::Level { feature, level } => format!("{feature}={level}"),
        }
    }
}

/// How a frame becomes a matrix; fitted on training rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Design {
    /// The manifest the features were built with.
    pub manifest: Manifest,
    /// Columns, in matrix order.
    pub columns: Vec<DesignColumn>,
}

fn float_column(df: &DataFrame, name: &str) -> Result<Float64Chunked> {
    let c = df
        .column(name)
        .map_err(Error::polars(format!("design: column {name}")))?
        .cast(&DataType::Float64)
        .map_err(Error::polars(format!("design: column {name} as a number")))?;
    Ok(c.f64()
        .map_err(Error::polars(format!("design: column {name}")))?
        .clone())
}

/// Distinct inner quantiles of the non-null values (rounded to 4
/// significant digits, so names read well); none when the column has at
/// most `bins` distinct values or `bins < 2`.
fn quantile_thresholds(c: &Float64Chunked, bins: usize) -> Vec<f64> {
    if bins < 2 {
        return Vec::new();
    }
    let mut v: Vec<f64> = c.iter().flatten().filter(|v| v.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let mut distinct = v.clone();
    distinct.dedup();
    if distinct.len() <= bins {
        return Vec::new();
    }
    let round = |x: f64| {
        if x == 0.0 {
            return 0.0;
        }
        let p = 10f64.powi(3 - x.abs().log10().floor() as i32);
        (x * p).round() / p
    };
    let mut out: Vec<f64> = (1..bins)
        .map(|q| round(v[(q * v.len() / bins).min(v.len() - 1)]))
        .filter(|t| *t > v[0])
        .collect();
    out.dedup();
    out
}

impl Design {
    /// Fits on `train` for the manifest's features named in `features`.
    pub fn fit(manifest: &Manifest, train: &DataFrame, features: &[&str]) -> Result<Design> {
        Design::fit_binned(manifest, train, features, 0)
    }

    /// As [`Design::fit`], and each numeric feature with more than `bins`
    /// distinct values also gets step columns at its training quantiles
    /// 1/bins, ..., (bins-1)/bins (distinct thresholds only); `bins` below 2
    /// adds none.
    pub fn fit_binned(
        manifest: &Manifest,
        train: &DataFrame,
        features: &[&str],
        bins: usize,
    ) -> Result<Design> {
        let mut columns = Vec::new();
        for name in features {
            let spec = manifest
                .features
                .iter()
                .find(|f| f.name == *name)
                .ok_or_else(|| Error::Setting {
                    key: (*name).to_string(),
                    message: "not a feature of the manifest".into(),
                })?;
            match spec.encoding {
                Encoding::Numeric => {
                    let c = float_column(train, name)?;
                    let fill = c.mean().unwrap_or(0.0);
                    columns.push(DesignColumn::Numeric {
                        feature: spec.name.clone(),
                        fill,
                    });
                    if c.null_count() > 0 {
                        columns.push(DesignColumn::Missing {
                            feature: spec.name.clone(),
                        });
                    }
                    for threshold in quantile_thresholds(&c, bins) {
                        columns.push(DesignColumn::AtLeast {
                            feature: spec.name.clone(),
                            threshold,
                        });
                    }
                }
                Encoding::Flag => columns.push(DesignColumn::Flag {
                    feature: spec.name.clone(),
                }),
                Encoding::OneHot => {
                    // `other` is the bucket of unseen values; where it is
                    // a category of its own, unseen values join it.
                    let bucket =
                        (!spec.categories.iter().any(|c| c == OTHER_LEVEL)).then_some(OTHER_LEVEL);
                    for level in spec
                        .categories
                        .iter()
                        .skip(1)
                        .map(String::as_str)
                        .chain(bucket)
                    {
                        columns.push(DesignColumn::Level {
                            feature: spec.name.clone(),
                            level: level.to_string(),
                        });
                    }
                }
            }
        }
        Ok(Design {
            manifest: manifest.clone(),
            columns,
        })
    }

    /// Column names, in matrix order.
    pub fn names(&self) -> Vec<String> {
        self.columns.iter().map(DesignColumn::name).collect()
    }

    /// The error for a NaN or infinite value of `feature` in row `i`,
    /// naming the feature, its source columns and the subscriber.
    fn non_finite(&self, df: &DataFrame, feature: &str, i: usize, v: f64) -> Error {
        let sources = self
            .manifest
            .features
            .iter()
            .find(|f| f.name == feature)
            .map(|f| f.sources.join(", "))
            .unwrap_or_default();
        let id = df
            .column(col::SUBSCRIBER_ID)
            .ok()
            .and_then(|c| c.str().ok().and_then(|s| s.get(i).map(readable_id)))
            .unwrap_or_else(|| "(unknown)".into());
        Error::Data {
            table: "features".into(),
            message: format!(
                "feature `{feature}` (from {sources}) is {v} for subscriber_id {id} (row {i}): a model takes finite values only; check those columns"
            ),
        }
    }

    /// The matrix of `df` (rows in order, `rows x columns` row-major) and,
    /// per categorical feature, how many values fell into `other`.
    pub fn matrix(&self, df: &DataFrame) -> Result<(Vec<f64>, Unseen)> {
        let used: Vec<&str> = self
            .columns
            .iter()
            .filter_map(|c| match c {
                DesignColumn::Level { feature, .. } => Some(feature.as_str()),
                _ => None,
            })
            .collect();
        let manifest = Manifest {
            features: self
                .manifest
                .features
                .iter()
                .filter(|f| used.contains(&f.name.as_str()))
                .cloned()
                .collect(),
            ..self.manifest.clone()
        };
        let (df, unseen) = conform_categories(df, &manifest)?;
        let n = df.height();
        let k = self.columns.len();
        let mut x = vec![0.0; n * k];
        for (j, c) in self.columns.iter().enumerate() {
            match c {
                DesignColumn::Numeric { feature, fill } => {
                    for (i, v) in float_column(&df, feature)?.iter().enumerate() {
                        let v = v.unwrap_or(*fill);
                        if !v.is_finite() {
                            return Err(self.non_finite(&df, feature, i, v));
                        }
                        x[i * k + j] = v;
                    }
                }
                DesignColumn::AtLeast { feature, threshold } => {
                    for (i, v) in float_column(&df, feature)?.iter().enumerate() {
                        x[i * k + j] = match v {
                            Some(v) if v >= *threshold => 1.0,
                            _ => 0.0,
                        };
                    }
                }
                DesignColumn::Missing { feature } => {
                    for (i, v) in float_column(&df, feature)?.iter().enumerate() {
                        x[i * k + j] = if v.is_none() { 1.0 } else { 0.0 };
                    }
                }
                DesignColumn::Flag { feature } => {
                    for (i, v) in float_column(&df, feature)?.iter().enumerate() {
                        x[i * k + j] = v.unwrap_or(0.0);
                    }
                }
                DesignColumn::Level { feature, level } => {
                    let c = df
                        .column(feature)
                        .map_err(Error::polars(format!("design: column {feature}")))?;
                    let s = c
                        .str()
                        .map_err(Error::polars(format!("design: column {feature}")))?;
                    for (i, v) in s.iter().enumerate() {
                        x[i * k + j] = if v == Some(level.as_str()) { 1.0 } else { 0.0 };
                    }
                }
            }
        }
        Ok((x, unseen))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::features::FeatureSpec;

    fn manifest() -> Manifest {
        let spec = |name: &str, encoding, categories: &[&str]| FeatureSpec {
            name: name.into(),
            dtype: String::new(),
            encoding,
            sources: vec![],
            categories: categories.iter().map(|c| c.to_string()).collect(),
        };
        Manifest {
            version: 1,
            features: vec![
                spec("tenure", Encoding::Numeric, &[]),
                spec("share", Encoding::Numeric, &[]),
                spec("referred", Encoding::Flag, &[]),
                spec("plan", Encoding::OneHot, &["basic", "premium", "standard"]),
            ],
            unseen_category_policy: String::new(),
        }
    }

    fn frame(plan: &[Option<&str>]) -> DataFrame {
        DataFrame::new(
            3,
            vec![
                Column::new("tenure".into(), [1.0, 2.0, 6.0]),
                Column::new("share".into(), [Some(0.5), None, Some(1.0)]),
                Column::new("referred".into(), [Some(true), Some(false), None]),
                Column::new("plan".into(), plan.to_vec()),
            ],
        )
        .unwrap()
    }

    #[test]
    fn numeric_flag_and_one_hot_columns_by_hand() {
        let train = frame(&[Some("basic"), Some("premium"), Some("standard")]);
        let d = Design::fit(
            &manifest(),
            &train,
            &["tenure", "share", "referred", "plan"],
        )
        .unwrap();
        assert_eq!(
            d.names(),
            [
                "tenure",
                "share",
                "share=missing",
                "referred",
                "plan=premium",
                "plan=standard",
                "plan=other"
            ]
        );
        // Scoring rows: an unseen plan and a null plan go to `other`; the
        // null share takes the training mean 0.75 and raises its indicator.
        let score = frame(&[Some("gold"), Some("premium"), None]);
        let (x, unseen) = d.matrix(&score).unwrap();
        #[rustfmt::skip]
        let expected = [
            1.0, 0.5, 0.0, 1.0, 0.0, 0.0, 1.0,
            2.0, 0.75, 1.0, 0.0, 1.0, 0.0, 0.0,
            6.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0,
        ];
        assert_eq!(x, expected);
        assert_eq!(unseen, [("plan".to_string(), 2)]);
    }

    #[test]
    fn quantile_steps_by_hand() {
        let tenure: Vec<Option<f64>> = (0..100).map(|i| Some(i as f64)).chain([None]).collect();
        let df = DataFrame::new(101, vec![Column::new("tenure".into(), tenure)]).unwrap();
        let d = Design::fit_binned(&manifest(), &df, &["tenure"], 4).unwrap();
        assert_eq!(
            d.names(),
            [
                "tenure",
                "tenure=missing",
                "tenure>=25",
                "tenure>=50",
                "tenure>=75"
            ]
        );
        let (x, _) = d.matrix(&df.slice(49, 2)).unwrap();
        assert_eq!(x, [49.0, 0.0, 1.0, 0.0, 0.0, 50.0, 0.0, 1.0, 1.0, 0.0]);
        // A null is in no step (its indicator carries it).
        let (x, _) = d.matrix(&df.slice(100, 1)).unwrap();
        assert_eq!(x, [49.5, 1.0, 0.0, 0.0, 0.0]);
        // Few distinct values: no steps.
        let few = DataFrame::new(3, vec![Column::new("tenure".into(), [1.0, 2.0, 2.0])]).unwrap();
        let d = Design::fit_binned(&manifest(), &few, &["tenure"], 4).unwrap();
        assert_eq!(d.names(), ["tenure"]);
    }

    #[test]
    fn a_design_round_trips_through_json() {
        let train = frame(&[Some("basic"), Some("premium"), Some("standard")]);
        let d = Design::fit(&manifest(), &train, &["tenure", "share", "plan"]).unwrap();
        let back: Design = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert_eq!(back, d);
        assert_eq!(back.matrix(&train).unwrap().0, d.matrix(&train).unwrap().0);
    }

    #[test]
    fn an_unknown_feature_is_an_error() {
        let train = frame(&[Some("basic"), Some("premium"), Some("standard")]);
        let err = Design::fit(&manifest(), &train, &["tenure", "usage"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("usage"), "{err}");
    }
}
