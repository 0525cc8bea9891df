//! Staging: a candidate becomes an installed, immutable release. The tarball is downloaded,
//! checked against the registry's sha512 integrity (SHA-1 only where `allow_sha1`), unpacked by the hardened extractor into
//! `<root>/staging/<name>-<version>.partial/`, checked (engines, install scripts), given its
//! production dependencies by npm with scripts off, digested, and renamed into
//! `<root>/servers/<name>/releases/<version>/` in one step. A failure leaves no partial folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde::Serialize;
use serde_json::{Value, json};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

use super::check::{Answer, current_version, decide, fetch, form_for, packages_of, pinned_version};
use crate::error::{Error, Result};
use crate::extract::ExtractLimits;
use crate::guard::effects::{Effect, Plan};
use crate::layout::Layout;
use crate::proc::kept::{Kept, read_into};
use crate::registry::{Client, Dist, RegistryConfig};
use crate::script::primitives::Call;
use crate::site::Site;

const MAX_TARBALL: u64 = 256 << 20;
const NPM_TIMEOUT: Duration = Duration::from_secs(600);
/// How much of each of npm's pipes the staging log keeps: its first bytes (what npm set out
/// to do) and its last (how it ended). npm's usual output is a few hundred bytes.
const NPM_LOG_HEAD: usize = 64 << 10;
const NPM_LOG_TAIL: usize = 1 << 20;

/// What `stage(name, version)` returns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Staged {
    pub name: String,
    pub version: String,
    pub path: PathBuf,
    pub integrity: String,
    /// The digest of the installed tree; `None` in a dry run.
    pub digest: Option<String>,
    pub reused: bool,
    /// The package's `package.json` as the tarball holds it (a dry run has no release to read).
    #[serde(skip)]
    pub manifest: Option<Value>,
}

