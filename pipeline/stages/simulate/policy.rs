//! The decision: the default arm, the guarded per-subscriber choice, the
//! budgeted allocation, the hold-out key, and the off-policy evaluation of
//! policies on the held-out randomised offers.

use polars::prelude::*;
use winback_models::allocate::{self, Allocation, Limits};
use winback_models::economics::{Arm, Economics};
use winback_models::offers::Outcome;
use winback_models::policy_value::{Interval, PolicyValue, dr_gain, dr_gain_between, off_policy};

use crate::artifact::{ReturnModel, SecondLifetimeModel};
use crate::error::{Error, Result};
use crate::schema::col;
use crate::stages::features::{f, from_epoch_days};

use super::arms::{self, BLOCK, Models, arm_indices, point, simulator};
use super::settings::SimulateSettings;

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
    // No contact whose own expected incremental profit over no offer is
    // not positive, whatever the guard kept.
    Ok(choice
        .into_iter()
        .enumerate()
        .map(|(i, a)| (a != 0 && point[a][i].profit > point[0][i].profit).then_some(a))
        .collect())
}

/// The uniform policy: the default arm for every row whose own expected
/// incremental profit under it is positive, no offer elsewhere.
pub fn uniform_choice(point: &[Vec<Outcome>], default: usize) -> Vec<Option<usize>> {
    (0..point[0].len())
        .map(|i| (default != 0 && point[default][i].profit > point[0][i].profit).then_some(default))
        .collect()
}

/// Whether per-subscriber targeting (the guarded choice) is kept or the
/// policy falls back to the uniform arm, and the evidence.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Targeting {
    /// True: the guarded per-subscriber choice; false: the uniform arm.
    pub kept: bool,
    /// The uniform arm it is compared with (the default arm).
    pub uniform_arm: String,
    /// Past offers the comparison rests on (no model saw them).
    pub offers: usize,
    /// Of them, the rows whose targeted action differs from the uniform one.
    pub deviating: usize,
    /// Doubly-robust profit per offer of the targeted policy there.
    pub targeted_dr: Option<f64>,
    /// Doubly-robust profit per offer of the uniform policy there.
    pub uniform_dr: Option<f64>,
    /// The targeted policy's doubly-robust gain per offer over the uniform
    /// one (their paired difference), with its interval at the simulation's
    /// level: targeting is kept only when the interval's lower end is above
    /// zero.
    pub gain: Option<Interval>,
    /// Why, in words.
    pub note: String,
}

impl Targeting {
    /// Targeting kept without evidence, and why.
    pub fn unchecked(uniform_arm: &str, note: &str) -> Targeting {
        Targeting {
            kept: true,
            uniform_arm: uniform_arm.into(),
            offers: 0,
            deviating: 0,
            targeted_dr: None,
            uniform_dr: None,
            gain: None,
            note: note.into(),
        }
    }
}

/// The allocation under the budget: a multiple-choice knapsack over the
/// allowed arms, with incremental profit over control as gain and contact
/// plus expected offer cost as spend. The guarded choice (`choice`) stands
/// for what the models are sure of: another arm counts as at most as good
/// as it (it can still fill in where the chosen arm is over capacity or
/// too dear), and only arms with a positive expected incremental profit
/// can be chosen, so no budget buys a contact expected to lose money.
/// Without limits the allocation is the guarded choice. The returned total
/// is the point estimate of the incremental profit of the allocation; the
/// bound is computed on the raw point gains (no guard), and the allocation
/// is called exact only when it reaches that bound.
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
        let g = choice[i].map(|c| point_gain(c, i)).unwrap_or(0.0);
        for (j, &a) in allowed.iter().enumerate() {
            // A gain that is not positive is never taken by the knapsack.
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
    // The bound on the raw point gains (every allowed arm at its own
    // expected incremental profit, no guard) of the subscribers the policy
    // may contact (`choice` set: not held out, an arm expected to pay):
    // what any allocation within the limits could reach if the point
    // estimates were taken at their word. The gap to it is what the guard
    // and the allocation leave.
    let raw: Vec<f64> = (0..n * k)
        .map(|x| {
            let i = x / k;
            if choice[i].is_some() {
                point_gain(allowed[x % k], i)
            } else {
                0.0
            }
        })
        .collect();
    let raw_bound = allocate::allocate(&allocate::Problem {
        arms: k,
        gain: &raw,
        spend: &spend,
        limits: &limits,
    })
    .bound;
    a.exact = a.exact && raw_bound <= total + 1e-9 * total.abs().max(1.0);
    a.bound = raw_bound.max(total);
    a.total = total;
    a
}

