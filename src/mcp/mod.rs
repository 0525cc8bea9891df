//! A small MCP client, built for judging servers rather than using them.
//!
//! tend does not use `rmcp` here. A health probe needs control that a general client hides: the
//! exact bytes of a line on stdout that is not JSON-RPC (a protocol violation the report must
//! quote), the protocol version the server chose even when tend does not support it (so the
//! report can say which), a deadline on every single request, the time of each answer, many
//! requests in flight at once to measure a burst, and a child process whose whole group tend
//! owns and kills. The protocol surface a probe needs (initialize, the three listings with
//! pagination, ping, tools/call, answering the server's own pings) is small, and it is written
//! against the specification: <https://modelcontextprotocol.io/specification/2025-11-25>.
//!
//! Two transports: stdio (newline-delimited JSON-RPC on a child's stdin and stdout) and
//! Streamable HTTP (one POST per message, answered with JSON or an SSE stream).

pub mod http;
pub mod stdio;

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Protocol versions tend speaks, newest first. `initialize` offers the first.
pub const SUPPORTED_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// Pages a listing may have before tend gives up on it (a server that cycles cursors).
const MAX_PAGES: usize = 1000;

/// What a transport hands over.
#[derive(Debug)]
pub enum Received {
    Message(Value),
    /// Bytes that are not a JSON-RPC message, described for the report.
    Violation(String),
    Timeout,
    Closed,
}

/// A way to exchange JSON-RPC messages with a server.
pub trait Transport {
    /// Sends one message. Transports that answer in the same exchange (HTTP) may take until
    /// `deadline`.
    fn send(&mut self, message: &Value, deadline: Instant) -> Result<(), String>;
    /// The next message from the server, waiting until `deadline`.
    fn receive(&mut self, deadline: Instant) -> Received;
    /// Tells the transport the negotiated version (HTTP sends it as a header).
    fn negotiated(&mut self, _version: &str) {}
}

/// Why a request got no usable answer.
#[derive(Debug, Clone, PartialEq)]
pub enum McpError {
    Timeout { method: String, after: Duration },
    Closed { method: String },
    Rpc { method: String, code: i64, message: String },
    Malformed { method: String, detail: String },
    Transport { method: String, detail: String },
}

impl McpError {
    pub fn method(&self) -> &str {
        match self {
            McpError::Timeout { method, .. }
            | McpError::Closed { method }
            | McpError::Rpc { method, .. }
            | McpError::Malformed { method, .. }
            | McpError::Transport { method, .. } => method,
        }
    }
}

impl fmt::Display for McpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            McpError::Timeout { method, after } => {
                write!(f, "no answer to `{method}` within {}", crate::duration::HumanDuration(*after))
            }
            McpError::Closed { method } => write!(f, "the server closed the connection before answering `{method}`"),
            McpError::Rpc { method, code, message } => {
                write!(f, "`{method}` failed: {message} (JSON-RPC error {code})")
            }
            McpError::Malformed { method, detail } => write!(f, "`{method}`: {detail}"),
            McpError::Transport { method, detail } => write!(f, "`{method}`: {detail}"),
        }
    }
}

/// The server's answer to `initialize`.
#[derive(Debug, Clone, PartialEq)]
pub struct Initialized {
    pub protocol_version: String,
    pub capabilities: Value,
    pub server_info: Value,
    pub instructions: Option<String>,
}

/// One answered request of a burst.
#[derive(Debug)]
pub struct Answer {
    pub result: Result<Value, McpError>,
    pub latency: Duration,
}

/// An MCP session over a transport.
#[derive(Debug)]
pub struct Client<T> {
    pub transport: T,
    next_id: i64,
    /// Answers that arrived while tend waited for another one.
    stash: HashMap<i64, (Value, Instant)>,
    /// Protocol violations seen so far, in order.
    pub violations: Vec<String>,
    /// Requests the server sent to tend (it answers ping and roots/list).
    pub server_requests: Vec<String>,
}

impl<T: Transport> Client<T> {
    pub fn new(transport: T) -> Client<T> {
        Client { transport, next_id: 1, stash: HashMap::new(), violations: Vec::new(), server_requests: Vec::new() }
    }

