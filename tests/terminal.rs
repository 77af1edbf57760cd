//! What a person at a terminal, cron and a log shipper each see on stderr:
//! a progress line per running stage only at a terminal (the binary is
//! given one with util-linux's `script`), plain timestamped lines without
//! colour otherwise, one JSON object per line with `--log-format json`
//! (the error included), and nothing but warnings with `-q`.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{texts, winback};

const BIN: &str = env!("CARGO_BIN_EXE_winback");

/// `winback args` with a pseudo-terminal as stdin, stdout and stderr; the
/// terminal's whole output (both streams) as text.
fn at_a_terminal(args: &[&str]) -> (Output, String) {
    let line = std::iter::once(BIN)
        .chain(args.iter().copied())
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ");
    let o = Command::new("script")
        .args(["-q", "-f", "-e", "-c", &line, "/dev/null"])
        .env_remove("WINBACK_LOG")
        .env_remove("NO_COLOR")
        .output()
        .expect("util-linux `script` runs (tests/run installs it)");
    let seen = String::from_utf8_lossy(&o.stdout).into_owned();
    (o, seen)
}

fn generate_args(dir: &Path) -> Vec<String> {
    [
        "generate",
        "--subscribers",
        "3000",
        "--chunk-size",
        "500",
        "--seed",
        "4",
        "--out",
    ]
    .into_iter()
    .map(String::from)
    .chain([dir.to_string_lossy().into_owned()])
    .collect()
}

/// True when `line` opens with an RFC 3339 UTC timestamp.
fn timestamped(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 20
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[10] == b'T'
        && line[..30.min(line.len())].contains('Z')
}

#[test]
fn a_terminal_sees_progress_and_cron_sees_plain_timestamped_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let args = generate_args(&tmp.path().join("tty"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (o, seen) = at_a_terminal(&args);
    assert!(o.status.success(), "{seen}");
    // The bar: the stage, the amount done of the amount known, redrawn in
    // place; the log lines written above it.
    assert!(seen.contains("generate  ["), "no progress bar: {seen}");
    assert!(seen.contains("/3,000 subscribers"), "{seen}");
    assert!(seen.contains("\x1b[2K"), "the bar is never redrawn: {seen}");
    assert!(seen.contains("generated"), "log lines missing: {seen}");
    assert!(seen.contains("generated 3000 subscribers into"), "{seen}");

    // The same without a terminal (cron, a pipe): no bar, no colour, every
    // line timestamped.
    let args = generate_args(&tmp.path().join("pipe"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = winback(&args);
    let (stdout, stderr) = texts(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(!stderr.is_empty());
    assert!(
        !stderr.contains('\x1b'),
        "escape codes in a pipe: {stderr:?}"
    );
    assert!(!stderr.contains("subscribers ["), "{stderr}");
    assert!(stderr.lines().all(timestamped), "{stderr}");
    assert!(stdout.contains("generated 3000 subscribers into"));

    // -q at a terminal: no bar, no info lines; the summary on stdout.
    let mut quiet = vec!["-q"];
    let args = generate_args(&tmp.path().join("quiet"));
    quiet.extend(args.iter().map(String::as_str));
    let (o, seen) = at_a_terminal(&quiet);
    assert!(o.status.success(), "{seen}");
    assert!(!seen.contains("generate  ["), "a bar under -q: {seen}");
    assert!(!seen.contains("INFO"), "{seen}");
    assert!(seen.contains("generated 3000 subscribers into"), "{seen}");
}

#[test]
fn json_logs_are_one_object_per_line_and_the_error_is_one_of_them() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut args = vec!["--log-format".to_string(), "json".to_string()];
    args.extend(generate_args(&data));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // At a terminal as well: JSON lines are for machines, never a bar.
    let (o, seen) = at_a_terminal(&args);
    assert!(o.status.success(), "{seen}");
    assert!(!seen.contains("generate  ["), "{seen}");
    let o = winback(&args);
    let (_, stderr) = texts(&o);
    assert!(o.status.success(), "{stderr}");
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(events.len() >= 6, "{stderr}");
    for e in &events {
        assert!(e["timestamp"].as_str().is_some_and(timestamped), "{e}");
        assert!(e["level"].is_string() && e["message"].is_string(), "{e}");
    }
    let chunk = events.iter().find(|e| e["message"] == "generated").unwrap();
    assert_eq!(
        chunk["subscribers"], 500,
        "fields are kept as values: {chunk}"
    );

    // A failure: the error is the last JSON line, with its exit code.
    let o = winback(&[
        "--log-format",
        "json",
        "validate",
        "--data",
        tmp.path().join("absent").to_str().unwrap(),
        "--out",
        tmp.path().join("out").to_str().unwrap(),
    ]);
    let (_, stderr) = texts(&o);
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    let last: serde_json::Value = serde_json::from_str(stderr.lines().last().unwrap())
        .unwrap_or_else(|e| panic!("the error is not JSON ({e}): {stderr}"));
    assert_eq!(last["level"], "ERROR");
    assert_eq!(last["exit_code"], 3);
    assert!(
        last["message"].as_str().unwrap().contains("absent"),
        "{last}"
    );
    assert!(stderr.lines().all(|l| !l.starts_with("error:")), "{stderr}");
}

/// The binary runs itself again with mimalloc's transparent huge pages
/// off (README, Performance), unless the environment already sets the
/// option, which is kept; `-v` logs the value it runs with.
#[test]
fn the_allocator_runs_without_huge_pages_unless_the_environment_says() {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/demo.toml");
    let run = |thp: Option<&str>| {
        let mut c = Command::new(BIN);
        c.args(["config", "-v", "--config"])
            .arg(&config)
            .env_remove("MIMALLOC_ALLOW_THP")
            .env("WINBACK_LOG", "winback=debug");
        if let Some(v) = thp {
            c.env("MIMALLOC_ALLOW_THP", v);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let (out, err) = texts(&o);
        assert!(!out.is_empty(), "the settings printed");
        err
    };
    let default = run(None);
    assert!(
        default.contains("allocator: MIMALLOC_ALLOW_THP=0"),
        "{default}"
    );
    let told = run(Some("1"));
    assert!(told.contains("allocator: MIMALLOC_ALLOW_THP=1"), "{told}");
}
