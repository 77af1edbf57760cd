//! The generator's true parameters, written to `truth.json` beside the data.
//!
//! Every number that shapes the generated history lives here, with the
//! calibration target it serves (see "Calibration targets for generated data"
//! in `shared/docs/domain.md`). Models are checked against these: a fitted
//! effect should have the sign and rough size written here.

use serde::{Deserialize, Serialize};
use winback_models::economics::{Arm, Economics, Package};

/// Monthly churn hazard (logit scale) of an active subscriber.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChurnTruth {
    /// Intercept.
    pub intercept: f64,
    /// Added in the first three months of a first lifetime.
    pub tenure_0_3: f64,
    /// Added in months 3 to 11 of a first lifetime.
    pub tenure_3_12: f64,
    /// Added in months 12 and 24 (contract ends).
    pub contract_end: f64,
    /// Added in October to December.
    pub q4: f64,
    /// Added once a subscriber has made this many complaints in six months.
    pub care_calls_threshold: u32,
    /// Added at and above `care_calls_threshold` (a jump, not a slope).
    pub care_calls_jump: f64,
    /// Per unresolved or unsatisfied complaint so far (capped at 3).
    pub per_unsatisfied_complaint: f64,
    /// Added in the month after a bill shock (revenue over 1.5 times the fee).
    pub after_bill_shock: f64,
    /// Per standard deviation of price sensitivity.
    pub price_sensitivity: f64,
    /// Per standard deviation of the latent loyalty (shared with return).
    pub loyalty: f64,
    /// When the subscriber has referred anyone.
    pub has_referred: f64,
    /// Added in any lifetime after the first (returners know the service).
    pub returner: f64,
    /// By arm of the offer that won the subscriber back (second lifetime):
    /// control, discount, upgrade, both (tailored resolves to a package).
    pub by_package: [f64; 4],
    /// By reason for the previous defection: price, service, both, other, unknown.
    pub by_previous_reason: [f64; 5],
    /// Interaction of the win-back package (rows none, discount, upgrade,
    /// both) with the previous reason: an upgrade does not mend the service
    /// that drove a service leaver away.
    pub package_by_previous_reason: [[f64; 5]; 4],
    /// Monthly probability of a bill shock.
    pub bill_shock_rate: f64,
    /// Mean monthly complaint rate.
    pub complaint_rate: f64,
    /// Monthly probability of making a referral at average loyalty.
    pub referral_rate: f64,
}

/// How a defection's reason is drawn: price and service drivers are two
/// logistic draws; both true gives "both", neither gives "other".
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReasonTruth {
    /// Price driver intercept.
    pub price_intercept: f64,
    /// Price driver per SD of price sensitivity.
    pub price_sensitivity: f64,
    /// Price driver when a bill shock happened in the last two months.
    pub price_bill_shock: f64,
    /// Service driver intercept.
    pub service_intercept: f64,
    /// Service driver per unresolved or unsatisfied complaint (capped at 4).
    pub service_per_unsatisfied: f64,
    /// Service driver per complaint in the last six months (capped at 4).
    pub service_per_recent_complaint: f64,
    /// Share of reasons recorded as "unknown" (survey not answered).
    pub unknown_share: f64,
}

/// Probability of returning within the response window after an offer
/// (logit scale). The arm's intercept plus arm-by-reason interaction plus
/// subscriber effects.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReturnTruth {
    /// Intercept by package: none (control), discount, upgrade, both.
    pub intercept_by_package: [f64; 4],
    /// Main effect of the leave reason: price, service, both, other, unknown.
    pub by_reason: [f64; 5],
    /// Interaction package x reason, rows none, discount, upgrade, both.
    pub package_by_reason: [[f64; 5]; 4],
    /// When the subscriber referred anyone in the lifetime.
    pub has_referred: f64,
    /// Per unresolved or unsatisfied complaint (capped at 3).
    pub per_unsatisfied_complaint: f64,
    /// Per complaint resolved to satisfaction (capped at 3).
    pub per_satisfied_complaint: f64,
    /// Per unit of ln(tenure months / 24) of the lifetime just ended.
    pub log_tenure: f64,
    /// Per currency unit of mean monthly margin above 20.
    pub margin: f64,
    /// Per day between defection and offer above 60.
    pub days_since_defection: f64,
    /// Per SD of latent loyalty (shared with churn and second lifetime).
    pub loyalty: f64,
    /// Per earlier defection.
    pub per_earlier_defection: f64,
    /// Share of non-responders who come back later on their own.
    pub late_return_share: f64,
}

