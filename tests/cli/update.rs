//! The shipped update playbook end to end against a real Verdaccio: three managed servers
//! whose new releases are good, fail health (never go live), and pass health but fail the
//! post-swap monitor (go live, then rolled back). The report, exit code, audit log, webhook
//! messages and client config must all say exactly that.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

use super::{SECRET, token_line};
use crate::util::http::{Reply, Server};
use crate::util::{self, TEND, Test};

/// tend's repository: the shipped playbooks.
fn playbook(name: &str) -> String {
    util::registry::repo_root().join("playbooks").join(name).display().to_string()
}

struct E2e {
    _registry: util::registry::Registry,
    hooks: Server,
    test: Test,
}

const ALL: &str = "\"stage\", \"deploy\", \"rollback\", \"prune\"";

/// Packages `tend-e2e-good`, `tend-e2e-sick` and `tend-e2e-flaky`, each at 1.0.0 (fine) and
/// 1.1.0: good is fine, sick dies at start (health fails), flaky fails once it has been live
/// for 500 ms (the monitor fails). A site that pins all three to 1.0.0, with a webhook.
fn e2e() -> E2e {
    let registry = util::registry::Registry::start();
    for (name, bad) in [
        ("tend-e2e-good", json!(null)),
        ("tend-e2e-sick", json!({ "failAfterMs": 0 })),
        ("tend-e2e-flaky", json!({ "failWhenLiveForMs": 500 })),
    ] {
        for version in ["1.0.0", "1.1.0"] {
            let staged = registry.stage_fixture("tend-fixture-mcp", version, |m| {
                m.insert("name".into(), name.into());
                if version == "1.1.0" && !bad.is_null() {
                    m.insert("tendFixture".into(), bad.clone());
                }
            });
            registry.publish_direct(staged.path(), "latest");
        }
    }
    let hooks = Server::start();
    hooks.script("/hook", vec![Reply::json("{\"ok\":true}")]);
    let mcp = json!({ "mcpServers": {
        "good": { "command": "npx", "args": ["-y", "tend-e2e-good@1.0.0"] },
        "sick": { "command": "npx", "args": ["-y", "tend-e2e-sick@1.0.0"] },
        "flaky": { "command": "npx", "args": ["-y", "tend-e2e-flaky@1.0.0"] },
    }});
    let test = Test::new()
        .site(&format!(
            "registry = \"{}\"\n{}[policy]\nmin_release_age = \"0s\"\n[monitor]\ncount = 3\ninterval = \"1s\"\nfailure_limit = 0\n\
             [[notify]]\nurl = \"{}hook\"\n",
            registry.url(),
            token_line(ALL),
            hooks.url()
        ))
        .file(".mcp.json", &serde_json::to_string_pretty(&mcp).unwrap())
        .file("token", SECRET);
    test.write_site();
    E2e { _registry: registry, hooks, test }
}

impl E2e {
    fn path(&self) -> &Path {
        self.test.path()
    }

    fn tend(&self, args: &[&str]) -> Output {
        let mut all = vec!["--token-file", "token"];
        all.extend_from_slice(args);
        Command::new(TEND)
            .args(&all)
            .current_dir(self.path())
            .env_remove("TEND_TOKEN")
            .env_remove("TEND_CRASH_AT")
            .output()
            .unwrap()
    }

    fn root(&self) -> PathBuf {
        self.path().join("root")
    }

    fn current(&self, server: &str) -> String {
        std::fs::read_link(self.root().join("servers").join(server).join("current")).unwrap().display().to_string()
    }

    /// The webhook bodies received so far.
    fn messages(&self) -> Vec<Value> {
        self.hooks.requests().iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect()
    }
}

