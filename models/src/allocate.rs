//! Budgeted allocation of offers: each subscriber gets at most one arm, to
//! maximise the total expected incremental profit under a maximum number of
//! contacts, a maximum expected spend and a capacity per arm (a
//! multiple-choice knapsack with several resources).
//!
//! The solver works from the Lagrangian dual: for multipliers `l >= 0` on
//! the limits, `D(l) = sum_i max(0, max_a gain_ia - l . use_ia) + l . limit`
//! bounds every feasible allocation's total from above; coordinate descent
//! on the (convex) dual gives the bound that is reported. A feasible
//! allocation is then built greedily: first each subscriber's best arm at
//! the dual prices, in order of priced gain, while it fits; then any
//! remaining (subscriber, arm) pair in order of gain per share of the
//! limits it uses; then upgrades to a better arm that still fit. The
//! optimality gap is the bound minus the allocation's total. With one limit
//! this is the convex-hull greedy of the multi-armed Qini work (Sverdrup et
//! al., `maq`); when every limit is slack it is the unconstrained optimum.
//! Problems with at most [`EXACT_MAX`] subscribers with a profitable arm are
//! solved exactly by depth-first search.

use rayon::prelude::*;

/// Subscribers with a profitable arm up to which the search is exact.
pub const EXACT_MAX: usize = 14;

/// Subgradient steps after the coordinate descent on the dual.
const SUBGRADIENT_STEPS: usize = 200;

/// The limits; `None` is unlimited.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Limits {
    /// Most subscribers contacted.
    pub max_contacts: Option<f64>,
    /// Most expected spend (contact plus expected offer cost).
    pub max_spend: Option<f64>,
    /// Most subscribers per arm (one entry per arm).
    pub arm_capacity: Vec<Option<f64>>,
}

/// The problem: `gain[i * arms + a]` the expected incremental profit of
/// giving subscriber `i` arm `a`, `spend[i * arms + a]` its expected spend.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem<'a> {
    /// Arms per subscriber.
    pub arms: usize,
    /// Incremental profit per (subscriber, arm).
    pub gain: &'a [f64],
    /// Expected spend per (subscriber, arm).
    pub spend: &'a [f64],
    /// Limits.
    pub limits: &'a Limits,
}

/// The allocation and its certificate.
#[derive(Debug, Clone, PartialEq)]
pub struct Allocation {
    /// Arm per subscriber, `None`: no offer.
    pub choice: Vec<Option<usize>>,
    /// Total incremental profit.
    pub total: f64,
    /// Upper bound on any feasible allocation's total.
    pub bound: f64,
    /// Whether the allocation is proven optimal (exact search, or the
    /// bound met).
    pub exact: bool,
    /// Contacts, spend and per-arm counts used.
    pub used: Usage,
}

/// Resources used by an allocation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Usage {
    /// Contacts.
    pub contacts: f64,
    /// Expected spend.
    pub spend: f64,
    /// Subscribers per arm.
    pub per_arm: Vec<f64>,
}

impl Allocation {
    /// Bound minus total (0 when optimal).
    pub fn gap(&self) -> f64 {
        (self.bound - self.total).max(0.0)
    }
}

