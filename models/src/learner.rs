//! One face for the probability learners, so the pipeline fits, compares,
//! stores and applies them the same way; and a ridge regression for the
//! continuous outcomes (expected monthly margin).

use ndarray::{Array1, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::boosted::{BoostedModel, Tail};
use crate::error::FitError;
use crate::logistic::{LogisticModel, Standardizer, check};
use crate::uncertainty::{BandParts, LinearPart};

/// A fitted model of P(label true | row).
pub trait Classifier {
    /// P(label true) of each row.
    fn predict(&self, x: ArrayView2<f64>) -> Result<Vec<f64>, FitError>;
    /// Column names the model expects, in order.
    fn names(&self) -> &[String];
}

impl Classifier for LogisticModel {
    fn predict(&self, x: ArrayView2<f64>) -> Result<Vec<f64>, FitError> {
        LogisticModel::predict(self, x)
    }
    fn names(&self) -> &[String] {
        &self.names
    }
}

impl Classifier for BoostedModel {
    fn predict(&self, x: ArrayView2<f64>) -> Result<Vec<f64>, FitError> {
        BoostedModel::predict(self, x)
    }
    fn names(&self) -> &[String] {
        &self.names
    }
}

/// A stored classifier of either kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "learner", rename_all = "snake_case")]
pub enum Learner {
    /// L2 logistic regression.
    Logistic(LogisticModel),
    /// Gradient-boosted trees with Platt calibration.
    Boosted(Box<BoostedModel>),
    /// One learner per arm (a T-learner), each fitted on its arm's rows.
    PerArm(PerArm),
}

/// One learner per arm: a row is scored by the learner of its arm, read
/// from the arm indicator columns that follow the `width` base columns
/// (none set: the first learner's, control's). Each learner sees only the
/// base columns. With `steps`, the columns are steps instead (a row of
/// group `j` has the first `j` set, as a hazard's month bands are coded)
/// and each group, such as a month band, has its own learner.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PerArm {
    /// Column names the model expects: the base columns, then one
    /// indicator per arm after the first.
    pub names: Vec<String>,
    /// Base columns (the learners' width).
    pub width: usize,
    /// The learners, control's first, then one per indicator column.
    pub learners: Vec<Learner>,
    /// The columns after the base are steps (a learner per month band).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub steps: bool,
}

impl PerArm {
    /// Checks that the names hold the base columns and an indicator per
    /// learner after the first.
    pub fn new(names: Vec<String>, width: usize, learners: Vec<Learner>) -> Result<Self, FitError> {
        if learners.is_empty() || names.len() != width + learners.len() - 1 {
            return Err(FitError::Shape(format!(
                "{} names for {width} base columns and {} arm learners",
                names.len(),
                learners.len()
            )));
        }
        if let Some(l) = learners.iter().find(|l| l.names().len() != width) {
            return Err(FitError::Shape(format!(
                "an arm's learner takes {} columns, the base has {width}",
                l.names().len()
            )));
        }
        Ok(PerArm {
            names,
            width,
            learners,
            steps: false,
        })
    }

    /// [`PerArm::new`] with the columns after the base read as steps: a
    /// learner per group, such as a hazard's month band.
    pub fn by_steps(
        names: Vec<String>,
        width: usize,
        learners: Vec<Learner>,
    ) -> Result<Self, FitError> {
        Ok(PerArm {
            steps: true,
            ..PerArm::new(names, width, learners)?
        })
    }

    /// The learner of a row whose arm columns are `tail`: the first set
    /// indicator's arm, else control (the first learner); with steps, the
    /// number set.
    fn arm_of(&self, tail: &[f64]) -> Result<usize, FitError> {
        if tail.len() != self.learners.len() - 1 {
            return Err(FitError::Shape(format!(
                "{} arm columns for {} arm learners",
                tail.len(),
                self.learners.len()
            )));
        }
        Ok(if self.steps {
            tail.iter().filter(|v| **v > 0.5).count()
        } else {
            tail.iter().position(|v| *v > 0.5).map_or(0, |j| j + 1)
        })
    }

