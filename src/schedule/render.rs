//! What `tend schedule render` prints: for cron, one crontab line per entry; for systemd, a
//! service and a timer per entry. Both run the entry through `tend run` with absolute paths,
//! at the times `tend schedule run` would, so a host can use whichever it already has.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::Entry;
use crate::error::{Error, Result};

/// How the rendered jobs start tend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The tend binary, absolute.
    pub tend: PathBuf,
    /// The site file, absolute.
    pub site: PathBuf,
    /// The token file, absolute; the token itself is never rendered.
    pub token_file: Option<PathBuf>,
    /// Variables the runs need set (such as `TEND_HOME` when the root came from it).
    pub env: Vec<(String, String)>,
    /// The folder cron's output goes to: `<root>/logs`.
    pub logs: PathBuf,
}

/// One crontab line and what it is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CrontabLine {
    /// The entry's name.
    pub name: String,
    /// The comment printed above the line.
    pub comment: String,
    pub line: String,
    /// The file the job appends its output to.
    pub log: PathBuf,
}

/// A unit file: the name to save it as, and its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitFile {
    /// The file name to save it as (`tend-<name>.service`).
    pub file: String,
    /// The unit's text.
    pub text: String,
}

/// The service and timer of one entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SystemdUnits {
    /// The entry's name.
    pub name: String,
    /// `tend-<name>.service`: a oneshot `tend run`.
    pub service: UnitFile,
    /// `tend-<name>.timer`: when the service starts.
    pub timer: UnitFile,
}

/// The crontab lines of `entries`. Cron has no jitter of its own, so the line asks `tend run
/// --jitter` for it; nor a seconds field, so an expression with one is refused.
pub fn crontab(entries: &[Entry], how: &Invocation) -> Result<Vec<CrontabLine>> {
    entries
        .iter()
        .map(|entry| {
            let fields = entry.cron.crontab_fields().ok_or_else(|| {
                Error::usage(format!(
                    "schedule `{}`: cron has no seconds field, so `{}` can run only under `tend schedule run` or systemd (`tend schedule render --systemd`)",
                    entry.name, entry.cron
                ))
            })?;
            let log = how.logs.join(format!("schedule-{}.log", entry.name));
            let mut words: Vec<String> = how.env.iter().map(|(k, v)| shell_word(&format!("{k}={v}"))).collect();
            words.push(shell_word(&path_text(&how.tend)));
            words.extend(run_args(entry, how, true).iter().map(|a| shell_word(a)));
            let command = format!(
                "mkdir -p {} && {} >> {} 2>&1",
                shell_word(&path_text(&how.logs)),
                words.join(" "),
                shell_word(&path_text(&log))
            );
            check_one_line(entry, &command)?;
            // cron turns an unescaped `%` into a line break; `\%` reaches the shell as `%`.
            let line = format!("{fields} {}", command.replace('%', "\\%"));
            let jitter =
                if entry.jitter.is_zero() { String::new() } else { format!(", jitter {}", format_jitter(entry.jitter)) };
            let comment = format!("# tend schedule {}: {}{jitter}", entry.name, entry.cron);
            Ok(CrontabLine { name: entry.name.clone(), comment, line, log })
        })
        .collect()
}

/// The crontab lines as printed: each with its comment.
pub fn crontab_text(lines: &[CrontabLine]) -> String {
    lines.iter().map(|l| format!("{}\n{}\n", l.comment, l.line)).collect()
}

