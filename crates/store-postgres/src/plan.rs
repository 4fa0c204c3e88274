//! Series, plans, polls, the meta values.

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use interim_store_rows::{
    ChangedRow, PendingArgs, SeriesArgs, SeriesKeyArgs, SeriesNoticeRow, SeriesRow,
    StoredTicketRow, SweptRow,
};
use sqlx::PgExecutor;

use super::changed;
use super::convert::{PgSeries, PgSeriesNotice, PgStoredTicket, all, at, at_opt, flag};

pub async fn ping(ex: impl PgExecutor<'_>) -> sqlx::Result<()> {
    sqlx::query!("SELECT 1 AS one").fetch_one(ex).await?;
    Ok(())
}

/// The versions of the migrations applied so far (fails on a new store,
/// which has no table of them yet).
pub async fn applied_migrations(ex: impl PgExecutor<'_>) -> sqlx::Result<Vec<i64>> {
    // Not checked: the table is sqlx's, created by the migrator.
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
        .fetch_all(ex)
        .await
}

pub async fn meta_value(ex: impl PgExecutor<'_>, key: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar!("SELECT value FROM meta WHERE key = $1", key)
        .fetch_optional(ex)
        .await
}

pub async fn set_meta(ex: impl PgExecutor<'_>, key: &str, value: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO meta (key, value) VALUES ($1, $2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        key,
        value
    )
    .execute(ex)
    .await?;
    Ok(())
}

/// A query of series rows with their next notice, `$where` appended.
macro_rules! series_query {
    ($where:tt, $($arg:expr),* $(,)?) => {
        sqlx::query_as!(
            PgSeries,
            r#"SELECT s.ticket_id AS "ticket_id!", s.policy AS "policy!", s.episode AS "episode!",
                      s.done AS "done!", s.last_sent_at, s.active AS "active!",
                      n.id AS "next_id?", n.number AS "next_number?", n.status AS "next_status?",
                      n.due_at AS "next_due_at?", n.send_at AS "next_send_at?",
                      n.ticket_hash AS "next_ticket_hash?", n.channel AS "next_channel?",
                      n.recipient AS "next_recipient?", n.max_notices AS "next_max_notices?"
               FROM series s LEFT JOIN notices n ON n.id = s.next_id"#
                + $where,
            $($arg),*
        )
    };
}

/// Every series of one mode.
pub async fn all_series(ex: impl PgExecutor<'_>, dry_run: i64) -> sqlx::Result<Vec<SeriesRow>> {
    let rows = series_query!(" WHERE s.dry_run = $1", flag(dry_run))
        .fetch_all(ex)
        .await?;
    Ok(all(rows))
}

/// The series of some tickets.
pub async fn series_of_tickets(
    ex: impl PgExecutor<'_>,
    dry_run: i64,
    ticket_ids: &[&str],
) -> sqlx::Result<Vec<SeriesRow>> {
    let rows = series_query!(
        " WHERE s.dry_run = $1 AND s.ticket_id = ANY($2)",
        flag(dry_run),
        ticket_ids as &[&str]
    )
    .fetch_all(ex)
    .await?;
    Ok(all(rows))
}

/// Every notice of some tickets in one mode.
pub async fn notices_of_tickets(
    ex: impl PgExecutor<'_>,
    dry_run: i64,
    ticket_ids: &[&str],
) -> sqlx::Result<Vec<SeriesNoticeRow>> {
    let rows = sqlx::query_as!(
        PgSeriesNotice,
        "SELECT ticket_id, policy, episode, id, number, status, due_at, send_at, ticket_hash,
                channel, recipient, max_notices, last_attempt_at
         FROM notices WHERE dry_run = $1 AND ticket_id = ANY($2)",
        flag(dry_run),
        ticket_ids as &[&str]
    )
    .fetch_all(ex)
    .await?;
    Ok(all(rows))
}

/// A page of the tickets with an active series of one mode, in id order.
pub async fn active_ticket_ids(
    ex: impl PgExecutor<'_>,
    dry_run: i64,
    after: &str,
    limit: i64,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar!(
        "SELECT DISTINCT ticket_id FROM series WHERE dry_run = $1 AND active AND ticket_id > $2
         ORDER BY ticket_id LIMIT $3",
        flag(dry_run),
        after,
        limit
    )
    .fetch_all(ex)
    .await
}

