//! The Prometheus textfile `<root>/metrics/tend.prom`, rewritten after every run for
//! node_exporter's textfile collector. Counters live across runs in `state/metrics.json` (the
//! ledger, which also keeps each server's last run for `tend status`); gauges are read from the
//! site's state (live releases, the last health record) each time the file is written.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::guard::Guard;
use crate::guard::effects::{Effect, Plan};
use crate::layout::Layout;
use crate::report::{CallRecord, RunReport};
use crate::site::Site;

/// One metric family tend writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricSpec {
    /// The family's name, as Prometheus sees it.
    pub name: &'static str,
    /// `counter`, `gauge` or `summary`.
    pub kind: &'static str,
    /// Its label names, in the order they are written.
    pub labels: &'static [&'static str],
    /// The HELP line's text.
    pub help: &'static str,
}

/// Every metric family tend writes: the one list the writer, the README and the Grafana
/// dashboard's test agree on.
pub const METRICS: &[MetricSpec] = &[
    MetricSpec {
        name: "tend_cleanup_bytes_freed_total",
        kind: "counter",
        labels: &[],
        help: "Bytes prune has freed (runs that were not dry runs).",
    },
    MetricSpec {
        name: "tend_cleanup_items_total",
        kind: "counter",
        labels: &["category"],
        help: "Items prune has removed, by category.",
    },
    MetricSpec {
        name: "tend_health_latency_seconds",
        kind: "summary",
        labels: &["server", "quantile"],
        help: "Ping latency quantiles of the live release's last health run.",
    },
    MetricSpec {
        name: "tend_health_passed",
        kind: "gauge",
        labels: &["server"],
        help: "1 when the live release passed its last health run, else 0.",
    },
    MetricSpec {
        name: "tend_health_rss_bytes",
        kind: "gauge",
        labels: &["server"],
        help: "Resident memory of the live release at rest during its last health run.",
    },
    MetricSpec {
        name: "tend_health_startup_seconds",
        kind: "gauge",
        labels: &["server"],
        help: "Time from spawn to the initialize answer in the live release's last health run.",
    },
    MetricSpec {
        name: "tend_health_timestamp_seconds",
        kind: "gauge",
        labels: &["server"],
        help: "When the live release's last health run happened (Unix time).",
    },
    MetricSpec {
        name: "tend_last_run_duration_seconds",
        kind: "gauge",
        labels: &["playbook"],
        help: "How long the last run of each playbook took.",
    },
    MetricSpec {
        name: "tend_last_run_timestamp_seconds",
        kind: "gauge",
        labels: &["playbook", "outcome"],
        help: "When the last run of each playbook with each outcome ended (Unix time); outcome is ok, failed, dry_run or dry_run_failed.",
    },
    MetricSpec {
        name: "tend_rollbacks_total",
        kind: "counter",
        labels: &["server"],
        help: "Rollbacks that switched a server's current release back.",
    },
    MetricSpec {
        name: "tend_runs_total",
        kind: "counter",
        labels: &["playbook", "outcome"],
        help: "Runs, by playbook and outcome (ok, failed, dry_run, dry_run_failed).",
    },
    MetricSpec {
        name: "tend_server_info",
        kind: "gauge",
        labels: &["server", "version"],
        help: "1 for the release each managed server runs.",
    },
    MetricSpec {
        name: "tend_test_success",
        kind: "gauge",
        labels: &["server", "suite"],
        help: "1 when the suite passed in the live release's last health run, 0 when it failed (skipped suites are left out).",
    },
    MetricSpec {
        name: "tend_updates_total",
        kind: "counter",
        labels: &["server", "result"],
        help: "Update attempts: success (a swap that was kept), rolled_back (rolled back in the same run), failed (a stage, test or swap failed and nothing went live).",
    },
];

/// The results `tend_updates_total` counts.
pub const UPDATE_RESULTS: [&str; 3] = ["success", "rolled_back", "failed"];

/// Primitives whose first argument names a server: a run that calls one is that server's
/// last run.
const PER_SERVER: [&str; 8] = ["check", "stage", "health", "swap", "monitor", "rollback", "adopt", "approve"];

/// A server's last run, as `tend status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastRun {
    /// The run id (its report is `reports/<id>.json`).
    pub id: String,
    /// The playbook's name, or the command (`tend swap`).
    pub playbook: String,
    /// When the run ended (RFC 3339).
    pub at: String,
    /// `ok`, `failed`, `dry_run` or `dry_run_failed`.
    pub outcome: String,
}

