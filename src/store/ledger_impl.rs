//! The store as the ledger planning and delivery see: each trait method is
//! the store's own (an inherent method of the same name wins the call).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Store;
use crate::ledger::{
    ChangedTickets, ClaimedNotice, DeliveryLedger, Outcome, Plan, PlanLedger, PlannedNotice,
    PollEnd, Recorded, SeriesKey, SeriesState, Suppression, Swept,
};

impl PlanLedger for Store {
    async fn source_watermark(&self) -> anyhow::Result<Option<DateTime<Utc>>> {
        Store::source_watermark(self).await
    }
    async fn load_series_for(
        &self,
        dry_run: bool,
        ticket_ids: &[&str],
    ) -> anyhow::Result<Vec<SeriesState>> {
        Store::load_series_for(self, dry_run, ticket_ids).await
    }
    async fn derive_series(
        &self,
        dry_run: bool,
        keys: &[SeriesKey],
    ) -> anyhow::Result<Vec<SeriesState>> {
        Store::derive_series(self, dry_run, keys).await
    }
    async fn active_tickets(
        &self,
        dry_run: bool,
        after: &str,
        limit: usize,
    ) -> anyhow::Result<Vec<(String, String)>> {
        Store::active_tickets(self, dry_run, after, limit).await
    }
    async fn apply_plan(&self, plan: &Plan, now: DateTime<Utc>) -> anyhow::Result<()> {
        Store::apply_plan(self, plan, now).await
    }
    async fn finish_poll(&self, end: PollEnd<'_>) -> anyhow::Result<Vec<Swept>> {
        Store::finish_poll(self, end).await
    }
    async fn changed_tickets(&self) -> anyhow::Result<ChangedTickets> {
        Store::changed_tickets(self).await
    }
    async fn clear_changed(&self, mark: i64) -> anyhow::Result<()> {
        Store::clear_changed(self, mark).await
    }
    async fn cancel_pending_dry_runs(&self, now: DateTime<Utc>) -> anyhow::Result<usize> {
        Store::cancel_pending_dry_runs(self, now).await
    }
}

impl DeliveryLedger for Store {
    fn file_problem(&self) -> Option<String> {
        Store::file_problem(self)
    }
    async fn last_poll_at(&self) -> anyhow::Result<Option<DateTime<Utc>>> {
        Store::last_poll_at(self).await
    }
    async fn claim_due(
        &self,
        channel: &str,
        dry_run: bool,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
        instance: &str,
    ) -> anyhow::Result<Vec<ClaimedNotice>> {
        Store::claim_due(self, channel, dry_run, now, limit, lease, instance).await
    }
    async fn renew(
        &self,
        n: &ClaimedNotice,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> anyhow::Result<bool> {
        Store::renew(self, n, now, lease).await
    }
    async fn series_last_sent(&self, n: &ClaimedNotice) -> anyhow::Result<Option<DateTime<Utc>>> {
        Store::series_last_sent(self, n).await
    }
    async fn record_done(
        &self,
        n: &ClaimedNotice,
        outcome: &Outcome<'_>,
        next: Option<&PlannedNotice>,
    ) -> anyhow::Result<Recorded> {
        Store::record_done(self, n, outcome, next).await
    }
    async fn record_retry(
        &self,
        n: &ClaimedNotice,
        attempt_started: DateTime<Utc>,
        next_attempt: DateTime<Utc>,
        send_at: DateTime<Utc>,
        error: &str,
    ) -> anyhow::Result<Recorded> {
        Store::record_retry(self, n, attempt_started, next_attempt, send_at, error).await
    }
    async fn release(
        &self,
        n: &ClaimedNotice,
        next_attempt: Option<DateTime<Utc>>,
        send_at: Option<DateTime<Utc>>,
        hold: Option<crate::promise::Hold>,
    ) -> anyhow::Result<Recorded> {
        Store::release(self, n, next_attempt, send_at, hold).await
    }
    async fn cancel_claimed(
        &self,
        n: &ClaimedNotice,
        reason: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Recorded> {
        Store::cancel_claimed(self, n, reason, now).await
    }
    async fn next_attempt(
        &self,
        channel: &str,
        dry_run: bool,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<DateTime<Utc>>> {
        Store::next_attempt(self, channel, dry_run, now).await
    }
    async fn last_sent_to(&self, recipient: &str) -> anyhow::Result<Option<DateTime<Utc>>> {
        Store::last_sent_to(self, recipient).await
    }
    async fn suppression_of(&self, address: &str) -> anyhow::Result<Option<Suppression>> {
        Store::suppression_of(self, address).await
    }
    async fn suppress(
        &self,
        address: &str,
        reason: &str,
        source: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        Store::suppress(self, address, reason, source, now).await
    }
}
