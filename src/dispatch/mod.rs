//! Dispatching: claim due notices with a lease, check each against the
//! latest plan, render it, send it outside any transaction, and record the
//! result. At most `concurrency` sends per channel are in flight, and each
//! slot records its result before it takes the next notice, so a crash can
//! duplicate at most `concurrency` notices per channel.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, error, info, info_span, warn};

mod attempt;
mod deliver;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::channels::Channel;
use crate::clock::Clock;
use crate::ledger::{ClaimedNotice, DeliveryLedger};
use crate::setup::Config;
use crate::source::Source;
use crate::suppress::Suppressor;

/// What a reload replaces as one: the config and everything built from it.
pub struct Live {
    pub config: Config,
    pub channels: BTreeMap<String, Arc<Channel>>,
    /// Send slots per channel (`concurrency`).
    pub slots: BTreeMap<String, Arc<Semaphore>>,
    /// Message rate per channel (`rate`), where configured.
    pub rates: BTreeMap<String, Arc<DefaultDirectRateLimiter>>,
    pub suppressor: Suppressor,
    /// The source for `source.recheck_query`, where configured.
    pub recheck: Option<Source>,
    /// When this config was loaded (for the status pages).
    pub loaded_at: DateTime<Utc>,
}

impl Live {
    fn build(
        config: Config,
        channels: BTreeMap<String, Arc<Channel>>,
        previous: Option<&Live>,
    ) -> anyhow::Result<Live> {
        let settings = &config.settings;
        let rates = settings
            .channels
            .iter()
            .filter_map(|(name, ch)| {
                let rate = ch.rate?;
                // One message per 1/rate seconds, no burst beyond one.
                let period = std::time::Duration::from_secs_f64(1.0 / rate);
                let quota = Quota::with_period(period)?;
                Some((name.clone(), Arc::new(RateLimiter::direct(quota))))
            })
            .collect();
        let recheck = match &settings.source.recheck_query {
            Some(_) => Some(Source::new(&settings.source)?),
            None => None,
        };
        Ok(Live {
            slots: slots_for(&config, previous),
            rates,
            suppressor: Suppressor::new(&settings.suppress),
            recheck,
            channels,
            config,
            loaded_at: Utc::now(),
        })
    }
}

/// A successful poll as the status pages show it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PollStatus {
    pub at: DateTime<Utc>,
    /// How long it took, from asking the source to the plan written.
    pub took: std::time::Duration,
    pub full: bool,
    /// The tickets the last full poll saw (None before the first).
    pub tracked: Option<usize>,
}

/// Delivers due notices. It claims and records through `L`, a
/// [`DeliveryLedger`], and names no backend: the daemon chooses one where
/// it opens the store.
pub struct Dispatcher<L> {
    live: RwLock<Arc<Live>>,
    ledger: L,
    instance: String,
    clock: Arc<dyn Clock>,
    tracker: TaskTracker,
    stale_logged: AtomicBool,
    /// The last read of the store's last poll time, and when it was read.
    last_poll_cache: Mutex<Option<(std::time::Instant, Option<DateTime<Utc>>)>>,
    /// Why the last poll was rejected (every row, or too many, skipped);
    /// None after a poll that was taken. `/readyz` shows it.
    poll_problem: Mutex<Option<String>>,
    /// This process's last successful poll, for the status pages.
    last_poll: Mutex<Option<PollStatus>>,
    /// The last reload: when, and why it was rejected (None: taken).
    last_reload: Mutex<Option<(DateTime<Utc>, Option<String>)>>,
    /// Notices being sent by this process right now, each with the fencing
    /// token of its current claim. A claim that this process takes again
    /// while its send still runs (its lease ran out meanwhile) hands the new
    /// token to the running send instead of starting a second one.
    in_flight: Mutex<HashMap<String, Arc<AtomicI64>>>,
    /// Recipients with a send in flight (for `limits.per_recipient`).
    recipients: Mutex<HashSet<String>>,
    /// Woken whenever a send slot frees up, so the next due notice is
    /// claimed at once instead of at the next tick.
    pub slot_freed: tokio::sync::Notify,
}

