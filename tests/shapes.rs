//! Data shaped as operators' extracts and public benchmarks are, not as the
//! generator's seven-year history, through `features`, `train` and `score`:
//!
//! - a cross-sectional churn table (one row per customer with a churned
//!   flag: the shape of the public telecom churn samples) put into the
//!   contract as subscribers, a constant billing history up to one
//!   snapshot and churn events inside one horizon after it, with a
//!   non-linear truth (thresholds and an interaction);
//! - a single randomised win-back campaign: every lapsed customer offered
//!   on one date, five arms with propensity 0.2, returns nine days later.
//!
//! Neither has more than one date to split in time, so the models fall
//! back to a seeded split by subscriber and say so.

mod common;

use std::path::Path;

use chrono::{Datelike, NaiveDate};
use common::{read, texts, winback, write};
use polars::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use winback::artifact::split::subscriber_key;
use winback_models::metrics::roc_auc;

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn date_col(name: &str, v: Vec<NaiveDate>) -> Column {
    Column::new(name.into(), v)
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn run_ok(args: &[&str]) -> String {
    let o = winback(args);
    let (out, err) = texts(&o);
    assert!(o.status.success(), "{args:?} failed:\n{out}\n{err}");
    out
}

/// Monthly bills of a constant charge from the signup month to the month
/// before `until`.
fn bills(ids: &[String], signup: &[NaiveDate], fee: &[f64], until: NaiveDate) -> DataFrame {
    let (mut id, mut month, mut revenue) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..ids.len() {
        let mut m = signup[i].with_day(1).unwrap();
        while m < until.with_day(1).unwrap() {
            id.push(ids[i].clone());
            month.push(m);
            revenue.push(fee[i]);
            m = m.checked_add_months(chrono::Months::new(1)).unwrap();
        }
    }
    DataFrame::new(
        id.len(),
        vec![
            Column::new("subscriber_id".into(), id),
            date_col("month", month),
            Column::new("revenue".into(), revenue),
        ],
    )
    .unwrap()
}

/// The evaluation record of one model in `evaluation.json`.
fn evaluated(out: &Path, model: &str) -> Value {
    let text = std::fs::read_to_string(out.join("models/v0001/evaluation.json")).unwrap();
    let eval: Value = serde_json::from_str(&text).unwrap();
    eval["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model"] == model)
        .unwrap_or_else(|| panic!("no {model} model in {eval}"))
        .clone()
}

