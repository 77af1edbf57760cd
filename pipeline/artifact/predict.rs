//! Applying a stored model: probabilities under each arm in bounded
//! blocks, linear forms for the intervals, per-feature contributions for
//! reason codes, and a hazard model's survival curves.

use polars::prelude::*;
use winback_models::boosted::Tail;
use winback_models::error::FitError;
use winback_models::survival;
use winback_models::uncertainty::{BandParts, LinearPart};

use crate::error::{Error, Result};
use crate::stages::features::Unseen;

use super::layout::{Layout, to_array};
use super::{MarginModel, Model, WON_BACK_BY};
use winback_models::learner::Learner;

impl Model {
    /// P(label) of each row of `df` (under `arm` for every row when given).
    pub fn predict(&self, df: &DataFrame, arm: Option<&str>) -> Result<Vec<f64>> {
        Ok(self.predict_arms(df, &[arm])?.0.pop().unwrap_or_default())
    }

    /// P(label) of each row of `df` under each of `arms` (`None`: the
    /// frame's own arm), in blocks of rows so that memory stays bounded and
    /// the design matrix is built once per block for all arms; and, per
    /// one-hot feature, how many values were null or not seen in training
    /// (scored as `other`).
    pub fn predict_arms(
        &self,
        df: &DataFrame,
        arms: &[Option<&str>],
    ) -> Result<(Vec<Vec<f64>>, Unseen)> {
        predict_arms(&self.layout, &self.learner, self.model.name(), df, arms)
    }
}

/// [`Model::predict_arms`] of a layout and learner (`name`, the model's,
/// for messages).
pub fn predict_arms(
    layout: &Layout,
    learner: &Learner,
    model: &str,
    df: &DataFrame,
    arms: &[Option<&str>],
) -> Result<(Vec<Vec<f64>>, Unseen)> {
    const BLOCK: usize = 262_144;
    let n = df.height();
    let k = layout.base_width();
    let mut out = vec![Vec::with_capacity(n); arms.len()];
    let mut unseen: Unseen = Vec::new();
    for start in (0..n).step_by(BLOCK) {
        let part = df.slice(start as i64, BLOCK.min(n - start));
        let (x0, u) = {
            let _span = tracing::debug_span!("design", rows = part.height()).entered();
            layout.design.matrix(&part)?
        };
        for (name, count) in u {
            match unseen.iter_mut().find(|(f, _)| *f == name) {
                Some((_, total)) => *total += count,
                None => unseen.push((name, count)),
            }
        }
        // Every arm's rows share the design columns: trees that split
        // on no arm column are walked once for all arms.
        let k0 = layout.design.columns.len();
        let values = arms
            .iter()
            .map(|arm| layout.arm_tail(&x0, &part, *arm))
            .collect::<Result<Vec<_>>>()?;
        let tails: Vec<Tail> = values.iter().map(|v| Tail::per_row(v, k - k0)).collect();
        let _span = tracing::debug_span!("predict", arms = tails.len()).entered();
        let p = learner
            .predict_tails(&x0, k0, &tails)
            .map_err(|e| Error::Fit {
                model: model.into(),
                message: e.to_string(),
            })?;
        for (j, p) in p.into_iter().enumerate() {
            out[j].extend(p);
        }
    }
    Ok((out, unseen))
}

impl MarginModel {
    /// The linear form of each row of `df` (which must hold the
    /// `won_back_by` column) with the coefficients' covariance.
    pub fn linear_part(&self, df: &DataFrame) -> Result<LinearPart> {
        let (x, _) = self.layout.base(df, None)?;
        let x = to_array(x, self.layout.base_width())?;
        self.ridge.linear_part(x.view()).map_err(|e| Error::Fit {
            model: "second-lifetime margin".into(),
            message: e.to_string(),
        })
    }

    /// Expected monthly margin of each row (under `arm` when given).
    pub fn predict(&self, df: &DataFrame, arm: Option<&str>) -> Result<Vec<f64>> {
        let (x, _) = self.layout.base(df, arm)?;
        let x = to_array(x, self.layout.base_width())?;
        self.ridge.predict(x.view()).map_err(|e| Error::Fit {
            model: "second-lifetime margin".into(),
            message: e.to_string(),
        })
    }
}

impl Model {
    /// The kept learner's linear form on the rows of `df` under `arm`
    /// (see [`winback_models::uncertainty`]).
    pub fn linear_part(&self, df: &DataFrame, arm: Option<&str>) -> Result<LinearPart> {
        let (x, _) = self.layout.base(df, arm)?;
        let x = to_array(x, self.layout.base_width())?;
        self.learner.linear_part(x.view()).map_err(|e| Error::Fit {
            model: self.model.name().into(),
            message: e.to_string(),
        })
    }

