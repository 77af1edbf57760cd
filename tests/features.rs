//! The features stage through the binary: hand-computed fixtures,
//! point-in-time leakage on generated histories, and the reference study's
//! effects seen through the features.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use chrono::NaiveDate;
use common::{features, read, texts, winback, write};
use polars::prelude::*;

fn day(s: &str) -> i32 {
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() as i32
}

fn dates(name: &str, v: &[Option<&str>]) -> Column {
    let days: Vec<Option<i32>> = v.iter().map(|s| s.map(day)).collect();
    Series::new(name.into(), days)
        .cast(&DataType::Date)
        .unwrap()
        .into()
}

fn strs(name: &str, v: &[Option<&str>]) -> Column {
    Series::new(name.into(), v.to_vec()).into()
}

fn floats(name: &str, v: &[Option<f64>]) -> Column {
    Series::new(name.into(), v.to_vec()).into()
}

fn frame(cols: Vec<Column>) -> DataFrame {
    let h = cols[0].len();
    DataFrame::new(h, cols).unwrap()
}

/// The row of `df` whose `key` column equals `value`, as name -> value text.
fn row(df: &DataFrame, key: &str, value: &str) -> BTreeMap<String, String> {
    let mask = df
        .column(key)
        .unwrap()
        .cast(&DataType::String)
        .unwrap()
        .str()
        .unwrap()
        .equal(value);
    let r = df.filter(&mask).unwrap();
    assert_eq!(r.height(), 1, "one row with {key} = {value}");
    r.columns()
        .iter()
        .map(|c| {
            let v = c.get(0).unwrap();
            let text = match v {
                AnyValue::Null => "null".to_string(),
                AnyValue::String(s) => s.to_string(),
                AnyValue::StringOwned(s) => s.to_string(),
                AnyValue::Date(d) => (NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()
                    + chrono::Duration::days(d as i64))
                .to_string(),
                AnyValue::Float64(x) => format!("{x:.4}"),
                other => other.to_string(),
            };
            (c.name().to_string(), text)
        })
        .collect()
}

fn expect(r: &BTreeMap<String, String>, who: &str, pairs: &[(&str, &str)]) {
    let mut wrong = Vec::new();
    for (k, v) in pairs {
        let got = r.get(*k).unwrap_or_else(|| panic!("{who}: no column {k}"));
        if got != v {
            wrong.push(format!("{k}: expected {v}, got {got}"));
        }
    }
    assert!(wrong.is_empty(), "{who}:\n{}", wrong.join("\n"));
}

/// Four tiny histories, every expected value worked out by hand below.
fn fixture(dir: &Path) {
    let mut subs = frame(vec![
        strs(
            "subscriber_id",
            &[Some("A"), Some("B"), Some("C"), Some("D")],
        ),
        dates(
            "signup_date",
            &[
                Some("2020-01-15"),
                Some("2020-03-01"),
                Some("2021-06-10"),
                Some("2020-10-01"),
            ],
        ),
        strs(
            "plan",
            &[
                Some("basic"),
                Some("premium"),
                Some("standard"),
                Some("basic"),
            ],
        ),
        floats(
            "monthly_fee",
            &[Some(30.0), Some(60.0), Some(45.0), Some(40.0)],
        ),
        strs(
            "region",
            &[Some("north"), None, Some("south"), Some("east")],
        ),
        strs(
            "channel",
            &[Some("web"), Some("referral"), Some("store"), Some("web")],
        ),
    ]);
    let mut ids = Vec::new();
    let mut months = Vec::new();
    let mut revenue = Vec::new();
    let mut cost = Vec::new();
    let mut bill = |id: &'static str, m: &'static str, r: f64, c: Option<f64>| {
        ids.push(Some(id));
        months.push(Some(m));
        revenue.push(Some(r));
        cost.push(c);
    };
    // A: Jan-Jun 2020 (May without cost: margin rate 0.45 applies; June a
    // bill shock at twice the fee), churns 2020-06-20, returns 2020-09-10.
    for m in ["2020-01-01", "2020-02-01", "2020-03-01", "2020-04-01"] {
        bill("A", m, 30.0, Some(15.0));
    }
    bill("A", "2020-05-01", 30.0, None);
    bill("A", "2020-06-01", 60.0, Some(15.0));
    for m in ["2020-09-01", "2020-10-01", "2020-11-01", "2020-12-01"] {
        bill("A", m, 45.0, Some(20.0));
    }
    // B: Mar-Dec 2020, never churns.
    for m in 3..=12 {
        let s: &'static str = Box::leak(format!("2020-{m:02}-01").into_boxed_str());
        bill("B", s, 60.0, Some(30.0));
    }
    // D: Oct 2020 to Jan 2021; the January bill is after the as-of date.
    for m in ["2020-10-01", "2020-11-01", "2020-12-01", "2021-01-01"] {
        bill("D", m, 40.0, Some(20.0));
    }
    let mut billing = frame(vec![
        strs("subscriber_id", &ids),
        dates("month", &months),
        floats("revenue", &revenue.clone()),
        floats("cost_to_serve", &cost),
    ]);
    let mut complaints = frame(vec![
        strs(
            "subscriber_id",
            &[Some("B"), Some("B"), Some("D"), Some("D")],
        ),
        dates(
            "opened_at",
            &[
                Some("2020-05-01"),
                Some("2020-11-01"),
                Some("2020-12-31"),
                Some("2021-01-02"),
            ],
        ),
        dates(
            "resolved_at",
            &[
                Some("2020-05-03"),
                Some("2021-01-05"),
                None,
                Some("2021-01-03"),
            ],
        ),
        Series::new(
            "satisfied".into(),
            [Some(true), Some(true), None, Some(true)],
        )
        .into(),
        strs(
            "category",
            &[
                Some("billing"),
                Some("network"),
                Some("device"),
                Some("billing"),
            ],
        ),
    ]);
    let mut referrals = frame(vec![
        strs("referrer_id", &[Some("B")]),
        dates("referred_at", &[Some("2020-07-01")]),
        strs("referred_id", &[None]),
    ]);
    let mut churn = frame(vec![
        strs("subscriber_id", &[Some("A")]),
        dates("churned_at", &[Some("2020-06-20")]),
        strs("leave_reason", &[Some("price")]),
    ]);
    let mut reactivations = frame(vec![
        strs("subscriber_id", &[Some("A")]),
        dates("returned_at", &[Some("2020-09-10")]),
        strs("plan", &[Some("standard")]),
        floats("monthly_fee", &[Some(45.0)]),
    ]);
    let mut offers = frame(vec![
        strs("subscriber_id", &[Some("A")]),
        dates("offered_at", &[Some("2020-07-15")]),
        strs("arm", &[Some("discount")]),
        floats("propensity", &[Some(0.2)]),
    ]);
    for (name, df) in [
        ("subscribers", &mut subs),
        ("billing", &mut billing),
        ("complaints", &mut complaints),
        ("referrals", &mut referrals),
        ("churn_events", &mut churn),
        ("reactivations", &mut reactivations),
        ("winback_offers", &mut offers),
    ] {
        write(&dir.join(format!("{name}.parquet")), df);
    }
}

