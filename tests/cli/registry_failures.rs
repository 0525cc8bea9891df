//! The registry misbehaving: a scripted server (tests/util/http.rs) for the HTTP failures a
//! real registry will not produce on demand, and Verdaccio for a dependency it does not have.
//! Each failure must say what went wrong in words naming the package and the registry, exit
//! 1, and change nothing but tend's bookkeeping: no cache entry, no staging, no release.
//! Then what else check and stage take from the registry: the slim cache and the abbreviated
//! form, the download progress bar, SHA-1-only packuments, and the current version of a
//! server that only has an installed copy.

use std::path::Path;

use serde_json::json;

use super::util::http::{Reply, Server};
use super::util::registry::Registry;
use super::util::{Done, Test};
use super::{SECRET, token_line};

const NOW: &str = "2026-11-24T12:00:00Z";
const PATH: &str = "/tend-fixture-basic";
const INTEGRITY: &str =
    "sha512-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==";

/// A packument of tend-fixture-basic at `versions`, all published long before NOW, with a
/// readme and dependencies that tend has no use for; tarballs at `<server>/tarballs/V.tgz`.
fn packument(server: &Server, versions: &[&str]) -> String {
    let manifests: serde_json::Map<String, serde_json::Value> = versions
        .iter()
        .map(|v| {
            let manifest = json!({
                "name": "tend-fixture-basic", "version": v, "dependencies": {"left-pad": "^1.0.0"},
                "bin": {"tend-fixture-basic": "index.js"},
                "dist": {"tarball": format!("{}tarballs/{v}.tgz", server.url()), "integrity": INTEGRITY},
            });
            ((*v).to_owned(), manifest)
        })
        .collect();
    let times: serde_json::Map<String, serde_json::Value> =
        versions.iter().map(|v| ((*v).to_owned(), json!("2026-10-01T00:00:00.000Z"))).collect();
    json!({
        "_id": "tend-fixture-basic", "name": "tend-fixture-basic", "readme": "x".repeat(10_000),
        "dist-tags": {"latest": versions.last()}, "versions": manifests, "time": times,
    })
    .to_string()
}

/// A site whose one server, `basic`, runs tend-fixture-basic@1.0.0 from `registry`, with a
/// token that may stage.
fn site(registry: &str) -> Test {
    Test::new()
        .site(&format!("registry = \"{registry}\"\n{}", token_line("\"stage\"")))
        .file(
            ".mcp.json",
            r#"{"mcpServers": {"basic": {"command": "npx", "args": ["-y", "tend-fixture-basic@1.0.0"]}}}"#,
        )
        .file("token", SECRET)
        .env("TEND_NOW", NOW)
}

/// What tend prints when the one-line playbook of `tend stage NAME VERSION` fails.
fn stage_failure(message: &str, call: &str) -> String {
    format!("error: {message}\n --> tend stage:1:1\n  |\n1 | {call}\n  | ^\n")
}

/// What tend prints when the one-line playbook of `tend check basic` fails.
fn check_failure(message: &str) -> String {
    format!("error: {message}\n --> tend check:1:2\n  |\n1 | [check(\"basic\")]\n  |  ^\n")
}

