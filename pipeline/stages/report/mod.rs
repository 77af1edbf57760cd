//! The campaign report: one self-contained HTML page (inline SVG charts
//! and CSS, no script, nothing fetched) written for a marketing team, with
//! the data behind each chart as a frame the command writes beside it.
//!
//! Six sections, each opening with a sentence computed from the numbers:
//! the decision (arms by profit against recapture, incremental profit,
//! return on cost, cost per reacquired subscriber), how many to contact
//! (the profit curve with the budget's cut-off and the break-even point,
//! the recommended arm by leave reason, value segments), the list, how
//! sure (off-policy values on past randomised offers, the models' holdout
//! figures, calibration, gains, Qini and durations), who is about to leave
//! (churn risk deciles) and the data (rows read, accepted and rejected,
//! provenance). A section whose inputs are absent says what is missing and
//! why; the page is never broken.

pub mod charts;
pub mod html;
pub mod words;

use std::collections::BTreeMap;
use std::fmt::Write;

use polars::prelude::*;
use serde_json::Value;
use winback_models::economics::{Economics, Package};

use crate::error::{Error, Result};
use charts::{Bar, LabelledPoint, Line, Marker};
use html::{cents, count, esc, figure, missing, money, money_axis, num, pct, table};

/// Everything the report reads, gathered by the command. A `None` is an
/// output that is absent; the matching `why_*` says why when known.
#[derive(Debug, Default)]
pub struct ReportInputs {
    /// `validate/report.json`.
    pub validate: Option<Value>,
    /// `features/summary.json`.
    pub features: Option<Value>,
    /// The model version's directory name (`v0002`).
    pub model_version: Option<String>,
    /// The version's `evaluation.json`.
    pub evaluation: Option<Value>,
    /// Each model's provenance (`return`, `churn`, `second_lifetime`).
    pub provenance: Vec<(String, Value)>,
    /// `simulate/summary.json`.
    pub simulate: Option<Value>,
    /// `simulate/arm_summary.parquet`.
    pub arms: Option<DataFrame>,
    /// `simulate/policy_evaluation.parquet`.
    pub policies: Option<DataFrame>,
    /// `simulate/target_list.parquet`.
    pub targets: Option<DataFrame>,
    /// Why the simulation's outputs are absent or not this run's.
    pub why_no_simulate: Option<String>,
    /// `score/churn_scores.parquet`.
    pub churn: Option<DataFrame>,
    /// Why the churn scores are absent or not this run's.
    pub why_no_scores: Option<String>,
    /// The economics the simulation used.
    pub economics: Option<Economics>,
    /// The budget: most contacts and most spend, when set.
    pub budget: (Option<u64>, Option<f64>),
    /// The churn label's horizon in days.
    pub churn_horizon_days: Option<u32>,
    /// The config's hash.
    pub config_hash: String,
    /// winback's version.
    pub code_version: String,
}

/// The page and the data behind its charts and tables (file stem, frame).
#[derive(Debug)]
pub struct Report {
    /// `index.html`.
    pub html: String,
    /// One frame per chart, written as `<name>.csv`.
    pub data: Vec<(String, DataFrame)>,
    /// The sections present, by id, in order.
    pub sections: Vec<&'static str>,
}

/// The sections, in order: id and heading.
pub const SECTIONS: [(&str, &str); 6] = [
    ("decision", "1. The decision"),
    ("contacts", "2. How many to contact"),
    ("list", "3. The list"),
    ("confidence", "4. How sure"),
    ("churn", "5. Who is about to leave"),
    ("data", "6. The data"),
];

// ---------------------------------------------------------------- helpers

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

fn jf(v: &Value, path: &[&str]) -> Option<f64> {
    at(v, path).and_then(Value::as_f64)
}

fn js(v: &Value, path: &[&str]) -> Option<String> {
    at(v, path).and_then(|v| match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    })
}

fn f64s(df: &DataFrame, name: &str) -> Vec<Option<f64>> {
    df.column(name)
        .ok()
        .and_then(|c| c.cast(&DataType::Float64).ok())
        .and_then(|c| {
            c.as_materialized_series()
                .f64()
                .ok()
                .map(|ca| ca.iter().collect())
        })
        .unwrap_or_else(|| vec![None; df.height()])
}

fn strs(df: &DataFrame, name: &str) -> Vec<Option<String>> {
    df.column(name)
        .ok()
        .and_then(|c| c.cast(&DataType::String).ok())
        .and_then(|c| {
            c.as_materialized_series()
                .str()
                .ok()
                .map(|ca| ca.iter().map(|s| s.map(str::to_string)).collect())
        })
        .unwrap_or_else(|| vec![None; df.height()])
}

fn frame(name: &str, columns: Vec<Column>) -> Result<DataFrame> {
    let height = columns.first().map(|c| c.len()).unwrap_or(0);
    DataFrame::new(height, columns).map_err(Error::polars(format!("report: {name}")))
}

fn interval(lo: Option<f64>, hi: Option<f64>) -> Option<(f64, f64)> {
    match (lo, hi) {
        (Some(l), Some(h)) if l.is_finite() && h.is_finite() => Some((l, h)),
        _ => None,
    }
}

fn money_range(i: Option<(f64, f64)>) -> String {
    i.map(|(l, h)| format!("{} to {}", money(l), money(h)))
        .unwrap_or_else(|| "no interval".into())
}

/// Rounds money to cents and probabilities to four decimals for the
/// CSV files people open.
fn round(v: f64, decimals: i32) -> f64 {
    let m = 10f64.powi(decimals);
    (v * m).round() / m
}

fn rounded(values: &[f64], decimals: i32) -> Vec<f64> {
    values.iter().map(|v| round(*v, decimals)).collect()
}

fn package_name(p: Package) -> &'static str {
    match p {
        Package::None => "no offer",
        Package::Discount => "discount",
        Package::Upgrade => "upgrade",
        Package::Both => "both",
    }
}

/// The leave reasons in the order of [`Economics::tailored`].
const REASONS: [&str; 5] = ["price", "service", "both", "other", "unknown"];

// ---------------------------------------------------------------- page

/// Renders the page.
pub fn render(inp: &ReportInputs) -> Result<Report> {
    let mut data = Vec::new();
    let mut body = String::new();
    let campaign = inp
        .simulate
        .as_ref()
        .and_then(|s| js(s, &["campaign"]))
        .unwrap_or_else(|| "winback run".into());
    let as_of = inp
        .simulate
        .as_ref()
        .and_then(|s| js(s, &["as_of"]))
        .or_else(|| inp.features.as_ref().and_then(|f| js(f, &["as_of"])));
    let sections: [(&str, String); 6] = [
        ("decision", decision(inp, &mut data)?),
        ("contacts", contacts(inp, &mut data)?),
        ("list", list(inp)?),
        ("confidence", confidence(inp, &mut data)?),
        ("churn", churn(inp, &mut data)?),
        ("data", provenance(inp, &mut data)?),
    ];
    for ((id, heading), (_, content)) in SECTIONS.iter().zip(sections.iter()) {
        let _ = writeln!(
            body,
            "<section id=\"{id}\">\n<h2>{}</h2>\n{content}</section>",
            esc(heading)
        );
    }
    let mut nav = String::new();
    for (id, heading) in SECTIONS {
        let _ = write!(nav, "<a href=\"#{id}\">{}</a>", esc(heading));
    }
    let subtitle = match (&as_of, &inp.model_version) {
        (Some(d), Some(v)) => format!("Lapsed subscribers as of {d}; model version {v}"),
        (Some(d), None) => format!("As of {d}"),
        (None, Some(v)) => format!("Model version {v}"),
        (None, None) => "No simulation or model in this run".into(),
    };
    let page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>Win-back campaign report: {title}</title>\n<style>{css}</style>\n</head>\n<body>\n<header class=\"top\"><div><h1>Win-back campaign report: {title}</h1><p>{subtitle}</p></div></header>\n<nav>{nav}</nav>\n<main>\n{body}</main>\n<footer>Made by winback {version} (config {hash}). Every figure is an expected value from the models; the intervals are 90% intervals. The data behind each chart is in the CSV file named under it.</footer>\n</body>\n</html>\n",
        title = esc(&campaign),
        css = html::CSS,
        subtitle = esc(&subtitle),
        version = esc(&inp.code_version),
        hash = esc(&inp.config_hash),
    );
    Ok(Report {
        html: page,
        data,
        sections: SECTIONS.iter().map(|(id, _)| *id).collect(),
    })
}

