//! Off-policy evaluation of a policy on logged, randomised decisions:
//! inverse-propensity (IPS) and doubly-robust (DR) values with normal
//! intervals, and the normal quantile they use. Numbers in, numbers out.

use serde::{Deserialize, Serialize};

/// A total with its interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Point estimate.
    pub estimate: f64,
    /// Lower bound.
    pub lo: f64,
    /// Upper bound.
    pub hi: f64,
}

/// The `z` of a two-sided normal interval of central share `level`
/// (Acklam's rational approximation of the normal quantile).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383_577_518_672_69e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let p = p.clamp(1e-300, 1.0 - 1e-16);
    let low = 0.02425;
    if p < low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -normal_quantile(1.0 - p)
    }
}

/// One policy's off-policy evaluation on the randomised history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyValue {
    /// Policy name.
    pub policy: String,
    /// Held-out offers evaluated.
    pub offers: usize,
    /// Offers whose logged arm is the policy's choice.
    pub matched: usize,
    /// Offers set aside before the evaluation (no usable propensity).
    pub set_aside: usize,
    /// The models' expected profit per offer under the policy.
    pub model: f64,
    /// Inverse-propensity estimate of profit per offer, with interval.
    pub ips: Interval,
    /// Self-normalised inverse-propensity estimate (the weighted rewards
    /// over the sum of the weights; interval by the delta method).
    pub snips: Interval,
    /// Doubly-robust estimate of profit per offer, with interval.
    pub dr: Interval,
}

/// The doubly-robust term of each logged row under `policy`: the model's
/// expected reward of the policy's arm, plus the inverse-propensity
/// weighted residual where the logged arm is the policy's (rows without a
/// usable propensity get no weight).
fn dr_terms(
    policy: &[usize],
    logged: &[usize],
    propensity: &[f64],
    reward: &[f64],
    q: &[Vec<f64>],
) -> Vec<f64> {
    (0..policy.len())
        .map(|i| {
            let (a, p) = (policy[i], propensity[i]);
            let w = if logged[i] == a && p > 0.0 && p.is_finite() {
                1.0 / p
            } else {
                0.0
            };
            q[a][i] + w * (reward[i] - q[logged[i]][i])
        })
        .collect()
}

/// Mean of `v` with a two-sided normal interval of central share `level`
/// from its standard error.
fn mean_interval(v: &[f64], level: f64) -> Interval {
    let n = v.len();
    let z = normal_quantile((1.0 + level) / 2.0);
    let m = v.iter().sum::<f64>() / n.max(1) as f64;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n.max(2) - 1) as f64;
    let se = (var / n.max(1) as f64).sqrt();
    Interval {
        estimate: m,
        lo: m - z * se,
        hi: m + z * se,
    }
}

/// The doubly-robust gain per row of policy `a` over policy `b` on the
/// same logged rows, with its interval: the mean of the paired difference
/// of their terms, which is zero wherever the two choose alike, so the
/// interval is that of the gain itself (far narrower than the two values'
/// own intervals, which share every row's noise).
pub fn dr_gain(
    a: &[usize],
    b: &[usize],
    logged: &[usize],
    propensity: &[f64],
    reward: &[f64],
    q: &[Vec<f64>],
    level: f64,
) -> Interval {
    dr_gain_between((a, q), (b, q), logged, propensity, reward, level)
}

/// [`dr_gain`] of two policies each with its own model of the reward
/// (`q[arm][row]`), such as two candidate models' choices each judged with
/// its own predictions: the paired difference of their doubly-robust
/// terms.
pub fn dr_gain_between(
    a: (&[usize], &[Vec<f64>]),
    b: (&[usize], &[Vec<f64>]),
    logged: &[usize],
    propensity: &[f64],
    reward: &[f64],
    level: f64,
) -> Interval {
    let ta = dr_terms(a.0, logged, propensity, reward, a.1);
    let tb = dr_terms(b.0, logged, propensity, reward, b.1);
    let d: Vec<f64> = ta.iter().zip(&tb).map(|(x, y)| x - y).collect();
    mean_interval(&d, level)
}