impl Problem<'_> {
    fn n(&self) -> usize {
        self.gain.len() / self.arms.max(1)
    }

    /// Subscriber `i`'s best gain, 0 when no arm is profitable.
    fn best_gain(&self, i: usize) -> f64 {
        (0..self.arms)
            .map(|a| self.gain[i * self.arms + a])
            .fold(0.0, f64::max)
    }

    /// Resource vector of (i, a): contacts, spend, then one per arm.
    fn fits(&self, used: &Usage, i: usize, a: usize, sign: f64) -> bool {
        let l = self.limits;
        let s = self.spend[i * self.arms + a];
        let eps = 1e-9;
        l.max_contacts
            .is_none_or(|m| used.contacts + sign <= m + eps)
            && l.max_spend.is_none_or(|m| used.spend + sign * s <= m + eps)
            && l.arm_capacity
                .get(a)
                .copied()
                .flatten()
                .is_none_or(|m| used.per_arm[a] + sign <= m + eps)
    }

    fn take(&self, used: &mut Usage, i: usize, a: usize, sign: f64) {
        used.contacts += sign;
        used.spend += sign * self.spend[i * self.arms + a];
        used.per_arm[a] += sign;
    }

    /// Priced gain of (i, a) at multipliers `m` (contacts, spend, arms...).
    fn priced(&self, m: &[f64], i: usize, a: usize) -> f64 {
        let k = i * self.arms + a;
        self.gain[k] - m[0] - m[1] * self.spend[k] - m[2 + a]
    }

    fn limit_vector(&self) -> Vec<f64> {
        let l = self.limits;
        let mut v = vec![
            l.max_contacts.unwrap_or(f64::INFINITY),
            l.max_spend.unwrap_or(f64::INFINITY),
        ];
        v.extend((0..self.arms).map(|a| {
            l.arm_capacity
                .get(a)
                .copied()
                .flatten()
                .unwrap_or(f64::INFINITY)
        }));
        v
    }

    /// The dual function at multipliers `m`.
    fn dual(&self, m: &[f64], limits: &[f64]) -> f64 {
        // Collected in order and summed sequentially: the same bits for
        // any thread count.
        let per_row: Vec<f64> = (0..self.n())
            .into_par_iter()
            .map(|i| {
                (0..self.arms)
                    .map(|a| self.priced(m, i, a))
                    .fold(0.0, f64::max)
            })
            .collect();
        let inner: f64 = per_row.iter().sum();
        inner
            + m.iter()
                .zip(limits)
                .filter(|(x, _)| **x > 0.0)
                .map(|(x, l)| x * l)
                .sum::<f64>()
    }

    /// Coordinate descent on the dual over the finite limits.
    fn minimise_dual(&self) -> (Vec<f64>, f64, Vec<Vec<f64>>) {
        let limits = self.limit_vector();
        let mut m = vec![0.0; limits.len()];
        let mut best = self.dual(&m, &limits);
        let max_gain = self.gain.iter().copied().fold(0.0, f64::max);
        let min_spend = self
            .spend
            .iter()
            .copied()
            .filter(|s| *s > 0.0)
            .fold(f64::INFINITY, f64::min);
        for _sweep in 0..6 {
            let before = best;
            for r in 0..m.len() {
                if !limits[r].is_finite() {
                    continue;
                }
                let hi = if r == 1 {
                    if min_spend.is_finite() {
                        max_gain / min_spend
                    } else {
                        0.0
                    }
                } else {
                    max_gain
                };
                // Golden section on [0, hi]; the dual is convex in each
                // multiplier.
                let (mut a, mut b) = (0.0f64, hi.max(0.0));
                let phi = 0.5 * (5f64.sqrt() - 1.0);
                let eval = |x: f64, m: &mut Vec<f64>| {
                    let keep = m[r];
                    m[r] = x;
                    let v = self.dual(m, &limits);
                    m[r] = keep;
                    v
                };
                for _ in 0..60 {
                    let c = b - phi * (b - a);
                    let d = a + phi * (b - a);
                    if eval(c, &mut m) <= eval(d, &mut m) {
                        b = d;
                    } else {
                        a = c;
                    }
                }
                let x = 0.5 * (a + b);
                for cand in [x, 0.0] {
                    let v = eval(cand, &mut m);
                    if v < best {
                        best = v;
                        m[r] = cand;
                    }
                }
            }
            if before - best <= 1e-9 * best.abs().max(1.0) {
                break;
            }
        }
        // Coordinate descent can stall at a kink of the piecewise-linear
        // dual: projected subgradient steps from there, keeping the best
        // point and a trail of points for the primal heuristic.
        let mut trail = vec![m.clone()];
        let mut x = m.clone();
        let scale: Vec<f64> = limits
            .iter()
            .enumerate()
            .map(|(r, l)| {
                if !l.is_finite() {
                    0.0
                } else if r == 1 {
                    (max_gain / min_spend.max(1e-12)).max(1e-12)
                } else {
                    max_gain.max(1e-12)
                }
            })
            .collect();
        for it in 0..SUBGRADIENT_STEPS {
            let g = self.subgradient(&x, &limits);
            let step = 0.1 / (1.0 + it as f64).sqrt();
            for r in 0..x.len() {
                if limits[r].is_finite() {
                    let rel = g[r] / limits[r].abs().max(1.0);
                    x[r] = (x[r] - step * scale[r] * rel.clamp(-1.0, 1.0)).max(0.0);
                }
            }
            let v = self.dual(&x, &limits);
            if v < best {
                best = v;
                m = x.clone();
            }
            if it % 25 == 24 {
                trail.push(m.clone());
            }
        }
        trail.push(m.clone());
        (m, best, trail)
    }

    /// A subgradient of the dual at `m`: limits minus the use of each
    /// subscriber's best priced arm.
    fn subgradient(&self, m: &[f64], limits: &[f64]) -> Vec<f64> {
        let chosen: Vec<Option<usize>> = (0..self.n())
            .into_par_iter()
            .map(|i| {
                let (mut bv, mut ba) = (0.0, None);
                for a in 0..self.arms {
                    let v = self.priced(m, i, a);
                    if v > bv {
                        bv = v;
                        ba = Some(a);
                    }
                }
                ba
            })
            .collect();
        let mut use_ = vec![0.0; limits.len()];
        for (i, c) in chosen.iter().enumerate() {
            if let Some(a) = c {
                use_[0] += 1.0;
                use_[1] += self.spend[i * self.arms + a];
                use_[2 + a] += 1.0;
            }
        }
        limits
            .iter()
            .zip(use_)
            .map(|(l, u)| if l.is_finite() { l - u } else { 0.0 })
            .collect()
    }

    fn empty_usage(&self) -> Usage {
        Usage {
            contacts: 0.0,
            spend: 0.0,
            per_arm: vec![0.0; self.arms],
        }
    }

    /// Greedy allocation at multipliers `m`.
    fn greedy(&self, m: &[f64]) -> (Vec<Option<usize>>, Usage) {
        let n = self.n();
        let mut choice = vec![None; n];
        let mut used = self.empty_usage();
        // 1. Each subscriber's best arm at the dual prices.
        let mut first: Vec<(f64, usize, usize)> = (0..n)
            .filter_map(|i| {
                (0..self.arms)
                    .filter(|a| self.gain[i * self.arms + a] > 0.0)
                    .map(|a| (self.priced(m, i, a), i, a))
                    .max_by(|x, y| x.0.total_cmp(&y.0).then(y.2.cmp(&x.2)))
                    .filter(|(v, _, _)| *v > 0.0)
            })
            .collect();
        first.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
        for (_, i, a) in first {
            if self.fits(&used, i, a, 1.0) {
                choice[i] = Some(a);
                self.take(&mut used, i, a, 1.0);
            }
        }
        // 2. Any remaining pair, by gain per share of the limits used.
        let limits = self.limit_vector();
        let share = |i: usize, a: usize| -> f64 {
            let s = self.spend[i * self.arms + a];
            let mut w = 0.0;
            if limits[0].is_finite() {
                w += 1.0 / limits[0].max(1e-12);
            }
            if limits[1].is_finite() {
                w += s / limits[1].max(1e-12);
            }
            if limits[2 + a].is_finite() {
                w += 1.0 / limits[2 + a].max(1e-12);
            }
            w.max(1e-300)
        };
        let mut rest: Vec<(f64, usize, usize)> = (0..n)
            .filter(|i| choice[*i].is_none())
            .flat_map(|i| (0..self.arms).map(move |a| (i, a)))
            .filter(|(i, a)| self.gain[i * self.arms + a] > 0.0)
            .map(|(i, a)| (self.gain[i * self.arms + a] / share(i, a), i, a))
            .collect();
        rest.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
        for (_, i, a) in rest {
            if choice[i].is_none() && self.fits(&used, i, a, 1.0) {
                choice[i] = Some(a);
                self.take(&mut used, i, a, 1.0);
            }
        }
        // 3. Upgrades to a better arm that still fit.
        let mut ups: Vec<(f64, usize, usize)> = (0..n)
            .filter_map(|i| choice[i].map(|c| (i, c)))
            .flat_map(|(i, c)| {
                let g0 = self.gain[i * self.arms + c];
                (0..self.arms)
                    .filter(move |a| self.gain[i * self.arms + a] > g0)
                    .map(move |a| (self.gain[i * self.arms + a] - g0, i, a))
            })
            .collect();
        ups.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
        for (_, i, a) in ups {
            let Some(c) = choice[i] else { continue };
            if self.gain[i * self.arms + a] <= self.gain[i * self.arms + c] {
                continue;
            }
            self.take(&mut used, i, c, -1.0);
            if self.fits(&used, i, a, 1.0) {
                choice[i] = Some(a);
                self.take(&mut used, i, a, 1.0);
            } else {
                self.take(&mut used, i, c, 1.0);
            }
        }
        (choice, used)
    }

    fn total(&self, choice: &[Option<usize>]) -> f64 {
        choice
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.map(|a| self.gain[i * self.arms + a]))
            .sum()
    }

    /// Exact search over the subscribers in `who` (the rest get nothing).
    fn exact(&self, who: &[usize]) -> (Vec<Option<usize>>, Usage) {
        let n = self.n();
        // Best gain of each subscriber, for the bound.
        let best: Vec<f64> = who.iter().map(|&i| self.best_gain(i)).collect();
        let mut suffix = vec![0.0; who.len() + 1];
        for k in (0..who.len()).rev() {
            suffix[k] = suffix[k + 1] + best[k];
        }
        struct State {
            current: Vec<Option<usize>>,
            used: Usage,
            value: f64,
            best: Vec<Option<usize>>,
            best_value: f64,
        }
        fn dfs(p: &Problem<'_>, who: &[usize], suffix: &[f64], k: usize, s: &mut State) {
            if s.value + suffix[k] <= s.best_value + 1e-12 {
                return;
            }
            if k == who.len() {
                s.best_value = s.value;
                s.best = s.current.clone();
                return;
            }
            let i = who[k];
            let mut arms: Vec<usize> = (0..p.arms)
                .filter(|a| p.gain[i * p.arms + a] > 0.0)
                .collect();
            arms.sort_by(|x, y| p.gain[i * p.arms + y].total_cmp(&p.gain[i * p.arms + x]));
            for a in arms {
                if p.fits(&s.used, i, a, 1.0) {
                    p.take(&mut s.used, i, a, 1.0);
                    s.current[k] = Some(a);
                    s.value += p.gain[i * p.arms + a];
                    dfs(p, who, suffix, k + 1, s);
                    s.value -= p.gain[i * p.arms + a];
                    s.current[k] = None;
                    p.take(&mut s.used, i, a, -1.0);
                }
            }
            dfs(p, who, suffix, k + 1, s);
        }
        let mut s = State {
            current: vec![None; who.len()],
            used: self.empty_usage(),
            value: 0.0,
            best: vec![None; who.len()],
            best_value: 0.0,
        };
        dfs(self, who, &suffix, 0, &mut s);
        let mut choice = vec![None; n];
        let mut used = self.empty_usage();
        for (k, &i) in who.iter().enumerate() {
            if let Some(a) = s.best[k] {
                choice[i] = Some(a);
                self.take(&mut used, i, a, 1.0);
            }
        }
        (choice, used)
    }
}

