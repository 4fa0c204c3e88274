//! The daemon: a poll loop (source → planner → ledger) and a dispatch loop
//! (ledger → channels), plus reloads, the admin endpoint and systemd
//! notifications; all stopped by one shutdown token. Each loop reads the
//! clock once per turn and passes `now` down.

mod poll;
mod repeat;
mod replan;
mod signals;
mod stage;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

pub use poll::{
    CHUNK, PollRejected, PollSchedule, PollSummary, ProblemLog, poll_and_plan, poll_in_chunks,
    series_of,
};
pub use replan::{ReplanSummary, replan};
pub use signals::{reload_on_sighup, shutdown_on_signals};

use crate::clock::Clock;
use crate::config::Settings;
use crate::dispatch::Dispatcher;
use crate::http::{AdminState, ReloadRequest};
use crate::setup::{self, Config};
use crate::source::Source;
use crate::store::Store;

/// The dispatcher sleeps until the next notice is due; it looks again at
/// least this often, for what others write into the ledger (`interim
/// retry`, another instance's plans, a crashed instance's leases).
const DISPATCH_SAFETY_TICK: Duration = Duration::from_secs(1);

/// How soon the dispatcher looks again at notices that are due but could
/// not be claimed (a stale snapshot, a ledger problem).
const DISPATCH_RETRY: Duration = Duration::from_millis(500);

/// Runs the daemon until `shutdown` fires; then lets in-flight sends finish
/// within `daemon.shutdown_timeout` and returns. Binds `http.listen` itself.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listen = config.settings.http.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("failed to listen on http.listen {listen}"))?;
    run_with_listener(config, Some(listener), shutdown).await
}

/// The daemon with an already bound admin listener, or none (the demo).
pub async fn run_with_listener(
    config: Config,
    listener: Option<tokio::net::TcpListener>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_with_clock(config, listener, shutdown, crate::clock::system()).await
}

/// The daemon on a given clock.
pub async fn run_with_clock(
    config: Config,
    listener: Option<tokio::net::TcpListener>,
    shutdown: CancellationToken,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<()> {
    let settings = config.settings.clone();
    let store = Store::open(&settings.store.url).await?;
    if let Some(moved) = store.moved_to().await? {
        anyhow::bail!(
            "the ledger of store {} was {moved} (`interim store copy`): set store.url to that store; a daemon here would send notices the other ledger sends too",
            settings.store.url
        );
    }
    let _lock = store.lock_for_daemon()?;
    let released = store.release_all_claims().await?;
    if released > 0 {
        info!(released, "took back unfinished claims of the previous run");
    }
    let channels = crate::channels::build(&settings).context("failed to set up channels")?;
    let instance = format!("{}-{}", hostname(), std::process::id());
    let dispatcher = Dispatcher::new(
        config.clone(),
        store.clone(),
        channels,
        instance,
        clock.clone(),
    )?;
    let poll_now = Arc::new(Notify::new());
    let dispatch_now = Arc::new(Notify::new());
    // PostgreSQL: another instance's plans wake this dispatcher too. The
    // handle aborts the task when dropped, also on an early error below.
    let plan_listener = store.listen_for_plans(dispatch_now.clone(), shutdown.clone());
    let metrics = crate::telemetry::install();
    if let Some(handle) = metrics.clone() {
        tokio::spawn(crate::telemetry::run_upkeep(handle));
    }
    crate::telemetry::register(&settings);
    count_notices(&store).await;
    let (reload_tx, mut reload_rx) = mpsc::channel::<ReloadRequest>(4);

    let admin = listener.map(|listener| {
        let state = AdminState::new(
            store.clone(),
            dispatcher.clone(),
            metrics.clone(),
            reload_tx.clone(),
        );
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::http::serve(listener, state, stop).await {
                error!(error = %e, "admin endpoint failed");
            }
        })
    });
    reload_on_sighup(reload_tx.clone());
    info!(
        config = %config.path.display(),
        store = %settings.store.url,
        source = %settings.source.url,
        http = %settings.http.listen,
        policies = settings.policies.len(),
        dry_run = settings.daemon.dry_run,
        "interim started"
    );
    // What check-config warns about (cleartext credentials among it), once.
    for warning in &settings.warnings {
        warn!(config = %config.path.display(), "{warning}");
    }

    // The config may have changed while the daemon was stopped: what is
    // pending follows it before anything is sent.
    replan_logged(&store, &settings, clock.now()).await;
    // The first poll runs before any dispatch, so a restart acts on fresh
    // data and never warns about a snapshot it has not tried to take.
    let mut poller = Poller::new(store.clone(), dispatcher.clone())?;
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => {}
        _ = poller.tick(clock.now()) => {}
    }
    crate::systemd::ready();

    let poll_loop = {
        let (dispatcher, poll_now, dispatch_now, shutdown, clock) = (
            dispatcher.clone(),
            poll_now.clone(),
            dispatch_now.clone(),
            shutdown.clone(),
            clock.clone(),
        );
        tokio::spawn(async move {
            let mut started = tokio::time::Instant::now();
            loop {
                let interval = dispatcher.live().config.settings.daemon.poll_interval;
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break,
                    _ = poll_now.notified() => {}
                    _ = tokio::time::sleep_until(started + interval) => {}
                }
                started = tokio::time::Instant::now();
                // Polls never overlap: the next one starts after this one.
                // A stop does not wait for a slow poll: dropping it midway
                // is safe, nothing of an unfinished poll is applied.
                let polled = tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break,
                    ok = poller.tick(clock.now()) => ok,
                };
                if polled {
                    dispatch_now.notify_one();
                }
            }
            poller.close().await;
        })
    };

    let mut watchdog = crate::systemd::Watchdog::from_env();
    let mut counted = std::time::Instant::now();
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        if let Err(e) = dispatcher.dispatch_due(clock.now()).await {
            error!(error = format!("{e:#}"), "dispatch failed; retrying");
        }
        // After each dispatch round (one follows every poll), at most once
        // a second: a cheap count on the status index.
        if counted.elapsed() >= Duration::from_secs(1) {
            count_notices(&store).await;
            counted = std::time::Instant::now();
        }
        watchdog.feed();
        let sleep = dispatcher
            .sleep_after_round(clock.now(), DISPATCH_RETRY, DISPATCH_SAFETY_TICK)
            .await;
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = dispatch_now.notified() => {}
            _ = dispatcher.slot_freed.notified() => {}
            Some(answer) = reload_rx.recv() => {
                let outcome = reload(&config.path, &dispatcher);
                if outcome.is_ok() {
                    let settings = dispatcher.live().config.settings.clone();
                    replan_logged(&store, &settings, clock.now()).await;
                    poll_now.notify_one();
                }
                let _ = answer.send(outcome);
            }
            _ = tokio::time::sleep(sleep) => {}
        }
    }

    crate::systemd::stopping();
    info!(
        in_flight = dispatcher.tracker().len(),
        "shutting down: no new claims; waiting for sends in flight"
    );
    let _ = poll_loop.await;
    // It may be waiting for an unreachable database: not worth a wait.
    drop(plan_listener);
    dispatcher.tracker().close();
    let timeout = dispatcher.live().config.settings.daemon.shutdown_timeout;
    if tokio::time::timeout(timeout, dispatcher.tracker().wait())
        .await
        .is_err()
    {
        warn!(
            unfinished = dispatcher.tracker().len(),
            "shutdown_timeout reached; unfinished sends stay claimed and are taken back at the next start"
        );
    }
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    store.close().await;
    info!("interim stopped");
    Ok(())
}