#[test]
fn hand_computed_fixtures() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    fixture(&data);
    // Every level seen is kept, however few its rows (four subscribers).
    let out = common::features_with(
        &data,
        &tmp.path().join("out"),
        Some("2020-12-31"),
        Some("[features]\nmin_level_rows = 1\n"),
    );

    let active = read(&out.join("active.parquet"));
    assert_eq!(
        active.height(),
        3,
        "A (returned), B and D are active on 2020-12-31; C signs up in 2021"
    );
    // A: lifetime from the return on 2020-09-10: 112 days; bills Sep-Dec at
    // 45 with cost 20; before: Jan-Apr margin 15, May 30 * 0.45 = 13.5,
    // June 60 - 15 = 45, so 118.5 + 100 to date.
    expect(
        &row(&active, "subscriber_id", "A"),
        "active A",
        &[
            ("lifetime_start", "2020-09-10"),
            ("tenure_months", "3.6797"),
            ("billed_months", "4"),
            ("revenue_mean", "45.0000"),
            ("margin_mean", "25.0000"),
            ("revenue_last3", "45.0000"),
            ("revenue_trend", "0.0000"),
            ("bill_ratio_max3", "1.0000"),
            ("lifetime_value", "100.0000"),
            ("value_to_date", "218.5000"),
            ("plan", "standard"),
            ("monthly_fee", "45.0000"),
            ("complaints", "0"),
            ("never_complained", "true"),
            ("share_satisfied", "null"),
            ("days_since_complaint", "null"),
            ("referrals", "0"),
            ("has_referred", "false"),
            ("was_referred", "false"),
            ("earlier_defections", "1"),
            ("months_since_return", "3.6797"),
            ("region", "north"),
            ("channel", "web"),
        ],
    );
    // B: complaint of 2020-05-01 resolved to satisfaction; the one of
    // 2020-11-01 is resolved only in 2021, so on 2020-12-31 it is open and
    // not (yet) satisfied.
    expect(
        &row(&active, "subscriber_id", "B"),
        "active B",
        &[
            ("lifetime_start", "2020-03-01"),
            ("tenure_months", "10.0205"),
            ("billed_months", "10"),
            ("margin_mean", "30.0000"),
            ("lifetime_value", "300.0000"),
            ("complaints", "2"),
            ("complaints_satisfied", "1"),
            ("complaints_unsatisfied", "1"),
            ("complaints_open", "1"),
            ("complaints_6m", "1"),
            ("share_satisfied", "0.5000"),
            ("days_since_complaint", "60"),
            ("never_complained", "false"),
            ("referrals", "1"),
            ("has_referred", "true"),
            ("was_referred", "true"),
            ("earlier_defections", "0"),
            ("months_since_return", "null"),
            ("region", "null"),
        ],
    );
    // D: the complaint opened on the as-of date counts, the one of
    // 2021-01-02 and the January bill do not; no bills 3-5 months back, so
    // no trend.
    expect(
        &row(&active, "subscriber_id", "D"),
        "active D",
        &[
            ("billed_months", "3"),
            ("value_to_date", "60.0000"),
            ("revenue_last3", "40.0000"),
            ("revenue_trend", "null"),
            ("complaints", "1"),
            ("complaints_open", "1"),
            ("complaints_satisfied", "0"),
            ("complaints_unsatisfied", "1"),
            ("days_since_complaint", "0"),
        ],
    );

    // A as of its defection on 2020-06-20: 157 days, bills Jan-May (the
    // June bill, dated 2020-06-01, carries the whole of June and is known
    // only once June has ended): margins 15 x 4 and May's 30 * 0.45; the
    // last three known months are Mar-May, the three before Jan-Feb.
    let lapsed = read(&out.join("lapsed.parquet"));
    assert_eq!(lapsed.height(), 1);
    expect(
        &row(&lapsed, "subscriber_id", "A"),
        "lapsed A",
        &[
            ("churned_at", "2020-06-20"),
            ("leave_reason", "price"),
            ("lifetime_start", "2020-01-15"),
            ("tenure_months", "5.1581"),
            ("billed_months", "5"),
            ("revenue_mean", "30.0000"),
            ("margin_mean", "14.7000"),
            ("revenue_last3", "30.0000"),
            ("margin_last3", "14.5000"),
            ("revenue_trend", "0.0000"),
            ("bill_ratio_max3", "1.0000"),
            ("lifetime_value", "73.5000"),
            ("plan", "basic"),
            ("earlier_defections", "0"),
            ("months_since_return", "null"),
        ],
    );

    // The offer of 2020-07-15 answers the defection of 2020-06-20; the
    // return of 2020-09-10 is 57 days later, within 90.
    let offers = read(&out.join("offers.parquet"));
    expect(
        &row(&offers, "subscriber_id", "A"),
        "offer A",
        &[
            ("arm", "discount"),
            ("churned_at", "2020-06-20"),
            ("days_since_defection", "25"),
            ("returned", "true"),
            ("returned_at", "2020-09-10"),
            ("window_observed", "true"),
            ("tenure_months", "5.1581"),
        ],
    );
    // Second lifetime: from 2020-09-10 to the data's end (2021-01-31, end of
    // the latest billed month), censored; margin Sep-Dec.
    let second = read(&out.join("second_lifetime.parquet"));
    expect(
        &row(&second, "subscriber_id", "A"),
        "second lifetime A",
        &[
            ("previous_churned_at", "2020-06-20"),
            ("leave_reason", "price"),
            ("won_back_by", "discount"),
            ("censored", "true"),
            ("months_retained", "4.6982"),
            ("second_lifetime_margin", "100.0000"),
            ("first_lifetime_value", "73.5000"),
        ],
    );

    // A month-start as-of date: on 2020-12-01 D's December bill (dated that
    // day) is not known, October's and November's are. With
    // `bill_known = "month_start"` (extracts dating a bill when issued) it
    // counts from its first day.
    let early = features(&data, &tmp.path().join("out_dec1"), Some("2020-12-01"));
    expect(
        &row(&read(&early.join("active.parquet")), "subscriber_id", "D"),
        "active D on 2020-12-01",
        &[
            ("billed_months", "2"),
            ("value_to_date", "40.0000"),
            ("revenue_last3", "40.0000"),
        ],
    );
    let cfg = tmp.path().join("month_start.toml");
    std::fs::write(&cfg, "[features]\nbill_known = \"month_start\"\n").unwrap();
    let o = common::winback(&[
        "-q",
        "features",
        "--config",
        cfg.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        tmp.path().join("out_ms").to_str().unwrap(),
        "--as-of",
        "2020-12-01",
    ]);
    assert!(o.status.success(), "{}", common::texts(&o).1);
    expect(
        &row(
            &read(&tmp.path().join("out_ms/features/active.parquet")),
            "subscriber_id",
            "D",
        ),
        "active D on 2020-12-01, bills known from the month's start",
        &[("billed_months", "3"), ("value_to_date", "60.0000")],
    );

    // Snapshots end at the latest month start with 90 days observed before
    // 2021-01-31: 2020-11-01, then every 3 months back. On 2020-05-01, A
    // churns within 90 days and B does not.
    let snaps = common::read_table(&out, "churn_snapshots");
    let may = snaps
        .clone()
        .lazy()
        .filter(col("as_of").eq(lit(day("2020-05-01")).cast(DataType::Date)))
        .collect()
        .unwrap();
    assert_eq!(may.height(), 2, "A and B active on 2020-05-01:\n{may}");
    expect(
        &row(&may, "subscriber_id", "A"),
        "snapshot A",
        &[
            ("churned_within_horizon", "true"),
            ("horizon_observed", "true"),
        ],
    );
    expect(
        &row(&may, "subscriber_id", "B"),
        "snapshot B",
        &[
            ("churned_within_horizon", "false"),
            ("tenure_months", "2.0041"),
        ],
    );
    let last = snaps
        .column("as_of")
        .unwrap()
        .max_reduce()
        .unwrap()
        .value()
        .clone();
    assert_eq!(last, AnyValue::Date(day("2020-11-01")));

    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    let plan = manifest["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "plan")
        .unwrap();
    assert_eq!(plan["encoding"], "one_hot");
    assert_eq!(
        plan["categories"],
        serde_json::json!(["basic", "premium", "standard"]),
        "categories seen in lapsed rows and snapshots"
    );
    assert!(
        manifest["unseen_category_policy"]
            .as_str()
            .unwrap()
            .contains("other")
    );
}

