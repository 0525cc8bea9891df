//! The one error type of the library: a kind that decides the exit code, and a message
//! written for the person at the terminal (lowercase, no trailing period).

use std::fmt;

/// What went wrong, in the terms of the exit codes of DESIGN.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Bad command-line usage (exit 2).
    Usage,
    /// A bad `tend.toml` or client config (exit 2).
    Config,
    /// A playbook that does not compile (exit 2).
    Syntax,
    /// A playbook or operation failed for an ordinary reason (exit 1).
    Failed,
    /// Another run holds the site lock (exit 3).
    Locked,
    /// A missing, wrong or insufficient token (exit 4).
    Unauthorized,
    /// A path outside the allowlist, a protected file, or a sandbox limit (exit 5).
    Policy,
}

impl ErrorKind {
    /// The process exit code DESIGN.md assigns to this kind.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::Failed => 1,
            ErrorKind::Usage | ErrorKind::Config | ErrorKind::Syntax => 2,
            ErrorKind::Locked => 3,
            ErrorKind::Unauthorized => 4,
            ErrorKind::Policy => 5,
        }
    }

    /// The short name used in the `kind` field of error maps and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Usage => "usage",
            ErrorKind::Config => "config",
            ErrorKind::Syntax => "syntax",
            ErrorKind::Failed => "failed",
            ErrorKind::Locked => "locked",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Policy => "policy",
        }
    }
}

/// An error of tend: its kind, a message, and the server it concerns, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    server: Option<String>,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), server: None }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Usage, message)
    }

    pub fn config(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Config, message)
    }

    pub fn failed(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Failed, message)
    }

    pub fn policy(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Policy, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Unauthorized, message)
    }

    /// An I/O failure on `path`, as an ordinary operation failure.
    pub fn io(action: &str, path: &std::path::Path, err: impl fmt::Display) -> Self {
        Error::failed(format!("cannot {action} {}: {err}", path.display()))
    }

    /// The same error, naming the server it concerns.
    #[must_use]
    pub fn for_server(mut self, server: impl Into<String>) -> Self {
        self.server = Some(server.into());
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn server(&self) -> Option<&str> {
        self.server.as_deref()
    }

    pub fn exit_code(&self) -> i32 {
        self.kind.exit_code()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;
