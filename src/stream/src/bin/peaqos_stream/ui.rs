//! Progress of long operations on stderr: an `indicatif` bar when stderr is a terminal, plain
//! lines (at most one a second, and a last one for work that took longer than that; the interval
//! is `PEAQOS_STREAM_PROGRESS_MS`) when it is not, nothing with `--quiet`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{BinaryBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Time between plain progress lines: 1 s, or PEAQOS_STREAM_PROGRESS_MS (tests use 0: a line per step).
fn plain_interval() -> Duration {
    let ms = std::env::var("PEAQOS_STREAM_PROGRESS_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    Duration::from_millis(ms)
}

/// One operation's progress (`what`: verify, decrypt, export, dataset) counted in `unit`s.
pub struct Progress {
    what: &'static str,
    unit: &'static str,
    bar: Option<ProgressBar>,
    plain: bool,
    start: Instant,
    last_line: Option<Instant>,
    done: u64,
    total: u64,
    bytes: u64,
    interval: Duration,
}

impl Progress {
    /// `total` = 0 when not known yet (set by the first step).
    pub fn new(what: &'static str, total: u64, unit: &'static str, quiet: bool) -> Progress {
        let terminal = !quiet && std::io::stderr().is_terminal();
        let bar = terminal.then(|| {
            let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            b.set_style(style);
            b.set_prefix(what);
            b.set_message(unit);
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Progress {
            what,
            unit,
            bar,
            plain: !quiet && !terminal,
            start: Instant::now(),
            last_line: None,
            done: 0,
            total,
            bytes: 0,
            interval: plain_interval(),
        }
    }

    fn rate(&self) -> String {
        let s = self.start.elapsed().as_secs_f64();
        if self.bytes == 0 || s <= 0.0 {
            return String::new();
        }
        format!(", {}, {}/s", BinaryBytes(self.bytes), BinaryBytes((self.bytes as f64 / s) as u64))
    }

    /// `done` units finished, `bytes` processed so far.
    pub fn step(&mut self, done: u64, bytes: u64) {
        self.done = done;
        self.bytes = bytes;
        if let Some(b) = &self.bar {
            b.set_length(self.total.max(done));
            b.set_position(done);
            b.set_message(format!("{}{}", self.unit, self.rate()));
        } else if self.plain
            && self.last_line.is_none_or(|t| t.elapsed() >= self.interval)
            && self.start.elapsed() >= self.interval
        {
            self.line();
            self.last_line = Some(Instant::now());
        }
    }

    fn line(&self) {
        eprintln!(
            "peaqos-stream {}: {}/{} {}{} ({:.1} s)",
            self.what,
            self.done,
            self.total.max(self.done),
            self.unit,
            self.rate(),
            self.start.elapsed().as_secs_f64()
        );
    }

    /// The operation ended (successfully or not).
    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        } else if self.plain && self.last_line.is_some() {
            self.line();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = self.bar.take() {
            b.abandon();
        }
    }
}

impl peaqos_stream::export::Progress for Progress {
    fn chunk_done(&mut self, done: u64, total: u64, bytes: u64) {
        self.total = total;
        self.step(done, bytes);
    }
}