/// Win-back campaigns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CampaignTruth {
    /// Month index (from the history's start) of the first campaign.
    pub first_month: u32,
    /// Earliest offer, in days after the defection.
    pub min_delay_days: u32,
    /// Latest offer, in days after the defection.
    pub max_delay_days: u32,
    /// Days after an offer within which a return counts as a response.
    pub response_window_days: u32,
    /// Arm shares by campaign year (control, discount, upgrade, both,
    /// tailored); the last row holds for later years.
    pub arm_shares_by_year: Vec<[f64; 5]>,
    /// The tailored rule: package for price, service, both, other, unknown.
    pub tailored: [Package; 5],
    /// Share of subscribers flagged do-not-contact (never targeted).
    pub do_not_contact_share: f64,
    /// Share of subscribers flagged bad debt (never targeted).
    pub bad_debt_share: f64,
}

/// All true parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Parameters {
    /// Churn hazard.
    pub churn: ChurnTruth,
    /// Leave reasons.
    pub reason: ReasonTruth,
    /// Return after an offer.
    pub return_: ReturnTruth,
    /// Campaign design.
    pub campaign: CampaignTruth,
    /// Economics of the truth's value figures.
    pub economics: Economics,
}

impl Default for Parameters {
    fn default() -> Self {
        use Package as P;
        Parameters {
            churn: ChurnTruth {
                intercept: -4.55,
                tenure_0_3: 0.9,
                tenure_3_12: 0.35,
                contract_end: 0.6,
                q4: 0.3,
                care_calls_threshold: 4,
                care_calls_jump: 1.6,
                per_unsatisfied_complaint: 0.3,
                after_bill_shock: 1.0,
                price_sensitivity: 0.25,
                loyalty: -0.5,
                has_referred: -0.3,
                returner: 0.85,
                by_package: [0.0, 0.1, -0.9, 0.35],
                by_previous_reason: [-0.4, 0.15, 0.2, 0.0, 0.0],
                package_by_previous_reason: [
                    [0.0; 5],
                    [0.0; 5],
                    [0.0, 0.6, 0.4, 0.0, 0.0],
                    [0.0; 5],
                ],
                bill_shock_rate: 0.025,
                complaint_rate: 0.035,
                referral_rate: 0.008,
            },
            reason: ReasonTruth {
                price_intercept: -0.9,
                price_sensitivity: 0.9,
                price_bill_shock: 1.3,
                service_intercept: -1.3,
                service_per_unsatisfied: 0.55,
                service_per_recent_complaint: 0.3,
                unknown_share: 0.04,
            },
            return_: ReturnTruth {
                intercept_by_package: [-0.41, 0.58, 0.54, 0.71],
                by_reason: [0.0, -0.35, -0.75, -0.5, -0.3],
                package_by_reason: [
                    [0.0; 5],
                    [0.2, 0.0, 0.0, 0.0, 0.0],
                    [-0.35, 0.05, 0.0, 0.0, 0.0],
                    [0.0; 5],
                ],
                has_referred: 0.45,
                per_unsatisfied_complaint: -0.3,
                per_satisfied_complaint: 0.08,
                log_tenure: 0.3,
                margin: 0.012,
                days_since_defection: -0.005,
                loyalty: 0.5,
                per_earlier_defection: -0.2,
                late_return_share: 0.08,
            },
            campaign: CampaignTruth {
                first_month: 12,
                min_delay_days: 14,
                max_delay_days: 120,
                response_window_days: 90,
                arm_shares_by_year: vec![
                    [0.2, 0.2, 0.2, 0.2, 0.2],
                    [0.1, 0.3, 0.2, 0.2, 0.2],
                    [0.2, 0.2, 0.3, 0.1, 0.2],
                    [0.15, 0.2, 0.25, 0.15, 0.25],
                ],
                tailored: [P::Discount, P::Upgrade, P::Both, P::Discount, P::Discount],
                do_not_contact_share: 0.03,
                bad_debt_share: 0.02,
            },
            economics: Economics::default(),
        }
    }
}

