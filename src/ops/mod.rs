//! Operations: plain Rust, no Rhai. Each is reached from a playbook primitive, a CLI command
//! and the library alike; `builtins()` declares the primitives over them.

pub mod check;
pub mod deploy;
pub mod health;
pub mod launch;
pub mod metrics;
pub mod notify;
pub mod prune;
pub mod stage;
pub mod status;

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::script::primitives::{ParamType, Primitive};
use crate::site::Site;

/// One server as `servers()` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerInfo {
    pub name: String,
    pub package: Option<String>,
    /// The live version: the managed release's, else the version the client config pins.
    pub current: Option<String>,
    /// True when `<root>/servers/<name>/current` points at a release tend installed.
    pub managed: bool,
    /// The client config that lists it.
    pub client: Option<String>,
}

/// Every server of the site's client configs (and of `[servers]`).
pub fn servers(site: &Site) -> Vec<ServerInfo> {
    let layout = Layout::new(&site.root);
    site.servers()
        .into_iter()
        .map(|entry| {
            let managed_version = managed_version(&layout, &entry.name);
            ServerInfo {
                managed: managed_version.is_some(),
                current: managed_version.or_else(|| entry.package.as_ref().and_then(|p| p.version.clone())),
                package: entry.package.map(|p| p.name),
                client: entry.client.map(|c| c.display().to_string()),
                name: entry.name,
            }
        })
        .collect()
}

/// The version in the `release.json` that `current` points at, if any.
pub(crate) fn managed_version(layout: &Layout, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(layout.current(name).join("release.json")).ok()?;
    let manifest: Value = serde_json::from_str(&text).ok()?;
    manifest.get("version")?.as_str().map(str::to_owned)
}

/// Log levels a playbook may use.
fn log(level: &str, message: &str) -> Result<()> {
    match level {
        "error" => tracing::error!(target: "playbook", "{message}"),
        "warn" => tracing::warn!(target: "playbook", "{message}"),
        "info" => tracing::info!(target: "playbook", "{message}"),
        "debug" => tracing::debug!(target: "playbook", "{message}"),
        "trace" => tracing::trace!(target: "playbook", "{message}"),
        other => {
            return Err(Error::failed(format!("unknown log level `{other}`; use error, warn, info, debug or trace")));
        }
    }
    Ok(())
}

fn arg_str(args: &[Value], i: usize) -> &str {
    args.get(i).and_then(Value::as_str).unwrap_or("")
}

/// The `notify` primitives: the message goes to the log (at its level) and the webhooks.
fn notify_and_log(call: &crate::script::primitives::Call<'_>, message: &notify::Message) -> Value {
    let level = if matches!(message.level.as_str(), "error" | "warn") { message.level.as_str() } else { "info" };
    let _ = log(level, &format!("notify: {}", message.message));
    serde_json::to_value(notify::send(call, message)).unwrap_or_default()
}

const HEALTH_RETURNS: &str = "#{name, version, target, command, passed, suites: #{health, compatibility, performance, resource, security, tool_surface}, metrics: #{startup_ms, latency_p50_ms, latency_p95_ms, rss_mb, load_rss_mb, cpu_percent, load_cpu_percent, threads, fds, processes}, protocol_version, server_info, tools, resources, prompts, fingerprint, tool_changes, errors, warnings, stderr, shutdown, duration_ms}";

