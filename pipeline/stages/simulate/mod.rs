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
//!
//! Files: [`settings`] (`[simulate]` and its defaults), [`eligibility`],
//! [`arms`] (every subscriber under every arm), [`policy`] (default arm,
//! guarded choice, budget, hold-out key, off-policy evaluation),
//! [`intervals`], [`outputs`] (arm summary, target list, policy table,
//! segments, reason codes); [`run`] ties them into one [`Simulation`].

pub mod arms;
pub mod eligibility;
pub mod intervals;
pub mod outputs;
pub mod policy;
pub mod settings;
pub mod workbook;

use std::path::PathBuf;

use polars::prelude::*;
use serde::Serialize;
use tracing::info;
use winback_models::economics::{Arm, Economics};
use winback_models::policy_value::{Interval, PolicyValue};

use crate::error::{Error, Result};
use crate::stages::features::{Current, Inputs as FeatureInputs, f};
pub use arms::Models;
use intervals::Intervals;
pub use settings::SimulateSettings;

/// What `simulate` wrote and found.
#[derive(Debug, Serialize)]
pub struct SimulateSummary {
    /// As-of date.
    pub as_of: String,
    /// Campaign name (hold-out key).
    pub campaign: String,
    /// Model version used.
    pub model: PathBuf,
    /// Subscribers lapsed at the as-of date.
    pub lapsed: usize,
    /// Of them, eligible.
    pub eligible: usize,
    /// Of them, excluded, per rule (the first rule each fails).
    pub excluded: Vec<(String, usize)>,
    /// Eligible subscribers with a profitable arm.
    pub profitable: usize,
    /// Contacted plus held out.
    pub selected: usize,
    /// Chosen by the allocation and contacted.
    pub contacted: usize,
    /// Withheld as the hold-out: drawn before the allocation among the
    /// subscribers an offer is recommended for, outside the budget.
    pub holdout: usize,
    /// Allocation: incremental profit, its upper bound, gap, whether proven
    /// optimal, contacts and expected spend used.
    pub allocation: AllocationSummary,
    /// The arms' totals with intervals (as in arm_summary).
    pub intervals: Intervals,
    /// Off-policy evaluation on past randomised offers no model saw.
    pub off_policy: Vec<PolicyValue>,
    /// Whether per-subscriber targeting was kept, and why.
    pub targeting: policy::Targeting,
}

/// The allocation's certificate.
#[derive(Debug, Serialize)]
pub struct AllocationSummary {
    /// Incremental profit over no offer.
    pub incremental_profit: f64,
    /// Upper bound on any allocation within the limits.
    pub upper_bound: f64,
    /// Bound minus the allocation's profit.
    pub gap: f64,
    /// Whether proven optimal.
    pub exact: bool,
    /// Contacts used.
    pub contacts: f64,
    /// Expected spend used.
    pub spend: f64,
}

/// What the simulation reads besides its settings.
pub struct SimulateInputs<'a> {
    /// The validated input tables (subscribers' flags, recent offers).
    pub tables: &'a FeatureInputs,
    /// The features of the subscribers lapsed at the as-of date.
    pub current: &'a Current,
    /// The return and second-lifetime models.
    pub models: Models<'a>,
    /// The model version, as shown in the summary.
    pub model_version: PathBuf,
    /// The features stage's offers (the randomised history), when present.
    pub history: Option<&'a DataFrame>,
}

/// The simulation's result: the summary and the three tables.
pub struct Simulation {
    /// Counts, allocation, intervals, off-policy values (`summary.json`).
    pub summary: SimulateSummary,
    /// One row per arm.
    pub arm_summary: DataFrame,
    /// One row per eligible subscriber, selected first in rank order.
    pub target_list: DataFrame,
    /// Model-based and off-policy values of the policies.
    pub policy_evaluation: DataFrame,
}

