//! The second lifetime: a discrete-time hazard on subscriber-months after
//! a return (month bands, leave reason, the arm that won the subscriber
//! back, first-lifetime behaviour) giving S(t), and a ridge regression of
//! the monthly margin; predicted against Kaplan–Meier restricted mean
//! duration by leave reason on the holdout.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use polars::prelude::*;
use winback_models::economics::{Arm, Economics};
use winback_models::learner::Ridge;
use winback_models::survival;

use crate::error::{Error, Result};
use crate::schema::{ARMS, LEAVE_REASONS, col};
use crate::stages::features::{
    DAYS_PER_MONTH, Encoding, FeatureSpec, Manifest, epoch_days, f, from_epoch_days,
};

use crate::artifact::design::Design;
use crate::artifact::evaluation::DurationCheck;
use crate::artifact::layout::{Layout, to_array};
use crate::artifact::{MarginModel, ModelKind, SecondLifetimeModel, WON_BACK_BY};

use super::harness::*;
use super::settings::TrainSettings;

/// Second lifetimes with the first lifetime's features (as of the
/// defection they followed), `monthly_margin` (see [`monthly_margins`])
/// and `months_retained` in billed months.
pub(crate) fn second_lifetime_rows(
    second: &DataFrame,
    lapsed: &DataFrame,
    history: &Economics,
) -> Result<DataFrame> {
    let features = lapsed.clone().lazy().drop(cols([f::LEAVE_REASON])).rename(
        [col::CHURNED_AT],
        ["previous_churned_at"],
        true,
    );
    let mut df = second
        .clone()
        .lazy()
        .join(
            features,
            [col(col::SUBSCRIBER_ID), col("previous_churned_at")],
            [col(col::SUBSCRIBER_ID), col("previous_churned_at")],
            JoinArgs::new(JoinType::Inner),
        )
        .sort(
            [col::SUBSCRIBER_ID, f::RETURNED_AT],
            SortMultipleOptions::default().with_maintain_order(true),
        )
        .collect()
        .map_err(Error::polars("second-lifetime model: rows"))?;
    let months = f64_column(&df, f::MONTHS_RETAINED)?;
    let (monthly, bills) = monthly_margins(&df, history, None)?;
    // Durations in billed months: a return billed for k months churned in
    // month k of its second lifetime (or, censored, survived k months),
    // the month grid on which the simulation values S(t - 1).
    let billed_months: Vec<f64> = bills
        .iter()
        .zip(&months)
        .map(|(b, m)| if *b >= 1.0 { *b } else { *m })
        .collect();
    df.with_column(Column::new("monthly_margin".into(), monthly))
        .and_then(|d| d.with_column(Column::new(MARGIN_BILLS.into(), bills)))
        .and_then(|d| d.with_column(Column::new(f::MONTHS_RETAINED.into(), billed_months)))
        .map_err(Error::polars("second-lifetime model: monthly margin"))?;
    Ok(df)
}

/// Bills behind each row's `monthly_margin`.
const MARGIN_BILLS: &str = "margin_bills";