/// Every row dated after `cut` removed from every table (complaints opened
/// after it, bills whose month ends after it, churns, returns, offers,
/// referrals); complaints opened before it but resolved after it get
/// another resolution.
fn truncate_after(src: &Path, dst: &Path, cut: i32) {
    std::fs::create_dir_all(dst).unwrap();
    let dated = [
        ("subscribers", "signup_date"),
        ("billing", "month"),
        ("complaints", "opened_at"),
        ("referrals", "referred_at"),
        ("churn_events", "churned_at"),
        ("reactivations", "returned_at"),
        ("winback_offers", "offered_at"),
    ];
    let cut_date = || lit(cut).cast(DataType::Date);
    for (table, date) in dated {
        let df = read(&src.join(format!("{table}.parquet")));
        let mut lf = df.lazy();
        if table == "billing" {
            // A bill carries its whole month: it is known once the month
            // has ended, so every bill whose month ends after the cut goes
            // (a month-start cut removes the cut month's bill).
            let next_month_start = col(date).dt().offset_by(lit("1mo"));
            lf = lf.filter((next_month_start.cast(DataType::Int32) - lit(1)).lt_eq(lit(cut)));
        } else if table != "subscribers" {
            lf = lf.filter(col(date).lt_eq(cut_date()));
        }
        if table == "complaints" {
            lf = lf.with_columns([
                when(col("resolved_at").gt(cut_date()))
                    .then(col("satisfied").not().fill_null(lit(true)))
                    .otherwise(col("satisfied"))
                    .alias("satisfied"),
                when(col("resolved_at").gt(cut_date()))
                    .then((col("resolved_at").cast(DataType::Int32) + lit(17)).cast(DataType::Date))
                    .otherwise(col("resolved_at"))
                    .alias("resolved_at"),
            ]);
        }
        let mut out = lf.collect().unwrap();
        write(&dst.join(format!("{table}.parquet")), &mut out);
    }
}

/// Frame sorted by its keys.
fn comparable(df: &DataFrame, keys: &[&str]) -> DataFrame {
    df.sort(
        keys.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
        SortMultipleOptions::default(),
    )
    .unwrap()
}