/// Stages `version` of server `name` (the check's candidate when `None`).
pub fn stage(call: &mut Call<'_>, name: &str, version: Option<&str>) -> Result<Staged> {
    prefetch_node_version();
    let site = call.site;
    let (_, package) = packages_of(site, &[name.to_owned()])?.remove(0);
    let client = Client::new(RegistryConfig::for_site(site))?;
    let policy = site.server(name).policy;
    let Answer { packument, registry, .. } =
        fetch(call, &client, &[(package.clone(), form_for(&policy))])?.remove(0).map_err(|e| e.for_server(name))?;
    let version = match version {
        Some(v) => v.to_owned(),
        None => {
            let current = current_version(site, name);
            let (_, candidate, reason) = decide(&packument, current.as_deref(), &policy, call.now)?;
            candidate.ok_or_else(|| {
                Error::failed(format!(
                    "{name}: nothing to stage: {}",
                    reason.unwrap_or_else(|| "it is up to date".into())
                ))
                .for_server(name)
            })?
        }
    };
    let fail = |why: String| Error::failed(format!("{package}@{version}: {why}")).for_server(name);
    let manifest = packument.version(&version).ok_or_else(|| fail(format!("no such version (registry {registry})")))?;
    let layout = call.guard.layout().clone();
    let release = layout.release(name, &version);
    let dist = &manifest.dist;
    let integrity = expected_integrity(dist, policy.allow_sha1).map_err(fail)?;

    if let Ok(existing) = read_release(&release) {
        if existing.get("version").and_then(Value::as_str) == Some(version.as_str()) {
            verify_dir(&release, &existing).map_err(|e| {
                fail(format!("{} is installed but does not verify: {}", release.display(), e.message()))
            })?;
            let digest = existing.get("digest").and_then(Value::as_str).map(str::to_owned);
            return Ok(Staged {
                name: name.into(),
                version,
                path: release,
                integrity,
                digest,
                reused: true,
                manifest: None,
            });
        }
    }

    let url = dist.tarball.clone().ok_or_else(|| fail("the registry names no tarball".into()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::failed(format!("cannot start the async runtime: {e}")))?;
    let bar = call.progress.then(|| download_bar(&package, &version));
    let download = client.tarball(&package, &url, MAX_TARBALL, |received, total| {
        if let Some(bar) = &bar {
            if let Some(total) = total {
                bar.set_length(total);
            }
            bar.set_position(received);
        }
    });
    let tarball = runtime.block_on(download);
    drop(bar);
    let tarball = tarball.map_err(|e| e.for_server(name))?;
    check_integrity(&tarball, &integrity).map_err(fail)?;

    let partial = layout.staging().join(format!("{name}-{version}.partial"));
    let bins = manifest.bin.paths();
    let mut plan = Plan::new();
    if std::fs::symlink_metadata(&partial).is_ok() {
        plan.push(Effect::RemoveTree { path: partial.clone() });
    }
    plan.push(Effect::CreateDir { path: partial.clone() });
    let manifest = call.dry_run().then(|| super::deploy::package_json_in(&tarball).ok()).flatten();
    plan.push(Effect::Extract {
        path: partial.clone(),
        tarball: Arc::new(tarball),
        bins,
        limits: ExtractLimits::default(),
    });
    if !call.dry_run() {
        // A stage killed midway leaves its partial folder; the next run removes it.
        super::deploy::begin(call, "stage", name, None, &version)?;
    }
    let result = call.execute(&plan).and_then(|()| {
        if call.dry_run() {
            return Ok(None);
        }
        super::deploy::crash_point("stage:after-extract");
        finish(call, site, name, &package, &version, &integrity, &registry, &partial, &release).map(Some)
    });
    if !call.dry_run() {
        super::deploy::finish(call.guard)?;
    }
    match result {
        Ok(digest) => {
            Ok(Staged { name: name.into(), version, path: release, integrity, digest, reused: false, manifest })
        }
        Err(e) => {
            if !call.dry_run() && std::fs::symlink_metadata(&partial).is_ok() {
                let _ = call.execute(&Plan::new().with(Effect::RemoveTree { path: partial }));
            }
            Err(e.for_server(name))
        }
    }
}

/// A download bar on stderr that clears itself when dropped, so the command's own output
/// follows on a clean line.
fn download_bar(package: &str, version: &str) -> indicatif::ProgressBar {
    let style = indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
    crate::progress::add(
        indicatif::ProgressBar::no_length().with_style(style).with_message(format!("downloading {package}@{version}")),
    )
}

/// After extraction: package checks, dependencies, digest, release.json, the rename.
#[allow(clippy::too_many_arguments)]
fn finish(
    call: &mut Call<'_>,
    site: &Site,
    name: &str,
    package: &str,
    version: &str,
    integrity: &str,
    registry: &str,
    partial: &Path,
    release: &Path,
) -> Result<String> {
    let fail = |why: String| Error::failed(format!("{package}@{version}: {why}"));
    let manifest: Value = std::fs::read_to_string(partial.join("package.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .ok_or_else(|| fail("the tarball has no readable package.json".into()))?;
    if let Some(unmet) = unmet_node_engine(&manifest)? {
        return Err(fail(unmet));
    }
    let scripts: Vec<&str> = ["preinstall", "install", "postinstall"]
        .into_iter()
        .filter(|s| manifest.get("scripts").and_then(|m| m.get(*s)).is_some())
        .collect();
    if !scripts.is_empty() && !site.server(name).policy.allow_install_scripts {
        return Err(fail(format!(
            "has install scripts ({}); set allow_install_scripts for this server to stage it",
            scripts.join(", ")
        )));
    }
    let has_deps = manifest.get("dependencies").and_then(Value::as_object).is_some_and(|d| !d.is_empty());
    if has_deps {
        // npm resolves devDependencies even with --omit=dev (it only skips installing them),
        // so it sees a package.json without them; the package's own file is put back after.
        let original = partial.join("package.json");
        let aside = partial.join(".package.json.tend-original");
        let mut production = manifest.clone();
        if let Some(map) = production.as_object_mut() {
            map.remove("devDependencies");
        }
        call.execute(&Plan::new().with(Effect::Rename { from: original.clone(), to: aside.clone() }).with(
            Effect::WriteFile {
                path: original.clone(),
                contents: serde_json::to_vec_pretty(&production).unwrap_or_default(),
                mode: 0o644,
            },
        ))?;
        let log = install_dependencies(partial, registry).map_err(|e| fail(e.message().to_owned()));
        call.execute(&Plan::new().with(Effect::Rename { from: aside, to: original }))?;
        let (text, outcome) = match log {
            Ok(text) => (text, Ok(())),
            Err(e) => (e.message().to_owned(), Err(e)),
        };
        let log_path = call.guard.layout().staging().join(format!("{name}-{version}.log"));
        call.execute(&Plan::new().with(Effect::WriteFile {
            path: log_path,
            contents: text.into_bytes(),
            mode: 0o644,
        }))?;
        outcome?;
    }
    let (digest, files) = tree_digest(partial)?;
    let record = json!({
        "package": package,
        "version": version,
        "integrity": integrity,
        "digest": digest,
        "registry": registry,
        "installed_at": crate::clock::rfc3339(call.now),
        "files": files,
    });
    let mut bytes = serde_json::to_vec_pretty(&record).unwrap_or_default();
    bytes.push(b'\n');
    let releases = release.parent().map(Path::to_path_buf).unwrap_or_default();
    call.execute(
        &Plan::new()
            .with(Effect::WriteFile { path: partial.join("release.json"), contents: bytes, mode: 0o644 })
            .with(Effect::CreateDir { path: releases })
            .with(Effect::Rename { from: partial.to_path_buf(), to: release.to_path_buf() }),
    )?;
    Ok(digest)
}

/// The integrity the tarball must match, as SRI: the registry's sha512 hashes; else, only
/// when the server's policy has `allow_sha1`, its SHA-1 (`dist.shasum` in hex, or a `sha1-`
/// hash in `dist.integrity`, as old packuments have).
fn expected_integrity(dist: &Dist, allow_sha1: bool) -> std::result::Result<String, String> {
    let hashes = dist.integrity.as_deref().unwrap_or_default();
    if hashes.split_whitespace().any(|h| h.starts_with("sha512-")) {
        return Ok(hashes.to_owned());
    }
    let sha1 = hashes.split_whitespace().find(|h| h.starts_with("sha1-")).map(str::to_owned).or_else(|| {
        let bytes = hex::decode(dist.shasum.as_deref()?).ok().filter(|b| b.len() == 20)?;
        Some(format!("sha1-{}", base64::engine::general_purpose::STANDARD.encode(bytes)))
    });
    match sha1 {
        Some(sri) if allow_sha1 => Ok(sri),
        Some(_) => Err(
            "the registry offers only a SHA-1 checksum, no sha512 integrity; set allow_sha1 for this server to accept it"
                .into(),
        ),
        None => Err("the registry offers no integrity for the tarball (neither sha512 nor a SHA-1 shasum)".into()),
    }
}

/// The bytes against an SRI string: its sha512 hashes when it has any, else its sha1 ones
/// (which [`expected_integrity`] lets through only under `allow_sha1`).
fn check_integrity(bytes: &[u8], integrity: &str) -> std::result::Result<(), String> {
    let b64 = |digest: &[u8]| base64::engine::general_purpose::STANDARD.encode(digest);
    let (algorithm, actual) = if integrity.split_whitespace().any(|h| h.starts_with("sha512-")) {
        ("sha512", b64(&Sha512::digest(bytes)))
    } else {
        ("sha1", b64(&Sha1::digest(bytes)))
    };
    let prefix = format!("{algorithm}-");
    let expected: Vec<&str> = integrity.split_whitespace().filter_map(|h| h.strip_prefix(prefix.as_str())).collect();
    if expected.iter().any(|e| e.split('?').next() == Some(actual.as_str())) {
        Ok(())
    } else {
        Err(format!(
            "the tarball does not match its integrity: expected {prefix}{}, got {prefix}{actual}",
            expected.first().unwrap_or(&"")
        ))
    }
}

/// `needs node RANGE; this host has VERSION` when the manifest's `engines.node` excludes the
/// installed Node.
pub(crate) fn unmet_node_engine(manifest: &Value) -> Result<Option<String>> {
    let Some(range) = manifest.get("engines").and_then(|e| e.get("node")).and_then(Value::as_str) else {
        return Ok(None);
    };
    let node = node_version()?;
    let ok = nodejs_semver::Range::parse(range).map(|r| r.satisfies(&node)).unwrap_or(false);
    Ok((!ok).then(|| format!("needs node {range}; this host has {node}")))
}

/// The installed Node's version, once asked (`node --version` costs a Node start-up, some
/// 40 ms, so it is asked once per process).
static NODE: std::sync::OnceLock<std::result::Result<nodejs_semver::Version, String>> = std::sync::OnceLock::new();

fn node_version() -> Result<nodejs_semver::Version> {
    NODE.get_or_init(|| {
        let out = Command::new("node").arg("--version").output().map_err(|e| format!("cannot run node: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        nodejs_semver::Version::parse(text.trim().trim_start_matches('v'))
            .map_err(|_| format!("node printed an unreadable version `{}`", text.trim()))
    })
    .clone()
    .map_err(Error::failed)
}

/// Starts asking Node its version in the background, so that the answer is there when
/// `engines.node` is checked (after the download, or after the server started).
pub(crate) fn prefetch_node_version() {
    if NODE.get().is_some() {
        return;
    }
    std::thread::spawn(|| {
        let _ = node_version();
    });
}

/// `npm install --omit=dev --ignore-scripts` in the partial folder, bounded in time; the
/// combined output is the staging log.
fn install_dependencies(dir: &Path, registry: &str) -> Result<String> {
    let mut child = Command::new("npm")
        .args([
            "install",
            "--omit=dev",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            "--no-update-notifier",
            "--registry",
            registry,
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::failed(format!("cannot run npm: {e}")))?;
    // One reader per pipe: npm blocks once a pipe nobody reads is full (64 KiB), so reading
    // stdout to its end before stderr would hang on an npm that says much on stderr (its
    // warnings, or a user's `loglevel=verbose`) until the timeout. Each keeps its pipe's
    // first and last bytes only, so an npm at `loglevel=silly` cannot make tend hold megabytes.
    fn drain(pipe: Option<impl std::io::Read + Send + 'static>) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let kept = std::sync::Mutex::new(Kept::new(NPM_LOG_HEAD, NPM_LOG_TAIL));
            if let Some(pipe) = pipe {
                read_into(pipe, &kept);
            }
            kept.into_inner().map(|k| k.text()).unwrap_or_default()
        })
    }
    let (out, err) = (drain(child.stdout.take()), drain(child.stderr.take()));
    // A waiter thread hears npm's exit at once; this one only keeps the deadline.
    let pid = child.id();
    let (done, exited) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = done.send(child.wait());
    });
    let status = match exited.recv_timeout(NPM_TIMEOUT) {
        Ok(status) => status.map_err(|e| Error::failed(format!("npm: {e}")))?,
        Err(_) => {
            // The child is still unreaped (the waiter holds it), so its pid is still its own.
            if let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            let _ = waiter.join();
            return Err(Error::failed(format!(
                "npm install did not finish within {}",
                crate::duration::format(NPM_TIMEOUT)
            )));
        }
    };
    let _ = waiter.join();
    let mut text = out.join().unwrap_or_default();
    text.push_str(&err.join().unwrap_or_default());
    if status.success() {
        Ok(text)
    } else {
        let tail: Vec<&str> = text.lines().rev().take(8).collect();
        Err(Error::failed(format!(
            "npm install failed ({status}): {}",
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        )))
    }
}

/// The digest of a release tree (everything but `release.json`), and each entry's own hash:
/// files by content and executable bit, folders, and links by target. Links are not followed.
pub fn tree_digest(dir: &Path) -> Result<(String, BTreeMap<String, String>)> {
    use std::os::unix::fs::PermissionsExt;
    let mut files = BTreeMap::new();
    // The walk is cheap; hashing the files' contents is not, and runs on every core.
    let mut to_hash: Vec<(String, PathBuf, bool)> = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let here = dir.join(&rel);
        let entries = std::fs::read_dir(&here).map_err(|e| Error::io("read", &here, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("read", &here, e))?;
            let rel_path = rel.join(entry.file_name());
            let key = rel_path.to_string_lossy().into_owned();
            if key == "release.json" {
                continue;
            }
            let meta = std::fs::symlink_metadata(entry.path()).map_err(|e| Error::io("read", &entry.path(), e))?;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(entry.path()).map_err(|e| Error::io("read", &entry.path(), e))?;
                files.insert(key, format!("link {}", target.display()));
            } else if meta.is_dir() {
                stack.push(rel_path);
                files.insert(key, "dir".to_owned());
            } else {
                to_hash.push((key, entry.path(), meta.permissions().mode() & 0o111 != 0));
            }
        }
    }
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get).min(8);
    let hash = |(key, path, exec): &(String, PathBuf, bool)| -> Result<(String, String)> {
        let bytes = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
        Ok((key.clone(), format!("{} {}", if *exec { "x" } else { "-" }, hex::encode(Sha256::digest(&bytes)))))
    };
    let hashed: Vec<Result<Vec<(String, String)>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|n| {
                let mine = to_hash.iter().skip(n).step_by(threads);
                scope.spawn(move || mine.map(hash).collect::<Result<Vec<_>>>())
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| Err(Error::failed("a hashing thread panicked"))))
            .collect()
    });
    for part in hashed {
        files.extend(part?);
    }
    let mut all = Sha256::new();
    for (path, value) in &files {
        all.update(path.as_bytes());
        all.update([0]);
        all.update(value.as_bytes());
        all.update([b'\n']);
    }
    Ok((format!("sha256-{}", hex::encode(all.finalize())), files))
}

