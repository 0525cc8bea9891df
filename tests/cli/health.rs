//! `tend test` and the `health` primitive, against fixture servers that misbehave on purpose
//! (tests/fixtures/servers/fixture-server.js), real servers from npm, and releases staged from
//! a real registry.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use super::{SECRET, token_line};
use crate::util::{self, TEND, Test};

/// Short timeouts so that the failing fixtures finish quickly.
const FAST: &str = "[probe]\ninitialize_timeout = \"2s\"\nrequest_timeout = \"1s\"\nshutdown_grace = \"500ms\"\n";

fn fixture_script() -> PathBuf {
    util::npm::repo_root().join("tests/fixtures/servers/fixture-server.js")
}

/// A client config entry starting the fixture server in `mode` (with extra arguments).
fn fixture_entry(mode: &str, extra: &[&str]) -> Value {
    let mut args = vec![fixture_script().display().to_string(), mode.to_owned()];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    json!({ "command": "node", "args": args })
}

fn mcp_json(servers: &[(&str, Value)]) -> String {
    let map: serde_json::Map<String, Value> = servers.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
    json!({ "mcpServers": map }).to_string()
}

/// `tend --json test NAME` on a site with the one fixture server `srv`; the parsed report.
fn probe(mode: &str, toml: &str, status: i32) -> (Value, util::Done) {
    let done = Test::new()
        .site(toml)
        .file(".mcp.json", &mcp_json(&[("srv", fixture_entry(mode, &[]))]))
        .args(&["--json", "test", "srv"])
        .status(status)
        .run();
    let report: Value = serde_json::from_str(&done.stdout()).expect("the report is JSON");
    (report, done)
}

/// Live (non-zombie) processes whose process group is `pgid`.
fn group_left(pgid: u64) -> Vec<String> {
    let mut left = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(2).and_then(|g| g.parse::<u64>().ok()) == Some(pgid) {
            left.push(format!("{} {}", entry.file_name().to_string_lossy(), fields[0]));
        }
    }
    left
}

fn assert_group_gone(report: &Value) {
    let pid = report["pid"].as_u64().expect("the report names the server's pid");
    assert_eq!(group_left(pid), Vec::<String>::new(), "processes of the server's group are left");
}

fn statuses(report: &Value) -> Vec<(String, String)> {
    report["suites"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v["status"].as_str().unwrap_or("?").to_owned()))
        .collect()
}

fn status_of<'a>(report: &'a Value, suite: &str) -> &'a str {
    report["suites"][suite]["status"].as_str().unwrap_or("?")
}

#[test]
fn test_passes_a_well_behaved_server_and_shows_every_suite() {
    let (report, done) = probe("good", "", 0);
    assert_eq!(report["passed"], true, "{report:#}");
    let all_passed: Vec<(String, String)> =
        ["health", "compatibility", "performance", "resource", "security", "tool_surface"]
            .iter()
            .map(|s| ((*s).to_owned(), "passed".to_owned()))
            .collect();
    assert_eq!(statuses(&report), all_passed);
    assert_eq!(report["tools"], json!(["echo", "add", "sleep"]), "both pages of tools/list");
    assert_eq!((report["resources"].as_u64(), report["prompts"].as_u64()), (Some(1), Some(1)));
    assert_eq!(report["protocol_version"], "2025-11-25");
    assert_eq!(report["server_info"], json!({ "name": "tend-fixture", "version": "0.0.0" }));
    assert_eq!(report["target"], "entry");
    for metric in ["startup_ms", "latency_p50_ms", "latency_p95_ms", "rss_mb", "cpu_percent", "threads", "fds"] {
        assert!(report["metrics"][metric].is_number(), "metric {metric} measured: {report:#}");
    }
    assert_eq!(report["suites"]["performance"]["limits"], json!({ "startup_ms": 5000, "latency_p95_ms": 100 }));
    assert_eq!(report["shutdown"]["how"], "stdin", "a good server leaves when its stdin closes");
    assert_group_gone(&report);
    // The result is kept for swap and status.
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(done.path().join("root/state/health/srv.json")).unwrap())
            .unwrap();
    assert_eq!(state["0.0.0"]["passed"], true);
    assert_eq!(state["0.0.0"]["fingerprint"], report["fingerprint"]);

    // The table.
    let out = Command::new(TEND).args(["test", "srv"]).current_dir(done.path()).output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{table}");
    assert!(table.starts_with("srv 0.0.0 (entry): passed in "), "{table}");
    assert!(table.contains("\nSUITE          RESULT   FIGURES (LIMIT)\nhealth         passed   prompts 1, resources 1, tools 3, pings 10\n"), "{table}");
    assert!(table.contains("\nperformance    passed   startup_ms "), "{table}");
}