/// Per second lifetime, the margin per billed month before the past
/// offer's costs, and the bills it rests on: the bills of the second
/// lifetime (those whose month has ended by `until`, when given), each
/// with what the offer that won the subscriber back took from it added
/// back under the terms of `history` (the past offers' terms): the
/// discount in full and the upgrade's cost where the bill has a cost to
/// serve (its margin is revenue less that cost, the upgrade inside it),
/// the margin rate times the discount where it has none (its margin is
/// that share of the discounted revenue; no upgrade cost is in it). The
/// simulation then charges each arm's own terms.
fn monthly_margins(
    df: &DataFrame,
    history: &Economics,
    until: Option<NaiveDate>,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let _span = tracing::debug_span!("monthly margins", rows = df.height()).entered();
    let err = |what: &str| Error::polars(format!("second-lifetime model: {what}"));
    let text = |name: &str| -> Result<Vec<Option<String>>> {
        Ok(df
            .column(name)
            .and_then(|c| c.str().cloned())
            .map_err(err(name))?
            .iter()
            .map(|v| v.map(str::to_string))
            .collect())
    };
    let (arm, reason) = (text(WON_BACK_BY)?, text(f::LEAVE_REASON)?);
    let returned: Vec<Option<i32>> = df
        .column(f::RETURNED_AT)
        .and_then(|c| c.cast(&DataType::Int32))
        .and_then(|c| c.i32().cloned())
        .map_err(err(f::RETURNED_AT))?
        .iter()
        .collect();
    // A list column as each row's span (null for a null list) in the
    // column's values, read once for all rows.
    type Spans = Vec<Option<(usize, usize)>>;
    let list = |name: &str, inner: DataType| -> Result<(Spans, Series)> {
        let ca = df
            .column(name)
            .and_then(|c| c.cast(&DataType::List(Box::new(inner))))
            .and_then(|c| c.list().cloned())
            .map_err(err(name))?;
        let mut spans = Vec::with_capacity(ca.len());
        let mut base = 0;
        for arr in ca.downcast_iter() {
            let offsets = arr.offsets().as_slice();
            spans.extend((0..arr.len()).map(|i| {
                arr.validity()
                    .is_none_or(|v| v.get_bit(i))
                    .then(|| (base + offsets[i] as usize, base + offsets[i + 1] as usize))
            }));
            base += arr.values().len();
        }
        Ok((spans, ca.get_inner()))
    };
    let (month_spans, months) = list(f::BILL_MONTHS, DataType::Int32)?;
    let (margin_spans, margins) = list(f::BILL_MARGINS, DataType::Float64)?;
    let (costed_spans, costed) = list(f::BILL_COSTED, DataType::Boolean)?;
    let months: Vec<Option<i32>> = months.i32().map_err(err(f::BILL_MONTHS))?.iter().collect();
    let margins: Vec<Option<f64>> = margins
        .f64()
        .map_err(err(f::BILL_MARGINS))?
        .iter()
        .collect();
    let costed: Vec<Option<bool>> = costed.bool().map_err(err(f::BILL_COSTED))?.iter().collect();
    // Month index (year * 12 + month) of a day number.
    let index = |day: i32| -> i64 {
        let d = from_epoch_days(day);
        i64::from(d.year()) * 12 + i64::from(d.month0())
    };
    // Bills of months up to this index are known by `until`.
    let known = until.map(|u| index(epoch_days(u + chrono::Duration::days(1))) - 1);
    let mut monthly = Vec::with_capacity(df.height());
    let mut counted = Vec::with_capacity(df.height());
    for i in 0..df.height() {
        let a = Arm::ALL
            .iter()
            .copied()
            .find(|a| arm[i].as_deref() == Some(a.name()))
            .unwrap_or(Arm::Control);
        let r = reason[i]
            .as_deref()
            .and_then(|r| LEAVE_REASONS.iter().position(|x| *x == r))
            .unwrap_or(LEAVE_REASONS.len() - 1);
        let package = history.package(a, r);
        let (mut sum, mut n) = (0.0, 0usize);
        if let (Some(start), Some(m), Some(v), Some(c)) = (
            returned[i],
            month_spans[i],
            margin_spans[i],
            costed_spans[i],
        ) {
            let (m, v, c) = (&months[m.0..m.1], &margins[v.0..v.1], &costed[c.0..c.1]);
            let first = index(start);
            for ((month, margin), has_cost) in m.iter().zip(v).zip(c) {
                let (Some(month), Some(margin)) = (*month, *margin) else {
                    continue;
                };
                let k = index(month);
                if known.is_some_and(|last| k > last) {
                    continue;
                }
                let t = u32::try_from(k - first + 1).unwrap_or(0);
                let discount = history.terms.discount_in_month(package, t);
                let upgrade = history.terms.upgrade_cost_in_month(package, t);
                sum += margin
                    + if has_cost.unwrap_or(false) {
                        discount + upgrade
                    } else {
                        history.margin_rate * discount
                    };
                n += 1;
            }
        }
        monthly.push(if n > 0 { sum / n as f64 } else { 0.0 });
        counted.push(n as f64);
    }
    Ok((monthly, counted))
}

