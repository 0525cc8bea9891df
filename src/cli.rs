//! The command line: flags and subcommands. Each doc comment is the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tend::duration::HumanDuration;

/// Keeps a host's MCP servers current, tested and tidy.
#[derive(Debug, Parser)]
#[command(name = "tend", version, about, max_term_width = 100)]
pub struct Cli {
    /// The site file (default: ./tend.toml, then $TEND_SITE; with none, built-in defaults).
    #[arg(long, global = true, value_name = "FILE")]
    pub site: Option<PathBuf>,

    /// Read the token from this file (default: $TEND_TOKEN).
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Print one JSON document on stdout and nothing else there.
    #[arg(long, global = true)]
    pub json: bool,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// More log output (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Only warnings and errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a playbook.
    Run(RunArgs),
    /// Compile playbooks and the modules they import, running nothing.
    Lint {
        /// The playbooks to check.
        #[arg(required = true)]
        playbooks: Vec<PathBuf>,
    },
    /// Check the registry for newer versions under the site's policy (read-only).
    Check {
        /// The servers to check (default: every server with an npm package).
        names: Vec<String>,
    },
    /// Stage a release: download, verify, extract, install dependencies (default version: the check's candidate).
    Stage {
        /// The server.
        name: String,
        /// The version (default: the check's candidate).
        version: Option<String>,
        /// Show what would be done, changing nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Recompute a release's tree digest; exit 1 naming the first file that differs.
    Verify {
        /// The server.
        name: String,
        /// The version (default: the current release).
        version: Option<String>,
    },
    /// Run the health suites against the live server or an installed release; exit 1 when one fails.
    Test {
        /// The server.
        name: String,
        /// Test this installed release instead of the live server.
        #[arg(long, value_name = "VERSION")]
        release: Option<String>,
    },
    /// Accept a changed tool surface for exactly this release (needs the deploy scope).
    Approve {
        /// The server.
        name: String,
        /// The installed release whose tool surface to accept.
        version: String,
    },
    /// Take servers over from the client configs: stage the pinned version, make it current, rewrite the entry.
    Adopt {
        /// The servers (default: every npx server not yet adopted).
        names: Vec<String>,
        /// Show the client config diff, changing nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Switch a server to a staged release (backup, atomic switch, check of the live server).
    Swap {
        /// The server.
        name: String,
        /// The staged release to put live.
        version: String,
        /// Then watch it ([monitor]) and roll back by itself if it fails.
        #[arg(long)]
        monitor: bool,
    },
    /// Switch a server back to its previous release (or any installed or backed-up one).
    Rollback {
        /// The server.
        name: String,
        /// The release to go back to (default: previous).
        #[arg(long, value_name = "VERSION")]
        to: Option<String>,
    },
    /// One line per server: current version, candidate and why, last health, last run, releases and their processes.
    Status {
        /// Skip the update check: no registry request, no candidate.
        #[arg(long)]
        offline: bool,
    },
    /// Remove what retention no longer keeps; without a token, only show it.
    Prune {
        /// Show what would be removed, removing nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Run the site's [[schedule]] entries in the foreground, or print cron or systemd jobs for them.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Print the primitive reference, generated from the registrations.
    Api {
        /// Output format.
        #[arg(long, value_enum, default_value_t = ApiFormat::Markdown)]
        format: ApiFormat,
    },
    /// Check or show the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Manage tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The playbook (.rhai) to run.
    pub playbook: PathBuf,
    /// Show the effects the playbook would apply, applying none.
    #[arg(long)]
    pub dry_run: bool,
    /// A value for the playbook's `vars` map (integers and true/false are converted).
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Wait a random time from 0 up to this (such as 10m) before taking the site lock, so that
    /// hosts started by the same cron line do not all reach the registry at once.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub jitter: Option<HumanDuration>,
}

fn parse_duration(text: &str) -> Result<HumanDuration, String> {
    tend::duration::parse(text).map(HumanDuration)
}

fn parse_var(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, found `{text}`")),
    }
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Run each entry at its times, one at a time, in the foreground (for systemd or a
    /// container). Runs missed while another was going run once afterwards; SIGTERM or Ctrl-C
    /// stops after the current run, a second signal cancels it.
    Run,
    /// Print jobs that run the entries through `tend run`, with absolute paths.
    Render(RenderArgs),
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct RenderArgs {
    /// One crontab line per entry; output is appended to <root>/logs/schedule-NAME.log.
    #[arg(long)]
    pub cron: bool,
    /// A tend-NAME.service and tend-NAME.timer per entry (Persistent=true, RandomizedDelaySec= from the jitter).
    #[arg(long)]
    pub systemd: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ApiFormat {
    Json,
    Markdown,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain; exit 1 naming the first bad line.
    Verify,
    /// Print the newest records.
    Tail {
        /// How many records.
        #[arg(short = 'n', default_value_t = 10)]
        count: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a fresh random token and the line that grants it in tend.toml.
    New {
        /// The token's name, as the audit log records it.
        #[arg(long)]
        name: String,
        /// Comma-separated scopes: stage, deploy, rollback, prune.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
    },
}
