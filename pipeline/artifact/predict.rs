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
/// for messages). The next block's design is built on a thread of its
/// own while the trees or coefficients score this one, so that the two
/// share the cores rather than take turns (at most two blocks' designs
/// are held).
pub fn predict_arms(
    layout: &Layout,
    learner: &Learner,
    model: &str,
    df: &DataFrame,
    arms: &[Option<&str>],
) -> Result<(Vec<Vec<f64>>, Unseen)> {
    predict_in_blocks(layout, learner, model, df, arms, 262_144)
}

/// [`predict_arms`] in blocks of `block` rows.
fn predict_in_blocks(
    layout: &Layout,
    learner: &Learner,
    model: &str,
    df: &DataFrame,
    arms: &[Option<&str>],
    block: usize,
) -> Result<(Vec<Vec<f64>>, Unseen)> {
    let block = block.max(1);
    let n = df.height();
    let k = layout.base_width();
    let k0 = layout.design.columns.len();
    let mut out = vec![Vec::with_capacity(n); arms.len()];
    let mut unseen: Unseen = Vec::new();
    // A block's design, the counts of its values not seen in training, and
    // each arm's columns.
    type Designed = (Vec<f64>, Unseen, Vec<Vec<f64>>);
    let design = |start: usize| -> Result<Designed> {
        let part = df.slice(start as i64, block.min(n - start));
        let (x0, u) = {
            let _span = tracing::debug_span!("design", rows = part.height()).entered();
            layout.design.matrix(&part)?
        };
        let values = arms
            .iter()
            .map(|arm| layout.arm_tail(&x0, &part, *arm))
            .collect::<Result<Vec<_>>>()?;
        Ok((x0, u, values))
    };
    let parent = tracing::Span::current();
    std::thread::scope(|scope| -> Result<()> {
        let (send, blocks) = std::sync::mpsc::sync_channel::<Result<Designed>>(0);
        scope.spawn(move || {
            let _parent = parent.enter();
            for start in (0..n).step_by(block) {
                let designed = design(start);
                let failed = designed.is_err();
                // A refused hand-over: the scoring stopped on an error.
                if send.send(designed).is_err() || failed {
                    break;
                }
            }
        });
        for designed in blocks {
            let (x0, u, values) = designed?;
            for (name, count) in u {
                match unseen.iter_mut().find(|(f, _)| *f == name) {
                    Some((_, total)) => *total += count,
                    None => unseen.push((name, count)),
                }
            }
            // Every arm's rows share the design columns: trees that split
            // on no arm column are walked once for all arms.
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
        Ok(())
    })?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::design::{Design, DesignColumn};
    use crate::stages::features::{Encoding, FeatureSpec, Manifest};
    use winback_models::logistic::{LogisticModel, Standardizer};

    /// A layout of a number and a one-hot feature, and a logistic model
    /// on it.
    fn model() -> (Layout, Learner) {
        let spec = FeatureSpec::of;
        let layout = Layout {
            design: Design {
                manifest: Manifest {
                    version: 1,
                    features: vec![
                        spec("x", Encoding::Numeric, &[]),
                        spec("plan", Encoding::OneHot, &["basic", "premium"]),
                    ],
                    unseen_category_policy: "other".into(),
                },
                columns: vec![
                    DesignColumn::Numeric {
                        feature: "x".into(),
                        fill: 0.5,
                    },
                    DesignColumn::Level {
                        feature: "plan".into(),
                        level: "premium".into(),
                    },
                ],
            },
            arm_column: String::new(),
            arms: Vec::new(),
            interact: Vec::new(),
            bands: Vec::new(),
        };
        let learner = Learner::Logistic(LogisticModel {
            names: vec!["x".into(), "plan=premium".into()],
            standardizer: Standardizer {
                mean: vec![0.1, 0.3],
                scale: vec![2.0, 0.5],
            },
            intercept: -0.4,
            coefficients: vec![0.8, -1.3],
            alpha: 1.0,
            covariance: Vec::new(),
        });
        (layout, learner)
    }

    /// Scored in blocks (each designed on its own thread while the one
    /// before is scored), the rows keep their order and their own
    /// probabilities, and the values not seen in training are counted
    /// over every block: as one block scores them, for any block size
    /// (one row, sizes that do and do not divide the rows, more than all).
    #[test]
    fn blocks_score_as_one_block_does() {
        let (layout, learner) = model();
        let n = 1_000;
        let plans = ["basic", "premium", "gold"];
        let df = DataFrame::new(
            n,
            vec![
                Column::new(
                    "x".into(),
                    (0..n)
                        .map(|i| (i % 13 != 0).then_some((i as f64 * 0.37).sin() * 3.0))
                        .collect::<Vec<_>>(),
                ),
                Column::new(
                    "plan".into(),
                    (0..n)
                        .map(|i| (i % 17 != 0).then_some(plans[(i * 7 / 5) % 3]))
                        .collect::<Vec<_>>(),
                ),
            ],
        )
        .unwrap();
        let (whole, unseen) = predict_in_blocks(&layout, &learner, "m", &df, &[None], n).unwrap();
        assert_eq!(whole[0].len(), n);
        // Unseen: every null and every "gold".
        let want = (0..n)
            .filter(|i| i % 17 == 0 || plans[(i * 7 / 5) % 3] == "gold")
            .count();
        assert_eq!(unseen, vec![("plan".to_string(), want)]);
        // Row by row, by hand: the filled number, the premium level.
        for (i, p) in whole[0].iter().enumerate() {
            let x = if i % 13 != 0 {
                (i as f64 * 0.37).sin() * 3.0
            } else {
                0.5
            };
            let premium = i % 17 != 0 && plans[(i * 7 / 5) % 3] == "premium";
            let z = -0.4 + 0.8 * (x - 0.1) / 2.0 - 1.3 * (f64::from(u8::from(premium)) - 0.3) / 0.5;
            let want = 1.0 / (1.0 + (-z).exp());
            assert!((p - want).abs() < 1e-12, "row {i}: {p} against {want}");
        }
        for block in [1, 7, 100, 999, 1_000, 4_096] {
            let (got, u) = predict_in_blocks(&layout, &learner, "m", &df, &[None], block).unwrap();
            assert_eq!(got, whole, "block {block}");
            assert_eq!(u, unseen, "block {block}");
        }
    }

    /// An error in a later block's design (a value that is not finite, in
    /// the third block) ends the scoring with that error, not a panic or a
    /// hang; the rows before that block alone score.
    #[test]
    fn an_error_in_a_later_block_is_returned() {
        let (layout, learner) = model();
        let n = 30;
        let df = DataFrame::new(
            n,
            vec![
                Column::new(
                    "x".into(),
                    (0..n)
                        .map(|i| if i == 25 { f64::INFINITY } else { i as f64 })
                        .collect::<Vec<_>>(),
                ),
                Column::new("plan".into(), vec!["basic"; n]),
            ],
        )
        .unwrap();
        let err = predict_in_blocks(&layout, &learner, "m", &df, &[None], 10).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("feature `x`") && message.contains("is inf"),
            "{message}"
        );
        let ok = predict_in_blocks(&layout, &learner, "m", &df.slice(0, 20), &[None], 10);
        assert_eq!(ok.unwrap().0[0].len(), 20);
    }
}
