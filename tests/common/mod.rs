//! Helpers shared by the end-to-end tests: run the built binary, read its
//! outputs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use polars::prelude::*;

/// Runs `winback` with `args`; returns the finished process.
pub fn winback(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_winback"))
        .args(args)
        .env_remove("WINBACK_LOG")
        .output()
        .expect("winback runs")
}

/// stdout and stderr of a finished process, as text.
pub fn texts(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Generates a sample with the binary; panics with its stderr on failure.
pub fn generate(dir: &Path, subscribers: u64, seed: u64) {
    generate_with(dir, subscribers, seed, &[]);
}

/// [`generate`] with more flags (`--known-on DAY`, ...).
pub fn generate_with(dir: &Path, subscribers: u64, seed: u64, extra: &[&str]) {
    let (subscribers, seed) = (subscribers.to_string(), seed.to_string());
    let mut args = vec![
        "-q",
        "generate",
        "--subscribers",
        &subscribers,
        "--seed",
        &seed,
        "--out",
        dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = winback(&args);
    assert!(o.status.success(), "generate failed: {}", texts(&o).1);
}

/// Reads a Parquet file into memory.
pub fn read(path: &Path) -> DataFrame {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    ParquetReader::new(f).finish().unwrap()
}

/// Writes a frame as Parquet, creating parent directories.
pub fn write(path: &Path, df: &mut DataFrame) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let f = std::fs::File::create(path).unwrap();
    ParquetWriter::new(f).finish(df).unwrap();
}

/// A scalar from a one-row frame.
pub fn scalar_f64(df: &DataFrame, name: &str) -> f64 {
    df.column(name)
        .unwrap()
        .cast(&DataType::Float64)
        .unwrap()
        .f64()
        .unwrap()
        .get(0)
        .unwrap_or(f64::NAN)
}

/// Column as `(key, value)` pairs of a two-column frame.
pub fn pairs(df: &DataFrame, key: &str, value: &str) -> Vec<(String, f64)> {
    let k = df.column(key).unwrap().cast(&DataType::String).unwrap();
    let v = df.column(value).unwrap().cast(&DataType::Float64).unwrap();
    k.str()
        .unwrap()
        .iter()
        .zip(v.f64().unwrap().iter())
        .map(|(k, v)| (k.unwrap_or("null").to_string(), v.unwrap_or(f64::NAN)))
        .collect()
}

/// Reads a table written as `<name>.parquet` or as a directory `<name>/` of
/// part files (concatenated in name order).
pub fn read_table(dir: &Path, name: &str) -> DataFrame {
    let file = dir.join(format!("{name}.parquet"));
    if file.is_file() {
        return read(&file);
    }
    let mut parts: Vec<_> = std::fs::read_dir(dir.join(name))
        .unwrap_or_else(|e| panic!("no table {name} in {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    parts.sort();
    let mut frames = parts.iter().map(|p| read(p));
    let mut all = frames.next().expect("at least one part");
    for f in frames {
        all.vstack_mut(&f).unwrap();
    }
    all
}

/// Runs `winback features` and returns the output directory.
pub fn features(data: &Path, out: &Path, as_of: Option<&str>) -> PathBuf {
    features_with(data, out, as_of, None)
}

/// [`features`] with a config file (`config`, its TOML text, written
/// beside `out`).
pub fn features_with(
    data: &Path,
    out: &Path,
    as_of: Option<&str>,
    config: Option<&str>,
) -> PathBuf {
    let cfg = out.with_extension("toml");
    let mut args = vec![
        "-q",
        "features",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    if let Some(text) = config {
        std::fs::write(&cfg, text).unwrap();
        args.extend(["--config", cfg.to_str().unwrap()]);
    }
    if let Some(d) = as_of {
        args.extend(["--as-of", d]);
    }
    let o = winback(&args);
    assert!(
        o.status.success(),
        "features failed:\n{}\n{}",
        texts(&o).0,
        texts(&o).1
    );
    out.join("features")
}
