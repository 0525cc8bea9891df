//! Webhook notifications: the `[[notify]]` entries of the site receive a JSON message on the
//! events they subscribe to. The body is Slack-compatible (`text`) and carries structured
//! fields (`site`, `host`, `server`, `event`, `level`, `from`, `to`, `run_id`, `message`).
//!
//! Delivery never fails a run: every attempt is bounded by the webhook's timeout, a
//! connection error, timeout, 408, 429 or 5xx is retried with backoff up to `retries` times,
//! and what could not be delivered is logged (with the webhook's host only, since hook URLs
//! are often secrets) and reported in the result.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use crate::script::primitives::Call;
use crate::site::{Event, Notify, Site};

/// One notification, before it is addressed to webhooks.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Message {
    pub event: Option<Event>,
    pub level: String,
    pub server: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub message: String,
}

impl Message {
    pub fn new(event: Event, message: impl Into<String>) -> Message {
        let level = match event {
            Event::Failure | Event::Rollback => "error",
            Event::Update | Event::Prune | Event::Message => "info",
        };
        Message { event: Some(event), level: level.to_owned(), message: message.into(), ..Message::default() }
    }

    pub fn server(mut self, server: &str) -> Message {
        self.server = Some(server.to_owned());
        self
    }

    pub fn versions(mut self, from: Option<&str>, to: Option<&str>) -> Message {
        self.from = from.map(str::to_owned);
        self.to = to.map(str::to_owned);
        self
    }

    fn event(&self) -> Event {
        self.event.unwrap_or(Event::Message)
    }
}

/// What became of one notification.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Delivery {
    pub event: String,
    /// Webhooks subscribed to the event.
    pub webhooks: usize,
    pub delivered: usize,
    /// One line per webhook that did not take it (host and why).
    pub failed: Vec<String>,
    pub dry_run: bool,
}

/// The webhook body for `message` sent from `site` during `run_id`.
pub fn body(site: &Site, run_id: &str, message: &Message) -> Value {
    let site_name = site.file.as_ref().map_or_else(|| site.dir.display().to_string(), |f| f.display().to_string());
    let host = hostname();
    let text = match &message.server {
        Some(server) => format!("[tend {host}] {server}: {}", message.message),
        None => format!("[tend {host}] {}", message.message),
    };
    json!({
        "text": text,
        "site": site_name,
        "host": host,
        "server": message.server,
        "event": message.event().as_str(),
        "level": message.level,
        "from": message.from,
        "to": message.to,
        "run_id": run_id,
        "message": message.message,
    })
}

/// Sends `message` to every webhook of the site subscribed to its event (none in a dry run),
/// and logs the outcome. Never fails.
pub fn send(call: &Call<'_>, message: &Message) -> Delivery {
    deliver(call.site, call.run_id, call.dry_run(), message)
}

/// As [`send`], for code that has no primitive call (the end of a run).
pub fn deliver(site: &Site, run_id: &str, dry_run: bool, message: &Message) -> Delivery {
    let event = message.event();
    let hooks: Vec<&Notify> = site.notify.iter().filter(|n| n.on.contains(&event)).collect();
    let mut delivery =
        Delivery { event: event.as_str().to_owned(), webhooks: hooks.len(), dry_run, ..Delivery::default() };
    if hooks.is_empty() {
        return delivery;
    }
    if dry_run {
        tracing::info!("would notify {} webhook(s) of {}: {}", hooks.len(), event.as_str(), message.message);
        return delivery;
    }
    let body = body(site, run_id, message);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            delivery.failed.push(format!("cannot start the HTTP runtime: {e}"));
            tracing::warn!("notify: cannot start the HTTP runtime: {e}");
            return delivery;
        }
    };
    // reqwest looks for the runtime when the client is built.
    let _entered = runtime.enter();
    let client = match reqwest::Client::builder().user_agent(concat!("tend/", env!("CARGO_PKG_VERSION"))).build() {
        Ok(client) => client,
        Err(e) => {
            delivery.failed.push(format!("cannot build the HTTP client: {e}"));
            tracing::warn!("notify: cannot build the HTTP client: {e}");
            return delivery;
        }
    };
    // One webhook after the other: there are few, and each is bounded by its own timeout and
    // retries.
    for hook in hooks {
        match runtime.block_on(post(&client, hook, &body)) {
            Ok(attempts) => {
                delivery.delivered += 1;
                tracing::debug!("notified {} of {} ({attempts} attempt(s))", shown(&hook.url), event.as_str());
            }
            Err(why) => {
                tracing::warn!("notify: {} did not take the {} message: {why}", shown(&hook.url), event.as_str());
                delivery.failed.push(format!("{}: {why}", shown(&hook.url)));
            }
        }
    }
    delivery
}

