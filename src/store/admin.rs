//! What the operator commands read and change: the notice list, retries,
//! suppressions.

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{NoticeFilter, NoticeRow, Store, Suppression, ms};

impl Store {
    pub async fn list(&self, filter: &NoticeFilter) -> anyhow::Result<Vec<NoticeRow>> {
        let rows = sqlx::query(self.sql("SELECT id, ticket_id, policy, number, max_notices, status, attempts, due_at, send_at, next_attempt_at,
                    sent_at, last_error, channel, recipient, dry_run, next_notice_at, cancel_reason, episode, ticket
             FROM notices
             WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR ticket_id = ?2)
             ORDER BY created_at,
               CASE WHEN ticket_id <> '' AND ltrim(ticket_id, '0123456789') = '' THEN 0 ELSE 1 END,
               CASE WHEN ticket_id <> '' AND ltrim(ticket_id, '0123456789') = '' THEN length(ltrim(ticket_id, '0')) ELSE 0 END,
               ltrim(ticket_id, '0'), ticket_id, policy, number"))
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

    /// The ticket id a `--ticket` value names among the stored tickets: the
    /// id itself, or the ticket whose stored `number` it is (see
    /// [`crate::ticket::resolve`]). The value as given when none matches;
    /// the error text when several do.
    pub async fn resolve_ticket(&self, wanted: &str) -> anyhow::Result<Result<String, String>> {
        // A coarse filter on the stored JSON (ASCII numbers as serde writes
        // them); the exact comparison is done on the parsed ticket.
        let bare = wanted.trim().trim_start_matches('#');
        let json = serde_json::to_string(bare).unwrap_or_default();
        let pattern = match bare.is_ascii() && !bare.is_empty() {
            true => format!(
                "%\"number\":%{}%",
                json.trim_matches('"')
                    .to_ascii_lowercase()
                    .replace(['%', '_'], "")
            ),
            false => "%".to_owned(),
        };
        let rows = sqlx::query(self.sql(
            "SELECT DISTINCT ticket_id, ticket FROM notices
             WHERE ticket_id = ?1 OR ticket_id = ?2 OR lower(ticket) LIKE ?3",
        ))
        .bind(wanted)
        .bind(wanted.strip_prefix("id:").unwrap_or(wanted))
        .bind(pattern)
        .fetch_all(&self.pool)
        .await
        .context("failed to look up the ticket")?;
        let found: Vec<(String, Option<String>)> = rows
            .iter()
            .map(|r| {
                let json: String = r.try_get("ticket").unwrap_or_default();
                let id: String = r.try_get("ticket_id").unwrap_or_default();
                (id, super::rows::stored_number(&json))
            })
            .collect();
        Ok(crate::ticket::resolve(
            wanted,
            found.iter().map(|(id, n)| (id.as_str(), n.as_deref())),
        )
        .map(|id| id.unwrap_or_else(|| wanted.strip_prefix("id:").unwrap_or(wanted).to_owned())))
    }

    /// Puts dead notices back to pending as the next notice of their series,
    /// due now with a fresh retry window, so that every pre-send check
    /// applies to them again. A notice is refused (with the reason) when it
    /// is not dead, when its wait has ended, or when a later notice of its
    /// series already went out; a later notice still pending is cancelled
    /// (it follows the retried one).
    pub async fn retry(
        &self,
        ids: &[String],
        now: DateTime<Utc>,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let mut refused = Vec::new();
        for id in ids {
            if let Err(reason) = self
                .retry_one(id, now)
                .await
                .with_context(|| format!("failed to retry notice {id}"))?
            {
                refused.push((id.clone(), reason));
            }
        }
        Ok(refused)
    }

    async fn retry_one(&self, id: &str, now: DateTime<Utc>) -> anyhow::Result<Result<(), String>> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(self.sql(
            "SELECT n.status, n.number, n.ticket_id, n.policy, n.episode, n.dry_run, s.active
             FROM notices n LEFT JOIN series s ON s.ticket_id = n.ticket_id AND s.policy = n.policy
                  AND s.episode = n.episode AND s.dry_run = n.dry_run
             WHERE n.id = ?1",
        ))
        .bind(id)
        .fetch_optional(tx.conn())
        .await?;
        let Some(row) = row else {
            return Ok(Err("no such notice".into()));
        };
        let status: String = row.try_get(0)?;
        if status != "dead" {
            return Ok(Err(format!("it is {status}, not dead")));
        }
        let number: i64 = row.try_get(1)?;
        let (ticket_id, policy): (String, String) = (row.try_get(2)?, row.try_get(3)?);
        let (episode, dry_run): (i64, i64) = (row.try_get(4)?, row.try_get(5)?);
        if row.try_get::<Option<i64>, _>(6)? != Some(1) {
            return Ok(Err(format!(
                "the wait it belongs to has ended (ticket {ticket_id} no longer waits under policy {policy})"
            )));
        }
        let later = sqlx::query(self.sql(
            "SELECT id, number, status, claim_until FROM notices
             WHERE ticket_id = ?1 AND policy = ?2 AND episode = ?3 AND dry_run = ?4 AND number > ?5",
        ))
        .bind(&ticket_id)
        .bind(&policy)
        .bind(episode)
        .bind(dry_run)
        .bind(number)
        .fetch_all(tx.conn())
        .await?;
        let mut superseded = Vec::new();
        for r in &later {
            let (later_id, later_number, later_status): (String, i64, String) =
                (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
            match later_status.as_str() {
                "cancelled" => {}
                "pending" => {
                    if r.try_get::<Option<i64>, _>(3)?
                        .is_some_and(|until| until >= ms(now))
                    {
                        return Ok(Err(format!(
                            "notice {later_number} of its series is being sent right now; try again in a moment"
                        )));
                    }
                    superseded.push(later_id);
                }
                other => {
                    return Ok(Err(format!(
                        "notice {later_number} of its series is already {other}; retrying would repeat an older notice"
                    )));
                }
            }
        }
        for later_id in &superseded {
            sqlx::query(self.sql(
                "UPDATE notices SET status = 'cancelled', cancel_reason = ?2, finished_at = ?3, updated_at = ?3,
                        claimed_by = NULL, claim_until = NULL
                 WHERE id = ?1 AND status = 'pending'",
            ))
            .bind(later_id)
            .bind(format!("notice {number} was retried and goes first"))
            .bind(ms(now))
            .execute(tx.conn())
            .await?;
        }
        sqlx::query(self.sql(
            "UPDATE notices SET status = 'pending', attempts = 0, next_attempt_at = ?2, first_attempt_at = NULL,
                    finished_at = NULL, claimed_by = NULL, claim_until = NULL, updated_at = ?2
             WHERE id = ?1 AND status = 'dead'",
        ))
        .bind(id)
        .bind(ms(now))
        .execute(tx.conn())
        .await?;
        sqlx::query(self.sql(
            "UPDATE series SET done = ?5, next_id = ?6
             WHERE ticket_id = ?1 AND policy = ?2 AND episode = ?3 AND dry_run = ?4",
        ))
        .bind(&ticket_id)
        .bind(&policy)
        .bind(episode)
        .bind(dry_run)
        .bind(number.saturating_sub(1).max(0))
        .bind(id)
        .execute(tx.conn())
        .await?;
        self.announce_plans(tx.conn()).await?;
        tx.commit().await?;
        Ok(Ok(()))
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
