//! Cron expressions as a crontab writes them: five fields (minute, hour, day of month, month,
//! day of week), six with a leading seconds field, or a nickname such as `@daily`. tend parses
//! the text itself, so that a mistake is named exactly and so that the same fields can be
//! written back for cron or translated into systemd calendar events; `croner` computes the
//! times, from a numeric form of the same fields.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, TimeZone};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// The nicknames crontab knows, and the five fields each stands for.
const NICKNAMES: [(&str, &str); 7] = [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

const MONTHS: [&str; 12] = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
/// systemd's weekday names, Sunday first like cron's numbers.
const SYSTEMD_WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// The six positions of a cron expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    Second,
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
}

impl Position {
    fn label(self) -> &'static str {
        match self {
            Position::Second => "second",
            Position::Minute => "minute",
            Position::Hour => "hour",
            Position::DayOfMonth => "day of month",
            Position::Month => "month",
            Position::DayOfWeek => "day of week",
        }
    }

    /// The smallest and largest value; day of week allows 7 for Sunday, as crontab does.
    fn bounds(self) -> (u32, u32) {
        match self {
            Position::Second | Position::Minute => (0, 59),
            Position::Hour => (0, 23),
            Position::DayOfMonth => (1, 31),
            Position::Month => (1, 12),
            Position::DayOfWeek => (0, 7),
        }
    }

    /// A value by name (`JAN`, `mon`), for the two positions that have names.
    fn named(self, text: &str) -> Option<u32> {
        let upper = text.to_ascii_uppercase();
        let names: &[&str] = match self {
            Position::Month => &MONTHS,
            Position::DayOfWeek => &WEEKDAYS,
            _ => return None,
        };
        let index = names.iter().position(|n| *n == upper)?;
        Some(if self == Position::Month { index as u32 + 1 } else { index as u32 })
    }
}

/// One comma-separated part of a field: `*`, `5`, `1-5`, `*/15` or `10-40/10`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    /// `*`: the whole range of the position.
    star: bool,
    first: u32,
    last: u32,
    step: u32,
}

/// One field of an expression, as written and as parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Field {
    position: Position,
    text: String,
    items: Vec<Item>,
}

impl Field {
    fn parse(position: Position, text: &str) -> Result<Field, String> {
        let label = position.label();
        let (min, max) = position.bounds();
        let value = |part: &str| -> Result<u32, String> {
            let n = if part.bytes().all(|b| b.is_ascii_digit()) && !part.is_empty() {
                part.parse::<u32>().map_err(|_| format!("{label} `{part}` is out of range {min}-{max}"))?
            } else {
                if let Some(c) = extension(part) {
                    return Err(format!(
                        "{label} `{text}`: `{c}` is not crontab syntax (cron and systemd know only numbers, names, `*`, `,`, `-` and `/`)"
                    ));
                }
                position.named(part).ok_or_else(|| match position {
                    Position::Month => format!("{label} `{part}` is neither a number nor a month name (JAN-DEC)"),
                    Position::DayOfWeek => {
                        format!("{label} `{part}` is neither a number nor a weekday name (SUN-SAT)")
                    }
                    _ => format!("{label} `{part}` is not a number"),
                })?
            };
            if n < min || n > max {
                return Err(format!("{label} `{part}` is out of range {min}-{max}"));
            }
            Ok(n)
        };
        let mut items = Vec::new();
        for part in text.split(',') {
            let (base, step) = match part.split_once('/') {
                Some((base, step)) => {
                    let n = step
                        .parse::<u32>()
                        .ok()
                        .filter(|n| *n >= 1 && *n <= max)
                        .ok_or_else(|| format!("{label} `{part}`: the step must be a number from 1 to {max}"))?;
                    (base, Some(n))
                }
                None => (part, None),
            };
            let item = if base == "*" {
                Item { star: true, first: min, last: max, step: step.unwrap_or(1) }
            } else if let Some((a, b)) = base.split_once('-') {
                let (first, last) = (value(a)?, value(b)?);
                if first > last {
                    return Err(format!("{label} `{part}`: the range runs backwards"));
                }
                Item { star: false, first, last, step: step.unwrap_or(1) }
            } else {
                if step.is_some() {
                    return Err(format!(
                        "{label} `{part}`: a step needs `*` or a range before it (for example `{base}-{max}/{}`)",
                        step.unwrap_or(1)
                    ));
                }
                let n = value(base)?;
                Item { star: false, first: n, last: n, step: 1 }
            };
            items.push(item);
        }
        Ok(Field { position, text: text.to_owned(), items })
    }