fn cache_entries(done: &Done) -> Vec<String> {
    std::fs::read_dir(done.path().join("root/state/cache"))
        .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

fn assert_nothing_staged(root: &Path) {
    assert!(!root.join("staging").exists(), "a staging folder was made");
    assert!(!root.join("servers").exists(), "a release was installed");
}

#[test]
fn a_500_is_retried_and_the_check_then_succeeds() {
    let server = Server::start();
    server.script(
        PATH,
        vec![Reply::status(500), Reply::status(502), Reply::json(&packument(&server, &["1.0.0", "1.1.0"]))],
    );
    let done = site(&server.url()).args(&["--json", "check", "basic"]).run();
    let results: serde_json::Value = serde_json::from_str(&done.stdout()).unwrap();
    assert_eq!((results[0]["candidate"].as_str(), results[0]["source"].as_str()), (Some("1.1.0"), Some("registry")));
    assert_eq!(server.hits(PATH), 3, "two failures, then the answer");
}

#[test]
fn a_registry_that_keeps_failing_is_asked_four_times_then_named() {
    let server = Server::start();
    server.script(PATH, vec![Reply::status(503)]);
    let url = server.url();
    let done = site(&url)
        .args(&["check", "basic"])
        .status(1)
        .stderr(&check_failure(&format!("tend-fixture-basic: HTTP 503 (registry {url})")))
        .unchanged_but_bookkeeping()
        .run();
    assert_eq!(server.hits(PATH), 4, "one try and three retries");
    assert_eq!(cache_entries(&done), Vec::<String>::new());
}

#[test]
fn a_401_is_not_retried_and_points_at_the_token() {
    let server = Server::start();
    server.script(PATH, vec![Reply::status(401).body(b"{\"error\":\"unauthorized\"}")]);
    let url = server.url();
    site(&url)
        .args(&["check", "basic"])
        .status(1)
        .stderr(&check_failure(&format!(
            "tend-fixture-basic: access refused (HTTP 401); check the token for this registry in .npmrc (registry {url})"
        )))
        .unchanged_but_bookkeeping()
        .run();
    assert_eq!(server.hits(PATH), 1);
}

#[test]
fn garbage_json_is_an_error_and_is_not_cached() {
    let server = Server::start();
    server.script(PATH, vec![Reply::status(200).header("ETag", "\"g\"").body(b"<html>502 Bad Gateway</html>")]);
    let url = server.url();
    let done = site(&url)
        .args(&["check", "basic"])
        .status(1)
        .stderr(&check_failure(&format!(
            "tend-fixture-basic: the registry sent invalid JSON: expected value at line 1 column 1 (registry {url})"
        )))
        .unchanged_but_bookkeeping()
        .run();
    assert_eq!(cache_entries(&done), Vec::<String>::new());
    // JSON of the wrong shape, and JSON without `versions`, are named as such.
    server.script(PATH, vec![Reply::json(r#"{"versions": ["1.0.0"]}"#)]);
    let out = std::process::Command::new(super::util::TEND)
        .args(["check", "basic"])
        .current_dir(done.path())
        .env("TEND_NOW", NOW)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(
            "error: tend-fixture-basic: the packument is malformed: invalid type: sequence, expected a map"
        ),
        "{stderr}"
    );
    server.script(PATH, vec![Reply::json(r#"{"dist-tags": {"latest": "1.0.0"}}"#)]);
    let out = std::process::Command::new(super::util::TEND)
        .args(["check", "basic"])
        .current_dir(done.path())
        .env("TEND_NOW", NOW)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).lines().next(),
        Some(format!("error: tend-fixture-basic: the packument has no `versions` (registry {url})").as_str())
    );
}

#[test]
fn a_version_the_packument_lacks_is_not_staged() {
    let server = Server::start();
    server.script(PATH, vec![Reply::json(&packument(&server, &["1.0.0", "1.1.0"]))]);
    let url = server.url();
    let done = site(&url)
        .args(&["--token-file", "token", "stage", "basic", "9.9.9"])
        .status(1)
        .stderr(&stage_failure(
            &format!("tend-fixture-basic@9.9.9: no such version (registry {url})"),
            "stage(\"basic\", \"9.9.9\")",
        ))
        .unchanged_but_bookkeeping()
        .run();
    assert_nothing_staged(&done.path().join("root"));
    assert_eq!(server.requests().iter().filter(|r| r.path.ends_with(".tgz")).count(), 0);
}

#[test]
fn a_tarball_that_404s_is_named_and_nothing_is_staged() {
    let server = Server::start();
    server.script(PATH, vec![Reply::json(&packument(&server, &["1.0.0", "1.1.0"]))]);
    let url = server.url();
    let done = site(&url)
        .args(&["--token-file", "token", "stage", "basic", "1.1.0"])
        .status(1)
        .stderr(&stage_failure(
            &format!("tend-fixture-basic: tarball {url}tarballs/1.1.0.tgz: HTTP 404"),
            "stage(\"basic\", \"1.1.0\")",
        ))
        .unchanged_but_bookkeeping()
        .run();
    assert_eq!(server.hits("/tarballs/1.1.0.tgz"), 1, "a 404 is not retried");
    assert_nothing_staged(&done.path().join("root"));
}

#[test]
fn the_cache_keeps_the_slim_packument_and_a_cooldown_free_policy_asks_for_the_abbreviated_form() {
    let server = Server::start();
    let full = packument(&server, &["1.0.0", "1.1.0"]);
    server.script(PATH, vec![Reply::json(&full).header("ETag", "\"v1\""), Reply::status(304)]);
    let done = site(&server.url()).args(&["--json", "check", "basic"]).run();
    let cached = std::fs::read_to_string(done.path().join("root/state/cache/tend-fixture-basic.json")).unwrap();
    assert!(!cached.contains("readme") && !cached.contains("left-pad"), "the cache keeps what check reads: {cached}");
    assert!(cached.len() < full.len() / 10, "{} bytes cached of {}", cached.len(), full.len());
    let check = |dir: &Path| -> serde_json::Value {
        let out = std::process::Command::new(super::util::TEND)
            .args(["--json", "check", "basic"])
            .current_dir(dir)
            .env("TEND_NOW", NOW)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let again = check(done.path());
    assert_eq!((again[0]["source"].as_str(), again[0]["candidate"].as_str()), (Some("cache"), Some("1.1.0")));
    let requests = server.requests();
    assert_eq!(
        requests.iter().map(|r| (r.header("accept"), r.header("if-none-match"))).collect::<Vec<_>>(),
        [(Some("application/json"), None), (Some("application/json"), Some("\"v1\""))]
    );

    // No cooldown: the abbreviated form is asked for (a full copy in the cache serves it).
    let abbreviated = "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8";
    let corgi = json!({
        "name": "tend-fixture-basic", "modified": "2026-10-01T00:00:00.000Z", "dist-tags": {"latest": "1.1.0"},
        "versions": {"1.0.0": {"version": "1.0.0"}, "1.1.0": {"version": "1.1.0"}},
    })
    .to_string();
    let quick = site(&server.url()).site("[policy]\nmin_release_age = \"0s\"\n");
    server.script(PATH, vec![Reply::json(&corgi).header("ETag", "\"c1\"")]);
    let before = server.requests().len();
    let done = quick.args(&["--json", "check", "basic"]).run();
    let results: serde_json::Value = serde_json::from_str(&done.stdout()).unwrap();
    assert_eq!(results[0]["candidate"], "1.1.0", "no publish times, and none needed");
    assert_eq!(server.requests()[before].header("accept"), Some(abbreviated));
    // The cached abbreviated copy has no times, so a policy with a cooldown fetches afresh
    // rather than revalidating it.
    std::fs::write(
        done.path().join("tend.toml"),
        format!("root = \"{}/root\"\nregistry = \"{}\"\n", done.path().display(), server.url()),
    )
    .unwrap();
    server.script(PATH, vec![Reply::json(&full).header("ETag", "\"v1\"")]);
    let full_again = check(done.path());
    assert_eq!(full_again[0]["source"], "registry");
    let last = server.requests().pop().unwrap();
    assert_eq!((last.header("accept"), last.header("if-none-match")), (Some("application/json"), None));
}

#[test]
fn a_dependency_the_registry_lacks_fails_npm_and_leaves_no_release() {
    let registry = Registry::start();
    let ghostly = registry.stage_fixture("tend-fixture-with-dep", "1.0.0", |pkg| {
        pkg.insert("dependencies".into(), json!({"tend-fixture-ghost": "^1.0.0"}));
    });
    registry.publish_direct(ghostly.path(), "latest");
    let done = Test::new()
        .site(&format!("registry = \"{}\"\n{}", registry.url(), token_line("\"stage\"")))
        .file(
            ".mcp.json",
            r#"{"mcpServers": {"with-dep": {"command": "npx", "args": ["-y", "tend-fixture-with-dep"]}}}"#,
        )
        .file("token", SECRET)
        .args(&["--token-file", "token", "stage", "with-dep", "1.0.0"])
        .status(1)
        .stderr_contains("error: tend-fixture-with-dep@1.0.0: npm install failed (exit status: 1): ")
        .stderr_contains("tend-fixture-ghost")
        .run();
    let root = done.path().join("root");
    assert!(!root.join("servers").exists(), "no release was installed");
    let staging: Vec<String> = std::fs::read_dir(root.join("staging"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(staging, ["with-dep-1.0.0.log"], "only npm's log is kept, for the post-mortem");
    let log = std::fs::read_to_string(root.join("staging/with-dep-1.0.0.log")).unwrap();
    assert!(log.contains("tend-fixture-ghost"), "{log}");
}

// ---------------------------------------------------------------- download progress

/// Runs `tend ARGS` in `dir` on a pseudo-terminal (util-linux `script`), as a person at a
/// terminal would; returns the exit code and everything the terminal showed.
fn on_a_terminal(dir: &Path, args: &str) -> (i32, String) {
    let out = std::process::Command::new("script")
        .args(["-qec", &format!("{} {args}", super::util::TEND), "/dev/null"])
        .current_dir(dir)
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run script(1)");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn a_download_shows_a_progress_bar_only_on_a_terminal() {
    let registry = Registry::start();
    registry.publish_fixture_direct("tend-fixture-basic", "1.0.0");
    registry.publish_fixture_direct("tend-fixture-basic", "1.1.0");
    // Not a terminal: stderr stays empty.
    let done = site(&registry.url()).args(&["--token-file", "token", "stage", "basic", "1.0.0"]).stderr("").run();
    let (code, screen) = on_a_terminal(done.path(), "--token-file token stage basic 1.1.0");
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains("downloading tend-fixture-basic@1.1.0"), "no progress bar on a terminal: {screen:?}");
    assert!(screen.contains("basic 1.1.0 staged: "), "{screen:?}");
    // --json and -q: none, even on a terminal.
    std::fs::remove_dir_all(done.path().join("root/servers")).unwrap();
    for flags in ["--json", "-q"] {
        let (code, screen) = on_a_terminal(done.path(), &format!("{flags} --token-file token stage basic 1.1.0"));
        assert_eq!(code, 0, "{screen}");
        assert!(!screen.contains("downloading"), "{flags}: {screen:?}");
        std::fs::remove_dir_all(done.path().join("root/servers")).unwrap();
    }
}

// ---------------------------------------------------------------- SHA-1-only packuments

#[test]
fn a_shasum_only_packument_is_staged_only_where_allow_sha1_is_set() {
    let registry = Registry::start();
    registry.publish_fixture_direct("tend-fixture-basic", "1.0.0");
    registry.edit_packument("tend-fixture-basic", |p| {
        p["versions"]["1.0.0"]["dist"].as_object_mut().unwrap().remove("integrity");
    });
    let shasum = registry.get_json("tend-fixture-basic")["versions"]["1.0.0"]["dist"]["shasum"].clone();
    let hex = shasum.as_str().expect("the registry serves the shasum").to_owned();
    let done = site(&registry.url())
        .args(&["--token-file", "token", "stage", "basic", "1.0.0"])
        .status(1)
        .stderr(&stage_failure(
            "tend-fixture-basic@1.0.0: the registry offers only a SHA-1 checksum, no sha512 integrity; set allow_sha1 for this server to accept it",
            "stage(\"basic\", \"1.0.0\")",
        ))
        .unchanged_but_bookkeeping()
        .run();
    assert_nothing_staged(&done.path().join("root"));

    let allowed = format!(
        "root = \"{}/root\"\nregistry = \"{}\"\n{}[servers.basic.policy]\nallow_sha1 = true\n",
        done.path().display(),
        registry.url(),
        token_line("\"stage\"")
    );
    std::fs::write(done.path().join("tend.toml"), &allowed).unwrap();
    let out = std::process::Command::new(super::util::TEND)
        .args(["--token-file", "token", "--json", "stage", "basic", "1.0.0"])
        .current_dir(done.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let staged: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    use base64::Engine as _;
    let sri = format!("sha1-{}", base64::engine::general_purpose::STANDARD.encode(hex::decode(&hex).unwrap()));
    assert_eq!(staged["integrity"], sri.as_str());
    let release = done.path().join("root/servers/basic/releases/1.0.0/release.json");
    let record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(release).unwrap()).unwrap();
    assert_eq!(record["integrity"], sri.as_str());

    // Allowed, the SHA-1 is still checked.
    std::fs::remove_dir_all(done.path().join("root/servers")).unwrap();
    registry.edit_packument("tend-fixture-basic", |p| {
        p["versions"]["1.0.0"]["dist"]["shasum"] = json!("0000000000000000000000000000000000000000");
    });
    let out = std::process::Command::new(super::util::TEND)
        .args(["--token-file", "token", "stage", "basic", "1.0.0"])
        .current_dir(done.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).lines().next().unwrap_or(""),
        format!(
            "error: tend-fixture-basic@1.0.0: the tarball does not match its integrity: expected sha1-AAAAAAAAAAAAAAAAAAAAAAAAAAA=, got {sri}"
        )
    );
    assert_nothing_staged_but_folders(&done.path().join("root"));
}

/// After an earlier run staged something: no release now, and no partial folder.
fn assert_nothing_staged_but_folders(root: &Path) {
    assert!(!root.join("servers").exists(), "a release was installed");
    let partials = std::fs::read_dir(root.join("staging"))
        .map(|d| d.filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".partial")).count())
        .unwrap_or(0);
    assert_eq!(partials, 0, "a partial folder was left");
}

// ---------------------------------------------------------------- the current version, installed

#[test]
fn without_a_release_or_a_pin_the_current_version_is_the_installed_packages() {
    let server = Server::start();
    server.script(PATH, vec![Reply::json(&packument(&server, &["1.0.0", "1.1.0", "1.2.0"]))]);
    let manifest = |name: &str, version: &str| json!({"name": name, "version": version}).to_string();
    let servers = json!({"mcpServers": {
        // npx without a version: the local install npx would run.
        "npx-local": {"command": "npx", "args": ["-y", "tend-fixture-basic"]},
        // node running a script inside a copy of the package (tend.toml names the package).
        "vendored": {"command": "node", "args": ["vendor/basic/dist/index.js"]},
        // a script that is not inside the package: nothing is known.
        "elsewhere": {"command": "node", "args": ["other/index.js"]},
    }});
    let done = Test::new()
        .site(&format!("registry = \"{}\"\n", server.url()))
        .site("[servers.vendored]\npackage = \"tend-fixture-basic\"\n[servers.elsewhere]\npackage = \"tend-fixture-basic\"\n")
        .file(".mcp.json", &servers.to_string())
        .file("node_modules/tend-fixture-basic/package.json", &manifest("tend-fixture-basic", "1.1.0"))
        .file("vendor/basic/package.json", &manifest("tend-fixture-basic", "1.0.0"))
        .file("vendor/basic/dist/package.json", r#"{"type": "module"}"#)
        .file("vendor/basic/dist/index.js", "")
        .file("other/package.json", &manifest("something-else", "9.0.0"))
        .file("other/index.js", "")
        .env("TEND_NOW", NOW)
        .args(&["--json", "check", "npx-local", "vendored", "elsewhere"])
        .run();
    let results: serde_json::Value = serde_json::from_str(&done.stdout()).unwrap();
    let seen: Vec<(&str, Option<&str>, Option<&str>)> = results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap(), r["current"].as_str(), r["candidate"].as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("npx-local", Some("1.1.0"), Some("1.2.0")),
            ("vendored", Some("1.0.0"), Some("1.2.0")),
            ("elsewhere", None, Some("1.2.0")),
        ]
    );
    // An exact npx pin still wins over what is installed.
    std::fs::write(
        done.path().join(".mcp.json"),
        r#"{"mcpServers": {"npx-local": {"command": "npx", "args": ["-y", "tend-fixture-basic@1.0.0"]}}}"#,
    )
    .unwrap();
    let out = std::process::Command::new(super::util::TEND)
        .args(["--json", "check", "npx-local"])
        .current_dir(done.path())
        .env("TEND_NOW", NOW)
        .output()
        .unwrap();
    let pinned: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pinned[0]["current"], "1.0.0");
}