/// The returns known before `d`: returned before it, durations censored
/// at it, margins from the bills whose month has ended by it.
pub(crate) fn censor_at(df: &DataFrame, d: NaiveDate, history: &Economics) -> Result<DataFrame> {
    let available = (lit(epoch_days(d)) - col(f::RETURNED_AT).cast(DataType::Int32))
        .cast(DataType::Float64)
        / lit(DAYS_PER_MONTH);
    let churned_before = col("next_churned_at")
        .is_not_null()
        .and(col("next_churned_at").lt(date_lit(d)));
    df.clone()
        .lazy()
        .filter(col(f::RETURNED_AT).lt(date_lit(d)))
        .with_columns([
            when(churned_before.clone())
                .then(col(f::MONTHS_RETAINED))
                .otherwise(available)
                .alias(f::MONTHS_RETAINED),
            when(churned_before)
                .then(col(f::CENSORED))
                .otherwise(lit(true))
                .alias(f::CENSORED),
        ])
        .collect()
        .map_err(Error::polars("second-lifetime model: training rows"))
        .and_then(|mut known| {
            let (monthly, bills) = monthly_margins(&known, history, Some(d))?;
            known
                .with_column(Column::new("monthly_margin".into(), monthly))
                .and_then(|k| k.with_column(Column::new(MARGIN_BILLS.into(), bills)))
                .map_err(Error::polars("second-lifetime model: censored margins"))?;
            Ok(known)
        })
}

