//! The generator against its calibration targets ("Calibration targets for
//! generated data" in shared/docs/domain.md), measured from the generated
//! tables themselves, never from truth.json; and its determinism.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{generate, pairs, read, scalar_f64};
use polars::prelude::*;

const WINDOW_DAYS: i32 = 90;
const CONTACT_COST: f64 = 2.0;
const MARGIN_RATE: f64 = 0.45;

fn days(c: &str) -> Expr {
    col(c).cast(DataType::Int32)
}

fn month_index(c: &str) -> Expr {
    col(c).dt().year().cast(DataType::Int32) * lit(12) + col(c).dt().month().cast(DataType::Int32)
}

fn lf(dir: &Path, table: &str) -> LazyFrame {
    read(&dir.join(format!("{table}.parquet"))).lazy()
}

fn map(df: &DataFrame, key: &str, value: &str) -> BTreeMap<String, f64> {
    pairs(df, key, value).into_iter().collect()
}

/// One row per targeted offer whose response window is observed, with the
/// defection it answers, its features and whether the subscriber returned
/// within the window.
fn offers(dir: &Path, end_day: i32) -> LazyFrame {
    let offers = lf(dir, "winback_offers")
        .filter((days("offered_at") + lit(WINDOW_DAYS)).lt_eq(lit(end_day)));
    let churn = lf(dir, "churn_events");
    let answered = offers
        .clone()
        .join(
            churn.clone(),
            [col("subscriber_id")],
            [col("subscriber_id")],
            JoinArgs::new(JoinType::Inner),
        )
        .filter(col("churned_at").lt(col("offered_at")))
        .group_by([col("subscriber_id"), col("offered_at"), col("arm")])
        .agg([
            col("leave_reason")
                .sort_by([col("churned_at")], SortMultipleOptions::default())
                .last()
                .alias("leave_reason"),
            col("churned_at").max().alias("churned_at"),
            col("churned_at").count().alias("defections"),
        ]);
    let returned = offers
        .clone()
        .join(
            lf(dir, "reactivations"),
            [col("subscriber_id")],
            [col("subscriber_id")],
            JoinArgs::new(JoinType::Inner),
        )
        .filter(
            days("returned_at")
                .gt(days("offered_at"))
                .and(days("returned_at").lt_eq(days("offered_at") + lit(WINDOW_DAYS))),
        )
        .group_by([col("subscriber_id"), col("offered_at")])
        .agg([col("returned_at").min()]);
    let subs = lf(dir, "subscribers").select([
        col("subscriber_id"),
        col("signup_date"),
        col("monthly_fee"),
    ]);
    let per_churn = |table: &str, date: &str, id: &str, aggs: Vec<Expr>| {
        answered
            .clone()
            .select([col("subscriber_id"), col("churned_at")])
            .join(
                lf(dir, table).rename([id], ["subscriber_id"], true),
                [col("subscriber_id")],
                [col("subscriber_id")],
                JoinArgs::new(JoinType::Inner),
            )
            .filter(col(date).lt_eq(col("churned_at")))
            .group_by([col("subscriber_id"), col("churned_at")])
            .agg(aggs)
    };
    let complaints = per_churn(
        "complaints",
        "opened_at",
        "subscriber_id",
        vec![
            len().alias("complaints"),
            col("satisfied")
                .eq(lit(true))
                .fill_null(lit(false))
                .sum()
                .alias("satisfied"),
        ],
    );
    let referrals = per_churn(
        "referrals",
        "referred_at",
        "referrer_id",
        vec![len().alias("referrals")],
    );
    let billing = per_churn(
        "billing",
        "month",
        "subscriber_id",
        vec![
            (col("revenue")
                - col("cost_to_serve").fill_null(col("revenue") * lit(1.0 - MARGIN_RATE)))
            .mean()
            .alias("margin"),
            col("revenue").mean().alias("spend"),
        ],
    );
    let left = |a: LazyFrame, b: LazyFrame, on: &[&str]| {
        let k: Vec<Expr> = on.iter().map(|c| col(*c)).collect();
        a.join(b, k.clone(), k, JoinArgs::new(JoinType::Left))
    };
    let mut x = left(answered, returned, &["subscriber_id", "offered_at"]);
    x = left(x, subs, &["subscriber_id"]);
    x = left(x, complaints, &["subscriber_id", "churned_at"]);
    x = left(x, referrals, &["subscriber_id", "churned_at"]);
    x = left(x, billing, &["subscriber_id", "churned_at"]);
    x.with_columns([
        col("returned_at")
            .is_not_null()
            .cast(DataType::Float64)
            .alias("returned"),
        col("complaints").fill_null(lit(0)),
        col("satisfied").fill_null(lit(0)),
        col("referrals").fill_null(lit(0)),
        (days("offered_at") - days("churned_at")).alias("delay"),
        (days("churned_at") - days("signup_date")).alias("tenure_days"),
    ])
}

