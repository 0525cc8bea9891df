//! The metrics textfile, the Grafana dashboard over it, and `tend status`: against
//! tend-fixture-mcp releases from a real Verdaccio (deploy's site), and against a root laid out
//! by hand where the figures must come out exactly.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use tend::ops::metrics::METRICS;

use super::deploy::{ALL, site};
use crate::util::{Done, Test};

/// Families whose values are clock readings: masked as `<v>` in exact checks.
const CLOCKED: [&str; 2] = ["tend_last_run_duration_seconds", "tend_last_run_timestamp_seconds"];

/// Families whose values a real health probe measures.
const MEASURED: [&str; 4] = [
    "tend_health_latency_seconds",
    "tend_health_startup_seconds",
    "tend_health_rss_bytes",
    "tend_health_timestamp_seconds",
];

/// The textfile with the values of `families` masked as `<v>`; panics if one is not a
/// plausible number (a timestamp between `since` and now, anything else positive).
fn masked(text: &str, since: f64, families: &[&str]) -> String {
    let now = unix_now() + 1.0;
    text.lines()
        .map(|line| {
            let name = line.split(['{', ' ']).next().unwrap_or("");
            if line.starts_with('#') || !families.contains(&name) {
                return format!("{line}\n");
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            let v: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {line}"));
            if name.ends_with("_timestamp_seconds") {
                assert!(v >= since && v <= now, "{line}: not between {since} and {now}");
            } else {
                assert!(v > 0.0 && v < 1e9, "{line}");
            }
            format!("{series} <v>\n")
        })
        .collect()
}

fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

/// The sample lines of the families named.
fn samples_of(text: &str, families: &[&str]) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && families.contains(&l.split(['{', ' ']).next().unwrap_or("")))
        .map(str::to_owned)
        .collect()
}

/// The names in `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

const SWAP_THEN_ROLLBACK: &str = r#"# HELP tend_cleanup_bytes_freed_total Bytes prune has freed (runs that were not dry runs).
# TYPE tend_cleanup_bytes_freed_total counter
tend_cleanup_bytes_freed_total 0
# HELP tend_health_latency_seconds Ping latency quantiles of the live release's last health run.
# TYPE tend_health_latency_seconds summary
tend_health_latency_seconds{server="srv",quantile="0.5"} <v>
tend_health_latency_seconds{server="srv",quantile="0.95"} <v>
# HELP tend_health_passed 1 when the live release passed its last health run, else 0.
# TYPE tend_health_passed gauge
tend_health_passed{server="srv"} 1
# HELP tend_health_rss_bytes Resident memory of the live release at rest during its last health run.
# TYPE tend_health_rss_bytes gauge
tend_health_rss_bytes{server="srv"} <v>
# HELP tend_health_startup_seconds Time from spawn to the initialize answer in the live release's last health run.
# TYPE tend_health_startup_seconds gauge
tend_health_startup_seconds{server="srv"} <v>
# HELP tend_health_timestamp_seconds When the live release's last health run happened (Unix time).
# TYPE tend_health_timestamp_seconds gauge
tend_health_timestamp_seconds{server="srv"} <v>
# HELP tend_last_run_duration_seconds How long the last run of each playbook took.
# TYPE tend_last_run_duration_seconds gauge
tend_last_run_duration_seconds{playbook="tend adopt"} <v>
tend_last_run_duration_seconds{playbook="tend stage"} <v>
tend_last_run_duration_seconds{playbook="tend swap"} <v>
# HELP tend_last_run_timestamp_seconds When the last run of each playbook with each outcome ended (Unix time); outcome is ok, failed, dry_run or dry_run_failed.
# TYPE tend_last_run_timestamp_seconds gauge
tend_last_run_timestamp_seconds{playbook="tend adopt",outcome="ok"} <v>
tend_last_run_timestamp_seconds{playbook="tend stage",outcome="ok"} <v>
tend_last_run_timestamp_seconds{playbook="tend swap",outcome="failed"} <v>
# HELP tend_rollbacks_total Rollbacks that switched a server's current release back.
# TYPE tend_rollbacks_total counter
tend_rollbacks_total{server="srv"} 1
# HELP tend_runs_total Runs, by playbook and outcome (ok, failed, dry_run, dry_run_failed).
# TYPE tend_runs_total counter
tend_runs_total{playbook="tend adopt",outcome="ok"} 1
tend_runs_total{playbook="tend stage",outcome="ok"} 1
tend_runs_total{playbook="tend swap",outcome="failed"} 1
# HELP tend_server_info 1 for the release each managed server runs.
# TYPE tend_server_info gauge
tend_server_info{server="srv",version="1.0.0"} 1
# HELP tend_test_success 1 when the suite passed in the live release's last health run, 0 when it failed (skipped suites are left out).
# TYPE tend_test_success gauge
tend_test_success{server="srv",suite="compatibility"} 1
tend_test_success{server="srv",suite="health"} 1
tend_test_success{server="srv",suite="performance"} 1
tend_test_success{server="srv",suite="resource"} 1
tend_test_success{server="srv",suite="security"} 1
tend_test_success{server="srv",suite="tool_surface"} 1
# HELP tend_updates_total Update attempts: success (a swap that was kept), rolled_back (rolled back in the same run), failed (a stage, test or swap failed and nothing went live).
# TYPE tend_updates_total counter
tend_updates_total{server="srv",result="failed"} 0
tend_updates_total{server="srv",result="rolled_back"} 1
tend_updates_total{server="srv",result="success"} 0
"#;

