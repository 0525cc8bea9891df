//! The root layout of DESIGN.md, in one place: every path under `<root>` is built here.

use std::path::{Path, PathBuf};

/// Paths beneath one site's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn servers(&self) -> PathBuf {
        self.root.join("servers")
    }

    pub fn server(&self, name: &str) -> PathBuf {
        self.servers().join(name)
    }

    pub fn releases(&self, name: &str) -> PathBuf {
        self.server(name).join("releases")
    }

    pub fn release(&self, name: &str, version: &str) -> PathBuf {
        self.releases(name).join(version)
    }

    pub fn current(&self, name: &str) -> PathBuf {
        self.server(name).join("current")
    }

    /// The release `current` pointed to before the last swap.
    pub fn previous(&self, name: &str) -> PathBuf {
        self.server(name).join("previous")
    }

    /// The last health results of a server, per version: `state/health/<name>.json`.
    pub fn health(&self, name: &str) -> PathBuf {
        self.state().join("health").join(format!("{name}.json"))
    }

    /// The operation in progress (adopt, swap, rollback): `state/intent.json`.
    pub fn intent(&self) -> PathBuf {
        self.state().join("intent.json")
    }

    /// Tool surfaces approved with `tend approve`: `state/approvals.json`.
    pub fn approvals(&self) -> PathBuf {
        self.state().join("approvals.json")
    }

    pub fn staging(&self) -> PathBuf {
        self.root.join("staging")
    }

    pub fn backups(&self) -> PathBuf {
        self.root.join("backups")
    }

    pub fn audit(&self) -> PathBuf {
        self.root.join("audit")
    }

    pub fn audit_log(&self) -> PathBuf {
        self.audit().join("audit.jsonl")
    }

    pub fn reports(&self) -> PathBuf {
        self.root.join("reports")
    }

    pub fn report(&self, run_id: &str) -> PathBuf {
        self.reports().join(format!("{run_id}.json"))
    }

    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics")
    }

    /// The Prometheus textfile.
    pub fn metrics_file(&self) -> PathBuf {
        self.metrics().join("tend.prom")
    }

    /// The counters behind the textfile, and each server's last run: `state/metrics.json`.
    pub fn metrics_state(&self) -> PathBuf {
        self.state().join("metrics.json")
    }

    /// tend's own logs (staging logs live beside their staging directory).
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// The registry cache.
    pub fn cache(&self) -> PathBuf {
        self.state().join("cache")
    }

    /// Archives prune writes before deleting a category listed in `archive_before_delete`.
    pub fn archive(&self) -> PathBuf {
        self.root.join("archive")
    }

    /// The top-level names tend creates under the root; anything else is not tend's.
    pub const TOP_LEVEL: [&'static str; 9] =
        ["servers", "staging", "backups", "audit", "reports", "metrics", "state", "logs", "archive"];

    pub fn state(&self) -> PathBuf {
        self.root.join("state")
    }

    /// The run lock (flock).
    pub fn lock(&self) -> PathBuf {
        self.state().join("lock")
    }

    /// The sequence number and hash of the newest audit record.
    pub fn audit_head(&self) -> PathBuf {
        self.state().join("audit.head")
    }
}