/// The past randomised offers whose response window is observed and that
/// no model of `models` was fitted on (dated on or after both splits'
/// cuts, or held-out subscribers), with a usable propensity; and how many
/// held-out offers were set aside for want of one (null, zero, negative,
/// not finite: they cannot be reweighted and are never given a huge
/// weight).
pub fn held_out_offers(history: &DataFrame, models: &Models<'_>) -> Result<(DataFrame, usize)> {
    let splits = [
        &models.ret.provenance.split,
        &models.second.provenance.split,
    ];
    let observed = history
        .clone()
        .lazy()
        .filter(col(f::WINDOW_OBSERVED))
        .collect()
        .map_err(Error::polars("simulate: offers with an observed window"))?;
    let ids = arms::ids(&observed)?;
    let dates: Vec<Option<i32>> = observed
        .column(col::OFFERED_AT)
        .and_then(|c| c.cast(&DataType::Int32))
        .and_then(|c| c.i32().cloned())
        .map_err(Error::polars("simulate: offered_at"))?
        .iter()
        .collect();
    let usable: Vec<bool> = observed
        .column(col::PROPENSITY)
        .and_then(|c| c.cast(&DataType::Float64))
        .and_then(|c| c.f64().cloned())
        .map_err(Error::polars("simulate: propensity"))?
        .iter()
        .map(|p| p.is_some_and(|p| p > 0.0 && p <= 1.0 && p.is_finite()))
        .collect();
    let held: Vec<bool> = ids
        .iter()
        .zip(&dates)
        .map(|(id, d)| {
            splits
                .iter()
                .all(|split| split.holds_out(id, d.map(from_epoch_days)))
        })
        .collect();
    let set_aside = held
        .iter()
        .zip(&usable)
        .filter(|(h, u)| **h && !**u)
        .count();
    let keep: Vec<bool> = held.iter().zip(&usable).map(|(h, u)| *h && *u).collect();
    let offers = observed
        .filter(&BooleanChunked::from_slice("held".into(), &keep))
        .map_err(Error::polars("simulate: held-out offers"))?;
    Ok((offers, set_aside))
}

/// The logged side of past offers: the arm each got, its propensity and
/// the realised reward.
struct Logged {
    logged: Vec<usize>,
    propensity: Vec<f64>,
    reward: Vec<f64>,
}

/// [`Logged`] of `offers`, the reward from the point outcomes `point`.
fn logged(offers: &DataFrame, point: &[Vec<Outcome>], economics: &Economics) -> Result<Logged> {
    let logged: Vec<usize> = arm_indices(offers, col::ARM)?
        .into_iter()
        .map(|a| a.unwrap_or(0))
        .collect();
    let propensity: Vec<f64> = offers
        .column(col::PROPENSITY)
        .and_then(|c| c.cast(&DataType::Float64))
        .and_then(|c| c.f64().cloned())
        .map_err(Error::polars("simulate: propensity"))?
        .iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect();
    let returned: Vec<bool> = offers
        .column(f::RETURNED)
        .and_then(|c| c.bool().cloned())
        .map_err(Error::polars("simulate: returned"))?
        .iter()
        .map(|v| v.unwrap_or(false))
        .collect();
    // Realised reward: the observed return times the models' net value of
    // a second lifetime under the logged arm, less the contact.
    let reward: Vec<f64> = (0..offers.height())
        .map(|i| {
            let a = logged[i];
            let o = &point[a][i];
            let contact = if a == 0 { 0.0 } else { economics.contact_cost };
            if returned[i] {
                o.value - o.offer_cost - contact
            } else {
                -contact
            }
        })
        .collect();
    Ok(Logged {
        logged,
        propensity,
        reward,
    })
}

