//! The npm registry client: which registry serves a package (the site's `registry`, else the
//! user's npm configuration with `@scope:registry=` and `//host/:_authToken=` lines), fetching
//! packuments (full or abbreviated) with ETag revalidation, bounded retries on 5xx and
//! connection errors, and errors that name the package and the registry. Tokens are sent,
//! never logged.

mod packument;

pub use packument::{Bin, Dist, DistTags, Form, Manifest, Packument};

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::site::Site;

/// Where packages come from and the credentials for each registry.
#[derive(Clone, Default)]
pub struct RegistryConfig {
    default: String,
    scopes: BTreeMap<String, String>,
    /// `//host/path/` prefixes and their tokens.
    tokens: Vec<(String, String)>,
}

impl std::fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryConfig")
            .field("default", &self.default)
            .field("scopes", &self.scopes)
            .field("tokens", &format!("{} (redacted)", self.tokens.len()))
            .finish()
    }
}

fn with_slash(url: &str) -> String {
    if url.ends_with('/') { url.to_owned() } else { format!("{url}/") }
}

impl RegistryConfig {
    /// The site's `registry` wins; `.npmrc` files (the site's folder, then the user's) give
    /// scopes and tokens, and the registry when the site names none.
    pub fn for_site(site: &Site) -> RegistryConfig {
        let mut config = RegistryConfig { default: "https://registry.npmjs.org/".into(), ..RegistryConfig::default() };
        let mut files: Vec<PathBuf> = vec![site.dir.join(".npmrc")];
        if let Some(home) = dirs::home_dir() {
            files.push(home.join(".npmrc"));
        }
        let mut default_from_npmrc = None;
        for file in files.iter().rev() {
            if let Ok(text) = std::fs::read_to_string(file) {
                config.read_npmrc(&text, &mut default_from_npmrc);
            }
        }
        if let Some(url) = site.registry.as_deref().or(default_from_npmrc.as_deref()) {
            config.default = with_slash(url);
        }
        config
    }

    fn read_npmrc(&mut self, text: &str, default: &mut Option<String>) {
        for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#') && !l.starts_with(';')) {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let (key, value) = (key.trim(), value.trim().trim_matches('"'));
            if key == "registry" {
                *default = Some(value.to_owned());
            } else if let Some(scope) = key.strip_suffix(":registry").filter(|s| s.starts_with('@')) {
                self.scopes.insert(scope.to_owned(), with_slash(value));
            } else if let Some(prefix) = key.strip_suffix(":_authToken").filter(|k| k.starts_with("//")) {
                self.tokens.retain(|(p, _)| p != prefix);
                self.tokens.push((with_slash(prefix), value.to_owned()));
            }
        }
    }

    /// The registry that serves `package`.
    pub fn registry_for(&self, package: &str) -> &str {
        package
            .split_once('/')
            .and_then(|(scope, _)| self.scopes.get(scope))
            .map_or(self.default.as_str(), String::as_str)
    }

    fn token_for(&self, url: &str) -> Option<&str> {
        let bare = url.split_once("//").map_or(url, |(_, rest)| rest);
        self.tokens
            .iter()
            .filter(|(prefix, _)| bare.starts_with(prefix.trim_start_matches("//")))
            .max_by_key(|(p, _)| p.len())
            .map(|(_, t)| t.as_str())
    }
}

/// `@scope/name` -> `@scope%2fname`, as registries expect in a packument URL.
pub fn encode_name(package: &str) -> String {
    package.replace('/', "%2f")
}

/// A packument answer: a new packument with its ETag, or "not modified".
#[derive(Debug, Clone, PartialEq)]
pub enum Fetched {
    Fresh { packument: Packument, etag: Option<String> },
    NotModified,
}

/// An HTTP client for npm registries.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    config: RegistryConfig,
    retries: u32,
}

impl Client {
    pub fn new(config: RegistryConfig) -> Result<Client> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("tend/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(OnceResolver::default()))
            .build()
            .map_err(|e| Error::failed(format!("cannot build the HTTP client: {e}")))?;
        Ok(Client { http, config, retries: 3 })
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// The packument of `package` in `form`, revalidating `etag`; read into its slim form as
    /// it arrives, so the registry's full text is never kept.
    pub async fn packument(&self, package: &str, form: Form, etag: Option<&str>) -> Result<Fetched> {
        let registry = self.config.registry_for(package).to_owned();
        let url = format!("{registry}{}", encode_name(package));
        let failed = |why: String| Error::failed(format!("{package}: {why} (registry {registry})"));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self.http.get(&url).header("accept", form.accept());
            if let Some(token) = self.config.token_for(&url) {
                request = request.bearer_auth(token);
            }
            if let Some(etag) = etag {
                request = request.header("if-none-match", etag);
            }
            let outcome = request.send().await;
            let retry_after = match outcome {
                Ok(response) => {
                    let status = response.status().as_u16();
                    match status {
                        200 => {
                            let etag = response.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_owned);
                            let body =
                                response.bytes().await.map_err(|e| failed(format!("the answer broke off: {e}")))?;
                            let mut packument = Packument::from_slice(&body).map_err(failed)?;
                            // A registry without the abbreviated form sends the full one, times included.
                            packument.abbreviated = form == Form::Abbreviated && packument.time.is_empty();
                            return Ok(Fetched::Fresh { packument, etag });
                        }
                        304 => return Ok(Fetched::NotModified),
                        404 => return Err(failed("no such package".into())),
                        401 | 403 => {
                            return Err(failed(format!(
                                "access refused (HTTP {status}); check the token for this registry in .npmrc"
                            )));
                        }
                        500..=599 if attempt <= self.retries => format!("HTTP {status}"),
                        _ => return Err(failed(format!("HTTP {status}"))),
                    }
                }
                Err(e) if attempt <= self.retries && retryable(&e) => e.to_string(),
                Err(e) => {
                    return Err(failed(format!("cannot reach the registry: {}", root_cause(&e))));
                }
            };
            tracing::debug!("{package}: {retry_after}; retrying (attempt {attempt})");
            tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt - 1))).await;
        }
    }
}

