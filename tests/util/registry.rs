//! A real npm registry for tests: Verdaccio 5, installed on first use into
//! `<repo>/.local/verdaccio/`, started per test on a free loopback port with its own storage,
//! no uplinks (nothing is proxied from the public registry; `start_proxy` gives one that proxies npm) and one user whose token publishes.
//!
//! ```ignore
//! let registry = Registry::start();
//! registry.publish_fixture("tend-fixture-basic", "1.0.0");
//! let (status, body) = registry.get("tend-fixture-basic");
//! ```
//!
//! Fixture packages live in `tests/fixtures/packages/<name>/`; their `version` is a placeholder
//! that `publish_fixture` rewrites. Dropping the `Registry` stops Verdaccio (its whole process
//! group) and deletes its storage.

#![allow(dead_code)]

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::Digest;

/// The Verdaccio release the harness installs. 6.x needs Node 22.
pub const VERDACCIO_VERSION: &str = "5.33.0";

const START_DEADLINE: Duration = Duration::from_secs(30);
const STOP_GRACE: Duration = Duration::from_secs(3);
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
const PORT_ATTEMPTS: usize = 5;

const USER: &str = "tend";
const PASSWORD: &str = "tend-test-password";

/// The repository root (where `Cargo.toml` is).
pub fn repo_root() -> PathBuf {
    super::npm::repo_root()
}

/// `tests/fixtures/packages/`.
pub fn fixtures_dir() -> PathBuf {
    repo_root().join("tests/fixtures/packages")
}

/// Where the harness keeps its Verdaccio install: `<repo>/.local/verdaccio/`.
pub fn verdaccio_dir() -> PathBuf {
    repo_root().join(".local/verdaccio")
}

/// A running Verdaccio. Stopped (process group killed and reaped) and its storage deleted on drop.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    port: u16,
    token: String,
    /// config.yaml, storage/, htpasswd, .npmrc, npm-cache/, verdaccio.log, publish temp dirs.
    dir: tempfile::TempDir,
}

