//! `simulate` through the binary on generated data: the arms' profits and
//! the policy against the generator's truth for the same subscribers
//! (`truth_lapsed.parquet`), the ranking by profit against the ranking by
//! recapture rate, budgets, the hold-out, exclusions and determinism.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{read, texts, winback};
use polars::prelude::*;
use winback::stages::simulate::policy::holdout_key;

const ARMS: [&str; 5] = ["control", "discount", "upgrade", "both", "tailored"];

fn run_ok(args: &[&str]) -> String {
    let o = winback(args);
    let (out, err) = texts(&o);
    assert!(o.status.success(), "winback {args:?} failed:\n{out}\n{err}");
    out
}

fn f64s(df: &DataFrame, name: &str) -> Vec<f64> {
    df.column(name)
        .unwrap_or_else(|_| panic!("column {name}"))
        .cast(&DataType::Float64)
        .unwrap()
        .f64()
        .unwrap()
        .iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect()
}

fn strs(df: &DataFrame, name: &str) -> Vec<String> {
    df.column(name)
        .unwrap_or_else(|_| panic!("column {name}"))
        .cast(&DataType::String)
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.unwrap_or("").to_string())
        .collect()
}

/// Per arm, a column of the arm summary.
fn by_arm(summary: &DataFrame, name: &str) -> BTreeMap<String, f64> {
    strs(summary, "arm")
        .into_iter()
        .zip(f64s(summary, name))
        .collect()
}

/// The target list joined to the generator's truth for its subscribers,
/// with `true_profit_<arm>` per row.
fn with_truth(data: &Path, out: &Path) -> DataFrame {
    let targets = read(&out.join("simulate").join("target_list.parquet"));
    let truth = read(&data.join("truth_lapsed.parquet"));
    let mut t = truth.lazy();
    for a in ARMS {
        let contact = if a == "control" { 0.0 } else { 2.0 };
        t = t.with_column(
            (col(format!("p_return_{a}"))
                * (col(format!("value_{a}")) - col(format!("offer_cost_{a}")))
                - lit(contact))
            .alias(format!("true_profit_{a}")),
        );
    }
    let t = t.select(
        std::iter::once(col("subscriber_id"))
            .chain(ARMS.iter().map(|a| col(format!("true_profit_{a}"))))
            .chain(
                ARMS.iter()
                    .map(|a| col(format!("p_return_{a}")).alias(format!("true_p_{a}"))),
            )
            .collect::<Vec<_>>(),
    );
    let joined = targets
        .lazy()
        .join(
            t,
            [col("subscriber_id")],
            [col("subscriber_id")],
            JoinArgs::new(JoinType::Left),
        )
        .collect()
        .unwrap();
    let missing = joined.column("true_profit_control").unwrap().null_count();
    assert_eq!(missing, 0, "every eligible subscriber has a truth row");
    joined
}

/// One seed's arms and policy against the truth.
struct SeedResult {
    seed: u64,
    /// Per arm: estimated profit, its interval, true profit.
    arms: BTreeMap<&'static str, (f64, f64, f64, f64)>,
    /// The policy's, the best uniform arm's and the oracle's true profit.
    policy: f64,
    best_uniform: f64,
    oracle: f64,
    /// Whether the policy kept per-subscriber targeting, and the note.
    targeting_kept: bool,
    targeting_note: String,
    /// The uniform arm the policy falls back to.
    uniform_arm: String,
    /// The arm the truth puts first, when it leads the next by over 2%.
    clear_best_arm: Option<&'static str>,
    /// The distinct recommended arms.
    recommended: std::collections::BTreeSet<String>,
}

