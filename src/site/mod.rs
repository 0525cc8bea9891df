//! The site: one host's `tend.toml` merged over embedded defaults, with paths resolved against
//! the file's folder and the client configs it names already parsed. Every error names the
//! file, line, column and key.

mod client;
mod settings;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use client::{ClientConfig, ClientKind, NpxInvocation, PackageSpec, ServerEntry, infer_package, npx_invocation};
pub use settings::{
    BurstMethod, Category, Count, Limits, LimitsLayer, Monitor, MonitorLayer, OnToolChange, Policy, PolicyLayer, Probe,
    ProbeLayer, Retention, RetentionLayer, Thresholds, ThresholdsLayer, Update, UpdateLayer,
};

use crate::duration::HumanDuration;
use crate::error::{Error, Result};
use crate::guard::auth::TokenEntry;
use crate::guard::jail::normalize;

/// The client configs looked for when `tend.toml` names none.
pub const DEFAULT_CLIENTS: [&str; 3] = [".mcp.json", "claude_desktop_config.json", ".vscode/mcp.json"];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SiteFile {
    root: Option<PathBuf>,
    clients: Option<Vec<PathBuf>>,
    registry: Option<String>,
    #[serde(default)]
    auth: AuthSection,
    #[serde(default)]
    paths: PathsSection,
    #[serde(default)]
    policy: PolicyLayer,
    #[serde(default)]
    thresholds: ThresholdsLayer,
    #[serde(default)]
    probe: ProbeLayer,
    #[serde(default)]
    retention: RetentionLayer,
    #[serde(default)]
    monitor: MonitorLayer,
    #[serde(default)]
    update: UpdateLayer,
    #[serde(default)]
    limits: LimitsLayer,
    #[serde(default)]
    schedule: Vec<ScheduleSection>,
    #[serde(default)]
    notify: Vec<Notify>,
    #[serde(default)]
    servers: BTreeMap<String, ServerSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthSection {
    #[serde(default)]
    tokens: Vec<TokenEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PathsSection {
    #[serde(default)]
    allow: Vec<PathBuf>,
    #[serde(default)]
    protect: Vec<PathBuf>,
}

/// One `[[schedule]]` entry. Loading a site checks the name and the expression
/// (`crate::schedule`) and makes `playbook` absolute against the site file's folder; the
/// schedule commands check that the playbook exists.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub name: String,
    pub cron: String,
    pub playbook: PathBuf,
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    #[serde(default)]
    pub jitter: Option<HumanDuration>,
}

/// `[[schedule]]` as written, with the positions of the values that are checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleSection {
    name: toml::Spanned<String>,
    cron: toml::Spanned<String>,
    playbook: PathBuf,
    #[serde(default)]
    vars: BTreeMap<String, String>,
    #[serde(default)]
    jitter: Option<HumanDuration>,
}

/// The events a webhook can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    Rollback,
    Failure,
    Update,
    Prune,
    /// A playbook's own `notify(level, message)` below the error level.
    Message,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Rollback => "rollback",
            Event::Failure => "failure",
            Event::Update => "update",
            Event::Prune => "prune",
            Event::Message => "message",
        }
    }
}

/// One `[[notify]]` webhook.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    /// Where the JSON message is POSTed. Often a secret (a Slack hook): logs show only its host.
    pub url: String,
    /// The events this webhook receives (default: all).
    #[serde(default = "all_events")]
    pub on: Vec<Event>,
    /// Per attempt (default 5s).
    #[serde(default = "notify_timeout")]
    pub timeout: HumanDuration,
    /// Attempts after the first one, on a connection error, a timeout, 408, 429 or 5xx (default 2).
    #[serde(default = "notify_retries")]
    pub retries: u32,
    /// Extra request headers, e.g. `{ Authorization = "Bearer ..." }`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn all_events() -> Vec<Event> {
    vec![Event::Rollback, Event::Failure, Event::Update, Event::Prune, Event::Message]
}

fn notify_timeout() -> HumanDuration {
    HumanDuration::from_secs(5)
}

fn notify_retries() -> u32 {
    2
}

/// A smoke tool call the health suites make for one server.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Smoke {
    pub tool: String,
    #[serde(default)]
    pub args: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub expect: Option<serde_json::Value>,
}

