//! Parameter uncertainty of the fitted models, for the offer simulation's
//! Monte Carlo intervals.
//!
//! Every model here predicts through a link of a linear predictor: the
//! logistic regression of its standardised columns, the boosted trees'
//! Platt calibration of their raw score, the ridge regression of its
//! standardised columns. Each stores the covariance of those linear
//! coefficients when fitted (the inverse Hessian of the penalised
//! log-likelihood for the logistic model and Platt's calibration, the
//! residual variance times the inverse penalised Gram matrix for ridge), and
//! [`LinearPart`] exposes the linear form so that a simulation can draw
//! coefficients from the normal approximation `N(coef, covariance)` and
//! recompute predictions without refitting. The boosted trees' own
//! structure is not sampled: for them only the calibration is uncertain.

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

use crate::error::FitError;

/// A model's predictions as `link(features · coef)`.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearPart {
    /// Row-major features, `width` per row (the first is the constant 1).
    pub features: Vec<f64>,
    /// Features per row.
    pub width: usize,
    /// The fitted coefficients.
    pub coef: Vec<f64>,
    /// Covariance of `coef` (row-major, `width` x `width`); empty when the
    /// model stored none.
    pub covariance: Vec<f64>,
    /// Whether the link is the logistic (else identity).
    pub logistic: bool,
}

impl LinearPart {
    /// The linear form `intercept + z . coefficients` of standardised rows
    /// `z`, with a covariance over (intercept, coefficients).
    pub fn standardised(
        z: ndarray::Array2<f64>,
        intercept: f64,
        coefficients: &[f64],
        covariance: &[f64],
        logistic: bool,
    ) -> LinearPart {
        let width = z.ncols() + 1;
        let mut features = Vec::with_capacity(z.nrows() * width);
        for row in z.rows() {
            features.push(1.0);
            features.extend(row.iter());
        }
        let mut coef = vec![intercept];
        coef.extend(coefficients);
        LinearPart {
            features,
            width,
            coef,
            covariance: covariance.to_vec(),
            logistic,
        }
    }

    /// The prediction of row `i` under coefficients `coef`.
    pub fn predict_row(&self, i: usize, coef: &[f64]) -> f64 {
        self.link(self.eta_row(i, coef))
    }

    /// The linear predictor of row `i` under coefficients `coef`.
    pub fn eta_row(&self, i: usize, coef: &[f64]) -> f64 {
        dot(&self.features[i * self.width..(i + 1) * self.width], coef)
    }

    /// The link applied to a linear predictor.
    pub fn link(&self, eta: f64) -> f64 {
        if self.logistic {
            1.0 / (1.0 + (-eta).exp())
        } else {
            eta
        }
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.features.len() / self.width.max(1)
    }
}

/// A hazard's linear parts, one per month band.
#[derive(Debug, Clone, PartialEq)]
pub enum BandParts {
    /// Each band's part in full.
    Each(Vec<LinearPart>),
    /// Band 0's part in full, and per band what its rows' columns from
    /// `start` on differ from band 0's by (the same for every row, such as
    /// a pooled hazard's standardised month-band steps): one part built
    /// where each band's took as long.
    Shifted {
        /// Band 0's part.
        first: LinearPart,
        /// The first column in which a band differs from band 0.
        start: usize,
        /// Per band, its columns from `start` on less band 0's.
        shift: Vec<Vec<f64>>,
    },
}

impl BandParts {
    /// The parts built in full: every band's, or band 0's alone.
    pub fn parts(&self) -> &[LinearPart] {
        match self {
            BandParts::Each(parts) => parts,
            BandParts::Shifted { first, .. } => std::slice::from_ref(first),
        }
    }

    /// Band 0's part.
    pub fn first(&self) -> Option<&LinearPart> {
        self.parts().first()
    }

    /// Bands.
    pub fn bands(&self) -> usize {
        match self {
            BandParts::Each(parts) => parts.len(),
            BandParts::Shifted { shift, .. } => shift.len(),
        }
    }
}

impl From<Vec<LinearPart>> for BandParts {
    fn from(parts: Vec<LinearPart>) -> Self {
        BandParts::Each(parts)
    }
}