/// Names of the columns whose values differ, with a first differing pair.
fn differences(x: &DataFrame, y: &DataFrame) -> Vec<String> {
    if x.height() != y.height() {
        return vec![format!("rows {} vs {}", x.height(), y.height())];
    }
    let mut out = Vec::new();
    for c in x.columns() {
        let other = y.column(c.name()).unwrap();
        // Floats may differ in the last bits: sums run in another order
        // when the inputs are chunked differently. A leak is not that small.
        let same = |i: usize| match (c.get(i).unwrap(), other.get(i).unwrap()) {
            (AnyValue::Float64(a), AnyValue::Float64(b)) => {
                (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
            }
            (a, b) => a == b,
        };
        if let Some(i) = (0..c.len()).find(|&i| !same(i)) {
            out.push(format!(
                "{}: row {i}: {:?} vs {:?}",
                c.name(),
                c.get(i).unwrap(),
                other.get(i).unwrap()
            ));
        }
    }
    out
}

/// Features as of `cut` on a generated history must not change when every
/// row dated after the cut is deleted and every complaint resolved after it
/// is resolved otherwise.
fn check_no_leak(seed: u64, cut: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let full = tmp.path().join("full");
    common::generate(&full, 400, seed);
    let cut_days = day(cut);
    let cutted = tmp.path().join("cut");
    truncate_after(&full, &cutted, cut_days);
    let a = features(&full, &tmp.path().join("out_full"), Some(cut));
    let b = features(&cutted, &tmp.path().join("out_cut"), Some(cut));

    let active_a = read(&a.join("active.parquet"));
    let active_b = read(&b.join("active.parquet"));
    assert!(
        active_a.height() > 50,
        "seed {seed}: enough active subscribers to mean something"
    );
    let (x, y) = (
        comparable(&active_a, &["subscriber_id"]),
        comparable(&active_b, &["subscriber_id"]),
    );
    let d = differences(&x, &y);
    assert!(
        d.is_empty(),
        "seed {seed}, as of {cut}: active features changed when later rows changed:\n{}",
        d.join("\n")
    );

    // Lapsed rows as of defections on or before the cut.
    let upto = |df: DataFrame| {
        df.lazy()
            .filter(col("churned_at").lt_eq(lit(cut_days).cast(DataType::Date)))
            .collect()
            .unwrap()
    };
    let la = upto(read(&a.join("lapsed.parquet")));
    let lb = upto(read(&b.join("lapsed.parquet")));
    assert!(la.height() > 10, "seed {seed}: defections before the cut");
    let (x, y) = (
        comparable(&la, &["subscriber_id", "churned_at"]),
        comparable(&lb, &["subscriber_id", "churned_at"]),
    );
    let d = differences(&x, &y);
    assert!(
        d.is_empty(),
        "seed {seed}, as of {cut}: lapsed features changed when later rows changed:\n{}",
        d.join("\n")
    );
}

proptest::proptest! {
    // Each case generates a history and runs the stage twice through the
    // binary (a few seconds), so a handful of random cases per run.
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 4, max_shrink_iters: 0, ..Default::default() })]
    #[test]
    fn no_feature_reads_past_its_as_of_date(seed in 1u64..10_000, offset in 900i32..2_400) {
        // A cut date between 2021-06 and 2025-07 of the generated 2019-2025:
        // signups spread over the years, so 400 subscribers have about 30
        // defections by mid-2021 and as few as 9 a year earlier.
        let d = NaiveDate::from_ymd_opt(2019, 1, 1).unwrap() + chrono::Duration::days(offset as i64);
        check_no_leak(seed, &d.to_string());
    }
}

#[test]
fn no_feature_reads_a_bill_whose_month_has_not_ended() {
    // Snapshots and as-of dates on the first of a month: the bill dated
    // that day carries the month ahead (before, 8,761 of 16,318 rows of a
    // month-start cut changed when those bills were deleted).
    check_no_leak(77, "2023-06-01");
}

#[test]
fn label_windows_never_overlap_feature_windows() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::generate(&data, 1_500, 4);
    let out = features(&data, &tmp.path().join("out"), None);
    let offers = read(&out.join("offers.parquet"));
    let bad = offers
        .clone()
        .lazy()
        .filter(
            col("offered_at")
                .lt_eq(col("churned_at"))
                .or(col("returned_at").lt_eq(col("offered_at")))
                .or((col("returned_at").cast(DataType::Int32)
                    - col("offered_at").cast(DataType::Int32))
                .gt(lit(90))),
        )
        .collect()
        .unwrap();
    assert_eq!(
        bad.height(),
        0,
        "offer labels look only after the offer, which is after the defection:\n{bad}"
    );
    let second = read(&out.join("second_lifetime.parquet"));
    let bad = second
        .lazy()
        .filter(
            col("previous_churned_at")
                .gt_eq(col("returned_at"))
                .or(col("next_churned_at").lt_eq(col("returned_at"))),
        )
        .collect()
        .unwrap();
    assert_eq!(
        bad.height(),
        0,
        "second lifetimes run from the return forward:\n{bad}"
    );
}

#[test]
fn study_effects_are_visible_through_the_features() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::generate(&data, 30_000, 21);
    let out = features(&data, &tmp.path().join("out"), None);
    let offers = read(&out.join("offers.parquet"))
        .lazy()
        .filter(col("window_observed"));
    let rate = |key: Expr| -> BTreeMap<String, f64> {
        let df = offers
            .clone()
            .group_by([key.alias("k")])
            .agg([col("returned").cast(DataType::Float64).mean().alias("r")])
            .collect()
            .unwrap();
        common::pairs(&df, "k", "r").into_iter().collect()
    };
    let reason = rate(col("leave_reason"));
    assert!(
        reason["price"] > reason["service"] && reason["service"] > reason["both"],
        "price > service > both: {reason:?}"
    );
    let referred = rate(col("has_referred").cast(DataType::String));
    assert!(
        referred["true"] > referred["false"] + 0.05,
        "referrers return more: {referred:?}"
    );
    let complained = rate(
        when(col("complaints").eq(lit(0)))
            .then(lit("none"))
            .when(col("complaints_unsatisfied").eq(lit(0)))
            .then(lit("all_satisfied"))
            .otherwise(lit("some_unsatisfied")),
    );
    assert!(
        complained["all_satisfied"] > complained["some_unsatisfied"]
            && complained["none"] > complained["some_unsatisfied"],
        "satisfied resolution and no complaint above unsatisfied: {complained:?}"
    );
    let arm = rate(col("arm"));
    assert!(
        arm["control"] + 0.08 < arm["upgrade"] && arm["upgrade"] < arm["both"],
        "control below every offer, both highest: {arm:?}"
    );
}

