//! adopt, swap, monitor, rollback: against releases of tend-fixture-mcp staged from a real
//! Verdaccio, with real symlinks, processes and SIGKILL.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

use super::{SECRET, token_line};
use crate::util::{self, TEND, Test};

/// A registry with tend-fixture-mcp 1.0.0 and 1.1.0 (same tools), 1.2.0 (a changed tool
/// description) and 1.3.0 (fails once live for 500 ms); a site whose `srv` pins 1.0.0, next
/// to an `other` server that tend must leave alone.
pub(super) struct Site {
    _registry: util::registry::Registry,
    test: Test,
}

pub(super) fn site(scopes: &str) -> Site {
    let registry = util::registry::Registry::start();
    for (version, extra) in [
        ("1.0.0", json!(null)),
        ("1.1.0", json!(null)),
        ("1.2.0", json!({ "echoDescription": "Echo the text back, and remember it." })),
        ("1.3.0", json!({ "failWhenLiveForMs": 500 })),
    ] {
        let staged = registry.stage_fixture("tend-fixture-mcp", version, |m| {
            if !extra.is_null() {
                m.insert("tendFixture".into(), extra.clone());
            }
        });
        registry.publish_direct(staged.path(), "latest");
    }
    let mcp = json!({ "mcpServers": {
        "other": { "command": "node", "args": ["other.js"] },
        "srv": { "command": "npx", "args": ["-y", "tend-fixture-mcp@1.0.0"], "env": { "KEEP": "1" }, "disabled": false },
    }});
    let test = Test::new()
        .site(&format!(
            "registry = \"{}\"\n{}[monitor]\ncount = 3\ninterval = \"1s\"\nfailure_limit = 1\n",
            registry.url(),
            token_line(scopes)
        ))
        .file(".mcp.json", &serde_json::to_string_pretty(&mcp).unwrap())
        .file("token", SECRET);
    test.write_site();
    Site { _registry: registry, test }
}

pub(super) const ALL: &str = "\"stage\", \"deploy\", \"rollback\", \"prune\"";

impl Site {
    pub(super) fn path(&self) -> &Path {
        self.test.path()
    }

    pub(super) fn tend(&self, args: &[&str]) -> Output {
        self.tend_env(args, &[])
    }

    pub(super) fn tend_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = Command::new(TEND);
        command.args(args).current_dir(self.path()).env_remove("TEND_TOKEN").env_remove("TEND_CRASH_AT");
        for (k, v) in env {
            command.env(k, v);
        }
        command.output().unwrap()
    }

    /// Runs tend with the token and expects success.
    pub(super) fn ok(&self, args: &[&str]) -> String {
        let mut all = vec!["--token-file", "token"];
        all.extend_from_slice(args);
        let out = self.tend(&all);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs tend with the token and expects `code`; returns stderr.
    pub(super) fn fails(&self, args: &[&str], code: i32) -> String {
        let mut all = vec!["--token-file", "token"];
        all.extend_from_slice(args);
        let out = self.tend(&all);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub(super) fn root(&self) -> PathBuf {
        self.path().join("root")
    }

    fn link(&self, which: &str) -> Option<String> {
        std::fs::read_link(self.root().join("servers/srv").join(which)).ok().map(|p| p.display().to_string())
    }

    fn mcp(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.path().join(".mcp.json")).unwrap()).unwrap()
    }

    fn backups(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.root().join("backups"))
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Everything but tend's bookkeeping of runs (audit, reports, metrics, lock, health results).
    fn state(&self) -> Vec<(String, String)> {
        let skip = ["root/audit", "root/reports", "root/metrics", "root/state"];
        util::snapshot(self.path()).into_iter().filter(|(k, _)| !skip.iter().any(|s| k.starts_with(s))).collect()
    }

    /// Starts the server the way a client would, from the client config entry, and returns
    /// the version it reports.
    fn launch_as_client(&self) -> String {
        let entry = &self.mcp()["mcpServers"]["srv"];
        client_launch(entry)
    }
}

/// Starts `entry` as an MCP client would: initialize, one request; the server's version.
fn client_launch(entry: &Value) -> String {
    use std::io::{BufRead, Write};
    let mut child = Command::new(entry["command"].as_str().unwrap())
        .args(entry["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    writeln!(stdin, r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-06-18","capabilities":{{}},"clientInfo":{{"name":"t","version":"0"}}}}}}"#).unwrap();
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    writeln!(stdin, r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#).unwrap();
    writeln!(stdin, r#"{{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{{}}}}"#).unwrap();
    let mut tools = String::new();
    stdout.read_line(&mut tools).unwrap();
    drop(stdin);
    let _ = child.wait();
    let init: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("not an initialize answer: {line:?}"));
    assert!(tools.contains("\"echo\""), "tools/list answered: {tools:?}");
    init["result"]["serverInfo"]["version"].as_str().unwrap().to_owned()
}

