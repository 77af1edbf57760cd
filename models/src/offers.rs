//! The offer simulation's arithmetic: for each lapsed subscriber and arm,
//! P(return), the expected second-lifetime value and offer cost, expected
//! profit, and the variance of the realised profit; and Monte Carlo
//! replicates of the totals over model uncertainty.
//!
//! A subscriber won back under an arm is billed in month `t` of the second
//! lifetime while still a subscriber, with probability `S(t - 1)` from the
//! hazard model's monthly hazards (churn is recorded at the end of a billed
//! month), at the margin model's monthly margin, less the arm's offer cost
//! in force in month `t`; months are discounted at the economics' rate over
//! its horizon (`shared/docs/domain.md`, "Customer lifetime value"):
//!
//! ```text
//! value = sum_t f_t m S(t-1)      cost = sum_t f_t c_t S(t-1)
//! profit = P(return) (value - cost) - contact cost   (no contact for control)
//! ```
//!
//! The realised profit of one subscriber is `B g(T) - contact`, with `B`
//! the return (Bernoulli) and `g(T)` the discounted net margin up to the
//! month `T` of the next defection; its variance is
//! `p E[g^2] - p^2 E[g]^2`, summed over subscribers for the outcome noise
//! of a total.

use ndarray::{Array2, ArrayView2, Axis, Slice};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

use crate::economics::{Discounting, Economics, Package};
use crate::error::FitError;
use crate::uncertainty::{BandParts, LinearPart, Posterior};

/// One arm's model inputs for the same rows.
#[derive(Debug, Clone)]
pub struct ArmInputs {
    /// Whether the arm contacts the subscriber (false for control).
    pub contact: bool,
    /// The return model under this arm.
    pub ret: LinearPart,
    /// The second-lifetime hazard under this arm, one part per month band.
    pub hazard: BandParts,
    /// The monthly margin before offer cost under this arm.
    pub margin: LinearPart,
    /// The package each row receives under this arm.
    pub package: Vec<Package>,
}

/// Coefficients of the three models for one replicate.
#[derive(Debug, Clone)]
pub struct Coefs {
    /// Return model.
    pub ret: Vec<f64>,
    /// Hazard model.
    pub hazard: Vec<f64>,
    /// Margin model.
    pub margin: Vec<f64>,
}

/// Expected outcome of one row under one arm.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Outcome {
    /// P(return within the window).
    pub p_return: f64,
    /// Present value of the second lifetime's margin before offer cost,
    /// given a return.
    pub value: f64,
    /// Present value of the offer's cost, given a return.
    pub offer_cost: f64,
    /// Monthly margin before offer cost, given a return.
    pub margin: f64,
    /// Expected months billed within the horizon, given a return
    /// (undiscounted: the sum of S(t - 1)).
    pub months: f64,
    /// Expected profit: `p (value - cost) - contact`.
    pub profit: f64,
    /// Variance of the realised profit.
    pub variance: f64,
}

/// An arm's hazard parts that differ only in their last columns, each
/// band's the same for every row (a pooled hazard's month-band steps):
/// band `b`'s linear predictor is band 0's plus `shift[b] . coef[start..]`,
/// one dot product per row instead of one per band.
#[derive(Debug, Clone, PartialEq)]
struct BandShift {
    start: usize,
    shift: Vec<Vec<f64>>,
}

impl BandShift {
    /// Band `b`'s part of the linear form under the hazard's coefficients
    /// `coef`: the same for every row.
    fn part(&self, b: usize, coef: &[f64]) -> f64 {
        let tail = &coef[self.start..];
        self.shift[b]
            .iter()
            .zip(tail)
            .map(|(x, c)| x * c)
            .sum::<f64>()
    }

    /// The shift of `parts`, when they have one.
    fn of(parts: &[LinearPart]) -> Option<BandShift> {
        let first = parts.first()?;
        let (w, n) = (first.width, first.rows());
        if parts.len() < 2
            || n == 0
            || parts
                .iter()
                .any(|p| p.width != w || p.logistic != first.logistic || p.rows() != n)
        {
            return None;
        }
        fn row(p: &LinearPart, i: usize) -> &[f64] {
            &p.features[i * p.width..(i + 1) * p.width]
        }
        // The first column in which any band differs from band 0 in any row.
        let mut start = w;
        for p in &parts[1..] {
            for i in 0..n {
                let (r0, rb) = (row(first, i), row(p, i));
                if let Some(j) = (0..start).find(|j| r0[*j] != rb[*j]) {
                    start = j;
                }
            }
        }
        // From there on every band's columns are the same in every row.
        for p in parts {
            let tail = &row(p, 0)[start..];
            if (1..n).any(|i| &row(p, i)[start..] != tail) {
                return None;
            }
        }
        let base = &row(first, 0)[start..];
        let shift = parts
            .iter()
            .map(|p| {
                row(p, 0)[start..]
                    .iter()
                    .zip(base)
                    .map(|(b, a)| b - a)
                    .collect()
            })
            .collect();
        Some(BandShift { start, shift })
    }
}

/// The month-by-month terms of one package over the horizon, the same for
/// every row (index `t - 1` for month `t`): the discount factor `f_t`, the
/// discounted offer cost `f_t c_t`, and their running sums `F_t` and `C_t`,
/// so that a returner's discounted net margin to month `t` is
/// `g_t = m F_t - C_t` for a monthly margin `m`.
#[derive(Debug, Clone, PartialEq)]
struct Schedule {
    factor: Vec<f64>,
    cost: Vec<f64>,
    factor_sum: Vec<f64>,
    cost_sum: Vec<f64>,
}

