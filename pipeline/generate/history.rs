//! One subscriber's simulated history: lifetimes, bills, complaints,
//! referrals, defections, win-back offers and returns.
//!
//! Pure: a subscriber's rows depend only on the parameters, the calendar, the
//! seed and the subscriber's index (each subscriber draws from its own
//! ChaCha stream), so any chunking or thread count gives the same bytes.
//! Rows go to a [`Sink`]; the ground truth's second-lifetime values are
//! simulated with the same code and a sink that keeps nothing.

use chrono::{Datelike, NaiveDate};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use winback_models::economics::{Arm, Discounting, Package};

use super::truth::{ArmSums, Parameters, package_index};

/// Leave reasons in index order (matches `schema::LEAVE_REASONS`).
pub const REASONS: [&str; 5] = ["price", "service", "both", "other", "unknown"];
const PLANS: [(&str, f64); 3] = [("basic", 30.0), ("standard", 50.0), ("premium", 80.0)];
const REGIONS: [&str; 5] = ["north", "south", "east", "west", "central"];
const CHANNELS: [&str; 4] = ["online", "retail", "telesales", "referral"];
const CATEGORIES: [&str; 4] = ["network", "billing", "device", "other"];

/// Month grid of the history: month `m` starts on day `start[m]` (days since
/// 1970-01-01); the history ends the day before `start[months]`.
#[derive(Debug, Clone)]
pub struct Calendar {
    start: Vec<i32>,
    first_month0: u32,
}

impl Calendar {
    /// `months` months from the month containing `start`.
    pub fn new(start: NaiveDate, months: u32) -> Self {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
        let first = NaiveDate::from_ymd_opt(start.year(), start.month(), 1).expect("valid date");
        let start_days = (0..=months)
            .map(|m| {
                let d = first
                    .checked_add_months(chrono::Months::new(m))
                    .expect("date in range");
                (d - epoch).num_days() as i32
            })
            .collect();
        Calendar {
            start: start_days,
            first_month0: first.month0(),
        }
    }

    /// Number of months in the history.
    pub fn months(&self) -> usize {
        self.start.len() - 1
    }

    /// First day of month `m`.
    pub fn month_start(&self, m: usize) -> i32 {
        self.start[m]
    }

    /// Last day of the history.
    pub fn end_day(&self) -> i32 {
        self.start[self.months()] - 1
    }

    /// Month index containing `day` (past the end: `months()`).
    pub fn month_of(&self, day: i32) -> usize {
        self.start.partition_point(|&s| s <= day).saturating_sub(1)
    }

    /// Calendar month (1 to 12) of month index `m`, also past the end.
    pub fn month_of_year(&self, m: usize) -> u32 {
        ((self.first_month0 as usize + m) % 12) as u32 + 1
    }

    fn random_day(&self, rng: &mut ChaCha8Rng, m: usize, not_before: i32) -> i32 {
        let lo = self.start[m].max(not_before);
        let hi = self.start[m + 1] - 1;
        if lo >= hi {
            lo
        } else {
            rng.random_range(lo..=hi)
        }
    }
}

/// Where a simulated history's rows go.
pub trait Sink {
    /// Whether rows are kept (false: only the value matters).
    const RECORD: bool;
    /// One billed month.
    fn billing(&mut self, month_day: i32, revenue: f64, cost: Option<f64>);
    /// One complaint.
    fn complaint(
        &mut self,
        opened: i32,
        resolved: Option<i32>,
        satisfied: Option<bool>,
        category: &'static str,
    );
    /// One referral made.
    fn referral(&mut self, day: i32);
}

/// A sink that keeps nothing: used to simulate values for the truth.
pub struct NullSink;