    /// Per row of `df` under `arm`, each feature's contribution to the
    /// log-odds (see [`Learner::contributions`]), summed over the feature's
    /// columns: the feature names and the row-major `n x features` values.
    pub fn contributions(
        &self,
        df: &DataFrame,
        arm: Option<&str>,
    ) -> Result<(Vec<String>, Vec<f64>)> {
        let (x, _) = self.layout.base(df, arm)?;
        let k = self.layout.base_width();
        let x = to_array(x, k)?;
        let c = self
            .learner
            .contributions(x.view())
            .map_err(|e| Error::Fit {
                model: self.model.name().into(),
                message: e.to_string(),
            })?;
        let owners = self.layout.column_features();
        let mut names: Vec<String> = Vec::new();
        let index: Vec<Option<usize>> = owners
            .iter()
            .map(|o| {
                o.as_ref().map(|f| match names.iter().position(|n| n == f) {
                    Some(j) => j,
                    None => {
                        names.push(f.clone());
                        names.len() - 1
                    }
                })
            })
            .collect();
        let m = names.len();
        let mut out = vec![0.0; df.height() * m];
        for (i, row) in c.chunks_exact(k).enumerate() {
            for (v, j) in row.iter().zip(&index) {
                if let Some(j) = j {
                    out[i * m + j] += v;
                }
            }
        }
        Ok((names, out))
    }

    /// [`Model::linear_part`] of the rows of `df` under each of `arms` in
    /// turn (`None`: the frame's own arm): the design columns are built
    /// once, and trees that split on no arm column are walked once for all
    /// arms.
    pub fn linear_parts_arms(
        &self,
        df: &DataFrame,
        arms: &[Option<&str>],
    ) -> Result<Vec<LinearPart>> {
        let (x0, _) = self.layout.design.matrix(df)?;
        let (k0, k) = (self.layout.design.columns.len(), self.layout.base_width());
        let values = arms
            .iter()
            .map(|arm| self.layout.arm_tail(&x0, df, *arm))
            .collect::<Result<Vec<_>>>()?;
        let tails: Vec<Tail> = values.iter().map(|v| Tail::per_row(v, k - k0)).collect();
        self.learner
            .linear_parts_tails(&x0, k0, &tails)
            .map_err(|e| Error::Fit {
                model: self.model.name().into(),
                message: e.to_string(),
            })
    }

    /// A hazard model's linear form per month band on the rows of `df`,
    /// with `arm` as the winning arm when given (else the frame's own
    /// `won_back_by`).
    pub fn hazard_parts(&self, df: &DataFrame, arm: Option<&str>) -> Result<Vec<LinearPart>> {
        self.with_bands(df, arm, |learner, base, kb, tails| {
            learner.linear_parts_tails(base, kb, tails)
        })
    }

    /// [`SecondLifetimeModel::hazard_parts`] as [`BandParts`]: a pooled
    /// logistic hazard's band 0 in full and the other bands' shifts (the
    /// simulation's inputs), else every band's part.
    pub fn hazard_band_parts(&self, df: &DataFrame, arm: Option<&str>) -> Result<BandParts> {
        self.with_bands(df, arm, |learner, base, kb, tails| {
            learner.band_parts(base, kb, tails)
        })
    }

    /// `parts` of the hazard's design of `df` (under `arm` as the winning
    /// arm when given) completed by each month band's columns.
    fn with_bands<T>(
        &self,
        df: &DataFrame,
        arm: Option<&str>,
        parts: impl Fn(&Learner, &[f64], usize, &[Tail]) -> std::result::Result<T, FitError>,
    ) -> Result<T> {
        let frame;
        let df = match arm {
            Some(a) => {
                frame = df
                    .clone()
                    .lazy()
                    .with_column(lit(a).alias(WON_BACK_BY))
                    .collect()
                    .map_err(Error::polars("second lifetime: arm"))?;
                &frame
            }
            None => df,
        };
        let (base, _) = self.layout.base(df, None)?;
        let kb = self.layout.base_width();
        let bands = &self.layout.bands;
        let firsts: Vec<u32> = if bands.is_empty() {
            vec![1]
        } else {
            bands.clone()
        };
        let rows: Vec<Vec<f64>> = firsts
            .iter()
            .map(|first| self.layout.band_row(*first))
            .collect();
        let tails: Vec<Tail> = rows.iter().map(|r| Tail::same(r)).collect();
        parts(&self.learner, &base, kb, &tails).map_err(|e| Error::Fit {
            model: self.model.name().into(),
            message: e.to_string(),
        })
    }

    /// Survival curves S(1..=months) of each row of `df` (a hazard model
    /// only), under `arm` as the winning arm when given.
    pub fn survival(
        &self,
        df: &DataFrame,
        arm: Option<&str>,
        months: u32,
    ) -> Result<Vec<Vec<f64>>> {
        let parts = self.hazard_parts(df, arm)?;
        let bands = &self.layout.bands;
        Ok((0..df.height())
            .map(|i| {
                let by_band: Vec<f64> = parts.iter().map(|p| p.predict_row(i, &p.coef)).collect();
                let h: Vec<f64> = (1..=months)
                    .map(|t| {
                        let b = bands.iter().rposition(|first| t >= *first).unwrap_or(0);
                        by_band[b]
                    })
                    .collect();
                survival::survival(&h)
            })
            .collect())
    }
}
