//! The stdio transport: newline-delimited JSON-RPC over a supervised child's stdin and stdout.

use std::time::Instant;

use serde_json::Value;

use super::{Received, Transport, quote_bytes};
use crate::proc::child::{Child, Output, Silence};

/// A child process spoken to over its stdin and stdout.
#[derive(Debug)]
pub struct Stdio {
    pub child: Child,
    /// Lines read from stdout so far.
    lines: usize,
}

impl Stdio {
    pub fn new(child: Child) -> Stdio {
        Stdio { child, lines: 0 }
    }
}

impl Transport for Stdio {
    fn send(&mut self, message: &Value, _deadline: Instant) -> Result<(), String> {
        let mut bytes = message.to_string().into_bytes();
        bytes.push(b'\n');
        if self.child.send(bytes) { Ok(()) } else { Err("the server's stdin is closed".into()) }
    }

    fn receive(&mut self, deadline: Instant) -> Received {
        loop {
            return match self.child.next_output(deadline) {
                Ok(Output::Line(line)) => {
                    self.lines += 1;
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    match serde_json::from_slice::<Value>(&line) {
                        Ok(message @ Value::Object(_)) => Received::Message(message),
                        Ok(_) | Err(_) => Received::Violation(format!(
                            "stdout line {} is not a JSON-RPC message: {} (stdout carries only JSON-RPC; logs belong on stderr)",
                            self.lines,
                            quote_bytes(&line)
                        )),
                    }
                }
                Ok(Output::TooLong(start)) => Received::Violation(format!(
                    "stdout line {} is longer than {} MiB: {}",
                    self.lines + 1,
                    crate::proc::child::MAX_LINE >> 20,
                    quote_bytes(&start)
                )),
                Ok(Output::Closed) | Err(Silence::Closed) => Received::Closed,
                Err(Silence::Timeout) => Received::Timeout,
            };
        }
    }
}
