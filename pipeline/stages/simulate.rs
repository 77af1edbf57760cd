//! The offer simulation: each eligible lapsed subscriber under each arm
//! (control, discount, upgrade, both, tailored), the arms' totals with
//! Monte Carlo intervals, the profit-maximising policy under the campaign's
//! budget, and the off-policy evaluation of policies on the randomised
//! campaign history.
//!
//! The arithmetic per subscriber and arm is
//! [`winback_models::offers`]'s: P(return) from the return model, the
//! second lifetime's survival from the hazard model with the arm as the
//! winning arm, its monthly margin from the margin model, the arm's offer
//! cost by month, all discounted over the economics' horizon.
//!
//! Intervals: replicate `r` draws each model's coefficients from its
//! normal approximation (the stored covariance; for boosted trees only the
//! calibration is drawn) and recomputes every subscriber of a seeded sample
//! of at most `interval_rows`; the replicate's total is the point total
//! plus the sample's change scaled to the population. Outcome noise (who
//! returns, how long they stay) is added as a normal draw with the summed
//! per-subscriber variance. The interval is the central `interval` share of
//! the replicates.

use std::collections::BTreeMap;

use polars::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::Serialize;
use winback_models::allocate::{self, Allocation, Limits};
use winback_models::economics::{Arm, Economics};
use winback_models::offers::{ArmInputs, ArmTotals, Outcome, Replicate, Simulator, quantile};

use crate::error::{Error, Result};
use crate::schema::{LEAVE_REASONS, col};
use crate::stages::features::f;
use crate::stages::train::{ModelArtifact, WON_BACK_BY};

/// `[simulate]`, validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimulateSettings {
    /// Campaign name, the key of the hold-out hash (default
    /// `winback-<as-of date>`).
    pub campaign: Option<String>,
    /// Fewest days since the defection to be eligible.
    pub min_days_since_defection: u32,
    /// Most days since the defection to be eligible.
    pub max_days_since_defection: u32,
    /// No offer to a subscriber offered anything within this many days.
    pub no_offer_within_days: u32,
    /// Boolean columns of `subscribers` that exclude a subscriber when true
    /// or null (e.g. do_not_contact, bad_debt).
    pub exclude_flags: Vec<String>,
    /// Offer arms the policy may choose.
    pub arms: Vec<Arm>,
    /// Share of selected subscribers withheld as a randomised hold-out.
    pub holdout_share: f64,
    /// Most subscribers contacted.
    pub max_contacts: Option<u64>,
    /// Most expected spend (contact costs plus expected offer costs).
    pub max_spend: Option<f64>,
    /// Most subscribers per arm.
    pub arm_capacity: BTreeMap<String, u64>,
    /// Monte Carlo replicates.
    pub replicates: usize,
    /// Central share of the replicates in an interval.
    pub interval: f64,
    /// Seed of the replicates and the interval sample.
    pub seed: u64,
    /// Most subscribers recomputed per replicate.
    pub interval_rows: usize,
    /// Share of eligible subscribers of high current value (gold, silver).
    pub high_value_share: f64,
    /// Share of eligible subscribers of high potential (gold, copper).
    pub high_potential_share: f64,
    /// A subscriber gets another action than the default (the arm of
    /// highest total expected profit, or no offer) only when at least this
    /// share of the decision replicates agrees.
    pub switch_confidence: f64,
    /// Replicates behind that decision (0: the point estimates decide).
    pub decision_replicates: usize,
}

impl Default for SimulateSettings {
    fn default() -> Self {
        SimulateSettings {
            campaign: None,
            min_days_since_defection: 14,
            max_days_since_defection: 120,
            no_offer_within_days: 180,
            exclude_flags: Vec::new(),
            arms: vec![Arm::Discount, Arm::Upgrade, Arm::Both, Arm::Tailored],
            holdout_share: 0.05,
            max_contacts: None,
            max_spend: None,
            arm_capacity: BTreeMap::new(),
            replicates: 200,
            interval: 0.90,
            seed: 1,
            interval_rows: 20_000,
            high_value_share: 0.2,
            high_potential_share: 0.5,
            switch_confidence: 0.8,
            decision_replicates: 100,
        }
    }
}

/// Rows per block of the point simulation (bounds memory).
const BLOCK: usize = 16_384;

/// The models the simulation needs.
pub struct Models<'a> {
    /// Return model.
    pub ret: &'a ModelArtifact,
    /// Second-lifetime hazard with its margin model.
    pub second: &'a ModelArtifact,
}