/// The count of runs of one playbook with one outcome, and when the last one ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RunTally {
    /// How many runs.
    pub count: u64,
    /// Unix time, in seconds.
    pub at: f64,
}

/// What the metrics count across runs (`state/metrics.json`), and each server's last run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Ledger {
    /// server -> result -> count.
    pub updates: BTreeMap<String, BTreeMap<String, u64>>,
    /// server -> rollbacks that switched its `current`.
    pub rollbacks: BTreeMap<String, u64>,
    /// Bytes prune removed, over every run that was not a dry run.
    pub cleanup_bytes_freed: u64,
    /// category -> items prune removed.
    pub cleanup_items: BTreeMap<String, u64>,
    /// playbook -> outcome -> tally.
    pub runs: BTreeMap<String, BTreeMap<String, RunTally>>,
    /// playbook -> seconds the last run took.
    pub last_duration: BTreeMap<String, f64>,
    /// server -> its last run.
    pub servers: BTreeMap<String, LastRun>,
}

impl Ledger {
    /// The ledger on disk; an empty one when there is none. A damaged one is started afresh
    /// (Prometheus reads that as a counter reset) with a warning.
    pub fn load(layout: &Layout) -> Ledger {
        let path = layout.metrics_state();
        let Ok(text) = std::fs::read_to_string(&path) else { return Ledger::default() };
        serde_json::from_str(&text).unwrap_or_else(|e| {
            tracing::warn!("{} is damaged ({e}); the metrics counters start again from zero", path.display());
            Ledger::default()
        })
    }