/// `[servers.NAME]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerSection {
    package: Option<String>,
    #[serde(default)]
    smoke: Vec<Smoke>,
    #[serde(default)]
    policy: PolicyLayer,
    #[serde(default)]
    thresholds: ThresholdsLayer,
    #[serde(default)]
    probe: ProbeLayer,
    #[serde(default)]
    retention: RetentionLayer,
    #[serde(default)]
    monitor: MonitorLayer,
}

/// One server's effective settings: the site's values with its own overrides merged over them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerSettings {
    pub package: Option<String>,
    pub smoke: Vec<Smoke>,
    pub policy: Policy,
    pub thresholds: Thresholds,
    pub probe: Probe,
    pub retention: Retention,
    pub monitor: Monitor,
}

/// A loaded site. Fields are public so that embedding programs can build one in code.
#[derive(Debug, Clone)]
pub struct Site {
    /// The `tend.toml` this came from, if any.
    pub file: Option<PathBuf>,
    /// The folder relative paths are resolved against.
    pub dir: PathBuf,
    pub root: PathBuf,
    pub clients: Vec<ClientConfig>,
    pub registry: Option<String>,
    pub tokens: Vec<TokenEntry>,
    pub allow: Vec<PathBuf>,
    pub protect: Vec<PathBuf>,
    pub policy: Policy,
    pub thresholds: Thresholds,
    pub probe: Probe,
    pub retention: Retention,
    pub monitor: Monitor,
    pub update: Update,
    pub limits: Limits,
    pub schedule: Vec<Schedule>,
    pub notify: Vec<Notify>,
    overrides: BTreeMap<String, ServerSection>,
}

impl Site {
    /// The embedded defaults for a site whose relative paths start at `dir`, with `root`
    /// from `$TEND_HOME` or the platform data folder, and the client configs found in `dir`.
    pub fn defaults(dir: impl Into<PathBuf>) -> Result<Site> {
        Site::from_file(SiteFile::default(), dir.into(), None)
    }

    /// Finds and loads the site: `explicit` (from `--site`), else `./tend.toml`, else
    /// `$TEND_SITE`, else the defaults for the working directory.
    pub fn discover(explicit: Option<&Path>) -> Result<Site> {
        let cwd =
            std::env::current_dir().map_err(|e| Error::config(format!("cannot read the working directory: {e}")))?;
        if let Some(path) = explicit {
            return Site::load(&cwd.join(path));
        }
        let local = cwd.join("tend.toml");
        if local.is_file() {
            return Site::load(&local);
        }
        if let Some(env) = std::env::var_os("TEND_SITE").filter(|v| !v.is_empty()) {
            return Site::load(&cwd.join(env));
        }
        Site::defaults(cwd)
    }