/// A `tend-<name>.service` (a oneshot `tend run`) and `tend-<name>.timer` (`OnCalendar=`
/// from the expression, `RandomizedDelaySec=` from the jitter, `Persistent=true` so that a
/// run missed while the machine was off happens at boot) per entry.
pub fn systemd(entries: &[Entry], how: &Invocation) -> Result<Vec<SystemdUnits>> {
    entries
        .iter()
        .map(|entry| {
            let unit = format!("tend-{}", entry.name);
            let mut exec = vec![systemd_word(&path_text(&how.tend))];
            exec.extend(run_args(entry, how, false).iter().map(|a| systemd_word(a)));
            let exec = exec.join(" ");
            check_one_line(entry, &exec)?;
            let mut service = format!(
                "[Unit]\nDescription=tend schedule {}: {}\nWants=network-online.target\nAfter=network-online.target\n\n[Service]\nType=oneshot\n",
                entry.name,
                specifiers(&path_text(&entry.playbook))
            );
            for (k, v) in &how.env {
                service.push_str(&format!("Environment={}\n", systemd_env_word(&format!("{k}={v}"))));
            }
            service.push_str(&format!("ExecStart={exec}\n"));
            let mut timer = format!("[Unit]\nDescription=tend schedule {} ({})\n\n[Timer]\n", entry.name, entry.cron);
            for calendar in entry.cron.on_calendar() {
                timer.push_str(&format!("OnCalendar={calendar}\n"));
            }
            if !entry.jitter.is_zero() {
                timer.push_str(&format!("RandomizedDelaySec={}\n", systemd_span(entry.jitter)));
            }
            // The default accuracy is a minute, which would blur a schedule that names seconds.
            timer.push_str("AccuracySec=1s\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n");
            Ok(SystemdUnits {
                name: entry.name.clone(),
                service: UnitFile { file: format!("{unit}.service"), text: service },
                timer: UnitFile { file: format!("{unit}.timer"), text: timer },
            })
        })
        .collect()
}

/// The unit files as printed: each under a comment naming the file to save it as.
pub fn systemd_text(units: &[SystemdUnits]) -> String {
    let mut out = String::new();
    for file in units.iter().flat_map(|u| [&u.service, &u.timer]) {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&format!(
            "# {} (save in /etc/systemd/system/, or ~/.config/systemd/user/ for a user timer)\n{}",
            file.file, file.text
        ));
    }
    out
}

/// `--site … [--token-file …] run PLAYBOOK [--var K=V]… [--jitter D]`.
fn run_args(entry: &Entry, how: &Invocation, jitter: bool) -> Vec<String> {
    let mut args = vec!["--site".to_owned(), path_text(&how.site)];
    if let Some(token_file) = &how.token_file {
        args.extend(["--token-file".to_owned(), path_text(token_file)]);
    }
    args.extend(["run".to_owned(), path_text(&entry.playbook)]);
    for (k, v) in &entry.vars {
        args.extend(["--var".to_owned(), format!("{k}={v}")]);
    }
    if jitter && !entry.jitter.is_zero() {
        args.extend(["--jitter".to_owned(), format_jitter(entry.jitter)]);
    }
    args
}

fn path_text(path: &Path) -> String {
    path.display().to_string()
}

fn format_jitter(jitter: Duration) -> String {
    crate::duration::format(jitter)
}

/// A crontab entry and an `ExecStart=` are one line each: refuse a control character (a
/// `--var` value with a line break) rather than write a broken job.
fn check_one_line(entry: &Entry, text: &str) -> Result<()> {
    match text.chars().find(|c| c.is_control()) {
        Some(c) => Err(Error::usage(format!(
            "schedule `{}`: the command holds the control character {:?}, which a crontab line or unit file cannot carry",
            entry.name, c
        ))),
        None => Ok(()),
    }
}

fn plain(word: &str) -> bool {
    !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c))
}

/// A word for `/bin/sh`: as it is when plain, else in single quotes.
pub fn shell_word(word: &str) -> String {
    if plain(word) { word.to_owned() } else { format!("'{}'", word.replace('\'', "'\\''")) }
}

/// `%` starts a specifier in every unit file value.
fn specifiers(text: &str) -> String {
    text.replace('%', "%%")
}

/// A word of an `ExecStart=` line: specifiers (`%`) and variables (`$`) doubled, and in
/// double quotes with C escapes unless plain.
pub fn systemd_word(word: &str) -> String {
    let text = specifiers(word).replace('$', "$$");
    if plain(word) { text } else { format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\"")) }
}

/// An `Environment=` assignment: specifiers doubled (no variables are expanded there),
/// quoted unless plain.
fn systemd_env_word(word: &str) -> String {
    let text = specifiers(word);
    if plain(word) { text } else { format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\"")) }
}