fn show(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A webhook message in short: event, server, from, to.
type Summary = (String, Option<String>, Option<String>, Option<String>);

#[test]
fn update_keeps_the_good_release_never_deploys_the_sick_one_and_rolls_back_the_flaky_one() {
    let site = e2e();
    let out = site.tend(&["adopt"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let adopted = std::fs::read_to_string(site.path().join(".mcp.json")).unwrap();

    let out = site.tend(&["--json", "run", &playbook("update.rhai")]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);

    // The report: one row per server, the run failed with the two that did not make it.
    let rows = report["result"]["servers"].as_array().unwrap();
    let outcome = |name: &str| rows.iter().find(|r| r["name"] == name).unwrap().clone();
    let good = outcome("good");
    assert_eq!(
        (good["outcome"].as_str(), good["from"].as_str(), good["to"].as_str()),
        (Some("updated"), Some("1.0.0"), Some("1.1.0")),
        "{good}"
    );
    let sick = outcome("sick");
    assert_eq!(sick["outcome"], "failed", "{sick}");
    assert!(sick["reason"].as_str().unwrap().starts_with("health of 1.1.0 failed: "), "{sick}");
    assert!(sick["steps"].get("swap").is_none(), "the sick release was never swapped in: {sick}");
    let flaky = outcome("flaky");
    assert_eq!(flaky["outcome"], "rolled_back", "{flaky}");
    // The first probe may come within the 500 ms the release stays well once live.
    let reason = flaky["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("monitor: ") && reason.ends_with(" of 3 monitor probes failed; rolled back to 1.0.0"),
        "{reason}"
    );
    assert_eq!(flaky["steps"]["swap"]["to"], "1.1.0");
    assert_eq!(report["result"]["failures"], 2);
    assert_eq!(report["outcome"], "failed");
    assert_eq!(report["error"]["exit_code"], 1);
    let message = report["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "update: 2 server(s) failed or were rolled back: sick: failed 1.0.0 -> 1.1.0 (health of 1.1.0 failed: "
        ) && message.ends_with(&format!("; flaky: rolled_back 1.0.0 -> 1.1.0 ({reason})")),
        "{message}"
    );
    assert!(stderr.contains("error: update: 2 server(s) failed"), "{stderr}");

    // What is live: good on its new release; sick and flaky on the old one.
    assert_eq!(site.current("good"), "releases/1.1.0");
    assert_eq!(site.current("sick"), "releases/1.0.0");
    assert_eq!(site.current("flaky"), "releases/1.0.0");
    // The client config was not touched by the update: every entry still starts through current.
    assert_eq!(std::fs::read_to_string(site.path().join(".mcp.json")).unwrap(), adopted);

    // The audit log: swaps for good and flaky, a rollback for flaky, none of either for sick;
    // and the chain verifies.
    let audit = std::fs::read_to_string(site.root().join("audit/audit.jsonl")).unwrap();
    let records: Vec<Value> = audit.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let run = report["id"].as_str().unwrap();
    let of_run: Vec<(String, String, String)> = records
        .iter()
        .filter(|r| r["run"] == run && ["swap", "rollback", "stage"].contains(&r["primitive"].as_str().unwrap()))
        .map(|r| {
            (
                r["primitive"].as_str().unwrap().to_owned(),
                r["args"][0].as_str().unwrap().to_owned(),
                r["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expect = |p: &str, s: &str| (p.to_owned(), s.to_owned(), "ok".to_owned());
    assert_eq!(
        of_run,
        vec![
            expect("stage", "good"),
            expect("swap", "good"),
            expect("stage", "sick"),
            expect("stage", "flaky"),
            expect("swap", "flaky"),
            expect("rollback", "flaky"),
        ]
    );
    let verify = site.tend(&["audit", "verify"]);
    assert_eq!(verify.status.code(), Some(0), "{}", show(&verify));

    // The metrics count exactly that.
    let prom = std::fs::read_to_string(site.root().join("metrics/tend.prom")).unwrap();
    let samples: Vec<&str> = prom
        .lines()
        .filter(|l| {
            l.starts_with("tend_updates_total{")
                || l.starts_with("tend_rollbacks_total{")
                || l.starts_with("tend_server_info{")
        })
        // Counters of every managed server are written from zero, so increase() sees the first.
        .filter(|l| !l.ends_with(" 0"))
        .collect();
    assert_eq!(
        samples,
        vec![
            "tend_rollbacks_total{server=\"flaky\"} 1",
            "tend_server_info{server=\"flaky\",version=\"1.0.0\"} 1",
            "tend_server_info{server=\"good\",version=\"1.1.0\"} 1",
            "tend_server_info{server=\"sick\",version=\"1.0.0\"} 1",
            "tend_updates_total{server=\"flaky\",result=\"rolled_back\"} 1",
            "tend_updates_total{server=\"good\",result=\"success\"} 1",
            "tend_updates_total{server=\"sick\",result=\"failed\"} 1",
        ],
        "{prom}"
    );
    assert!(
        prom.lines().any(|l| l.starts_with("tend_last_run_timestamp_seconds{playbook=")
            && l.contains("playbooks/update.rhai\",outcome=\"failed\"} ")),
        "{prom}"
    );

    // The webhook got exactly: good updated, sick failed, flaky updated then rolled back, and
    // the run's failure.
    let messages = site.messages();
    let summary: Vec<Summary> = messages
        .iter()
        .map(|m| {
            assert_eq!(m["run_id"], run, "{m}");
            assert!(m["text"].as_str().unwrap().starts_with("[tend "), "{m}");
            let field = |k: &str| m[k].as_str().map(str::to_owned);
            (m["event"].as_str().unwrap().to_owned(), field("server"), field("from"), field("to"))
        })
        .collect();
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(
        summary,
        vec![
            ("update".to_owned(), s("good"), s("1.0.0"), s("1.1.0")),
            ("failure".to_owned(), s("sick"), s("1.0.0"), s("1.1.0")),
            ("update".to_owned(), s("flaky"), s("1.0.0"), s("1.1.0")),
            ("rollback".to_owned(), s("flaky"), s("1.1.0"), s("1.0.0")),
            ("failure".to_owned(), None, None, None),
        ],
        "{messages:#?}"
    );
    assert!(messages[4]["message"].as_str().unwrap().contains("update: 2 server(s) failed"), "{}", messages[4]);
}

#[test]
fn a_webhook_that_fails_is_retried_logged_and_never_fails_the_run() {
    let site = e2e();
    site.hooks.script("/hook", vec![Reply::status(503), Reply::status(503), Reply::status(503)]);
    let out = site.tend(&["adopt", "good"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let out = site.tend(&["run", &playbook("update.rhai"), "--var", "only=good"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(site.current("good"), "releases/1.1.0");
    // One `update` message, tried 3 times (retries = 2), then given up with a warning that
    // shows the webhook's host only.
    assert_eq!(site.hooks.hits("/hook"), 3);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("notify: http://127.0.0.1/… did not take the update message: HTTP 503 after 3 attempt(s)"),
        "{stderr}"
    );
}

#[test]
fn update_skips_unmanaged_servers_unless_asked_to_adopt_and_stops_after_max_failures() {
    let site = e2e();
    // Nothing adopted: every server is listed as unmanaged and nothing changes.
    let out = site.tend(&["--json", "run", &playbook("update.rhai"), "--var", "prune=false"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    for row in report["result"]["servers"].as_array().unwrap() {
        assert_eq!(row["outcome"], "unmanaged", "{row}");
        assert_eq!(
            row["reason"].as_str().unwrap(),
            format!(
                "not managed by tend; run \"tend adopt {}\" or pass --var adopt=true",
                row["name"].as_str().unwrap()
            )
        );
    }
    assert!(!site.root().join("servers").exists());

    // adopt=true and max_failures=1: sick fails first (order of the config: good, sick,
    // flaky), so flaky is skipped and stays on its adopted release.
    // baseline=true: each candidate is also compared against the live release.
    let out = site.tend(&[
        "--json",
        "run",
        &playbook("update.rhai"),
        "--var",
        "adopt=true",
        "--var",
        "max_failures=1",
        "--var",
        "baseline=true",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let outcomes: Vec<(&str, &str)> = report["result"]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap(), r["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(outcomes, vec![("good", "updated"), ("sick", "failed"), ("flaky", "skipped")]);
    assert_eq!(report["result"]["servers"][2]["reason"], "stopped after 1 failures (max_failures = 1)");
    assert_eq!(report["result"]["servers"][0]["steps"]["baseline"], json!({ "passed": true, "findings": [] }));
    assert!(!site.root().join("servers/flaky").exists(), "flaky was neither adopted nor updated");
}

// ------------------------------------------------------------------ the demo site

/// The demo site (examples/demo) copied into a temp folder: its own root, the client config
/// as `.mcp.json`, and the registry pointed at a Verdaccio on loopback that proxies npm.
struct Demo {
    registry: util::registry::Registry,
    dir: tempfile::TempDir,
}

fn demo() -> Demo {
    let registry = util::registry::Registry::start_proxy();
    let dir = tempfile::tempdir().unwrap();
    let demo = util::registry::repo_root().join("examples/demo");
    let site = std::fs::read_to_string(demo.join("tend.toml")).unwrap();
    let site = site.replace("root = \"../../.local/demo/root\"", "root = \"root\"").replace(
        "clients = [\"../../.local/demo/.mcp.json\"]",
        &format!("clients = [\".mcp.json\"]\nregistry = \"{}\"", registry.url()),
    );
    assert!(
        site.contains("root = \"root\"") && site.contains("clients = [\".mcp.json\"]"),
        "the demo site changed shape:\n{site}"
    );
    std::fs::write(dir.path().join("tend.toml"), site).unwrap();
    std::fs::copy(demo.join("mcp.json"), dir.path().join(".mcp.json")).unwrap();
    std::fs::copy(demo.join("demo.token"), dir.path().join("demo.token")).unwrap();
    Demo { registry, dir }
}

impl Demo {
    fn tend(&self, args: &[&str]) -> Output {
        let mut all = vec!["--token-file", "demo.token"];
        all.extend_from_slice(args);
        Command::new(TEND)
            .args(&all)
            .current_dir(self.dir.path())
            .env_remove("TEND_TOKEN")
            // npx (the demo's servers before adoption) fetches through the same registry.
            .env("npm_config_registry", self.registry.url())
            .output()
            .unwrap()
    }

    /// Everything but tend's bookkeeping of runs (the root folder itself, audit, reports,
    /// metrics, state: lock, registry cache).
    fn state(&self) -> Vec<(String, String)> {
        let skip = ["root/audit", "root/reports", "root/state", "root/metrics"];
        util::snapshot(self.dir.path())
            .into_iter()
            .filter(|(k, _)| k != "root" && !skip.iter().any(|s| k.starts_with(s)))
            .collect()
    }
}

#[test]
fn every_shipped_playbook_and_stdlib_module_lints() {
    let playbooks: Vec<String> = std::fs::read_dir(util::registry::repo_root().join("playbooks"))
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    assert!(playbooks.len() >= 5, "{playbooks:?}");
    let mut args = vec!["lint"];
    args.extend(playbooks.iter().map(String::as_str));
    let done = Test::new().args(&args).unchanged().run();
    assert_eq!(done.stdout().lines().filter(|l| l.ends_with(": ok")).count(), playbooks.len());
    // The README's own-playbook example: a site's playbook in a few lines over the stdlib.
    Test::new()
        .file(
            "nightly.rhai",
            "import \"rollout\" as rollout;\nimport \"analysis\" as analysis;\nimport \"report\" as report;\n\
             let results = servers().filter(|s| s.managed).map(|s| rollout::step(s.name, #{ baseline: true }));\n\
             print(report::table(results));\n\
             let failed = results.filter(|r| rollout::is_failure(r));\n\
             if failed.len() > 0 { fail(report::join(failed.map(|r| r.line), \"; \")); }\n\
             results\n",
        )
        .args(&["lint", "nightly.rhai"])
        .stdout("nightly.rhai: ok\n")
        .unchanged()
        .run();
}

#[test]
fn the_shipped_playbooks_run_in_dry_run_against_the_demo_site_and_change_nothing() {
    let demo = demo();
    let before = demo.state();

    // update: every npm server would be adopted and updated; the uvx one is skipped.
    let out = demo.tend(&["--json", "run", &playbook("update.rhai"), "--dry-run", "--var", "adopt=true"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["dry_run"], true);
    let rows: Vec<(String, String, Value)> = report["result"]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap().to_owned(), r["outcome"].as_str().unwrap().to_owned(), r["from"].clone()))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("memory".to_owned(), "would_update".to_owned(), json!("2025.4.25")),
            ("everything".to_owned(), "would_update".to_owned(), json!("2025.7.1")),
            ("filesystem".to_owned(), "would_update".to_owned(), Value::Null),
            ("sequential-thinking".to_owned(), "would_update".to_owned(), Value::Null),
            ("git".to_owned(), "skipped".to_owned(), Value::Null),
        ],
        "{:#}",
        report["result"]
    );
    for row in report["result"]["servers"].as_array().unwrap().iter().take(4) {
        let to = row["to"].as_str().unwrap();
        assert_ne!(Some(to), row["from"].as_str(), "{row}");
        assert!(
            row["reason"]
                .as_str()
                .unwrap()
                .starts_with(&format!("would test and swap {} -> {to}", row["from"].as_str().unwrap_or("(unpinned)"))),
            "{row}"
        );
    }
    assert_eq!(report["result"]["servers"][4]["reason"], "not an npm package");
    // prune ran in dry-run too.
    assert_eq!(report["result"]["prune"]["dry_run"], true);

    // cleanup: nothing to remove on a fresh root.
    let out = demo.tend(&["run", &playbook("cleanup.rhai"), "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cleanup: 0 item(s), would free 0 bytes"), "{}", show(&out));

    // rollback: needs a server, and one with a previous release.
    let out = demo.tend(&["run", &playbook("rollback.rhai"), "--dry-run"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("error: rollback.rhai needs --var server=NAME (and optionally --var to=VERSION)"),
        "{}",
        show(&out)
    );
    let out = demo.tend(&["run", &playbook("rollback.rhai"), "--dry-run", "--var", "server=memory"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));

    // test: the live memory server (still started by npx, through the same registry) passes.
    let out = demo.tend(&["--json", "run", &playbook("test.rhai"), "--dry-run", "--var", "only=memory"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["result"][0]["name"], "memory");
    assert_eq!(report["result"][0]["passed"], true, "{:#}", report["result"]);

    assert_eq!(demo.state(), before, "a dry run changed the demo site");
}

#[test]
fn a_server_that_cannot_be_adopted_fails_alone_and_changes_nothing() {
    let site = e2e();
    let mcp = json!({ "mcpServers": {
        "ghost": { "command": "npx", "args": ["-y", "tend-e2e-good@9.9.9"] },
        "good": { "command": "npx", "args": ["-y", "tend-e2e-good@1.0.0"] },
    }});
    std::fs::write(site.path().join(".mcp.json"), serde_json::to_string_pretty(&mcp).unwrap()).unwrap();
    let out = site.tend(&["--json", "run", &playbook("update.rhai"), "--var", "adopt=true", "--var", "prune=false"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ghost = &report["result"]["servers"][0];
    assert_eq!(ghost["outcome"], "failed", "{ghost}");
    let reason = ghost["reason"].as_str().unwrap();
    assert!(reason.starts_with("adopt: tend-e2e-good@9.9.9: no such version"), "{reason}");
    assert_eq!(report["result"]["servers"][1]["outcome"], "updated");
    assert_eq!(
        report["error"]["message"].as_str().unwrap(),
        format!("update: 1 server(s) failed or were rolled back: ghost: failed ({reason})")
    );
    assert!(!site.root().join("servers/ghost").exists());
    assert_eq!(site.messages()[0]["event"], "failure");
    assert_eq!(site.messages()[0]["server"], "ghost");
}