#[test]
fn a_cross_sectional_churn_table_trains_and_scores_near_the_truth() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = tmp.path().join("out");
    let snapshot = day("2024-01-01");
    let n = 20_000;
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let contracts = ["month_to_month", "one_year", "two_year"];
    let regions = ["north", "south", "east", "west"];
    let (mut ids, mut signup, mut plan, mut fee, mut region, mut calls, mut senior) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let (mut churn_id, mut churned_at, mut reason) = (Vec::new(), Vec::new(), Vec::new());
    let mut truth = Vec::new();
    for i in 0..n {
        let id = format!("{:04}-{:05}", i % 9973, i);
        let tenure: u32 = rng.random_range(1..=72);
        let contract = contracts[rng.random_range(0..3)];
        let charge = (rng.random_range(18.0..120.0_f64) * 100.0).round() / 100.0;
        let support: u32 = rng.random_range(0..7);
        let is_senior = rng.random_bool(0.16);
        // Non-linear truth: thresholds on tenure and support calls, a
        // contract effect, and an interaction of month-to-month contracts
        // with high charges.
        let x = -2.2 + 1.6 * f64::from(tenure < 12) + 0.5 * f64::from((12..24).contains(&tenure))
            - 0.8 * f64::from(tenure > 48)
            + 1.3 * f64::from(contract == "month_to_month")
            + 0.9 * f64::from(support >= 4)
            + 0.9 * f64::from(contract == "month_to_month" && charge > 90.0)
            + 0.012 * (charge - 70.0)
            + 0.4 * f64::from(is_senior);
        let p = sigmoid(x);
        truth.push((id.clone(), p));
        let churned = rng.random_bool(p);
        ids.push(id.clone());
        signup.push(
            snapshot
                .checked_sub_months(chrono::Months::new(tenure))
                .unwrap()
                + chrono::Duration::days(rng.random_range(0..28)),
        );
        plan.push(contract.to_string());
        fee.push(charge);
        region.push(regions[rng.random_range(0..4)].to_string());
        calls.push(support as f64);
        senior.push(if is_senior { "yes" } else { "no" }.to_string());
        if churned {
            churn_id.push(id);
            churned_at.push(snapshot + chrono::Duration::days(rng.random_range(1..=89)));
            reason.push(["price", "service", "other"][rng.random_range(0..3)].to_string());
        }
    }
    let mut subscribers = DataFrame::new(
        n,
        vec![
            Column::new("subscriber_id".into(), ids.clone()),
            date_col("signup_date", signup.clone()),
            Column::new("plan".into(), plan),
            Column::new("monthly_fee".into(), fee.clone()),
            Column::new("region".into(), region),
            Column::new("support_calls".into(), calls),
            Column::new("senior".into(), senior),
        ],
    )
    .unwrap();
    // No channel column: it is nullable, so it is read as all null.
    write(&data.join("subscribers.parquet"), &mut subscribers);
    write(
        &data.join("billing.parquet"),
        &mut bills(&ids, &signup, &fee, snapshot),
    );
    let m = churn_id.len();
    let mut churn = DataFrame::new(
        m,
        vec![
            Column::new("subscriber_id".into(), churn_id),
            date_col("churned_at", churned_at),
            Column::new("leave_reason".into(), reason),
        ],
    )
    .unwrap();
    write(&data.join("churn_events.parquet"), &mut churn);
    let cfg = tmp.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[features]\nextra_numeric = [\"support_calls\"]\nextra_categorical = [\"senior\"]\n",
    )
    .unwrap();
    let (d, o, c) = (
        data.to_str().unwrap(),
        out.to_str().unwrap(),
        cfg.to_str().unwrap(),
    );
    let features = run_ok(&["features", "--config", c, "--data", d, "--out", o]);
    // The data's end is the churn events' month end, named as such; the
    // default snapshots before the one with churn are left out, and said so.
    assert!(
        features.contains("data end 2024-03-31, set by churn_events.churned_at"),
        "{features}"
    );
    assert!(
        features.contains("2023-10-01 left out: its 90-day horizon ends 2023-12-30, before the first recorded defection"),
        "{features}"
    );
    assert!(
        features.contains("1 churn snapshots 2024-01-01"),
        "{features}"
    );
    let train = run_ok(&["train", "--config", c, "--out", o]);
    assert!(train.contains("of subscribers by a seeded hash"), "{train}");
    assert!(train.contains("distinct `as_of`"), "{train}");
    let churn_model = evaluated(&out, "churn");
    assert_eq!(churn_model["split"]["kind"], "subscriber", "{churn_model}");
    let share = churn_model["split"]["share"].as_f64().unwrap();
    let seed = churn_model["split"]["seed"].as_u64().unwrap();
    let kept = churn_model["chosen"].as_str().unwrap().to_string();
    let auc = churn_model["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["learner"] == kept.as_str())
        .unwrap()["holdout"]["roc_auc"]
        .as_f64()
        .unwrap();
    // The truth's AUC on the same held-out customers.
    let churned: std::collections::HashSet<String> =
        strs(&churn, "subscriber_id").into_iter().collect();
    let (mut p, mut y) = (Vec::new(), Vec::new());
    for (id, pt) in &truth {
        if subscriber_key(seed, id) < share {
            p.push(*pt);
            y.push(churned.contains(id));
        }
    }
    let truth_auc = roc_auc(&p, &y).unwrap().unwrap();
    println!(
        "churn: holdout {} customers, model ({kept}) ROC AUC {auc:.4}, truth {truth_auc:.4}",
        p.len()
    );
    assert!(
        auc >= truth_auc - 0.01,
        "model AUC {auc:.4} more than 0.01 below the truth's {truth_auc:.4}"
    );
    // Scoring: the subscribers active at the data's end, each with a risk.
    run_ok(&["score", "--config", c, "--data", d, "--out", o]);
    let scores = read(&out.join("score/churn_scores.parquet"));
    assert_eq!(
        scores.height(),
        n - m,
        "every customer still active is scored"
    );
    assert_eq!(scores.column("p_churn").unwrap().null_count(), 0);
}

