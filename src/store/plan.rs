//! The planning side of the ledger: series, plans, polls, the watermark.

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, Row};

use super::{Store, WriteTx, from_ms, ms};
use crate::notice::{SeriesKey, Status};
use crate::planner::{NextNotice, Plan, SeriesState};

const SERIES_SELECT: &str = "SELECT s.ticket_id, s.policy, s.episode, s.done, s.last_ref_at,
            n.id, n.number, n.status, n.due_at, n.send_at, n.ticket_hash
     FROM series s LEFT JOIN notices n ON n.id = s.next_id";

fn series_from_row(r: &sqlx::any::AnyRow) -> Result<SeriesState, sqlx::Error> {
    let next = match r.try_get::<Option<String>, _>(5)? {
        Some(id) => Some(NextNotice {
            id,
            number: r.try_get::<i64, _>(6)? as u32,
            status: Status::parse(&r.try_get::<String, _>(7)?).unwrap_or(Status::Pending),
            due_at: from_ms(r.try_get(8)?),
            send_at: from_ms(r.try_get(9)?),
            ticket_hash: r.try_get(10)?,
        }),
        None => None,
    };
    Ok(SeriesState {
        key: SeriesKey {
            ticket_id: r.try_get(0)?,
            policy: r.try_get(1)?,
            episode: from_ms(r.try_get(2)?),
        },
        done: r.try_get::<i64, _>(3)? as u32,
        last_ref_at: r.try_get::<Option<i64>, _>(4)?.map(from_ms),
        next,
    })
}

impl Store {
    pub async fn last_poll_at(&self) -> anyhow::Result<Option<DateTime<Utc>>> {
        let row = sqlx::query(self.sql("SELECT value FROM meta WHERE key = 'last_poll_at'"))
            .fetch_optional(&self.pool)
            .await
            .context("failed to read the last poll time")?;
        Ok(row
            .and_then(|r| r.get::<String, _>(0).parse::<i64>().ok())
            .map(from_ms))
    }

