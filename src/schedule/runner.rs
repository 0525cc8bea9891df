//! The foreground scheduler of `tend schedule run`: sleeps until the next entry is due, runs
//! one entry at a time, and coalesces the occurrences that came due while a run was going
//! into one run afterwards, logging them as missed. Time and randomness come in through
//! [`Clock`] and a jitter function, so the loop itself is what the tests drive.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Local, SecondsFormat, TimeDelta};

use super::{Entry, TICK};
use crate::error::{ErrorKind, Result};
use crate::report::RunReport;

/// Where the scheduler reads the time and waits.
pub trait Clock {
    /// The wall-clock time now, in the zone cron expressions are read in.
    fn now(&self) -> DateTime<Local>;
    /// Waits about `length`; the scheduler never asks for more than [`TICK`] at once.
    fn sleep(&self, length: Duration);
}

impl<T: Clock + ?Sized> Clock for &T {
    fn now(&self) -> DateTime<Local> {
        (**self).now()
    }

    fn sleep(&self, length: Duration) {
        (**self).sleep(length);
    }
}

/// The system's clock and local time zone (the `TZ` variable, else `/etc/localtime`), as
/// cron and systemd use them.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Local> {
        Local::now()
    }

    fn sleep(&self, length: Duration) {
        std::thread::sleep(length);
    }
}

/// One run the scheduler starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The scheduled times this run stands for, oldest first: one, or several when missed
    /// occurrences were coalesced into it.
    pub scheduled: Vec<DateTime<Local>>,
    /// How many of them were missed (came due while a run was going, or while the scheduler
    /// was not looking).
    pub missed: usize,
}

/// What a scheduler did before it stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Runs started (whatever their outcome).
    pub runs: usize,
    /// Runs that failed, or could not start for a reason other than the lock.
    pub failed: usize,
    /// Occurrences skipped because another process held the site lock.
    pub skipped: usize,
    /// Occurrences missed and coalesced into a later run.
    pub missed: usize,
}

/// An occurrence of an entry: when its expression says, and when it fires (with jitter).
#[derive(Debug, Clone, Copy)]
struct Occurrence {
    scheduled: DateTime<Local>,
    fire: DateTime<Local>,
}

/// The scheduler's book of one entry.
#[derive(Debug, Default)]
struct Slot {
    next: Option<Occurrence>,
    /// Came due while the scheduler was idle or starting another entry due at the same time:
    /// waiting for its turn, not missed.
    waiting: Vec<DateTime<Local>>,
    /// Came due while a run was going.
    missed: Vec<DateTime<Local>>,
}

/// Runs a site's schedule in the foreground until `stop` is set.
pub struct Scheduler<'a, C> {
    entries: &'a [Entry],
    clock: C,
    jitter: Box<dyn FnMut(Duration) -> Duration + 'a>,
    stop: &'a AtomicBool,
}

impl<C> std::fmt::Debug for Scheduler<'_, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").field("entries", &self.entries.len()).finish_non_exhaustive()
    }
}

impl<'a, C: Clock> Scheduler<'a, C> {
    /// A scheduler over checked entries ([`super::entries`]) whose jitter comes from the OS's
    /// random generator ([`super::jitter`]).
    pub fn new(entries: &'a [Entry], clock: C, stop: &'a AtomicBool) -> Self {
        Scheduler {
            entries,
            clock,
            jitter: Box::new(|max| {
                super::jitter(max).unwrap_or_else(|e| {
                    tracing::warn!("no jitter this time: {}", e.message());
                    Duration::ZERO
                })
            }),
            stop,
        }
    }

    /// Draws each occurrence's delay with `draw(max)` instead (tests fix it).
    #[must_use]
    pub fn with_jitter(mut self, draw: impl FnMut(Duration) -> Duration + 'a) -> Self {
        self.jitter = Box::new(draw);
        self
    }