fn strs(df: &DataFrame, name: &str) -> Vec<String> {
    df.column(name)
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.unwrap_or_default().to_string())
        .collect()
}

/// The arms of the single campaign, control first.
const ARMS: [&str; 5] = ["control", "discount", "upgrade", "both", "tailored"];

/// Writes a single randomised win-back campaign of `n` lapsed customers
/// into `data` (every one offered on `campaign`, five arms with
/// propensity 0.2, returns nine days later); returns each customer's id
/// and true log-odds of returning under each arm.
fn single_campaign(
    data: &Path,
    n: usize,
    seed: u64,
    campaign: NaiveDate,
) -> Vec<(String, [f64; 5])> {
    let arms = ARMS;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut truth = Vec::with_capacity(n);
    let (mut ids, mut signup, mut plan, mut fee) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut churned_at, mut reason) = (Vec::new(), Vec::new());
    let (mut arm, mut returned_id, mut returned_at) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let id = format!("C{i:06}");
        let months: u32 = rng.random_range(3..60);
        let churn = campaign - chrono::Duration::days(rng.random_range(15..75));
        let charge = (rng.random_range(25.0..110.0_f64) * 100.0).round() / 100.0;
        let why = ["price", "service", "both", "other"][rng.random_range(0..4)];
        let a = rng.random_range(0..5);
        // Heterogeneous effects: the discount works on price leavers and
        // high charges, the upgrade on service leavers, both on everyone a
        // little more, the tailored arm on its reason's package.
        let logit = |arm: &str| {
            -1.4 + 0.01 * f64::from(months)
                + match (arm, why) {
                    ("control", _) => 0.0,
                    ("discount", "price") => 1.0 + 0.01 * (charge - 60.0),
                    ("discount", _) => 0.3,
                    ("upgrade", "service") => 1.1,
                    ("upgrade", _) => 0.2,
                    ("both", _) => 0.9,
                    ("tailored", "price" | "service" | "both") => 0.95,
                    ("tailored", _) => 0.3,
                    _ => 0.0,
                }
        };
        let x = logit(arms[a]);
        truth.push((id.clone(), arms.map(logit)));
        ids.push(id.clone());
        signup.push(
            churn
                .checked_sub_months(chrono::Months::new(months))
                .unwrap(),
        );
        plan.push(["basic", "plus", "premium"][rng.random_range(0..3)].to_string());
        fee.push(charge);
        churned_at.push(churn);
        reason.push(why.to_string());
        arm.push(arms[a].to_string());
        if rng.random_bool(sigmoid(x)) {
            returned_id.push(id);
            returned_at.push(campaign + chrono::Duration::days(9));
        }
    }
    let mut subscribers = DataFrame::new(
        n,
        vec![
            Column::new("subscriber_id".into(), ids.clone()),
            date_col("signup_date", signup.clone()),
            Column::new("plan".into(), plan.clone()),
            Column::new("monthly_fee".into(), fee.clone()),
        ],
    )
    .unwrap();
    write(&data.join("subscribers.parquet"), &mut subscribers);
    // Bills up to the defection.
    let mut billing = bills(
        &ids,
        &signup,
        &fee,
        churned_at.iter().copied().max().unwrap(),
    );
    let last: std::collections::HashMap<&String, NaiveDate> =
        ids.iter().zip(&churned_at).map(|(i, d)| (i, *d)).collect();
    let keep: Vec<bool> = strs(&billing, "subscriber_id")
        .iter()
        .zip(
            billing
                .column("month")
                .unwrap()
                .date()
                .unwrap()
                .as_date_iter(),
        )
        .map(|(id, m)| m.unwrap() < last[id].with_day(1).unwrap())
        .collect();
    billing = billing
        .filter(&BooleanChunked::from_slice("k".into(), &keep))
        .unwrap();
    write(&data.join("billing.parquet"), &mut billing);
    let mut churn = DataFrame::new(
        n,
        vec![
            Column::new("subscriber_id".into(), ids.clone()),
            date_col("churned_at", churned_at),
            Column::new("leave_reason".into(), reason),
        ],
    )
    .unwrap();
    write(&data.join("churn_events.parquet"), &mut churn);
    let mut offers = DataFrame::new(
        n,
        vec![
            Column::new("subscriber_id".into(), ids.clone()),
            date_col("offered_at", vec![campaign; n]),
            Column::new("arm".into(), arm),
            Column::new("propensity".into(), vec![0.2; n]),
        ],
    )
    .unwrap();
    write(&data.join("winback_offers.parquet"), &mut offers);
    let r = returned_id.len();
    let mut returns = DataFrame::new(
        r,
        vec![
            Column::new("subscriber_id".into(), returned_id),
            date_col("returned_at", returned_at),
        ],
    )
    .unwrap();
    // Only the contract's required reactivation columns: plan and fee are
    // nullable and absent.
    write(&data.join("reactivations.parquet"), &mut returns);
    truth
}

