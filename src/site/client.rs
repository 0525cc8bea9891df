//! MCP client configs: `.mcp.json` and `claude_desktop_config.json` (an `mcpServers` map) and
//! VS Code's `.vscode/mcp.json` (a `servers` map). tend reads the servers from them, infers the
//! npm package behind each `npx` line, and rewrites one entry at a time while keeping every
//! other field and server exactly as it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Which map of servers a client config holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ClientKind {
    /// `{"mcpServers": {...}}`: Claude Code, Claude Desktop, Cursor and most others.
    McpServers,
    /// `{"servers": {...}}`: VS Code.
    Servers,
}

impl ClientKind {
    pub fn key(self) -> &'static str {
        match self {
            ClientKind::McpServers => "mcpServers",
            ClientKind::Servers => "servers",
        }
    }
}

/// A parsed client config file.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    pub path: PathBuf,
    pub kind: ClientKind,
    document: Map<String, Value>,
    trailing_newline: bool,
}

/// An npm package and the version a command line pins, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageSpec {
    pub name: String,
    pub version: Option<String>,
}

/// One server entry of a client config.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerEntry {
    pub name: String,
    pub client: Option<PathBuf>,
    pub command: Option<String>,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub url: Option<String>,
    /// HTTP headers for a `url` entry.
    pub headers: BTreeMap<String, String>,
    /// The working directory the client starts the server in, when the entry names one.
    pub cwd: Option<String>,
    pub package: Option<PackageSpec>,
}

impl ClientConfig {
    /// Reads and parses a client config; invalid JSON names the file, line and column.
    pub fn load(path: &Path) -> Result<ClientConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::config(format!("cannot read client config {}: {e}", path.display())))?;
        ClientConfig::parse(path, &text)
    }

    /// The config as its file reads now: adopt and swap rewrite client configs during a run,
    /// and what they wrote is what the rest of the run must see. The loaded copy when the file
    /// cannot be read or parsed (a site built in code, a file being replaced).
    pub fn reloaded(&self) -> ClientConfig {
        std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|text| ClientConfig::parse(&self.path, &text).ok())
            .unwrap_or_else(|| self.clone())
    }

    pub fn parse(path: &Path, text: &str) -> Result<ClientConfig> {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            Error::config(format!(
                "{}:{}:{}: invalid JSON: {}",
                path.display(),
                e.line(),
                e.column(),
                strip_position(&e)
            ))
        })?;
        let Value::Object(document) = value else {
            return Err(Error::config(format!("{}:1:1: a client config must be a JSON object", path.display())));
        };
        let kind = if document.contains_key("mcpServers") {
            ClientKind::McpServers
        } else if document.contains_key("servers") || path.ends_with(".vscode/mcp.json") {
            ClientKind::Servers
        } else {
            ClientKind::McpServers
        };
        if let Some(servers) = document.get(kind.key()) {
            if !servers.is_object() {
                return Err(Error::config(format!(
                    "{}: `{}` must be an object of servers",
                    path.display(),
                    kind.key()
                )));
            }
        }
        Ok(ClientConfig { path: path.to_path_buf(), kind, document, trailing_newline: text.ends_with('\n') })
    }

    /// The server entries, in file order.
    pub fn entries(&self) -> Vec<ServerEntry> {
        let Some(Value::Object(servers)) = self.document.get(self.kind.key()) else {
            return Vec::new();
        };
        servers
            .iter()
            .map(|(name, value)| {
                let command = value.get("command").and_then(Value::as_str).map(str::to_owned);
                let args: Vec<String> = value
                    .get("args")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                let strings = |key: &str| -> BTreeMap<String, String> {
                    value
                        .get(key)
                        .and_then(Value::as_object)
                        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
                        .unwrap_or_default()
                };
                let env = strings("env");
                let package = command.as_deref().and_then(|c| infer_package(c, &args));
                ServerEntry {
                    name: name.clone(),
                    client: Some(self.path.clone()),
                    command,
                    args,
                    env,
                    url: value.get("url").and_then(Value::as_str).map(str::to_owned),
                    headers: strings("headers"),
                    cwd: value.get("cwd").and_then(Value::as_str).map(str::to_owned),
                    package,
                }
            })
            .collect()
    }

    /// The raw JSON of one entry.
    pub fn entry(&self, name: &str) -> Option<&Value> {
        self.document.get(self.kind.key())?.get(name)
    }

    /// The file's new text with entry `name` set to `value`; every other field and server is
    /// kept, in its order. Writing it is the caller's effect (adopt, swap, rollback).
    pub fn render_with_entry(&self, name: &str, value: Value) -> String {
        let mut document = self.document.clone();
        let servers = document.entry(self.kind.key()).or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(map) = servers {
            map.insert(name.to_owned(), value);
        }
        let mut text = serde_json::to_string_pretty(&Value::Object(document)).unwrap_or_default();
        if self.trailing_newline {
            text.push('\n');
        }
        text
    }
}

