//! What a process group uses, from `/proc`: resident memory, CPU time, threads and open file
//! descriptors, summed over every member. A server is often a wrapper and its real process (a
//! shell, `npx`, then `node`), so judging the leader alone would miss most of it.
//!
//! CPU time comes from each thread's `schedstat` (nanoseconds), so a CPU percentage over a
//! window of a few milliseconds means something; `stat`'s clock ticks (10 ms) are the fallback.

use std::path::Path;
use std::time::Instant;

/// One process of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub pid: u32,
    pub ppid: u32,
    /// `R`, `S`, `D`, `Z`, ... as `/proc/PID/stat` says.
    pub state: char,
    pub threads: u64,
    pub rss_pages: u64,
    /// user + system time in clock ticks.
    pub cpu_ticks: u64,
}

/// The group at one instant.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Instant,
    pub processes: usize,
    pub rss_bytes: u64,
    pub threads: u64,
    pub fds: u64,
    /// CPU time used by the live members so far, in nanoseconds.
    pub cpu_ns: u64,
}

impl Sample {
    /// CPU use between two samples, in percent of one core.
    pub fn cpu_percent_since(&self, earlier: &Sample) -> f64 {
        let wall = self.at.saturating_duration_since(earlier.at).as_nanos() as f64;
        if wall <= 0.0 {
            return 0.0;
        }
        self.cpu_ns.saturating_sub(earlier.cpu_ns) as f64 * 100.0 / wall
    }

    pub fn rss_mb(&self) -> f64 {
        self.rss_bytes as f64 / (1024.0 * 1024.0)
    }
}

/// Parses `/proc/PID/stat`. The command name (field 2) may hold spaces and parentheses, so
/// the fields are counted from its last `)`.
fn parse_stat(pid: u32, text: &str) -> Option<(Member, u32)> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // fields[0] is field 3 (state); field N is fields[N - 3].
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let member = Member {
        pid,
        ppid: u32::try_from(field(4)?).ok()?,
        state: fields.first()?.chars().next()?,
        threads: field(20)?,
        rss_pages: field(24)?,
        cpu_ticks: field(14)? + field(15)?,
    };
    Some((member, u32::try_from(field(5)?).ok()?))
}

/// Every process whose process group is `pgid`.
pub fn group_members(pgid: u32) -> Vec<Member> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (member, group) = parse_stat(pid, &text)?;
            (group == pgid).then_some(member)
        })
        .collect()
}

/// Sums the group's live members now.
pub fn sample_group(pgid: u32) -> Sample {
    let at = Instant::now();
    let page = rustix::param::page_size() as u64;
    let mut sample = Sample { at, processes: 0, rss_bytes: 0, threads: 0, fds: 0, cpu_ns: 0 };
    for m in group_members(pgid).into_iter().filter(|m| m.state != 'Z') {
        sample.processes += 1;
        sample.rss_bytes += m.rss_pages * page;
        sample.threads += m.threads;
        sample.fds += count_entries(&Path::new("/proc").join(m.pid.to_string()).join("fd"));
        sample.cpu_ns += cpu_ns(m.pid).unwrap_or(m.cpu_ticks * 10_000_000);
    }
    sample
}

fn count_entries(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map(|d| d.count() as u64).unwrap_or(0)
}

/// The sum of every thread's run time (the first field of its `schedstat`), in nanoseconds.
fn cpu_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0;
    for task in tasks.flatten() {
        let text = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
        total += text.split_ascii_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        let text = "4242 (node (worker) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 11 0 \
                    1000 123456789 2048 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let (m, pgrp) = parse_stat(4242, text).expect("parses");
        assert_eq!((m.ppid, pgrp, m.state, m.threads, m.rss_pages, m.cpu_ticks), (1, 4242, 'S', 11, 2048, 300));
    }

    #[test]
    fn samples_a_real_group() {
        let me = std::process::id();
        let pgid = rustix::process::getpgid(None).map(|p| p.as_raw_nonzero().get() as u32).unwrap_or(me);
        let s = sample_group(pgid);
        assert!(s.processes >= 1 && s.threads >= 1 && s.fds >= 3 && s.rss_bytes > 0, "{s:?}");
    }
}
