//! Offer arms, offer terms and discounting.
//!
//! The reference study's offers: a discount of USD 20 a month for six months,
//! a premium channel worth USD 35 a month free for three months, the two
//! together, and a "tailored" arm that picks one of them by the reason for
//! leaving. This module says what each arm costs the operator in a given month
//! of the second lifetime and how to discount a monthly stream to present value
//! (`CLV = sum_t m_t * S(t) / (1 + d)^t`, see `shared/docs/domain.md`).
//! It must not read files or the clock.

use serde::{Deserialize, Serialize};

/// A win-back arm as it appears in `winback_offers.arm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arm {
    /// Held out: no offer.
    Control,
    /// Discount on the bill.
    Discount,
    /// Service upgrade (premium channel) free for a while.
    Upgrade,
    /// Discount and upgrade together.
    Both,
    /// Discount or upgrade chosen by the reason for leaving.
    Tailored,
}

impl Arm {
    /// All arms, control first.
    pub const ALL: [Arm; 5] = [
        Arm::Control,
        Arm::Discount,
        Arm::Upgrade,
        Arm::Both,
        Arm::Tailored,
    ];

    /// The name used in tables and configs.
    pub fn name(self) -> &'static str {
        match self {
            Arm::Control => "control",
            Arm::Discount => "discount",
            Arm::Upgrade => "upgrade",
            Arm::Both => "both",
            Arm::Tailored => "tailored",
        }
    }

    /// Index into [`Arm::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What an offer that is not tailored gives: a concrete package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Package {
    /// No offer.
    None,
    /// Discount only.
    Discount,
    /// Upgrade only.
    Upgrade,
    /// Discount and upgrade.
    Both,
}

/// The offers' terms, in account currency per month.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferTerms {
    /// Amount taken off the monthly bill by the discount (study: 20).
    pub discount_per_month: f64,
    /// Months the discount runs (study: 6).
    pub discount_months: u32,
    /// Monthly cost to the operator of the upgrade (study: 35).
    pub upgrade_cost_per_month: f64,
    /// Months the upgrade runs (study: 3).
    pub upgrade_months: u32,
}

impl Default for OfferTerms {
    fn default() -> Self {
        OfferTerms {
            discount_per_month: 20.0,
            discount_months: 6,
            upgrade_cost_per_month: 35.0,
            upgrade_months: 3,
        }
    }
}

impl OfferTerms {
    /// Discount taken off the bill in month `t` (1-based) of the second lifetime.
    pub fn discount_in_month(&self, package: Package, t: u32) -> f64 {
        match package {
            Package::Discount | Package::Both if t >= 1 && t <= self.discount_months => {
                self.discount_per_month
            }
            _ => 0.0,
        }
    }

    /// Upgrade cost borne by the operator in month `t` (1-based).
    pub fn upgrade_cost_in_month(&self, package: Package, t: u32) -> f64 {
        match package {
            Package::Upgrade | Package::Both if t >= 1 && t <= self.upgrade_months => {
                self.upgrade_cost_per_month
            }
            _ => 0.0,
        }
    }

    /// The package's months of commitment: the longest of its components.
    pub fn term_months(&self, package: Package) -> u32 {
        match package {
            Package::None => 0,
            Package::Discount => self.discount_months,
            Package::Upgrade => self.upgrade_months,
            Package::Both => self.discount_months.max(self.upgrade_months),
        }
    }

    /// Total offer cost of a package kept for its whole term.
    pub fn full_cost(&self, package: Package) -> f64 {
        (1..=self.term_months(package))
            .map(|t| self.discount_in_month(package, t) + self.upgrade_cost_in_month(package, t))
            .sum()
    }
}

/// The economics of a win-back campaign: the offers' terms, what a contact
/// costs, and how second-lifetime value is discounted. The defaults are the
/// reference study's offers with a contact cost of 2, a 10% annual discount
/// rate, a 60-month value horizon and a 45% margin where billing has no cost
/// to serve (see `configs/demo.toml` for where each comes from).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Economics {
    /// The offers' terms.
    pub terms: OfferTerms,
    /// Cost of sending one offer (not incurred for control).
    pub contact_cost: f64,
    /// Annual rate at which future margin is discounted.
    pub annual_discount_rate: f64,
    /// Months of second lifetime counted in its value.
    pub horizon_months: u32,
    /// Margin as a share of revenue where billing has no cost to serve.
    pub margin_rate: f64,
    /// The package the tailored arm gives per leave reason, in the order
    /// price, service, both, other, unknown.
    pub tailored: [Package; 5],
    /// Cost of acquiring a new subscriber, to compare the cost per
    /// reacquired subscriber with (one operator's figure: 185).
    #[serde(default = "default_acquisition_cost")]
    pub acquisition_cost: f64,
}