    /// Runs entries as they come due with `execute`, one at a time, until `stop` is set; a
    /// run in progress is never interrupted here (the caller's cancel flag does that). A
    /// failed run, or one refused because another process holds the site lock, is logged
    /// and the schedule goes on.
    pub fn run(&mut self, mut execute: impl FnMut(&Entry, &Due) -> Result<RunReport>) -> Summary {
        let mut summary = Summary::default();
        let start = self.clock.now();
        let mut slots: Vec<Slot> = Vec::with_capacity(self.entries.len());
        for entry in self.entries {
            let next = self.occurrence_after(entry, start);
            log_next(entry, next.as_ref());
            slots.push(Slot { next, ..Slot::default() });
        }
        while !self.stop.load(Ordering::SeqCst) {
            let now = self.clock.now();
            self.collect(&mut slots, now, false);
            let pick = slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| [s.waiting.first(), s.missed.first()].into_iter().flatten().min().map(|t| (*t, i)))
                .min();
            let Some((_, i)) = pick else {
                let Some(wake) = slots.iter().filter_map(|s| s.next.map(|o| o.fire)).min() else {
                    tracing::warn!("schedule: no entry will run again; stopping");
                    break;
                };
                let left = (wake - now).to_std().unwrap_or(Duration::ZERO);
                self.clock.sleep(left.clamp(Duration::from_millis(1), TICK));
                continue;
            };
            let entry = &self.entries[i];
            let slot = &mut slots[i];
            let waiting = std::mem::take(&mut slot.waiting);
            let missed = std::mem::take(&mut slot.missed);
            // The first occurrence that came due while idle is on time; the rest are missed.
            let late: Vec<DateTime<Local>> = waiting.iter().skip(1).chain(&missed).copied().collect();
            let mut scheduled: Vec<DateTime<Local>> = waiting.into_iter().chain(missed).collect();
            scheduled.sort();
            if !late.is_empty() {
                tracing::warn!(
                    entry = entry.name,
                    missed = late.len(),
                    "schedule `{}`: {} missed run(s), scheduled at {}; running it once now",
                    entry.name,
                    late.len(),
                    late.iter().map(|t| stamp(*t)).collect::<Vec<_>>().join(", ")
                );
            }
            summary.missed += late.len();
            let due = Due { missed: late.len(), scheduled };
            let newest = due.scheduled.last().copied().unwrap_or(now);
            tracing::info!(
                entry = entry.name,
                "schedule `{}`: starting the run scheduled at {}",
                entry.name,
                stamp(newest)
            );
            match execute(entry, &due) {
                Ok(report) => {
                    summary.runs += 1;
                    match &report.error {
                        None => tracing::info!(
                            entry = entry.name,
                            run = report.id,
                            "schedule `{}`: run {} ok in {:.0} ms (report {})",
                            entry.name,
                            report.id,
                            report.duration_ms,
                            report.path.display()
                        ),
                        Some(error) => {
                            summary.failed += 1;
                            tracing::error!(
                                entry = entry.name,
                                run = report.id,
                                "schedule `{}`: run {} {}: {} (report {})",
                                entry.name,
                                report.id,
                                report.outcome,
                                error.message,
                                report.path.display()
                            );
                        }
                    }
                }
                Err(err) if err.kind() == ErrorKind::Locked => {
                    summary.skipped += 1;
                    tracing::warn!(entry = entry.name, "schedule `{}`: skipped: {}", entry.name, err.message());
                }
                Err(err) => {
                    summary.failed += 1;
                    tracing::error!(entry = entry.name, "schedule `{}`: {}", entry.name, err.message());
                }
            }
            let end = self.clock.now();
            self.collect(&mut slots, end, true);
            log_next(entry, slots[i].next.as_ref());
        }
        tracing::info!(
            "schedule: stopped after {} run(s): {} failed, {} skipped (site locked), {} missed",
            summary.runs,
            summary.failed,
            summary.skipped,
            summary.missed
        );
        summary
    }

    /// Moves every occurrence that fired by `now` into its slot's queue: `missed` when it
    /// came due while a run was going, else `waiting`.
    fn collect(&mut self, slots: &mut [Slot], now: DateTime<Local>, busy: bool) {
        for (entry, slot) in self.entries.iter().zip(slots.iter_mut()) {
            while let Some(o) = slot.next.filter(|o| o.fire <= now) {
                let queue = if busy { &mut slot.missed } else { &mut slot.waiting };
                queue.push(o.scheduled);
                slot.next = self.occurrence_after(entry, o.scheduled);
            }
        }
    }

    fn occurrence_after(&mut self, entry: &Entry, after: DateTime<Local>) -> Option<Occurrence> {
        let scheduled = entry.cron.next_after(&after)?;
        let delay = TimeDelta::from_std((self.jitter)(entry.jitter)).unwrap_or_default();
        Some(Occurrence { scheduled, fire: scheduled + delay })
    }
}