/// One HTTP response from [`Registry::request`].
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names lowercased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Registry {
    /// Installs Verdaccio if needed, then starts a fresh, empty registry and creates the
    /// publishing user. Panics, with Verdaccio's output, when it does not come up in 30 s.
    pub fn start() -> Registry {
        Registry::start_with(false)
    }

    /// A registry that also proxies the public npm registry (Verdaccio's uplink, caching
    /// what it fetches in its storage): for the demo site's real MCP servers.
    pub fn start_proxy() -> Registry {
        Registry::start_with(true)
    }

    fn start_with(proxy: bool) -> Registry {
        let main = ensure_installed();
        let mut last_log = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let dir = tempfile::Builder::new().prefix("tend-registry-").tempdir().expect("temp dir for the registry");
            let nonce = nonce();
            let config = dir.path().join("config.yaml");
            fs::write(&config, config_yaml(dir.path(), &nonce, proxy)).expect("write verdaccio config");
            let port = free_port();
            let log = File::create(dir.path().join("verdaccio.log")).expect("create verdaccio.log");
            let child = Command::new("node")
                .arg(&main)
                .arg("--config")
                .arg(&config)
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log handle"))
                .stderr(log)
                .process_group(0)
                .spawn()
                .expect("spawn verdaccio (is `node` on PATH?)");
            let mut registry = Registry { child, port, token: String::new(), dir };
            match registry.wait_ready(&nonce) {
                Ok(()) => {
                    registry.token = registry.create_user();
                    registry.write_npmrc();
                    return registry;
                }
                // Another process took the port between free_port() and Verdaccio's bind.
                Err(Retry::PortTaken) => last_log = registry.log(),
                Err(Retry::Fatal(why)) => {
                    let log = registry.log();
                    panic!("verdaccio did not start on port {port}: {why}\n--- verdaccio output ---\n{log}");
                }
            }
        }
        panic!("verdaccio: no free port after {PORT_ATTEMPTS} attempts\n--- verdaccio output ---\n{last_log}");
    }

    /// `http://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The publishing user's token (`_authToken`).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// A userconfig that points npm at this registry with the publishing token
    /// (`registry=`, `//127.0.0.1:PORT/:_authToken=`, a private cache).
    pub fn npmrc(&self) -> PathBuf {
        self.dir.path().join(".npmrc")
    }

    /// Verdaccio's storage folder (`<storage>/<name>/package.json` is the stored packument).
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// What Verdaccio printed so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("verdaccio.log")).unwrap_or_default()
    }

    /// `npm publish` of a package folder (tag `latest`).
    pub fn publish(&self, dir: &Path) {
        self.publish_with(dir, &[]);
    }

    /// `npm publish --tag TAG` of a package folder.
    pub fn publish_tagged(&self, dir: &Path, tag: &str) {
        self.publish_with(dir, &["--tag", tag]);
    }

    /// `npm publish EXTRA...` of a package folder; panics with npm's output on failure.
    pub fn publish_with(&self, dir: &Path, extra: &[&str]) {
        let out = self
            .npm()
            .arg("publish")
            .arg("--ignore-scripts")
            .args(extra)
            .current_dir(dir)
            .output()
            .expect("run npm publish");
        super::npm::check_npm("npm publish", dir, &out);
    }

    /// Publishes `tests/fixtures/packages/<name>/` as `<name>@<version>` (tag `latest`).
    pub fn publish_fixture(&self, name: &str, version: &str) {
        let staged = self.stage_fixture(name, version, |_| {});
        self.publish(staged.path());
    }

    /// Publishes a fixture as `<name>@<version>` under dist-tag `tag`.
    pub fn publish_fixture_tagged(&self, name: &str, version: &str, tag: &str) {
        let staged = self.stage_fixture(name, version, |_| {});
        self.publish_tagged(staged.path(), tag);
    }

    /// Like [`Registry::publish_fixture`] but without npm: packs the fixture in-process and
    /// sends the same `PUT /<name>` document `npm publish` sends. ~100x faster; the tarball
    /// holds every file of the fixture folder (no `files`/.npmignore filtering).
    pub fn publish_fixture_direct(&self, name: &str, version: &str) {
        let staged = self.stage_fixture(name, version, |_| {});
        self.publish_direct(staged.path(), "latest");
    }

    /// In-process publish of a package folder under dist-tag `tag` (see
    /// [`Registry::publish_fixture_direct`]); panics with the registry's answer on failure.
    pub fn publish_direct(&self, dir: &Path, tag: &str) {
        let text = fs::read_to_string(dir.join("package.json")).expect("read package.json");
        let mut manifest: serde_json::Value = serde_json::from_str(&text).expect("package.json is JSON");
        let name = manifest["name"].as_str().expect("package.json has a name").to_string();
        let version = manifest["version"].as_str().expect("package.json has a version").to_string();
        let tgz = pack(dir);
        let basename = name.rsplit('/').next().unwrap_or(&name);
        let file = format!("{basename}-{version}.tgz");
        let integrity = format!("sha512-{}", base64(&sha2::Sha512::digest(&tgz)));
        let obj = manifest.as_object_mut().expect("package.json is an object");
        obj.insert("_id".into(), format!("{name}@{version}").into());
        obj.insert(
            "dist".into(),
            serde_json::json!({
                "integrity": integrity,
                "shasum": hex::encode(sha1(&tgz)),
                "tarball": format!("{}{name}/-/{file}", self.url()),
            }),
        );
        let doc = serde_json::json!({
            "_id": name,
            "name": name,
            "description": manifest.get("description").cloned().unwrap_or_default(),
            "dist-tags": { tag: version },
            "versions": { version.clone(): manifest },
            "access": null,
            "_attachments": {
                file: {
                    "content_type": "application/octet-stream",
                    "data": base64(&tgz),
                    "length": tgz.len(),
                }
            },
        })
        .to_string();
        let auth = format!("Bearer {}", self.token);
        let r = self.request(
            "PUT",
            &format!("/{}", name.replace('/', "%2f")),
            &[("Content-Type", "application/json"), ("Authorization", &auth)],
            Some(doc.as_bytes()),
        );
        assert!(
            r.status == 200 || r.status == 201,
            "publish {name}@{version}: {} {}\n--- verdaccio output ---\n{}",
            r.status,
            r.text(),
            self.log()
        );
    }

    /// Copies a fixture into a temp dir, sets its `version`, lets `edit` change its package.json
    /// further (dependencies, engines, ...), and returns the dir (deleted when dropped).
    pub fn stage_fixture(
        &self,
        name: &str,
        version: &str,
        edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
    ) -> tempfile::TempDir {
        let src = fixtures_dir().join(name);
        assert!(src.is_dir(), "no fixture package at {}", src.display());
        let staged = tempfile::Builder::new()
            .prefix("tend-fixture-")
            .tempdir_in(self.dir.path())
            .expect("temp dir for a fixture");
        copy_dir(&src, staged.path());
        let manifest = staged.path().join("package.json");
        let text = fs::read_to_string(&manifest).expect("read fixture package.json");
        let mut json: serde_json::Value = serde_json::from_str(&text).expect("fixture package.json is JSON");
        let map = json.as_object_mut().expect("package.json is an object");
        map.insert("version".into(), serde_json::Value::String(version.into()));
        edit(map);
        let text = serde_json::to_string_pretty(&json).expect("serialize package.json");
        fs::write(&manifest, text + "\n").expect("write fixture package.json");
        staged
    }

    /// Changes the stored packument of `name` in place (Verdaccio reads it from disk on every
    /// request): e.g. backdate `time[version]` so a cooldown has passed. Panics if not published.
    pub fn edit_packument(&self, name: &str, edit: impl FnOnce(&mut serde_json::Value)) {
        let path = self.storage().join(name).join("package.json");
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("no stored packument for {name} at {}: {e}", path.display()));
        let mut json: serde_json::Value = serde_json::from_str(&text).expect("stored packument is JSON");
        edit(&mut json);
        let tmp = path.with_extension("json.tend-tmp");
        fs::write(&tmp, serde_json::to_string_pretty(&json).expect("serialize packument")).expect("write packument");
        fs::rename(&tmp, &path).expect("replace packument");
    }

    /// Sets `time[version]` (an RFC 3339 string, e.g. `"2020-01-01T00:00:00.000Z"`).
    pub fn set_publish_time(&self, name: &str, version: &str, time: &str) {
        self.edit_packument(name, |json| {
            let times = json
                .as_object_mut()
                .expect("packument is an object")
                .entry("time")
                .or_insert_with(|| serde_json::json!({}));
            times[version] = serde_json::Value::String(time.into());
        });
    }

    /// Blocking `GET` of a path (`"tend-fixture-basic"`, `"/-/ping"`, or a full URL on this
    /// registry); the body as text.
    pub fn get(&self, path: &str) -> (u16, String) {
        let r = self.request("GET", path, &[], None);
        let text = r.text();
        (r.status, text)
    }

    /// `GET` returning the raw body (tarballs).
    pub fn get_bytes(&self, path: &str) -> (u16, Vec<u8>) {
        let r = self.request("GET", path, &[], None);
        (r.status, r.body)
    }

    /// `GET` of a JSON document; panics unless 200 and JSON.
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
    }

    /// A minimal HTTP/1.1 request (`Connection: close`) over std's TcpStream.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Response {
        let path = self.path_of(path);
        http(self.port, method, &path, headers, body).unwrap_or_else(|e| {
            panic!("{method} {path} on {}: {e}\n--- verdaccio output ---\n{}", self.url(), self.log())
        })
    }

    /// An `npm` command using this registry's userconfig.
    pub fn npm(&self) -> Command {
        let mut cmd = Command::new("npm");
        cmd.arg("--registry")
            .arg(self.url())
            .arg("--userconfig")
            .arg(self.npmrc())
            .env("npm_config_update_notifier", "false")
            .env("npm_config_fund", "false")
            .env("npm_config_audit", "false")
            .stdin(Stdio::null());
        cmd
    }

    fn path_of(&self, path: &str) -> String {
        let url = self.url();
        let path = path.strip_prefix(url.trim_end_matches('/')).unwrap_or(path);
        if path.starts_with('/') { path.to_string() } else { format!("/{path}") }
    }

    fn wait_ready(&mut self, nonce: &str) -> Result<(), Retry> {
        let deadline = Instant::now() + START_DEADLINE;
        let mut last_err = String::from("no answer yet");
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("poll verdaccio") {
                let log = self.log();
                if log.contains("EADDRINUSE") {
                    return Err(Retry::PortTaken);
                }
                return Err(Retry::Fatal(format!("it exited with {status}")));
            }
            match http(self.port, "GET", "/-/ping", &[], None) {
                Ok(r) if r.status == 200 => {
                    // Someone else may have grabbed the port first: make sure it is ours.
                    if r.header("x-powered-by") == Some(nonce) {
                        return Ok(());
                    }
                    last_err =
                        format!("port {} answered by another server ({:?})", self.port, r.header("x-powered-by"));
                }
                Ok(r) => last_err = format!("/-/ping answered {}", r.status),
                Err(e) => last_err = e.to_string(),
            }
            thread::sleep(Duration::from_millis(50));
        }
        Err(Retry::Fatal(format!("no answer to GET /-/ping within {START_DEADLINE:?} ({last_err})")))
    }

    fn create_user(&self) -> String {
        let body = serde_json::json!({
            "_id": format!("org.couchdb.user:{USER}"),
            "name": USER,
            "password": PASSWORD,
            "email": "tend@example.invalid",
            "type": "user",
            "roles": [],
        })
        .to_string();
        let r = self.request(
            "PUT",
            &format!("/-/user/org.couchdb.user:{USER}"),
            &[("Content-Type", "application/json")],
            Some(body.as_bytes()),
        );
        let text = r.text();
        assert!(r.status == 201 || r.status == 200, "create user: {} {text}", r.status);
        let json: serde_json::Value = serde_json::from_str(&text).expect("user answer is JSON");
        json["token"].as_str().unwrap_or_else(|| panic!("no token in {text}")).to_string()
    }

    fn write_npmrc(&self) {
        let host = format!("//127.0.0.1:{}/", self.port);
        let text = format!(
            "registry={url}\n{host}:_authToken={token}\ncache={cache}\naudit=false\nfund=false\nupdate-notifier=false\n",
            url = self.url(),
            token = self.token,
            cache = self.dir.path().join("npm-cache").display(),
        );
        fs::write(self.npmrc(), text).expect("write .npmrc");
    }

    /// SIGTERM to the process group, SIGKILL after a grace, then reap.
    fn stop(&mut self) {
        let pgid = rustix::process::Pid::from_child(&self.child);
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::TERM);
            let deadline = Instant::now() + STOP_GRACE;
            while Instant::now() < deadline {
                if self.child.try_wait().ok().flatten().is_some() {
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        // Whatever is left of the group (the leader, if it ignored SIGTERM, or its children).
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        let _ = self.child.wait();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

enum Retry {
    PortTaken,
    Fatal(String),
}

/// Installs Verdaccio into `.local/verdaccio/` (once); returns the path of its entry script.
pub fn ensure_installed() -> PathBuf {
    let dir = verdaccio_dir();
    super::npm::install_once(
        &dir,
        serde_json::json!({ "verdaccio": VERDACCIO_VERSION }),
        serde_json::json!({ "node-fetch": "2.7.0" }),
        &["node_modules/.bin/verdaccio", "node_modules/verdaccio/bin/verdaccio"],
    );
    dir.join("node_modules/verdaccio/bin/verdaccio")
}

/// A gzipped tarball of every file under `dir`, as `package/<path>`, with npm's fixed mtime.
fn pack(dir: &Path) -> Vec<u8> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> =
            fs::read_dir(dir).expect("read package dir").map(|e| e.expect("dir entry").path()).collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                out.push(path.strip_prefix(base).expect("under base").to_path_buf());
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files);
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for rel in files {
        let data = fs::read(dir.join(&rel)).expect("read package file");
        let executable = fs::metadata(dir.join(&rel)).map(|m| m.permissions().mode() & 0o111 != 0).unwrap_or(false);
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(if executable { 0o755 } else { 0o644 });
        header.set_mtime(499_162_500); // 1985-10-26T08:15:00Z, what npm pack uses
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, Path::new("package").join(&rel), data.as_slice()).expect("append to tarball");
    }
    tar.into_inner().expect("finish tar").finish().expect("finish gzip")
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// SHA-1 (for npm's legacy `dist.shasum`; the crate has no SHA-1 dependency).
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a.rotate_left(5).wrapping_add(f).wrapping_add(e).wrapping_add(k).wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, x) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