    /// Each row's learner, from the arm columns of `x` (full rows).
    fn arms_of_rows(&self, x: ArrayView2<f64>) -> Result<Vec<usize>, FitError> {
        check(x, None, self.names.len())?;
        x.rows()
            .into_iter()
            .map(|row| self.arm_of(&row.iter().skip(self.width).copied().collect::<Vec<f64>>()))
            .collect()
    }

    /// The rows of each learner (positions), in order.
    fn groups(&self, arms: &[usize]) -> Vec<Vec<usize>> {
        let mut g = vec![Vec::new(); self.learners.len()];
        for (r, a) in arms.iter().enumerate() {
            g[*a].push(r);
        }
        g
    }

    /// P(label) of the base rows `base`, row `r` scored by `arms[r]`'s
    /// learner.
    fn predict_base(&self, base: ArrayView2<f64>, arms: &[usize]) -> Result<Vec<f64>, FitError> {
        let mut out = vec![0.0; base.nrows()];
        for (a, rows) in self.groups(arms).into_iter().enumerate() {
            if rows.is_empty() {
                continue;
            }
            let p = if rows.len() == base.nrows() {
                self.learners[a].predict(base)?
            } else {
                self.learners[a].predict(base.select(ndarray::Axis(0), &rows).view())?
            };
            for (r, v) in rows.into_iter().zip(p) {
                out[r] = v;
            }
        }
        Ok(out)
    }

    /// The linear form of the base rows `base`, row `r` by `arms[r]`'s
    /// learner: the learners' forms side by side (a row's features in its
    /// own learner's block, zeros in the others), their coefficients
    /// concatenated and their covariances block-diagonal (the learners
    /// were fitted on disjoint rows). Every row shares one coefficient
    /// vector, so draws of it agree across arms.
    fn linear_part_base(
        &self,
        base: ArrayView2<f64>,
        arms: &[usize],
    ) -> Result<LinearPart, FitError> {
        let groups = self.groups(arms);
        let mut parts = Vec::with_capacity(self.learners.len());
        for (learner, rows) in self.learners.iter().zip(&groups) {
            parts.push(learner.linear_part(base.select(ndarray::Axis(0), rows).view())?);
        }
        let logistic = parts[0].logistic;
        if parts.iter().any(|p| p.logistic != logistic) {
            return Err(FitError::Shape(
                "the arms' learners have different links".into(),
            ));
        }
        let offsets: Vec<usize> = parts
            .iter()
            .scan(0, |at, p| {
                let o = *at;
                *at += p.width;
                Some(o)
            })
            .collect();
        let width: usize = parts.iter().map(|p| p.width).sum();
        let mut features = vec![0.0; base.nrows() * width];
        for ((part, rows), offset) in parts.iter().zip(&groups).zip(&offsets) {
            for (i, r) in rows.iter().enumerate() {
                let src = &part.features[i * part.width..(i + 1) * part.width];
                features[r * width + offset..r * width + offset + part.width].copy_from_slice(src);
            }
        }
        let coef: Vec<f64> = parts.iter().flat_map(|p| p.coef.iter().copied()).collect();
        let covariance = if parts.iter().all(|p| p.covariance.is_empty()) {
            Vec::new()
        } else {
            let mut c = vec![0.0; width * width];
            for (part, offset) in parts.iter().zip(&offsets) {
                if part.covariance.is_empty() {
                    continue;
                }
                for i in 0..part.width {
                    for j in 0..part.width {
                        c[(offset + i) * width + offset + j] = part.covariance[i * part.width + j];
                    }
                }
            }
            c
        };
        Ok(LinearPart {
            features,
            width,
            coef,
            covariance,
            logistic,
        })
    }

    /// `base` as the matrix of base rows its learners take.
    fn base_view<'b>(
        &self,
        base: &'b [f64],
        n: usize,
        width: usize,
    ) -> Result<ArrayView2<'b, f64>, FitError> {
        if width != self.width {
            return Err(FitError::Shape(format!(
                "{width} base columns, the arms' learners take {}",
                self.width
            )));
        }
        view(base, n, width)
    }

    /// Each row's learner when the rows of `base` are completed by `tail`.
    fn arms_of_tail(&self, n: usize, tail: &Tail) -> Result<Vec<usize>, FitError> {
        tail.check(n)?;
        if tail.width() != self.learners.len() - 1 {
            return Err(FitError::Shape(format!(
                "{} tail columns for {} arm learners",
                tail.width(),
                self.learners.len()
            )));
        }
        (0..n).map(|r| self.arm_of(tail.row(r))).collect()
    }
}

