//! The planning side of the ledger: series, plans, polls, the watermark.

use std::collections::{BTreeMap, HashSet};

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use sqlx::{AssertSqlSafe, Connection, Executor, Row};

use super::rows::count;
use super::{Backend, Store, WriteTx, from_ms, ms};
use crate::ledger::{ChangedTickets, NextNotice, Plan, PlannedNotice, PollEnd, SeriesState, Swept};
use crate::notice::{SeriesKey, Status};

const SERIES_SELECT: &str = "SELECT s.ticket_id, s.policy, s.episode, s.done, s.last_sent_at, s.active,
            n.id, n.number, n.status, n.due_at, n.send_at, n.ticket_hash, n.channel, n.recipient, n.max_notices
     FROM series s LEFT JOIN notices n ON n.id = s.next_id";

/// Ids bound per statement (SQLite allows 32,766 parameters).
const IDS_PER_STATEMENT: usize = 500;

fn series_from_row(r: &sqlx::any::AnyRow) -> Result<SeriesState, sqlx::Error> {
    let next = match r.try_get::<Option<String>, _>(6)? {
        Some(id) => Some(NextNotice {
            id,
            number: count(r.try_get(7)?),
            status: Status::parse(&r.try_get::<String, _>(8)?).unwrap_or(Status::Pending),
            due_at: from_ms(r.try_get(9)?),
            send_at: from_ms(r.try_get(10)?),
            ticket_hash: r.try_get(11)?,
            channel: r.try_get(12)?,
            recipient: r.try_get(13)?,
            max_notices: count(r.try_get(14)?),
        }),
        None => None,
    };
    Ok(SeriesState {
        key: SeriesKey {
            ticket_id: r.try_get(0)?,
            policy: r.try_get(1)?,
            episode: from_ms(r.try_get(2)?),
        },
        done: count(r.try_get(3)?),
        last_sent_at: r.try_get::<Option<i64>, _>(4)?.map(from_ms),
        active: r.try_get::<i64, _>(5)? != 0,
        stored: true,
        next,
    })
}

impl Store {
    pub async fn last_poll_at(&self) -> anyhow::Result<Option<DateTime<Utc>>> {
        self.meta_instant("last_poll_at")
            .await
            .context("failed to read the last poll time")
    }

    /// The source watermark: the newest `updated_at` seen by a poll, never
    /// later than that poll's start.
    pub async fn source_watermark(&self) -> anyhow::Result<Option<DateTime<Utc>>> {
        self.meta_instant("source_watermark")
            .await
            .context("failed to read the source watermark")
    }