fn strip_position(err: &serde_json::Error) -> String {
    let text = err.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// The npm package behind `npx [-y] pkg[@version] ...` (also `npx --package=pkg cmd` and
/// `npx -p pkg cmd`). Other commands map to no package.
pub fn infer_package(command: &str, args: &[String]) -> Option<PackageSpec> {
    npx_invocation(command, args).map(|n| n.package)
}

/// What an `npx` line runs: the package, the bin it names (`npx -p pkg bin`), and the
/// arguments that go to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpxInvocation {
    pub package: PackageSpec,
    pub bin: Option<String>,
    pub args: Vec<String>,
}

/// Reads an `npx [-y] pkg[@version] args...` (or `npx -p pkg bin args...`) line.
pub fn npx_invocation(command: &str, args: &[String]) -> Option<NpxInvocation> {
    let program = Path::new(command).file_name()?.to_str()?;
    if !matches!(program, "npx" | "npx.cmd") {
        return None;
    }
    let mut package: Option<PackageSpec> = None;
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if arg == "-p" || arg == "--package" {
            package = Some(split_spec(args.get(i + 1)?));
            i += 2;
            continue;
        }
        if let Some(spec) = arg.strip_prefix("--package=") {
            package = Some(split_spec(spec));
            i += 1;
            continue;
        }
        let first = if arg == "--" { i + 1 } else { i };
        if arg != "--" && arg.starts_with('-') {
            i += 1;
            continue;
        }
        let word = args.get(first)?;
        let rest = args.get(first + 1..).unwrap_or_default().to_vec();
        return Some(match package {
            Some(package) => NpxInvocation { package, bin: Some(word.clone()), args: rest },
            None => NpxInvocation { package: split_spec(word), bin: None, args: rest },
        });
    }
    package.map(|package| NpxInvocation { package, bin: None, args: Vec::new() })
}