#[test]
fn metrics_count_a_swap_rolled_back_in_its_run_then_add_up_across_runs() {
    let since = unix_now().floor();
    let site = site(ALL);
    site.ok(&["adopt", "srv"]);
    site.ok(&["stage", "srv", "1.3.0"]);
    // 1.3.0 fails once live: the monitor fails, the same run rolls it back, and the run fails (exit 1).
    let out = site.tend(&["--token-file", "token", "swap", "srv", "1.3.0", "--monitor"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let prom = site.root().join("metrics/tend.prom");
    let first = std::fs::read_to_string(&prom).unwrap();
    assert_eq!(masked(&first, since, &[&CLOCKED[..], &MEASURED[..]].concat()), SWAP_THEN_ROLLBACK);
    let ledger: Value =
        serde_json::from_str(&std::fs::read_to_string(site.root().join("state/metrics.json")).unwrap()).unwrap();
    assert_eq!(ledger["servers"]["srv"]["playbook"], "tend swap");
    assert_eq!(ledger["servers"]["srv"]["outcome"], "failed");
    let inode = std::fs::metadata(&prom).unwrap().ino();

    // A kept swap, a rollback in a run of its own, a swap refused by health, a dry run.
    site.ok(&["stage", "srv", "1.1.0"]);
    site.ok(&["swap", "srv", "1.1.0"]);
    site.ok(&["rollback", "srv"]);
    site.ok(&["stage", "srv", "1.2.0"]);
    site.fails(&["swap", "srv", "1.2.0"], 1);
    site.ok(&["prune", "--dry-run"]);
    let text = std::fs::read_to_string(&prom).unwrap();
    assert_eq!(
        samples_of(
            &text,
            &[
                "tend_updates_total",
                "tend_rollbacks_total",
                "tend_runs_total",
                "tend_cleanup_bytes_freed_total",
                "tend_server_info"
            ]
        ),
        [
            "tend_cleanup_bytes_freed_total 0",
            "tend_rollbacks_total{server=\"srv\"} 2",
            "tend_runs_total{playbook=\"tend adopt\",outcome=\"ok\"} 1",
            "tend_runs_total{playbook=\"tend prune\",outcome=\"dry_run\"} 1",
            "tend_runs_total{playbook=\"tend rollback\",outcome=\"ok\"} 1",
            "tend_runs_total{playbook=\"tend stage\",outcome=\"ok\"} 3",
            "tend_runs_total{playbook=\"tend swap\",outcome=\"failed\"} 2",
            "tend_runs_total{playbook=\"tend swap\",outcome=\"ok\"} 1",
            "tend_server_info{server=\"srv\",version=\"1.0.0\"} 1",
            "tend_updates_total{server=\"srv\",result=\"failed\"} 1",
            "tend_updates_total{server=\"srv\",result=\"rolled_back\"} 1",
            "tend_updates_total{server=\"srv\",result=\"success\"} 1",
        ]
    );
    // Replaced by a rename each time, never written in place, and no temp file left behind.
    assert_ne!(std::fs::metadata(&prom).unwrap().ino(), inode);
    assert_eq!(names_in(&site.root().join("metrics")), ["tend.prom"]);
    assert!(names_in(&site.root().join("state")).iter().all(|n| !n.contains(".tend-tmp-")));
}

/// A root laid out by hand: `srv` runs 2.0.0, whose last health run failed the performance
/// suite with known figures; `plain` is a client config entry tend does not manage.
fn fabricated() -> Test {
    let test = Test::new()
        .file(
            ".mcp.json",
            r#"{"mcpServers": {
                "srv": {"command": "npx", "args": ["-y", "tend-fixture-mcp@2.0.0"]},
                "plain": {"command": "node", "args": ["plain.js"]}
            }}"#,
        )
        .file("root/servers/srv/releases/2.0.0/release.json", r#"{"package": "tend-fixture-mcp", "version": "2.0.0"}"#)
        .file("root/servers/srv/releases/1.0.0/release.json", r#"{"package": "tend-fixture-mcp", "version": "1.0.0"}"#)
        .file(
            "root/state/health/srv.json",
            &json!({
                "2.0.0": {
                    "passed": false, "at": "2026-11-24T12:00:00.500Z", "run_id": "20261124T120000Z-0a1b2c",
                    "metrics": {"startup_ms": 132.84, "latency_p50_ms": 0.21, "latency_p95_ms": 150.5, "rss_mb": 41.5},
                    "suites": {"compatibility": "passed", "health": "passed", "performance": "failed",
                               "resource": "passed", "security": "passed", "tool_surface": "skipped"},
                },
                "1.0.0": {"passed": true, "at": "2026-11-20T12:00:00.000Z", "metrics": {}, "suites": {"health": "passed"}},
            })
            .to_string(),
        )
        .file("q\"b\\s.rhai", "1 + 1\n")
        .file("fails.rhai", "throw \"no\";\n");
    std::os::unix::fs::symlink("releases/2.0.0", test.path().join("root/servers/srv/current")).unwrap();
    test
}

fn run_in(done: &Done, args: &[&str]) -> std::process::Output {
    Command::new(crate::util::TEND).args(args).current_dir(done.path()).env_remove("TEND_TOKEN").output().unwrap()
}

#[test]
fn the_textfile_reads_the_live_release_and_its_health_and_escapes_labels() {
    let since = unix_now().floor();
    let done = fabricated().args(&["run", "q\"b\\s.rhai"]).run();
    let out = run_in(&done, &["run", "--dry-run", "fails.rhai"]);
    assert_eq!(out.status.code(), Some(1));
    let text = std::fs::read_to_string(done.path().join("root/metrics/tend.prom")).unwrap();
    let expected = r#"# HELP tend_cleanup_bytes_freed_total Bytes prune has freed (runs that were not dry runs).
# TYPE tend_cleanup_bytes_freed_total counter
tend_cleanup_bytes_freed_total 0
# HELP tend_health_latency_seconds Ping latency quantiles of the live release's last health run.
# TYPE tend_health_latency_seconds summary
tend_health_latency_seconds{server="srv",quantile="0.5"} 0.00021
tend_health_latency_seconds{server="srv",quantile="0.95"} 0.1505
# HELP tend_health_passed 1 when the live release passed its last health run, else 0.
# TYPE tend_health_passed gauge
tend_health_passed{server="srv"} 0
# HELP tend_health_rss_bytes Resident memory of the live release at rest during its last health run.
# TYPE tend_health_rss_bytes gauge
tend_health_rss_bytes{server="srv"} 43515904
# HELP tend_health_startup_seconds Time from spawn to the initialize answer in the live release's last health run.
# TYPE tend_health_startup_seconds gauge
tend_health_startup_seconds{server="srv"} 0.13284
# HELP tend_health_timestamp_seconds When the live release's last health run happened (Unix time).
# TYPE tend_health_timestamp_seconds gauge
tend_health_timestamp_seconds{server="srv"} 1795521600.5
# HELP tend_last_run_duration_seconds How long the last run of each playbook took.
# TYPE tend_last_run_duration_seconds gauge
tend_last_run_duration_seconds{playbook="fails.rhai"} <v>
tend_last_run_duration_seconds{playbook="q\"b\\s.rhai"} <v>
# HELP tend_last_run_timestamp_seconds When the last run of each playbook with each outcome ended (Unix time); outcome is ok, failed, dry_run or dry_run_failed.
# TYPE tend_last_run_timestamp_seconds gauge
tend_last_run_timestamp_seconds{playbook="fails.rhai",outcome="dry_run_failed"} <v>
tend_last_run_timestamp_seconds{playbook="q\"b\\s.rhai",outcome="ok"} <v>
# HELP tend_rollbacks_total Rollbacks that switched a server's current release back.
# TYPE tend_rollbacks_total counter
tend_rollbacks_total{server="srv"} 0
# HELP tend_runs_total Runs, by playbook and outcome (ok, failed, dry_run, dry_run_failed).
# TYPE tend_runs_total counter
tend_runs_total{playbook="fails.rhai",outcome="dry_run_failed"} 1
tend_runs_total{playbook="q\"b\\s.rhai",outcome="ok"} 1
# HELP tend_server_info 1 for the release each managed server runs.
# TYPE tend_server_info gauge
tend_server_info{server="srv",version="2.0.0"} 1
# HELP tend_test_success 1 when the suite passed in the live release's last health run, 0 when it failed (skipped suites are left out).
# TYPE tend_test_success gauge
tend_test_success{server="srv",suite="compatibility"} 1
tend_test_success{server="srv",suite="health"} 1
tend_test_success{server="srv",suite="performance"} 0
tend_test_success{server="srv",suite="resource"} 1
tend_test_success{server="srv",suite="security"} 1
# HELP tend_updates_total Update attempts: success (a swap that was kept), rolled_back (rolled back in the same run), failed (a stage, test or swap failed and nothing went live).
# TYPE tend_updates_total counter
tend_updates_total{server="srv",result="failed"} 0
tend_updates_total{server="srv",result="rolled_back"} 0
tend_updates_total{server="srv",result="success"} 0
"#;
    assert_eq!(masked(&text, since, &CLOCKED), expected);
}

/// `promtool`, installed from Debian's prometheus package when it is missing (once, as root,
/// without questions); `None` when that is not possible here.
fn promtool() -> Option<PathBuf> {
    let find = || {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).map(|d| d.join("promtool")).find(|p| p.is_file()))
            .unwrap_or(None)
    };
    if let Some(found) = find() {
        return Some(found);
    }
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let install = || {
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "--no-install-recommends", "prometheus"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdin(std::process::Stdio::null())
                .output()
                .is_ok_and(|o| o.status.success())
        };
        // The package lists may be missing or stale on a fresh machine: one update, one retry.
        if !install() {
            let _ = Command::new("apt-get").args(["update", "-qq"]).stdin(std::process::Stdio::null()).output();
            install();
        }
    });
    find()
}