/// Inverse-propensity and doubly-robust values of `policy` (an arm index
/// per row) on logged rows: arm `logged`, its propensity, reward
/// `reward` (realised), and the model's expected reward `q[arm][row]`.
/// Intervals are normal, from the per-row terms' standard error.
pub fn off_policy(
    name: &str,
    policy: &[usize],
    logged: &[usize],
    propensity: &[f64],
    reward: &[f64],
    q: &[Vec<f64>],
    level: f64,
) -> PolicyValue {
    let n = policy.len();
    let z = normal_quantile((1.0 + level) / 2.0);
    let mut ips = Vec::with_capacity(n);
    let mut weights = Vec::with_capacity(n);
    let mut matched = 0;
    let mut model = 0.0;
    for i in 0..n {
        let a = policy[i];
        let hit = logged[i] == a;
        // A propensity that is missing, zero or not finite has no inverse
        // weight: such a row counts as unmatched (callers set them aside).
        let p = propensity[i];
        let usable = p > 0.0 && p.is_finite();
        let w = if hit && usable {
            matched += 1;
            1.0 / p
        } else {
            0.0
        };
        ips.push(w * reward[i]);
        weights.push(w);
        model += q[a][i];
    }
    let dr = dr_terms(policy, logged, propensity, reward, q);
    let summarise = |v: &[f64]| mean_interval(v, level);
    let w_sum: f64 = weights.iter().sum();
    let snips = if w_sum > 0.0 {
        let m = ips.iter().sum::<f64>() / w_sum;
        // Delta method: Var(sum w r / sum w) ~ sum w^2 (r - m)^2 / (sum w)^2.
        let var: f64 = weights
            .iter()
            .zip(reward)
            .map(|(w, r)| (w * (r - m)).powi(2))
            .sum::<f64>()
            / (w_sum * w_sum);
        let se = var.sqrt();
        Interval {
            estimate: m,
            lo: m - z * se,
            hi: m + z * se,
        }
    } else {
        Interval {
            estimate: f64::NAN,
            lo: f64::NAN,
            hi: f64::NAN,
        }
    };
    PolicyValue {
        policy: name.into(),
        offers: n,
        matched,
        set_aside: 0,
        model: model / n.max(1) as f64,
        ips: summarise(&ips),
        snips,
        dr: summarise(&dr),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn a_missing_propensity_never_weighs_a_million() {
        let v = off_policy(
            "arm 1",
            &[1, 1],
            &[1, 1],
            &[f64::NAN, 0.5],
            &[100.0, 10.0],
            &[vec![0.0; 2], vec![0.0; 2]],
            0.9,
        );
        assert_eq!(v.matched, 1);
        assert_eq!(v.ips.estimate, 10.0, "{v:?}");
    }

    #[test]
    fn dr_gain_finds_a_real_gain_and_covers_a_null_one() {
        use rand::Rng;
        // Two arms logged at 0.5 each; a policy that deviates from "all
        // arm 0" on a quarter of the rows, where arm 1 pays `lift` more.
        let run = |lift: f64, seed: u64| -> Interval {
            let n = 4_000;
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let logged: Vec<usize> = (0..n).map(|_| rng.random_range(0..2)).collect();
            let deviates: Vec<bool> = (0..n).map(|i| i % 4 == 0).collect();
            let reward: Vec<f64> = (0..n)
                .map(|i| {
                    let gain = if deviates[i] { lift } else { -5.0 };
                    10.0 + gain * logged[i] as f64 + rng.random_range(-20.0..20.0)
                })
                .collect();
            // A model that knows nothing: the gain must come from the data.
            let q = vec![vec![10.0; n], vec![10.0; n]];
            let uniform = vec![0; n];
            let targeted: Vec<usize> = deviates.iter().map(|d| usize::from(*d)).collect();
            dr_gain(
                &targeted,
                &uniform,
                &logged,
                &vec![0.5; n],
                &reward,
                &q,
                0.9,
            )
        };
        // A real gain of 8 on a quarter of the rows: 2 per row, found.
        for seed in 0..5 {
            let g = run(8.0, seed);
            assert!(
                g.lo > 0.0 && (g.estimate - 2.0).abs() < 3.0 * (g.hi - g.lo),
                "{g:?}"
            );
        }
        // No gain: the 90% interval holds zero in 85 to 95% of 400 draws.
        let covered = (100..500)
            .filter(|s| {
                let g = run(0.0, *s);
                g.lo <= 0.0 && 0.0 <= g.hi
            })
            .count();
        assert!((340..=380).contains(&covered), "covered {covered} of 400");
    }

    #[test]
    fn normal_quantiles() {
        assert!((normal_quantile(0.95) - 1.644854).abs() < 1e-6);
        assert!((normal_quantile(0.975) - 1.959964).abs() < 1e-6);
        assert!((normal_quantile(0.5)).abs() < 1e-12);
        assert!((normal_quantile(0.001) + 3.090232).abs() < 1e-5);
    }

    #[test]
    fn off_policy_recovers_a_known_value_under_randomisation() {
        // Two arms logged with propensity 0.5; arm 1 pays 10 more.
        let n = 40_000;
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        use rand::Rng;
        let logged: Vec<usize> = (0..n).map(|_| rng.random_range(0..2)).collect();
        let reward: Vec<f64> = logged
            .iter()
            .map(|a| 5.0 + 10.0 * *a as f64 + rng.random_range(-3.0..3.0))
            .collect();
        let prop = vec![0.5; n];
        // A biased model: the doubly-robust estimate corrects it.
        let q = vec![vec![4.0; n], vec![12.0; n]];
        let v = off_policy("arm 1", &vec![1; n], &logged, &prop, &reward, &q, 0.9);
        assert!((v.ips.estimate - 15.0).abs() < 0.3, "{v:?}");
        assert!((v.dr.estimate - 15.0).abs() < 0.1, "{v:?}");
        assert!((v.snips.estimate - 15.0).abs() < 0.1, "{v:?}");
        assert!(v.snips.lo < 15.0 && v.snips.hi > 15.0, "{v:?}");
        assert!(v.dr.lo < 15.0 && v.dr.hi > 15.0);
        assert_eq!(v.model, 12.0);
        assert!(v.matched > n / 2 - 500 && v.matched < n / 2 + 500);
    }
}