/// The leave reason of each row as an index into [`LEAVE_REASONS`]
/// (unknown and unseen values: `unknown`).
pub fn reasons(df: &DataFrame) -> Result<Vec<usize>> {
    Ok(df
        .column(f::LEAVE_REASON)
        .and_then(|c| c.str().cloned())
        .map_err(Error::polars("simulate: leave_reason"))?
        .iter()
        .map(|v| {
            v.and_then(|r| LEAVE_REASONS.iter().position(|x| *x == r))
                .unwrap_or(LEAVE_REASONS.len() - 1)
        })
        .collect())
}

/// The simulator of the rows of `df` under every arm (control first).
pub fn simulator(df: &DataFrame, m: &Models<'_>, economics: &Economics) -> Result<Simulator> {
    let margin = m.second.margin.as_ref().ok_or_else(|| Error::Fit {
        model: "second_lifetime".into(),
        message: "the model version has no margin model".into(),
    })?;
    let reason = reasons(df)?;
    let mut arms = Vec::with_capacity(Arm::ALL.len());
    for arm in Arm::ALL {
        let with_arm = df
            .clone()
            .lazy()
            .with_column(lit(arm.name()).alias(WON_BACK_BY))
            .collect()
            .map_err(Error::polars("simulate: arm column"))?;
        arms.push(ArmInputs {
            contact: arm != Arm::Control,
            ret: m.ret.linear_part(df, Some(arm.name()))?,
            hazard: m.second.hazard_parts(df, Some(arm.name()))?,
            margin: margin.linear_part(&with_arm)?,
            package: reason.iter().map(|r| economics.package(arm, *r)).collect(),
        });
    }
    let bands = m.second.layout.bands.clone();
    Simulator::new(
        arms,
        if bands.is_empty() { vec![1] } else { bands },
        economics,
    )
    .map_err(|e| Error::Fit {
        model: "simulation".into(),
        message: e.to_string(),
    })
}

/// Point outcomes `[arm][row]` of every row of `df`, block by block.
pub fn point(df: &DataFrame, m: &Models<'_>, economics: &Economics) -> Result<Vec<Vec<Outcome>>> {
    let n = df.height();
    let mut out: Vec<Vec<Outcome>> = vec![Vec::with_capacity(n); Arm::ALL.len()];
    for start in (0..n).step_by(BLOCK) {
        let part = df.slice(start as i64, BLOCK.min(n - start));
        let sim = simulator(&part, m, economics)?;
        for (acc, arm) in out.iter_mut().zip(sim.point()) {
            acc.extend(arm);
        }
    }
    Ok(out)
}