impl Schedule {
    fn new(discounting: &Discounting, economics: &Economics, package: Package) -> Schedule {
        let horizon = discounting.horizon();
        let factor: Vec<f64> = (1..=horizon).map(|t| discounting.factor(t)).collect();
        let cost: Vec<f64> = (1..=horizon)
            .map(|t| discounting.factor(t) * economics.offer_cost_in_month(package, t))
            .collect();
        let running = |v: &[f64]| -> Vec<f64> {
            v.iter()
                .scan(0.0, |acc, x| {
                    *acc += x;
                    Some(*acc)
                })
                .collect()
        };
        Schedule {
            factor_sum: running(&factor),
            cost_sum: running(&cost),
            factor,
            cost,
        }
    }
}

/// One arm's linear forms over a block of rows, rows x draws: the
/// return's, the margin's, and the hazard's per band (band 0's alone where
/// the bands shift it).
type Forms = (Array2<f64>, Array2<f64>, Vec<Array2<f64>>);

/// Rows whose outcomes under many draws of the coefficients are computed
/// together ([`Simulator::totals_at`]).
const REPLICATE_BLOCK: usize = 256;

/// Draws whose month recursions run side by side
/// ([`Simulator::totals_at`]).
const LANES: usize = 4;

/// The packages, in the order of [`Simulator`]'s schedules: the enum's
/// own, so that a package's schedule is at `package as usize` (checked when
/// compiled).
const PACKAGES: [Package; 4] = [
    Package::None,
    Package::Discount,
    Package::Upgrade,
    Package::Both,
];
const _: () = {
    let mut i = 0;
    while i < PACKAGES.len() {
        assert!(PACKAGES[i] as usize == i);
        i += 1;
    }
};

/// The simulation of a set of rows under every arm.
#[derive(Debug, Clone)]
pub struct Simulator {
    arms: Vec<ArmInputs>,
    /// Per arm, its hazard bands' shift when they have one.
    shifts: Vec<Option<BandShift>>,
    /// The horizon's months in runs of one hazard band:
    /// `(band, first month index, end)` with indices `t - 1`.
    runs: Vec<(usize, usize, usize)>,
    /// Per package of [`PACKAGES`], its terms over the horizon.
    schedules: Vec<Schedule>,
    economics: Economics,
    posteriors: [Posterior; 3],
}

/// The horizon's months `1..=horizon` in runs of the band in force: band
/// `b` from month `bands[b]` (band 0 from month 1) to the next band's first
/// month; as `(band, t - 1 of the run's first month, of its end)`.
fn band_runs(bands: &[u32], horizon: u32) -> Vec<(usize, usize, usize)> {
    let mut runs: Vec<(usize, usize, usize)> = Vec::new();
    let mut band = 0;
    for t in 1..=horizon {
        while band + 1 < bands.len() && t >= bands[band + 1] {
            band += 1;
        }
        let i = t as usize - 1;
        match runs.last_mut() {
            Some((b, _, end)) if *b == band => *end = i + 1,
            _ => runs.push((band, i, i + 1)),
        }
    }
    runs
}

/// Totals of one arm over the rows.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ArmTotals {
    /// Expected returns.
    pub recaptures: f64,
    /// Expected present value of offer cost (incurred by returners only).
    pub offer_spend: f64,
    /// Expected present value of returners' margin before offer cost.
    pub second_lifetime_value: f64,
    /// Expected profit after contact cost.
    pub profit: f64,
    /// Variance of the realised profit.
    pub variance: f64,
}

impl ArmTotals {
    fn merge(&mut self, o: &ArmTotals) {
        self.recaptures += o.recaptures;
        self.offer_spend += o.offer_spend;
        self.second_lifetime_value += o.second_lifetime_value;
        self.profit += o.profit;
        self.variance += o.variance;
    }

    fn add(&mut self, o: &Outcome) {
        self.recaptures += o.p_return;
        self.offer_spend += o.p_return * o.offer_cost;
        self.second_lifetime_value += o.p_return * o.value;
        self.profit += o.profit;
        self.variance += o.variance;
    }
}

/// One Monte Carlo replicate: per arm the totals, and the total profit of
/// each policy given to [`Simulator::replicates`].
#[derive(Debug, Clone, PartialEq)]
pub struct Replicate {
    /// Per arm, in the simulator's arm order.
    pub arms: Vec<ArmTotals>,
    /// Per policy.
    pub policies: Vec<f64>,
}

impl Simulator {
    /// A simulator of the rows the arms' inputs describe. `bands` are the
    /// first months of the hazard's month bands (one hazard part each).
    pub fn new(
        arms: Vec<ArmInputs>,
        bands: Vec<u32>,
        economics: &Economics,
    ) -> Result<Simulator, FitError> {
        let first = arms
            .first()
            .ok_or_else(|| FitError::Shape("no arms to simulate".into()))?;
        let n = first.ret.rows();
        for a in &arms {
            let bad = a.ret.rows() != n
                || a.margin.rows() != n
                || a.package.len() != n
                || a.hazard.bands() != bands.len().max(1)
                || a.hazard.parts().iter().any(|h| h.rows() != n)
                || match &a.hazard {
                    BandParts::Each(_) => false,
                    BandParts::Shifted {
                        first,
                        start,
                        shift,
                    } => {
                        *start > first.width || shift.iter().any(|d| d.len() != first.width - start)
                    }
                };
            if bad {
                return Err(FitError::Shape(
                    "the arms' inputs do not describe the same rows and bands".into(),
                ));
            }
        }
        let hazard = first
            .hazard
            .first()
            .ok_or_else(|| FitError::Shape("no hazard".into()))?;
        let posteriors = [
            Posterior::new(&first.ret.coef, &first.ret.covariance)?,
            Posterior::new(&hazard.coef, &hazard.covariance)?,
            Posterior::new(&first.margin.coef, &first.margin.covariance)?,
        ];
        let shifts = arms
            .iter()
            .map(|a| match &a.hazard {
                BandParts::Each(parts) => BandShift::of(parts),
                BandParts::Shifted { start, shift, .. } => Some(BandShift {
                    start: *start,
                    shift: shift.clone(),
                }),
            })
            .collect();
        let discounting = economics.discounting();
        Ok(Simulator {
            shifts,
            runs: band_runs(&bands, discounting.horizon()),
            schedules: PACKAGES
                .iter()
                .map(|p| Schedule::new(&discounting, economics, *p))
                .collect(),
            economics: *economics,
            posteriors,
            arms,
        })
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.arms[0].ret.rows()
    }

