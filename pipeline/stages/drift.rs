//! Drift of a scoring population from the model's training population:
//! the population stability index (PSI) per feature and on the score.
//!
//! At training, [`reference`] bins the churn model's population (its latest
//! training snapshot: the nearest in time to the nights that follow) per
//! feature: numeric features by their deciles (ties merged) with a bin for
//! nulls, categorical ones by level. At scoring, [`psi`] bins the new
//! population the same way and sums `(a - e) ln(a / e)` over the bins, each
//! share floored at 1e-4. Rules of thumb: below 0.1 stable, 0.1 to 0.25 a
//! shift worth a look, above 0.25 a different population.

use std::collections::BTreeMap;

use polars::prelude::*;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The smallest share a bin counts with (an empty bin would make PSI
/// infinite).
const FLOOR: f64 = 1e-4;

/// How one feature (or the score) was distributed in training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Binned {
    /// Numbers: bins `(-inf, e0], (e0, e1], ..., (ek, inf)`, and nulls.
    Numeric {
        /// Inner bin edges (deciles, ties merged).
        edges: Vec<f64>,
        /// Share of rows per bin (`edges.len() + 1` of them).
        shares: Vec<f64>,
        /// Share of nulls (and NaN).
        null_share: f64,
    },
    /// Levels: each seen level's share, and nulls.
    Categorical {
        /// Share per level.
        shares: BTreeMap<String, f64>,
        /// Share of nulls.
        null_share: f64,
    },
}

/// The training population's distributions, stored with the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReference {
    /// What the population was.
    pub population: String,
    /// Its rows.
    pub rows: usize,
    /// Per feature.
    pub features: Vec<(String, Binned)>,
    /// The model's score on it.
    pub score: Option<Binned>,
}

/// One feature's (or the score's) drift.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    /// Feature name, or `score`.
    pub feature: String,
    /// Population stability index.
    pub psi: f64,
    /// `stable`, `shifted` (at least the warning level) or `drifted` (at
    /// least the failing level).
    pub status: String,
}

fn numbers(df: &DataFrame, name: &str) -> Result<Vec<Option<f64>>> {
    let c = df
        .column(name)
        .and_then(|c| c.cast(&DataType::Float64))
        .map_err(Error::polars(format!("drift: {name}")))?;
    Ok(c.as_materialized_series()
        .f64()
        .map_err(Error::polars(format!("drift: {name}")))?
        .iter()
        .map(|v| v.filter(|x| x.is_finite()))
        .collect())
}

fn levels(df: &DataFrame, name: &str) -> Result<Vec<Option<String>>> {
    let c = df
        .column(name)
        .and_then(|c| c.cast(&DataType::String))
        .map_err(Error::polars(format!("drift: {name}")))?;
    Ok(c.as_materialized_series()
        .str()
        .map_err(Error::polars(format!("drift: {name}")))?
        .iter()
        .map(|v| v.map(str::to_string))
        .collect())
}

/// Bins numbers by the deciles of the non-null ones.
pub fn bin_numbers(values: &[Option<f64>]) -> Binned {
    let mut v: Vec<f64> = values.iter().flatten().copied().collect();
    v.sort_by(f64::total_cmp);
    let mut edges: Vec<f64> = (1..10)
        .filter_map(|k| {
            v.get((v.len() * k / 10).min(v.len().saturating_sub(1)))
                .copied()
        })
        .collect();
    edges.dedup();
    let (shares, null_share) = numeric_shares(&edges, values);
    Binned::Numeric {
        edges,
        shares,
        null_share,
    }
}

fn numeric_shares(edges: &[f64], values: &[Option<f64>]) -> (Vec<f64>, f64) {
    let n = values.len().max(1) as f64;
    let mut counts = vec![0usize; edges.len() + 1];
    let mut nulls = 0usize;
    for v in values {
        match v {
            Some(x) => counts[edges.partition_point(|e| e < x)] += 1,
            None => nulls += 1,
        }
    }
    (
        counts.iter().map(|c| *c as f64 / n).collect(),
        nulls as f64 / n,
    )
}

fn bin_levels(values: &[Option<String>]) -> Binned {
    let n = values.len().max(1) as f64;
    let mut shares: BTreeMap<String, f64> = BTreeMap::new();
    let mut nulls = 0usize;
    for v in values {
        match v {
            Some(l) => *shares.entry(l.clone()).or_default() += 1.0 / n,
            None => nulls += 1,
        }
    }
    Binned::Categorical {
        shares,
        null_share: nulls as f64 / n,
    }
}

fn index(expected: &[f64], actual: &[f64]) -> f64 {
    expected
        .iter()
        .zip(actual)
        .map(|(e, a)| {
            let (e, a) = (e.max(FLOOR), a.max(FLOOR));
            (a - e) * (a / e).ln()
        })
        .sum()
}

/// PSI of `values` against the reference bins `reference`.
fn psi_numbers(reference: &Binned, values: &[Option<f64>]) -> f64 {
    match reference {
        Binned::Numeric {
            edges,
            shares,
            null_share,
        } => {
            let (a, an) = numeric_shares(edges, values);
            index(shares, &a) + index(&[*null_share], &[an])
        }
        Binned::Categorical { .. } => f64::NAN,
    }
}

