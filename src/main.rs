//! The `tend` binary: parses arguments, sets up logging and signals, calls the library, and
//! maps the outcome to an exit code.

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{CommandFactory, Parser};
use serde_json::json;
use tend::guard::audit;
use tend::guard::auth::{Scope, Token, TokenDigest, TokenEntry};
use tend::layout::Layout;
use tend::{Error, Playbook, RunOptions, Runtime, Site};

use cli::{ApiFormat, AuditCommand, Cli, Command, LogFormat, RenderArgs, ScheduleCommand, TokenCommand};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    let json = cli.json;
    match execute(cli) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(err) => {
            eprintln!("error: {}", err.message());
            if json {
                emit(&format!(
                    "{}\n",
                    json!({ "error": { "kind": err.kind().as_str(), "message": err.message(), "exit_code": err.exit_code() } })
                ));
            }
            ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(1))
        }
    }
}

fn init_logging(cli: &Cli) {
    let level = if cli.quiet {
        "warn"
    } else {
        match cli.verbose {
            0 => "info",
            1 => "debug",
            _ => "trace",
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TEND_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(tend::progress::log_writer);
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.without_time().with_target(true).with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// `TEND_NOW` (RFC 3339) fixes the clock policies are judged at: for tests and for
/// reproducing a decision after the fact.
fn clock() -> Result<Option<time::OffsetDateTime>, Error> {
    match std::env::var("TEND_NOW") {
        Ok(text) if !text.is_empty() => {
            time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
                .map(Some)
                .map_err(|e| Error::usage(format!("TEND_NOW `{text}` is not an RFC 3339 time: {e}")))
        }
        _ => Ok(None),
    }
}

/// Progress bars only for a person watching: stderr is a terminal, and neither `--json` (a
/// program reads the output) nor `-q` asked for quiet.
fn progress(cli: &Cli) -> bool {
    std::io::stderr().is_terminal() && !cli.json && !cli.quiet
}

fn token(cli: &Cli) -> Result<Option<Token>, Error> {
    if let Some(path) = &cli.token_file {
        return Token::from_file(path).map(Some);
    }
    Ok(std::env::var("TEND_TOKEN").ok().map(Token::new))
}

/// Writes to stdout; a closed pipe (`tend audit tail | head`) ends tend quietly.
fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

fn pretty(value: &serde_json::Value) -> String {
    format!("{}\n", serde_json::to_string_pretty(value).unwrap_or_default())
}

fn print_json(value: &serde_json::Value) {
    emit(&pretty(value));
}

/// A string field of a result, or nothing.
fn text(value: &serde_json::Value) -> &str {
    value.as_str().unwrap_or("")
}

/// A Rhai string literal.
fn quote(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// Runs a command as a one-line playbook, so that it goes through the same lock, scope
/// checks, audit and report as a playbook would. `Err(code)` when the run failed (its error
/// has been printed, and with `--json` an error document too).
fn run_inline(
    cli: &Cli,
    name: &str,
    source: String,
    options: RunOptions,
) -> Result<Result<serde_json::Value, i32>, Error> {
    let site = Site::discover(cli.site.as_deref())?;
    let cwd = std::env::current_dir().unwrap_or_default();
    let report = Runtime::new(site).run(&Playbook::from_source(name, source, cwd), options)?;
    match &report.error {
        // The playbook ran to its end and marked the run failed (`fail()`): the caller shows
        // its result and exits by it.
        Some(error) if !report.result.is_null() => {
            eprintln!("error: {}", error.message);
            Ok(Ok(report.result))
        }
        Some(error) => {
            eprintln!("error: {}", error.message);
            if cli.json {
                print_json(&json!({ "error": error }));
            }
            Ok(Err(report.exit_code()))
        }
        None => Ok(Ok(report.result)),
    }
}

/// `tend schedule run`: the scheduler in the foreground. The first SIGTERM or SIGINT lets the
/// current run finish and stops; a second cancels the run (it stops at its next operation and
/// writes its report); a third ends tend at once.
fn schedule_run(cli: &Cli) -> Result<i32, Error> {
    let site = Site::discover(cli.site.as_deref())?;
    let entries = tend::schedule::entries(&site)?;
    let token = token(cli)?;
    let now = clock()?;
    let stop = Arc::new(AtomicBool::new(false));
    let cancel = Arc::new(AtomicBool::new(false));
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
        .map_err(|e| Error::failed(format!("cannot watch for signals: {e}")))?;
    {
        let (stop, cancel) = (Arc::clone(&stop), Arc::clone(&cancel));
        std::thread::spawn(move || {
            for (count, signal) in signals.forever().enumerate() {
                let name = if signal == signal_hook::consts::SIGTERM { "SIGTERM" } else { "SIGINT" };
                match count {
                    0 => {
                        tracing::info!("schedule: {name}: stopping after the current run (a second signal cancels it)");
                        stop.store(true, Ordering::SeqCst);
                    }
                    1 => {
                        tracing::warn!("schedule: {name} again: cancelling the current run");
                        cancel.store(true, Ordering::SeqCst);
                    }
                    _ => std::process::exit(130),
                }
            }
        });
    }
    tracing::info!(
        "schedule: {} entr{} from {}",
        entries.len(),
        if entries.len() == 1 { "y" } else { "ies" },
        site.file.as_ref().map_or_else(String::new, |f| f.display().to_string())
    );
    let summary = tend::schedule::Scheduler::new(&entries, tend::schedule::SystemClock, &stop).run(|entry, _due| {
        // Read afresh for every run, as cron would: edits to tend.toml and the playbook apply
        // from the next run on (the schedule itself is read once, at start).
        let site = Site::discover(cli.site.as_deref())?;
        let playbook = Playbook::from_file(&entry.playbook)?;
        let options = RunOptions {
            token: token.clone(),
            dry_run: false,
            vars: entry.vars.clone(),
            cancel: Some(Arc::clone(&cancel)),
            now,
            progress: false,
        };
        Runtime::new(site).run(&playbook, options)
    });
    if cli.json {
        print_json(&serde_json::to_value(summary).unwrap_or_default());
    }
    Ok(0)
}

/// `tend schedule render --cron|--systemd`.
fn schedule_render(cli: &Cli, args: &RenderArgs) -> Result<i32, Error> {
    use tend::schedule::render;
    let site = Site::discover(cli.site.as_deref())?;
    let entries = tend::schedule::entries(&site)?;
    let site_file = site.file.clone().ok_or_else(|| Error::usage("rendering a schedule needs a site file"))?;
    let tend = std::env::current_exe().map_err(|e| Error::failed(format!("cannot find the tend binary: {e}")))?;
    let token_file = match &cli.token_file {
        Some(path) => {
            let path = std::path::absolute(path).unwrap_or_else(|_| path.clone());
            if !path.is_file() {
                return Err(Error::usage(format!("token file {} does not exist", path.display())));
            }
            Some(path)
        }
        None => None,
    };
    // A root that came from $TEND_HOME must reach the jobs too; cron and systemd start them
    // with an environment of their own.
    let mut env = Vec::new();
    if let Some(home) = std::env::var_os("TEND_HOME").filter(|v| !v.is_empty()) {
        let cwd = std::env::current_dir().unwrap_or_default();
        if tend::guard::jail::normalize(&cwd.join(home)) == site.root {
            env.push(("TEND_HOME".to_owned(), site.root.display().to_string()));
        }
    }
    let tokenless = token_file.is_none();
    let how = render::Invocation { tend, site: site_file, token_file, env, logs: Layout::new(&site.root).logs() };
    let text = if args.cron {
        let lines = render::crontab(&entries, &how)?;
        if cli.json { pretty(&json!({ "entries": lines })) } else { render::crontab_text(&lines) }
    } else {
        let units = render::systemd(&entries, &how)?;
        if cli.json { pretty(&json!({ "entries": units })) } else { render::systemd_text(&units) }
    };
    if tokenless {
        tracing::warn!(
            "no --token-file: the jobs run without a token, so primitives that need a scope (stage, swap, rollback, prune) will refuse"
        );
    }
    emit(&text);
    Ok(0)
}

/// One line per server: what runs, what the registry has, what the policy offers and why.
fn check_table(results: &serde_json::Value) -> String {
    let cell = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_owned();
    let mut out =
        format!("{:<22} {:<12} {:<12} {:<12} {:<11} {}\n", "SERVER", "CURRENT", "LATEST", "CANDIDATE", "KIND", "WHY");
    for r in results.as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<22} {:<12} {:<12} {:<12} {:<11} {}\n",
            cell(&r["name"]),
            cell(&r["current"]),
            cell(&r["latest"]),
            cell(&r["candidate"]),
            cell(&r["kind"]),
            r["reason"].as_str().unwrap_or(if r["update_available"] == true { "" } else { "up to date" })
        ));
    }
    out
}