impl Sink for NullSink {
    const RECORD: bool = false;
    fn billing(&mut self, _: i32, _: f64, _: Option<f64>) {}
    fn complaint(&mut self, _: i32, _: Option<i32>, _: Option<bool>, _: &'static str) {}
    fn referral(&mut self, _: i32) {}
}

/// Column buffers of one chunk of subscribers. Child rows refer to their
/// subscriber by position in `sub_id`.
#[derive(Debug, Default)]
pub struct Rows {
    /// `subscribers.subscriber_id`.
    pub sub_id: Vec<String>,
    /// `subscribers.signup_date`.
    pub sub_signup: Vec<i32>,
    /// `subscribers.plan`.
    pub sub_plan: Vec<&'static str>,
    /// `subscribers.monthly_fee`.
    pub sub_fee: Vec<f64>,
    /// `subscribers.region`.
    pub sub_region: Vec<Option<&'static str>>,
    /// `subscribers.channel`.
    pub sub_channel: Vec<Option<&'static str>>,
    /// Extra column `do_not_contact`.
    pub sub_dnc: Vec<bool>,
    /// Extra column `bad_debt`.
    pub sub_bad_debt: Vec<bool>,
    /// Billing rows: subscriber position, month, revenue, cost.
    pub bill: (Vec<u32>, Vec<i32>, Vec<f64>, Vec<Option<f64>>),
    /// Complaints: position, opened, resolved, satisfied, category.
    pub complaint: ComplaintColumns,
    /// Referrals: position, day.
    pub referral: (Vec<u32>, Vec<i32>),
    /// Churn events: position, day, reason.
    pub churn: (Vec<u32>, Vec<i32>, Vec<&'static str>),
    /// Reactivations: position, day, plan, fee.
    pub reactivation: ReactivationColumns,
    /// Offers: position, day, arm, propensity.
    pub offer: (Vec<u32>, Vec<i32>, Vec<&'static str>, Vec<f64>),
    /// True P(return within the window) of each offer, in offer order.
    pub offer_p_return: Vec<f64>,
    /// Truth sums per arm over targeted defections.
    pub arm_sums: [ArmSums; 5],
    /// Expected outcomes under each arm of the subscribers lapsed at the
    /// history's end, for an offer made on its last day.
    pub lapsed: LapsedTruth,
}

/// Per subscriber lapsed at the history's end (defected at most
/// [`LAPSED_TRUTH_DAYS`] before it), the true outcome of an offer made on
/// the last day, per arm in [`Arm::ALL`] order.
#[derive(Debug, Default)]
pub struct LapsedTruth {
    /// Subscriber position.
    pub pos: Vec<u32>,
    /// Day of the defection.
    pub churn_day: Vec<i32>,
    /// P(return within the window).
    pub p_return: Vec<[f64; 5]>,
    /// Expected present value of the second lifetime's margin before offer
    /// cost, given a return.
    pub value: Vec<[f64; 5]>,
    /// Expected present value of the offer's cost, given a return.
    pub offer_cost: Vec<[f64; 5]>,
}

/// Lapsed subscribers whose defection is at most this many days before the
/// history's end get a row in [`LapsedTruth`].
pub const LAPSED_TRUTH_DAYS: i32 = 180;

/// Second lifetimes simulated per lapsed subscriber and arm for
/// [`LapsedTruth`]'s expected values (the arms share random numbers).
pub const LAPSED_TRUTH_LIVES: usize = 32;

/// Complaint columns: position, opened, resolved, satisfied, category.
pub type ComplaintColumns = (
    Vec<u32>,
    Vec<i32>,
    Vec<Option<i32>>,
    Vec<Option<bool>>,
    Vec<&'static str>,
);

/// Reactivation columns: position, day, plan, fee.
pub type ReactivationColumns = (
    Vec<u32>,
    Vec<i32>,
    Vec<Option<&'static str>>,
    Vec<Option<f64>>,
);

struct RowSink<'a> {
    rows: &'a mut Rows,
    pos: u32,
}

impl Sink for RowSink<'_> {
    const RECORD: bool = true;
    fn billing(&mut self, month_day: i32, revenue: f64, cost: Option<f64>) {
        let b = &mut self.rows.bill;
        b.0.push(self.pos);
        b.1.push(month_day);
        b.2.push(revenue);
        b.3.push(cost);
    }
    fn complaint(
        &mut self,
        opened: i32,
        resolved: Option<i32>,
        satisfied: Option<bool>,
        category: &'static str,
    ) {
        let c = &mut self.rows.complaint;
        c.0.push(self.pos);
        c.1.push(opened);
        c.2.push(resolved);
        c.3.push(satisfied);
        c.4.push(category);
    }
    fn referral(&mut self, day: i32) {
        self.rows.referral.0.push(self.pos);
        self.rows.referral.1.push(day);
    }
}

/// Traits fixed for a subscriber's whole history.
struct Traits {
    fee: f64,
    price_sensitivity: f64,
    loyalty: f64,
    complaint_rate: f64,
    referral_rate: f64,
}

/// Running state across lifetimes.
#[derive(Clone, Default)]
struct History {
    unsatisfied: u32,
    satisfied: u32,
    recent: [u8; 6],
    referrals: u32,
    shock_prev: bool,
    shock_prev2: bool,
    defections: u32,
}

impl History {
    fn recent_complaints(&self) -> u32 {
        self.recent.iter().map(|&c| c as u32).sum()
    }
}

/// One lifetime's setting.
#[derive(Clone, Copy)]
struct Life {
    /// 0 for the first lifetime.
    index: u32,
    package: Package,
    previous_reason: usize,
    /// Calendar month index where it starts.
    first_month: usize,
    /// Day it starts (signup or return).
    first_day: i32,
}

/// How a lifetime ended.
struct LifeEnd {
    /// (month index, day) of the defection, if any before the last month.
    churn: Option<(usize, i32)>,
    months: u32,
    margin_sum: f64,
    /// Present value of gross margin and of offer cost (value mode).
    pv_margin: f64,
    pv_offer_cost: f64,
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    rng.sample::<f64, _>(StandardNormal)
}

fn poisson_small(rng: &mut ChaCha8Rng, lambda: f64) -> u32 {
    // Inversion; lambda here is well below 1.
    let mut k = 0;
    let mut p = (-lambda).exp();
    let mut cdf = p;
    let u: f64 = rng.random();
    while u > cdf && k < 20 {
        k += 1;
        p *= lambda / k as f64;
        cdf += p;
    }
    k
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Simulates one lifetime from `life.first_month` until defection or month
/// `end_month` (exclusive). Months past the calendar are allowed when the
/// sink does not record (value mode).
#[allow(clippy::too_many_arguments)]
fn run_lifetime<S: Sink>(
    rng: &mut ChaCha8Rng,
    p: &Parameters,
    cal: &Calendar,
    t: &Traits,
    h: &mut History,
    life: Life,
    end_month: usize,
    discounting: Option<&Discounting>,
    sink: &mut S,
) -> LifeEnd {
    let c = &p.churn;
    let terms = &p.economics.terms;
    let term = terms.term_months(life.package);
    let mut end = LifeEnd {
        churn: None,
        months: 0,
        margin_sum: 0.0,
        pv_margin: 0.0,
        pv_offer_cost: 0.0,
    };
    for m in life.first_month..end_month {
        let tenure = (m - life.first_month) as u32;
        let month_no = tenure + 1;
        // Bill: usage noise and the occasional bill shock.
        let shock = rng.random_bool(c.bill_shock_rate);
        let usage = (0.08 * normal(rng) - 0.0032).exp()
            * if shock {
                rng.random_range(1.6..2.5)
            } else {
                1.0
            };
        let gross_revenue = t.fee * usage;
        let base_cost =
            0.55 * t.fee * rng.random_range(0.9..1.1) + 0.3 * (gross_revenue - t.fee).max(0.0);
        let discount = terms.discount_in_month(life.package, month_no);
        let upgrade = terms.upgrade_cost_in_month(life.package, month_no);
        let margin = gross_revenue - base_cost;
        end.margin_sum += margin;
        end.months += 1;
        if let Some(d) = discounting {
            let f = d.factor(month_no);
            end.pv_margin += f * margin;
            end.pv_offer_cost += f * (discount + upgrade);
        }
        if S::RECORD {
            let cost = if rng.random_bool(0.03) {
                None
            } else {
                Some(round2(base_cost + upgrade))
            };
            sink.billing(cal.month_start(m), round2(gross_revenue - discount), cost);
        }
        // Complaints, more likely after a bill shock.
        let n = poisson_small(rng, t.complaint_rate * if shock { 3.0 } else { 1.0 });
        h.recent.rotate_right(1);
        h.recent[0] = n.min(255) as u8;
        for _ in 0..n {
            let category = if shock && rng.random_bool(0.7) {
                "billing"
            } else {
                let u: f64 = rng.random();
                CATEGORIES[if u < 0.45 {
                    0
                } else if u < 0.7 {
                    1
                } else if u < 0.9 {
                    2
                } else {
                    3
                }]
            };
            let network = category == "network";
            let resolved = rng.random_bool(if network { 0.7 } else { 0.8 });
            let satisfied = resolved && rng.random_bool(if network { 0.6 } else { 0.72 });
            if satisfied {
                h.satisfied += 1
            } else {
                h.unsatisfied += 1
            }
            if S::RECORD {
                let opened = cal.random_day(rng, m, life.first_day);
                let days = 1 + (-(rng.random::<f64>().max(1e-12)).ln() * 6.0) as i32;
                let resolved_at =
                    (resolved && opened + days <= cal.end_day()).then_some(opened + days);
                let sat = match (resolved_at, resolved) {
                    (Some(_), _) if rng.random_bool(0.04) => None,
                    (Some(_), _) => Some(satisfied),
                    (None, true) => None,
                    (None, false) => rng.random_bool(0.5).then_some(false),
                };
                sink.complaint(opened, resolved_at, sat, category);
            }
        }
        if rng.random_bool(t.referral_rate.min(1.0)) {
            h.referrals += 1;
            if S::RECORD {
                let day = cal.random_day(rng, m, life.first_day);
                sink.referral(day);
            }
        }
        // Churn at the end of the month, never within the offer's term.
        let mut x = c.intercept;
        if life.index == 0 {
            if tenure < 3 {
                x += c.tenure_0_3;
            } else if tenure < 12 {
                x += c.tenure_3_12;
            }
        } else {
            let k = package_index(life.package);
            x += c.returner
                + c.by_package[k]
                + c.by_previous_reason[life.previous_reason]
                + c.package_by_previous_reason[k][life.previous_reason];
        }
        if tenure == 12 || tenure == 24 {
            x += c.contract_end;
        }
        if cal.month_of_year(m) >= 10 {
            x += c.q4;
        }
        if h.recent_complaints() >= c.care_calls_threshold {
            x += c.care_calls_jump;
        }
        x += c.per_unsatisfied_complaint * h.unsatisfied.min(3) as f64;
        if h.shock_prev {
            x += c.after_bill_shock;
        }
        x += c.price_sensitivity * t.price_sensitivity + c.loyalty * t.loyalty;
        if h.referrals > 0 {
            x += c.has_referred;
        }
        h.shock_prev2 = h.shock_prev;
        h.shock_prev = shock;
        if month_no > term && rng.random_bool(sigmoid(x)) {
            let day = if S::RECORD {
                cal.random_day(rng, m, life.first_day)
            } else {
                0
            };
            end.churn = Some((m, day));
            return end;
        }
    }
    end
}

/// Draws the reason for leaving from the state at defection.
fn draw_reason(rng: &mut ChaCha8Rng, p: &Parameters, t: &Traits, h: &History) -> usize {
    let r = &p.reason;
    if rng.random_bool(r.unknown_share) {
        return 4;
    }
    let shock = h.shock_prev || h.shock_prev2;
    let price = r.price_intercept
        + r.price_sensitivity * t.price_sensitivity
        + if shock { r.price_bill_shock } else { 0.0 };
    let service = r.service_intercept
        + r.service_per_unsatisfied * h.unsatisfied.min(4) as f64
        + r.service_per_recent_complaint * h.recent_complaints().min(4) as f64;
    match (
        rng.random_bool(sigmoid(price)),
        rng.random_bool(sigmoid(service)),
    ) {
        (true, true) => 2,
        (true, false) => 0,
        (false, true) => 1,
        (false, false) => 3,
    }
}

/// Logit of returning within the window under `package`.
fn return_logit(
    p: &Parameters,
    package: Package,
    reason: usize,
    t: &Traits,
    h: &History,
    end: &LifeEnd,
    delay: i32,
) -> f64 {
    let r = &p.return_;
    let k = package_index(package);
    let mean_margin = end.margin_sum / end.months.max(1) as f64;
    r.intercept_by_package[k]
        + r.by_reason[reason]
        + r.package_by_reason[k][reason]
        + if h.referrals > 0 { r.has_referred } else { 0.0 }
        + r.per_unsatisfied_complaint * h.unsatisfied.min(3) as f64
        + r.per_satisfied_complaint * h.satisfied.min(3) as f64
        + r.log_tenure * (end.months.max(1) as f64 / 24.0).ln()
        + r.margin * (mean_margin - 20.0)
        + r.days_since_defection * (delay as f64 - 60.0)
        + r.loyalty * t.loyalty
        + r.per_earlier_defection * h.defections.saturating_sub(1) as f64
}

fn pick(rng: &mut ChaCha8Rng, shares: &[f64]) -> usize {
    let u: f64 = rng.random();
    let mut acc = 0.0;
    for (i, s) in shares.iter().enumerate() {
        acc += s;
        if u < acc {
            return i;
        }
    }
    shares.len() - 1
}

/// Simulates subscriber `index` (0-based) into `rows`.
pub fn simulate_subscriber(
    index: u64,
    seed: u64,
    p: &Parameters,
    cal: &Calendar,
    disc: &Discounting,
    rows: &mut Rows,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(2 * index);
    let mut truth_rng = ChaCha8Rng::seed_from_u64(seed);
    truth_rng.set_stream(2 * index + 1);

    let pos = rows.sub_id.len() as u32;
    let months = cal.months();
    let signup_month = rng.random_range(0..months);
    let signup = cal.random_day(&mut rng, signup_month, i32::MIN);
    let price_sensitivity = normal(&mut rng);
    let loyalty = normal(&mut rng);
    // Price-sensitive subscribers choose cheaper plans.
    let plan = {
        let w = [
            0.45 * (0.6 * price_sensitivity).exp(),
            0.35,
            0.20 * (-0.6 * price_sensitivity).exp(),
        ];
        let total: f64 = w.iter().sum();
        pick(&mut rng, &w.map(|x| x / total))
    };
    let (plan_name, base_fee) = PLANS[plan];
    let fee = round2(base_fee * (1.0 + 0.05 * normal(&mut rng)).clamp(0.8, 1.2));
    let referred = rng.random_bool(0.15);
    let channel = if rng.random_bool(0.02) {
        None
    } else if referred {
        Some(CHANNELS[3])
    } else {
        Some(CHANNELS[pick(&mut rng, &[0.42, 0.40, 0.18])])
    };
    let region = if rng.random_bool(0.03) {
        None
    } else {
        Some(REGIONS[rng.random_range(0..REGIONS.len())])
    };
    let dnc = rng.random_bool(p.campaign.do_not_contact_share);
    let bad_debt = rng.random_bool(p.campaign.bad_debt_share);
    let traits = Traits {
        fee,
        price_sensitivity,
        loyalty,
        complaint_rate: p.churn.complaint_rate
            * (0.7 * normal(&mut rng) - 0.245 - 0.2 * loyalty).exp(),
        referral_rate: p.churn.referral_rate
            * (0.8 * loyalty - 0.32 + if referred { 0.3 } else { 0.0 }).exp(),
    };
    rows.sub_id.push(format!("S{:08}", index + 1));
    rows.sub_signup.push(signup);
    rows.sub_plan.push(plan_name);
    rows.sub_fee.push(fee);
    rows.sub_region.push(region);
    rows.sub_channel.push(channel);
    rows.sub_dnc.push(dnc);
    rows.sub_bad_debt.push(bad_debt);

    let camp = &p.campaign;
    let end_day = cal.end_day();
    let mut hist = History::default();
    let mut life = Life {
        index: 0,
        package: Package::None,
        previous_reason: 3,
        first_month: signup_month,
        first_day: signup,
    };
    loop {
        let end = run_lifetime(
            &mut rng,
            p,
            cal,
            &traits,
            &mut hist,
            life,
            months,
            None,
            &mut RowSink { rows, pos },
        );
        let Some((churn_month, churn_day)) = end.churn else {
            break;
        };
        hist.defections += 1;
        let reason = draw_reason(&mut rng, p, &traits, &hist);
        rows.churn.0.push(pos);
        rows.churn.1.push(churn_day);
        rows.churn.2.push(REASONS[reason]);

        let delay = rng.random_range(camp.min_delay_days..=camp.max_delay_days) as i32;
        let offer_day = churn_day + delay;
        let offer_month = cal.month_of(offer_day);
        let targeted =
            offer_day <= end_day && offer_month >= camp.first_month as usize && !dnc && !bad_debt;
        let arm = if targeted {
            let year = (offer_month - camp.first_month as usize) / 12;
            let shares = &camp.arm_shares_by_year[year.min(camp.arm_shares_by_year.len() - 1)];
            let a = Arm::ALL[pick(&mut rng, shares)];
            rows.offer.0.push(pos);
            rows.offer.1.push(offer_day);
            rows.offer.2.push(a.name());
            rows.offer.3.push(shares[a.index()]);
            a
        } else {
            Arm::Control
        };
        if targeted {
            add_truth(
                &mut truth_rng,
                p,
                cal,
                disc,
                &traits,
                &hist,
                &end,
                reason,
                delay,
                offer_month,
                rows,
            );
        }
        let package = p.package(arm, reason);
        let p_return = sigmoid(return_logit(
            p, package, reason, &traits, &hist, &end, delay,
        ));
        if targeted {
            rows.offer_p_return.push(p_return);
        }
        let window = camp.response_window_days as i32;
        let lapsed_at_end = |truth_rng: &mut ChaCha8Rng, rows: &mut Rows| {
            let days = end_day - churn_day;
            if days <= LAPSED_TRUTH_DAYS {
                let outcome = OutcomeArgs {
                    p,
                    cal,
                    disc,
                    traits: &traits,
                    hist: &hist,
                    end: &end,
                    reason,
                };
                let (pr, v, c) =
                    outcome.per_arm(truth_rng, days, cal.months(), LAPSED_TRUTH_LIVES, true);
                let l = &mut rows.lapsed;
                l.pos.push(pos);
                l.churn_day.push(churn_day);
                l.p_return.push(pr);
                l.value.push(v);
                l.offer_cost.push(c);
            }
        };
        let (return_day, package) = if rng.random_bool(p_return) {
            (offer_day + rng.random_range(1..=window), package)
        } else if rng.random_bool(p.return_.late_return_share * p_return) {
            (
                offer_day + window + rng.random_range(1..=540),
                Package::None,
            )
        } else {
            lapsed_at_end(&mut truth_rng, rows);
            break;
        };
        if return_day > end_day {
            lapsed_at_end(&mut truth_rng, rows);
            break;
        }
        let reactivation = &mut rows.reactivation;
        reactivation.0.push(pos);
        reactivation.1.push(return_day);
        reactivation
            .2
            .push((!rng.random_bool(0.03)).then_some(plan_name));
        reactivation
            .3
            .push((!rng.random_bool(0.03)).then(|| round2(fee * (1.0 + 0.02 * normal(&mut rng)))));
        let first_month = cal.month_of(return_day).max(churn_month + 1);
        if first_month >= months {
            break;
        }
        life = Life {
            index: life.index + 1,
            package,
            previous_reason: reason,
            first_month,
            first_day: return_day.max(cal.month_start(first_month)),
        };
    }
}

/// What an arm's outcome for one defection depends on.
struct OutcomeArgs<'a> {
    p: &'a Parameters,
    cal: &'a Calendar,
    disc: &'a Discounting,
    traits: &'a Traits,
    hist: &'a History,
    end: &'a LifeEnd,
    reason: usize,
}

impl OutcomeArgs<'_> {
    /// Per arm: the exact P(return) of an offer `delay` days after the
    /// defection, and the mean present values of margin and of offer cost
    /// over `lives` simulated second lifetimes starting in month `start`.
    /// With `common`, every arm's lives use the same random numbers, so the
    /// differences between arms carry little simulation noise.
    fn per_arm(
        &self,
        rng: &mut ChaCha8Rng,
        delay: i32,
        start: usize,
        lives: usize,
        common: bool,
    ) -> ([f64; 5], [f64; 5], [f64; 5]) {
        let horizon = self.disc.horizon() as usize;
        let (mut pr, mut pv, mut pc) = ([0.0; 5], [0.0; 5], [0.0; 5]);
        let base = rng.clone();
        for arm in Arm::ALL {
            if common {
                *rng = base.clone();
            }
            let package = self.p.package(arm, self.reason);
            let a = arm.index();
            pr[a] = sigmoid(return_logit(
                self.p,
                package,
                self.reason,
                self.traits,
                self.hist,
                self.end,
                delay,
            ));
            for _ in 0..lives {
                let mut h = self.hist.clone();
                let life = Life {
                    index: 1,
                    package,
                    previous_reason: self.reason,
                    first_month: start,
                    first_day: 0,
                };
                let v = run_lifetime(
                    rng,
                    self.p,
                    self.cal,
                    self.traits,
                    &mut h,
                    life,
                    start + horizon,
                    Some(self.disc),
                    &mut NullSink,
                );
                pv[a] += v.pv_margin / lives as f64;
                pc[a] += v.pv_offer_cost / lives as f64;
            }
        }
        (pr, pv, pc)
    }
}

