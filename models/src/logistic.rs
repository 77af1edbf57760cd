//! L2-regularised logistic regression on standardised columns, fitted by a
//! preconditioned L-BFGS (linfa-logistic's objective; a test holds the
//! two to the same optimum), with the L2 strength chosen by k-fold cross-validation on
//! log loss. The standardisation is stored with the model, so a model
//! predicts from raw feature values; coefficients are reported both per
//! standard deviation (comparable across features) and per raw unit (odds
//! ratios an analyst can read).

use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2, ArrayView2, Axis};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::uncertainty::LinearPart;

use crate::error::FitError;

/// Column means and standard deviations (1 where a column is constant).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    /// Mean per column.
    pub mean: Vec<f64>,
    /// Standard deviation per column.
    pub scale: Vec<f64>,
}

impl Standardizer {
    /// Fits on the columns of `x`.
    pub fn fit(x: ArrayView2<f64>) -> Self {
        Self::fit_weighted(x, None)
    }

    /// Fits on the columns of `x`, each row counted `weights[i]` times
    /// (once each without weights): a row of weight 3 standardises as
    /// three equal rows do.
    pub fn fit_weighted(x: ArrayView2<f64>, weights: Option<&[f64]>) -> Self {
        let k = x.ncols();
        let x = x.as_standard_layout();
        let flat = x.as_slice().expect("standard layout");
        let w = |i: usize| weights.map_or(1.0, |w| w[i]);
        let n = (0..x.nrows()).map(w).sum::<f64>().max(f64::MIN_POSITIVE);
        // Weighted sums per column over blocks of rows (each row read
        // whole, in memory order), blocks in parallel and added in order.
        let sums = |f: &(dyn Fn(usize, f64) -> f64 + Sync)| -> Vec<f64> {
            if k == 0 {
                return Vec::new();
            }
            const BLOCK: usize = 4096;
            flat.par_chunks(BLOCK * k)
                .enumerate()
                .map(|(b, rows)| {
                    let mut s = vec![0.0; k];
                    for (i, row) in rows.chunks_exact(k).enumerate() {
                        let wi = w(b * BLOCK + i);
                        for (j, (sj, v)) in s.iter_mut().zip(row).enumerate() {
                            *sj += wi * f(j, *v);
                        }
                    }
                    s
                })
                .collect::<Vec<_>>()
                .into_iter()
                .fold(vec![0.0; k], |mut a, b| {
                    for (x, y) in a.iter_mut().zip(b) {
                        *x += y;
                    }
                    a
                })
        };
        let mean: Vec<f64> = sums(&|_, v| v).into_iter().map(|s| s / n).collect();
        let scale = sums(&|j, v| (v - mean[j]).powi(2))
            .into_iter()
            .map(|s| {
                let v = s / n;
                if v > 1e-24 { v.sqrt() } else { 1.0 }
            })
            .collect();
        Standardizer { mean, scale }
    }

    /// `(x - mean) / scale`, column by column.
    pub fn apply(&self, x: ArrayView2<f64>) -> Array2<f64> {
        self.apply_owned(x.to_owned())
    }

    /// [`Standardizer::apply`] in place: no second copy of the rows.
    pub fn apply_owned(&self, mut z: Array2<f64>) -> Array2<f64> {
        for mut row in z.axis_iter_mut(Axis(0)) {
            for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.scale) {
                *v = (*v - m) / s;
            }
        }
        z
    }
}

/// A fitted model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogisticModel {
    /// Feature names, in column order.
    pub names: Vec<String>,
    /// Standardisation of the columns.
    pub standardizer: Standardizer,
    /// Intercept on the standardised scale.
    pub intercept: f64,
    /// Coefficients per standard deviation of each feature.
    pub coefficients: Vec<f64>,
    /// L2 strength used (linfa's `alpha`: the penalty is alpha / 2 times the
    /// squared norm, against the summed log-likelihood).
    pub alpha: f64,
    /// Covariance of (intercept, coefficients) on the standardised scale:
    /// the inverse Hessian of the penalised log-likelihood at the optimum
    /// (set by [`LogisticModel::with_covariance`]; empty until then).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub covariance: Vec<f64>,
}

/// Checks the inputs of a fit; the standardisation and standardised rows
/// (`x` standardised in place).
fn prepare(
    x: Array2<f64>,
    y: &[bool],
    weights: Option<&[f64]>,
    names: &[String],
) -> Result<(Standardizer, Array2<f64>), FitError> {
    check(x.view(), Some(y), names.len())?;
    check_weights(weights, y.len())?;
    if y.iter().all(|v| *v) || y.iter().all(|v| !*v) {
        return Err(FitError::OneClass);
    }
    let standardizer = Standardizer::fit_weighted(x.view(), weights);
    let z = standardizer.apply_owned(x);
    Ok((standardizer, z))
}