#[test]
fn promtool_accepts_the_textfile_and_the_dashboard_queries() {
    let Some(promtool) = promtool() else {
        eprintln!("SKIPPED promtool_accepts_the_textfile: no promtool, and `apt-get install prometheus` failed here");
        return;
    };
    // Every family present: counters from a ledger, gauges from the root, odd playbook names.
    let ledger = json!({
        "updates": {"srv": {"success": 3, "rolled_back": 1, "failed": 2}},
        "rollbacks": {"srv": 1},
        "cleanup_bytes_freed": 123_456,
        "cleanup_items": {"releases": 2, "backups": 1},
    });
    let done = fabricated().file("root/state/metrics.json", &ledger.to_string()).args(&["run", "q\"b\\s.rhai"]).run();
    run_in(&done, &["run", "--dry-run", "fails.rhai"]);
    let prom = done.path().join("root/metrics/tend.prom");
    let text = std::fs::read_to_string(&prom).unwrap();
    let families: BTreeSet<&str> =
        text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
    assert_eq!(families, METRICS.iter().map(|m| m.name).collect::<BTreeSet<_>>(), "{text}");
    let out =
        Command::new(&promtool).args(["check", "metrics"]).stdin(std::fs::File::open(&prom).unwrap()).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics:\n{said}\n{text}");

    // Each dashboard query parses as PromQL (Grafana's variables replaced by values).
    let rules: Vec<Value> = dashboard_queries()
        .iter()
        .enumerate()
        .filter(|(_, q)| !q.starts_with("label_values("))
        .map(|(i, q)| {
            let expr = q.replace("$__range", "1d").replace("$instance", ".*").replace("$server", ".*");
            json!({ "record": format!("tend:dashboard_query_{i}"), "expr": expr })
        })
        .collect();
    let file = done.path().join("dashboard-rules.yml");
    // JSON is YAML: promtool reads it as a rules file.
    std::fs::write(&file, json!({ "groups": [{ "name": "dashboard", "rules": rules }] }).to_string()).unwrap();
    let out = Command::new(&promtool).args(["check", "rules"]).arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/tend.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect("the dashboard is JSON")
}