fn rate_by(x: &LazyFrame, key: Expr) -> BTreeMap<String, f64> {
    let df = x
        .clone()
        .group_by([key.alias("k")])
        .agg([col("returned").mean().alias("rate")])
        .collect()
        .unwrap();
    map(&df, "k", "rate")
}

fn above_median(x: &LazyFrame, c: &str) -> BTreeMap<String, f64> {
    rate_by(x, col(c).gt(col(c).median()).cast(DataType::String))
}

/// Second-lifetime hazard (churns per billed month after the return) of
/// responders, by a grouping key of the offer rows.
fn second_life_hazard(dir: &Path, x: &LazyFrame, key: Expr) -> BTreeMap<String, f64> {
    let resp = x.clone().filter(col("returned").eq(lit(1.0))).select([
        col("subscriber_id"),
        col("returned_at"),
        key.alias("k"),
    ]);
    let months = resp
        .clone()
        .join(
            lf(dir, "billing"),
            [col("subscriber_id")],
            [col("subscriber_id")],
            JoinArgs::new(JoinType::Inner),
        )
        .filter(month_index("month").gt_eq(month_index("returned_at")))
        .group_by([col("k")])
        .agg([len().alias("months")]);
    let churns = resp
        .join(
            lf(dir, "churn_events"),
            [col("subscriber_id")],
            [col("subscriber_id")],
            JoinArgs::new(JoinType::Inner),
        )
        .filter(col("churned_at").gt(col("returned_at")))
        .group_by([col("k")])
        .agg([len().alias("churns")]);
    let df = months
        .join(
            churns,
            [col("k")],
            [col("k")],
            JoinArgs::new(JoinType::Left),
        )
        .select([
            col("k").cast(DataType::String),
            (col("churns").cast(DataType::Float64) / col("months").cast(DataType::Float64))
                .alias("h"),
        ])
        .collect()
        .unwrap();
    map(&df, "k", "h")
}

/// Per responder, billing rows by month of the second lifetime (1-based).
fn second_life_bills(dir: &Path, x: &LazyFrame) -> LazyFrame {
    x.clone()
        .filter(col("returned").eq(lit(1.0)))
        .select([
            col("subscriber_id"),
            col("returned_at"),
            col("offered_at"),
            col("arm"),
            col("leave_reason"),
        ])
        .join(
            lf(dir, "billing"),
            [col("subscriber_id")],
            [col("subscriber_id")],
            JoinArgs::new(JoinType::Inner),
        )
        .with_columns([(month_index("month") - month_index("returned_at") + lit(1)).alias("t")])
        .filter(col("t").gt_eq(lit(1)))
}

struct Report {
    failures: Vec<String>,
    lines: Vec<String>,
}

