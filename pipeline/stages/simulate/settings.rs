//! Settings of the simulate stage (`[simulate]` in the config) and their
//! defaults.

use std::collections::BTreeMap;

use serde::Serialize;
use winback_models::economics::Arm;

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
    pub control_share: f64,
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
            control_share: 0.05,
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