    /// The ledger's view of every current series (for one mode: live or dry run).
    pub async fn load_series(&self, dry_run: bool) -> anyhow::Result<Vec<SeriesState>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "{SERIES_SELECT} WHERE s.dry_run = {}",
            i64::from(dry_run)
        )))
        .fetch_all(&self.pool)
        .await
        .context("failed to load series")?;
        rows.iter()
            .map(series_from_row)
            .collect::<Result<_, sqlx::Error>>()
            .context("failed to read series")
    }

    /// The series of some tickets only (an incremental poll's).
    pub async fn load_series_for(
        &self,
        dry_run: bool,
        ticket_ids: &[&str],
    ) -> anyhow::Result<Vec<SeriesState>> {
        let mut out = Vec::new();
        for chunk in ticket_ids.chunks(500) {
            let params: Vec<String> = (1..=chunk.len()).map(|i| self.placeholder(i)).collect();
            let sql = format!(
                "{SERIES_SELECT} WHERE s.dry_run = {} AND s.ticket_id IN ({})",
                i64::from(dry_run),
                params.join(", ")
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(*id);
            }
            let rows = query
                .fetch_all(&self.pool)
                .await
                .context("failed to load series")?;
            for row in &rows {
                out.push(series_from_row(row).context("failed to read series")?);
            }
        }
        Ok(out)
    }

    /// The source watermark: the newest `updated_at` seen by a poll.
    pub async fn source_watermark(&self) -> anyhow::Result<Option<DateTime<Utc>>> {
        let row = sqlx::query(self.sql("SELECT value FROM meta WHERE key = 'source_watermark'"))
            .fetch_optional(&self.pool)
            .await
            .context("failed to read the source watermark")?;
        Ok(row
            .and_then(|r| r.get::<String, _>(0).parse::<i64>().ok())
            .map(from_ms))
    }

    /// Applies a plan in one transaction and records the poll time.
    pub async fn apply_plan(
        &self,
        plan: &Plan,
        dry_run: bool,
        now: DateTime<Utc>,
        watermark: Option<DateTime<Utc>>,
    ) -> anyhow::Result<()> {
        self.apply(plan, dry_run, now, Some(watermark)).await
    }

    /// Applies the plan of one chunk of a poll (the poll's time is written
    /// by [`finish_poll`](Self::finish_poll) once every chunk is in).
    pub async fn apply_chunk(
        &self,
        plan: &Plan,
        dry_run: bool,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        self.apply(plan, dry_run, now, None).await
    }

    /// Ends a poll: with `seen` (the ids a full poll returned) the series of
    /// tickets it did not return end and their pending notices are
    /// cancelled (returned for the log); then records the poll time and
    /// the watermark. Reading the series' ticket ids costs less than
    /// marking every seen series on every poll.
    pub async fn finish_poll(
        &self,
        dry_run: bool,
        now: DateTime<Utc>,
        seen: Option<&std::collections::HashSet<Box<str>>>,
        watermark: Option<DateTime<Utc>>,
    ) -> anyhow::Result<Vec<(String, String, String)>> {
        let mut absent: Vec<String> = Vec::new();
        if let Some(seen) = seen {
            let ids: Vec<String> = sqlx::query_scalar(
                self.sql("SELECT DISTINCT ticket_id FROM series WHERE dry_run = ?1"),
            )
            .bind(i64::from(dry_run))
            .fetch_all(&self.pool)
            .await
            .context("failed to read the tracked tickets")?;
            absent = ids
                .into_iter()
                .filter(|id| !seen.contains(id.as_str()))
                .collect();
        }
        let mut tx = self
            .begin_write()
            .await
            .context("failed to begin the poll transaction")?;
        let mut cancelled = Vec::new();
        for chunk in absent.chunks(500) {
            let params: Vec<String> = (3..chunk.len() + 3).map(|i| self.placeholder(i)).collect();
            let list = params.join(", ");
            let sql = format!(
                "UPDATE notices SET status = 'cancelled', cancel_reason = 'the ticket is no longer waiting',
                        finished_at = {now}, updated_at = {now}, claimed_by = NULL, claim_until = NULL
                 WHERE status = 'pending'
                   AND id IN (SELECT next_id FROM series WHERE dry_run = {dry} AND next_id IS NOT NULL AND ticket_id IN ({list}))
                 RETURNING id, ticket_id, policy",
                now = self.placeholder(1),
                dry = self.placeholder(2),
            );
            let mut query = sqlx::query(AssertSqlSafe(sql))
                .bind(ms(now))
                .bind(i64::from(dry_run));
            for id in chunk {
                query = query.bind(id.as_str());
            }
            for r in &query.fetch_all(tx.conn()).await? {
                cancelled.push((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?));
            }
            let params: Vec<String> = (2..chunk.len() + 2).map(|i| self.placeholder(i)).collect();
            let sql = format!(
                "DELETE FROM series WHERE dry_run = {} AND ticket_id IN ({})",
                self.placeholder(1),
                params.join(", ")
            );
            let mut query = sqlx::query(AssertSqlSafe(sql)).bind(i64::from(dry_run));
            for id in chunk {
                query = query.bind(id.as_str());
            }
            query.execute(tx.conn()).await?;
        }
        self.write_poll_meta(&mut tx, now, watermark).await?;
        tx.commit().await.context("failed to commit the poll")?;
        Ok(cancelled)
    }

    async fn write_poll_meta(
        &self,
        tx: &mut WriteTx,
        now: DateTime<Utc>,
        watermark: Option<DateTime<Utc>>,
    ) -> anyhow::Result<()> {
        sqlx::query(self.sql("INSERT INTO meta (key, value) VALUES ('last_poll_at', ?1) ON CONFLICT (key) DO UPDATE SET value = excluded.value"))
            .bind(ms(now).to_string())
            .execute(tx.conn())
            .await?;
        if let Some(watermark) = watermark {
            sqlx::query(self.sql("INSERT INTO meta (key, value) VALUES ('source_watermark', ?1) ON CONFLICT (key) DO UPDATE SET value = excluded.value"))
                .bind(ms(watermark).to_string())
                .execute(tx.conn())
                .await?;
        }
        Ok(())
    }

    /// One transaction: new series, cancels, ended series, upserts, and
    /// (a whole poll at once) the poll's time and watermark.
    async fn apply(
        &self,
        plan: &Plan,
        dry_run: bool,
        now: DateTime<Utc>,
        meta: Option<Option<DateTime<Utc>>>,
    ) -> anyhow::Result<()> {
        let mut tx = self
            .begin_write()
            .await
            .context("failed to begin the plan transaction")?;
        let now_ms = ms(now);
        for key in &plan.new_series {
            sqlx::query(self.sql("INSERT INTO series (ticket_id, policy, episode, dry_run) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING"))
                .bind(&key.ticket_id)
                .bind(&key.policy)
                .bind(ms(key.episode))
                .bind(i64::from(dry_run))
                .execute(tx.conn())
                .await?;
        }
        for cancel in &plan.cancels {
            sqlx::query(self.sql("UPDATE notices SET status = 'cancelled', cancel_reason = ?2, finished_at = ?3, updated_at = ?3,
                        claimed_by = NULL, claim_until = NULL
                 WHERE id = ?1 AND status = 'pending'"))
            .bind(&cancel.id)
            .bind(&cancel.reason)
            .bind(now_ms)
            .execute(tx.conn())
            .await?;
        }
        for key in &plan.ended_series {
            sqlx::query(self.sql("DELETE FROM series WHERE ticket_id = ?1 AND policy = ?2 AND episode = ?3 AND dry_run = ?4"))
                .bind(&key.ticket_id)
                .bind(&key.policy)
                .bind(ms(key.episode))
                .bind(i64::from(dry_run))
                .execute(tx.conn())
                .await?;
        }
        for n in &plan.upserts {
            // A pending notice follows the plan (a changed threshold moves
            // it) unless a retry is scheduled; a cancelled one comes back
            // when its ticket matches again. Ended notices never change.
            sqlx::query(self.sql("INSERT INTO notices (id, ticket_id, policy, episode, dry_run, number, max_notices, status, channel,
                                      recipient, due_at, send_at, next_attempt_at, ticket, created_at, updated_at, ticket_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?9, ?10, ?11, ?11, ?12, ?13, ?13, ?14)
                 ON CONFLICT (id) DO UPDATE SET
                    max_notices = excluded.max_notices, channel = excluded.channel, recipient = excluded.recipient,
                    due_at = excluded.due_at, send_at = excluded.send_at, ticket = excluded.ticket, ticket_hash = excluded.ticket_hash,
                    next_attempt_at = CASE WHEN notices.status = 'cancelled' OR notices.attempts = 0
                                           THEN excluded.next_attempt_at ELSE notices.next_attempt_at END,
                    attempts = CASE WHEN notices.status = 'cancelled' THEN 0 ELSE notices.attempts END,
                    first_attempt_at = CASE WHEN notices.status = 'cancelled' THEN NULL ELSE notices.first_attempt_at END,
                    cancel_reason = NULL, finished_at = NULL,
                    status = 'pending', updated_at = excluded.updated_at
                 WHERE notices.status IN ('pending', 'cancelled')"))
            .bind(&n.id)
            .bind(&n.key.ticket_id)
            .bind(&n.key.policy)
            .bind(ms(n.key.episode))
            .bind(i64::from(dry_run))
            .bind(n.number as i64)
            .bind(n.max_notices as i64)
            .bind(&n.channel)
            .bind(&n.recipient)
            .bind(ms(n.due_at))
            .bind(ms(n.send_at))
            .bind(&n.ticket_json)
            .bind(now_ms)
            .bind(n.ticket_hash)
            .execute(tx.conn())
            .await?;
            sqlx::query(self.sql("UPDATE series SET next_id = ?5 WHERE ticket_id = ?1 AND policy = ?2 AND episode = ?3 AND dry_run = ?4"))
                .bind(&n.key.ticket_id)
                .bind(&n.key.policy)
                .bind(ms(n.key.episode))
                .bind(i64::from(dry_run))
                .bind(&n.id)
                .execute(tx.conn())
                .await?;
        }
        if let Some(watermark) = meta {
            self.write_poll_meta(&mut tx, now, watermark).await?;
        }
        tx.commit().await.context("failed to commit the plan")?;
        Ok(())
    }
}