/// `a . b` over their common length, in four interleaved partial sums
/// (independent chains the processor runs side by side, where one running
/// sum waits on each addition).
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    let k = a.len().min(b.len());
    let (a, b) = (&a[..k], &b[..k]);
    let mut acc = [0.0; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for j in 0..4 {
            acc[j] += x[j] * y[j];
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// Draws coefficient vectors from `N(mean, covariance)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Posterior {
    mean: Vec<f64>,
    /// Lower Cholesky factor of the covariance (empty: no uncertainty).
    chol: Vec<f64>,
}

impl Posterior {
    /// From a mean and a covariance (empty: draws return the mean). A
    /// covariance that is not positive definite gets a small ridge.
    pub fn new(mean: &[f64], covariance: &[f64]) -> Result<Posterior, FitError> {
        let k = mean.len();
        if covariance.is_empty() {
            return Ok(Posterior {
                mean: mean.to_vec(),
                chol: Vec::new(),
            });
        }
        if covariance.len() != k * k {
            return Err(FitError::Shape(format!(
                "covariance of {} values for {k} coefficients",
                covariance.len()
            )));
        }
        let scale = (0..k)
            .map(|j| covariance[j * k + j].abs())
            .fold(0.0, f64::max);
        let mut jitter = 0.0;
        // Up to a ridge of 1e-6 times the largest variance.
        for _ in 0..4 {
            let mut a = covariance.to_vec();
            for j in 0..k {
                a[j * k + j] += jitter;
            }
            if let Some(chol) = cholesky(&a, k) {
                return Ok(Posterior {
                    mean: mean.to_vec(),
                    chol,
                });
            }
            jitter = if jitter == 0.0 {
                scale.max(1e-300) * 1e-10
            } else {
                jitter * 100.0
            };
        }
        Err(FitError::Solver(
            "coefficient covariance is not positive definite".into(),
        ))
    }

    /// Coefficients.
    pub fn len(&self) -> usize {
        self.mean.len()
    }

    /// Whether there are no coefficients.
    pub fn is_empty(&self) -> bool {
        self.mean.is_empty()
    }

    /// `mean + L z` for standard normal draws `z` (at least [`Self::len`]).
    pub fn draw(&self, z: &[f64]) -> Vec<f64> {
        let k = self.mean.len();
        if self.chol.is_empty() {
            return self.mean.clone();
        }
        (0..k)
            .map(|i| self.mean[i] + (0..=i).map(|j| self.chol[i * k + j] * z[j]).sum::<f64>())
            .collect()
    }
}

/// Lower Cholesky factor of a symmetric positive-definite matrix
/// (row-major), or `None`.
pub fn cholesky(a: &[f64], k: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; k * k];
    for j in 0..k {
        let d = a[j * k + j] - (0..j).map(|p| l[j * k + p] * l[j * k + p]).sum::<f64>();
        if d <= 0.0 || !d.is_finite() {
            return None;
        }
        let d = d.sqrt();
        l[j * k + j] = d;
        for i in j + 1..k {
            let s = a[i * k + j] - (0..j).map(|p| l[i * k + p] * l[j * k + p]).sum::<f64>();
            l[i * k + j] = s / d;
        }
    }
    Some(l)
}

/// Solves `L L' x = b` for the lower Cholesky factor `l` (row-major).
pub fn cholesky_solve(l: &[f64], k: usize, b: &[f64]) -> Vec<f64> {
    let mut y = b.to_vec();
    for i in 0..k {
        y[i] = (y[i] - (0..i).map(|p| l[i * k + p] * y[p]).sum::<f64>()) / l[i * k + i];
    }
    for i in (0..k).rev() {
        y[i] = (y[i] - (i + 1..k).map(|p| l[p * k + i] * y[p]).sum::<f64>()) / l[i * k + i];
    }
    y
}

/// Inverse of `L L'` from its lower Cholesky factor `l` (row-major).
pub fn cholesky_inverse(l: &[f64], k: usize) -> Vec<f64> {
    let mut inv = vec![0.0; k * k];
    let mut e = vec![0.0; k];
    for c in 0..k {
        e[c] = 1.0;
        let x = cholesky_solve(l, k, &e);
        e[c] = 0.0;
        for i in 0..k {
            inv[i * k + c] = x[i];
        }
    }
    inv
}

/// Inverse of a symmetric positive-definite matrix (row-major), or `None`.
pub fn spd_inverse(a: &[f64], k: usize) -> Option<Vec<f64>> {
    Some(cholesky_inverse(&cholesky(a, k)?, k))
}

