//! A server process tend starts and must be able to stop, whatever it does.
//!
//! The child runs in its own process group with stdin piped. Its stdout is read line by line on
//! a thread (the caller waits on a channel with a deadline, so a silent server never blocks
//! tend), its stderr is kept in a bounded buffer, and writes to its stdin go through another
//! thread (a server that stops reading cannot block tend either). `stop` closes stdin, waits
//! briefly for the server to leave on its own, then sends TERM to the whole group, waits the
//! grace period, and sends KILL; it reaps every member of the group. tend makes itself a child
//! subreaper, so a grandchild whose parent died is reparented to tend and reaped here rather
//! than lingering as a zombie under an init that may never reap it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, WaitOptions};

use super::kept::{Kept, read_into};

/// How to start a server: what a client config entry says, after tend's rewriting.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Launch {
    pub command: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
}

impl Launch {
    /// The command line as a shell would show it (for reports; env is not shown).
    pub fn display(&self) -> String {
        std::iter::once(self.command.as_str()).chain(self.args.iter().map(String::as_str)).collect::<Vec<_>>().join(" ")
    }
}

/// The longest stdout line accepted (a JSON-RPC message); a longer one is a protocol violation.
pub const MAX_LINE: usize = 16 << 20;
/// How much of stderr is kept: its last bytes.
pub const STDERR_KEEP: usize = 64 << 10;
/// How long a dead member of a server's group that is tend's child may take to become
/// reapable before tend stops waiting for it.
pub const ZOMBIE_SETTLE: Duration = Duration::from_millis(500);
/// How long `stop` waits for the server to exit by itself once its stdin is closed.
pub const STDIN_CLOSE_WAIT: Duration = Duration::from_millis(200);

/// What the stdout thread hands over.
#[derive(Debug)]
pub enum Output {
    /// One line, without its newline.
    Line(Vec<u8>),
    /// A line longer than [`MAX_LINE`]; its first bytes. Reading stops.
    TooLong(Vec<u8>),
    /// stdout was closed (the server exited or closed it).
    Closed,
}

/// Why waiting for output ended without a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Silence {
    Timeout,
    Closed,
}

/// How the process ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stopped {
    /// `exited` (on its own, before tend asked), `stdin` (after its stdin closed), `term`,
    /// `kill`.
    pub how: String,
    /// The exit code, or the signal that ended it.
    pub status: String,
    /// How many processes of its group were still there after the leader went (reaped).
    pub stragglers: usize,
    /// False when something of the group survived KILL (should never happen).
    pub group_gone: bool,
}

/// A started server.
#[derive(Debug)]
pub struct Child {
    child: std::process::Child,
    pid: u32,
    stdin: Option<Sender<Vec<u8>>>,
    output: Receiver<Output>,
    stdout_closed: bool,
    stderr: Arc<Mutex<Kept>>,
    exit: Option<ExitStatus>,
    /// Readable once the process has exited, so waiting for the exit wakes up when it happens
    /// rather than at the next poll (Linux 5.3 and later; `None` elsewhere).
    exited: Option<std::os::fd::OwnedFd>,
    /// When it was spawned.
    pub started: Instant,
}

static SUBREAPER: Once = Once::new();
static IS_SUBREAPER: AtomicBool = AtomicBool::new(false);

/// Makes this process a child subreaper (once): orphaned descendants of the servers it starts
/// are reparented to it, so it can reap them.
pub fn become_subreaper() {
    SUBREAPER.call_once(|| match rustix::process::set_child_subreaper(Some(rustix::process::getpid())) {
        Ok(()) => IS_SUBREAPER.store(true, Ordering::Relaxed),
        Err(e) => tracing::debug!("could not become a child subreaper: {e}"),
    });
}

/// Whether this process is a child subreaper: then every process its servers start stays
/// among its descendants, orphans included.
pub fn is_subreaper() -> bool {
    IS_SUBREAPER.load(Ordering::Relaxed)
}

impl Child {
    /// Starts `launch` in a new process group.
    pub fn spawn(launch: &Launch) -> std::io::Result<Child> {
        become_subreaper();
        let mut command = Command::new(&launch.command);
        command
            .args(&launch.args)
            .envs(&launch.env)
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(cwd) = &launch.cwd {
            command.current_dir(cwd);
        }
        let started = Instant::now();
        let mut child = command.spawn()?;
        let pid = child.id();
        let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());

