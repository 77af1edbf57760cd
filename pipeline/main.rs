//! The `winback` binary: parse flags, run, map the outcome to an exit code.
//! Data and summaries go to stdout; logs and errors to stderr.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use winback::Error;
use winback::cli::{Cli, Command, LogFormat};
use winback::progress;

/// mimalloc instead of the system allocator: polars' kernels and the
/// stages allocate and free large buffers from both cores at once, which
/// glibc's malloc serves with fresh mappings and their page faults.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's options for this workload, each unless the environment
/// already sets it: no transparent huge pages. By default mimalloc asks
/// the kernel for huge pages on its large regions, and the stages' large
/// short-lived buffers, freed and allocated again, were faulted in over
/// and over, each fault zeroing 2 MiB: at 1M subscribers a third of the
/// features stage's samples were the kernel clearing pages, and `winback
/// run` took 126 s against 98 s without them (README, Performance).
const ALLOCATOR_OPTIONS: [(&str, &str); 1] = [("MIMALLOC_ALLOW_THP", "0")];

/// mimalloc reads its options from the environment as the process starts,
/// before `main`, and they cannot be set safely from here: the binary runs
/// itself again, in place (same process id, arguments, standard streams),
/// with [`ALLOCATOR_OPTIONS`] added to its environment. Once they are set,
/// or if that fails, it goes on as it is.
fn tune_allocator() {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let missing: Vec<_> = ALLOCATOR_OPTIONS
            .iter()
            .filter(|(key, _)| std::env::var_os(key).is_none())
            .collect();
        if missing.is_empty() {
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let mut args = std::env::args_os();
        let mut again = std::process::Command::new(exe);
        if let Some(name) = args.next() {
            again.arg0(name);
        }
        again.args(args);
        for (key, value) in missing {
            again.env(key, value);
        }
        // Returns only when the program could not be started again.
        let _ = again.exec();
    }
}

/// Panics seen, for the report of one that is not caught.
static PANICS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    let level = if cli.quiet {
        "warn"
    } else {
        match cli.verbose {
            0 => "info",
            1 => "debug",
            _ => "trace",
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("WINBACK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("winback={level}")));
    let terminal = std::io::stderr().is_terminal();
    match cli.log_format {
        LogFormat::Text => {
            if terminal && !cli.quiet {
                progress::enable();
            }
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(|| progress::LogWriter)
                .with_ansi(terminal && std::env::var_os("NO_COLOR").is_none())
                .with_target(false)
                // Each timed part (debug spans: `-v`) logs its time as it ends.
                .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
                .init();
        }
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .init(),
    }

    for (key, _) in ALLOCATOR_OPTIONS {
        let value = std::env::var_os(key).unwrap_or_default();
        tracing::debug!("allocator: {key}={}", value.to_string_lossy());
    }

    // A panic that the code catches (polars' readers on a damaged file,
    // turned into a data error naming the table) prints nothing; one that
    // reaches here is a bug, printed as Rust prints panics, exit 101.
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let text = format!(
            "thread '{}' panicked at {}:\n{}",
            thread.name().unwrap_or("<unnamed>"),
            info.location().map(|l| l.to_string()).unwrap_or_default(),
            winback::stages::panic_text(info.payload())
        );
        if let Ok(mut seen) = PANICS.lock() {
            seen.push(text);
        }
    }));
    let stdout = std::io::stdout();
    let mut out = progress::Stdout::new(stdout.lock());
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        winback::commands::execute_with(&cli.command, &mut out, cli.quiet)
    }));
    let _ = out.flush();
    let Ok(result) = result else {
        let seen = PANICS.lock().map(|p| p.join("\n")).unwrap_or_default();
        eprintln!("{seen}\nwinback: internal error (a bug; please report it with the lines above)");
        return ExitCode::from(101);
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match cli.log_format {
                LogFormat::Text => report(&e, &cli.command),
                LogFormat::Json => tracing::error!(
                    exit_code = exit_code(&e),
                    hints = %hints(&e, &cli.command).join("; "),
                    "{e}"
                ),
            }
            ExitCode::from(exit_code(&e))
        }
    }
}

fn exit_code(e: &Error) -> u8 {
    e.exit_code()
}

fn report(e: &Error, command: &Command) {
    let mut said = e.to_string();
    eprintln!("error: {said}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        // Most messages already end with their cause's text: say it once.
        let text = s.to_string();
        if !said.contains(&text) {
            eprintln!("  caused by: {text}");
            said.push_str(&text);
        }
        source = s.source();
    }
    for hint in hints(e, command) {
        eprintln!("hint: {hint}");
    }
}

fn hints(e: &Error, command: &Command) -> Vec<String> {
    let mut hints = Vec::new();
    if e.is_out_of_space() {
        hints.push(
            "no room to write (disk or quota full, or a file-size limit such as `ulimit -f`): \
             free space and rerun; what was being written was staged and discarded, earlier outputs are intact"
                .into(),
        );
    }
    match e {
        Error::Rules { violations } => {
            hints.push(
                "rerun with --mode quarantine to set offending rows aside in validate/rejected/ and go on".into(),
            );
            if violations.iter().any(|v| v.rule == "month_not_first_day") {
                hints.push(
                    "bills dated on another day of the month they charge (its last day, a billing day): set `billing_months = \"any_day\"` under [validate] to read each as its month's"
                        .into(),
                );
            }
        }
        Error::Schema { problems } => {
            // Each kind of problem its own way out: a column missing under
            // its contract name, or one of another type.
            if problems.iter().any(|p| p.contains("no column `")) {
                hints.push(
                    "map differently named columns with [validate.columns.<table>] in the config".into(),
                );
            }
            if problems.iter().any(|p| p.contains(" has type ")) {
                hints.push(
                    "convert such columns where the files are written; the README's \"The data contract, in short\" says what each column accepts (dates, amounts and flags may also be text)"
                        .into(),
                );
            }
        }
        Error::MissingTable { .. } => {
            hints.push("check --data; `winback generate --out DIR` writes a complete sample".into())
        }
        Error::Model { .. } => hints.push(
            "`winback train --config FILE` fits models on this data; --model DIR picks a version under <out>/models/".into(),
        ),
        Error::Config { .. } | Error::Setting { .. } if !matches!(command, Command::Config(_)) => {
            hints.push("`winback config --config FILE` prints the resolved settings".into())
        }
        Error::Many(all) => {
            for inner in all {
                for h in hints_for_one(inner, command) {
                    if !hints.contains(&h) {
                        hints.push(h);
                    }
                }
            }
        }
        _ => {}
    }
    hints
}

fn hints_for_one(e: &Error, command: &Command) -> Vec<String> {
    hints(e, command)
}