#[test]
fn adopt_rewrites_only_its_entry_starts_through_current_and_is_idempotent() {
    let site = site(ALL);
    let before = site.mcp();

    let out = site.ok(&["adopt", "--dry-run", "srv"]);
    assert!(out.starts_with("srv: would adopt 1.0.0; "), "{out}");
    assert!(
        out.contains("-       \"command\": \"npx\",\n") && out.contains("/root/servers/srv/current/server.js\",\n"),
        "{out}"
    );
    assert_eq!(site.mcp(), before, "a dry run changes nothing");
    assert!(!site.root().join("servers").exists());

    let out = site.ok(&["adopt", "srv"]);
    let current = site.root().join("servers/srv/current");
    assert_eq!(
        out,
        format!(
            "srv: adopted 1.0.0; {}/.mcp.json now starts `{}/server.js`\n",
            site.path().display(),
            current.display()
        )
    );
    assert_eq!(site.link("current").as_deref(), Some("releases/1.0.0"));
    let after = site.mcp();
    assert_eq!(after["mcpServers"]["other"], before["mcpServers"]["other"]);
    assert_eq!(
        after["mcpServers"]["srv"],
        json!({ "command": format!("{}/server.js", current.display()), "args": [], "env": { "KEEP": "1" }, "disabled": false })
    );
    let keys: Vec<&String> = after["mcpServers"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["other", "srv"], "the order of servers is kept");
    assert_eq!(site.backups().len(), 1, "{:?}", site.backups());
    assert!(site.backups()[0].starts_with("srv-1.0.0-"));
    assert_eq!(site.launch_as_client(), "1.0.0");

    let out = site.ok(&["adopt", "srv"]);
    assert_eq!(out, "srv: already adopted (1.0.0)\n");
}

#[test]
fn swap_switches_verifies_and_rollback_goes_back_even_to_a_pruned_release() {
    let site = site(ALL);
    site.ok(&["adopt", "srv"]);
    site.ok(&["stage", "srv", "1.1.0"]);
    let out = site.ok(&["swap", "srv", "1.1.0"]);
    assert!(out.starts_with("srv: 1.0.0 -> 1.1.0 live (switch "), "{out}");
    assert_eq!(
        (site.link("current").as_deref(), site.link("previous").as_deref()),
        (Some("releases/1.1.0"), Some("releases/1.0.0"))
    );
    assert_eq!(site.launch_as_client(), "1.1.0");
    assert_eq!(site.backups().len(), 2);
    let audit = std::fs::read_to_string(site.root().join("audit/audit.jsonl")).unwrap();
    assert!(
        audit.contains("\"primitive\":\"swap\"") && audit.contains("/servers/srv/current -> releases/1.1.0"),
        "{audit}"
    );
    assert_eq!(site.ok(&["swap", "srv", "1.1.0"]), "srv: 1.1.0 is already live\n");

    assert_eq!(site.ok(&["rollback", "srv"]), "srv: 1.1.0 -> 1.0.0 live\n");
    assert_eq!(
        (site.link("current").as_deref(), site.link("previous").as_deref()),
        (Some("releases/1.0.0"), Some("releases/1.1.0"))
    );
    assert_eq!(site.launch_as_client(), "1.0.0");
    assert_eq!(site.ok(&["rollback", "srv", "--to", "1.0.0"]), "srv: 1.0.0 is already live\n");

    // 1.1.0 goes live and back again (a backup of 1.1.0 is written), then is removed.
    site.ok(&["swap", "srv", "1.1.0"]);
    site.ok(&["swap", "srv", "1.0.0"]);
    std::fs::remove_dir_all(site.root().join("servers/srv/releases/1.1.0")).unwrap();
    let out = site.ok(&["rollback", "srv", "--to", "1.1.0"]);
    assert!(
        out.starts_with("srv: 1.0.0 -> 1.1.0 live (restored from ") && out.contains("/backups/srv-1.1.0-"),
        "{out}"
    );
    assert_eq!(site.launch_as_client(), "1.1.0");
    assert!(!site.root().join("servers/srv/releases/1.1.0/.tend-backup").exists());
    site.ok(&["verify", "srv", "1.1.0"]);
    assert!(site.ok(&["audit", "verify"]).starts_with("audit log intact: "));
}

