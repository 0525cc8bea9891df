//! Putting releases live and taking them back: adopt, swap, monitor, rollback, and the intent
//! journal that makes each of them crash-safe.
//!
//! `current` is a symlink `servers/<name>/current -> releases/<version>`; an adopted client
//! config entry starts the server through it, so switching releases is one rename of a new
//! link over the old (a client starting at any instant gets one complete release or the
//! other). Every multi-step operation writes `state/intent.json` before its first effect and
//! removes it after its last; [`recover`] (run by every invocation, under the run lock, before
//! anything else) finishes or undoes what an interrupted one left.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{health, launch, notify, stage};
use crate::error::{Error, Result};
use crate::guard::Guard;
use crate::guard::effects::{Effect, Plan};
use crate::layout::Layout;
use crate::script::primitives::Call;
use crate::site::{ClientConfig, Event, Site, npx_invocation};

/// Where inside a backup archive the client config entry and file are kept (removed again
/// when a release is restored from it).
const BACKUP_DIR: &str = ".tend-backup";

/// A test hook: when `TEND_CRASH_AT` names `step`, the process kills itself with SIGKILL there,
/// as a power cut would. Used by the crash-safety tests only.
pub(crate) fn crash_point(step: &str) {
    if std::env::var("TEND_CRASH_AT").is_ok_and(|s| s == step) {
        let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
}

/// What an operation in progress has to be finished or undone from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    /// `adopt`, `swap` or `rollback`.
    pub op: String,
    pub server: String,
    /// The release live before (none for a first adopt).
    pub from: Option<String>,
    pub to: String,
    /// Where `previous` pointed before (so an undone swap restores it).
    pub previous: Option<String>,
    pub run_id: String,
}

/// Records that `op` on `server` (towards `to`) is starting.
pub(crate) fn begin(call: &Call<'_>, op: &str, server: &str, from: Option<String>, to: &str) -> Result<()> {
    write_intent(
        call,
        &Intent {
            op: op.into(),
            server: server.into(),
            from,
            to: to.into(),
            previous: None,
            run_id: call.run_id.to_owned(),
        },
    )
}

/// Records that the operation in progress is over.
pub(crate) fn finish(guard: &Guard) -> Result<()> {
    clear_intent(guard)
}

fn write_intent(call: &Call<'_>, intent: &Intent) -> Result<()> {
    let layout = call.guard.layout();
    call.guard.record(&Plan::new().with(Effect::WriteFile {
        path: layout.intent(),
        contents: serde_json::to_vec_pretty(intent).unwrap_or_default(),
        mode: 0o644,
    }))
}

fn clear_intent(guard: &Guard) -> Result<()> {
    let path = guard.layout().intent();
    if path.symlink_metadata().is_ok() {
        guard.record(&Plan::new().with(Effect::RemoveFile { path }))?;
    }
    Ok(())
}

/// The version a `current`/`previous` link names, checked: it must be `releases/<version>`
/// (relative, inside the server folder) and that folder must be a real directory.
pub fn link_version(layout: &Layout, name: &str, link: &Path) -> Result<Option<String>> {
    let target = match std::fs::read_link(link) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(22) => {
            return Err(
                Error::policy(format!("{} is not a symlink; refusing to touch it", link.display())).for_server(name)
            );
        }
        Err(e) => return Err(Error::io("read", link, e)),
    };
    let mut parts = target.components();
    let version = match (parts.next(), parts.next(), parts.next()) {
        (Some(std::path::Component::Normal(r)), Some(std::path::Component::Normal(v)), None) if r == "releases" => {
            v.to_string_lossy().into_owned()
        }
        _ => {
            return Err(Error::policy(format!(
                "{} points to {}, outside {}; refusing",
                link.display(),
                target.display(),
                layout.releases(name).display()
            ))
            .for_server(name));
        }
    };
    release_dir(layout, name, &version)?;
    Ok(Some(version))
}

