//! The stage's tables: the arm summary, the target list, the policy table,
//! value segments and reason codes.

use polars::prelude::*;
use winback_models::economics::{Arm, Economics};
use winback_models::offers::{Outcome, Simulator, quantile};
use winback_models::policy_value::{Interval, PolicyValue};

use crate::artifact::ReturnModel;
use crate::error::{Error, Result};
use crate::schema::col;
use crate::stages::features::f;

use super::arms::BLOCK;
use super::intervals::Intervals;
use super::settings::SimulateSettings;

/// The arm summary table.
pub fn arm_summary(
    point: &[Vec<Outcome>],
    iv: &Intervals,
    economics: &Economics,
) -> Result<DataFrame> {
    let n = point[0].len();
    let totals = Simulator::sum(point, 0..n);
    let k = Arm::ALL.len();
    let rank = |key: &dyn Fn(usize) -> f64| -> Vec<Option<u32>> {
        let mut order: Vec<usize> = (1..k).collect();
        order.sort_by(|a, b| key(*b).total_cmp(&key(*a)));
        let mut r = vec![None; k];
        for (pos, a) in order.into_iter().enumerate() {
            r[a] = Some(pos as u32 + 1);
        }
        r
    };
    let profit_rank = rank(&|a| totals[a].profit);
    let recapture_rank = rank(&|a| totals[a].recaptures);
    let nf = n.max(1) as f64;
    let contact = |a: usize| {
        if a == 0 {
            0.0
        } else {
            economics.contact_cost * n as f64
        }
    };
    let arms: Vec<&str> = Arm::ALL.iter().map(|a| a.name()).collect();
    let t = &totals;
    let col_f = |name: &str, v: Vec<f64>| Column::new(name.into(), v);
    let col_o = |name: &str, v: Vec<Option<f64>>| Column::new(name.into(), v);
    let all = 0..k;
    let df = DataFrame::new(
        k,
        vec![
            Column::new("arm".into(), arms),
            Column::new("eligible".into(), vec![n as u64; k]),
            col_f(
                "expected_recaptures",
                all.clone().map(|a| t[a].recaptures).collect(),
            ),
            col_f(
                "recaptures_lo",
                all.clone().map(|a| iv.recaptures[a].lo).collect(),
            ),
            col_f(
                "recaptures_hi",
                all.clone().map(|a| iv.recaptures[a].hi).collect(),
            ),
            col_f(
                "recapture_rate",
                all.clone().map(|a| t[a].recaptures / nf).collect(),
            ),
            col_f(
                "offer_spend",
                all.clone().map(|a| t[a].offer_spend).collect(),
            ),
            col_f("contact_spend", all.clone().map(contact).collect()),
            col_f(
                "second_lifetime_value",
                all.clone().map(|a| t[a].second_lifetime_value).collect(),
            ),
            col_f("profit", all.clone().map(|a| t[a].profit).collect()),
            col_f("profit_lo", all.clone().map(|a| iv.profit[a].lo).collect()),
            col_f("profit_hi", all.clone().map(|a| iv.profit[a].hi).collect()),
            col_f(
                "incremental_profit",
                all.clone().map(|a| t[a].profit - t[0].profit).collect(),
            ),
            col_f(
                "incremental_profit_lo",
                all.clone().map(|a| iv.incremental[a].lo).collect(),
            ),
            col_f(
                "incremental_profit_hi",
                all.clone().map(|a| iv.incremental[a].hi).collect(),
            ),
            // Gross return on the offer's cost (the study's measure): it
            // credits the offer with returners who would have come back
            // anyway.
            col_o(
                "gross_roi",
                all.clone()
                    .map(|a| {
                        (t[a].offer_spend > 0.0).then(|| {
                            (t[a].second_lifetime_value - t[a].offer_spend) / t[a].offer_spend
                        })
                    })
                    .collect(),
            ),
            // Return on cost net of the returners who would have come
            // back anyway: incremental profit over what the arm spends.
            col_o(
                "incremental_roi",
                all.clone()
                    .map(|a| {
                        let spend = t[a].offer_spend + contact(a);
                        (a > 0 && spend > 0.0).then(|| (t[a].profit - t[0].profit) / spend)
                    })
                    .collect(),
            ),
            col_f(
                "profit_per_contact",
                all.clone().map(|a| t[a].profit / nf).collect(),
            ),
            col_o(
                "cost_per_reacquired",
                all.clone()
                    .map(|a| {
                        (a > 0 && t[a].recaptures > 0.0)
                            .then(|| (t[a].offer_spend + contact(a)) / t[a].recaptures)
                    })
                    .collect(),
            ),
            col_f("acquisition_cost", vec![economics.acquisition_cost; k]),
            Column::new("profit_rank".into(), profit_rank),
            Column::new("recapture_rank".into(), recapture_rank),
        ],
    )
    .map_err(Error::polars("simulate: arm summary"))?;
    df.sort(
        ["profit"],
        SortMultipleOptions::default().with_order_descending(true),
    )
    .map_err(Error::polars("simulate: arm summary order"))
}