    /// Exactly `*`: the field restricts nothing.
    fn is_star(&self) -> bool {
        self.text == "*"
    }

    /// Every value the field matches; day of week folds 7 into 0 (both are Sunday).
    fn values(&self) -> BTreeSet<u32> {
        let mut out = BTreeSet::new();
        for item in &self.items {
            let mut n = item.first;
            while n <= item.last {
                out.insert(if self.position == Position::DayOfWeek { n % 7 } else { n });
                n += item.step;
            }
        }
        out
    }

    /// The field with names replaced by numbers: what croner reads.
    fn numeric(&self) -> String {
        let parts: Vec<String> = self
            .items
            .iter()
            .map(|i| {
                let base = if i.star {
                    "*".to_owned()
                } else if i.first == i.last {
                    i.first.to_string()
                } else {
                    format!("{}-{}", i.first, i.last)
                };
                if i.step == 1 { base } else { format!("{base}/{}", i.step) }
            })
            .collect();
        parts.join(",")
    }

    /// The field as a systemd calendar component (not for day of week): `*`, `03`,
    /// `09..17`, `00/15`, `10..40/10`, or a list of those.
    fn calendar(&self) -> String {
        if self.items.iter().any(|i| i.star && i.step == 1) {
            return "*".to_owned();
        }
        let parts: Vec<String> = self
            .items
            .iter()
            .map(|i| {
                if i.star {
                    format!("{:02}/{}", i.first, i.step)
                } else if i.first == i.last {
                    format!("{:02}", i.first)
                } else if i.step == 1 {
                    format!("{:02}..{:02}", i.first, i.last)
                } else {
                    format!("{:02}..{:02}/{}", i.first, i.last, i.step)
                }
            })
            .collect();
        parts.join(",")
    }
}

/// The character of croner's (Quartz-like) extensions in a value: `L`, `LW`, `15W`, `5L`,
/// `5#2`, `?`. Neither cron nor systemd knows them.
fn extension(part: &str) -> Option<char> {
    if let Some(c) = part.chars().find(|c| matches!(c, '#' | '?')) {
        return Some(c);
    }
    let upper = part.to_ascii_uppercase();
    let head = upper.trim_end_matches(['L', 'W']);
    (head.len() < upper.len() && head.bytes().all(|b| b.is_ascii_digit()))
        .then(|| upper[head.len()..].chars().next())?
}

/// A parsed, checked cron expression.
#[derive(Debug, Clone)]
pub struct CronExpr {
    text: String,
    /// The five fields crontab reads (a nickname spelled out), when there is no seconds field.
    crontab: Option<String>,
    second: Option<Field>,
    minute: Field,
    hour: Field,
    day_of_month: Field,
    month: Field,
    day_of_week: Field,
    cron: Cron,
}

impl PartialEq for CronExpr {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl fmt::Display for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl CronExpr {
    /// Parses and checks an expression. The error says what is wrong, naming the field; the
    /// caller adds which entry it belongs to.
    pub fn parse(text: &str) -> Result<CronExpr, String> {
        Self::parse_fields(text).map_err(|why| format!("invalid cron expression `{text}`: {why}"))
    }

