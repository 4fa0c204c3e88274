//! Claims, leases, results. One daemon uses a SQLite ledger, so leases
//! are measured on its clock (`now` and `until` are the caller's).

use interim_store_rows::{ClaimedRow, DoneArgs, RetryArgs, SeriesKeyArgs};
use sqlx::SqliteExecutor;

use super::changed;

/// A restarted daemon takes back its unfinished claims.
pub async fn release_all_claims(ex: impl SqliteExecutor<'_>) -> sqlx::Result<u64> {
    sqlx::query!(
        "UPDATE notices SET claimed_by = NULL, claim_until = NULL WHERE claimed_by IS NOT NULL"
    )
    .execute(ex)
    .await
    .map(changed)
}

/// Claims up to `limit` due notices of a channel until `until`.
pub async fn claim_due(
    ex: impl SqliteExecutor<'_>,
    instance: &str,
    until: i64,
    channel: &str,
    now: i64,
    limit: i64,
    dry_run: i64,
) -> sqlx::Result<Vec<ClaimedRow>> {
    sqlx::query_as!(
        ClaimedRow,
        "UPDATE notices SET claimed_by = ?1, claim_until = ?2, claim_token = claim_token + 1
         WHERE id IN (SELECT id FROM notices
                      WHERE status = 'pending' AND channel = ?3 AND dry_run = ?6 AND next_attempt_at <= ?4
                        AND (claim_until IS NULL OR claim_until < ?4)
                      ORDER BY next_attempt_at LIMIT ?5)
         RETURNING id, ticket_id, policy, episode, dry_run, number, max_notices, channel, recipient,
                   due_at, send_at, attempts, first_attempt_at, ticket, ticket_hash, claim_token",
        instance,
        until,
        channel,
        now,
        limit,
        dry_run
    )
    .fetch_all(ex)
    .await
}

/// Extends a claim's lease to `until`; 0 rows when it is no longer ours.
pub async fn renew(
    ex: impl SqliteExecutor<'_>,
    id: &str,
    claim_token: i64,
    until: i64,
) -> sqlx::Result<u64> {
    sqlx::query!(
        "UPDATE notices SET claim_until = ?3
         WHERE id = ?1 AND claim_token = ?2 AND claimed_by IS NOT NULL AND status = 'pending'",
        id,
        claim_token,
        until
    )
    .execute(ex)
    .await
    .map(changed)
}

/// When a series last really sent: None without the series, Some(None)
/// when it never sent.
pub async fn series_last_sent(
    ex: impl SqliteExecutor<'_>,
    k: SeriesKeyArgs<'_>,
) -> sqlx::Result<Option<Option<i64>>> {
    sqlx::query_scalar!(
        "SELECT last_sent_at FROM series WHERE ticket_id = ?1 AND policy = ?2 AND episode = ?3 AND dry_run = ?4",
        k.ticket_id,
        k.policy,
        k.episode,
        k.dry_run
    )
    .fetch_optional(ex)
    .await
}

/// Records the end of a claimed notice; 0 rows when fenced.
pub async fn record_done(ex: impl SqliteExecutor<'_>, d: DoneArgs<'_>) -> sqlx::Result<u64> {
    let also_cancelled = i64::from(d.also_cancelled);
    sqlx::query!(
        "UPDATE notices SET status = ?2, attempts = attempts + CASE WHEN ?2 = 'suppressed' THEN 0 ELSE 1 END,
                first_attempt_at = COALESCE(first_attempt_at, ?3), last_attempt_at = ?3, sent_at = ?4,
                finished_at = ?5, next_notice_at = ?6, last_error = COALESCE(?7, last_error),
                cancel_reason = CASE WHEN ?2 = 'cancelled' THEN cancel_reason ELSE NULL END,
                promise_outcome = CASE WHEN ?2 = 'sent' AND ?6 IS NOT NULL THEN 'pending' END,
                claimed_by = NULL, claim_until = NULL, updated_at = ?5
         WHERE id = ?1 AND claim_token = ?8
           AND (status = 'pending' OR (?9 = 1 AND status = 'cancelled'))",
        d.id,
        d.status,
        d.attempt_started,
        d.sent_at,
        d.finished,
        d.next_notice_at,
        d.error,
        d.claim_token,
        also_cancelled
    )
    .execute(ex)
    .await
    .map(changed)
}