/// Each return-model candidate's value on the past offers no model was
/// fitted on: the policy its probabilities imply (each offer's arm of
/// highest expected profit, `P(return | arm)` times the second lifetime's
/// net value less the contact, among no offer and the `allowed` arms),
/// valued by IPS,
/// self-normalised IPS and doubly robust with the candidate's own
/// expected profits; with each candidate's paired doubly-robust gain over
/// candidate `reference`. `rets` are evaluated fits sharing one split;
/// `second` is the evaluated second lifetime. `None` when no such offer
/// is left.
pub fn candidate_values(
    history: &DataFrame,
    rets: &[(String, &ReturnModel)],
    second: &SecondLifetimeModel,
    economics: &Economics,
    allowed: &[usize],
    level: f64,
    reference: usize,
) -> Result<Option<CandidateValues>> {
    let Some((_, first)) = rets.get(reference) else {
        return Ok(None);
    };
    let models = Models { ret: first, second };
    let (offers, set_aside) = held_out_offers(history, &models)?;
    if offers.height() == 0 {
        return Ok(None);
    }
    // The second lifetime's value and the offers' costs do not depend on
    // the return model: computed once.
    let point = point(&offers, &models, economics)?;
    let logged = logged(&offers, &point, economics)?;
    let names: Vec<Option<&str>> = Arm::ALL.iter().map(|a| Some(a.name())).collect();
    let mut policies = Vec::with_capacity(rets.len());
    let mut values = Vec::with_capacity(rets.len());
    for (name, ret) in rets {
        let (p, _) = ret.predict_arms(&offers, &names)?;
        let q: Vec<Vec<f64>> = point
            .iter()
            .zip(&p)
            .enumerate()
            .map(|(a, (outcomes, p))| {
                let contact = if a == 0 { 0.0 } else { economics.contact_cost };
                outcomes
                    .iter()
                    .zip(p)
                    .map(|(o, p)| p * (o.value - o.offer_cost) - contact)
                    .collect()
            })
            .collect();
        let arms: Vec<usize> = std::iter::once(0)
            .chain(allowed.iter().copied().filter(|a| *a > 0 && *a < q.len()))
            .collect();
        let policy: Vec<usize> = (0..offers.height())
            .map(|i| {
                arms.iter()
                    .copied()
                    .max_by(|a, b| q[*a][i].total_cmp(&q[*b][i]))
                    .unwrap_or(0)
            })
            .collect();
        let mut v = off_policy(
            name,
            &policy,
            &logged.logged,
            &logged.propensity,
            &logged.reward,
            &q,
            level,
        );
        v.set_aside = set_aside;
        values.push(v);
        policies.push((policy, q));
    }
    let (rp, rq) = &policies[reference];
    let gains = policies
        .iter()
        .map(|(p, q)| {
            dr_gain_between(
                (p, q),
                (rp, rq),
                &logged.logged,
                &logged.propensity,
                &logged.reward,
                level,
            )
        })
        .collect();
    Ok(Some(CandidateValues {
        offers: offers.height(),
        set_aside,
        values,
        gains,
    }))
}

/// Return-model candidates' values (see [`candidate_values`]).
#[derive(Debug, Clone)]
pub struct CandidateValues {
    /// Past offers evaluated.
    pub offers: usize,
    /// Held-out offers set aside (no usable propensity).
    pub set_aside: usize,
    /// Each candidate's value, in order.
    pub values: Vec<PolicyValue>,
    /// Each candidate's doubly-robust gain per offer over the reference.
    pub gains: Vec<Interval>,
}

