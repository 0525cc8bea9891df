//! Progress bars on stderr, for a person watching a terminal: one line for the run (which
//! server, which step, how many servers so far) and one per download. They share one
//! `MultiProgress`, and log lines pass through [`LogWriter`], which lifts the bars while a
//! line is written so that logs and bars never garble each other.
//!
//! Nothing here draws unless the run asked for progress (`RunOptions::progress`, set by the
//! binary only when stderr is a terminal and neither `--json` nor `-q` was given).

use std::io::Write;
use std::sync::OnceLock;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle};

/// The bars of this process.
pub fn bars() -> &'static MultiProgress {
    static BARS: OnceLock<MultiProgress> = OnceLock::new();
    BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// Adds a bar below the others; it clears itself when dropped.
pub fn add(bar: ProgressBar) -> ProgressBar {
    bars().add(bar.with_finish(ProgressFinish::AndClear))
}

/// The run's line: `⠋ [2/5] 12s everything: health`. Its length is the site's servers; its
/// position counts the servers the run has reached so far.
#[derive(Debug)]
pub struct RunLine {
    bar: ProgressBar,
    servers: Vec<String>,
    seen: Vec<String>,
}

impl RunLine {
    pub fn new(servers: Vec<String>) -> RunLine {
        let style = ProgressStyle::with_template("{spinner} [{pos}/{len}] {elapsed:>4} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let bar = add(ProgressBar::new(servers.len() as u64).with_style(style));
        bar.enable_steady_tick(Duration::from_millis(120));
        RunLine { bar, servers, seen: Vec::new() }
    }

    /// A primitive starts; `first_arg` is its first argument (a server name for per-server
    /// primitives).
    pub fn step(&mut self, primitive: &str, first_arg: Option<&str>) {
        match first_arg.filter(|a| self.servers.iter().any(|s| s == a)) {
            Some(server) => {
                if !self.seen.iter().any(|s| s == server) {
                    self.seen.push(server.to_owned());
                    self.bar.set_position(self.seen.len() as u64);
                }
                self.bar.set_message(format!("{server}: {primitive}"));
            }
            None => self.bar.set_message(primitive.to_owned()),
        }
    }
}

/// A `tracing` writer for stderr that hides the bars while it writes a line.
#[derive(Debug, Default)]
pub struct LogWriter {
    buffer: Vec<u8>,
}

impl Write for LogWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let buffer = std::mem::take(&mut self.buffer);
        bars().suspend(|| std::io::stderr().lock().write_all(&buffer))
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// For `tracing_subscriber::fmt().with_writer(progress::log_writer)`.
pub fn log_writer() -> LogWriter {
    LogWriter::default()
}
