//! The notebooks: stored without outputs, and executed headless (nbclient,
//! `notebooks/execute.py`) against a small run made here; a cell that
//! raises fails the test. The Python environment is `WINBACK_PYTHON`, which
//! `tests/run` (the README's test command) sets up from
//! `notebooks/requirements.txt`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{generate, texts, winback};
use serde_json::Value;

const NOTEBOOKS: [&str; 3] = ["01_data_and_features", "02_models", "03_campaign_what_if"];

fn notebook(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("notebooks")
        .join(format!("{name}.ipynb"))
}

#[test]
fn notebooks_are_stored_without_outputs() {
    for name in NOTEBOOKS {
        let nb: Value =
            serde_json::from_str(&std::fs::read_to_string(notebook(name)).unwrap()).unwrap();
        let cells = nb["cells"].as_array().unwrap();
        assert!(cells.len() >= 5, "{name} has {} cells", cells.len());
        for (i, c) in cells.iter().enumerate() {
            if c["cell_type"] == "code" {
                assert_eq!(
                    c["outputs"].as_array().map(Vec::len),
                    Some(0),
                    "{name} cell {i} was committed with outputs: clear them (Jupyter: Edit > Clear All Outputs)"
                );
                assert!(
                    c["execution_count"].is_null(),
                    "{name} cell {i} has an execution count"
                );
            }
        }
    }
}

/// The notebooks' Python: `WINBACK_PYTHON`, else the venv `tests/run`
/// makes.
fn python() -> PathBuf {
    if let Ok(p) = std::env::var("WINBACK_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = std::env::var("WINBACK_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/winback/venv")
        });
    let p = venv.join("bin").join("python");
    assert!(
        p.is_file(),
        "no Python environment for the notebooks: run the suite with `tests/run`, which makes one from notebooks/requirements.txt (or set WINBACK_PYTHON)"
    );
    p
}

#[test]
fn the_notebooks_run_headless_against_a_small_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("out"));
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/demo.toml");
    generate(&data, 4000, 11);
    let o = winback(&[
        "-q",
        "run",
        "--config",
        config,
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "run failed: {}", texts(&o).1);
    let list = out.join("simulate").join("target_list.parquet");
    let before = std::fs::read(&list).unwrap();
    let o = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("notebooks/execute.py"))
        .env("WINBACK_OUT", &out)
        .env("WINBACK_DATA", &data)
        .env("WINBACK_CONFIG", config)
        .env("WINBACK_BIN", env!("CARGO_BIN_EXE_winback"))
        .env("MPLBACKEND", "Agg")
        .output()
        .expect("python starts");
    let (stdout, stderr) = texts(&o);
    assert!(o.status.success(), "a notebook failed:\n{stdout}\n{stderr}");
    for name in NOTEBOOKS {
        assert!(
            stdout.contains(&format!("ok {name}.ipynb")),
            "{name} not executed: {stdout}"
        );
    }
    // The what-if reran `simulate` on scratch copies: the run's own list is
    // byte for byte what it was.
    assert_eq!(
        std::fs::read(&list).unwrap(),
        before,
        "the what-if touched the run's list"
    );
}