    /// Arm `a`'s hazard part of band 0 (checked to exist when built).
    fn first_hazard(&self, a: usize) -> &LinearPart {
        &self.arms[a].hazard.parts()[0]
    }

    /// The fitted coefficients.
    pub fn fitted(&self) -> Coefs {
        Coefs {
            ret: self.arms[0].ret.coef.clone(),
            hazard: self.first_hazard(0).coef.clone(),
            margin: self.arms[0].margin.coef.clone(),
        }
    }

    /// Whether each model carries a covariance (return, hazard, margin).
    pub fn has_uncertainty(&self) -> [bool; 3] {
        let a = &self.arms[0];
        [
            !a.ret.covariance.is_empty(),
            !self.first_hazard(0).covariance.is_empty(),
            !a.margin.covariance.is_empty(),
        ]
    }

    /// Row `i` under arm `a` with coefficients `c`.
    pub fn outcome(&self, a: usize, i: usize, c: &Coefs) -> Outcome {
        let [o] = self.outcome_group(a, i, [c]);
        o
    }

    /// Row `i` under arm `a` with each of the coefficients `c`, their
    /// month recursions side by side ([`Simulator::outcome_lanes`]).
    fn outcome_group<const L: usize>(&self, a: usize, i: usize, c: [&Coefs; L]) -> [Outcome; L] {
        let arm = &self.arms[a];
        let p = c.map(|c| arm.ret.predict_row(i, &c.ret).clamp(0.0, 1.0));
        let m = c.map(|c| arm.margin.predict_row(i, &c.margin));
        let shift = self.shifts[a].as_ref();
        let first = self.first_hazard(a);
        let eta0 = c.map(|c| shift.map(|_| first.eta_row(i, &c.hazard)));
        let hazard = |b: usize| {
            std::array::from_fn(|l| {
                match (shift, eta0[l]) {
                    (Some(s), Some(eta0)) => first.link(eta0 + s.part(b, &c[l].hazard)),
                    _ => arm.hazard.parts()[b].predict_row(i, &c[l].hazard),
                }
                .clamp(0.0, 1.0)
            })
        };
        self.outcome_lanes(a, i, p, m, hazard)
    }

    /// Row `i`'s outcome under arm `a` from its probability of returning
    /// `p`, its monthly margin `m` and its hazard in each band, for `L`
    /// lanes at once (the same row and arm under `L` draws of the
    /// coefficients): the month recursion's chains side by side, where one
    /// waits on each step. Each lane's arithmetic is the one-lane
    /// recursion's, in its order, so that its outcome is the same to the
    /// bit.
    fn outcome_lanes<const L: usize>(
        &self,
        a: usize,
        i: usize,
        p: [f64; L],
        m: [f64; L],
        hazard: impl Fn(usize) -> [f64; L],
    ) -> [Outcome; L] {
        let arm = &self.arms[a];
        let package = arm.package[i];
        let sched = &self.schedules[package as usize];
        // Survival S(t-1) is `alive` at month t; the realised net margin
        // to month t is g_t = m F_t - C_t; a returner who defects at the
        // end of month t (probability S(t-1) h_t) has g_t, one who stays
        // the horizon g_H.
        let mut alive = [1.0; L];
        let (mut value, mut cost, mut months, mut eg2) = ([0.0; L], [0.0; L], [0.0; L], [0.0; L]);
        for &(band, lo, hi) in &self.runs {
            let h = hazard(band);
            let terms = sched.factor[lo..hi]
                .iter()
                .zip(&sched.cost[lo..hi])
                .zip(sched.factor_sum[lo..hi].iter().zip(&sched.cost_sum[lo..hi]));
            for ((f, fc), (big_f, big_c)) in terms {
                for l in 0..L {
                    value[l] += f * alive[l];
                    cost[l] += fc * alive[l];
                    months[l] += alive[l];
                    let g = m[l] * big_f - big_c;
                    let churn = alive[l] * h[l];
                    eg2[l] += churn * g * g;
                    alive[l] -= churn;
                }
            }
        }
        let contact = if arm.contact {
            self.economics.contact_cost
        } else {
            0.0
        };
        std::array::from_fn(|l| {
            let (p, m) = (p[l], m[l]);
            let value = m * value[l];
            let g = match (sched.factor_sum.last(), sched.cost_sum.last()) {
                (Some(f), Some(c)) => m * f - c,
                _ => 0.0,
            };
            let eg2 = eg2[l] + alive[l] * g * g;
            let cost = cost[l];
            let net = value - cost;
            Outcome {
                p_return: p,
                value,
                offer_cost: cost,
                margin: m,
                months: months[l],
                profit: p * net - contact,
                variance: (p * eg2 - (p * net).powi(2)).max(0.0),
            }
        })
    }