impl Classifier for PerArm {
    fn predict(&self, x: ArrayView2<f64>) -> Result<Vec<f64>, FitError> {
        let arms = self.arms_of_rows(x)?;
        self.predict_base(
            x.slice_axis(ndarray::Axis(1), ndarray::Slice::from(..self.width)),
            &arms,
        )
    }
    fn names(&self) -> &[String] {
        &self.names
    }
}

impl Learner {
    /// The model as a classifier.
    pub fn classifier(&self) -> &dyn Classifier {
        match self {
            Learner::Logistic(m) => m,
            Learner::Boosted(m) => m.as_ref(),
            Learner::PerArm(m) => m,
        }
    }
}

impl Learner {
    /// The linear form behind the predictions of the rows of `x`, with its
    /// coefficients' covariance (see [`crate::uncertainty`]).
    pub fn linear_part(&self, x: ArrayView2<f64>) -> Result<LinearPart, FitError> {
        match self {
            Learner::Logistic(m) => m.linear_part(x),
            Learner::Boosted(m) => m.linear_part(x),
            Learner::PerArm(m) => {
                let arms = m.arms_of_rows(x)?;
                m.linear_part_base(
                    x.slice_axis(ndarray::Axis(1), ndarray::Slice::from(..m.width)),
                    &arms,
                )
            }
        }
    }

    /// [`Learner::linear_part`] of the rows of `base` (row-major, `width`
    /// columns) completed by each of `tails` in turn (the same last columns
    /// for every row, such as a hazard's month band, or each row's own).
    /// Boosted trees that split on no tail column are walked once for all
    /// tails.
    pub fn linear_parts_tails(
        &self,
        base: &[f64],
        width: usize,
        tails: &[Tail],
    ) -> Result<Vec<LinearPart>, FitError> {
        let n = base.len().checked_div(width).unwrap_or(0);
        match self {
            Learner::Boosted(m) => m.linear_parts_tails(view(base, n, width)?, tails),
            Learner::PerArm(m) => {
                let x = m.base_view(base, n, width)?;
                tails
                    .iter()
                    .map(|tail| m.linear_part_base(x, &m.arms_of_tail(n, tail)?))
                    .collect()
            }
            Learner::Logistic(m) => tails
                .iter()
                .map(|tail| m.linear_part(completed(base, n, width, tail)?.view()))
                .collect(),
        }
    }

    /// [`Learner::linear_parts_tails`] as [`BandParts`]: for the logistic
    /// and tails the same for every row (a pooled hazard's month bands),
    /// band 0's part in full and each tail's standardised columns less
    /// band 0's, taken from one row (standardising works column by column,
    /// so every row's are the same); else every part in full.
    pub fn band_parts(
        &self,
        base: &[f64],
        width: usize,
        tails: &[Tail],
    ) -> Result<BandParts, FitError> {
        let n = base.len().checked_div(width).unwrap_or(0);
        match self {
            Learner::Logistic(m) if n > 0 && tails.len() > 1 && tails.iter().all(Tail::is_same) => {
                let first = m.linear_part(completed(base, n, width, &tails[0])?.view())?;
                let rows = tails
                    .iter()
                    .map(|t| {
                        Ok(
                            m.linear_part(completed(&base[..width], 1, width, t)?.view())?
                                .features,
                        )
                    })
                    .collect::<Result<Vec<Vec<f64>>, FitError>>()?;
                let w = first.width;
                // As [`crate::offers`] finds it from every band's part: the
                // first column in which any band differs from band 0.
                let start = (0..w)
                    .find(|&j| rows.iter().any(|r| r[j] != rows[0][j]))
                    .unwrap_or(w);
                let shift = rows
                    .iter()
                    .map(|r| {
                        r[start..]
                            .iter()
                            .zip(&rows[0][start..])
                            .map(|(b, a)| b - a)
                            .collect()
                    })
                    .collect();
                Ok(BandParts::Shifted {
                    first,
                    start,
                    shift,
                })
            }
            _ => self
                .linear_parts_tails(base, width, tails)
                .map(BandParts::Each),
        }
    }