fn no_simulation(inp: &ReportInputs) -> String {
    missing(&format!(
        "No simulation in this run: {}",
        esc(inp
            .why_no_simulate
            .as_deref()
            .unwrap_or("simulate/ is absent (run `winback simulate`, or `winback run`, first)"))
    ))
}

// ---------------------------------------------------------------- 1

struct ArmRow {
    arm: String,
    eligible: f64,
    recaptures: f64,
    recaptures_ci: Option<(f64, f64)>,
    rate: f64,
    profit: f64,
    profit_ci: Option<(f64, f64)>,
    incremental: f64,
    incremental_ci: Option<(f64, f64)>,
    gross_roi: Option<f64>,
    incremental_roi: Option<f64>,
    cost_per_reacquired: Option<f64>,
    acquisition_cost: Option<f64>,
    spend: f64,
}

fn arm_rows(df: &DataFrame) -> Vec<ArmRow> {
    let arm = strs(df, "arm");
    let g = |n: &str| f64s(df, n);
    let (eligible, rec, rec_lo, rec_hi, rate) = (
        g("eligible"),
        g("expected_recaptures"),
        g("recaptures_lo"),
        g("recaptures_hi"),
        g("recapture_rate"),
    );
    let (profit, p_lo, p_hi) = (g("profit"), g("profit_lo"), g("profit_hi"));
    let (inc, i_lo, i_hi) = (
        g("incremental_profit"),
        g("incremental_profit_lo"),
        g("incremental_profit_hi"),
    );
    let (groi, iroi, cpr, acq, offer, contact) = (
        g("gross_roi"),
        g("incremental_roi"),
        g("cost_per_reacquired"),
        g("acquisition_cost"),
        g("offer_spend"),
        g("contact_spend"),
    );
    let mut rows: Vec<ArmRow> = (0..df.height())
        .map(|i| ArmRow {
            arm: arm[i].clone().unwrap_or_default(),
            eligible: eligible[i].unwrap_or(0.0),
            recaptures: rec[i].unwrap_or(0.0),
            recaptures_ci: interval(rec_lo[i], rec_hi[i]),
            rate: rate[i].unwrap_or(f64::NAN),
            profit: profit[i].unwrap_or(f64::NAN),
            profit_ci: interval(p_lo[i], p_hi[i]),
            incremental: inc[i].unwrap_or(0.0),
            incremental_ci: interval(i_lo[i], i_hi[i]),
            gross_roi: groi[i].filter(|v| v.is_finite()),
            incremental_roi: iroi[i].filter(|v| v.is_finite()),
            cost_per_reacquired: cpr[i].filter(|v| v.is_finite()),
            acquisition_cost: acq[i],
            spend: offer[i].unwrap_or(0.0) + contact[i].unwrap_or(0.0),
        })
        .collect();
    rows.sort_by(|a, b| b.profit.total_cmp(&a.profit));
    rows
}

fn decision(inp: &ReportInputs, data: &mut Vec<(String, DataFrame)>) -> Result<String> {
    let Some(df) = inp.arms.as_ref().filter(|d| d.height() > 0) else {
        return Ok(no_simulation(inp));
    };
    let rows = arm_rows(df);
    let mut out = String::new();
    let offers: Vec<&ArmRow> = rows.iter().filter(|r| r.arm != "control").collect();
    let best = rows.first().expect("non-empty");
    let most_back = rows
        .iter()
        .max_by(|a, b| a.rate.total_cmp(&b.rate))
        .expect("non-empty");
    let least = offers
        .iter()
        .min_by(|a, b| a.profit.total_cmp(&b.profit))
        .copied();
    let eligible = best.eligible;
    let mut lead = format!(
        "For the {} subscribers who may be contacted, <b>{}</b> earns the most: {} expected profit over the next {} (90% interval {}).",
        count(eligible),
        esc(&best.arm),
        money(best.profit),
        inp.economics
            .map(|e| format!("{} months", e.horizon_months))
            .unwrap_or_else(|| "horizon".into()),
        money_range(best.profit_ci)
    );
    if let Some(second) = rows.get(1)
        && let (Some(b), Some(s)) = (best.profit_ci, second.profit_ci)
    {
        if b.0 <= s.1 {
            let _ = write!(
                lead,
                " Its lead over {} ({}) is within the uncertainty: the two intervals overlap.",
                esc(&second.arm),
                money(second.profit)
            );
        } else {
            let _ = write!(
                lead,
                " Its lead over the runner-up, {} ({}), is clear of the uncertainty: the intervals do not overlap.",
                esc(&second.arm),
                money(second.profit)
            );
        }
    }
    if most_back.arm != best.arm {
        let _ = write!(
            lead,
            " <b>{}</b> wins back the most ({} come back) but earns {}{}: ranking offers by how many they win back would pick the wrong one.",
            esc(&most_back.arm),
            pct(most_back.rate),
            money(most_back.profit),
            if least.is_some_and(|l| l.arm == most_back.arm) {
                ", the least of all offers"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(out, "<p class=\"lead\">{lead}</p>");
    let _ = writeln!(
        out,
        "<div class=\"kpis\">{}{}{}</div>",
        kpi(
            &money(best.profit),
            &format!("expected profit with {}", best.arm)
        ),
        kpi(&pct(best.rate), &format!("won back with {}", best.arm)),
        kpi(
            &best
                .cost_per_reacquired
                .map(cents)
                .unwrap_or_else(|| "n/a".into()),
            &format!(
                "cost per subscriber won back{}",
                best.acquisition_cost
                    .map(|a| format!(" (a new one costs {})", cents(a)))
                    .unwrap_or_default()
            )
        ),
    );
    let points: Vec<LabelledPoint> = rows
        .iter()
        .map(|r| LabelledPoint {
            label: r.arm.clone(),
            x: r.rate * 100.0,
            y: r.profit,
            y_interval: r.profit_ci,
            x_interval: r
                .recaptures_ci
                .filter(|_| r.eligible > 0.0)
                .map(|(l, h)| (l / r.eligible * 100.0, h / r.eligible * 100.0)),
        })
        .collect();
    let svg = charts::labelled_points(
        "profit against recapture",
        "share of the eligible won back (%)",
        "expected profit",
        &points,
        &|x| format!("{x:.0}%"),
        &money_axis,
    )?;
    out.push_str(&figure(
        "chart-profit-recapture",
        &svg,
        "Expected profit (up) against the share won back (right), per arm, with 90% intervals. The best arm is the highest point, not the one furthest right.",
        "decision_arms.csv",
    ));
    // Incremental profit over no offer.
    if !offers.is_empty() {
        let mut lines = Vec::new();
        for r in &offers {
            match r.incremental_ci {
                Some((l, h)) if l <= 0.0 && h >= 0.0 => lines.push(format!(
                    "{}'s gain over no offer ({}) could be nothing: its interval ({}) includes zero",
                    esc(&r.arm),
                    money(r.incremental),
                    money_range(r.incremental_ci)
                )),
                Some(_) if r.incremental < 0.0 => lines.push(format!(
                    "{} loses {} against sending no offer at all",
                    esc(&r.arm),
                    money(-r.incremental)
                )),
                _ => {}
            }
        }
        let _ = writeln!(
            out,
            "<h3>What each offer adds over sending none</h3>\n<p>Subscribers come back without an offer too: without one, {} of the eligible are expected back ({}). Incremental profit is what an offer earns beyond that.{}</p>",
            rows.iter()
                .find(|r| r.arm == "control")
                .map(|c| pct(c.rate))
                .unwrap_or_else(|| "an unknown share".into()),
            rows.iter()
                .find(|r| r.arm == "control")
                .map(|c| format!("{} expected profit", money(c.profit)))
                .unwrap_or_default(),
            if lines.is_empty() {
                String::new()
            } else {
                format!(" {}.", lines.join("; "))
            }
        );
        let bars_data: Vec<Bar> = offers
            .iter()
            .map(|r| Bar {
                label: r.arm.clone(),
                value: r.incremental,
                interval: r.incremental_ci,
            })
            .collect();
        let svg = charts::bars(
            "incremental profit",
            "expected incremental profit over no offer",
            &[("incremental profit", bars_data)],
            &money_axis,
        )?;
        out.push_str(&figure(
            "chart-incremental",
            &svg,
            "Expected incremental profit of each arm over sending no offer, with 90% intervals (black whiskers).",
            "decision_arms.csv",
        ));
    }
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                esc(&r.arm),
                format!("{} ({})", count(r.recaptures), pct(r.rate)),
                money(r.profit),
                money_range(r.profit_ci),
                if r.arm == "control" {
                    "-".into()
                } else {
                    format!(
                        "{} ({})",
                        money(r.incremental),
                        money_range(r.incremental_ci)
                    )
                },
                money(r.spend),
                num(r.gross_roi, 2),
                num(r.incremental_roi, 2),
                r.cost_per_reacquired
                    .map(cents)
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "arm",
            "won back",
            "expected profit",
            "90% interval",
            "incremental profit (interval)",
            "spend",
            "gross return on cost",
            "incremental return on cost",
            "cost per subscriber won back",
        ],
        &table_rows,
        &[1, 2, 3, 4, 5, 6, 7, 8],
    ));
    out.push_str("<p class=\"note\"><dfn>Expected profit</dfn>: the second lifetime's discounted margin of those who come back, less offer and contact costs. <dfn>Spend</dfn>: contact costs plus the offers' expected cost (an offer costs only when the subscriber comes back). <dfn>Gross return on cost</dfn>: profit per dollar spent; <dfn>incremental return on cost</dfn>: profit beyond no offer per dollar spent. <dfn>Cost per subscriber won back</dfn>: spend divided by the subscribers expected back because of the offer.</p>\n");
    data.push((
        "decision_arms".into(),
        frame(
            "decision_arms",
            vec![
                Column::new(
                    "arm".into(),
                    rows.iter().map(|r| r.arm.clone()).collect::<Vec<_>>(),
                ),
                Column::new(
                    "recapture_rate".into(),
                    rounded(&rows.iter().map(|r| r.rate).collect::<Vec<_>>(), 4),
                ),
                Column::new(
                    "expected_profit_usd".into(),
                    rounded(&rows.iter().map(|r| r.profit).collect::<Vec<_>>(), 2),
                ),
                Column::new(
                    "profit_lo_usd".into(),
                    rows.iter()
                        .map(|r| r.profit_ci.map(|c| round(c.0, 2)))
                        .collect::<Vec<_>>(),
                ),
                Column::new(
                    "profit_hi_usd".into(),
                    rows.iter()
                        .map(|r| r.profit_ci.map(|c| round(c.1, 2)))
                        .collect::<Vec<_>>(),
                ),
                Column::new(
                    "incremental_profit_usd".into(),
                    rounded(&rows.iter().map(|r| r.incremental).collect::<Vec<_>>(), 2),
                ),
                Column::new(
                    "incremental_lo_usd".into(),
                    rows.iter()
                        .map(|r| r.incremental_ci.map(|c| round(c.0, 2)))
                        .collect::<Vec<_>>(),
                ),
                Column::new(
                    "incremental_hi_usd".into(),
                    rows.iter()
                        .map(|r| r.incremental_ci.map(|c| round(c.1, 2)))
                        .collect::<Vec<_>>(),
                ),
            ],
        )?,
    ));
    Ok(out)
}