/// Fits the second-lifetime hazard and margin models on returns joined to
/// the features of the defection they followed.
pub fn fit_second_lifetime(
    second: &DataFrame,
    lapsed: &DataFrame,
    manifest: &Manifest,
    history: &Economics,
    s: &TrainSettings,
    stamp: &Stamp,
) -> Result<SecondLifetimeModel> {
    let all = second_lifetime_rows(second, lapsed, history)?;
    let censor = |df: &DataFrame, d: NaiveDate| censor_at(df, d, history);
    // In time, training sees only what was known before the holdout:
    // returns before it, censored at its first day.
    let SplitRows { train, test, split } = split_rows(
        &all,
        f::RETURNED_AT,
        0,
        s,
        "second lifetime",
        Event {
            label: f::CENSORED,
            when: false,
        },
        Some(&censor),
    )?;
    // The hazard's manifest adds the winning arm as a one-hot feature.
    let mut arms: Vec<String> = ARMS.iter().map(|a| a.to_string()).collect();
    arms.insert(0, "none".into());
    let mut hazard_manifest = manifest.clone();
    hazard_manifest.features.push(FeatureSpec {
        name: WON_BACK_BY.into(),
        dtype: "str".into(),
        encoding: Encoding::OneHot,
        sources: vec![
            "winback_offers.arm".into(),
            "reactivations.reactivated_at".into(),
        ],
        categories: arms,
    });
    let fill = |df: DataFrame| -> Result<DataFrame> {
        df.lazy()
            .with_column(col(WON_BACK_BY).fill_null(lit("none")))
            .collect()
            .map_err(Error::polars("second-lifetime model: won_back_by"))
    };
    let (train, test) = (fill(train)?, fill(test)?);
    let features = choose_features(manifest, &train, &[], &[], "")?;
    // The hazard takes the winning arm as arm columns (returns no offer
    // won back, `none`, are the reference) and each arm's interaction with
    // the leave reason: an upgrade keeps a price leaver longer than it
    // keeps one who left over the service, and an arm's average over the
    // reasons misvalues both (on generated truth, upgrade's price leavers
    // were moved to the discount at a loss).
    let interact = if features.iter().any(|f| f == f::LEAVE_REASON) {
        vec![f::LEAVE_REASON.to_string()]
    } else {
        Vec::new()
    };
    let problem = Problem {
        name: "second lifetime",
        manifest: &hazard_manifest,
        features,
        train,
        test,
        arm_column: WON_BACK_BY.into(),
        arms: ARMS.iter().map(|a| a.to_string()).collect(),
        interact,
        bands: s.hazard_bands.clone(),
        rare_event_ratio: 0.0,
    };
    let rows = Rows::Months {
        duration: f::MONTHS_RETAINED,
        censored: f::CENSORED,
        max_months: s.survival_months,
    };
    // The hazard's own learner (`train.hazard_learner`, logistic unless
    // set): its value is an extrapolation over the horizon, beyond the
    // months the holdout follows.
    let hs = s.for_hazard();
    let mut fits = fit_candidates(&problem, &rows, &hs)?;
    if hs.hazard_per_band && problem.bands.len() > 1 {
        for kind in hs.learner_kinds() {
            let bins = fits.step_bins.unwrap_or(0);
            match fit_per_band(&problem, &rows, &hs, kind, bins) {
                Ok((kept, candidate)) => fits.push(kept, candidate),
                Err(Error::Fit { message, .. }) => {
                    tracing::warn!(model = "second lifetime", "left out: {message}")
                }
                Err(e) => return Err(e),
            }
        }
    }
    let best = fits.lowest_log_loss();
    let fitted = fits.keep(best);
    let model = stored(
        ModelKind::SecondLifetime,
        "churned_in_month",
        fitted,
        split,
        stamp,
        s,
    );

    // Monthly margin: ridge on the returns with at least one bill known.
    let margin_rows = |df: &DataFrame| -> Result<DataFrame> {
        df.clone()
            .lazy()
            .filter(col(MARGIN_BILLS).gt_eq(lit(1.0)))
            .collect()
            .map_err(Error::polars("second-lifetime margin: rows"))
    };
    let (mt, mv) = (margin_rows(&problem.train)?, margin_rows(&problem.test)?);
    let names: Vec<&str> = problem
        .features
        .iter()
        .map(String::as_str)
        .chain([WON_BACK_BY])
        .collect();
    let layout = Layout {
        design: Design::fit(&hazard_manifest, &mt, &names)?,
        arm_column: String::new(),
        arms: Vec::new(),
        interact: Vec::new(),
        bands: Vec::new(),
    };
    let (x, _) = layout.base(&mt, None)?;
    let x = to_array(x, layout.base_width())?;
    let y = f64_column(&mt, "monthly_margin")?;
    let ridge = Ridge::fit(x.view(), &y, &layout.names(), 0.01).map_err(|e| Error::Fit {
        model: "second-lifetime margin".into(),
        message: e.to_string(),
    })?;
    let mut margin = MarginModel {
        layout,
        ridge,
        evaluated: None,
        holdout: BTreeMap::new(),
    };
    let pv = margin.predict(&mv, None)?;
    let yv = f64_column(&mv, "monthly_margin")?;
    let n = yv.len().max(1) as f64;
    let mean_y = yv.iter().sum::<f64>() / n;
    let sse: f64 = pv.iter().zip(&yv).map(|(p, y)| (p - y).powi(2)).sum();
    let sst: f64 = yv.iter().map(|y| (y - mean_y).powi(2)).sum();
    margin.holdout = BTreeMap::from([
        ("rows".to_string(), yv.len() as f64),
        ("observed_mean".to_string(), mean_y),
        ("predicted_mean".to_string(), pv.iter().sum::<f64>() / n),
        ("rmse".to_string(), (sse / n).sqrt()),
        ("r2".to_string(), 1.0 - sse / sst.max(f64::MIN_POSITIVE)),
    ]);
    let mut artifact = SecondLifetimeModel {
        model,
        margin,
        durations: Vec::new(),
    };

    // Predicted against Kaplan–Meier months retained by leave reason, over
    // the months after the longest past offer term: during a term a
    // subscriber is bound by the offer (the generator forbids churn then,
    // operators' contracts usually do), so months inside it would agree by
    // construction. The comparison is conditional on being retained at
    // the term's end: the mean months retained of the next `months`
    // months, S(t) / S(term) summed. Observed durations of the holdout
    // returns are known only up to the data's end: the window ends at the
    // last month at which a tenth of them (and at least 50) are still
    // followed, so the Kaplan-Meier curve rests on many subscribers at
    // every month.
    let d = f64_column(&problem.test, f::MONTHS_RETAINED)?;
    let term = history
        .terms
        .discount_months
        .max(history.terms.upgrade_months);
    let floor = (d.len() / 10).max(50);
    let reach = (1..=s.survival_months)
        .take_while(|t| d.iter().filter(|v| **v >= f64::from(*t)).count() >= floor)
        .last()
        .unwrap_or(0);
    let months = s.duration_check_months.min(reach.saturating_sub(term));
    if months == 0 {
        tracing::warn!(
            term,
            reach,
            "no duration check: too few holdout returns are followed past the offer term"
        );
    } else {
        let curves = artifact.survival(&problem.test, None, term + months)?;
        let c = bool_column(&problem.test, f::CENSORED)?;
        let reason: Vec<String> = problem
            .test
            .column(f::LEAVE_REASON)
            .and_then(|c| c.str().cloned())
            .map_err(Error::polars("second-lifetime model: leave_reason"))?
            .iter()
            .map(|v| v.unwrap_or("unknown").to_string())
            .collect();
        let mut groups: Vec<String> = reason.clone();
        groups.sort();
        groups.dedup();
        groups.push("all".into());
        // Mean months retained over (term, term + months] given retained
        // at `term`, from a survival curve S(1..=term + months).
        let after = |curve: &[f64]| -> f64 {
            let at_term = if term == 0 {
                1.0
            } else {
                curve[term as usize - 1]
            };
            if at_term <= 0.0 {
                return 0.0;
            }
            curve[term as usize..].iter().sum::<f64>() / at_term
        };
        for g in groups {
            let rows: Vec<usize> = (0..d.len())
                .filter(|i| g == "all" || reason[*i] == g)
                .collect();
            if rows.len() < 20 {
                continue;
            }
            let dd: Vec<f64> = rows.iter().map(|i| d[*i]).collect();
            let cc: Vec<bool> = rows.iter().map(|i| c[*i]).collect();
            let km = survival::kaplan_meier(&dd, &cc, term + months);
            // The group's predicted curve: the mean of its rows' curves.
            let mut mean = vec![0.0; (term + months) as usize];
            for i in &rows {
                for (m, v) in mean.iter_mut().zip(&curves[*i]) {
                    *m += v / rows.len() as f64;
                }
            }
            artifact.durations.push(DurationCheck {
                leave_reason: g,
                returns: rows.len(),
                after_month: term,
                months,
                observed: after(&km),
                predicted: after(&mean),
            });
        }
    }
    // The stored models are refitted on every return with its whole
    // follow-up (the evaluation above is of the models fitted before the
    // cut): same design, learner and hyper-parameters.
    let all = fill(all)?;
    refit(&mut artifact.model, &rows, &all)?;
    {
        let margin = &mut artifact.margin;
        let rows_all = margin_rows(&all)?;
        let (xm, _) = margin.layout.base(&rows_all, None)?;
        let xm = to_array(xm, margin.layout.base_width())?;
        let ym = f64_column(&rows_all, "monthly_margin")?;
        let refit =
            Ridge::fit(xm.view(), &ym, &margin.layout.names(), 0.01).map_err(|e| Error::Fit {
                model: "second-lifetime margin".into(),
                message: e.to_string(),
            })?;
        margin.evaluated = Some(std::mem::replace(&mut margin.ridge, refit));
    }
    Ok(artifact)
}