/// Solves `p` (see the module documentation).
pub fn allocate(p: &Problem<'_>) -> Allocation {
    solve(p, true)
}

/// As [`allocate`], without the exact search for small problems (to test
/// the greedy and its bound).
pub fn allocate_greedy(p: &Problem<'_>) -> Allocation {
    solve(p, false)
}

fn solve(p: &Problem<'_>, exact_small: bool) -> Allocation {
    let n = p.n();
    let who: Vec<usize> = (0..n)
        .filter(|&i| (0..p.arms).any(|a| p.gain[i * p.arms + a] > 0.0))
        .collect();
    // Unconstrained optimum: each subscriber's best profitable arm.
    let zero = vec![0.0; 2 + p.arms];
    let (free, free_used) = p.greedy(&zero);
    let free_total = p.total(&free);
    let unconstrained: f64 = who.iter().map(|&i| p.best_gain(i)).sum();
    if (free_total - unconstrained).abs() <= 1e-9 * unconstrained.abs().max(1.0) {
        return Allocation {
            choice: free,
            total: free_total,
            bound: unconstrained,
            exact: true,
            used: free_used,
        };
    }
    let (m, bound, trail) = p.minimise_dual();
    let bound = bound.min(unconstrained);
    if exact_small && who.len() <= EXACT_MAX {
        let (choice, used) = p.exact(&who);
        let total = p.total(&choice);
        return Allocation {
            choice,
            total,
            bound: total,
            exact: true,
            used,
        };
    }
    let mut best = (free, free_used, free_total);
    let candidates = [1.0, 0.95, 1.05, 0.9, 1.1, 0.75, 1.3]
        .iter()
        .map(|s| m.iter().map(|x| x * s).collect::<Vec<f64>>())
        .chain(trail);
    for ms in candidates {
        let (c, u) = p.greedy(&ms);
        let t = p.total(&c);
        if t > best.2 + 1e-12 {
            best = (c, u, t);
        }
    }
    let (choice, used, total) = best;
    Allocation {
        exact: bound - total <= 1e-9 * bound.abs().max(1.0),
        bound: bound.max(total),
        choice,
        total,
        used,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn feasible(p: &Problem<'_>, choice: &[Option<usize>]) -> bool {
        let mut used = p.empty_usage();
        for (i, c) in choice.iter().enumerate() {
            if let Some(a) = c {
                p.take(&mut used, i, *a, 1.0);
            }
        }
        let l = p.limits;
        l.max_contacts.is_none_or(|m| used.contacts <= m + 1e-9)
            && l.max_spend.is_none_or(|m| used.spend <= m + 1e-9)
            && (0..p.arms).all(|a| {
                l.arm_capacity
                    .get(a)
                    .copied()
                    .flatten()
                    .is_none_or(|m| used.per_arm[a] <= m + 1e-9)
            })
    }

    /// Every allocation, enumerated.
    fn brute(p: &Problem<'_>) -> f64 {
        let n = p.n();
        let options = p.arms + 1;
        let mut best = 0.0f64;
        let mut code = vec![0usize; n];
        loop {
            let choice: Vec<Option<usize>> =
                code.iter().map(|c| (*c < p.arms).then_some(*c)).collect();
            if feasible(p, &choice) {
                best = best.max(p.total(&choice));
            }
            let mut k = 0;
            loop {
                if k == n {
                    return best;
                }
                code[k] += 1;
                if code[k] < options {
                    break;
                }
                code[k] = 0;
                k += 1;
            }
        }
    }

    fn random_case(rng: &mut ChaCha8Rng, n: usize, arms: usize) -> (Vec<f64>, Vec<f64>, Limits) {
        let gain: Vec<f64> = (0..n * arms)
            .map(|_| rng.random_range(-20.0..100.0))
            .collect();
        let spend: Vec<f64> = (0..n * arms).map(|_| rng.random_range(2.0..80.0)).collect();
        let limits = Limits {
            max_contacts: rng.random_bool(0.6).then(|| rng.random_range(0..=n) as f64),
            max_spend: rng.random_bool(0.6).then(|| rng.random_range(20.0..200.0)),
            arm_capacity: (0..arms)
                .map(|_| rng.random_bool(0.3).then(|| rng.random_range(0..3) as f64))
                .collect(),
        };
        (gain, spend, limits)
    }

    #[test]
    fn matches_brute_force_on_small_cases_and_the_bound_holds() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (mut greedy_exact, mut cases) = (0, 0);
        for _ in 0..300 {
            let n = rng.random_range(1..=7);
            let arms = 4;
            let (gain, spend, limits) = random_case(&mut rng, n, arms);
            let p = Problem {
                arms,
                gain: &gain,
                spend: &spend,
                limits: &limits,
            };
            let best = brute(&p);
            let a = allocate(&p);
            assert!(feasible(&p, &a.choice), "infeasible: {a:?}");
            assert!((a.total - best).abs() < 1e-9, "{} vs brute {best}", a.total);
            let g = allocate_greedy(&p);
            assert!(feasible(&p, &g.choice));
            assert!(g.total <= best + 1e-9);
            assert!(
                g.bound >= best - 1e-6,
                "bound {} below optimum {best}",
                g.bound
            );
            cases += 1;
            if (g.total - best).abs() < 1e-9 {
                greedy_exact += 1;
            }
        }
        // The greedy alone finds the optimum in most small cases.
        assert!(greedy_exact * 10 >= cases * 7, "{greedy_exact} of {cases}");
    }

    #[test]
    fn contacts_only_takes_the_best_gains() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let (n, arms) = (500, 4);
        let gain: Vec<f64> = (0..n * arms)
            .map(|_| rng.random_range(-10.0..50.0))
            .collect();
        let spend = vec![1.0; n * arms];
        let limits = Limits {
            max_contacts: Some(120.0),
            ..Limits::default()
        };
        let p = Problem {
            arms,
            gain: &gain,
            spend: &spend,
            limits: &limits,
        };
        let a = allocate(&p);
        let mut best: Vec<f64> = (0..n)
            .map(|i| (0..arms).map(|a| gain[i * arms + a]).fold(0.0, f64::max))
            .collect();
        best.sort_by(|x, y| y.total_cmp(x));
        let want: f64 = best[..120].iter().sum();
        assert!((a.total - want).abs() < 1e-6, "{} vs {want}", a.total);
        assert_eq!(a.used.contacts, 120.0);
        assert!(a.gap() < 1e-6 * want, "gap {}", a.gap());
    }

    #[test]
    fn large_cases_stay_feasible_with_a_small_gap() {
        let mut rng = ChaCha8Rng::seed_from_u64(13);
        let (n, arms) = (2_000, 4);
        let gain: Vec<f64> = (0..n * arms)
            .map(|_| rng.random_range(-20.0..100.0))
            .collect();
        let spend: Vec<f64> = (0..n * arms).map(|_| rng.random_range(2.0..80.0)).collect();
        let limits = Limits {
            max_contacts: Some(900.0),
            max_spend: Some(15_000.0),
            arm_capacity: vec![None, Some(200.0), None, None],
        };
        let p = Problem {
            arms,
            gain: &gain,
            spend: &spend,
            limits: &limits,
        };
        let a = allocate(&p);
        assert!(feasible(&p, &a.choice));
        eprintln!(
            "large case: total {} bound {} gap {:.3}%",
            a.total,
            a.bound,
            100.0 * a.gap() / a.bound
        );
        assert!(a.gap() / a.bound < 0.01, "gap {} of {}", a.gap(), a.bound);
    }
}