/// A time span systemd reads: whole seconds, else milliseconds.
fn systemd_span(length: Duration) -> String {
    if length.subsec_millis() == 0 { length.as_secs().to_string() } else { format!("{}ms", length.as_millis()) }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::schedule::CronExpr;

    fn how() -> Invocation {
        Invocation {
            tend: PathBuf::from("/usr/bin/tend"),
            site: PathBuf::from("/srv/site/tend.toml"),
            token_file: Some(PathBuf::from("/etc/tend/token")),
            env: Vec::new(),
            logs: PathBuf::from("/var/lib/tend/logs"),
        }
    }

    fn entry(name: &str, cron: &str, vars: &[(&str, &str)], jitter: u64) -> Entry {
        Entry {
            name: name.to_owned(),
            cron: CronExpr::parse(cron).unwrap(),
            playbook: PathBuf::from("/srv/site/playbooks/update.rhai"),
            vars: vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<BTreeMap<_, _>>(),
            jitter: Duration::from_secs(jitter),
        }
    }

    #[test]
    fn shell_words_survive_sh() {
        assert_eq!(shell_word("/usr/bin/tend"), "/usr/bin/tend");
        assert_eq!(shell_word("who=the world"), "'who=the world'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        assert_eq!(shell_word(""), "''");
        assert_eq!(shell_word("$HOME"), "'$HOME'");
    }

    #[test]
    fn a_crontab_line_escapes_percent_and_asks_tend_for_the_jitter() {
        let lines = crontab(&[entry("nightly", "@daily", &[("note", "100% it's")], 600)], &how()).unwrap();
        assert_eq!(lines[0].comment, "# tend schedule nightly: @daily, jitter 10m");
        assert_eq!(
            lines[0].line,
            "0 0 * * * mkdir -p /var/lib/tend/logs && /usr/bin/tend --site /srv/site/tend.toml --token-file /etc/tend/token run /srv/site/playbooks/update.rhai --var 'note=100\\% it'\\''s' --jitter 10m >> /var/lib/tend/logs/schedule-nightly.log 2>&1"
        );
    }

    #[test]
    fn cron_refuses_seconds_and_line_breaks() {
        let err = crontab(&[entry("tick", "*/2 * * * * *", &[], 0)], &how()).unwrap_err();
        assert_eq!(
            err.message(),
            "schedule `tick`: cron has no seconds field, so `*/2 * * * * *` can run only under `tend schedule run` or systemd (`tend schedule render --systemd`)"
        );
        let err = crontab(&[entry("x", "@daily", &[("a", "1\n2")], 0)], &how()).unwrap_err();
        assert_eq!(
            err.message(),
            "schedule `x`: the command holds the control character '\\n', which a crontab line or unit file cannot carry"
        );
        assert!(systemd(&[entry("x", "@daily", &[("a", "1\n2")], 0)], &how()).is_err());
    }

    #[test]
    fn systemd_words_escape_specifiers_variables_and_quotes() {
        assert_eq!(systemd_word("/usr/bin/tend"), "/usr/bin/tend");
        assert_eq!(systemd_word("a=100%"), "a=100%%");
        assert_eq!(systemd_word("cost=$5 \"net\""), "\"cost=$$5 \\\"net\\\"\"");
        assert_eq!(systemd_env_word("TEND_HOME=/var/lib/my tend"), "\"TEND_HOME=/var/lib/my tend\"");
        assert_eq!(systemd_span(Duration::from_secs(600)), "600");
        assert_eq!(systemd_span(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn units_per_entry() {
        let mut how = how();
        how.env = vec![("TEND_HOME".into(), "/var/lib/tend".into())];
        let units = systemd(&[entry("weekdays", "0 3 1 * MON-FRI", &[("dry", "true")], 90)], &how).unwrap();
        assert_eq!(units[0].service.file, "tend-weekdays.service");
        assert_eq!(
            units[0].service.text,
            "[Unit]\nDescription=tend schedule weekdays: /srv/site/playbooks/update.rhai\nWants=network-online.target\nAfter=network-online.target\n\n[Service]\nType=oneshot\nEnvironment=TEND_HOME=/var/lib/tend\nExecStart=/usr/bin/tend --site /srv/site/tend.toml --token-file /etc/tend/token run /srv/site/playbooks/update.rhai --var dry=true\n"
        );
        assert_eq!(units[0].timer.file, "tend-weekdays.timer");
        assert_eq!(
            units[0].timer.text,
            "[Unit]\nDescription=tend schedule weekdays (0 3 1 * MON-FRI)\n\n[Timer]\nOnCalendar=Mon..Fri *-*-* 03:00:00\nOnCalendar=*-*-01 03:00:00\nRandomizedDelaySec=90\nAccuracySec=1s\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n"
        );
    }
}