/// Generates 200,000 subscribers with `seed`, runs every stage and values
/// the eligible subscribers with the generator's truth; asserts what must
/// hold on every seed and returns the figures the seeds are judged on
/// together.
fn truth_check(seed: u64) -> SeedResult {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = tmp.path().join("out");
    // 200,000 subscribers: about 100,000 historical offers and 40,000
    // returns to learn from, 4,400 eligible lapsed subscribers to simulate.
    // At 50,000 and 80,000 subscribers the arms' profits were off by up to
    // 8% (estimation error of the models, in both directions across
    // samples).
    common::generate(&data, 200_000, seed);
    let cfg = tmp.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[features]\nsnapshot_count = 2\n[train]\nstep_bins = [0]\n\
         [simulate]\nexclude_flags = [\"do_not_contact\", \"bad_debt\"]\n",
    )
    .unwrap();
    let (d, o, c) = (
        data.to_str().unwrap(),
        out.to_str().unwrap(),
        cfg.to_str().unwrap(),
    );
    let report = run_ok(&["-q", "run", "--config", c, "--data", d, "--out", o]);
    println!("seed {seed}:\n{report}");
    assert!(report.contains("arms ranked by profit"), "{report}");

    let summary = read(&out.join("simulate").join("arm_summary.parquet"));
    let joined = with_truth(&data, &out);
    let n = joined.height() as f64;
    let eligible = by_arm(&summary, "eligible");
    let profit = by_arm(&summary, "profit");
    let rate = by_arm(&summary, "recapture_rate");
    let (lo, hi) = (by_arm(&summary, "profit_lo"), by_arm(&summary, "profit_hi"));
    let mut true_profit = BTreeMap::new();
    let mut true_rate = BTreeMap::new();
    let mut arms = BTreeMap::new();
    for a in ARMS {
        assert_eq!(eligible[a], n, "{a}: eligible");
        let t = f64s(&joined, &format!("true_profit_{a}"))
            .iter()
            .sum::<f64>();
        let tr = f64s(&joined, &format!("true_p_{a}")).iter().sum::<f64>() / n;
        let est = profit[a];
        println!(
            "seed {seed} {a:9} profit per subscriber: estimated {:.1} ({:.1} to {:.1}), true {:.1}; recapture {:.3} vs {tr:.3}",
            est / n,
            lo[a] / n,
            hi[a] / n,
            t / n,
            rate[a]
        );
        assert!(
            (est / t - 1.0).abs() < 0.05,
            "seed {seed}, {a}: estimated profit {est:.0} not within 5% of the true {t:.0}"
        );
        assert!(
            lo[a] < est && est < hi[a],
            "{a}: interval around the estimate"
        );
        true_profit.insert(a, t);
        true_rate.insert(a, tr);
        arms.insert(a, (est, lo[a], hi[a], t));
    }
    // Ranking by profit (offer arms) equals the truth's wherever the true
    // profits differ by more than 2%; by recapture rate the order turns
    // over (the study's reversal): the arm the truth puts last by rate,
    // when it trails the next by more than 2 points, is last in the
    // estimates too, and the arm first by true profit is not first by
    // true rate.
    let order = |m: &dyn Fn(&str) -> f64| {
        let mut v: Vec<&str> = ARMS[1..].to_vec();
        v.sort_by(|x, y| m(y).total_cmp(&m(x)));
        v
    };
    let est_order = order(&|a| profit[a]);
    for x in ARMS[1..].iter() {
        for y in ARMS[1..].iter() {
            if true_profit[x] > 1.02 * true_profit[y] {
                assert!(
                    profit[*x] > profit[*y],
                    "seed {seed}: {x} above {y}: {est_order:?}"
                );
            }
        }
    }
    let true_by_profit = order(&|a| true_profit[a]);
    let true_by_rate = order(&|a| true_rate[a]);
    assert_ne!(true_by_profit[0], true_by_rate[0], "the reversal");
    let est_by_rate = order(&|a| rate[a]);
    let (last, next) = (true_by_rate[3], true_by_rate[2]);
    if true_rate[next] - true_rate[last] > 0.02 {
        assert_eq!(
            est_by_rate[3], last,
            "seed {seed}: last by recapture rate {est_by_rate:?}"
        );
    }
    let rank = by_arm(&summary, "profit_rank");
    assert_eq!(rank[est_order[0]], 1.0);

    // The learned policy, valued by the truth.
    let rec = strs(&joined, "recommended_arm");
    let tp: BTreeMap<&str, Vec<f64>> = ARMS
        .iter()
        .map(|a| (*a, f64s(&joined, &format!("true_profit_{a}"))))
        .collect();
    let policy: f64 = rec
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let a = if a == "none" { "control" } else { a.as_str() };
            tp[a][i]
        })
        .sum();
    let oracle: f64 = (0..rec.len())
        .map(|i| ARMS.iter().map(|a| tp[a][i]).fold(f64::MIN, f64::max))
        .sum();
    let best_uniform = ARMS[1..]
        .iter()
        .map(|a| true_profit[a])
        .fold(f64::MIN, f64::max);
    println!(
        "seed {seed}: policy {policy:.0}, best uniform {best_uniform:.0} ({:+.3}%), oracle {oracle:.0} ({:.2}%)",
        100.0 * (policy / best_uniform - 1.0),
        100.0 * policy / oracle
    );

    // Off-policy evaluation on the randomised history no model saw: the
    // uniform arms' doubly-robust values in the truth's order where it is
    // clear (the top arm by true profit above the bottom one).
    let pe = read(&out.join("simulate").join("policy_evaluation.parquet"));
    let dr: BTreeMap<String, f64> = strs(&pe, "policy")
        .into_iter()
        .zip(f64s(&pe, "dr_per_offer"))
        .collect();
    let (top, bottom) = (true_by_profit[0], true_by_profit[3]);
    assert!(
        dr[&format!("all {top}")] > dr[&format!("all {bottom}")],
        "seed {seed}: {dr:?}"
    );
    let targeting = &summary_json(&out)["targeting"];
    let (first, second) = (true_by_profit[0], true_by_profit[1]);
    SeedResult {
        seed,
        arms,
        policy,
        best_uniform,
        oracle,
        targeting_kept: targeting["kept"].as_bool().unwrap(),
        targeting_note: targeting["note"].as_str().unwrap().to_string(),
        uniform_arm: targeting["uniform_arm"].as_str().unwrap().to_string(),
        clear_best_arm: (true_profit[first] > 1.02 * true_profit[second]).then_some(first),
        recommended: rec.into_iter().collect(),
    }
}