    /// [`Learner::predict`] of the rows of `base` completed by each of
    /// `tails` in turn (see [`Learner::linear_parts_tails`]).
    pub fn predict_tails(
        &self,
        base: &[f64],
        width: usize,
        tails: &[Tail],
    ) -> Result<Vec<Vec<f64>>, FitError> {
        let n = base.len().checked_div(width).unwrap_or(0);
        match self {
            Learner::Boosted(m) => m.predict_tails(view(base, n, width)?, tails),
            Learner::PerArm(m) => {
                let x = m.base_view(base, n, width)?;
                tails
                    .iter()
                    .map(|tail| m.predict_base(x, &m.arms_of_tail(n, tail)?))
                    .collect()
            }
            Learner::Logistic(m) => m.predict_tails(view(base, n, width)?, tails),
        }
    }

    /// Each column's contribution to each row's log-odds (row-major, `n x
    /// k`): the coefficient times the standardised value (so relative to the
    /// training mean) for the logistic model; the trees' average-path
    /// contributions (Saabas) scaled by Platt's slope for boosted trees.
    pub fn contributions(&self, x: ArrayView2<f64>) -> Result<Vec<f64>, FitError> {
        match self {
            Learner::Logistic(m) => {
                check(x, None, m.names.len())?;
                let z = m.standardizer.apply(x);
                Ok(z.rows()
                    .into_iter()
                    .flat_map(|row| {
                        row.iter()
                            .zip(&m.coefficients)
                            .map(|(v, b)| v * b)
                            .collect::<Vec<f64>>()
                    })
                    .collect())
            }
            Learner::Boosted(m) => m.contributions(x),
            Learner::PerArm(m) => {
                // Each row's own learner's contributions; none from the
                // arm columns, which only choose the learner.
                let arms = m.arms_of_rows(x)?;
                let base = x.slice_axis(ndarray::Axis(1), ndarray::Slice::from(..m.width));
                let k = m.names.len();
                let mut out = vec![0.0; x.nrows() * k];
                for (a, rows) in m.groups(&arms).into_iter().enumerate() {
                    let c =
                        m.learners[a].contributions(base.select(ndarray::Axis(0), &rows).view())?;
                    for (i, r) in rows.iter().enumerate() {
                        out[r * k..r * k + m.width]
                            .copy_from_slice(&c[i * m.width..(i + 1) * m.width]);
                    }
                }
                Ok(out)
            }
        }
    }
}

impl Classifier for Learner {
    fn predict(&self, x: ArrayView2<f64>) -> Result<Vec<f64>, FitError> {
        self.classifier().predict(x)
    }
    fn names(&self) -> &[String] {
        self.classifier().names()
    }
}

/// Ridge regression on standardised columns (closed form), for a
/// continuous outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ridge {
    /// Column names.
    pub names: Vec<String>,
    /// Standardisation of the columns.
    pub standardizer: Standardizer,
    /// Intercept (the outcome's mean).
    pub intercept: f64,
    /// Coefficients per standard deviation.
    pub coefficients: Vec<f64>,
    /// Penalty on the squared coefficients, per row.
    pub alpha: f64,
    /// Covariance of (intercept, coefficients): residual variance over n
    /// times the inverse of the penalised Gram matrix per row.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub covariance: Vec<f64>,
}

