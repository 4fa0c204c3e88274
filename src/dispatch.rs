//! Dispatching: claim due notices with a lease, check each against the
//! latest plan, render it, send it outside any transaction, and record the
//! result. At most `concurrency` sends per channel are in flight, and each
//! slot records its result before it takes the next notice, so a crash can
//! duplicate at most `concurrency` notices per channel.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::channels::{Channel, DeliveryError, Outgoing};
use crate::config::Config;
use crate::notice::Status;
use crate::retry::{RetryDecision, decide};
use crate::store::{ClaimedNotice, Store};
use crate::templates::NoticeFacts;

/// What a reload replaces as one: the config, the channels built from it,
/// and each channel's send slots.
pub struct Live {
    pub config: Config,
    pub channels: BTreeMap<String, Arc<Channel>>,
    pub slots: BTreeMap<String, Arc<Semaphore>>,
}

pub struct Dispatcher {
    live: RwLock<Arc<Live>>,
    store: Store,
    instance: String,
    tracker: TaskTracker,
    stale_logged: AtomicBool,
    /// Notices being sent by this process right now. A claim is never taken
    /// twice while its send runs, even if its lease ran out meanwhile.
    in_flight: Mutex<HashSet<String>>,
    /// Woken whenever a send slot frees up, so the next due notice is
    /// claimed at once instead of at the next tick.
    pub slot_freed: tokio::sync::Notify,
}

impl Dispatcher {
    pub fn new(
        config: Config,
        store: Store,
        channels: BTreeMap<String, Arc<Channel>>,
        instance: String,
    ) -> Arc<Self> {
        let live = Live {
            slots: slots_for(&config, None),
            config,
            channels,
        };
        Arc::new(Self {
            live: RwLock::new(Arc::new(live)),
            store,
            instance,
            tracker: TaskTracker::new(),
            stale_logged: AtomicBool::new(false),
            in_flight: Mutex::new(HashSet::new()),
            slot_freed: tokio::sync::Notify::new(),
        })
    }

    /// The config, channels and slots in force now.
    pub fn live(&self) -> Arc<Live> {
        self.live.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Swaps in a reloaded config and its channels. Sends in flight finish
    /// with what they started with; a channel whose concurrency is unchanged
    /// keeps its slots, so the limit holds across the swap.
    pub fn replace(&self, config: Config, channels: BTreeMap<String, Arc<Channel>>) {
        let mut guard = self.live.write().unwrap_or_else(|e| e.into_inner());
        let slots = slots_for(&config, Some(&guard));
        *guard = Arc::new(Live {
            config,
            channels,
            slots,
        });
    }

    /// Sends in flight, for graceful shutdown.
    pub fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    /// Nothing is sent on stale data: when the last successful poll is older
    /// than `max_snapshot_age`, a ticket may have been answered meanwhile.
    async fn snapshot_is_fresh(&self, now: DateTime<Utc>) -> anyhow::Result<bool> {
        let max_snapshot_age = self.live().config.settings.daemon.max_snapshot_age;
        let max_age = chrono::Duration::from_std(max_snapshot_age).unwrap_or_default();
        let fresh = self
            .store
            .last_poll_at()
            .await?
            .is_some_and(|at| now - at <= max_age);
        let was_stale = self.stale_logged.swap(!fresh, Ordering::Relaxed);
        if !fresh && !was_stale {
            warn!(
                max_snapshot_age = %humantime::format_duration(max_snapshot_age),
                "no successful poll within max_snapshot_age: holding every notice until the source answers again"
            );
        } else if fresh && was_stale {
            info!("the source answers again: sending resumes");
        }
        metrics::gauge!("interim_snapshot_fresh").set(if fresh { 1.0 } else { 0.0 });
        Ok(fresh)
    }

    /// One pass: claims due notices for every free slot and starts their
    /// sends. Returns how many were started.
    pub async fn dispatch_due(self: &Arc<Self>, now: DateTime<Utc>) -> anyhow::Result<usize> {
        if !self.snapshot_is_fresh(now).await? {
            return Ok(0);
        }
        let mut started = 0;
        let live = self.live();
        for (name, slots) in &live.slots {
            let free = slots.available_permits();
            if free == 0 {
                continue;
            }
            let lease = live.config.settings.store.claim_lease;
            let claimed = self
                .store
                .claim_due(name, now, free, lease, &self.instance)
                .await?;
            for notice in claimed {
                if !self.in_flight_guard().insert(notice.id.clone()) {
                    continue;
                }
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    // Cannot happen (we claimed no more than the free slots);
                    // give the claim back rather than exceed the limit.
                    self.in_flight_guard().remove(&notice.id);
                    self.store.release(&notice.id, None).await?;
                    continue;
                };
                let span = info_span!("notice", ticket.id = %notice.ticket_id, policy = %notice.policy, notice.id = %notice.id, number = notice.number);
                let (this, live) = (Arc::clone(self), Arc::clone(&live));
                self.tracker.spawn(
                    async move { this.deliver(&live, notice, permit).await }.instrument(span),
                );
                started += 1;
            }
        }
        Ok(started)
    }