/// The poll side of the daemon: the source (rebuilt after a reload), the
/// full/incremental schedule and the log of bad rows.
pub struct Poller {
    store: Store,
    dispatcher: Arc<Dispatcher>,
    source: Source,
    /// The settings the source was built from: a reload brings new ones.
    built_from: Arc<Settings>,
    schedule: PollSchedule,
    problems: ProblemLog,
    failures: repeat::RepeatLog,
    chunk: usize,
}

impl Poller {
    pub fn new(store: Store, dispatcher: Arc<Dispatcher>) -> anyhow::Result<Self> {
        let settings = dispatcher.live().config.settings.clone();
        Ok(Self {
            source: Source::new(&settings.source)?,
            built_from: settings,
            store,
            dispatcher,
            schedule: PollSchedule::default(),
            problems: ProblemLog::default(),
            failures: repeat::RepeatLog::default(),
            chunk: CHUNK,
        })
    }

    /// Rows per chunk (tests and simulations use small chunks).
    pub fn with_chunk(mut self, chunk: usize) -> Self {
        self.chunk = chunk.max(1);
        self
    }

    /// One poll at `now`, if this instance is the poller, with its outcome
    /// logged; true when it polled successfully.
    pub async fn tick(&mut self, now: chrono::DateTime<chrono::Utc>) -> bool {
        let settings = self.dispatcher.live().config.settings.clone();
        // Any reload rebuilds the source (cheap: it connects lazily), so no
        // source key can be missed by a comparison.
        if !Arc::ptr_eq(&self.built_from, &settings) {
            self.built_from = settings.clone();
            match Source::new(&settings.source) {
                Ok(new) => {
                    self.source.close().await;
                    self.source = new;
                }
                Err(e) => error!(
                    error = format!("{e:#}"),
                    "cannot use the reloaded source; polling the previous one"
                ),
            }
        }
        let leading = self.store.lead_polling().await;
        metrics::gauge!("interim_poller").set(if leading { 1.0 } else { 0.0 });
        if !leading {
            return false;
        }
        let outcome = match self
            .schedule
            .next_kind(&self.source, &self.store, &settings, now)
            .await
        {
            Ok(kind) => poll_in_chunks(
                &self.source,
                &self.store,
                &settings,
                now,
                kind,
                &mut self.problems,
                self.chunk,
            )
            .await
            .map(|s| (kind, s)),
            Err(e) => Err(e),
        };
        match outcome {
            Ok((kind, summary)) => {
                self.schedule.done(kind, now);
                self.dispatcher.note_poll(now);
                if let Some(failures) = self.failures.recovered() {
                    info!(failures, "poll succeeded again");
                }
                debug!(?summary, "poll done");
                true
            }
            Err(e) => {
                metrics::counter!("interim_source_poll_failures_total").increment(1);
                let rejected = e.downcast_ref::<PollRejected>().map(|r| r.0.clone());
                let message = match &rejected {
                    Some(reason) => format!("poll rejected: {reason}"),
                    None => format!("{e:#}"),
                };
                let every = settings.daemon.repeat_log_every;
                match (self.failures.failed(&message, now, every), &rejected) {
                    (repeat::Repeat::First, Some(reason)) => error!(
                        reason = %reason,
                        "poll rejected; keeping the previous plan, nothing is cancelled"
                    ),
                    (repeat::Repeat::First, None) => error!(
                        error = %message,
                        "poll failed; keeping the previous plan and retrying next interval"
                    ),
                    (repeat::Repeat::Remind { count, since }, _) => warn!(
                        error = %message,
                        failures = count,
                        since = %since.to_rfc3339(),
                        "poll still failing; keeping the previous plan"
                    ),
                    (repeat::Repeat::Quiet, _) => {
                        debug!(error = %message, "poll failed again")
                    }
                }
                self.dispatcher.set_poll_problem(rejected);
                false
            }
        }
    }

