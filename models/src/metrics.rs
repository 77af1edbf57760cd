//! Evaluation of probability predictions against binary outcomes: ranking
//! (ROC AUC, PR AUC as average precision), probability quality (log loss,
//! Brier score, a calibration table with expected calibration error) and
//! targeting (gains and lift by decile).
//!
//! Every function takes `(predicted probability, outcome)` slices of equal
//! length and ignores nothing silently: a non-finite probability or a length
//! mismatch is an error.

use serde::{Deserialize, Serialize};

/// Why a metric cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricError {
    /// Predictions and outcomes differ in length.
    Length {
        /// Predictions.
        predictions: usize,
        /// Outcomes.
        outcomes: usize,
    },
    /// No rows.
    Empty,
    /// A prediction outside [0, 1] or not finite, at this row.
    BadProbability(usize),
}

impl std::fmt::Display for MetricError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetricError::Length {
                predictions,
                outcomes,
            } => {
                write!(f, "{predictions} predictions against {outcomes} outcomes")
            }
            MetricError::Empty => write!(f, "no rows to evaluate"),
            MetricError::BadProbability(i) => {
                write!(f, "prediction at row {i} is not a probability")
            }
        }
    }
}

impl std::error::Error for MetricError {}

fn check(p: &[f64], y: &[bool]) -> Result<(), MetricError> {
    if p.len() != y.len() {
        return Err(MetricError::Length {
            predictions: p.len(),
            outcomes: y.len(),
        });
    }
    if p.is_empty() {
        return Err(MetricError::Empty);
    }
    match p
        .iter()
        .position(|x| !(x.is_finite() && (0.0..=1.0).contains(x)))
    {
        Some(i) => Err(MetricError::BadProbability(i)),
        None => Ok(()),
    }
}

/// Row indices ordered by descending prediction (ties in input order).
fn by_score_desc(p: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
    idx
}

/// Area under the ROC curve: the probability that a random positive scores
/// above a random negative, ties counting one half. `None` when only one
/// class is present.
pub fn roc_auc(p: &[f64], y: &[bool]) -> Result<Option<f64>, MetricError> {
    check(p, y)?;
    let pos = y.iter().filter(|v| **v).count() as f64;
    let neg = y.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return Ok(None);
    }
    // Mann-Whitney with mid-ranks for ties.
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && p[idx[j + 1]] == p[idx[i]] {
            j += 1;
        }
        let mid = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            if y[k] {
                rank_sum_pos += mid;
            }
        }
        i = j + 1;
    }
    Ok(Some((rank_sum_pos - pos * (pos + 1.0) / 2.0) / (pos * neg)))
}

/// Area under the precision-recall curve, as average precision: the
/// precision at each distinct score threshold weighted by the recall gained
/// there (scikit-learn's definition; a block of equal scores is one
/// threshold). `None` without positives.
pub fn pr_auc(p: &[f64], y: &[bool]) -> Result<Option<f64>, MetricError> {
    check(p, y)?;
    let pos = y.iter().filter(|v| **v).count();
    if pos == 0 {
        return Ok(None);
    }
    let idx = by_score_desc(p);
    let (mut tp, mut seen, mut ap) = (0usize, 0usize, 0.0);
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && p[idx[j + 1]] == p[idx[i]] {
            j += 1;
        }
        let block_pos = idx[i..=j].iter().filter(|&&k| y[k]).count();
        seen += j - i + 1;
        if block_pos > 0 {
            tp += block_pos;
            // Recall rises by block_pos / pos at precision tp / seen.
            ap += block_pos as f64 / pos as f64 * (tp as f64 / seen as f64);
        }
        i = j + 1;
    }
    Ok(Some(ap))
}

/// Mean negative log-likelihood, probabilities clipped to [1e-15, 1 - 1e-15].
pub fn log_loss(p: &[f64], y: &[bool]) -> Result<f64, MetricError> {
    log_loss_weighted(p, y, None)
}