#[test]
fn a_server_that_never_answers_initialize_fails_health_and_is_stopped() {
    let (report, _) = probe("hang", FAST, 1);
    assert_eq!(report["errors"], json!(["health: no answer to `initialize` within 2s"]));
    assert_eq!(status_of(&report, "health"), "failed");
    assert_eq!(status_of(&report, "compatibility"), "skipped");
    assert_eq!(report["shutdown"]["how"], "term");
    assert_group_gone(&report);
}

#[test]
fn a_server_that_exits_after_initialize_fails_health_with_its_stderr() {
    let (report, _) = probe("exit-after-init", FAST, 1);
    assert_eq!(report["errors"], json!(["health: the server exited (exit code 3) before answering `tools/list`"]));
    assert_eq!(report["stderr"], "fatal: crashed on purpose");
    assert_eq!(report["shutdown"]["how"], "exited");
    assert_group_gone(&report);
}

#[test]
fn a_banner_on_stdout_is_a_protocol_violation_quoted_in_the_report() {
    let (report, _) = probe("banner", FAST, 1);
    assert_eq!(
        report["errors"],
        json!([
            "health: protocol violation: stdout line 1 is not a JSON-RPC message: \"Starting fixture server on stdio...\" (stdout carries only JSON-RPC; logs belong on stderr)"
        ])
    );
    assert_group_gone(&report);
}

#[test]
fn a_protocol_version_tend_does_not_speak_fails_compatibility() {
    let (report, _) = probe("bad-version", FAST, 1);
    assert_eq!(
        report["errors"],
        json!([
            "compatibility: the server chose protocol version 1999-01-01, which tend does not speak (it speaks 2025-11-25, 2025-06-18, 2025-03-26, 2024-11-05)"
        ])
    );
    assert_eq!(report["protocol_version"], "1999-01-01");
    assert_eq!(status_of(&report, "health"), "skipped");
    assert_group_gone(&report);
}