    fn parse_fields(text: &str) -> Result<CronExpr, String> {
        let trimmed = text.trim();
        let spelled = if trimmed.starts_with('@') {
            let lower = trimmed.to_ascii_lowercase();
            if lower == "@reboot" {
                return Err("@reboot is not a time; start tend at boot from the init system instead".to_owned());
            }
            let (_, fields) = NICKNAMES.iter().find(|(nick, _)| *nick == lower).ok_or_else(|| {
                let known: Vec<&str> = NICKNAMES.iter().map(|(n, _)| *n).collect();
                format!("unknown nickname (expected one of {})", known.join(", "))
            })?;
            (*fields).to_owned()
        } else {
            trimmed.to_owned()
        };
        let words: Vec<&str> = spelled.split_whitespace().collect();
        let (second, rest) = match words.len() {
            5 => (None, &words[..]),
            6 => (Some(Field::parse(Position::Second, words[0])?), &words[1..]),
            0 => return Err("it is empty".to_owned()),
            n => {
                return Err(format!(
                    "expected 5 fields (minute hour day-of-month month day-of-week), 6 with a leading seconds field, or a nickname such as @daily; found {n}"
                ));
            }
        };
        let minute = Field::parse(Position::Minute, rest[0])?;
        let hour = Field::parse(Position::Hour, rest[1])?;
        let day_of_month = Field::parse(Position::DayOfMonth, rest[2])?;
        let month = Field::parse(Position::Month, rest[3])?;
        let day_of_week = Field::parse(Position::DayOfWeek, rest[4])?;

        // Vixie cron treats any day field that starts with `*` as unrestricted when it decides
        // between "day of month AND day of week" and "OR"; croner and systemd look only at a
        // bare `*`. The two readings differ exactly here, so refuse rather than guess.
        for (field, other) in [(&day_of_month, &day_of_week), (&day_of_week, &day_of_month)] {
            if field.text.starts_with('*') && !field.is_star() && !other.is_star() {
                return Err(format!(
                    "{} `{}` next to a restricted {} is read differently by cron and systemd; list the values instead (for example `{}`)",
                    field.position.label(),
                    field.text,
                    other.position.label(),
                    field.values().iter().map(u32::to_string).collect::<Vec<_>>().join(",")
                ));
            }
        }
        // A date that no month has never comes: refuse it now rather than sleep forever.
        if day_of_week.is_star() {
            let longest = |m: u32| match m {
                2 => 29,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            let days = day_of_month.values();
            if !month.values().iter().any(|m| days.iter().any(|d| *d <= longest(*m))) {
                return Err(format!(
                    "day of month `{}` never falls in month `{}`, so it never runs",
                    day_of_month.text, month.text
                ));
            }
        }

        let numeric = format!(
            "{} {} {} {} {} {}",
            second.as_ref().map_or_else(|| "0".to_owned(), Field::numeric),
            minute.numeric(),
            hour.numeric(),
            day_of_month.numeric(),
            month.numeric(),
            day_of_week.numeric()
        );
        let cron = CronParser::builder()
            .seconds(Seconds::Required)
            .year(Year::Disallowed)
            .build()
            .parse(&numeric)
            .map_err(|e| e.to_string().trim_end_matches('.').to_owned())?;
        let crontab = second.is_none().then(|| words.join(" "));
        Ok(CronExpr { text: text.to_owned(), crontab, second, minute, hour, day_of_month, month, day_of_week, cron })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the expression has a seconds field (which crontab lacks).
    pub fn has_seconds(&self) -> bool {
        self.second.is_some()
    }

    /// The first time strictly after `after` that the expression matches, in `after`'s time
    /// zone (a wall-clock time skipped by a DST change moves to the first one after it).
    pub fn next_after<Tz: TimeZone>(&self, after: &DateTime<Tz>) -> Option<DateTime<Tz>> {
        self.cron.find_next_occurrence(after, false).ok()
    }

    /// The five fields for a crontab line, with a nickname spelled out (not every cron knows
    /// them); `None` for an expression with seconds.
    pub fn crontab_fields(&self) -> Option<&str> {
        self.crontab.as_deref()
    }

    /// The same times as systemd `OnCalendar=` values, in local time. Usually one; two when
    /// both day of month and day of week are restricted, because cron then runs on either
    /// and systemd runs on the union of its `OnCalendar=` lines.
    pub fn on_calendar(&self) -> Vec<String> {
        let time = format!(
            "{}:{}:{}",
            self.hour.calendar(),
            self.minute.calendar(),
            self.second.as_ref().map_or_else(|| "00".to_owned(), Field::calendar)
        );
        let month = self.month.calendar();
        let weekdays = weekday_names(&self.day_of_week.values());
        let with_weekdays = |date: String| match &weekdays {
            Some(days) => format!("{days} {date} {time}"),
            None => format!("{date} {time}"),
        };
        if !self.day_of_month.is_star() && !self.day_of_week.is_star() {
            // Either field matching is enough: one event for the weekdays in every day of the
            // month, one for the days of the month. A day-of-week field that names every day
            // already covers every day.
            if weekdays.is_none() {
                return vec![with_weekdays(format!("*-{month}-*"))];
            }
            return vec![
                with_weekdays(format!("*-{month}-*")),
                format!("*-{month}-{} {time}", self.day_of_month.calendar()),
            ];
        }
        vec![with_weekdays(format!("*-{month}-{}", self.day_of_month.calendar()))]
    }
}

/// systemd weekday names for a set of cron weekdays (0 = Sunday), Monday first as systemd
/// orders them, runs of three or more as ranges; `None` when every day is in the set.
fn weekday_names(days: &BTreeSet<u32>) -> Option<String> {
    if days.len() == 7 {
        return None;
    }
    // systemd counts Monday..Sunday, so a range must run upwards in that order.
    let order: Vec<u32> = [1, 2, 3, 4, 5, 6, 0].into_iter().filter(|d| days.contains(d)).collect();
    let rank = |d: u32| (d + 6) % 7;
    let mut parts = Vec::new();
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && rank(order[j + 1]) == rank(order[j]) + 1 {
            j += 1;
        }
        let name = |d: u32| SYSTEMD_WEEKDAYS[d as usize];
        if j - i >= 2 {
            parts.push(format!("{}..{}", name(order[i]), name(order[j])));
        } else {
            parts.extend(order[i..=j].iter().map(|d| name(*d).to_owned()));
        }
        i = j + 1;
    }
    Some(parts.join(","))
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn calendar(text: &str) -> Vec<String> {
        CronExpr::parse(text).unwrap_or_else(|e| panic!("{text}: {e}")).on_calendar()
    }

    fn refused(text: &str) -> String {
        CronExpr::parse(text).err().unwrap_or_else(|| panic!("{text} was accepted"))
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc)).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn plain_values_and_stars() {
        assert_eq!(calendar("0 3 * * *"), ["*-*-* 03:00:00"]);
        assert_eq!(calendar("30 4 1 * *"), ["*-*-01 04:30:00"]);
        assert_eq!(calendar("* * * * *"), ["*-*-* *:*:00"]);
    }

