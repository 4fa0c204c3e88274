//! What the operator commands read and change: the notice list, retries,
//! suppressions.

use anyhow::Context;
use chrono::{DateTime, Utc};

use super::{NoticeFilter, NoticeRow, Store, Suppression, ms};

impl Store {
    pub async fn list(&self, filter: &NoticeFilter) -> anyhow::Result<Vec<NoticeRow>> {
        let rows = sqlx::query(self.sql("SELECT id, ticket_id, policy, number, max_notices, status, attempts, due_at, send_at, next_attempt_at,
                    sent_at, last_error, channel, recipient, dry_run, next_notice_at, cancel_reason, episode, ticket
             FROM notices
             WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR ticket_id = ?2)
             ORDER BY created_at, ticket_id, policy, number"))
        .bind(filter.status.map(|s| s.as_str()))
        .bind(filter.ticket.as_deref())
        .fetch_all(&self.pool)
        .await
        .context("failed to list notices")?;
        rows.iter()
            .map(NoticeRow::from_row)
            .collect::<Result<_, _>>()
            .context("failed to read notices")
    }

    /// Puts dead notices back to pending, due now, with a fresh retry window.
    /// Returns the ids that were not dead (unknown or in another status).
    pub async fn retry(&self, ids: &[String], now: DateTime<Utc>) -> anyhow::Result<Vec<String>> {
        let mut refused = Vec::new();
        for id in ids {
            let done = sqlx::query(self.sql("UPDATE notices SET status = 'pending', next_attempt_at = ?2, first_attempt_at = NULL, finished_at = NULL,
                        updated_at = ?2
                 WHERE id = ?1 AND status = 'dead'"))
            .bind(id)
            .bind(ms(now))
            .execute(&self.pool)
            .await
            .with_context(|| format!("failed to retry notice {id}"))?;
            if done.rows_affected() == 0 {
                refused.push(id.clone());
            }
        }
        Ok(refused)
    }

    /// The stored suppression of an address or its `@domain`, if any.
    pub async fn suppression_of(&self, address: &str) -> anyhow::Result<Option<Suppression>> {
        let address = address.to_lowercase();
        let domain = address
            .rsplit_once('@')
            .map(|(_, d)| format!("@{d}"))
            .unwrap_or_default();
        let row = sqlx::query(self.sql("SELECT address, reason, source, created_at FROM suppressions WHERE address IN (?1, ?2) ORDER BY created_at LIMIT 1"))
            .bind(&address)
            .bind(&domain)
            .fetch_optional(&self.pool)
            .await
            .context("failed to read suppressions")?;
        row.map(|r| Suppression::from_row(&r))
            .transpose()
            .context("failed to read a suppression")
    }

    /// Adds (or updates) a suppression. `address` is an address or `@domain`.
    pub async fn suppress(
        &self,
        address: &str,
        reason: &str,
        source: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        sqlx::query(self.sql("INSERT INTO suppressions (address, reason, source, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (address) DO UPDATE SET reason = excluded.reason, source = excluded.source"))
        .bind(address.to_lowercase())
        .bind(reason)
        .bind(source)
        .bind(ms(now))
        .execute(&self.pool)
        .await
        .context("failed to store a suppression")?;
        Ok(())
    }

    /// Removes a stored suppression; false when there was none.
    pub async fn unsuppress(&self, address: &str) -> anyhow::Result<bool> {
        let done = sqlx::query(self.sql("DELETE FROM suppressions WHERE address = ?1"))
            .bind(address.to_lowercase())
            .execute(&self.pool)
            .await
            .context("failed to remove a suppression")?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn suppressions(&self) -> anyhow::Result<Vec<Suppression>> {
        let rows =
            sqlx::query(self.sql(
                "SELECT address, reason, source, created_at FROM suppressions ORDER BY address",
            ))
            .fetch_all(&self.pool)
            .await
            .context("failed to list suppressions")?;
        rows.iter()
            .map(Suppression::from_row)
            .collect::<Result<_, _>>()
            .context("failed to read suppressions")
    }
}