/// Off-policy evaluation of the recommended policy (with the campaign's
/// limits scaled to the offers evaluated, and without), every uniform arm
/// and no offer, on the past randomised offers whose response window is
/// observed and that no model used here was fitted on: `models` are the
/// evaluated fits (fitted before their holdout cuts), and an offer counts
/// only when the return model's and the second lifetime's splits both
/// hold it out (dated on or after both cuts, or held-out subscribers).
/// `eligible` is the campaign's eligible population, for the scaling.
pub fn evaluate_policies(
    history: &DataFrame,
    models: &Models<'_>,
    allowed: &[usize],
    default: usize,
    economics: &Economics,
    s: &SimulateSettings,
    eligible: usize,
) -> Result<(Vec<PolicyValue>, Targeting)> {
    let (offers, set_aside) = held_out_offers(history, models)?;
    let uniform_arm = Arm::ALL[default].name().to_string();
    if offers.height() == 0 {
        return Ok((
            Vec::new(),
            Targeting::unchecked(
                &uniform_arm,
                "no past randomised offer that no model saw: per-subscriber targeting is unchecked",
            ),
        ));
    }
    let point = {
        let _span =
            tracing::debug_span!("past offers under every arm", offers = offers.height()).entered();
        point(&offers, models, economics)?
    };
    let Logged {
        logged,
        propensity,
        reward,
    } = logged(&offers, &point, economics)?;
    let q: Vec<Vec<f64>> = point
        .iter()
        .map(|arm| arm.iter().map(|o| o.profit).collect())
        .collect();
    let level = s.interval;
    // Targeting earns its place when its deviations from the uniform arm
    // add value on these offers, beyond the noise of the estimate: the
    // lower end of the interval of its doubly-robust gain over the uniform
    // arm is above zero. Else the uniform arm is recommended.
    let targeted = {
        let _span = tracing::debug_span!("targeted policy on past offers").entered();
        guarded_choice(&offers, &point, allowed, default, models, economics, s)?
    };
    let uniform = uniform_choice(&point, default);
    let actions =
        |c: &[Option<usize>]| -> Vec<usize> { c.iter().map(|a| a.unwrap_or(0)).collect() };
    let dr_of = |c: &[Option<usize>]| {
        off_policy("", &actions(c), &logged, &propensity, &reward, &q, level)
            .dr
            .estimate
    };
    let (targeted_dr, uniform_dr) = (dr_of(&targeted), dr_of(&uniform));
    let gain = dr_gain(
        &actions(&targeted),
        &actions(&uniform),
        &logged,
        &propensity,
        &reward,
        &q,
        level,
    );
    let deviating = targeted
        .iter()
        .zip(&uniform)
        .filter(|(t, u)| t != u)
        .count();
    let kept = deviating == 0 || gain.lo > 0.0;
    let pct = format!("{:.0}%", level * 100.0);
    let note = if deviating == 0 {
        format!(
            "the targeted policy is the uniform arm ({uniform_arm}) on the {} past offers no model saw",
            offers.height()
        )
    } else if kept {
        format!(
            "targeting kept: on {} past offers no model saw, its {deviating} deviations from {uniform_arm} for all raise the doubly-robust profit per offer from {uniform_dr:.2} to {targeted_dr:.2} (gain {:.2}, {pct} interval {:.2} to {:.2}, above zero)",
            offers.height(),
            gain.estimate,
            gain.lo,
            gain.hi
        )
    } else {
        format!(
            "targeting dropped, {uniform_arm} recommended for every subscriber it pays for: on {} past offers no model saw, its {deviating} deviations from {uniform_arm} for all change the doubly-robust profit per offer by {:.2} ({pct} interval {:.2} to {:.2}), not surely above zero",
            offers.height(),
            gain.estimate,
            gain.lo,
            gain.hi
        )
    };
    let targeting = Targeting {
        kept,
        uniform_arm,
        offers: offers.height(),
        deviating,
        targeted_dr: Some(targeted_dr),
        uniform_dr: Some(uniform_dr),
        gain: Some(gain),
        note,
    };
    let choice = if kept { targeted } else { uniform };
    // The campaign's limits, scaled from its eligible population to the
    // offers evaluated.
    let scale = offers.height() as f64 / eligible.max(1) as f64;
    let scaled = SimulateSettings {
        max_contacts: s
            .max_contacts
            .map(|c| (c as f64 * scale).round().max(0.0) as u64),
        max_spend: s.max_spend.map(|v| v * scale),
        arm_capacity: s
            .arm_capacity
            .iter()
            .map(|(a, c)| (a.clone(), (*c as f64 * scale).round().max(0.0) as u64))
            .collect(),
        ..s.clone()
    };
    let budgeted = allocate(&point, allowed, &choice, &scaled, economics);
    let mut out = vec![
        off_policy(
            "recommended",
            &actions(&budgeted.choice),
            &logged,
            &propensity,
            &reward,
            &q,
            level,
        ),
        off_policy(
            "recommended, no budget",
            &actions(&choice),
            &logged,
            &propensity,
            &reward,
            &q,
            level,
        ),
    ];
    for (a, arm) in Arm::ALL.iter().enumerate() {
        let name = if a == 0 {
            "no offer".to_string()
        } else {
            format!("all {}", arm.name())
        };
        out.push(off_policy(
            &name,
            &vec![a; offers.height()],
            &logged,
            &propensity,
            &reward,
            &q,
            level,
        ));
    }
    for v in &mut out {
        v.set_aside = set_aside;
    }
    Ok((out, targeting))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holdout_keys_are_pinned() {
        // From an independent Python implementation of the same FNV-1a and
        // splitmix64 steps: a change of the hash would move last
        // campaign's control group.
        for (campaign, id, want) in [
            ("c1", "S00000001", "0.050740933203"),
            ("winback-2025-12-31", "S00012345", "0.666363173419"),
            ("spring", "7590-VHVEG", "0.626656046250"),
        ] {
            assert_eq!(format!("{:.12}", holdout_key(campaign, id)), want);
        }
    }

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
}
