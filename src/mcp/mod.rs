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

/// Why no message came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Silence {
    Timeout,
    Closed,
}

/// One answered request of a burst.
#[derive(Debug)]
pub struct Answer {
    pub result: Result<Value, McpError>,
    pub latency: Duration,
}

/// Requests sent at once whose answers are still to be collected.
#[derive(Debug)]
pub struct InFlight {
    deadline: Instant,
    timeout: Duration,
    /// id, method, when it was sent, and its answer once there is one.
    pending: Vec<(i64, String, Instant, Option<Answer>)>,
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
        let sent = self.send_all(calls, timeout);
        self.collect(sent)
    }

    /// The first half of [`Client::burst`]: sends every request and returns without waiting, so
    /// that other requests can be made while these are answered ([`Client::collect`] takes
    /// their answers, which are kept by id meanwhile).
    pub fn send_all(&mut self, calls: &[(String, Value)], timeout: Duration) -> InFlight {
        let deadline = Instant::now() + timeout;
        let pending = calls
            .iter()
            .map(|(method, params)| match self.send_request(method, params, deadline) {
                Ok((id, sent)) => (id, method.clone(), sent, None),
                Err(e) => (0, method.clone(), Instant::now(), Some(Answer { result: Err(e), latency: Duration::ZERO })),
            })
            .collect();
        InFlight { deadline, timeout, pending }
    }

    /// The answers to requests [`Client::send_all`] sent, in their order, waiting for them
    /// until their deadline.
    pub fn collect(&mut self, mut requests: InFlight) -> Vec<Answer> {
        let pending = &mut requests.pending;
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
            if let Some(silence) = self.receive_one(requests.deadline) {
                for (_, method, sent, answer) in pending.iter_mut().filter(|p| p.3.is_none()) {
                    let error = match silence {
                        Silence::Closed => McpError::Closed { method: method.clone() },
                        Silence::Timeout => McpError::Timeout { method: method.clone(), after: requests.timeout },
                    };
                    *answer = Some(Answer { result: Err(error), latency: sent.elapsed() });
                }
                break;
            }
        }
        requests.pending.into_iter().filter_map(|p| p.3).collect()
    }

    /// Every page of each listing (`("tools/list", "tools")`, ...), following `nextCursor`.
    ///
    /// The listings go out together: the first page of each is sent at once, and a listing's
    /// next page as soon as its previous page is answered (JSON-RPC answers by id, in any
    /// order), so the round trips of the listings overlap. Each page has `timeout` from its
    /// own send. A listing that fails (an error answer, a cursor that comes back, more than
    /// [`MAX_PAGES`] pages) leaves the others going; when the server goes quiet or closes,
    /// every listing still waiting fails with it.
    pub fn list_all(&mut self, listings: &[(&str, &str)], timeout: Duration) -> Vec<Result<Vec<Value>, McpError>> {
        struct Listing<'a> {
            method: &'a str,
            key: &'a str,
            items: Vec<Value>,
            cursors: std::collections::HashSet<String>,
            pages: usize,
            /// The page in flight: its id and deadline.
            waiting: Option<(i64, Instant)>,
            outcome: Option<Result<Vec<Value>, McpError>>,
        }
        impl Listing<'_> {
            fn request<T: Transport>(&mut self, client: &mut Client<T>, cursor: Option<&str>, timeout: Duration) {
                if self.pages == MAX_PAGES {
                    self.fail(format!("more than {MAX_PAGES} pages"));
                    return;
                }
                self.pages += 1;
                let params = cursor.map_or_else(|| json!({}), |c| json!({ "cursor": c }));
                let deadline = Instant::now() + timeout;
                match client.send_request(self.method, &params, deadline) {
                    Ok((id, _)) => self.waiting = Some((id, deadline)),
                    Err(e) => self.outcome = Some(Err(e)),
                }
            }

            fn fail(&mut self, detail: String) {
                self.waiting = None;
                self.outcome = Some(Err(McpError::Malformed { method: self.method.into(), detail }));
            }

            /// Takes one answered page; the cursor of the next one, if there is one to fetch.
            fn page(&mut self, message: Value) -> Option<String> {
                self.waiting = None;
                let page = match outcome(self.method, message) {
                    Ok(page) => page,
                    Err(e) => {
                        self.outcome = Some(Err(e));
                        return None;
                    }
                };
                let Some(list) = page.get(self.key).and_then(Value::as_array) else {
                    self.fail(format!("the answer has no `{}` array", self.key));
                    return None;
                };
                self.items.extend(list.iter().cloned());
                match page.get("nextCursor").and_then(Value::as_str) {
                    Some(next) if !next.is_empty() => {
                        if self.cursors.insert(next.to_owned()) {
                            return Some(next.to_owned());
                        }
                        self.fail(format!("cursor `{next}` came back twice"));
                    }
                    _ => self.outcome = Some(Ok(std::mem::take(&mut self.items))),
                }
                None
            }
        }

        let mut all: Vec<Listing<'_>> = listings
            .iter()
            .map(|&(method, key)| Listing {
                method,
                key,
                items: Vec::new(),
                cursors: std::collections::HashSet::new(),
                pages: 0,
                waiting: None,
                outcome: None,
            })
            .collect();
        for listing in &mut all {
            listing.request(self, None, timeout);
        }
        loop {
            for listing in &mut all {
                let Some((id, _)) = listing.waiting else { continue };
                if let Some((message, _)) = self.stash.remove(&id) {
                    if let Some(cursor) = listing.page(message) {
                        listing.request(self, Some(&cursor), timeout);
                    }
                }
            }
            let Some(deadline) = all.iter().filter_map(|l| l.waiting.map(|(_, d)| d)).min() else { break };
            match self.receive_one(deadline) {
                None => {}
                Some(Silence::Closed) => {
                    for listing in all.iter_mut().filter(|l| l.waiting.is_some()) {
                        listing.waiting = None;
                        listing.outcome = Some(Err(McpError::Closed { method: listing.method.into() }));
                    }
                }
                Some(Silence::Timeout) => {
                    let now = Instant::now();
                    for listing in all.iter_mut().filter(|l| l.waiting.is_some_and(|(_, d)| d <= now)) {
                        listing.waiting = None;
                        listing.outcome =
                            Some(Err(McpError::Timeout { method: listing.method.into(), after: timeout }));
                    }
                }
            }
        }
        all.into_iter()
            .map(|l| {
                l.outcome.unwrap_or_else(|| {
                    Err(McpError::Malformed { method: l.method.into(), detail: "no answer was awaited".into() })
                })
            })
            .collect()
    }

    /// Sends one request; its id and when it went.
    fn send_request(&mut self, method: &str, params: &Value, deadline: Instant) -> Result<(i64, Instant), McpError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({ "jsonrpc": "2.0", "id": id, "method": method });
        if !params.is_null() {
            message["params"] = params.clone();
        }
        let sent = Instant::now();
        self.transport
            .send(&message, deadline)
            .map(|()| (id, sent))
            .map_err(|detail| McpError::Transport { method: method.into(), detail })
    }

    /// Takes the next message from the server (an answer goes to the stash); `None` when one
    /// came, else why none did before `deadline`.
    fn receive_one(&mut self, deadline: Instant) -> Option<Silence> {
        match self.transport.receive(deadline) {
            Received::Message(message) => self.dispatch(message),
            Received::Violation(what) => self.violations.push(what),
            Received::Timeout => return Some(Silence::Timeout),
            Received::Closed => return Some(Silence::Closed),
        }
        None
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A server in memory: answers each request with `answer(method, params)` (no answer for
    /// `None`), and hands the answers back newest first, so they arrive out of order.
    struct Scripted {
        answer: fn(&str, &Value) -> Option<Value>,
        queued: Vec<Value>,
        /// `send METHOD` and `receive`, in the order they happened.
        events: Vec<String>,
    }

    impl Scripted {
        fn new(answer: fn(&str, &Value) -> Option<Value>) -> Client<Scripted> {
            Client::new(Scripted { answer, queued: Vec::new(), events: Vec::new() })
        }
    }

    impl Transport for Scripted {
        fn send(&mut self, message: &Value, _deadline: Instant) -> Result<(), String> {
            let method = message["method"].as_str().unwrap_or_default();
            self.events.push(format!("send {method}"));
            if let Some(result) = (self.answer)(method, &message["params"]) {
                let mut reply = json!({ "jsonrpc": "2.0", "id": message["id"] });
                let key = if result.get("code").is_some() { "error" } else { "result" };
                reply[key] = result;
                self.queued.push(reply);
            }
            Ok(())
        }

        fn receive(&mut self, deadline: Instant) -> Received {
            self.events.push("receive".into());
            match self.queued.pop() {
                Some(message) => Received::Message(message),
                None => {
                    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                    Received::Timeout
                }
            }
        }
    }

    /// Pages of `n` items named `prefix0`, `prefix1`, ...: two items a page, the cursor the
    /// index of the next item.
    fn pages(prefix: &str, key: &str, n: usize, params: &Value) -> Value {
        let start: usize = params["cursor"].as_str().map_or(0, |c| c.parse().unwrap());
        let items: Vec<Value> = (start..n.min(start + 2)).map(|i| json!({ "name": format!("{prefix}{i}") })).collect();
        let mut page = json!({ key: items });
        if start + 2 < n {
            page["nextCursor"] = json!((start + 2).to_string());
        }
        page
    }

    fn names(listed: &Result<Vec<Value>, McpError>) -> Vec<String> {
        listed.as_ref().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect()
    }

    const LISTINGS: [(&str, &str); 3] =
        [("tools/list", "tools"), ("resources/list", "resources"), ("prompts/list", "prompts")];
    const TIMEOUT: Duration = Duration::from_millis(50);

    #[test]
    fn listings_go_out_together_and_follow_their_pages_through_answers_out_of_order() {
        let mut client = Scripted::new(|method, params| match method {
            "tools/list" => Some(pages("t", "tools", 5, params)),
            "resources/list" => Some(pages("r", "resources", 3, params)),
            _ => Some(json!({ "code": -32601, "message": "no prompts here" })),
        });
        let listed = client.list_all(&LISTINGS, TIMEOUT);
        assert_eq!(names(&listed[0]), ["t0", "t1", "t2", "t3", "t4"]);
        assert_eq!(names(&listed[1]), ["r0", "r1", "r2"]);
        assert!(matches!(&listed[2], Err(McpError::Rpc { code: -32601, method, .. }) if method == "prompts/list"));
        let events = &client.transport.events;
        assert_eq!(events[..3], ["send tools/list", "send resources/list", "send prompts/list"], "{events:?}");
        assert_eq!(events.iter().filter(|e| *e == "send tools/list").count(), 3, "three pages of tools");
        assert!(client.violations.is_empty(), "{:?}", client.violations);
    }

    #[test]
    fn a_cursor_that_comes_back_fails_its_listing_only() {
        let mut client = Scripted::new(|method, params| match method {
            "tools/list" => Some(json!({ "tools": [{ "name": "again" }], "nextCursor": "same" })),
            _ => Some(pages("r", "resources", 4, params)),
        });
        let listed = client.list_all(&LISTINGS[..2], TIMEOUT);
        assert_eq!(
            listed[0],
            Err(McpError::Malformed { method: "tools/list".into(), detail: "cursor `same` came back twice".into() })
        );
        assert_eq!(names(&listed[1]), ["r0", "r1", "r2", "r3"]);
    }

    #[test]
    fn a_listing_never_answered_times_out_while_the_others_complete() {
        let mut client = Scripted::new(|method, params| match method {
            "resources/list" => None,
            _ => Some(pages("t", "tools", 3, params)),
        });
        let started = Instant::now();
        let listed = client.list_all(&LISTINGS[..2], TIMEOUT);
        assert_eq!(names(&listed[0]), ["t0", "t1", "t2"]);
        assert_eq!(listed[1], Err(McpError::Timeout { method: "resources/list".into(), after: TIMEOUT }));
        assert!(started.elapsed() >= TIMEOUT);
    }

    #[test]
    fn a_burst_sent_before_the_listings_is_collected_after_them() {
        let mut client = Scripted::new(|method, params| match method {
            "ping" => Some(json!({})),
            _ => Some(pages("t", "tools", 3, params)),
        });
        let calls: Vec<(String, Value)> = (0..4).map(|_| ("ping".to_owned(), Value::Null)).collect();
        let burst = client.send_all(&calls, TIMEOUT);
        let listed = client.list_all(&LISTINGS[..1], TIMEOUT);
        let answers = client.collect(burst);
        assert_eq!(names(&listed[0]), ["t0", "t1", "t2"]);
        assert_eq!(answers.len(), 4);
        assert!(answers.iter().all(|a| a.result == Ok(json!({}))), "{answers:?}");
        assert!(client.stash.is_empty());
    }
}