/// A stable number in [0, 1) for a subscriber in a campaign (FNV-1a of
/// the campaign name, a separator and the id).
pub fn holdout_key(campaign: &str, id: &str) -> f64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in campaign.bytes().chain([0x1f]).chain(id.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    // Final avalanche (splitmix64) so nearby ids spread evenly.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58476d1ce4e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d049bb133111eb);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// The default action: the allowed arm of highest total expected profit,
/// or control (no offer) when none beats it.
pub fn default_arm(point: &[Vec<Outcome>], allowed: &[usize]) -> usize {
    let total = |a: usize| point[a].iter().map(|o| o.profit).sum::<f64>();
    let control = total(0);
    allowed
        .iter()
        .map(|&a| (a, total(a)))
        .filter(|(_, t)| *t > control)
        .max_by(|x, y| x.1.total_cmp(&y.1).then(y.0.cmp(&x.0)))
        .map(|(a, _)| a)
        .unwrap_or(0)
}

/// Each row's action (an arm, `None` for no offer): the default unless
/// another action (an allowed arm or no offer) has a higher expected
/// profit and beats the default in at least `switch_confidence` of the
/// decision replicates. Estimated per-subscriber differences between
/// near-equal arms are mostly noise; acting on them loses money.
pub fn guarded_choice(
    df: &DataFrame,
    point: &[Vec<Outcome>],
    allowed: &[usize],
    default: usize,
    m: &Models<'_>,
    economics: &Economics,
    s: &SimulateSettings,
) -> Result<Vec<Option<usize>>> {
    let n = df.height();
    let mut candidates: Vec<usize> = allowed.to_vec();
    candidates.push(0);
    let best: Vec<usize> = (0..n)
        .map(|i| {
            candidates
                .iter()
                .copied()
                .max_by(|x, y| {
                    point[*x][i]
                        .profit
                        .total_cmp(&point[*y][i].profit)
                        .then(y.cmp(x))
                })
                .unwrap_or(0)
        })
        .collect();
    let mut choice: Vec<usize> = vec![default; n];
    // Only the rows whose best action is not the default need replicates.
    let deviating: Vec<usize> = (0..n).filter(|i| best[*i] != default).collect();
    for chunk in deviating.chunks(BLOCK) {
        let rates = if s.decision_replicates == 0 {
            Vec::new()
        } else {
            let idx = IdxCa::from_vec("i".into(), chunk.iter().map(|i| *i as IdxSize).collect());
            let part = df
                .take(&idx)
                .map_err(Error::polars("simulate: decision rows"))?;
            simulator(&part, m, economics)?.win_rates(default, s.decision_replicates, s.seed)
        };
        for (r, &i) in chunk.iter().enumerate() {
            let b = best[i];
            if rates.get(r).is_none_or(|x| x[b] >= s.switch_confidence) {
                choice[i] = b;
            }
        }
    }
    Ok(choice.into_iter().map(|a| (a != 0).then_some(a)).collect())
}

/// The allocation under the budget: a multiple-choice knapsack over the
/// allowed arms, with incremental profit over control as gain and contact
/// plus expected offer cost as spend. The guarded choice (`choice`) stands
/// for what the models are sure of: another arm counts as at most as good
/// as it (it can still fill in where the chosen arm is over capacity or
/// too dear), and a guarded arm whose point gain is not positive counts as
/// barely profitable (the subscriber is dropped only when the models are
/// sure no offer pays). Without limits the allocation is the guarded
/// choice. The returned total is the point estimate of the incremental
/// profit of the allocation.
pub fn allocate(
    point: &[Vec<Outcome>],
    allowed: &[usize],
    choice: &[Option<usize>],
    s: &SimulateSettings,
    economics: &Economics,
) -> Allocation {
    const TINY: f64 = 1e-9;
    let n = point[0].len();
    let k = allowed.len();
    let point_gain = |a: usize, i: usize| point[a][i].profit - point[0][i].profit;
    let mut gain = vec![0.0; n * k];
    let mut spend = vec![0.0; n * k];
    for i in 0..n {
        let g = choice[i].map(|c| point_gain(c, i).max(TINY)).unwrap_or(0.0);
        for (j, &a) in allowed.iter().enumerate() {
            gain[i * k + j] = if choice[i] == Some(a) {
                g
            } else {
                point_gain(a, i).min(g - TINY)
            };
            let o = &point[a][i];
            spend[i * k + j] = economics.contact_cost + o.p_return * o.offer_cost;
        }
    }
    let limits = Limits {
        max_contacts: s.max_contacts.map(|v| v as f64),
        max_spend: s.max_spend,
        arm_capacity: allowed
            .iter()
            .map(|a| s.arm_capacity.get(Arm::ALL[*a].name()).map(|v| *v as f64))
            .collect(),
    };
    let mut a = allocate::allocate(&allocate::Problem {
        arms: k,
        gain: &gain,
        spend: &spend,
        limits: &limits,
    });
    // Back to indices in Arm::ALL, and the point estimates' total.
    for c in a.choice.iter_mut() {
        *c = c.map(|j| allowed[j]);
    }
    let total: f64 = a
        .choice
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.map(|x| point_gain(x, i)))
        .sum();
    a.bound += total - a.total;
    a.total = total;
    a
}

/// A total with its interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    /// Point estimate.
    pub estimate: f64,
    /// Lower bound.
    pub lo: f64,
    /// Upper bound.
    pub hi: f64,
}

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
    })
}

