//! The daemon: a poll loop (source → planner → ledger) and a dispatch loop
//! (ledger → channels), plus reloads, the admin endpoint and systemd
//! notifications; all stopped by one shutdown token. Each loop reads the
//! clock once per turn and passes `now` down.

mod memo;
mod poll;
mod poller;
mod reload;
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

use reload::{reload, replan_logged};

pub use memo::PlanMemo;
pub use poll::{
    CHUNK, PollRejected, PollSchedule, PollSummary, ProblemLog, poll_and_plan, poll_in_chunks,
    series_of,
};
pub use poller::Poller;
pub use replan::{ReplanSummary, replan};
pub use signals::{reload_on_sighup, shutdown_on_signals};

use crate::clock::Clock;
use crate::dispatch::Dispatcher;
use crate::http::{AdminState, ReloadRequest};
use crate::setup::Config;
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

/// The daemon on a given clock: start, a first poll, then the poll loop
/// and the dispatch loop until `shutdown`, then the sends in flight.
pub async fn run_with_clock(
    config: Config,
    listener: Option<tokio::net::TcpListener>,
    shutdown: CancellationToken,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<()> {
    let (daemon, reloads) = Daemon::start(config, listener, &shutdown, clock).await?;
    // The first poll runs before any dispatch, so a restart acts on fresh
    // data and never warns about a snapshot it has not tried to take.
    let mut poller = Poller::new(daemon.store.clone(), daemon.dispatcher.clone())?;
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => {}
        _ = poller.tick(daemon.clock.now()) => {}
    }
    crate::systemd::ready();
    let polling = tokio::spawn(poll_loop(
        poller,
        daemon.dispatcher.clone(),
        daemon.wakes.clone(),
        shutdown.clone(),
        daemon.clock.clone(),
    ));
    daemon.dispatch_loop(reloads, &shutdown).await;
    daemon.stop(polling).await;
    Ok(())
}

/// What wakes a loop before its time: a poll asked for (a reload), a
/// dispatch round asked for (a poll's or another instance's plans).
#[derive(Clone, Default)]
struct Wakes {
    poll_now: Arc<Notify>,
    dispatch_now: Arc<Notify>,
}

/// A started daemon: its store (locked for it), dispatcher, and the tasks
/// beside the loops.
struct Daemon {
    config_path: std::path::PathBuf,
    store: Store,
    _lock: crate::store::DaemonLock,
    dispatcher: Arc<Dispatcher<Store>>,
    clock: Arc<dyn Clock>,
    wakes: Wakes,
    /// Aborts when dropped (PostgreSQL's LISTEN for other instances' plans).
    plan_listener: Option<tokio_util::task::AbortOnDropHandle<()>>,
    admin: Option<tokio::task::JoinHandle<()>>,
}

impl Daemon {
    /// Opens and locks the store, takes back the previous run's claims,
    /// builds the channels and the dispatcher, starts the admin endpoint
    /// and the signal handlers, and lets pending notices follow the config.
    async fn start(
        config: Config,
        listener: Option<tokio::net::TcpListener>,
        shutdown: &CancellationToken,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<(Daemon, mpsc::Receiver<ReloadRequest>)> {
        let settings = config.settings.clone();
        let store = Store::open(&settings.store.url).await?;
        if let Some(moved) = store.moved_to().await? {
            anyhow::bail!(
                "the ledger of store {} was {moved} (`interim store copy`): set store.url to that store; a daemon here would send notices the other ledger sends too",
                settings.store.url
            );
        }
        let lock = store.lock_for_daemon()?;
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
        let wakes = Wakes::default();
        // PostgreSQL: another instance's plans wake this dispatcher too.
        let plan_listener = store.listen_for_plans(wakes.dispatch_now.clone(), shutdown.clone());
        let metrics = crate::telemetry::install();
        if let Some(handle) = metrics.clone() {
            tokio::spawn(crate::telemetry::run_upkeep(handle));
        }
        crate::telemetry::register(&settings);
        count_notices(&store).await;
        let (reload_tx, reload_rx) = mpsc::channel::<ReloadRequest>(4);
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
        reload_on_sighup(reload_tx);
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
        let daemon = Daemon {
            config_path: config.path.clone(),
            store,
            _lock: lock,
            dispatcher,
            clock,
            wakes,
            plan_listener,
            admin,
        };
        Ok((daemon, reload_rx))
    }

    /// Claims and sends due notices, then sleeps until the next is due, a
    /// poll or another instance brings new plans, a slot frees up or a
    /// reload comes; until `shutdown`.
    async fn dispatch_loop(
        &self,
        mut reloads: mpsc::Receiver<ReloadRequest>,
        shutdown: &CancellationToken,
    ) {
        let (dispatcher, clock) = (&self.dispatcher, &self.clock);
        let mut watchdog = crate::systemd::Watchdog::from_env();
        let mut counted = std::time::Instant::now();
        while !shutdown.is_cancelled() {
            if let Err(e) = dispatcher.dispatch_due(clock.now()).await {
                error!(error = format!("{e:#}"), "dispatch failed; retrying");
            }
            // After each dispatch round (one follows every poll), at most
            // once a second: a cheap count on the status index.
            if counted.elapsed() >= Duration::from_secs(1) {
                count_notices(&self.store).await;
                counted = std::time::Instant::now();
            }
            watchdog.feed();
            let sleep = dispatcher
                .sleep_after_round(clock.now(), DISPATCH_RETRY, DISPATCH_SAFETY_TICK)
                .await;
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = self.wakes.dispatch_now.notified() => {}
                _ = dispatcher.slot_freed.notified() => {}
                Some(answer) = reloads.recv() => {
                    let outcome = reload(&self.config_path, dispatcher);
                    if outcome.is_ok() {
                        let settings = dispatcher.live().config.settings.clone();
                        replan_logged(&self.store, &settings, clock.now()).await;
                        self.wakes.poll_now.notify_one();
                    }
                    let _ = answer.send(outcome);
                }
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// No new claims; the poll loop ends, the sends in flight get
    /// `daemon.shutdown_timeout`, then the admin endpoint and the store close.
    async fn stop(self, polling: tokio::task::JoinHandle<()>) {
        let dispatcher = &self.dispatcher;
        crate::systemd::stopping();
        info!(
            in_flight = dispatcher.tracker().len(),
            "shutting down: no new claims; waiting for sends in flight"
        );
        let _ = polling.await;
        // It may be waiting for an unreachable database: not worth a wait.
        drop(self.plan_listener);
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
        if let Some(admin) = self.admin {
            let _ = admin.await;
        }
        self.store.close().await;
        info!("interim stopped");
    }
}

/// Polls every `poll_interval` (or at once when asked), never two at a
/// time, and wakes the dispatcher after each successful poll.
async fn poll_loop(
    mut poller: Poller,
    dispatcher: Arc<Dispatcher<Store>>,
    wakes: Wakes,
    shutdown: CancellationToken,
    clock: Arc<dyn Clock>,
) {
    let mut started = tokio::time::Instant::now();
    loop {
        let interval = dispatcher.live().config.settings.daemon.poll_interval;
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = wakes.poll_now.notified() => {}
            _ = tokio::time::sleep_until(started + interval) => {}
        }
        started = tokio::time::Instant::now();
        // A stop does not wait for a slow poll: dropping it midway is
        // safe, nothing of an unfinished poll is applied.
        let polled = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            ok = poller.tick(clock.now()) => ok,
        };
        if polled {
            wakes.dispatch_now.notify_one();
        }
    }
    poller.close().await;
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

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "interim".into())
}