pub(crate) fn read_release(dir: &Path) -> Result<Value> {
    let path = dir.join("release.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io("read", &path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::failed(format!("{} is not valid JSON: {e}", path.display())))
}

/// Recomputes the tree and names the first entry that differs from `release.json`.
pub(crate) fn verify_dir(dir: &Path, record: &Value) -> Result<String> {
    let (digest, files) = tree_digest(dir)?;
    let recorded: BTreeMap<String, String> = record
        .get("files")
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
        .unwrap_or_default();
    let mut keys: Vec<&String> = files.keys().chain(recorded.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        match (recorded.get(key), files.get(key)) {
            (Some(a), Some(b)) if a == b => {}
            (Some(_), Some(_)) => return Err(Error::failed(format!("{key} differs from the staged file"))),
            (Some(_), None) => return Err(Error::failed(format!("{key} is missing"))),
            (None, _) => return Err(Error::failed(format!("{key} was not part of the staged release"))),
        }
    }
    if record.get("digest").and_then(Value::as_str) != Some(digest.as_str()) {
        return Err(Error::failed("the tree digest differs from release.json".to_owned()));
    }
    Ok(digest)
}

/// `tend verify NAME [VERSION]`: the release (default: current) against its `release.json`.
pub fn verify(site: &Site, name: &str, version: Option<&str>) -> Result<Value> {
    let layout = Layout::new(&site.root);
    let version = match version {
        Some(v) => v.to_owned(),
        None => pinned_version(site, name)
            .ok_or_else(|| Error::failed(format!("{name}: no current release to verify; name a version")))?,
    };
    let dir = layout.release(name, &version);
    let record = read_release(&dir).map_err(|e| e.for_server(name))?;
    let digest = verify_dir(&dir, &record)
        .map_err(|e| Error::failed(format!("{}: {}", dir.display(), e.message())).for_server(name))?;
    Ok(json!({ "name": name, "version": version, "path": dir, "digest": digest, "verified": true }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integrity_is_sha512_sri() {
        let sri = format!("sha512-{}", base64::engine::general_purpose::STANDARD.encode(Sha512::digest(b"abc")));
        assert!(check_integrity(b"abc", &sri).is_ok());
        assert!(check_integrity(b"abc", &format!("sha1-xyz {sri}")).is_ok());
        let err = check_integrity(b"abd", &sri).unwrap_err();
        assert!(err.starts_with("the tarball does not match its integrity: expected sha512-"), "{err}");
    }

    #[test]
    fn sha1_only_when_allowed_and_only_without_sha512() {
        // SHA-1 of "abc", as npm's hex `shasum` and as SRI.
        let hex = "a9993e364706816aba3e25717850c26c9cd0d89d";
        let sri = "sha1-qZk+NkcGgWq6PiVxeFDCbJzQ2J0=";
        let shasum_only = Dist { shasum: Some(hex.into()), ..Dist::default() };
        assert_eq!(
            expected_integrity(&shasum_only, false).unwrap_err(),
            "the registry offers only a SHA-1 checksum, no sha512 integrity; set allow_sha1 for this server to accept it"
        );
        assert_eq!(expected_integrity(&shasum_only, true).unwrap(), sri);
        let old_sri = Dist { integrity: Some(sri.into()), ..Dist::default() };
        assert_eq!(expected_integrity(&old_sri, true).unwrap(), sri);
        let both = Dist { integrity: Some("sha512-x".into()), shasum: Some(hex.into()), ..Dist::default() };
        assert_eq!(expected_integrity(&both, true).unwrap(), "sha512-x", "sha512 wins when offered");
        assert!(expected_integrity(&Dist::default(), true).unwrap_err().contains("no integrity"));
        assert!(check_integrity(b"abc", sri).is_ok());
        assert!(
            check_integrity(b"abd", sri)
                .unwrap_err()
                .starts_with("the tarball does not match its integrity: expected sha1-qZk")
        );
    }
}
