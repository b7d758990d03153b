//! The command-line grammar (clap) and the dispatch of each subcommand.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{beside, Config, LOCAL_DIR};
use crate::engine::{DimKind, MetricsQuery};
use crate::history::dates::DateArg;
use crate::history::period::PeriodKind;
use crate::history::report::ReportQuery;

/// Exit code for an invalid configuration (sysexits `EX_CONFIG`), so systemd and scripts can tell it apart.
pub const EXIT_CONFIG: u8 = 78;

#[derive(Debug, Parser)]
#[command(
    name = "callmetrics",
    version,
    about = "Call-center metrics agent: durable call-event intake, rolling AHT and service-level metrics",
    long_about = "callmetrics takes call lifecycle events (start, answer, hold, resume, end, wrapup, and callback for a promised callback) on a local \
socket, keeps them durably, and computes rolling AHT and service-level metrics per queue, agent and channel.\n\n\
The same binary is the daemon (`callmetrics run`) and its client (status, metrics, calls, send).\n\
Clients find the daemon's sockets from --socket, else from --config, else ./callmetrics-data/ when it exists \
(the local default of `callmetrics run`), else /run/callmetrics/.\n\n\
The daemon answers on two control sockets. The control socket (control.sock, mode 0660, group callmetrics) \
serves the read-only queries: status, metrics, calls, outbox. The admin socket (admin.sock, mode 0600, \
owned by the daemon's user) also takes flush and reload, which change what the daemon does; so the PBX user \
and operators in the callmetrics group can send events and query, and only root or the daemon's user can \
reconfigure it. flush and reload go to --admin-socket, else to the config's control.admin_socket (with \
--config), else to admin.sock beside --socket, else beside the default control socket."
)]
pub struct Cli {
    /// Admin socket, where flush and reload go (default: the one the --config file names, else
    /// admin.sock beside the control socket); it admits root and the daemon's user. Accepted by
    /// every subcommand (for aliases), used by flush and reload only
    #[arg(long, global = true, value_name = "PATH")]
    pub admin_socket: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground (without --config: state and sockets in ./callmetrics-data)
    Run {
        /// Config file (TOML); see config/agent.toml for every key and its default
        #[arg(long, short = 'c', value_name = "FILE")]
        config: Option<PathBuf>,
        /// Log level (error, warn, info, debug, trace), or levels by module
        /// (`warn,callmetrics::store=debug`); overrides `RUST_LOG` and the config
        #[arg(long, value_name = "LEVEL")]
        log_level: Option<String>,
    },
    /// Check a config file without starting; prints the first error with its key and line
    CheckConfig {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Show daemon health: version, uptime, events accepted and refused, open calls, store size, limits
    Status {
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Show metrics per queue (default), agent, channel or overall for one window
    Metrics {
        #[command(flatten)]
        target: Target,
        /// Only this queue
        #[arg(long, short = 'q', value_name = "QUEUE")]
        queue: Option<String>,
        /// Window: a configured trailing window (default 5m, 15m, 1h, 24h) or `today`
        #[arg(long, short = 'w', value_name = "WINDOW")]
        window: Option<String>,
        /// Dimension of the rows
        #[arg(long, value_enum, default_value_t = By::Queue)]
        by: By,
        /// Print JSON rows with every counter and figure (times in ms, ratios 0..1)
        #[arg(long)]
        json: bool,
        /// Print the JSON's columns as CSV for spreadsheets (each band and service-level formula
        /// a column of its own; null is an empty field)
        #[arg(long, conflicts_with = "json")]
        csv: bool,
    },
    /// Show a live wallboard in the terminal: one row per queue with SL against target, waiting
    /// now, longest wait, ASA, abandon %, AHT, talking and in ACW now, refreshed every second
    #[command(
        long_about = "Show a live wallboard in the terminal: one row per queue (or agent, or channel) with \
its service level against target (green at or above, red below), waiting now, longest wait now, ASA, \
abandon %, AHT, talking now and in ACW now, asked from the control socket every second. Keys: 1-9 pick \
a window (the daemon's trailing windows, then today), w and W cycle the windows, d and D cycle the \
dimension (queue, agent, channel), Up, Down, PgUp, PgDn, Home and End scroll, r asks at once, q, Esc or \
Ctrl-C quit. When the daemon stops answering the screen says so and keeps asking every second until it \
is back. Needs a terminal (plain escape codes, works over SSH); with standard output not a terminal it \
exits 1 and points at `metrics --json`."
    )]
    Watch {
        #[command(flatten)]
        target: Target,
    },
    /// List open segments (waiting, talking, on hold, in after-call work) with their ages and,
    /// while waiting, their deadline and the time left on their wait clock
    Calls {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        json: bool,
        /// `age` (oldest first) or `deadline` (least time left first, overdue at the top)
        #[arg(long, value_enum, default_value_t = super::query::CallsSort::Age)]
        sort: super::query::CallsSort,
    },
    /// Send JSON-lines events from FILE (or stdin) to the event socket; prints one reply per line,
    /// exits 1 if any event was refused
    Send {
        /// File of JSON lines; `-` or nothing reads stdin
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
        /// Event socket (default: from --config, else ./callmetrics-data/events.sock, else /run/callmetrics/events.sock)
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
        #[arg(long, short = 'c', value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Import PBX logs (plain or .gz) through the daemon's event socket, in the order given; a
    /// file imported before (see docs/sources.md) is not counted twice. Exits 1 if any event was refused
    Import {
        /// The log format
        #[arg(long, value_enum)]
        format: ImportFormat,
        /// Source name, the prefix of the call ids (`NAME:uniqueid`)
        #[arg(long, value_name = "NAME", default_value = "asterisk")]
        source: String,
        /// What WITHDRAW ends a segment as
        #[arg(long, value_enum, default_value_t = Withdraw::Exit)]
        withdraw: Withdraw,
        /// The ledger of imported files (default: imports.ledger beside the store with --config,
        /// else beside the event socket)
        #[arg(long, value_name = "PATH")]
        ledger: Option<PathBuf>,
        /// Event socket (default: from --config, else ./callmetrics-data/events.sock, else /run/callmetrics/events.sock)
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
        #[arg(long, short = 'c', value_name = "FILE")]
        config: Option<PathBuf>,
        #[arg(value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
    },
    /// List the interval records waiting to be shipped upstream, and the sinks they wait for
    Outbox {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        json: bool,
    },
    /// Checkpoint the daemon's state and ship every interval that has ended, now (on the admin
    /// socket: as root or the daemon's user)
    Flush {
        #[command(flatten)]
        target: Target,
    },
    /// Make the daemon re-read its config file (thresholds, formulas, windows, limits) (on the
    /// admin socket: as root or the daemon's user)
    Reload {
        #[command(flatten)]
        target: Target,
    },
    /// Write the man page and bash, zsh and fish completions into DIR (for packagers)
    Generate {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Show each [[sla]] objective this period: value so far, target, status (met, at risk,
    /// missed, no data), what the rest of the period must do, calls outside service hours,
    /// agents needed now, and the final figures of past periods
    Sla {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        json: bool,
    },
    /// List the open callback requests, the earliest deadline first (call, queue, requested,
    /// deadline, time left or overdue by), and each callback objective's tally this period
    Callbacks {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        json: bool,
    },
    /// Print every counter and figure per hour, day, week or month from the history kept on disk
    #[command(
        long_about = "Print every counter and figure of `metrics` per hour, day, ISO week (from \
Monday) or month, per queue (or agent, channel, all), from the interval history the daemon keeps on disk \
(see docs/history.md). Dates are in the daemon's time zone (general.time_zone): YYYY-MM-DD, today, \
yesterday, or -Nd for N days before today; --to is included, so `--from today --to today` is today and \
`--from -6d` is the last seven days. Periods are cut to the range (a week from a Wednesday starts on \
that Wednesday) and follow the zone's clock: a day of a DST change has 23 or 25 hours, and the repeated \
hour of an autumn change is two rows. Only closed intervals are in the history (an interval closes \
upstream.close_after after it ends, or at `callmetrics flush`): periods after the last one closed are \
left out, and the heading (JSON: complete_until) says up to when the report is complete. Late calls \
into a closed interval are added to it when they arrive. --by hour and --hours business read the \
interval aggregates, kept for history.intervals_days; days, weeks and months over all hours read the \
daily ones, kept for history.daily_days; older dates are refused with the oldest kept. --hours business \
counts the intervals that start within the service hours (weekly hours and holidays) of an [[sla]] \
objective, named by --calendar (optional when there is only one). --by-dimension tag prints one row per \
period per value of each tag name listed in the config's history.tag_dimensions (keys like tier=gold, \
from the tags of each call's start event; calls without the tag are in no tag row), or of the one name \
--tag chooses; it needs that setting, and counts from when it was set."
    )]
    Report {
        #[command(flatten)]
        target: Target,
        /// First date: YYYY-MM-DD in the daemon's zone, today, yesterday, or -Nd (N days before today)
        #[arg(
            long,
            value_name = "DATE",
            default_value = "today",
            allow_hyphen_values = true
        )]
        from: DateArg,
        /// Last date, included (`--from today --to today` is today); the same forms as --from
        #[arg(
            long,
            value_name = "DATE",
            default_value = "today",
            allow_hyphen_values = true
        )]
        to: DateArg,
        /// Period of the rows
        #[arg(long, value_enum, default_value_t = PeriodArg::Day)]
        by: PeriodArg,
        /// Only this queue
        #[arg(long, short = 'q', value_name = "QUEUE")]
        queue: Option<String>,
        // The help as an attribute: a doc comment would want the setting in backticks.
        #[arg(
            long = "by-dimension",
            value_enum,
            default_value_t = ReportBy::Queue,
            help = "Dimension of the rows within each period (tag: per value of the tags named by history.tag_dimensions, which it needs)"
        )]
        by_dimension: ReportBy,
        /// All hours, or only intervals starting in the service hours of --calendar
        #[arg(long, value_enum, default_value_t = HoursArg::All)]
        hours: HoursArg,
        /// The [[sla]] objective whose service hours and holidays are the business hours
        #[arg(long, value_name = "NAME")]
        calendar: Option<String>,
        #[arg(
            long,
            value_name = "NAME",
            help = "With --by-dimension tag: only this tag name of history.tag_dimensions (all of them without it)"
        )]
        tag: Option<String>,
        /// Print JSON: the range, `complete_until`, and rows with every counter and figure
        #[arg(long)]
        json: bool,
        /// Print the rows' JSON columns as CSV for spreadsheets (as `metrics --csv`)
        #[arg(long, conflicts_with = "json")]
        csv: bool,
    },
    /// List open breach alerts (firing, with their level, since when, value and line; then
    /// pending ones) and the last resolved ones; rules are `[[alerts]]` in the config
    #[command(
        long_about = "List open breach alerts and the last resolved ones. An open alert is firing \
(its level, its severity, since when it fired, since when it is at this level) or pending (breached, \
for less than the rule's `for`); each shows the figure watched, its last value and the line. The \
rules are `[[alerts]]` in the config, evaluated every `alerting.evaluate_every`; notifications go to \
the `[[alerting.receivers]]` (Alertmanager, webhook), whose deliveries `status` counts as sinks \
named `alerts:<receiver>`. See docs/alerts.md."
    )]
    Alerts {
        #[command(flatten)]
        target: Target,
        /// Print JSON: {"open": [...], "resolved": [...]}, times in epoch ms, values in their unit
        #[arg(long)]
        json: bool,
    },
}