fn kpi(value: &str, what: &str) -> String {
    format!(
        "<div class=\"kpi\"><b>{}</b><span>{}</span></div>",
        esc(value),
        esc(what)
    )
}

// ---------------------------------------------------------------- 2

fn contacts(inp: &ReportInputs, data: &mut Vec<(String, DataFrame)>) -> Result<String> {
    let Some(df) = inp.targets.as_ref() else {
        return Ok(no_simulation(inp));
    };
    let mut out = String::new();
    let gain = f64s(df, "expected_incremental_profit");
    let action = strs(df, "action");
    let arm = strs(df, "recommended_arm");
    let reason = strs(df, "leave_reason");
    let segment = strs(df, "value_segment");
    let n = df.height();
    let mut g: Vec<f64> = gain.iter().map(|v| v.unwrap_or(0.0)).collect();
    g.sort_by(|a, b| b.total_cmp(a));
    let paying = g.iter().filter(|v| **v > 0.0).count();
    let mut cum = Vec::with_capacity(n + 1);
    cum.push(0.0);
    for v in &g {
        cum.push(cum.last().copied().unwrap_or(0.0) + v);
    }
    let is = |i: usize, what: &str| action[i].as_deref() == Some(what);
    let contacted = (0..n).filter(|i| is(*i, "contact")).count();
    let held = (0..n).filter(|i| is(*i, "holdout")).count();
    let over_budget = (0..n).filter(|i| is(*i, "over_budget")).count();
    let contacted_gain: f64 = (0..n)
        .filter(|i| is(*i, "contact"))
        .map(|i| gain[i].unwrap_or(0.0))
        .sum();
    let budget = match inp.budget {
        (None, None) => "No budget limit is set".to_string(),
        (Some(c), None) => format!("The budget allows at most {} contacts", count(c as f64)),
        (None, Some(s)) => format!("The budget allows at most {} of spend", money(s)),
        (Some(c), Some(s)) => format!(
            "The budget allows at most {} contacts and {} of spend",
            count(c as f64),
            money(s)
        ),
    };
    let _ = writeln!(
        out,
        "<p class=\"lead\">Of the {} subscribers who may be contacted, <b>{}</b> have an offer expected to earn more than it costs; contacting all of them would add {} over sending no offer. {}: {} are on the list to contact (expected {} over no offer), {} are held out to measure the campaign{}.</p>",
        count(n as f64),
        count(paying as f64),
        money(cum.get(paying).copied().unwrap_or(0.0)),
        budget,
        count(contacted as f64),
        money(contacted_gain),
        count(held as f64),
        if over_budget > 0 {
            format!(
                ", and {} who would pay are left out by the budget",
                count(over_budget as f64)
            )
        } else {
            String::new()
        }
    );
    // At most 400 points on the curve (the CSV keeps every one).
    let step = (n / 400).max(1);
    let points: Vec<(f64, f64)> = (0..=n)
        .filter(|k| k % step == 0 || *k == n || *k == paying)
        .map(|k| (k as f64, cum[k]))
        .collect();
    let mut markers = vec![Marker {
        x: paying as f64,
        label: "next contact stops paying".into(),
    }];
    if contacted + held < paying {
        markers.push(Marker {
            x: (contacted + held) as f64,
            label: "budget".into(),
        });
    }
    let svg = charts::lines(
        "profit curve",
        false,
        "subscribers contacted, best first",
        "expected incremental profit",
        &[Line {
            name: "cumulative expected incremental profit".into(),
            points,
            dashed: false,
            color: None,
        }],
        &markers,
        false,
        &|x| count(x),
        &money_axis,
    )?;
    out.push_str(&figure(
        "chart-profit-curve",
        &svg,
        "The profit curve: expected incremental profit if the subscribers are contacted in rank order, each with the offer recommended for them. It rises while contacts pay and flattens where they stop.",
        "profit_curve.csv",
    ));
    data.push((
        "profit_curve".into(),
        frame(
            "profit_curve",
            vec![
                Column::new("contacts".into(), (0..=n as u64).collect::<Vec<u64>>()),
                Column::new(
                    "cumulative_expected_incremental_profit_usd".into(),
                    rounded(&cum, 2),
                ),
            ],
        )?,
    ));
    // The recommended arm by leave reason, beside the tailored rule.
    let mut by_reason: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for i in 0..n {
        if let Some(a) = arm[i].as_deref().filter(|a| *a != "none") {
            *by_reason
                .entry(reason[i].clone().unwrap_or_else(|| "unknown".into()))
                .or_default()
                .entry(a.to_string())
                .or_default() += 1;
        }
    }
    let arms: Vec<String> = {
        let mut a: Vec<String> = by_reason.values().flat_map(|m| m.keys().cloned()).collect();
        a.sort();
        a.dedup();
        a
    };
    if !by_reason.is_empty() {
        let mut header: Vec<&str> = vec!["leave reason"];
        header.extend(arms.iter().map(String::as_str));
        header.push("the tailored rule gives");
        let rows: Vec<Vec<String>> = by_reason
            .iter()
            .map(|(r, m)| {
                let mut row = vec![esc(r)];
                row.extend(arms.iter().map(|a| count(*m.get(a).unwrap_or(&0) as f64)));
                let rule = inp.economics.and_then(|e| {
                    REASONS
                        .iter()
                        .position(|x| x == r)
                        .map(|k| package_name(e.tailored[k]).to_string())
                });
                row.push(esc(&rule.unwrap_or_else(|| "-".into())));
                row
            })
            .collect();
        let numeric: Vec<usize> = (1..=arms.len()).collect();
        let _ = write!(
            out,
            "<h3>Which offer, by reason for leaving</h3>\n<p>Subscribers recommended each offer, by the reason they gave for leaving, beside what the tailored arm's fixed rule would give them. Where the two differ, the models expect the recommended offer to earn more for that subscriber.</p>\n{}",
            table(&header, &rows, &numeric)
        );
    }
    // Value segments among the eligible and the selected.
    let order = ["gold", "silver", "copper", "iron"];
    let eligible: Vec<f64> = order
        .iter()
        .map(|s| {
            (0..n)
                .filter(|i| segment[*i].as_deref() == Some(*s))
                .count() as f64
        })
        .collect();
    let selected: Vec<f64> = order
        .iter()
        .map(|s| {
            (0..n)
                .filter(|i| {
                    segment[*i].as_deref() == Some(*s) && (is(*i, "contact") || is(*i, "holdout"))
                })
                .count() as f64
        })
        .collect();
    let to_bars = |v: &[f64]| -> Vec<Bar> {
        order
            .iter()
            .zip(v)
            .map(|(s, v)| Bar {
                label: s.to_string(),
                value: *v,
                interval: None,
            })
            .collect()
    };
    let svg = charts::bars(
        "value segments",
        "subscribers",
        &[
            ("eligible", to_bars(&eligible)),
            ("selected", to_bars(&selected)),
        ],
        &|v| count(v),
    )?;
    let share = |k: usize| {
        if eligible[k] > 0.0 {
            pct(selected[k] / eligible[k])
        } else {
            "none".into()
        }
    };
    let _ = writeln!(
        out,
        "<h3>Value segments</h3>\n<p>{} of the gold subscribers (high value before leaving and high expected value if they return) are selected, {} of the iron ones (low on both).</p>",
        share(0),
        share(3)
    );
    out.push_str(&figure(
        "chart-segments",
        &svg,
        &(charts::legend(&["eligible", "selected"]) + "Subscribers by value segment among those who may be contacted and those selected. <dfn>Gold</dfn>: top 20% by monthly margin before leaving and top half by expected profit if won back; <dfn>silver</dfn>: high value only; <dfn>copper</dfn>: high potential only; <dfn>iron</dfn>: neither."),
        "value_segments.csv",
    ));
    data.push((
        "value_segments".into(),
        frame(
            "value_segments",
            vec![
                Column::new("segment".into(), order.to_vec()),
                Column::new("eligible".into(), eligible),
                Column::new("selected".into(), selected),
            ],
        )?,
    ));
    Ok(out)
}