#[test]
fn bad_swaps_are_refused_and_change_nothing() {
    let site = site(ALL);
    site.ok(&["adopt", "srv"]);
    site.ok(&["stage", "srv", "1.1.0"]);
    site.ok(&["stage", "srv", "1.2.0"]);
    let before = site.state();

    let err = site.fails(&["swap", "srv", "1.9.0"], 1);
    assert!(
        err.starts_with(&format!(
            "error: srv: release 1.9.0 is not installed (no {}/servers/srv/releases/1.9.0)\n",
            site.root().display()
        )),
        "{err}"
    );
    assert_eq!(site.state(), before);

    // The tool surface of 1.2.0 changed: it fails health and never goes live.
    let err = site.fails(&["swap", "srv", "1.2.0"], 1);
    assert!(
        err.starts_with("error: srv: release 1.2.0 failed health, so it does not go live: tool_surface: tool `echo` changed its description since 1.0.0; to accept it: tend approve srv 1.2.0\n"),
        "{err}"
    );
    assert_eq!(site.state(), before);

    // Without the deploy scope.
    let out = site.tend(&["swap", "srv", "1.1.0"]);
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(site.state(), before);

    // A release that no longer verifies.
    let file = site.root().join("servers/srv/releases/1.1.0/server.js");
    let original = std::fs::read(&file).unwrap();
    std::fs::write(&file, b"tampered").unwrap();
    let tampered = site.state();
    let err = site.fails(&["swap", "srv", "1.1.0"], 1);
    assert!(err.starts_with(&format!("error: srv: release 1.1.0 fails verification: {}/servers/srv/releases/1.1.0: server.js differs from the staged file\n", site.root().display())), "{err}");
    assert_eq!(site.state(), tampered);
    std::fs::write(&file, original).unwrap();

    // The user edited the entry after adopt.
    let mut mcp = site.mcp();
    mcp["mcpServers"]["srv"]["command"] = json!("npx");
    mcp["mcpServers"]["srv"]["args"] = json!(["-y", "tend-fixture-mcp@1.0.0"]);
    std::fs::write(site.path().join(".mcp.json"), serde_json::to_string_pretty(&mcp).unwrap()).unwrap();
    let edited = site.state();
    let err = site.fails(&["swap", "srv", "1.1.0"], 1);
    assert!(err.contains("no longer starts the server through") && err.contains("run `tend adopt srv` again"), "{err}");
    assert_eq!(site.state(), edited);
}

#[test]
fn links_out_of_the_root_and_damaged_backups_are_refused() {
    let site = site(ALL);
    site.ok(&["adopt", "srv"]);
    site.ok(&["stage", "srv", "1.1.0"]);
    let outside = tempfile::tempdir().unwrap();
    let current = site.root().join("servers/srv/current");
    std::fs::remove_file(&current).unwrap();
    std::os::unix::fs::symlink(outside.path(), &current).unwrap();
    let before = site.state();
    let err = site.fails(&["swap", "srv", "1.1.0"], 5);
    assert!(
        err.starts_with(&format!("error: {} points to {}, outside ", current.display(), outside.path().display())),
        "{err}"
    );
    assert_eq!(site.state(), before);
    std::fs::remove_file(&current).unwrap();
    std::os::unix::fs::symlink("releases/1.0.0", &current).unwrap();

    // A release folder replaced by a link.
    let release = site.root().join("servers/srv/releases/1.1.0");
    std::fs::rename(&release, outside.path().join("1.1.0")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("1.1.0"), &release).unwrap();
    let before = site.state();
    let err = site.fails(&["swap", "srv", "1.1.0"], 5);
    assert_eq!(
        err,
        format!(
            "error: {} is a symlink, not a release folder; refusing\n --> tend swap:1:9\n  |\n1 | let s = swap(\"srv\", \"1.1.0\"); #{{swap: s, passed: true}}\n  |         ^\n",
            release.display()
        )
    );
    assert_eq!(site.state(), before);

    // A damaged backup of a pruned release.
    std::fs::remove_file(&release).unwrap();
    let backup = site.root().join("backups").join(&site.backups()[0]).to_path_buf();
    let damaged = site.root().join("backups/srv-1.1.0-20990101T000000Z.tar.gz");
    std::fs::write(&damaged, &std::fs::read(&backup).unwrap()[..200]).unwrap();
    let before = site.state();
    let err = site.fails(&["rollback", "srv", "--to", "1.1.0"], 1);
    assert!(err.starts_with(&format!("error: srv: backup {} is damaged: ", damaged.display())), "{err}");
    assert_eq!(site.state(), before, "nothing left in staging or releases");

    // A newer backup holding an entry outside the release.
    let evil = site.root().join("backups/srv-1.1.0-20990102T000000Z.tar.gz");
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default()));
    for (path, data) in [
        ("1.1.0/package.json", &br#"{"name":"tend-fixture-mcp","version":"1.1.0"}"#[..]),
        ("1.1.0/../../../../escaped", b"x"),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_cksum();
        tar.append(&header, data).unwrap();
    }
    std::fs::write(&evil, tar.into_inner().unwrap().finish().unwrap()).unwrap();
    let before = site.state();
    let err = site.fails(&["rollback", "srv", "--to", "1.1.0"], 1);
    assert!(
        err.starts_with(&format!("error: srv: backup {} is damaged: ", evil.display()))
            && err.contains("`..` in the path"),
        "{err}"
    );
    assert_eq!(site.state(), before, "nothing extracted, nothing escaped");
    assert!(!site.root().join("servers/escaped").exists() && !site.path().join("escaped").exists());
}

