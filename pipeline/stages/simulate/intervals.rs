//! Monte Carlo intervals of the arms' totals, incremental profits and the
//! policies' profits (see the module documentation of
//! [`crate::stages::simulate`]).

use polars::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::Serialize;
use winback_models::economics::{Arm, Economics};
use winback_models::offers::{ArmTotals, Outcome, Replicate, Simulator, quantile};
use winback_models::policy_value::Interval;

use crate::error::{Error, Result};

use super::arms::{Models, simulator};
use super::settings::SimulateSettings;

/// Monte Carlo intervals of the arms' profits, of their incremental
/// profits over control, and of the policies' profits.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Intervals {
    /// Per arm (in [`Arm::ALL`] order): profit.
    pub profit: Vec<Interval>,
    /// Per arm: incremental profit over control.
    pub incremental: Vec<Interval>,
    /// Per arm: expected recaptures (model uncertainty and outcome noise).
    pub recaptures: Vec<Interval>,
    /// Per policy given.
    pub policies: Vec<Interval>,
    /// Rows recomputed per replicate.
    pub sample_rows: usize,
    /// Replicates.
    pub replicates: usize,
    /// Which models carried a covariance (return, hazard, margin).
    pub uncertain_models: [bool; 3],
    /// What the intervals cover, in words: the logistic models' and the
    /// margin ridge's coefficients, a boosted model's Platt calibration
    /// only (its trees are held fixed), and the outcomes' noise.
    pub covers: String,
}

/// Intervals over the rows of `df` (with point outcomes `point`) and the
/// per-row `policies` (an arm index per row, `None` for control).
pub fn intervals(
    df: &DataFrame,
    point: &[Vec<Outcome>],
    policies: &[Vec<Option<usize>>],
    m: &Models<'_>,
    economics: &Economics,
    s: &SimulateSettings,
) -> Result<Intervals> {
    let n = df.height();
    let k = Arm::ALL.len();
    // The seeded sample: the rows of the smallest keys.
    let mut keyed: Vec<(u64, usize)> = (0..n)
        .map(|i| (winback_models::boosted::row_key(s.seed, i), i))
        .collect();
    keyed.sort_unstable();
    let mut rows: Vec<usize> = keyed
        .iter()
        .take(s.interval_rows.max(1))
        .map(|(_, i)| *i)
        .collect();
    rows.sort_unstable();
    let idx = IdxCa::from_vec("i".into(), rows.iter().map(|i| *i as IdxSize).collect());
    let sample = df.take(&idx).map_err(Error::polars("simulate: sample"))?;
    let sim = simulator(&sample, m, economics)?;
    let sub_policies: Vec<Vec<Option<usize>>> = policies
        .iter()
        .map(|p| rows.iter().map(|i| p[*i]).collect())
        .collect();
    let base = sim.totals(&sim.fitted(), &sub_policies);
    let reps: Vec<Replicate> = sim.replicates(s.replicates, s.seed, &sub_policies);
    let scale = n as f64 / rows.len().max(1) as f64;
    let full: Vec<ArmTotals> = Simulator::sum(point, 0..n);
    let policy_point: Vec<f64> = policies
        .iter()
        .map(|p| (0..n).map(|i| point[p[i].unwrap_or(0)][i].profit).sum())
        .collect();
    let policy_var: Vec<f64> = policies
        .iter()
        .map(|p| (0..n).map(|i| point[p[i].unwrap_or(0)][i].variance).sum())
        .collect();
    // Outcome noise: a normal draw per replicate and total, from a stream
    // of its own.
    let mut rng = ChaCha8Rng::seed_from_u64(s.seed ^ 0x6f75_7463_6f6d_6573);
    let mut noise = || -> f64 { StandardNormal.sample(&mut rng) };
    let (lo_q, hi_q) = ((1.0 - s.interval) / 2.0, (1.0 + s.interval) / 2.0);
    let mut profit = Vec::new();
    let mut incremental = Vec::new();
    let mut recaptures = Vec::new();
    let mut draws_control = Vec::with_capacity(reps.len());
    let mut per_arm: Vec<Vec<f64>> = vec![Vec::with_capacity(reps.len()); k];
    let mut per_arm_rec: Vec<Vec<f64>> = vec![Vec::with_capacity(reps.len()); k];
    // Returns are Bernoulli: their count's variance is sum p(1-p).
    let var_rec: Vec<f64> = point
        .iter()
        .map(|arm| arm.iter().map(|o| o.p_return * (1.0 - o.p_return)).sum())
        .collect();
    for r in &reps {
        for a in 0..k {
            let shift = (r.arms[a].profit - base.arms[a].profit) * scale;
            per_arm[a].push(full[a].profit + shift + noise() * full[a].variance.sqrt());
            let rec_shift = (r.arms[a].recaptures - base.arms[a].recaptures) * scale;
            per_arm_rec[a].push(full[a].recaptures + rec_shift + noise() * var_rec[a].sqrt());
        }
        draws_control.push(per_arm[0].last().copied().unwrap_or(0.0));
    }
    for a in 0..k {
        let p = &per_arm[a];
        profit.push(Interval {
            estimate: full[a].profit,
            lo: quantile(p, lo_q),
            hi: quantile(p, hi_q),
        });
        let d: Vec<f64> = p.iter().zip(&draws_control).map(|(x, c)| x - c).collect();
        incremental.push(Interval {
            estimate: full[a].profit - full[0].profit,
            lo: if a == 0 { 0.0 } else { quantile(&d, lo_q) },
            hi: if a == 0 { 0.0 } else { quantile(&d, hi_q) },
        });
        recaptures.push(Interval {
            estimate: full[a].recaptures,
            lo: quantile(&per_arm_rec[a], lo_q),
            hi: quantile(&per_arm_rec[a], hi_q),
        });
    }
    let policies = (0..policies.len())
        .map(|j| {
            let d: Vec<f64> = reps
                .iter()
                .map(|r| {
                    policy_point[j]
                        + (r.policies[j] - base.policies[j]) * scale
                        + noise() * policy_var[j].sqrt()
                })
                .collect();
            Interval {
                estimate: policy_point[j],
                lo: quantile(&d, lo_q),
                hi: quantile(&d, hi_q),
            }
        })
        .collect();
    Ok(Intervals {
        profit,
        incremental,
        recaptures,
        policies,
        sample_rows: rows.len(),
        replicates: reps.len(),
        uncertain_models: sim.has_uncertainty(),
        covers: covers(m),
    })
}

/// What the intervals of `m` cover (see [`Intervals::covers`]).
fn covers(m: &Models<'_>) -> String {
    use winback_models::learner::Learner;
    fn held(learner: &Learner) -> (bool, bool) {
        match learner {
            Learner::Logistic(_) => (true, false),
            Learner::Boosted(_) => (false, true),
            Learner::PerArm(p) => p
                .learners
                .iter()
                .map(held)
                .fold((false, false), |(a, b), (c, d)| (a || c, b || d)),
        }
    }
    let part = |name: &str, learner: &Learner| {
        let per_arm = match learner {
            Learner::PerArm(p) if p.steps => " (a model per month band)",
            Learner::PerArm(_) => " (a model per arm)",
            _ => "",
        };
        match held(learner) {
            (true, false) => format!("the {name} model's coefficients{per_arm}"),
            _ => format!(
                "the {name} model's calibration only{per_arm} (boosted trees held fixed: their own variance is not in the interval)"
            ),
        }
    };
    format!(
        "{}; {}; the margin model's coefficients; who returns and how long they stay",
        part("return", &m.ret.learner),
        part("second-lifetime", &m.second.learner)
    )
}