    /// Every row under every arm at the fitted coefficients: `[arm][row]`.
    pub fn point(&self) -> Vec<Vec<Outcome>> {
        let c = self.fitted();
        (0..self.arms.len())
            .map(|a| {
                (0..self.rows())
                    .into_par_iter()
                    .map(|i| self.outcome(a, i, &c))
                    .collect()
            })
            .collect()
    }

    /// Coefficients of replicate `r` of `seed`: each model's coefficients
    /// drawn from its normal approximation (the fitted ones for a model
    /// without a covariance).
    pub fn draw(&self, seed: u64, r: u64) -> Coefs {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(r);
        let mut draw = |p: &Posterior| {
            let z: Vec<f64> = (0..p.len())
                .map(|_| StandardNormal.sample(&mut rng))
                .collect();
            p.draw(&z)
        };
        let ret = draw(&self.posteriors[0]);
        let hazard = draw(&self.posteriors[1]);
        let margin = draw(&self.posteriors[2]);
        Coefs {
            ret,
            hazard,
            margin,
        }
    }

    /// `count` replicates (seeded, in parallel, the same for any thread
    /// count): per arm the totals over the rows, and per policy (a chosen
    /// arm per row, `None` for the arm at index 0, control) its total profit.
    pub fn replicates(
        &self,
        count: usize,
        seed: u64,
        policies: &[Vec<Option<usize>>],
    ) -> Vec<Replicate> {
        let draws: Vec<Coefs> = (0..count as u64).map(|r| self.draw(seed, r)).collect();
        self.totals_at(&draws, policies)
    }

    /// Per row and arm, the share of `count` replicates (the same draws as
    /// [`Simulator::replicates`] for a seed) in which the arm's profit
    /// beats arm `default`'s: how sure the models are that a subscriber is
    /// better off with another arm than the default.
    pub fn win_rates(&self, default: usize, count: usize, seed: u64) -> Vec<Vec<f64>> {
        let draws: Vec<Coefs> = (0..count as u64).map(|r| self.draw(seed, r)).collect();
        let k = self.arms.len();
        (0..self.rows())
            .into_par_iter()
            .map(|i| {
                let mut wins = vec![0usize; k];
                // Draws in groups of [`LANES`], the last group's missing
                // lanes repeating its last draw and not counted.
                for group in draws.chunks(LANES) {
                    let c: [&Coefs; LANES] =
                        std::array::from_fn(|l| &group[l.min(group.len() - 1)]);
                    let base = self.outcome_group(default, i, c);
                    for (a, w) in wins.iter_mut().enumerate() {
                        if a == default {
                            continue;
                        }
                        let o = self.outcome_group(a, i, c);
                        *w += (0..group.len())
                            .filter(|l| o[*l].profit > base[*l].profit)
                            .count();
                    }
                }
                wins.iter()
                    .map(|w| *w as f64 / count.max(1) as f64)
                    .collect()
            })
            .collect()
    }

    /// Totals at coefficients `c`.
    pub fn totals(&self, c: &Coefs, policies: &[Vec<Option<usize>>]) -> Replicate {
        let mut one = self.totals_at(std::slice::from_ref(c), policies);
        one.pop().unwrap_or_else(|| Replicate {
            arms: vec![ArmTotals::default(); self.arms.len()],
            policies: vec![0.0; policies.len()],
        })
    }