/// Eight more tiny histories (E to L), as of 2021-12-31, with extra columns
/// named in the config.
#[test]
fn hand_computed_fixtures_second_set() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let ids = ["E", "F", "G", "H", "I", "J", "K", "L"];
    let some = |v: &[&'static str]| v.iter().map(|s| Some(*s)).collect::<Vec<_>>();
    let mut subs = frame(vec![
        strs("subscriber_id", &some(&ids)),
        dates(
            "signup_date",
            &some(&[
                "2019-01-10",
                "2020-06-01",
                "2021-01-15",
                "2021-11-20",
                "2021-02-01",
                "2021-01-01",
                "2021-10-01",
                "2021-01-05",
            ]),
        ),
        strs(
            "plan",
            &some(&[
                "basic", "basic", "standard", "basic", "standard", "standard", "basic", "premium",
            ]),
        ),
        floats(
            "monthly_fee",
            &[
                Some(50.0),
                Some(30.0),
                Some(45.0),
                Some(30.0),
                Some(45.0),
                Some(50.0),
                Some(40.0),
                Some(70.0),
            ],
        ),
        strs(
            "region",
            &some(&[
                "north", "south", "east", "west", "north", "south", "east", "west",
            ]),
        ),
        strs(
            "channel",
            &some(&["web", "store", "web", "web", "store", "web", "store", "web"]),
        ),
        strs(
            "segment",
            &[
                Some("consumer"),
                Some("consumer"),
                None,
                Some("consumer"),
                Some("business"),
                Some("consumer"),
                Some("consumer"),
                Some("consumer"),
            ],
        ),
        floats(
            "credit_score",
            &[
                Some(600.0),
                Some(610.0),
                Some(620.0),
                Some(630.0),
                Some(712.5),
                Some(650.0),
                Some(660.0),
                Some(670.0),
            ],
        ),
    ]);
    let (mut b_id, mut b_m, mut b_r, mut b_c) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut bill = |id: &'static str, m: &'static str, r: f64, c: f64| {
        b_id.push(Some(id));
        b_m.push(Some(m));
        b_r.push(Some(r));
        b_c.push(Some(c));
    };
    bill("E", "2021-11-01", 50.0, 25.0);
    bill("E", "2021-12-01", 50.0, 25.0);
    for m in [
        "2021-07-01",
        "2021-08-01",
        "2021-09-01",
        "2021-10-01",
        "2021-11-01",
    ] {
        bill("J", m, 50.0, 25.0);
    }
    bill("J", "2021-12-01", 125.0, 40.0);
    for m in ["2021-10-01", "2021-11-01", "2021-12-01"] {
        bill("K", m, 40.0, 10.0);
    }
    bill("I", "2021-12-01", 45.0, 20.0);
    let mut billing = frame(vec![
        strs("subscriber_id", &b_id),
        dates("month", &b_m),
        floats("revenue", &b_r),
        floats("cost_to_serve", &b_c),
    ]);
    let mut complaints = frame(vec![
        strs("subscriber_id", &some(&["F", "F"])),
        dates("opened_at", &some(&["2021-03-01", "2021-09-01"])),
        dates("resolved_at", &some(&["2021-03-05", "2021-09-02"])),
        Series::new("satisfied".into(), [Some(false), None]).into(),
        strs("category", &[Some("network"), None]),
    ]);
    let mut referrals = frame(vec![
        strs("referrer_id", &some(&["F", "F"])),
        dates("referred_at", &some(&["2021-02-01", "2022-01-05"])),
        strs("referred_id", &[Some("G"), None]),
    ]);
    let mut churn = frame(vec![
        strs("subscriber_id", &some(&["E", "E", "K", "L"])),
        dates(
            "churned_at",
            &some(&["2019-06-15", "2020-03-10", "2021-12-31", "2021-04-10"]),
        ),
        strs(
            "leave_reason",
            &some(&["service", "price", "both", "other"]),
        ),
    ]);
    let mut reactivations = frame(vec![
        strs("subscriber_id", &some(&["E", "E", "L"])),
        dates(
            "returned_at",
            &some(&["2019-08-01", "2020-05-20", "2021-06-01"]),
        ),
        strs("plan", &[Some("standard"), Some("premium"), None]),
        floats("monthly_fee", &[Some(45.0), Some(65.0), None]),
    ]);
    for (name, df) in [
        ("subscribers", &mut subs),
        ("billing", &mut billing),
        ("complaints", &mut complaints),
        ("referrals", &mut referrals),
        ("churn_events", &mut churn),
        ("reactivations", &mut reactivations),
    ] {
        write(&data.join(format!("{name}.parquet")), df);
    }
    let cfg = tmp.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[features]\nextra_numeric = [\"credit_score\"]\nextra_categorical = [\"segment\"]\n",
    )
    .unwrap();
    let o = winback(&[
        "-q",
        "features",
        "--config",
        cfg.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        tmp.path().join("out").to_str().unwrap(),
        "--as-of",
        "2021-12-31",
    ]);
    assert!(o.status.success(), "{}", texts(&o).1);
    let out = tmp.path().join("out/features");
    let active = read(&out.join("active.parquet"));
    let lapsed = read(&out.join("lapsed.parquet"));
    // K churned on the as-of date itself: lapsed, not active.
    assert_eq!(active.height(), 7, "all but K are active on 2021-12-31");

    // E: two defections and two returns; the lifetime since 2020-05-20 is
    // 590 days; the plan and fee of the latest return.
    expect(
        &row(&active, "subscriber_id", "E"),
        "active E",
        &[
            ("lifetime_start", "2020-05-20"),
            ("earlier_defections", "2"),
            ("months_since_return", "19.3840"),
            ("billed_months", "2"),
            ("plan", "premium"),
            ("monthly_fee", "65.0000"),
            ("revenue_trend", "null"),
        ],
    );
    let e_second = {
        let m = lapsed
            .column("churned_at")
            .unwrap()
            .cast(&DataType::String)
            .unwrap();
        let mask = m.str().unwrap().equal("2020-03-10");
        lapsed.filter(&mask).unwrap()
    };
    // E's second defection: lifetime from the return of 2019-08-01 (222
    // days), one earlier defection, no bills in it.
    expect(
        &row(&e_second, "subscriber_id", "E"),
        "lapsed E (2nd)",
        &[
            ("lifetime_start", "2019-08-01"),
            ("earlier_defections", "1"),
            ("months_since_return", "7.2936"),
            ("plan", "standard"),
            ("billed_months", "0"),
            ("revenue_mean", "null"),
            ("lifetime_value", "0.0000"),
            ("leave_reason", "price"),
        ],
    );
    // F: one unsatisfied resolution, one resolved with satisfaction unknown
    // (not counted satisfied); the referral of 2022 is after the as-of date.
    expect(
        &row(&active, "subscriber_id", "F"),
        "active F",
        &[
            ("complaints", "2"),
            ("complaints_satisfied", "0"),
            ("complaints_unsatisfied", "2"),
            ("complaints_open", "0"),
            ("complaints_6m", "1"),
            ("share_satisfied", "0.0000"),
            ("days_since_complaint", "121"),
            ("referrals", "1"),
            ("has_referred", "true"),
            ("was_referred", "false"),
        ],
    );
    // G: named as the referred subscriber, though acquired on the web.
    expect(
        &row(&active, "subscriber_id", "G"),
        "active G",
        &[
            ("was_referred", "true"),
            ("referrals", "0"),
            ("segment", "null"),
        ],
    );
    // H: signed up 41 days before the as-of date, not yet billed.
    expect(
        &row(&active, "subscriber_id", "H"),
        "active H",
        &[
            ("tenure_months", "1.3470"),
            ("billed_months", "0"),
            ("revenue_mean", "null"),
            ("value_to_date", "0.0000"),
            ("bill_ratio_max3", "null"),
        ],
    );
    // I: the configured extra columns, carried as they are.
    expect(
        &row(&active, "subscriber_id", "I"),
        "active I",
        &[("credit_score", "712.5000"), ("segment", "business")],
    );
    // J: a December bill of 125 on a fee of 50.
    expect(
        &row(&active, "subscriber_id", "J"),
        "active J",
        &[
            ("bill_ratio_max3", "2.5000"),
            ("revenue_last3", "75.0000"),
            ("revenue_trend", "25.0000"),
            ("margin_last3", "45.0000"),
        ],
    );
    // K: as of its defection on the as-of date, the December bill counts.
    expect(
        &row(&lapsed, "subscriber_id", "K"),
        "lapsed K",
        &[
            ("tenure_months", "2.9897"),
            ("billed_months", "3"),
            ("margin_mean", "30.0000"),
            ("lifetime_value", "90.0000"),
            ("leave_reason", "both"),
        ],
    );
    // L: returned with no plan or fee recorded: the subscriber's apply.
    expect(
        &row(&active, "subscriber_id", "L"),
        "active L",
        &[
            ("plan", "premium"),
            ("monthly_fee", "70.0000"),
            ("earlier_defections", "1"),
            ("lifetime_start", "2021-06-01"),
        ],
    );

    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    let names: Vec<&str> = manifest["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"credit_score") && names.contains(&"segment"),
        "extra columns are in the manifest: {names:?}"
    );
}