impl Ridge {
    /// Minimises mean squared error plus `alpha` times the squared norm of
    /// the standardised coefficients.
    pub fn fit(
        x: ArrayView2<f64>,
        y: &[f64],
        names: &[String],
        alpha: f64,
    ) -> Result<Ridge, FitError> {
        check(x, None, names.len())?;
        if y.len() != x.nrows() || y.is_empty() {
            return Err(FitError::Shape(format!(
                "{} rows, {} outcomes",
                x.nrows(),
                y.len()
            )));
        }
        if let Some(i) = y.iter().position(|v| !v.is_finite()) {
            return Err(FitError::NonFinite(i, usize::MAX));
        }
        let n = y.len() as f64;
        let standardizer = Standardizer::fit(x);
        let z = standardizer.apply(x);
        let mean = y.iter().sum::<f64>() / n;
        let yc = Array1::from_iter(y.iter().map(|v| v - mean));
        let k = z.ncols();
        let mut a = z.t().dot(&z) / n;
        for j in 0..k {
            a[[j, j]] += alpha;
        }
        let b = z.t().dot(&yc) / n;
        let flat: Vec<f64> = a.iter().copied().collect();
        // One factorisation for the coefficients and their covariance.
        let l = crate::uncertainty::cholesky(&flat, k)
            .ok_or_else(|| FitError::Solver("normal equations not positive definite".into()))?;
        let coefficients = crate::uncertainty::cholesky_solve(&l, k, &b.to_vec());
        let fitted = z.dot(&Array1::from_vec(coefficients.clone()));
        let sse: f64 = fitted.iter().zip(&yc).map(|(f, y)| (y - f).powi(2)).sum();
        let sigma2 = sse / (n - k as f64 - 1.0).max(1.0);
        let inv = crate::uncertainty::cholesky_inverse(&l, k);
        let mut covariance = vec![0.0; (k + 1) * (k + 1)];
        covariance[0] = sigma2 / n;
        for i in 0..k {
            for j in 0..k {
                covariance[(i + 1) * (k + 1) + j + 1] = sigma2 / n * inv[i * k + j];
            }
        }
        Ok(Ridge {
            names: names.to_vec(),
            standardizer,
            intercept: mean,
            coefficients,
            alpha,
            covariance,
        })
    }

    /// The linear form of the rows of `x` with the coefficients' covariance.
    pub fn linear_part(&self, x: ArrayView2<f64>) -> Result<LinearPart, FitError> {
        check(x, None, self.names.len())?;
        Ok(LinearPart::standardised(
            self.standardizer.apply(x),
            self.intercept,
            &self.coefficients,
            &self.covariance,
            false,
        ))
    }

    /// Predicted outcome of each row.
    pub fn predict(&self, x: ArrayView2<f64>) -> Result<Vec<f64>, FitError> {
        check(x, None, self.names.len())?;
        let z = self.standardizer.apply(x);
        let w = Array1::from_vec(self.coefficients.clone());
        Ok(z.dot(&w).iter().map(|s| s + self.intercept).collect())
    }
}

/// `base` (row-major, `n` rows of `width` columns) as a matrix view.
fn view(base: &[f64], n: usize, width: usize) -> Result<ArrayView2<'_, f64>, FitError> {
    ArrayView2::from_shape((n, width), base).map_err(|e| FitError::Shape(e.to_string()))
}

