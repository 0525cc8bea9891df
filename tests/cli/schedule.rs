//! `tend schedule run` and `tend schedule render`, driven as systemd, cron or a person drives
//! them: the built binary as a child process with real signals, the rendered crontab line run
//! through `sh`, the rendered units checked by `systemd-analyze`. A run that must last is held
//! by a registry that answers only when the test lets it (`Gate`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use serde_json::Value;

use crate::util::{self, TEND, Test};

/// How long any wait of these tests may last before it fails (a deadline against hangs, not a
/// timing assertion).
const DEADLINE: Duration = Duration::from_secs(60);

/// The tend binary as `current_exe()` names it inside tend.
fn tend_exe() -> String {
    std::fs::canonicalize(TEND).unwrap().display().to_string()
}

// ---------------------------------------------------------------- the scheduler as a child

/// A `tend schedule run` in the background, its stderr (and stdout) collected as they come.
struct Scheduler {
    child: Child,
    log: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

/// Appends each line read from `pipe` to `sink`, until the pipe closes.
fn collect(pipe: impl Read + Send + 'static, sink: &Arc<Mutex<String>>) -> JoinHandle<()> {
    let sink = Arc::clone(sink);
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let mut text = sink.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    })
}

impl Scheduler {
    fn start(dir: &Path) -> Scheduler {
        Scheduler::start_with(dir, &[])
    }

