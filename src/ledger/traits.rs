//! What a store offers planning and delivery. Planning (the poll, the
//! re-plan, the series `plan` and `preview` show) takes a [`PlanLedger`];
//! delivery (the dispatcher, its suppression check) a [`DeliveryLedger`].
//! `Store` is named only where one is opened (the daemon, the admin
//! endpoint, the CLI) and by the operator's commands (notice lists, retry,
//! suppressions, copy), which need what these traits do not offer.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{
    ChangedTickets, ClaimedNotice, Outcome, Plan, PlannedNotice, PollEnd, Recorded, SeriesKey,
    SeriesState, Suppression, Swept,
};

/// What planning reads from and writes to the ledger.
pub trait PlanLedger: Send + Sync {
    /// The newest `updated_at` a poll saw (incremental polls start there).
    fn source_watermark(
        &self,
    ) -> impl Future<Output = anyhow::Result<Option<DateTime<Utc>>>> + Send;
    /// The stored series of these tickets.
    fn load_series_for(
        &self,
        dry_run: bool,
        ticket_ids: &[&str],
    ) -> impl Future<Output = anyhow::Result<Vec<SeriesState>>> + Send;
    /// Series without their row, derived from their notices.
    fn derive_series(
        &self,
        dry_run: bool,
        keys: &[SeriesKey],
    ) -> impl Future<Output = anyhow::Result<Vec<SeriesState>>> + Send;
    /// A page of the tickets with an active series, after `after` (ids and
    /// their stored ticket JSON), for re-planning.
    fn active_tickets(
        &self,
        dry_run: bool,
        after: &str,
        limit: usize,
    ) -> impl Future<Output = anyhow::Result<Vec<(String, String)>>> + Send;
    /// One plan, in one transaction.
    fn apply_plan(
        &self,
        plan: &Plan,
        now: DateTime<Utc>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// The end of a poll: absent tickets' series end, the poll time and
    /// the watermark are stored.
    fn finish_poll(
        &self,
        end: PollEnd<'_>,
    ) -> impl Future<Output = anyhow::Result<Vec<Swept>>> + Send;
    /// The tickets changed since the marks were last cleared.
    fn changed_tickets(&self) -> impl Future<Output = anyhow::Result<ChangedTickets>> + Send;
    /// Forgets the changes read with `mark` (and none written since).
    fn clear_changed(&self, mark: i64) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Dry run was switched off: its pending notices end.
    fn cancel_pending_dry_runs(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = anyhow::Result<usize>> + Send;
}

/// What delivery claims, renews and records. Every write carries the
/// claim's fencing token and is refused ([`Recorded::Fenced`]) when another
/// claim took the notice since.
pub trait DeliveryLedger: Send + Sync {
    /// Why results would be recorded where no restart finds them (a
    /// file-backed store's file was deleted or replaced); None otherwise.
    fn file_problem(&self) -> Option<String>;
    /// When the last poll was applied (nothing is sent on a stale one).
    fn last_poll_at(&self) -> impl Future<Output = anyhow::Result<Option<DateTime<Utc>>>> + Send;
    /// Up to `limit` due notices of a channel, claimed with a lease.
    fn claim_due(
        &self,
        channel: &str,
        dry_run: bool,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
        instance: &str,
    ) -> impl Future<Output = anyhow::Result<Vec<ClaimedNotice>>> + Send;
    /// Extends a claim's lease; false when it is no longer ours.
    fn renew(
        &self,
        n: &ClaimedNotice,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> impl Future<Output = anyhow::Result<bool>> + Send;
    /// When the notice's series last sent (the spacing reference).
    fn series_last_sent(
        &self,
        n: &ClaimedNotice,
    ) -> impl Future<Output = anyhow::Result<Option<DateTime<Utc>>>> + Send;
    /// The notice's end, and its series' next notice, in one transaction.
    fn record_done(
        &self,
        n: &ClaimedNotice,
        outcome: &Outcome<'_>,
        next: Option<&PlannedNotice>,
    ) -> impl Future<Output = anyhow::Result<Recorded>> + Send;
    /// A failed attempt that is tried again at `next_attempt`.
    fn record_retry(
        &self,
        n: &ClaimedNotice,
        attempt_started: DateTime<Utc>,
        next_attempt: DateTime<Utc>,
        send_at: DateTime<Utc>,
        error: &str,
    ) -> impl Future<Output = anyhow::Result<Recorded>> + Send;
    /// Gives a claim back, optionally for a later attempt; `hold` says
    /// when a limit held it back (the promise it was to keep).
    fn release(
        &self,
        n: &ClaimedNotice,
        next_attempt: Option<DateTime<Utc>>,
        send_at: Option<DateTime<Utc>>,
        hold: Option<crate::promise::Hold>,
    ) -> impl Future<Output = anyhow::Result<Recorded>> + Send;
    /// Cancels a claimed notice (its wait ended before the send).
    fn cancel_claimed(
        &self,
        n: &ClaimedNotice,
        reason: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = anyhow::Result<Recorded>> + Send;
    /// When the next notice of `channel` nobody holds becomes due.
    fn next_attempt(
        &self,
        channel: &str,
        dry_run: bool,
        now: DateTime<Utc>,
    ) -> impl Future<Output = anyhow::Result<Option<DateTime<Utc>>>> + Send;
    /// The last send to a recipient (for `limits.per_recipient`).
    fn last_sent_to(
        &self,
        recipient: &str,
    ) -> impl Future<Output = anyhow::Result<Option<DateTime<Utc>>>> + Send;
    /// The stored suppression of an address or its `@domain`, if any.
    fn suppression_of(
        &self,
        address: &str,
    ) -> impl Future<Output = anyhow::Result<Option<Suppression>>> + Send;
    /// Adds (or updates) a suppression of an address or `@domain`.
    fn suppress(
        &self,
        address: &str,
        reason: &str,
        source: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}
