//! `winback simulate`: the I/O edge of the offer simulation
//! ([`crate::stages::simulate`]). Reads the validated tables and a model
//! version, builds the features of the subscribers lapsed at the as-of
//! date, applies the eligibility rules, simulates every arm, allocates the
//! budget, draws the hold-out, evaluates policies off-policy on the held-out
//! campaign history, and writes `<out>/simulate/` all or nothing:
//! `arm_summary`, `target_list` and `policy_evaluation` (Parquet and CSV)
//! and `summary.json`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use polars::prelude::*;
use serde::Serialize;
use tracing::info;
use winback_models::economics::Arm;
use winback_models::offers::Outcome;

use crate::catalog::{self, StagedDir};
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::modeling::{load_version, model_dir, read_parquet, repeat_to};
use crate::schema::{Table, col};
use crate::stages::features::{self, Inputs as FeatureInputs, epoch_days, f};
use crate::stages::simulate::{self as sim, Intervals, Models, PolicyValue};
use crate::stages::train::ModelArtifact;

/// What `simulate` wrote and found.
#[derive(Debug, Serialize)]
pub struct SimulateSummary {
    /// As-of date.
    pub as_of: String,
    /// Campaign name (hold-out key).
    pub campaign: String,
    /// Model version used.
    pub model: PathBuf,
    /// Subscribers lapsed at the as-of date.
    pub lapsed: usize,
    /// Of them, eligible.
    pub eligible: usize,
    /// Of them, excluded, per rule (the first rule each fails).
    pub excluded: Vec<(String, usize)>,
    /// Eligible subscribers with a profitable arm.
    pub profitable: usize,
    /// Selected by the allocation (contacted plus held out).
    pub selected: usize,
    /// Selected and contacted.
    pub contacted: usize,
    /// Selected and withheld as the hold-out.
    pub holdout: usize,
    /// Allocation: incremental profit, its upper bound, gap, whether proven
    /// optimal, contacts and expected spend used.
    pub allocation: AllocationSummary,
    /// The arms' totals with intervals (as in arm_summary).
    pub intervals: Intervals,
    /// Off-policy evaluation on the held-out campaign history.
    pub off_policy: Vec<PolicyValue>,
}

/// The allocation's certificate.
#[derive(Debug, Serialize)]
pub struct AllocationSummary {
    /// Incremental profit over no offer.
    pub incremental_profit: f64,
    /// Upper bound on any allocation within the limits.
    pub upper_bound: f64,
    /// Bound minus the allocation's profit.
    pub gap: f64,
    /// Whether proven optimal.
    pub exact: bool,
    /// Contacts used.
    pub contacts: f64,
    /// Expected spend used.
    pub spend: f64,
}

/// Why a lapsed subscriber is not eligible, the first rule that fails:
/// `flags` are the exclusion flags' names and this subscriber's values.
fn exclusion<'a>(
    days: Option<i32>,
    flags: impl Iterator<Item = (&'a String, Option<bool>)>,
    offered_recently: bool,
    s: &sim::SimulateSettings,
) -> Option<String> {
    let d = days.unwrap_or(i32::MAX);
    if d < s.min_days_since_defection as i32 {
        return Some(format!(
            "defected under {} days ago",
            s.min_days_since_defection
        ));
    }
    if d > s.max_days_since_defection as i32 {
        return Some(format!(
            "defected over {} days ago",
            s.max_days_since_defection
        ));
    }
    for (name, v) in flags {
        if v.unwrap_or(true) {
            return Some(format!("{name} true or unknown"));
        }
    }
    if offered_recently {
        return Some(format!("offered within {} days", s.no_offer_within_days));
    }
    None
}