/// The arm summary table.
pub fn arm_summary(
    point: &[Vec<Outcome>],
    iv: &Intervals,
    economics: &Economics,
) -> Result<DataFrame> {
    let n = point[0].len();
    let totals = Simulator::sum(point, 0..n);
    let k = Arm::ALL.len();
    let rank = |key: &dyn Fn(usize) -> f64| -> Vec<Option<u32>> {
        let mut order: Vec<usize> = (1..k).collect();
        order.sort_by(|a, b| key(*b).total_cmp(&key(*a)));
        let mut r = vec![None; k];
        for (pos, a) in order.into_iter().enumerate() {
            r[a] = Some(pos as u32 + 1);
        }
        r
    };
    let profit_rank = rank(&|a| totals[a].profit);
    let recapture_rank = rank(&|a| totals[a].recaptures);
    let nf = n.max(1) as f64;
    let contact = |a: usize| {
        if a == 0 {
            0.0
        } else {
            economics.contact_cost * n as f64
        }
    };
    let arms: Vec<&str> = Arm::ALL.iter().map(|a| a.name()).collect();
    let t = &totals;
    let col_f = |name: &str, v: Vec<f64>| Column::new(name.into(), v);
    let col_o = |name: &str, v: Vec<Option<f64>>| Column::new(name.into(), v);
    let all = 0..k;
    let df = DataFrame::new(
        k,
        vec![
            Column::new("arm".into(), arms),
            Column::new("eligible".into(), vec![n as u64; k]),
            col_f(
                "expected_recaptures",
                all.clone().map(|a| t[a].recaptures).collect(),
            ),
            col_f(
                "recaptures_lo",
                all.clone().map(|a| iv.recaptures[a].lo).collect(),
            ),
            col_f(
                "recaptures_hi",
                all.clone().map(|a| iv.recaptures[a].hi).collect(),
            ),
            col_f(
                "recapture_rate",
                all.clone().map(|a| t[a].recaptures / nf).collect(),
            ),
            col_f(
                "offer_spend",
                all.clone().map(|a| t[a].offer_spend).collect(),
            ),
            col_f("contact_spend", all.clone().map(contact).collect()),
            col_f(
                "second_lifetime_value",
                all.clone().map(|a| t[a].second_lifetime_value).collect(),
            ),
            col_f("profit", all.clone().map(|a| t[a].profit).collect()),
            col_f("profit_lo", all.clone().map(|a| iv.profit[a].lo).collect()),
            col_f("profit_hi", all.clone().map(|a| iv.profit[a].hi).collect()),
            col_f(
                "incremental_profit",
                all.clone().map(|a| t[a].profit - t[0].profit).collect(),
            ),
            col_f(
                "incremental_profit_lo",
                all.clone().map(|a| iv.incremental[a].lo).collect(),
            ),
            col_f(
                "incremental_profit_hi",
                all.clone().map(|a| iv.incremental[a].hi).collect(),
            ),
            col_o(
                "roi",
                all.clone()
                    .map(|a| {
                        (t[a].offer_spend > 0.0).then(|| {
                            (t[a].second_lifetime_value - t[a].offer_spend) / t[a].offer_spend
                        })
                    })
                    .collect(),
            ),
            col_f(
                "profit_per_contact",
                all.clone().map(|a| t[a].profit / nf).collect(),
            ),
            col_o(
                "cost_per_reacquired",
                all.clone()
                    .map(|a| {
                        (a > 0 && t[a].recaptures > 0.0)
                            .then(|| (t[a].offer_spend + contact(a)) / t[a].recaptures)
                    })
                    .collect(),
            ),
            col_f("acquisition_cost", vec![economics.acquisition_cost; k]),
            Column::new("profit_rank".into(), profit_rank),
            Column::new("recapture_rank".into(), recapture_rank),
        ],
    )
    .map_err(Error::polars("simulate: arm summary"))?;
    df.sort(
        ["profit"],
        SortMultipleOptions::default().with_order_descending(true),
    )
    .map_err(Error::polars("simulate: arm summary order"))
}

/// The value segment of each row: current value (the first lifetime's
/// mean monthly margin) in its top `high_value_share` or not, by potential
/// (the best expected second-lifetime profit over the arms) in its top
/// `high_potential_share` or not.
pub fn segments(current: &[f64], potential: &[f64], s: &SimulateSettings) -> Vec<&'static str> {
    let cut = |v: &[f64], share: f64| quantile(v, 1.0 - share);
    let (cv, cp) = (
        cut(current, s.high_value_share),
        cut(potential, s.high_potential_share),
    );
    current
        .iter()
        .zip(potential)
        .map(|(c, p)| match (*c >= cv, *p >= cp) {
            (true, true) => "gold",
            (true, false) => "silver",
            (false, true) => "copper",
            (false, false) => "iron",
        })
        .collect()
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
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyValue {
    /// Policy name.
    pub policy: String,
    /// Held-out offers evaluated.
    pub offers: usize,
    /// Offers whose logged arm is the policy's choice.
    pub matched: usize,
    /// The models' expected profit per offer under the policy.
    pub model: f64,
    /// Inverse-propensity estimate of profit per offer, with interval.
    pub ips: Interval,
    /// Doubly-robust estimate of profit per offer, with interval.
    pub dr: Interval,
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
    let mut dr = Vec::with_capacity(n);
    let mut matched = 0;
    let mut model = 0.0;
    for i in 0..n {
        let a = policy[i];
        let hit = logged[i] == a;
        let w = if hit {
            matched += 1;
            1.0 / propensity[i].max(1e-6)
        } else {
            0.0
        };
        ips.push(w * reward[i]);
        dr.push(q[a][i] + w * (reward[i] - q[logged[i]][i]));
        model += q[a][i];
    }
    let summarise = |v: &[f64]| -> Interval {
        let m = v.iter().sum::<f64>() / n.max(1) as f64;
        let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n.max(2) - 1) as f64;
        let se = (var / n.max(1) as f64).sqrt();
        Interval {
            estimate: m,
            lo: m - z * se,
            hi: m + z * se,
        }
    };
    PolicyValue {
        policy: name.into(),
        offers: n,
        matched,
        model: model / n.max(1) as f64,
        ips: summarise(&ips),
        dr: summarise(&dr),
    }
}