    /// Sends `initialize` offering the newest version tend knows. The answer is returned
    /// whatever version it names; the caller judges it.
    pub fn initialize(&mut self, timeout: Duration) -> Result<Initialized, McpError> {
        let params = json!({
            "protocolVersion": SUPPORTED_VERSIONS[0],
            "capabilities": { "roots": { "listChanged": false } },
            "clientInfo": { "name": "tend", "version": env!("CARGO_PKG_VERSION") },
        });
        let result = self.request("initialize", params, timeout)?;
        let malformed = |detail: &str| McpError::Malformed { method: "initialize".into(), detail: detail.into() };
        let version = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("the answer has no protocolVersion"))?;
        let init = Initialized {
            protocol_version: version.to_owned(),
            capabilities: result.get("capabilities").cloned().unwrap_or_else(|| json!({})),
            server_info: result.get("serverInfo").cloned().unwrap_or(Value::Null),
            instructions: result.get("instructions").and_then(Value::as_str).map(str::to_owned),
        };
        if SUPPORTED_VERSIONS.contains(&version) {
            self.transport.negotiated(version);
        }
        Ok(init)
    }

    /// Sends a notification.
    pub fn notify(&mut self, method: &str, params: Option<Value>) -> Result<(), McpError> {
        let mut message = json!({ "jsonrpc": "2.0", "method": method });
        if let Some(params) = params {
            message["params"] = params;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        self.transport.send(&message, deadline).map_err(|detail| McpError::Transport { method: method.into(), detail })
    }

    /// One request, answered within `timeout`.
    pub fn request(&mut self, method: &str, params: Value, timeout: Duration) -> Result<Value, McpError> {
        let mut answers = self.burst(&[(method.to_owned(), params)], timeout);
        answers.remove(0).result
    }

    /// Sends every request at once, then collects the answers (each by its id), all within
    /// `timeout` of the first send. Latency is measured per request from its send.
    pub fn burst(&mut self, calls: &[(String, Value)], timeout: Duration) -> Vec<Answer> {
        let deadline = Instant::now() + timeout;
        let mut pending: Vec<(i64, String, Instant, Option<Answer>)> = Vec::with_capacity(calls.len());
        for (method, params) in calls {
            let id = self.next_id;
            self.next_id += 1;
            let mut message = json!({ "jsonrpc": "2.0", "id": id, "method": method });
            if !params.is_null() {
                message["params"] = params.clone();
            }
            let sent = Instant::now();
            let failed = self.transport.send(&message, deadline).err().map(|detail| Answer {
                result: Err(McpError::Transport { method: method.clone(), detail }),
                latency: sent.elapsed(),
            });
            pending.push((id, method.clone(), sent, failed));
        }
        loop {
            for (id, method, sent, answer) in pending.iter_mut().filter(|p| p.3.is_none()) {
                if let Some((message, at)) = self.stash.remove(id) {
                    *answer =
                        Some(Answer { result: outcome(method, message), latency: at.saturating_duration_since(*sent) });
                }
            }
            if pending.iter().all(|p| p.3.is_some()) {
                break;
            }
            match self.transport.receive(deadline) {
                Received::Message(message) => self.dispatch(message),
                Received::Violation(what) => self.violations.push(what),
                silence @ (Received::Timeout | Received::Closed) => {
                    for (_, method, sent, answer) in pending.iter_mut().filter(|p| p.3.is_none()) {
                        let error = match silence {
                            Received::Closed => McpError::Closed { method: method.clone() },
                            _ => McpError::Timeout { method: method.clone(), after: timeout },
                        };
                        *answer = Some(Answer { result: Err(error), latency: sent.elapsed() });
                    }
                    break;
                }
            }
        }
        pending.into_iter().filter_map(|p| p.3).collect()
    }

    /// Every page of a listing (`tools/list` -> `tools`), following `nextCursor`.
    pub fn list_all(&mut self, method: &str, key: &str, timeout: Duration) -> Result<Vec<Value>, McpError> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..MAX_PAGES {
            let params = cursor.as_ref().map_or_else(|| json!({}), |c| json!({ "cursor": c }));
            let page = self.request(method, params, timeout)?;
            let list = page.get(key).and_then(Value::as_array).ok_or_else(|| McpError::Malformed {
                method: method.into(),
                detail: format!("the answer has no `{key}` array"),
            })?;
            items.extend(list.iter().cloned());
            match page.get("nextCursor").and_then(Value::as_str) {
                Some(next) if !next.is_empty() => {
                    if !seen.insert(next.to_owned()) {
                        return Err(McpError::Malformed {
                            method: method.into(),
                            detail: format!("cursor `{next}` came back twice"),
                        });
                    }
                    cursor = Some(next.to_owned());
                }
                _ => return Ok(items),
            }
        }
        Err(McpError::Malformed { method: method.into(), detail: format!("more than {MAX_PAGES} pages") })
    }

    /// Routes one incoming message: an answer is stashed by id, a request from the server is
    /// answered, a notification is dropped.
    fn dispatch(&mut self, message: Value) {
        let now = Instant::now();
        if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            self.violations.push(format!("a message without \"jsonrpc\": \"2.0\": {}", clip(&message.to_string())));
        }
        let id = message.get("id").cloned();
        match (message.get("method").and_then(Value::as_str), id) {
            (Some(method), Some(id)) => {
                self.server_requests.push(method.to_owned());
                let reply = match method {
                    "ping" => json!({ "jsonrpc": "2.0", "id": id, "result": {} }),
                    "roots/list" => json!({ "jsonrpc": "2.0", "id": id, "result": { "roots": [] } }),
                    other => json!({ "jsonrpc": "2.0", "id": id, "error": {
                        "code": -32601, "message": format!("tend's health probe does not handle `{other}`") } }),
                };
                let _ = self.transport.send(&reply, now + Duration::from_secs(5));
            }
            (Some(_), None) => {}
            (None, Some(id)) if message.get("result").is_some() || message.get("error").is_some() => {
                match id.as_i64() {
                    Some(n) if n > 0 && n < self.next_id => {
                        self.stash.insert(n, (message, now));
                    }
                    _ => self.violations.push(format!("an answer to a request tend never sent (id {id})")),
                }
            }
            _ => self
                .violations
                .push(format!("not a JSON-RPC request, notification or answer: {}", clip(&message.to_string()))),
        }
    }
}

/// The result of an answer, or its error.
fn outcome(method: &str, message: Value) -> Result<Value, McpError> {
    if let Some(error) = message.get("error") {
        return Err(McpError::Rpc {
            method: method.into(),
            code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: error.get("message").and_then(Value::as_str).unwrap_or("(no message)").to_owned(),
        });
    }
    Ok(message.get("result").cloned().unwrap_or(Value::Null))
}

/// At most 200 characters of `text`, for reports.
pub fn clip(text: &str) -> String {
    let mut out: String = text.chars().take(200).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

/// Bytes as a report quotes them: lossy UTF-8, escaped, clipped.
pub fn quote_bytes(bytes: &[u8]) -> String {
    format!("\"{}\"", clip(&String::from_utf8_lossy(bytes).escape_debug().to_string()))
}
