//! Any bytes as one input table of an otherwise valid sample, through
//! `winback validate --mode quarantine` in-process: an error naming the
//! table, or rows accounted for; never a panic. The first byte picks the
//! table.
#![no_main]

use std::sync::OnceLock;

use clap::Parser;
use libfuzzer_sys::fuzz_target;
use winback::cli::Cli;
use winback::commands::execute;
use winback::schema::Table;


/// A small generated sample, made once.
fn sample() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let cli = Cli::parse_from([
            "winback",
            "generate",
            "--subscribers",
            "40",
            "--months",
            "24",
            "--out",
            data.to_str().unwrap(),
        ]);
        execute(&cli.command, &mut std::io::sink()).unwrap();
        dir
    })
    .path()
}

fuzz_target!(|data: &[u8]| {
    let Some((first, bytes)) = data.split_first() else {
        return;
    };
    let base = sample().join("data");
    let run = tempfile::tempdir().unwrap();
    let copy = run.path().join("data");
    std::fs::create_dir(&copy).unwrap();
    for t in Table::ALL.map(Table::name) {
        let from = base.join(format!("{t}.parquet"));
        std::fs::copy(&from, copy.join(format!("{t}.parquet"))).unwrap();
    }
    let table = Table::ALL[*first as usize % Table::ALL.len()].name();
    std::fs::write(copy.join(format!("{table}.parquet")), bytes).unwrap();
    let cli = Cli::parse_from([
        "winback",
        "validate",
        "--mode",
        "quarantine",
        "--data",
        copy.to_str().unwrap(),
        "--out",
        run.path().join("out").to_str().unwrap(),
    ]);
    let _ = execute(&cli.command, &mut std::io::sink());
});