/// The value segment of each row: current value (the first lifetime's
/// mean monthly margin) in its top `high_value_share` or not, by potential
/// (the best expected second-lifetime profit over the arms) in its top
/// `high_potential_share` or not.
pub fn segments(current: &[f64], potential: &[f64], s: &SimulateSettings) -> Vec<&'static str> {
    let cut = |v: &[f64], share: f64| quantile(v, 1.0 - share);
    let (cv, cp) = (
        cut(current, s.high_value_share),
        cut(potential, s.high_potential_share),
    );
    current
        .iter()
        .zip(potential)
        .map(|(c, p)| match (*c >= cv, *p >= cp) {
            (true, true) => "gold",
            (true, false) => "silver",
            (false, true) => "copper",
            (false, false) => "iron",
        })
        .collect()
}

/// The top three reason codes of each row: the features with the largest
/// contributions to the return model's log-odds under the row's arm, as
/// `feature +0.42` (relative to the training average).
pub fn reason_codes(
    df: &DataFrame,
    arm: &[usize],
    ret: &ReturnModel,
) -> Result<[Vec<Option<String>>; 3]> {
    let n = df.height();
    let mut out: [Vec<Option<String>>; 3] = [vec![None; n], vec![None; n], vec![None; n]];
    for a in 0..Arm::ALL.len() {
        let rows: Vec<usize> = (0..n).filter(|i| arm[*i] == a).collect();
        if rows.is_empty() {
            continue;
        }
        for chunk in rows.chunks(BLOCK) {
            let idx = IdxCa::from_vec("i".into(), chunk.iter().map(|i| *i as IdxSize).collect());
            let part = df
                .take(&idx)
                .map_err(Error::polars("simulate: reason rows"))?;
            let (names, c) = ret.contributions(&part, Some(Arm::ALL[a].name()))?;
            let m = names.len();
            for (r, i) in chunk.iter().enumerate() {
                let row = &c[r * m..(r + 1) * m];
                let mut order: Vec<usize> = (0..m).collect();
                order.sort_by(|x, y| row[*y].abs().total_cmp(&row[*x].abs()).then(x.cmp(y)));
                for (slot, j) in order.into_iter().take(3).enumerate() {
                    out[slot][*i] = Some(format!("{} {:+.2}", names[j], row[j]));
                }
            }
        }
    }
    Ok(out)
}

/// The target list.
#[allow(clippy::too_many_arguments)]
pub(crate) fn target_list(
    df: &DataFrame,
    point: &[Vec<Outcome>],
    choice: &[Option<usize>],
    best: &[Option<usize>],
    holdout: &[bool],
    segment: &[&str],
    reasons: &[Vec<Option<String>>; 3],
) -> Result<DataFrame> {
    let n = df.height();
    let gain = |i: usize, a: Option<usize>| a.map(|a| point[a][i].profit - point[0][i].profit);
    // Rank the selected by incremental profit, highest first.
    let mut order: Vec<usize> = (0..n).filter(|i| choice[*i].is_some()).collect();
    order.sort_by(|a, b| {
        gain(*b, choice[*b])
            .unwrap_or(0.0)
            .total_cmp(&gain(*a, choice[*a]).unwrap_or(0.0))
            .then(a.cmp(b))
    });
    let mut rank: Vec<Option<u32>> = vec![None; n];
    for (r, i) in order.iter().enumerate() {
        rank[*i] = Some(r as u32 + 1);
    }
    let action: Vec<&str> = (0..n)
        .map(|i| match (choice[i], best[i]) {
            _ if holdout[i] => "holdout",
            (Some(_), _) => "contact",
            (None, Some(_)) => "over_budget",
            (None, None) => "no_offer",
        })
        .collect();
    let arm_of = |a: Option<usize>| a.map(|a| Arm::ALL[a].name()).unwrap_or("none");
    let recommended: Vec<&str> = (0..n).map(|i| arm_of(choice[i].or(best[i]))).collect();
    let mut columns = vec![
        df.column(col::SUBSCRIBER_ID)
            .map_err(Error::polars("simulate: subscriber_id"))?
            .clone(),
        Column::new("rank".into(), rank),
        Column::new("action".into(), action),
        Column::new("recommended_arm".into(), recommended),
        Column::new(
            "expected_incremental_profit".into(),
            (0..n)
                .map(|i| gain(i, choice[i].or(best[i])).unwrap_or(0.0))
                .collect::<Vec<f64>>(),
        ),
    ];
    for (a, arm) in Arm::ALL.iter().enumerate() {
        columns.push(Column::new(
            format!("p_return_{}", arm.name()).into(),
            point[a].iter().map(|o| o.p_return).collect::<Vec<f64>>(),
        ));
    }
    for (a, arm) in Arm::ALL.iter().enumerate() {
        columns.push(Column::new(
            format!("second_lifetime_net_value_{}", arm.name()).into(),
            point[a]
                .iter()
                .map(|o| o.value - o.offer_cost)
                .collect::<Vec<f64>>(),
        ));
    }
    // How long a returner stays and what a month brings, per arm (the
    // study's second question, per subscriber).
    for (a, arm) in Arm::ALL.iter().enumerate() {
        columns.push(Column::new(
            format!("expected_months_{}", arm.name()).into(),
            point[a].iter().map(|o| o.months).collect::<Vec<f64>>(),
        ));
    }
    for (a, arm) in Arm::ALL.iter().enumerate() {
        columns.push(Column::new(
            format!("monthly_margin_{}", arm.name()).into(),
            point[a].iter().map(|o| o.margin).collect::<Vec<f64>>(),
        ));
    }
    for (a, arm) in Arm::ALL.iter().enumerate() {
        columns.push(Column::new(
            format!("expected_profit_{}", arm.name()).into(),
            point[a].iter().map(|o| o.profit).collect::<Vec<f64>>(),
        ));
    }
    for (a, arm) in Arm::ALL.iter().enumerate().skip(1) {
        columns.push(Column::new(
            format!("incremental_profit_{}", arm.name()).into(),
            point[a]
                .iter()
                .zip(&point[0])
                .map(|(o, c)| o.profit - c.profit)
                .collect::<Vec<f64>>(),
        ));
    }
    columns.push(Column::new("value_segment".into(), segment.to_vec()));
    for name in [f::LEAVE_REASON, f::DAYS_SINCE_DEFECTION, col::CHURNED_AT] {
        columns.push(
            df.column(name)
                .map_err(Error::polars(format!("simulate: {name}")))?
                .clone(),
        );
    }
    for (k, r) in reasons.iter().enumerate() {
        columns.push(Column::new(format!("reason_{}", k + 1).into(), r.clone()));
    }
    let out = DataFrame::new(n, columns).map_err(Error::polars("simulate: target list"))?;
    out.sort(
        ["rank", col::SUBSCRIBER_ID],
        SortMultipleOptions::default().with_nulls_last(true),
    )
    .map_err(Error::polars("simulate: target list order"))
}

