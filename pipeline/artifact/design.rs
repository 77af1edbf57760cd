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
use rayon::prelude::*;
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
        let (df, unseen) = {
            let _span = tracing::debug_span!("categories").entered();
            conform_categories(df, &manifest)?
        };
        let n = df.height();
        let k = self.columns.len();
        // Each feature read once for all its columns: a number (with
        // whether it is there) per row, or the position of the row's level
        // among the feature's level columns.
        let mut numbers: Vec<(&str, Vec<f64>, Vec<bool>)> = Vec::new();
        let mut levels: Vec<(&str, Vec<u32>)> = Vec::new();
        for c in &self.columns {
            match c {
                DesignColumn::Level { feature, .. } => {
                    if levels.iter().any(|(f, _)| f == feature) {
                        continue;
                    }
                    let of_feature: Vec<&str> = self
                        .columns
                        .iter()
                        .filter_map(|c| match c {
                            DesignColumn::Level { feature: f, level } if f == feature => {
                                Some(level.as_str())
                            }
                            _ => None,
                        })
                        .collect();
                    let s = df
                        .column(feature)
                        .and_then(|c| c.str().cloned())
                        .map_err(Error::polars(format!("design: column {feature}")))?;
                    let codes = s
                        .iter()
                        .map(|v| {
                            v.and_then(|v| of_feature.iter().position(|l| *l == v))
                                .map_or(u32::MAX, |p| p as u32)
                        })
                        .collect();
                    levels.push((feature.as_str(), codes));
                }
                DesignColumn::Numeric { feature, .. }
                | DesignColumn::AtLeast { feature, .. }
                | DesignColumn::Missing { feature }
                | DesignColumn::Flag { feature } => {
                    if numbers.iter().any(|(f, _, _)| f == feature) {
                        continue;
                    }
                    let c = float_column(&df, feature)?;
                    let valid = c.iter().map(|v| v.is_some()).collect();
                    let values = c.iter().map(|v| v.unwrap_or(0.0)).collect();
                    numbers.push((feature.as_str(), values, valid));
                }
            }
        }
        // How each column reads its feature.
        enum Read<'a> {
            Numeric(&'a [f64], &'a [bool], f64),
            AtLeast(&'a [f64], &'a [bool], f64),
            Missing(&'a [bool]),
            Flag(&'a [f64], &'a [bool]),
            Level(&'a [u32], u32),
        }
        let number = |feature: &str| {
            let (_, v, ok) = numbers
                .iter()
                .find(|(f, _, _)| *f == feature)
                .expect("read above");
            (v.as_slice(), ok.as_slice())
        };
        let mut seen: Vec<(&str, u32)> = Vec::new();
        let reads: Vec<Read<'_>> = self
            .columns
            .iter()
            .map(|c| match c {
                DesignColumn::Numeric { feature, fill } => {
                    let (v, ok) = number(feature);
                    Read::Numeric(v, ok, *fill)
                }
                DesignColumn::AtLeast { feature, threshold } => {
                    let (v, ok) = number(feature);
                    Read::AtLeast(v, ok, *threshold)
                }
                DesignColumn::Missing { feature } => Read::Missing(number(feature).1),
                DesignColumn::Flag { feature } => {
                    let (v, ok) = number(feature);
                    Read::Flag(v, ok)
                }
                DesignColumn::Level { feature, .. } => {
                    let (_, codes) = levels
                        .iter()
                        .find(|(f, _)| f == feature)
                        .expect("read above");
                    // The feature's level columns are numbered in order.
                    let at = match seen.iter_mut().find(|(f, _)| f == feature) {
                        Some((_, next)) => {
                            *next += 1;
                            *next
                        }
                        None => {
                            seen.push((feature.as_str(), 0));
                            0
                        }
                    };
                    Read::Level(codes, at)
                }
            })
            .collect();
        // A numeric column's value must be finite once filled: the first
        // that is not, in column order, is the error.
        for (c, read) in self.columns.iter().zip(&reads) {
            if let (DesignColumn::Numeric { feature, .. }, Read::Numeric(v, ok, fill)) = (c, read)
                && let Some(i) = (0..n).find(|i| !(if ok[*i] { v[*i] } else { *fill }).is_finite())
            {
                return Err(self.non_finite(&df, feature, i, if ok[i] { v[i] } else { *fill }));
            }
        }
        // Filled in blocks of rows (each block's rows stay in cache while
        // every column is written into them), blocks in parallel.
        const BLOCK: usize = 1024;
        let mut x = vec![0.0; n * k];
        if k > 0 {
            x.par_chunks_mut(BLOCK * k)
                .enumerate()
                .for_each(|(b, block)| {
                    let first = b * BLOCK;
                    let rows = block.len() / k;
                    for (j, read) in reads.iter().enumerate() {
                        for i in 0..rows {
                            let r = first + i;
                            block[i * k + j] = match read {
                                Read::Numeric(v, ok, fill) => {
                                    if ok[r] {
                                        v[r]
                                    } else {
                                        *fill
                                    }
                                }
                                Read::AtLeast(v, ok, t) => f64::from(u8::from(ok[r] && v[r] >= *t)),
                                Read::Missing(ok) => f64::from(u8::from(!ok[r])),
                                Read::Flag(v, ok) => {
                                    if ok[r] {
                                        v[r]
                                    } else {
                                        0.0
                                    }
                                }
                                Read::Level(codes, at) => f64::from(u8::from(codes[r] == *at)),
                            };
                        }
                    }
                });
        }
        Ok((x, unseen))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::features::FeatureSpec;

    fn manifest() -> Manifest {
        let spec = FeatureSpec::of;
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
    fn a_matrix_of_many_blocks_has_each_rows_own_values() {
        let n = 2_600;
        let plans = [
            Some("basic"),
            Some("premium"),
            None,
            Some("gold"),
            Some("standard"),
        ];
        let df = DataFrame::new(
            n,
            vec![
                Column::new(
                    "tenure".into(),
                    (0..n).map(|i| (i % 97) as f64).collect::<Vec<_>>(),
                ),
                Column::new(
                    "share".into(),
                    (0..n)
                        .map(|i| (i % 3 != 0).then_some((i % 11) as f64 / 10.0))
                        .collect::<Vec<_>>(),
                ),
                Column::new(
                    "referred".into(),
                    (0..n)
                        .map(|i| (i % 5 != 0).then_some(i % 2 == 0))
                        .collect::<Vec<_>>(),
                ),
                Column::new(
                    "plan".into(),
                    (0..n).map(|i| plans[i % 5]).collect::<Vec<_>>(),
                ),
            ],
        )
        .unwrap();
        let d = Design::fit_binned(
            &manifest(),
            &df,
            &["tenure", "share", "referred", "plan"],
            4,
        )
        .unwrap();
        let k = d.columns.len();
        let (x, _) = d.matrix(&df).unwrap();
        assert_eq!(x.len(), n * k);
        for i in [0, 1, 1023, 1024, 1025, 2047, 2048, 2599] {
            let (row, _) = d.matrix(&df.slice(i as i64, 1)).unwrap();
            assert_eq!(&x[i * k..(i + 1) * k], row.as_slice(), "row {i}");
        }
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