/// `releases/<version>`, which must be a real directory (not a link to one).
fn release_dir(layout: &Layout, name: &str, version: &str) -> Result<PathBuf> {
    let dir = layout.release(name, version);
    match dir.symlink_metadata() {
        Ok(m) if m.file_type().is_symlink() => {
            Err(Error::policy(format!("{} is a symlink, not a release folder; refusing", dir.display()))
                .for_server(name))
        }
        Ok(m) if m.is_dir() => Ok(dir),
        _ => Err(Error::failed(format!("{name}: release {version} is not installed (no {})", dir.display()))
            .for_server(name)),
    }
}

fn live_version(layout: &Layout, name: &str) -> Result<Option<String>> {
    link_version(layout, name, &layout.current(name))
}

/// Points `link` at `releases/<version>` (one rename of a new link over the old).
fn link_effect(link: PathBuf, version: &str) -> Effect {
    Effect::Symlink { path: link, target: PathBuf::from("releases").join(version) }
}

/// The backup of a release before it stops being live: the release, plus the client config
/// entry and file, as `backups/<name>-<version>-<stamp>.tar.gz`.
fn backup_effects(call: &Call<'_>, name: &str, version: &str) -> Result<(PathBuf, Plan)> {
    let layout = call.guard.layout().clone();
    let dir = release_dir(&layout, name, version)?;
    // Never overwrite a backup (two in one second, or a fixed clock): take the next free second.
    let mut at = call.now;
    let mut path = layout.backups().join(format!("{name}-{version}-{}.tar.gz", crate::clock::stamp(at)));
    while path.symlink_metadata().is_ok() {
        at += time::Duration::SECOND;
        path = layout.backups().join(format!("{name}-{version}-{}.tar.gz", crate::clock::stamp(at)));
    }
    let mut extra = Vec::new();
    let entry = call.site.servers().into_iter().find(|e| e.name == name);
    if let Some(client) = entry.as_ref().and_then(|e| e.client.clone()) {
        let inside = PathBuf::from(version).join(BACKUP_DIR);
        if let Some(config) = call.site.clients.iter().find(|c| c.path == client).map(ClientConfig::reloaded) {
            let raw = config.entry(name).cloned().unwrap_or(Value::Null);
            let doc = json!({ "client": client, "name": name, "entry": raw });
            extra.push((inside.join("client-entry.json"), serde_json::to_vec_pretty(&doc).unwrap_or_default()));
        }
        if let Ok(bytes) = std::fs::read(&client) {
            extra.push((inside.join("client-config.json"), bytes));
        }
    }
    let plan = Plan::new().with(Effect::CreateDir { path: layout.backups() }).with(Effect::Archive {
        path: path.clone(),
        base: layout.releases(name),
        sources: vec![dir],
        extra,
    });
    Ok((path, plan))
}

// ---------------------------------------------------------------------------------- adopt