/// Where a fit starts: the base rate, a point (intercept, then
/// standardised coefficients), or another fit of the same design carried
/// over to this data's standardisation.
#[derive(Debug, Clone, Copy)]
pub enum Start<'a> {
    /// The base rate's log-odds, every coefficient zero.
    BaseRate,
    /// This point.
    Point(&'a [f64]),
    /// This model's coefficients per raw unit.
    From(&'a LogisticModel),
}

/// Row weights, where given, are one per row, finite and above zero.
pub fn check_weights(weights: Option<&[f64]>, rows: usize) -> Result<(), FitError> {
    match weights {
        Some(w) if w.len() != rows || w.iter().any(|v| !(v.is_finite() && *v > 0.0)) => {
            Err(FitError::Shape(format!(
                "{} weights for {rows} rows, each must be finite and above zero",
                w.len()
            )))
        }
        _ => Ok(()),
    }
}

/// Checks shapes and finiteness of a feature matrix (and labels).
pub fn check(x: ArrayView2<f64>, y: Option<&[bool]>, names: usize) -> Result<(), FitError> {
    if x.ncols() != names {
        return Err(FitError::Shape(format!(
            "{} columns, {} names",
            x.ncols(),
            names
        )));
    }
    if let Some(y) = y
        && y.len() != x.nrows()
    {
        return Err(FitError::Shape(format!(
            "{} rows, {} labels",
            x.nrows(),
            y.len()
        )));
    }
    // In memory order when the rows are contiguous (the usual case).
    if let Some(flat) = x.as_slice() {
        if let Some(at) = flat.iter().position(|v| !v.is_finite()) {
            let k = x.ncols().max(1);
            return Err(FitError::NonFinite(at / k, at % k));
        }
        return Ok(());
    }
    for ((r, c), v) in x.indexed_iter() {
        if !v.is_finite() {
            return Err(FitError::NonFinite(r, c));
        }
    }
    Ok(())
}

impl LogisticModel {
    /// Fits with L2 strength `alpha` (see [`LogisticModel::alpha`]): L-BFGS,
    /// preconditioned by an estimate of the Hessian, on a loss-and-gradient
    /// pass fused over row blocks in parallel (rayon). Same objective and optimum as linfa-logistic, which
    /// [`LogisticModel::fit_linfa`] runs and a test compares against.
    pub fn fit(
        x: ArrayView2<f64>,
        y: &[bool],
        names: &[String],
        alpha: f64,
    ) -> Result<Self, FitError> {
        Self::fit_from(x, y, names, alpha, None)
    }

    /// As [`LogisticModel::fit`], starting from `start` (intercept, then
    /// standardised coefficients), e.g. the fit at a neighbouring alpha.
    pub fn fit_from(
        x: ArrayView2<f64>,
        y: &[bool],
        names: &[String],
        alpha: f64,
        start: Option<Vec<f64>>,
    ) -> Result<Self, FitError> {
        Self::fit_to(x, y, None, names, alpha, start, Precision::Final)
    }

    /// As [`LogisticModel::fit_from`], solved to `precision`, each row
    /// counted `weights[i]` times where weights are given (rows that share
    /// their features and label, collapsed: the same objective, the same
    /// optimum, from fewer rows).
    pub fn fit_to(
        x: ArrayView2<f64>,
        y: &[bool],
        weights: Option<&[f64]>,
        names: &[String],
        alpha: f64,
        start: Option<Vec<f64>>,
        precision: Precision,
    ) -> Result<Self, FitError> {
        let start = match &start {
            Some(p) => Start::Point(p),
            None => Start::BaseRate,
        };
        Self::fit_owned(
            x.to_owned(),
            y,
            weights,
            names,
            alpha,
            start,
            precision,
            false,
        )
    }

    /// The fit of [`LogisticModel::fit_to`] on rows it may overwrite (they
    /// are standardised in place: one copy of a large design, not two),
    /// from `start`, with the covariance of
    /// [`LogisticModel::with_covariance`] when `covariance` is set.
    #[allow(clippy::too_many_arguments)]
    pub fn fit_owned(
        x: Array2<f64>,
        y: &[bool],
        weights: Option<&[f64]>,
        names: &[String],
        alpha: f64,
        start: Start<'_>,
        precision: Precision,
        covariance: bool,
    ) -> Result<Self, FitError> {
        let (standardizer, z) = prepare(x, y, weights, names)?;
        let start: Option<Vec<f64>> = match start {
            Start::BaseRate => None,
            Start::Point(p) => Some(p.to_vec()),
            Start::From(from) => {
                let (b0, raw) = from.raw_coefficients();
                (raw.len() == standardizer.mean.len()).then(|| {
                    let shift: f64 = raw.iter().zip(&standardizer.mean).map(|(b, m)| b * m).sum();
                    std::iter::once(b0 + shift)
                        .chain(raw.iter().zip(&standardizer.scale).map(|(b, sd)| b * sd))
                        .collect()
                })
            }
        };
        let z = if z.is_standard_layout() {
            z
        } else {
            z.as_standard_layout().into_owned()
        };
        let mut model = Self::solve(standardizer, &z, y, weights, names, alpha, start, precision)?;
        if covariance {
            model.covariance = model.covariance_on(&z, weights)?;
        }
        Ok(model)
    }

    #[allow(clippy::too_many_arguments)]
    fn solve(
        standardizer: Standardizer,
        z: &Array2<f64>,
        y: &[bool],
        weights: Option<&[f64]>,
        names: &[String],
        alpha: f64,
        start: Option<Vec<f64>>,
        precision: Precision,
    ) -> Result<Self, FitError> {
        let k = z.ncols();
        let problem = fused::Problem {
            z: z.as_slice().expect("standard layout"),
            k,
            y,
            weights,
            alpha,
        };
        let w = fused::minimise(&problem, start.filter(|s| s.len() == k + 1), precision)?;
        Ok(LogisticModel {
            names: names.to_vec(),
            standardizer,
            intercept: w[0],
            coefficients: w[1..].to_vec(),
            alpha,
            covariance: Vec::new(),
        })
    }

    /// Fits with linfa-logistic (the reference the fused solver is checked
    /// against).
    pub fn fit_linfa(
        x: ArrayView2<f64>,
        y: &[bool],
        names: &[String],
        alpha: f64,
    ) -> Result<Self, FitError> {
        let (standardizer, z) = prepare(x.to_owned(), y, None, names)?;
        let targets = Array1::from_iter(y.iter().copied());
        let data = Dataset::new(z, targets);
        let fitted = LogisticRegression::default()
            .alpha(alpha)
            .max_iterations(500)
            .gradient_tolerance(1e-6)
            .fit(&data)
            .map_err(|e| FitError::Solver(e.to_string()))?;
        // linfa models the more frequent label as its positive class; turn
        // its parameters round when that label is `false`.
        let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
        Ok(LogisticModel {
            names: names.to_vec(),
            standardizer,
            intercept: sign * fitted.intercept(),
            coefficients: fitted.params().iter().map(|b| sign * b).collect(),
            alpha,
            covariance: Vec::new(),
        })
    }

    /// P(label true) for each row of raw feature values.
    pub fn predict(&self, x: ArrayView2<f64>) -> Result<Vec<f64>, FitError> {
        check(x, None, self.names.len())?;
        let z = self.standardizer.apply(x);
        Ok(self
            .linear(&z)
            .into_iter()
            .map(|eta| 1.0 / (1.0 + (-eta).exp()))
            .collect())
    }

    /// [`LogisticModel::predict`] of the rows of `base` completed, for each
    /// of `tails`, by that tail (see [`crate::tail::Tail`]): one vector
    /// per tail, the same bits as predicting each completed matrix, without
    /// building it or its standardised copy: each row is completed,
    /// standardised and scored in a buffer of its own, on row blocks in
    /// parallel.
    pub fn predict_tails(
        &self,
        base: ArrayView2<f64>,
        tails: &[crate::tail::Tail],
    ) -> Result<Vec<Vec<f64>>, FitError> {
        let (n, kb) = base.dim();
        let k = self.names.len();
        for t in tails {
            t.check(n)?;
            if kb + t.width() != k {
                return Err(FitError::Shape(format!(
                    "{} columns, {k} names",
                    kb + t.width()
                )));
            }
        }
        let base = base.as_standard_layout();
        let rows = base.as_slice().expect("standard layout");
        // The first value that is not finite, as the completed matrix's
        // check would name it: the base's first (scanned once) or the
        // tail's, whichever comes first in row-major order.
        let first = |values: &[f64], width: usize, offset: usize| {
            values
                .iter()
                .position(|v| !v.is_finite())
                .map(|at| (at / width.max(1), offset + at % width.max(1)))
        };
        let in_base = first(rows, kb, 0);
        for t in tails {
            let in_tail = (0..n).find_map(|r| first(t.row(r), t.width(), kb).map(|(_, c)| (r, c)));
            if let Some((r, c)) = match (in_base, in_tail) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            } {
                return Err(FitError::NonFinite(r, c));
            }
        }
        let w = ndarray::ArrayView1::from(&self.coefficients[..]);
        let (mean, scale) = (&self.standardizer.mean, &self.standardizer.scale);
        const BLOCK: usize = 1024;
        Ok(tails
            .iter()
            .map(|tail| {
                let mut out = vec![0.0; n];
                out.par_chunks_mut(BLOCK).enumerate().for_each(|(b, out)| {
                    let mut z = vec![0.0; k];
                    for (i, o) in out.iter_mut().enumerate() {
                        let r = b * BLOCK + i;
                        z[..kb].copy_from_slice(&rows[r * kb..(r + 1) * kb]);
                        z[kb..].copy_from_slice(tail.row(r));
                        for ((v, m), s) in z.iter_mut().zip(mean).zip(scale) {
                            *v = (*v - m) / s;
                        }
                        let eta = ndarray::ArrayView1::from(&z[..]).dot(&w) + self.intercept;
                        *o = 1.0 / (1.0 + (-eta).exp());
                    }
                });
                out
            })
            .collect())
    }

    /// The model with its coefficients' covariance computed on the rows it
    /// was fitted on, with their weights (the Laplace approximation, see
    /// [`crate::uncertainty`]).
    pub fn with_covariance(
        mut self,
        x: ArrayView2<f64>,
        weights: Option<&[f64]>,
    ) -> Result<Self, FitError> {
        check(x, None, self.names.len())?;
        check_weights(weights, x.nrows())?;
        self.covariance = self.covariance_on(&self.standardizer.apply(x), weights)?;
        Ok(self)
    }

    /// The covariance on standardised rows `z`.
    fn covariance_on(
        &self,
        z: &Array2<f64>,
        weights: Option<&[f64]>,
    ) -> Result<Vec<f64>, FitError> {
        let w: Vec<f64> = self
            .linear(z)
            .iter()
            .enumerate()
            .map(|(i, eta)| {
                let p = 1.0 / (1.0 + (-eta).exp());
                weights.map_or(1.0, |w| w[i]) * p * (1.0 - p)
            })
            .collect();
        let k = z.ncols() + 1;
        let mut h = crate::uncertainty::weighted_gram(z.view(), &w);
        for j in 1..k {
            h[j * k + j] += self.alpha;
        }
        // A tiny ridge on the intercept keeps an all-separable fit invertible.
        h[0] += 1e-9;
        crate::uncertainty::spd_inverse(&h, k).ok_or_else(|| {
            FitError::Solver("the Hessian at the optimum is not positive definite".into())
        })
    }

    fn linear(&self, z: &Array2<f64>) -> Vec<f64> {
        let w = Array1::from_vec(self.coefficients.clone());
        z.dot(&w).iter().map(|s| s + self.intercept).collect()
    }

    /// The model's linear predictor on the rows of `x` with its covariance.
    pub fn linear_part(&self, x: ArrayView2<f64>) -> Result<LinearPart, FitError> {
        check(x, None, self.names.len())?;
        Ok(LinearPart::standardised(
            self.standardizer.apply(x),
            self.intercept,
            &self.coefficients,
            &self.covariance,
            true,
        ))
    }

    /// Intercept and coefficients per raw unit of each feature.
    pub fn raw_coefficients(&self) -> (f64, Vec<f64>) {
        let s = &self.standardizer;
        let per_unit: Vec<f64> = self
            .coefficients
            .iter()
            .zip(&s.scale)
            .map(|(b, sd)| b / sd)
            .collect();
        let shift: f64 = per_unit.iter().zip(&s.mean).map(|(b, m)| b * m).sum();
        (self.intercept - shift, per_unit)
    }
}