/// The period of `report` rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PeriodArg {
    Hour,
    Day,
    Week,
    Month,
}

/// Which hours `report` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HoursArg {
    All,
    Business,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportFormat {
    /// Asterisk `app_queue`'s `queue_log`
    AsteriskQueueLog,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Withdraw {
    Exit,
    Callback,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum By {
    Queue,
    Agent,
    Channel,
    All,
}

impl From<By> for DimKind {
    fn from(b: By) -> DimKind {
        match b {
            By::Queue => DimKind::Queue,
            By::Agent => DimKind::Agent,
            By::Channel => DimKind::Channel,
            By::All => DimKind::All,
        }
    }
}

/// The dimension of `report` rows: those of `metrics`, and tags (kept in the history only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportBy {
    Queue,
    Agent,
    Channel,
    All,
    #[value(help = "Per value of the tags named by history.tag_dimensions (needs that setting)")]
    Tag,
}

impl From<ReportBy> for DimKind {
    fn from(b: ReportBy) -> DimKind {
        match b {
            ReportBy::Queue => DimKind::Queue,
            ReportBy::Agent => DimKind::Agent,
            ReportBy::Channel => DimKind::Channel,
            ReportBy::All => DimKind::All,
            ReportBy::Tag => DimKind::Tag,
        }
    }
}

/// Which daemon a client talks to.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// Control socket of the daemon
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Read the control socket path from this config file
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Finds a socket: the explicit path, else the config's, else the local default folder's when it
/// exists, else the system default.
fn resolve_socket(
    explicit: Option<&PathBuf>,
    config: Option<&PathBuf>,
    pick: impl Fn(&Config) -> PathBuf,
) -> Result<PathBuf, ExitCode> {
    if let Some(p) = explicit {
        return Ok(p.clone());
    }
    if let Some(path) = config {
        return match Config::load(path) {
            Ok(cfg) => Ok(pick(&cfg)),
            Err(e) => {
                eprintln!("error: {e}");
                Err(ExitCode::from(EXIT_CONFIG))
            }
        };
    }
    let local = pick(&Config::local(Path::new(LOCAL_DIR)));
    if local.exists() {
        return Ok(local);
    }
    Ok(pick(&Config::default()))
}

/// `name` in the folder holding `path`.
fn beside_named(path: &Path, name: &str) -> PathBuf {
    path.parent().unwrap_or(Path::new(".")).join(name)
}

fn control_socket(t: &Target) -> Result<PathBuf, ExitCode> {
    resolve_socket(t.socket.as_ref(), t.config.as_ref(), |c| {
        c.control.socket.clone()
    })
}

/// The admin socket for `flush` and `reload`: `--admin-socket`, else the config's (with
/// `--config`), else beside `--socket`, else beside the control socket found as
/// [`control_socket`] finds it without `--socket`.
fn admin_socket(explicit: Option<&PathBuf>, t: &Target) -> Result<PathBuf, ExitCode> {
    if explicit.is_none() && t.config.is_none() {
        if let Some(control) = &t.socket {
            return Ok(beside(control));
        }
    }
    resolve_socket(explicit, t.config.as_ref(), |c| {
        c.control.admin_socket_path()
    })
}

fn init_logging(level: Option<&str>, config_level: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let env = std::env::var("RUST_LOG").ok();
    let (filter, refused) = super::log_filter::choose(level, env.as_deref(), config_level);
    // On stderr rather than through the log: the filter chosen may hide a warning.
    for warning in refused {
        eprintln!("warning: {warning}");
    }
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(!under_journald && std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // journald stamps every line itself.
    if under_journald {
        builder.without_time().finish().with(filter).init();
    } else {
        builder.finish().with(filter).init();
    }
}

/// Runs the parsed command line and returns the process exit code.
#[must_use]
pub fn main_with(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Run { config, log_level } => run_daemon(config, log_level),
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Generate { out } => match generate(&out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: cannot write into {}: {e}", out.display());
                ExitCode::FAILURE
            }
        },
        other => client(other, cli.admin_socket),
    }
}