/// `sum_i w_i [1, z_i] [1, z_i]'` (row-major, `(k+1)^2`) over the rows of
/// `z`, in parallel blocks summed in order (the same bits for any thread
/// count).
pub fn weighted_gram(z: ArrayView2<f64>, w: &[f64]) -> Vec<f64> {
    let k = z.ncols() + 1;
    let z = z.as_standard_layout();
    let flat = z.as_slice().expect("standard layout");
    let kz = k - 1;
    // Per block of rows, `X' (W X)` with `X` the block's rows after a
    // leading 1, as a matrix product (ndarray's, cache-blocked and
    // vectorised; a row at a time, the sums were most of a large fit's
    // covariance).
    const BLOCK: usize = 2048;
    let rows = z.nrows();
    let mut g = (0..rows.div_ceil(BLOCK))
        .into_par_iter()
        .map(|b| {
            let (first, last) = (b * BLOCK, ((b + 1) * BLOCK).min(rows));
            let mut x = Array2::<f64>::ones((last - first, k));
            let mut wx = Array2::<f64>::zeros((last - first, k));
            for (i, r) in (first..last).enumerate() {
                let row = &flat[r * kz..(r + 1) * kz];
                for (j, v) in row.iter().enumerate() {
                    x[[i, j + 1]] = *v;
                }
                for j in 0..k {
                    wx[[i, j]] = w[r] * x[[i, j]];
                }
            }
            let mut g = Array2::<f64>::zeros((k, k));
            ndarray::linalg::general_mat_mul(1.0, &x.t(), &wx, 0.0, &mut g);
            g.into_raw_vec_and_offset().0
        })
        .collect::<Vec<Vec<f64>>>()
        .into_iter()
        .fold(vec![0.0; k * k], |mut a, b| {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
            a
        });
    for a in 0..k {
        for b in 0..a {
            g[b * k + a] = g[a * k + b];
        }
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_is_the_sum_of_products_at_every_length() {
        for k in 0..=11 {
            let a: Vec<f64> = (0..k).map(|i| 1.5 + i as f64).collect();
            let b: Vec<f64> = (0..k).map(|i| 0.25 * (i as f64) - 1.0).collect();
            let want: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!(
                (dot(&a, &b) - want).abs() <= 1e-12 * (1.0 + want.abs()),
                "{k}"
            );
            // The common length only.
            assert_eq!(dot(&a, &b[..k / 2]), dot(&a[..k / 2], &b[..k / 2]));
        }
    }

    #[test]
    fn inverse_and_draws_have_the_stated_covariance() {
        let a = vec![4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 2.0];
        let inv = spd_inverse(&a, 3).unwrap();
        for i in 0..3 {
            for j in 0..3 {
                let v: f64 = (0..3).map(|p| a[i * 3 + p] * inv[p * 3 + j]).sum();
                assert!((v - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
        }
        // Draws along the unit vectors give the Cholesky columns, so
        // sum_j draw(e_j) draw(e_j)' = L L' = the covariance.
        let post = Posterior::new(&[0.0; 3], &a).unwrap();
        let mut cov = vec![0.0; 9];
        for j in 0..3 {
            let mut e = vec![0.0; 3];
            e[j] = 1.0;
            let d = post.draw(&e);
            for p in 0..3 {
                for q in 0..3 {
                    cov[p * 3 + q] += d[p] * d[q];
                }
            }
        }
        for (x, y) in cov.iter().zip(&a) {
            assert!((x - y).abs() < 1e-12, "{cov:?}");
        }
        assert!(Posterior::new(&[0.0; 2], &[1.0, 2.0, 2.0, 1.0]).is_err());
    }

    #[test]
    fn weighted_gram_is_symmetric_with_the_constant_first() {
        let z = ndarray::Array2::from_shape_vec((3, 1), vec![1.0, 2.0, 3.0]).unwrap();
        let g = weighted_gram(z.view(), &[1.0, 1.0, 2.0]);
        assert_eq!(g, vec![4.0, 9.0, 9.0, 23.0]);
    }

    #[test]
    fn weighted_gram_over_many_blocks_is_the_sum_of_the_rows() {
        let (n, k) = (5_000, 4);
        let z = ndarray::Array2::from_shape_fn((n, k), |(i, j)| {
            ((i * 7 + j * 13) % 17) as f64 / 5.0 - 1.5
        });
        let w: Vec<f64> = (0..n).map(|i| (i % 5) as f64 * 0.3).collect();
        let g = weighted_gram(z.view(), &w);
        let x = |i: usize, a: usize| if a == 0 { 1.0 } else { z[[i, a - 1]] };
        for a in 0..=k {
            for b in 0..=k {
                let direct: f64 = (0..n).map(|i| w[i] * x(i, a) * x(i, b)).sum();
                let got = g[a * (k + 1) + b];
                assert!(
                    (got - direct).abs() <= 1e-9 * direct.abs().max(1.0),
                    "({a}, {b}): {got} against {direct}"
                );
            }
        }
    }
}
