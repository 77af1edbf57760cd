//! The second lifetime: a discrete-time hazard on subscriber-months after
//! a return (month bands, leave reason, the arm that won the subscriber
//! back, first-lifetime behaviour) giving S(t), and a ridge regression of
//! the monthly margin; predicted against Kaplan–Meier restricted mean
//! duration by leave reason on the holdout.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use polars::prelude::*;
use winback_models::economics::{Arm, Economics};
use winback_models::learner::Ridge;
use winback_models::survival;

use crate::error::{Error, Result};
use crate::schema::{ARMS, LEAVE_REASONS, col};
use crate::stages::features::{DAYS_PER_MONTH, Encoding, FeatureSpec, Manifest, epoch_days, f};

use crate::artifact::design::Design;
use crate::artifact::evaluation::DurationCheck;
use crate::artifact::layout::{Layout, to_array};
use crate::artifact::{MarginModel, ModelKind, SecondLifetimeModel, WON_BACK_BY};

use super::harness::*;
use super::settings::TrainSettings;

/// Second lifetimes with the first lifetime's features (as of the
/// defection they followed) and `monthly_margin`: the margin per month of
/// the whole second lifetime before offer costs (the realised margin plus
/// the discount and upgrade cost `economics` says the winning arm gave
/// over the months retained), so the offer simulation can charge each
/// arm's own terms.
pub(crate) fn second_lifetime_rows(
    second: &DataFrame,
    lapsed: &DataFrame,
    economics: &Economics,
) -> Result<DataFrame> {
    let features = lapsed.clone().lazy().drop(cols([f::LEAVE_REASON])).rename(
        [col::CHURNED_AT],
        ["previous_churned_at"],
        true,
    );
    let df = second
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
    let margin = f64_column(&df, f::SECOND_MARGIN)?;
    let text = |name: &str| -> Result<Vec<Option<String>>> {
        Ok(df
            .column(name)
            .and_then(|c| c.str().cloned())
            .map_err(Error::polars(format!("second-lifetime model: {name}")))?
            .iter()
            .map(|v| v.map(str::to_string))
            .collect())
    };
    let (arm, reason) = (text(WON_BACK_BY)?, text(f::LEAVE_REASON)?);
    // Bills of the second lifetime: the margin is per billed month (a
    // lifetime from the 20th of one month to the 10th of the sixth after
    // has seven bills in 5.7 months).
    let bills: Vec<f64> = df
        .column(f::SECOND_BILLS)
        .and_then(|c| c.cast(&DataType::Float64))
        .and_then(|c| c.f64().cloned())
        .map_err(Error::polars("second-lifetime model: bills"))?
        .iter()
        .zip(&months)
        .map(|(b, m)| b.unwrap_or(m.max(0.0).ceil()))
        .collect();
    let monthly: Vec<f64> = (0..df.height())
        .map(|i| {
            let a = Arm::ALL
                .iter()
                .copied()
                .find(|a| arm[i].as_deref() == Some(a.name()))
                .unwrap_or(Arm::Control);
            let r = reason[i]
                .as_deref()
                .and_then(|r| LEAVE_REASONS.iter().position(|x| *x == r))
                .unwrap_or(LEAVE_REASONS.len() - 1);
            let package = economics.package(a, r);
            let billed = bills[i].max(0.0) as u32;
            let cost: f64 = (1..=billed)
                .map(|t| economics.offer_cost_in_month(package, t))
                .sum();
            (margin[i] + cost) / bills[i].max(1.0)
        })
        .collect();
    // Durations in billed months: a return billed for k months churned in
    // month k of its second lifetime (or, censored, survived k months),
    // the month grid on which the simulation values S(t - 1).
    let billed_months: Vec<f64> = bills
        .iter()
        .zip(&months)
        .map(|(b, m)| if *b >= 1.0 { *b } else { *m })
        .collect();
    let mut df = df;
    df.with_column(Column::new("monthly_margin".into(), monthly))
        .and_then(|d| d.with_column(Column::new(f::MONTHS_RETAINED.into(), billed_months)))
        .map_err(Error::polars("second-lifetime model: monthly margin"))?;
    Ok(df)
}