#[test]
fn a_single_randomised_campaign_trains_a_return_model_under_every_arm() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = tmp.path().join("out");
    let n = 12_000;
    let arms = ARMS;
    single_campaign(&data, n, 5, day("2024-06-01"));
    let cfg = tmp.path().join("c.toml");
    std::fs::write(&cfg, "[features]\nresponse_window_days = 14\n").unwrap();
    let (d, o, c) = (
        data.to_str().unwrap(),
        out.to_str().unwrap(),
        cfg.to_str().unwrap(),
    );
    let validate = run_ok(&["validate", "--config", c, "--data", d]);
    assert!(validate.contains("read as all null"), "{validate}");
    assert!(validate.contains("nothing written"), "{validate}");
    assert!(!out.exists(), "validate without --out writes nothing");
    run_ok(&["features", "--config", c, "--data", d, "--out", o]);
    let train = run_ok(&["train", "--config", c, "--out", o]);
    let ret = evaluated(&out, "return");
    assert_eq!(ret["split"]["kind"], "subscriber", "{ret}");
    assert!(
        ret["split"]["reason"]
            .as_str()
            .unwrap()
            .contains("1 distinct `offered_at`"),
        "{ret}"
    );
    let uplift = ret["uplift"].as_array().unwrap();
    assert_eq!(uplift.len(), 4, "a Qini per offer arm: {train}");
    for u in uplift {
        let q = &u[1];
        println!("{}: {q}", u[0]);
        assert!(q["observed_uplift"].as_f64().unwrap() > 0.0, "{u}");
    }
    assert!(ret["candidates"][0]["holdout"]["roc_auc"].as_f64().unwrap() > 0.6);
    // Scoring as of the campaign's day gives every lapsed customer a
    // probability under every arm.
    run_ok(&[
        "score",
        "--config",
        c,
        "--data",
        d,
        "--out",
        o,
        "--as-of",
        "2024-06-01",
    ]);
    let scores = read(&out.join("score/return_scores.parquet"));
    assert_eq!(scores.height(), n);
    for a in arms {
        let p = scores.column(&format!("p_return_{a}")).unwrap();
        assert_eq!(p.null_count(), 0, "{a}");
    }
}