impl Report {
    fn check(&mut self, ok: bool, what: String) {
        self.lines
            .push(format!("{} {what}", if ok { "ok  " } else { "FAIL" }));
        if !ok {
            self.failures.push(what);
        }
    }
}

#[test]
fn calibration_targets_hold_in_the_generated_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sample");
    // About 40,000 targeted offers: the reference study's scale.
    generate(&dir, 95_000, 7);
    let end_day = {
        let b = lf(&dir, "billing")
            .select([days("month").max().alias("m")])
            .collect()
            .unwrap();
        scalar_f64(&b, "m") as i32 + 30
    };
    let x = offers(&dir, end_day).collect().unwrap().lazy();
    let n = x.clone().select([len().alias("n")]).collect().unwrap();
    let n = scalar_f64(&n, "n");
    let mut r = Report {
        failures: Vec::new(),
        lines: vec![format!("targeted offers with an observed window: {n}")],
    };
    r.check(
        n >= 38_000.0,
        format!("at least 38,000 targeted offers ({n})"),
    );

    // Reacquisition by arm, within 1.5 points of the study.
    let by_arm = rate_by(&x, col("arm"));
    for (arm, target) in [
        ("both", 0.47),
        ("discount", 0.45),
        ("tailored", 0.45),
        ("upgrade", 0.41),
    ] {
        let got = by_arm[arm];
        r.check(
            (got - target).abs() <= 0.015,
            format!("reacquisition {arm}: {got:.4} vs {target} +- 0.015"),
        );
    }
    let control = by_arm["control"];
    r.check(
        (0.20..=0.30).contains(&control),
        format!("control return {control:.4} in 20-30%"),
    );
    let lowest_arm = ["both", "discount", "tailored", "upgrade"]
        .iter()
        .map(|a| by_arm[*a])
        .fold(1.0, f64::min);
    r.check(
        lowest_arm - control >= 0.08,
        format!("control clearly below the arms ({control:.3} vs {lowest_arm:.3})"),
    );

    // Return likelihood: directions.
    let referred = rate_by(&x, col("referrals").gt(lit(0)).cast(DataType::String));
    r.check(
        referred["true"] > referred["false"] + 0.02,
        format!("referrers return more: {referred:?}"),
    );
    let complaint_kind = rate_by(
        &x,
        when(col("complaints").eq(lit(0)))
            .then(lit("none"))
            .when(col("satisfied").eq(col("complaints")))
            .then(lit("all_satisfied"))
            .otherwise(lit("some_unsatisfied")),
    );
    r.check(
        complaint_kind["none"] > complaint_kind["some_unsatisfied"] + 0.02,
        format!("never complained above unsatisfied complainers: {complaint_kind:?}"),
    );
    r.check(
        complaint_kind["all_satisfied"] > complaint_kind["some_unsatisfied"] + 0.02,
        format!("satisfied resolutions above unsatisfied: {complaint_kind:?}"),
    );
    let tenure = above_median(&x, "tenure_days");
    r.check(
        tenure["true"] > tenure["false"] + 0.01,
        format!("longer first lifetime returns more: {tenure:?}"),
    );
    let margin = above_median(&x, "margin");
    r.check(
        margin["true"] > margin["false"] + 0.01,
        format!("more valuable first lifetime returns more: {margin:?}"),
    );
    let delay = above_median(&x, "delay");
    r.check(
        delay["true"] + 0.01 < delay["false"],
        format!("longer since defection returns less: {delay:?}"),
    );
    let by_reason = rate_by(&x, col("leave_reason"));
    r.check(
        by_reason["price"] > by_reason["service"] + 0.02
            && by_reason["service"] > by_reason["both"] + 0.02,
        format!("return by reason price > service > both: {by_reason:?}"),
    );

    // Second lifetime: durations by arm and reason, spend by reason.
    let h_arm = second_life_hazard(&dir, &x, col("arm"));
    r.check(
        h_arm["upgrade"] < h_arm["discount"] && h_arm["discount"] < h_arm["both"],
        format!("second lifetime longest after upgrade, then discount, shortest after both (hazards {h_arm:?})"),
    );
    let h_reason = second_life_hazard(&dir, &x, col("leave_reason"));
    r.check(
        h_reason["price"] < h_reason["service"],
        format!("price leavers stay longer than service leavers (hazards {h_reason:?})"),
    );
    let spend = x
        .clone()
        .group_by([col("leave_reason")])
        .agg([col("spend").mean()])
        .collect()
        .unwrap();
    let spend = map(&spend, "leave_reason", "spend");
    r.check(
        spend["service"] > spend["price"] * 1.05,
        format!("service leavers spend more per month: {spend:?}"),
    );

    // Shared latent propensity: groups that return more also stay longer.
    let h_ref = second_life_hazard(&dir, &x, col("referrals").gt(lit(0)).cast(DataType::String));
    r.check(
        referred["true"] > referred["false"] && h_ref["true"] < h_ref["false"],
        format!("return and second-lifetime length move together (referrers: hazards {h_ref:?})"),
    );

    // Offer cost per reacquired subscriber, read from the bills: the discount
    // shows in revenue (months 1-6 against 7-12), the upgrade in cost to
    // serve (months 1-3 against 4-6).
    let bills = second_life_bills(&dir, &x);
    let survivors = bills
        .clone()
        .filter(col("t").eq(lit(12)))
        .select([col("subscriber_id"), col("returned_at")]);
    let kept = bills
        .clone()
        .join(
            survivors,
            [col("subscriber_id"), col("returned_at")],
            [col("subscriber_id"), col("returned_at")],
            JoinArgs::new(JoinType::Inner),
        )
        .filter(col("t").lt_eq(lit(12)));
    let phase = kept
        .group_by([col("arm")])
        .agg([
            col("revenue")
                .filter(col("t").lt_eq(lit(6)))
                .mean()
                .alias("rev_1_6"),
            col("revenue")
                .filter(col("t").gt(lit(6)))
                .mean()
                .alias("rev_7_12"),
            col("cost_to_serve")
                .filter(col("t").lt_eq(lit(3)))
                .mean()
                .alias("cost_1_3"),
            col("cost_to_serve")
                .filter(col("t").gt(lit(3)).and(col("t").lt_eq(lit(6))))
                .mean()
                .alias("cost_4_6"),
        ])
        .select([
            col("arm"),
            ((col("rev_7_12") - col("rev_1_6")) * lit(6.0)
                + (col("cost_1_3") - col("cost_4_6")) * lit(3.0))
            .alias("cost"),
        ])
        .collect()
        .unwrap();
    let cost = map(&phase, "arm", "cost");
    for (arm, target) in [("discount", 120.0), ("upgrade", 105.0), ("both", 225.0)] {
        let got = cost[arm];
        r.check(
            (got - target).abs() <= 0.1 * target,
            format!("offer cost per reacquired {arm}: {got:.1} vs {target} +- 10%"),
        );
    }

    // Profit: over 24 months of follow-up, realised margin (net of the offer
    // already in the bills) per targeted subscriber after contact cost, and
    // return on the offer's cost.
    let follow = 24;
    let cutoff = end_day - 31 * (follow + 4);
    let x24 = x.clone().filter(days("offered_at").lt_eq(lit(cutoff)));
    let counts = x24.clone().group_by([col("arm")]).agg([len().alias("n")]);
    let spend24 = second_life_bills(&dir, &x24)
        .filter(col("t").lt_eq(lit(follow)))
        .with_columns([
            (col("revenue")
                - col("cost_to_serve").fill_null(col("revenue") * lit(1.0 - MARGIN_RATE)))
            .alias("margin"),
            (when(
                col("arm")
                    .eq(lit("discount"))
                    .or(col("arm").eq(lit("both")))
                    .or(col("arm")
                        .eq(lit("tailored"))
                        .and(col("leave_reason").neq(lit("service"))))
                    .and(col("t").lt_eq(lit(6))),
            )
            .then(lit(20.0))
            .otherwise(lit(0.0))
                + when(
                    col("arm")
                        .eq(lit("upgrade"))
                        .or(col("arm").eq(lit("both")))
                        .or(col("arm").eq(lit("tailored")).and(
                            col("leave_reason")
                                .eq(lit("service"))
                                .or(col("leave_reason").eq(lit("both"))),
                        ))
                        .and(col("t").lt_eq(lit(3))),
                )
                .then(lit(35.0))
                .otherwise(lit(0.0))
                + when(
                    col("arm")
                        .eq(lit("tailored"))
                        .and(col("leave_reason").eq(lit("both")))
                        .and(col("t").lt_eq(lit(6))),
                )
                .then(lit(20.0))
                .otherwise(lit(0.0)))
            .alias("offer_cost"),
        ])
        .group_by([col("arm")])
        .agg([col("margin").sum(), col("offer_cost").sum()]);
    let profit = counts
        .join(
            spend24,
            [col("arm")],
            [col("arm")],
            JoinArgs::new(JoinType::Left),
        )
        .select([
            col("arm"),
            (col("margin") / col("n").cast(DataType::Float64)
                - when(col("arm").eq(lit("control")))
                    .then(lit(0.0))
                    .otherwise(lit(CONTACT_COST)))
            .alias("profit"),
            (col("margin") / col("offer_cost")).alias("roi"),
        ])
        .collect()
        .unwrap();
    let p = map(&profit, "arm", "profit");
    let roi = map(&profit, "arm", "roi");
    r.lines
        .push(format!("24-month profit per targeted {p:?}, roi {roi:?}"));
    let offers_only = ["both", "discount", "tailored", "upgrade"];
    let best = offers_only
        .iter()
        .max_by(|a, b| p[**a].total_cmp(&p[**b]))
        .unwrap();
    let worst = offers_only
        .iter()
        .min_by(|a, b| p[**a].total_cmp(&p[**b]))
        .unwrap();
    r.check(
        *best == "upgrade" && *worst == "both",
        format!("profit per targeted: upgrade first, both last ({p:?})"),
    );
    r.check(
        roi["upgrade"] > roi["discount"]
            && roi["discount"] > roi["tailored"]
            && roi["tailored"] > roi["both"],
        format!("return on offer cost upgrade > discount > tailored > both ({roi:?})"),
    );
    let best_rate = offers_only
        .iter()
        .max_by(|a, b| by_arm[**a].total_cmp(&by_arm[**b]))
        .unwrap();
    r.check(
        *best_rate == "both",
        format!("but by recapture rate, both first ({by_arm:?})"),
    );

    // Churn: blended level, early tenure, Q4, the care-call threshold.
    let churn = lf(&dir, "churn_events");
    let bills = lf(&dir, "billing");
    let q_churn = churn
        .clone()
        .group_by([col("churned_at").dt().quarter().alias("q")])
        .agg([len().alias("churns")]);
    let q_months = bills
        .clone()
        .group_by([col("month").dt().quarter().alias("q")])
        .agg([len().alias("months")]);
    let q = q_months
        .join(
            q_churn,
            [col("q")],
            [col("q")],
            JoinArgs::new(JoinType::Left),
        )
        .select([
            col("q").cast(DataType::String),
            (col("churns").cast(DataType::Float64) / col("months").cast(DataType::Float64))
                .alias("h"),
        ])
        .collect()
        .unwrap();
    let q = map(&q, "q", "h");
    let blended = {
        let c = churn.clone().select([len().alias("n")]).collect().unwrap();
        let m = bills.clone().select([len().alias("n")]).collect().unwrap();
        scalar_f64(&c, "n") / scalar_f64(&m, "n")
    };
    r.check(
        (0.01..=0.03).contains(&blended),
        format!("monthly churn {blended:.4} in 1-3%"),
    );
    r.check(
        q["4"] > q["1"].max(q["2"]).max(q["3"]),
        format!("Q4 churn highest: {q:?}"),
    );
    let first = churn
        .clone()
        .group_by([col("subscriber_id")])
        .agg([col("churned_at").min().alias("first_churn")])
        .join(
            lf(&dir, "subscribers"),
            [col("subscriber_id")],
            [col("subscriber_id")],
            JoinArgs::new(JoinType::Right),
        )
        .select([col("subscriber_id"), col("signup_date"), col("first_churn")]);
    let tenure_h = bills
        .clone()
        .join(
            first,
            [col("subscriber_id")],
            [col("subscriber_id")],
            JoinArgs::new(JoinType::Inner),
        )
        .filter(
            col("first_churn")
                .is_null()
                .or(month_index("month").lt_eq(month_index("first_churn"))),
        )
        .with_columns([
            (month_index("month") - month_index("signup_date")).alias("t"),
            (col("first_churn")
                .is_not_null()
                .and(month_index("month").eq(month_index("first_churn"))))
            .cast(DataType::Float64)
            .alias("churned"),
        ])
        .group_by([when(col("t").lt(lit(3)))
            .then(lit("early"))
            .when(col("t").gt_eq(lit(13)))
            .then(lit("late"))
            .otherwise(lit("mid"))
            .alias("k")])
        .agg([col("churned").mean().alias("h")])
        .collect()
        .unwrap();
    let tenure_h = map(&tenure_h, "k", "h");
    r.check(
        tenure_h["early"] > 1.3 * tenure_h["late"],
        format!("churn higher early in tenure: {tenure_h:?}"),
    );

    // Second-lifetime value against the first, among returners: mean
    // realised first-lifetime margin against the second lifetime's mean
    // monthly margin over its monthly hazard.
    let flv = {
        let df = x
            .clone()
            .filter(
                col("returned")
                    .eq(lit(1.0))
                    .and(col("defections").eq(lit(1))),
            )
            .select([(col("margin")
                * (col("tenure_days").cast(DataType::Float64) / lit(30.44) + lit(1.0)))
            .mean()
            .alias("v")])
            .collect()
            .unwrap();
        scalar_f64(&df, "v")
    };
    let slv = {
        let h_all = second_life_hazard(&dir, &x, lit("all"));
        let m = second_life_bills(&dir, &x)
            .select([(col("revenue")
                - col("cost_to_serve").fill_null(col("revenue") * lit(1.0 - MARGIN_RATE)))
            .mean()
            .alias("m")])
            .collect()
            .unwrap();
        // Expected margin over the value horizon (60 months, as in
        // truth.json) under the observed monthly hazard.
        let h = h_all["all"];
        scalar_f64(&m, "m") * (1.0 - (1.0 - h).powi(60)) / h
    };
    let ratio = slv / flv;
    r.check(
        (1.0..=1.3).contains(&ratio),
        format!("second-lifetime value / first {ratio:.3} (study 1.12; {slv:.0} vs {flv:.0})"),
    );

    println!("{}", r.lines.join("\n"));
    assert!(
        r.failures.is_empty(),
        "calibration targets missed:\n{}\n\nall checks:\n{}",
        r.failures.join("\n"),
        r.lines.join("\n")
    );
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    generate(&a, 3_000, 11);
    generate(&b, 3_000, 11);
    generate(&c, 3_000, 12);
    let mut names: Vec<_> = std::fs::read_dir(&a)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(
        names.len(),
        10,
        "seven tables, truth.json, truth_offers.parquet and truth_lapsed.parquet: {names:?}"
    );
    for name in &names {
        let x = std::fs::read(a.join(name)).unwrap();
        let y = std::fs::read(b.join(name)).unwrap();
        assert!(
            x == y,
            "{name:?} differs between two runs with the same seed"
        );
    }
    let x = std::fs::read(a.join("billing.parquet")).unwrap();
    let z = std::fs::read(c.join("billing.parquet")).unwrap();
    assert_ne!(x, z, "another seed must give another history");
}

