//! `tend status`: one line per server — the live release, the candidate the update check
//! offers and why, the live release's last health, the server's last run, and each installed
//! release with the processes that use it. It reads; the only thing it may write is the
//! registry cache the update check keeps.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use super::check::{CheckResult, check_each};
use super::deploy::link_version;
use super::metrics::LastRun;
use crate::guard::Guard;
use crate::guard::auth::Principal;
use crate::layout::Layout;
use crate::script::primitives::Call;
use crate::site::Site;

/// How `tend status` looks.
#[derive(Debug, Clone, Copy)]
pub struct StatusOptions {
    /// Skip the update check (no registry request): `candidate` and `reason` stay empty.
    pub offline: bool,
    /// The clock: cooldowns are judged at it, ages are measured to it.
    pub now: OffsetDateTime,
}

/// One installed release.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReleaseStatus {
    /// The release's folder name under `releases/`.
    pub version: String,
    /// Processes whose executable, working directory or open files are in it.
    pub processes: usize,
    /// `current`, `previous`, or `None` for another installed release.
    pub role: Option<&'static str>,
}

/// The last health result of the live release.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthStatus {
    /// Whether every suite passed.
    pub passed: bool,
    /// When it ran (RFC 3339).
    pub at: Option<String>,
    /// The 95th percentile of its ping latencies.
    pub latency_p95_ms: Option<f64>,
}

/// One server, as `tend status --json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerStatus {
    /// The server's key in its client config.
    pub name: String,
    /// Its npm package, when it runs one.
    pub package: Option<String>,
    /// True when `current` is a release tend installed (an adopted server).
    pub managed: bool,
    /// The live version: the managed release's, else the one the client config pins.
    pub current: Option<String>,
    /// The release `previous` points to: what `rollback` returns to.
    pub previous: Option<String>,
    /// The registry's `latest`, from the update check.
    pub latest: Option<String>,
    /// The newest version the site's policy allows, if newer than `current`.
    pub candidate: Option<String>,
    /// `major`, `minor`, `patch` or `prerelease`.
    pub kind: Option<String>,
    /// Why `candidate` differs from `latest` (cooldown, range, ignored, major held).
    pub reason: Option<String>,
    /// Why the update check could not answer (registry unreachable, unknown package, ...).
    pub check_error: Option<String>,
    /// The live version's last health result.
    pub health: Option<HealthStatus>,
    /// The last run that named this server.
    pub last_run: Option<LastRun>,
    /// Installed releases, newest first.
    pub releases: Vec<ReleaseStatus>,
    /// What is wrong with the `current`/`previous` links, if anything.
    pub problem: Option<String>,
}