/// `adopt(name)`: take a server over from its client config.
pub fn adopt(call: &mut Call<'_>, name: &str) -> Result<Value> {
    let layout = call.guard.layout().clone();
    let entry = call.site.servers().into_iter().find(|e| e.name == name).ok_or_else(|| {
        Error::failed(format!("no server named `{name}` in the site's client configs")).for_server(name)
    })?;
    let client_path = entry.client.clone().ok_or_else(|| {
        Error::failed(format!("{name}: named only in tend.toml; adopt needs a client config entry")).for_server(name)
    })?;
    let current = layout.current(name);
    let command = entry.command.clone().unwrap_or_default();
    if Path::new(&command).starts_with(&current) {
        let version = live_version(&layout, name)?;
        return Ok(json!({ "name": name, "adopted": false, "version": version, "reason": "already adopted" }));
    }
    let npx = npx_invocation(&command, &entry.args).ok_or_else(|| {
        Error::failed(format!(
            "{name}: only entries started with `npx [-y] package` can be adopted (this one runs `{command}`)"
        ))
        .for_server(name)
    })?;
    let pinned = npx.package.version.clone().filter(|v| semver::Version::parse(v).is_ok());
    let (version, note) = match pinned {
        Some(v) => (v, None),
        None => {
            let checked = super::check::check(call, &[name.to_owned()])?.remove(0);
            let v = checked.candidate.clone().ok_or_else(|| {
                Error::failed(format!("{name}: the entry pins no version and the policy allows none")).for_server(name)
            })?;
            let note = format!("the entry pins no version; adopting {v}, the newest the policy allows");
            (v, Some(note))
        }
    };
    if let Some(note) = &note {
        tracing::info!("{name}: {note}");
    }
    let staged = stage::stage(call, name, Some(&version))?;
    let release = layout.release(name, &version);
    let bin = match &staged.manifest {
        Some(manifest) => launch::bin_in(manifest, npx.bin.as_deref()),
        None => launch::bin_of(&release, npx.bin.as_deref()),
    }
    .map_err(|e| e.for_server(name))?;

    // The rewritten entry: same fields, started through `current`.
    let config = call
        .site
        .clients
        .iter()
        .find(|c| c.path == client_path)
        .map(ClientConfig::reloaded)
        .ok_or_else(|| Error::failed(format!("{name}: client config {} is not loaded", client_path.display())))?;
    let mut value = config.entry(name).cloned().unwrap_or_else(|| json!({}));
    value["command"] = json!(current.join(&bin).display().to_string());
    value["args"] = json!(npx.args);
    let before = std::fs::read_to_string(&client_path).map_err(|e| Error::io("read", &client_path, e))?;
    let after = config.render_with_entry(name, value.clone());
    let diff = line_diff(&before, &after);

    let had_current = live_version(&layout, name)?;
    write_intent(
        call,
        &Intent {
            op: "adopt".into(),
            server: name.into(),
            from: had_current.clone(),
            to: version.clone(),
            previous: None,
            run_id: call.run_id.to_owned(),
        },
    )?;
    if had_current.is_none() {
        call.execute(&Plan::new().with(link_effect(current.clone(), &version)))?;
    }
    crash_point("adopt:after-current");
    let backup = if call.dry_run() && !release.is_dir() {
        None // nothing staged to back up in a dry run
    } else {
        let (backup, plan) = backup_effects(call, name, &version)?;
        call.execute(&plan)?;
        Some(backup)
    };
    crash_point("adopt:after-backup");
    call.execute(
        &Plan::new()
            .with(Effect::WriteFile { path: client_path.clone(), contents: after.into_bytes(), mode: 0o644 })
            .declaring(client_path.clone()),
    )?;
    clear_intent(call.guard)?;
    // Record the adopted release's health and tool surface: the baseline the next swap's
    // surface diff compares against. A failure is reported, not fatal: it is what runs today.
    let health = if call.dry_run() {
        None
    } else {
        let report = health::health(call, name, None)?;
        if !report.passed {
            tracing::warn!("{name}: the adopted release {version} fails health: {}", report.errors.join("; "));
        }
        Some(report.passed)
    };
    Ok(json!({
        "name": name, "adopted": !call.dry_run(), "health_passed": health, "version": version, "client": client_path,
        "command": value["command"], "args": value["args"], "backup": backup, "digest": staged.digest,
        "note": note, "diff": diff,
    }))
}

/// A small line diff (`-`/`+` lines with two lines of context) for `--dry-run`.
fn line_diff(before: &str, after: &str) -> String {
    let a: Vec<&str> = before.lines().collect();
    let b: Vec<&str> = after.lines().collect();
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..].iter().rev().zip(b[prefix..].iter().rev()).take_while(|(x, y)| x == y).count();
    let mut out = String::new();
    for line in &a[prefix.saturating_sub(2)..prefix] {
        out.push_str(&format!("  {line}\n"));
    }
    for line in &a[prefix..a.len() - suffix] {
        out.push_str(&format!("- {line}\n"));
    }
    for line in &b[prefix..b.len() - suffix] {
        out.push_str(&format!("+ {line}\n"));
    }
    for line in a[a.len() - suffix..].iter().take(2) {
        out.push_str(&format!("  {line}\n"));
    }
    out
}

