//! Promise outcomes: finding the promises that can be decided, and
//! writing what was decided.

use interim_store_rows::PromiseRow;
use sqlx::SqliteExecutor;

use super::changed;

/// Up to `limit` undecided promises that may be decided: those marked due
/// (their next notice or their wait ended) and the pending ones promised
/// at or before `cutoff` (now − grace: their deadline has passed).
pub async fn promises_to_decide(
    ex: impl SqliteExecutor<'_>,
    cutoff: i64,
    limit: i64,
) -> sqlx::Result<Vec<PromiseRow>> {
    sqlx::query_as!(
        PromiseRow,
        r#"SELECT n.id AS "id!", n.policy AS "policy!", n.next_notice_at AS "promised!: i64",
                  m.status AS "next_status?", m.sent_at AS "next_sent_at?: i64",
                  m.cancel_reason AS "next_cancel_reason?", m.hold_reason AS "next_hold_reason?",
                  w.ended_at AS "wait_ended_at?: i64"
           FROM (SELECT id FROM notices WHERE promise_outcome = 'due'
                 UNION ALL
                 SELECT id FROM notices WHERE promise_outcome = 'pending' AND next_notice_at <= ?1
                 LIMIT ?2) c
           JOIN notices n ON n.id = c.id
           LEFT JOIN notices m ON m.ticket_id = n.ticket_id AND m.policy = n.policy
                AND m.episode = n.episode AND m.dry_run = n.dry_run AND m.number = n.number + 1
           LEFT JOIN waits w ON w.ticket_id = n.ticket_id AND w.episode = n.episode
                AND w.dry_run = n.dry_run"#,
        cutoff,
        limit
    )
    .fetch_all(ex)
    .await
}

/// Records a promise's outcome (once: a decided promise stays decided).
pub async fn decide_promise(
    ex: impl SqliteExecutor<'_>,
    id: &str,
    outcome: &str,
    reason: Option<&str>,
    now: i64,
) -> sqlx::Result<u64> {
    sqlx::query!(
        "UPDATE notices SET promise_outcome = ?2, promise_reason = ?3, promise_decided_at = ?4
         WHERE id = ?1 AND promise_outcome IN ('pending', 'due')",
        id,
        outcome,
        reason,
        now
    )
    .execute(ex)
    .await
    .map(changed)
}

/// A promise marked due that could not be decided yet waits again.
pub async fn promise_pending_again(ex: impl SqliteExecutor<'_>, id: &str) -> sqlx::Result<u64> {
    sqlx::query!(
        "UPDATE notices SET promise_outcome = 'pending' WHERE id = ?1 AND promise_outcome = 'due'",
        id
    )
    .execute(ex)
    .await
    .map(changed)
}