// ---------------------------------------------------------------- 3

fn list(inp: &ReportInputs) -> Result<String> {
    let Some(df) = inp.targets.as_ref() else {
        return Ok(no_simulation(inp));
    };
    let n = df.height();
    let action = strs(df, "action");
    let rank = f64s(df, "rank");
    let ids = strs(df, "subscriber_id");
    let arm = strs(df, "recommended_arm");
    let gain = f64s(df, "expected_incremental_profit");
    let segment = strs(df, "value_segment");
    let reason = strs(df, "leave_reason");
    let days = f64s(df, "days_since_defection");
    let codes = [
        strs(df, "reason_1"),
        strs(df, "reason_2"),
        strs(df, "reason_3"),
    ];
    let mut top: Vec<usize> = (0..n)
        .filter(|i| action[*i].as_deref() == Some("contact"))
        .collect();
    top.sort_by(|a, b| {
        rank[*a]
            .unwrap_or(f64::MAX)
            .total_cmp(&rank[*b].unwrap_or(f64::MAX))
    });
    let contacts = top.len();
    top.truncate(15);
    let mut out = String::new();
    let held = (0..n)
        .filter(|i| action[*i].as_deref() == Some("holdout"))
        .count();
    let _ = writeln!(
        out,
        "<p class=\"lead\">The list ranks the {} subscribers to contact by the profit their offer is expected to add; here are the first {}. The whole list is in <a href=\"../simulate/target_list.xlsx\">target_list.xlsx</a> (a sheet per action) and <a href=\"../simulate/target_list.csv\">target_list.csv</a>.</p>",
        count(contacts as f64),
        top.len()
    );
    if top.is_empty() {
        out.push_str(&missing("Nobody is on the list to contact: no offer is expected to pay for any eligible subscriber under these economics and this budget."));
    } else {
        let rows: Vec<Vec<String>> = top
            .iter()
            .map(|&i| {
                let a = arm[i].clone().unwrap_or_default();
                let p = f64s(df, &format!("p_return_{a}")).get(i).copied().flatten();
                let why: Vec<String> = codes
                    .iter()
                    .filter_map(|c| c[i].as_deref().map(|c| esc(&words::reason(c))))
                    .collect();
                vec![
                    num(rank[i], 0),
                    esc(ids[i].as_deref().unwrap_or("")),
                    esc(&a),
                    cents(gain[i].unwrap_or(0.0)),
                    p.map(pct).unwrap_or_else(|| "n/a".into()),
                    esc(segment[i].as_deref().unwrap_or("")),
                    esc(reason[i].as_deref().unwrap_or("")),
                    num(days[i], 0),
                    why.join("; "),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "rank",
                "subscriber",
                "offer",
                "expected profit added",
                "chance of return with it",
                "segment",
                "left for",
                "days since leaving",
                "why: what raises (+) or lowers (\u{2212}) their chance of return most",
            ],
            &rows,
            &[0, 3, 4, 7],
        ));
    }
    let selected = contacts + held;
    let _ = writeln!(
        out,
        "<h3>The hold-out: how the campaign will be measured</h3>\n<p>{} of the {} selected subscribers{} are held out at random (by a hash of the subscriber id and the campaign name, so a rerun picks the same ones): they get no offer. Comparing how many of them come back, and what they are worth, with the contacted subscribers measures what the campaign really earned, instead of taking the models' word for it.</p>",
        count(held as f64),
        count(selected as f64),
        if selected > 0 {
            format!(" ({})", pct(held as f64 / selected as f64))
        } else {
            String::new()
        }
    );
    Ok(out)
}

// ---------------------------------------------------------------- 4