/// `run` scores and simulates on the features stage's own active and
/// lapsed rows (`features::current_of`), built from the tables with coded
/// ids and the ledger of bills, at once or by blocks of subscribers; `score`
/// builds them from the inputs with text ids and streamed bills
/// (`features::current`). They are the same rows, column by column, as of
/// the data's end and as of a date a year before.
#[test]
fn the_stages_rows_as_of_the_date_are_those_scoring_builds() {
    use winback::schema::Table;
    use winback::stages::features::{
        Dates, FeatureSettings, Inputs, Part, build, current, current_of, data_end,
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::generate(&data, 3_000, 5);
    let mut tables = BTreeMap::new();
    for t in Table::ALL {
        if let Some(src) = winback::catalog::locate(&data, t).unwrap() {
            tables.insert(t, winback::catalog::scan(&src).unwrap());
        }
    }
    let inputs = Inputs::new(tables).with_spills(winback::catalog::spill_in(tmp.path()));
    let mut lapsed_days = Vec::new();
    for (as_of_back, block) in [(0, 1_000_000), (365, 1_000_000), (0, 700), (365, 1_100)] {
        let s = FeatureSettings {
            block_subscribers: block,
            ..FeatureSettings::default()
        };
        let end = data_end(&inputs, 90).unwrap().date;
        let as_of = end - chrono::Duration::days(as_of_back);
        let dates = Dates {
            as_of,
            data_end: end,
            data_end_set_by: "test".into(),
            data_end_notes: Vec::new(),
        };
        let (mut active, mut lapsed) = (DataFrame::empty(), DataFrame::empty());
        let built = build(&inputs, &s, dates.clone(), &mut |part, df| {
            let into = match part {
                Part::Active => &mut active,
                Part::Lapsed => &mut lapsed,
                _ => return Ok(()),
            };
            if into.width() == 0 {
                *into = df.clone();
            } else {
                into.vstack_mut(df).unwrap();
            }
            Ok(())
        })
        .unwrap();
        // 3,000 subscribers: in 5 and 3 blocks where the block is smaller.
        assert_eq!(
            built.blocks > 1,
            block < 3_000,
            "block {block}: {} blocks",
            built.blocks
        );
        assert_eq!(
            (built.active_rows, built.lapsed_rows),
            (active.height(), lapsed.height())
        );
        let derived = current_of(active.clone(), &lapsed, as_of, end, &s).unwrap();
        let direct = current(&inputs, &s, dates).unwrap();
        // And from the rows as written and read back, as `run` takes them.
        let (a_path, l_path) = (tmp.path().join("a.parquet"), tmp.path().join("l.parquet"));
        winback::catalog::write_parquet(&a_path, &mut active).unwrap();
        winback::catalog::write_parquet(&l_path, &mut lapsed).unwrap();
        let read = |p: &Path| {
            ParquetReader::new(std::fs::File::open(p).unwrap())
                .finish()
                .unwrap()
        };
        let reread = current_of(read(&a_path), &read(&l_path), as_of, end, &s).unwrap();
        assert_eq!(reread.manifest, direct.manifest, "{as_of}");
        for (what, a, b) in [
            ("active", &derived.active, &direct.active),
            ("lapsed", &derived.lapsed, &direct.lapsed),
            ("active read back", &reread.active, &direct.active),
            ("lapsed read back", &reread.lapsed, &direct.lapsed),
        ] {
            assert!(a.height() > 200, "{as_of} {what}: {} rows", a.height());
            assert_eq!(a.get_column_names(), b.get_column_names(), "{as_of} {what}");
            assert_eq!(a.height(), b.height(), "{as_of} {what}");
            for c in a.columns() {
                assert!(
                    c.equals_missing(b.column(c.name()).unwrap()),
                    "{as_of} {what}: column {} differs",
                    c.name()
                );
            }
        }
        assert_eq!(derived.manifest, direct.manifest, "{as_of}");
        assert_eq!((derived.as_of, derived.data_end), (as_of, end));
        lapsed_days.push(
            derived
                .lapsed
                .column("days_since_defection")
                .unwrap()
                .i32()
                .unwrap()
                .sum(),
        );
    }
    // The date moves the rows: the earlier date's lapsed are not the
    // end's with other day counts only.
    assert_ne!(lapsed_days[0], lapsed_days[1]);
    assert_eq!(lapsed_days[..2], lapsed_days[2..], "at once and by blocks");
}

/// Scoring's features take the active and the lapsed subscribers as one
/// set of events and slice it back: a subscriber id twice (which
/// validation never lets through) is refused with the table named, not
/// sliced into the wrong set.
#[test]
fn scoring_features_refuse_a_subscriber_twice() {
    use winback::schema::Table;
    use winback::stages::features::{Dates, FeatureSettings, Inputs, current};
    let d = |s: &str| {
        let day = (chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
            - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap())
        .num_days() as i32;
        Column::new("d".into(), [day, day])
            .cast(&DataType::Date)
            .unwrap()
    };
    let subscribers = DataFrame::new(
        2,
        vec![
            Column::new("subscriber_id".into(), ["a", "a"]),
            d("2024-01-01").with_name("signup_date".into()),
            Column::new("plan".into(), ["basic", "basic"]),
            Column::new("monthly_fee".into(), [20.0, 20.0]),
            Column::new("region".into(), ["north", "north"]),
            Column::new("channel".into(), ["web", "web"]),
        ],
    )
    .unwrap();
    let mut tables = BTreeMap::new();
    tables.insert(Table::Subscribers, subscribers.lazy());
    let as_of = chrono::NaiveDate::from_ymd_opt(2025, 6, 30).unwrap();
    let dates = Dates {
        as_of,
        data_end: as_of,
        data_end_set_by: "test".into(),
        data_end_notes: Vec::new(),
    };
    let err = match current(&Inputs::new(tables), &FeatureSettings::default(), dates) {
        Ok(c) => panic!("accepted: {} active rows", c.active.height()),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("subscribers") && err.contains("not unique"),
        "{err}"
    );
}

/// Where the subscribers are more than `features.block_subscribers`, the
/// bills are spilled by block and the outputs built a block at a time:
/// every output (the four sets, each snapshot, the summary and the
/// manifest) is the one built at once, row for row, whether billing comes
/// grouped by subscriber (the generator's) or in any order; the spill
/// files are gone when the stage ends.
#[test]
fn features_built_by_blocks_of_subscribers_are_those_built_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::generate(&data, 2_500, 12);
    // The same history with billing's rows in a shuffled order.
    let shuffled = tmp.path().join("shuffled");
    std::fs::create_dir_all(&shuffled).unwrap();
    for entry in std::fs::read_dir(&data).unwrap() {
        let entry = entry.unwrap();
        let to = shuffled.join(entry.file_name());
        if entry.path().is_dir() {
            continue;
        }
        if entry.file_name() == "billing.parquet" {
            let bills = read(&entry.path());
            let n = bills.height() as u64;
            // A fixed permutation: i * 7919 mod n visits every row when n
            // is not a multiple of 7919.
            assert!(!n.is_multiple_of(7_919));
            let order = IdxCa::from_vec(
                "order".into(),
                (0..n).map(|i| ((i * 7_919) % n) as IdxSize).collect(),
            );
            write(&to, &mut bills.take(&order).unwrap());
        } else {
            std::fs::copy(entry.path(), to).unwrap();
        }
    }
    let cfg = tmp.path().join("blocks.toml");
    std::fs::write(&cfg, "[features]\nblock_subscribers = 600\n").unwrap();
    for (what, data) in [("generated", &data), ("shuffled", &shuffled)] {
        let whole = features(data, &tmp.path().join(format!("{what}-whole")), None);
        let out = tmp.path().join(format!("{what}-blocks"));
        let o = winback(&[
            "-v",
            "features",
            "--config",
            cfg.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        let (stdout, stderr) = texts(&o);
        assert!(o.status.success(), "{what}: {stdout}\n{stderr}");
        assert!(
            stderr.contains("bills spilled by block"),
            "{what}: not built by blocks:\n{stderr}"
        );
        let blocks = out.join("features");
        for name in [
            "lapsed",
            "active",
            "offers",
            "second_lifetime",
            "churn_snapshots",
        ] {
            let (a, b) = (
                common::read_table(&whole, name),
                common::read_table(&blocks, name),
            );
            assert!(a.height() > 100, "{what} {name}: {} rows", a.height());
            assert_eq!(a.schema(), b.schema(), "{what} {name}");
            assert_eq!(a.height(), b.height(), "{what} {name}");
            for c in a.columns() {
                assert!(
                    c.equals_missing(b.column(c.name()).unwrap()),
                    "{what} {name}: column {} differs",
                    c.name()
                );
            }
        }
        let parts = |dir: &Path| {
            let mut v: Vec<_> = std::fs::read_dir(dir.join("churn_snapshots"))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            v.sort();
            v
        };
        assert_eq!(parts(&whole), parts(&blocks), "{what}: snapshot parts");
        for file in ["summary.json", "manifest.json"] {
            assert_eq!(
                std::fs::read_to_string(whole.join(file)).unwrap(),
                std::fs::read_to_string(blocks.join(file)).unwrap(),
                "{what}: {file}"
            );
        }
        // No spill left behind, in the outputs or beside them.
        for dir in [&out, &blocks] {
            for e in std::fs::read_dir(dir).unwrap() {
                let name = e.unwrap().file_name();
                assert!(
                    !name.to_string_lossy().contains("winback-bills"),
                    "{what}: {name:?} left in {}",
                    dir.display()
                );
            }
        }
    }
}

/// The features' writers append each block's rows to one file: a batch of
/// no row writes no row group, a column of another type is cast to the
/// first batch's, a batch of other columns is refused with the file named,
/// and a file given only empty batches still carries the schema.
#[test]
fn batched_parquet_files_keep_the_first_batch_schema() {
    use winback::catalog::ParquetBatches;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("x.parquet");
    let frame = |a: Column| DataFrame::new(a.len(), vec![a]).unwrap();
    let mut w = ParquetBatches::lz4(path.clone(), &[]);
    w.write(&frame(Column::new("a".into(), Vec::<i32>::new())))
        .unwrap();
    w.write(&frame(Column::new("a".into(), vec![1i32, 2])))
        .unwrap();
    w.write(&frame(Column::new("a".into(), vec![3i64])))
        .unwrap();
    let err = w
        .write(&frame(Column::new("b".into(), vec![4i32])))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("x.parquet") && err.contains("columns (b)"),
        "{err}"
    );
    w.finish(&frame(Column::new("a".into(), Vec::<i32>::new())))
        .unwrap();
    let back = read(&path);
    assert_eq!(back.column("a").unwrap().dtype(), &DataType::Int32);
    assert_eq!(
        back.column("a").unwrap().i32().unwrap().to_vec(),
        vec![Some(1), Some(2), Some(3)]
    );
    let empty = tmp.path().join("empty.parquet");
    let w = ParquetBatches::lz4(empty.clone(), &[]);
    w.finish(&frame(Column::new("a".into(), Vec::<f64>::new())))
        .unwrap();
    let back = read(&empty);
    assert_eq!(
        (back.height(), back.column("a").unwrap().dtype()),
        (0, &DataType::Float64)
    );
}

/// A categorical column of free text (a region per subscriber for a third
/// of them) keeps its frequent levels only: the manifest lists at most
/// `features.max_levels` levels, each in at least
/// `features.min_level_rows` rows, and the summary says what was left to
/// `other`.
#[test]
fn a_free_text_category_keeps_only_its_frequent_levels() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::generate(&data, 900, 21);
    let path = data.join("subscribers.parquet");
    let mut subs = read(&path);
    let regions: Vec<Option<String>> = subs
        .column("region")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if i % 3 == 0 {
                Some(format!("street {i}"))
            } else {
                r.map(str::to_string)
            }
        })
        .collect();
    let common_regions: std::collections::BTreeSet<String> = regions
        .iter()
        .flatten()
        .filter(|r| !r.starts_with("street"))
        .cloned()
        .collect();
    assert!(common_regions.len() >= 3, "{common_regions:?}");
    subs.replace("region", Series::new("region".into(), regions).into())
        .unwrap();
    write(&path, &mut subs);
    let levels = |dir: &Path| -> (Vec<String>, String) {
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap())
                .unwrap();
        let region = manifest["features"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "region")
            .unwrap()["categories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        let summary = std::fs::read_to_string(dir.join("summary.json")).unwrap();
        (region, summary)
    };
    let (kept, summary) = levels(&features(&data, &tmp.path().join("default"), None));
    let kept: std::collections::BTreeSet<String> = kept.into_iter().collect();
    assert_eq!(kept, common_regions, "the streets are each too rare");
    assert!(
        summary.contains("region: ") && summary.contains(" are read as `other`"),
        "{summary}"
    );
    // Two levels at most: the two most frequent.
    let out = tmp.path().join("two");
    let config = "[features]\nmax_levels = 2\nmin_level_rows = 1\n";
    let (two, summary) = levels(&common::features_with(&data, &out, None, Some(config)));
    assert_eq!(two.len(), 2, "{two:?}");
    let lapsed = read(&out.join("features/lapsed.parquet"));
    let mut rows: BTreeMap<String, usize> = BTreeMap::new();
    for r in lapsed
        .column("region")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .flatten()
    {
        *rows.entry(r.to_string()).or_default() += 1;
    }
    let mut by_rows: Vec<(usize, String)> = rows.into_iter().map(|(r, n)| (n, r)).collect();
    by_rows.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    assert!(
        two.contains(&by_rows[0].1),
        "the most frequent region in the lapsed rows, {by_rows:?}, is kept: {two:?}"
    );
    assert!(
        summary.contains("at most features.max_levels = 2"),
        "{summary}"
    );
}

