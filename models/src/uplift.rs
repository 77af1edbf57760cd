//! Uplift of a treatment over control on randomised rows: the Qini curve
//! and coefficient (Radcliffe 2007), and observed against predicted uplift
//! by decile of predicted uplift.

use serde::{Deserialize, Serialize};

use crate::metrics::MetricError;

/// One decile of predicted uplift (highest first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpliftDecile {
    /// 1 = highest predicted uplift.
    pub decile: usize,
    /// Treated rows in the decile.
    pub treated: usize,
    /// Control rows in the decile.
    pub control: usize,
    /// Mean predicted uplift.
    pub predicted: f64,
    /// Observed rate among treated minus among control (None without both).
    pub observed: Option<f64>,
}

/// Qini evaluation of one treatment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Qini {
    /// Treated rows.
    pub treated: usize,
    /// Control rows.
    pub control: usize,
    /// Observed uplift (treated rate minus control rate).
    pub observed_uplift: f64,
    /// Its standard error.
    pub observed_se: f64,
    /// Mean predicted uplift over the same rows.
    pub predicted_uplift: f64,
    /// Area between the Qini curve and the random-targeting line, per row
    /// (incremental responses gained per subscriber by ranking).
    pub qini_coefficient: f64,
    /// The same area for a ranking by the observed outcome (the best any
    /// ranking can do on these rows), for scale.
    pub qini_best: f64,
    /// By decile of predicted uplift.
    pub deciles: Vec<UpliftDecile>,
}

/// Qini of scores `uplift` on rows with outcome `y`, `treated` saying which
/// arm each row was randomised to.
pub fn qini(uplift: &[f64], y: &[bool], treated: &[bool]) -> Result<Qini, MetricError> {
    let n = uplift.len();
    if y.len() != n || treated.len() != n {
        return Err(MetricError::Length {
            predictions: n,
            outcomes: y.len().min(treated.len()),
        });
    }
    if let Some(i) = uplift.iter().position(|v| !v.is_finite()) {
        return Err(MetricError::BadProbability(i));
    }
    let nt = treated.iter().filter(|t| **t).count();
    let nc = n - nt;
    if nt == 0 || nc == 0 {
        return Err(MetricError::Empty);
    }
    let rate = |t: bool| {
        let (s, c) = y
            .iter()
            .zip(treated)
            .filter(|(_, x)| **x == t)
            .fold((0.0, 0.0), |(s, c), (y, _)| {
                (s + if *y { 1.0 } else { 0.0 }, c + 1.0)
            });
        s / c
    };
    let (rt, rc) = (rate(true), rate(false));
    let observed_se = (rt * (1.0 - rt) / nt as f64 + rc * (1.0 - rc) / nc as f64).sqrt();
    let area = |order: &[usize]| {
        // Q(k) = Yt(k) - Yc(k) * Nt(k) / Nc(k), against the line k/n * Q(n).
        let (mut yt, mut yc, mut ct, mut cc) = (0.0, 0.0, 0.0, 0.0);
        let total = (rt - rc) * nt as f64;
        let mut sum = 0.0;
        for (k, &i) in order.iter().enumerate() {
            let yi = if y[i] { 1.0 } else { 0.0 };
            if treated[i] {
                yt += yi;
                ct += 1.0;
            } else {
                yc += yi;
                cc += 1.0;
            }
            let q = if cc > 0.0 { yt - yc * ct / cc } else { yt };
            sum += q - total * (k + 1) as f64 / n as f64;
        }
        sum / n as f64 / n as f64
    };
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| uplift[b].total_cmp(&uplift[a]));
    let qini_coefficient = area(&order);
    // The best ranking: treated responders first, control responders last.
    let mut best: Vec<usize> = (0..n).collect();
    best.sort_by_key(|&i| match (treated[i], y[i]) {
        (true, true) => 0,
        (false, false) => 1,
        (true, false) => 2,
        (false, true) => 3,
    });
    let qini_best = area(&best);
    let deciles = (0..10)
        .map(|d| {
            let rows = &order[d * n / 10..(d + 1) * n / 10];
            let (mut st, mut ct, mut sc, mut cc, mut p) = (0.0, 0, 0.0, 0, 0.0);
            for &i in rows {
                p += uplift[i];
                let yi = if y[i] { 1.0 } else { 0.0 };
                if treated[i] {
                    st += yi;
                    ct += 1;
                } else {
                    sc += yi;
                    cc += 1;
                }
            }
            UpliftDecile {
                decile: d + 1,
                treated: ct,
                control: cc,
                predicted: p / rows.len().max(1) as f64,
                observed: (ct > 0 && cc > 0).then(|| st / ct as f64 - sc / cc as f64),
            }
        })
        .collect();
    Ok(Qini {
        treated: nt,
        control: nc,
        observed_uplift: rt - rc,
        observed_se,
        predicted_uplift: uplift.iter().sum::<f64>() / n as f64,
        qini_coefficient,
        qini_best,
        deciles,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_useful_ranking_beats_random_and_a_reversed_one_loses() {
        // Uplift 0.4 in the first half of rows, 0 in the second; half of
        // each half treated.
        let n = 4_000;
        let mut y = Vec::new();
        let mut t = Vec::new();
        let mut good = Vec::new();
        for i in 0..n {
            let high = i < n / 2;
            let treated = i % 2 == 0;
            // Responses in tenths: 2 of 10, or 6 of 10 when treated and high
            // (exact rates within blocks of 10).
            let tenths = 2 + if high && treated { 4 } else { 0 };
            y.push((i / 2) % 10 < tenths);
            t.push(treated);
            good.push(if high { 1.0 } else { 0.0 });
        }
        let q = qini(&good, &y, &t).unwrap();
        assert!(
            (q.observed_uplift - 0.2).abs() < 1e-9,
            "{}",
            q.observed_uplift
        );
        assert!(q.qini_coefficient > 0.02, "{}", q.qini_coefficient);
        assert!(q.qini_coefficient <= q.qini_best);
        assert!((q.deciles[0].observed.unwrap() - 0.4).abs() < 1e-9);
        assert!(q.deciles[9].observed.unwrap().abs() < 1e-9);
        let bad: Vec<f64> = good.iter().map(|v| -v).collect();
        assert!(qini(&bad, &y, &t).unwrap().qini_coefficient < -0.02);
        assert!(qini(&good, &y, &vec![true; n]).is_err());
    }
}
