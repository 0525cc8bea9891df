//! The update check: for each server, the newest version the site's policy allows (semver
//! range, majors, prereleases, ignore list, and a cooldown measured per version), and in
//! words why that differs from the registry's `latest`.

use std::path::Path;
use std::time::Duration;

use nodejs_semver::{Range, Version};
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use crate::error::{Error, ErrorKind, Result};
use crate::guard::effects::{Effect, Plan};
use crate::layout::Layout;
use crate::registry::{Client, Fetched, Form, Packument, RegistryConfig, cache_paths};
use crate::script::primitives::Call;
use crate::site::{Policy, ServerEntry, Site};

/// What `check(name)` returns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckResult {
    pub name: String,
    pub package: String,
    pub current: Option<String>,
    pub latest: Option<String>,
    pub candidate: Option<String>,
    pub update_available: bool,
    /// `major`, `minor`, `patch` or `prerelease`, when there is a candidate and a current.
    pub kind: Option<String>,
    /// Why the candidate differs from `latest`.
    pub reason: Option<String>,
    pub registry: String,
    /// `registry` (fetched), `cache` (the registry answered 304 Not Modified).
    pub source: String,
}

/// The version the server runs now: the managed release's, else the one its npx line pins
/// exactly, else that of an installed copy of its package (see [`installed_version`]);
/// `None` when unknown.
pub fn current_version(site: &Site, name: &str) -> Option<String> {
    pinned_version(site, name).or_else(|| {
        let entry = site.servers().into_iter().find(|s| s.name == name)?;
        installed_version(&entry)
    })
}