/// The rows of `base` (row-major, `n` rows of `width` columns), each
/// followed by its `tail`.
fn completed(
    base: &[f64],
    n: usize,
    width: usize,
    tail: &Tail,
) -> Result<ndarray::Array2<f64>, FitError> {
    tail.check(n)?;
    let k = width + tail.width();
    let mut x = Vec::with_capacity(n * k);
    for (r, row) in base.chunks_exact(width.max(1)).take(n).enumerate() {
        x.extend_from_slice(&row[..width]);
        x.extend_from_slice(tail.row(r));
    }
    ndarray::Array2::from_shape_vec((n, k), x).map_err(|e| FitError::Shape(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn ridge_recovers_a_known_line() {
        let n = 2_000;
        let x = Array2::from_shape_fn((n, 2), |(i, j)| ((i * (j + 3)) % 17) as f64);
        let y: Vec<f64> = (0..n)
            .map(|i| 3.0 + 2.0 * x[[i, 0]] - 0.5 * x[[i, 1]])
            .collect();
        let names = vec!["a".to_string(), "b".to_string()];
        let m = Ridge::fit(x.view(), &y, &names, 1e-9).unwrap();
        let p = m.predict(x.view()).unwrap();
        for (a, b) in p.iter().zip(&y) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        // A penalty shrinks towards the mean.
        let shrunk = Ridge::fit(x.view(), &y, &names, 10.0).unwrap();
        let norm = |m: &Ridge| m.coefficients.iter().map(|c| c * c).sum::<f64>();
        assert!(norm(&shrunk) < norm(&m));
    }

    #[test]
    fn learners_share_one_face_and_round_trip() {
        let n = 1_000;
        let x = Array2::from_shape_fn((n, 1), |(i, _)| (i % 10) as f64);
        let y: Vec<bool> = (0..n).map(|i| (i * 7) % 10 < i % 10).collect();
        let names = vec!["a".to_string()];
        let l = Learner::Logistic(LogisticModel::fit(x.view(), &y, &names, 1.0).unwrap());
        let json = serde_json::to_string(&l).unwrap();
        assert!(json.contains("\"learner\":\"logistic\""), "{json}");
        let back: Learner = serde_json::from_str(&json).unwrap();
        assert_eq!(
            back.predict(x.view()).unwrap(),
            l.predict(x.view()).unwrap()
        );
        assert_eq!(back.names(), ["a"]);
    }

    /// A logistic model scores rows completed by tails (the same for every
    /// row, or each row's own) to the bits of scoring each completed
    /// matrix, over many row blocks, and names a value that is not finite
    /// where the completed matrix would have it.
    #[test]
    fn logistic_tails_score_as_the_completed_rows() {
        let n = 2_500;
        let base = Array2::from_shape_fn((n, 3), |(i, j)| ((i * (j + 5)) % 13) as f64 - 6.0);
        let own: Vec<f64> = (0..n)
            .flat_map(|i| [(i % 3) as f64, (i % 7) as f64 / 7.0])
            .collect();
        let x = Array2::from_shape_fn((n, 5), |(i, j)| {
            if j < 3 {
                base[[i, j]]
            } else {
                own[i * 2 + j - 3]
            }
        });
        let y: Vec<bool> = (0..n)
            .map(|i| x[[i, 0]] - 2.0 * x[[i, 3]] + ((i * 7) % 11) as f64 / 3.0 - 1.0 > 0.0)
            .collect();
        let names: Vec<String> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let m = LogisticModel::fit(x.view(), &y, &names, 0.5).unwrap();
        let l = Learner::Logistic(m.clone());
        let flat: Vec<f64> = base.iter().copied().collect();
        let same = [1.0, 0.25];
        let tails = [Tail::same(&same), Tail::per_row(&own, 2)];
        let got = l.predict_tails(&flat, 3, &tails).unwrap();
        for (t, tail) in tails.iter().enumerate() {
            let full = completed(&flat, n, 3, tail).unwrap();
            let want = m.predict(full.view()).unwrap();
            assert_eq!(got[t].len(), n);
            for (i, (a, b)) in got[t].iter().zip(&want).enumerate() {
                assert_eq!(a.to_bits(), b.to_bits(), "tail {t}, row {i}: {a} vs {b}");
            }
        }
        let mut bad = own.clone();
        bad[2 * 1_700 + 1] = f64::NAN;
        assert!(matches!(
            l.predict_tails(&flat, 3, &[Tail::per_row(&bad, 2)]),
            Err(FitError::NonFinite(1_700, 4))
        ));
        // A base value that is not finite: named where it is when it comes
        // first, the tail's when that comes first.
        let mut early = flat.clone();
        early[3 * 900 + 2] = f64::INFINITY;
        assert!(matches!(
            l.predict_tails(&early, 3, &[Tail::per_row(&bad, 2)]),
            Err(FitError::NonFinite(900, 2))
        ));
        let mut late = flat.clone();
        late[3 * 2_000] = f64::NAN;
        assert!(matches!(
            l.predict_tails(&late, 3, &[Tail::same(&same), Tail::per_row(&bad, 2)]),
            Err(FitError::NonFinite(2_000, 0))
        ));
        assert!(matches!(
            l.predict_tails(&late, 3, &[Tail::per_row(&bad, 2)]),
            Err(FitError::NonFinite(1_700, 4))
        ));
        assert!(l.predict_tails(&flat, 3, &[Tail::same(&[1.0])]).is_err());
    }

    /// A logistic's band parts are band 0's part to the bit and, per band,
    /// a shift of the tail's columns that gives every row that band's part
    /// (to rounding: band 0's standardised tail plus the difference); tails
    /// that vary by row, or a single tail, give every part in full.
    #[test]
    fn logistic_band_parts_are_the_first_part_and_its_shifts() {
        let n = 700;
        let x = Array2::from_shape_fn((n, 5), |(i, j)| ((i * (j + 3)) % 11) as f64 - 5.0);
        let y: Vec<bool> = (0..n)
            .map(|i| x[[i, 0]] - 0.5 * x[[i, 3]] + x[[i, 4]] + ((i * 7) % 5) as f64 - 2.0 > 0.0)
            .collect();
        let names: Vec<String> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let l = Learner::Logistic(LogisticModel::fit(x.view(), &y, &names, 0.5).unwrap());
        let base: Vec<f64> = x
            .rows()
            .into_iter()
            .flat_map(|r| r.iter().take(3).copied().collect::<Vec<_>>())
            .collect();
        // Three bands whose first tail column is the same: the shift starts
        // at the second.
        let values = [[1.0, 0.0], [1.0, 1.0], [1.0, -2.0]];
        let tails: Vec<Tail> = values.iter().map(|v| Tail::same(v)).collect();
        let full = l.linear_parts_tails(&base, 3, &tails).unwrap();
        let BandParts::Shifted {
            first,
            start,
            shift,
        } = l.band_parts(&base, 3, &tails).unwrap()
        else {
            panic!("a logistic with tails the same for every row is shifted");
        };
        assert_eq!(first, full[0]);
        // Constant 1, three base columns, the first tail column: the same.
        assert_eq!(start, 5);
        assert_eq!(shift.len(), 3);
        assert!(shift[0].iter().all(|d| *d == 0.0));
        for (b, part) in full.iter().enumerate() {
            assert_eq!(shift[b].len(), part.width - start);
            for i in 0..n {
                let row = &part.features[i * part.width..(i + 1) * part.width];
                let ours = &first.features[i * first.width..(i + 1) * first.width];
                assert_eq!(&row[..start], &ours[..start], "band {b}, row {i}");
                for (j, d) in shift[b].iter().enumerate() {
                    let want = row[start + j];
                    let got = ours[start + j] + d;
                    assert!(
                        (got - want).abs() <= 1e-12 * (1.0 + want.abs()),
                        "band {b}, row {i}"
                    );
                }
            }
        }
        let own: Vec<f64> = (0..n).flat_map(|i| [1.0, (i % 3) as f64]).collect();
        let varying = [Tail::same(&values[0]), Tail::per_row(&own, 2)];
        assert!(matches!(l.band_parts(&base, 3, &varying), Ok(BandParts::Each(p)) if p.len() == 2));
        assert!(
            matches!(l.band_parts(&base, 3, &tails[..1]), Ok(BandParts::Each(p)) if p.len() == 1)
        );
    }

    /// A T-learner scores each row by its own arm's learner, whichever
    /// way the rows come (whole rows, a tail for all, a tail per row), and
    /// its linear form and contributions agree with its predictions.
    #[test]
    fn per_arm_learners_score_each_row_by_its_arm() {
        let n = 600;
        let names = vec!["a".to_string(), "b".to_string()];
        let base = Array2::from_shape_fn((n, 2), |(i, j)| ((i * (j + 5)) % 13) as f64 - 6.0);
        // Three arms with opposite slopes: a learner mixed up shows.
        let fit = |sign: f64, shift: usize| {
            let y: Vec<bool> = (0..n)
                .map(|i| sign * base[[i, 0]] + ((i * 7 + shift) % 11) as f64 / 2.0 - 2.5 > 0.0)
                .collect();
            Learner::Logistic(LogisticModel::fit(base.view(), &y, &names, 0.1).unwrap())
        };
        let mut learners = vec![fit(1.0, 0), fit(-1.0, 3), fit(0.2, 5)];
        // Each learner's own covariance (3 x 3: intercept and two slopes).
        for (a, l) in learners.iter_mut().enumerate() {
            if let Learner::Logistic(m) = l {
                m.covariance = (0..9)
                    .map(|i| if i % 4 == 0 { (a + 1) as f64 } else { 0.1 })
                    .collect();
            }
        }
        let full = vec![
            "a".to_string(),
            "b".to_string(),
            "arm_x".to_string(),
            "arm_y".to_string(),
        ];
        assert!(PerArm::new(names.clone(), 2, learners.clone()).is_err());
        let t = Learner::PerArm(PerArm::new(full.clone(), 2, learners.clone()).unwrap());
        let arm_of = |i: usize| i % 3;
        let x = Array2::from_shape_fn((n, 4), |(i, j)| match j {
            0 | 1 => base[[i, j]],
            _ => f64::from(arm_of(i) == j - 1),
        });
        let p = t.predict(x.view()).unwrap();
        let own: Vec<Vec<f64>> = learners
            .iter()
            .map(|l| l.predict(base.view()).unwrap())
            .collect();
        for i in 0..n {
            assert_eq!(p[i], own[arm_of(i)][i], "row {i}");
        }
        // One tail for every row: that arm's learner on every row.
        let flat: Vec<f64> = base.iter().copied().collect();
        let tails = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]];
        let same: Vec<Tail> = tails.iter().map(|t| Tail::same(t)).collect();
        let by_tail = t.predict_tails(&flat, 2, &same).unwrap();
        for (a, p) in by_tail.iter().enumerate() {
            assert_eq!(p, &own[a]);
        }
        // A tail per row: each row's own arm.
        let per: Vec<f64> = (0..n)
            .flat_map(|i| [f64::from(arm_of(i) == 1), f64::from(arm_of(i) == 2)])
            .collect();
        let mixed = t
            .predict_tails(&flat, 2, &[Tail::per_row(&per, 2)])
            .unwrap();
        assert_eq!(mixed[0], p);
        assert!(t.predict_tails(&flat, 3, &same).is_err());
        assert!(t.predict_tails(&flat, 2, &[Tail::same(&[1.0])]).is_err());
        // The linear form gives the same probabilities, for mixed rows
        // and for one tail, with one coefficient vector for all.
        let logit = |lp: &LinearPart| -> Vec<f64> {
            lp.features
                .chunks(lp.width)
                .map(|r| {
                    let s: f64 = r.iter().zip(&lp.coef).map(|(v, b)| v * b).sum();
                    1.0 / (1.0 + (-s).exp())
                })
                .collect()
        };
        let lp = t.linear_part(x.view()).unwrap();
        // Block-diagonal: each learner's covariance on its own block.
        assert_eq!(lp.width, 9);
        for i in 0..9 {
            for j in 0..9 {
                let v = lp.covariance[i * 9 + j];
                let want = if i / 3 != j / 3 {
                    0.0
                } else if i == j {
                    (i / 3 + 1) as f64
                } else {
                    0.1
                };
                assert_eq!(v, want, "({i}, {j})");
            }
        }
        for (a, b) in logit(&lp).iter().zip(&p) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
        let parts = t.linear_parts_tails(&flat, 2, &same).unwrap();
        for (a, part) in parts.iter().enumerate() {
            assert_eq!(part.coef, lp.coef);
            assert_eq!(part.covariance, lp.covariance);
            for (u, v) in logit(part).iter().zip(&own[a]) {
                assert!((u - v).abs() < 1e-12);
            }
        }
        // Contributions: the row's own learner's, none from arm columns.
        let c = t.contributions(x.view()).unwrap();
        for i in 0..n {
            let mine = learners[arm_of(i)]
                .contributions(base.slice_axis(ndarray::Axis(0), ndarray::Slice::from(i..i + 1)))
                .unwrap();
            assert_eq!(&c[i * 4..i * 4 + 2], &mine[..]);
            assert_eq!(&c[i * 4 + 2..i * 4 + 4], &[0.0, 0.0]);
        }
        let back: Learner = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back.predict(x.view()).unwrap(), p);
        // Steps (a hazard's month bands): group j has the first j set.
        let bands = Learner::PerArm(PerArm::by_steps(full, 2, learners.clone()).unwrap());
        let steps = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]];
        let tails: Vec<Tail> = steps.iter().map(|t| Tail::same(t)).collect();
        for (a, p) in bands
            .predict_tails(&flat, 2, &tails)
            .unwrap()
            .iter()
            .enumerate()
        {
            assert_eq!(p, &own[a], "band {a}");
        }
        let json = serde_json::to_string(&bands).unwrap();
        assert!(json.contains("\"steps\":true"), "{json}");
        let back: Learner = serde_json::from_str(&json).unwrap();
        assert_eq!(back.predict_tails(&flat, 2, &tails).unwrap()[2], own[2]);
    }
}