/// The policy on one seed: at least 97% of the oracle's true profit, and
/// either per-subscriber targeting that is worth at least the best uniform
/// arm's true profit (no tolerance), or a fall-back to the uniform arm
/// that says why: every recommendation that arm (or no offer, where the
/// models expect it not to pay), the arm the truth puts first, and the
/// note naming the evidence.
fn check_policy(r: &SeedResult) {
    assert!(
        r.policy >= 0.97 * r.oracle,
        "seed {}: policy {:.0}, oracle {:.0}",
        r.seed,
        r.policy,
        r.oracle
    );
    if r.targeting_kept {
        assert!(
            r.policy >= r.best_uniform,
            "seed {}: targeting kept ({}), but its true profit {:.0} is below the best uniform arm's {:.0}",
            r.seed,
            r.targeting_note,
            r.policy,
            r.best_uniform
        );
    } else {
        assert!(
            r.targeting_note.starts_with("targeting dropped")
                && r.targeting_note.contains("doubly-robust"),
            "seed {}: {}",
            r.seed,
            r.targeting_note
        );
        assert!(
            r.recommended
                .iter()
                .all(|a| *a == r.uniform_arm || a == "none"),
            "seed {}: fell back to {} but recommends {:?}",
            r.seed,
            r.uniform_arm,
            r.recommended
        );
        if let Some(best) = r.clear_best_arm {
            assert_eq!(r.uniform_arm, best, "seed {}: the uniform arm", r.seed);
        }
    }
}