/// [`log_loss`] with each row counted `weights[i]` times (a weighted
/// mean; without weights the plain one).
pub fn log_loss_weighted(
    p: &[f64],
    y: &[bool],
    weights: Option<&[f64]>,
) -> Result<f64, MetricError> {
    check(p, y)?;
    if let Some(w) = weights
        && w.len() != p.len()
    {
        return Err(MetricError::Length {
            predictions: p.len(),
            outcomes: w.len(),
        });
    }
    let w = |i: usize| weights.map_or(1.0, |w| w[i]);
    let eps = 1e-15;
    let s: f64 = p
        .iter()
        .zip(y)
        .enumerate()
        .map(|(i, (&q, &t))| {
            let q = q.clamp(eps, 1.0 - eps);
            w(i) * if t { -q.ln() } else { -(1.0 - q).ln() }
        })
        .sum();
    Ok(s / (0..p.len()).map(w).sum::<f64>())
}

/// Mean squared difference between prediction and outcome.
pub fn brier(p: &[f64], y: &[bool]) -> Result<f64, MetricError> {
    check(p, y)?;
    let s: f64 = p
        .iter()
        .zip(y)
        .map(|(&q, &t)| (q - if t { 1.0 } else { 0.0 }).powi(2))
        .sum();
    Ok(s / p.len() as f64)
}

/// One bin of a calibration table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    /// Lowest prediction in the bin.
    pub lower: f64,
    /// Highest prediction in the bin.
    pub upper: f64,
    /// Rows in the bin.
    pub rows: usize,
    /// Mean prediction in the bin (none when the bin is empty).
    pub mean_predicted: Option<f64>,
    /// Observed rate in the bin (none when the bin is empty).
    pub observed: Option<f64>,
}

/// How well predicted probabilities match observed rates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Rows ranked by prediction and cut into bins of equal count
    /// (predicted against observed by decile for ten bins).
    pub bins: Vec<CalibrationBin>,
    /// Expected calibration error over those bins: the row-weighted mean
    /// absolute gap between mean prediction and observed rate.
    pub ece: f64,
    /// Calibration intercept (calibration in the large): `a` in
    /// `logit P(y) = a + logit(p)`; 0 when the predictions are right on
    /// average, positive when they are too low.
    pub intercept: Option<f64>,
    /// Calibration slope: `b` in `logit P(y) = a + b logit(p)`; 1 when the
    /// predictions spread as much as the outcomes do, below 1 when they
    /// are too extreme. None when the predictions do not vary.
    pub slope: Option<f64>,
}

/// Calibration of `p` against `y` over `bins` bins of equal count (see
/// [`Calibration`]). Equal-count bins keep every bin informative when the
/// predictions crowd near zero (rare events), where equal-width bins
/// would put every row in the first bin and the error would reduce to
/// |mean prediction - rate|.
pub fn calibration(p: &[f64], y: &[bool], bins: usize) -> Result<Calibration, MetricError> {
    check(p, y)?;
    let n = p.len();
    let bins = bins.clamp(1, n);
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| p[a].total_cmp(&p[b]).then(a.cmp(&b)));
    let mut table = Vec::with_capacity(bins);
    let mut ece = 0.0;
    for b in 0..bins {
        let rows = &idx[b * n / bins..(b + 1) * n / bins];
        let k = rows.len() as f64;
        let mp = rows.iter().map(|i| p[*i]).sum::<f64>() / k;
        let ob = rows.iter().filter(|i| y[**i]).count() as f64 / k;
        ece += k / n as f64 * (mp - ob).abs();
        table.push(CalibrationBin {
            lower: p[rows[0]],
            upper: p[rows[rows.len() - 1]],
            rows: rows.len(),
            mean_predicted: Some(mp),
            observed: Some(ob),
        });
    }
    let (intercept, slope) = calibration_line(p, y);
    Ok(Calibration {
        bins: table,
        ece,
        intercept,
        slope,
    })
}