/// Every PromQL expression of the dashboard: panel targets and template variable queries.
fn dashboard_queries() -> Vec<String> {
    let d = dashboard();
    let mut out: Vec<String> = Vec::new();
    for panel in d["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push(target["expr"].as_str().expect("every target has an expr").to_owned());
        }
    }
    for var in d["templating"]["list"].as_array().unwrap() {
        out.push(var["query"]["query"].as_str().unwrap().to_owned());
        assert_eq!(var["definition"], var["query"]["query"]);
    }
    out
}

/// The `tend_...` names an expression uses.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("tend_") {
        let boundary = at == 0 || !rest[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        let name: String = rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if boundary {
            names.push(name.clone());
        }
        rest = &rest[at + name.len()..];
    }
    names
}

#[test]
fn the_grafana_dashboard_queries_only_metrics_tend_writes() {
    let d = dashboard();
    assert!(d["schemaVersion"].as_u64().unwrap() >= 36);
    assert_eq!(d["__inputs"][0]["name"], "DS_PROMETHEUS");
    assert_eq!(d["__inputs"][0]["pluginId"], "prometheus");
    let written: BTreeSet<&str> = METRICS.iter().map(|m| m.name).collect();
    let mut used = BTreeSet::new();
    for expr in dashboard_queries() {
        let names = metric_names(&expr);
        assert!(!names.is_empty(), "{expr} reads no tend metric");
        for name in names {
            assert!(written.contains(name.as_str()), "{expr}: tend writes no metric {name}");
            used.insert(name);
        }
    }
    for needed in [
        "tend_test_success",
        "tend_updates_total",
        "tend_rollbacks_total",
        "tend_health_latency_seconds",
        "tend_cleanup_bytes_freed_total",
        "tend_last_run_timestamp_seconds",
        "tend_server_info",
    ] {
        assert!(used.contains(needed), "no panel shows {needed}");
    }
    let vars = d["templating"]["list"].as_array().unwrap();
    let server = vars.iter().find(|v| v["name"] == "server").expect("a server variable");
    let query = server["query"]["query"].as_str().unwrap();
    assert!(query.starts_with("label_values(tend_server_info") && query.ends_with(", server)"), "{query}");
    let mut ids = BTreeSet::new();
    for panel in d["panels"].as_array().unwrap() {
        assert!(ids.insert(panel["id"].as_u64().unwrap()), "panel id {} twice", panel["id"]);
        assert!(panel["gridPos"]["w"].as_u64().is_some_and(|w| w > 0 && w <= 24), "{}", panel["title"]);
        if panel["type"] != "row" {
            assert_eq!(panel["datasource"]["uid"], "${DS_PROMETHEUS}", "{}", panel["title"]);
            for target in panel["targets"].as_array().unwrap() {
                assert_eq!(target["datasource"]["uid"], "${DS_PROMETHEUS}", "{}", panel["title"]);
                let expr = target["expr"].as_str().unwrap();
                if expr.contains("server") && !expr.contains("by (") {
                    assert!(expr.contains("server=~\"$server\""), "{expr} ignores the server variable");
                }
            }
        }
    }
    assert_eq!(metric_names("a_tend_x + tend_y{le=\"1\"} / rate(tend_z_total[5m])"), ["tend_y", "tend_z_total"]);
}

