//! The run lock: one run per site at a time. An exclusive `flock` on `<root>/state/lock`;
//! the kernel releases it when tend exits or is killed, so a stale lock cannot exist.

use std::io::{Read, Seek, Write};
use std::os::fd::AsFd;

use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use super::jail::Jail;
use crate::error::{Error, ErrorKind, Result};
use crate::layout::Layout;

/// Held for the length of a run; dropping it releases the site.
#[derive(Debug)]
pub struct RunLock {
    _file: std::fs::File,
}

impl RunLock {
    /// Takes the site lock or fails at once with exit 3, naming the holder.
    pub fn acquire(jail: &Jail, layout: &Layout, holder: &str) -> Result<RunLock> {
        let path = layout.lock();
        let dir = jail.open_dir(&layout.state())?;
        let fd = rustix::fs::openat(
            &dir,
            "lock",
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(|e| Error::io("open", &path, e))?;
        let mut file = std::fs::File::from(fd);
        match rustix::fs::flock(file.as_fd(), FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(Errno::WOULDBLOCK) => {
                let mut who = String::new();
                let _ = file.read_to_string(&mut who);
                let who = who.trim();
                let who = if who.is_empty() { String::new() } else { format!(" ({who})") };
                return Err(Error::new(
                    ErrorKind::Locked,
                    format!("another run holds the site lock {}{who}", path.display()),
                ));
            }
            Err(e) => return Err(Error::io("lock", &path, e)),
        }
        // Who holds it, for the message a second run prints; not needed for correctness.
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "pid {} {holder}", std::process::id()));
        Ok(RunLock { _file: file })
    }
}