/// How closely [`LogisticModel::fit_to`] solves: the stored fits to the
/// optimum's last digits (the test against linfa-logistic holds them to
/// it), cross-validation's fits only as closely as comparing penalties
/// needs (a fold's log loss moves in the seventh digit at most), which
/// takes a fraction of the solver's iterations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// Gradient norm 1e-7, relative cost change 1e-12 (per row).
    Final,
    /// Gradient norm 1e-5, relative cost change 1e-10 (per row).
    Screening,
}

impl Precision {
    fn tolerances(self) -> (f64, f64) {
        match self {
            Precision::Final => (1e-7, 1e-12),
            Precision::Screening => (1e-5, 1e-10),
        }
    }
}

/// The fused objective: summed log loss plus `alpha / 2` times the squared
/// norm of the coefficients (not the intercept), the same as
/// linfa-logistic's, scaled by 1/n so tolerances do not depend on n.
mod fused {
    use super::{FitError, Precision};
    use argmin::core::{CostFunction, Error, Executor, Gradient, IterState, State};
    use argmin::solver::linesearch::MoreThuenteLineSearch;
    use argmin::solver::quasinewton::LBFGS;
    use rayon::prelude::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Rows per parallel block.
    const BLOCK: usize = 4096;

    pub struct Problem<'a> {
        /// Standardised rows, row-major, `k` columns.
        pub z: &'a [f64],
        pub k: usize,
        pub y: &'a [bool],
        /// Row weights (each row counted so many times; none: once).
        pub weights: Option<&'a [f64]>,
        pub alpha: f64,
    }

    /// The dot product in eight running sums (a fixed order, so the same
    /// bits on every run): one sum would wait on each addition before the
    /// next, eight keep the processor's adders busy.
    #[inline]
    pub(super) fn dot(a: &[f64], b: &[f64]) -> f64 {
        let mut s = [0.0; 8];
        let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
        let tail: f64 = ca
            .remainder()
            .iter()
            .zip(cb.remainder())
            .map(|(x, y)| x * y)
            .sum();
        for (x, y) in ca.zip(cb) {
            for l in 0..8 {
                s[l] += x[l] * y[l];
            }
        }
        ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])) + tail
    }

    /// Loss and gradient in one pass; parameters are intercept then
    /// coefficients.
    pub(super) fn loss_and_gradient(p: &Problem<'_>, w: &[f64]) -> (f64, Vec<f64>) {
        let k = p.k;
        let (loss, mut grad) =
            p.z.par_chunks(BLOCK * k)
                .zip(p.y.par_chunks(BLOCK))
                .enumerate()
                .map(|(block, (rows, ys))| {
                    let mut g = vec![0.0; k + 1];
                    let mut l = 0.0;
                    let weight = |i: usize| p.weights.map_or(1.0, |w| w[block * BLOCK + i]);
                    for (i, (row, &yi)) in rows.chunks_exact(k).zip(ys).enumerate() {
                        let wi = weight(i);
                        let eta = w[0] + dot(row, &w[1..]);
                        // log(1 + exp(m)) with m = -eta for a true
                        // label, eta for a false one, and P(true), from
                        // one exponential: e = exp(-|eta|) never overflows.
                        let m = if yi { -eta } else { eta };
                        let e = (-eta.abs()).exp();
                        l += wi * (m.max(0.0) + e.ln_1p());
                        let p1 = if eta >= 0.0 {
                            1.0 / (1.0 + e)
                        } else {
                            e / (1.0 + e)
                        };
                        let r = wi * (p1 - if yi { 1.0 } else { 0.0 });
                        g[0] += r;
                        for (gj, a) in g[1..].iter_mut().zip(row) {
                            *gj += r * a;
                        }
                    }
                    (l, g)
                })
                // Blocks are summed in their order, not in rayon's
                // reduction tree (whose shape varies from run to run), so
                // a fit gives the same bits whatever the threads did.
                .collect::<Vec<_>>()
                .into_iter()
                .fold((0.0, vec![0.0; k + 1]), |(la, mut ga), (lb, gb)| {
                    for (a, b) in ga.iter_mut().zip(gb) {
                        *a += b;
                    }
                    (la + lb, ga)
                });
        let nf = p.weights.map_or(p.y.len() as f64, |w| w.iter().sum());
        let penalty: f64 = w[1..].iter().map(|b| b * b).sum::<f64>() * p.alpha / 2.0;
        for (j, g) in grad.iter_mut().enumerate() {
            *g /= nf;
            if j > 0 {
                *g += p.alpha * w[j] / nf;
            }
        }
        ((loss + penalty) / nf, grad)
    }

    /// The last point evaluated, its loss and its gradient.
    type Evaluated = Option<(Vec<f64>, f64, Vec<f64>)>;

    /// argmin asks for the cost and the gradient separately at the same
    /// point; one fused pass answers both.
    struct Cached<'a> {
        problem: &'a Problem<'a>,
        last: Mutex<Evaluated>,
        /// Passes over the rows so far.
        passes: AtomicUsize,
    }

    impl Cached<'_> {
        fn eval(&self, w: &[f64]) -> (f64, Vec<f64>) {
            let mut last = self.last.lock().expect("not poisoned");
            if let Some((pw, l, g)) = last.as_ref()
                && pw.as_slice() == w
            {
                return (*l, g.clone());
            }
            let (l, g) = loss_and_gradient(self.problem, w);
            self.passes.fetch_add(1, Ordering::Relaxed);
            *last = Some((w.to_vec(), l, g.clone()));
            (l, g)
        }

        fn passes(&self) -> usize {
            self.passes.load(Ordering::Relaxed)
        }
    }

    impl CostFunction for &Cached<'_> {
        type Param = Vec<f64>;
        type Output = f64;
        fn cost(&self, w: &Vec<f64>) -> Result<f64, Error> {
            Ok(self.eval(w).0)
        }
    }

    impl Gradient for &Cached<'_> {
        type Param = Vec<f64>;
        type Gradient = Vec<f64>;
        fn gradient(&self, w: &Vec<f64>) -> Result<Vec<f64>, Error> {
            Ok(self.eval(w).1)
        }
    }

    /// Rows of the sample [`Preconditioner::new`] estimates the
    /// columns' correlations on.
    const PRECONDITIONER_ROWS: usize = 4096;

    /// A change of coordinates that makes the objective's curvature
    /// nearly the same in every direction, so the quasi-Newton solver
    /// needs far fewer passes over the rows. The step columns of a
    /// numeric feature, its linear term and one-hot categories are
    /// strongly correlated; on those columns the Hessian's eigenvalues
    /// span orders of magnitude, and L-BFGS took up to 300 iterations to
    /// its tolerance (the churn model at 1M subscribers; 11 with this).
    /// With `L L'` an estimate of the Hessian `H` at the start,
    /// the solver works on `theta = L' w`, where the Hessian is
    /// `L^-1 H L^-T`, close to the identity: the same objective, the same
    /// optimum, its gradient `L^-1 g`.
    ///
    /// The estimate: the Hessian's exact diagonal (one pass over every
    /// row), and the columns' correlations under the Hessian's row weights
    /// from an evenly spaced sample of rows (a column constant in the
    /// sample taken as uncorrelated), plus the penalty.
    pub(super) struct Preconditioner {
        /// Lower Cholesky factor, row-major, `m x m` (`m` = k + 1).
        l: Vec<f64>,
        m: usize,
    }

    impl Preconditioner {
        /// At the point `w`; `None` when the estimate cannot be factored
        /// (the solver then works on `w` itself).
        pub(super) fn new(p: &Problem<'_>, w: &[f64]) -> Option<Self> {
            let (k, n) = (p.k, p.y.len());
            let m = k + 1;
            if n == 0 {
                return None;
            }
            // Each row's weight in the Hessian: its count times p (1 - p).
            let curvature = |row: &[f64], i: usize| {
                let eta = w[0] + dot(row, &w[1..]);
                let q = 1.0 / (1.0 + (-eta).exp());
                p.weights.map_or(1.0, |w| w[i]) * q * (1.0 - q)
            };
            let nf = p.weights.map_or(n as f64, |w| w.iter().sum());
            // The exact diagonal, in row blocks summed in order.
            let mut diagonal =
                p.z.par_chunks(BLOCK * k)
                    .enumerate()
                    .map(|(block, rows)| {
                        let mut d = vec![0.0; m];
                        for (i, row) in rows.chunks_exact(k).enumerate() {
                            let c = curvature(row, block * BLOCK + i);
                            d[0] += c;
                            for (dj, a) in d[1..].iter_mut().zip(row) {
                                *dj += c * a * a;
                            }
                        }
                        d
                    })
                    .collect::<Vec<_>>()
                    .into_iter()
                    .fold(vec![0.0; m], |mut a, b| {
                        for (x, y) in a.iter_mut().zip(b) {
                            *x += y;
                        }
                        a
                    });
            for d in &mut diagonal {
                *d /= nf;
            }
            // The correlations on evenly spaced rows.
            let step = (n / PRECONDITIONER_ROWS).max(1);
            let mut g = vec![0.0; m * m];
            let mut x = vec![1.0; m];
            for i in (0..n).step_by(step) {
                let row = &p.z[i * k..(i + 1) * k];
                let c = curvature(row, i);
                x[1..].copy_from_slice(row);
                for a in 0..m {
                    let ca = c * x[a];
                    for b in 0..=a {
                        g[a * m + b] += ca * x[b];
                    }
                }
            }
            let penalty = p.alpha / nf;
            let mean = diagonal.iter().sum::<f64>() / m as f64;
            let mut h = vec![0.0; m * m];
            for a in 0..m {
                for b in 0..=a {
                    let (ga, gb) = (g[a * m + a], g[b * m + b]);
                    let r = if a == b {
                        1.0
                    } else if ga > 0.0 && gb > 0.0 {
                        g[a * m + b] / (ga * gb).sqrt()
                    } else {
                        0.0
                    };
                    h[a * m + b] = r * (diagonal[a] * diagonal[b]).sqrt();
                    h[b * m + a] = h[a * m + b];
                }
                if a > 0 {
                    h[a * m + a] += penalty;
                }
                // Keeps a column constant everywhere (no curvature but
                // the penalty's) factorable.
                h[a * m + a] += 1e-10 * mean;
            }
            let l = crate::uncertainty::cholesky(&h, m)?;
            Some(Preconditioner { l, m })
        }

        /// `theta = L' w`.
        pub(super) fn to_theta(&self, w: &[f64]) -> Vec<f64> {
            let m = self.m;
            (0..m)
                .map(|i| (i..m).map(|j| self.l[j * m + i] * w[j]).sum())
                .collect()
        }

        /// `w = L^-T theta` (back substitution).
        pub(super) fn to_params(&self, theta: &[f64]) -> Vec<f64> {
            let m = self.m;
            let mut w = theta.to_vec();
            for i in (0..m).rev() {
                let s: f64 = (i + 1..m).map(|j| self.l[j * m + i] * w[j]).sum();
                w[i] = (w[i] - s) / self.l[i * m + i];
            }
            w
        }

        /// The gradient in `theta`, `L^-1 g` (forward substitution).
        pub(super) fn gradient(&self, g: &[f64]) -> Vec<f64> {
            let m = self.m;
            let mut u = g.to_vec();
            for i in 0..m {
                let s: f64 = (0..i).map(|j| self.l[i * m + j] * u[j]).sum();
                u[i] = (u[i] - s) / self.l[i * m + i];
            }
            u
        }
    }

    /// The objective in the preconditioned coordinates `theta`.
    struct Preconditioned<'a> {
        cached: &'a Cached<'a>,
        by: &'a Preconditioner,
    }

    impl CostFunction for Preconditioned<'_> {
        type Param = Vec<f64>;
        type Output = f64;
        fn cost(&self, theta: &Vec<f64>) -> Result<f64, Error> {
            Ok(self.cached.eval(&self.by.to_params(theta)).0)
        }
    }

    impl Gradient for Preconditioned<'_> {
        type Param = Vec<f64>;
        type Gradient = Vec<f64>;
        fn gradient(&self, theta: &Vec<f64>) -> Result<Vec<f64>, Error> {
            Ok(self
                .by
                .gradient(&self.cached.eval(&self.by.to_params(theta)).1))
        }
    }

    pub fn minimise(
        problem: &Problem<'_>,
        start: Option<Vec<f64>>,
        precision: Precision,
    ) -> Result<Vec<f64>, FitError> {
        minimise_with(problem, start, precision, true).map(|(w, _)| w)
    }

    /// Rounds of preconditioned solving before the plain solver takes
    /// over (each starts from the last round's point, with the curvature
    /// there).
    const ROUNDS: usize = 3;

    /// The optimum and the passes over the rows it took; preconditioned
    /// (see [`Preconditioner`]) when `precondition` is set. A
    /// preconditioned round stops when the gradient in its coordinates is
    /// within the tolerance or the cost stalls; its point is accepted when
    /// the gradient of the objective itself is within the tolerance too,
    /// else another round starts there (after [`ROUNDS`], the plain solver
    /// from there, as without preconditioning).
    pub(super) fn minimise_with(
        problem: &Problem<'_>,
        start: Option<Vec<f64>>,
        precision: Precision,
        precondition: bool,
    ) -> Result<(Vec<f64>, usize), FitError> {
        let (grad_tolerance, cost_tolerance) = precision.tolerances();
        let k = problem.k;
        let mut w = start.unwrap_or_else(|| {
            // Start at the base rate's log-odds.
            let w = |i: usize| problem.weights.map_or(1.0, |w| w[i]);
            let pos: f64 = (0..problem.y.len()).filter(|i| problem.y[*i]).map(w).sum();
            let all: f64 = (0..problem.y.len()).map(w).sum();
            let rate = (pos / all).clamp(1e-6, 1.0 - 1e-6);
            let mut w = vec![0.0; k + 1];
            w[0] = (rate / (1.0 - rate)).ln();
            w
        });
        let cached = Cached {
            problem,
            last: Mutex::new(None),
            passes: AtomicUsize::new(0),
        };
        let solver = || {
            LBFGS::new(MoreThuenteLineSearch::new(), 10)
                .with_tolerance_grad(grad_tolerance)
                .and_then(|s| s.with_tolerance_cost(cost_tolerance))
                .map_err(|e| FitError::Solver(e.to_string()))
        };
        let best = |state: &IterState<Vec<f64>, Vec<f64>, (), (), (), f64>| {
            state
                .get_best_param()
                .cloned()
                .ok_or_else(|| FitError::Solver("no parameters".into()))
        };
        let norm = |g: &[f64]| g.iter().map(|v| v * v).sum::<f64>().sqrt();
        let rounds = if precondition { ROUNDS } else { 0 };
        for _ in 0..rounds {
            let Some(by) = Preconditioner::new(problem, &w) else {
                break;
            };
            let theta = by.to_theta(&w);
            let result = Executor::new(
                Preconditioned {
                    cached: &cached,
                    by: &by,
                },
                solver()?,
            )
            .configure(|state| state.param(theta).max_iters(1_000))
            .run()
            .map_err(|e| FitError::Solver(e.to_string()))?;
            w = by.to_params(&best(result.state())?);
            if norm(&cached.eval(&w).1) <= grad_tolerance {
                return Ok((w, cached.passes()));
            }
        }
        let result = Executor::new(&cached, solver()?)
            .configure(|state| state.param(w).max_iters(1_000))
            .run()
            .map_err(|e| FitError::Solver(e.to_string()))?;
        Ok((best(result.state())?, cached.passes()))
    }
}

