//! The delivery side of the ledger: claims with a lease, results, retries.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;

use super::{Backend, ClaimedNotice, Store, from_ms, ms};
use crate::notice::Status;

const CLAIM_SQL: &str = "UPDATE notices SET claimed_by = ?1, claim_until = ?2
     WHERE id IN (SELECT id FROM notices
                  WHERE status = 'pending' AND channel = ?3 AND next_attempt_at <= ?4
                    AND (claim_until IS NULL OR claim_until < ?4)
                  ORDER BY next_attempt_at LIMIT ?5)
     RETURNING id, ticket_id, policy, episode, dry_run, number, max_notices, channel, recipient,
               due_at, send_at, attempts, first_attempt_at, ticket";

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

    /// Claims up to `limit` due notices of a channel with a lease, in one
    /// short statement. The send happens outside any transaction.
    pub async fn claim_due(
        &self,
        channel: &str,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
        instance: &str,
    ) -> anyhow::Result<Vec<ClaimedNotice>> {
        let until = now + chrono::Duration::from_std(lease).unwrap_or_default();
        // On PostgreSQL, instances skip each other's locked rows instead of
        // waiting for them.
        let sql = match self.backend {
            Backend::Sqlite => self.sql(CLAIM_SQL),
            Backend::Postgres => AssertSqlSafe(
                CLAIM_SQL
                    .replace("LIMIT ?5", "LIMIT ?5 FOR UPDATE SKIP LOCKED")
                    .replace('?', "$"),
            ),
        };
        let rows = sqlx::query(sql)
            .bind(instance)
            .bind(ms(until))
            .bind(channel)
            .bind(ms(now))
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .with_context(|| format!("failed to claim due notices of channel {channel}"))?;
        rows.iter()
            .map(ClaimedNotice::from_row)
            .collect::<Result<_, _>>()
            .context("failed to read claimed notices")
    }

    /// The notice's status as the latest plan left it (the pre-send check).
    pub async fn status_of(&self, id: &str) -> anyhow::Result<Option<Status>> {
        let v: Option<String> =
            sqlx::query_scalar(self.sql("SELECT status FROM notices WHERE id = ?1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .context("failed to read a notice's status")?;
        Ok(v.as_deref().and_then(Status::parse))
    }

    /// Records a delivered (or dry-run) notice and advances its series.
    pub async fn record_done(
        &self,
        n: &ClaimedNotice,
        status: Status,
        attempt_started: DateTime<Utc>,
        finished: DateTime<Utc>,
        next_notice_at: Option<DateTime<Utc>>,
        error: Option<&str>,
    ) -> anyhow::Result<()> {
        let mut tx = self.begin_write().await?;
        let sent_at = matches!(status, Status::Sent | Status::DryRun).then_some(ms(finished));
        sqlx::query(self.sql("UPDATE notices SET status = ?2, attempts = attempts + CASE WHEN ?2 = 'suppressed' THEN 0 ELSE 1 END, first_attempt_at = COALESCE(first_attempt_at, ?3),
                    last_attempt_at = ?3, sent_at = ?4, finished_at = ?5, next_notice_at = ?6, last_error = COALESCE(?7, last_error),
                    claimed_by = NULL, claim_until = NULL, updated_at = ?5
             WHERE id = ?1"))
        .bind(&n.id)
        .bind(status.as_str())
        .bind(ms(attempt_started))
        .bind(sent_at)
        .bind(ms(finished))
        .bind(next_notice_at.map(ms))
        .bind(error)
        .execute(tx.conn())
        .await?;
        // The next notice is spaced from when this one's final attempt began.
        sqlx::query(self.sql(
            "UPDATE series SET done = ?5, last_ref_at = ?6, next_id = NULL
             WHERE ticket_id = ?1 AND policy = ?2 AND episode = ?3 AND dry_run = ?4 AND done < ?5",
        ))
        .bind(&n.ticket_id)
        .bind(&n.policy)
        .bind(ms(n.episode))
        .bind(i64::from(n.dry_run))
        .bind(n.number as i64)
        .bind(ms(attempt_started))
        .execute(tx.conn())
        .await?;
        tx.commit()
            .await
            .with_context(|| format!("failed to record notice {}", n.id))?;
        Ok(())
    }

    /// Records a failed attempt that will be retried at `next_attempt`.
    pub async fn record_retry(
        &self,
        n: &ClaimedNotice,
        attempt_started: DateTime<Utc>,
        next_attempt: DateTime<Utc>,
        error: &str,
    ) -> anyhow::Result<()> {
        sqlx::query(self.sql("UPDATE notices SET attempts = attempts + 1, first_attempt_at = COALESCE(first_attempt_at, ?2), last_attempt_at = ?2,
                    next_attempt_at = ?3, last_error = ?4, claimed_by = NULL, claim_until = NULL, updated_at = ?2
             WHERE id = ?1 AND status = 'pending'"))
        .bind(&n.id)
        .bind(ms(attempt_started))
        .bind(ms(next_attempt))
        .bind(error)
        .execute(&self.pool)
        .await
        .with_context(|| format!("failed to record a retry of notice {}", n.id))?;
        Ok(())
    }

    /// Gives a claim back without an attempt (e.g. outside the send window,
    /// or shutting down before the send began).
    pub async fn release(
        &self,
        id: &str,
        next_attempt: Option<DateTime<Utc>>,
    ) -> anyhow::Result<()> {
        sqlx::query(self.sql("UPDATE notices SET claimed_by = NULL, claim_until = NULL, next_attempt_at = COALESCE(?2, next_attempt_at)
             WHERE id = ?1 AND status = 'pending'"))
        .bind(id)
        .bind(next_attempt.map(ms))
        .execute(&self.pool)
        .await
        .with_context(|| format!("failed to release notice {id}"))?;
        Ok(())
    }

    /// Cancels a pending notice (the pre-send re-check found the wait over).
    pub async fn cancel(&self, id: &str, reason: &str, now: DateTime<Utc>) -> anyhow::Result<()> {
        sqlx::query(self.sql("UPDATE notices SET status = 'cancelled', cancel_reason = ?2, finished_at = ?3, updated_at = ?3,
                    claimed_by = NULL, claim_until = NULL
             WHERE id = ?1 AND status = 'pending'"))
        .bind(id)
        .bind(reason)
        .bind(ms(now))
        .execute(&self.pool)
        .await
        .with_context(|| format!("failed to cancel notice {id}"))?;
        Ok(())
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