/// Adds one targeted defection's expected outcomes under every arm to the
/// truth sums: exact return probabilities, and one simulated second lifetime
/// per arm over the economics' horizon.
#[allow(clippy::too_many_arguments)]
fn add_truth(
    rng: &mut ChaCha8Rng,
    p: &Parameters,
    cal: &Calendar,
    disc: &Discounting,
    traits: &Traits,
    hist: &History,
    end: &LifeEnd,
    reason: usize,
    delay: i32,
    offer_month: usize,
    rows: &mut Rows,
) {
    let outcome = OutcomeArgs {
        p,
        cal,
        disc,
        traits,
        hist,
        end,
        reason,
    };
    let (pr, pv, pc) = outcome.per_arm(rng, delay, offer_month + 1, 1, false);
    for arm in Arm::ALL {
        let a = arm.index();
        let s = &mut rows.arm_sums[a];
        s.n += 1;
        s.p += pr[a];
        s.pv += pr[a] * pv[a];
        s.pc += pr[a] * pc[a];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_maps_days_to_months() {
        let cal = Calendar::new(NaiveDate::from_ymd_opt(2019, 1, 1).unwrap(), 84);
        assert_eq!(cal.months(), 84);
        let jan = cal.month_start(0);
        assert_eq!(cal.month_of(jan), 0);
        assert_eq!(cal.month_of(jan + 30), 0);
        assert_eq!(cal.month_of(jan + 31), 1);
        assert_eq!(cal.month_of(cal.end_day()), 83);
        assert_eq!(cal.month_of(cal.end_day() + 1), 84);
        assert_eq!(cal.month_of_year(0), 1);
        assert_eq!(cal.month_of_year(11), 12);
        assert_eq!(cal.month_of_year(100), 5);
    }

    #[test]
    fn poisson_inversion_has_the_right_mean() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let n = 200_000;
        let total: u32 = (0..n).map(|_| poisson_small(&mut rng, 0.3)).sum();
        let mean = total as f64 / n as f64;
        assert!((mean - 0.3).abs() < 0.005, "{mean}");
    }
}