/// Moves a series past notice `number` (a real send restarts the spacing
/// clock at `sent_started`); whether the series is active, None when it
/// was already past.
pub async fn advance_series(
    ex: impl SqliteExecutor<'_>,
    k: SeriesKeyArgs<'_>,
    number: i64,
    sent_started: Option<i64>,
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar!(
        "UPDATE series SET done = ?5, last_sent_at = COALESCE(?6, last_sent_at), next_id = NULL
         WHERE ticket_id = ?1 AND policy = ?2 AND episode = ?3 AND dry_run = ?4 AND done < ?5
         RETURNING active",
        k.ticket_id,
        k.policy,
        k.episode,
        k.dry_run,
        number,
        sent_started
    )
    .fetch_optional(ex)
    .await
}

/// Records a failed attempt to be tried again; 0 rows when fenced.
pub async fn record_retry(ex: impl SqliteExecutor<'_>, r: RetryArgs<'_>) -> sqlx::Result<u64> {
    sqlx::query!(
        "UPDATE notices SET attempts = attempts + 1, first_attempt_at = COALESCE(first_attempt_at, ?2),
                last_attempt_at = ?2, next_attempt_at = ?3, send_at = ?4, last_error = ?5,
                claimed_by = NULL, claim_until = NULL, updated_at = ?2
         WHERE id = ?1 AND claim_token = ?6 AND status = 'pending'",
        r.id,
        r.attempt_started,
        r.next_attempt,
        r.send_at,
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
    ex: impl SqliteExecutor<'_>,
    id: &str,
    claim_token: i64,
    next_attempt: Option<i64>,
    send_at: Option<i64>,
    hold_reason: Option<&str>,
) -> sqlx::Result<u64> {
    sqlx::query!(
        "UPDATE notices SET claimed_by = NULL, claim_until = NULL,
                next_attempt_at = COALESCE(?3, next_attempt_at), send_at = COALESCE(?4, send_at),
                hold_reason = ?5
         WHERE id = ?1 AND claim_token = ?2 AND status = 'pending'",
        id,
        claim_token,
        next_attempt,
        send_at,
        hold_reason
    )
    .execute(ex)
    .await
    .map(changed)
}

/// Cancels a claimed notice; 0 rows when fenced.
pub async fn cancel_claimed(
    ex: impl SqliteExecutor<'_>,
    id: &str,
    claim_token: i64,
    reason: &str,
    now: i64,
) -> sqlx::Result<u64> {
    sqlx::query!(
        "UPDATE notices SET status = 'cancelled', cancel_reason = ?3, finished_at = ?4, updated_at = ?4,
                claimed_by = NULL, claim_until = NULL
         WHERE id = ?1 AND claim_token = ?2 AND status = 'pending'",
        id,
        claim_token,
        reason,
        now
    )
    .execute(ex)
    .await
    .map(changed)
}

/// The earliest next attempt of any pending notice of one mode.
pub async fn next_due(ex: impl SqliteExecutor<'_>, dry_run: i64) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar!(
        r#"SELECT MIN(next_attempt_at) AS "at?: i64" FROM notices WHERE status = 'pending' AND dry_run = ?1"#,
        dry_run
    )
    .fetch_one(ex)
    .await
}

/// The earliest next attempt of a channel's pending notices nobody holds
/// a live claim on at `now`.
pub async fn next_attempt(
    ex: impl SqliteExecutor<'_>,
    channel: &str,
    dry_run: i64,
    now: i64,
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar!(
        "SELECT next_attempt_at FROM notices
         WHERE status = 'pending' AND channel = ?1 AND dry_run = ?2
           AND (claim_until IS NULL OR claim_until < ?3)
         ORDER BY next_attempt_at LIMIT 1",
        channel,
        dry_run,
        now
    )
    .fetch_optional(ex)
    .await
}

/// How many notices are pending and how many dead.
pub async fn count_pending_dead(ex: impl SqliteExecutor<'_>) -> sqlx::Result<(i64, i64)> {
    let row = sqlx::query!(
        r#"SELECT COALESCE(SUM(status = 'pending'), 0) AS "pending!: i64",
                  COALESCE(SUM(status = 'dead'), 0) AS "dead!: i64"
           FROM notices WHERE status IN ('pending', 'dead')"#
    )
    .fetch_one(ex)
    .await?;
    Ok((row.pending, row.dead))
}

pub async fn status_of(ex: impl SqliteExecutor<'_>, id: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar!("SELECT status FROM notices WHERE id = ?1", id)
        .fetch_optional(ex)
        .await
}

/// When a notice last went out to a recipient.
pub async fn last_sent_to(
    ex: impl SqliteExecutor<'_>,
    recipient: &str,
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar!(
        r#"SELECT MAX(sent_at) AS "at?: i64" FROM notices WHERE status = 'sent' AND recipient = ?1"#,
        recipient
    )
    .fetch_one(ex)
    .await
}