/// Writes `callmetrics.1` and the completions generated from this very grammar.
fn generate(out: &Path) -> std::io::Result<()> {
    use clap::CommandFactory;
    use clap_complete::Shell;
    std::fs::create_dir_all(out)?;
    let cmd = Cli::command();
    let mut man = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut man)?;
    std::fs::write(out.join("callmetrics.1"), man)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd.clone(), "callmetrics", out)?;
    }
    Ok(())
}

fn run_daemon(config: Option<PathBuf>, log_level: Option<String>) -> ExitCode {
    let (cfg, path) = match &config {
        Some(p) => match Config::load(p) {
            Ok(c) => (c, Some(p.clone())),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        None => (Config::local(Path::new(LOCAL_DIR)), None),
    };
    init_logging(log_level.as_deref(), &cfg.general.log_level);
    if path.is_none() {
        tracing::info!(
            "no --config given: running on the local default, state and sockets in ./{LOCAL_DIR}/"
        );
    }
    // Taken before any thread starts: reading them clears the LISTEN_* variables.
    let activated = match crate::systemd::activated_sockets() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("cannot take the sockets passed by systemd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2);
    let Some(rt) = runtime(builder) else {
        return ExitCode::FAILURE;
    };
    match rt.block_on(crate::daemon::run(cfg, path, activated)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Builds the async runtime, or says why it cannot.
fn runtime(mut builder: tokio::runtime::Builder) -> Option<tokio::runtime::Runtime> {
    match builder.enable_all().build() {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            None
        }
    }
}

fn client(cmd: Command, admin: Option<PathBuf>) -> ExitCode {
    let Some(rt) = runtime(tokio::runtime::Builder::new_current_thread()) else {
        return ExitCode::FAILURE;
    };
    let result = rt.block_on(async {
        use super::{query, send};
        match cmd {
            Command::Status { target, json } => match control_socket(&target) {
                Ok(s) => query::status(&s, json).await,
                Err(code) => Ok(code),
            },
            Command::Metrics {
                target,
                queue,
                window,
                by,
                json,
                csv,
            } => match control_socket(&target) {
                Ok(s) => {
                    let query = MetricsQuery {
                        window,
                        by: by.into(),
                        key: queue,
                    };
                    let format = match (json, csv) {
                        (true, _) => query::MetricsFormat::Json,
                        (_, true) => query::MetricsFormat::Csv,
                        _ => query::MetricsFormat::Table,
                    };
                    query::metrics(&s, query, format).await
                }
                Err(code) => Ok(code),
            },
            Command::Watch { target } => match control_socket(&target) {
                Ok(s) => super::watch::watch(&s).await,
                Err(code) => Ok(code),
            },
            Command::Calls { target, json, sort } => match control_socket(&target) {
                Ok(s) => query::calls(&s, json, sort).await,
                Err(code) => Ok(code),
            },
            Command::Outbox { target, json } => match control_socket(&target) {
                Ok(s) => query::outbox(&s, json).await,
                Err(code) => Ok(code),
            },
            Command::Alerts { target, json } => match control_socket(&target) {
                Ok(s) => query::alerts(&s, json).await,
                Err(code) => Ok(code),
            },
            Command::Flush { target } => match admin_socket(admin.as_ref(), &target) {
                Ok(s) => query::flush(&s).await,
                Err(code) => Ok(code),
            },
            Command::Reload { target } => match admin_socket(admin.as_ref(), &target) {
                Ok(s) => query::reload(&s).await,
                Err(code) => Ok(code),
            },
            Command::Sla { target, json } => match control_socket(&target) {
                Ok(s) => query::sla(&s, json).await,
                Err(code) => Ok(code),
            },
            Command::Callbacks { target, json } => match control_socket(&target) {
                Ok(s) => query::callbacks(&s, json).await,
                Err(code) => Ok(code),
            },
            Command::Send {
                file,
                socket,
                config,
            } => match resolve_socket(socket.as_ref(), config.as_ref(), |c| {
                c.ingest.socket.clone()
            }) {
                Ok(s) => send::send(&s, file.as_deref()).await,
                Err(code) => Ok(code),
            },
            Command::Import {
                format: ImportFormat::AsteriskQueueLog,
                source,
                withdraw,
                ledger,
                socket,
                config,
                files,
            } => match resolve_socket(socket.as_ref(), config.as_ref(), |c| {
                c.ingest.socket.clone()
            }) {
                Ok(s) => {
                    let ledger = match (ledger, &config) {
                        (Some(l), _) => l,
                        (None, Some(_)) => resolve_socket(None, config.as_ref(), |c| {
                            beside_named(&c.store.path, "imports.ledger")
                        })
                        .unwrap_or_else(|_| beside_named(&s, "imports.ledger")),
                        (None, None) => beside_named(&s, "imports.ledger"),
                    };
                    let options = crate::sources::asterisk::Options {
                        source,
                        withdraw: match withdraw {
                            Withdraw::Exit => crate::sources::asterisk::WithdrawAs::Exit,
                            Withdraw::Callback => crate::sources::asterisk::WithdrawAs::Callback,
                        },
                    };
                    let job = super::import::ImportJob {
                        event_socket: &s,
                        ledger: &ledger,
                        files: &files,
                        options,
                    };
                    super::import::import(job).await
                }
                Err(code) => Ok(code),
            },
            Command::Report {
                target,
                from,
                to,
                by,
                queue,
                by_dimension,
                hours,
                calendar,
                tag,
                json,
                csv,
            } => match control_socket(&target) {
                Ok(s) => {
                    let query = ReportQuery {
                        from,
                        to,
                        by: match by {
                            PeriodArg::Hour => PeriodKind::Hour,
                            PeriodArg::Day => PeriodKind::Day,
                            PeriodArg::Week => PeriodKind::Week,
                            PeriodArg::Month => PeriodKind::Month,
                        },
                        queue,
                        dimension: by_dimension.into(),
                        business_hours: hours == HoursArg::Business,
                        calendar,
                        tag,
                    };
                    let format = match (json, csv) {
                        (true, _) => query::MetricsFormat::Json,
                        (_, true) => query::MetricsFormat::Csv,
                        _ => query::MetricsFormat::Table,
                    };
                    query::report(&s, query, format).await
                }
                Err(code) => Ok(code),
            },
            Command::Run { .. } | Command::CheckConfig { .. } | Command::Generate { .. } => {
                Ok(ExitCode::FAILURE)
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    fn admin_of(args: &[&str]) -> PathBuf {
        let cli = Cli::parse_from(args);
        let (Command::Flush { target } | Command::Reload { target }) = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        admin_socket(cli.admin_socket.as_ref(), &target).unwrap()
    }

    #[test]
    fn flush_and_reload_find_the_admin_socket() {
        // Given, before or after the subcommand.
        assert_eq!(
            admin_of(&["callmetrics", "flush", "--admin-socket", "/x/a.sock"]),
            Path::new("/x/a.sock")
        );
        assert_eq!(
            admin_of(&["callmetrics", "--admin-socket", "/x/a.sock", "reload"]),
            Path::new("/x/a.sock")
        );
        // Beside the control socket given.
        assert_eq!(
            admin_of(&["callmetrics", "flush", "--socket", "/srv/cm/control.sock"]),
            Path::new("/srv/cm/admin.sock")
        );
        // From the config file, even beside a --socket.
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("agent.toml");
        std::fs::write(
            &config,
            "[control]\nsocket = \"/srv/cm/c.sock\"\nadmin_socket = \"/srv/root/a.sock\"\n",
        )
        .unwrap();
        let config = config.display().to_string();
        for args in [
            vec!["callmetrics", "reload", "--config", &config],
            vec![
                "callmetrics",
                "reload",
                "--config",
                &config,
                "--socket",
                "/elsewhere/c.sock",
            ],
        ] {
            assert_eq!(admin_of(&args), Path::new("/srv/root/a.sock"), "{args:?}");
        }
        std::fs::write(
            dir.path().join("agent.toml"),
            "[control]\nsocket = \"/srv/cm/c.sock\"\n",
        )
        .unwrap();
        assert_eq!(
            admin_of(&["callmetrics", "reload", "--config", &config]),
            Path::new("/srv/cm/admin.sock")
        );
    }

    #[test]
    fn metrics_flags_parse() {
        let cli = Cli::parse_from([
            "callmetrics",
            "metrics",
            "--by",
            "agent",
            "--window",
            "today",
            "--json",
        ]);
        match cli.command {
            Command::Metrics {
                by, window, json, ..
            } => {
                assert_eq!(by, By::Agent);
                assert_eq!(window.as_deref(), Some("today"));
                assert!(json);
            }
            other => panic!("parsed as {other:?}"),
        }
        let both = Cli::try_parse_from(["callmetrics", "metrics", "--json", "--csv"])
            .unwrap_err()
            .to_string();
        assert!(both.contains("--csv") && both.contains("--json"), "{both}");
    }
}