    /// Totals at each of `draws`, in their order. Rows go in blocks of
    /// [`REPLICATE_BLOCK`]: a block's linear forms under every draw are one
    /// matrix product per model and arm (the rows' features times the
    /// draws' coefficients), where each outcome took a dot product of its
    /// own per model; the blocks' totals are added in the rows' order.
    pub fn totals_at(&self, draws: &[Coefs], policies: &[Vec<Option<usize>>]) -> Vec<Replicate> {
        let (n, k, reps) = (self.rows(), self.arms.len(), draws.len());
        let zero = || Replicate {
            arms: vec![ArmTotals::default(); k],
            policies: vec![0.0; policies.len()],
        };
        if reps == 0 {
            return Vec::new();
        }
        // Each model's coefficients, a column per draw.
        let columns = |pick: fn(&Coefs) -> &[f64]| -> Array2<f64> {
            let w = pick(&draws[0]).len();
            Array2::from_shape_fn((w, reps), |(j, r)| pick(&draws[r])[j])
        };
        let (c_ret, c_hazard, c_margin) = (
            columns(|c| &c.ret),
            columns(|c| &c.hazard),
            columns(|c| &c.margin),
        );
        // Per arm with a band shift, each band's part per draw.
        let parts: Vec<Option<Vec<Vec<f64>>>> = self
            .shifts
            .iter()
            .map(|s| {
                s.as_ref().map(|s| {
                    (0..s.shift.len())
                        .map(|b| draws.iter().map(|c| s.part(b, &c.hazard)).collect())
                        .collect()
                })
            })
            .collect();
        let blocks: Vec<Vec<Replicate>> = (0..n.div_ceil(REPLICATE_BLOCK))
            .into_par_iter()
            .map(|block| {
                let lo = block * REPLICATE_BLOCK;
                let hi = (lo + REPLICATE_BLOCK).min(n);
                // Over the columns the part and the coefficients have in
                // common, as [`crate::uncertainty::dot`] takes them.
                let forms = |part: &LinearPart, c: &Array2<f64>| -> Array2<f64> {
                    let w = part.width;
                    let common = w.min(c.nrows());
                    ArrayView2::from_shape((hi - lo, w), &part.features[lo * w..hi * w])
                        .expect("rows of the part's width")
                        .slice_axis(Axis(1), Slice::from(..common))
                        .dot(&c.slice_axis(Axis(0), Slice::from(..common)))
                };
                let arms: Vec<Forms> = self
                    .arms
                    .iter()
                    .zip(&parts)
                    .map(|(arm, part)| {
                        let bands = if part.is_some() {
                            vec![forms(&arm.hazard.parts()[0], &c_hazard)]
                        } else {
                            arm.hazard
                                .parts()
                                .iter()
                                .map(|h| forms(h, &c_hazard))
                                .collect()
                        };
                        (
                            forms(&arm.ret, &c_ret),
                            forms(&arm.margin, &c_margin),
                            bands,
                        )
                    })
                    .collect();
                let mut out: Vec<Replicate> = (0..reps).map(|_| zero()).collect();
                let mut row = vec![[Outcome::default(); LANES]; k];
                // Draws in groups of [`LANES`] (the last group's missing
                // lanes repeat its last draw and are dropped); each draw's
                // totals add its rows and arms in the same order as alone.
                for group in (0..reps).step_by(LANES) {
                    let rs: [usize; LANES] = std::array::from_fn(|l| (group + l).min(reps - 1));
                    let live = LANES.min(reps - group);
                    for i in lo..hi {
                        let j = i - lo;
                        for (a, o) in row.iter_mut().enumerate() {
                            let arm = &self.arms[a];
                            let first = self.first_hazard(a);
                            let (ret, margin, bands) = &arms[a];
                            let p = rs.map(|r| arm.ret.link(ret[[j, r]]).clamp(0.0, 1.0));
                            let m = rs.map(|r| arm.margin.link(margin[[j, r]]));
                            let hazard = |b: usize| {
                                rs.map(|r| {
                                    match &parts[a] {
                                        Some(part) => first.link(bands[0][[j, r]] + part[b][r]),
                                        None => arm.hazard.parts()[b].link(bands[b][[j, r]]),
                                    }
                                    .clamp(0.0, 1.0)
                                })
                            };
                            *o = self.outcome_lanes(a, i, p, m, hazard);
                            for l in 0..live {
                                out[group + l].arms[a].add(&o[l]);
                            }
                        }
                        for l in 0..live {
                            for (v, p) in out[group + l].policies.iter_mut().zip(policies) {
                                *v += row[p[i].unwrap_or(0)][l].profit;
                            }
                        }
                    }
                }
                out
            })
            .collect();
        let mut totals: Vec<Replicate> = (0..reps).map(|_| zero()).collect();
        for block in blocks {
            for (t, b) in totals.iter_mut().zip(block) {
                for (ta, ba) in t.arms.iter_mut().zip(&b.arms) {
                    ta.merge(ba);
                }
                for (tp, bp) in t.policies.iter_mut().zip(&b.policies) {
                    *tp += bp;
                }
            }
        }
        totals
    }

    /// Totals per arm of point outcomes (`[arm][row]`) over `rows`.
    pub fn sum(
        point: &[Vec<Outcome>],
        rows: impl Iterator<Item = usize> + Clone,
    ) -> Vec<ArmTotals> {
        point
            .iter()
            .map(|arm| {
                rows.clone().fold(ArmTotals::default(), |mut t, i| {
                    t.add(&arm[i]);
                    t
                })
            })
            .collect()
    }
}

