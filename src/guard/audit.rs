//! The audit log: `<root>/audit/audit.jsonl`, one JSON record per line, each holding the hash
//! of the record before it and a hash of itself, so that an edited, removed or reordered
//! record breaks the chain. `<root>/state/audit.head` names the newest record, so that cutting
//! records off the end is detected too. The head is written in place after the record is
//! durable; a crash between the two leaves the head one record behind, which verify accepts.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

use rustix::fs::{Mode, OFlags};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::jail::Jail;
use crate::error::{Error, Result};
use crate::layout::Layout;

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// `,"hash":"` + 64 hex digits + `"}`.
const HASH_SUFFIX_LEN: usize = 9 + 64 + 2;

/// What one record says. The token appears by its name from `tend.toml`, never itself.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub run: String,
    pub token: Option<String>,
    pub primitive: String,
    pub args: serde_json::Value,
    pub effects: Vec<String>,
    pub outcome: String,
}

#[derive(Serialize)]
struct Body<'a> {
    seq: u64,
    time: String,
    #[serde(flatten)]
    entry: &'a AuditEntry,
    prev: &'a str,
}

/// An open audit log that a run appends to.
#[derive(Debug)]
pub struct AuditWriter {
    file: std::fs::File,
    head: std::fs::File,
    seq: u64,
    prev: String,
}

impl AuditWriter {
    /// Opens (creating) the log and reads its head. A log left with a torn last line (a
    /// crash mid-write) is continued on a fresh line; `audit verify` still reports the tear.
    pub fn open(jail: &Jail, layout: &Layout) -> Result<AuditWriter> {
        let path = layout.audit_log();
        let dir = jail.open_dir(&layout.audit())?;
        let state = jail.open_dir(&layout.state())?;
        let head = rustix::fs::openat(
            &state,
            "audit.head",
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map(std::fs::File::from)
        .map_err(|e| Error::io("open", &layout.audit_head(), e))?;
        let fd = rustix::fs::openat(
            &dir,
            "audit.jsonl",
            OFlags::RDWR | OFlags::APPEND | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(|e| Error::io("open", &path, e))?;
        let mut file = std::fs::File::from(fd);
        let (seq, prev) = read_head(&layout.audit_head())?;
        let len = file.metadata().map_err(|e| Error::io("read", &path, e))?.len();
        if len > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1))
                .and_then(|_| file.read_exact(&mut last))
                .map_err(|e| Error::io("read", &path, e))?;
            if last[0] != b'\n' {
                file.write_all(b"\n").map_err(|e| Error::io("write", &path, e))?;
            }
        }
        Ok(AuditWriter { file, head, seq, prev })
    }

    /// Appends one record and makes it durable before returning.
    pub fn append(&mut self, entry: &AuditEntry) -> Result<()> {
        let seq = self.seq + 1;
        let body = serde_json::to_string(&Body { seq, time: crate::clock::now_rfc3339(), entry, prev: &self.prev })
            .map_err(|e| Error::failed(format!("cannot encode audit record: {e}")))?;
        let hash = hex::encode(Sha256::digest(body.as_bytes()));
        let mut line = body;
        line.pop();
        line.push_str(&format!(",\"hash\":\"{hash}\"}}\n"));
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|e| Error::failed(format!("cannot write the audit log: {e}")))?;
        // Fixed width, so an in-place write always replaces the whole head.
        self.head
            .write_all_at(format!("{seq:020} {hash}\n").as_bytes(), 0)
            .map_err(|e| Error::failed(format!("cannot write the audit head: {e}")))?;
        self.seq = seq;
        self.prev = hash;
        Ok(())
    }
}

fn read_head(path: &std::path::Path) -> Result<(u64, String)> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.is_empty() => Ok((0, GENESIS.to_owned())),
        Ok(text) => parse_head(&text)
            .ok_or_else(|| Error::failed(format!("{} is damaged; run `tend audit verify`", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((0, GENESIS.to_owned())),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

fn parse_head(text: &str) -> Option<(u64, String)> {
    let (seq, hash) = text.trim().split_once(' ')?;
    (hash.len() == 64).then_some(())?;
    Some((seq.parse().ok()?, hash.to_owned()))
}

/// Checks the whole chain. `Ok(n)` is the number of intact records; an error names the first
/// bad line.
pub fn verify(layout: &Layout) -> Result<u64> {
    let path = layout.audit_log();
    let text = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io("read", &path, e)),
    };
    let bad = |line: usize, why: String| Error::failed(format!("{}:{line}: {why}", path.display()));
    let mut prev = GENESIS.to_owned();
    let mut seq = 0u64;
    let mut hashes: Vec<String> = Vec::new();
    let mut lines: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
    let torn = lines.last().is_some_and(|l| !l.is_empty());
    if !torn {
        lines.pop();
    }
    for (index, raw) in lines.iter().enumerate() {
        let n = index + 1;
        if torn && n == lines.len() {
            return Err(bad(n, "the record is cut off (the file ends mid-line)".into()));
        }
        let line = std::str::from_utf8(raw).map_err(|_| bad(n, "the record is not UTF-8".into()))?;
        if line.len() < HASH_SUFFIX_LEN + 2
            || !line.ends_with("\"}")
            || !line[line.len() - HASH_SUFFIX_LEN..].starts_with(",\"hash\":\"")
        {
            return Err(bad(n, "the record is not a tend audit record (no hash at its end)".into()));
        }
        let split = line.len() - HASH_SUFFIX_LEN;
        let hash = &line[split + 9..line.len() - 2];
        let body = format!("{}}}", &line[..split]);
        if hex::encode(Sha256::digest(body.as_bytes())) != hash {
            return Err(bad(n, "the record was edited (its hash does not match its content)".into()));
        }
        let value: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| bad(n, format!("the record is not valid JSON: {e}")))?;
        let found_seq = value.get("seq").and_then(serde_json::Value::as_u64).unwrap_or(0);
        if found_seq != seq + 1 {
            return Err(bad(
                n,
                format!("expected record {} but found record {found_seq}: records were removed or reordered", seq + 1),
            ));
        }
        if value.get("prev").and_then(serde_json::Value::as_str) != Some(prev.as_str()) {
            return Err(bad(
                n,
                "the record does not chain to the one before it: records were removed or reordered".into(),
            ));
        }
        seq = found_seq;
        prev = hash.to_owned();
        hashes.push(prev.clone());
    }
    let (head_seq, head_hash) = read_head(&layout.audit_head())?;
    // The head may trail by the one record a crash interrupted; never lead.
    let head_matches = head_seq == 0 || hashes.get((head_seq - 1) as usize).is_some_and(|h| *h == head_hash);
    if head_seq > seq || seq - head_seq > 1 || !head_matches {
        return Err(bad(
            lines.len() + 1,
            format!(
                "the log ends at record {seq} but {} names record {head_seq}: records were removed from the end",
                layout.audit_head().display()
            ),
        ));
    }
    Ok(seq)
}

/// The last `n` records, as they are written.
pub fn tail(layout: &Layout, n: usize) -> Result<Vec<String>> {
    let path = layout.audit_log();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io("read", &path, e)),
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    Ok(lines[lines.len().saturating_sub(n)..].iter().map(|l| (*l).to_owned()).collect())
}
