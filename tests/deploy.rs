//! The scheduling examples under `deploy/` are checked, not just shown: the
//! cron line's schedule and flags (each flag the binary's `nightly`
//! accepts), the systemd units with `systemd-analyze verify` where it is
//! installed (with the test binary as ExecStart; any warning fails), and
//! the Airflow DAG's exit-code mapping with the notebooks' Python (and,
//! where Airflow is installed, loaded by its DagBag without errors).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{texts, winback};

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

#[test]
fn the_cron_line_runs_nightly_under_flock_with_flags_the_binary_takes() {
    let text = std::fs::read_to_string(deploy("cron/winback")).unwrap();
    let jobs: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#') && !l.contains('='))
        .collect();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let fields: Vec<&str> = jobs[0].split_whitespace().collect();
    // cron.d: five time fields, the user, the command.
    for (i, f) in fields[..5].iter().enumerate() {
        assert!(
            f.chars().all(|c| c.is_ascii_digit() || "*/,-".contains(c)),
            "time field {i}: {f}"
        );
    }
    let command = fields[6..].join(" ");
    assert!(command.starts_with("flock -n "), "{command}");
    let at = command.find("winback -q nightly").expect("the nightly job");
    let help = texts(&winback(&["nightly", "--help"])).0;
    for flag in command[at..]
        .split_whitespace()
        .take_while(|w| *w != ">>")
        .filter(|w| w.starts_with("--"))
    {
        assert!(help.contains(flag), "`winback nightly` has no {flag}");
    }
    for code in ["0 ", "1 ", "2 ", "3 ", "4 ", "5 "] {
        assert!(
            text.contains(&format!("#   {code}")),
            "exit code {code}unexplained"
        );
    }
}

#[test]
fn the_systemd_units_verify() {
    let Ok(o) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze is not installed here: the units are not verified");
        return;
    };
    assert!(o.status.success());
    let tmp = tempfile::tempdir().unwrap();
    let service = std::fs::read_to_string(deploy("systemd/winback-nightly.service"))
        .unwrap()
        .replace("/usr/local/bin/winback", env!("CARGO_BIN_EXE_winback"))
        .replace("User=winback", "User=root")
        .replace("Group=winback", "Group=root");
    std::fs::write(tmp.path().join("winback-nightly.service"), &service).unwrap();
    std::fs::copy(
        deploy("systemd/winback-nightly.timer"),
        tmp.path().join("winback-nightly.timer"),
    )
    .unwrap();
    let o = Command::new("systemd-analyze")
        .current_dir(tmp.path())
        .args(["verify", "winback-nightly.service", "winback-nightly.timer"])
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&o);
    assert!(o.status.success(), "{stdout}{stderr}");
    assert!(stderr.trim().is_empty(), "systemd-analyze warns: {stderr}");
    assert!(service.contains("nightly") && service.contains("Type=oneshot"));
}

fn python() -> Option<PathBuf> {
    std::env::var("WINBACK_PYTHON")
        .ok()
        .map(PathBuf::from)
        .or_else(|| {
            let p =
                PathBuf::from(std::env::var("HOME").ok()?).join(".cache/winback/venv/bin/python");
            p.is_file().then_some(p)
        })
}

#[test]
fn the_airflow_dag_maps_exit_codes_and_loads_where_airflow_is() {
    let python = python().expect("the notebooks' Python (tests/run makes it)");
    let dag = deploy("airflow/winback_nightly.py");
    let check = format!(
        r#"
import importlib.util, sys
spec = importlib.util.spec_from_file_location("dag", {dag:?})
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
got = {{c: m.outcome(c) for c in range(6)}}
want = {{0: "ok", 1: "retry", 2: "fail", 3: "fail", 4: "fail", 5: "retry"}}
assert got == want, got
try:
    import airflow
except ImportError:
    print("no airflow here: DagBag not loaded")
    sys.exit(0)
from airflow.models import DagBag
bag = DagBag(dag_folder={folder:?}, include_examples=False)
assert not bag.import_errors, bag.import_errors
assert "winback_nightly" in bag.dags, list(bag.dags)
print("DagBag loaded")
"#,
        dag = dag.to_str().unwrap(),
        folder = dag.parent().unwrap().to_str().unwrap()
    );
    let o = Command::new(python).args(["-c", &check]).output().unwrap();
    let (stdout, stderr) = texts(&o);
    assert!(o.status.success(), "{stdout}{stderr}");
}