#[cfg(test)]
mod tests {
    use super::*;
    use winback_models::economics::Package;

    /// One return: arm, leave reason, return date, then its bills (month
    /// start, margin, whether the bill had a cost to serve), or none.
    type Return<'a> = (&'a str, &'a str, NaiveDate, Option<&'a [Bill]>);

    /// A bill: month start, margin, whether it had a cost to serve.
    type Bill = (NaiveDate, Option<f64>, bool);

    /// A column of one value per bill.
    type Of<'a> = &'a dyn Fn(&Bill) -> Series;

    fn frame(rows: &[Return<'_>]) -> DataFrame {
        fn concat(bills: &[Bill], f: Of<'_>) -> Series {
            let mut s = f(&bills[0]);
            for b in &bills[1..] {
                s.append(&f(b)).unwrap();
            }
            s
        }
        let list = |f: Of<'_>| -> ListChunked {
            rows.iter()
                .map(|r| r.3.map(|bills| concat(bills, f)))
                .collect()
        };
        let months = list(&|b| Series::new("".into(), &[epoch_days(b.0)]));
        let margins = list(&|b| Series::new("".into(), &[b.1]));
        let costed = list(&|b| Series::new("".into(), &[b.2]));
        DataFrame::new(
            rows.len(),
            vec![
                Column::new(
                    WON_BACK_BY.into(),
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                ),
                Column::new(
                    f::LEAVE_REASON.into(),
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                ),
                Column::new(
                    f::RETURNED_AT.into(),
                    rows.iter().map(|r| epoch_days(r.2)).collect::<Vec<_>>(),
                )
                .cast(&DataType::Date)
                .unwrap(),
                months.into_series().with_name(f::BILL_MONTHS.into()).into(),
                margins
                    .into_series()
                    .with_name(f::BILL_MARGINS.into())
                    .into(),
                costed.into_series().with_name(f::BILL_COSTED.into()).into(),
            ],
        )
        .unwrap()
    }

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    /// Each bill's margin has the past offer added back (the discount in
    /// full and the upgrade's cost where the bill had a cost to serve, the
    /// margin rate times the discount where not), bills with no month or
    /// margin and bills not yet known are left out, a return without bills
    /// has none; over a frame in two chunks.
    #[test]
    fn monthly_margins_add_the_past_offer_back_bill_by_bill() {
        let e = Economics::default();
        let t = e.terms;
        let a: &[Bill] = &[
            (day(2024, 3, 1), Some(10.0), true),
            (day(2024, 4, 1), Some(20.0), false),
            (day(2024, 5, 1), Some(30.0), true),
        ];
        let c: &[Bill] = &[
            (day(2024, 1, 1), Some(5.0), true),
            (day(2024, 2, 1), None, true),
            (day(2024, 3, 1), Some(7.0), false),
        ];
        let mut df = frame(&[
            ("discount", "price", day(2024, 3, 10), Some(a)),
            ("control", "service", day(2024, 5, 2), None),
        ]);
        df.vstack_mut(&frame(&[("upgrade", "service", day(2024, 1, 15), Some(c))]))
            .unwrap();
        assert_eq!(df.first_col_n_chunks(), 2);
        let (monthly, counted) = monthly_margins(&df, &e, None).unwrap();
        let d = |p: Package, m: u32| t.discount_in_month(p, m);
        let u = |p: Package, m: u32| t.upgrade_cost_in_month(p, m);
        let first = (10.0 + d(Package::Discount, 1) + u(Package::Discount, 1))
            + (20.0 + e.margin_rate * d(Package::Discount, 2))
            + (30.0 + d(Package::Discount, 3) + u(Package::Discount, 3));
        let third = (5.0 + d(Package::Upgrade, 1) + u(Package::Upgrade, 1))
            + (7.0 + e.margin_rate * d(Package::Upgrade, 3));
        assert_eq!(counted, [3.0, 0.0, 2.0]);
        let want = [first / 3.0, 0.0, third / 2.0];
        for (g, w) in monthly.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{monthly:?} against {want:?}");
        }
        // As of 2024-03-30 only the bills of months ended by then count:
        // none of the first return's (from March), January's of the third
        // (February's has no margin).
        let (monthly, counted) = monthly_margins(&df, &e, Some(day(2024, 3, 30))).unwrap();
        assert_eq!(counted, [0.0, 0.0, 1.0]);
        assert!(
            (monthly[2] - (5.0 + d(Package::Upgrade, 1) + u(Package::Upgrade, 1))).abs() < 1e-12
        );
    }
}
