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
    check(p, y)?;
    let eps = 1e-15;
    let s: f64 = p
        .iter()
        .zip(y)
        .map(|(&q, &t)| {
            let q = q.clamp(eps, 1.0 - eps);
            if t { -q.ln() } else { -(1.0 - q).ln() }
        })
        .sum();
    Ok(s / p.len() as f64)
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
    /// Lower edge of the predicted probability (inclusive).
    pub lower: f64,
    /// Upper edge (exclusive, inclusive for the last bin).
    pub upper: f64,
    /// Rows in the bin.
    pub rows: usize,
    /// Mean prediction in the bin (none when the bin is empty).
    pub mean_predicted: Option<f64>,
    /// Observed rate in the bin (none when the bin is empty).
    pub observed: Option<f64>,
}

/// A calibration table over `bins` equal-width bins of predicted
/// probability, and the expected calibration error: the row-weighted mean
/// absolute gap between mean prediction and observed rate.
pub fn calibration(
    p: &[f64],
    y: &[bool],
    bins: usize,
) -> Result<(Vec<CalibrationBin>, f64), MetricError> {
    check(p, y)?;
    let bins = bins.max(1);
    let mut n = vec![0usize; bins];
    let mut sp = vec![0.0; bins];
    let mut sy = vec![0.0; bins];
    for (&q, &t) in p.iter().zip(y) {
        let b = ((q * bins as f64) as usize).min(bins - 1);
        n[b] += 1;
        sp[b] += q;
        sy[b] += if t { 1.0 } else { 0.0 };
    }
    let total = p.len() as f64;
    let mut ece = 0.0;
    let table = (0..bins)
        .map(|b| {
            let (mp, ob) = if n[b] > 0 {
                let (mp, ob) = (sp[b] / n[b] as f64, sy[b] / n[b] as f64);
                ece += n[b] as f64 / total * (mp - ob).abs();
                (Some(mp), Some(ob))
            } else {
                (None, None)
            };
            CalibrationBin {
                lower: b as f64 / bins as f64,
                upper: (b + 1) as f64 / bins as f64,
                rows: n[b],
                mean_predicted: mp,
                observed: ob,
            }
        })
        .collect();
    Ok((table, ece))
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
        // In each bin half the rows are positive and the prediction is 0.5.
        let p = vec![0.5; 1000];
        let y: Vec<bool> = (0..1000).map(|i| i % 2 == 0).collect();
        let (table, ece) = calibration(&p, &y, 10).unwrap();
        assert!(ece.abs() < 1e-12);
        assert_eq!(table[5].rows, 1000);
        let shifted: Vec<f64> = p.iter().map(|x| x + 0.2).collect();
        let (_, ece) = calibration(&shifted, &y, 10).unwrap();
        assert!((ece - 0.2).abs() < 1e-12);
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