#[test]
fn chunk_size_does_not_change_the_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    generate(&a, 2_500, 5);
    let o = common::winback(&[
        "-q",
        "generate",
        "--subscribers",
        "2500",
        "--seed",
        "5",
        "--chunk-size",
        "700",
        "--out",
        b.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    for table in [
        "subscribers",
        "billing",
        "complaints",
        "churn_events",
        "winback_offers",
    ] {
        let x = read(&a.join(format!("{table}.parquet")));
        let y = read(&b.join(format!("{table}.parquet")));
        assert!(
            x.equals_missing(&y),
            "{table} differs with another chunk size"
        );
    }
}

/// `--known-on DAY` writes the full history as it was known on that day,
/// by the data contract's point-in-time rules, checked here against the
/// full history cut independently: a nightly feed that grows day by day.
#[test]
fn a_history_known_on_a_day_is_the_full_history_cut_at_that_day() {
    let tmp = tempfile::tempdir().unwrap();
    let full = tmp.path().join("full");
    generate(&full, 1_500, 8);
    // A month's last day (its bill is known) and a mid-month day (the
    // month's bill is not).
    for (day, last_bill) in [("2025-11-30", "2025-11-01"), ("2024-06-15", "2024-05-01")] {
        let cut = tmp.path().join(day);
        let o = common::winback(&[
            "-q",
            "generate",
            "--subscribers",
            "1500",
            "--seed",
            "8",
            "--known-on",
            day,
            "--out",
            cut.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", common::texts(&o).1);
        assert!(
            !cut.join("truth_lapsed.parquet").exists(),
            "the lapsed truth describes the full history's end"
        );
        let on = |s: &str| lit(s).cast(DataType::Date);
        for (table, date) in [
            ("subscribers", "signup_date"),
            ("billing", "month"),
            ("complaints", "opened_at"),
            ("referrals", "referred_at"),
            ("churn_events", "churned_at"),
            ("reactivations", "returned_at"),
            ("winback_offers", "offered_at"),
        ] {
            let bound = if table == "billing" { last_bill } else { day };
            let mut expected = lf(&full, table).filter(col(date).lt_eq(on(bound)));
            if table == "complaints" {
                let later = col("resolved_at").gt(on(day));
                expected = expected.with_columns([
                    when(later.clone())
                        .then(lit(NULL).cast(DataType::Boolean))
                        .otherwise(col("satisfied"))
                        .alias("satisfied"),
                    when(later)
                        .then(lit(NULL).cast(DataType::Date))
                        .otherwise(col("resolved_at"))
                        .alias("resolved_at"),
                ]);
            }
            let expected = expected.collect().unwrap();
            let got = read(&cut.join(format!("{table}.parquet")));
            assert!(expected.height() > 0, "{table} as of {day}: no rows");
            assert!(
                got.equals_missing(&expected),
                "{table} known on {day} is not the full history cut there: {} rows vs {}",
                got.height(),
                expected.height()
            );
        }
        let latest = read(&cut.join("billing.parquet"))
            .column("month")
            .unwrap()
            .as_materialized_series()
            .max_reduce()
            .unwrap();
        assert_eq!(
            latest.value().to_string(),
            last_bill,
            "latest bill known on {day}"
        );
    }
    // A day outside the history is a bad command line, exit 2.
    let o = common::winback(&[
        "-q",
        "generate",
        "--subscribers",
        "10",
        "--known-on",
        "2031-01-01",
        "--out",
        tmp.path().join("never").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", common::texts(&o).1);
    assert!(common::texts(&o).1.contains("known_on"));
}
