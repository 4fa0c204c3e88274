//! The daemon: a poll loop (source → planner → ledger) and a dispatch loop
//! (ledger → channels), both stopped by one shutdown token.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::{Config, Settings};
use crate::dispatch::Dispatcher;
use crate::planner;
use crate::source::Source;
use crate::store::Store;

/// How often the dispatcher looks for due notices when nothing wakes it.
const DISPATCH_TICK: Duration = Duration::from_millis(500);

/// What one poll did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PollSummary {
    pub tickets: usize,
    pub skipped_rows: usize,
    pub planned: usize,
    pub cancelled: usize,
}

/// Remembers which bad rows were already logged, so a broken row is one
/// log line, not one per poll (the metric still counts every poll).
#[derive(Default)]
pub struct ProblemLog {
    seen: HashSet<String>,
}

impl ProblemLog {
    fn report(&mut self, problems: impl Iterator<Item = String>, what: &str) {
        let current: HashSet<String> = problems.collect();
        for problem in current.difference(&self.seen) {
            warn!(problem = %problem, "{what}");
        }
        self.seen = current;
    }
}

/// Polls the source once and applies the plan to the ledger.
pub async fn poll_and_plan(
    source: &Source,
    store: &Store,
    settings: &Settings,
    now: DateTime<Utc>,
    problems: &mut ProblemLog,
) -> anyhow::Result<PollSummary> {
    let snapshot = source.poll(now).await?;
    let series = store.load_series(settings.daemon.dry_run).await?;
    let plan = planner::plan(
        settings,
        &snapshot.tickets,
        &series,
        settings.daemon.dry_run,
    );
    store
        .apply_plan(&plan, settings.daemon.dry_run, now)
        .await?;

    let skipped = snapshot.skipped.len() + plan.skipped.len();
    metrics::counter!("interim_source_rows_skipped_total").increment(skipped as u64);
    metrics::gauge!("interim_tickets_tracked").set(snapshot.tickets.len() as f64);
    metrics::gauge!("interim_source_last_success_timestamp_seconds").set(now.timestamp() as f64);
    problems.report(
        snapshot
            .skipped
            .iter()
            .map(|e| e.to_string())
            .chain(
                plan.skipped
                    .iter()
                    .map(|(policy, e)| format!("{e} (policy {policy})")),
            )
            .chain(snapshot.warnings.iter().map(|e| e.to_string())),
        "row skipped or corrected: it breaks the column contract",
    );
    Ok(PollSummary {
        tickets: snapshot.tickets.len(),
        skipped_rows: skipped,
        planned: plan.upserts.len(),
        cancelled: plan.cancels.len(),
    })
}

/// Runs the daemon until `shutdown` fires; then lets in-flight sends finish
/// within `daemon.shutdown_timeout` and returns.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let settings = config.settings.clone();
    let store = Store::open(&settings.store.url).await?;
    let _lock = store.lock_for_daemon()?;
    let released = store.release_all_claims().await?;
    if released > 0 {
        info!(released, "took back unfinished claims of the previous run");
    }
    let source = Source::new(&settings.source)?;
    let channels = crate::channels::build(&settings).context("failed to set up channels")?;
    let instance = format!("{}-{}", hostname(), std::process::id());
    let dispatcher = Dispatcher::new(config.clone(), store.clone(), channels, instance);
    let wake = Arc::new(Notify::new());
    info!(
        config = %config.path.display(),
        store = %settings.store.url,
        source = %settings.source.url,
        policies = settings.policies.len(),
        dry_run = settings.daemon.dry_run,
        "interim started"
    );

    // The first poll runs before any dispatch, so a restart acts on fresh
    // data and never warns about a snapshot it has not tried to take.
    let mut problems = ProblemLog::default();
    poll_logged(&source, &store, &settings, &mut problems).await;

    let poller = {
        let (store, settings, wake, shutdown) = (
            store.clone(),
            settings.clone(),
            wake.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(settings.daemon.poll_interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = ticker.tick() => {}
                }
                // Polls never overlap: the next tick waits for this one.
                if poll_logged(&source, &store, &settings, &mut problems).await {
                    wake.notify_one();
                }
            }
            source.close().await;
        })
    };

    loop {
        if let Err(e) = dispatcher.dispatch_due(Utc::now()).await {
            error!(error = format!("{e:#}"), "dispatch failed; retrying");
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(DISPATCH_TICK) => {}
        }
    }

    info!(
        in_flight = dispatcher.tracker().len(),
        "shutting down: no new claims; waiting for sends in flight"
    );
    let _ = poller.await;
    dispatcher.tracker().close();
    if tokio::time::timeout(
        settings.daemon.shutdown_timeout,
        dispatcher.tracker().wait(),
    )
    .await
    .is_err()
    {
        warn!(
            unfinished = dispatcher.tracker().len(),
            "shutdown_timeout reached; unfinished sends stay claimed and are taken back at the next start"
        );
    }
    store.close().await;
    info!("interim stopped");
    Ok(())
}

/// One poll with its outcome logged; true when it succeeded.
async fn poll_logged(
    source: &Source,
    store: &Store,
    settings: &Settings,
    problems: &mut ProblemLog,
) -> bool {
    match poll_and_plan(source, store, settings, Utc::now(), problems).await {
        Ok(summary) => {
            debug!(?summary, "poll done");
            true
        }
        Err(e) => {
            metrics::counter!("interim_source_poll_failures_total").increment(1);
            error!(
                error = format!("{e:#}"),
                "poll failed; keeping the previous plan and retrying next interval"
            );
            false
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "interim".into())
}

/// SIGTERM / SIGINT cancel the token; a second signal exits at once.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let mut count = 0;
        loop {
            wait_for_stop_signal().await;
            count += 1;
            if count == 1 {
                info!(
                    "stop signal received: finishing sends in flight (signal again to exit at once)"
                );
                trigger.cancel();
            } else {
                warn!("second stop signal: exiting now");
                std::process::exit(1);
            }
        }
    });
    token
}

async fn wait_for_stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
