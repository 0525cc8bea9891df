//! Prune: the cleanup service. It scans the root, classifies every entry by the names tend
//! itself creates, decides per category from `[retention]` (per server where it applies), and
//! removes through the guard. Anything whose name tend did not create is listed as `unknown`
//! and left alone; so are the current and previous release and any release a process uses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::{Error, ErrorKind, Result};
use crate::guard::effects::{Effect, Plan};
use crate::layout::Layout;
use crate::proc::{PathInUse, pids_using};
use crate::script::primitives::Call;
use crate::site::{Category, Retention, RetentionLayer, Site};

/// What prune does with an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Keep,
    Remove,
    ArchiveAndRemove,
}

/// One entry of the root, as prune sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub path: PathBuf,
    /// `staging`, `releases`, `backups`, `logs`, `cache`, `reports`, or `unknown`.
    pub category: String,
    pub server: Option<String>,
    pub age_days: f64,
    pub bytes: u64,
    pub action: Action,
    /// Why it is kept or removed, in words.
    pub reason: String,
    #[serde(skip)]
    age: Duration,
    #[serde(skip)]
    archive: Option<Category>,
}

/// What `prune` returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PruneReport {
    pub dry_run: bool,
    pub items: Vec<Item>,
    pub bytes_freed: u64,
    pub errors: Vec<String>,
}

impl PruneReport {
    /// The table `tend prune` prints: one line per item, then the total.
    pub fn table(&self) -> String {
        let mut out = format!("{:<9} {:<18} {:>9} {:>10}  {}\n", "CATEGORY", "ACTION", "AGE", "SIZE", "PATH");
        for it in &self.items {
            let action = match it.action {
                Action::Keep => "keep",
                Action::Remove if self.dry_run => "would remove",
                Action::Remove => "removed",
                Action::ArchiveAndRemove if self.dry_run => "would archive+rm",
                Action::ArchiveAndRemove => "archived+removed",
            };
            out.push_str(&format!(
                "{:<9} {:<18} {:>8.2}d {:>10}  {} ({})\n",
                it.category,
                action,
                it.age_days,
                human_bytes(it.bytes),
                it.path.display(),
                it.reason
            ));
        }
        let verb = if self.dry_run { "would free" } else { "freed" };
        out.push_str(&format!(
            "{verb} {} in {} items{}\n",
            human_bytes(self.bytes_freed),
            self.items.iter().filter(|i| i.action != Action::Keep).count(),
            if self.dry_run { " (dry run)" } else { "" }
        ));
        out
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// The inputs of a plan: the clock and the processes are passed in, so tests control them.
#[derive(Debug, Clone)]
pub struct Scan<'a> {
    pub site: &'a Site,
    pub layout: &'a Layout,
    pub now: SystemTime,
    pub in_use: &'a [PathInUse],
    /// Per-call overrides (`prune(#{keep_releases: 1})`), over site and server values.
    pub overrides: &'a RetentionLayer,
}

impl Scan<'_> {
    fn retention(&self, server: Option<&str>) -> Retention {
        let mut r = match server {
            Some(name) => self.site.server(name).retention,
            None => self.site.retention.clone(),
        };
        r.overlay(self.overrides);
        r
    }

    fn age_of(&self, time: SystemTime) -> Duration {
        self.now.duration_since(time).unwrap_or(Duration::ZERO)
    }
}

fn days(n: u64) -> Duration {
    Duration::from_secs(n.saturating_mul(86_400))
}

/// Builds the plan: every entry found, with its action. Reads only.
pub fn plan(scan: &Scan<'_>) -> Vec<Item> {
    let mut items = Vec::new();
    let l = scan.layout;
    for entry in read_dir_sorted(l.root()) {
        let name = file_name(&entry);
        if !Layout::TOP_LEVEL.contains(&name.as_str()) {
            items.push(unknown(scan, &entry, "not a name tend creates"));
        }
    }
    plan_staging(scan, &mut items);
    plan_servers(scan, &mut items);
    plan_backups(scan, &mut items);
    plan_aged_files(scan, &l.logs(), "logs", |n| n.ends_with(".log"), &mut items);
    plan_aged_files(scan, &l.cache(), "cache", |_| true, &mut items);
    plan_aged_files(scan, &l.reports(), "reports", is_report_name, &mut items);
    items
}

fn plan_staging(scan: &Scan<'_>, items: &mut Vec<Item>) {
    let retention = scan.retention(None);
    for entry in read_dir_sorted(&scan.layout.staging()) {
        let name = file_name(&entry);
        let (category, limit, archive) = if name.ends_with(".partial") {
            ("staging", retention.staging_days.0, Category::Staging)
        } else if name.ends_with(".log") {
            ("logs", retention.logs_days.0, Category::Logs)
        } else {
            items.push(unknown(scan, &entry, "not a name tend creates"));
            continue;
        };
        let Some(mtime) = mtime(&entry) else { continue };
        items.push(aged(&entry, category, None, scan.age_of(mtime), limit, &retention, archive));
    }
}