/// The `q` quantile (0 to 1) of `v` by linear interpolation between order
/// statistics; NaN for an empty slice.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn constant(n: usize, value: f64, logistic: bool) -> LinearPart {
        LinearPart {
            features: vec![1.0; n],
            width: 1,
            coef: vec![value],
            covariance: Vec::new(),
            logistic,
        }
    }

    fn logit(p: f64) -> f64 {
        (p / (1.0 - p)).ln()
    }

    /// Six band parts of a pooled hazard over `n` rows: shared columns
    /// (a constant and three varying ones), then five step columns the same
    /// in every row of a band.
    fn banded(n: usize, seed: u64) -> Vec<LinearPart> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let shared: Vec<[f64; 3]> = (0..n)
            .map(|_| std::array::from_fn(|_| StandardNormal.sample(&mut rng)))
            .collect();
        let coef = vec![-3.5, 0.3, -0.2, 0.1, 0.4, -0.3, 0.2, -0.1, 0.05];
        (0..6)
            .map(|b| {
                let mut features = Vec::with_capacity(n * 9);
                for row in &shared {
                    features.push(1.0);
                    features.extend(row);
                    // Standardised steps: not 0 and 1.
                    features.extend((1..6).map(|j| if b >= j { 1.3 } else { -0.7 }));
                }
                LinearPart {
                    features,
                    width: 9,
                    coef: coef.clone(),
                    covariance: Vec::new(),
                    logistic: true,
                }
            })
            .collect()
    }

    #[test]
    fn band_shifts_give_every_band_s_hazard_from_one_dot_product() {
        let n = 50;
        let hazard = banded(n, 7);
        let shift = BandShift::of(&hazard).expect("a shift");
        assert_eq!(shift.start, 4);
        let arm = ArmInputs {
            contact: true,
            ret: constant(n, -0.5, true),
            hazard: hazard.into(),
            margin: constant(n, 25.0, false),
            package: vec![Package::Both; n],
        };
        let e = Economics::default();
        let mut sim = Simulator::new(vec![arm], vec![1, 4, 7, 13, 25, 37], &e).unwrap();
        let mut c = sim.fitted();
        c.hazard = vec![-3.0, 0.5, -0.4, 0.2, 0.6, -0.5, 0.3, -0.2, 0.1];
        let fast: Vec<Outcome> = (0..n).map(|i| sim.outcome(0, i, &c)).collect();
        sim.shifts = vec![None];
        let slow: Vec<Outcome> = (0..n).map(|i| sim.outcome(0, i, &c)).collect();
        for (f, s) in fast.iter().zip(&slow) {
            assert!(
                (f.value - s.value).abs() <= 1e-12 * s.value.abs(),
                "{f:?} {s:?}"
            );
            assert!(
                (f.months - s.months).abs() <= 1e-12 * s.months,
                "{f:?} {s:?}"
            );
        }
        // Tails that vary by row (a calibrated tree score per band), a
        // single band and bands of another width have none.
        let mut varying = banded(n, 7);
        varying[2].features[9 + 8] += 0.5;
        assert!(BandShift::of(&varying).is_none());
        assert!(BandShift::of(&banded(n, 7)[..1]).is_none());
        let mut narrow = banded(n, 7);
        narrow[3].width = 3;
        assert!(BandShift::of(&narrow).is_none());
        // Band 0's part with the shifts (what a pooled logistic hazard
        // gives the simulation) simulates every row and draw to the bit as
        // every band's part does; a shift of another width is refused.
        let each = banded(n, 7);
        let found = BandShift::of(&each).expect("a shift");
        let shifted = BandParts::Shifted {
            first: each[0].clone(),
            start: found.start,
            shift: found.shift.clone(),
        };
        let sim_of = |hazard: BandParts| {
            let arm = |contact: bool, hazard: BandParts| ArmInputs {
                contact,
                ret: constant(n, -0.5, true),
                hazard,
                margin: constant(n, 25.0, false),
                package: (0..n).map(|i| PACKAGES[i % 4]).collect(),
            };
            Simulator::new(
                vec![arm(false, hazard.clone()), arm(true, hazard)],
                vec![1, 4, 7, 13, 25, 37],
                &e,
            )
        };
        let (a, b) = (
            sim_of(each.into()).unwrap(),
            sim_of(shifted.clone()).unwrap(),
        );
        let bits = |o: &Outcome| [o.value.to_bits(), o.months.to_bits(), o.variance.to_bits()];
        for (x, y) in a.point().iter().flatten().zip(b.point().iter().flatten()) {
            assert_eq!(bits(x), bits(y));
        }
        let policies = vec![(0..n).map(|i| (i % 2 == 0).then_some(1)).collect()];
        assert_eq!(a.replicates(7, 3, &policies), b.replicates(7, 3, &policies));
        let BandParts::Shifted {
            first,
            start,
            mut shift,
        } = shifted
        else {
            unreachable!()
        };
        shift[2].push(0.0);
        assert!(
            sim_of(BandParts::Shifted {
                first,
                start,
                shift
            })
            .is_err()
        );
    }

    /// The month-by-month recursion as written in the module documentation,
    /// month by month with each month's band, factor and cost looked up.
    fn outcome_by_months(sim: &Simulator, bands: &[u32], a: usize, i: usize, c: &Coefs) -> Outcome {
        let arm = &sim.arms[a];
        let e = &sim.economics;
        let d = e.discounting();
        let p = arm.ret.predict_row(i, &c.ret).clamp(0.0, 1.0);
        let m = arm.margin.predict_row(i, &c.margin);
        let (mut alive, mut value, mut cost, mut months, mut g, mut eg2) =
            (1.0, 0.0, 0.0, 0.0, 0.0, 0.0);
        for t in 1..=d.horizon() {
            let band = bands.iter().rposition(|b| t >= *b).unwrap_or(0);
            let h = arm.hazard.parts()[band]
                .predict_row(i, &c.hazard)
                .clamp(0.0, 1.0);
            let f = d.factor(t);
            let c_t = e.offer_cost_in_month(arm.package[i], t);
            value += f * m * alive;
            cost += f * c_t * alive;
            months += alive;
            g += f * (m - c_t);
            eg2 += alive * h * g * g;
            alive -= alive * h;
        }
        eg2 += alive * g * g;
        let net = value - cost;
        let contact = if arm.contact { e.contact_cost } else { 0.0 };
        Outcome {
            p_return: p,
            value,
            offer_cost: cost,
            margin: m,
            months,
            profit: p * net - contact,
            variance: (p * eg2 - (p * net).powi(2)).max(0.0),
        }
    }

    #[test]
    fn outcomes_match_the_month_by_month_recursion_for_every_package_and_band_layout() {
        let n = 40;
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut normal = || -> f64 { StandardNormal.sample(&mut rng) };
        let margins: Vec<f64> = (0..n).map(|_| 30.0 + 10.0 * normal()).collect();
        let packages: Vec<Package> = (0..n).map(|i| PACKAGES[i % 4]).collect();
        let cases: [(Vec<u32>, u32); 4] = [
            (vec![1, 4, 7, 13, 25, 37], 60),
            (vec![1], 60),
            // A horizon that ends inside a band, before the last bands.
            (vec![1, 4, 7, 13, 25, 37], 10),
            // A horizon shorter than the offers' terms.
            (vec![1, 2, 3], 2),
        ];
        for (bands, horizon) in cases {
            let e = Economics {
                horizon_months: horizon,
                ..Economics::default()
            };
            let mut hazard = banded(n, 5);
            hazard.truncate(bands.len());
            let arm = ArmInputs {
                contact: true,
                ret: constant(n, -0.4, true),
                hazard: hazard.into(),
                margin: LinearPart {
                    features: margins.clone(),
                    width: 1,
                    coef: vec![1.0],
                    covariance: Vec::new(),
                    logistic: false,
                },
                package: packages.clone(),
            };
            let sim = Simulator::new(vec![arm], bands.clone(), &e).unwrap();
            let c = sim.fitted();
            for i in 0..n {
                let (got, want) = (
                    sim.outcome(0, i, &c),
                    outcome_by_months(&sim, &bands, 0, i, &c),
                );
                let close = |x: f64, y: f64| (x - y).abs() <= 1e-10 * (1.0 + y.abs());
                assert!(
                    close(got.value, want.value)
                        && close(got.offer_cost, want.offer_cost)
                        && close(got.months, want.months)
                        && close(got.profit, want.profit)
                        && close(got.variance, want.variance),
                    "bands {bands:?}, horizon {horizon}, row {i}: {got:?} against {want:?}"
                );
            }
        }
    }

    #[test]
    fn value_is_the_discounted_annuity_of_the_survival_curve() {
        // P(return) 0.4, hazard 5% a month, margin 30, discount 20 x 6.
        let e = Economics {
            horizon_months: 24,
            ..Economics::default()
        };
        let arm = ArmInputs {
            contact: true,
            ret: constant(1, logit(0.4), true),
            hazard: vec![constant(1, logit(0.05), true)].into(),
            margin: constant(1, 30.0, false),
            package: vec![Package::Discount],
        };
        let sim = Simulator::new(vec![arm], vec![1], &e).unwrap();
        let o = sim.point()[0][0];
        let d = e.discounting();
        let mut want_v = 0.0;
        let mut want_c = 0.0;
        let mut want_months = 0.0;
        for t in 1..=24u32 {
            let alive = 0.95f64.powi(t as i32 - 1);
            want_months += alive;
            want_v += d.factor(t) * 30.0 * alive;
            if t <= 6 {
                want_c += d.factor(t) * 20.0 * alive;
            }
        }
        assert!((o.p_return - 0.4).abs() < 1e-12);
        assert!((o.value - want_v).abs() < 1e-9, "{} vs {want_v}", o.value);
        assert!((o.offer_cost - want_c).abs() < 1e-9);
        // Months billed within the horizon: (1 - 0.95^24) / 0.05.
        assert!((o.months - want_months).abs() < 1e-9 && (want_months - 14.2).abs() < 0.1);
        assert_eq!(o.margin, 30.0);
        assert!((o.profit - (0.4 * (want_v - want_c) - 2.0)).abs() < 1e-9);
        // The variance matches a direct simulation of B g(T).
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let draws: Vec<f64> = (0..200_000)
            .map(|_| {
                use rand::Rng;
                if !rng.random_bool(0.4) {
                    return -2.0;
                }
                let mut g = 0.0;
                for t in 1..=24u32 {
                    let c = if t <= 6 { 20.0 } else { 0.0 };
                    g += d.factor(t) * (30.0 - c);
                    if rng.random_bool(0.05) {
                        break;
                    }
                }
                g - 2.0
            })
            .collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let var = draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / draws.len() as f64;
        assert!(
            (mean - o.profit).abs() < 0.01 * o.profit.abs() + 0.5,
            "{mean} vs {}",
            o.profit
        );
        assert!(
            (var / o.variance - 1.0).abs() < 0.03,
            "{var} vs {}",
            o.variance
        );
    }

    #[test]
    fn replicates_are_seeded_and_spread_with_the_covariance() {
        let n = 50;
        let mk = |cov: Vec<f64>| {
            let mut ret = constant(n, logit(0.3), true);
            ret.covariance = cov;
            ArmInputs {
                contact: false,
                ret,
                hazard: vec![constant(n, logit(0.03), true)].into(),
                margin: constant(n, 20.0, false),
                package: vec![Package::None; n],
            }
        };
        let e = Economics::default();
        let fixed = Simulator::new(vec![mk(Vec::new())], vec![1], &e).unwrap();
        let r = fixed.replicates(5, 1, &[]);
        assert!(
            r.windows(2).all(|w| w[0] == w[1]),
            "no covariance: no spread"
        );
        let sim = Simulator::new(vec![mk(vec![0.04])], vec![1], &e).unwrap();
        let a = sim.replicates(200, 7, &[vec![None; n]]);
        let b = sim.replicates(200, 7, &[vec![None; n]]);
        assert_eq!(a, b);
        let recaptures: Vec<f64> = a.iter().map(|r| r.arms[0].recaptures).collect();
        let (lo, hi) = (quantile(&recaptures, 0.05), quantile(&recaptures, 0.95));
        // logit sd 0.2 around 0.3: 90% of P within about 0.3 +- 0.069.
        assert!(lo < 15.0 && hi > 15.0, "{lo} {hi}");
        assert!(
            (hi - lo) / n as f64 > 0.10 && (hi - lo) / (n as f64) < 0.18,
            "{lo} {hi}"
        );
        assert_eq!(a[0].policies[0], a[0].arms[0].profit);
    }

    /// Totals at many draws, from each block's matrix products, are the
    /// sums of each row's own outcome at each draw, over rows that fill
    /// some blocks and part of another, arms whose hazard bands shift and
    /// one whose bands do not, every package and two policies.
    #[test]
    fn totals_at_many_draws_are_the_rows_own_outcomes_summed() {
        let n = 2 * REPLICATE_BLOCK + 37;
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut normal = || -> f64 { StandardNormal.sample(&mut rng) };
        let mut features = |width: usize| -> Vec<f64> {
            (0..n)
                .flat_map(|_| {
                    let mut row = vec![1.0];
                    row.extend((1..width).map(|_| normal()));
                    row
                })
                .collect()
        };
        // The return model uncertain (for the win rates' draws).
        let ret = |features: Vec<f64>| LinearPart {
            features,
            width: 4,
            coef: vec![-0.3, 0.4, -0.2, 0.1],
            covariance: (0..16)
                .map(|k| if k % 5 == 0 { 0.05 } else { 0.0 })
                .collect(),
            logistic: true,
        };
        let margin = |features: Vec<f64>| LinearPart {
            features,
            width: 2,
            coef: vec![30.0, 4.0],
            covariance: Vec::new(),
            logistic: false,
        };
        let mut unshifted = banded(n, 9);
        for (b, part) in unshifted.iter_mut().enumerate() {
            for i in 0..n {
                part.features[i * 9 + 8] += 0.01 * (i % 7) as f64 * b as f64;
            }
        }
        assert!(BandShift::of(&unshifted).is_none());
        let arm =
            |contact: bool, hazard: Vec<LinearPart>, shift: usize, r: Vec<f64>, m: Vec<f64>| {
                ArmInputs {
                    contact,
                    ret: ret(r),
                    hazard: hazard.into(),
                    margin: margin(m),
                    package: (0..n).map(|i| PACKAGES[(i + shift) % 4]).collect(),
                }
            };
        let arms = vec![
            arm(false, banded(n, 3), 0, features(4), features(2)),
            arm(true, banded(n, 3), 1, features(4), features(2)),
            arm(true, unshifted, 2, features(4), features(2)),
        ];
        let sim = Simulator::new(arms, vec![1, 4, 7, 13, 25, 37], &Economics::default()).unwrap();
        assert!(sim.shifts[0].is_some() && sim.shifts[2].is_none());
        let fitted = sim.fitted();
        let mut jitter = |v: &[f64], scale: f64| -> Vec<f64> {
            v.iter().map(|x| x + scale * normal()).collect()
        };
        let draws: Vec<Coefs> = (0..5)
            .map(|_| Coefs {
                ret: jitter(&fitted.ret, 0.2),
                hazard: jitter(&fitted.hazard, 0.1),
                margin: jitter(&fitted.margin, 2.0),
            })
            .collect();
        let policies = vec![
            (0..n)
                .map(|i| (i % 3 != 0).then_some(i % 3))
                .collect::<Vec<_>>(),
            vec![Some(2); n],
        ];
        let got = sim.totals_at(&draws, &policies);
        assert_eq!(got.len(), draws.len());
        let close = |x: f64, y: f64| (x - y).abs() <= 1e-11 * (1.0 + y.abs());
        for (c, rep) in draws.iter().zip(&got) {
            for (a, totals) in rep.arms.iter().enumerate() {
                let mut want = ArmTotals::default();
                for i in 0..n {
                    want.add(&sim.outcome(a, i, c));
                }
                assert!(
                    close(totals.recaptures, want.recaptures)
                        && close(totals.offer_spend, want.offer_spend)
                        && close(totals.second_lifetime_value, want.second_lifetime_value)
                        && close(totals.profit, want.profit)
                        && close(totals.variance, want.variance),
                    "arm {a}: {totals:?} against {want:?}"
                );
            }
            for (p, value) in policies.iter().zip(&rep.policies) {
                let want: f64 = (0..n)
                    .map(|i| sim.outcome(p[i].unwrap_or(0), i, c).profit)
                    .sum();
                assert!(close(*value, want), "{value} against {want}");
            }
        }
        // A draw alone (its lanes padded) is the same to the bit as in a
        // full group of lanes or in a group's remainder.
        assert_eq!(sim.totals(&draws[1], &policies), got[1]);
        assert_eq!(sim.totals(&draws[4], &policies), got[4]);
        // Win rates over seven draws (a group of lanes and three in the
        // next): each arm's share of the draws in which it beats arm 1,
        // counted draw by draw.
        let rates = sim.win_rates(1, 7, 5);
        let seeded: Vec<Coefs> = (0..7).map(|r| sim.draw(5, r)).collect();
        for (i, row) in rates.iter().enumerate() {
            for (a, rate) in row.iter().enumerate() {
                let wins = seeded
                    .iter()
                    .filter(|c| a != 1 && sim.outcome(a, i, c).profit > sim.outcome(1, i, c).profit)
                    .count();
                assert_eq!(*rate, wins as f64 / 7.0, "row {i}, arm {a}");
            }
        }
        assert!(rates.iter().flatten().any(|r| *r > 0.0 && *r < 1.0));
        assert!(sim.totals_at(&[], &policies).is_empty());
        // Coefficients longer than a part's rows (and shorter) are taken
        // over their common columns, as each outcome's dot product does.
        let mut odd = draws[0].clone();
        odd.margin.push(3.0);
        odd.ret.pop();
        let got = sim.totals(&odd, &policies);
        for (a, totals) in got.arms.iter().enumerate() {
            let want: f64 = (0..n).map(|i| sim.outcome(a, i, &odd).profit).sum();
            assert!(
                close(totals.profit, want),
                "arm {a}: {} against {want}",
                totals.profit
            );
        }
    }

    #[test]
    fn quantiles_interpolate() {
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), 2.0);
        assert_eq!(quantile(&[1.0, 2.0], 0.25), 1.25);
        assert!(quantile(&[], 0.5).is_nan());
    }
}