/// The arm index in [`Arm::ALL`] of each row's `arm` column (unknown: `None`).
pub fn arm_indices(df: &DataFrame, column: &str) -> Result<Vec<Option<usize>>> {
    Ok(df
        .column(column)
        .and_then(|c| c.str().cloned())
        .map_err(Error::polars(format!("simulate: {column}")))?
        .iter()
        .map(|v| v.and_then(|a| Arm::ALL.iter().position(|x| x.name() == a)))
        .collect())
}

/// The top three reason codes of each row: the features with the largest
/// contributions to the return model's log-odds under the row's arm, as
/// `feature +0.42` (relative to the training average).
pub fn reason_codes(
    df: &DataFrame,
    arm: &[usize],
    ret: &ModelArtifact,
) -> Result<[Vec<Option<String>>; 3]> {
    let n = df.height();
    let mut out: [Vec<Option<String>>; 3] = [vec![None; n], vec![None; n], vec![None; n]];
    for a in 0..Arm::ALL.len() {
        let rows: Vec<usize> = (0..n).filter(|i| arm[*i] == a).collect();
        if rows.is_empty() {
            continue;
        }
        for chunk in rows.chunks(BLOCK) {
            let idx = IdxCa::from_vec("i".into(), chunk.iter().map(|i| *i as IdxSize).collect());
            let part = df
                .take(&idx)
                .map_err(Error::polars("simulate: reason rows"))?;
            let (names, c) = ret.contributions(&part, Some(Arm::ALL[a].name()))?;
            let m = names.len();
            for (r, i) in chunk.iter().enumerate() {
                let row = &c[r * m..(r + 1) * m];
                let mut order: Vec<usize> = (0..m).collect();
                order.sort_by(|x, y| row[*y].abs().total_cmp(&row[*x].abs()).then(x.cmp(y)));
                for (slot, j) in order.into_iter().take(3).enumerate() {
                    out[slot][*i] = Some(format!("{} {:+.2}", names[j], row[j]));
                }
            }
        }
    }
    Ok(out)
}

/// The `subscriber_id` column as strings.
pub fn ids(df: &DataFrame) -> Result<Vec<String>> {
    Ok(df
        .column(col::SUBSCRIBER_ID)
        .and_then(|c| c.str().cloned())
        .map_err(Error::polars("simulate: subscriber_id"))?
        .iter()
        .map(|v| v.unwrap_or_default().to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holdout_keys_are_stable_uniform_and_campaign_specific() {
        let keys: Vec<f64> = (0..20_000)
            .map(|i| holdout_key("c1", &format!("S{i:08}")))
            .collect();
        let share = keys.iter().filter(|k| **k < 0.05).count() as f64 / keys.len() as f64;
        assert!((share - 0.05).abs() < 0.006, "{share}");
        assert_eq!(
            holdout_key("c1", "S00000001"),
            holdout_key("c1", "S00000001")
        );
        let other = (0..20_000)
            .filter(|i| {
                let id = format!("S{i:08}");
                (holdout_key("c1", &id) < 0.05) == (holdout_key("c2", &id) < 0.05)
            })
            .count();
        assert!(other < 20_000, "another campaign draws another hold-out");
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
        assert!(v.dr.lo < 15.0 && v.dr.hi > 15.0);
        assert_eq!(v.model, 12.0);
        assert!(v.matched > n / 2 - 500 && v.matched < n / 2 + 500);
    }

    #[test]
    fn segments_split_by_value_and_potential() {
        let s = SimulateSettings {
            high_value_share: 0.5,
            high_potential_share: 0.5,
            ..SimulateSettings::default()
        };
        let seg = segments(&[1.0, 2.0, 3.0, 4.0], &[4.0, 1.0, 3.0, 2.0], &s);
        assert_eq!(seg, vec!["copper", "iron", "gold", "silver"]);
    }
}
