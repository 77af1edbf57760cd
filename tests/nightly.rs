//! The nightly job through the binary: a night is published whole under
//! `runs/<as-of>/` with its record and `latest` moves; the same night again
//! is a no-op and `--force` gives the same bytes; stale data is refused
//! with exit 4 and `latest` kept; a held lock exits 5 and a dead holder's
//! lock is taken over; and killed with SIGKILL at random points, a night
//! never leaves a partial run visible or `latest` broken, and the next
//! night succeeds with the bytes of an uninterrupted one.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{generate, texts, winback};
use polars::prelude::Column;

const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/demo.toml");

/// A small history with its features and a trained model version.
fn prepared(tmp: &Path, subscribers: u64) -> (PathBuf, PathBuf) {
    let (data, out) = (tmp.join("data"), tmp.join("out"));
    generate(&data, subscribers, 3);
    trained(&data, &out);
    (data, out)
}

/// Features of `data` and a model version trained on them, under `out`.
fn trained(data: &Path, out: &Path) {
    for stage in ["features", "train"] {
        let mut args = vec![
            "-q",
            stage,
            "--config",
            CONFIG,
            "--out",
            out.to_str().unwrap(),
        ];
        if stage == "features" {
            args.extend(["--data", data.to_str().unwrap()]);
        }
        let o = winback(&args);
        assert!(o.status.success(), "{stage}: {}", texts(&o).1);
    }
}

fn nightly_args<'a>(data: &'a Path, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "-q",
        "nightly",
        "--config",
        CONFIG,
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    a.extend_from_slice(extra);
    a
}

/// Every file under `dir` but the JSON ones (which name paths and times),
/// as relative path and bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else if p.extension().is_none_or(|x| x != "json") {
                out.insert(
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn record(out: &Path, night: &str) -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(out.join("runs").join(night).join("run.json")).unwrap(),
    )
    .unwrap()
}

