//! Claims, leases, results. Several instances share a PostgreSQL ledger,
//! each with its own clock: leases are measured on the database's
//! (`clock_timestamp()`); due times on the caller's.

use interim_store_rows::{ClaimedRow, DoneArgs, RetryArgs, SeriesKeyArgs};
use sqlx::PgExecutor;
use sqlx::postgres::types::PgInterval;

use super::changed;
use super::convert::{PgClaimed, all, at, at_opt, flag, ms};

/// A lease of `lease_ms` milliseconds.
fn lease(lease_ms: i64) -> PgInterval {
    PgInterval {
        months: 0,
        days: 0,
        microseconds: lease_ms.saturating_mul(1000),
    }
}

/// Claims up to `limit` due notices of a channel for `lease_ms` of the
/// database's clock. Instances skip each other's locked rows instead of
/// waiting.
pub async fn claim_due(
    ex: impl PgExecutor<'_>,
    instance: &str,
    lease_ms: i64,
    channel: &str,
    now: i64,
    limit: i64,
    dry_run: i64,
) -> sqlx::Result<Vec<ClaimedRow>> {
    let rows = sqlx::query_as!(
        PgClaimed,
        "UPDATE notices SET claimed_by = $1, claim_until = clock_timestamp() + $2,
                claim_token = claim_token + 1
         WHERE id IN (SELECT id FROM notices
                      WHERE status = 'pending' AND channel = $3 AND dry_run = $6 AND next_attempt_at <= $4
                        AND (claim_until IS NULL OR claim_until < clock_timestamp())
                      ORDER BY next_attempt_at LIMIT $5 FOR UPDATE SKIP LOCKED)
         RETURNING id, ticket_id, policy, episode, dry_run, number, max_notices, channel, recipient,
                   due_at, send_at, attempts, first_attempt_at, ticket, ticket_hash, claim_token",
        instance,
        lease(lease_ms),
        channel,
        at(now)?,
        limit,
        flag(dry_run)
    )
    .fetch_all(ex)
    .await?;
    Ok(all(rows))
}

/// Extends a claim's lease by `lease_ms` of the database's clock; 0 rows
/// when it is no longer ours.
pub async fn renew(
    ex: impl PgExecutor<'_>,
    id: &str,
    claim_token: i64,
    lease_ms: i64,
) -> sqlx::Result<u64> {
    sqlx::query!(
        "UPDATE notices SET claim_until = clock_timestamp() + $3
         WHERE id = $1 AND claim_token = $2 AND claimed_by IS NOT NULL AND status = 'pending'",
        id,
        claim_token,
        lease(lease_ms)
    )
    .execute(ex)
    .await
    .map(changed)
}

/// When a series last really sent: None without the series, Some(None)
/// when it never sent.
pub async fn series_last_sent(
    ex: impl PgExecutor<'_>,
    k: SeriesKeyArgs<'_>,
) -> sqlx::Result<Option<Option<i64>>> {
    let v = sqlx::query_scalar!(
        "SELECT last_sent_at FROM series WHERE ticket_id = $1 AND policy = $2 AND episode = $3 AND dry_run = $4",
        k.ticket_id,
        k.policy,
        at(k.episode)?,
        flag(k.dry_run)
    )
    .fetch_optional(ex)
    .await?;
    Ok(v.map(|at| at.map(ms)))
}

/// Records the end of a claimed notice; 0 rows when fenced.
pub async fn record_done(ex: impl PgExecutor<'_>, d: DoneArgs<'_>) -> sqlx::Result<u64> {
    sqlx::query!(
        "UPDATE notices SET status = $2, attempts = attempts + CASE WHEN $2 = 'suppressed' THEN 0 ELSE 1 END,
                first_attempt_at = COALESCE(first_attempt_at, $3), last_attempt_at = $3, sent_at = $4,
                finished_at = $5, next_notice_at = $6, last_error = COALESCE($7, last_error),
                cancel_reason = CASE WHEN $2 = 'cancelled' THEN cancel_reason ELSE NULL END,
                promise_outcome = CASE WHEN $2 = 'sent' AND $6::timestamptz IS NOT NULL THEN 'pending' END,
                claimed_by = NULL, claim_until = NULL, updated_at = $5
         WHERE id = $1 AND claim_token = $8
           AND (status = 'pending' OR ($9::boolean AND status = 'cancelled'))",
        d.id,
        d.status,
        at(d.attempt_started)?,
        at_opt(d.sent_at)?,
        at(d.finished)?,
        at_opt(d.next_notice_at)?,
        d.error,
        d.claim_token,
        d.also_cancelled
    )
    .execute(ex)
    .await
    .map(changed)
}

/// Moves a series past notice `number` (a real send restarts the spacing
/// clock at `sent_started`); whether the series is active, None when it
/// was already past.
pub async fn advance_series(
    ex: impl PgExecutor<'_>,
    k: SeriesKeyArgs<'_>,
    number: i64,
    sent_started: Option<i64>,
) -> sqlx::Result<Option<i64>> {
    let active = sqlx::query_scalar!(
        "UPDATE series SET done = $5, last_sent_at = COALESCE($6, last_sent_at), next_id = NULL
         WHERE ticket_id = $1 AND policy = $2 AND episode = $3 AND dry_run = $4 AND done < $5
         RETURNING active",
        k.ticket_id,
        k.policy,
        at(k.episode)?,
        flag(k.dry_run),
        number,
        at_opt(sent_started)?
    )
    .fetch_optional(ex)
    .await?;
    Ok(active.map(i64::from))
}