/// Files of one category whose age is their mtime (logs, cache, reports).
fn plan_aged_files(scan: &Scan<'_>, dir: &Path, category: &str, ours: fn(&str) -> bool, items: &mut Vec<Item>) {
    let retention = scan.retention(None);
    let (limit, archive) = match category {
        "logs" => (retention.logs_days.0, Category::Logs),
        "cache" => (retention.cache_days.0, Category::Cache),
        _ => (retention.reports_days.0, Category::Reports),
    };
    for entry in read_dir_sorted(dir) {
        let is_file = std::fs::symlink_metadata(&entry).is_ok_and(|m| m.is_file());
        if !is_file || !ours(&file_name(&entry)) {
            items.push(unknown(scan, &entry, "not a name tend creates"));
            continue;
        }
        let Some(mtime) = mtime(&entry) else { continue };
        items.push(aged(&entry, category, None, scan.age_of(mtime), limit, &retention, archive));
    }
}

/// An item kept or removed by age against `limit_days`.
#[allow(clippy::too_many_arguments)]
fn aged(
    path: &Path,
    category: &str,
    server: Option<&str>,
    age: Duration,
    limit_days: u64,
    retention: &Retention,
    archive: Category,
) -> Item {
    let limit = days(limit_days);
    let (action, reason) = if age > limit {
        let action =
            if retention.archive_before_delete.contains(&archive) { Action::ArchiveAndRemove } else { Action::Remove };
        (action, format!("older than {limit_days}d"))
    } else {
        (Action::Keep, format!("within {limit_days}d"))
    };
    item(path, category, server, age, action, reason, (action == Action::ArchiveAndRemove).then_some(archive))
}

fn plan_servers(scan: &Scan<'_>, items: &mut Vec<Item>) {
    let l = scan.layout;
    for server_dir in read_dir_sorted(&l.servers()) {
        let server = file_name(&server_dir);
        if !std::fs::symlink_metadata(&server_dir).is_ok_and(|m| m.is_dir()) {
            items.push(unknown(scan, &server_dir, "not a server folder"));
            continue;
        }
        for entry in read_dir_sorted(&server_dir) {
            if !matches!(file_name(&entry).as_str(), "releases" | "current" | "previous") {
                items.push(unknown(scan, &entry, "not a name tend creates"));
            }
        }
        let retention = scan.retention(Some(&server));
        let current = link_target_name(&l.current(&server));
        let previous = link_target_name(&l.previous(&server));
        let mut releases: Vec<(OffsetDateTime, String, PathBuf)> = Vec::new();
        for entry in read_dir_sorted(&l.releases(&server)) {
            let version = file_name(&entry);
            match release_installed_at(&entry, &version) {
                Some(at) => releases.push((at, version, entry)),
                None => items.push(unknown(
                    scan,
                    &entry,
                    "not a release tend installed (no matching release.json, or a link)",
                )),
            }
        }
        releases.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
        let mut kept = 0u64;
        for (installed, version, path) in releases {
            let age = scan.age_of(SystemTime::from(installed));
            let pids = pids_using(&path, scan.in_use);
            let (action, reason) = if current.as_deref() == Some(version.as_str()) {
                (Action::Keep, "current".to_owned())
            } else if previous.as_deref() == Some(version.as_str()) {
                (Action::Keep, "previous".to_owned())
            } else if !pids.is_empty() {
                (
                    Action::Keep,
                    format!("in use by pid {}", pids.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")),
                )
            } else if kept < retention.keep_releases.0 {
                kept += 1;
                (Action::Keep, format!("one of the newest {} besides current and previous", retention.keep_releases.0))
            } else {
                let action = if retention.archive_before_delete.contains(&Category::Releases) {
                    Action::ArchiveAndRemove
                } else {
                    Action::Remove
                };
                (action, format!("beyond keep_releases = {}", retention.keep_releases.0))
            };
            let archive = (action == Action::ArchiveAndRemove).then_some(Category::Releases);
            items.push(item(&path, "releases", Some(&server), age, action, reason, archive));
        }
    }
}

fn plan_backups(scan: &Scan<'_>, items: &mut Vec<Item>) {
    let l = scan.layout;
    let mut names: Vec<String> = scan.site.servers().into_iter().map(|s| s.name).collect();
    names.extend(read_dir_sorted(&l.servers()).iter().map(|p| file_name(p)));
    let mut per_server: BTreeMap<String, Vec<(OffsetDateTime, PathBuf)>> = BTreeMap::new();
    for entry in read_dir_sorted(&l.backups()) {
        let is_file = std::fs::symlink_metadata(&entry).is_ok_and(|m| m.is_file());
        match parse_backup_name(&file_name(&entry), &names).filter(|_| is_file) {
            Some((server, _version, stamp)) => per_server.entry(server).or_default().push((stamp, entry)),
            None => {
                items.push(unknown(scan, &entry, "not a backup name tend creates (<server>-<version>-<stamp>.tar.gz)"))
            }
        }
    }
    for (server, mut backups) in per_server {
        let retention = scan.retention(Some(&server));
        backups.sort_by_key(|b| std::cmp::Reverse(b.0));
        for (index, (stamp, path)) in backups.into_iter().enumerate() {
            let age = scan.age_of(SystemTime::from(stamp));
            let it = if (index as u64) < retention.keep_backups.0 {
                item(
                    &path,
                    "backups",
                    Some(&server),
                    age,
                    Action::Keep,
                    format!("one of the newest {} backups", retention.keep_backups.0),
                    None,
                )
            } else {
                aged(&path, "backups", Some(&server), age, retention.backups_days.0, &retention, Category::Backups)
            };
            items.push(it);
        }
    }
}

/// `<server>-<version>-<YYYYMMDDTHHMMSSZ>.tar.gz`, where the server is one the site knows
/// (names and versions may both hold dashes) and the version is semver.
pub fn parse_backup_name(name: &str, servers: &[String]) -> Option<(String, String, OffsetDateTime)> {
    let stem = name.strip_suffix(".tar.gz")?;
    let (rest, stamp) = stem.rsplit_once('-')?;
    let stamp = parse_stamp(stamp)?;
    let mut candidates: Vec<&String> = servers
        .iter()
        .filter(|s| rest.len() > s.len() + 1 && rest.starts_with(s.as_str()) && rest.as_bytes()[s.len()] == b'-')
        .collect();
    candidates.sort_by_key(|s| std::cmp::Reverse(s.len()));
    candidates.into_iter().find_map(|server| {
        let version = &rest[server.len() + 1..];
        semver::Version::parse(version).ok().map(|_| (server.clone(), version.to_owned(), stamp))
    })
}

/// `20261124T193012Z`, as [`crate::clock::stamp`] writes it.
pub fn parse_stamp(text: &str) -> Option<OffsetDateTime> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::PrimitiveDateTime::parse(text, format).ok().map(|t| t.assume_utc())
}

