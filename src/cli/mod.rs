//! The command line: parses arguments, loads the config, calls the library.
//! Exit codes: 0 success, 1 runtime failure, 2 invalid configuration or usage.
//! A reader that goes away (`interim plan | head -1`) ends a command
//! quietly with 0; a closed stderr loses only the messages.

mod demo;
mod promise_report;
mod report;

use std::io::{ErrorKind, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use crate::config::{self, ConfigError, LogFormat};
use crate::notice::Status;
use crate::secret::SecretUrl;
use crate::setup::{self, Config};
use crate::store::{NoticeFilter, Store};

/// The crate version, with the git commit when built from a checkout (build.rs).
pub const VERSION: &str = env!("INTERIM_VERSION");

#[derive(Parser)]
#[command(
    name = "interim",
    version = VERSION,
    about = "Keeps waiting customers informed: interim notices for tickets that wait too long"
)]
struct Cli {
    /// Config file [default: $INTERIM_CONFIG, else config/interim.toml]
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon
    Run,
    /// Validate config, templates, cron expressions and calendars
    CheckConfig,
    /// Poll once and show the notices that would go out; sends nothing
    Plan {
        /// Evaluate as if now were this instant (RFC 3339)
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        /// Also show notices due up to this long after --at (e.g. 3d)
        #[arg(long, value_name = "DURATION")]
        horizon: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Render the notice a ticket would get, as it would go out
    Preview {
        /// The ticket's id or number (id:VALUE for the id only)
        #[arg(long, value_name = "ID")]
        ticket: String,
        #[arg(long, value_name = "NAME")]
        policy: Option<String>,
    },
    /// Show the ledger; with --ticket, that ticket's waits and each
    /// notice's promise
    Notices {
        #[arg(long, value_name = "STATUS")]
        status: Option<String>,
        /// The ticket's id or number (id:VALUE for the id only): in a table,
        /// its story wait by wait
        #[arg(long, value_name = "ID")]
        ticket: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Waits and promises for the service lead: how long customers waited, how many promises were kept
    Report {
        /// Start of the period: a duration back from now (30d) or a date
        /// (2026-11-01, RFC 3339)
        #[arg(long, value_name = "30d|DATE", default_value = "30d")]
        since: String,
        /// End of the period (a date or RFC 3339); default now
        #[arg(long, value_name = "DATE")]
        until: Option<String>,
        /// queue, policy, priority, origin, language, week or month
        #[arg(long, value_name = "FIELD", default_value = "queue")]
        by: String,
        /// Candidate promises: the share of waits that ended within each
        /// (e.g. 4h,8h,1d,2d,5d; business time where a calendar applies)
        #[arg(long, value_name = "LIST")]
        promise: Option<String>,
        #[arg(long, value_enum, default_value_t = promise_report::ReportFormat::Table)]
        format: promise_report::ReportFormat,
    },
    /// Put dead notices back to pending
    Retry {
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
    /// Check the connection to the helpdesk
    Sources {
        #[command(subcommand)]
        action: SourcesAction,
    },
    /// Recipients that never get a notice
    Suppress {
        #[command(subcommand)]
        action: SuppressAction,
    },
    /// Apply store migrations
    Migrate,
    /// Move the ledger: copy it into another store
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
    /// Exit 0 when the daemon's /healthz on http.listen answers 200, else 1 (the Dockerfile's HEALTHCHECK)
    Healthcheck,
    /// A self-contained demo: sample helpdesk, accelerated thresholds, notices into a folder
    Demo {
        /// How long the demo daemon runs, in seconds
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Where the demo puts its helpdesk, ledger and outbox
        #[arg(long, default_value = "var/demo")]
        dir: PathBuf,
    },
    /// Print the shell completion script for bash, zsh, fish, elvish or powershell
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page interim(1) as roff
    Man {
        /// Write a page for interim and each of its commands into this folder instead
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum SourcesAction {
    /// Poll the source once: how many tickets, the first few as `plan` sees them, every skipped row and why
    Test {
        /// How many mapped tickets to show
        #[arg(long, default_value_t = 5)]
        rows: usize,
    },
}

#[derive(Subcommand)]
enum SuppressAction {
    /// Suppress an address or a whole @domain
    Add {
        #[arg(value_name = "ADDRESS|@DOMAIN")]
        address: String,
        #[arg(long, default_value = "added by an operator")]
        reason: String,
    },
    /// Lift a suppression added with `add` or by a permanent rejection
    Remove {
        #[arg(value_name = "ADDRESS|@DOMAIN")]
        address: String,
    },
    /// Every suppression: config, file, store
    List {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(Subcommand)]
enum StoreAction {
    /// Copy the whole ledger into an empty store (SQLite or PostgreSQL); stop the daemon first
    ///
    /// Every table, row and instant as it is, in one transaction on the
    /// target (migrated first); claimed notices are pending again in the
    /// copy. Then set store.url to the target and start the daemon: no
    /// sent notice goes out again, and the next ones come on time.
    Copy {
        /// The target: sqlite://PATH (relative to the working directory) or postgres://…
        #[arg(
            long,
            value_name = "URL",
            required_unless_present = "to_env",
            conflicts_with = "to_env"
        )]
        to: Option<String>,
        /// The target's URL from this environment variable, so that a
        /// password in it stays out of the process list and shell history
        #[arg(long, value_name = "VAR")]
        to_env: Option<String>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// A failure with its exit code.
enum Failure {
    Usage(String),
    Config(ConfigError),
    Runtime(anyhow::Error),
    /// Stdout's reader went away: it has what it wanted.
    StdoutClosed,
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Runtime(e)
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::Config(e)
    }
}

pub fn main() -> ExitCode {
    crate::private_files::restrict_umask();
    let cli = Cli::parse();
    let quiet = !matches!(cli.command, Command::Run | Command::Demo { .. });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            complain(format_args!("failed to start the async runtime: {e}"));
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli, quiet)) {
        Ok(()) | Err(Failure::StdoutClosed) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            complain(format_args!("{message}"));
            ExitCode::from(2)
        }
        Err(Failure::Config(e)) => {
            complain(format_args!("{e}"));
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            complain(format_args!("{e:#}"));
            ExitCode::from(1)
        }
    }
}

/// `error: …` on stderr; `eprintln!` would panic when stderr is closed.
fn complain(message: std::fmt::Arguments) {
    let _ = writeln!(std::io::stderr(), "error: {message}");
}

/// Writes a command's result to stdout; `println!` would panic when the
/// reader went away.
fn emit(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Err(Failure::StdoutClosed),
        Err(e) => Err(Failure::Runtime(
            anyhow::Error::new(e).context("failed to write to stdout"),
        )),
    }
}

fn load(cli_config: Option<&std::path::Path>, quiet: bool) -> Result<Config, Failure> {
    let path = config::resolve_path(cli_config);
    let loaded = setup::load(&path);
    let format = loaded
        .as_ref()
        .map(|c| c.settings.daemon.log_format)
        .unwrap_or(LogFormat::Auto);
    if quiet && std::env::var_os("INTERIM_LOG").is_none() {
        // One-shot commands print results on stdout; only problems on stderr.
        crate::logging::init_with_default(format, "warn");
    } else {
        crate::logging::init(format);
    }
    Ok(loaded?)
}

async fn dispatch(cli: Cli, quiet: bool) -> Result<(), Failure> {
    let config_flag = cli.config.as_deref();
    match cli.command {
        Command::Run => {
            let config = load(config_flag, quiet)?;
            let shutdown = crate::daemon::shutdown_on_signals();
            crate::daemon::run(config, shutdown).await?;
        }
        Command::CheckConfig => {
            let config = load(config_flag, quiet)?;
            emit(&crate::setup::summary(&config))?;
        }
        Command::Plan {
            at,
            horizon,
            format,
        } => {
            let config = load(config_flag, quiet)?;
            let at = match at {
                Some(text) => parse_instant(&text).map_err(Failure::Usage)?,
                None => Utc::now(),
            };
            let horizon = match horizon {
                Some(text) => config::parse_duration(&text)
                    .map_err(|e| Failure::Usage(format!("--horizon: {e}")))?,
                None => std::time::Duration::ZERO,
            };
            let rows = report::plan_rows(&config, at, horizon).await?;
            emit(&report::plan_text(&rows, format))?;
        }
        Command::Preview { ticket, policy } => {
            let config = load(config_flag, quiet)?;
            let text = report::preview(&config, &ticket, policy.as_deref())
                .await
                .map_err(|e| match e {
                    report::PreviewError::NotFound(m) => Failure::Usage(m),
                    report::PreviewError::Other(e) => Failure::Runtime(e),
                })?;
            emit(&text)?;
        }
        Command::Notices {
            status,
            ticket,
            format,
        } => {
            let config = load(config_flag, quiet)?;
            let status = match status {
                Some(s) => Some(Status::parse(&s).ok_or_else(|| {
                    Failure::Usage(format!(
                        "--status: \"{s}\" is not one of {}",
                        Status::ALL
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?),
                None => None,
            };
            let store = Store::open(&config.settings.store.url).await?;
            let ticket = match ticket {
                Some(t) => Some(store.resolve_ticket(&t).await?.map_err(Failure::Usage)?),
                None => None,
            };
            let rows = store
                .list(&NoticeFilter {
                    status,
                    ticket: ticket.clone(),
                })
                .await?;
            match (&ticket, format) {
                // One ticket in a table: its story, wait by wait.
                (Some(id), Format::Table) => {
                    let waits = store
                        .waits_of_ticket(id, config.settings.daemon.dry_run)
                        .await?;
                    emit(&report::ticket_timeline_text(&waits, &rows))?;
                }
                _ => emit(&report::notices_text(&rows, format))?,
            }
        }
        Command::Report {
            since,
            until,
            by,
            promise,
            format,
        } => {
            let config = load(config_flag, quiet)?;
            let now = Utc::now();
            let request = crate::promise_report::parse_request(
                &since,
                until.as_deref(),
                &by,
                promise.as_deref(),
                now,
            )
            .map_err(Failure::Usage)?;
            let store = Store::open(&config.settings.store.url).await?;
            let report =
                crate::promise_report::read(&config.settings, &store, &request, now).await?;
            emit(&promise_report::report_text(&report, format)?)?;
        }
        Command::Retry { ids } => {
            let config = load(config_flag, quiet)?;
            let store = Store::open(&config.settings.store.url).await?;
            let refused = store.retry(&ids, Utc::now()).await?;
            let retried = ids.len().saturating_sub(refused.len());
            let printed = emit(&format!(
                "{retried} notice(s) put back to pending as the next notice of their series\n"
            ));
            if !refused.is_empty() {
                let lines: Vec<String> = refused
                    .iter()
                    .map(|(id, reason)| format!("  {id}: {reason}"))
                    .collect();
                return Err(Failure::Runtime(anyhow::anyhow!(
                    "left as they are:\n{}",
                    lines.join("\n")
                )));
            }
            printed?;
        }
        Command::Sources {
            action: SourcesAction::Test { rows },
        } => {
            let config = load(config_flag, quiet)?;
            let test = report::sources_test(&config, rows).await?;
            let printed = emit(&test.report);
            if let Some(reason) = test.rejected {
                return Err(Failure::Runtime(anyhow::anyhow!(
                    "the source's rows break the contract: {reason}"
                )));
            }
            printed?;
        }
        Command::Suppress { action } => {
            let config = load(config_flag, quiet)?;
            let store = Store::open(&config.settings.store.url).await?;
            match action {
                SuppressAction::Add { address, reason } => {
                    let entry = crate::suppress::Entry::parse(&address).map_err(Failure::Usage)?;
                    store
                        .suppress(&entry.key(), &reason, "cli", Utc::now())
                        .await?;
                    emit(&format!("{} suppressed: {reason}\n", entry.key()))?;
                }
                SuppressAction::Remove { address } => {
                    let entry = crate::suppress::Entry::parse(&address).map_err(Failure::Usage)?;
                    if !store.unsuppress(&entry.key()).await? {
                        return Err(Failure::Runtime(anyhow::anyhow!(
                            "{} has no stored suppression (entries from the config or the suppression file are removed there)",
                            entry.key()
                        )));
                    }
                    emit(&format!("{} no longer suppressed\n", entry.key()))?;
                }
                SuppressAction::List { format } => {
                    let rows = report::suppression_rows(&config, &store).await?;
                    emit(&report::suppressions_text(&rows, format))?;
                }
            }
            store.close().await;
        }
        Command::Migrate => {
            let config = load(config_flag, quiet)?;
            let store = Store::open(&config.settings.store.url)
                .await
                .context("migration failed")?;
            let migrated = store.migrated();
            let mut text = String::new();
            for (version, description) in &migrated.applied {
                text.push_str(&format!("applied migration {version:04} {description}\n"));
            }
            text.push_str(&format!(
                "store {} is migrated ({} migrations, {} applied now)\n",
                config.settings.store.url,
                migrated.total,
                migrated.applied.len()
            ));
            emit(&text)?;
            store.close().await;
        }
        Command::Store {
            action: StoreAction::Copy { to, to_env },
        } => {
            let config = load(config_flag, quiet)?;
            let to = match (to, to_env) {
                (Some(to), _) => to,
                (None, Some(var)) => std::env::var(&var).map_err(|_| {
                    Failure::Usage(format!(
                        "--to-env {var}: the environment variable is not set"
                    ))
                })?,
                (None, None) => {
                    return Err(Failure::Usage(
                        "--to URL or --to-env VAR is required".into(),
                    ));
                }
            };
            let to = SecretUrl::new(to);
            if !["sqlite:", "postgres:", "postgresql:"]
                .iter()
                .any(|scheme| to.expose().starts_with(scheme))
            {
                return Err(Failure::Usage(format!(
                    "--to {to}: use sqlite://PATH or postgres://…"
                )));
            }
            // Opening would create a missing file: a mistyped store.url
            // would copy an empty ledger, and a daemon moved onto it would
            // send every due notice again.
            if let Some(path) = Store::sqlite_file(&config.settings.store.url)?
                && !path.exists()
            {
                return Err(Failure::Usage(format!(
                    "store.url {}: {} does not exist: nothing to copy (is it the daemon's store?)",
                    config.settings.store.url,
                    path.display()
                )));
            }
            let store = Store::open(&config.settings.store.url).await?;
            let copied = store.copy_to(&to, chrono::Utc::now()).await;
            store.close().await;
            emit(&copied?.summary())?;
        }
        Command::Healthcheck => {
            let config = load(config_flag, quiet)?;
            crate::http::probe_health(config.settings.http.listen).await?;
        }
        Command::Demo { seconds, dir } => {
            crate::logging::init_with_default(LogFormat::Text, "warn");
            demo::run(&dir, std::time::Duration::from_secs(seconds)).await?;
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "interim", &mut script);
            emit(&String::from_utf8_lossy(&script))?;
        }
        Command::Man { dir: None } => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command().disable_help_subcommand(true))
                .render(&mut page)
                .context("failed to render the man page")?;
            emit(&String::from_utf8_lossy(&page))?;
        }
        Command::Man { dir: Some(dir) } => {
            std::fs::create_dir_all(&dir)
                .and_then(|()| clap_mangen::generate_to(Cli::command(), &dir))
                .with_context(|| format!("failed to write man pages into {}", dir.display()))?;
        }
    }
    Ok(())
}

fn parse_instant(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            format!("--at: \"{text}\" is not an RFC 3339 time like 2026-12-07T09:00:00+01:00")
        })
}
