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

use sqlx::AnyConnection;

use super::group::Work;
use super::{Backend, ClaimedNotice, Store, WriteTx, from_ms, ms};
use crate::ledger::{Outcome, PlannedNotice, Recorded};
use crate::notice::Status;

const CLAIMED_COLUMNS: &str =
    "id, ticket_id, policy, episode, dry_run, number, max_notices, channel, recipient,
               due_at, send_at, attempts, first_attempt_at, ticket, ticket_hash, claim_token";

/// The database's clock in Unix milliseconds (PostgreSQL).
pub(super) const PG_NOW_MS: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";

fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// A restarted daemon takes back its unfinished claims at once: with
    /// SQLite it is the only daemon, so every claim was its own. (On
    /// PostgreSQL a dead instance's claims end with their lease.)
    pub async fn release_all_claims(&self) -> anyhow::Result<u64> {
        if self.backend == Backend::Postgres {
            return Ok(0);
        }
        let done = sqlx::query(self.sql(
            "UPDATE notices SET claimed_by = NULL, claim_until = NULL WHERE claimed_by IS NOT NULL",
        ))
        .execute(&self.pool)
        .await
        .context("failed to release claims")?;
        Ok(done.rows_affected())
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
        let query = match self.backend {
            Backend::Sqlite => sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE notices SET claimed_by = ?1, claim_until = ?2, claim_token = claim_token + 1
                 WHERE id IN (SELECT id FROM notices
                              WHERE status = 'pending' AND channel = ?3 AND dry_run = ?6 AND next_attempt_at <= ?4
                                AND (claim_until IS NULL OR claim_until < ?4)
                              ORDER BY next_attempt_at LIMIT ?5)
                 RETURNING {CLAIMED_COLUMNS}"
            )))
            .bind(instance)
            .bind(ms(now).saturating_add(lease_ms(lease))),
            // Instances skip each other's locked rows instead of waiting.
            Backend::Postgres => sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE notices SET claimed_by = $1, claim_until = {PG_NOW_MS} + $2, claim_token = claim_token + 1
                 WHERE id IN (SELECT id FROM notices
                              WHERE status = 'pending' AND channel = $3 AND dry_run = $6 AND next_attempt_at <= $4
                                AND (claim_until IS NULL OR claim_until < {PG_NOW_MS})
                              ORDER BY next_attempt_at LIMIT $5 FOR UPDATE SKIP LOCKED)
                 RETURNING {CLAIMED_COLUMNS}"
            )))
            .bind(instance)
            .bind(lease_ms(lease)),
        };
        let rows = query
            .bind(channel)
            .bind(ms(now))
            .bind(limit)
            .bind(i64::from(dry_run))
            .fetch_all(&self.pool)
            .await
            .with_context(|| format!("failed to claim due notices of channel {channel}"))?;
        rows.iter()
            .map(ClaimedNotice::from_row)
            .collect::<Result<_, _>>()
            .context("failed to read claimed notices")
    }

    /// Extends a claim's lease while its send runs. False when the claim is
    /// no longer ours (taken over, or the notice was cancelled meanwhile).
    pub async fn renew(
        &self,
        n: &ClaimedNotice,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> anyhow::Result<bool> {
        let query = match self.backend {
            Backend::Sqlite => sqlx::query(self.sql(
                "UPDATE notices SET claim_until = ?3
                 WHERE id = ?1 AND claim_token = ?2 AND claimed_by IS NOT NULL AND status = 'pending'",
            ))
            .bind(&n.id)
            .bind(n.claim_token)
            .bind(ms(now).saturating_add(lease_ms(lease))),
            Backend::Postgres => sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE notices SET claim_until = {PG_NOW_MS} + $3
                 WHERE id = $1 AND claim_token = $2 AND claimed_by IS NOT NULL AND status = 'pending'"
            )))
            .bind(&n.id)
            .bind(n.claim_token)
            .bind(lease_ms(lease)),
        };
        let done = query
            .execute(&self.pool)
            .await
            .with_context(|| format!("failed to renew the claim of notice {}", n.id))?;
        Ok(done.rows_affected() == 1)
    }

    /// When the series of a claimed notice last really sent (for spacing
    /// the next notice after one that did not go out).
    pub async fn series_last_sent(
        &self,
        n: &ClaimedNotice,
    ) -> anyhow::Result<Option<DateTime<Utc>>> {
        let v: Option<Option<i64>> = sqlx::query_scalar(self.sql(
            "SELECT last_sent_at FROM series WHERE ticket_id = ?1 AND policy = ?2 AND episode = ?3 AND dry_run = ?4",
        ))
        .bind(&n.ticket_id)
        .bind(&n.policy)
        .bind(ms(n.episode))
        .bind(i64::from(n.dry_run))
        .fetch_optional(&self.pool)
        .await
        .context("failed to read a series")?;
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
        let statuses = if sent {
            "('pending', 'cancelled')"
        } else {
            "('pending')"
        };
        let sql = format!(
            "UPDATE notices SET status = ?2, attempts = attempts + CASE WHEN ?2 = 'suppressed' THEN 0 ELSE 1 END,
                    first_attempt_at = COALESCE(first_attempt_at, ?3), last_attempt_at = ?3, sent_at = ?4,
                    finished_at = ?5, next_notice_at = ?6, last_error = COALESCE(?7, last_error),
                    cancel_reason = CASE WHEN ?2 = 'cancelled' THEN cancel_reason ELSE NULL END,
                    claimed_by = NULL, claim_until = NULL, updated_at = ?5
             WHERE id = ?1 AND claim_token = ?8 AND status IN {statuses}"
        );
        let done = sqlx::query(self.sql_owned(sql))
            .bind(&n.id)
            .bind(outcome.status.as_str())
            .bind(ms(outcome.attempt_started))
            .bind(sent.then_some(ms(outcome.finished)))
            .bind(ms(outcome.finished))
            .bind(outcome.next_notice_at.map(ms))
            .bind(outcome.error)
            .bind(n.claim_token)
            .execute(tx.conn())
            .await?;
        if done.rows_affected() == 0 {
            return Ok(Recorded::Fenced);
        }
        // Only a real send restarts the spacing clock.
        let active: Option<i64> = sqlx::query_scalar(self.sql(
            "UPDATE series SET done = ?5, last_sent_at = COALESCE(?6, last_sent_at), next_id = NULL
             WHERE ticket_id = ?1 AND policy = ?2 AND episode = ?3 AND dry_run = ?4 AND done < ?5
             RETURNING active",
        ))
        .bind(&n.ticket_id)
        .bind(&n.policy)
        .bind(ms(n.episode))
        .bind(i64::from(n.dry_run))
        .bind(i64::from(n.number))
        .bind(sent.then_some(ms(outcome.attempt_started)))
        .fetch_optional(tx.conn())
        .await?;
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

    /// The statement of [`record_retry`](Self::record_retry), on `conn`.
    pub(super) async fn record_retry_on(
        &self,
        conn: &mut AnyConnection,
        n: &ClaimedNotice,
        attempt_started: DateTime<Utc>,
        next_attempt: DateTime<Utc>,
        send_at: DateTime<Utc>,
        error: &str,
    ) -> anyhow::Result<Recorded> {
        let done = sqlx::query(self.sql("UPDATE notices SET attempts = attempts + 1, first_attempt_at = COALESCE(first_attempt_at, ?2), last_attempt_at = ?2,
                    next_attempt_at = ?3, send_at = ?4, last_error = ?5, claimed_by = NULL, claim_until = NULL, updated_at = ?2
             WHERE id = ?1 AND claim_token = ?6 AND status = 'pending'"))
        .bind(&n.id)
        .bind(ms(attempt_started))
        .bind(ms(next_attempt))
        .bind(ms(send_at))
        .bind(error)
        .bind(n.claim_token)
        .execute(conn)
        .await
        .with_context(|| format!("failed to record a retry of notice {}", n.id))?;
        Ok(fenced_unless(done.rows_affected()))
    }

    /// Gives a claim back without an attempt (outside the send window, held
    /// by a limit, shutting down before the send began). `next_attempt` and
    /// `send_at` move the notice when given.
    pub async fn release(
        &self,
        n: &ClaimedNotice,
        next_attempt: Option<DateTime<Utc>>,
        send_at: Option<DateTime<Utc>>,
    ) -> anyhow::Result<Recorded> {
        let done = sqlx::query(self.sql(
            "UPDATE notices SET claimed_by = NULL, claim_until = NULL,
                    next_attempt_at = COALESCE(?3, next_attempt_at), send_at = COALESCE(?4, send_at)
             WHERE id = ?1 AND claim_token = ?2 AND status = 'pending'",
        ))
        .bind(&n.id)
        .bind(n.claim_token)
        .bind(next_attempt.map(ms))
        .bind(send_at.map(ms))
        .execute(&self.pool)
        .await
        .with_context(|| format!("failed to release notice {}", n.id))?;
        Ok(fenced_unless(done.rows_affected()))
    }

    /// Cancels a claimed notice (a pre-send check found it must not go out).
    pub async fn cancel_claimed(
        &self,
        n: &ClaimedNotice,
        reason: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Recorded> {
        let done = sqlx::query(self.sql("UPDATE notices SET status = 'cancelled', cancel_reason = ?3, finished_at = ?4, updated_at = ?4,
                    claimed_by = NULL, claim_until = NULL
             WHERE id = ?1 AND claim_token = ?2 AND status = 'pending'"))
        .bind(&n.id)
        .bind(n.claim_token)
        .bind(reason)
        .bind(ms(now))
        .execute(&self.pool)
        .await
        .with_context(|| format!("failed to cancel notice {}", n.id))?;
        Ok(fenced_unless(done.rows_affected()))
    }

    /// The earliest next attempt of any pending notice (live or dry run).
    pub async fn next_due(&self, dry_run: bool) -> anyhow::Result<Option<DateTime<Utc>>> {
        let v: Option<i64> = sqlx::query_scalar(self.sql(
            "SELECT MIN(next_attempt_at) FROM notices WHERE status = 'pending' AND dry_run = ?1",
        ))
        .bind(i64::from(dry_run))
        .fetch_one(&self.pool)
        .await
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
        let lease_end = match self.backend {
            Backend::Sqlite => "?3".to_owned(),
            Backend::Postgres => PG_NOW_MS.to_owned(),
        };
        let query = format!(
            "SELECT next_attempt_at FROM notices
             WHERE status = 'pending' AND channel = ?1 AND dry_run = ?2
               AND (claim_until IS NULL OR claim_until < {lease_end})
             ORDER BY next_attempt_at LIMIT 1"
        );
        let mut query = sqlx::query_scalar(self.sql_owned(query))
            .bind(channel)
            .bind(i64::from(dry_run));
        if self.backend == Backend::Sqlite {
            query = query.bind(ms(now));
        }
        let v: Option<i64> = query
            .fetch_optional(&self.pool)
            .await
            .with_context(|| format!("failed to read the next due notice of channel {channel}"))?;
        Ok(v.map(from_ms))
    }

    /// How many notices are pending and how many dead (the status index).
    pub async fn count_pending_dead(&self) -> anyhow::Result<(u64, u64)> {
        let rows: Vec<(String, i64)> = sqlx::query_as(self.sql(
            "SELECT status, COUNT(*) FROM notices WHERE status IN ('pending', 'dead') GROUP BY status",
        ))
        .fetch_all(&self.pool)
        .await
        .context("failed to count pending and dead notices")?;
        let of = |status: &str| {
            rows.iter()
                .find(|(s, _)| s == status)
                .map_or(0, |(_, n)| u64::try_from(*n).unwrap_or(0))
        };
        Ok((of("pending"), of("dead")))
    }

    /// The status of a notice (None when the ledger has no such notice).
    pub async fn status_of(&self, id: &str) -> anyhow::Result<Option<Status>> {
        let v: Option<String> =
            sqlx::query_scalar(self.sql("SELECT status FROM notices WHERE id = ?1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .context("failed to read a notice's status")?;
        Ok(v.as_deref().and_then(Status::parse))
    }

    /// When a notice last went out to this recipient (for the per-recipient limit).
    pub async fn last_sent_to(&self, recipient: &str) -> anyhow::Result<Option<DateTime<Utc>>> {
        let v: Option<i64> = sqlx::query_scalar(
            self.sql("SELECT MAX(sent_at) FROM notices WHERE status = 'sent' AND recipient = ?1"),
        )
        .bind(recipient)
        .fetch_one(&self.pool)
        .await
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