        let (line_tx, output) = channel();
        if let Some(stdout) = stdout {
            thread::Builder::new().name(format!("stdout-{pid}")).spawn(move || read_lines(stdout, &line_tx))?;
        }
        let tail = Arc::new(Mutex::new(Kept::new(0, STDERR_KEEP)));
        if let Some(stderr) = stderr {
            let tail = Arc::clone(&tail);
            thread::Builder::new().name(format!("stderr-{pid}")).spawn(move || read_into(stderr, &tail))?;
        }
        let stdin = match stdin {
            Some(stdin) => {
                let (tx, rx) = channel::<Vec<u8>>();
                thread::Builder::new().name(format!("stdin-{pid}")).spawn(move || write_all(stdin, &rx))?;
                Some(tx)
            }
            None => None,
        };
        let exited = exit_notifier(pid);
        Ok(Child { child, pid, stdin, output, stdout_closed: false, stderr: tail, exit: None, exited, started })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Queues bytes for the server's stdin. False when stdin is closed.
    pub fn send(&self, bytes: Vec<u8>) -> bool {
        self.stdin.as_ref().is_some_and(|tx| tx.send(bytes).is_ok())
    }

    /// The next stdout line, waiting until `deadline`.
    pub fn next_output(&mut self, deadline: Instant) -> Result<Output, Silence> {
        if self.stdout_closed {
            return Err(Silence::Closed);
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.output.recv_timeout(wait) {
            Ok(Output::Closed) | Err(RecvTimeoutError::Disconnected) => {
                self.stdout_closed = true;
                Ok(Output::Closed)
            }
            Ok(other) => Ok(other),
            Err(RecvTimeoutError::Timeout) => Err(Silence::Timeout),
        }
    }

    /// The exit status, when the process has exited (waiting at most `wait` for it).
    pub fn exit_status(&mut self, wait: Duration) -> Option<ExitStatus> {
        if self.exit.is_none() {
            let deadline = Instant::now() + wait;
            let mut pause = Duration::from_millis(1);
            loop {
                match self.child.try_wait() {
                    Ok(Some(status)) => {
                        self.exit = Some(status);
                        break;
                    }
                    Ok(None) => {}
                    Err(_) => break, // reaped elsewhere: there is no status to wait for
                }
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                match &self.exited {
                    Some(fd) => wait_readable(fd, deadline - now),
                    None => {
                        thread::sleep(pause.min(deadline - now));
                        pause = (pause * 2).min(Duration::from_millis(20));
                    }
                }
            }
        }
        self.exit
    }

    /// The last bytes of stderr (lossy UTF-8), with a note when earlier bytes were dropped.
    pub fn stderr_tail(&self, max: usize) -> String {
        self.stderr.lock().map(|t| t.last(max)).unwrap_or_default()
    }

    /// How many bytes the server wrote to stderr.
    pub fn stderr_total(&self) -> u64 {
        self.stderr.lock().map(|t| t.total()).unwrap_or(0)
    }

    /// Stops the server and everything in its process group: close stdin, wait up to
    /// [`STDIN_CLOSE_WAIT`], TERM the group, wait `grace`, KILL the group; reaps them all.
    pub fn stop(&mut self, grace: Duration) -> Stopped {
        let already = self.exit_status(Duration::ZERO).is_some();
        self.stdin = None;
        let mut how = if already { "exited" } else { "stdin" };
        if self.exit_status(STDIN_CLOSE_WAIT.min(grace)).is_none() {
            how = "term";
            signal_group(self.pid, Signal::TERM);
            if self.exit_status(grace).is_none() {
                how = "kill";
                signal_group(self.pid, Signal::KILL);
                self.exit_status(Duration::from_secs(5));
            }
        }
        // The leader is gone; anything left in its group is a straggler (a grandchild holding
        // stdout, say). It gets the same treatment.
        let mut stragglers = reap_group(self.pid);
        let straggling = group_alive(self.pid);
        if straggling {
            stragglers += 1;
            signal_group(self.pid, Signal::TERM);
            if !wait_group_gone(self.pid, grace) {
                signal_group(self.pid, Signal::KILL);
                wait_group_gone(self.pid, Duration::from_secs(5));
            }
            if how != "kill" && how != "term" {
                how = "term";
            }
        }
        let group_gone = !straggling || !group_alive(self.pid);
        let status = self.exit.map_or_else(|| "still running".to_owned(), describe_exit);
        Stopped { how: how.to_owned(), status, stragglers, group_gone }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.exit.is_none() || group_alive(self.pid) {
            self.stop(Duration::from_millis(100));
        }
    }
}

/// Describes an exit status the way a report says it.
pub fn describe_exit(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("signal {}", signal_name(sig)),
        _ => "unknown status".to_owned(),
    }
}