fn latest(out: &Path) -> Option<String> {
    std::fs::read_link(out.join("runs").join("latest"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

#[test]
fn a_night_is_published_whole_and_the_same_night_again_is_a_no_op() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = prepared(tmp.path(), 2000);
    let o = winback(&nightly_args(&data, &out, &[]));
    let (stdout, stderr) = texts(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(stdout.contains("published"), "{stdout}");
    assert_eq!(
        stdout.lines().count(),
        1,
        "-q prints the one-line result: {stdout}"
    );
    let night = latest(&out).expect("latest points at the night");
    let dir = out.join("runs").join(&night);
    for f in [
        "run.json",
        "validate/report.json",
        "score/churn_scores.parquet",
        "simulate/target_list.parquet",
        "simulate/target_list.xlsx",
        "report/index.html",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let r = record(&out, &night);
    assert_eq!(r["status"], "published");
    assert_eq!(r["as_of"], night.as_str());
    assert!(r["inputs"].as_array().unwrap().len() >= 2);
    let billing = r["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "billing")
        .unwrap();
    assert!(billing["files"][0]["rows"].as_i64().unwrap() > 1000);
    assert!(billing["files"][0]["row_groups"].as_u64().unwrap() >= 1);
    assert_eq!(r["model"]["version"], "v0001");
    // Every Parquet output says where it comes from.
    let md = winback::catalog::parquet_metadata(&dir.join("simulate/target_list.parquet")).unwrap();
    let get = |k: &str| {
        md.iter()
            .find(|(key, _)| key == k)
            .and_then(|(_, v)| v.clone())
    };
    assert_eq!(get("winback.as_of").as_deref(), Some(night.as_str()));
    assert_eq!(get("winback.model_version").as_deref(), Some("v0001"));
    assert_eq!(get("winback.run_id").as_deref(), r["run_id"].as_str());

    // The same night again: nothing to do, nothing touched.
    let before = files(&dir);
    let run_json = std::fs::read(dir.join("run.json")).unwrap();
    let o = winback(&nightly_args(&data, &out, &[]));
    let (stdout, _) = texts(&o);
    assert!(o.status.success());
    assert!(stdout.contains("already published"), "{stdout}");
    assert_eq!(std::fs::read(dir.join("run.json")).unwrap(), run_json);
    // --force recomputes, to the same bytes.
    let o = winback(&nightly_args(&data, &out, &["--force"]));
    assert!(o.status.success(), "{}", texts(&o).1);
    assert_eq!(files(&dir), before, "--force gave other bytes");
    assert_eq!(record(&out, &night)["run_id"], r["run_id"]);

    let o = winback(&[
        "runs",
        "--config",
        CONFIG,
        "--out",
        out.to_str().unwrap(),
        "list",
    ]);
    let (stdout, _) = texts(&o);
    assert!(stdout.contains(&format!("* {night}")), "{stdout}");
    let o = winback(&[
        "runs",
        "--config",
        CONFIG,
        "--out",
        out.to_str().unwrap(),
        "show",
        "latest",
    ]);
    assert!(texts(&o).0.contains(r["run_id"].as_str().unwrap()));
}

#[test]
fn stale_data_is_refused_with_exit_4_and_latest_kept_and_a_held_lock_exits_5() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = prepared(tmp.path(), 1500);
    let o = winback(&nightly_args(&data, &out, &[]));
    assert!(o.status.success(), "{}", texts(&o).1);
    let night = latest(&out).unwrap();
    // Forty-six days past the data's end, beyond max_data_age_days (45).
    let end = chrono::NaiveDate::parse_from_str(&night, "%Y-%m-%d").unwrap();
    let late = (end + chrono::Duration::days(46)).to_string();
    let o = winback(&nightly_args(&data, &out, &["--as-of", &late]));
    let (_, stderr) = texts(&o);
    assert_eq!(o.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("refused to publish"), "{stderr}");
    assert_eq!(latest(&out).as_deref(), Some(night.as_str()), "latest kept");
    let refused: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("runs").join(format!("refused-{late}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(refused["status"], "refused");
    assert_eq!(refused["exit_code"], 4);
    assert!(!out.join("runs").join(&late).exists());

    // A live holder: exit 5 at once, naming the lock.
    let holder = Command::new("sleep").arg("30").spawn().unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", holder.id())).unwrap();
    let start = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .nth(19)
        .unwrap()
        .to_string();
    let lock = out.join(".winback.lock");
    std::fs::write(&lock, format!("{} {start} train\n", holder.id())).unwrap();
    let t = Instant::now();
    let o = winback(&nightly_args(&data, &out, &["--force"]));
    let (_, stderr) = texts(&o);
    assert_eq!(o.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.contains(".winback.lock") && stderr.contains("winback train"),
        "{stderr}"
    );
    assert!(t.elapsed() < Duration::from_secs(20), "it waited");
    let mut holder = holder;
    holder.kill().unwrap();
    holder.wait().unwrap();
    // The holder is gone: its lock is taken over.
    let o = winback(&nightly_args(&data, &out, &["--force"]));
    assert!(o.status.success(), "{}", texts(&o).1);
    assert!(!lock.exists(), "the lock is released");
}

/// `winback args` under a file-size limit of `kib` KiB (`ulimit -f`, with
/// SIGXFSZ ignored so that a write past it fails with EFBIG, as on a
/// full disk).
fn winback_limited(kib: u64, args: &[&str]) -> std::process::Output {
    Command::new("bash")
        .arg("-c")
        .arg(format!("trap '' XFSZ; ulimit -f {kib}; exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_winback"))
        .args(args)
        .env_remove("WINBACK_LOG")
        .output()
        .unwrap()
}

/// Names under `dir`, hidden ones included.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A write that fails for want of room, at several points of a night:
/// exit 1, a message naming the path and the cause, nothing half-written
/// left, the previous night intact and `latest` on it, the lock released;
/// the same for `score` outside a night; and the next run succeeds.
#[test]
fn a_full_disk_fails_the_night_with_exit_1_naming_the_path_and_keeps_the_last_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = prepared(tmp.path(), 1500);
    let o = winback(&nightly_args(&data, &out, &["--as-of", "2025-11-30"]));
    assert!(o.status.success(), "{}", texts(&o).1);
    let night_one = files(&out.join("runs").join("2025-11-30"));
    let record_one = std::fs::read(out.join("runs/2025-11-30/run.json")).unwrap();
    let runs_before = names(&out.join("runs"));
    let top_before = names(&out);
    let mut failed_at = std::collections::BTreeSet::new();
    // Limits below the largest file a night writes, so that each fails
    // somewhere else.
    let largest = night_one.values().map(Vec::len).max().unwrap() as u64;
    for kib in [0.05, 0.3, 0.6, 0.9].map(|f| (f * largest as f64 / 1024.0).ceil() as u64) {
        let o = winback_limited(kib, &nightly_args(&data, &out, &["--as-of", "2025-12-31"]));
        let (_, stderr) = texts(&o);
        assert_eq!(o.status.code(), Some(1), "limit {kib} KiB: {stderr}");
        assert!(
            stderr.contains("File too large") && stderr.contains(out.to_str().unwrap()),
            "limit {kib} KiB: the message names the path and the cause: {stderr}"
        );
        assert!(stderr.contains("hint: no room to write"), "{stderr}");
        let path = stderr
            .lines()
            .find(|l| l.starts_with("error:"))
            .and_then(|l| {
                l.split_whitespace()
                    .find(|w| w.contains(out.to_str().unwrap()))
            })
            .unwrap()
            .trim_end_matches(':')
            .to_string();
        failed_at.insert(Path::new(&path).file_name().unwrap().to_owned());
        assert_eq!(
            names(&out.join("runs")),
            runs_before,
            "limit {kib} KiB: leftovers"
        );
        assert_eq!(
            names(&out),
            top_before,
            "limit {kib} KiB: leftovers or a lock"
        );
        assert_eq!(latest(&out).as_deref(), Some("2025-11-30"));
        assert_eq!(files(&out.join("runs").join("2025-11-30")), night_one);
        assert_eq!(
            std::fs::read(out.join("runs/2025-11-30/run.json")).unwrap(),
            record_one
        );
    }
    assert!(
        failed_at.len() >= 2,
        "the limits fail at one point only: {failed_at:?}"
    );

    // `score` replaces scores/ whole or not at all.
    let score = |as_of: &'static str| {
        vec![
            "-q",
            "score",
            "--config",
            CONFIG,
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--as-of",
            as_of,
        ]
    };
    let o = winback(&score("2025-11-30"));
    assert!(o.status.success(), "{}", texts(&o).1);
    let scores = files(&out.join("score"));
    let half = scores.values().map(Vec::len).max().unwrap() as u64 / 2048;
    let o = winback_limited(half.max(1), &score("2025-12-31"));
    let (_, stderr) = texts(&o);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("File too large"), "{stderr}");
    assert_eq!(files(&out.join("score")), scores, "scores half-replaced");
    assert_eq!(
        names(&out),
        top_before
            .iter()
            .cloned()
            .chain(["score".to_string()])
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    );

    // Room again: the night publishes.
    let o = winback(&nightly_args(&data, &out, &["--as-of", "2025-12-31"]));
    assert!(o.status.success(), "{}", texts(&o).1);
    assert_eq!(latest(&out).as_deref(), Some("2025-12-31"));
}

#[test]
fn killed_at_twenty_random_points_a_night_never_shows_half_a_list() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = prepared(tmp.path(), 1500);
    // The night the kills interrupt, uninterrupted: its bytes are the
    // reference, its duration (or a rerun's, below) spreads the kills.
    let t = Instant::now();
    let o = winback(&nightly_args(&data, &out, &[]));
    let full = t.elapsed();
    assert!(o.status.success(), "{}", texts(&o).1);
    let end = latest(&out).unwrap();
    let end_date = chrono::NaiveDate::parse_from_str(&end, "%Y-%m-%d").unwrap();
    // The previous night: a month before; then the nights killed are the
    // data's end again, forced.
    let earlier = (end_date - chrono::Duration::days(31)).to_string();
    let o = winback(&nightly_args(&data, &out, &["--as-of", &earlier]));
    assert!(o.status.success(), "{}", texts(&o).1);
    assert_eq!(
        latest(&out).as_deref(),
        Some(end.as_str()),
        "a backfill leaves latest"
    );
    let reference = files(&out.join("runs").join(&end));
    std::fs::remove_dir_all(out.join("runs").join(&end)).unwrap();
    std::fs::remove_file(out.join("runs").join("latest")).unwrap();
    // A forced rerun, as the killed nights are, timed too: the first night
    // can take twice as long as the reruns (its caches cold), and kills
    // spread over it would find most reruns finished. The kills spread
    // over the shorter of the two.
    let t = Instant::now();
    let o = winback(&nightly_args(
        &data,
        &out,
        &["--as-of", &earlier, "--force"],
    ));
    let full = full.min(t.elapsed());
    assert!(o.status.success(), "{}", texts(&o).1);
    assert_eq!(latest(&out).as_deref(), Some(earlier.as_str()));

    let mut seed: u64 = 0x9e3779b97f4a7c15;
    let mut killed_after = Vec::new();
    for _ in 0..20 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = full.mul_f64((seed % 1000) as f64 / 1000.0 * 0.9);
        let mut child = Command::new(env!("CARGO_BIN_EXE_winback"))
            .args(nightly_args(&data, &out, &["--force"]))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let finished = child.try_wait().unwrap().is_some();
        if !finished {
            child.kill().unwrap();
        }
        child.wait().unwrap();
        killed_after.push((delay.as_millis(), finished));
        // latest is whole: the earlier night, or the new one if the kill
        // came after the switch; every visible night has its record.
        let l = latest(&out).expect("latest survives");
        assert!(
            l == earlier || l == end,
            "latest points at {l} after a kill at {delay:?}"
        );
        assert!(
            out.join("runs").join(&l).join("run.json").is_file(),
            "latest ({l}) is not a whole night after a kill at {delay:?}"
        );
        for e in std::fs::read_dir(out.join("runs")).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "latest" || name.starts_with("refused-") {
                continue;
            }
            assert!(
                out.join("runs").join(&name).join("run.json").is_file(),
                "a partial night {name} is visible after a kill at {delay:?}"
            );
        }
    }
    assert!(
        killed_after.iter().filter(|(_, f)| !f).count() >= 14,
        "most runs must be killed mid-way: {killed_after:?}"
    );
    // The next night succeeds (the lock of the killed one is taken over)
    // and gives the uninterrupted bytes.
    let o = winback(&nightly_args(&data, &out, &["--force"]));
    assert!(o.status.success(), "{}", texts(&o).1);
    assert_eq!(latest(&out).as_deref(), Some(end.as_str()));
    assert_eq!(files(&out.join("runs").join(&end)), reference);
    assert!(
        !std::fs::read_dir(out.join("runs")).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains(".tmp-")),
        "staging left behind"
    );
}

