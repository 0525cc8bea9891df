//! Run reports: what a run did, written to `<root>/reports/<run id>.json` and summarized on
//! the terminal.

use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

/// One primitive call of a run.
#[derive(Debug, Clone, Serialize)]
pub struct CallRecord {
    pub primitive: String,
    pub args: Vec<Value>,
    pub ok: bool,
    pub result: Value,
    pub error: Option<String>,
    pub effects: Vec<String>,
    pub duration_ms: f64,
}

/// Why a run failed.
#[derive(Debug, Clone, Serialize)]
pub struct ReportError {
    pub kind: String,
    pub message: String,
    pub exit_code: i32,
}

/// The report of one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub id: String,
    pub playbook: String,
    pub site: Option<PathBuf>,
    pub token: Option<String>,
    pub dry_run: bool,
    pub started: String,
    pub ended: String,
    pub duration_ms: f64,
    pub outcome: String,
    pub error: Option<ReportError>,
    pub result: Value,
    pub calls: Vec<CallRecord>,
    /// Where the report was written.
    pub path: PathBuf,
}

impl RunReport {
    /// 0 when the run succeeded, else the exit code of its error.
    pub fn exit_code(&self) -> i32 {
        self.error.as_ref().map_or(0, |e| e.exit_code)
    }

    /// The lines `tend run` prints at the end of a run.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "run {} {}: {} in {:.1} ms, {} primitive call{}{}\nreport: {}",
            self.id,
            self.outcome,
            self.playbook,
            self.duration_ms,
            self.calls.len(),
            if self.calls.len() == 1 { "" } else { "s" },
            if self.dry_run { " (dry run)" } else { "" },
            self.path.display()
        );
        let failed: Vec<&CallRecord> = self.calls.iter().filter(|c| !c.ok).collect();
        for call in failed {
            out.push_str(&format!("\n  {}() failed: {}", call.primitive, call.error.as_deref().unwrap_or("")));
        }
        out
    }
}