    /// Loads one `tend.toml`.
    pub fn load(path: &Path) -> Result<Site> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::config(format!("cannot read site file {}: {e}", path.display())))?;
        let path = normalize(path);
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
        Site::from_toml_str(&text, &dir, Some(&path))
    }

    /// Parses site text; `file` is used in messages and as the site's identity.
    pub fn from_toml_str(text: &str, dir: &Path, file: Option<&Path>) -> Result<Site> {
        let shown = file.map_or_else(|| "tend.toml".to_owned(), |f| f.display().to_string());
        let parsed: SiteFile =
            toml::Deserializer::parse(text).map_err(|err| toml_error(&shown, text, "", &err)).and_then(|de| {
                serde_path_to_error::deserialize(de).map_err(|err| {
                    let key = err.path().to_string();
                    toml_error(&shown, text, &key, err.inner())
                })
            })?;
        check_schedule(&shown, text, &parsed.schedule)?;
        Site::from_file(parsed, dir.to_path_buf(), file.map(Path::to_path_buf))
    }

    fn from_file(parsed: SiteFile, dir: PathBuf, file: Option<PathBuf>) -> Result<Site> {
        let dir = normalize(&dir);
        let root = match parsed.root {
            Some(root) => normalize(&dir.join(root)),
            None => default_root()?,
        };
        let clients = match parsed.clients {
            Some(list) => {
                list.iter().map(|p| ClientConfig::load(&normalize(&dir.join(p)))).collect::<Result<Vec<_>>>()?
            }
            None => DEFAULT_CLIENTS
                .iter()
                .map(|p| dir.join(p))
                .filter(|p| p.is_file())
                .map(|p| ClientConfig::load(&p))
                .collect::<Result<Vec<_>>>()?,
        };
        let mut site = Site {
            file,
            root,
            clients,
            registry: parsed.registry,
            tokens: parsed.auth.tokens,
            allow: parsed.paths.allow.iter().map(|p| normalize(&dir.join(p))).collect(),
            protect: parsed.paths.protect.iter().map(|p| normalize(&dir.join(p))).collect(),
            policy: Policy::default(),
            thresholds: Thresholds::default(),
            probe: Probe::default(),
            retention: Retention::default(),
            monitor: Monitor::default(),
            update: Update::default(),
            limits: Limits::default(),
            schedule: parsed
                .schedule
                .into_iter()
                .map(|s| Schedule {
                    name: s.name.into_inner(),
                    cron: s.cron.into_inner(),
                    playbook: normalize(&dir.join(&s.playbook)),
                    vars: s.vars,
                    jitter: s.jitter,
                })
                .collect(),
            notify: parsed.notify,
            overrides: parsed.servers,
            dir,
        };
        site.policy.overlay(&parsed.policy);
        site.thresholds.overlay(&parsed.thresholds);
        site.probe.overlay(&parsed.probe);
        site.retention.overlay(&parsed.retention);
        site.monitor.overlay(&parsed.monitor);
        site.update.overlay(&parsed.update);
        site.limits.overlay(&parsed.limits);
        Ok(site)
    }

    /// The effective settings of one server: site values with `[servers.NAME]` merged over.
    pub fn server(&self, name: &str) -> ServerSettings {
        let mut settings = ServerSettings {
            package: None,
            smoke: Vec::new(),
            policy: self.policy.clone(),
            thresholds: self.thresholds.clone(),
            probe: self.probe.clone(),
            retention: self.retention.clone(),
            monitor: self.monitor.clone(),
        };
        if let Some(o) = self.overrides.get(name) {
            settings.package = o.package.clone();
            settings.smoke = o.smoke.clone();
            settings.policy.overlay(&o.policy);
            settings.thresholds.overlay(&o.thresholds);
            settings.probe.overlay(&o.probe);
            settings.retention.overlay(&o.retention);
            settings.monitor.overlay(&o.monitor);
        }
        settings
    }

    /// Every server of every client config (as the files read now), in file order, with the
    /// package tend maps it to. A server named only in `tend.toml` is listed too.
    pub fn servers(&self) -> Vec<ServerEntry> {
        let mut out: Vec<ServerEntry> = Vec::new();
        for client in self.clients.iter().map(ClientConfig::reloaded) {
            for mut entry in client.entries() {
                if entry.package.is_none() {
                    entry.package = self.adopted_package(&entry);
                }
                if let Some(package) = self.overrides.get(&entry.name).and_then(|o| o.package.clone()) {
                    let version = entry.package.as_ref().and_then(|p| p.version.clone());
                    entry.package = Some(PackageSpec { name: package, version });
                }
                if !out.iter().any(|e| e.name == entry.name) {
                    out.push(entry);
                }
            }
        }
        for (name, o) in &self.overrides {
            if !out.iter().any(|e| &e.name == name) {
                out.push(ServerEntry {
                    name: name.clone(),
                    client: None,
                    command: None,
                    args: Vec::new(),
                    env: BTreeMap::new(),
                    url: None,
                    headers: BTreeMap::new(),
                    cwd: None,
                    package: o.package.clone().map(|name| PackageSpec { name, version: None }),
                });
            }
        }
        out
    }

    /// The package of an adopted entry (one started through `<root>/servers/<name>/current/`):
    /// the live release's `release.json` names it.
    fn adopted_package(&self, entry: &ServerEntry) -> Option<PackageSpec> {
        let current = self.root.join("servers").join(&entry.name).join("current");
        if !Path::new(entry.command.as_deref()?).starts_with(&current) {
            return None;
        }
        let text = std::fs::read_to_string(current.join("release.json")).ok()?;
        let release: serde_json::Value = serde_json::from_str(&text).ok()?;
        Some(PackageSpec { name: release.get("package")?.as_str()?.to_owned(), version: None })
    }

    /// The files only adopt, swap and rollback may write: client configs and `paths.protect`.
    pub fn protected_files(&self) -> Vec<PathBuf> {
        self.clients.iter().map(|c| c.path.clone()).chain(self.protect.iter().cloned()).collect()
    }

    /// The effective policy as the `site()` primitive shows it.
    pub fn to_json(&self) -> serde_json::Value {
        let servers: serde_json::Map<String, serde_json::Value> = self
            .servers()
            .iter()
            .map(|s| (s.name.clone(), serde_json::to_value(self.server(&s.name)).unwrap_or_default()))
            .collect();
        serde_json::json!({
            "file": self.file,
            "root": self.root,
            "clients": self.clients.iter().map(|c| &c.path).collect::<Vec<_>>(),
            "registry": self.registry,
            "paths": { "allow": self.allow, "protect": self.protect },
            "policy": self.policy,
            "thresholds": self.thresholds,
            "probe": self.probe,
            "retention": self.retention,
            "monitor": self.monitor,
            "update": self.update,
            "limits": self.limits,
            "tokens": self.tokens.iter().map(|t| serde_json::json!({"name": t.name, "scopes": t.scopes})).collect::<Vec<_>>(),
            "schedule": self.schedule,
            "notify": self.notify.iter().map(|n| serde_json::json!({"on": n.on})).collect::<Vec<_>>(),
            "servers": servers,
        })
    }
}