/// The returns known before `d`: returned before it, durations censored
/// at it.
pub(crate) fn censor_at(df: &DataFrame, d: NaiveDate) -> Result<DataFrame> {
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
}

/// Fits the second-lifetime hazard and margin models on returns joined to
/// the features of the defection they followed.
pub fn fit_second_lifetime(
    second: &DataFrame,
    lapsed: &DataFrame,
    manifest: &Manifest,
    economics: &Economics,
    s: &TrainSettings,
    stamp: &Stamp,
) -> Result<SecondLifetimeModel> {
    let all = second_lifetime_rows(second, lapsed, economics)?;
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
        Some(&censor_at),
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
    let mut features = choose_features(manifest, &train, &[], &[], "")?;
    features.push(WON_BACK_BY.into());
    let problem = Problem {
        name: "second lifetime",
        manifest: &hazard_manifest,
        features,
        train,
        test,
        arm_column: String::new(),
        arms: Vec::new(),
        interact: Vec::new(),
        bands: s.hazard_bands.clone(),
    };
    let rows = Rows::Months {
        duration: f::MONTHS_RETAINED,
        censored: f::CENSORED,
        max_months: s.survival_months,
    };
    let fitted = fit_binary(&problem, &rows, s)?;
    let model = stored(
        ModelKind::SecondLifetime,
        "churned_in_month",
        fitted,
        split,
        stamp,
        s,
    );

    // Monthly margin: ridge on the returns with at least a month observed.
    let margin_rows = |df: &DataFrame| -> Result<DataFrame> {
        df.clone()
            .lazy()
            .filter(col(f::MONTHS_RETAINED).gt_eq(lit(1.0)))
            .collect()
            .map_err(Error::polars("second-lifetime margin: rows"))
    };
    let (mt, mv) = (margin_rows(&problem.train)?, margin_rows(&problem.test)?);
    let names: Vec<&str> = problem.features.iter().map(String::as_str).collect();
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

    // Predicted against Kaplan–Meier mean months retained by leave reason.
    // Observed durations of the holdout returns are known only up to the
    // data's end: compare over at most half of the longest follow-up, so
    // the Kaplan-Meier curve rests on many subscribers at every month.
    let d = f64_column(&problem.test, f::MONTHS_RETAINED)?;
    let follow_up = d.iter().copied().fold(0.0, f64::max);
    let months = s
        .duration_check_months
        .min(s.survival_months)
        .min(((follow_up / 2.0).floor() as u32).max(1));
    let curves = artifact.survival(&problem.test, None, months)?;
    let rmst: Vec<f64> = curves
        .iter()
        .map(|c| survival::restricted_mean(c))
        .collect();
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
    for g in groups {
        let rows: Vec<usize> = (0..d.len())
            .filter(|i| g == "all" || reason[*i] == g)
            .collect();
        if rows.len() < 20 {
            continue;
        }
        let dd: Vec<f64> = rows.iter().map(|i| d[*i]).collect();
        let cc: Vec<bool> = rows.iter().map(|i| c[*i]).collect();
        let km = survival::kaplan_meier(&dd, &cc, months);
        artifact.durations.push(DurationCheck {
            leave_reason: g,
            returns: rows.len(),
            months,
            observed: survival::restricted_mean(&km),
            predicted: rows.iter().map(|i| rmst[*i]).sum::<f64>() / rows.len() as f64,
        });
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
        margin.ridge =
            Ridge::fit(xm.view(), &ym, &margin.layout.names(), 0.01).map_err(|e| Error::Fit {
                model: "second-lifetime margin".into(),
                message: e.to_string(),
            })?;
    }
    Ok(artifact)
}