/// The true value per customer of the policy that gives each customer
/// the arm of highest `p(arm) * value - cost(arm)` by `score`'s per-arm
/// return probabilities, valued with the true probabilities.
fn policy_value_of_scores(out: &Path, truth: &[(String, [f64; 5])]) -> f64 {
    const VALUE: f64 = 100.0;
    const COST: [f64; 5] = [0.0, 8.0, 6.0, 14.0, 8.0];
    let scores = read(&out.join("score/return_scores.parquet"));
    let ids = strs(&scores, "subscriber_id");
    let p: Vec<Vec<f64>> = ARMS
        .iter()
        .map(|a| {
            scores
                .column(&format!("p_return_{a}"))
                .unwrap()
                .f64()
                .unwrap()
                .into_no_null_iter()
                .collect()
        })
        .collect();
    let by_id: std::collections::HashMap<&str, &[f64; 5]> =
        truth.iter().map(|(i, x)| (i.as_str(), x)).collect();
    assert_eq!(ids.len(), truth.len());
    let total: f64 = ids
        .iter()
        .enumerate()
        .map(|(r, id)| {
            let a = (0..5)
                .max_by(|a, b| {
                    (p[*a][r] * VALUE - COST[*a]).total_cmp(&(p[*b][r] * VALUE - COST[*b]))
                })
                .unwrap();
            sigmoid(by_id[id.as_str()][a]) * VALUE - COST[a]
        })
        .sum();
    total / ids.len() as f64
}

/// On a single randomised campaign whose best arm depends on the leave
/// reason and the charge, the per-customer policy from `score`'s per-arm
/// probabilities is worth at least the boosted S-learner's (one boosted
/// model with arm columns, no model per arm), valued with the truth, on
/// two seeds; the return model's four candidates are each evaluated with
/// a Qini per arm, and the choice among them is stated.
#[test]
fn a_campaigns_per_customer_policy_is_worth_at_least_a_boosted_s_learners() {
    for seed in [11, 12] {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let campaign = day("2024-06-01");
        let truth = single_campaign(&data, 12_000, seed, campaign);
        let d = data.to_str().unwrap();
        let value = |config: &str| {
            let out = tmp.path().join(format!("out-{}", config.len()));
            let cfg = tmp.path().join(format!("c-{}.toml", config.len()));
            std::fs::write(
                &cfg,
                format!("[features]\nresponse_window_days = 14\n[train]\n{config}"),
            )
            .unwrap();
            let (o, c) = (out.to_str().unwrap(), cfg.to_str().unwrap());
            run_ok(&["features", "--config", c, "--data", d, "--out", o]);
            run_ok(&["train", "--config", c, "--out", o]);
            run_ok(&[
                "score",
                "--config",
                c,
                "--data",
                d,
                "--out",
                o,
                "--as-of",
                "2024-06-01",
            ]);
            (
                policy_value_of_scores(&out, &truth),
                evaluated(&out, "return"),
            )
        };
        let (ours, ret) = value("");
        let (s_boosted, _) = value("learner = \"boosted\"\nreturn_per_arm = false\n");
        // The truth's own best: each customer's best arm by the true
        // probabilities; and the best single arm for everyone.
        let oracle = truth
            .iter()
            .map(|(_, x)| {
                (0..5)
                    .map(|a| sigmoid(x[a]) * 100.0 - [0.0, 8.0, 6.0, 14.0, 8.0][a])
                    .fold(f64::MIN, f64::max)
            })
            .sum::<f64>()
            / truth.len() as f64;
        println!(
            "seed {seed}: chosen {} ({}): {ours:.3} per customer; boosted S-learner {s_boosted:.3}; oracle {oracle:.3}",
            ret["chosen"], ret["choice"]
        );
        let names: Vec<&str> = ret["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["learner"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["logistic", "boosted", "logistic_per_arm", "boosted_per_arm"],
            "{ret}"
        );
        for c in ret["candidates"].as_array().unwrap() {
            assert_eq!(c["uplift"].as_array().unwrap().len(), 4, "{c}");
        }
        assert!(!ret["choice"].as_str().unwrap().is_empty(), "{ret}");
        assert!(
            ours >= s_boosted,
            "seed {seed}: {ours} per customer against the boosted S-learner's {s_boosted}"
        );
    }
}