/// The version tend knows the server is pinned to: the managed release's, else the exact
/// version in its npx line. (What `tend verify` checks when no version is named.)
pub fn pinned_version(site: &Site, name: &str) -> Option<String> {
    let layout = Layout::new(&site.root);
    let managed = std::fs::read_to_string(layout.current(name).join("release.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|m| m.get("version").and_then(Value::as_str).map(str::to_owned));
    managed.or_else(|| {
        let entry = site.servers().into_iter().find(|s| s.name == name)?;
        let pinned = entry.package?.version?;
        Version::parse(&pinned).ok().map(|_| pinned)
    })
}

/// The version in the `package.json` of an installed copy of the server's package, looked for
/// where the server would really load it from:
/// - the script a command runs, when the command or one of its arguments is a file inside
///   the package (`node /opt/mcp/node_modules/pkg/dist/index.js`): the nearest folder above
///   it whose `package.json` names the package;
/// - else, for an `npx` line, `node_modules/<package>/package.json` in the client config's
///   folder or the nearest folder above it that has one (for `.vscode/mcp.json` that reaches
///   the workspace), which is where `npx` finds a local install before it downloads anything.
///
/// Relative paths are taken from the client config's folder.
pub fn installed_version(entry: &ServerEntry) -> Option<String> {
    let package = &entry.package.as_ref()?.name;
    let project = entry.client.as_deref().and_then(Path::parent);
    let version_in = |manifest: &Path| -> Option<String> {
        let text = std::fs::read_to_string(manifest).ok()?;
        let json: Value = serde_json::from_str(&text).ok()?;
        if json.get("name").and_then(Value::as_str) != Some(package.as_str()) {
            return None;
        }
        let version = json.get("version").and_then(Value::as_str)?;
        Version::parse(version).ok().map(|_| version.to_owned())
    };
    let scripts = entry.command.iter().chain(&entry.args).filter_map(|arg| {
        let path = Path::new(arg);
        let path = match project {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.to_path_buf(),
        };
        // A bin link (node_modules/.bin/x) leads into the package it belongs to.
        std::fs::canonicalize(path).ok().filter(|p| p.is_file())
    });
    for script in scripts {
        if let Some(version) = script.ancestors().skip(1).find_map(|dir| version_in(&dir.join("package.json"))) {
            return Some(version);
        }
    }
    let runs_npx = entry.command.as_deref().is_some_and(|c| crate::site::infer_package(c, &entry.args).is_some());
    if !runs_npx {
        return None;
    }
    project?.ancestors().find_map(|dir| version_in(&dir.join("node_modules").join(package).join("package.json")))
}

/// Which form of the packument `policy` needs: publish times only matter under a cooldown.
pub fn form_for(policy: &Policy) -> Form {
    if policy.min_release_age.as_duration().is_zero() { Form::Abbreviated } else { Form::Full }
}

/// Decides the candidate from a packument, under `policy`, at `now`.
pub fn decide(
    packument: &Packument,
    current: Option<&str>,
    policy: &Policy,
    now: OffsetDateTime,
) -> Result<(Option<String>, Option<String>, Option<String>)> {
    let versions = packument.versions.as_ref().ok_or_else(|| Error::failed("the packument has no `versions`"))?;
    let latest = packument.latest().ok_or_else(|| Error::failed("the packument has no `dist-tags.latest`"))?.to_owned();
    let allowed = Range::parse(&policy.allowed)
        .map_err(|_| Error::config(format!("policy.allowed `{}` is not an npm semver range", policy.allowed)))?;
    let current_v = current.and_then(|c| Version::parse(c).ok());
    let cooldown = policy.min_release_age.as_duration();

    let hold = |text: &str, v: &Version| -> Option<String> {
        if policy.ignore.iter().any(|i| i == text) {
            return Some(format!("{text} is in the ignore list"));
        }
        if v.is_prerelease() && !policy.prerelease {
            return Some(format!("{text} is a prerelease; prerelease is false"));
        }
        if !allowed.satisfies_with_prerelease(v, policy.prerelease) {
            return Some(format!("{text} is outside the allowed range {}", policy.allowed));
        }
        if let Some(cur) = &current_v {
            if v.major() > cur.major() && !policy.allow_major {
                return Some(format!("{text} is a major update; allow_major is false"));
            }
        }
        if cooldown.is_zero() {
            return None;
        }
        let published = packument.time.get(text).and_then(|s| crate::clock::parse_rfc3339(s));
        let Some(published) = published else {
            return Some(format!("{text} has no publish time, so its age is unknown; held"));
        };
        let age = now - published;
        let age = Duration::try_from(age).unwrap_or(Duration::ZERO);
        if age < cooldown {
            return Some(format!("{text} is {} old; cooldown is {}", human_age(age), policy.min_release_age));
        }
        None
    };

    let mut parsed: Vec<(Version, &String)> =
        versions.keys().filter_map(|k| Version::parse(k).ok().map(|v| (v, k))).collect();
    parsed.sort_by(|a, b| b.0.cmp(&a.0));
    let candidate = parsed
        .iter()
        .filter(|(v, _)| current_v.as_ref().is_none_or(|c| v > c))
        .find(|(v, text)| hold(text, v).is_none())
        .map(|(_, text)| (*text).clone());

    let reason = if candidate.as_deref() == Some(latest.as_str()) || current == Some(latest.as_str()) {
        None
    } else {
        let why = Version::parse(&latest).ok().and_then(|v| hold(&latest, &v));
        let why =
            why.unwrap_or_else(|| format!("{latest} is not newer than {}", current.unwrap_or("the current version")));
        Some(match (&candidate, current) {
            (Some(c), _) => format!("{why}; offering {c}"),
            (None, Some(cur)) => format!("{why}; staying on {cur}"),
            (None, None) => format!("{why}; no version is allowed"),
        })
    };
    Ok((Some(latest), candidate, reason))
}

/// An age in whole minutes under an hour, else whole hours: "20h", "2d3h".
fn human_age(age: Duration) -> String {
    let secs = age.as_secs();
    let unit = if secs < 3600 { 60 } else { 3600 };
    crate::duration::format(Duration::from_secs(secs / unit * unit))
}

fn kind_of(current: Option<&str>, candidate: Option<&str>) -> Option<String> {
    let (cur, cand) = (Version::parse(current?).ok()?, Version::parse(candidate?).ok()?);
    Some(
        if cand.is_prerelease() {
            "prerelease"
        } else if cand.major() != cur.major() {
            "major"
        } else if cand.minor() != cur.minor() {
            "minor"
        } else {
            "patch"
        }
        .to_owned(),
    )
}

/// A packument as check and stage see it: where it came from and the registry that served it.
#[derive(Debug, Clone)]
pub struct Answer {
    pub packument: Packument,
    /// `registry` (a fresh answer) or `cache` (304 Not Modified).
    pub source: &'static str,
    pub registry: String,
}

/// The npm package of each named server (every server with one when `names` is empty).
pub fn packages_of(site: &Site, names: &[String]) -> Result<Vec<(String, String)>> {
    let servers = site.servers();
    let wanted: Vec<String> = if names.is_empty() {
        servers.iter().filter(|s| s.package.is_some()).map(|s| s.name.clone()).collect()
    } else {
        names.to_vec()
    };
    wanted
        .into_iter()
        .map(|name| {
            let entry = servers.iter().find(|s| s.name == name).ok_or_else(|| {
                Error::failed(format!("no server named `{name}` in the client configs or tend.toml")).for_server(&name)
            })?;
            let package = entry
                .package
                .as_ref()
                .map(|p| p.name.clone())
                .ok_or_else(|| Error::failed(format!("server `{name}` runs no npm package")).for_server(&name))?;
            Ok((name, package))
        })
        .collect()
}

/// The cached packument of `package` and its ETag, when the cache holds one in a form that
/// serves `form` (a full packument serves both; an abbreviated one only an abbreviated need).
fn cached(cache: &Path, package: &str, form: Form) -> Option<(Packument, String)> {
    let (json_path, etag_path) = cache_paths(cache, package);
    let etag = std::fs::read_to_string(etag_path).ok()?;
    let packument = Packument::from_slice(&std::fs::read(json_path).ok()?).ok()?;
    (form == Form::Abbreviated || !packument.abbreviated).then_some((packument, etag))
}

/// Fetches packuments concurrently, each in the form its policy needs, revalidating the ETag
/// cache under `<root>/state/cache` (which keeps the slim form, so a 304 reads little).
pub fn fetch(call: &Call<'_>, client: &Client, wanted: &[(String, Form)]) -> Result<Vec<Result<Answer>>> {
    let cache = call.guard.layout().cache();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::failed(format!("cannot start the async runtime: {e}")))?;
    let fetched: Vec<(Option<Packument>, Result<Fetched>)> = runtime.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for (i, (package, form)) in wanted.iter().enumerate() {
            let (client, package, form) = (client.clone(), package.clone(), *form);
            let (old, etag) = cached(&cache, &package, form).unzip();
            set.spawn(async move { (i, old, client.packument(&package, form, etag.as_deref()).await) });
        }
        let mut out: Vec<Option<(Option<Packument>, Result<Fetched>)>> = (0..wanted.len()).map(|_| None).collect();
        while let Some(joined) = set.join_next().await {
            if let Ok((i, old, result)) = joined {
                out[i] = Some((old, result));
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| (None, Err(Error::failed("a registry request was lost")))))
            .collect()
    });
    let mut out = Vec::new();
    for ((package, _), (old, fetched)) in wanted.iter().zip(fetched) {
        let registry = client.config().registry_for(package).to_owned();
        let answer = match (fetched, old) {
            (Ok(Fetched::Fresh { packument, etag }), _) => {
                let (json_path, etag_path) = cache_paths(&cache, package);
                let mut plan = Plan::new().with(Effect::CreateDir { path: cache.clone() }).with(Effect::WriteFile {
                    path: json_path,
                    contents: serde_json::to_vec(&packument).unwrap_or_default(),
                    mode: 0o644,
                });
                match etag {
                    Some(etag) => {
                        plan.push(Effect::WriteFile { path: etag_path, contents: etag.into_bytes(), mode: 0o644 })
                    }
                    // A stale ETag must not revalidate the new copy.
                    None if etag_path.exists() => plan.push(Effect::RemoveFile { path: etag_path }),
                    None => {}
                }
                call.guard.record(&plan)?;
                Ok(Answer { packument, source: "registry", registry })
            }
            (Ok(Fetched::NotModified), Some(packument)) => Ok(Answer { packument, source: "cache", registry }),
            (Ok(Fetched::NotModified), None) => Err(Error::failed(format!(
                "{package}: the registry answered 304 Not Modified to a request that was not conditional (registry {registry})"
            ))),
            (Err(e), _) => Err(e),
        };
        out.push(answer);
    }
    Ok(out)
}

