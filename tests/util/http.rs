//! A scripted HTTP server for the registry's failure cases, which a real registry will not
//! produce on demand: a 500 then a success, a 401, a body that is not JSON, a tarball that is
//! gone. Each path answers from its own script of replies, in order, the last one repeating;
//! every request is recorded so a test can count retries and read the headers tend sent.
//!
//! ```ignore
//! let server = Server::start();
//! server.script("/left-pad", vec![Reply::status(500), Reply::json(r#"{"versions": {}}"#)]);
//! // ... run tend against server.url() ...
//! assert_eq!(server.hits("/left-pad"), 2);
//! ```
//!
//! It listens on 127.0.0.1 only, answers each request with `Connection: close`, and stops
//! (its thread joined) when dropped.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

const IO_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_HEAD: usize = 64 * 1024;

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// A status with an empty body.
    pub fn status(status: u16) -> Reply {
        Reply { status, headers: Vec::new(), body: Vec::new() }
    }

    /// 200 with a JSON body.
    pub fn json(body: &str) -> Reply {
        Reply::status(200).header("Content-Type", "application/json").body(body.as_bytes())
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: &[u8]) -> Reply {
        self.body = body.to_vec();
        self
    }
}

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body (`Content-Length` bytes; webhooks post one).
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    scripts: HashMap<String, Vec<Reply>>,
    requests: Vec<Request>,
}

/// The running server; see the module docs.
pub struct Server {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("local addr").port();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (Arc::clone(&state), Arc::clone(&stop));
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        let state = Arc::clone(&state);
                        // One thread a connection: tend opens several at once.
                        thread::spawn(move || serve(stream, &state));
                    }
                }
            })
        };
        Server { port, state, stop, thread: Some(thread) }
    }

    /// `http://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Sets the replies for `path` (e.g. `/tend-fixture-basic`, without a query): the first
    /// request gets the first, and so on; the last repeats. An unscripted path answers 404.
    pub fn script(&self, path: &str, replies: Vec<Reply>) {
        assert!(!replies.is_empty(), "a script needs at least one reply");
        self.state.lock().expect("server state").scripts.insert(path.to_owned(), replies);
    }

    /// How many requests `path` received.
    pub fn hits(&self, path: &str) -> usize {
        self.requests().iter().filter(|r| r.path == path).count()
    }

    /// Every request so far, in the order they arrived.
    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().expect("server state").requests.clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(mut stream: TcpStream, state: &Mutex<State>) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let Some(request) = read_request(&mut stream) else {
        return;
    };
    let reply = {
        let mut state = state.lock().expect("server state");
        let seen = state.requests.iter().filter(|r| r.path == request.path).count();
        state.requests.push(request.clone());
        match state.scripts.get(&request.path) {
            Some(script) => script[seen.min(script.len() - 1)].clone(),
            None => Reply::status(404).body(b"{\"error\":\"not found\"}"),
        }
    };
    let mut head = format!("HTTP/1.1 {} Scripted\r\nConnection: close\r\n", reply.status);
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if reply.status != 304 {
        head.push_str(&format!("Content-Length: {}\r\n", reply.body.len()));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    if request.method != "HEAD" && reply.status != 304 {
        let _ = stream.write_all(&reply.body);
    }
    let _ = stream.flush();
}

/// The request line, headers and a `Content-Length` body.
fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut buf).ok()?;
        if n == 0 || raw.len() > MAX_HEAD {
            return None;
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let mut body = raw.split_off(end);
    let text = String::from_utf8_lossy(&raw);
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let target = first.next()?;
    let path = target.split('?').next().unwrap_or(target).to_owned();
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect::<Vec<(String, String)>>();
    let length: usize =
        headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    while body.len() < length {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&buf[..n]);
    }
    body.truncate(length);
    Some(Request { method, path, headers, body })
}
