//! What a process group uses, from `/proc`: resident memory, CPU time, threads and open file
//! descriptors, summed over every member. A server is often a wrapper and its real process (a
//! shell, `npx`, then `node`), so judging the leader alone would miss most of it.
//!
//! CPU time comes from each thread's `schedstat` (nanoseconds); `stat`'s clock ticks (10 ms)
//! are the fallback. The kernel brings a thread's figure up to date when the thread stops
//! running and at each scheduler tick, so a thread that is running when it is read may have
//! used up to a tick more than it says: a sample counts those threads, and
//! [`Sample::cpu_percent_at_most_since`] allows for them.

use std::path::Path;
use std::time::{Duration, Instant};

/// The most a running thread's CPU time can lag behind: one scheduler tick, 10 ms at the
/// slowest tick rate Linux has (100 Hz; most kernels tick at 250 to 1000 Hz).
pub const CPU_TIME_LAG: Duration = Duration::from_millis(10);

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
    /// Threads that were running or waiting for a CPU (state `R`): their CPU time may lag.
    pub running: u64,
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

    /// The most CPU the group can have used between two samples, in percent of one core: the
    /// measured use, plus [`CPU_TIME_LAG`] for each thread that was running when this sample
    /// was taken (time it may have used that its figure did not show yet). A lag at the
    /// earlier sample only makes the measured use larger, so it needs no allowance.
    pub fn cpu_percent_at_most_since(&self, earlier: &Sample) -> f64 {
        let wall = self.at.saturating_duration_since(earlier.at).as_nanos() as f64;
        if wall <= 0.0 {
            return f64::INFINITY;
        }
        let lag = self.running as f64 * CPU_TIME_LAG.as_nanos() as f64;
        (self.cpu_ns.saturating_sub(earlier.cpu_ns) as f64 + lag) * 100.0 / wall
    }

    pub fn rss_mb(&self) -> f64 {
        self.rss_bytes as f64 / (1024.0 * 1024.0)
    }
}

/// The fields of a `stat` file (a process's or a thread's) from field 3 (state) on. The
/// command name (field 2) may hold spaces and parentheses, so they start after its last `)`.
fn stat_fields(text: &str) -> Option<std::str::SplitAsciiWhitespace<'_>> {
    Some(text[text.rfind(')')? + 1..].split_ascii_whitespace())
}

/// Parses `/proc/PID/stat`.
fn parse_stat(pid: u32, text: &str) -> Option<(Member, u32)> {
    let fields: Vec<&str> = stat_fields(text)?.collect();
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
///
/// The groups tend samples are those of the servers it started, and as a child subreaper it
/// keeps every process they start among its own descendants, so it looks there first: a walk
/// down the `children` lists from itself reads a few files where a scan of `/proc` reads one
/// for every process of the host. A group with no member among them (one tend did not start,
/// or a kernel without `children` lists) is found by the scan.
pub fn group_members(pgid: u32) -> Vec<Member> {
    if crate::proc::child::is_subreaper() {
        if let Some(descendants) = descendants() {
            let members: Vec<Member> =
                descendants.into_iter().filter(|(_, group)| *group == pgid).map(|(m, _)| m).collect();
            if !members.is_empty() {
                return members;
            }
        }
    }
    scan_group(pgid)
}

/// Every process whose process group is `pgid`, from a read of every process's `stat`.
fn scan_group(pgid: u32) -> Vec<Member> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let (member, group) = read_stat(pid)?;
            (group == pgid).then_some(member)
        })
        .collect()
}