fn default_acquisition_cost() -> f64 {
    185.0
}

impl Default for Economics {
    fn default() -> Self {
        Economics {
            terms: OfferTerms::default(),
            contact_cost: 2.0,
            annual_discount_rate: 0.10,
            horizon_months: 60,
            margin_rate: 0.45,
            tailored: [
                Package::Discount,
                Package::Upgrade,
                Package::Both,
                Package::Discount,
                Package::Discount,
            ],
            acquisition_cost: default_acquisition_cost(),
        }
    }
}

impl Economics {
    /// The package `arm` gives a subscriber who left for leave reason
    /// `reason` (index in price, service, both, other, unknown).
    pub fn package(&self, arm: Arm, reason: usize) -> Package {
        package(arm, &self.tailored, reason)
    }

    /// Offer cost (discount given plus upgrade borne) in month `t` of a
    /// second lifetime won back with `package`.
    pub fn offer_cost_in_month(&self, package: Package, t: u32) -> f64 {
        self.terms.discount_in_month(package, t) + self.terms.upgrade_cost_in_month(package, t)
    }

    /// The discount factors over the value horizon.
    pub fn discounting(&self) -> Discounting {
        Discounting::new(self.annual_discount_rate, self.horizon_months)
    }
}

/// Monthly discount factors `1 / (1 + d)^t` for `t = 1..=horizon`.
#[derive(Debug, Clone, PartialEq)]
pub struct Discounting {
    factors: Vec<f64>,
}

impl Discounting {
    /// From an annual rate (e.g. 0.10) and a horizon in months.
    pub fn new(annual_rate: f64, horizon_months: u32) -> Self {
        let d = monthly_rate(annual_rate);
        let factors = (1..=horizon_months)
            .map(|t| (1.0 + d).powi(-(t as i32)))
            .collect();
        Discounting { factors }
    }

    /// The horizon in months.
    pub fn horizon(&self) -> u32 {
        self.factors.len() as u32
    }

    /// Factor for month `t` (1-based); zero past the horizon.
    pub fn factor(&self, t: u32) -> f64 {
        if t == 0 {
            1.0
        } else {
            self.factors.get(t as usize - 1).copied().unwrap_or(0.0)
        }
    }

    /// Present value of `margin[t-1] * survival[t-1]` over the horizon.
    pub fn present_value(&self, margin: &[f64], survival: &[f64]) -> f64 {
        self.factors
            .iter()
            .zip(margin)
            .zip(survival)
            .map(|((f, m), s)| f * m * s)
            .sum()
    }
}

/// The package `arm` gives a subscriber who left for leave reason `reason`
/// (index in price, service, both, other, unknown), the tailored arm
/// following `tailored`.
pub fn package(arm: Arm, tailored: &[Package], reason: usize) -> Package {
    match arm {
        Arm::Control => Package::None,
        Arm::Discount => Package::Discount,
        Arm::Upgrade => Package::Upgrade,
        Arm::Both => Package::Both,
        Arm::Tailored => tailored
            .get(reason)
            .or(tailored.last())
            .copied()
            .unwrap_or(Package::None),
    }
}

/// The monthly rate equivalent to an annual rate: `(1 + r)^(1/12) - 1`.
pub fn monthly_rate(annual_rate: f64) -> f64 {
    (1.0 + annual_rate).powf(1.0 / 12.0) - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn study_costs_per_reacquired_subscriber() {
        // Study table: discount 120, upgrade 105, both 225.
        let t = OfferTerms::default();
        assert_eq!(t.full_cost(Package::Discount), 120.0);
        assert_eq!(t.full_cost(Package::Upgrade), 105.0);
        assert_eq!(t.full_cost(Package::Both), 225.0);
        assert_eq!(t.full_cost(Package::None), 0.0);
        assert_eq!(t.term_months(Package::Both), 6);
    }

    #[test]
    fn monthly_rate_compounds_to_annual() {
        let d = monthly_rate(0.10);
        assert!(((1.0 + d).powi(12) - 1.10).abs() < 1e-12);
    }

    #[test]
    fn present_value_of_constant_stream_matches_annuity_formula() {
        let disc = Discounting::new(0.12, 24);
        let d = monthly_rate(0.12);
        let pv = disc.present_value(&[10.0; 24], &[1.0; 24]);
        let annuity = 10.0 * (1.0 - (1.0 + d).powi(-24)) / d;
        assert!((pv - annuity).abs() < 1e-9, "{pv} vs {annuity}");
        assert_eq!(disc.factor(25), 0.0);
    }
}