/// A claimed notice while this process sends it: the token may be renewed
/// by a later claim of the same notice (see `Dispatcher::in_flight`).
pub(crate) struct Claim {
    notice: ClaimedNotice,
    token: Arc<AtomicI64>,
}

impl Claim {
    /// The notice with the token of its current claim.
    pub(crate) fn current(&self) -> ClaimedNotice {
        let mut notice = self.notice.clone();
        notice.claim_token = self.token.load(Ordering::SeqCst);
        notice
    }
}

impl std::ops::Deref for Claim {
    type Target = ClaimedNotice;
    fn deref(&self) -> &ClaimedNotice {
        &self.notice
    }
}

impl<L: DeliveryLedger + 'static> Dispatcher<L> {
    pub fn new(
        config: Config,
        ledger: L,
        channels: BTreeMap<String, Arc<Channel>>,
        instance: String,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Arc<Self>> {
        let live = Live::build(config, channels, None)?;
        Ok(Arc::new(Self {
            live: RwLock::new(Arc::new(live)),
            ledger,
            instance,
            clock,
            tracker: TaskTracker::new(),
            stale_logged: AtomicBool::new(false),
            last_poll_cache: Mutex::new(None),
            poll_problem: Mutex::new(None),
            last_poll: Mutex::new(None),
            last_reload: Mutex::new(None),
            in_flight: Mutex::new(HashMap::new()),
            recipients: Mutex::new(HashSet::new()),
            slot_freed: tokio::sync::Notify::new(),
        }))
    }

    /// The config, channels and slots in force now.
    pub fn live(&self) -> Arc<Live> {
        self.live.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Swaps in a reloaded config and its channels. Sends in flight finish
    /// with what they started with; a channel whose concurrency is unchanged
    /// keeps its slots, so the limit holds across the swap.
    pub fn replace(
        &self,
        config: Config,
        channels: BTreeMap<String, Arc<Channel>>,
    ) -> anyhow::Result<()> {
        let mut guard = self.live.write().unwrap_or_else(|e| e.into_inner());
        let live = Live::build(config, channels, Some(&guard))?;
        *guard = Arc::new(live);
        Ok(())
    }

    /// Sends in flight, for graceful shutdown.
    pub fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    /// Waits until no send of this process is in flight (tests and
    /// simulations step the clock only between sends).
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.slot_freed.notified();
            if self.in_flight_guard().is_empty() {
                return;
            }
            notified.await;
        }
    }

    /// A poll of this process succeeded at `at`: the staleness guard knows
    /// at once, without waiting for its cached read of the store.
    pub fn note_poll(&self, at: DateTime<Utc>) {
        *self
            .last_poll_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some((std::time::Instant::now(), Some(at)));
        self.set_poll_problem(None);
    }

    /// What the last successful poll of this process did (a full poll
    /// sets the tickets tracked; an incremental one keeps the last count).
    pub fn note_poll_status(&self, mut status: PollStatus) {
        let mut last = self.last_poll.lock().unwrap_or_else(|e| e.into_inner());
        if !status.full
            && let Some(before) = last.as_ref()
        {
            status.tracked = before.tracked;
        }
        *last = Some(status);
    }

    /// A reload's outcome at `at`: None when it was taken, else why not.
    pub fn note_reload(&self, at: DateTime<Utc>, rejected: Option<String>) {
        *self.last_reload.lock().unwrap_or_else(|e| e.into_inner()) = Some((at, rejected));
    }

    pub fn last_reload(&self) -> Option<(DateTime<Utc>, Option<String>)> {
        self.last_reload
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn last_poll_status(&self) -> Option<PollStatus> {
        *self.last_poll.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records why the last poll was rejected (None: it was taken).
    pub fn set_poll_problem(&self, problem: Option<String>) {
        *self.poll_problem.lock().unwrap_or_else(|e| e.into_inner()) = problem;
    }

    pub fn poll_problem(&self) -> Option<String> {
        self.poll_problem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Nothing is sent on stale data: when the last successful poll is older
    /// than `max_snapshot_age`, a ticket may have been answered meanwhile.
    /// The store's last successful poll, read at most once a second: the
    /// dispatcher asks before every claim, and the answer only moves with
    /// polls (seconds apart), so re-reading it per notice is wasted I/O.
    async fn last_poll_at(&self) -> anyhow::Result<Option<DateTime<Utc>>> {
        if let Some((read, value)) = *self
            .last_poll_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            && read.elapsed() < std::time::Duration::from_secs(1)
        {
            return Ok(value);
        }
        let value = self.ledger.last_poll_at().await?;
        *self
            .last_poll_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some((std::time::Instant::now(), value));
        Ok(value)
    }

    async fn snapshot_is_fresh(&self, now: DateTime<Utc>) -> anyhow::Result<bool> {
        let max_snapshot_age = self.live().config.settings.daemon.max_snapshot_age;
        let max_age = chrono::Duration::from_std(max_snapshot_age).unwrap_or(chrono::Duration::MAX);
        let fresh = self.last_poll_at().await?.is_some_and(|at| {
            // A poll stamped in the future (the clock stepped back) is not
            // fresh: its age is unknown until the next successful poll.
            at <= now + chrono::Duration::seconds(5) && now.signed_duration_since(at) <= max_age
        });
        let was_stale = self.stale_logged.swap(!fresh, Ordering::Relaxed);
        if !fresh && !was_stale {
            warn!(
                max_snapshot_age = %crate::clock::human_duration(max_snapshot_age),
                "no successful poll within max_snapshot_age: holding every notice until the source answers again"
            );
        } else if fresh && was_stale {
            info!("the source answers again: sending resumes");
        }
        metrics::gauge!("interim_snapshot_fresh").set(if fresh { 1.0 } else { 0.0 });
        Ok(fresh)
    }

    /// One pass at `now`: claims due notices for every free slot and starts
    /// their sends. With `daemon.dry_run` only dry-run notices are claimed:
    /// a live notice is never sent while dry run is on. Returns how many
    /// sends were started.
    pub async fn dispatch_due(self: &Arc<Self>, now: DateTime<Utc>) -> anyhow::Result<usize> {
        // A deleted or replaced SQLite file: results would be recorded in a
        // ledger no restart sees (logged once by the ledger).
        if self.ledger.file_problem().is_some() {
            return Ok(0);
        }
        if !self.snapshot_is_fresh(now).await? {
            return Ok(0);
        }
        let mut started = 0;
        let live = self.live();
        let dry_run = live.config.settings.daemon.dry_run;
        let lease = live.config.settings.store.claim_lease;
        for (name, slots) in &live.slots {
            let free = slots.available_permits();
            if free == 0 {
                continue;
            }
            let claimed = self
                .ledger
                .claim_due(name, dry_run, now, free, lease, &self.instance)
                .await?;
            for notice in claimed {
                let token = {
                    let mut in_flight = self.in_flight_guard();
                    if let Some(running) = in_flight.get(&notice.id) {
                        // Our own send still runs: it carries on with the
                        // new claim.
                        running.store(notice.claim_token, Ordering::SeqCst);
                        continue;
                    }
                    let token = Arc::new(AtomicI64::new(notice.claim_token));
                    in_flight.insert(notice.id.clone(), token.clone());
                    token
                };
                let claim = Claim { notice, token };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    // Cannot happen (we claimed no more than the free slots);
                    // give the claim back rather than exceed the limit.
                    self.in_flight_guard().remove(&claim.id);
                    self.ledger
                        .release(&claim.current(), None, None, None)
                        .await?;
                    continue;
                };
                let number = claim
                    .ticket
                    .as_ref()
                    .ok()
                    .and_then(|t| t.number.as_deref())
                    .map(crate::logging::outside);
                let span = info_span!("notice", ticket.id = %crate::logging::outside(&claim.ticket_id), ticket.number = number, policy = %claim.policy, notice.id = %claim.id, number = claim.number);
                let (this, live) = (Arc::clone(self), Arc::clone(&live));
                self.tracker.spawn(
                    async move { this.deliver(live, claim, permit, now).await }.instrument(span),
                );
                started += 1;
            }
        }
        Ok(started)
    }

    /// How long the dispatcher may sleep after a round at `now`: until the
    /// earliest next attempt of a channel with a free slot (a full channel
    /// wakes it through `slot_freed`), at most `longest`. Notices due but not
    /// claimable now (a stale snapshot, a ledger problem) are looked at again
    /// after `retry`, not in a busy loop. A plan, a reload or a freed slot
    /// wakes the dispatcher earlier.
    pub async fn sleep_after_round(
        &self,
        now: DateTime<Utc>,
        retry: std::time::Duration,
        longest: std::time::Duration,
    ) -> std::time::Duration {
        let live = self.live();
        let dry_run = live.config.settings.daemon.dry_run;
        let mut earliest: Option<DateTime<Utc>> = None;
        for (name, slots) in &live.slots {
            if slots.available_permits() == 0 {
                continue;
            }
            match self.ledger.next_attempt(name, dry_run, now).await {
                Ok(Some(at)) => earliest = Some(earliest.map_or(at, |e| e.min(at))),
                Ok(None) => {}
                // The next round reports what is wrong with the store.
                Err(_) => return retry,
            }
        }
        match earliest {
            None => longest,
            Some(at) if at <= now => retry,
            Some(at) => (at - now).to_std().unwrap_or(retry).min(longest),
        }
    }

    /// Delivers one claimed notice while renewing its lease, then frees its
    /// slot. The lease covers the whole claim → checks → send → record.
    async fn deliver(
        self: Arc<Self>,
        live: Arc<Live>,
        claim: Claim,
        permit: OwnedSemaphorePermit,
        now: DateTime<Utc>,
    ) {
        let lost = CancellationToken::new();
        let outcome = tokio::select! {
            biased;
            outcome = self.try_deliver(&live, &claim, now, &lost) => outcome,
            () = self.keep_claim(&live, &claim, &lost) => Ok(()),
        };
        if let Err(e) = outcome {
            // The claim stays; its lease ends and the notice is tried again.
            error!(
                error = format!("{e:#}"),
                "failed to deliver or record a notice; it will be tried again when its claim expires"
            );
        }
        self.in_flight_guard().remove(&claim.id);
        drop(permit);
        self.slot_freed.notify_waiters();
        self.slot_freed.notify_one();
    }

    /// Renews the lease of a claim every third of the lease until the
    /// delivery ends (this future is dropped then). When the claim turns
    /// out to be lost, `lost` fires: a send that has not started yet is
    /// not started.
    async fn keep_claim(&self, live: &Live, claim: &Claim, lost: &CancellationToken) {
        let lease = live.config.settings.store.claim_lease;
        let every = (lease / 3).max(std::time::Duration::from_millis(100));
        loop {
            tokio::time::sleep(every).await;
            match self
                .ledger
                .renew(&claim.current(), self.clock.now(), lease)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    warn!(notice.id = %claim.id, "the claim of this notice was lost (taken over or cancelled); it is not sent by this instance");
                    lost.cancel();
                    return std::future::pending().await;
                }
                Err(e) => warn!(error = format!("{e:#}"), "cannot renew a claim yet"),
            }
        }
    }

    fn recipients_guard(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.recipients.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn in_flight_guard(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<AtomicI64>>> {
        // A poisoned map is still the right map: the panicking task held no
        // half-done update of it.
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
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
