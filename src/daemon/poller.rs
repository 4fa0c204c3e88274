//! The poll side of the daemon: the source (rebuilt after a reload), the
//! full/incremental schedule, the poller role and the log of bad rows and
//! failed polls.

use std::sync::Arc;

use tracing::{debug, error, info, warn};

use super::memo::PlanMemo;
use super::poll::{CHUNK, PollRejected, PollSchedule, PollSummary, ProblemLog, poll_in_chunks};
use super::repeat;
use crate::config::Settings;
use crate::dispatch::{Dispatcher, PollStatus};
use crate::promise::{BrokenBy, DecidedPromise, Gap, PromiseOutcome};
use crate::source::Source;
use crate::store::Store;

/// The poll side of the daemon: the source (rebuilt after a reload), the
/// full/incremental schedule and the log of bad rows.
pub struct Poller {
    store: Store,
    dispatcher: Arc<Dispatcher<Store>>,
    source: Source,
    /// The settings the source was built from: a reload brings new ones.
    built_from: Arc<Settings>,
    schedule: PollSchedule,
    problems: ProblemLog,
    failures: repeat::RepeatLog,
    /// What each ticket was last planned from (see `memo`).
    memo: PlanMemo,
    last_summary: Option<PollSummary>,
    chunk: usize,
    /// Whether the ledger's last poll before this process started was read.
    read_last_poll: bool,
    /// The ledger's last successful poll before this process started: the
    /// daemon was down since then (promises that fell due meanwhile were
    /// not planned), until this process's first successful poll.
    down_since: Option<chrono::DateTime<chrono::Utc>>,
    /// This process's last successful poll.
    last_success: Option<chrono::DateTime<chrono::Utc>>,
    /// When `interim_waits_open` was last counted.
    waits_counted_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Poller {
    pub fn new(store: Store, dispatcher: Arc<Dispatcher<Store>>) -> anyhow::Result<Self> {
        let settings = dispatcher.live().config.settings.clone();
        Ok(Self {
            source: Source::new(&settings.source)?,
            built_from: settings,
            store,
            dispatcher,
            schedule: PollSchedule::default(),
            problems: ProblemLog::default(),
            failures: repeat::RepeatLog::default(),
            memo: PlanMemo::default(),
            last_summary: None,
            chunk: CHUNK,
            read_last_poll: false,
            down_since: None,
            last_success: None,
            waits_counted_at: None,
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
            // Other policies, channels or calendars: every plan may differ.
            self.memo.clear();
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
        if !self.read_last_poll {
            // Read before this process's first poll writes its own.
            match self.store.last_poll_at().await {
                Ok(at) => {
                    self.down_since = at;
                    self.read_last_poll = true;
                }
                Err(e) => debug!(error = format!("{e:#}"), "cannot read the last poll time"),
            }
        }
        let leading = self.store.lead_polling().await;
        metrics::gauge!("interim_poller").set(if leading { 1.0 } else { 0.0 });
        if !leading {
            // Another instance plans meanwhile; when this one leads again
            // it starts from what the ledger holds then. That instance
            // decides promises too: no gap of this one's counts for them.
            self.memo.clear();
            self.down_since = None;
            self.last_success = None;
            return false;
        }
        let started = std::time::Instant::now();
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
                &mut self.memo,
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
                self.dispatcher.note_poll_status(PollStatus {
                    at: now,
                    took: started.elapsed(),
                    full: summary.full,
                    tracked: summary.full.then_some(summary.tickets),
                });
                if let Some(failures) = self.failures.recovered() {
                    info!(failures, "poll succeeded again");
                }
                debug!(?summary, "poll done");
                self.last_summary = Some(summary);
                self.decide_promises(&settings, now).await;
                self.prune_history(&settings, now).await;
                self.count_open_waits(&settings, now).await;
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

    /// Decides the promises that can be decided after a successful poll,
    /// and counts them. A failure is logged and retried after the next
    /// poll: nothing is lost, the promises stay undecided in the ledger.
    async fn decide_promises(&mut self, settings: &Settings, now: chrono::DateTime<chrono::Utc>) {
        let grace = chrono::Duration::from_std(settings.daemon.promise_grace)
            .unwrap_or(chrono::Duration::zero());
        let max_age = chrono::Duration::from_std(settings.daemon.max_snapshot_age)
            .unwrap_or(chrono::Duration::MAX);
        // Polls failed for longer than max_snapshot_age: nothing was sent
        // from then on. Else, at the first decision of this process, the
        // time it was down.
        let stale = self
            .last_success
            .and_then(|last| last.checked_add_signed(max_age))
            .filter(|stale_from| *stale_from < now)
            .map(|since| Gap {
                since,
                why: BrokenBy::HeldStale,
            });
        let gap = stale.or(self.down_since.map(|since| Gap {
            since,
            why: BrokenBy::NotPlanned,
        }));
        self.last_success = Some(now);
        match self.store.decide_promises(now, grace, gap).await {
            Ok(decided) => {
                self.down_since = None;
                for d in decided {
                    record_promise(&d);
                }
            }
            Err(e) => warn!(
                error = format!("{e:#}"),
                "cannot decide promises now; they stay undecided until the next poll"
            ),
        }
    }

    /// A batch of the waits older than `store.history_retention` leaves
    /// the history after each poll, so a large backlog (a shorter
    /// retention) is worked off without holding the writer.
    async fn prune_history(&self, settings: &Settings, now: chrono::DateTime<chrono::Utc>) {
        let Some(before) = chrono::Duration::from_std(settings.store.history_retention)
            .ok()
            .and_then(|keep| now.checked_sub_signed(keep))
        else {
            return;
        };
        match self.store.prune_waits(before).await {
            Ok(0) => {}
            Ok(pruned) => debug!(pruned, "waits past store.history_retention deleted"),
            Err(e) => warn!(
                error = format!("{e:#}"),
                "cannot prune the wait history now"
            ),
        }
    }

    /// `interim_waits_open{policy}`, counted at most once a minute (a
    /// count of every open wait, from an index).
    async fn count_open_waits(&mut self, settings: &Settings, now: chrono::DateTime<chrono::Utc>) {
        if self
            .waits_counted_at
            .is_some_and(|at| now >= at && now - at < chrono::Duration::minutes(1))
        {
            return;
        }
        match self
            .store
            .open_waits_per_policy(settings.daemon.dry_run)
            .await
        {
            Ok(open) => {
                self.waits_counted_at = Some(now);
                for policy in &settings.policies {
                    let waits = open.get(&policy.name).copied().unwrap_or(0);
                    metrics::gauge!("interim_waits_open", "policy" => policy.name.clone())
                        .set(waits as f64);
                }
            }
            Err(e) => debug!(error = format!("{e:#}"), "cannot count the open waits now"),
        }
    }

    /// What the last successful poll did.
    pub fn last_summary(&self) -> Option<&PollSummary> {
        self.last_summary.as_ref()
    }

    pub async fn close(self) {
        self.source.close().await;
    }
}

/// The promise metrics of one decided promise.
fn record_promise(d: &DecidedPromise) {
    let policy = d.policy.clone();
    metrics::counter!(
        "interim_promises_total",
        "policy" => policy.clone(),
        "outcome" => d.outcome.as_str()
    )
    .increment(1);
    if let PromiseOutcome::Broken(by) = d.outcome {
        metrics::counter!(
            "interim_promises_broken_total",
            "policy" => policy.clone(),
            "reason" => by.as_str()
        )
        .increment(1);
        info!(notice.id = %d.notice_id, policy = %d.policy, reason = by.as_str(), "promise broken");
    }
    if let Some(late) = d.lateness {
        let seconds = late.num_milliseconds() as f64 / 1000.0;
        metrics::histogram!("interim_promise_lateness_seconds", "policy" => policy)
            .record(seconds.max(0.0));
    }
}
