//! The model registry through the binary: versions listed with their
//! holdout figures, promoted and rolled back (production is what score and
//! nightly use without --model), every move logged with who, when and why;
//! `train.auto_promote` promotes a version that passes the gate and leaves
//! one that fails it a candidate.

mod common;

use std::path::Path;

use common::{generate, texts, winback};

const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/demo.toml");

fn ok(args: &[&str]) -> String {
    let o = winback(args);
    let (stdout, stderr) = texts(&o);
    assert!(o.status.success(), "{args:?}: {stderr}\n{stdout}");
    stdout
}

fn config_with(dir: &Path, train_keys: &str) -> String {
    let defaults = "auto_promote = false\npromote_max_log_loss_increase = 0.005\npromote_max_auc_decrease = 0.01\n";
    let text = std::fs::read_to_string(CONFIG).unwrap();
    assert!(
        text.contains(defaults),
        "the demo config's promotion keys moved"
    );
    let text = text.replace(defaults, &format!("{train_keys}\n"));
    let path = dir.join("promote.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn versions_are_promoted_rolled_back_used_and_logged() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("out"));
    generate(&data, 2000, 4);
    let (d, o) = (data.to_str().unwrap(), out.to_str().unwrap());
    ok(&[
        "-q", "features", "--config", CONFIG, "--data", d, "--out", o,
    ]);
    ok(&["-q", "train", "--config", CONFIG, "--out", o]);
    ok(&["-q", "train", "--config", CONFIG, "--out", o]);
    let models = |action: &[&str]| {
        let mut a = vec!["models", "--config", CONFIG, "--out", o];
        a.extend_from_slice(action);
        winback(&a)
    };
    let list = texts(&models(&["list"])).0;
    assert!(
        list.contains("  v0001") && list.contains("  v0002"),
        "{list}"
    );
    assert!(list.contains("none promoted"), "{list}");
    assert!(
        list.contains("return logistic auc") || list.contains("return boosted auc"),
        "{list}"
    );
    // Without production, the newest.
    let s = ok(&["score", "--config", CONFIG, "--data", d, "--out", o]);
    assert!(s.contains("v0002"), "{s}");

    let p = models(&["promote", "v0001", "--reason", "audit sign-off"]);
    assert!(p.status.success(), "{}", texts(&p).1);
    assert!(texts(&models(&["list"])).0.contains("* v0001"));
    let s = ok(&["score", "--config", CONFIG, "--data", d, "--out", o]);
    assert!(
        s.contains("v0001") && !s.contains("v0002"),
        "score uses production: {s}"
    );
    let show = texts(&models(&["show", "production"])).0;
    assert!(
        show.contains("\"version\": \"v0001\"") && show.contains("trained_at"),
        "{show}"
    );

    assert!(models(&["promote", "v0002"]).status.success());
    let r = models(&["rollback", "--reason", "worse lists"]);
    assert!(r.status.success(), "{}", texts(&r).1);
    assert!(
        texts(&r).0.contains("production: v0001 (was v0002)"),
        "{}",
        texts(&r).0
    );
    let log = std::fs::read_to_string(out.join("models/registry.jsonl")).unwrap();
    let entries: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0]["action"], "promote");
    assert_eq!(entries[0]["reason"], "audit sign-off");
    assert!(entries[0]["previous"].is_null());
    assert_eq!(entries[2]["action"], "rollback");
    assert_eq!(entries[2]["version"], "v0001");
    assert_eq!(entries[2]["previous"], "v0002");
    assert!(
        entries
            .iter()
            .all(|e| e["at"].is_string() && e["by"].is_string())
    );
    // A version that does not exist names the ones that do.
    let bad = models(&["promote", "v0009"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(texts(&bad).1.contains("v0001, v0002"), "{}", texts(&bad).1);

    // The nightly job uses production.
    ok(&["-q", "nightly", "--config", CONFIG, "--data", d, "--out", o]);
    let night = std::fs::read_link(out.join("runs/latest")).unwrap();
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("runs").join(night).join("run.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["model"]["version"], "v0001");

    // The gate: an impossible one leaves the new version a candidate...
    let strict = config_with(
        tmp.path(),
        "auto_promote = true\npromote_max_log_loss_increase = -1.0",
    );
    let s = ok(&["train", "--config", &strict, "--out", o]);
    assert!(s.contains("not promoted: v0003"), "{s}");
    assert!(texts(&models(&["list"])).0.contains("* v0001"));
    // ...a lenient one promotes it.
    let lenient = config_with(
        tmp.path(),
        "auto_promote = true\npromote_max_log_loss_increase = 1.0\npromote_max_auc_decrease = 1.0",
    );
    let s = ok(&["train", "--config", &lenient, "--out", o]);
    assert!(s.contains("production: v0004 (was v0001)"), "{s}");
    let log = std::fs::read_to_string(out.join("models/registry.jsonl")).unwrap();
    assert!(log.lines().last().unwrap().contains("auto-promote"));
}