    pub async fn close(self) {
        self.source.close().await;
    }
}

/// `interim_notices{status="pending"|"dead"}` from the ledger.
async fn count_notices(store: &Store) {
    match store.count_pending_dead().await {
        Ok((pending, dead)) => crate::telemetry::set_notice_counts(pending, dead),
        Err(e) => debug!(
            error = format!("{e:#}"),
            "cannot count pending and dead notices for the metrics"
        ),
    }
}

async fn replan_logged(store: &Store, settings: &Settings, now: chrono::DateTime<chrono::Utc>) {
    match replan(store, settings, now).await {
        Ok(summary) if summary.changed() => info!(
            moved = summary.moved,
            cancelled = summary.cancelled,
            "pending notices follow the config"
        ),
        Ok(_) => {}
        Err(e) => error!(
            error = format!("{e:#}"),
            "cannot re-plan the pending notices; the next polls do"
        ),
    }
}

/// Re-reads config and templates, validates them fully and swaps them in;
/// an invalid new config is rejected and the old one keeps running.
fn reload(path: &std::path::Path, dispatcher: &Dispatcher) -> Result<(), String> {
    crate::systemd::reloading();
    let outcome = try_reload(path, dispatcher);
    crate::systemd::reloaded();
    match &outcome {
        Ok(()) => {
            metrics::counter!("interim_config_reloads_total", "result" => "success").increment(1);
            metrics::gauge!("interim_config_last_reload_successful").set(1.0);
            crate::telemetry::register(&dispatcher.live().config.settings);
            info!(config = %path.display(), "config reloaded");
        }
        Err(reason) => {
            metrics::counter!("interim_config_reloads_total", "result" => "failure").increment(1);
            metrics::gauge!("interim_config_last_reload_successful").set(0.0);
            error!(config = %path.display(), reason = %reason, "reload rejected; the previous config keeps running");
        }
    }
    outcome
}

fn try_reload(path: &std::path::Path, dispatcher: &Dispatcher) -> Result<(), String> {
    let new = setup::load(path).map_err(|e| e.lines.join("; "))?;
    let old = dispatcher.live().config.settings.clone();
    if new.settings.store.url.expose() != old.store.url.expose() {
        return Err(
            "store.url: cannot change while running; restart the daemon to move the store".into(),
        );
    }
    let (was, now) = (&old.http, &new.settings.http);
    if now.listen != was.listen
        || now.max_connections != was.max_connections
        || now.header_timeout != was.header_timeout
        || now.idle_timeout != was.idle_timeout
    {
        warn!("[http] changed: takes effect at the next restart (the admin token at once)");
    }
    let channels = crate::channels::build(&new.settings).map_err(|e| format!("channels: {e:#}"))?;
    let added: Vec<String> = new
        .settings
        .warnings
        .iter()
        .filter(|w| !old.warnings.contains(w))
        .cloned()
        .collect();
    dispatcher
        .replace(new, channels)
        .map_err(|e| format!("{e:#}"))?;
    for warning in added {
        warn!(config = %path.display(), "{warning}");
    }
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "interim".into())
}