#[test]
fn a_slow_start_fails_performance_against_the_threshold_and_health_against_the_timeout() {
    let (report, _) = probe("slow-start", "[thresholds]\nstartup_ms = 1000\n", 1);
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{report:#}");
    let error = errors[0].as_str().unwrap();
    assert!(
        error.starts_with("performance: startup_ms ") && error.ends_with(" ms is over the limit of 1000 ms"),
        "{error}"
    );
    assert!(report["metrics"]["startup_ms"].as_f64().unwrap() >= 3000.0);
    assert_eq!(status_of(&report, "health"), "passed");

    let (report, _) = probe("slow-start", "[probe]\ninitialize_timeout = \"1s\"\nshutdown_grace = \"500ms\"\n", 1);
    assert_eq!(report["errors"], json!(["health: no answer to `initialize` within 1s"]));
    assert_group_gone(&report);
}

#[test]
fn a_server_holding_600_mb_fails_the_resource_suite() {
    let (report, _) = probe("alloc", "[thresholds]\nstartup_ms = 60000\n[probe]\ninitialize_timeout = \"60s\"\n", 1);
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{report:#}");
    let error = errors[0].as_str().unwrap();
    assert!(error.starts_with("resource: rss_mb ") && error.ends_with(" MB is over the limit of 500 MB"), "{error}");
    assert!(report["metrics"]["rss_mb"].as_f64().unwrap() > 500.0);
    assert_group_gone(&report);
}

#[test]
fn a_server_that_burns_cpu_at_rest_fails_the_resource_suite() {
    // Its two spinning workers put the bound over the pings past the limit, so a window of
    // rest measures it, and that is over the limit too.
    let (report, _) = probe("busy-idle", "[thresholds]\ncpu_percent = 25\n", 1);
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{report:#}");
    let error = errors[0].as_str().unwrap();
    assert!(error.starts_with("resource: cpu_percent ") && error.ends_with(" % is over the limit of 25 %"), "{error}");
    assert_eq!(report["suites"]["resource"]["figures"]["cpu_window"], "idle_window", "{report:#}");
    assert_group_gone(&report);

    // A quiet server whose pings alone take more than the limit is measured at rest too
    // (whether 1% holds at rest is up to the machine, so only the window is asserted).
    let test = Test::new()
        .site("[thresholds]\ncpu_percent = 1\n")
        .file(".mcp.json", &mcp_json(&[("srv", fixture_entry("good", &[]))]));
    test.write_site();
    let out = Command::new(TEND).args(["--json", "test", "srv"]).current_dir(test.path()).output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).expect("the report is JSON");
    assert_eq!(report["suites"]["resource"]["figures"]["cpu_window"], "idle_window", "{report:#}");
    assert!(report["metrics"]["cpu_percent"].is_number());
    assert_group_gone(&report);
}

#[test]
fn a_grandchild_holding_stdout_and_ignoring_term_is_killed_with_its_group() {
    let (report, _) = probe("grandchild", FAST, 1);
    assert_eq!(report["errors"], json!(["health: no answer to `tools/list` within 1s"]));
    assert_eq!(report["warnings"], json!(["health: the server ignored TERM for 500ms and was killed"]));
    assert_eq!(report["shutdown"]["how"], "kill");
    let grandchild: u32 = report["stderr"]
        .as_str()
        .and_then(|s| s.strip_prefix("grandchild pid "))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("the fixture names its grandchild: {report:#}"));
    assert!(
        !Path::new(&format!("/proc/{grandchild}")).exists(),
        "the grandchild {grandchild} is gone (not even a zombie)"
    );
    assert_group_gone(&report);
}

#[test]
fn a_ping_that_answers_an_error_fails_health() {
    let (report, _) = probe("ping-error", FAST, 1);
    assert_eq!(
        report["errors"],
        json!([
            "health: 10 of 10 pings failed; the first: `ping` failed: ping broken on purpose (JSON-RPC error -32603)",
            "health: burst: 8 of 8 `ping` requests failed; the first: `ping` failed: ping broken on purpose (JSON-RPC error -32603)"
        ])
    );
    assert_group_gone(&report);
}

#[test]
fn smoke_calls_are_judged_and_the_stderr_shown_is_bounded() {
    let smoke = |expect: &str| {
        format!("[servers.srv]\nsmoke = [{{ tool = \"echo\", args = {{ text = \"hi\" }}, expect = \"{expect}\" }}]\n")
    };
    let (report, _) = probe("good", &smoke("hi"), 0);
    assert_eq!(report["suites"]["health"]["figures"]["smoke_calls"], 1);

    let (report, _) = probe("stderr-noise", &smoke("bye"), 1);
    assert_eq!(report["errors"], json!(["health: smoke `echo`: expected text containing \"bye\", got \"hi\""]));
    let stderr = report["stderr"].as_str().unwrap();
    assert!(stderr.starts_with('[') && stderr.contains(" earlier bytes not shown]\n"), "{stderr}");
    assert!(stderr.ends_with("stderr-noise end") && stderr.len() < 4200, "only the last 4 KiB: {}", stderr.len());
}

#[test]
fn secrets_on_the_command_line_fail_the_security_suite() {
    let done = Test::new()
        .site(FAST)
        .file(".mcp.json", &mcp_json(&[("srv", fixture_entry("good", &["--api-key=abcdefgh12"]))]))
        .args(&["--json", "test", "srv"])
        .status(1)
        .run();
    let report: Value = serde_json::from_str(&done.stdout()).unwrap();
    assert_eq!(report["errors"], json!(["security: argument 3 looks like a secret; pass it in env instead"]));
}

#[test]
fn playbooks_override_thresholds_per_call_and_bad_options_are_refused() {
    let done = Test::new()
        .file(".mcp.json", &mcp_json(&[("srv", fixture_entry("good", &[]))]))
        .file(
            "probe.rhai",
            "let r = health(\"srv\", #{pings: 3, startup_ms: 1, burst: 0});\n[r.passed, r.suites.health.figures.pings, r.errors.len()]\n",
        )
        .args(&["--json", "run", "probe.rhai"])
        .run();
    let report: Value = serde_json::from_str(&done.stdout()).unwrap();
    assert_eq!(report["result"], json!([false, 3, 1]), "{report:#}");

    Test::new()
        .file(".mcp.json", &mcp_json(&[("srv", fixture_entry("good", &[]))]))
        .file("probe.rhai", "health(\"srv\", #{colour: 1})\n")
        .args(&["run", "probe.rhai"])
        .status(1)
        .stderr_contains("health: unknown option `colour`; known: release, on_tool_change, startup_ms, latency_p95_ms, memory_mb, cpu_percent, load_memory_mb, threads, fds, initialize_timeout, request_timeout, call_timeout, shutdown_grace, idle_window, pings, burst, burst_method")
        .unchanged_but_bookkeeping()
        .run();
}

/// The methods the fixture server was asked, counted: `(method, count)`, sorted.
fn methods_asked(log: &std::path::Path) -> Vec<(String, usize)> {
    let mut counts = std::collections::BTreeMap::new();
    for method in std::fs::read_to_string(log).expect("the fixture logged its methods").lines() {
        *counts.entry(method.to_owned()).or_insert(0) += 1;
    }
    counts.into_iter().collect()
}

#[test]
fn the_burst_sends_pings_unless_the_site_names_a_listing() {
    let log_dir = tempfile::tempdir().unwrap();
    let entry = |log: &str| {
        let mut entry = fixture_entry("good", &[]);
        entry["env"] = json!({ "TEND_FIXTURE_METHOD_LOG": log_dir.path().join(log).display().to_string() });
        entry
    };
    let owned = |pairs: &[(&str, usize)]| pairs.iter().map(|(m, n)| ((*m).to_owned(), *n)).collect::<Vec<_>>();
    // The fixture pages tools/list two tools at a time (three tools: two pages); resources and
    // prompts fit one page. 2 pings, and a burst of 3.
    let probe = "[probe]\npings = 2\nburst = 3\n";

    let done = Test::new()
        .site(probe)
        .file(".mcp.json", &mcp_json(&[("srv", entry("default.log"))]))
        .args(&["--json", "test", "srv"])
        .run();
    let report: Value = serde_json::from_str(&done.stdout()).unwrap();
    assert_eq!(report["suites"]["resource"]["figures"]["burst"], json!(3), "{report:#}");
    assert_eq!(report["suites"]["resource"]["figures"]["burst_method"], json!("ping"));
    assert_eq!(
        methods_asked(&log_dir.path().join("default.log")),
        owned(&[("initialize", 1), ("ping", 5), ("prompts/list", 1), ("resources/list", 1), ("tools/list", 2)])
    );

    let done = Test::new()
        .site(&format!("{probe}burst_method = \"tools/list\"\n"))
        .file(".mcp.json", &mcp_json(&[("srv", entry("tools.log"))]))
        .args(&["--json", "test", "srv"])
        .run();
    let report: Value = serde_json::from_str(&done.stdout()).unwrap();
    assert_eq!(report["suites"]["resource"]["figures"]["burst_method"], json!("tools/list"));
    assert_eq!(
        methods_asked(&log_dir.path().join("tools.log")),
        owned(&[("initialize", 1), ("ping", 2), ("prompts/list", 1), ("resources/list", 1), ("tools/list", 5)])
    );

    // Per call, and a method that is not one of the four is refused before anything starts.
    let done = Test::new()
        .site(probe)
        .file(".mcp.json", &mcp_json(&[("srv", entry("call.log"))]))
        .file("probe.rhai", "health(\"srv\", #{burst_method: \"prompts/list\"}).suites.resource.figures.burst_method\n")
        .args(&["--json", "run", "probe.rhai"])
        .run();
    let report: Value = serde_json::from_str(&done.stdout()).unwrap();
    assert_eq!(report["result"], json!("prompts/list"));
    assert_eq!(
        methods_asked(&log_dir.path().join("call.log")),
        owned(&[("initialize", 1), ("ping", 2), ("prompts/list", 4), ("resources/list", 1), ("tools/list", 2)])
    );
    Test::new()
        .site(probe)
        .file(".mcp.json", &mcp_json(&[("srv", entry("bad.log"))]))
        .file("probe.rhai", "health(\"srv\", #{burst_method: \"tools/call\"})\n")
        .args(&["run", "probe.rhai"])
        .status(1)
        .stderr_contains("health: bad option: unknown variant `tools/call`, expected one of `ping`, `tools/list`, `resources/list`, `prompts/list`")
        .unchanged_but_bookkeeping()
        .run();
    assert!(!log_dir.path().join("bad.log").exists(), "the server was not started");
}

#[test]
fn unknown_servers_and_unstaged_releases_are_clear_errors_that_change_nothing() {
    Test::new()
        .file(".mcp.json", &mcp_json(&[("srv", fixture_entry("good", &[]))]))
        .args(&["test", "nope"])
        .status(1)
        .stderr("error: no server named `nope` in the site's client configs\n --> tend test:1:1\n  |\n1 | health(\"nope\")\n  | ^\n")
        .unchanged_but_bookkeeping()
        .run();
    Test::new()
        .file(".mcp.json", &mcp_json(&[("srv", fixture_entry("good", &[]))]))
        .args(&["test", "srv", "--release", "9.9.9"])
        .status(1)
        .stderr(
            "error: srv: release 9.9.9 is not staged (no {dir}/root/servers/srv/releases/9.9.9)\n --> tend test:1:1\n  |\n1 | health(\"srv\", #{release: \"9.9.9\"})\n  | ^\n",
        )
        .unchanged_but_bookkeeping()
        .run();
}

/// Starts the fixture's Streamable HTTP mode; returns the child and its endpoint.
fn http_fixture(sse: bool) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = Command::new("node")
        .arg(fixture_script())
        .args(["http", "0"])
        .env("TEND_FIXTURE_SSE", if sse { "1" } else { "0" })
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stderr.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("fixture said {line:?}")).to_owned();
    (child, url)
}

