//! One face for the probability learners, so the pipeline fits, compares,
//! stores and applies them the same way; and a ridge regression for the
//! continuous outcomes (expected monthly margin).

use ndarray::{Array1, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::boosted::{BoostedModel, Tail};
use crate::error::FitError;
use crate::logistic::{LogisticModel, Standardizer, check};
use crate::uncertainty::LinearPart;

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
}

impl Learner {
    /// The model as a classifier.
    pub fn classifier(&self) -> &dyn Classifier {
        match self {
            Learner::Logistic(m) => m,
            Learner::Boosted(m) => m.as_ref(),
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
            Learner::Logistic(m) => tails
                .iter()
                .map(|tail| m.linear_part(completed(base, n, width, tail)?.view()))
                .collect(),
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
            Learner::Logistic(m) => tails
                .iter()
                .map(|tail| m.predict(completed(base, n, width, tail)?.view()))
                .collect(),
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
}