    async fn deliver(
        self: Arc<Self>,
        live: &Live,
        notice: ClaimedNotice,
        permit: OwnedSemaphorePermit,
    ) {
        if let Err(e) = self.try_deliver(live, &notice).await {
            // The claim stays; its lease ends and the notice is tried again.
            error!(
                error = format!("{e:#}"),
                "failed to record a delivery; the notice will be retried when its claim expires"
            );
        }
        self.in_flight_guard().remove(&notice.id);
        drop(permit);
        self.slot_freed.notify_one();
    }

    fn in_flight_guard(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // A poisoned set is still the right set: the panicking task held no
        // half-done update of it.
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn try_deliver(&self, live: &Live, notice: &ClaimedNotice) -> anyhow::Result<()> {
        let settings = &live.config.settings;
        // The latest plan may have cancelled it since we claimed it.
        if self.store.status_of(&notice.id).await? != Some(Status::Pending) {
            debug!("no longer pending; not sent");
            return Ok(());
        }
        let Some(policy) = settings.policies.iter().find(|p| p.name == notice.policy) else {
            // Renamed or removed: the next plan cancels it.
            self.store.release(&notice.id, None).await?;
            return Ok(());
        };
        let attempt_started = Utc::now();
        // Retries follow the send window too: never at night.
        if !policy.window.allows(attempt_started) {
            let next = policy.window.first_send_instant(attempt_started);
            self.store.release(&notice.id, next).await?;
            return Ok(());
        }
        let ticket = match &notice.ticket {
            Ok(t) => t,
            Err(e) => {
                let reason = format!("the stored ticket cannot be read: {e}");
                return self
                    .finish(notice, Status::Dead, attempt_started, None, Some(&reason))
                    .await;
            }
        };
        let next_notice_at = if notice.number < notice.max_notices.min(policy.max_notices) {
            policy
                .due_at(
                    ticket.waiting_since,
                    notice.number + 1,
                    Some(attempt_started),
                )
                .and_then(|due| policy.window.first_send_instant(due))
        } else {
            None
        };
        let facts = NoticeFacts {
            ticket,
            policy,
            notice_id: &notice.id,
            number: notice.number,
            now: attempt_started,
            due_at: notice.due_at,
            next_notice_at,
        };
        let message = match live.config.templates.render(settings, &facts) {
            Ok(m) => m,
            Err(e) => {
                let reason = format!("template {} failed to render: {e}", policy.template);
                error!(error = %reason, "notice is dead");
                return self
                    .finish(notice, Status::Dead, attempt_started, None, Some(&reason))
                    .await;
            }
        };
        if notice.dry_run {
            info!(channel = %notice.channel, recipient = notice.recipient.as_deref().unwrap_or(""), subject = %message.subject, "dry run: would send");
            return self
                .finish(
                    notice,
                    Status::DryRun,
                    attempt_started,
                    next_notice_at,
                    None,
                )
                .await;
        }
        let Some(channel) = live.channels.get(&notice.channel) else {
            self.store.release(&notice.id, None).await?;
            return Ok(());
        };
        let state_for_customer =
            crate::templates::state_for_customer(settings, ticket, &message.language);
        let outgoing = Outgoing {
            notice_id: &notice.id,
            policy: &notice.policy,
            number: notice.number,
            max: notice.max_notices,
            ticket,
            state_for_customer: &state_for_customer,
            due_at: notice.due_at,
            next_notice_at,
            waited_seconds: (attempt_started - ticket.waiting_since).num_seconds(),
            message: &message,
        };
        let clock = std::time::Instant::now();
        let result = channel.send(&outgoing).await;
        metrics::histogram!("interim_delivery_duration_seconds", "channel" => notice.channel.clone()).record(clock.elapsed().as_secs_f64());
        let label = match &result {
            Ok(()) => "ok",
            Err(e) => e.kind(),
        };
        metrics::counter!("interim_delivery_attempts_total", "channel" => notice.channel.clone(), "result" => label).increment(1);
        match result {
            Ok(()) => {
                let lag = (Utc::now() - notice.send_at).num_milliseconds().max(0) as f64 / 1000.0;
                metrics::histogram!("interim_notice_lag_seconds", "channel" => notice.channel.clone()).record(lag);
                info!(channel = %notice.channel, recipient = notice.recipient.as_deref().unwrap_or(""), attempt = notice.attempts + 1, "notice sent");
                self.finish(notice, Status::Sent, attempt_started, next_notice_at, None)
                    .await
            }
            Err(DeliveryError::Permanent { reason, gone }) => {
                if gone {
                    error!(channel = %notice.channel, error = %reason, "webhook endpoint is gone (HTTP 410): fix channels.{}.url", notice.channel);
                    metrics::counter!("interim_webhook_gone_total", "channel" => notice.channel.clone()).increment(1);
                } else {
                    warn!(channel = %notice.channel, error = %reason, "permanent delivery failure; notice is dead");
                }
                self.finish(notice, Status::Dead, attempt_started, None, Some(&reason))
                    .await
            }
            Err(DeliveryError::Retryable {
                reason,
                retry_after,
            }) => {
                let retry = settings
                    .channels
                    .get(&notice.channel)
                    .map(|c| c.retry.clone());
                let attempts = notice.attempts + 1;
                let first = notice.first_attempt_at.unwrap_or(attempt_started);
                let decision = match &retry {
                    Some(r) => decide(r, attempts, first, Utc::now(), retry_after),
                    None => RetryDecision::GiveUp("the channel is no longer configured".into()),
                };
                match decision {
                    RetryDecision::RetryAt(at) => {
                        let at = policy.window.first_send_instant(at).unwrap_or(at);
                        warn!(channel = %notice.channel, error = %reason, attempt = attempts, retry_at = %crate::channels::rfc3339(at), "delivery failed; will retry");
                        self.store
                            .record_retry(notice, attempt_started, at, &reason)
                            .await
                    }
                    RetryDecision::GiveUp(why) => {
                        let reason = format!("{reason}; {why}");
                        error!(channel = %notice.channel, error = %reason, "retries exhausted; notice is dead");
                        self.finish(notice, Status::Dead, attempt_started, None, Some(&reason))
                            .await
                    }
                }
            }
        }
    }

    async fn finish(
        &self,
        notice: &ClaimedNotice,
        status: Status,
        attempt_started: DateTime<Utc>,
        next_notice_at: Option<DateTime<Utc>>,
        error: Option<&str>,
    ) -> anyhow::Result<()> {
        self.store
            .record_done(
                notice,
                status,
                attempt_started,
                Utc::now(),
                next_notice_at,
                error,
            )
            .await?;
        metrics::counter!("interim_notices_total", "status" => status.as_str(), "policy" => notice.policy.clone(), "channel" => notice.channel.clone()).increment(1);
        Ok(())
    }
}

/// Send slots per channel; a channel whose concurrency did not change keeps
/// the slots it had, with the permits its sends in flight hold.
fn slots_for(config: &Config, previous: Option<&Live>) -> BTreeMap<String, Arc<Semaphore>> {
    config
        .settings
        .channels
        .iter()
        .map(|(name, ch)| {
            let kept = previous
                .filter(|old| {
                    old.config
                        .settings
                        .channels
                        .get(name)
                        .map(|c| c.concurrency)
                        == Some(ch.concurrency)
                })
                .and_then(|old| old.slots.get(name).cloned());
            (
                name.clone(),
                kept.unwrap_or_else(|| Arc::new(Semaphore::new(ch.concurrency))),
            )
        })
        .collect()
}