fn confidence(inp: &ReportInputs, data: &mut Vec<(String, DataFrame)>) -> Result<String> {
    let mut out = String::new();
    let _ = writeln!(out, "<h3>The policy on past randomised offers</h3>");
    match inp.policies.as_ref() {
        None => out.push_str(&no_simulation(inp)),
        Some(df) => out.push_str(&off_policy(inp, df, data)?),
    }
    out.push_str("<h3>The models on the held-out rows</h3>\n");
    match inp.evaluation.as_ref() {
        None => out.push_str(&missing(
            "No model evaluation: the model version's evaluation.json is absent (run `winback train`).",
        )),
        Some(ev) => out.push_str(&models(ev, data)?),
    }
    Ok(out)
}

fn off_policy(
    inp: &ReportInputs,
    df: &DataFrame,
    data: &mut Vec<(String, DataFrame)>,
) -> Result<String> {
    let mut out = String::new();
    let policy = strs(df, "policy");
    let g = |n: &str| f64s(df, n);
    let (dr, lo, hi, model, ips, ips_lo, ips_hi, offers, matched) = (
        g("dr_per_offer"),
        g("dr_lo"),
        g("dr_hi"),
        g("model_per_offer"),
        g("ips_per_offer"),
        g("ips_lo"),
        g("ips_hi"),
        g("history_offers"),
        g("history_matched"),
    );
    let rows: Vec<usize> = (0..df.height()).filter(|i| dr[*i].is_some()).collect();
    if rows.is_empty() {
        out.push_str(&missing(
            "No off-policy check: the history has no randomised offers that no model was fitted on (all of them fall in the training period, or their response window is not observed yet).",
        ));
        return Ok(out);
    }
    let name = |i: usize| policy[i].clone().unwrap_or_default();
    let find = |p: &str| rows.iter().copied().find(|i| name(*i) == p);
    let mut lead = format!(
        "Each policy's profit per offer, estimated on {} past offers that were assigned at random and that no model was fitted on (the doubly-robust estimate, which corrects the models' view with what really happened).",
        count(offers[rows[0]].unwrap_or(0.0))
    );
    if let Some(r) = find("recommended") {
        let best_uniform = rows
            .iter()
            .copied()
            .filter(|i| name(*i).starts_with("all "))
            .max_by(|a, b| {
                dr[*a]
                    .unwrap_or(f64::MIN)
                    .total_cmp(&dr[*b].unwrap_or(f64::MIN))
            });
        let _ = write!(
            lead,
            " The recommended policy is worth {} per offer (90% interval {} to {})",
            cents(dr[r].unwrap_or(f64::NAN)),
            cents(lo[r].unwrap_or(f64::NAN)),
            cents(hi[r].unwrap_or(f64::NAN))
        );
        if let Some(u) = best_uniform {
            let _ = write!(
                lead,
                ", against {} for the best single offer ({}).",
                cents(dr[u].unwrap_or(f64::NAN)),
                esc(&name(u))
            );
        } else {
            lead.push('.');
        }
        if let Some(n) = find("no offer") {
            let _ = write!(
                lead,
                " Sending no offer is worth {}.",
                cents(dr[n].unwrap_or(f64::NAN))
            );
        }
    }
    if let Some(note) = inp
        .simulate
        .as_ref()
        .and_then(|s| js(s, &["targeting", "note"]))
    {
        let _ = write!(lead, " Targeting check: {}.", esc(&note));
    }
    let _ = writeln!(out, "<p class=\"lead\">{lead}</p>");
    let labels: Vec<String> = rows.iter().map(|i| name(*i)).collect();
    let estimated: Vec<Bar> = rows
        .iter()
        .zip(&labels)
        .map(|(i, l)| Bar {
            label: l.clone(),
            value: dr[*i].unwrap_or(0.0),
            interval: interval(lo[*i], hi[*i]),
        })
        .collect();
    let modelled: Vec<Bar> = rows
        .iter()
        .zip(&labels)
        .map(|(i, l)| Bar {
            label: l.clone(),
            value: model[*i].unwrap_or(0.0),
            interval: None,
        })
        .collect();
    let svg = charts::bars(
        "off-policy values",
        "profit per offer",
        &[
            ("measured on past offers (doubly robust)", estimated),
            ("the models' own estimate", modelled),
        ],
        &|v| format!("${v:.0}"),
    )?;
    out.push_str(&figure(
        "chart-off-policy",
        &svg,
        &(charts::legend(&["measured on past offers (doubly robust)", "the models' own estimate"]) + "Profit per offer of each policy on past randomised offers no model saw: measured (with 90% intervals) and as the models predict it on the same offers. Close bars mean the models can be trusted."),
        "off_policy.csv",
    ));
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|&i| {
            vec![
                esc(&name(i)),
                count(matched[i].unwrap_or(0.0)),
                cents(model[i].unwrap_or(f64::NAN)),
                format!(
                    "{} ({} to {})",
                    cents(ips[i].unwrap_or(f64::NAN)),
                    cents(ips_lo[i].unwrap_or(f64::NAN)),
                    cents(ips_hi[i].unwrap_or(f64::NAN))
                ),
                format!(
                    "{} ({} to {})",
                    cents(dr[i].unwrap_or(f64::NAN)),
                    cents(lo[i].unwrap_or(f64::NAN)),
                    cents(hi[i].unwrap_or(f64::NAN))
                ),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "policy",
            "past offers that match it",
            "the models' estimate",
            "importance-weighted (IPS)",
            "doubly robust (DR)",
        ],
        &table_rows,
        &[1, 2, 3, 4],
    ));
    data.push((
        "off_policy".into(),
        frame(
            "off_policy",
            vec![
                Column::new("policy".into(), labels.clone()),
                Column::new(
                    "matched_offers".into(),
                    rows.iter().map(|i| matched[*i]).collect::<Vec<_>>(),
                ),
                Column::new(
                    "model_per_offer_usd".into(),
                    rows.iter()
                        .map(|i| model[*i].map(|v| round(v, 2)))
                        .collect::<Vec<_>>(),
                ),
                Column::new(
                    "dr_per_offer_usd".into(),
                    rows.iter()
                        .map(|i| dr[*i].map(|v| round(v, 2)))
                        .collect::<Vec<_>>(),
                ),
                Column::new(
                    "dr_lo_usd".into(),
                    rows.iter()
                        .map(|i| lo[*i].map(|v| round(v, 2)))
                        .collect::<Vec<_>>(),
                ),
                Column::new(
                    "dr_hi_usd".into(),
                    rows.iter()
                        .map(|i| hi[*i].map(|v| round(v, 2)))
                        .collect::<Vec<_>>(),
                ),
            ],
        )?,
    ));
    Ok(out)
}

/// What each model predicts, for the metrics table.
fn model_title(name: &str) -> &str {
    match name {
        "return" => "return (will a lapsed subscriber come back?)",
        "churn" => "churn (will an active subscriber leave?)",
        "second_lifetime" => "second lifetime (will a returned subscriber leave again this month?)",
        other => other,
    }
}