#[test]
fn swap_with_monitor_rolls_back_a_release_that_fails_once_live() {
    let site = site(ALL);
    site.ok(&["adopt", "srv"]);
    site.ok(&["stage", "srv", "1.3.0"]);
    let out = site.tend(&["--token-file", "token", "swap", "srv", "1.3.0", "--monitor"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with("srv: 1.0.0 -> 1.3.0 live (switch "), "{stdout}");
    assert!(stdout.contains("\nsrv: monitor FAILED (") && stdout.ends_with("srv: rolled back to 1.0.0\n"), "{stdout}");
    assert_eq!(site.link("current").as_deref(), Some("releases/1.0.0"));
    assert_eq!(site.launch_as_client(), "1.0.0");
    assert!(String::from_utf8_lossy(&out.stderr).contains("error: srv: 1.3.0 failed the monitor"));
}

#[test]
fn a_crash_at_any_step_leaves_a_complete_release_live_and_the_next_run_repairs() {
    let site = site(ALL);
    // (step, command, whether to run it again after the repair, the release live after the repair)
    let steps = [
        ("adopt:after-current", vec!["adopt", "srv"], false, None),
        ("adopt:after-backup", vec!["adopt", "srv"], true, None),
        ("stage:after-extract", vec!["stage", "srv", "1.1.0"], true, Some("1.0.0")),
        ("swap:after-backup", vec!["swap", "srv", "1.1.0"], false, Some("1.0.0")),
        ("swap:after-switch", vec!["swap", "srv", "1.1.0"], true, Some("1.0.0")),
        ("rollback:after-switch", vec!["rollback", "srv"], false, Some("1.0.0")),
    ];
    for (step, args, again, live) in steps {
        let mut all = vec!["--token-file", "token"];
        all.extend_from_slice(&args);
        let out = site.tend_env(&all, &[("TEND_CRASH_AT", step)]);
        assert_eq!(out.status.code(), None, "{step}: tend was killed: {}", String::from_utf8_lossy(&out.stderr));
        // The next invocation repairs first.
        let out = site.tend(&["--token-file", "token", "-v", "check", "other"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("repaired: "), "{step}: {stderr}");
        for dir in ["staging", "state", "backups", "servers/srv"] {
            for entry in std::fs::read_dir(site.root().join(dir)).into_iter().flatten().flatten() {
                let file = entry.file_name().to_string_lossy().into_owned();
                assert!(
                    !file.ends_with(".partial") && !file.contains(".tend-tmp-") && file != "intent.json",
                    "{step}: {dir}/{file} left"
                );
            }
        }
        assert_eq!(
            site.link("current"),
            live.map(|v| format!("releases/{v}")),
            "{step}: the live release after repair"
        );
        if let Some(version) = live {
            assert_eq!(
                client_launch(&serde_json::json!({
                    "command": site.root().join("servers/srv/current/server.js").display().to_string(), "args": []
                })),
                version,
                "{step}: the live release starts and answers"
            );
        }
        assert!(site.ok(&["audit", "verify"]).starts_with("audit log intact: "), "{step}");
        if again {
            site.ok(&args);
        }
    }
    assert_eq!(site.link("current").as_deref(), Some("releases/1.0.0"));
}

#[test]
fn clients_launching_in_a_tight_loop_never_fail_while_tend_swaps_50_times() {
    let site = site(ALL);
    site.ok(&["adopt", "srv"]);
    site.ok(&["stage", "srv", "1.1.0"]);
    let entry = site.mcp()["mcpServers"]["srv"].clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let launcher = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut seen = std::collections::BTreeMap::<String, u32>::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                *seen.entry(client_launch(&entry)).or_default() += 1;
            }
            seen
        })
    };
    for i in 0..50 {
        let version = if i % 2 == 0 { "1.1.0" } else { "1.0.0" };
        site.ok(&["swap", "srv", version]);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = launcher.join().expect("every launch answered initialize and tools/list");
    let versions: Vec<&String> = seen.keys().collect();
    assert_eq!(versions, ["1.0.0", "1.1.0"], "each launch answered as one of the two: {seen:?}");
    eprintln!("launches during 50 swaps: {seen:?}");
}