/// Simulates every arm for every eligible subscriber lapsed at the as-of
/// date, chooses and allocates, draws the hold-out, computes intervals and
/// evaluates the policies off-policy on the held-out history.
pub fn run(
    input: SimulateInputs<'_>,
    s: &SimulateSettings,
    economics: &Economics,
) -> Result<Simulation> {
    let SimulateInputs {
        tables,
        current,
        models,
        model_version,
        history,
    } = input;
    let campaign = s
        .campaign
        .clone()
        .unwrap_or_else(|| format!("winback-{}", current.as_of));
    let (df, excluded) = {
        let _span = tracing::debug_span!("eligibility").entered();
        eligibility::eligible(&current.lapsed, tables, current.as_of, s)?
    };
    info!(
        lapsed = current.lapsed.height(),
        eligible = df.height(),
        "eligibility"
    );
    if df.height() == 0 {
        return Err(Error::Data {
            table: "lapsed subscribers".into(),
            message: format!(
                "no lapsed subscriber is eligible as of {} ({} lapsed; excluded: {})",
                current.as_of,
                current.lapsed.height(),
                excluded
                    .iter()
                    .map(|(r, n)| format!("{n} {r}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    let point = {
        let _span = tracing::debug_span!("eligible under every arm", rows = df.height()).entered();
        arms::point(&df, &models, economics)?
    };
    let allowed: Vec<usize> = s.arms.iter().map(|a| a.index()).collect();
    let default = policy::default_arm(&point, &allowed);
    // Off-policy evaluation first, with the fits made before the holdout
    // cuts, on offers none of them was fitted on: it decides whether the
    // per-subscriber targeting is kept.
    let (ev_ret, ev_second) = (models.ret.as_evaluated(), models.second.as_evaluated());
    let evaluated = Models {
        ret: &ev_ret,
        second: &ev_second,
    };
    let (ope, targeting) = match history {
        Some(offers) => policy::evaluate_policies(
            offers,
            &evaluated,
            &allowed,
            default,
            economics,
            s,
            df.height(),
        )?,
        None => (
            Vec::new(),
            policy::Targeting::unchecked(
                Arm::ALL[default].name(),
                "no randomised offer history: per-subscriber targeting is unchecked",
            ),
        ),
    };
    info!(
        policies = ope.len(),
        kept = targeting.kept,
        "off-policy evaluation"
    );
    let best = if targeting.kept {
        let _span = tracing::debug_span!("targeted policy").entered();
        policy::guarded_choice(&df, &point, &allowed, default, &models, economics, s)?
    } else {
        policy::uniform_choice(&point, default)
    };
    // The hold-out is drawn before the allocation, among the subscribers
    // an offer is recommended for, and kept out of it: the budget's
    // contacts, spend and profit are the contacted subscribers' alone.
    let ids = arms::ids(&df)?;
    let holdout: Vec<bool> = (0..df.height())
        .map(|i| best[i].is_some() && policy::holdout_key(&campaign, &ids[i]) < s.control_share)
        .collect();
    let open: Vec<Option<usize>> = best
        .iter()
        .zip(&holdout)
        .map(|(b, h)| if *h { None } else { *b })
        .collect();
    let alloc = policy::allocate(&point, &allowed, &open, s, economics);
    info!(
        selected = alloc.choice.iter().filter(|c| c.is_some()).count(),
        gap = alloc.gap(),
        "allocation"
    );
    let policies = vec![alloc.choice.clone(), best.clone()];
    let iv = {
        let _span = tracing::debug_span!("intervals").entered();
        intervals::intervals(&df, &point, &policies, &models, economics, s)?
    };
    info!(replicates = iv.replicates, "intervals");
    let arm_summary = outputs::arm_summary(&point, &iv, economics)?;
    let current_value: Vec<f64> = df
        .column(f::MARGIN_MEAN)
        .and_then(|c| c.cast(&DataType::Float64))
        .and_then(|c| c.f64().cloned())
        .map_err(Error::polars("simulate: margin_mean"))?
        .iter()
        .map(|v| v.unwrap_or(0.0))
        .collect();
    let potential: Vec<f64> = (0..df.height())
        .map(|i| {
            point
                .iter()
                .map(|arm| arm[i].p_return * (arm[i].value - arm[i].offer_cost))
                .fold(f64::NEG_INFINITY, f64::max)
        })
        .collect();
    let segment = outputs::segments(&current_value, &potential, s);
    let shown: Vec<usize> = (0..df.height())
        .map(|i| alloc.choice[i].or(best[i]).unwrap_or(allowed[0]))
        .collect();
    let reasons = outputs::reason_codes(&df, &shown, models.ret)?;
    let target_list = outputs::target_list(
        &df,
        &point,
        &alloc.choice,
        &best,
        &holdout,
        &segment,
        &reasons,
    )?;
    let mut totals: Vec<(String, Interval)> = vec![
        ("recommended".to_string(), iv.policies[0]),
        ("recommended, no budget".to_string(), iv.policies[1]),
        ("no offer".to_string(), iv.profit[0]),
    ];
    for (a, arm) in Arm::ALL.iter().enumerate().skip(1) {
        totals.push((format!("all {}", arm.name()), iv.profit[a]));
    }
    let policy_evaluation = outputs::policy_frame(&totals, &ope)?;
    let held = holdout.iter().filter(|h| **h).count();
    let selected = alloc.choice.iter().filter(|c| c.is_some()).count() + held;
    let summary = SimulateSummary {
        as_of: current.as_of.to_string(),
        campaign,
        model: model_version,
        lapsed: current.lapsed.height(),
        eligible: df.height(),
        excluded,
        profitable: best.iter().filter(|b| b.is_some()).count(),
        selected,
        contacted: selected - held,
        holdout: held,
        allocation: AllocationSummary {
            incremental_profit: alloc.total,
            upper_bound: alloc.bound,
            gap: alloc.gap(),
            exact: alloc.exact,
            contacts: alloc.used.contacts,
            spend: alloc.used.spend,
        },
        intervals: iv,
        off_policy: ope,
        targeting,
    };
    Ok(Simulation {
        summary,
        arm_summary,
        target_list,
        policy_evaluation,
    })
}