/// The return model's candidates side by side: holdout fit and what the
/// policy each implies is worth on past offers no model saw, with the
/// sentence saying which was kept and why. Empty without candidates.
fn return_candidates(models: &[Value]) -> String {
    let Some(m) = models
        .iter()
        .find(|m| js(m, &["model"]).as_deref() == Some("return"))
    else {
        return String::new();
    };
    let list = at(m, &["candidates"])
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if list.len() < 2 {
        return String::new();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|c| {
            let dr = |k: &str| jf(c, &["policy_value", "dr", k]);
            vec![
                esc(&js(c, &["learner"]).unwrap_or_default()),
                num(jf(c, &["holdout", "log_loss"]), 4),
                num(jf(c, &["holdout", "roc_auc"]), 3),
                dr("estimate").map(money).unwrap_or_else(|| "-".into()),
                match dr("estimate") {
                    Some(_) => money_range(interval(dr("lo"), dr("hi"))),
                    None => "-".into(),
                },
                jf(c, &["policy_value", "matched"])
                    .map(count)
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let mut out = String::from(
        "<p>The return model's candidates: one model for every arm (logistic, boosted trees) and a model per arm. Each is judged by its fit on the held-out offers and by what its policy (each past offer given the arm of highest expected profit) is worth on past randomised offers no model was fitted on (doubly robust, profit per offer).</p>\n",
    );
    out.push_str(&table(
        &[
            "candidate",
            "log loss",
            "AUC",
            "policy profit per offer",
            "interval",
            "offers matched",
        ],
        &rows,
        &[1, 2, 3, 4, 5],
    ));
    if let Some(choice) = js(m, &["choice"]).filter(|c| !c.is_empty()) {
        out.push_str(&format!("<p>{}.</p>\n", esc(&choice)));
    }
    out
}

fn models(ev: &Value, data: &mut Vec<(String, DataFrame)>) -> Result<String> {
    let mut out = String::new();
    let empty = Vec::new();
    let list = at(ev, &["models"])
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    if list.is_empty() {
        out.push_str(&missing("The model version holds no evaluated model."));
        return Ok(out);
    }
    let mut rows = Vec::new();
    let mut calibration: Vec<Line> = Vec::new();
    let mut gains: Vec<Line> = Vec::new();
    let (mut c_model, mut c_pred, mut c_obs, mut c_rows) = (vec![], vec![], vec![], vec![]);
    for m in list {
        let name = js(m, &["model"]).unwrap_or_default();
        let chosen = js(m, &["chosen"]).unwrap_or_default();
        let Some(h) = at(m, &["candidates"])
            .and_then(Value::as_array)
            .and_then(|c| {
                c.iter()
                    .find(|c| js(c, &["learner"]).as_deref() == Some(&chosen))
            })
            .and_then(|c| c.get("holdout"))
        else {
            continue;
        };
        rows.push(vec![
            esc(model_title(&name)),
            esc(&chosen),
            count(jf(h, &["rows"]).unwrap_or(0.0)),
            jf(h, &["observed_rate"]).map(pct).unwrap_or_default(),
            jf(h, &["mean_predicted"]).map(pct).unwrap_or_default(),
            num(jf(h, &["roc_auc"]), 3),
            num(jf(h, &["log_loss"]), 4),
            num(jf(h, &["ece"]), 4),
            num(jf(h, &["calibration_intercept"]), 2),
            num(jf(h, &["calibration_slope"]), 2),
        ]);
        let bins = at(h, &["calibration"])
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let points: Vec<(f64, f64)> = bins
            .iter()
            .filter_map(|b| Some((jf(b, &["mean_predicted"])?, jf(b, &["observed"])?)))
            .collect();
        for b in &bins {
            c_model.push(name.clone());
            c_pred.push(jf(b, &["mean_predicted"]).map(|v| round(v, 4)));
            c_obs.push(jf(b, &["observed"]).map(|v| round(v, 4)));
            c_rows.push(jf(b, &["rows"]).unwrap_or(0.0));
        }
        calibration.push(Line {
            name: name.replace('_', " "),
            points,
            dashed: false,
            color: None,
        });
        let mut g = vec![(0.0, 0.0)];
        g.extend(
            at(h, &["gains"])
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|d| {
                    Some((
                        jf(d, &["decile"])? * 10.0,
                        jf(d, &["cumulative_gain"])? * 100.0,
                    ))
                }),
        );
        gains.push(Line {
            name: name.replace('_', " "),
            points: g,
            dashed: false,
            color: None,
        });
    }
    out.push_str("<p>Each model was fitted on the earlier rows and is judged here on the latest ones, which it never saw (out of sample). <dfn>AUC</dfn>: the chance that the model ranks a random positive above a random negative (0.5 is a coin toss). <dfn>Calibration error</dfn>: the average gap between predicted and observed rates over ten equal-size groups; a calibration slope near 1 and intercept near 0 mean the probabilities can be taken at face value.</p>\n");
    out.push_str(&table(
        &[
            "model",
            "learner",
            "held-out rows",
            "observed rate",
            "mean prediction",
            "AUC",
            "log loss",
            "calibration error",
            "calibration intercept",
            "calibration slope",
        ],
        &rows,
        &[2, 3, 4, 5, 6, 7, 8, 9],
    ));
    out.push_str(&return_candidates(list));
    // One calibration chart per model: their scales differ by tenfold.
    let mut grid = String::from("<div class=\"grid2\">\n");
    for line in &calibration {
        if line.points.is_empty() {
            continue;
        }
        let svg = charts::lines(
            &format!("calibration {}", line.name),
            true,
            "predicted probability",
            "observed rate",
            std::slice::from_ref(line),
            &[],
            true,
            &|x| format!("{:.1}%", x * 100.0),
            &|y| format!("{:.1}%", y * 100.0),
        )?;
        grid.push_str(&figure(
            &format!("chart-calibration-{}", line.name.replace(' ', "-")),
            &svg,
            &format!(
                "Calibration of the {} model: observed rate against mean prediction in ten equal-size groups of held-out rows; on the dashed line, predictions are right.",
                esc(&line.name)
            ),
            "calibration.csv",
        ));
    }
    grid.push_str("</div>\n");
    out.push_str(&grid);
    data.push((
        "calibration".into(),
        frame(
            "calibration",
            vec![
                Column::new("model".into(), c_model),
                Column::new("mean_predicted".into(), c_pred),
                Column::new("observed_rate".into(), c_obs),
                Column::new("rows".into(), c_rows),
            ],
        )?,
    ));
    let mut with_random = gains.clone();
    with_random.push(Line {
        name: "random order".into(),
        points: vec![(0.0, 0.0), (100.0, 100.0)],
        dashed: true,
        color: None,
    });
    let svg = charts::lines(
        "gains",
        false,
        "share of held-out rows, highest predicted first (%)",
        "share of all positives found (%)",
        &with_random,
        &[],
        false,
        &|x| format!("{x:.0}%"),
        &|y| format!("{y:.0}%"),
    )?;
    out.push_str(&figure(
        "chart-gains",
        &svg,
        "Gains: the share of all positives (returns, churners, second departures) found in the top share of held-out rows ranked by the model. The further above the dashed line, the better the ranking.",
        "gains.csv",
    ));
    data.push((
        "gains".into(),
        frame(
            "gains",
            vec![
                Column::new(
                    "model".into(),
                    gains
                        .iter()
                        .flat_map(|l| l.points.iter().map(|_| l.name.clone()))
                        .collect::<Vec<_>>(),
                ),
                Column::new(
                    "share_of_rows_pct".into(),
                    gains
                        .iter()
                        .flat_map(|l| l.points.iter().map(|p| p.0))
                        .collect::<Vec<_>>(),
                ),
                Column::new(
                    "share_of_positives_pct".into(),
                    gains
                        .iter()
                        .flat_map(|l| l.points.iter().map(|p| round(p.1, 2)))
                        .collect::<Vec<_>>(),
                ),
            ],
        )?,
    ));
    out.push_str(&uplift(list, data)?);
    out.push_str(&durations(list, data)?);
    Ok(out)
}

/// The non-empty list `key` of model `model`'s evaluation.
fn model_list<'a>(list: &'a [Value], model: &str, key: &str) -> Option<&'a Vec<Value>> {
    list.iter()
        .find(|m| js(m, &["model"]).as_deref() == Some(model))
        .and_then(|m| m.get(key))
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
}