/// Run reports are `<YYYYMMDDTHHMMSSZ>-<6 hex>.json`.
fn is_report_name(name: &str) -> bool {
    name.strip_suffix(".json").and_then(|stem| stem.split_once('-')).is_some_and(|(stamp, id)| {
        parse_stamp(stamp).is_some() && id.len() == 6 && id.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// The `installed_at` of a release directory whose `release.json` names the same version.
fn release_installed_at(dir: &Path, version: &str) -> Option<OffsetDateTime> {
    if !std::fs::symlink_metadata(dir).ok()?.is_dir() || semver::Version::parse(version).is_err() {
        return None;
    }
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("release.json")).ok()?).ok()?;
    if manifest.get("version")?.as_str()? != version {
        return None;
    }
    crate::clock::parse_rfc3339(manifest.get("installed_at")?.as_str()?)
}

/// `releases/<version>` -> `<version>` for the `current` / `previous` links.
fn link_target_name(link: &Path) -> Option<String> {
    let target = std::fs::read_link(link).ok()?;
    Some(target.file_name()?.to_str()?.to_owned())
}

fn unknown(scan: &Scan<'_>, path: &Path, reason: &str) -> Item {
    let age = mtime(path).map(|t| scan.age_of(t)).unwrap_or_default();
    item(path, "unknown", None, age, Action::Keep, reason.to_owned(), None)
}

fn item(
    path: &Path,
    category: &str,
    server: Option<&str>,
    age: Duration,
    action: Action,
    reason: String,
    archive: Option<Category>,
) -> Item {
    Item {
        path: path.to_path_buf(),
        category: category.to_owned(),
        server: server.map(str::to_owned),
        age_days: (age.as_secs_f64() / 86_400.0 * 100.0).round() / 100.0,
        bytes: tree_bytes(path),
        action,
        reason,
        age,
        archive,
    }
}

fn read_dir_sorted(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    out.sort();
    out
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::symlink_metadata(path).and_then(|m| m.modified()).ok()
}

/// Apparent size of a file, link or whole tree, never following links. Entries that vanish
/// during the walk are not counted.
pub fn tree_bytes(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

/// Applies a plan through the guard: archives first (one per category), then removals. A
/// removal that fails is reported and the rest go on; a policy refusal stops the run.
pub fn execute(call: &mut Call<'_>, mut items: Vec<Item>) -> Result<PruneReport> {
    let layout = call.guard.layout().clone();
    let stamp = crate::clock::stamp(OffsetDateTime::now_utc());
    let mut errors = Vec::new();
    let mut archived_ok: BTreeMap<Category, bool> = BTreeMap::new();
    let mut by_category: BTreeMap<Category, Vec<PathBuf>> = BTreeMap::new();
    for it in items.iter().filter(|i| i.action == Action::ArchiveAndRemove) {
        if let Some(category) = it.archive {
            by_category.entry(category).or_default().push(it.path.clone());
        }
    }
    for (category, sources) in by_category {
        let name = serde_json::to_value(category).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        let plan = Plan::new().with(Effect::CreateDir { path: layout.archive() }).with(Effect::Archive {
            path: layout.archive().join(format!("{name}-{stamp}.tar.gz")),
            base: layout.root().to_path_buf(),
            sources,
            extra: Vec::new(),
        });
        match call.execute(&plan) {
            Ok(()) => {
                archived_ok.insert(category, true);
            }
            Err(e) if e.kind() == ErrorKind::Policy => return Err(e),
            Err(e) => {
                errors.push(format!("{}: not removed, archiving failed: {}", name, e.message()));
                archived_ok.insert(category, false);
            }
        }
    }
    let mut bytes_freed = 0;
    for it in items.iter_mut().filter(|i| i.action != Action::Keep) {
        if it.archive.is_some_and(|c| archived_ok.get(&c) != Some(&true)) {
            it.action = Action::Keep;
            it.reason = "kept: its archive could not be written".into();
            continue;
        }
        let is_dir = std::fs::symlink_metadata(&it.path).is_ok_and(|m| m.is_dir());
        let effect = if is_dir {
            Effect::RemoveTree { path: it.path.clone() }
        } else {
            Effect::RemoveFile { path: it.path.clone() }
        };
        match call.execute(&Plan::new().with(effect)) {
            Ok(()) => bytes_freed += it.bytes,
            Err(e) if e.kind() == ErrorKind::Policy => return Err(e),
            Err(_) if !call.dry_run() && std::fs::symlink_metadata(&it.path).is_err() => {
                it.reason.push_str("; it vanished before prune reached it");
            }
            Err(e) => errors.push(e.message().to_owned()),
        }
    }
    Ok(PruneReport { dry_run: call.dry_run(), items, bytes_freed, errors })
}

/// The `prune` primitive's body: plan from the site (with per-call overrides), then execute.
pub fn prune(call: &mut Call<'_>, overrides: Option<&serde_json::Value>) -> Result<PruneReport> {
    let overrides: RetentionLayer = match overrides {
        Some(v) if !v.is_null() => {
            serde_json::from_value(v.clone()).map_err(|e| Error::failed(format!("prune: bad override: {e}")))?
        }
        _ => RetentionLayer::default(),
    };
    let in_use = crate::proc::paths_in_use();
    let layout = call.guard.layout().clone();
    let scan =
        Scan { site: call.site, layout: &layout, now: SystemTime::now(), in_use: &in_use, overrides: &overrides };
    let items = plan(&scan);
    let report = execute(call, items)?;
    // What it freed reaches the metrics through the run's report (ops::metrics).
    if !report.dry_run {
        let removed = report.items.iter().filter(|i| i.action != Action::Keep).count();
        if removed > 0 {
            let text = format!("pruned {removed} item(s), {} freed", human_bytes(report.bytes_freed));
            crate::ops::notify::send(call, &crate::ops::notify::Message::new(crate::site::Event::Prune, text));
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_names_parse_with_dashes_in_server_and_version() {
        let servers = vec!["sequential-thinking".to_owned(), "sequential".to_owned(), "memory".to_owned()];
        let (s, v, _) =
            parse_backup_name("sequential-thinking-1.0.0-beta.1-20261124T193012Z.tar.gz", &servers).unwrap();
        assert_eq!((s.as_str(), v.as_str()), ("sequential-thinking", "1.0.0-beta.1"));
        let (s, v, _) = parse_backup_name("memory-2025.4.25-20261124T193012Z.tar.gz", &servers).unwrap();
        assert_eq!((s.as_str(), v.as_str()), ("memory", "2025.4.25"));
        for bad in [
            "memory-20261124T193012Z.tar.gz",
            "memory-1.0.0-2026.tar.gz",
            "other-1.0.0-20261124T193012Z.tar.gz",
            "memory-1.0.0-20261124T193012Z.zip",
            "memory-x-20261124T193012Z.tar.gz",
        ] {
            assert!(parse_backup_name(bad, &servers).is_none(), "{bad}");
        }
    }

    #[test]
    fn report_names() {
        assert!(is_report_name("20261124T193012Z-0a1b2c.json"));
        assert!(!is_report_name("20261124T193012Z-0a1b2c.json.bak"));
        assert!(!is_report_name("notes.json"));
    }
}