/// The arms, the policy and the off-policy ranking against the truth on
/// three seeds, and the intervals' coverage of the truth over the three
/// (seed 21 alone was a test of its own before). It failed on seed 22 while the hazard was kept
/// by its log loss (boosted trees: control, "both" and tailored 3.6 to
/// 5.2% below the truth); with the logistic hazard and its arm x leave
/// reason terms every arm is within 3.2% of the truth on the three seeds
/// (release binary, same files and config).
#[test]
fn arms_policy_and_intervals_match_the_truth_on_three_seeds() {
    // Three histories at once (each run is partly single-threaded).
    let results: Vec<SeedResult> = std::thread::scope(|scope| {
        let handles: Vec<_> = [21u64, 22, 23]
            .into_iter()
            .map(|seed| scope.spawn(move || truth_check(seed)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // The 90% intervals hold the truth in at least 80% of the arm-seed
    // cells (12 of 15).
    let cells: Vec<(u64, &str, bool)> = results
        .iter()
        .flat_map(|r| {
            r.arms
                .iter()
                .map(move |(a, (_, lo, hi, t))| (r.seed, *a, lo <= t && t <= hi))
        })
        .collect();
    let covered = cells.iter().filter(|c| c.2).count();
    println!(
        "intervals hold the truth in {covered} of {} arm-seed cells; missed: {:?}",
        cells.len(),
        cells.iter().filter(|c| !c.2).collect::<Vec<_>>()
    );
    assert!(
        covered * 5 >= cells.len() * 4,
        "coverage {covered} of {}",
        cells.len()
    );
    for r in &results {
        check_policy(r);
    }
}

fn s_contacted(out: &Path) -> u64 {
    summary_json(out)["contacted"].as_u64().unwrap()
}

fn summary_json(out: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(out.join("simulate").join("summary.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn budgets_holdout_exclusions_and_determinism() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = tmp.path().join("out");
    common::generate(&data, 30_000, 5);
    let cfg = tmp.path().join("c.toml");
    let write_cfg = |extra: &str| {
        std::fs::write(
            &cfg,
            format!(
                "[features]\nsnapshot_count = 2\n[train]\nstep_bins = [0]\nlearner = \"logistic\"\n\
                 [simulate]\nexclude_flags = [\"do_not_contact\", \"bad_debt\"]\n\
                 campaign = \"spring\"\nreplicates = 50\n{extra}"
            ),
        )
        .unwrap();
    };
    write_cfg("max_contacts = 150\nmax_spend = 6000.0\n[simulate.arm_capacity]\nupgrade = 60\n");
    let (d, o, c) = (
        data.to_str().unwrap(),
        out.to_str().unwrap(),
        cfg.to_str().unwrap(),
    );
    run_ok(&["-q", "run", "--config", c, "--data", d, "--out", o]);
    let sim_dir = out.join("simulate");
    let targets = read(&sim_dir.join("target_list.parquet"));
    let action = strs(&targets, "action");
    let arm = strs(&targets, "recommended_arm");
    let selected: Vec<usize> = (0..action.len())
        .filter(|i| action[*i] == "contact")
        .collect();
    assert!(!selected.is_empty());
    // Every limit holds, on the contacts (the hold-out is outside the
    // budget: drawn before the allocation).
    assert!(selected.len() <= 150, "{} selected", selected.len());
    assert_eq!(
        s_contacted(&out),
        selected.len() as u64,
        "the summary's contacts are the list's"
    );
    // No contact is expected to lose money, under any budget.
    let gain = f64s(&targets, "expected_incremental_profit");
    assert!(selected.iter().all(|i| gain[*i] > 0.0));
    let upgrade = selected.iter().filter(|i| arm[**i] == "upgrade").count();
    assert!(upgrade <= 60, "{upgrade} upgrades");
    let s = summary_json(&out);
    let used_spend = s["allocation"]["spend"].as_f64().unwrap();
    assert!(used_spend <= 6000.0 + 1e-6, "spend {used_spend}");
    assert!(s["allocation"]["contacts"].as_f64().unwrap() <= 150.0);
    // The bound is on the raw point gains: at least the allocation's, and
    // above it when limits bind.
    let (total, bound) = (
        s["allocation"]["incremental_profit"].as_f64().unwrap(),
        s["allocation"]["upper_bound"].as_f64().unwrap(),
    );
    assert!(bound > total && total > 0.0, "{total} {bound}");
    // The limits bind: the capacity moves subscribers to other arms.
    assert!(
        selected.iter().any(|i| arm[*i] != "upgrade"),
        "other arms fill in beyond the upgrade's capacity"
    );
    // Ranked 1.. in order of expected incremental profit.
    let rank = f64s(&targets, "rank");
    let inc = f64s(&targets, "expected_incremental_profit");
    for w in selected.windows(2) {
        assert_eq!(rank[w[1]], rank[w[0]] + 1.0);
        assert!(inc[w[1]] <= inc[w[0]] + 1e-9);
    }
    // The hold-out: the subscribers an offer is recommended for whose
    // stable key falls below 5%, drawn before the allocation; no contact
    // has such a key.
    let ids = strs(&targets, "subscriber_id");
    for i in 0..ids.len() {
        let held = arm[i] != "none" && holdout_key("spring", &ids[i]) < 0.05;
        assert_eq!(action[i] == "holdout", held, "{}", ids[i]);
    }
    assert!(action.iter().any(|a| a == "holdout"));
    assert_eq!(
        s["holdout"].as_u64().unwrap(),
        action.iter().filter(|a| *a == "holdout").count() as u64
    );
    // The budgeted and unbudgeted policies are evaluated off-policy under
    // the names of their model-based rows.
    let pe = read(&sim_dir.join("policy_evaluation.parquet"));
    let names = strs(&pe, "policy");
    let dr = f64s(&pe, "dr_per_offer");
    for name in ["recommended", "recommended, no budget"] {
        let i = names.iter().position(|n| n == name).unwrap();
        assert!(dr[i].is_finite(), "{name}: {dr:?}");
    }
    // Nothing is lost: lapsed = eligible + excluded, and the target list
    // holds every eligible subscriber.
    let excluded: u64 = s["excluded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e[1].as_u64().unwrap())
        .sum();
    let (lapsed, eligible) = (
        s["lapsed"].as_u64().unwrap(),
        s["eligible"].as_u64().unwrap(),
    );
    assert_eq!(lapsed, eligible + excluded);
    assert_eq!(targets.height() as u64, eligible);
    let reasons: Vec<String> = s["excluded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e[0].as_str().unwrap().to_string())
        .collect();
    for r in ["do_not_contact", "bad_debt", "offered within 180 days"] {
        assert!(reasons.iter().any(|x| x.contains(r)), "{r} in {reasons:?}");
    }
    // Reason codes and segments are filled in.
    assert!(strs(&targets, "reason_1").iter().all(|r| !r.is_empty()));
    let segments: std::collections::BTreeSet<String> =
        strs(&targets, "value_segment").into_iter().collect();
    assert_eq!(segments.len(), 4, "{segments:?}");

    // Same seed, same outputs, byte for byte.
    let first: Vec<(String, Vec<u8>)> = std::fs::read_dir(&sim_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "parquet" || x == "csv"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().to_string(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    assert_eq!(first.len(), 6);
    run_ok(&["-q", "simulate", "--config", c, "--data", d, "--out", o]);
    for (name, bytes) in &first {
        assert!(
            std::fs::read(sim_dir.join(name)).unwrap() == *bytes,
            "{name} differs on a rerun"
        );
    }

    // Another campaign draws another hold-out.
    write_cfg("max_contacts = 150\n");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("spring", "autumn");
    std::fs::write(&cfg, text).unwrap();
    run_ok(&["-q", "simulate", "--config", c, "--data", d, "--out", o]);
    let targets = read(&sim_dir.join("target_list.parquet"));
    let action = strs(&targets, "action");
    let ids = strs(&targets, "subscriber_id");
    for i in 0..action.len() {
        if action[i] == "holdout" {
            assert!(holdout_key("autumn", &ids[i]) < 0.05);
        }
    }

    // A bad flag column names the columns there are; a missing model
    // version is exit code 2 and keeps the previous outputs.
    write_cfg("exclude_flags2 = 1\n");
    let o2 = winback(&["-q", "simulate", "--config", c, "--data", d, "--out", o]);
    assert!(!o2.status.success());
    assert!(texts(&o2).1.contains("exclude_flags2"), "{}", texts(&o2).1);
    let cfg_text = "[simulate]\nexclude_flags = [\"no_such_flag\"]\n";
    std::fs::write(&cfg, cfg_text).unwrap();
    let o3 = winback(&["-q", "simulate", "--config", c, "--data", d, "--out", o]);
    assert!(!o3.status.success());
    let err = texts(&o3).1;
    assert!(
        err.contains("no_such_flag") && err.contains("do_not_contact"),
        "{err}"
    );
    let empty = tmp.path().join("empty");
    std::fs::write(&cfg, "").unwrap();
    let o4 = winback(&[
        "-q",
        "simulate",
        "--config",
        c,
        "--data",
        d,
        "--out",
        empty.to_str().unwrap(),
    ]);
    assert_eq!(o4.status.code(), Some(2), "{}", texts(&o4).1);
    assert!(sim_dir.join("target_list.parquet").is_file());

    // No eligible subscriber is the data's condition, not the config's:
    // exit 3, naming the exclusions, the previous outputs kept.
    let before = std::fs::read(sim_dir.join("target_list.parquet")).unwrap();
    std::fs::write(
        &cfg,
        "[simulate]\nmin_days_since_defection = 36000\nmax_days_since_defection = 36500\n",
    )
    .unwrap();
    let o5 = winback(&["-q", "simulate", "--config", c, "--data", d, "--out", o]);
    let err = texts(&o5).1;
    assert_eq!(o5.status.code(), Some(3), "{err}");
    assert!(
        err.contains("no lapsed subscriber is eligible")
            && err.contains("defected under 36000 days ago"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(sim_dir.join("target_list.parquet")).unwrap(),
        before
    );
    // The renamed key says its new name.
    std::fs::write(&cfg, "[simulate]\nholdout_share = 0.1\n").unwrap();
    let o6 = winback(&["-q", "simulate", "--config", c, "--data", d, "--out", o]);
    assert_eq!(o6.status.code(), Some(2));
    assert!(
        texts(&o6).1.contains("simulate.control_share"),
        "{}",
        texts(&o6).1
    );
}