/// Records a failed attempt to be tried again; 0 rows when fenced.
pub async fn record_retry(ex: impl PgExecutor<'_>, r: RetryArgs<'_>) -> sqlx::Result<u64> {
    sqlx::query!(
        "UPDATE notices SET attempts = attempts + 1, first_attempt_at = COALESCE(first_attempt_at, $2),
                last_attempt_at = $2, next_attempt_at = $3, send_at = $4, last_error = $5,
                claimed_by = NULL, claim_until = NULL, updated_at = $2
         WHERE id = $1 AND claim_token = $6 AND status = 'pending'",
        r.id,
        at(r.attempt_started)?,
        at(r.next_attempt)?,
        at(r.send_at)?,
        r.error,
        r.claim_token
    )
    .execute(ex)
    .await
    .map(changed)
}

/// Gives a claim back, moved when `next_attempt`/`send_at` are given,
/// with why it was held back (`stale`, `limit`; None: no hold).
pub async fn release(
    ex: impl PgExecutor<'_>,
    id: &str,
    claim_token: i64,
    next_attempt: Option<i64>,
    send_at: Option<i64>,
    hold_reason: Option<&str>,
) -> sqlx::Result<u64> {
    sqlx::query!(
        "UPDATE notices SET claimed_by = NULL, claim_until = NULL,
                next_attempt_at = COALESCE($3, next_attempt_at), send_at = COALESCE($4, send_at),
                hold_reason = $5
         WHERE id = $1 AND claim_token = $2 AND status = 'pending'",
        id,
        claim_token,
        at_opt(next_attempt)?,
        at_opt(send_at)?,
        hold_reason
    )
    .execute(ex)
    .await
    .map(changed)
}

/// Cancels a claimed notice; 0 rows when fenced.
pub async fn cancel_claimed(
    ex: impl PgExecutor<'_>,
    id: &str,
    claim_token: i64,
    reason: &str,
    now: i64,
) -> sqlx::Result<u64> {
    sqlx::query!(
        "UPDATE notices SET status = 'cancelled', cancel_reason = $3, finished_at = $4, updated_at = $4,
                claimed_by = NULL, claim_until = NULL
         WHERE id = $1 AND claim_token = $2 AND status = 'pending'",
        id,
        claim_token,
        reason,
        at(now)?
    )
    .execute(ex)
    .await
    .map(changed)
}

/// The earliest next attempt of any pending notice of one mode.
pub async fn next_due(ex: impl PgExecutor<'_>, dry_run: i64) -> sqlx::Result<Option<i64>> {
    let at = sqlx::query_scalar!(
        r#"SELECT MIN(next_attempt_at) AS "at?" FROM notices WHERE status = 'pending' AND dry_run = $1"#,
        flag(dry_run)
    )
    .fetch_one(ex)
    .await?;
    Ok(at.map(ms))
}

/// The earliest next attempt of a channel's pending notices nobody holds
/// a live claim on now (the database's clock, which stamps the leases).
pub async fn next_attempt(
    ex: impl PgExecutor<'_>,
    channel: &str,
    dry_run: i64,
) -> sqlx::Result<Option<i64>> {
    let at = sqlx::query_scalar!(
        "SELECT next_attempt_at FROM notices
         WHERE status = 'pending' AND channel = $1 AND dry_run = $2
           AND (claim_until IS NULL OR claim_until < clock_timestamp())
         ORDER BY next_attempt_at LIMIT 1",
        channel,
        flag(dry_run)
    )
    .fetch_optional(ex)
    .await?;
    Ok(at.map(ms))
}

/// How many claims have a lease that runs now, and the latest lease end.
pub async fn live_claims(ex: impl PgExecutor<'_>) -> sqlx::Result<(i64, Option<i64>)> {
    let row = sqlx::query!(
        r#"SELECT COUNT(*) AS "count!", MAX(claim_until) AS "until?"
           FROM notices WHERE claimed_by IS NOT NULL AND claim_until >= clock_timestamp()"#
    )
    .fetch_one(ex)
    .await?;
    Ok((row.count, row.until.map(ms)))
}

/// How many notices are pending and how many dead.
pub async fn count_pending_dead(ex: impl PgExecutor<'_>) -> sqlx::Result<(i64, i64)> {
    let row = sqlx::query!(
        r#"SELECT COUNT(*) FILTER (WHERE status = 'pending') AS "pending!",
                  COUNT(*) FILTER (WHERE status = 'dead') AS "dead!"
           FROM notices WHERE status IN ('pending', 'dead')"#
    )
    .fetch_one(ex)
    .await?;
    Ok((row.pending, row.dead))
}

pub async fn status_of(ex: impl PgExecutor<'_>, id: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar!("SELECT status FROM notices WHERE id = $1", id)
        .fetch_optional(ex)
        .await
}

/// When a notice last went out to a recipient.
pub async fn last_sent_to(ex: impl PgExecutor<'_>, recipient: &str) -> sqlx::Result<Option<i64>> {
    let at = sqlx::query_scalar!(
        r#"SELECT MAX(sent_at) AS "at?" FROM notices WHERE status = 'sent' AND recipient = $1"#,
        recipient
    )
    .fetch_one(ex)
    .await?;
    Ok(at.map(ms))
}
