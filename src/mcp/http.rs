//! The Streamable HTTP transport: each message is one POST to the server's endpoint; a request
//! is answered with `application/json` (the answer) or `text/event-stream` (events, the answer
//! among them); notifications and answers get `202 Accepted`. The session id the server gives
//! on `initialize` goes back on every later message, as does the negotiated version, and the
//! session is ended with a DELETE.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Received, Transport, clip};

const SESSION_HEADER: &str = "mcp-session-id";

/// A server reached over HTTP.
#[derive(Debug)]
pub struct Http {
    runtime: tokio::runtime::Runtime,
    state: State,
}

/// Everything but the runtime that drives it.
#[derive(Debug)]
struct State {
    url: String,
    http: reqwest::Client,
    session: Option<String>,
    version: Option<String>,
    inbox: VecDeque<Received>,
}

impl Http {
    pub fn new(url: &str, headers: &[(String, String)]) -> Result<Http, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the async runtime: {e}"))?;
        let mut map = reqwest::header::HeaderMap::new();
        for (name, value) in headers {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| format!("header `{name}`: {e}"))?;
            let value = reqwest::header::HeaderValue::from_str(value).map_err(|e| format!("header `{name}`: {e}"))?;
            map.insert(name, value);
        }
        // The client's connector needs the runtime's context when it is built.
        let _context = runtime.enter();
        let http = reqwest::Client::builder()
            .default_headers(map)
            .user_agent(concat!("tend/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let state = State { url: url.to_owned(), http, session: None, version: None, inbox: VecDeque::new() };
        Ok(Http { runtime, state })
    }

    /// Ends the session (DELETE), if the server gave one.
    pub fn close(&mut self) {
        let Some(session) = self.state.session.take() else { return };
        let state = &self.state;
        let _ = self.runtime.block_on(async {
            state.http.delete(&state.url).header(SESSION_HEADER, session).timeout(Duration::from_secs(2)).send().await
        });
    }
}

impl State {
    async fn exchange(&mut self, message: &Value, deadline: Instant) -> Result<(), String> {
        let mut request = self
            .http
            .post(&self.url)
            .header(reqwest::header::ACCEPT, "application/json, text/event-stream")
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(message.to_string());
        if let Some(session) = &self.session {
            request = request.header(SESSION_HEADER, session);
        }
        if let Some(version) = &self.version {
            request = request.header("mcp-protocol-version", version);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let response = tokio::time::timeout(left, request.send())
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| format!("POST {}: {}", self.url, crate::registry::root_cause(&e)))?;
        let status = response.status();
        if let Some(session) = response.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok()) {
            self.session = Some(session.to_owned());
        }
        if status == reqwest::StatusCode::ACCEPTED {
            return Ok(());
        }
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(format!("POST {} answered {status}: {}", self.url, clip(body.trim())));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if content_type.starts_with("text/event-stream") {
            self.read_events(response, message.get("id"), deadline).await
        } else {
            let body = tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), response.bytes())
                .await
                .map_err(|_| "timed out reading the answer".to_owned())?
                .map_err(|e| format!("reading the answer: {e}"))?;
            self.accept(&body);
            Ok(())
        }
    }

    /// Reads an SSE stream until the answer to `id` arrives (or it ends).
    async fn read_events(
        &mut self,
        mut response: reqwest::Response,
        id: Option<&Value>,
        deadline: Instant,
    ) -> Result<(), String> {
        let mut buffer: Vec<u8> = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = match tokio::time::timeout(left, response.chunk()).await {
                Err(_) => return Ok(()), // the caller reports the missing answer as a timeout
                Ok(Err(e)) => return Err(format!("reading the event stream: {e}")),
                Ok(Ok(None)) => return Ok(()),
                Ok(Ok(Some(chunk))) => chunk,
            };
            buffer.extend_from_slice(&chunk);
            while let Some(end) = find_event_end(&buffer) {
                let event: Vec<u8> = buffer.drain(..end.0 + end.1).collect();
                let data: Vec<&[u8]> = event[..end.0]
                    .split(|b| *b == b'\n')
                    .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
                    .filter_map(|l| l.strip_prefix(b"data:"))
                    .map(|d| d.strip_prefix(b" ").unwrap_or(d))
                    .collect();
                if data.is_empty() {
                    continue;
                }
                let answered = self.accept(&data.join(&b'\n'));
                if id.is_some_and(|id| answered.iter().any(|a| a == id)) {
                    return Ok(());
                }
            }
        }
    }

    /// Queues the message(s) of one body; returns the ids of the answers among them.
    fn accept(&mut self, body: &[u8]) -> Vec<Value> {
        let mut ids = Vec::new();
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Array(batch)) => {
                for message in batch {
                    ids.extend(message.get("id").filter(|_| message.get("method").is_none()).cloned());
                    self.inbox.push_back(Received::Message(message));
                }
            }
            Ok(message @ Value::Object(_)) => {
                ids.extend(message.get("id").filter(|_| message.get("method").is_none()).cloned());
                self.inbox.push_back(Received::Message(message));
            }
            _ => self.inbox.push_back(Received::Violation(format!(
                "the server answered with a body that is not JSON-RPC: {}",
                super::quote_bytes(body)
            ))),
        }
        ids
    }
}

/// The end of the first SSE event in `buffer`: (where its text ends, length of the separator).
fn find_event_end(buffer: &[u8]) -> Option<(usize, usize)> {
    let lf = buffer.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buffer.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

impl Transport for Http {
    fn send(&mut self, message: &Value, deadline: Instant) -> Result<(), String> {
        self.runtime.block_on(self.state.exchange(message, deadline))
    }

    /// The answers came with the POSTs; when none is queued, the exchange ended without one.
    fn receive(&mut self, deadline: Instant) -> Received {
        match self.state.inbox.pop_front() {
            Some(received) => received,
            None if Instant::now() >= deadline => Received::Timeout,
            None => Received::Closed,
        }
    }

    fn negotiated(&mut self, version: &str) {
        self.state.version = Some(version.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_end_of_an_event_with_either_line_ending() {
        assert_eq!(find_event_end(b"data: {}\n\nrest"), Some((8, 2)));
        assert_eq!(find_event_end(b"data: {}\r\n\r\n"), Some((8, 4)));
        assert_eq!(find_event_end(b"data: {}\n"), None);
    }
}