/// Kills a child when the test ends, passing or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn streamable_http_servers_are_probed_with_json_and_sse_answers() {
    for sse in [false, true] {
        let (server, url) = http_fixture(sse);
        let _stop = KillOnDrop(server);
        let done = Test::new()
            .file(".mcp.json", &mcp_json(&[("remote", json!({ "type": "http", "url": url }))]))
            .args(&["--json", "test", "remote"])
            .run();
        let report: Value = serde_json::from_str(&done.stdout()).unwrap();
        assert_eq!(report["passed"], true, "sse {sse}: {report:#}");
        assert_eq!((report["target"].as_str(), report["command"].as_str()), (Some("url"), Some(url.as_str())));
        assert_eq!(report["tools"], json!(["echo", "add", "sleep"]));
        assert_eq!(report["suites"]["resource"]["skipped"], "the server runs elsewhere (url)");
    }
}

#[test]
fn real_servers_from_npm_pass_with_default_thresholds() {
    let installed = util::npm::real_servers();
    let files = tempfile::tempdir().unwrap();
    let entries: Vec<(&str, Value)> = util::npm::REAL_SERVERS
        .iter()
        .map(|(name, package, main)| {
            let mut args = vec![installed.join("node_modules").join(package).join(main).display().to_string()];
            if *name == "filesystem" {
                args.push(files.path().display().to_string());
            }
            (*name, json!({ "command": "node", "args": args }))
        })
        .collect();
    let test = Test::new().file(".mcp.json", &mcp_json(&entries));
    test.write_site();
    for (name, _) in &entries {
        let out = Command::new(TEND).args(["--json", "test", name]).current_dir(test.path()).output().unwrap();
        let report: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{name}: {}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!((out.status.code(), &report["passed"]), (Some(0), &json!(true)), "{name}: {report:#}");
        assert!(!report["tools"].as_array().unwrap().is_empty(), "{name} lists tools");
        assert_group_gone(&report);
    }
}