fn default_root() -> Result<PathBuf> {
    if let Some(home) = std::env::var_os("TEND_HOME").filter(|v| !v.is_empty()) {
        let home = PathBuf::from(home);
        let cwd =
            std::env::current_dir().map_err(|e| Error::config(format!("cannot read the working directory: {e}")))?;
        return Ok(normalize(&cwd.join(home)));
    }
    dirs::data_dir()
        .map(|d| d.join("tend"))
        .ok_or_else(|| Error::config("no root: set `root` in tend.toml or TEND_HOME"))
}

/// Every `[[schedule]]` entry has a usable, unique name and a valid cron expression; an error
/// points at the value and names the entry. (Whether the playbook exists is checked when a
/// schedule command starts: it may be written after the entry.)
fn check_schedule(file: &str, text: &str, schedule: &[ScheduleSection]) -> Result<()> {
    let at = |span: std::ops::Range<usize>| {
        let (line, col) = line_col(text, span.start);
        format!("{file}:{line}:{col}")
    };
    for (i, entry) in schedule.iter().enumerate() {
        let name = entry.name.get_ref();
        let problem = |span, why: String| Error::config(format!("{}: schedule `{name}`: {why}", at(span)));
        crate::schedule::check_name(name).map_err(|why| problem(entry.name.span(), why))?;
        if let Some(earlier) = schedule[..i].iter().find(|earlier| earlier.name.get_ref() == name) {
            let (line, _) = line_col(text, earlier.name.span().start);
            return Err(problem(entry.name.span(), format!("the entry at line {line} has the same name")));
        }
        crate::schedule::CronExpr::parse(entry.cron.get_ref()).map_err(|why| problem(entry.cron.span(), why))?;
    }
    Ok(())
}

