//! What the operator's commands read and change: the notice list,
//! retries, suppressions.

use interim_store_rows::{LaterRow, ListedRow, RetryRow, SeriesKeyArgs, SuppressionRow, TicketRow};
use sqlx::PgExecutor;

use super::changed;
use super::convert::{PgLater, PgListed, PgRetry, PgSuppression, all, at, flag};

/// The notices, optionally of one status and one ticket, in the order
/// they were planned (numeric ticket ids by their number).
pub async fn list_notices(
    ex: impl PgExecutor<'_>,
    status: Option<&str>,
    ticket_id: Option<&str>,
) -> sqlx::Result<Vec<ListedRow>> {
    let rows = sqlx::query_as!(
        PgListed,
        "SELECT id, ticket_id, policy, number, max_notices, status, attempts, due_at, send_at, next_attempt_at,
                sent_at, last_error, channel, recipient, dry_run, next_notice_at, cancel_reason, episode, ticket,
                promise_outcome, promise_reason, created_at
         FROM notices
         WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR ticket_id = $2)
         ORDER BY created_at,
           CASE WHEN ticket_id <> '' AND ltrim(ticket_id, '0123456789') = '' THEN 0 ELSE 1 END,
           CASE WHEN ticket_id <> '' AND ltrim(ticket_id, '0123456789') = '' THEN length(ltrim(ticket_id, '0')) ELSE 0 END,
           ltrim(ticket_id, '0'), ticket_id, policy, number",
        status,
        ticket_id
    )
    .fetch_all(ex)
    .await?;
    Ok(all(rows))
}

/// The stored tickets whose id is `id` or `bare_id`, or whose JSON
/// (lower-cased) is LIKE `pattern`.
pub async fn tickets_like(
    ex: impl PgExecutor<'_>,
    id: &str,
    bare_id: &str,
    pattern: &str,
) -> sqlx::Result<Vec<TicketRow>> {
    sqlx::query_as!(
        TicketRow,
        "SELECT DISTINCT ticket_id, ticket FROM notices
         WHERE ticket_id = $1 OR ticket_id = $2 OR lower(ticket) LIKE $3",
        id,
        bare_id,
        pattern
    )
    .fetch_all(ex)
    .await
}

/// A notice to retry and whether its series is active.
pub async fn retry_target(ex: impl PgExecutor<'_>, id: &str) -> sqlx::Result<Option<RetryRow>> {
    let row = sqlx::query_as!(
        PgRetry,
        r#"SELECT n.status, n.number, n.ticket_id, n.policy, n.episode, n.dry_run, s.active AS "active?"
           FROM notices n LEFT JOIN series s ON s.ticket_id = n.ticket_id AND s.policy = n.policy
                AND s.episode = n.episode AND s.dry_run = n.dry_run
           WHERE n.id = $1"#,
        id
    )
    .fetch_optional(ex)
    .await?;
    Ok(row.map(RetryRow::from))
}

/// The notices of a series after `number`.
pub async fn later_notices(
    ex: impl PgExecutor<'_>,
    k: SeriesKeyArgs<'_>,
    number: i64,
) -> sqlx::Result<Vec<LaterRow>> {
    let rows = sqlx::query_as!(
        PgLater,
        "SELECT id, number, status, claim_until FROM notices
         WHERE ticket_id = $1 AND policy = $2 AND episode = $3 AND dry_run = $4 AND number > $5",
        k.ticket_id,
        k.policy,
        at(k.episode)?,
        flag(k.dry_run),
        number
    )
    .fetch_all(ex)
    .await?;
    Ok(all(rows))
}

/// A dead notice pending again, due at `now` with a fresh retry window.
pub async fn revive_dead(ex: impl PgExecutor<'_>, id: &str, now: i64) -> sqlx::Result<u64> {
    sqlx::query!(
        "UPDATE notices SET status = 'pending', attempts = 0, next_attempt_at = $2, first_attempt_at = NULL,
                finished_at = NULL, claimed_by = NULL, claim_until = NULL, updated_at = $2
         WHERE id = $1 AND status = 'dead'",
        id,
        at(now)?
    )
    .execute(ex)
    .await
    .map(changed)
}

/// Sets how far a series got and its next notice.
pub async fn reset_series(
    ex: impl PgExecutor<'_>,
    k: SeriesKeyArgs<'_>,
    done: i64,
    next_id: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE series SET done = $5, next_id = $6
         WHERE ticket_id = $1 AND policy = $2 AND episode = $3 AND dry_run = $4",
        k.ticket_id,
        k.policy,
        at(k.episode)?,
        flag(k.dry_run),
        done,
        next_id
    )
    .execute(ex)
    .await?;
    Ok(())
}

/// The oldest suppression of an address or its `@domain`.
pub async fn suppression_of(
    ex: impl PgExecutor<'_>,
    address: &str,
    domain: &str,
) -> sqlx::Result<Option<SuppressionRow>> {
    let row = sqlx::query_as!(
        PgSuppression,
        "SELECT address, reason, source, created_at FROM suppressions
         WHERE address IN ($1, $2) ORDER BY created_at LIMIT 1",
        address,
        domain
    )
    .fetch_optional(ex)
    .await?;
    Ok(row.map(SuppressionRow::from))
}

pub async fn suppress(ex: impl PgExecutor<'_>, s: &SuppressionRow) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO suppressions (address, reason, source, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (address) DO UPDATE SET reason = excluded.reason, source = excluded.source",
        s.address,
        s.reason,
        s.source,
        at(s.created_at)?
    )
    .execute(ex)
    .await?;
    Ok(())
}

pub async fn unsuppress(ex: impl PgExecutor<'_>, address: &str) -> sqlx::Result<u64> {
    sqlx::query!("DELETE FROM suppressions WHERE address = $1", address)
        .execute(ex)
        .await
        .map(changed)
}

pub async fn suppressions(ex: impl PgExecutor<'_>) -> sqlx::Result<Vec<SuppressionRow>> {
    let rows = sqlx::query_as!(
        PgSuppression,
        "SELECT address, reason, source, created_at FROM suppressions ORDER BY address"
    )
    .fetch_all(ex)
    .await?;
    Ok(all(rows))
}