/// The policy table: model-based totals over the eligible population with
/// intervals (the stored models, in sample for what they were fitted on),
/// and the off-policy estimates per offer on past randomised offers no
/// model used there was fitted on (the evaluated fits, out of sample),
/// with those models' own value on the same offers (`model_per_offer`).
pub(crate) fn policy_frame(
    totals: &[(String, Interval)],
    ope: &[PolicyValue],
) -> Result<DataFrame> {
    let names: Vec<String> = totals.iter().map(|(n, _)| n.clone()).collect();
    let get = |n: &str| ope.iter().find(|p| p.policy == n);
    let opt = |g: &dyn Fn(&PolicyValue) -> f64| -> Vec<Option<f64>> {
        names.iter().map(|n| get(n).map(g)).collect()
    };
    DataFrame::new(
        names.len(),
        vec![
            Column::new("policy".into(), names.clone()),
            Column::new(
                "expected_profit".into(),
                totals.iter().map(|(_, i)| i.estimate).collect::<Vec<f64>>(),
            ),
            Column::new(
                "expected_profit_lo".into(),
                totals.iter().map(|(_, i)| i.lo).collect::<Vec<f64>>(),
            ),
            Column::new(
                "expected_profit_hi".into(),
                totals.iter().map(|(_, i)| i.hi).collect::<Vec<f64>>(),
            ),
            Column::new(
                "history_offers".into(),
                names
                    .iter()
                    .map(|n| get(n).map(|p| p.offers as u64))
                    .collect::<Vec<Option<u64>>>(),
            ),
            Column::new(
                "history_matched".into(),
                names
                    .iter()
                    .map(|n| get(n).map(|p| p.matched as u64))
                    .collect::<Vec<Option<u64>>>(),
            ),
            Column::new("model_per_offer".into(), opt(&|p| p.model)),
            Column::new("ips_per_offer".into(), opt(&|p| p.ips.estimate)),
            Column::new("ips_lo".into(), opt(&|p| p.ips.lo)),
            Column::new("ips_hi".into(), opt(&|p| p.ips.hi)),
            Column::new("snips_per_offer".into(), opt(&|p| p.snips.estimate)),
            Column::new("snips_lo".into(), opt(&|p| p.snips.lo)),
            Column::new("snips_hi".into(), opt(&|p| p.snips.hi)),
            Column::new("dr_per_offer".into(), opt(&|p| p.dr.estimate)),
            Column::new("dr_lo".into(), opt(&|p| p.dr.lo)),
            Column::new("dr_hi".into(), opt(&|p| p.dr.hi)),
        ],
    )
    .map_err(Error::polars("simulate: policy table"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_split_by_value_and_potential() {
        let s = SimulateSettings {
            high_value_share: 0.5,
            high_potential_share: 0.5,
            ..SimulateSettings::default()
        };
        let seg = segments(&[1.0, 2.0, 3.0, 4.0], &[4.0, 1.0, 3.0, 2.0], &s);
        assert_eq!(seg, vec!["copper", "iron", "gold", "silver"]);
    }
}
