//! `tend status`: one line per server — the live and previous release, how many processes run
//! each installed release, and the last health result of the live one.

use serde::Serialize;
use serde_json::Value;

use super::deploy::link_version;
use crate::layout::Layout;
use crate::site::Site;

/// One installed release.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseStatus {
    pub version: String,
    /// Processes whose executable, working directory or open files are in it.
    pub processes: usize,
}

/// One server.
#[derive(Debug, Clone, Serialize)]
pub struct ServerStatus {
    pub name: String,
    pub package: Option<String>,
    pub managed: bool,
    pub current: Option<String>,
    pub previous: Option<String>,
    pub releases: Vec<ReleaseStatus>,
    /// `#{passed, at, latency_p95_ms}` of the live release's last health run.
    pub health: Option<Value>,
    /// What is wrong with the links, if anything.
    pub problem: Option<String>,
}

pub fn status(site: &Site) -> Vec<ServerStatus> {
    let layout = Layout::new(&site.root);
    let in_use = crate::proc::paths_in_use();
    let infos = super::servers(site);
    infos
        .into_iter()
        .map(|info| {
            let name = info.name;
            let mut problem = None;
            let mut link = |l: std::path::PathBuf| {
                link_version(&layout, &name, &l).unwrap_or_else(|e| {
                    problem = Some(e.message().to_owned());
                    None
                })
            };
            let current = link(layout.current(&name));
            let previous = link(layout.previous(&name));
            let mut releases: Vec<ReleaseStatus> = std::fs::read_dir(layout.releases(&name))
                .map(|d| {
                    d.flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| ReleaseStatus {
                            version: e.file_name().to_string_lossy().into_owned(),
                            processes: crate::proc::pids_using(&e.path(), &in_use).len(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            releases.sort_by(|a, b| a.version.cmp(&b.version));
            let health = current.as_ref().and_then(|v| {
                let h = super::health::history(&layout, &name);
                let e = h.get(v)?;
                Some(serde_json::json!({
                    "passed": e["passed"], "at": e["at"], "latency_p95_ms": e["metrics"]["latency_p95_ms"],
                }))
            });
            ServerStatus {
                managed: current.is_some(),
                current: current.or(info.current),
                previous,
                releases,
                health,
                problem,
                package: info.package,
                name,
            }
        })
        .collect()
}

pub fn table(servers: &[ServerStatus]) -> String {
    let mut out =
        format!("{:<22} {:<12} {:<12} {:<30} {}\n", "SERVER", "CURRENT", "PREVIOUS", "RELEASES (PROCESSES)", "HEALTH");
    for s in servers {
        let current = match (&s.current, s.managed) {
            (Some(v), true) => v.clone(),
            (Some(v), false) => format!("{v} (npx)"),
            (None, _) => "-".into(),
        };
        let releases: Vec<String> = s.releases.iter().map(|r| format!("{}({})", r.version, r.processes)).collect();
        let health = match &s.health {
            Some(h) => format!(
                "{} at {}{}",
                if h["passed"] == true { "passed" } else { "FAILED" },
                h["at"].as_str().unwrap_or("?"),
                h["latency_p95_ms"].as_f64().map(|l| format!(", p95 {l} ms")).unwrap_or_default()
            ),
            None => "-".into(),
        };
        out.push_str(&format!(
            "{:<22} {:<12} {:<12} {:<30} {}\n",
            s.name,
            current,
            s.previous.as_deref().unwrap_or("-"),
            if releases.is_empty() { "-".into() } else { releases.join(" ") },
            health
        ));
        if let Some(problem) = &s.problem {
            out.push_str(&format!("  problem: {problem}\n"));
        }
    }
    out
}