/// Posts `body` to one webhook with its timeout and retries; the number of attempts it took.
async fn post(client: &reqwest::Client, hook: &Notify, body: &Value) -> Result<u32, String> {
    let attempts = hook.retries.saturating_add(1);
    let mut last = String::new();
    for attempt in 1..=attempts {
        if attempt > 1 {
            // 250 ms, 500 ms, 1 s, ... capped at 5 s.
            let backoff =
                Duration::from_millis(250u64.saturating_mul(1 << (attempt - 2).min(5))).min(Duration::from_secs(5));
            tokio::time::sleep(backoff).await;
        }
        let mut request = client
            .post(&hook.url)
            .timeout(hook.timeout.as_duration())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        for (name, value) in &hook.headers {
            request = request.header(name, value);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                if status.is_success() {
                    return Ok(attempt);
                }
                last = format!("HTTP {}", status.as_u16());
                let retry = status.is_server_error() || matches!(status.as_u16(), 408 | 429);
                if !retry {
                    return Err(format!("{last} (not retried)"));
                }
            }
            Err(e) if e.is_timeout() => last = format!("no answer within {}", hook.timeout),
            Err(e) if e.is_connect() => last = "connection failed".to_owned(),
            Err(e) if e.is_builder() => return Err("the URL is not valid".to_owned()),
            Err(_) => last = "the request failed".to_owned(),
        }
    }
    Err(format!("{last} after {attempts} attempt(s)"))
}

/// A webhook as logs may show it: scheme and host, never the path or query (the secret part
/// of most hook URLs).
fn shown(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => format!("{}://{}/…", parsed.scheme(), parsed.host_str().unwrap_or("?")),
        Err(_) => "an invalid webhook URL".to_owned(),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The `notify` primitive with a map: `#{event, message, server, from, to, level}`.
pub(crate) fn from_map(options: &Value) -> crate::error::Result<Message> {
    let map = options.as_object().ok_or_else(|| crate::error::Error::failed("notify() takes a map"))?;
    const KEYS: [&str; 6] = ["event", "message", "server", "from", "to", "level"];
    if let Some(unknown) = map.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(crate::error::Error::failed(format!(
            "notify(): unknown key `{unknown}`; known keys: {}",
            KEYS.join(", ")
        )));
    }
    let text = |key: &str| -> crate::error::Result<Option<String>> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Ok(Some(other.to_string())),
        }
    };
    let event_name = text("event")?.unwrap_or_else(|| "message".to_owned());
    let event: Event = serde_json::from_value(Value::String(event_name.clone())).map_err(|_| {
        crate::error::Error::failed(format!(
            "notify(): unknown event `{event_name}`; events: rollback, failure, update, prune, message"
        ))
    })?;
    let mut message = Message::new(event, text("message")?.unwrap_or_default());
    if let Some(level) = text("level")? {
        message.level = level;
    }
    message.server = text("server")?;
    message.from = text("from")?;
    message.to = text("to")?;
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_show_only_the_host_of_a_webhook() {
        assert_eq!(shown("https://hooks.slack.com/services/T000/B000/SECRET"), "https://hooks.slack.com/…");
        assert_eq!(shown("not a url"), "an invalid webhook URL");
    }

    #[test]
    fn a_map_names_its_event_and_fields() {
        let m = from_map(&json!({"event": "failure", "server": "memory", "message": "health failed", "to": "2.0.0"}))
            .unwrap();
        assert_eq!(m.event, Some(Event::Failure));
        assert_eq!(m.level, "error");
        assert_eq!(m.server.as_deref(), Some("memory"));
        assert_eq!(m.to.as_deref(), Some("2.0.0"));
        let err = from_map(&json!({"event": "boom"})).unwrap_err();
        assert_eq!(err.message(), "notify(): unknown event `boom`; events: rollback, failure, update, prune, message");
        let err = from_map(&json!({"evnt": "update"})).unwrap_err();
        assert_eq!(err.message(), "notify(): unknown key `evnt`; known keys: event, message, server, from, to, level");
    }
}