// ----------------------------------------------------------------------------------- swap

/// `swap(name, version)`: back up the live release, switch `current`, check the live server.
pub fn swap(call: &mut Call<'_>, name: &str, version: &str) -> Result<Value> {
    let layout = call.guard.layout().clone();
    let from = live_version(&layout, name)?.ok_or_else(|| {
        Error::failed(format!("{name}: no live release to swap from; adopt the server first")).for_server(name)
    })?;
    if from == version {
        return Ok(json!({ "name": name, "from": from, "to": version, "swapped": false, "reason": "already live" }));
    }
    release_dir(&layout, name, version)?;
    stage::verify(call.site, name, Some(version)).map_err(|e| {
        Error::failed(format!("{name}: release {version} fails verification: {}", e.message())).for_server(name)
    })?;
    let entry = call.site.servers().into_iter().find(|e| e.name == name);
    let adopted = entry
        .as_ref()
        .and_then(|e| e.command.as_deref())
        .is_some_and(|c| Path::new(c).starts_with(layout.current(name)));
    let entry = match (entry, adopted) {
        (Some(entry), true) => entry,
        (Some(entry), false) => {
            return Err(Error::failed(format!(
                "{name}: the entry in {} no longer starts the server through {} (was it edited after adopt?); \
                 a swap would not change what clients run; run `tend adopt {name}` again",
                entry.client.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
                layout.current(name).display()
            ))
            .for_server(name));
        }
        (None, _) => {
            return Err(
                Error::failed(format!("no server named `{name}` in the site's client configs")).for_server(name)
            );
        }
    };
    if !health::passed_in_run(&layout, name, version, call.run_id) {
        let report = health::health(call, name, Some(&json!({ "release": version })))?;
        if !report.passed {
            return Err(Error::failed(format!(
                "{name}: release {version} failed health, so it does not go live: {}",
                report.errors.join("; ")
            ))
            .for_server(name));
        }
    }
    let previous = link_version(&layout, name, &layout.previous(name)).ok().flatten();
    write_intent(
        call,
        &Intent {
            op: "swap".into(),
            server: name.into(),
            from: Some(from.clone()),
            to: version.to_owned(),
            previous: previous.clone(),
            run_id: call.run_id.to_owned(),
        },
    )?;
    let (backup, plan) = backup_effects(call, name, &from)?;
    call.execute(&plan)?;
    crash_point("swap:after-backup");
    let switch_started = std::time::Instant::now();
    call.execute(&Plan::new().with(link_effect(layout.current(name), version)))?;
    let switch_us = switch_started.elapsed().as_micros() as u64;
    crash_point("swap:after-switch");
    call.execute(&Plan::new().with(link_effect(layout.previous(name), &from)))?;

    if !call.dry_run() {
        if let Err(why) = verify_live(call.site, name, version, &entry) {
            // Put the old release back before saying anything else.
            let mut undo = Plan::new().with(link_effect(layout.current(name), &from));
            match &previous {
                Some(p) => undo.push(link_effect(layout.previous(name), p)),
                None if layout.previous(name).symlink_metadata().is_ok() => {
                    undo.push(Effect::RemoveFile { path: layout.previous(name) });
                }
                None => {}
            }
            call.execute(&undo)?;
            clear_intent(call.guard)?;
            return Err(
                Error::failed(format!("{name}: after the switch {why}; switched back to {from}")).for_server(name)
            );
        }
    }
    clear_intent(call.guard)?;
    let message = notify::Message::new(Event::Update, format!("updated {from} -> {version}"));
    notify::send(call, &message.server(name).versions(Some(&from), Some(version)));
    Ok(json!({ "name": name, "from": from, "to": version, "swapped": true, "backup": backup, "switch_us": switch_us }))
}