/// Every ticket with an active series of one mode, streamed: after a
/// full poll of a big helpdesk that is every ticket.
pub fn tracked_ticket_ids<'e>(
    ex: impl PgExecutor<'e> + 'e,
    dry_run: i64,
) -> BoxStream<'e, sqlx::Result<String>> {
    sqlx::query_scalar!(
        "SELECT DISTINCT ticket_id FROM series WHERE dry_run = $1 AND active",
        flag(dry_run)
    )
    .fetch(ex)
}

/// The ticket data stored with every notice of some tickets.
pub async fn stored_tickets(
    ex: impl PgExecutor<'_>,
    ticket_ids: &[&str],
) -> sqlx::Result<Vec<StoredTicketRow>> {
    let rows = sqlx::query_as!(
        PgStoredTicket,
        "SELECT ticket_id, updated_at, ticket FROM notices WHERE ticket_id = ANY($1)",
        ticket_ids as &[&str]
    )
    .fetch_all(ex)
    .await?;
    Ok(all(rows))
}

/// The tickets changed since the marks were last cleared, with the
/// horizon of the statement's snapshot (every transaction below it had
/// ended) as every row's mark: rows commit out of order across
/// transactions, so a row is cleared only when the transaction that wrote
/// it is below the horizon of a read that saw it.
pub fn changed_tickets<'e>(
    ex: impl PgExecutor<'e> + 'e,
) -> BoxStream<'e, sqlx::Result<ChangedRow>> {
    sqlx::query!(
        r#"SELECT DISTINCT ticket_id, dry_run,
                  pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS "mark!"
           FROM plan_dirty"#
    )
    .fetch(ex)
    .map_ok(|r| ChangedRow {
        ticket_id: r.ticket_id,
        dry_run: i64::from(r.dry_run),
        mark: r.mark,
    })
    .boxed()
}

/// PostgreSQL plans by statistics: fresh ones for the two big tables.
pub async fn analyze(ex: impl PgExecutor<'_>) -> sqlx::Result<()> {
    sqlx::query!("ANALYZE notices, series").execute(ex).await?;
    Ok(())
}

/// The channel plans are announced on.
pub const PLANS_CHANNEL: &str = "interim_plans";

/// Within a write transaction: tells every listening instance that plans
/// changed (delivered at COMMIT, dropped on ROLLBACK).
pub async fn announce_plans(ex: impl PgExecutor<'_>) -> sqlx::Result<()> {
    sqlx::query!("SELECT pg_notify($1, '') AS notified", PLANS_CHANNEL)
        .fetch_one(ex)
        .await?;
    Ok(())
}

/// Forgets the marks of the transactions below `horizon`.
pub async fn clear_changed(ex: impl PgExecutor<'_>, horizon: i64) -> sqlx::Result<()> {
    sqlx::query!("DELETE FROM plan_dirty WHERE xid < $1", horizon)
        .execute(ex)
        .await?;
    Ok(())
}

/// Ends what dry run had pending.
pub async fn cancel_pending_dry_runs(ex: impl PgExecutor<'_>, now: i64) -> sqlx::Result<u64> {
    sqlx::query!(
        "UPDATE notices SET status = 'cancelled', cancel_reason = 'dry run was switched off',
                finished_at = $1, updated_at = $1, claimed_by = NULL, claim_until = NULL
         WHERE status = 'pending' AND dry_run",
        at(now)?
    )
    .execute(ex)
    .await
    .map(changed)
}

/// Cancels the pending next notices of the active series of some tickets.
pub async fn sweep_tickets(
    ex: impl PgExecutor<'_>,
    now: i64,
    dry_run: i64,
    ticket_ids: &[&str],
) -> sqlx::Result<Vec<SweptRow>> {
    sqlx::query_as!(
        SweptRow,
        "UPDATE notices SET status = 'cancelled', cancel_reason = 'the ticket is no longer waiting',
                finished_at = $1, updated_at = $1, claimed_by = NULL, claim_until = NULL
         WHERE status = 'pending'
           AND id IN (SELECT next_id FROM series WHERE dry_run = $2 AND active
                      AND next_id IS NOT NULL AND ticket_id = ANY($3))
         RETURNING id, ticket_id, policy",
        at(now)?,
        flag(dry_run),
        ticket_ids as &[&str]
    )
    .fetch_all(ex)
    .await
}