    /// Counts one run. `known` is the site's server names: only those get a last-run record.
    /// A dry run changes only the run metrics and the last-run records.
    pub fn add(&mut self, report: &RunReport, known: &BTreeSet<String>) {
        let outcome = run_outcome(report);
        let ended = unix_seconds(&report.ended);
        let tally = self.runs.entry(report.playbook.clone()).or_default().entry(outcome.to_owned()).or_default();
        tally.count += 1;
        tally.at = ended;
        self.last_duration.insert(report.playbook.clone(), seconds(report.duration_ms));
        for server in touched(&report.calls).into_iter().filter(|s| known.contains(s)) {
            let last = LastRun {
                id: report.id.clone(),
                playbook: report.playbook.clone(),
                at: report.ended.clone(),
                outcome: outcome.to_owned(),
            };
            self.servers.insert(server, last);
        }
        if report.dry_run {
            return;
        }
        for (server, result) in updates(&report.calls) {
            *self.updates.entry(server).or_default().entry(result.to_owned()).or_default() += 1;
        }
        for call in report.calls.iter().filter(|c| c.ok) {
            match call.primitive.as_str() {
                "rollback" if call.result["rolled_back"] == true => {
                    *self.rollbacks.entry(first_arg(call).to_owned()).or_default() += 1;
                }
                "prune" if call.result["dry_run"] == false => {
                    self.cleanup_bytes_freed += call.result["bytes_freed"].as_u64().unwrap_or(0);
                    for item in call.result["items"].as_array().into_iter().flatten() {
                        if item["action"] != "keep" {
                            let category = item["category"].as_str().unwrap_or("unknown").to_owned();
                            *self.cleanup_items.entry(category).or_default() += 1;
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// A run's `outcome` label: `ok` or `failed`, and `dry_run` or `dry_run_failed` for a dry run.
pub fn run_outcome(report: &RunReport) -> &'static str {
    match (report.dry_run, report.error.is_none()) {
        (false, true) => "ok",
        (false, false) => "failed",
        (true, true) => "dry_run",
        (true, false) => "dry_run_failed",
    }
}

fn first_arg(call: &CallRecord) -> &str {
    call.args.first().and_then(Value::as_str).unwrap_or("")
}

/// The servers a run's calls name (`check_all` names them in its results).
fn touched(calls: &[CallRecord]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for call in calls {
        if PER_SERVER.contains(&call.primitive.as_str()) {
            out.insert(first_arg(call).to_owned());
        } else if call.primitive == "check_all" {
            out.extend(
                call.result.as_array().into_iter().flatten().filter_map(|r| r["name"].as_str()).map(str::to_owned),
            );
        }
    }
    out
}

/// The update attempts of one run, in order: each swap that switched a server is a `success`,
/// or `rolled_back` when a later rollback in the run switched that same release out again; a
/// server whose stage, test of a staged release (`health(name, #{release})`) or swap failed,
/// and that no swap then switched, is one `failed`.
fn updates(calls: &[CallRecord]) -> Vec<(String, &'static str)> {
    let mut out: Vec<(String, &'static str)> = Vec::new();
    // server -> (index in `out`, the version its last kept swap put live)
    let mut live: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut failed: BTreeSet<String> = BTreeSet::new();
    for call in calls {
        let server = first_arg(call);
        match call.primitive.as_str() {
            "swap" if call.ok && call.result["swapped"] == true => {
                out.push((server.to_owned(), "success"));
                let to = call.result["to"].as_str().unwrap_or("").to_owned();
                live.insert(server.to_owned(), (out.len() - 1, to));
                failed.remove(server);
            }
            "swap" | "stage" if !call.ok => {
                failed.insert(server.to_owned());
            }
            "health"
                if call.args.get(1).is_some_and(|o| o.get("release").is_some())
                    && (!call.ok || call.result["passed"] != true) =>
            {
                failed.insert(server.to_owned());
            }
            "rollback" if call.ok && call.result["rolled_back"] == true => {
                if let Some((index, to)) = live.remove(server) {
                    if call.result["from"].as_str() == Some(to.as_str()) {
                        out[index].1 = "rolled_back";
                    }
                }
            }
            _ => {}
        }
    }
    out.extend(failed.into_iter().map(|s| (s, "failed")));
    out
}

/// Milliseconds as seconds, to the microsecond (so 0.21 ms is written 0.00021, not
/// 0.00020999999999999998).
fn seconds(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1_000_000.0
}

/// Unix seconds of an RFC 3339 time, to the millisecond tend writes; 0 when it does not parse.
fn unix_seconds(text: &str) -> f64 {
    crate::clock::parse_rfc3339(text).map_or(0.0, |t| t.unix_timestamp() as f64 + f64::from(t.millisecond()) / 1000.0)
}

/// The samples of the families, keyed by metric name, then by label values (in the order of
/// the family's labels).
#[derive(Debug, Default)]
pub struct Samples {
    families: BTreeMap<&'static str, BTreeMap<Vec<String>, f64>>,
}

impl Samples {
    /// Sets one sample; the label values follow the order of the family's `labels`.
    pub fn set(&mut self, name: &'static str, labels: &[&str], value: f64) {
        self.families.entry(name).or_default().insert(labels.iter().map(|l| (*l).to_owned()).collect(), value);
    }

    /// Sets a sample only where there is none yet (counters start at zero).
    fn init(&mut self, name: &'static str, labels: &[&str]) {
        self.families.entry(name).or_default().entry(labels.iter().map(|l| (*l).to_owned()).collect()).or_insert(0.0);
    }

    /// The Prometheus text format: families sorted by name, each with HELP and TYPE, samples
    /// sorted by label values; families without samples are left out.
    pub fn render(&self) -> Result<String> {
        let mut out = String::new();
        for (name, samples) in &self.families {
            let spec = METRICS
                .iter()
                .find(|m| m.name == *name)
                .ok_or_else(|| Error::failed(format!("internal: metric {name} is not declared in METRICS")))?;
            if samples.is_empty() {
                continue;
            }
            out.push_str(&format!("# HELP {name} {}\n# TYPE {name} {}\n", escape_help(spec.help), spec.kind));
            for (values, value) in samples {
                if values.len() != spec.labels.len() {
                    return Err(Error::failed(format!("internal: metric {name} takes labels {:?}", spec.labels)));
                }
                let labels: Vec<String> = spec
                    .labels
                    .iter()
                    .zip(values)
                    .map(|(label, value)| format!("{label}=\"{}\"", escape_label(value)))
                    .collect();
                let labels = if labels.is_empty() { String::new() } else { format!("{{{}}}", labels.join(",")) };
                out.push_str(&format!("{name}{labels} {}\n", number(*value)));
            }
        }
        Ok(out)
    }
}

/// A label value in the text format: backslash, double quote and line feed escaped.
pub fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A HELP text: backslash and line feed escaped.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Whole numbers without a fraction, others as Rust writes them (never in exponent form).
fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 { format!("{}", value as i64) } else { format!("{value}") }
}

/// The samples of the ledger's counters, plus the gauges read from the site now: each managed
/// server's release, and the last health record of each server's live version.
pub fn samples(site: &Site, layout: &Layout, ledger: &Ledger) -> Samples {
    let mut s = Samples::default();
    s.set("tend_cleanup_bytes_freed_total", &[], ledger.cleanup_bytes_freed as f64);
    for (category, n) in &ledger.cleanup_items {
        s.set("tend_cleanup_items_total", &[category], *n as f64);
    }
    for (playbook, outcomes) in &ledger.runs {
        for (outcome, tally) in outcomes {
            s.set("tend_runs_total", &[playbook, outcome], tally.count as f64);
            s.set("tend_last_run_timestamp_seconds", &[playbook, outcome], tally.at);
        }
    }
    for (playbook, seconds) in &ledger.last_duration {
        s.set("tend_last_run_duration_seconds", &[playbook], *seconds);
    }
    for (server, results) in &ledger.updates {
        for (result, n) in results {
            s.set("tend_updates_total", &[server, result], *n as f64);
        }
    }
    for (server, n) in &ledger.rollbacks {
        s.set("tend_rollbacks_total", &[server], *n as f64);
    }
    for info in super::servers(site) {
        let server = info.name.as_str();
        if let (true, Some(version)) = (info.managed, &info.current) {
            s.set("tend_server_info", &[server, version], 1.0);
            // Counters a server can grow start at zero, so that increase() sees the first one.
            for result in UPDATE_RESULTS {
                s.init("tend_updates_total", &[server, result]);
            }
            s.init("tend_rollbacks_total", &[server]);
        }
        let history = super::health::history(layout, server);
        let Some(entry) = history.get(info.current.as_deref().unwrap_or("unknown")) else { continue };
        s.set("tend_health_passed", &[server], if entry["passed"] == true { 1.0 } else { 0.0 });
        for (suite, status) in entry["suites"].as_object().into_iter().flatten() {
            match status.as_str() {
                Some("passed") => s.set("tend_test_success", &[server, suite], 1.0),
                Some("failed") => s.set("tend_test_success", &[server, suite], 0.0),
                _ => {}
            }
        }
        let figure = |key: &str| entry["metrics"][key].as_f64();
        for (quantile, key) in [("0.5", "latency_p50_ms"), ("0.95", "latency_p95_ms")] {
            if let Some(ms) = figure(key) {
                s.set("tend_health_latency_seconds", &[server, quantile], seconds(ms));
            }
        }
        if let Some(ms) = figure("startup_ms") {
            s.set("tend_health_startup_seconds", &[server], seconds(ms));
        }
        if let Some(mb) = figure("rss_mb") {
            s.set("tend_health_rss_bytes", &[server], (mb * 1024.0 * 1024.0).round());
        }
        if let Some(at) = entry["at"].as_str() {
            s.set("tend_health_timestamp_seconds", &[server], unix_seconds(at));
        }
    }
    s
}

/// After every run (`Runtime::run` calls it once the report is written): counts the run into
/// the ledger and rewrites `tend.prom`, both atomically through the guard (in a dry run too:
/// they are tend's own bookkeeping).
pub fn after_run(site: &Site, guard: &Guard, report: &RunReport) -> Result<()> {
    let layout = guard.layout();
    let mut ledger = Ledger::load(layout);
    let known: BTreeSet<String> = site.servers().into_iter().map(|s| s.name).collect();
    ledger.add(report, &known);
    let mut state = serde_json::to_vec_pretty(&ledger)
        .map_err(|e| Error::failed(format!("cannot encode the metrics ledger: {e}")))?;
    state.push(b'\n');
    let text = samples(site, layout, &ledger).render()?;
    let mut plan = Plan::new();
    if !layout.metrics().is_dir() {
        plan.push(Effect::CreateDir { path: layout.metrics() });
    }
    // Counters and a file derived from them: a power loss may take them back a run, which
    // Prometheus reads as a counter reset; they need no fsync.
    plan.push(Effect::WriteVolatile { path: layout.metrics_state(), contents: state, mode: 0o644 });
    plan.push(Effect::WriteVolatile { path: layout.metrics_file(), contents: text.into_bytes(), mode: 0o644 });
    guard.record(&plan)
}

/// Each server's last run, from the ledger.
pub fn last_runs(layout: &Layout) -> BTreeMap<String, LastRun> {
    Ledger::load(layout).servers
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(primitive: &str, args: Value, ok: bool, result: Value) -> CallRecord {
        CallRecord {
            primitive: primitive.into(),
            args: args.as_array().cloned().unwrap_or_default(),
            ok,
            result,
            error: (!ok).then(|| "failed".to_owned()),
            effects: Vec::new(),
            duration_ms: 1.0,
        }
    }

    fn report(playbook: &str, dry_run: bool, failed: bool, calls: Vec<CallRecord>) -> RunReport {
        RunReport {
            id: "20261124T120000Z-abcdef".into(),
            playbook: playbook.into(),
            site: None,
            token: None,
            dry_run,
            started: "2026-11-24T11:59:58.500Z".into(),
            ended: "2026-11-24T12:00:00.250Z".into(),
            duration_ms: 1750.0,
            outcome: if failed { "failed" } else { "ok" }.into(),
            error: failed.then(|| crate::report::ReportError {
                kind: "failed".into(),
                message: "boom".into(),
                exit_code: 1,
            }),
            result: Value::Null,
            calls,
            path: "/nonexistent".into(),
        }
    }

    fn known(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        assert_eq!(escape_label(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label("line\nnext"), "line\\nnext");
        assert_eq!(escape_label("plain-1.0.0"), "plain-1.0.0");
        assert_eq!(escape_help("a\\b\nc \"q\""), "a\\\\b\\nc \"q\"");
        let mut s = Samples::default();
        s.set("tend_runs_total", &["odd \"name\"\\\n.rhai", "ok"], 2.0);
        assert_eq!(
            s.render().unwrap(),
            "# HELP tend_runs_total Runs, by playbook and outcome (ok, failed, dry_run, dry_run_failed).\n# TYPE tend_runs_total counter\ntend_runs_total{playbook=\"odd \\\"name\\\"\\\\\\n.rhai\",outcome=\"ok\"} 2\n"
        );
    }

    #[test]
    fn families_and_samples_come_out_sorted_and_numbers_plain() {
        let mut s = Samples::default();
        s.set("tend_updates_total", &["zeta", "success"], 1.0);
        s.set("tend_health_latency_seconds", &["b", "0.95"], 0.0012);
        s.set("tend_updates_total", &["alpha", "failed"], 3.0);
        s.set("tend_health_latency_seconds", &["b", "0.5"], 0.0000001);
        let text = s.render().unwrap();
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                "tend_health_latency_seconds{server=\"b\",quantile=\"0.5\"} 0.0000001",
                "tend_health_latency_seconds{server=\"b\",quantile=\"0.95\"} 0.0012",
                "tend_updates_total{server=\"alpha\",result=\"failed\"} 3",
                "tend_updates_total{server=\"zeta\",result=\"success\"} 1",
            ]
        );
        assert!(text.contains("# TYPE tend_health_latency_seconds summary\n"));
        let mut bad = Samples::default();
        bad.set("tend_updates_total", &["only-one-label"], 1.0);
        assert!(bad.render().is_err());
    }

    #[test]
    fn metric_declarations_are_unique_and_lint_clean() {
        let names: BTreeSet<&str> = METRICS.iter().map(|m| m.name).collect();
        assert_eq!(names.len(), METRICS.len());
        for m in METRICS {
            assert!(m.name.starts_with("tend_"), "{}", m.name);
            assert_eq!(m.kind == "counter", m.name.ends_with("_total"), "{}", m.name);
            assert_eq!(m.kind == "summary", m.labels.contains(&"quantile"), "{}", m.name);
        }
    }

    #[test]
    fn a_swap_then_a_rollback_of_the_same_release_is_rolled_back() {
        let calls = vec![
            call("stage", json!(["srv", "1.3.0"]), true, json!({"name": "srv", "version": "1.3.0"})),
            call("health", json!(["srv", {"release": "1.3.0"}]), true, json!({"passed": true})),
            call("swap", json!(["srv", "1.3.0"]), true, json!({"from": "1.0.0", "to": "1.3.0", "swapped": true})),
            call("monitor", json!(["srv"]), true, json!({"passed": false})),
            call("rollback", json!(["srv"]), true, json!({"from": "1.3.0", "to": "1.0.0", "rolled_back": true})),
            call("swap", json!(["other", "2.0.0"]), true, json!({"from": "1.0.0", "to": "2.0.0", "swapped": true})),
        ];
        assert_eq!(updates(&calls), [("srv".to_owned(), "rolled_back"), ("other".to_owned(), "success")]);
        let mut ledger = Ledger::default();
        ledger.add(&report("update.rhai", false, false, calls), &known(&["srv", "other"]));
        assert_eq!(ledger.rollbacks, BTreeMap::from([("srv".to_owned(), 1)]));
        assert_eq!(ledger.updates["srv"], BTreeMap::from([("rolled_back".to_owned(), 1)]));
        assert_eq!(ledger.updates["other"], BTreeMap::from([("success".to_owned(), 1)]));
        assert_eq!(ledger.servers["srv"].outcome, "ok");
        assert_eq!(ledger.runs["update.rhai"]["ok"], RunTally { count: 1, at: 1_795_521_600.25 });
    }

    #[test]
    fn failures_count_once_per_server_unless_a_swap_followed() {
        let calls = vec![
            call("stage", json!(["a", "2.0.0"]), false, Value::Null),
            call("stage", json!(["a", "2.0.0"]), false, Value::Null),
            call("health", json!(["b", {"release": "1.1.0"}]), true, json!({"passed": false})),
            // The live release's health is no update.
            call("health", json!(["c"]), true, json!({"passed": false})),
            call("stage", json!(["d", "1.1.0"]), false, Value::Null),
            call("swap", json!(["d", "1.0.1"]), true, json!({"from": "1.0.0", "to": "1.0.1", "swapped": true})),
            call("swap", json!(["e", "1.2.0"]), false, Value::Null),
            // Already live: nothing switched.
            call("swap", json!(["f", "1.0.0"]), true, json!({"from": "1.0.0", "to": "1.0.0", "swapped": false})),
            // A rollback of another release than the swap put live leaves the swap a success.
            call("swap", json!(["g", "1.1.0"]), true, json!({"from": "1.0.0", "to": "1.1.0", "swapped": true})),
            call("rollback", json!(["g", "0.9.0"]), true, json!({"from": "0.9.5", "to": "0.9.0", "rolled_back": true})),
        ];
        assert_eq!(
            updates(&calls),
            [
                ("d".to_owned(), "success"),
                ("g".to_owned(), "success"),
                ("a".to_owned(), "failed"),
                ("b".to_owned(), "failed"),
                ("e".to_owned(), "failed")
            ]
        );
    }

    #[test]
    fn a_dry_run_counts_only_the_run_and_prune_counts_what_it_removed() {
        let prune = |dry_run: bool| {
            call(
                "prune",
                json!([]),
                true,
                json!({"dry_run": dry_run, "bytes_freed": 100, "items": [
                    {"category": "releases", "action": "remove"},
                    {"category": "backups", "action": "archive_and_remove"},
                    {"category": "backups", "action": "keep"},
                ], "errors": []}),
            )
        };
        let swap = call("swap", json!(["srv", "1.1.0"]), true, json!({"to": "1.1.0", "swapped": true}));
        let mut ledger = Ledger::default();
        ledger.add(&report("tend prune", true, false, vec![prune(true), swap.clone()]), &known(&["srv"]));
        assert_eq!(ledger.cleanup_bytes_freed, 0);
        assert!(ledger.updates.is_empty() && ledger.cleanup_items.is_empty());
        assert_eq!(ledger.runs["tend prune"]["dry_run"].count, 1);
        assert_eq!(ledger.servers["srv"].outcome, "dry_run");
        ledger.add(&report("tend prune", false, true, vec![prune(false), prune(false)]), &known(&["srv"]));
        assert_eq!(ledger.cleanup_bytes_freed, 200);
        assert_eq!(ledger.cleanup_items, BTreeMap::from([("backups".to_owned(), 2), ("releases".to_owned(), 2)]));
        assert_eq!(ledger.runs["tend prune"]["failed"].count, 1);
        assert_eq!(ledger.last_duration["tend prune"], 1.75);
        assert_eq!((seconds(0.21), seconds(3.53), seconds(511.415904)), (0.00021, 0.00353, 0.511416));
        // A server the site does not know gets no last-run record.
        ledger.add(
            &report("p.rhai", false, false, vec![call("check", json!(["ghost"]), false, Value::Null)]),
            &known(&["srv"]),
        );
        assert!(!ledger.servers.contains_key("ghost"));
    }
}
