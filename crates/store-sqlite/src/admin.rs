//! What the operator's commands read and change: the notice list,
//! retries, suppressions.

use interim_store_rows::{LaterRow, ListedRow, RetryRow, SeriesKeyArgs, SuppressionRow, TicketRow};
use sqlx::SqliteExecutor;

use super::changed;

/// The notices, optionally of one status and one ticket, in the order
/// they were planned (numeric ticket ids by their number).
pub async fn list_notices(
    ex: impl SqliteExecutor<'_>,
    status: Option<&str>,
    ticket_id: Option<&str>,
) -> sqlx::Result<Vec<ListedRow>> {
    sqlx::query_as!(
        ListedRow,
        "SELECT id, ticket_id, policy, number, max_notices, status, attempts, due_at, send_at, next_attempt_at,
                sent_at, last_error, channel, recipient, dry_run, next_notice_at, cancel_reason, episode, ticket,
                promise_outcome, promise_reason, created_at
         FROM notices
         WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR ticket_id = ?2)
         ORDER BY created_at,
           CASE WHEN ticket_id <> '' AND ltrim(ticket_id, '0123456789') = '' THEN 0 ELSE 1 END,
           CASE WHEN ticket_id <> '' AND ltrim(ticket_id, '0123456789') = '' THEN length(ltrim(ticket_id, '0')) ELSE 0 END,
           ltrim(ticket_id, '0'), ticket_id, policy, number",
        status,
        ticket_id
    )
    .fetch_all(ex)
    .await
}

/// The stored tickets whose id is `id` or `bare_id`, or whose JSON
/// (lower-cased) is LIKE `pattern`.
pub async fn tickets_like(
    ex: impl SqliteExecutor<'_>,
    id: &str,
    bare_id: &str,
    pattern: &str,
) -> sqlx::Result<Vec<TicketRow>> {
    sqlx::query_as!(
        TicketRow,
        "SELECT DISTINCT ticket_id, ticket FROM notices
         WHERE ticket_id = ?1 OR ticket_id = ?2 OR lower(ticket) LIKE ?3",
        id,
        bare_id,
        pattern
    )
    .fetch_all(ex)
    .await
}

/// A notice to retry and whether its series is active.
pub async fn retry_target(ex: impl SqliteExecutor<'_>, id: &str) -> sqlx::Result<Option<RetryRow>> {
    sqlx::query_as!(
        RetryRow,
        r#"SELECT n.status, n.number, n.ticket_id, n.policy, n.episode, n.dry_run, s.active AS "active?"
           FROM notices n LEFT JOIN series s ON s.ticket_id = n.ticket_id AND s.policy = n.policy
                AND s.episode = n.episode AND s.dry_run = n.dry_run
           WHERE n.id = ?1"#,
        id
    )
    .fetch_optional(ex)
    .await
}

/// The notices of a series after `number`.
pub async fn later_notices(
    ex: impl SqliteExecutor<'_>,
    k: SeriesKeyArgs<'_>,
    number: i64,
) -> sqlx::Result<Vec<LaterRow>> {
    sqlx::query_as!(
        LaterRow,
        "SELECT id, number, status, claim_until FROM notices
         WHERE ticket_id = ?1 AND policy = ?2 AND episode = ?3 AND dry_run = ?4 AND number > ?5",
        k.ticket_id,
        k.policy,
        k.episode,
        k.dry_run,
        number
    )
    .fetch_all(ex)
    .await
}

/// A dead notice pending again, due at `now` with a fresh retry window.
pub async fn revive_dead(ex: impl SqliteExecutor<'_>, id: &str, now: i64) -> sqlx::Result<u64> {
    sqlx::query!(
        "UPDATE notices SET status = 'pending', attempts = 0, next_attempt_at = ?2, first_attempt_at = NULL,
                finished_at = NULL, claimed_by = NULL, claim_until = NULL, updated_at = ?2
         WHERE id = ?1 AND status = 'dead'",
        id,
        now
    )
    .execute(ex)
    .await
    .map(changed)
}

/// Sets how far a series got and its next notice.
pub async fn reset_series(
    ex: impl SqliteExecutor<'_>,
    k: SeriesKeyArgs<'_>,
    done: i64,
    next_id: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE series SET done = ?5, next_id = ?6
         WHERE ticket_id = ?1 AND policy = ?2 AND episode = ?3 AND dry_run = ?4",
        k.ticket_id,
        k.policy,
        k.episode,
        k.dry_run,
        done,
        next_id
    )
    .execute(ex)
    .await?;
    Ok(())
}

/// The oldest suppression of an address or its `@domain`.
pub async fn suppression_of(
    ex: impl SqliteExecutor<'_>,
    address: &str,
    domain: &str,
) -> sqlx::Result<Option<SuppressionRow>> {
    sqlx::query_as!(
        SuppressionRow,
        "SELECT address, reason, source, created_at FROM suppressions
         WHERE address IN (?1, ?2) ORDER BY created_at LIMIT 1",
        address,
        domain
    )
    .fetch_optional(ex)
    .await
}

pub async fn suppress(ex: impl SqliteExecutor<'_>, s: &SuppressionRow) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO suppressions (address, reason, source, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (address) DO UPDATE SET reason = excluded.reason, source = excluded.source",
        s.address,
        s.reason,
        s.source,
        s.created_at
    )
    .execute(ex)
    .await?;
    Ok(())
}

pub async fn unsuppress(ex: impl SqliteExecutor<'_>, address: &str) -> sqlx::Result<u64> {
    sqlx::query!("DELETE FROM suppressions WHERE address = ?1", address)
        .execute(ex)
        .await
        .map(changed)
}

pub async fn suppressions(ex: impl SqliteExecutor<'_>) -> sqlx::Result<Vec<SuppressionRow>> {
    sqlx::query_as!(
        SuppressionRow,
        "SELECT address, reason, source, created_at FROM suppressions ORDER BY address"
    )
    .fetch_all(ex)
    .await
}