/// The primitives every runtime has.
pub fn builtins() -> Vec<Primitive> {
    vec![
        Primitive::new("servers", "array of #{name, package, current, managed, client}", "every server of the site's client configs, with its npm package and live version")
            .body(|call, _| Ok(serde_json::to_value(servers(call.site)).unwrap_or_default())),
        Primitive::new("site", "map: policy, thresholds, retention, monitor, limits, servers", "the site's effective settings, per-server overrides merged under `servers[name]`")
            .body(|call, _| Ok(call.site.to_json())),
        Primitive::new("dry_run", "bool", "true when the run only shows its effects (--dry-run)").body(|call, _| Ok(Value::Bool(call.dry_run()))),
        Primitive::new("log", "()", "writes a message to tend's log at a level: error, warn, info, debug, trace")
            .param("level", ParamType::String)
            .param("message", ParamType::String)
            .body(|_, args| log(arg_str(&args, 0), arg_str(&args, 1)).map(|()| Value::Null)),
        Primitive::new(
            "notify",
            "#{event, webhooks, delivered, failed, dry_run}",
            "sends a message to the site's [[notify]] webhooks (event `failure` for level error, else `message`) and logs it; never fails the run",
        )
        .param("level", ParamType::String)
        .param("message", ParamType::String)
        .body(|call, args| {
            let (level, text) = (arg_str(&args, 0), arg_str(&args, 1));
            let level = if matches!(level, "error" | "warn" | "info") { level } else { "info" };
            let event = if level == "error" { crate::site::Event::Failure } else { crate::site::Event::Message };
            let mut message = notify::Message::new(event, text);
            message.level = level.to_owned();
            Ok(notify_and_log(call, &message))
        }),
        Primitive::new(
            "notify",
            "as notify(level, message)",
            "sends a structured message: #{event: rollback|failure|update|prune|message, message, server, from, to, level}",
        )
        .param("message", ParamType::Map)
        .body(|call, args| {
            Ok(notify_and_log(call, &notify::from_map(args.first().unwrap_or(&Value::Null))?))
        }),
        Primitive::new(
            "fail",
            "()",
            "marks the run as failed (exit 1, a `failure` notification at its end) with this message; the playbook goes on and its result is kept in the report",
        )
        .param("message", ParamType::String)
        .body(|_, args| {
            tracing::error!(target: "playbook", "{}", arg_str(&args, 0));
            Ok(Value::Null)
        }),
        Primitive::new("check", "#{name, package, current, latest, candidate, update_available, kind, reason, registry, source}", "the newest version of a server's package that the site's policy allows, and why it differs from latest")
            .param("name", ParamType::String)
            .body(|call, args| {
                let name = arg_str(&args, 0).to_owned();
                let mut results = check::check(call, &[name])?;
                Ok(serde_json::to_value(results.remove(0)).unwrap_or_default())
            }),
        Primitive::new("check_all", "array of check() maps", "check() for every server with an npm package, fetched concurrently")
            .body(|call, _| check::check(call, &[]).map(|r| serde_json::to_value(r).unwrap_or_default())),
        Primitive::new("prune", "#{dry_run, items: [#{path, category, server, age_days, bytes, action, reason}], bytes_freed, errors}", "removes what retention no longer keeps: staging, old releases, backups, logs, cache, reports; anything tend did not create is listed as unknown and left alone")
            .scope(crate::Scope::Prune)
            .body(|call, _| prune::prune(call, None).map(|r| serde_json::to_value(r).unwrap_or_default())),
        Primitive::new("prune", "as prune()", "prune with per-call retention overrides, e.g. #{keep_releases: 1, backups_days: 7}")
            .param("overrides", ParamType::Map)
            .scope(crate::Scope::Prune)
            .body(|call, args| prune::prune(call, args.first()).map(|r| serde_json::to_value(r).unwrap_or_default())),
        Primitive::new("stage", "#{name, version, path, integrity, digest, reused}", "download, verify, extract and install a version of a server into an immutable release; idempotent")
            .param("name", ParamType::String)
            .param("version", ParamType::String)
            .scope(crate::Scope::Stage)
            .body(|call, args| {
                let (name, version) = (arg_str(&args, 0).to_owned(), arg_str(&args, 1).to_owned());
                stage::stage(call, &name, Some(&version)).map(|s| serde_json::to_value(s).unwrap_or_default())
            }),
        Primitive::new("stage", "as stage(name, version)", "stage the check's candidate for a server")
            .param("name", ParamType::String)
            .scope(crate::Scope::Stage)
            .body(|call, args| {
                let name = arg_str(&args, 0).to_owned();
                stage::stage(call, &name, None).map(|s| serde_json::to_value(s).unwrap_or_default())
            }),
        Primitive::new("health", HEALTH_RETURNS, "starts a server (the live one, or an installed release), speaks MCP to it, measures it and judges it: suites health, compatibility, performance, resource, security, tool_surface")
            .param("name", ParamType::String)
            .body(|call, args| {
                let name = arg_str(&args, 0).to_owned();
                health::health(call, &name, None).map(|r| serde_json::to_value(r).unwrap_or_default())
            }),
        Primitive::new("health", "as health(name)", "health with options: #{release: VERSION} tests an installed release; any [thresholds] or [probe] key, and on_tool_change, override the site's for this call")
            .param("name", ParamType::String)
            .param("options", ParamType::Map)
            .body(|call, args| {
                let name = arg_str(&args, 0).to_owned();
                health::health(call, &name, args.get(1)).map(|r| serde_json::to_value(r).unwrap_or_default())
            }),
        Primitive::new("approve", "#{name, version, fingerprint}", "accepts the changed tool surface of an installed release: health passes on_tool_change = \"fail\" for exactly that fingerprint")
            .param("name", ParamType::String)
            .param("version", ParamType::String)
            .scope(crate::Scope::Deploy)
            .body(|call, args| health::approve(call, arg_str(&args, 0), arg_str(&args, 1))),
        Primitive::new("adopt", "#{name, adopted, version, client, command, args, backup, note, diff}", "takes a server over from its client config: stages the pinned version (or the newest allowed), makes it current, backs up the client config and rewrites the entry to start through current")
            .param("name", ParamType::String)
            .scope(crate::Scope::Deploy)
            .body(|call, args| deploy::adopt(call, arg_str(&args, 0))),
        Primitive::new("swap", "#{name, from, to, swapped, backup, switch_us}", "puts a staged, verified, healthy release live: backup of the current one, one atomic switch of current, then a check that the live server is the new release (switched back if not)")
            .param("name", ParamType::String)
            .param("version", ParamType::String)
            .scope(crate::Scope::Deploy)
            .body(|call, args| deploy::swap(call, arg_str(&args, 0), arg_str(&args, 1))),
        Primitive::new("monitor", "#{name, passed, samples, failures, failure_limit}", "probes the live release count times, interval apart; more than failure_limit failed probes fail it")
            .param("name", ParamType::String)
            .body(|call, args| deploy::monitor(call, arg_str(&args, 0), None)),
        Primitive::new("monitor", "as monitor(name)", "monitor with #{count, interval, failure_limit} over the site's [monitor]")
            .param("name", ParamType::String)
            .param("options", ParamType::Map)
            .body(|call, args| deploy::monitor(call, arg_str(&args, 0), args.get(1))),
        Primitive::new("rollback", "#{name, from, to, rolled_back, restored_from}", "switches current back to the previous release")
            .param("name", ParamType::String)
            .scope(crate::Scope::Rollback)
            .body(|call, args| deploy::rollback(call, arg_str(&args, 0), None)),
        Primitive::new("rollback", "as rollback(name)", "switches current to any installed release, restoring it from its newest backup when it was pruned")
            .param("name", ParamType::String)
            .param("version", ParamType::String)
            .scope(crate::Scope::Rollback)
            .body(|call, args| deploy::rollback(call, arg_str(&args, 0), Some(arg_str(&args, 1)))),
    ]
}