/// `tend test`'s table: one line per suite with its figures (and limits), then what failed.
fn health_table(r: &serde_json::Value) -> String {
    let mut out = format!(
        "{} {} ({}): {} in {} ms\n  {}\n",
        text(&r["name"]),
        r["version"].as_str().unwrap_or("?"),
        text(&r["target"]),
        if r["passed"] == true { "passed" } else { "FAILED" },
        r["duration_ms"],
        text(&r["command"]),
    );
    out.push_str(&format!("{:<14} {:<8} {}\n", "SUITE", "RESULT", "FIGURES (LIMIT)"));
    for (suite, s) in r["suites"].as_object().into_iter().flatten() {
        let figures: Vec<String> = s["figures"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                let value = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                match s["limits"].get(k) {
                    Some(limit) => {
                        format!("{k} {value} ({})", limit.as_str().map_or_else(|| limit.to_string(), str::to_owned))
                    }
                    None => format!("{k} {value}"),
                }
            })
            .collect();
        let detail = match s["skipped"].as_str() {
            Some(why) => why.to_owned(),
            None => figures.join(", "),
        };
        out.push_str(&format!("{:<14} {:<8} {detail}\n", suite, text(&s["status"])));
    }
    for error in r["errors"].as_array().into_iter().flatten() {
        out.push_str(&format!("error: {}\n", text(error)));
    }
    for warning in r["warnings"].as_array().into_iter().flatten() {
        out.push_str(&format!("warning: {}\n", text(warning)));
    }
    if let Some(stderr) = r["stderr"].as_str() {
        out.push_str("stderr of the server (last lines):\n");
        for line in stderr.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev() {
            out.push_str(&format!("  | {line}\n"));
        }
    }
    out
}