fn signal_name(sig: i32) -> String {
    match sig {
        1 => "HUP".into(),
        2 => "INT".into(),
        6 => "ABRT".into(),
        9 => "KILL".into(),
        11 => "SEGV".into(),
        13 => "PIPE".into(),
        15 => "TERM".into(),
        other => other.to_string(),
    }
}

fn read_lines(stdout: impl Read, tx: &Sender<Output>) {
    let mut reader = BufReader::with_capacity(64 << 10, stdout);
    loop {
        let mut line = Vec::new();
        match (&mut reader).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                } else if line.len() > MAX_LINE {
                    line.truncate(200);
                    let _ = tx.send(Output::TooLong(line));
                    return;
                }
                if tx.send(Output::Line(line)).is_err() {
                    return;
                }
            }
        }
    }
    let _ = tx.send(Output::Closed);
}

fn write_all(mut stdin: ChildStdin, rx: &Receiver<Vec<u8>>) {
    while let Ok(bytes) = rx.recv() {
        if stdin.write_all(&bytes).and_then(|()| stdin.flush()).is_err() {
            return;
        }
    }
}

fn pid_of(pid: u32) -> Option<Pid> {
    Pid::from_raw(i32::try_from(pid).ok()?)
}

fn signal_group(pgid: u32, signal: Signal) {
    if let Some(pgid) = pid_of(pgid) {
        let _ = rustix::process::kill_process_group(pgid, signal);
    }
}

/// Reaps every exited member of the group that is our child (directly, or by reparenting to
/// this subreaper); returns how many it reaped.
fn reap_group(pgid: u32) -> usize {
    let Some(pgid) = pid_of(pgid) else { return 0 };
    let mut reaped = 0;
    while let Ok(Some(_)) = rustix::process::waitpgid(pgid, WaitOptions::NOHANG) {
        reaped += 1;
    }
    reaped
}

/// True while a live (non-zombie) process is in the group. Dead members that are this
/// process's children are reaped on the way, waiting up to [`ZOMBIE_SETTLE`] for those that
/// cannot be reaped yet (a process is only reapable once its last thread has gone, so a node
/// grandchild killed with the server stays a zombie for a few milliseconds).
fn group_alive(pgid: u32) -> bool {
    let Some(group) = pid_of(pgid) else { return false };
    let deadline = Instant::now() + ZOMBIE_SETTLE;
    loop {
        reap_group(pgid);
        // No process at all in the group (the usual end) takes one syscall to learn; only a
        // group with members needs the look at /proc that tells the live ones from zombies.
        if rustix::process::test_kill_process_group(group) == Err(rustix::io::Errno::SRCH) {
            return false;
        }
        let members = crate::proc::sample::group_members(pgid);
        if members.iter().any(|m| m.state != 'Z') {
            return true;
        }
        let ours = members.iter().any(|m| m.ppid == std::process::id());
        if !ours || Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// A descriptor that becomes readable when `pid` exits, where the OS has one.
#[cfg(target_os = "linux")]
fn exit_notifier(pid: u32) -> Option<std::os::fd::OwnedFd> {
    rustix::process::pidfd_open(pid_of(pid)?, rustix::process::PidfdFlags::empty()).ok()
}

#[cfg(not(target_os = "linux"))]
fn exit_notifier(_pid: u32) -> Option<std::os::fd::OwnedFd> {
    None
}

/// Waits until `fd` is readable or `wait` has passed (an interrupted wait just returns early:
/// the caller checks and waits again; a poll that fails otherwise sleeps a millisecond, so
/// the caller's loop cannot spin).
fn wait_readable(fd: &std::os::fd::OwnedFd, wait: Duration) {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let timeout = Timespec::try_from(wait).unwrap_or(Timespec { tv_sec: i64::MAX, tv_nsec: 0 });
    match rustix::event::poll(&mut [PollFd::new(fd, PollFlags::IN)], Some(&timeout)) {
        Ok(_) | Err(rustix::io::Errno::INTR) => {}
        Err(_) => thread::sleep(wait.min(Duration::from_millis(1))),
    }
}

fn wait_group_gone(pgid: u32, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        if !group_alive(pgid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}