/// Qini-style curves per arm: cumulative incremental returns by decile of
/// predicted uplift, on the held-out randomised offers.
fn uplift(list: &[Value], data: &mut Vec<(String, DataFrame)>) -> Result<String> {
    let Some(arms) = model_list(list, "return", "uplift") else {
        return Ok(missing(
            "No uplift check: the return model has no held-out randomised offers with both an arm and control.",
        ));
    };
    let mut out = String::from("<h3>Does the ranking find those an offer persuades?</h3>\n");
    let mut lines = Vec::new();
    let (mut d_arm, mut d_dec, mut d_pred, mut d_obs, mut d_cum) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut sentences = Vec::new();
    for entry in arms {
        let Some(pair) = entry.as_array() else {
            continue;
        };
        let (Some(arm), Some(q)) = (pair.first().and_then(Value::as_str), pair.get(1)) else {
            continue;
        };
        let deciles = q
            .get("deciles")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let total: f64 = deciles
            .iter()
            .map(|d| jf(d, &["treated"]).unwrap_or(0.0) + jf(d, &["control"]).unwrap_or(0.0))
            .sum();
        let mut cum = 0.0;
        let mut seen = 0.0;
        let mut points = vec![(0.0, 0.0)];
        for d in &deciles {
            let rows = jf(d, &["treated"]).unwrap_or(0.0) + jf(d, &["control"]).unwrap_or(0.0);
            seen += rows;
            cum += jf(d, &["observed"]).unwrap_or(0.0) * rows;
            if total > 0.0 {
                points.push((seen / total * 100.0, cum / total * 100.0));
            }
            d_arm.push(arm.to_string());
            d_dec.push(jf(d, &["decile"]).unwrap_or(0.0));
            d_pred.push(jf(d, &["predicted"]).map(|v| round(v, 4)));
            d_obs.push(jf(d, &["observed"]).map(|v| round(v, 4)));
            d_cum.push(if total > 0.0 {
                round(cum / total, 4)
            } else {
                0.0
            });
        }
        sentences.push(format!(
            "{}: {} more returns per 100 offers observed, {} predicted (Qini coefficient {})",
            esc(arm),
            num(jf(q, &["observed_uplift"]).map(|v| v * 100.0), 1),
            num(jf(q, &["predicted_uplift"]).map(|v| v * 100.0), 1),
            num(jf(q, &["qini_coefficient"]), 3)
        ));
        lines.push(Line {
            name: arm.to_string(),
            points,
            dashed: false,
            color: None,
        });
    }
    let _ = writeln!(
        out,
        "<p>On held-out past offers, each arm against no offer: {}. A curve that rises steeply first means the model ranks first the subscribers the offer persuades; a straight line from the origin to the end means no better than random.</p>",
        sentences.join("; ")
    );
    let mut with_random = lines.clone();
    for (k, l) in lines.iter().enumerate() {
        if let Some(end) = l.points.last() {
            with_random.push(Line {
                name: if k == 0 {
                    "dashed: at random".into()
                } else {
                    String::new()
                },
                points: vec![(0.0, 0.0), *end],
                dashed: true,
                color: Some(k),
            });
        }
    }
    let svg = charts::lines(
        "qini",
        false,
        "share of held-out offers, highest predicted uplift first (%)",
        "extra returns per 100 offers, cumulative",
        &with_random,
        &[],
        false,
        &|x| format!("{x:.0}%"),
        &|y| format!("{y:.1}"),
    )?;
    out.push_str(&figure(
        "chart-qini",
        &svg,
        "Qini curves by decile: cumulative extra returns (offer's return rate minus control's, per decile of predicted uplift) against the share of held-out offers taken, per arm; dashed: the same arm targeted at random.",
        "qini.csv",
    ));
    data.push((
        "qini".into(),
        frame(
            "qini",
            vec![
                Column::new("arm".into(), d_arm),
                Column::new("decile".into(), d_dec),
                Column::new("predicted_uplift".into(), d_pred),
                Column::new("observed_uplift".into(), d_obs),
                Column::new("cumulative_extra_returns_per_offer".into(), d_cum),
            ],
        )?,
    ));
    Ok(out)
}

fn durations(list: &[Value], data: &mut Vec<(String, DataFrame)>) -> Result<String> {
    let Some(checks) = model_list(list, "second_lifetime", "durations") else {
        return Ok(missing(
            "No duration check: the second-lifetime model has no held-out returns followed past the offers' terms.",
        ));
    };
    let mut out = String::from("<h3>How long do returned subscribers stay?</h3>\n");
    let label = |c: &Value| js(c, &["leave_reason"]).unwrap_or_default();
    let observed: Vec<Bar> = checks
        .iter()
        .map(|c| Bar {
            label: label(c),
            value: jf(c, &["observed"]).unwrap_or(0.0),
            interval: None,
        })
        .collect();
    let predicted: Vec<Bar> = checks
        .iter()
        .map(|c| Bar {
            label: label(c),
            value: jf(c, &["predicted"]).unwrap_or(0.0),
            interval: None,
        })
        .collect();
    let first = &checks[0];
    let _ = writeln!(
        out,
        "<p>Among held-out returns still subscribed when the longest offer ended (month {}), the months they stayed over the next {} months, observed (Kaplan–Meier) and predicted, by reason for leaving.</p>",
        num(jf(first, &["after_month"]), 0),
        num(jf(first, &["months"]), 0)
    );
    let svg = charts::bars(
        "durations",
        "months retained in the window",
        &[("observed", observed), ("predicted", predicted)],
        &|v| format!("{v:.1}"),
    )?;
    out.push_str(&figure(
        "chart-durations",
        &svg,
        &(charts::legend(&["observed", "predicted"]) + "Predicted against observed months retained after the offers' terms, on held-out returns."),
        "durations.csv",
    ));
    data.push((
        "durations".into(),
        frame(
            "durations",
            vec![
                Column::new(
                    "leave_reason".into(),
                    checks.iter().map(label).collect::<Vec<_>>(),
                ),
                Column::new(
                    "returns".into(),
                    checks
                        .iter()
                        .map(|c| jf(c, &["returns"]))
                        .collect::<Vec<_>>(),
                ),
                Column::new(
                    "observed_months".into(),
                    checks
                        .iter()
                        .map(|c| jf(c, &["observed"]).map(|v| round(v, 2)))
                        .collect::<Vec<_>>(),
                ),
                Column::new(
                    "predicted_months".into(),
                    checks
                        .iter()
                        .map(|c| jf(c, &["predicted"]).map(|v| round(v, 2)))
                        .collect::<Vec<_>>(),
                ),
            ],
        )?,
    ));
    Ok(out)
}

// ---------------------------------------------------------------- 5

fn churn(inp: &ReportInputs, data: &mut Vec<(String, DataFrame)>) -> Result<String> {
    let Some(df) = inp.churn.as_ref().filter(|d| d.height() > 0) else {
        return Ok(missing(&format!(
            "No churn scores in this run: {}",
            esc(inp.why_no_scores.as_deref().unwrap_or(
                "score/churn_scores.parquet is absent (run `winback score`, or `winback run`)"
            ))
        )));
    };
    let p = f64s(df, "p_churn");
    let decile = f64s(df, "risk_decile");
    let value = f64s(df, "realised_value");
    let mut n = [0f64; 10];
    let mut sum_p = [0f64; 10];
    let mut sum_v = [0f64; 10];
    for i in 0..df.height() {
        let Some(d) = decile[i] else { continue };
        let k = (d as usize).clamp(1, 10) - 1;
        n[k] += 1.0;
        sum_p[k] += p[i].unwrap_or(0.0);
        sum_v[k] += value[i].unwrap_or(0.0);
    }
    let total_n: f64 = n.iter().sum();
    let total_v: f64 = sum_v.iter().sum();
    let mean_p = sum_p.iter().sum::<f64>() / total_n.max(1.0);
    let rate: Vec<f64> = (0..10).map(|k| sum_p[k] / n[k].max(1.0)).collect();
    let mean_v: Vec<f64> = (0..10).map(|k| sum_v[k] / n[k].max(1.0)).collect();
    let horizon = inp
        .churn_horizon_days
        .map(|d| format!("within {d} days"))
        .unwrap_or_else(|| "within the horizon".into());
    let mut out = format!(
        "<p class=\"lead\">Of the {} active subscribers, the riskiest tenth has a {} chance of leaving {horizon} on average (all subscribers: {}). They hold {} of margin earned to date ({} of the total): {}.</p>\n",
        count(total_n),
        pct(rate[0]),
        pct(mean_p),
        money(sum_v[0]),
        if total_v > 0.0 {
            pct(sum_v[0] / total_v)
        } else {
            "n/a".into()
        },
        if mean_v[0] > total_v / total_n.max(1.0) {
            "worth keeping before they go"
        } else {
            "less valuable than the average subscriber, so a retention offer must be cheap to pay"
        }
    );
    let labels: Vec<String> = (1..=10).map(|k| format!("decile {k}")).collect();
    let svg = charts::bars(
        "churn deciles",
        "predicted chance of leaving",
        &[(
            "chance of leaving",
            labels
                .iter()
                .zip(&rate)
                .map(|(l, r)| Bar {
                    label: l.clone(),
                    value: *r * 100.0,
                    interval: None,
                })
                .collect(),
        )],
        &|v| format!("{v:.0}%"),
    )?;
    out.push_str(&figure(
        "chart-churn-deciles",
        &svg,
        "Active subscribers in ten equal groups by predicted risk of leaving (decile 1: the riskiest), with the mean predicted chance per group.",
        "churn_deciles.csv",
    ));
    let rows: Vec<Vec<String>> = (0..10)
        .map(|k| {
            vec![
                format!("{}", k + 1),
                count(n[k]),
                pct(rate[k]),
                cents(mean_v[k]),
                money(sum_v[k]),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "risk decile",
            "subscribers",
            "mean chance of leaving",
            "mean margin to date",
            "total margin to date",
        ],
        &rows,
        &[0, 1, 2, 3, 4],
    ));
    data.push((
        "churn_deciles".into(),
        frame(
            "churn_deciles",
            vec![
                Column::new("risk_decile".into(), (1..=10u32).collect::<Vec<_>>()),
                Column::new("subscribers".into(), n.to_vec()),
                Column::new("mean_p_churn".into(), rounded(&rate, 4)),
                Column::new("mean_realised_value_usd".into(), rounded(&mean_v, 2)),
                Column::new("total_realised_value_usd".into(), rounded(&sum_v, 2)),
            ],
        )?,
    ));
    Ok(out)
}