/// Starts the server exactly as the client config says and checks it is `version`: the same
/// server version and tool fingerprint as that release showed under health.
fn verify_live(
    site: &Site,
    name: &str,
    version: &str,
    entry: &crate::site::ServerEntry,
) -> std::result::Result<(), String> {
    let options = health::Options {
        release: None,
        thresholds: site.server(name).thresholds,
        probe: crate::site::Probe {
            pings: crate::site::Count(1),
            burst: crate::site::Count(0),
            idle_window: crate::duration::HumanDuration::from_millis(0),
            ..site.server(name).probe
        },
        on_tool_change: crate::site::OnToolChange::Allow,
        smoke: Vec::new(),
    };
    let launch = launch::from_entry(site, entry).map_err(|e| e.message().to_owned())?;
    let report = health::probe_only(site, name, &options, Some(launch)).map_err(|e| e.message().to_owned())?;
    if report.suites.health.status != "passed" {
        return Err(format!("the live server failed to start: {}", report.errors.join("; ")));
    }
    let layout = Layout::new(&site.root);
    let (want_version, want_fingerprint) = health::recorded_identity(&layout, name, version).unwrap_or((None, None));
    let got_version = report.server_info.get("version").and_then(Value::as_str).map(str::to_owned);
    if want_version.is_some() && got_version != want_version {
        return Err(format!(
            "the live server reports version {}, not {} as release {version} did",
            got_version.unwrap_or_else(|| "none".into()),
            want_version.unwrap_or_default()
        ));
    }
    if want_fingerprint.is_some() && report.fingerprint != want_fingerprint {
        return Err(format!("the live server's tool surface is not release {version}'s"));
    }
    Ok(())
}

// -------------------------------------------------------------------------------- monitor

/// `monitor(name, #{count, interval, failure_limit})`: repeated health of the live release.
pub fn monitor(call: &mut Call<'_>, name: &str, overrides: Option<&Value>) -> Result<Value> {
    let mut settings = call.site.server(name).monitor;
    if let Some(v) = overrides.filter(|v| !v.is_null()) {
        let layer: crate::site::MonitorLayer =
            serde_json::from_value(v.clone()).map_err(|e| Error::failed(format!("monitor: bad option: {e}")))?;
        settings.overlay(&layer);
    }
    let site = call.site;
    let mut options = health::Options::new(site, name, None)?;
    options.probe.burst = crate::site::Count(0);
    options.probe.idle_window = crate::duration::HumanDuration::from_millis(0);
    options.probe.pings = crate::site::Count(3);
    let mut samples = Vec::new();
    let mut failures = 0u64;
    for i in 0..settings.count.0 {
        if i > 0 {
            std::thread::sleep(settings.interval.as_duration());
        }
        let report = health::probe_only(site, name, &options, None)?;
        if !report.passed {
            failures += 1;
        }
        samples.push(json!({
            "passed": report.passed, "version": report.version, "errors": report.errors,
            "latency_p95_ms": report.metrics.latency_p95_ms, "startup_ms": report.metrics.startup_ms,
        }));
    }
    let passed = failures <= settings.failure_limit.0;
    Ok(
        json!({ "name": name, "passed": passed, "samples": samples, "failures": failures, "failure_limit": settings.failure_limit.0 }),
    )
}

// ------------------------------------------------------------------------------- rollback

/// `rollback(name[, version])`: switch `current` back to `previous` (or to `version`,
/// restoring it from its newest backup when it was pruned).
pub fn rollback(call: &mut Call<'_>, name: &str, version: Option<&str>) -> Result<Value> {
    let layout = call.guard.layout().clone();
    let live = live_version(&layout, name)?
        .ok_or_else(|| Error::failed(format!("{name}: no live release; nothing to roll back")).for_server(name))?;
    let to = match version {
        Some(v) => v.to_owned(),
        None => link_version(&layout, name, &layout.previous(name))?.ok_or_else(|| {
            Error::failed(format!("{name}: no previous release to roll back to; name one with --to")).for_server(name)
        })?,
    };
    if to == live {
        return Ok(json!({ "name": name, "from": live, "to": to, "rolled_back": false, "reason": "already live" }));
    }
    let mut restored = None;
    if layout.release(name, &to).symlink_metadata().is_err() {
        restored = Some(restore(call, name, &to)?);
    }
    release_dir(&layout, name, &to)?;
    write_intent(
        call,
        &Intent {
            op: "rollback".into(),
            server: name.into(),
            from: Some(live.clone()),
            to: to.clone(),
            previous: None,
            run_id: call.run_id.to_owned(),
        },
    )?;
    call.execute(&Plan::new().with(link_effect(layout.current(name), &to)))?;
    crash_point("rollback:after-switch");
    call.execute(&Plan::new().with(link_effect(layout.previous(name), &live)))?;
    clear_intent(call.guard)?;
    let message = notify::Message::new(Event::Rollback, format!("rolled back {live} -> {to}"));
    notify::send(call, &message.server(name).versions(Some(&live), Some(&to)));
    Ok(json!({ "name": name, "from": live, "to": to, "rolled_back": true, "restored_from": restored }))
}