fn config_yaml(dir: &Path, nonce: &str, proxy: bool) -> String {
    let d = dir.display();
    let (uplinks, via) = if proxy {
        ("\n  npmjs:\n    url: https://registry.npmjs.org/\n    timeout: 60s\n    maxage: 30m", "\n    proxy: npmjs")
    } else {
        (" {}", "")
    };
    // `user_agent` becomes the X-Powered-By header: start() checks it to know the server
    // answering on the port is this one.
    format!(
        r#"storage: "{d}/storage"
plugins: "{d}/plugins"
user_agent: "{nonce}"
web:
  enable: false
auth:
  htpasswd:
    file: "{d}/htpasswd"
    max_users: 1000
    algorithm: sha1
uplinks:{uplinks}
packages:
  "@*/*":
    access: $all
    publish: $authenticated
    unpublish: $authenticated{via}
  "**":
    access: $all
    publish: $authenticated
    unpublish: $authenticated{via}
server:
  keepAliveTimeout: 5
publish:
  allow_offline: true
max_body_size: 50mb
log:
  type: stdout
  format: pretty
  level: http
"#
    )
}

fn nonce() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("tend-test-registry-{}-{n}-{t}", std::process::id())
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local addr").port()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create dir");
    for entry in fs::read_dir(from).expect("read fixture dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy fixture file");
        }
    }
}

fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nAccept: */*\r\nUser-Agent: tend-test-harness\r\n"
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    if let Some(body) = body {
        stream.write_all(body)?;
    }
    stream.flush()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("malformed HTTP response: {:?}", String::from_utf8_lossy(&raw)),
        )
    })
}

fn parse_response(raw: &[u8]) -> Option<Response> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked { dechunk(rest)? } else { rest.to_vec() };
    Some(Response { status, headers, body })
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}
