//! How a frame becomes a model's matrix: the features' design, then the
//! arm and interaction columns, then the hazard's month bands.

use ndarray::Array2;
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::stages::features::Unseen;

use super::design::{Design, DesignColumn};

/// How a frame becomes a model's matrix: the design's columns, then (for
/// models with arms) `arm=<a>` per treated arm and `arm=<a>:<column>` per
/// interacted design column, then (for hazards) `month>=<b>` per band
/// after the first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Layout {
    /// The features' design.
    pub design: Design,
    /// Column holding the arm (empty: no arm columns).
    pub arm_column: String,
    /// Arms with their own columns (control, the reference, has none).
    pub arms: Vec<String>,
    /// Design columns interacted with each arm.
    pub interact: Vec<usize>,
    /// First months of the month bands (hazards only).
    pub bands: Vec<u32>,
}

impl Layout {
    /// Column names, in matrix order.
    pub fn names(&self) -> Vec<String> {
        let mut v = self.design.names();
        let design = self.design.names();
        v.extend(self.arms.iter().map(|a| format!("arm={a}")));
        for a in &self.arms {
            v.extend(
                self.interact
                    .iter()
                    .map(|j| format!("arm={a}:{}", design[*j])),
            );
        }
        v.extend(self.bands.iter().skip(1).map(|b| format!("month>={b}")));
        v
    }

    /// The feature each matrix column belongs to (`None` for the arm
    /// indicators and month bands); an arm interaction belongs to the
    /// feature it interacts.
    pub fn column_features(&self) -> Vec<Option<String>> {
        let feature = |c: &DesignColumn| match c {
            DesignColumn::Numeric { feature, .. }
            | DesignColumn::AtLeast { feature, .. }
            | DesignColumn::Missing { feature }
            | DesignColumn::Flag { feature }
            | DesignColumn::Level { feature, .. } => feature.clone(),
        };
        let mut v: Vec<Option<String>> = self
            .design
            .columns
            .iter()
            .map(|c| Some(feature(c)))
            .collect();
        v.extend(self.arms.iter().map(|_| None));
        for _ in &self.arms {
            v.extend(
                self.interact
                    .iter()
                    .map(|j| Some(feature(&self.design.columns[*j]))),
            );
        }
        v.extend(self.bands.iter().skip(1).map(|_| None));
        v
    }

    /// Columns before the band columns.
    pub fn base_width(&self) -> usize {
        self.design.columns.len() + self.arms.len() * (1 + self.interact.len())
    }

    /// The matrix of `df` without band columns (row-major), under the
    /// frame's own arm or `arm` for every row.
    pub fn base(&self, df: &DataFrame, arm: Option<&str>) -> Result<(Vec<f64>, Unseen)> {
        let (x0, unseen) = self.design.matrix(df)?;
        if self.arms.is_empty() {
            return Ok((x0, unseen));
        }
        Ok((self.with_arms(&x0, df, arm)?, unseen))
    }

    /// The design matrix `x0` of `df` with the arm and interaction columns.
    pub(crate) fn with_arms(
        &self,
        x0: &[f64],
        df: &DataFrame,
        arm: Option<&str>,
    ) -> Result<Vec<f64>> {
        let k0 = self.design.columns.len();
        if self.arms.is_empty() {
            return Ok(x0.to_vec());
        }
        let tail = self.arm_tail(x0, df, arm)?;
        let ta = self.base_width() - k0;
        let n = df.height();
        let mut x = Vec::with_capacity(n * (k0 + ta));
        for i in 0..n {
            x.extend_from_slice(&x0[i * k0..(i + 1) * k0]);
            x.extend_from_slice(&tail[i * ta..(i + 1) * ta]);
        }
        Ok(x)
    }

    /// The arm and interaction columns of each row of `df` (row-major,
    /// `base_width() - design width` columns; none without arms), under the
    /// frame's own arm or `arm` for every row; `x0` is `df`'s design matrix.
    pub(crate) fn arm_tail(
        &self,
        x0: &[f64],
        df: &DataFrame,
        arm: Option<&str>,
    ) -> Result<Vec<f64>> {
        let k0 = self.design.columns.len();
        let ta = self.base_width() - k0;
        let n = df.height();
        if self.arms.is_empty() {
            return Ok(Vec::new());
        }
        // Each row's arm as a position in the layout's arms (none for a
        // value that is none of them): looked up once for a given arm.
        let position = |a: &str| self.arms.iter().position(|x| x == a);
        let arms: Vec<Option<usize>> = match arm {
            Some(a) => vec![position(a); n],
            None => df
                .column(&self.arm_column)
                .and_then(|c| c.str().cloned())
                .map_err(Error::polars(format!("model: column {}", self.arm_column)))?
                .iter()
                .map(|v| v.and_then(position))
                .collect(),
        };
        let m = self.interact.len();
        let mut x = vec![0.0; n * ta];
        for (i, ai) in arms.iter().enumerate() {
            let row = &x0[i * k0..(i + 1) * k0];
            if let Some(ai) = *ai {
                x[i * ta + ai] = 1.0;
                let start = i * ta + self.arms.len() + ai * m;
                for (q, j) in self.interact.iter().enumerate() {
                    x[start + q] = row[*j];
                }
            }
        }
        Ok(x)
    }

    /// Band indicators of month `t` (1-based).
    pub(crate) fn band_row(&self, t: u32) -> Vec<f64> {
        self.bands
            .iter()
            .skip(1)
            .map(|b| if t >= *b { 1.0 } else { 0.0 })
            .collect()
    }

    /// The features of the manifest this layout reads.
    pub fn features(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for c in &self.design.columns {
            let name = match c {
                DesignColumn::Numeric { feature, .. }
                | DesignColumn::AtLeast { feature, .. }
                | DesignColumn::Missing { feature }
                | DesignColumn::Flag { feature }
                | DesignColumn::Level { feature, .. } => feature,
            };
            if !v.contains(name) {
                v.push(name.clone());
            }
        }
        v
    }
}

pub(crate) fn to_array(x: Vec<f64>, k: usize) -> Result<Array2<f64>> {
    let n = x.len() / k.max(1);
    Array2::from_shape_vec((n, k), x).map_err(|e| Error::Fit {
        model: "matrix".into(),
        message: e.to_string(),
    })
}