fn execute(cli: Cli) -> Result<i32, Error> {
    match &cli.command {
        Command::Run(args) => {
            let site = Site::discover(cli.site.as_deref())?;
            let playbook = Playbook::from_file(&args.playbook)?;
            let cancel = Arc::new(AtomicBool::new(false));
            for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                // A second signal ends tend at once; the first stops the playbook cleanly.
                let _ = signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&cancel));
                let _ = signal_hook::flag::register(signal, Arc::clone(&cancel));
            }
            let options = RunOptions {
                token: token(&cli)?,
                dry_run: args.dry_run,
                vars: args.vars.iter().cloned().collect(),
                cancel: Some(Arc::clone(&cancel)),
                now: clock()?,
                progress: progress(&cli),
            };
            if let Some(max) = args.jitter {
                let wait = tend::schedule::jitter(max.as_duration())?;
                tracing::info!("waiting {} (jitter up to {max}) before the run", tend::duration::format(wait));
                if !tend::schedule::pause(wait, &cancel) {
                    return Err(Error::failed("interrupted before the run started"));
                }
            }
            let report = Runtime::new(site).run(&playbook, options)?;
            if let Some(error) = &report.error {
                eprintln!("error: {}", error.message);
            }
            if cli.json {
                print_json(&serde_json::to_value(&report).unwrap_or_default());
            } else {
                emit(&format!("{}\n", report.summary()));
            }
            Ok(report.exit_code())
        }
        Command::Check { names } => {
            let source = if names.is_empty() {
                "check_all()".to_owned()
            } else {
                let calls: Vec<String> = names.iter().map(|n| format!("check({})", quote(n))).collect();
                format!("[{}]", calls.join(", "))
            };
            let options = RunOptions { token: token(&cli)?, now: clock()?, ..RunOptions::default() };
            let result = match run_inline(&cli, "tend check", source, options)? {
                Ok(result) => result,
                Err(code) => return Ok(code),
            };
            emit(&if cli.json { pretty(&result) } else { check_table(&result) });
            Ok(0)
        }
        Command::Stage { name, version, dry_run } => {
            let source = match version {
                Some(v) => format!("stage({}, {})", quote(name), quote(v)),
                None => format!("stage({})", quote(name)),
            };
            let options = RunOptions {
                token: token(&cli)?,
                dry_run: *dry_run,
                now: clock()?,
                progress: progress(&cli),
                ..RunOptions::default()
            };
            let r = match run_inline(&cli, "tend stage", source, options)? {
                Ok(result) => result,
                Err(code) => return Ok(code),
            };
            let verb = if r["reused"] == true {
                "already staged"
            } else if *dry_run {
                "would stage"
            } else {
                "staged"
            };
            let line = format!("{} {} {verb}: {}\n", text(&r["name"]), text(&r["version"]), text(&r["path"]));
            emit(&if cli.json { pretty(&r) } else { line });
            Ok(0)
        }
        Command::Verify { name, version } => {
            let site = Site::discover(cli.site.as_deref())?;
            let r = tend::ops::stage::verify(&site, name, version.as_deref())?;
            let line = format!("{name} {} verifies: {}\n", text(&r["version"]), text(&r["digest"]));
            emit(&if cli.json { pretty(&r) } else { line });
            Ok(0)
        }
        Command::Test { name, release } => {
            let source = match release {
                Some(v) => format!("health({}, #{{release: {}}})", quote(name), quote(v)),
                None => format!("health({})", quote(name)),
            };
            let options = RunOptions { token: token(&cli)?, now: clock()?, ..RunOptions::default() };
            let r = match run_inline(&cli, "tend test", source, options)? {
                Ok(result) => result,
                Err(code) => return Ok(code),
            };
            emit(&if cli.json { pretty(&r) } else { health_table(&r) });
            Ok(if r["passed"] == true { 0 } else { 1 })
        }
        Command::Approve { name, version } => {
            let source = format!("approve({}, {})", quote(name), quote(version));
            let options = RunOptions { token: token(&cli)?, now: clock()?, ..RunOptions::default() };
            let r = match run_inline(&cli, "tend approve", source, options)? {
                Ok(result) => result,
                Err(code) => return Ok(code),
            };
            let line = format!("{name} {version}: tool surface {} approved\n", text(&r["fingerprint"]));
            emit(&if cli.json { pretty(&r) } else { line });
            Ok(0)
        }
        Command::Adopt { names, dry_run } => {
            let site = Site::discover(cli.site.as_deref())?;
            let names: Vec<String> = if names.is_empty() {
                site.servers()
                    .into_iter()
                    .filter(|e| e.command.as_deref().is_some_and(|c| tend::site::npx_invocation(c, &e.args).is_some()))
                    .map(|e| e.name)
                    .collect()
            } else {
                names.clone()
            };
            let calls: Vec<String> = names.iter().map(|n| format!("adopt({})", quote(n))).collect();
            let source = format!("[{}]", calls.join(", "));
            let options = RunOptions { token: token(&cli)?, dry_run: *dry_run, now: clock()?, ..RunOptions::default() };
            let r = match run_inline(&cli, "tend adopt", source, options)? {
                Ok(result) => result,
                Err(code) => return Ok(code),
            };
            let mut out = String::new();
            for a in r.as_array().into_iter().flatten() {
                let name = text(&a["name"]);
                if a["reason"] == "already adopted" {
                    out.push_str(&format!("{name}: already adopted ({})\n", a["version"].as_str().unwrap_or("?")));
                    continue;
                }
                if let Some(note) = a["note"].as_str() {
                    out.push_str(&format!("{name}: {note}\n"));
                }
                let verb = if *dry_run { "would adopt" } else { "adopted" };
                out.push_str(&format!(
                    "{name}: {verb} {}; {} now starts `{}`\n",
                    text(&a["version"]),
                    text(&a["client"]),
                    text(&a["command"])
                ));
                if *dry_run {
                    out.push_str(text(&a["diff"]));
                }
            }
            emit(&if cli.json { pretty(&r) } else { out });
            Ok(0)
        }
        Command::Swap { name, version, monitor } => {
            let (n, v) = (quote(name), quote(version));
            let source = if *monitor {
                format!(
                    "let s = swap({n}, {v});\nlet m = monitor({n});\nif m.passed {{ #{{swap: s, monitor: m, passed: true}} }} else {{\n  let r = rollback({n});\n  fail(`{name}: ${{s.to}} failed the monitor (${{m.failures}} failed probes); rolled back to ${{r.to}}`);\n  #{{swap: s, monitor: m, rollback: r, passed: false}}\n}}"
                )
            } else {
                format!("let s = swap({n}, {v}); #{{swap: s, passed: true}}")
            };
            let options = RunOptions { token: token(&cli)?, now: clock()?, ..RunOptions::default() };
            let r = match run_inline(&cli, "tend swap", source, options)? {
                Ok(result) => result,
                Err(code) => return Ok(code),
            };
            let s = &r["swap"];
            let mut out = if s["swapped"] == true {
                format!(
                    "{name}: {} -> {} live (switch {} µs; backup {})\n",
                    text(&s["from"]),
                    text(&s["to"]),
                    s["switch_us"],
                    text(&s["backup"])
                )
            } else {
                format!("{name}: {} is already live\n", text(&s["to"]))
            };
            if let Some(m) = r.get("monitor") {
                out.push_str(&format!(
                    "{name}: monitor {} ({} of {} probes failed)\n",
                    if m["passed"] == true { "passed" } else { "FAILED" },
                    m["failures"],
                    m["samples"].as_array().map_or(0, Vec::len)
                ));
            }
            if let Some(rb) = r.get("rollback") {
                out.push_str(&format!("{name}: rolled back to {}\n", text(&rb["to"])));
            }
            emit(&if cli.json { pretty(&r) } else { out });
            Ok(if r["passed"] == true { 0 } else { 1 })
        }
        Command::Rollback { name, to } => {
            let source = match to {
                Some(v) => format!("rollback({}, {})", quote(name), quote(v)),
                None => format!("rollback({})", quote(name)),
            };
            let options = RunOptions { token: token(&cli)?, now: clock()?, ..RunOptions::default() };
            let r = match run_inline(&cli, "tend rollback", source, options)? {
                Ok(result) => result,
                Err(code) => return Ok(code),
            };
            let line = if r["rolled_back"] == true {
                let restored = r["restored_from"].as_str().map(|b| format!(" (restored from {b})")).unwrap_or_default();
                format!("{name}: {} -> {} live{restored}\n", text(&r["from"]), text(&r["to"]))
            } else {
                format!("{name}: {} is already live\n", text(&r["to"]))
            };
            emit(&if cli.json { pretty(&r) } else { line });
            Ok(0)
        }
        Command::Status { offline } => {
            let site = Site::discover(cli.site.as_deref())?;
            let options = tend::ops::status::StatusOptions {
                offline: *offline,
                now: clock()?.unwrap_or_else(time::OffsetDateTime::now_utc),
            };
            let status = tend::ops::status::status(&site, &options);
            emit(&if cli.json {
                pretty(&serde_json::to_value(&status).unwrap_or_default())
            } else {
                tend::ops::status::table(&status, options.now)
            });
            Ok(0)
        }
        Command::Prune { dry_run } => {
            let token = token(&cli)?;
            // Without a token prune can only show its plan: that is the safe default.
            let options = RunOptions { dry_run: *dry_run || token.is_none(), token, ..RunOptions::default() };
            let raw = match run_inline(&cli, "tend prune", "prune()".to_owned(), options)? {
                Ok(result) => result,
                Err(code) => return Ok(code),
            };
            let result: tend::ops::prune::PruneReport =
                serde_json::from_value(raw.clone()).map_err(|e| Error::failed(format!("prune: {e}")))?;
            emit(&if cli.json { pretty(&raw) } else { result.table() });
            for error in &result.errors {
                eprintln!("error: {error}");
            }
            Ok(if result.errors.is_empty() { 0 } else { 1 })
        }
        Command::Lint { playbooks } => {
            let runtime = Runtime::new(Site::discover(cli.site.as_deref())?);
            let mut worst = 0;
            let mut results = Vec::new();
            for path in playbooks {
                let outcome = Playbook::from_file(path).and_then(|p| runtime.lint(&p));
                match &outcome {
                    Ok(()) if !cli.json => emit(&format!("{}: ok\n", path.display())),
                    Ok(()) => {}
                    Err(err) => {
                        eprintln!("error: {}", err.message());
                        if worst == 0 {
                            worst = err.exit_code();
                        }
                    }
                }
                results.push(json!({ "playbook": path, "ok": outcome.is_ok(), "error": outcome.err().map(|e| e.message().to_owned()) }));
            }
            if cli.json {
                print_json(&json!(results));
            }
            Ok(worst)
        }
        Command::Schedule(ScheduleCommand::Run) => schedule_run(&cli),
        Command::Schedule(ScheduleCommand::Render(args)) => schedule_render(&cli, args),
        Command::Api { format } => {
            let runtime = Runtime::new(Site::defaults(std::env::current_dir().unwrap_or_default())?);
            match (format, cli.json) {
                (ApiFormat::Json, _) | (_, true) => print_json(&runtime.primitives().to_json()),
                (ApiFormat::Markdown, false) => emit(&runtime.primitives().to_markdown()),
            }
            Ok(0)
        }
        Command::Audit(command) => {
            let site = Site::discover(cli.site.as_deref())?;
            let layout = Layout::new(&site.root);
            match command {
                AuditCommand::Verify => match audit::verify(&layout) {
                    Ok(records) => {
                        if cli.json {
                            print_json(&json!({ "intact": true, "records": records, "path": layout.audit_log() }));
                        } else {
                            emit(&format!("audit log intact: {records} records in {}\n", layout.audit_log().display()));
                        }
                        Ok(0)
                    }
                    Err(err) if cli.json => {
                        eprintln!("error: {}", err.message());
                        print_json(&json!({ "intact": false, "error": err.message(), "path": layout.audit_log() }));
                        Ok(err.exit_code())
                    }
                    Err(err) => Err(err),
                },
                AuditCommand::Tail { count } => {
                    let lines = audit::tail(&layout, *count)?;
                    if cli.json {
                        let records: Vec<serde_json::Value> =
                            lines.iter().filter_map(|l| serde_json::from_str(l).ok()).collect();
                        print_json(&json!(records));
                    } else {
                        emit(&lines.iter().map(|l| format!("{l}\n")).collect::<String>());
                    }
                    Ok(0)
                }
            }
        }
        Command::Token(TokenCommand::New { name, scopes }) => {
            let scopes = scopes.iter().map(|s| Scope::parse(s.trim())).collect::<Result<_, _>>()?;
            let token = Token::generate()?;
            let entry = TokenEntry { name: name.clone(), sha256: TokenDigest::of(&token), scopes };
            if cli.json {
                print_json(
                    &json!({ "name": entry.name, "token": token.reveal(), "sha256": entry.sha256, "scopes": entry.scopes, "toml": entry.toml_line() }),
                );
            } else {
                emit(&format!("{}\n", token.reveal()));
                eprintln!("keep the token above secret; add this entry to [auth] tokens in tend.toml:");
                eprintln!("{}", entry.toml_line());
            }
            Ok(0)
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "tend", &mut script);
            emit(&String::from_utf8_lossy(&script));
            Ok(0)
        }
    }
}