impl Parameters {
    /// The package an arm delivers to a subscriber who left for `reason`
    /// (index into the leave reasons).
    pub fn package(&self, arm: Arm, reason: usize) -> Package {
        winback_models::economics::package(arm, &self.campaign.tailored, reason)
    }
}

/// Index of a package in the `[none, discount, upgrade, both]` arrays.
pub fn package_index(p: Package) -> usize {
    match p {
        Package::None => 0,
        Package::Discount => 1,
        Package::Upgrade => 2,
        Package::Both => 3,
    }
}

/// Expected outcomes of one arm over the targeted defections, computed from
/// the true model (probabilities exactly, values by one simulated second
/// lifetime per defection and arm over the economics' horizon).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ArmTruth {
    /// Arm name.
    pub arm: String,
    /// Targeted defections the figures average over.
    pub targeted: u64,
    /// Mean P(return within the window | arm).
    pub return_rate: f64,
    /// Present value of a returner's second-lifetime margin before offer cost.
    pub value_per_returner: f64,
    /// Present value of the offer's cost per returner.
    pub offer_cost_per_returner: f64,
    /// (value - offer cost) / offer cost; null for control.
    pub roi: Option<f64>,
    /// Expected profit per targeted subscriber, after contact cost.
    pub profit_per_targeted: f64,
    /// Profit per targeted over the control arm's.
    pub incremental_profit_per_targeted: f64,
}

/// Sums behind [`ArmTruth`], mergeable across chunks.
#[derive(Debug, Clone, Copy, Default)]
pub struct ArmSums {
    /// Targeted defections.
    pub n: u64,
    /// Sum of P(return).
    pub p: f64,
    /// Sum of P(return) times second-lifetime value.
    pub pv: f64,
    /// Sum of P(return) times offer cost.
    pub pc: f64,
}

impl ArmSums {
    /// Adds another chunk's sums.
    pub fn merge(&mut self, o: &ArmSums) {
        self.n += o.n;
        self.p += o.p;
        self.pv += o.pv;
        self.pc += o.pc;
    }
}

/// Turns per-arm sums into the truth's arm table.
pub fn arm_truths(sums: &[ArmSums; 5], contact_cost: f64) -> Vec<ArmTruth> {
    let profit = |a: Arm| {
        let s = &sums[a.index()];
        let n = s.n.max(1) as f64;
        let contact = if a == Arm::Control { 0.0 } else { contact_cost };
        (s.pv - s.pc) / n - contact
    };
    let control = profit(Arm::Control);
    Arm::ALL
        .iter()
        .map(|&a| {
            let s = &sums[a.index()];
            let n = s.n.max(1) as f64;
            ArmTruth {
                arm: a.name().to_string(),
                targeted: s.n,
                return_rate: s.p / n,
                value_per_returner: s.pv / s.p.max(f64::MIN_POSITIVE),
                offer_cost_per_returner: s.pc / s.p.max(f64::MIN_POSITIVE),
                roi: (s.pc > 0.0).then(|| (s.pv - s.pc) / s.pc),
                profit_per_targeted: profit(a),
                incremental_profit_per_targeted: profit(a) - control,
            }
        })
        .collect()
}