    #[test]
    fn lists_ranges_and_steps() {
        assert_eq!(calendar("0,30 9-17 * * *"), ["*-*-* 09..17:00,30:00"]);
        assert_eq!(calendar("*/15 * * * *"), ["*-*-* *:00/15:00"]);
        assert_eq!(calendar("10-40/10 */6 */2 */3 *"), ["*-01/3-01/2 00/6:10..40/10:00"]);
        assert_eq!(calendar("5 1,2,10-12 * JAN-MAR,dec *"), ["*-01..03,12-* 01,02,10..12:05:00"]);
    }

    #[test]
    fn seconds_when_six_fields() {
        assert_eq!(calendar("*/2 * * * * *"), ["*-*-* *:*:00/2"]);
        assert_eq!(calendar("15 0 12 * * *"), ["*-*-* 12:00:15"]);
    }

    #[test]
    fn weekdays_become_names_monday_first() {
        assert_eq!(calendar("0 3 * * 1-5"), ["Mon..Fri *-*-* 03:00:00"]);
        assert_eq!(calendar("0 3 * * MON-FRI"), ["Mon..Fri *-*-* 03:00:00"]);
        assert_eq!(calendar("0 3 * * 0,6"), ["Sat,Sun *-*-* 03:00:00"]);
        assert_eq!(calendar("0 3 * * 7"), ["Sun *-*-* 03:00:00"]);
        assert_eq!(calendar("0 3 * * 5-7"), ["Fri..Sun *-*-* 03:00:00"]);
        assert_eq!(calendar("0 3 * * */2"), ["Tue,Thu,Sat,Sun *-*-* 03:00:00"]);
        assert_eq!(calendar("0 3 * * 1,2,4"), ["Mon,Tue,Thu *-*-* 03:00:00"]);
        assert_eq!(calendar("0 3 * * 0-7"), ["*-*-* 03:00:00"]);
    }

    #[test]
    fn day_of_month_or_day_of_week_is_two_events() {
        assert_eq!(calendar("0 3 1,15 * 1-5"), ["Mon..Fri *-*-* 03:00:00", "*-*-01,15 03:00:00"]);
        assert_eq!(calendar("0 0 13 6 FRI"), ["Fri *-06-* 00:00:00", "*-06-13 00:00:00"]);
        // Every weekday named: every day matches, whatever the day of month says.
        assert_eq!(calendar("0 0 1 * 0-6"), ["*-*-* 00:00:00"]);
    }

    #[test]
    fn nicknames_are_spelled_out() {
        for (nick, want) in [
            ("@yearly", "*-01-01 00:00:00"),
            ("@annually", "*-01-01 00:00:00"),
            ("@monthly", "*-*-01 00:00:00"),
            ("@weekly", "Sun *-*-* 00:00:00"),
            ("@daily", "*-*-* 00:00:00"),
            ("@MIDNIGHT", "*-*-* 00:00:00"),
            ("@hourly", "*-*-* *:00:00"),
        ] {
            assert_eq!(calendar(nick), [want], "{nick}");
        }
        assert_eq!(CronExpr::parse("@weekly").unwrap().crontab_fields(), Some("0 0 * * 0"));
        assert_eq!(CronExpr::parse("0  3 * *  MON").unwrap().crontab_fields(), Some("0 3 * * MON"));
        assert_eq!(CronExpr::parse("*/2 * * * * *").unwrap().crontab_fields(), None);
    }