/// Restores a pruned release from its newest backup archive, through the hardened extractor,
/// checking the result against the `release.json` inside it.
fn restore(call: &mut Call<'_>, name: &str, version: &str) -> Result<PathBuf> {
    let layout = call.guard.layout().clone();
    let prefix = format!("{name}-{version}-");
    let mut backups: Vec<PathBuf> = std::fs::read_dir(layout.backups())
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                        n.starts_with(&prefix)
                            && n.ends_with(".tar.gz")
                            && n[prefix.len()..n.len() - 7].chars().all(|c| c.is_ascii_alphanumeric())
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    backups.sort();
    let archive = backups.pop().ok_or_else(|| {
        Error::failed(format!("{name}: release {version} is not installed and has no backup to restore it from"))
            .for_server(name)
    })?;
    let bytes = std::fs::read(&archive).map_err(|e| Error::io("read", &archive, e))?;
    let damaged =
        |why: String| Error::failed(format!("{name}: backup {} is damaged: {why}", archive.display())).for_server(name);
    let manifest = package_json_in(&bytes).map_err(damaged)?;
    let bins: Vec<String> = launch::declared_bins(&manifest).into_iter().map(|(_, path)| path).collect();
    let partial = layout.staging().join(format!("{name}-{version}.partial"));
    let mut plan = Plan::new().with(Effect::CreateDir { path: layout.staging() });
    if partial.symlink_metadata().is_ok() {
        plan = plan.with(Effect::RemoveTree { path: partial.clone() });
    }
    plan = plan.with(Effect::CreateDir { path: partial.clone() }).with(Effect::Extract {
        path: partial.clone(),
        tarball: std::sync::Arc::new(bytes),
        bins,
        limits: crate::extract::ExtractLimits::default(),
    });
    let cleanup = |call: &mut Call<'_>| {
        let _ = call.execute(&Plan::new().with(Effect::RemoveTree { path: partial.clone() }));
    };
    if let Err(e) = call.execute(&plan) {
        cleanup(call);
        return Err(damaged(e.message().to_owned()));
    }
    if partial.join(BACKUP_DIR).exists() {
        call.execute(&Plan::new().with(Effect::RemoveTree { path: partial.join(BACKUP_DIR) }))?;
    }
    if !call.dry_run() {
        let checked = stage::read_release(&partial).and_then(|record| stage::verify_dir(&partial, &record));
        if let Err(e) = checked {
            cleanup(call);
            return Err(damaged(e.message().to_owned()));
        }
    }
    call.execute(
        &Plan::new()
            .with(Effect::CreateDir { path: layout.releases(name) })
            .with(Effect::Rename { from: partial, to: layout.release(name, version) }),
    )?;
    Ok(archive)
}

/// The `package.json` at the top of a tarball (`<first>/package.json`): an npm tarball or a
/// backup archive.
pub(crate) fn package_json_in(bytes: &[u8]) -> std::result::Result<Value, String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let path = entry.path().map_err(|e| e.to_string())?.into_owned();
        if path.components().count() == 2 && path.ends_with("package.json") {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text).map_err(|e| e.to_string())?;
            return serde_json::from_str(&text).map_err(|e| format!("package.json: {e}"));
        }
    }
    Err("it holds no package.json".into())
}