/// Cross-validated score of one candidate L2 strength.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlphaScore {
    /// The candidate.
    pub alpha: f64,
    /// Mean held-out log loss over the folds.
    pub mean_log_loss: f64,
    /// Standard error of that mean.
    pub standard_error: f64,
}

/// Mean held-out log loss of each candidate `alpha` over `folds` folds
/// (rows assigned to folds by a seeded shuffle), and the best alpha: the
/// largest whose loss is within one standard error of the lowest (the
/// "one standard error" rule, which prefers the simpler model).
pub fn choose_alpha(
    x: ArrayView2<f64>,
    y: &[bool],
    weights: Option<&[f64]>,
    names: &[String],
    alphas: &[f64],
    folds: usize,
    seed: u64,
) -> Result<(f64, Vec<AlphaScore>), FitError> {
    check(x, Some(y), names.len())?;
    check_weights(weights, y.len())?;
    let n = x.nrows();
    let folds = folds.clamp(2, n.max(2));
    // A seeded permutation (splitmix64 keys), so folds are reproducible.
    let mut order: Vec<(u64, usize)> = (0..n)
        .map(|i| {
            let mut z = seed.wrapping_add((i as u64 + 1).wrapping_mul(0x9E3779B97F4A7C15));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
            (z ^ (z >> 31), i)
        })
        .collect();
    order.sort_unstable();
    let fold_of: Vec<usize> = {
        let mut f = vec![0; n];
        for (k, (_, i)) in order.iter().enumerate() {
            f[*i] = k % folds;
        }
        f
    };
    let mut table = Vec::new();
    // Per fold, alphas from the largest down, each fit starting from the
    // previous one's coefficients (a warm-started regularisation path).
    let mut order: Vec<usize> = (0..alphas.len()).collect();
    order.sort_by(|a, b| alphas[*b].total_cmp(&alphas[*a]));
    // Folds in parallel (each its own warm-started path, so the same fits
    // as one after another); the losses are kept in fold order.
    let per_fold: Vec<Vec<f64>> = (0..folds)
        .into_par_iter()
        .map(|k| -> Result<Vec<f64>, FitError> {
            let train: Vec<usize> = (0..n).filter(|i| fold_of[*i] != k).collect();
            let test: Vec<usize> = (0..n).filter(|i| fold_of[*i] == k).collect();
            let xt = x.select(Axis(0), &train);
            let yt: Vec<bool> = train.iter().map(|i| y[*i]).collect();
            let wt: Option<Vec<f64>> = weights.map(|w| train.iter().map(|i| w[*i]).collect());
            let xv = x.select(Axis(0), &test);
            let yv: Vec<bool> = test.iter().map(|i| y[*i]).collect();
            let wv: Option<Vec<f64>> = weights.map(|w| test.iter().map(|i| w[*i]).collect());
            // The fold's rows standardised once for its whole path (each
            // fit of the path would otherwise copy and standardise them
            // again: the same rows, so the same numbers).
            let (standardizer, z) = prepare(xt, &yt, wt.as_deref(), names)?;
            let z = if z.is_standard_layout() {
                z
            } else {
                z.as_standard_layout().into_owned()
            };
            let mut start = None;
            let mut losses = vec![0.0; alphas.len()];
            for &a in &order {
                let model = LogisticModel::solve(
                    standardizer.clone(),
                    &z,
                    &yt,
                    wt.as_deref(),
                    names,
                    alphas[a],
                    start,
                    Precision::Screening,
                )?;
                let p = model.predict(xv.view())?;
                losses[a] = crate::metrics::log_loss_weighted(&p, &yv, wv.as_deref())
                    .map_err(|e| FitError::Shape(e.to_string()))?;
                let mut w = vec![model.intercept];
                w.extend(&model.coefficients);
                start = Some(w);
            }
            Ok(losses)
        })
        .collect::<Result<_, _>>()?;
    let losses: Vec<Vec<f64>> = (0..alphas.len())
        .map(|a| per_fold.iter().map(|f| f[a]).collect())
        .collect();
    for (&alpha, losses) in alphas.iter().zip(&losses) {
        let mean = losses.iter().sum::<f64>() / folds as f64;
        let var =
            losses.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / (folds as f64 - 1.0).max(1.0);
        table.push(AlphaScore {
            alpha,
            mean_log_loss: mean,
            standard_error: (var / folds as f64).sqrt(),
        });
    }
    let best = table
        .iter()
        .min_by(|a, b| a.mean_log_loss.total_cmp(&b.mean_log_loss))
        .cloned()
        .ok_or_else(|| FitError::Shape("no candidate alpha".into()))?;
    let chosen = table
        .iter()
        .filter(|t| t.mean_log_loss <= best.mean_log_loss + best.standard_error)
        .map(|t| t.alpha)
        .fold(best.alpha, f64::max);
    Ok((chosen, table))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seeded stream of uniform numbers in (0, 1).
    fn uniform(seed: u64) -> impl FnMut() -> f64 {
        let mut s = seed;
        move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }
    }

    /// Rows from a known model: intercept -1, coefficients 0.8 per unit of
    /// x0 (mean 5, sd 2), -1.5 of a 0/1 flag, 0 of pure noise.
    fn sample(n: usize, seed: u64) -> (Array2<f64>, Vec<bool>) {
        let mut u = uniform(seed);
        let mut x = Array2::zeros((n, 3));
        let mut y = Vec::with_capacity(n);
        for i in 0..n {
            let g = (-2.0 * u().ln()).sqrt() * (2.0 * std::f64::consts::PI * u()).cos();
            x[[i, 0]] = 5.0 + 2.0 * g;
            x[[i, 1]] = if u() < 0.3 { 1.0 } else { 0.0 };
            x[[i, 2]] = u();
            let eta = -1.0 + 0.8 * (x[[i, 0]] - 5.0) - 1.5 * x[[i, 1]];
            y.push(u() < 1.0 / (1.0 + (-eta).exp()));
        }
        (x, y)
    }

    fn names() -> Vec<String> {
        vec!["x0".into(), "flag".into(), "noise".into()]
    }

    /// Six correlated numeric columns, each with five quantile steps (as
    /// the pipeline's `step_bins` adds them), and a one-hot category of
    /// five levels: strongly correlated columns, the case the
    /// preconditioner is for. The label depends on the first two columns,
    /// a step and the category.
    fn stepped(n: usize, seed: u64) -> (Array2<f64>, Vec<bool>, Vec<String>) {
        let mut u = uniform(seed);
        let (numeric, steps, levels) = (6, 5, 5);
        let k = numeric * (1 + steps) + levels - 1;
        let mut x = Array2::<f64>::zeros((n, k));
        let mut y = Vec::with_capacity(n);
        for i in 0..n {
            let common = u();
            for j in 0..numeric {
                let v = 10.0 * (0.8 * common + 0.2 * u());
                x[[i, j]] = v;
                for b in 0..steps {
                    let cut = 10.0 * (b as f64 + 1.0) / (steps as f64 + 1.0);
                    x[[i, numeric + j * steps + b]] = if v >= cut { 1.0 } else { 0.0 };
                }
            }
            let level = (u() * levels as f64) as usize;
            if level > 0 {
                x[[i, k - levels + level]] = 1.0;
            }
            let eta = -1.5 + 0.3 * (x[[i, 0]] - 5.0) - 0.2 * x[[i, 1]]
                + 0.8 * x[[i, numeric + 2]]
                + 0.4 * level as f64;
            y.push(u() < 1.0 / (1.0 + (-eta).exp()));
        }
        let names = (0..k).map(|j| format!("c{j}")).collect();
        (x, y, names)
    }

    /// The optimum by Newton's method with the exact Hessian, to the last
    /// digits: the reference the solvers are held to.
    fn newton(p: &fused::Problem<'_>) -> Vec<f64> {
        let (k, n) = (p.k, p.y.len());
        let m = k + 1;
        let nf = p.weights.map_or(n as f64, |w| w.iter().sum());
        let z = ArrayView2::from_shape((n, k), p.z).unwrap();
        let mut w = vec![0.0; m];
        for _ in 0..50 {
            let (_, g) = fused::loss_and_gradient(p, &w);
            let c: Vec<f64> = (0..n)
                .map(|i| {
                    let eta = w[0] + fused::dot(&p.z[i * k..(i + 1) * k], &w[1..]);
                    let q = 1.0 / (1.0 + (-eta).exp());
                    p.weights.map_or(1.0, |w| w[i]) * q * (1.0 - q) / nf
                })
                .collect();
            let mut h = crate::uncertainty::weighted_gram(z, &c);
            for j in 1..m {
                h[j * m + j] += p.alpha / nf;
            }
            let l = crate::uncertainty::cholesky(&h, m).unwrap();
            let step = crate::uncertainty::cholesky_solve(&l, m, &g);
            for (a, b) in w.iter_mut().zip(&step) {
                *a -= b;
            }
            if step.iter().all(|s| s.abs() < 1e-13) {
                break;
            }
        }
        w
    }

    #[test]
    fn preconditioning_reaches_the_optimum_in_a_fraction_of_the_passes() {
        let (x, y, names) = stepped(30_000, 3);
        let weights: Vec<f64> = (0..y.len()).map(|i| 1.0 + (i % 3) as f64).collect();
        for (alpha, w) in [(0.01, None), (100.0, None), (1.0, Some(weights.as_slice()))] {
            let (_, z) = prepare(x.clone(), &y, w, &names).unwrap();
            let problem = fused::Problem {
                z: z.as_slice().unwrap(),
                k: z.ncols(),
                y: &y,
                weights: w,
                alpha,
            };
            let optimum = newton(&problem);
            let loss = |w: &[f64]| fused::loss_and_gradient(&problem, w).0;
            let (a, plain) = fused::minimise_with(&problem, None, Precision::Final, false).unwrap();
            let (b, pre) = fused::minimise_with(&problem, None, Precision::Final, true).unwrap();
            for (u, v) in b.iter().zip(&optimum) {
                assert!((u - v).abs() < 1e-6, "alpha {alpha}: {b:?} vs {optimum:?}");
            }
            // At least as close to the optimum as the plain solver gets.
            assert!(loss(&b) <= loss(&a) + 1e-15, "alpha {alpha}");
            assert!(
                pre * 3 <= plain,
                "alpha {alpha}: {pre} passes preconditioned, {plain} without"
            );
        }
    }

    #[test]
    fn the_preconditioners_coordinates_carry_the_objective_and_its_gradient() {
        let (x, y, names) = stepped(5_000, 8);
        let (_, z) = prepare(x, &y, None, &names).unwrap();
        let problem = fused::Problem {
            z: z.as_slice().unwrap(),
            k: z.ncols(),
            y: &y,
            weights: None,
            alpha: 1.0,
        };
        let w: Vec<f64> = (0..=z.ncols()).map(|j| 0.1 * j as f64 - 0.3).collect();
        let by = fused::Preconditioner::new(&problem, &w).unwrap();
        let theta = by.to_theta(&w);
        for (u, v) in by.to_params(&theta).iter().zip(&w) {
            assert!((u - v).abs() < 1e-10, "{u} against {v}");
        }
        // The gradient in theta against central differences of the loss.
        let g = by.gradient(&fused::loss_and_gradient(&problem, &w).1);
        let h = 1e-5;
        for j in 0..theta.len() {
            let at = |d: f64| {
                let mut t = theta.clone();
                t[j] += d;
                fused::loss_and_gradient(&problem, &by.to_params(&t)).0
            };
            let numeric = (at(h) - at(-h)) / (2.0 * h);
            assert!(
                (numeric - g[j]).abs() < 1e-6 * (1.0 + g[j].abs()),
                "theta {j}: {numeric} against {}",
                g[j]
            );
        }
    }

    #[test]
    fn the_weighted_standardisation_over_many_blocks_is_the_columns_moments() {
        let (x, _) = sample(10_000, 4);
        let w: Vec<f64> = (0..x.nrows()).map(|i| 0.5 + (i % 4) as f64).collect();
        let s = Standardizer::fit_weighted(x.view(), Some(&w));
        let total: f64 = w.iter().sum();
        for j in 0..x.ncols() {
            let c = x.column(j);
            let mean: f64 = c.iter().zip(&w).map(|(v, w)| v * w).sum::<f64>() / total;
            let var: f64 = c
                .iter()
                .zip(&w)
                .map(|(v, w)| w * (v - mean).powi(2))
                .sum::<f64>()
                / total;
            assert!(
                (s.mean[j] - mean).abs() < 1e-12 * mean.abs().max(1.0),
                "column {j}"
            );
            assert!(
                (s.scale[j] - var.sqrt()).abs() < 1e-12 * var.sqrt().max(1.0),
                "column {j}"
            );
        }
    }

    #[test]
    fn the_fused_solver_finds_linfas_optimum() {
        let (x, y) = sample(20_000, 5);
        for alpha in [0.01, 1.0, 100.0] {
            let a = LogisticModel::fit(x.view(), &y, &names(), alpha).unwrap();
            let b = LogisticModel::fit_linfa(x.view(), &y, &names(), alpha).unwrap();
            assert!((a.intercept - b.intercept).abs() < 1e-3, "{a:?} vs {b:?}");
            for (u, v) in a.coefficients.iter().zip(&b.coefficients) {
                assert!((u - v).abs() < 1e-3, "alpha {alpha}: {a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn a_warm_start_from_a_subsample_reaches_the_same_optimum() {
        let (x, y) = sample(20_000, 9);
        let rows: Vec<usize> = (0..20_000).step_by(7).collect();
        let xs = x.select(Axis(0), &rows);
        let ys: Vec<bool> = rows.iter().map(|i| y[*i]).collect();
        for alpha in [0.01, 100.0] {
            let from = LogisticModel::fit_to(
                xs.view(),
                &ys,
                None,
                &names(),
                alpha,
                None,
                Precision::Screening,
            )
            .unwrap();
            let cold = LogisticModel::fit(x.view(), &y, &names(), alpha).unwrap();
            let warm = LogisticModel::fit_owned(
                x.clone(),
                &y,
                None,
                &names(),
                alpha,
                Start::From(&from),
                Precision::Final,
                false,
            )
            .unwrap();
            assert!(
                (cold.intercept - warm.intercept).abs() < 1e-5,
                "{cold:?} vs {warm:?}"
            );
            for (u, v) in cold.coefficients.iter().zip(&warm.coefficients) {
                assert!((u - v).abs() < 1e-5, "alpha {alpha}: {cold:?} vs {warm:?}");
            }
        }
    }

    /// Rows that share their features and label, collapsed into one row
    /// weighted by their count, give the fit (and the covariance, and the
    /// cross-validated losses) of every row: the hazard's subscriber-months
    /// rely on it.
    #[test]
    fn weighted_rows_fit_as_the_rows_they_stand_for() {
        let (x, y) = sample(3_000, 11);
        // Row i repeated 1 + i % 4 times, and the same rows weighted.
        let counts: Vec<usize> = (0..x.nrows()).map(|i| 1 + i % 4).collect();
        let repeated: Vec<usize> = counts
            .iter()
            .enumerate()
            .flat_map(|(i, c)| std::iter::repeat_n(i, *c))
            .collect();
        let xr = x.select(Axis(0), &repeated);
        let yr: Vec<bool> = repeated.iter().map(|i| y[*i]).collect();
        let w: Vec<f64> = counts.iter().map(|c| *c as f64).collect();
        for alpha in [0.01, 30.0] {
            let full = LogisticModel::fit(xr.view(), &yr, &names(), alpha)
                .and_then(|m| m.with_covariance(xr.view(), None))
                .unwrap();
            let weighted = LogisticModel::fit_to(
                x.view(),
                &y,
                Some(&w),
                &names(),
                alpha,
                None,
                Precision::Final,
            )
            .and_then(|m| m.with_covariance(x.view(), Some(&w)))
            .unwrap();
            assert!((full.intercept - weighted.intercept).abs() < 1e-6);
            for (u, v) in full.coefficients.iter().zip(&weighted.coefficients) {
                assert!(
                    (u - v).abs() < 1e-6,
                    "alpha {alpha}: {full:?} vs {weighted:?}"
                );
            }
            for (u, v) in full.covariance.iter().zip(&weighted.covariance) {
                assert!((u - v).abs() < 1e-9 + 1e-6 * u.abs(), "{u} vs {v}");
            }
            // Unweighted, the collapsed rows are a different sample.
            let unweighted = LogisticModel::fit(x.view(), &y, &names(), alpha).unwrap();
            assert!(
                full.coefficients
                    .iter()
                    .zip(&unweighted.coefficients)
                    .any(|(u, v)| (u - v).abs() > 1e-3)
            );
        }
        assert!(matches!(
            LogisticModel::fit_to(
                x.view(),
                &y,
                Some(&w[1..]),
                &names(),
                1.0,
                None,
                Precision::Final
            ),
            Err(FitError::Shape(_))
        ));
        let mut bad = w.clone();
        bad[3] = 0.0;
        assert!(matches!(
            LogisticModel::fit_to(
                x.view(),
                &y,
                Some(&bad),
                &names(),
                1.0,
                None,
                Precision::Final
            ),
            Err(FitError::Shape(_))
        ));
    }

    /// The running sums' dot product is the plain one to rounding, at every
    /// length around its block of eight.
    #[test]
    fn the_blocked_dot_product_is_the_dot_product() {
        for n in [0, 1, 7, 8, 9, 16, 23, 150] {
            let a: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
            let b: Vec<f64> = (0..n).map(|i| (i as f64 * 1.3).cos() - 0.2).collect();
            let plain: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((fused::dot(&a, &b) - plain).abs() < 1e-12, "length {n}");
        }
    }

    #[test]
    fn recovers_known_coefficients_on_the_raw_scale() {
        let (x, y) = sample(20_000, 3);
        let m = LogisticModel::fit(x.view(), &y, &names(), 1e-3).unwrap();
        let (b0, b) = m.raw_coefficients();
        // Intercept on the raw scale: -1 - 0.8 * 5 = -5.
        assert!((b0 + 5.0).abs() < 0.25, "intercept {b0}");
        assert!((b[0] - 0.8).abs() < 0.05, "x0 {}", b[0]);
        assert!((b[1] + 1.5).abs() < 0.1, "flag {}", b[1]);
        assert!(b[2].abs() < 0.15, "noise {}", b[2]);
        // Predictions from raw values match the raw-scale formula.
        let p = m
            .predict(x.select(Axis(0), &[0, 1, 2, 3, 4]).view())
            .unwrap();
        for (i, pi) in p.iter().enumerate() {
            let eta = b0 + (0..3).map(|j| b[j] * x[[i, j]]).sum::<f64>();
            assert!((pi - 1.0 / (1.0 + (-eta).exp())).abs() < 1e-9);
        }
    }

    #[test]
    fn cross_validation_rejects_a_crushing_penalty() {
        let (x, y) = sample(4_000, 5);
        let (alpha, table) =
            choose_alpha(x.view(), &y, None, &names(), &[1e-2, 1.0, 1e5], 4, 7).unwrap();
        assert_eq!(table.len(), 3);
        assert!(
            alpha < 1e5,
            "a penalty that flattens the model must lose: {table:?}"
        );
        let crushed = table.iter().find(|t| t.alpha == 1e5).unwrap().mean_log_loss;
        let light = table
            .iter()
            .find(|t| t.alpha == 1e-2)
            .unwrap()
            .mean_log_loss;
        assert!(crushed > light + 0.01, "{table:?}");
    }

    #[test]
    fn the_true_label_is_modelled_whichever_class_is_larger() {
        // Positives are the minority in `sample`; flipping the labels makes
        // them the majority and must flip every coefficient.
        let (x, y) = sample(5_000, 11);
        let flipped: Vec<bool> = y.iter().map(|v| !v).collect();
        let a = LogisticModel::fit(x.view(), &y, &names(), 1e-3).unwrap();
        let b = LogisticModel::fit(x.view(), &flipped, &names(), 1e-3).unwrap();
        assert!(
            (a.intercept + b.intercept).abs() < 1e-3,
            "{} vs {}",
            a.intercept,
            b.intercept
        );
        for (p, q) in a.coefficients.iter().zip(&b.coefficients) {
            assert!((p + q).abs() < 1e-3, "{p} vs {q}");
        }
        let rate = y.iter().filter(|v| **v).count() as f64 / y.len() as f64;
        let mean_p = a.predict(x.view()).unwrap().iter().sum::<f64>() / y.len() as f64;
        assert!(
            (mean_p - rate).abs() < 0.01,
            "mean prediction {mean_p} against rate {rate}"
        );
    }

    #[test]
    fn bad_input_is_an_error() {
        let (mut x, y) = sample(100, 1);
        assert!(matches!(
            LogisticModel::fit(x.view(), &y[..50], &names(), 1.0),
            Err(FitError::Shape(_))
        ));
        assert_eq!(
            LogisticModel::fit(x.view(), &[true; 100], &names(), 1.0),
            Err(FitError::OneClass)
        );
        x[[3, 1]] = f64::NAN;
        assert_eq!(
            LogisticModel::fit(x.view(), &y, &names(), 1.0),
            Err(FitError::NonFinite(3, 1))
        );
    }

    #[test]
    fn a_model_round_trips_through_json() {
        let (x, y) = sample(2_000, 9);
        let m = LogisticModel::fit(x.view(), &y, &names(), 1.0).unwrap();
        let back: LogisticModel =
            serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(
            m.predict(x.view()).unwrap(),
            back.predict(x.view()).unwrap()
        );
    }
}
