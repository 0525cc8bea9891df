//! Processes, seen from `/proc`: which files running processes hold (executable, working
//! directory, open files), so that nothing removes a release a process still uses; and the
//! supervision of the servers tend starts (`child`), the measurement of their process
//! group (`sample`), and what a process writes to a pipe, kept within a bound (`kept`).

pub mod child;
pub mod kept;
pub mod sample;

use std::path::{Path, PathBuf};

/// A running process and one path it uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathInUse {
    pub pid: u32,
    pub path: PathBuf,
}

/// Every executable, working directory and open file of every process we may inspect.
/// Processes that vanish or deny access while we look are skipped.
pub fn paths_in_use() -> Vec<PathInUse> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let dir = entry.path();
        for link in ["exe", "cwd"] {
            if let Ok(path) = std::fs::read_link(dir.join(link)) {
                out.push(PathInUse { pid, path });
            }
        }
        if let Ok(fds) = std::fs::read_dir(dir.join("fd")) {
            for fd in fds.flatten() {
                if let Ok(path) = std::fs::read_link(fd.path()) {
                    if path.is_absolute() {
                        out.push(PathInUse { pid, path });
                    }
                }
            }
        }
    }
    out
}

/// The processes using anything under `dir` (compared by its real path, as /proc shows it).
pub fn pids_using(dir: &Path, in_use: &[PathInUse]) -> Vec<u32> {
    let real = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mut pids: Vec<u32> = in_use.iter().filter(|p| p.path.starts_with(&real)).map(|p| p.pid).collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}
