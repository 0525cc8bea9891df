//! The test builder: a temp site, the files it holds, a `tend` command line, and what must
//! come out of it. `{dir}` in expected text stands for the site folder.

#![allow(dead_code)]

pub mod http;
pub mod npm;
pub mod registry;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

pub const TEND: &str = env!("CARGO_BIN_EXE_tend");

/// A site in a temp folder: `tend.toml` with `root = "<dir>/root"` plus whatever a test adds.
#[must_use]
pub struct Test {
    dir: tempfile::TempDir,
    site: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    status: i32,
    stdout: Option<String>,
    stderr: Option<String>,
    stderr_contains: Vec<String>,
    unchanged: Option<Vec<String>>,
}

impl Test {
    pub fn new() -> Test {
        let dir = tempfile::tempdir().expect("temp dir");
        let site = format!("root = \"{}/root\"\n", dir.path().display());
        Test {
            dir,
            site,
            args: Vec::new(),
            env: Vec::new(),
            status: 0,
            stdout: None,
            stderr: None,
            stderr_contains: Vec::new(),
            unchanged: None,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Appends to `tend.toml`.
    pub fn site(mut self, text: &str) -> Test {
        self.site.push_str(&self.expand(text));
        self
    }

    /// Replaces `tend.toml` entirely.
    pub fn site_exactly(mut self, text: &str) -> Test {
        self.site = self.expand(text);
        self
    }

    pub fn file(self, path: &str, contents: &str) -> Test {
        let full = self.dir.path().join(path);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(&full, self.expand(contents)).expect("write");
        self
    }

    pub fn args(mut self, args: &[&str]) -> Test {
        let expanded: Vec<String> = args.iter().map(|a| self.expand(a)).collect();
        self.args.extend(expanded);
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Test {
        let value = self.expand(value);
        self.env.push((key.to_owned(), value));
        self
    }

    pub fn status(mut self, code: i32) -> Test {
        self.status = code;
        self
    }

    pub fn stdout(mut self, text: &str) -> Test {
        self.stdout = Some(self.expand(text));
        self
    }

    pub fn stderr(mut self, text: &str) -> Test {
        self.stderr = Some(self.expand(text));
        self
    }

    pub fn stderr_contains(mut self, text: &str) -> Test {
        let text = self.expand(text);
        self.stderr_contains.push(text);
        self
    }

    /// Nothing in the site folder may change.
    pub fn unchanged(mut self) -> Test {
        self.unchanged = Some(Vec::new());
        self
    }

    /// Nothing may change but tend's own bookkeeping of the run: the root folder itself
    /// (created by the first run), the audit log, the run report, the metrics and the state
    /// folder (lock, audit head, metrics ledger).
    pub fn unchanged_but_bookkeeping(mut self) -> Test {
        self.unchanged =
            Some(vec!["root/audit".into(), "root/reports".into(), "root/metrics".into(), "root/state".into()]);
        self
    }

    fn expand(&self, text: &str) -> String {
        text.replace("{dir}", &self.dir.path().display().to_string())
    }

    /// Writes `tend.toml`, for a test that runs tend by hand.
    pub fn write_site(&self) {
        std::fs::write(self.dir.path().join("tend.toml"), &self.site).expect("write tend.toml");
    }

    /// Writes `tend.toml`, runs tend in the site folder and checks every expectation.
    pub fn run(self) -> Done {
        self.write_site();
        let before = snapshot(self.dir.path());
        let mut command = Command::new(TEND);
        command
            .args(&self.args)
            .current_dir(self.dir.path())
            .env_remove("TEND_TOKEN")
            .env_remove("TEND_SITE")
            .env_remove("TEND_HOME")
            .env_remove("TEND_LOG");
        for (k, v) in &self.env {
            command.env(k, v);
        }
        let output = command.output().expect("run tend");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let shown = format!("args: {:?}\n--- stdout\n{stdout}--- stderr\n{stderr}---", self.args);
        assert_eq!(output.status.code(), Some(self.status), "exit code\n{shown}");
        if let Some(want) = &self.stdout {
            assert_eq!(&stdout, want, "stdout\n{shown}");
        }
        if let Some(want) = &self.stderr {
            assert_eq!(&stderr, want, "stderr\n{shown}");
        }
        for want in &self.stderr_contains {
            assert!(stderr.contains(want.as_str()), "stderr lacks {want:?}\n{shown}");
        }
        if let Some(except) = &self.unchanged {
            let after = snapshot(self.dir.path());
            let keep = |map: &BTreeMap<String, String>| -> BTreeMap<String, String> {
                map.iter()
                    .filter(|(k, _)| {
                        !(except.iter().any(|e| k.starts_with(e.as_str()))
                            || (!except.is_empty() && k.as_str() == "root"))
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            };
            assert_eq!(keep(&before), keep(&after), "the site folder changed\n{shown}");
        }
        Done { dir: self.dir, output }
    }
}

/// A finished run: its folder (still alive) and output.
pub struct Done {
    pub dir: tempfile::TempDir,
    pub output: Output,
}

impl Done {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    /// The run reports written under the root.
    pub fn reports(&self) -> Vec<serde_json::Value> {
        let dir = self.path().join("root/reports");
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(&dir).map(|d| d.map(|e| e.expect("entry").path()).collect()).unwrap_or_default();
        files.sort();
        files
            .iter()
            .map(|f| serde_json::from_str(&std::fs::read_to_string(f).expect("read report")).expect("report json"))
            .collect()
    }

    pub fn audit_lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.path().join("root/audit/audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// Every entry below `dir` (not following links): kind, size, mode, mtime and content hash.
pub fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let entry = entry.expect("entry");
        let path = entry.path();
        let rel = path.strip_prefix(base).expect("prefix").display().to_string();
        // A file another thread of the test removes while this walks is simply not there.
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        let what = if meta.file_type().is_symlink() {
            let Ok(target) = std::fs::read_link(&path) else { continue };
            format!("link {}", target.display())
        } else if meta.is_dir() {
            walk(base, &path, out);
            format!("dir {:o}", meta.mode())
        } else {
            let Ok(bytes) = std::fs::read(&path) else { continue };
            format!(
                "file {:o} {} {} {}",
                meta.mode(),
                meta.len(),
                meta.mtime_nsec(),
                hex::encode(Sha256::digest(&bytes))
            )
        };
        out.insert(rel, what);
    }
}
