//! Progress at a terminal: a line per running stage (a spinner with the
//! elapsed time and what it is doing, or a bar where the amount of work is
//! known), drawn on stderr only when `main` enabled it (stderr is a
//! terminal, text logs, not `-q`). Otherwise every call here does nothing,
//! and cron or a log shipper sees only the log lines.
//!
//! Log lines go through [`LogWriter`], which lifts the bars while a line
//! is written so that the two never mix.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bars, once enabled.
static BARS: OnceLock<MultiProgress> = OnceLock::new();

/// The running stages, innermost last: [`note`] writes on the innermost.
static RUNNING: Mutex<Vec<(u64, ProgressBar)>> = Mutex::new(Vec::new());

/// The next stage's number.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// Draws progress on stderr from now on (call once, from `main`).
pub fn enable() {
    let _ = BARS.set(MultiProgress::with_draw_target(
        ProgressDrawTarget::stderr_with_hz(8),
    ));
}

/// A stage's line; cleared when dropped.
#[must_use = "the line is cleared when the guard is dropped"]
pub struct Stage {
    bar: Option<ProgressBar>,
    id: u64,
}

/// A spinner for a stage whose amount of work is not known in advance.
pub fn stage(name: &str) -> Stage {
    start(name, None, "")
}

/// A bar for a stage of `total` units (`unit` names them: "subscribers").
pub fn counted(name: &str, total: u64, unit: &str) -> Stage {
    start(name, Some(total), unit)
}

fn start(name: &str, total: Option<u64>, unit: &str) -> Stage {
    let Some(bars) = BARS.get() else {
        return Stage { bar: None, id: 0 };
    };
    let (bar, template) = match total {
        Some(n) => (
            ProgressBar::new(n),
            format!(
                "{{spinner}} {name:<9} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit} {{elapsed}} (eta {{eta}}) {{msg}}"
            ),
        ),
        None => (
            ProgressBar::new_spinner(),
            format!("{{spinner}} {name:<9} {{elapsed}} {{msg}}"),
        ),
    };
    let style = ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
        .progress_chars("=> ");
    let bar = bars.add(bar.with_style(style));
    bar.enable_steady_tick(Duration::from_millis(125));
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut running) = RUNNING.lock() {
        running.push((id, bar.clone()));
    }
    Stage { bar: Some(bar), id }
}

impl Stage {
    /// Sets the units done.
    pub fn set(&self, done: u64) {
        if let Some(b) = &self.bar {
            b.set_position(done);
        }
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        if let Some(b) = self.bar.take() {
            if let Ok(mut running) = RUNNING.lock() {
                running.retain(|(id, _)| *id != self.id);
            }
            b.finish_and_clear();
            if let Some(bars) = BARS.get() {
                bars.remove(&b);
            }
        }
    }
}

/// Says what the innermost running stage is doing ("churn model: boosted
/// candidate"); nothing when progress is off.
pub fn note(what: impl Into<String>) {
    if BARS.get().is_none() {
        return;
    }
    if let Ok(running) = RUNNING.lock()
        && let Some((_, b)) = running.last()
    {
        b.set_message(what.into());
    }
}

/// stderr for the log lines: lifts the bars while a line is written.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf).map(|()| buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match BARS.get() {
            Some(bars) => bars.suspend(|| std::io::stderr().write_all(buf)),
            None => std::io::stderr().write_all(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// stdout for the summaries, when it may share the terminal with the bars:
/// whole lines only, each written with the bars lifted (a line written in
/// pieces would be wiped by the next redraw).
pub struct Stdout<W: Write> {
    inner: W,
    pending: Vec<u8>,
}

impl<W: Write> Stdout<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Stdout {
            inner,
            pending: Vec::new(),
        }
    }

    fn emit(&mut self, upto: usize) -> std::io::Result<()> {
        let line: Vec<u8> = self.pending.drain(..upto).collect();
        let inner = &mut self.inner;
        match BARS.get() {
            Some(bars) => bars.suspend(|| inner.write_all(&line).and_then(|()| inner.flush())),
            None => inner.write_all(&line),
        }
    }
}

impl<W: Write> Write for Stdout<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if let Some(last) = self.pending.iter().rposition(|b| *b == b'\n') {
            self.emit(last + 1)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let n = self.pending.len();
        if n > 0 {
            self.emit(n)?;
        }
        self.inner.flush()
    }
}