fn log_next(entry: &Entry, next: Option<&Occurrence>) {
    match next {
        Some(o) if o.fire != o.scheduled => tracing::info!(
            entry = entry.name,
            "schedule `{}` ({}): next run at {} (scheduled {}, jitter up to {})",
            entry.name,
            entry.cron,
            stamp(o.fire),
            stamp(o.scheduled),
            crate::duration::format(entry.jitter)
        ),
        Some(o) => tracing::info!(
            entry = entry.name,
            "schedule `{}` ({}): next run at {}",
            entry.name,
            entry.cron,
            stamp(o.scheduled)
        ),
        None => tracing::warn!(entry = entry.name, "schedule `{}` ({}): never runs again", entry.name, entry.cron),
    }
}

/// A scheduled time as the log shows it: RFC 3339 with the local offset, to the millisecond
/// when it has a fraction (jitter).
fn stamp(t: DateTime<Local>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use chrono::TimeZone;

    use super::*;
    use crate::error::Error;
    use crate::schedule::CronExpr;

    /// A clock that moves only when the scheduler sleeps or a run takes time.
    struct FakeClock {
        now: Cell<DateTime<Local>>,
        longest_sleep: Cell<Duration>,
    }

    impl FakeClock {
        fn at(secs: i64) -> FakeClock {
            FakeClock { now: Cell::new(t(secs)), longest_sleep: Cell::new(Duration::ZERO) }
        }

        fn advance(&self, length: Duration) {
            self.now.set(self.now.get() + TimeDelta::from_std(length).unwrap());
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> DateTime<Local> {
            self.now.get()
        }

        fn sleep(&self, length: Duration) {
            self.longest_sleep.set(self.longest_sleep.get().max(length));
            self.advance(length);
        }
    }

    /// Seconds after 2026-01-01T00:00:00Z, as a local time.
    fn t(secs: i64) -> DateTime<Local> {
        chrono::Utc.timestamp_opt(1_767_225_600 + secs, 0).unwrap().with_timezone(&Local)
    }

    fn entry(name: &str, cron: &str, jitter: Duration) -> Entry {
        Entry {
            name: name.to_owned(),
            cron: CronExpr::parse(cron).unwrap(),
            playbook: PathBuf::from("/p.rhai"),
            vars: BTreeMap::new(),
            jitter,
        }
    }

    fn report(ok: bool) -> RunReport {
        RunReport {
            id: "run".into(),
            playbook: "/p.rhai".into(),
            site: None,
            token: None,
            dry_run: false,
            started: String::new(),
            ended: String::new(),
            duration_ms: 0.0,
            outcome: if ok { "ok" } else { "failed" }.into(),
            error: (!ok).then(|| crate::report::ReportError {
                kind: "failed".into(),
                message: "boom".into(),
                exit_code: 1,
            }),
            result: serde_json::Value::Null,
            calls: Vec::new(),
            path: PathBuf::from("/r.json"),
        }
    }

    /// What the executor saw: entry name, clock time at start, the `Due`.
    type Seen = RefCell<Vec<(String, DateTime<Local>, Due)>>;

    fn due(scheduled: &[i64], missed: usize) -> Due {
        Due { scheduled: scheduled.iter().map(|s| t(*s)).collect(), missed }
    }

    #[test]
    fn runs_each_occurrence_on_time_and_sleeps_in_short_ticks() {
        let entries = [entry("tick", "*/10 * * * * *", Duration::ZERO)];
        let clock = FakeClock::at(1);
        let stop = AtomicBool::new(false);
        let seen = Seen::default();
        let summary = Scheduler::new(&entries, &clock, &stop).run(|e, d| {
            seen.borrow_mut().push((e.name.clone(), clock.now(), d.clone()));
            clock.advance(Duration::from_secs(1));
            if seen.borrow().len() == 3 {
                stop.store(true, Ordering::SeqCst);
            }
            Ok(report(true))
        });
        let seen = seen.into_inner();
        assert_eq!(
            seen.iter().map(|(_, at, d)| (*at, d.clone())).collect::<Vec<_>>(),
            [(t(10), due(&[10], 0)), (t(20), due(&[20], 0)), (t(30), due(&[30], 0))]
        );
        assert_eq!(summary, Summary { runs: 3, failed: 0, skipped: 0, missed: 0 });
        assert!(clock.longest_sleep.get() <= TICK);
    }

    #[test]
    fn occurrences_during_a_long_run_are_missed_and_coalesced_into_one_run() {
        let entries = [entry("slow", "*/10 * * * * *", Duration::ZERO)];
        let clock = FakeClock::at(1);
        let stop = AtomicBool::new(false);
        let seen = Seen::default();
        let summary = Scheduler::new(&entries, &clock, &stop).run(|e, d| {
            seen.borrow_mut().push((e.name.clone(), clock.now(), d.clone()));
            // The first run lasts 25 s, the next ones 2 s.
            let n = seen.borrow().len();
            clock.advance(Duration::from_secs(if n == 1 { 25 } else { 2 }));
            if n == 3 {
                stop.store(true, Ordering::SeqCst);
            }
            Ok(report(true))
        });
        let seen = seen.into_inner();
        // 10 runs until 35; 20 and 30 came due meanwhile: one run at 35 for both; then 40.
        assert_eq!(
            seen.iter().map(|(_, at, d)| (*at, d.clone())).collect::<Vec<_>>(),
            [(t(10), due(&[10], 0)), (t(35), due(&[20, 30], 2)), (t(40), due(&[40], 0))]
        );
        assert_eq!(summary, Summary { runs: 3, failed: 0, skipped: 0, missed: 2 });
    }

    #[test]
    fn another_entry_due_during_a_run_waits_and_counts_as_missed() {
        let entries = [entry("long", "0 * * * * *", Duration::ZERO), entry("short", "5 * * * * *", Duration::ZERO)];
        let clock = FakeClock::at(1);
        let stop = AtomicBool::new(false);
        let seen = Seen::default();
        Scheduler::new(&entries, &clock, &stop).run(|e, d| {
            seen.borrow_mut().push((e.name.clone(), clock.now(), d.clone()));
            clock.advance(Duration::from_secs(if e.name == "long" { 20 } else { 1 }));
            if seen.borrow().len() == 3 {
                stop.store(true, Ordering::SeqCst);
            }
            Ok(report(true))
        });
        let seen = seen.into_inner();
        assert_eq!(seen[0], ("short".into(), t(5), due(&[5], 0)));
        assert_eq!(seen[1], ("long".into(), t(60), due(&[60], 0)));
        // The 65 s occurrence of `short` came due during `long`'s run: missed, run at 80.
        assert_eq!(seen[2], ("short".into(), t(80), due(&[65], 1)));
    }

    #[test]
    fn entries_due_together_take_turns_without_being_missed() {
        let entries = [entry("a", "0 * * * * *", Duration::ZERO), entry("b", "0 * * * * *", Duration::ZERO)];
        let clock = FakeClock::at(1);
        let stop = AtomicBool::new(false);
        let seen = Seen::default();
        let summary = Scheduler::new(&entries, &clock, &stop).run(|e, d| {
            seen.borrow_mut().push((e.name.clone(), clock.now(), d.clone()));
            clock.advance(Duration::from_secs(5));
            if seen.borrow().len() == 2 {
                stop.store(true, Ordering::SeqCst);
            }
            Ok(report(true))
        });
        let seen = seen.into_inner();
        assert_eq!(seen, [("a".into(), t(60), due(&[60], 0)), ("b".into(), t(65), due(&[60], 0))]);
        assert_eq!(summary.missed, 0);
    }

    #[test]
    fn a_clock_jump_over_several_occurrences_runs_once_and_logs_the_rest_missed() {
        let entries = [entry("tick", "*/10 * * * * *", Duration::ZERO)];
        let clock = FakeClock::at(1);
        let stop = AtomicBool::new(false);
        let seen = Seen::default();
        // A suspended machine: the first sleep takes 45 s.
        struct Jumpy<'a>(&'a FakeClock, Cell<bool>);
        impl Clock for Jumpy<'_> {
            fn now(&self) -> DateTime<Local> {
                self.0.now()
            }
            fn sleep(&self, length: Duration) {
                self.0.advance(if self.1.replace(true) { length } else { Duration::from_secs(45) });
            }
        }
        let summary = Scheduler::new(&entries, Jumpy(&clock, Cell::new(false)), &stop).run(|e, d| {
            seen.borrow_mut().push((e.name.clone(), clock.now(), d.clone()));
            stop.store(true, Ordering::SeqCst);
            Ok(report(true))
        });
        assert_eq!(seen.into_inner()[0], ("tick".into(), t(46), due(&[10, 20, 30, 40], 3)));
        assert_eq!(summary.missed, 3);
    }

    #[test]
    fn jitter_delays_the_run_and_failures_and_a_held_lock_do_not_stop_the_schedule() {
        let entries = [entry("j", "*/10 * * * * *", Duration::from_secs(5))];
        let clock = FakeClock::at(1);
        let stop = AtomicBool::new(false);
        let seen = Seen::default();
        let asked = Cell::new(Duration::ZERO);
        let summary = Scheduler::new(&entries, &clock, &stop)
            .with_jitter(|max| {
                asked.set(max);
                Duration::from_millis(3_500)
            })
            .run(|e, d| {
                seen.borrow_mut().push((e.name.clone(), clock.now(), d.clone()));
                clock.advance(Duration::from_secs(1));
                match seen.borrow().len() {
                    1 => Err(Error::new(ErrorKind::Locked, "another run holds the site lock")),
                    2 => Ok(report(false)),
                    3 => Err(Error::usage("cannot read playbook")),
                    _ => {
                        stop.store(true, Ordering::SeqCst);
                        Ok(report(true))
                    }
                }
            });
        assert_eq!(asked.get(), Duration::from_secs(5));
        let starts: Vec<DateTime<Local>> = seen.into_inner().into_iter().map(|(_, at, _)| at).collect();
        let ms = |s: i64| t(s) + TimeDelta::milliseconds(3_500);
        assert_eq!(starts, [ms(10), ms(20), ms(30), ms(40)]);
        assert_eq!(summary, Summary { runs: 2, failed: 2, skipped: 1, missed: 0 });
    }

    #[test]
    fn a_stop_while_idle_ends_the_loop_without_running() {
        let entries = [entry("daily", "@daily", Duration::ZERO)];
        let clock = FakeClock::at(1);
        let stop = AtomicBool::new(true);
        let summary = Scheduler::new(&entries, &clock, &stop).run(|_, _| panic!("nothing is due"));
        assert_eq!(summary, Summary::default());
    }
}