/// A mistyped date years after the extract (a defection in 2030, a bill in
/// 2031) does not move the data's end: every output is the clean data's,
/// and the summary notes the stray dates. (With the latest date of any
/// table as the end, the snapshots moved to 2029 and their horizons held
/// no churn.)
#[test]
fn stray_dates_after_the_extract_do_not_move_the_datas_end() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::generate(&data, 900, 23);
    let clean = features(&data, &tmp.path().join("clean"), None);
    let summary = |dir: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
    };
    let clean_summary = summary(&clean);
    // A subscriber who never defected defects in 2030; another is billed
    // in 2031.
    let churned: std::collections::HashSet<String> = read(&data.join("churn_events.parquet"))
        .column("subscriber_id")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .flatten()
        .map(str::to_string)
        .collect();
    let subs = read(&data.join("subscribers.parquet"));
    let stayer = subs
        .column("subscriber_id")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .flatten()
        .find(|id| !churned.contains(*id))
        .unwrap()
        .to_string();
    // Row `i` of `table` again, with `column` dated `date` (and, for the
    // defection, the stayer's id).
    let append_dated = |table: &str, i: i64, column: &str, date: &str| {
        let path = data.join(format!("{table}.parquet"));
        let mut df = read(&path);
        let mut row = df.slice(i, 1);
        let date = Series::new(column.into(), [day(date)])
            .cast(&DataType::Date)
            .unwrap();
        row.replace(column, date.into()).unwrap();
        if table == "churn_events" {
            let id = Series::new("subscriber_id".into(), [stayer.as_str()]);
            row.replace("subscriber_id", id.into()).unwrap();
        }
        df.vstack_mut(&row).unwrap();
        write(&path, &mut df);
    };
    append_dated("churn_events", 0, "churned_at", "2030-03-14");
    append_dated("billing", 7, "month", "2031-05-01");
    let strayed = features(&data, &tmp.path().join("stray"), None);
    let got = summary(&strayed);
    for key in ["data_end", "as_of", "snapshots"] {
        assert_eq!(got[key], clean_summary[key], "{key}");
    }
    assert_eq!(got["data_end_set_by"], "billing.month");
    let notes = got["notes"].to_string();
    assert!(
        notes.contains("churn_events.churned_at: 1 rows dated after")
            && notes.contains("the latest 2030-03-14")
            && notes.contains("billing.month: 1 bills in 1 months after")
            && notes.contains("the latest 2031-05-01"),
        "{notes}"
    );
    let mut files = vec!["lapsed.parquet".to_string(), "active.parquet".into()];
    for e in std::fs::read_dir(clean.join("churn_snapshots")).unwrap() {
        files.push(format!(
            "churn_snapshots/{}",
            e.unwrap().file_name().to_string_lossy()
        ));
    }
    for f in &files {
        let (a, mut b) = (read(&clean.join(f)), read(&strayed.join(f)));
        if f == "lapsed.parquet" {
            // Every defection is a lapsed row, the stray one too (kept in
            // the data, after its end); the others are unchanged.
            let mask = b
                .column("churned_at")
                .unwrap()
                .as_materialized_series()
                .lt(&Series::new("d".into(), [day("2030-01-01")])
                    .cast(&DataType::Date)
                    .unwrap())
                .unwrap();
            assert_eq!(mask.sum(), Some(b.height() as IdxSize - 1));
            b = b.filter(&mask).unwrap();
        }
        assert!(a.height() > 0, "{f}");
        assert!(
            a.equals_missing(&b),
            "{f}: clean\n{a}\nwith stray dates\n{b}"
        );
    }
}