/// The calibration intercept (slope fixed at 1) and slope (intercept
/// free) by Newton's method on the logistic log likelihood.
fn calibration_line(p: &[f64], y: &[bool]) -> (Option<f64>, Option<f64>) {
    const EPS: f64 = 1e-12;
    let z: Vec<f64> = p
        .iter()
        .map(|q| {
            let q = q.clamp(EPS, 1.0 - EPS);
            (q / (1.0 - q)).ln()
        })
        .collect();
    let t: Vec<f64> = y.iter().map(|v| if *v { 1.0 } else { 0.0 }).collect();
    let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
    let positives = t.iter().sum::<f64>();
    if positives == 0.0 || positives == t.len() as f64 {
        return (None, None);
    }
    // Intercept: one parameter, offset logit(p).
    let mut a = 0.0;
    for _ in 0..100 {
        let (mut g, mut h) = (0.0, 0.0);
        for (zi, ti) in z.iter().zip(&t) {
            let m = sigmoid(a + zi);
            g += ti - m;
            h += m * (1.0 - m);
        }
        if h <= 0.0 {
            break;
        }
        let step = g / h;
        a += step;
        if step.abs() < 1e-10 {
            break;
        }
    }
    let intercept = a.is_finite().then_some(a);
    // Slope: two parameters.
    let mean = z.iter().sum::<f64>() / z.len() as f64;
    let var = z.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / z.len() as f64;
    if var < 1e-12 {
        return (intercept, None);
    }
    let (mut c, mut b) = (0.0, 1.0);
    for _ in 0..100 {
        let (mut g0, mut g1, mut h00, mut h01, mut h11) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (zi, ti) in z.iter().zip(&t) {
            let m = sigmoid(c + b * zi);
            let w = m * (1.0 - m);
            g0 += ti - m;
            g1 += (ti - m) * zi;
            h00 += w;
            h01 += w * zi;
            h11 += w * zi * zi;
        }
        let det = h00 * h11 - h01 * h01;
        if det.abs() < 1e-300 {
            break;
        }
        let (dc, db) = ((h11 * g0 - h01 * g1) / det, (h00 * g1 - h01 * g0) / det);
        c += dc;
        b += db;
        if dc.abs() + db.abs() < 1e-10 {
            break;
        }
    }
    (intercept, b.is_finite().then_some(b))
}

/// One decile of a gains table (rows ranked by prediction, highest first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decile {
    /// 1 for the highest-scored tenth.
    pub decile: usize,
    /// Rows in the decile.
    pub rows: usize,
    /// Positives in the decile.
    pub positives: usize,
    /// Share of all positives captured up to and including this decile.
    pub cumulative_gain: f64,
    /// Positive rate in the decile over the overall rate.
    pub lift: f64,
}