/// Two nights on a history that grows by a month: the model trained on
/// the first night's data scores both; a drifted feature injected into
/// the second night refuses with exit 4 and names it, keeping the first
/// night as `latest`; the clean second night publishes with the new
/// data's end and the same model.
#[test]
fn two_nights_on_a_growing_history_and_a_drifted_feature_stops_the_second() {
    let tmp = tempfile::tempdir().unwrap();
    let (first, out) = (tmp.path().join("november"), tmp.path().join("out"));
    common::generate_with(&first, 2000, 3, &["--known-on", "2025-11-30"]);
    trained(&first, &out);
    // Night one, on the population the model was trained on.
    let o = winback(&nightly_args(&first, &out, &[]));
    assert!(o.status.success(), "{}", texts(&o).1);
    assert_eq!(latest(&out).as_deref(), Some("2025-11-30"));
    let r1 = record(&out, "2025-11-30");
    assert_eq!(r1["data_end"], "2025-11-30");
    let drift = r1["drift"].as_array().unwrap();
    assert!(drift.len() >= 10, "{drift:?}");
    assert!(drift.iter().any(|d| d["feature"] == "score"));
    assert!(
        drift
            .iter()
            .all(|d| d["status"] != "drifted" || d["feature"] == "score"),
        "a night on the training data refused: {drift:?}"
    );
    let night_one = files(&out.join("runs").join("2025-11-30"));

    // The history a month later, and a copy where every fee tripled: the
    // same subscribers, another price list.
    let second = tmp.path().join("december");
    common::generate_with(&second, 2000, 3, &["--known-on", "2025-12-31"]);
    let drifted = tmp.path().join("december-drifted");
    std::fs::create_dir(&drifted).unwrap();
    for e in std::fs::read_dir(&second).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, drifted.join(p.file_name().unwrap())).unwrap();
    }
    let path = drifted.join("subscribers.parquet");
    let mut subs = common::read(&path);
    let fee = subs.column("monthly_fee").unwrap().as_materialized_series() * 3.0;
    subs.with_column(Column::from(fee)).unwrap();
    common::write(&path, &mut subs);

    let o = winback(&nightly_args(&drifted, &out, &[]));
    let (_, stderr) = texts(&o);
    assert_eq!(o.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("monthly_fee (PSI"), "{stderr}");
    assert_eq!(latest(&out).as_deref(), Some("2025-11-30"), "latest kept");
    assert!(
        !out.join("runs").join("2025-12-31").exists(),
        "no refused night visible"
    );
    let refused: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("runs").join("refused-2025-12-31.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(refused["data_end"], "2025-12-31");
    // The fee and what is computed from it (the largest bill over the
    // fee) drifted; the rest of the population did not.
    let table = refused["drift"].as_array().unwrap();
    let status = |name: &str| {
        table
            .iter()
            .find(|d| d["feature"] == name)
            .map(|d| {
                (
                    d["status"].as_str().unwrap().to_string(),
                    d["psi"].as_f64().unwrap(),
                )
            })
            .unwrap()
    };
    assert_eq!(status("monthly_fee").0, "drifted", "{refused}");
    assert!(status("monthly_fee").1 > 0.25);
    assert_eq!(status("tenure_months").0, "stable");
    assert_eq!(status("region").0, "stable");

    // The clean second night: published with the new data's end and the
    // same model; night one untouched.
    let o = winback(&nightly_args(&second, &out, &[]));
    assert!(o.status.success(), "{}", texts(&o).1);
    assert_eq!(latest(&out).as_deref(), Some("2025-12-31"));
    let r2 = record(&out, "2025-12-31");
    assert_eq!(r2["status"], "published");
    assert_eq!(r2["data_end"], "2025-12-31");
    assert_eq!(r2["model"], r1["model"], "the same model both nights");
    assert_ne!(r2["run_id"], r1["run_id"]);
    let rows = |r: &serde_json::Value| {
        r["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == "billing")
            .unwrap()["files"][0]["rows"]
            .as_i64()
            .unwrap()
    };
    assert!(
        rows(&r2) > rows(&r1),
        "the second night reads the grown history"
    );
    assert!(
        r2["drift"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["status"] != "drifted" || d["feature"] == "score"),
        "{}",
        r2["drift"]
    );
    assert_eq!(files(&out.join("runs").join("2025-11-30")), night_one);
    assert_eq!(record(&out, "2025-11-30")["run_id"], r1["run_id"]);
}

/// A bill mistyped years ahead leaves the night's data end where the
/// clean history puts it, and the night warns of it once (the data's end
/// is found once, by validation's pass, not again after it).
#[test]
fn a_stray_bill_leaves_the_nights_data_end_and_warns_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = prepared(tmp.path(), 1500);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("features/summary.json")).unwrap())
            .unwrap();
    let path = data.join("billing.parquet");
    let mut bills = common::read(&path);
    let mut stray = bills.slice(11, 1);
    let month = Column::new(
        "month".into(),
        [chrono::NaiveDate::from_ymd_opt(2031, 5, 1).unwrap()],
    );
    stray.replace("month", month).unwrap();
    bills.vstack_mut(&stray).unwrap();
    common::write(&path, &mut bills);
    let o = winback(&nightly_args(&data, &out, &[]));
    let (_, stderr) = texts(&o);
    assert!(o.status.success(), "{stderr}");
    assert_eq!(
        stderr
            .matches("the data's end: billing.month: 1 bills")
            .count(),
        1,
        "{stderr}"
    );
    let night = latest(&out).unwrap();
    let r = record(&out, &night);
    assert_eq!(r["data_end"], summary["data_end"]);
    assert_eq!(r["data_end_set_by"], "billing.month");
}