/// The status of every server of the site.
pub fn status(site: &Site, options: &StatusOptions) -> Vec<ServerStatus> {
    let layout = Layout::new(&site.root);
    let in_use = crate::proc::paths_in_use();
    let infos = super::servers(site);
    let mut checks = if options.offline {
        BTreeMap::new()
    } else {
        let names: Vec<String> = infos.iter().filter(|i| i.package.is_some()).map(|i| i.name.clone()).collect();
        checks(site, &names, options.now)
    };
    let last_runs = super::metrics::last_runs(&layout);
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
                        .map(|e| {
                            let version = e.file_name().to_string_lossy().into_owned();
                            let role = if current.as_ref() == Some(&version) {
                                Some("current")
                            } else if previous.as_ref() == Some(&version) {
                                Some("previous")
                            } else {
                                None
                            };
                            ReleaseStatus {
                                processes: crate::proc::pids_using(&e.path(), &in_use).len(),
                                version,
                                role,
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            releases.sort_by(|a, b| newest_first(&a.version, &b.version));
            let managed = current.is_some();
            let current = current.or(info.current);
            let health = {
                let history = super::health::history(&layout, &name);
                history.get(current.as_deref().unwrap_or("unknown")).map(|e| HealthStatus {
                    passed: e["passed"] == true,
                    at: e["at"].as_str().map(str::to_owned),
                    latency_p95_ms: e["metrics"]["latency_p95_ms"].as_f64(),
                })
            };
            let (check, check_error) = match checks.remove(&name) {
                Some(Ok(check)) => (Some(check), None),
                Some(Err(message)) => (None, Some(message)),
                None => (None, None),
            };
            let check = check.as_ref();
            ServerStatus {
                managed,
                current,
                previous,
                latest: check.and_then(|c| c.latest.clone()),
                candidate: check.and_then(|c| c.candidate.clone()),
                kind: check.and_then(|c| c.kind.clone()),
                reason: check.and_then(|c| c.reason.clone()),
                check_error,
                health,
                last_run: last_runs.get(&name).cloned(),
                releases,
                problem,
                package: info.package,
                name,
            }
        })
        .collect()
}

/// The update check of the named servers, each answer on its own (an error as its message).
/// It runs outside any run: anonymous, with a dry-run guard, so it can change nothing but the
/// registry cache.
fn checks(site: &Site, names: &[String], now: OffsetDateTime) -> BTreeMap<String, Result<CheckResult, String>> {
    if names.is_empty() {
        return BTreeMap::new();
    }
    let guard = Guard::new(site, true);
    let principal = Principal::anonymous();
    let mut call = Call {
        site,
        guard: &guard,
        principal: &principal,
        run_id: "status",
        now,
        progress: false,
        effects: Vec::new(),
    };
    match check_each(&mut call, names) {
        Ok(results) => {
            names.iter().cloned().zip(results.into_iter().map(|r| r.map_err(|e| e.message().to_owned()))).collect()
        }
        Err(e) => names.iter().map(|n| (n.clone(), Err(e.message().to_owned()))).collect(),
    }
}

/// Semver order, newest first; versions that do not parse after those that do, by name.
fn newest_first(a: &str, b: &str) -> std::cmp::Ordering {
    match (nodejs_semver::Version::parse(a), nodejs_semver::Version::parse(b)) {
        (Ok(x), Ok(y)) => y.cmp(&x),
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

/// How long before `now` an RFC 3339 time was, in its largest whole unit: `3m ago`.
fn ago(at: &str, now: OffsetDateTime) -> String {
    let Some(then) = crate::clock::parse_rfc3339(at) else {
        return at.to_owned();
    };
    let secs = Duration::try_from(now - then).map_or(0, |d| d.as_secs());
    let unit = [86_400, 3_600, 60].into_iter().find(|u| secs >= *u).unwrap_or(1);
    format!("{} ago", crate::duration::format(Duration::from_secs(secs / unit * unit)))
}

/// The cells of one server's line.
fn cells(s: &ServerStatus, now: OffsetDateTime) -> [String; 7] {
    let current = match (&s.current, s.managed) {
        (Some(v), true) => v.clone(),
        (Some(v), false) => format!("{v} (npx)"),
        (None, _) => "-".into(),
    };
    let (candidate, why) = match (&s.check_error, &s.package) {
        (Some(error), _) => ("error".to_owned(), error.clone()),
        (None, None) => ("-".to_owned(), "no npm package".to_owned()),
        (None, Some(_)) if s.latest.is_none() => ("-".to_owned(), "not checked".to_owned()),
        (None, Some(_)) => {
            let why = match (&s.reason, &s.candidate, &s.kind) {
                (Some(reason), _, _) => reason.clone(),
                (None, Some(_), Some(kind)) => format!("{kind} update"),
                (None, Some(_), None) => "update available".to_owned(),
                (None, None, _) => "up to date".to_owned(),
            };
            (s.candidate.clone().unwrap_or_else(|| "-".into()), why)
        }
    };
    let health = match &s.health {
        Some(h) => {
            let mut cell = (if h.passed { "passed" } else { "FAILED" }).to_owned();
            if let Some(p95) = h.latency_p95_ms {
                cell.push_str(&format!(", p95 {p95} ms"));
            }
            if let Some(at) = &h.at {
                cell.push_str(&format!(", {}", ago(at, now)));
            }
            cell
        }
        None => "-".into(),
    };
    let last_run = match &s.last_run {
        Some(r) => format!("{} {}: {} ({})", r.outcome, ago(&r.at, now), r.playbook, r.id),
        None => "-".into(),
    };
    let releases: Vec<String> = s
        .releases
        .iter()
        .map(|r| {
            let mut notes: Vec<String> = r.role.iter().map(|role| (*role).to_owned()).collect();
            if r.processes > 0 {
                notes.push(format!("{} proc{}", r.processes, if r.processes == 1 { "" } else { "s" }));
            }
            if notes.is_empty() { r.version.clone() } else { format!("{} ({})", r.version, notes.join(", ")) }
        })
        .collect();
    let releases = if releases.is_empty() { "-".to_owned() } else { releases.join(", ") };
    [s.name.clone(), current, candidate, health, last_run, releases, why]
}

/// The table `tend status` prints: a header, then one line per server (a second, indented
/// line only for a damaged link), columns as wide as their widest cell.
pub fn table(servers: &[ServerStatus], now: OffsetDateTime) -> String {
    const HEADER: [&str; 7] = ["SERVER", "CURRENT", "CANDIDATE", "HEALTH", "LAST RUN", "RELEASES", "WHY"];
    let rows: Vec<[String; 7]> = servers.iter().map(|s| cells(s, now)).collect();
    let mut widths = HEADER.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let last = cells.len() - 1;
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| if i == last { (*c).to_owned() } else { format!("{c:<width$}", width = widths[i]) })
            .collect();
        format!("{}\n", padded.join("  "))
    };
    let mut out = line(HEADER.to_vec());
    for (row, s) in rows.iter().zip(servers) {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        if let Some(problem) = &s.problem {
            out.push_str(&format!("  problem: {problem}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::parse("2026-11-24T12:00:00Z", &time::format_description::well_known::Rfc3339).unwrap()
    }

    #[test]
    fn ages_are_in_their_largest_whole_unit() {
        assert_eq!(ago("2026-11-24T11:59:58.500Z", now()), "1s ago");
        assert_eq!(ago("2026-11-24T11:57:01Z", now()), "2m ago");
        assert_eq!(ago("2026-11-24T09:00:00Z", now()), "3h ago");
        assert_eq!(ago("2026-11-20T11:00:00Z", now()), "4d ago");
        assert_eq!(ago("2026-11-24T12:00:05Z", now()), "0s ago", "a clock ahead reads as now");
        assert_eq!(ago("yesterday", now()), "yesterday");
    }

    #[test]
    fn releases_sort_newest_first_by_semver() {
        let mut v = vec!["1.10.0", "1.9.0", "2.0.0-beta.1", "junk", "2.0.0"];
        v.sort_by(|a, b| newest_first(a, b));
        assert_eq!(v, ["2.0.0", "2.0.0-beta.1", "1.10.0", "1.9.0", "junk"]);
    }

    #[test]
    fn the_table_has_one_aligned_line_per_server() {
        let srv = ServerStatus {
            name: "srv".into(),
            package: Some("pkg".into()),
            managed: true,
            current: Some("2.0.0".into()),
            previous: Some("1.0.0".into()),
            latest: Some("3.0.0".into()),
            candidate: Some("2.1.0".into()),
            kind: Some("minor".into()),
            reason: Some("3.0.0 is a major update; allow_major is false; offering 2.1.0".into()),
            check_error: None,
            health: Some(HealthStatus {
                passed: true,
                at: Some("2026-11-24T11:55:00Z".into()),
                latency_p95_ms: Some(1.5),
            }),
            last_run: Some(LastRun {
                id: "20261124T115900Z-0a1b2c".into(),
                playbook: "tend swap".into(),
                at: "2026-11-24T11:59:00Z".into(),
                outcome: "ok".into(),
            }),
            releases: vec![
                ReleaseStatus { version: "2.0.0".into(), processes: 2, role: Some("current") },
                ReleaseStatus { version: "1.0.0".into(), processes: 0, role: Some("previous") },
                ReleaseStatus { version: "0.9.0".into(), processes: 1, role: None },
            ],
            problem: None,
        };
        let down = ServerStatus {
            name: "memory".into(),
            managed: false,
            current: Some("1.0.0".into()),
            previous: None,
            latest: None,
            candidate: None,
            kind: None,
            reason: None,
            check_error: Some("cannot reach the registry".into()),
            health: None,
            last_run: None,
            releases: vec![],
            ..srv.clone()
        };
        let other = ServerStatus { name: "git".into(), package: None, check_error: None, ..down.clone() };
        assert_eq!(
            table(&[srv, down, other], now()),
            "\
SERVER  CURRENT      CANDIDATE  HEALTH                      LAST RUN                                        RELEASES                                                    WHY
srv     2.0.0        2.1.0      passed, p95 1.5 ms, 5m ago  ok 1m ago: tend swap (20261124T115900Z-0a1b2c)  2.0.0 (current, 2 procs), 1.0.0 (previous), 0.9.0 (1 proc)  3.0.0 is a major update; allow_major is false; offering 2.1.0
memory  1.0.0 (npx)  error      -                           -                                               -                                                           cannot reach the registry
git     1.0.0 (npx)  -          -                           -                                               -                                                           no npm package
"
        );
    }
}