impl Client {
    /// Downloads a tarball (at most `max` bytes), retrying 5xx and connection errors;
    /// `progress` hears the bytes received so far and the size, when the registry sends it.
    pub async fn tarball(
        &self,
        package: &str,
        url: &str,
        max: u64,
        mut progress: impl FnMut(u64, Option<u64>),
    ) -> Result<Vec<u8>> {
        let failed = |why: String| Error::failed(format!("{package}: tarball {url}: {why}"));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self.http.get(url);
            if let Some(token) = self.config.token_for(url) {
                request = request.bearer_auth(token);
            }
            let why = match request.send().await {
                Ok(response) if response.status().is_success() => {
                    if response.content_length().is_some_and(|n| n > max) {
                        return Err(failed(format!("larger than {max} bytes")));
                    }
                    let mut response = response;
                    let total = response.content_length();
                    let mut body = Vec::new();
                    while let Some(chunk) =
                        response.chunk().await.map_err(|e| failed(format!("the download broke off: {e}")))?
                    {
                        body.extend_from_slice(&chunk);
                        if body.len() as u64 > max {
                            return Err(failed(format!("larger than {max} bytes")));
                        }
                        progress(body.len() as u64, total);
                    }
                    return Ok(body);
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    if status < 500 || attempt > self.retries {
                        return Err(failed(format!("HTTP {status}")));
                    }
                    format!("HTTP {status}")
                }
                Err(e) if attempt <= self.retries && retryable(&e) => e.to_string(),
                Err(e) => return Err(failed(format!("cannot download: {}", root_cause(&e)))),
            };
            tracing::debug!("{package}: {why}; retrying the download (attempt {attempt})");
            tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt - 1))).await;
        }
    }
}

/// Resolves each host once per client. Concurrent requests to one registry each open a
/// connection, and with the system resolver each would ask DNS again (two queries apiece); a
/// resolver that rate-limits then drops some of them, and each drop costs a 5 s retry.
#[derive(Debug, Default)]
struct OnceResolver {
    hosts: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Vec<SocketAddr>>>>>,
}

impl reqwest::dns::Resolve for OnceResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let cell = self.hosts.lock().map(|mut hosts| Arc::clone(hosts.entry(host.clone()).or_default())).ok();
        Box::pin(async move {
            let cell = cell.ok_or("the DNS cache is poisoned")?;
            let addrs = cell
                .get_or_try_init(|| async move {
                    // getaddrinfo blocks; the port is set by the connector.
                    tokio::task::spawn_blocking(move || (host.as_str(), 0).to_socket_addrs().map(Iterator::collect))
                        .await
                        .map_err(|e| std::io::Error::other(e.to_string()))?
                })
                .await?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.clone().into_iter());
            Ok(addrs)
        })
    }
}

/// Connection failures and timeouts are worth another try; a certificate the host does not
/// trust will not change.
fn retryable(e: &reqwest::Error) -> bool {
    (e.is_connect() || e.is_timeout() || e.is_request()) && !root_cause(e).contains("certificate")
}

pub(crate) fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// The cache file of a packument: `<root>/state/cache/<encoded name>.json`, beside its ETag.
pub fn cache_paths(cache: &Path, package: &str) -> (PathBuf, PathBuf) {
    let base = encode_name(package);
    (cache.join(format!("{base}.json")), cache.join(format!("{base}.etag")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npmrc_scopes_tokens_and_default() {
        let mut c = RegistryConfig { default: "https://registry.npmjs.org/".into(), ..RegistryConfig::default() };
        let mut default = None;
        c.read_npmrc("registry=http://127.0.0.1:4873\n@corp:registry=https://npm.corp.example/api/\n//npm.corp.example/api/:_authToken=s3cret\n# comment\n", &mut default);
        assert_eq!(default.as_deref(), Some("http://127.0.0.1:4873"));
        assert_eq!(c.registry_for("@corp/tool"), "https://npm.corp.example/api/");
        assert_eq!(c.registry_for("left-pad"), "https://registry.npmjs.org/");
        assert_eq!(c.token_for("https://npm.corp.example/api/@corp%2ftool"), Some("s3cret"));
        assert_eq!(c.token_for("https://registry.npmjs.org/left-pad"), None);
        assert!(!format!("{c:?}").contains("s3cret"));
        assert_eq!(encode_name("@scope/name"), "@scope%2fname");
    }
}