    #[test]
    fn refused_forms_are_named() {
        let cases = [
            ("", "invalid cron expression ``: it is empty"),
            (
                "0 3 * *",
                "invalid cron expression `0 3 * *`: expected 5 fields (minute hour day-of-month month day-of-week), 6 with a leading seconds field, or a nickname such as @daily; found 4",
            ),
            ("61 * * * *", "invalid cron expression `61 * * * *`: minute `61` is out of range 0-59"),
            ("0 24 * * *", "invalid cron expression `0 24 * * *`: hour `24` is out of range 0-23"),
            ("0 0 0 * *", "invalid cron expression `0 0 0 * *`: day of month `0` is out of range 1-31"),
            ("0 0 * 13 *", "invalid cron expression `0 0 * 13 *`: month `13` is out of range 1-12"),
            ("0 0 * * 8", "invalid cron expression `0 0 * * 8`: day of week `8` is out of range 0-7"),
            (
                "0 0 * FOO *",
                "invalid cron expression `0 0 * FOO *`: month `FOO` is neither a number nor a month name (JAN-DEC)",
            ),
            (
                "0 0 * * FUN",
                "invalid cron expression `0 0 * * FUN`: day of week `FUN` is neither a number nor a weekday name (SUN-SAT)",
            ),
            ("x 0 * * *", "invalid cron expression `x 0 * * *`: minute `x` is not a number"),
            ("5-1 * * * *", "invalid cron expression `5-1 * * * *`: minute `5-1`: the range runs backwards"),
            (
                "*/0 * * * *",
                "invalid cron expression `*/0 * * * *`: minute `*/0`: the step must be a number from 1 to 59",
            ),
            (
                "5/15 * * * *",
                "invalid cron expression `5/15 * * * *`: minute `5/15`: a step needs `*` or a range before it (for example `5-59/15`)",
            ),
            (
                "0 0 L * *",
                "invalid cron expression `0 0 L * *`: day of month `L`: `L` is not crontab syntax (cron and systemd know only numbers, names, `*`, `,`, `-` and `/`)",
            ),
            (
                "0 0 * * 5#2",
                "invalid cron expression `0 0 * * 5#2`: day of week `5#2`: `#` is not crontab syntax (cron and systemd know only numbers, names, `*`, `,`, `-` and `/`)",
            ),
            (
                "0 0 30 2 *",
                "invalid cron expression `0 0 30 2 *`: day of month `30` never falls in month `2`, so it never runs",
            ),
            (
                "@reboot",
                "invalid cron expression `@reboot`: @reboot is not a time; start tend at boot from the init system instead",
            ),
            (
                "@often",
                "invalid cron expression `@often`: unknown nickname (expected one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly)",
            ),
            (
                "0 0 */2 * 1",
                "invalid cron expression `0 0 */2 * 1`: day of month `*/2` next to a restricted day of week is read differently by cron and systemd; list the values instead (for example `1,3,5,7,9,11,13,15,17,19,21,23,25,27,29,31`)",
            ),
            (
                "0 0 1 * */3",
                "invalid cron expression `0 0 1 * */3`: day of week `*/3` next to a restricted day of month is read differently by cron and systemd; list the values instead (for example `0,3,6`)",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(refused(text), want);
        }
    }

    #[test]
    fn next_times_follow_crontab() {
        let next = |expr: &str, after: &str| CronExpr::parse(expr).unwrap().next_after(&at(after)).unwrap();
        assert_eq!(next("0 3 * * *", "2026-01-01T03:00:00Z"), at("2026-01-02T03:00:00Z"));
        assert_eq!(next("0 3 * * *", "2026-01-01T02:59:59.5Z"), at("2026-01-01T03:00:00Z"));
        assert_eq!(next("*/2 * * * * *", "2026-01-01T00:00:00.1Z"), at("2026-01-01T00:00:02Z"));
        // 2026-01-01 is a Thursday: the 15th or a Monday, whichever comes first.
        assert_eq!(next("0 0 15 * 1", "2026-01-01T00:00:00Z"), at("2026-01-05T00:00:00Z"));
        assert_eq!(next("0 0 15 * 1", "2026-01-13T00:00:00Z"), at("2026-01-15T00:00:00Z"));
        // Sunday as 7.
        assert_eq!(next("0 0 * * 7", "2026-01-01T00:00:00Z"), at("2026-01-04T00:00:00Z"));
        assert_eq!(next("0 0 29 2 *", "2026-01-01T00:00:00Z"), at("2028-02-29T00:00:00Z"));
        assert_eq!(next("@monthly", "2026-01-31T12:00:00Z"), at("2026-02-01T00:00:00Z"));
    }
}
