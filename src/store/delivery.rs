//! The delivery side of the ledger: claims with a lease and a fencing
//! token, lease renewal, results, retries.
//!
//! A lease is measured on one clock: the database's on PostgreSQL (several
//! instances, several clocks), the daemon's on SQLite (one process). Every
//! claim increments the notice's `claim_token`; a result, a retry or a
//! release is written only while the notice still carries the token of the
//! claim it answers, so a late writer whose claim was taken over can never
//! overwrite another instance's result.

use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};

use interim_store_rows::{DoneArgs, RetryArgs};

use super::group::{ClaimArgs, Work};
use super::rows::{claimed, claimed_key};
use super::{ClaimedNotice, Conn, Db, Store, WriteTx, from_ms, ms, on_pool, on_tx};
use crate::ledger::{Outcome, PlannedNotice, Recorded};
use crate::notice::Status;

fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// A restarted daemon takes back its unfinished claims at once: with
    /// SQLite it is the only daemon, so every claim was its own. (On
    /// PostgreSQL a dead instance's claims end with their lease.)
    pub async fn release_all_claims(&self) -> anyhow::Result<u64> {
        let Db::Sqlite(pool) = &self.db else {
            return Ok(0);
        };
        interim_store_sqlite::release_all_claims(pool)
            .await
            .context("failed to release claims")
    }

    /// Claims up to `limit` due notices of a channel (live or dry run) with
    /// a lease, in one short statement. The send happens outside any
    /// transaction.
    pub async fn claim_due(
        &self,
        channel: &str,
        dry_run: bool,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
        instance: &str,
    ) -> anyhow::Result<Vec<ClaimedNotice>> {
        if let Some(problem) = self.file_problem() {
            bail!("{problem}: nothing is claimed");
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = match &self.db {
            // Through the writer: SQLite has one, and the results it is
            // writing would make the claim wait for the lock.
            Db::Sqlite(_) => {
                let claim = ClaimArgs {
                    channel: channel.to_owned(),
                    dry_run,
                    now,
                    limit,
                    lease,
                    instance: instance.to_owned(),
                };
                return self.claim_grouped(claim).await;
            }
            Db::Postgres(pool) => {
                let (now, dry_run, lease) = (ms(now), i64::from(dry_run), lease_ms(lease));
                interim_store_postgres::claim_due(
                    pool, instance, lease, channel, now, limit, dry_run,
                )
                .await
            }
        }
        .with_context(|| format!("failed to claim due notices of channel {channel}"))?;
        Ok(rows.into_iter().map(claimed).collect())
    }

    /// The statement of [`claim_due`](Self::claim_due), on `tx`.
    pub(super) async fn claim_on(
        &self,
        tx: &mut WriteTx,
        c: &ClaimArgs,
    ) -> anyhow::Result<Vec<ClaimedNotice>> {
        let (now, dry_run) = (ms(c.now), i64::from(c.dry_run));
        let rows = match tx.conn() {
            Conn::Sqlite(conn) => {
                let until = now.saturating_add(lease_ms(c.lease));
                interim_store_sqlite::claim_due(
                    &mut **conn,
                    &c.instance,
                    until,
                    &c.channel,
                    now,
                    c.limit,
                    dry_run,
                )
                .await
            }
            Conn::Postgres(conn) => {
                interim_store_postgres::claim_due(
                    &mut **conn,
                    &c.instance,
                    lease_ms(c.lease),
                    &c.channel,
                    now,
                    c.limit,
                    dry_run,
                )
                .await
            }
        }
        .with_context(|| format!("failed to claim due notices of channel {}", c.channel))?;
        Ok(rows.into_iter().map(claimed).collect())
    }

    /// Extends a claim's lease while its send runs. False when the claim is
    /// no longer ours (taken over, or the notice was cancelled meanwhile).
    pub async fn renew(
        &self,
        n: &ClaimedNotice,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> anyhow::Result<bool> {
        let done = match &self.db {
            Db::Sqlite(pool) => {
                let until = ms(now).saturating_add(lease_ms(lease));
                interim_store_sqlite::renew(pool, &n.id, n.claim_token, until).await
            }
            Db::Postgres(pool) => {
                interim_store_postgres::renew(pool, &n.id, n.claim_token, lease_ms(lease)).await
            }
        }
        .with_context(|| format!("failed to renew the claim of notice {}", n.id))?;
        Ok(done == 1)
    }

    /// When the series of a claimed notice last really sent (for spacing
    /// the next notice after one that did not go out).
    pub async fn series_last_sent(
        &self,
        n: &ClaimedNotice,
    ) -> anyhow::Result<Option<DateTime<Utc>>> {
        let v =
            on_pool!(self, series_last_sent(claimed_key(n))).context("failed to read a series")?;
        Ok(v.flatten().map(from_ms))
    }

    /// Records the end of a notice (sent, dead, suppressed, dry run),
    /// advances its series and, when the series is still active, makes
    /// `next` its pending next notice, all in one transaction. A send is
    /// recorded even when a poll cancelled the notice while it went out
    /// (the ledger says what happened); everything else needs the notice
    /// still pending. Fenced when the claim is no longer ours. Returns
    /// once committed; on SQLite together with the results waiting then.
    pub async fn record_done(
        &self,
        n: &ClaimedNotice,
        outcome: &Outcome<'_>,
        next: Option<&PlannedNotice>,
    ) -> anyhow::Result<Recorded> {
        self.record_grouped(Work::done(n, outcome, next)).await
    }

    /// The statements of [`record_done`](Self::record_done), on `tx`.
    pub(super) async fn record_done_on(
        &self,
        tx: &mut WriteTx,
        n: &ClaimedNotice,
        outcome: &Outcome<'_>,
        next: Option<&PlannedNotice>,
    ) -> anyhow::Result<Recorded> {
        let sent = matches!(outcome.status, Status::Sent | Status::DryRun);
        let done = DoneArgs {
            id: &n.id,
            claim_token: n.claim_token,
            status: outcome.status.as_str(),
            attempt_started: ms(outcome.attempt_started),
            sent_at: sent.then_some(ms(outcome.finished)),
            finished: ms(outcome.finished),
            next_notice_at: outcome.next_notice_at.map(ms),
            error: outcome.error,
            also_cancelled: sent,
        };
        if on_tx!(tx, record_done(done))? == 0 {
            return Ok(Recorded::Fenced);
        }
        // Only a real send restarts the spacing clock.
        let started = sent.then_some(ms(outcome.attempt_started));
        let number = i64::from(n.number);
        let active = on_tx!(tx, advance_series(claimed_key(n), number, started))?;
        if let (Some(1), Some(next)) = (active, next) {
            self.write_pending(tx, next, n.dry_run, outcome.finished)
                .await?;
        }
        Ok(Recorded::Done)
    }

    /// Records a failed attempt that will be retried at `next_attempt`
    /// (`send_at` is the notice's planned instant, moved when the retry
    /// had to wait for the next window). Grouped as
    /// [`record_done`](Self::record_done) is.
    pub async fn record_retry(
        &self,
        n: &ClaimedNotice,
        attempt_started: DateTime<Utc>,
        next_attempt: DateTime<Utc>,
        send_at: DateTime<Utc>,
        error: &str,
    ) -> anyhow::Result<Recorded> {
        let work = Work::retry(n, attempt_started, next_attempt, send_at, error);
        self.record_grouped(work).await
    }

    /// The statement of [`record_retry`](Self::record_retry), on `tx`.
    pub(super) async fn record_retry_on(
        &self,
        tx: &mut WriteTx,
        n: &ClaimedNotice,
        attempt_started: DateTime<Utc>,
        next_attempt: DateTime<Utc>,
        send_at: DateTime<Utc>,
        error: &str,
    ) -> anyhow::Result<Recorded> {
        let retry = RetryArgs {
            id: &n.id,
            claim_token: n.claim_token,
            attempt_started: ms(attempt_started),
            next_attempt: ms(next_attempt),
            send_at: ms(send_at),
            error,
        };
        let done = on_tx!(tx, record_retry(retry))
            .with_context(|| format!("failed to record a retry of notice {}", n.id))?;
        Ok(fenced_unless(done))
    }

    /// Gives a claim back without an attempt (outside the send window, held
    /// by a limit, shutting down before the send began). `next_attempt` and
    /// `send_at` move the notice when given.
    pub async fn release(
        &self,
        n: &ClaimedNotice,
        next_attempt: Option<DateTime<Utc>>,
        send_at: Option<DateTime<Utc>>,
        hold: Option<crate::promise::Hold>,
    ) -> anyhow::Result<Recorded> {
        let (next_attempt, send_at) = (next_attempt.map(ms), send_at.map(ms));
        let hold = hold.map(crate::promise::Hold::as_str);
        let done = on_pool!(
            self,
            release(&n.id, n.claim_token, next_attempt, send_at, hold)
        )
        .with_context(|| format!("failed to release notice {}", n.id))?;
        Ok(fenced_unless(done))
    }

    /// Cancels a claimed notice (a pre-send check found it must not go out).
    pub async fn cancel_claimed(
        &self,
        n: &ClaimedNotice,
        reason: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Recorded> {
        let done = on_pool!(self, cancel_claimed(&n.id, n.claim_token, reason, ms(now)))
            .with_context(|| format!("failed to cancel notice {}", n.id))?;
        Ok(fenced_unless(done))
    }

    /// The earliest next attempt of any pending notice (live or dry run).
    pub async fn next_due(&self, dry_run: bool) -> anyhow::Result<Option<DateTime<Utc>>> {
        let v = on_pool!(self, next_due(i64::from(dry_run)))
            .context("failed to read the next due notice")?;
        Ok(v.map(from_ms))
    }

    /// When the next pending notice of `channel` may be claimed: the
    /// earliest next attempt among those nobody holds a live claim on at
    /// `now` (on PostgreSQL: at the database's clock, which stamps the
    /// leases, as `claim_due` reads them). The dispatcher sleeps until then
    /// instead of polling the ledger on a tick.
    pub async fn next_attempt(
        &self,
        channel: &str,
        dry_run: bool,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<DateTime<Utc>>> {
        let dry_run = i64::from(dry_run);
        let v = match &self.db {
            Db::Sqlite(pool) => {
                interim_store_sqlite::next_attempt(pool, channel, dry_run, ms(now)).await
            }
            Db::Postgres(pool) => {
                interim_store_postgres::next_attempt(pool, channel, dry_run).await
            }
        }
        .with_context(|| format!("failed to read the next due notice of channel {channel}"))?;
        Ok(v.map(from_ms))
    }

    /// How many notices are pending and how many dead (the status index).
    pub async fn count_pending_dead(&self) -> anyhow::Result<(u64, u64)> {
        let (pending, dead) = on_pool!(self, count_pending_dead())
            .context("failed to count pending and dead notices")?;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok((count(pending), count(dead)))
    }

    /// The status of a notice (None when the ledger has no such notice).
    pub async fn status_of(&self, id: &str) -> anyhow::Result<Option<Status>> {
        let v = on_pool!(self, status_of(id)).context("failed to read a notice's status")?;
        Ok(v.as_deref().and_then(Status::parse))
    }

    /// When a notice last went out to this recipient (for the per-recipient limit).
    pub async fn last_sent_to(&self, recipient: &str) -> anyhow::Result<Option<DateTime<Utc>>> {
        let v = on_pool!(self, last_sent_to(recipient))
            .context("failed to read the last notice to a recipient")?;
        Ok(v.map(from_ms))
    }
}

fn fenced_unless(rows: u64) -> Recorded {
    if rows == 0 {
        Recorded::Fenced
    } else {
        Recorded::Done
    }
}