/// Splits a line of the status table into its cells (columns are two or more spaces apart).
fn cells(line: &str) -> Vec<String> {
    line.split("  ").map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned).collect()
}

#[test]
fn status_shows_candidate_health_last_run_and_processes_and_survives_a_dead_registry() {
    let site = site(ALL);
    site.ok(&["adopt", "srv"]);
    site.ok(&["stage", "srv", "1.1.0"]);
    site.ok(&["swap", "srv", "1.1.0"]);
    let live = site.root().join("servers/srv/releases/1.1.0");
    let mut user = Command::new("sleep").arg("30").current_dir(&live).spawn().unwrap();
    // The fixtures were published just now: four days on, the 3-day cooldown has passed.
    let later = time::OffsetDateTime::now_utc() + time::Duration::days(4) + time::Duration::hours(1);
    let later = later.format(&time::format_description::well_known::Rfc3339).unwrap();
    let reports = names_in(&site.root().join("reports")).len();

    let out = site.tend_env(&["--json", "status"], &[("TEND_NOW", &later)]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let srv = status.as_array().unwrap().iter().find(|s| s["name"] == "srv").unwrap().clone();
    let run_id = srv["last_run"]["id"].as_str().unwrap().to_owned();
    let p95 = srv["health"]["latency_p95_ms"].as_f64().unwrap();
    assert_eq!(
        (&srv["current"], &srv["previous"], &srv["latest"], &srv["candidate"], &srv["kind"], &srv["reason"]),
        (&json!("1.1.0"), &json!("1.0.0"), &json!("1.3.0"), &json!("1.3.0"), &json!("minor"), &Value::Null)
    );
    assert_eq!(srv["health"]["passed"], true);
    assert_eq!(
        (&srv["last_run"]["playbook"], &srv["last_run"]["outcome"], &srv["check_error"]),
        (&json!("tend swap"), &json!("ok"), &Value::Null)
    );
    assert_eq!(
        srv["releases"],
        json!([
            { "version": "1.1.0", "processes": 1, "role": "current" },
            { "version": "1.0.0", "processes": 0, "role": "previous" },
        ])
    );

    let out = site.tend_env(&["status"], &[("TEND_NOW", &later)]);
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(cells(lines[0]), ["SERVER", "CURRENT", "CANDIDATE", "HEALTH", "LAST RUN", "RELEASES", "WHY"]);
    assert_eq!(cells(lines[1]), ["other", "-", "-", "-", "-", "-", "no npm package"]);
    assert_eq!(
        cells(lines[2]),
        [
            "srv".to_owned(),
            "1.1.0".to_owned(),
            "1.3.0".to_owned(),
            format!("passed, p95 {p95} ms, 4d ago"),
            format!("ok 4d ago: tend swap ({run_id})"),
            "1.1.0 (current, 1 proc), 1.0.0 (previous)".to_owned(),
            "minor update".to_owned(),
        ]
    );
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(names_in(&site.root().join("reports")).len(), reports, "status is not a run");

    // A registry that does not answer is an error cell, not a failed command.
    let toml = site.path().join("tend.toml");
    let original = std::fs::read_to_string(&toml).unwrap();
    let dead =
        original
            .lines()
            .map(|l| {
                if l.starts_with("registry = ") {
                    "registry = \"http://127.0.0.1:9/\"".to_owned()
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
    std::fs::write(&toml, dead).unwrap();
    let out = site.tend(&["--json", "status"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let srv = status.as_array().unwrap().iter().find(|s| s["name"] == "srv").unwrap().clone();
    let error = srv["check_error"].as_str().unwrap();
    assert!(error.contains("tend-fixture-mcp") && error.contains("127.0.0.1:9"), "{error}");
    assert_eq!((&srv["candidate"], &srv["current"]), (&Value::Null, &json!("1.1.0")));
    let text = String::from_utf8(site.tend(&["status"]).stdout).unwrap();
    let row = cells(text.lines().nth(2).unwrap());
    assert_eq!((row[2].as_str(), row[6].as_str()), ("error", error));
    // Offline, the registry is not asked at all.
    let text = String::from_utf8(site.tend(&["status", "--offline"]).stdout).unwrap();
    let row = cells(text.lines().nth(2).unwrap());
    assert_eq!((row[2].as_str(), row[6].as_str()), ("-", "not checked"));
    user.kill().unwrap();
    user.wait().unwrap();
}