// ---------------------------------------------------------------- 6

fn provenance(inp: &ReportInputs, data: &mut Vec<(String, DataFrame)>) -> Result<String> {
    let mut out = String::new();
    match inp.validate.as_ref() {
        None => out.push_str(&missing(
            "No validation report: validate/report.json is absent (run `winback validate`).",
        )),
        Some(v) => {
            let empty = Vec::new();
            let tables = at(v, &["tables"])
                .and_then(Value::as_array)
                .unwrap_or(&empty);
            let read: f64 = tables.iter().filter_map(|t| jf(t, &["rows_read"])).sum();
            let rejected: f64 = tables
                .iter()
                .filter_map(|t| jf(t, &["rows_rejected"]))
                .sum();
            let _ = writeln!(
                out,
                "<p class=\"lead\">{} rows read from {} tables in {} mode; {} rejected{}.</p>",
                count(read),
                tables.len(),
                esc(&js(v, &["mode"]).unwrap_or_default()),
                count(rejected),
                if rejected > 0.0 {
                    " (set aside in validate/rejected/, each with its reason)"
                } else {
                    ""
                }
            );
            let rows: Vec<Vec<String>> = tables
                .iter()
                .map(|t| {
                    let notes: Vec<String> = at(t, &["notes"])
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(esc)
                        .collect();
                    vec![
                        esc(&js(t, &["table"]).unwrap_or_default()),
                        count(jf(t, &["rows_read"]).unwrap_or(0.0)),
                        count(jf(t, &["rows_accepted"]).unwrap_or(0.0)),
                        count(jf(t, &["rows_rejected"]).unwrap_or(0.0)),
                        notes.join("; "),
                    ]
                })
                .collect();
            out.push_str(&table(
                &["table", "rows read", "accepted", "rejected", "notes"],
                &rows,
                &[1, 2, 3],
            ));
            let absent: Vec<String> = at(v, &["missing_optional"])
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(esc)
                .collect();
            if !absent.is_empty() {
                let _ = writeln!(
                    out,
                    "<p>Optional tables absent: {} (what they feed is left out, not guessed).</p>",
                    absent.join(", ")
                );
            }
            data.push((
                "data_tables".into(),
                frame(
                    "data_tables",
                    vec![
                        Column::new(
                            "table".into(),
                            tables
                                .iter()
                                .map(|t| js(t, &["table"]).unwrap_or_default())
                                .collect::<Vec<_>>(),
                        ),
                        Column::new(
                            "rows_read".into(),
                            tables
                                .iter()
                                .map(|t| jf(t, &["rows_read"]))
                                .collect::<Vec<_>>(),
                        ),
                        Column::new(
                            "rows_accepted".into(),
                            tables
                                .iter()
                                .map(|t| jf(t, &["rows_accepted"]))
                                .collect::<Vec<_>>(),
                        ),
                        Column::new(
                            "rows_rejected".into(),
                            tables
                                .iter()
                                .map(|t| jf(t, &["rows_rejected"]))
                                .collect::<Vec<_>>(),
                        ),
                    ],
                )?,
            ));
        }
    }
    let mut facts: Vec<(String, String)> = Vec::new();
    if let Some(f) = inp.features.as_ref() {
        if let Some(end) = js(f, &["data_end"]) {
            facts.push((
                "the data's end".into(),
                format!(
                    "{}{}",
                    end,
                    js(f, &["data_end_set_by"])
                        .map(|b| format!(" (latest date in {b})"))
                        .unwrap_or_default()
                ),
            ));
        }
        if let Some(d) = js(f, &["as_of"]) {
            facts.push(("features as of".into(), d));
        }
        for note in at(f, &["notes"])
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(n) = note.as_str() {
                facts.push(("note".into(), n.to_string()));
            }
        }
    }
    if let Some(v) = &inp.model_version {
        facts.push(("model version".into(), v.clone()));
    }
    for (model, p) in &inp.provenance {
        facts.push((
            format!("{} model", model.replace('_', " ")),
            format!(
                "trained {} by winback {} on {} rows (data fingerprint {}, config {})",
                js(p, &["trained_at"]).unwrap_or_default(),
                js(p, &["code_version"]).unwrap_or_default(),
                count(jf(p, &["training_rows"]).unwrap_or(0.0)),
                js(p, &["data_fingerprint"]).unwrap_or_default(),
                js(p, &["config_hash"]).unwrap_or_default()
            ),
        ));
    }
    if let Some(ev) = inp.evaluation.as_ref() {
        for s in at(ev, &["skipped"])
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            facts.push((
                "model skipped".into(),
                s.to_string().trim_matches('"').to_string(),
            ));
        }
        for m in at(ev, &["models"])
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(s) = js(m, &["stored"]) {
                facts.push((
                    format!(
                        "stored {} model",
                        js(m, &["model"]).unwrap_or_default().replace('_', " ")
                    ),
                    s,
                ));
            }
        }
    }
    facts.push(("this run's config hash".into(), inp.config_hash.clone()));
    facts.push(("winback version".into(), inp.code_version.clone()));
    let rows: Vec<Vec<String>> = facts.iter().map(|(k, v)| vec![esc(k), esc(v)]).collect();
    out.push_str("<h3>Provenance</h3>\n");
    out.push_str(&table(&["what", "value"], &rows, &[]));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_with_nothing_but_a_config_is_a_whole_page_that_says_what_is_missing() {
        let r = render(&ReportInputs {
            why_no_simulate: Some("the data holds no win-back offers".into()),
            config_hash: "abc".into(),
            code_version: "0.1.0".into(),
            ..Default::default()
        })
        .unwrap();
        for (id, heading) in SECTIONS {
            assert!(r.html.contains(&format!("<section id=\"{id}\">")), "{id}");
            assert!(r.html.contains(heading));
        }
        assert!(r.html.contains("the data holds no win-back offers"));
        assert!(r.html.contains("No churn scores in this run"));
        assert!(!r.html.contains("<script"));
        assert!(r.html.ends_with("</html>\n"));
    }
}
