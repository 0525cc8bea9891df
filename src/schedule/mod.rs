//! Scheduling: the `[[schedule]]` entries of a site, checked and ready to run. tend can run
//! them itself in the foreground ([`Scheduler`], `tend schedule run`) or hand them to cron or
//! systemd ([`render`], `tend schedule render`); the three agree on the times, and each run
//! goes through the same `Runtime::run` (and so the same site lock) as `tend run`.

mod cron;
pub mod render;
mod runner;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub use cron::CronExpr;
pub use runner::{Clock, Due, Scheduler, Summary, SystemClock};

use crate::error::{Error, Result};
use crate::site::{Schedule, Site};

/// One `[[schedule]]` entry, checked: its expression parsed, its playbook an existing file
/// (absolute, resolved against the site file's folder when the site was loaded).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Unique in the site; part of unit and log file names.
    pub name: String,
    /// When it runs.
    pub cron: CronExpr,
    /// The playbook to run, absolute.
    pub playbook: PathBuf,
    /// The playbook's `vars`, as `--var KEY=VALUE` would give them.
    pub vars: BTreeMap<String, String>,
    /// The largest random delay added to each run (zero: none).
    pub jitter: Duration,
}

/// Checks every `[[schedule]]` entry of a site: a valid and unique name, a cron expression
/// that parses, an existing playbook. The first problem is a usage error naming the entry.
pub fn entries(site: &Site) -> Result<Vec<Entry>> {
    let shown = site.file.as_ref().map_or_else(|| "the site".to_owned(), |f| f.display().to_string());
    if site.schedule.is_empty() {
        return Err(Error::usage(format!("{shown} has no [[schedule]] entries")));
    }
    check_unique(&site.schedule).map_err(|e| Error::usage(format!("{shown}: {e}")))?;
    site.schedule.iter().map(entry).collect()
}

fn entry(s: &Schedule) -> Result<Entry> {
    let problem = |why: String| Error::usage(format!("schedule `{}`: {why}", s.name));
    check_name(&s.name).map_err(|why| Error::usage(format!("schedule entry `{}`: {why}", s.name)))?;
    let cron = CronExpr::parse(&s.cron).map_err(problem)?;
    let playbook = std::path::absolute(&s.playbook).unwrap_or_else(|_| s.playbook.clone());
    match std::fs::metadata(&playbook) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => return Err(problem(format!("playbook {} is not a file", playbook.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(problem(format!("playbook {} does not exist", playbook.display())));
        }
        Err(e) => return Err(problem(format!("cannot read playbook {}: {e}", playbook.display()))),
    }
    Ok(Entry {
        name: s.name.clone(),
        cron,
        playbook,
        vars: s.vars.clone(),
        jitter: s.jitter.map(|j| j.as_duration()).unwrap_or_default(),
    })
}

/// A name becomes part of file and unit names (`tend-<name>.timer`, `schedule-<name>.log`),
/// so it is kept to letters, digits, `-` and `_`.
pub fn check_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".to_owned());
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')) {
        return Err(format!("`{c}` in the name: use only letters, digits, `-` and `_`"));
    }
    Ok(())
}

/// Two entries may not share a name: their units and logs would.
pub fn check_unique(schedule: &[Schedule]) -> std::result::Result<(), String> {
    for (i, s) in schedule.iter().enumerate() {
        if schedule[..i].iter().any(|earlier| earlier.name == s.name) {
            return Err(format!("two [[schedule]] entries are named `{}`", s.name));
        }
    }
    Ok(())
}

/// A random delay, uniform in `[0, max]` at millisecond resolution, from the OS's generator.
pub fn jitter(max: Duration) -> Result<Duration> {
    let span = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    if span == 0 {
        return Ok(Duration::ZERO);
    }
    let Some(count) = span.checked_add(1) else {
        return random_u64().map(Duration::from_millis);
    };
    // Rejection sampling: draws past the last whole multiple of `count` would favour small values.
    let zone = u64::MAX - (u64::MAX % count);
    loop {
        let draw = random_u64()?;
        if draw < zone {
            return Ok(Duration::from_millis(draw % count));
        }
    }
}

fn random_u64() -> Result<u64> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| Error::failed(format!("cannot get random bytes: {e}")))?;
    Ok(u64::from_le_bytes(bytes))
}

/// How often a wait looks at its stop flag: a signal is noticed within this.
pub const TICK: Duration = Duration::from_millis(200);

/// Sleeps for `length` unless `stop` is set first; true when the whole time passed.
pub fn pause(length: Duration, stop: &AtomicBool) -> bool {
    let end = Instant::now() + length;
    loop {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(TICK));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_its_bound_and_varies() {
        let max = Duration::from_millis(3);
        let draws: Vec<Duration> = (0..400).map(|_| jitter(max).unwrap()).collect();
        assert!(draws.iter().all(|d| *d <= max));
        for ms in 0..=3 {
            assert!(draws.contains(&Duration::from_millis(ms)), "{ms} ms never drawn in 400 tries");
        }
        assert_eq!(jitter(Duration::ZERO).unwrap(), Duration::ZERO);
    }

    #[test]
    fn names_are_file_name_safe() {
        assert_eq!(check_name("nightly-update_2"), Ok(()));
        assert_eq!(check_name(""), Err("the name is empty".to_owned()));
        assert_eq!(check_name("a b"), Err("` ` in the name: use only letters, digits, `-` and `_`".to_owned()));
        assert_eq!(check_name("../x"), Err("`.` in the name: use only letters, digits, `-` and `_`".to_owned()));
    }

    #[test]
    fn pause_ends_early_when_stopped() {
        let stop = AtomicBool::new(true);
        let started = Instant::now();
        assert!(!pause(Duration::from_secs(30), &stop));
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(pause(Duration::from_millis(5), &AtomicBool::new(false)));
    }
}
