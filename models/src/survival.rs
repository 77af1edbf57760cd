//! Discrete-time survival in whole months: subscriber-month expansion of
//! (possibly censored) durations, survival curves from monthly hazards,
//! restricted means, and the Kaplan–Meier estimate to check them against.

/// The months a duration contributes to a discrete-time hazard model, as
/// (month, churned in that month): months `1..=ceil(d)` ending in a churn
/// for an observed duration `d`, months `1..=floor(d)` without one for a
/// censored duration (only whole months are known survived), both cut at
/// `max_months`.
pub fn person_months(duration: f64, censored: bool, max_months: u32) -> Vec<(u32, bool)> {
    let d = duration.max(0.0);
    if censored {
        let m = (d.floor() as u32).min(max_months);
        (1..=m).map(|t| (t, false)).collect()
    } else {
        let m = (d.ceil() as u32).max(1);
        if m > max_months {
            (1..=max_months).map(|t| (t, false)).collect()
        } else {
            (1..=m).map(|t| (t, t == m)).collect()
        }
    }
}

/// S(t) for t = 1..=hazard.len(): the chance of still being a subscriber
/// at the end of month t, from the monthly hazards.
pub fn survival(hazard: &[f64]) -> Vec<f64> {
    let mut s = 1.0;
    hazard
        .iter()
        .map(|h| {
            s *= 1.0 - h.clamp(0.0, 1.0);
            s
        })
        .collect()
}

/// Expected months retained within the first `survival.len()` months:
/// sum over months of the mean of S at the month's start and end (churn
/// mid-month on average).
pub fn restricted_mean(survival: &[f64]) -> f64 {
    let mut prev = 1.0;
    let mut sum = 0.0;
    for s in survival {
        sum += (prev + s) / 2.0;
        prev = *s;
    }
    sum
}

/// Kaplan–Meier survival at the end of months 1..=`months` from durations
/// and censoring flags, on the same whole-month grid as [`person_months`].
pub fn kaplan_meier(durations: &[f64], censored: &[bool], months: u32) -> Vec<f64> {
    let m = months as usize;
    let mut at_risk = vec![0usize; m + 1];
    let mut events = vec![0usize; m + 1];
    for (d, c) in durations.iter().zip(censored) {
        for (t, e) in person_months(*d, *c, months) {
            at_risk[t as usize] += 1;
            if e {
                events[t as usize] += 1;
            }
        }
    }
    let hazard: Vec<f64> = (1..=m)
        .map(|t| {
            if at_risk[t] == 0 {
                0.0
            } else {
                events[t] as f64 / at_risk[t] as f64
            }
        })
        .collect();
    survival(&hazard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn person_months_by_hand() {
        assert_eq!(
            person_months(2.3, false, 60),
            [(1, false), (2, false), (3, true)]
        );
        assert_eq!(person_months(2.3, true, 60), [(1, false), (2, false)]);
        assert_eq!(person_months(0.2, false, 60), [(1, true)]);
        assert_eq!(person_months(0.2, true, 60), []);
        assert_eq!(person_months(9.0, false, 2), [(1, false), (2, false)]);
    }

    #[test]
    fn constant_hazard_gives_a_geometric_curve_and_km_recovers_it() {
        let s = survival(&[0.1; 3]);
        assert!((s[2] - 0.729).abs() < 1e-12);
        assert!((restricted_mean(&s) - (0.95 + 0.855 + 0.7695)).abs() < 1e-12);
        // 1000 subscribers, 100 churn in month 1, 90 in month 2, the rest
        // censored after two whole months.
        let mut d = vec![0.5; 100];
        d.extend(vec![1.5; 90]);
        d.extend(vec![2.0; 810]);
        let mut c = vec![false; 190];
        c.extend(vec![true; 810]);
        let km = kaplan_meier(&d, &c, 3);
        assert!((km[0] - 0.9).abs() < 1e-12 && (km[1] - 0.81).abs() < 1e-12);
        assert_eq!(km[2], km[1], "no one at risk in month 3: no drop");
    }
}