    async fn meta_instant(&self, key: &'static str) -> anyhow::Result<Option<DateTime<Utc>>> {
        let row = sqlx::query(self.sql("SELECT value FROM meta WHERE key = ?1"))
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .and_then(|r| r.try_get::<String, _>(0).ok())
            .and_then(|v| v.parse::<i64>().ok())
            .map(from_ms))
    }

    /// Every series the ledger keeps (for one mode: live or dry run).
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

    /// Every series of some tickets, active or not, all their waits.
    pub async fn load_series_for(
        &self,
        dry_run: bool,
        ticket_ids: &[&str],
    ) -> anyhow::Result<Vec<SeriesState>> {
        let mut out = Vec::new();
        for chunk in ticket_ids.chunks(IDS_PER_STATEMENT) {
            let sql = self.series_for_tickets_sql(dry_run, chunk.len());
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

    /// The states of series the ledger has notices of but no series row
    /// (a wait that came back after its row was removed, a ledger written
    /// by an older version), derived from their notices: the last number
    /// that reached an end, the start of the last real send, the notice
    /// after it. Keys without any notice are left out.
    pub async fn derive_series(
        &self,
        dry_run: bool,
        keys: &[SeriesKey],
    ) -> anyhow::Result<Vec<SeriesState>> {
        let wanted: HashSet<&SeriesKey> = keys.iter().collect();
        let mut ids: Vec<&str> = keys.iter().map(|k| k.ticket_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let sent = if dry_run { "dry_run" } else { "sent" };
        // Each notice of a wanted series, with when its last attempt started.
        type Attempted = (NextNotice, Option<DateTime<Utc>>);
        let mut notices: BTreeMap<SeriesKey, Vec<Attempted>> = BTreeMap::new();
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            let sql = format!(
                "SELECT ticket_id, policy, episode, id, number, status, due_at, send_at, ticket_hash,
                        channel, recipient, max_notices, last_attempt_at
                 FROM notices WHERE dry_run = {} AND ticket_id IN ({})",
                i64::from(dry_run),
                self.placeholders(1, chunk.len())
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(*id);
            }
            let rows = query
                .fetch_all(&self.pool)
                .await
                .context("failed to read the notices of a series")?;
            for r in &rows {
                let key = SeriesKey {
                    ticket_id: r.try_get(0)?,
                    policy: r.try_get(1)?,
                    episode: from_ms(r.try_get(2)?),
                };
                if !wanted.contains(&key) {
                    continue;
                }
                let notice = NextNotice {
                    id: r.try_get(3)?,
                    number: count(r.try_get(4)?),
                    status: Status::parse(&r.try_get::<String, _>(5)?).unwrap_or(Status::Pending),
                    due_at: from_ms(r.try_get(6)?),
                    send_at: from_ms(r.try_get(7)?),
                    ticket_hash: r.try_get(8)?,
                    channel: r.try_get(9)?,
                    recipient: r.try_get(10)?,
                    max_notices: count(r.try_get(11)?),
                };
                let attempt = r.try_get::<Option<i64>, _>(12)?.map(from_ms);
                notices.entry(key).or_default().push((notice, attempt));
            }
        }
        Ok(notices
            .into_iter()
            .map(|(key, rows)| {
                let ended = |s: Status| {
                    matches!(
                        s,
                        Status::Sent | Status::Dead | Status::Suppressed | Status::DryRun
                    )
                };
                let done = rows
                    .iter()
                    .filter(|(n, _)| ended(n.status))
                    .map(|(n, _)| n.number)
                    .max()
                    .unwrap_or(0);
                let last_sent_at = rows
                    .iter()
                    .filter(|(n, _)| n.status.as_str() == sent)
                    .filter_map(|(_, at)| *at)
                    .max();
                let next = rows
                    .into_iter()
                    .map(|(n, _)| n)
                    .find(|n| Some(n.number) == done.checked_add(1));
                SeriesState {
                    key,
                    done,
                    last_sent_at,
                    active: true,
                    stored: false,
                    next,
                }
            })
            .collect())
    }

    /// Tickets with an active series, in id order after `after`, each with
    /// the ticket data stored with its most recently written notice, live or
    /// dry run (both store what the source said): what a reload re-plans
    /// from. That copy can be of an earlier wait than the series; the
    /// caller checks.
    pub async fn active_tickets(
        &self,
        dry_run: bool,
        after: &str,
        limit: usize,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let ids: Vec<String> = sqlx::query_scalar(self.sql(
            "SELECT DISTINCT ticket_id FROM series WHERE dry_run = ?1 AND active = 1 AND ticket_id > ?2
             ORDER BY ticket_id LIMIT ?3",
        ))
        .bind(i64::from(dry_run))
        .bind(after)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .context("failed to read the tickets with active series")?;
        let mut latest: BTreeMap<String, (i64, String)> = BTreeMap::new();
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            let sql = format!(
                "SELECT ticket_id, updated_at, ticket FROM notices WHERE ticket_id IN ({})",
                self.placeholders(1, chunk.len())
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(id.as_str());
            }
            for r in &query
                .fetch_all(&self.pool)
                .await
                .context("failed to read stored tickets")?
            {
                let id: String = r.try_get(0)?;
                let at: i64 = r.try_get(1)?;
                if latest.get(&id).is_none_or(|(seen, _)| *seen < at) {
                    latest.insert(id, (at, r.try_get(2)?));
                }
            }
        }
        Ok(ids
            .into_iter()
            .map(|id| {
                let json = latest.remove(&id).map(|(_, j)| j).unwrap_or_default();
                (id, json)
            })
            .collect())
    }

    /// The tickets whose notices or series changed since the marks were
    /// last cleared (see migrations/*/0005_plan_dirty.sql).
    pub async fn changed_tickets(&self) -> anyhow::Result<ChangedTickets> {
        let mut out = ChangedTickets::default();
        // Streamed into the sets: after a large change (the first poll of
        // a big helpdesk) there is a mark for every ticket.
        let add = |out: &mut ChangedTickets, id: String, dry_run: i64| {
            if dry_run != 0 {
                out.dry_run.insert(id);
            } else {
                out.live.insert(id);
            }
        };
        match self.backend {
            // One statement reads one snapshot, and SQLite's one writer
            // commits rows in `seq` order: every row up to the largest seq
            // read was read.
            Backend::Sqlite => {
                let mut rows = sqlx::query_as::<_, (String, i64, i64)>(
                    "SELECT ticket_id, dry_run, MAX(seq) FROM plan_dirty GROUP BY ticket_id, dry_run",
                )
                .fetch(&self.pool);
                while let Some((id, dry_run, seq)) = rows
                    .try_next()
                    .await
                    .context("failed to read the changed tickets")?
                {
                    out.mark = Some(out.mark.map_or(seq, |m| m.max(seq)));
                    add(&mut out, id, dry_run);
                }
            }
            Backend::Postgres => {
                // The rows and the snapshot's horizon (every transaction
                // below it had ended) in one snapshot.
                let mut conn = self.pool.acquire().await?;
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await
                    .context("failed to begin reading the changed tickets")?;
                let read = async {
                    let horizon: i64 = sqlx::query_scalar(
                        "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
                    )
                    .fetch_one(&mut *conn)
                    .await?;
                    let mut rows = sqlx::query_as::<_, (String, i64)>(
                        "SELECT DISTINCT ticket_id, dry_run FROM plan_dirty",
                    )
                    .fetch(&mut *conn);
                    while let Some((id, dry_run)) = rows.try_next().await? {
                        out.mark = Some(horizon);
                        add(&mut out, id, dry_run);
                    }
                    Ok::<_, sqlx::Error>(())
                }
                .await;
                if conn.execute("COMMIT").await.is_err() {
                    // Never back into the pool inside a transaction.
                    let _ = conn.detach().close().await;
                }
                read.context("failed to read the changed tickets")?;
            }
        }
        Ok(out)
    }

    /// Forgets the changes that [`changed_tickets`](Self::changed_tickets)
    /// read with `mark`, and none written since.
    pub async fn clear_changed(&self, mark: i64) -> anyhow::Result<()> {
        let sql = match self.backend {
            Backend::Sqlite => "DELETE FROM plan_dirty WHERE seq <= ?1",
            Backend::Postgres => "DELETE FROM plan_dirty WHERE xid < $1",
        };
        sqlx::query(sql)
            .bind(mark)
            .execute(&self.pool)
            .await
            .context("failed to clear the changed tickets")?;
        Ok(())
    }

    /// With dry run off, what dry run had pending is never recorded.
    pub async fn cancel_pending_dry_runs(&self, now: DateTime<Utc>) -> anyhow::Result<usize> {
        let done = sqlx::query(self.sql(
            "UPDATE notices SET status = 'cancelled', cancel_reason = 'dry run was switched off',
                    finished_at = ?1, updated_at = ?1, claimed_by = NULL, claim_until = NULL
             WHERE status = 'pending' AND dry_run = 1",
        ))
        .bind(ms(now))
        .execute(&self.pool)
        .await
        .context("failed to cancel pending dry-run notices")?;
        Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
    }

    /// Applies one plan in one transaction.
    pub async fn apply_plan(&self, plan: &Plan, now: DateTime<Utc>) -> anyhow::Result<()> {
        if plan.is_empty() {
            return Ok(());
        }
        let mut tx = self
            .begin_write()
            .await
            .context("failed to begin the plan transaction")?;
        self.write_plan(&mut tx, plan, now).await?;
        self.announce_plans(tx.conn()).await?;
        tx.commit().await.context("failed to commit the plan")?;
        let written = plan.upserts.len().saturating_add(plan.series.len());
        self.analyze_when_grown(u64::try_from(written).unwrap_or(u64::MAX))
            .await;
        Ok(())
    }

    /// PostgreSQL plans the series lookup by its statistics: right after a
    /// first poll of many tickets (or a copy), before autovacuum has looked,
    /// it takes the tables for tiny and joins them row by row (a steady
    /// poll of 100,000 tickets took 270 s instead of seconds). So once the
    /// rows written since the last ANALYZE reach 1,000 and a tenth of all
    /// written before, this instance analyzes the two tables itself.
    pub(super) async fn analyze_when_grown(&self, written: u64) {
        if self.backend != super::Backend::Postgres || written == 0 {
            return;
        }
        let due = {
            let mut growth = self.growth.lock().unwrap_or_else(|e| e.into_inner());
            growth.0 = growth.0.saturating_add(written);
            let due = growth.0 >= 1000 && growth.0 >= growth.1 / 10;
            if due {
                growth.1 = growth.1.saturating_add(growth.0);
                growth.0 = 0;
            }
            due
        };
        if due {
            self.analyze().await;
        }
    }

    /// ANALYZE of the ledger's big tables; a failure only costs speed.
    pub(super) async fn analyze(&self) {
        if let Err(e) = sqlx::query("ANALYZE notices, series")
            .execute(&self.pool)
            .await
        {
            tracing::debug!(error = %e, "cannot analyze the ledger tables");
        }
    }

    /// Ends a poll: a full poll ends the active series of tickets it did not
    /// return (their pending notices are cancelled, returned for the log;
    /// the series rows stay, so a ticket that comes back with the same wait
    /// continues where it was); then the poll time and the watermark.
    pub async fn finish_poll(&self, end: PollEnd<'_>) -> anyhow::Result<Vec<Swept>> {
        let mut absent: Vec<(bool, Vec<String>)> = Vec::new();
        if let Some(seen) = end.seen {
            for &dry_run in end.modes {
                let ids: Vec<String> = sqlx::query_scalar(self.sql(
                    "SELECT DISTINCT ticket_id FROM series WHERE dry_run = ?1 AND active = 1",
                ))
                .bind(i64::from(dry_run))
                .fetch_all(&self.pool)
                .await
                .context("failed to read the tracked tickets")?;
                let gone: Vec<String> = ids
                    .into_iter()
                    .filter(|id| !seen.contains(id.as_str()))
                    .collect();
                absent.push((dry_run, gone));
            }
        }
        let mut tx = self
            .begin_write()
            .await
            .context("failed to begin the poll transaction")?;
        let mut swept = Vec::new();
        let now = ms(end.now);
        for (dry_run, ids) in &absent {
            for chunk in ids.chunks(IDS_PER_STATEMENT) {
                let sql = format!(
                    "UPDATE notices SET status = 'cancelled', cancel_reason = 'the ticket is no longer waiting',
                            finished_at = {now}, updated_at = {now}, claimed_by = NULL, claim_until = NULL
                     WHERE status = 'pending'
                       AND id IN (SELECT next_id FROM series WHERE dry_run = {dry} AND active = 1
                                  AND next_id IS NOT NULL AND ticket_id IN ({list}))
                     RETURNING id, ticket_id, policy",
                    now = self.placeholder(1),
                    dry = self.placeholder(2),
                    list = self.placeholders(3, chunk.len()),
                );
                let mut query = sqlx::query(AssertSqlSafe(sql))
                    .bind(now)
                    .bind(i64::from(*dry_run));
                for id in chunk {
                    query = query.bind(id.as_str());
                }
                for r in &query.fetch_all(tx.conn()).await? {
                    swept.push(Swept {
                        id: r.try_get(0)?,
                        ticket_id: r.try_get(1)?,
                        policy: r.try_get(2)?,
                    });
                }
                let sql = self.deactivate_series_sql(chunk.len());
                let mut query = sqlx::query(AssertSqlSafe(sql)).bind(i64::from(*dry_run));
                for id in chunk {
                    query = query.bind(id.as_str());
                }
                query.execute(tx.conn()).await?;
            }
        }
        self.write_poll_meta(&mut tx, end.now, end.watermark)
            .await?;
        tx.commit().await.context("failed to commit the poll")?;
        Ok(swept)
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

    /// Series rows, cancels, ended waits and pending notices of one plan.
    async fn write_plan(
        &self,
        tx: &mut WriteTx,
        plan: &Plan,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let now_ms = ms(now);
        let dry_run = i64::from(plan.dry_run);
        for s in &plan.series {
            sqlx::query(self.sql("INSERT INTO series (ticket_id, policy, episode, dry_run, done, last_sent_at, next_id, active)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (ticket_id, policy, episode, dry_run) DO UPDATE SET active = excluded.active"))
                .bind(&s.key.ticket_id)
                .bind(&s.key.policy)
                .bind(ms(s.key.episode))
                .bind(dry_run)
                .bind(i64::from(s.done))
                .bind(s.last_sent_at.map(ms))
                .bind(s.next_id.as_deref())
                .bind(i64::from(s.active))
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
        for key in &plan.deleted_series {
            sqlx::query(self.sql("DELETE FROM series WHERE ticket_id = ?1 AND policy = ?2 AND episode = ?3 AND dry_run = ?4"))
                .bind(&key.ticket_id)
                .bind(&key.policy)
                .bind(ms(key.episode))
                .bind(dry_run)
                .execute(tx.conn())
                .await?;
        }
        for n in &plan.upserts {
            self.write_pending(tx, n, plan.dry_run, now).await?;
        }
        Ok(())
    }

    /// Writes a planned notice as the pending next notice of its series. A
    /// pending notice follows the plan (a changed threshold moves it) while
    /// its retry schedule stays; a cancelled one comes back when its ticket
    /// matches again. Ended notices never change.
    pub(super) async fn write_pending(
        &self,
        tx: &mut WriteTx,
        n: &PlannedNotice,
        dry_run: bool,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let dry_run = i64::from(dry_run);
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
        .bind(dry_run)
        .bind(i64::from(n.number))
        .bind(i64::from(n.max_notices))
        .bind(&n.channel)
        .bind(&n.recipient)
        .bind(ms(n.due_at))
        .bind(ms(n.send_at))
        .bind(&n.ticket_json)
        .bind(ms(now))
        .bind(n.ticket_hash)
        .execute(tx.conn())
        .await?;
        sqlx::query(self.sql("UPDATE series SET next_id = ?5 WHERE ticket_id = ?1 AND policy = ?2 AND episode = ?3 AND dry_run = ?4"))
            .bind(&n.key.ticket_id)
            .bind(&n.key.policy)
            .bind(ms(n.key.episode))
            .bind(dry_run)
            .bind(&n.id)
            .execute(tx.conn())
            .await?;
        Ok(())
    }

    /// `?a, ?a+1, …` (`$a, …` on PostgreSQL) for `n` parameters.
    /// The series of `n` tickets. `+`: the primary key (ticket first)
    /// finds these rows; without statistics SQLite took `series_active`
    /// and read every series of the mode for each statement, which made a
    /// poll quadratic in the ledger (479 s for a poll that planned 1M
    /// tickets).
    fn series_for_tickets_sql(&self, dry_run: bool, n: usize) -> String {
        format!(
            "{SERIES_SELECT} WHERE +s.dry_run = {} AND s.ticket_id IN ({})",
            i64::from(dry_run),
            self.placeholders(1, n)
        )
    }

    /// Deactivates the series of `n` tickets of one mode (`?1`), by the
    /// primary key as [`series_for_tickets_sql`](Self::series_for_tickets_sql).
    fn deactivate_series_sql(&self, n: usize) -> String {
        format!(
            "UPDATE series SET active = 0 WHERE +dry_run = {} AND ticket_id IN ({})",
            self.placeholder(1),
            self.placeholders(2, n)
        )
    }

    fn placeholders(&self, first: usize, n: usize) -> String {
        (first..first + n)
            .map(|i| self.placeholder(i))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite's plan for `sql` with the integer parameters `ints`, then
    /// `texts` text ones, one line per step.
    async fn plan_of(store: &Store, sql: &str, ints: &[i64], texts: usize) -> String {
        let mut query = sqlx::query(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")));
        for i in ints {
            query = query.bind(*i);
        }
        for i in 0..texts {
            query = query.bind(format!("T{i}"));
        }
        let rows = query
            .fetch_all(&store.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.iter()
            .map(|r| r.try_get::<String, _>(3).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Each statement a poll runs per chunk of tickets finds its rows by
    /// ticket id: one that reads every series of the mode instead makes a
    /// poll quadratic in the ledger. (SQLite without statistics, as a
    /// daemon's ledger is.)
    #[tokio::test]
    async fn the_per_chunk_statements_find_rows_by_ticket_id() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let url = crate::secret::SecretUrl::new(format!(
            "sqlite://{}",
            dir.path().join("ledger.db").display()
        ));
        let store = Store::open(&url).await.unwrap_or_else(|e| panic!("{e:#}"));
        let series = plan_of(&store, &store.series_for_tickets_sql(false, 3), &[], 3).await;
        let by_ticket = |plan: &str| {
            plan.contains("sqlite_autoindex_series_1 (ticket_id=?)")
                && !plan.contains("series_active")
        };
        assert!(by_ticket(&series), "{series}");
        let plan = plan_of(&store, &store.deactivate_series_sql(2), &[0], 2).await;
        assert!(by_ticket(&plan), "{plan}");
        store.close().await;
    }
}