/// `@scope/name@1.2.3` -> (`@scope/name`, `1.2.3`); `name` -> (`name`, none).
fn split_spec(spec: &str) -> PackageSpec {
    let search_from = usize::from(spec.starts_with('@'));
    match spec[search_from..].find('@') {
        Some(at) => {
            let at = at + search_from;
            let version = &spec[at + 1..];
            PackageSpec {
                name: spec[..at].to_owned(),
                version: (!version.is_empty() && version != "latest").then(|| version.to_owned()),
            }
        }
        None => PackageSpec { name: spec.to_owned(), version: None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn infers_packages_from_npx_lines() {
        type Case<'a> = (&'a str, &'a [&'a str], Option<(&'a str, Option<&'a str>)>);
        let cases: [Case<'_>; 8] = [
            (
                "npx",
                &["-y", "@modelcontextprotocol/server-memory"],
                Some(("@modelcontextprotocol/server-memory", None)),
            ),
            (
                "npx",
                &["-y", "@modelcontextprotocol/server-memory@2025.4.25"],
                Some(("@modelcontextprotocol/server-memory", Some("2025.4.25"))),
            ),
            ("/usr/bin/npx", &["--yes", "left-pad@1.3.0", "--flag"], Some(("left-pad", Some("1.3.0")))),
            ("npx", &["-p", "@scope/pkg@2", "run-it"], Some(("@scope/pkg", Some("2")))),
            ("npx", &["--package=tool@latest", "tool"], Some(("tool", None))),
            ("npx", &["-y"], None),
            ("node", &["server.js"], None),
            ("uvx", &["mcp-server-git"], None),
        ];
        for (command, list, want) in cases {
            let got = infer_package(command, &args(list));
            let want = want.map(|(n, v)| PackageSpec { name: n.into(), version: v.map(Into::into) });
            assert_eq!(got, want, "{command} {list:?}");
        }
    }

    #[test]
    fn npx_lines_give_the_bin_and_the_server_arguments() {
        let got =
            npx_invocation("npx", &args(&["-y", "@modelcontextprotocol/server-filesystem@1.0.0", "/tmp", "/srv"]))
                .expect("npx line");
        assert_eq!((got.bin, got.args), (None, args(&["/tmp", "/srv"])));
        let got = npx_invocation("npx", &args(&["-y", "-p", "pkg@2", "pkg-server", "--port", "0"])).expect("npx line");
        assert_eq!(
            (got.package.name.as_str(), got.bin.as_deref(), got.args),
            ("pkg", Some("pkg-server"), args(&["--port", "0"]))
        );
        let got = npx_invocation("npx", &args(&["--", "tool", "-v"])).expect("npx line");
        assert_eq!((got.package.name.as_str(), got.args), ("tool", args(&["-v"])));
    }

    #[test]
    fn rewriting_one_entry_keeps_everything_else() {
        let text = r#"{
  "globalShortcut": "Ctrl+Space",
  "mcpServers": {
    "memory": { "command": "npx", "args": ["-y", "@modelcontextprotocol/server-memory"], "env": {"A": "1"} },
    "git": { "command": "uvx", "args": ["mcp-server-git"], "disabled": true }
  },
  "zeta": [1, 2]
}
"#;
        let config = ClientConfig::parse(Path::new("/x/.mcp.json"), text).unwrap();
        let out = config.render_with_entry("memory", serde_json::json!({"command": "/root/current/bin", "args": []}));
        let back: Value = serde_json::from_str(&out).unwrap();
        let before: Value = serde_json::from_str(text).unwrap();
        assert_eq!(back["globalShortcut"], before["globalShortcut"]);
        assert_eq!(back["zeta"], before["zeta"]);
        assert_eq!(back["mcpServers"]["git"], before["mcpServers"]["git"]);
        assert_eq!(back["mcpServers"]["memory"]["command"], "/root/current/bin");
        let keys: Vec<&String> = back.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["globalShortcut", "mcpServers", "zeta"]);
        assert!(out.ends_with("}\n"));
    }

    #[test]
    fn vscode_servers_map_is_read() {
        let text = r#"{"servers": {"fs": {"type": "stdio", "command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"]}}}"#;
        let config = ClientConfig::parse(Path::new("/x/.vscode/mcp.json"), text).unwrap();
        assert_eq!(config.kind, ClientKind::Servers);
        let entries = config.entries();
        assert_eq!(entries[0].name, "fs");
        assert_eq!(entries[0].package.as_ref().unwrap().name, "@modelcontextprotocol/server-filesystem");
    }

    #[test]
    fn invalid_json_names_line_and_column() {
        let err = ClientConfig::parse(Path::new("/x/.mcp.json"), "{\n  \"mcpServers\": {,}\n}").unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert_eq!(err.message(), "/x/.mcp.json:2:18: invalid JSON: key must be a string");
    }
}
