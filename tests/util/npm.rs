//! npm packages the tests need (Verdaccio, real MCP servers), installed once into an ignored
//! folder under `<repo>/.local/` and reused by later runs.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

/// `<repo>`: where Cargo.toml is.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Installs `dependencies` (name -> version) into `dir` with npm unless every path in `marks`
/// (relative to `dir`) exists. Serialized across threads and processes by an flock on
/// `dir/.install.lock`.
pub fn install_once(dir: &Path, dependencies: serde_json::Value, overrides: serde_json::Value, marks: &[&str]) {
    let done = || marks.iter().all(|m| dir.join(m).exists());
    if done() {
        return;
    }
    fs::create_dir_all(dir).expect("create the install folder");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".install.lock"))
        .expect("open install lock");
    // rustix rather than File::lock: the crate's MSRV (1.85) predates File::lock (1.89).
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).expect("lock install");
    if !done() {
        let manifest = serde_json::json!({
            "name": format!("tend-test-{}", dir.file_name().and_then(|n| n.to_str()).unwrap_or("deps")),
            "private": true,
            "description": "Installed by tend's test harness (tests/util/npm.rs); safe to delete.",
            "dependencies": dependencies,
            "overrides": overrides,
        });
        fs::write(dir.join("package.json"), serde_json::to_string_pretty(&manifest).expect("serialize") + "\n")
            .expect("write package.json");
        let started = Instant::now();
        let out = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--no-update-notifier"])
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .expect("run npm install (is `npm` on PATH?)");
        check_npm("npm install", dir, &out);
        eprintln!("test harness: npm install in {} took {:?}", dir.display(), started.elapsed());
        for mark in marks {
            assert!(dir.join(mark).exists(), "npm install left no {}", dir.join(mark).display());
        }
    }
    drop(lock);
}

pub fn check_npm(what: &str, dir: &Path, out: &Output) {
    assert!(
        out.status.success(),
        "{what} in {} failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
}

/// The real MCP servers the health tests run, pinned.
pub const REAL_SERVERS: [(&str, &str, &str); 4] = [
    ("memory", "@modelcontextprotocol/server-memory", "dist/index.js"),
    ("everything", "@modelcontextprotocol/server-everything", "dist/index.js"),
    ("filesystem", "@modelcontextprotocol/server-filesystem", "dist/index.js"),
    ("sequential-thinking", "@modelcontextprotocol/server-sequential-thinking", "dist/index.js"),
];
pub const REAL_SERVERS_VERSION: &str = "2026.8.31";

/// Installs the real servers into `.local/mcp-servers/` (once) and returns that folder.
pub fn real_servers() -> PathBuf {
    let dir = repo_root().join(".local/mcp-servers");
    let deps: serde_json::Map<String, serde_json::Value> =
        REAL_SERVERS.iter().map(|(_, package, _)| ((*package).to_owned(), REAL_SERVERS_VERSION.into())).collect();
    let marks: Vec<String> = REAL_SERVERS.iter().map(|(_, p, main)| format!("node_modules/{p}/{main}")).collect();
    let marks: Vec<&str> = marks.iter().map(String::as_str).collect();
    install_once(&dir, serde_json::Value::Object(deps), serde_json::json!({}), &marks);
    dir
}