#[test]
fn a_changed_tool_description_fails_until_that_release_is_approved() {
    let registry = util::registry::Registry::start();
    for (version, description) in [("1.0.0", None), ("1.1.0", Some("Echo the text back, and remember it."))] {
        let staged = registry.stage_fixture("tend-fixture-mcp", version, |m| {
            if let Some(d) = description {
                m.insert("tendFixture".into(), json!({ "echoDescription": d }));
            }
        });
        registry.publish_direct(staged.path(), "latest");
    }
    let test = Test::new()
        .site(&format!("registry = \"{}\"\n{}", registry.url(), token_line("\"stage\", \"deploy\"")))
        .file(".mcp.json", &mcp_json(&[("srv", json!({ "command": "npx", "args": ["-y", "tend-fixture-mcp@1.0.0"] }))]))
        .file("token", SECRET);
    test.write_site();
    let tend = |args: &[&str]| Command::new(TEND).args(args).current_dir(test.path()).output().unwrap();
    for version in ["1.0.0", "1.1.0"] {
        let out = tend(&["--token-file", "token", "stage", "srv", version]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    }
    // 1.0.0 is live (swap lands with its own issue; here the link is made by hand).
    std::os::unix::fs::symlink("releases/1.0.0", test.path().join("root/servers/srv/current")).unwrap();

    let out = tend(&["--json", "test", "srv"]);
    let live: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (out.status.code(), live["target"].as_str(), live["version"].as_str()),
        (Some(0), Some("current"), Some("1.0.0")),
        "{live:#}"
    );
    assert_eq!(live["server_info"]["version"], "1.0.0", "the release runs from its own folder");

    let out = tend(&["--json", "test", "srv", "--release", "1.1.0"]);
    let candidate: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{candidate:#}");
    assert_eq!(
        candidate["errors"],
        json!(["tool_surface: tool `echo` changed its description since 1.0.0; to accept it: tend approve srv 1.1.0"])
    );
    assert_eq!(
        candidate["tool_changes"],
        json!({ "against": "1.0.0", "added": [], "removed": [], "changed": [{ "name": "echo", "description": true, "schema": false }] })
    );
    assert_ne!(candidate["fingerprint"], live["fingerprint"]);

    // Approving needs the deploy scope; without a token nothing changes.
    let but_bookkeeping = |files: std::collections::BTreeMap<String, String>| -> Vec<(String, String)> {
        let bookkeeping = [
            "root/audit",
            "root/reports",
            "root/metrics",
            "root/state/lock",
            "root/state/audit.head",
            "root/state/metrics.json",
        ];
        files.into_iter().filter(|(k, _)| !bookkeeping.iter().any(|b| k.starts_with(b))).collect()
    };
    let before = but_bookkeeping(util::snapshot(test.path()));
    let out = tend(&["approve", "srv", "1.1.0"]);
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(but_bookkeeping(util::snapshot(test.path())), before, "a refused approval changes nothing");
    let out = tend(&["--token-file", "token", "approve", "srv", "1.1.0"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("srv 1.1.0: tool surface {} approved\n", candidate["fingerprint"].as_str().unwrap())
    );
    let out = tend(&["--json", "test", "srv", "--release", "1.1.0"]);
    let approved: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((out.status.code(), &approved["errors"]), (Some(0), &json!([])), "{approved:#}");
    assert_eq!(
        approved["warnings"][0].as_str().map(|w| w.starts_with("tool_surface: the changed surface sha256-")),
        Some(true),
        "{approved:#}"
    );
}