    fn start_with(dir: &Path, global: &[&str]) -> Scheduler {
        let mut child = Command::new(TEND)
            .args(global)
            .args(["schedule", "run"])
            .current_dir(dir)
            .env_remove("TEND_TOKEN")
            .env_remove("TEND_SITE")
            .env_remove("TEND_HOME")
            .env_remove("TEND_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (log, stdout) = (Arc::default(), Arc::default());
        let readers = vec![collect(child.stderr.take().unwrap(), &log), collect(child.stdout.take().unwrap(), &stdout)];
        Scheduler { child, log, stdout, readers }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until `done` holds, failing with the log after [`DEADLINE`].
    fn wait_for(&mut self, what: &str, done: impl Fn(&str) -> bool) {
        let start = Instant::now();
        loop {
            let log = self.log();
            if done(&log) {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("tend schedule run exited ({status}) before {what}\n{log}");
            }
            assert!(start.elapsed() < DEADLINE, "no {what} within {DEADLINE:?}\n{log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, signal: Signal) {
        kill_process(Pid::from_child(&self.child), signal).unwrap();
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the exit (killing the child after [`DEADLINE`]): its code and whole log.
    fn finish(self) -> (Option<i32>, String) {
        let (code, log, _) = self.finish_with_stdout();
        (code, log)
    }

    fn finish_with_stdout(mut self) -> (Option<i32>, String, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > DEADLINE {
                self.child.kill().unwrap();
                panic!("tend schedule run did not exit within {DEADLINE:?}\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        let stdout = self.stdout.lock().unwrap().clone();
        (status.code(), self.log(), stdout)
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn reports(dir: &Path) -> Vec<Value> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir.join("root/reports")).map(|d| d.map(|e| e.unwrap().path()).collect()).unwrap_or_default();
    files.sort();
    // A report is written atomically (temp file, rename), so every file here is whole.
    files.iter().map(|f| serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap()).collect()
}

fn report_count(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("root/reports")).map(|d| d.count()).unwrap_or(0)
}

// ---------------------------------------------------------------- a registry that waits

/// A registry that answers every request with 404, each only once the test opens the gate:
/// a playbook that calls `check()` is in its run exactly as long as the test wants.
struct Gate {
    port: u16,
    open: Arc<AtomicBool>,
    hits: Arc<AtomicUsize>,
    closed: Arc<AtomicBool>,
}

impl Gate {
    fn start() -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (open, hits, closed) = (Arc::default(), Arc::default(), Arc::default());
        let gate = Gate { port, open: Arc::clone(&open), hits: Arc::clone(&hits), closed: Arc::clone(&closed) };
        std::thread::spawn(move || {
            while !closed.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (open, hits) = (Arc::clone(&open), Arc::clone(&hits));
                        std::thread::spawn(move || answer(stream, &open, &hits));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        gate
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.open.store(true, Ordering::SeqCst);
        self.closed.store(true, Ordering::SeqCst);
    }
}

fn answer(mut stream: TcpStream, open: &AtomicBool, hits: &AtomicUsize) {
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    hits.fetch_add(1, Ordering::SeqCst);
    let start = Instant::now();
    while !open.load(Ordering::SeqCst) && start.elapsed() < DEADLINE {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
}

/// A site whose one entry, `gated`, runs every second a playbook that asks the gate's
/// registry for a package and catches the 404, then counts to 5000 (operations, at which the
/// sandbox looks at the cancel flag): the run ends ok once the gate opens.
fn gated_site(gate: &Gate) -> Test {
    let test = Test::new()
        .site(&format!(
            "registry = \"{}\"\n[servers.srv]\npackage = \"gated-package\"\n\n[[schedule]]\nname = \"gated\"\ncron = \"* * * * * *\"\nplaybook = \"gated.rhai\"\n",
            gate.url()
        ))
        .file(
            "gated.rhai",
            "try { check(\"srv\"); } catch (err) { print(`registry: ${err.message}`); }\nlet n = 0;\nwhile n < 5000 { n += 1; }\n\"done\"\n",
        );
    test.write_site();
    test
}

// ---------------------------------------------------------------- schedule run

#[test]
fn schedule_run_runs_an_entry_at_its_times_and_stops_on_sigterm() {
    let test = Test::new()
        .site("[[schedule]]\nname = \"tick\"\ncron = \"*/2 * * * * *\"\nplaybook = \"playbooks/tick.rhai\"\nvars = { n = \"7\" }\n")
        .file("playbooks/tick.rhai", "print(`tick ${vars.n}`);\nvars.n\n");
    test.write_site();
    let mut scheduler = Scheduler::start_with(test.path(), &["--json"]);
    let dir = test.path().to_owned();
    scheduler.wait_for("two runs", |_| report_count(&dir) >= 2);
    scheduler.signal(Signal::TERM);
    let (code, log, stdout) = scheduler.finish_with_stdout();
    assert_eq!(code, Some(0), "{log}");
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    assert!(log.contains("schedule `tick` (*/2 * * * * *): next run at "), "{log}");
    assert!(log.contains(" INFO playbook: tick 7\n"), "{log}");
    let reports = reports(test.path());
    assert!(reports.len() >= 2, "{log}");
    for report in &reports {
        assert_eq!(report["outcome"], "ok");
        assert_eq!(report["result"], 7);
        assert_eq!(report["playbook"], format!("{}/playbooks/tick.rhai", test.path().display()));
        let line = format!("schedule `tick`: run {} ok in ", report["id"].as_str().unwrap());
        assert!(log.contains(&line), "no {line:?} in\n{log}");
    }
    assert!(log.contains("schedule: SIGTERM: stopping after the current run (a second signal cancels it)\n"), "{log}");
    assert!(
        log.contains(&format!(
            "schedule: stopped after {} run(s): 0 failed, 0 skipped (site locked), 0 missed",
            reports.len()
        )),
        "{log}"
    );
    assert_eq!(summary, serde_json::json!({ "runs": reports.len(), "failed": 0, "skipped": 0, "missed": 0 }));
}

#[test]
fn runs_that_come_due_during_a_run_are_logged_missed_and_run_once_afterwards() {
    let gate = Gate::start();
    let test = gated_site(&gate);
    let mut scheduler = Scheduler::start(test.path());
    scheduler.wait_for("a run asking the registry", |_| gate.hits() >= 1);
    // The entry is due every second: hold the run past two more of its times.
    std::thread::sleep(Duration::from_millis(2_500));
    assert_eq!(report_count(test.path()), 0, "the first run is still going");
    gate.open();
    scheduler.wait_for("the coalesced run", |log| log.contains("missed run(s)") && log.matches(" ok in ").count() >= 2);
    scheduler.signal(Signal::TERM);
    let (code, log) = scheduler.finish();
    assert_eq!(code, Some(0), "{log}");
    let warning = log.lines().find(|l| l.contains("missed run(s)")).unwrap();
    assert!(warning.starts_with(" WARN "), "{warning}");
    let (_, after) = warning.split_once("schedule `gated`: ").unwrap();
    let (count, rest) = after.split_once(' ').unwrap();
    let count: usize = count.parse().unwrap();
    assert!(count >= 2, "{warning}");
    let (times, tail) = rest.strip_prefix("missed run(s), scheduled at ").unwrap().split_once("; ").unwrap();
    assert_eq!(times.split(", ").count(), count, "{warning}");
    assert!(tail.starts_with("running it once now"), "{warning}");
    // One run for all the missed times, not one each: the first run, the coalesced one, and
    // whatever came after.
    let runs: Vec<&str> = log.lines().filter(|l| l.contains("schedule `gated`: starting the run")).collect();
    let missed_at = log.find("missed run(s)").unwrap();
    let second_start = log.match_indices("schedule `gated`: starting the run").nth(1).unwrap().0;
    assert!(missed_at < second_start, "the warning comes before the coalesced run\n{log}");
    assert!(runs.len() >= 2);
    assert!(reports(test.path()).iter().all(|r| r["outcome"] == "ok"), "{log}");
}

#[test]
fn sigterm_during_a_run_lets_it_finish_then_exits_0() {
    let gate = Gate::start();
    let test = gated_site(&gate);
    let mut scheduler = Scheduler::start(test.path());
    scheduler.wait_for("a run asking the registry", |_| gate.hits() >= 1);
    scheduler.signal(Signal::TERM);
    scheduler.wait_for("the SIGTERM being noticed", |log| log.contains("SIGTERM: stopping after the current run"));
    std::thread::sleep(Duration::from_millis(500));
    assert!(scheduler.running(), "tend left before its run ended\n{}", scheduler.log());
    assert_eq!(report_count(test.path()), 0);
    gate.open();
    let (code, log) = scheduler.finish();
    assert_eq!(code, Some(0), "{log}");
    let reports = reports(test.path());
    assert_eq!(reports.len(), 1, "{log}");
    assert_eq!(reports[0]["outcome"], "ok");
    assert_eq!(reports[0]["result"], "done");
    assert!(log.contains("registry: gated-package: no such package"), "{log}");
    assert!(log.contains("stopped after 1 run(s): 0 failed"), "{log}");
}

#[test]
fn a_second_sigterm_cancels_the_run_in_progress() {
    let gate = Gate::start();
    let test = gated_site(&gate);
    let mut scheduler = Scheduler::start(test.path());
    scheduler.wait_for("a run asking the registry", |_| gate.hits() >= 1);
    scheduler.signal(Signal::TERM);
    scheduler.wait_for("the first SIGTERM", |log| log.contains("SIGTERM: stopping after the current run"));
    scheduler.signal(Signal::TERM);
    scheduler.wait_for("the second SIGTERM", |log| log.contains("SIGTERM again: cancelling the current run"));
    // The sandbox looks at the cancel flag every 1024 operations: the playbook stops in its
    // counting loop once `check()` returns.
    gate.open();
    let (code, log) = scheduler.finish();
    assert_eq!(code, Some(0), "{log}");
    let reports = reports(test.path());
    assert_eq!(reports.len(), 1, "{log}");
    assert_ne!(reports[0]["outcome"], "ok");
    let message = reports[0]["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("interrupted\n --> "), "{message}");
    assert!(log.contains("stopped after 1 run(s): 1 failed"), "{log}");
}

#[test]
fn a_site_locked_by_another_run_is_skipped_and_the_schedule_goes_on() {
    let test = Test::new()
        .site("[limits]\nmax_operations = 0\ntimeout = \"60s\"\n[[schedule]]\nname = \"tick\"\ncron = \"* * * * * *\"\nplaybook = \"tick.rhai\"\n")
        .file("slow.rhai", "loop {}\n")
        .file("tick.rhai", "1\n");
    test.write_site();
    let mut holder = Command::new(TEND).args(["-q", "run", "slow.rhai"]).current_dir(test.path()).spawn().unwrap();
    super::wait_for_lock_holder(test.path());
    let mut scheduler = Scheduler::start(test.path());
    scheduler.wait_for("a skipped run", |log| log.contains("skipped: another run holds the site lock"));
    holder.kill().unwrap();
    holder.wait().unwrap();
    let dir = test.path().to_owned();
    scheduler.wait_for("a run once the lock is free", |_| report_count(&dir) >= 1);
    scheduler.signal(Signal::INT);
    let (code, log) = scheduler.finish();
    assert_eq!(code, Some(0), "{log}");
    let skipped = log.lines().find(|l| l.contains("skipped:")).unwrap();
    assert!(
        skipped.contains(&format!(
            "schedule `tick`: skipped: another run holds the site lock {}/root/state/lock (pid {} run ",
            test.path().display(),
            holder.id()
        )),
        "{skipped}"
    );
    assert!(skipped.starts_with(" WARN "), "{skipped}");
    assert!(log.contains("schedule: SIGINT: stopping after the current run"), "{log}");
    assert!(reports(test.path()).iter().all(|r| r["outcome"] == "ok"));
}

#[test]
fn schedule_run_refuses_a_missing_playbook_and_changes_nothing() {
    Test::new()
        .site("[[schedule]]\nname = \"nightly\"\ncron = \"0 3 * * *\"\nplaybook = \"playbooks/nope.rhai\"\n")
        .args(&["schedule", "run"])
        .status(2)
        .stderr("error: schedule `nightly`: playbook {dir}/playbooks/nope.rhai does not exist\n")
        .unchanged()
        .run();
}

#[test]
fn schedule_commands_refuse_a_bad_cron_expression_and_change_nothing() {
    for command in [&["schedule", "run"][..], &["schedule", "render", "--cron"], &["schedule", "render", "--systemd"]] {
        Test::new()
            .site("\n[[schedule]]\nname = \"nightly\"\ncron = \"0 3 * * MON-FRY\"\nplaybook = \"p.rhai\"\n")
            .file("p.rhai", "1\n")
            .args(command)
            .status(2)
            .stderr("error: {dir}/tend.toml:5:8: schedule `nightly`: invalid cron expression `0 3 * * MON-FRY`: day of week `FRY` is neither a number nor a weekday name (SUN-SAT)\n")
            .unchanged()
            .run();
    }
}

#[test]
fn schedule_commands_refuse_a_duplicate_name_and_change_nothing() {
    let entry = "[[schedule]]\nname = \"nightly\"\ncron = \"@daily\"\nplaybook = \"p.rhai\"\n";
    Test::new()
        .site(&format!("{entry}{entry}"))
        .file("p.rhai", "1\n")
        .args(&["schedule", "run"])
        .status(2)
        .stderr("error: {dir}/tend.toml:7:8: schedule `nightly`: the entry at line 3 has the same name\n")
        .unchanged()
        .run();
}

#[test]
fn schedule_commands_refuse_a_name_unfit_for_a_file_name() {
    Test::new()
        .site("[[schedule]]\nname = \"../up\"\ncron = \"@daily\"\nplaybook = \"p.rhai\"\n")
        .file("p.rhai", "1\n")
        .args(&["schedule", "render", "--systemd"])
        .status(2)
        .stderr(
            "error: {dir}/tend.toml:3:8: schedule `../up`: `.` in the name: use only letters, digits, `-` and `_`\n",
        )
        .unchanged()
        .run();
}

#[test]
fn schedule_commands_need_entries() {
    Test::new()
        .args(&["schedule", "run"])
        .status(2)
        .stderr("error: {dir}/tend.toml has no [[schedule]] entries\n")
        .unchanged()
        .run();
}

// ---------------------------------------------------------------- tend run --jitter

#[test]
fn run_jitter_waits_before_the_run() {
    let done = Test::new()
        .file("p.rhai", "1\n")
        .args(&["run", "p.rhai", "--jitter", "300ms"])
        .stderr_contains(" (jitter up to 300ms) before the run\n")
        .run();
    assert_eq!(done.reports().len(), 1);
    Test::new()
        .file("p.rhai", "1\n")
        .args(&["run", "p.rhai", "--jitter", "3 days"])
        .status(2)
        .stderr_contains("invalid duration `3 days`")
        .unchanged()
        .run();
}

#[test]
fn sigterm_during_the_jitter_wait_ends_tend_before_the_run() {
    let test = Test::new().file("p.rhai", "1\n");
    test.write_site();
    let before = util::snapshot(test.path());
    let mut child = Command::new(TEND)
        .args(["run", "p.rhai", "--jitter", "10d"])
        .current_dir(test.path())
        .env_remove("TEND_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    assert!(first.contains("(jitter up to 10d) before the run"), "{first}");
    kill_process(Pid::from_child(&child), Signal::TERM).unwrap();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(1));
    assert_eq!(rest, "error: interrupted before the run started\n");
    assert_eq!(util::snapshot(test.path()), before, "nothing was created");
}

// ---------------------------------------------------------------- render --cron

const RENDER_SITE: &str = "[[schedule]]\nname = \"nightly\"\ncron = \"0 3 * * *\"\nplaybook = \"playbooks/update.rhai\"\njitter = \"10m\"\nvars = { note = \"it's 100% fine\", level = \"2\" }\n\n[[schedule]]\nname = \"weekly-prune\"\ncron = \"@weekly\"\nplaybook = \"playbooks/prune.rhai\"\n";

#[test]
fn render_cron_prints_a_line_per_entry_with_absolute_paths() {
    let tend = tend_exe();
    Test::new()
        .site(RENDER_SITE)
        .file("playbooks/update.rhai", "1\n")
        .file("playbooks/prune.rhai", "1\n")
        .file("secrets/token", "not printed\n")
        .args(&["--token-file", "secrets/token", "schedule", "render", "--cron"])
        .stdout(&format!(
            "# tend schedule nightly: 0 3 * * *, jitter 10m\n\
             0 3 * * * mkdir -p {{dir}}/root/logs && {tend} --site {{dir}}/tend.toml --token-file {{dir}}/secrets/token run {{dir}}/playbooks/update.rhai --var level=2 --var 'note=it'\\''s 100\\% fine' --jitter 10m >> {{dir}}/root/logs/schedule-nightly.log 2>&1\n\
             # tend schedule weekly-prune: @weekly\n\
             0 0 * * 0 mkdir -p {{dir}}/root/logs && {tend} --site {{dir}}/tend.toml --token-file {{dir}}/secrets/token run {{dir}}/playbooks/prune.rhai >> {{dir}}/root/logs/schedule-weekly-prune.log 2>&1\n"
        ))
        .stderr("")
        .unchanged()
        .run();
}

#[test]
fn a_rendered_crontab_line_runs_through_sh_with_its_vars_intact() {
    let note = "it's 100% \"quoted\" $HOME `x` \\ end";
    let done = Test::new()
        .site(&format!(
            "[[schedule]]\nname = \"echo\"\ncron = \"*/5 * * * *\"\nplaybook = \"echo.rhai\"\njitter = \"200ms\"\nvars = {{ note = {} }}\n",
            serde_json::to_string(note).unwrap()
        ))
        .file("echo.rhai", "vars.note\n")
        .args(&["--json", "schedule", "render", "--cron"])
        .run();
    let doc: Value = serde_json::from_str(&done.stdout()).unwrap();
    let line = doc["entries"][0]["line"].as_str().unwrap();
    let command = line.splitn(6, ' ').nth(5).unwrap();
    // What cron hands to the shell: `\%` becomes `%`, as cron does.
    let command = command.replace("\\%", "%");
    let status = Command::new("/bin/sh")
        .args(["-c", &command])
        .current_dir("/")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", done.path())
        .status()
        .unwrap();
    assert!(status.success());
    let reports = done.reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0]["result"], note);
    let log = std::fs::read_to_string(done.path().join("root/logs/schedule-echo.log")).unwrap();
    assert!(log.contains("(jitter up to 200ms) before the run"), "{log}");
    assert!(log.contains(&format!("run {} ok: ", reports[0]["id"].as_str().unwrap())), "{log}");
}

#[test]
fn render_cron_refuses_a_seconds_field() {
    Test::new()
        .site("[[schedule]]\nname = \"tick\"\ncron = \"*/2 * * * * *\"\nplaybook = \"p.rhai\"\n")
        .file("p.rhai", "1\n")
        .args(&["-q", "schedule", "render", "--cron"])
        .status(2)
        .stderr("error: schedule `tick`: cron has no seconds field, so `*/2 * * * * *` can run only under `tend schedule run` or systemd (`tend schedule render --systemd`)\n")
        .unchanged()
        .run();
}

// ---------------------------------------------------------------- render --systemd

#[test]
fn render_systemd_prints_a_service_and_timer_per_entry() {
    let tend = tend_exe();
    let header =
        |file: &str| format!("# {file} (save in /etc/systemd/system/, or ~/.config/systemd/user/ for a user timer)\n");
    Test::new()
        .site("[[schedule]]\nname = \"update\"\ncron = \"30 4 1,15 * MON-FRI\"\nplaybook = \"up date.rhai\"\njitter = \"15m\"\nvars = { cost = \"$5 100%\" }\n")
        .file("up date.rhai", "1\n")
        .file("token", "secret\n")
        .args(&["--token-file", "token", "schedule", "render", "--systemd"])
        .stdout(&format!(
            "{}[Unit]\nDescription=tend schedule update: {{dir}}/up date.rhai\nWants=network-online.target\nAfter=network-online.target\n\n\
             [Service]\nType=oneshot\n\
             ExecStart={tend} --site {{dir}}/tend.toml --token-file {{dir}}/token run \"{{dir}}/up date.rhai\" --var \"cost=$$5 100%%\"\n\
             \n{}[Unit]\nDescription=tend schedule update (30 4 1,15 * MON-FRI)\n\n\
             [Timer]\nOnCalendar=Mon..Fri *-*-* 04:30:00\nOnCalendar=*-*-01,15 04:30:00\nRandomizedDelaySec=900\nAccuracySec=1s\nPersistent=true\n\n\
             [Install]\nWantedBy=timers.target\n",
            header("tend-update.service"),
            header("tend-update.timer"),
        ))
        .stderr("")
        .unchanged()
        .run();
}

/// `systemd-analyze`, installed once (as root, non-interactively) when missing; `None` when
/// it cannot be had, and the caller skips.
fn systemd_analyze() -> Option<&'static str> {
    static FOUND: OnceLock<bool> = OnceLock::new();
    let present = || Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success());
    let found = *FOUND.get_or_init(|| {
        if present() {
            return true;
        }
        let installed = Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends", "systemd"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        installed && present()
    });
    if !found {
        eprintln!("skipped: systemd-analyze is not installed and `apt-get install systemd` did not work");
    }
    found.then_some("systemd-analyze")
}

#[test]
fn rendered_units_pass_systemd_analyze_verify() {
    let Some(analyze) = systemd_analyze() else { return };
    let done = Test::new()
        .site(RENDER_SITE)
        .site("\n[[schedule]]\nname = \"tick\"\ncron = \"*/2 * * * * *\"\nplaybook = \"playbooks/update.rhai\"\n")
        .file("playbooks/update.rhai", "1\n")
        .file("playbooks/prune.rhai", "1\n")
        .args(&["--json", "schedule", "render", "--systemd"])
        .env("TEND_HOME", "{dir}/root")
        .stderr_contains("no --token-file")
        .run();
    let doc: Value = serde_json::from_str(&done.stdout()).unwrap();
    let units = done.path().join("units");
    std::fs::create_dir(&units).unwrap();
    let mut files = Vec::new();
    for entry in doc["entries"].as_array().unwrap() {
        assert!(entry["service"]["text"].as_str().unwrap().contains("\nType=oneshot\n"));
        for kind in ["timer", "service"] {
            let path = units.join(entry[kind]["file"].as_str().unwrap());
            std::fs::write(&path, entry[kind]["text"].as_str().unwrap()).unwrap();
            files.push(path);
        }
    }
    assert_eq!(files.len(), 6);
    let nightly = std::fs::read_to_string(units.join("tend-nightly.service")).unwrap();
    assert!(nightly.contains(&format!("\nEnvironment=TEND_HOME={}/root\n", done.path().display())), "{nightly}");
    let output = Command::new(analyze).arg("verify").args(&files).current_dir(&units).output().unwrap();
    assert!(
        output.status.success(),
        "systemd-analyze verify refused the units\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // The check can fail: a timer with a calendar systemd cannot read is refused.
    let timer = units.join("tend-tick.timer");
    let text = std::fs::read_to_string(&timer).unwrap();
    std::fs::write(&timer, text.replace("OnCalendar=*-*-* *:*:00/2", "OnCalendar=*-*-* 25:00:00")).unwrap();
    let refused = Command::new(analyze).arg("verify").args(&files).output().unwrap();
    assert!(!refused.status.success());
}

/// The next `count` times systemd computes for `OnCalendar=` values after `base` (UTC).
fn systemd_times(analyze: &str, calendars: &[String], base: &str, count: usize) -> Vec<String> {
    let output = Command::new(analyze)
        .arg("calendar")
        .arg(format!("--iterations={count}"))
        .arg(format!("--base-time={base} UTC"))
        .args(calendars)
        .env("TZ", "UTC")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{calendars:?}: {text}{}", String::from_utf8_lossy(&output.stderr));
    let mut times: Vec<String> = text
        .lines()
        .filter_map(|l| {
            l.split_once("Next elapse: ").or_else(|| l.split_once(": ").filter(|(k, _)| k.contains("Iter.")))
        })
        .map(|(_, v)| {
            // "Sun 2026-02-01 00:00:00 UTC" -> "2026-02-01T00:00:00Z"
            let parts: Vec<&str> = v.split_whitespace().collect();
            format!("{}T{}Z", parts[1], parts[2])
        })
        .collect();
    times.sort();
    times.dedup();
    times.truncate(count);
    times
}

#[test]
fn the_systemd_translation_fires_when_the_scheduler_does() {
    let Some(analyze) = systemd_analyze() else { return };
    let base = "2026-01-01 00:00:00";
    let start = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&chrono::Utc);
    for text in [
        "0 3 * * *",
        "*/15 9-17 * * MON-FRI",
        "10-40/10 */6 */2 */3 *",
        "30 4 1,15 * 1-5",
        "0 0 13 * FRI",
        "0 0 1 * 0-6",
        "0 12 * * */2",
        "0 0 * * 5-7",
        "@weekly",
        "@monthly",
        "@yearly",
        "0 0 29 2 *",
        "*/20 * * * * *",
        "5 0,30 8 * JAN,JUL *",
    ] {
        let expr = tend::schedule::CronExpr::parse(text).unwrap();
        let mut ours = Vec::new();
        let mut at = start;
        for _ in 0..12 {
            at = expr.next_after(&at).unwrap();
            ours.push(at.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        }
        assert_eq!(systemd_times(analyze, &expr.on_calendar(), base, 12), ours, "{text} as {:?}", expr.on_calendar());
    }
}