fn psi_levels(reference: &Binned, values: &[Option<String>]) -> f64 {
    match reference {
        Binned::Categorical { shares, null_share } => {
            let Binned::Categorical {
                shares: now,
                null_share: now_null,
            } = bin_levels(values)
            else {
                unreachable!("bin_levels gives levels")
            };
            let mut names: Vec<&String> = shares.keys().chain(now.keys()).collect();
            names.sort();
            names.dedup();
            let e: Vec<f64> = names
                .iter()
                .map(|k| *shares.get(*k).unwrap_or(&0.0))
                .collect();
            let a: Vec<f64> = names.iter().map(|k| *now.get(*k).unwrap_or(&0.0)).collect();
            index(&e, &a) + index(&[*null_share], &[now_null])
        }
        Binned::Numeric { .. } => f64::NAN,
    }
}

/// The reference of `df` over `features` (name, categorical?), and of the
/// model's `score` on it.
pub fn reference(
    df: &DataFrame,
    features: &[(String, bool)],
    score: Option<&[f64]>,
    population: String,
) -> Result<DriftReference> {
    // A feature per task, in the features' order (each is a cast and a
    // sort of the whole column).
    let out = features
        .par_iter()
        .filter(|(name, _)| df.column(name).is_ok())
        .map(|(name, categorical)| {
            let b = if *categorical {
                bin_levels(&levels(df, name)?)
            } else {
                bin_numbers(&numbers(df, name)?)
            };
            Ok((name.clone(), b))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(DriftReference {
        population,
        rows: df.height(),
        features: out,
        score: score.map(|s| bin_numbers(&s.iter().map(|v| Some(*v)).collect::<Vec<_>>())),
    })
}

/// Each reference feature's PSI on `df` (and the score's, given the
/// model's score on it), highest first, with its status under `warn` and
/// `fail`.
pub fn psi(
    reference: &DriftReference,
    df: &DataFrame,
    score: Option<&[f64]>,
    warn: f64,
    fail: f64,
) -> Result<Vec<Drift>> {
    let status = |p: f64| {
        if p >= fail {
            "drifted"
        } else if p >= warn {
            "shifted"
        } else {
            "stable"
        }
        .to_string()
    };
    // A feature per task, in the reference's order.
    let mut out = reference
        .features
        .par_iter()
        .filter(|(name, _)| df.column(name).is_ok())
        .map(|(name, b)| {
            let p = match b {
                Binned::Numeric { .. } => psi_numbers(b, &numbers(df, name)?),
                Binned::Categorical { .. } => psi_levels(b, &levels(df, name)?),
            };
            Ok(Drift {
                feature: name.clone(),
                psi: p,
                status: status(p),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if let (Some(b), Some(s)) = (&reference.score, score) {
        let p = psi_numbers(b, &s.iter().map(|v| Some(*v)).collect::<Vec<_>>());
        out.push(Drift {
            feature: "score".into(),
            psi: p,
            status: status(p),
        });
    }
    out.sort_by(|a, b| b.psi.total_cmp(&a.psi));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_population_is_stable_and_a_shifted_one_is_not() {
        let base: Vec<f64> = (0..5000).map(|i| ((i * 7919) % 1000) as f64).collect();
        let plan: Vec<&str> = (0..5000)
            .map(|i| if i % 3 == 0 { "a" } else { "b" })
            .collect();
        let df = df!("x" => &base, "plan" => &plan).unwrap();
        let features = [("x".to_string(), false), ("plan".to_string(), true)];
        let r = reference(&df, &features, Some(&base), "test".into()).unwrap();
        let same = psi(&r, &df, Some(&base), 0.1, 0.25).unwrap();
        assert!(
            same.iter().all(|d| d.psi < 1e-9 && d.status == "stable"),
            "{same:?}"
        );
        // Half of the values moved past the top decile, and a level gone.
        let moved: Vec<f64> = base
            .iter()
            .enumerate()
            .map(|(i, v)| if i % 2 == 0 { v + 2000.0 } else { *v })
            .collect();
        let plan2: Vec<&str> = (0..5000).map(|_| "b").collect();
        let df2 = df!("x" => &moved, "plan" => &plan2).unwrap();
        let d = psi(&r, &df2, None, 0.1, 0.25).unwrap();
        let get = |n: &str| d.iter().find(|x| x.feature == n).unwrap().clone();
        assert_eq!(get("x").status, "drifted", "{d:?}");
        assert!(get("plan").psi > 0.25, "{d:?}");
        // By hand: plan a 1/3 -> 0 (floored), b 2/3 -> 1.
        let e = [1.0 / 3.0, 2.0 / 3.0];
        let want = (1e-4 - e[0]) * (1e-4f64 / e[0]).ln() + (1.0 - e[1]) * (1.0 / e[1]).ln();
        assert!(
            (get("plan").psi - want).abs() < 1e-3,
            "{} vs {want}",
            get("plan").psi
        );
    }

    #[test]
    fn nulls_are_a_bin_of_their_own() {
        let v: Vec<Option<f64>> = (0..100).map(|i| (i % 2 == 0).then_some(i as f64)).collect();
        let Binned::Numeric { null_share, .. } = bin_numbers(&v) else {
            panic!()
        };
        assert!((null_share - 0.5).abs() < 1e-12);
        let all: Vec<Option<f64>> = (0..100).map(|i| Some(i as f64)).collect();
        assert!(psi_numbers(&bin_numbers(&v), &all) > 1.0);
    }
}