/// `file:line:col: key: message`, from a toml error and the text it was read from.
fn toml_error(file: &str, text: &str, key: &str, err: &toml::de::Error) -> Error {
    let (line, col) = err.span().map_or((1, 1), |span| line_col(text, span.start));
    let message = err.message().trim_end_matches('\n').trim_end_matches('.');
    let mut out = format!("{file}:{line}:{col}: ");
    if !key.is_empty() && key != "." {
        out.push_str(&format!("`{key}`: "));
    }
    out.push_str(message);
    Error::config(out)
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Site> {
        Site::from_toml_str(text, Path::new("/srv/site"), Some(Path::new("/srv/site/tend.toml")))
    }

    #[test]
    fn defaults_hold_where_the_file_is_silent() {
        let site = parse("root = \"/var/lib/tend\"\n[]\n".replace("[]\n", "").as_str()).unwrap();
        assert_eq!(site.root, PathBuf::from("/var/lib/tend"));
        assert_eq!(site.retention.keep_releases, Count(2));
        assert_eq!(site.policy.min_release_age, HumanDuration::from_secs(3 * 86_400));
        assert_eq!(site.limits.max_operations, Count(50_000_000));
    }

    #[test]
    fn server_overrides_merge_over_site_values() {
        let site = parse(
            "root = \"r\"\n[policy]\nallow_major = true\nmin_release_age = \"1d\"\n\
             [servers.memory]\npackage = \"@modelcontextprotocol/server-memory\"\n\
             [servers.memory.policy]\nmin_release_age = \"12h\"\n[servers.memory.thresholds]\nstartup_ms = 900\n",
        )
        .unwrap();
        assert_eq!(site.root, PathBuf::from("/srv/site/r"));
        let memory = site.server("memory");
        assert!(memory.policy.allow_major);
        assert_eq!(memory.policy.min_release_age, HumanDuration::from_secs(12 * 3600));
        assert_eq!(memory.thresholds.startup_ms, Count(900));
        assert_eq!(memory.thresholds.fds, Count(1000));
        assert_eq!(site.server("other").policy.min_release_age, HumanDuration::from_secs(86_400));
    }

    #[test]
    fn errors_name_file_line_column_and_key() {
        let cases = [
            (
                "root = \"/r\"\n[retention]\nkeep_days = 3\n",
                "/srv/site/tend.toml:3:1: `retention.keep_days`: unknown field `keep_days`, expected one of `staging_days`",
            ),
            (
                "root = \"/r\"\n[retention]\nkeep_releases = \"two\"\n",
                "/srv/site/tend.toml:3:17: `retention.keep_releases`: invalid type: string \"two\", expected a whole number of 0 or more",
            ),
            (
                "root = \"/r\"\n[retention]\nkeep_releases = -1\n",
                "/srv/site/tend.toml:3:17: `retention.keep_releases`: must be 0 or more, found -1",
            ),
            (
                "root = \"/r\"\n[policy]\nmin_release_age = \"3 days\"\n",
                "/srv/site/tend.toml:3:19: `policy.min_release_age`: invalid duration `3 days`: expected a number followed by ms, s, m, h or d (for example `3d` or `1h30m`)",
            ),
            (
                "root = \"/r\"\n[auth]\ntokens = [{ name = \"cron\", sha256 = \"abc\", scopes = [\"stage\"] }]\n",
                "/srv/site/tend.toml:3:37: `auth.tokens[0].sha256`: expected the SHA-256 of the token as 64 hex digits, found 3 characters",
            ),
            ("root = [\n", "/srv/site/tend.toml:1:9: unclosed array, expected `]`"),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(err.message().starts_with(want), "\n got: {}\nwant: {want}", err.message());
        }
    }

    #[test]
    fn schedule_entries_are_checked_where_they_are_written_and_playbooks_resolved() {
        let entry = |name: &str, cron: &str| {
            format!("[[schedule]]\nname = \"{name}\"\ncron = \"{cron}\"\nplaybook = \"playbooks/update.rhai\"\n")
        };
        let site = parse(&format!("root = \"/r\"\n{}jitter = \"10m\"\n", entry("nightly", "0 3 * * *"))).unwrap();
        assert_eq!(site.schedule[0].playbook, PathBuf::from("/srv/site/playbooks/update.rhai"));
        assert_eq!(site.schedule[0].jitter, Some(HumanDuration::from_secs(600)));
        let cases = [
            (
                entry("nightly", "0 3 * *"),
                "/srv/site/tend.toml:4:8: schedule `nightly`: invalid cron expression `0 3 * *`: expected 5 fields (minute hour day-of-month month day-of-week), 6 with a leading seconds field, or a nickname such as @daily; found 4",
            ),
            (entry("", "@daily"), "/srv/site/tend.toml:3:8: schedule ``: the name is empty"),
            (
                format!("{}{}", entry("nightly", "@daily"), entry("nightly", "@hourly")),
                "/srv/site/tend.toml:7:8: schedule `nightly`: the entry at line 3 has the same name",
            ),
        ];
        for (text, want) in cases {
            let err = parse(&format!("root = \"/r\"\n{text}")).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert_eq!(err.message(), want);
        }
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("a\nbé = 1", 5), (2, 3));
    }
}
