//! How to start a server: as its client config entry says, or from an installed release with
//! the entry's arguments and environment.
//!
//! An entry that runs `npx [-y] pkg[@version] args...` starts a release as
//! `<release>/<bin> args...`, where `<bin>` is the package's declared bin (the one `npx -p pkg
//! bin` names, else the one named like the package, else its only one). An entry already
//! adopted (its command under `<root>/servers/<name>/current/`) starts the release by the same
//! path with `current` replaced by `releases/<version>`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::proc::child::Launch;
use crate::site::{ServerEntry, Site, npx_invocation};

/// The entry as the client would start it.
pub fn from_entry(site: &Site, entry: &ServerEntry) -> Result<Launch> {
    let command = entry.command.clone().ok_or_else(|| {
        Error::failed(format!("{}: the client config entry has neither `command` nor `url`", entry.name))
    })?;
    Ok(Launch { command, args: entry.args.clone(), env: entry.env.clone(), cwd: Some(working_dir(site, entry)) })
}

/// The entry, rewritten to start the release in `dir` (a folder under `releases/`, or
/// `current`).
pub fn from_release(site: &Site, entry: &ServerEntry, dir: &Path) -> Result<Launch> {
    let name = &entry.name;
    let command = entry.command.as_deref().unwrap_or_default();
    let current = Layout::new(&site.root).current(name);
    let (bin, args) = if let Ok(rest) = Path::new(command).strip_prefix(&current) {
        (dir.join(rest), entry.args.clone())
    } else if let Some(npx) = npx_invocation(command, &entry.args) {
        (dir.join(bin_of(dir, npx.bin.as_deref()).map_err(|e| e.for_server(name))?), npx.args)
    } else if entry.command.is_none() || entry.url.is_some() {
        return Err(Error::failed(format!(
            "{name}: the entry is not started by a command, so it has no release to run"
        )));
    } else {
        // Neither npx nor adopted (`node server.js`, say): the release's bin, with no arguments
        // (the entry's belong to whatever it runs today).
        (dir.join(bin_of(dir, None).map_err(|e| e.for_server(name))?), Vec::new())
    };
    Ok(Launch {
        command: bin.to_string_lossy().into_owned(),
        args,
        env: entry.env.clone(),
        cwd: Some(working_dir(site, entry)),
    })
}

/// The path (relative to the release) of the bin to run.
pub fn bin_of(dir: &Path, wanted: Option<&str>) -> Result<PathBuf> {
    let path = dir.join("package.json");
    let manifest: Value = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .ok_or_else(|| Error::failed(format!("{} is missing or not JSON", path.display())))?;
    bin_in(&manifest, wanted)
}

/// The bins a manifest declares, as (name, path): a `bin` string is named like the package.
pub fn declared_bins(manifest: &Value) -> Vec<(String, String)> {
    let package = manifest.get("name").and_then(Value::as_str).unwrap_or_default();
    let short = package.rsplit('/').next().unwrap_or(package);
    match manifest.get("bin") {
        Some(Value::String(p)) => vec![(short.to_owned(), p.clone())],
        Some(Value::Object(map)) => map.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect(),
        _ => Vec::new(),
    }
}

/// The bin to run, from a package's manifest.
pub fn bin_in(manifest: &Value, wanted: Option<&str>) -> Result<PathBuf> {
    let package = manifest.get("name").and_then(Value::as_str).unwrap_or_default();
    let short = package.rsplit('/').next().unwrap_or(package);
    let bins = declared_bins(manifest);
    let pick = match wanted {
        Some(w) => bins.iter().find(|(k, _)| k == w),
        None if bins.len() == 1 => bins.first(),
        None => bins.iter().find(|(k, _)| k == short),
    };
    match pick {
        Some((_, p)) => Ok(PathBuf::from(p.trim_start_matches("./"))),
        None if bins.is_empty() => Err(Error::failed(format!("{package} declares no bin to start"))),
        None => Err(Error::failed(format!(
            "{package} declares several bins ({}) and the entry does not say which; use `npx -p {package} BIN`",
            bins.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// The entry's `cwd` (relative to its client config), else the client config's folder.
fn working_dir(site: &Site, entry: &ServerEntry) -> PathBuf {
    let base = entry.client.as_deref().and_then(Path::parent).map_or_else(|| site.dir.clone(), Path::to_path_buf);
    match &entry.cwd {
        Some(cwd) => base.join(cwd),
        None => base,
    }
}