// -------------------------------------------------------------------------------- recover

/// Finishes or undoes what an interrupted invocation left: the operation its intent record
/// names (a partial staging, a half-done adopt, swap or rollback), and temp files of atomic
/// writes. Runs under the run lock; returns what it repaired.
pub fn recover(site: &Site, guard: &Guard) -> Result<Vec<String>> {
    let layout = guard.layout().clone();
    let mut repaired = Vec::new();
    if let Ok(text) = std::fs::read_to_string(layout.intent()) {
        match serde_json::from_str::<Intent>(&text) {
            Ok(intent) => repaired.push(repair(site, guard, &layout, &intent)?),
            Err(e) => repaired.push(format!("removed an unreadable intent record ({e})")),
        }
        clear_intent(guard)?;
    }
    let mut plan = Plan::new();
    let mut dirs = vec![layout.state(), layout.backups(), layout.staging()];
    for server in site.servers() {
        dirs.push(layout.server(&server.name));
    }
    dirs.extend(site.clients.iter().filter_map(|c| c.path.parent().map(Path::to_path_buf)));
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if file.starts_with('.') && file.contains(".tend-tmp-") {
                plan.push(Effect::RemoveFile { path: entry.path() });
                repaired.push(format!("removed the temp file {}", entry.path().display()));
            }
        }
    }
    if !plan.effects.is_empty() {
        guard.record(&plan)?;
    }
    Ok(repaired)
}

fn repair(site: &Site, guard: &Guard, layout: &Layout, intent: &Intent) -> Result<String> {
    let name = &intent.server;
    let live = live_version(layout, name).ok().flatten();
    let link = link_effect;
    match intent.op.as_str() {
        "swap" => {
            let from = intent.from.clone().unwrap_or_default();
            if live.as_deref() == Some(from.as_str()) {
                return Ok(format!(
                    "an interrupted swap of {name} from {from} to {} never switched; {from} stays live",
                    intent.to
                ));
            }
            let mut plan = Plan::new().with(link(layout.current(name), &from));
            match &intent.previous {
                Some(p) => plan.push(link(layout.previous(name), p)),
                None if layout.previous(name).symlink_metadata().is_ok() => {
                    plan.push(Effect::RemoveFile { path: layout.previous(name) });
                }
                None => {}
            }
            guard.record(&plan)?;
            Ok(format!("undid an interrupted swap of {name} from {from} to {}: {from} is live again", intent.to))
        }
        "rollback" => {
            let mut plan = Plan::new().with(link(layout.current(name), &intent.to));
            if let Some(from) = &intent.from {
                plan = plan.with(link(layout.previous(name), from));
            }
            guard.record(&plan)?;
            Ok(format!("finished an interrupted rollback of {name} to {}", intent.to))
        }
        "adopt" => {
            let adopted = site
                .servers()
                .into_iter()
                .find(|e| &e.name == name)
                .and_then(|e| e.command)
                .is_some_and(|c| Path::new(&c).starts_with(layout.current(name)));
            if adopted {
                return Ok(format!("an interrupted adopt of {name} had finished; nothing to undo"));
            }
            if intent.from.is_none() && layout.current(name).symlink_metadata().is_ok() {
                guard.record(&Plan::new().with(Effect::RemoveFile { path: layout.current(name) }))?;
            }
            Ok(format!("undid an interrupted adopt of {name}: its client config entry is unchanged; run adopt again"))
        }
        "stage" => {
            let partial = layout.staging().join(format!("{name}-{}.partial", intent.to));
            if partial.symlink_metadata().is_ok() {
                guard.record(&Plan::new().with(Effect::RemoveTree { path: partial }))?;
                return Ok(format!("removed the partial staging of {name} {} an interrupted stage left", intent.to));
            }
            Ok(format!("an interrupted stage of {name} {} left nothing behind", intent.to))
        }
        other => Ok(format!("dropped an intent record of unknown kind `{other}`")),
    }
}