/// Checks the named servers concurrently (every server when `names` is empty); the first
/// server that cannot be checked fails the whole check.
pub fn check(call: &mut Call<'_>, names: &[String]) -> Result<Vec<CheckResult>> {
    check_each(call, names)?.into_iter().collect()
}

/// Like [`check`], with each server's outcome on its own, so that one unreachable registry
/// does not hide the others' answers (`tend status`). `Err` only when no server could be asked.
pub fn check_each(call: &mut Call<'_>, names: &[String]) -> Result<Vec<Result<CheckResult>>> {
    let site = call.site;
    let jobs = packages_of(site, names)?;
    let client = Client::new(RegistryConfig::for_site(site))?;
    let wanted: Vec<(String, Form)> =
        jobs.iter().map(|(name, package)| (package.clone(), form_for(&site.server(name).policy))).collect();
    let fetched = fetch(call, &client, &wanted)?;
    let now = call.now;
    let judge = |name: String, package: String, fetched: Result<Answer>| -> Result<CheckResult> {
        let Answer { packument, source, registry } = fetched.map_err(|e| e.for_server(&name))?;
        let current = current_version(site, &name);
        let policy = site.server(&name).policy;
        let (latest, candidate, reason) = decide(&packument, current.as_deref(), &policy, now).map_err(|e| {
            let kind = if e.kind() == ErrorKind::Config { ErrorKind::Config } else { ErrorKind::Failed };
            Error::new(kind, format!("{package}: {} (registry {registry})", e.message())).for_server(&name)
        })?;
        Ok(CheckResult {
            kind: kind_of(current.as_deref(), candidate.as_deref()),
            update_available: candidate.is_some(),
            name,
            package,
            current,
            latest,
            candidate,
            reason,
            registry,
            source: source.to_owned(),
        })
    };
    Ok(jobs.into_iter().zip(fetched).map(|((name, package), fetched)| judge(name, package, fetched)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::HumanDuration;
    use serde_json::json;

    fn packument(versions: &[(&str, Option<&str>)], latest: &str) -> Packument {
        let mut v = serde_json::Map::new();
        let mut t = serde_json::Map::new();
        for (version, time) in versions {
            v.insert((*version).into(), json!({"version": version}));
            if let Some(time) = time {
                t.insert((*version).into(), json!(time));
            }
        }
        from_json(json!({"versions": v, "time": t, "dist-tags": {"latest": latest}}))
    }

    fn from_json(value: serde_json::Value) -> Packument {
        Packument::from_slice(value.to_string().as_bytes()).unwrap()
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::parse("2026-11-24T12:00:00Z", &time::format_description::well_known::Rfc3339).unwrap()
    }

    const OLD: Option<&str> = Some("2026-10-01T00:00:00Z");

    #[test]
    fn cooldown_holds_a_young_version_and_falls_back() {
        let p = packument(&[("2.0.3", OLD), ("2.0.4", OLD), ("2.1.0", Some("2026-11-23T16:00:00Z"))], "2.1.0");
        let (latest, candidate, reason) = decide(&p, Some("2.0.3"), &Policy::default(), now()).unwrap();
        assert_eq!((latest.as_deref(), candidate.as_deref()), (Some("2.1.0"), Some("2.0.4")));
        assert_eq!(reason.as_deref(), Some("2.1.0 is 20h old; cooldown is 3d; offering 2.0.4"));
        assert_eq!(kind_of(Some("2.0.3"), Some("2.0.4")).as_deref(), Some("patch"));
    }

    #[test]
    fn majors_prereleases_ranges_ignores_and_missing_times() {
        let p = packument(
            &[("1.0.0", OLD), ("1.1.0", OLD), ("1.2.0", None), ("1.3.0-beta.1", OLD), ("2.0.0", OLD)],
            "2.0.0",
        );
        let policy = Policy::default();
        let r = decide(&p, Some("1.0.0"), &policy, now()).unwrap();
        assert_eq!(r.1.as_deref(), Some("1.1.0"));
        assert_eq!(r.2.as_deref(), Some("2.0.0 is a major update; allow_major is false; offering 1.1.0"));
        let major = Policy { allow_major: true, ..Policy::default() };
        assert_eq!(decide(&p, Some("1.0.0"), &major, now()).unwrap().1.as_deref(), Some("2.0.0"));
        let ignoring = Policy { allow_major: true, ignore: vec!["2.0.0".into()], ..Policy::default() };
        assert_eq!(
            decide(&p, Some("1.0.0"), &ignoring, now()).unwrap().2.as_deref(),
            Some("2.0.0 is in the ignore list; offering 1.1.0")
        );
        let ranged = Policy { allow_major: true, allowed: "~1.0".into(), ..Policy::default() };
        assert_eq!(
            decide(&p, Some("1.0.0"), &ranged, now()).unwrap().2.as_deref(),
            Some("2.0.0 is outside the allowed range ~1.0; staying on 1.0.0")
        );
        let pre = Policy { prerelease: true, ..Policy::default() };
        assert_eq!(decide(&p, Some("1.1.0"), &pre, now()).unwrap().1.as_deref(), Some("1.3.0-beta.1"));
        let p2 = packument(&[("1.0.0", OLD), ("1.2.0", None)], "1.2.0");
        assert_eq!(
            decide(&p2, Some("1.0.0"), &policy, now()).unwrap().2.as_deref(),
            Some("1.2.0 has no publish time, so its age is unknown; held; staying on 1.0.0")
        );
        assert_eq!(decide(&p2, None, &policy, now()).unwrap().1.as_deref(), Some("1.0.0"));
        // Without a cooldown publish times do not matter (the abbreviated packument has none).
        let no_cooldown = Policy { min_release_age: HumanDuration::from_secs(0), ..Policy::default() };
        assert_eq!(form_for(&no_cooldown), Form::Abbreviated);
        assert_eq!(form_for(&policy), Form::Full);
        assert_eq!(
            decide(&p2, Some("1.0.0"), &no_cooldown, now()).unwrap(),
            (Some("1.2.0".into()), Some("1.2.0".into()), None)
        );
    }

    #[test]
    fn up_to_date_has_no_reason_and_bad_packuments_are_errors() {
        let p = packument(&[("1.0.0", OLD)], "1.0.0");
        assert_eq!(decide(&p, Some("1.0.0"), &Policy::default(), now()).unwrap(), (Some("1.0.0".into()), None, None));
        assert_eq!(
            decide(&from_json(json!({"dist-tags": {"latest": "1"}})), None, &Policy::default(), now())
                .unwrap_err()
                .message(),
            "the packument has no `versions`"
        );
        assert_eq!(
            decide(&from_json(json!({"versions": {}})), None, &Policy::default(), now()).unwrap_err().message(),
            "the packument has no `dist-tags.latest`"
        );
        let bad = Policy { allowed: "not a range!".into(), ..Policy::default() };
        assert_eq!(decide(&p, None, &bad, now()).unwrap_err().exit_code(), 2);
    }
}