/// Ends the series of some tickets.
pub async fn deactivate_series(
    ex: impl PgExecutor<'_>,
    dry_run: i64,
    ticket_ids: &[&str],
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE series SET active = false WHERE dry_run = $1 AND ticket_id = ANY($2)",
        flag(dry_run),
        ticket_ids as &[&str]
    )
    .execute(ex)
    .await?;
    Ok(())
}

/// Writes a series row; an existing one only takes `active`.
pub async fn upsert_series(ex: impl PgExecutor<'_>, s: SeriesArgs<'_>) -> sqlx::Result<()> {
    let k = s.key;
    sqlx::query!(
        "INSERT INTO series (ticket_id, policy, episode, dry_run, done, last_sent_at, next_id, active)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (ticket_id, policy, episode, dry_run) DO UPDATE SET active = excluded.active",
        k.ticket_id,
        k.policy,
        at(k.episode)?,
        flag(k.dry_run),
        s.done,
        at_opt(s.last_sent_at)?,
        s.next_id,
        flag(s.active)
    )
    .execute(ex)
    .await?;
    Ok(())
}

pub async fn delete_series(ex: impl PgExecutor<'_>, k: SeriesKeyArgs<'_>) -> sqlx::Result<()> {
    sqlx::query!(
        "DELETE FROM series WHERE ticket_id = $1 AND policy = $2 AND episode = $3 AND dry_run = $4",
        k.ticket_id,
        k.policy,
        at(k.episode)?,
        flag(k.dry_run)
    )
    .execute(ex)
    .await?;
    Ok(())
}

/// Cancels a notice that is still pending.
pub async fn cancel_pending(
    ex: impl PgExecutor<'_>,
    id: &str,
    reason: &str,
    now: i64,
) -> sqlx::Result<u64> {
    sqlx::query!(
        "UPDATE notices SET status = 'cancelled', cancel_reason = $2, finished_at = $3, updated_at = $3,
                claimed_by = NULL, claim_until = NULL
         WHERE id = $1 AND status = 'pending'",
        id,
        reason,
        at(now)?
    )
    .execute(ex)
    .await
    .map(changed)
}

/// Writes a planned notice pending. A pending notice follows the plan
/// while its retry schedule stays; a cancelled one comes back; an ended
/// one never changes.
pub async fn write_pending(ex: impl PgExecutor<'_>, n: PendingArgs<'_>) -> sqlx::Result<()> {
    let k = n.key;
    sqlx::query!(
        "INSERT INTO notices (id, ticket_id, policy, episode, dry_run, number, max_notices, status, channel,
                              recipient, due_at, send_at, next_attempt_at, ticket, created_at, updated_at, ticket_hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9, $10, $11, $11, $12, $13, $13, $14)
         ON CONFLICT (id) DO UPDATE SET
            max_notices = excluded.max_notices, channel = excluded.channel, recipient = excluded.recipient,
            due_at = excluded.due_at, send_at = excluded.send_at, ticket = excluded.ticket, ticket_hash = excluded.ticket_hash,
            next_attempt_at = CASE WHEN notices.status = 'cancelled' OR notices.attempts = 0
                                   THEN excluded.next_attempt_at ELSE notices.next_attempt_at END,
            attempts = CASE WHEN notices.status = 'cancelled' THEN 0 ELSE notices.attempts END,
            first_attempt_at = CASE WHEN notices.status = 'cancelled' THEN NULL ELSE notices.first_attempt_at END,
            cancel_reason = NULL, finished_at = NULL,
            status = 'pending', updated_at = excluded.updated_at
         WHERE notices.status IN ('pending', 'cancelled')",
        n.id,
        k.ticket_id,
        k.policy,
        at(k.episode)?,
        flag(k.dry_run),
        n.number,
        n.max_notices,
        n.channel,
        n.recipient,
        at(n.due_at)?,
        at(n.send_at)?,
        n.ticket,
        at(n.now)?,
        n.ticket_hash
    )
    .execute(ex)
    .await?;
    Ok(())
}

/// Makes `next_id` the series' next notice.
pub async fn set_next_id(
    ex: impl PgExecutor<'_>,
    k: SeriesKeyArgs<'_>,
    next_id: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE series SET next_id = $5 WHERE ticket_id = $1 AND policy = $2 AND episode = $3 AND dry_run = $4",
        k.ticket_id,
        k.policy,
        at(k.episode)?,
        flag(k.dry_run),
        next_id
    )
    .execute(ex)
    .await?;
    Ok(())
}