fn read_stat(pid: u32) -> Option<(Member, u32)> {
    parse_stat(pid, &std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// This process's descendants and their process groups, from each thread's `children` list
/// (`None` where the kernel has none). A process that goes while the walk reads is left out.
fn descendants() -> Option<Vec<(Member, u32)>> {
    let mut found = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut parents = vec![std::process::id()];
    while let Some(parent) = parents.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{parent}/task")) else { continue };
        for task in tasks.flatten() {
            let children = match std::fs::read_to_string(task.path().join("children")) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && parent == std::process::id() => return None,
                Err(_) => continue,
            };
            for child in children.split_ascii_whitespace().filter_map(|c| c.parse::<u32>().ok()) {
                if seen.insert(child) {
                    if let Some(member) = read_stat(child) {
                        found.push(member);
                        parents.push(child);
                    }
                }
            }
        }
    }
    Some(found)
}

/// Sums the group's live members now.
pub fn sample_group(pgid: u32) -> Sample {
    let at = Instant::now();
    let page = rustix::param::page_size() as u64;
    let mut sample = Sample { at, processes: 0, rss_bytes: 0, threads: 0, fds: 0, cpu_ns: 0, running: 0 };
    for m in group_members(pgid).into_iter().filter(|m| m.state != 'Z') {
        sample.processes += 1;
        sample.rss_bytes += m.rss_pages * page;
        sample.threads += m.threads;
        sample.fds += count_entries(&Path::new("/proc").join(m.pid.to_string()).join("fd"));
        let (cpu_ns, running) = cpu_ns(m.pid).unwrap_or((m.cpu_ticks * 10_000_000, m.threads));
        sample.cpu_ns += cpu_ns;
        sample.running += running;
    }
    sample
}

fn count_entries(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map(|d| d.count() as u64).unwrap_or(0)
}

/// The sum of every thread's run time (the first field of its `schedstat`), in nanoseconds,
/// and how many of its threads are running (state `R` in their `stat`).
fn cpu_ns(pid: u32) -> Option<(u64, u64)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let (mut total, mut running) = (0, 0);
    for task in tasks.flatten() {
        let text = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
        total += text.split_ascii_whitespace().next()?.parse::<u64>().ok()?;
        let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
        running += u64::from(stat_fields(&stat).and_then(|mut f| f.next()) == Some("R"));
    }
    Some((total, running))
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
    fn the_walk_from_tend_finds_the_group_the_scan_finds_orphans_included() {
        use std::os::unix::process::CommandExt;
        crate::proc::child::become_subreaper();
        // A shell with a child, whose orphaned grandchild outlives it: reparented to us.
        let mut shell = std::process::Command::new("sh")
            .args(["-c", "sh -c 'sleep 30 & exit 0'; sleep 30"])
            .process_group(0)
            .spawn()
            .expect("sh runs");
        let pgid = shell.id();
        let pids = |members: Vec<Member>| {
            let mut pids: Vec<u32> = members.into_iter().filter(|m| m.state != 'Z').map(|m| m.pid).collect();
            pids.sort_unstable();
            pids
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while pids(scan_group(pgid)).len() != 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let scanned = pids(scan_group(pgid));
        let walked = pids(
            descendants()
                .expect("this kernel has children lists")
                .into_iter()
                .filter(|(_, g)| *g == pgid)
                .map(|(m, _)| m)
                .collect(),
        );
        let _ = rustix::process::kill_process_group(
            rustix::process::Pid::from_raw(pgid as i32).unwrap(),
            rustix::process::Signal::KILL,
        );
        let _ = shell.wait();
        while let Ok(Some(_)) = rustix::process::waitpgid(
            rustix::process::Pid::from_raw(pgid as i32).unwrap(),
            rustix::process::WaitOptions::empty(),
        ) {}
        assert_eq!(scanned.len(), 3, "sh and two sleeps: {scanned:?}");
        assert_eq!(walked, scanned);
    }

    #[test]
    fn samples_a_real_group() {
        let me = std::process::id();
        let pgid = rustix::process::getpgid(None).map(|p| p.as_raw_nonzero().get() as u32).unwrap_or(me);
        let s = sample_group(pgid);
        assert!(s.processes >= 1 && s.threads >= 1 && s.fds >= 3 && s.rss_bytes > 0, "{s:?}");
    }
}