/// The eligible rows of the lapsed frame and the exclusion counts.
fn eligible(
    lapsed: &DataFrame,
    inputs: &FeatureInputs,
    as_of: chrono::NaiveDate,
    s: &sim::SimulateSettings,
) -> Result<(DataFrame, Vec<(String, usize)>)> {
    let mut subs = inputs.get(Table::Subscribers);
    let schema = subs
        .collect_schema()
        .map_err(Error::polars("simulate: subscribers schema"))?;
    let missing: Vec<&String> = s
        .exclude_flags
        .iter()
        .filter(|n| !schema.contains(n.as_str()))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Setting {
            key: "simulate.exclude_flags".into(),
            message: format!(
                "not a column of subscribers: {}; columns: {}",
                missing
                    .iter()
                    .map(|m| format!("`{m}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                schema
                    .iter_names()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    let mut select = vec![col(col::SUBSCRIBER_ID)];
    select.extend(
        s.exclude_flags
            .iter()
            .map(|n| col(n.as_str()).cast(DataType::Boolean)),
    );
    let recent = inputs
        .get(Table::WinbackOffers)
        .filter(
            col(col::OFFERED_AT)
                .cast(DataType::Int32)
                .lt_eq(lit(epoch_days(as_of)))
                .and(
                    col(col::OFFERED_AT)
                        .cast(DataType::Int32)
                        .gt(lit(epoch_days(as_of) - s.no_offer_within_days as i32)),
                ),
        )
        .group_by([col(col::SUBSCRIBER_ID)])
        .agg([lit(true).alias("__offered").first()]);
    let checked = lapsed
        .clone()
        .lazy()
        .select([col(col::SUBSCRIBER_ID), col(f::DAYS_SINCE_DEFECTION)])
        .with_row_index("__row", None)
        .join(
            subs.select(select),
            [col(col::SUBSCRIBER_ID)],
            [col(col::SUBSCRIBER_ID)],
            JoinArgs::new(JoinType::Left),
        )
        .join(
            recent,
            [col(col::SUBSCRIBER_ID)],
            [col(col::SUBSCRIBER_ID)],
            JoinArgs::new(JoinType::Left),
        )
        .sort(["__row"], SortMultipleOptions::default())
        .collect()
        .map_err(Error::polars("simulate: eligibility"))?;
    if checked.height() != lapsed.height() {
        return Err(Error::Setting {
            key: "subscribers".into(),
            message: "a lapsed subscriber matches several subscriber rows".into(),
        });
    }
    let days: Vec<Option<i32>> = checked
        .column(f::DAYS_SINCE_DEFECTION)
        .and_then(|c| c.cast(&DataType::Int32))
        .and_then(|c| c.i32().cloned())
        .map_err(Error::polars("simulate: days_since_defection"))?
        .iter()
        .collect();
    let flag_values: Vec<Vec<Option<bool>>> = s
        .exclude_flags
        .iter()
        .map(|n| {
            Ok(checked
                .column(n)
                .and_then(|c| c.bool().cloned())
                .map_err(Error::polars(format!("simulate: flag {n}")))?
                .iter()
                .collect())
        })
        .collect::<Result<_>>()?;
    let offered: Vec<bool> = checked
        .column("__offered")
        .and_then(|c| c.bool().cloned())
        .map_err(Error::polars("simulate: recent offers"))?
        .iter()
        .map(|v| v.unwrap_or(false))
        .collect();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut keep = Vec::with_capacity(lapsed.height());
    for i in 0..lapsed.height() {
        let flags = s.exclude_flags.iter().zip(flag_values.iter().map(|v| v[i]));
        match exclusion(days[i], flags, offered[i], s) {
            None => keep.push(true),
            Some(reason) => {
                keep.push(false);
                *counts.entry(reason).or_default() += 1;
            }
        }
    }
    let mask = BooleanChunked::from_slice("keep".into(), &keep);
    let df = lapsed
        .filter(&mask)
        .map_err(Error::polars("simulate: eligible rows"))?;
    Ok((df, counts.into_iter().collect()))
}

fn find<'a>(models: &'a [ModelArtifact], name: &str, dir: &Path) -> Result<&'a ModelArtifact> {
    models
        .iter()
        .find(|m| m.model == name)
        .ok_or_else(|| Error::Model {
            path: dir.to_path_buf(),
            message: format!(
                "the model version has no {name} model, which the simulation needs (see the train summary for why it was skipped)"
            ),
        })
}

/// The target list.
#[allow(clippy::too_many_arguments)]
fn target_list(
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
            (Some(_), _) if holdout[i] => "holdout",
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
            format!("second_lifetime_value_{}", arm.name()).into(),
            point[a]
                .iter()
                .map(|o| o.value - o.offer_cost)
                .collect::<Vec<f64>>(),
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

/// Off-policy evaluation of the recommended policy, every uniform arm and
/// no offer on the return model's held-out offers.
fn evaluate_policies(
    settings: &Settings,
    models: &Models<'_>,
    allowed: &[usize],
    default: usize,
) -> Result<Vec<PolicyValue>> {
    let path = settings.out_dir.join("features").join("offers.parquet");
    if !path.exists() {
        return Ok(Vec::new());
    }
    let from = models.ret.provenance.holdout_from.clone();
    let from = chrono::NaiveDate::parse_from_str(&from, "%Y-%m-%d").map_err(|_| Error::Model {
        path: path.clone(),
        message: format!("return model: holdout_from `{from}` is not a date"),
    })?;
    let offers = read_parquet(&path)?
        .lazy()
        .filter(
            col(f::WINDOW_OBSERVED).and(
                col(col::OFFERED_AT)
                    .cast(DataType::Int32)
                    .gt_eq(lit(epoch_days(from))),
            ),
        )
        .collect()
        .map_err(Error::polars("simulate: held-out offers"))?;
    if offers.height() == 0 {
        return Ok(Vec::new());
    }
    let economics = &settings.economics;
    let point = sim::point(&offers, models, economics)?;
    let logged: Vec<usize> = sim::arm_indices(&offers, col::ARM)?
        .into_iter()
        .map(|a| a.unwrap_or(0))
        .collect();
    let propensity: Vec<f64> = offers
        .column(col::PROPENSITY)
        .and_then(|c| c.cast(&DataType::Float64))
        .and_then(|c| c.f64().cloned())
        .map_err(Error::polars("simulate: propensity"))?
        .iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect();
    let returned: Vec<bool> = offers
        .column(f::RETURNED)
        .and_then(|c| c.bool().cloned())
        .map_err(Error::polars("simulate: returned"))?
        .iter()
        .map(|v| v.unwrap_or(false))
        .collect();
    // Realised reward: the observed return times the models' net value of
    // a second lifetime under the logged arm, less the contact.
    let reward: Vec<f64> = (0..offers.height())
        .map(|i| {
            let a = logged[i];
            let o = &point[a][i];
            let contact = if a == 0 { 0.0 } else { economics.contact_cost };
            if returned[i] {
                o.value - o.offer_cost - contact
            } else {
                -contact
            }
        })
        .collect();
    let q: Vec<Vec<f64>> = point
        .iter()
        .map(|arm| arm.iter().map(|o| o.profit).collect())
        .collect();
    let level = settings.simulate.interval;
    let recommended: Vec<usize> = sim::guarded_choice(
        &offers,
        &point,
        allowed,
        default,
        models,
        economics,
        &settings.simulate,
    )?
    .into_iter()
    .map(|a| a.unwrap_or(0))
    .collect();
    let mut out = vec![sim::off_policy(
        "recommended",
        &recommended,
        &logged,
        &propensity,
        &reward,
        &q,
        level,
    )];
    for (a, arm) in Arm::ALL.iter().enumerate() {
        let name = if a == 0 {
            "no offer".to_string()
        } else {
            format!("all {}", arm.name())
        };
        out.push(sim::off_policy(
            &name,
            &vec![a; offers.height()],
            &logged,
            &propensity,
            &reward,
            &q,
            level,
        ));
    }
    Ok(out)
}

/// The policy table: model-based totals over the eligible population with
/// intervals, and the off-policy estimates per offer.
fn policy_frame(totals: &[(String, sim::Interval)], ope: &[PolicyValue]) -> Result<DataFrame> {
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
            Column::new("dr_per_offer".into(), opt(&|p| p.dr.estimate)),
            Column::new("dr_lo".into(), opt(&|p| p.dr.lo)),
            Column::new("dr_hi".into(), opt(&|p| p.dr.hi)),
        ],
    )
    .map_err(Error::polars("simulate: policy table"))
}

/// `winback simulate`.
pub fn simulate(
    settings: &Settings,
    tables: BTreeMap<Table, LazyFrame>,
    model: Option<&Path>,
    out: &mut dyn Write,
) -> Result<SimulateSummary> {
    let started = Instant::now();
    let s = &settings.simulate;
    let economics = &settings.economics;
    let dir = model_dir(settings, model)?;
    let loaded = load_version(&dir)?;
    let models = Models {
        ret: find(&loaded, "return", &dir)?,
        second: find(&loaded, "second_lifetime", &dir)?,
    };
    let inputs = FeatureInputs::new(tables);
    let current = features::current(&inputs, &settings.features)?;
    for m in [models.ret, models.second] {
        m.check_manifest(&current.manifest, &dir.join(format!("{}.json", m.model)))?;
    }
    let campaign = s
        .campaign
        .clone()
        .unwrap_or_else(|| format!("winback-{}", current.as_of));
    let (df, excluded) = eligible(&current.lapsed, &inputs, current.as_of, s)?;
    info!(
        lapsed = current.lapsed.height(),
        eligible = df.height(),
        seconds = started.elapsed().as_secs_f64(),
        "eligibility"
    );
    if df.height() == 0 {
        return Err(Error::Setting {
            key: "simulate".into(),
            message: format!(
                "no lapsed subscriber is eligible as of {} ({} lapsed; excluded: {})",
                current.as_of,
                current.lapsed.height(),
                excluded
                    .iter()
                    .map(|(r, n)| format!("{n} {r}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    let point = sim::point(&df, &models, economics)?;
    let allowed: Vec<usize> = s.arms.iter().map(|a| a.index()).collect();
    let default = sim::default_arm(&point, &allowed);
    let best = sim::guarded_choice(&df, &point, &allowed, default, &models, economics, s)?;
    let alloc = sim::allocate(&point, &allowed, &best, s, economics);
    let ids = sim::ids(&df)?;
    let holdout: Vec<bool> = (0..df.height())
        .map(|i| {
            alloc.choice[i].is_some() && sim::holdout_key(&campaign, &ids[i]) < s.holdout_share
        })
        .collect();
    info!(
        selected = alloc.choice.iter().filter(|c| c.is_some()).count(),
        gap = alloc.gap(),
        seconds = started.elapsed().as_secs_f64(),
        "allocation"
    );
    let policies = vec![alloc.choice.clone(), best.clone()];
    let iv = sim::intervals(&df, &point, &policies, &models, economics, s)?;
    info!(seconds = started.elapsed().as_secs_f64(), "intervals");
    let mut arm_summary = sim::arm_summary(&point, &iv, economics)?;
    let current_value: Vec<f64> = df
        .column(f::MARGIN_MEAN)
        .and_then(|c| c.cast(&DataType::Float64))
        .and_then(|c| c.f64().cloned())
        .map_err(Error::polars("simulate: margin_mean"))?
        .iter()
        .map(|v| v.unwrap_or(0.0))
        .collect();
    let potential: Vec<f64> = (0..df.height())
        .map(|i| {
            point
                .iter()
                .map(|arm| arm[i].p_return * (arm[i].value - arm[i].offer_cost))
                .fold(f64::NEG_INFINITY, f64::max)
        })
        .collect();
    let segment = sim::segments(&current_value, &potential, s);
    let shown: Vec<usize> = (0..df.height())
        .map(|i| alloc.choice[i].or(best[i]).unwrap_or(allowed[0]))
        .collect();
    let reasons = sim::reason_codes(&df, &shown, models.ret)?;
    let mut targets = target_list(
        &df,
        &point,
        &alloc.choice,
        &best,
        &holdout,
        &segment,
        &reasons,
    )?;
    let ope = evaluate_policies(settings, &models, &allowed, default)?;
    info!(
        seconds = started.elapsed().as_secs_f64(),
        "off-policy evaluation"
    );
    let mut totals: Vec<(String, sim::Interval)> = vec![
        ("recommended".to_string(), iv.policies[0]),
        ("recommended, no budget".to_string(), iv.policies[1]),
        ("no offer".to_string(), iv.profit[0]),
    ];
    for (a, arm) in Arm::ALL.iter().enumerate().skip(1) {
        totals.push((format!("all {}", arm.name()), iv.profit[a]));
    }
    let mut policy_df = policy_frame(&totals, &ope)?;

    let staged = StagedDir::new(&settings.out_dir.join("simulate"))?;
    for (name, frame) in [
        ("arm_summary", &mut arm_summary),
        ("target_list", &mut targets),
        ("policy_evaluation", &mut policy_df),
    ] {
        catalog::write_parquet(&staged.path().join(format!("{name}.parquet")), frame)?;
        catalog::write_csv(&staged.path().join(format!("{name}.csv")), frame)?;
    }
    let selected = alloc.choice.iter().filter(|c| c.is_some()).count();
    let held = holdout.iter().filter(|h| **h).count();
    let summary = SimulateSummary {
        as_of: current.as_of.to_string(),
        campaign,
        model: dir,
        lapsed: current.lapsed.height(),
        eligible: df.height(),
        excluded,
        profitable: best.iter().filter(|b| b.is_some()).count(),
        selected,
        contacted: selected - held,
        holdout: held,
        allocation: AllocationSummary {
            incremental_profit: alloc.total,
            upper_bound: alloc.bound,
            gap: alloc.gap(),
            exact: alloc.exact,
            contacts: alloc.used.contacts,
            spend: alloc.used.spend,
        },
        intervals: iv,
        off_policy: ope,
    };
    catalog::write_json(&staged.path().join("summary.json"), &summary)?;
    let written = staged.commit()?;
    info!(seconds = started.elapsed().as_secs_f64(), "simulate done");
    out.write_all(render(&summary, &arm_summary, settings).as_bytes())
        .and_then(|_| writeln!(out, "  written to {}", written.display()))
        .map_err(Error::io("write", "stdout"))?;
    Ok(summary)
}

fn money(v: f64) -> String {
    let neg = v < 0.0;
    let digits = format!("{:.0}", v.abs());
    let mut s = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            s.push(',');
        }
        s.push(c);
    }
    if neg { format!("-{s}") } else { s }
}

/// The one-screen report of a simulation.
pub fn render(s: &SimulateSummary, arms: &DataFrame, settings: &Settings) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let pct = settings.simulate.interval * 100.0;
    let _ = writeln!(
        o,
        "simulated as of {} (campaign {}) with {}",
        s.as_of,
        s.campaign,
        s.model.display()
    );
    let _ = writeln!(
        o,
        "  lapsed {}, eligible {}{}",
        s.lapsed,
        s.eligible,
        if s.excluded.is_empty() {
            String::new()
        } else {
            format!(
                " (excluded: {})",
                s.excluded
                    .iter()
                    .map(|(r, n)| format!("{n} {r}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    let _ = writeln!(
        o,
        "\n  arms ranked by profit over the {} eligible ({pct:.0}% intervals):",
        s.eligible
    );
    let _ = writeln!(
        o,
        "  {:<9} {:>6} {:>9} {:>10} {:>12} {:>25} {:>12} {:>7} {:>10}",
        "arm",
        "rank",
        "recapture",
        "rate rank",
        "profit",
        "interval",
        "incremental",
        "roi",
        "cost/reacq"
    );
    let str_col = |name: &str| -> Vec<String> {
        arms.column(name)
            .ok()
            .and_then(|c| c.str().ok().cloned())
            .map(|c| c.iter().map(|v| v.unwrap_or("").to_string()).collect())
            .unwrap_or_default()
    };
    let f_col = |name: &str| -> Vec<Option<f64>> {
        arms.column(name)
            .ok()
            .and_then(|c| c.cast(&DataType::Float64).ok())
            .and_then(|c| c.f64().ok().cloned())
            .map(|c| c.iter().collect())
            .unwrap_or_default()
    };
    let u_col = |name: &str| -> Vec<Option<u32>> {
        arms.column(name)
            .ok()
            .and_then(|c| c.u32().ok().cloned())
            .map(|c| c.iter().collect())
            .unwrap_or_default()
    };
    let (names, rate, profit, lo, hi, inc, roi, cpr) = (
        str_col("arm"),
        f_col("recapture_rate"),
        f_col("profit"),
        f_col("profit_lo"),
        f_col("profit_hi"),
        f_col("incremental_profit"),
        f_col("roi"),
        f_col("cost_per_reacquired"),
    );
    let (prank, rrank) = (u_col("profit_rank"), u_col("recapture_rank"));
    let show_rank = |r: Option<u32>| r.map(|r| r.to_string()).unwrap_or_else(|| "-".into());
    for i in 0..names.len() {
        let _ = writeln!(
            o,
            "  {:<9} {:>6} {:>8.1}% {:>10} {:>12} {:>25} {:>12} {:>7} {:>10}",
            names[i],
            show_rank(prank[i]),
            rate[i].unwrap_or(f64::NAN) * 100.0,
            show_rank(rrank[i]),
            money(profit[i].unwrap_or(f64::NAN)),
            format!(
                "{} to {}",
                money(lo[i].unwrap_or(f64::NAN)),
                money(hi[i].unwrap_or(f64::NAN))
            ),
            money(inc[i].unwrap_or(f64::NAN)),
            roi[i]
                .map(|r| format!("{:.0}%", r * 100.0))
                .unwrap_or_else(|| "-".into()),
            cpr[i]
                .map(|c| format!("{c:.0}"))
                .unwrap_or_else(|| "-".into()),
        );
    }
    let _ = writeln!(
        o,
        "  (profit: expected second-lifetime margin less offer and contact costs, discounted; \
         acquisition cost for comparison {:.0})",
        settings.economics.acquisition_cost
    );
    let a = &s.allocation;
    let _ = writeln!(
        o,
        "\n  policy: {} of {} eligible have a profitable arm; {} selected ({} to contact, {} held out)",
        s.profitable, s.eligible, s.selected, s.contacted, s.holdout
    );
    let _ = writeln!(
        o,
        "  incremental profit {} over no offer (upper bound {}, gap {:.2}%{}); {} contacts, expected spend {}",
        money(a.incremental_profit),
        money(a.upper_bound),
        100.0 * a.gap / a.upper_bound.abs().max(1e-9),
        if a.exact { ", optimal" } else { "" },
        a.contacts,
        money(a.spend)
    );
    if let Some(p) = s.intervals.policies.first() {
        let _ = writeln!(
            o,
            "  recommended policy's profit {} ({} to {})",
            money(p.estimate),
            money(p.lo),
            money(p.hi)
        );
    }
    if !s.off_policy.is_empty() {
        let _ = writeln!(
            o,
            "\n  off-policy evaluation on {} held-out randomised offers (profit per offer, {pct:.0}% intervals):",
            s.off_policy[0].offers
        );
        let _ = writeln!(
            o,
            "  {:<14} {:>8} {:>8} {:>20} {:>8} {:>20}",
            "policy", "model", "IPS", "", "DR", ""
        );
        for p in &s.off_policy {
            let _ = writeln!(
                o,
                "  {:<14} {:>8.1} {:>8.1} {:>20} {:>8.1} {:>20}",
                p.policy,
                p.model,
                p.ips.estimate,
                format!("({:.1} to {:.1})", p.ips.lo, p.ips.hi),
                p.dr.estimate,
                format!("({:.1} to {:.1})", p.dr.lo, p.dr.hi)
            );
        }
    }
    o
}

/// `winback bench --task simulate`: times each step of the simulation on
/// the features' lapsed subscribers repeated to `rows` (days since the
/// defection spread over the eligible range), with the newest models.
pub fn bench(settings: &Settings, rows: usize, out: &mut dyn Write) -> Result<()> {
    let s = &settings.simulate;
    let economics = &settings.economics;
    let dir = model_dir(settings, None)?;
    let loaded = load_version(&dir)?;
    let models = Models {
        ret: find(&loaded, "return", &dir)?,
        second: find(&loaded, "second_lifetime", &dir)?,
    };
    let lapsed = read_parquet(&settings.out_dir.join("features").join("lapsed.parquet"))?;
    let mut df = repeat_to(&lapsed, rows)?;
    let span = (s.max_days_since_defection - s.min_days_since_defection + 1) as usize;
    df.with_column(Column::new(
        f::DAYS_SINCE_DEFECTION.into(),
        (0..rows)
            .map(|i| (s.min_days_since_defection as usize + i % span) as i32)
            .collect::<Vec<_>>(),
    ))
    .map_err(Error::polars("bench"))?;
    let w = |e| Error::io("write", "stdout")(e);
    let total = Instant::now();
    let step = |name: &str, t: Instant, out: &mut dyn Write| -> Result<()> {
        writeln!(out, "  {name:<34} {:>8.1} s", t.elapsed().as_secs_f64()).map_err(w)
    };
    writeln!(out, "simulate: {rows} lapsed subscribers x 5 arms").map_err(w)?;
    let t = Instant::now();
    let point = sim::point(&df, &models, economics)?;
    step("point estimates", t, out)?;
    let allowed: Vec<usize> = s.arms.iter().map(|a| a.index()).collect();
    let t = Instant::now();
    let default = sim::default_arm(&point, &allowed);
    let best = sim::guarded_choice(&df, &point, &allowed, default, &models, economics, s)?;
    step(
        &format!("guarded policy ({} replicates)", s.decision_replicates),
        t,
        out,
    )?;
    let t = Instant::now();
    let unlimited = sim::allocate(&point, &allowed, &best, s, economics);
    step("allocation, no limits", t, out)?;
    let limited_settings = sim::SimulateSettings {
        max_contacts: Some((rows / 2) as u64),
        max_spend: Some(unlimited.used.spend / 3.0),
        arm_capacity: [("upgrade".to_string(), (rows / 4) as u64)].into(),
        ..s.clone()
    };
    let t = Instant::now();
    let limited = sim::allocate(&point, &allowed, &best, &limited_settings, economics);
    step("allocation, three limits", t, out)?;
    writeln!(
        out,
        "    (contacts {}, spend {}, gap {:.3}% of the bound)",
        limited.used.contacts,
        money(limited.used.spend),
        100.0 * limited.gap() / limited.bound.abs().max(1e-9)
    )
    .map_err(w)?;
    let t = Instant::now();
    let iv = sim::intervals(
        &df,
        &point,
        std::slice::from_ref(&best),
        &models,
        economics,
        s,
    )?;
    step(
        &format!(
            "intervals ({} replicates x {} rows)",
            iv.replicates, iv.sample_rows
        ),
        t,
        out,
    )?;
    let t = Instant::now();
    let shown: Vec<usize> = best.iter().map(|b| b.unwrap_or(allowed[0])).collect();
    sim::reason_codes(&df, &shown, models.ret)?;
    step("reason codes", t, out)?;
    step("total", total, out)?;
    Ok(())
}