/// Gains and lift by decile. Rows are split into ten groups as equal as
/// possible in rank order.
pub fn gains(p: &[f64], y: &[bool]) -> Result<Vec<Decile>, MetricError> {
    check(p, y)?;
    let idx = by_score_desc(p);
    let n = idx.len();
    let total_pos = y.iter().filter(|v| **v).count();
    let rate = total_pos as f64 / n as f64;
    let mut out = Vec::with_capacity(10);
    let mut cum = 0usize;
    for d in 0..10 {
        let (a, b) = (d * n / 10, (d + 1) * n / 10);
        let rows = b - a;
        let positives = idx[a..b].iter().filter(|&&k| y[k]).count();
        cum += positives;
        out.push(Decile {
            decile: d + 1,
            rows,
            positives,
            cumulative_gain: if total_pos > 0 {
                cum as f64 / total_pos as f64
            } else {
                0.0
            },
            lift: if rows > 0 && rate > 0.0 {
                positives as f64 / rows as f64 / rate
            } else {
                0.0
            },
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_a_hand_example() {
        // Positives at 0.9, 0.4; negatives at 0.8, 0.3, 0.1: pairs won
        // (0.9 beats all three, 0.4 beats two) = 5 of 6.
        let p = [0.9, 0.8, 0.4, 0.3, 0.1];
        let y = [true, false, true, false, false];
        assert!((roc_auc(&p, &y).unwrap().unwrap() - 5.0 / 6.0).abs() < 1e-12);
        // Average precision: positives at ranks 1 and 3: (1/1 + 2/3) / 2.
        assert!((pr_auc(&p, &y).unwrap().unwrap() - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn auc_counts_ties_as_half_and_needs_both_classes() {
        let p = [0.5, 0.5, 0.5, 0.5];
        let y = [true, false, true, false];
        assert!((roc_auc(&p, &y).unwrap().unwrap() - 0.5).abs() < 1e-12);
        assert_eq!(roc_auc(&p, &[true; 4]).unwrap(), None);
    }

    #[test]
    fn log_loss_and_brier_by_hand() {
        let p = [0.8, 0.3];
        let y = [true, false];
        let ll = -(0.8f64.ln() + 0.7f64.ln()) / 2.0;
        assert!((log_loss(&p, &y).unwrap() - ll).abs() < 1e-12);
        assert!((brier(&p, &y).unwrap() - (0.04 + 0.09) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn calibration_of_a_calibrated_and_a_shifted_predictor() {
        // Rates from 1% to 10%, outcomes drawn to match: equal-count bins
        // find the calibrated predictor right and the shifted one wrong.
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let p: Vec<f64> = (0..200_000)
            .map(|i| 0.01 + 0.09 * (i % 1000) as f64 / 1000.0)
            .collect();
        let y: Vec<bool> = p.iter().map(|q| rng.random_bool(*q)).collect();
        let c = calibration(&p, &y, 10).unwrap();
        assert_eq!(c.bins.len(), 10);
        assert!(c.bins.iter().all(|b| b.rows == 20_000));
        assert!(c.ece < 0.003, "{c:?}");
        assert!(c.intercept.unwrap().abs() < 0.03, "{c:?}");
        assert!((c.slope.unwrap() - 1.0).abs() < 0.06, "{c:?}");
        // Too extreme: logit doubled. The slope finds it, near 1/2.
        let logit = |q: f64| (q / (1.0 - q)).ln();
        let sharp: Vec<f64> = p
            .iter()
            .map(|q| 1.0 / (1.0 + (-(2.0 * logit(*q) + 2.6)).exp()))
            .collect();
        let s = calibration(&sharp, &y, 10).unwrap();
        assert!((s.slope.unwrap() - 0.5).abs() < 0.04, "{s:?}");
        // A constant predictor at the base rate: no slope, and its ECE
        // over equal-count bins is small, but the rare-event trap is gone:
        // a constant zero predictor is far off.
        let rate = y.iter().filter(|v| **v).count() as f64 / y.len() as f64;
        let flat = calibration(&vec![rate; y.len()], &y, 10).unwrap();
        assert_eq!(flat.slope, None);
        assert!(flat.intercept.unwrap().abs() < 1e-6);
        let zero = calibration(&vec![1e-6; y.len()], &y, 10).unwrap();
        assert!(zero.intercept.unwrap() > 5.0, "{zero:?}");
    }

    #[test]
    fn gains_of_a_perfect_ranking() {
        let p: Vec<f64> = (0..100).map(|i| 1.0 - i as f64 / 100.0).collect();
        let y: Vec<bool> = (0..100).map(|i| i < 10).collect();
        let g = gains(&p, &y).unwrap();
        assert_eq!(g[0].positives, 10);
        assert!((g[0].lift - 10.0).abs() < 1e-12);
        assert!((g[0].cumulative_gain - 1.0).abs() < 1e-12);
        assert_eq!(g.iter().map(|d| d.rows).sum::<usize>(), 100);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(matches!(
            roc_auc(&[0.5], &[true, false]),
            Err(MetricError::Length { .. })
        ));
        assert_eq!(brier(&[], &[]), Err(MetricError::Empty));
        assert_eq!(
            log_loss(&[0.2, f64::NAN], &[true, false]),
            Err(MetricError::BadProbability(1))
        );
        assert_eq!(
            log_loss(&[1.2], &[true]),
            Err(MetricError::BadProbability(0))
        );
    }
}
