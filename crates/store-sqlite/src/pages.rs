//! What the status pages read.

use interim_store_rows::OverviewRow;
use sqlx::SqliteExecutor;

/// The overview's counts at once: pending notices planned before
/// `hour` and before `day`, sent since `today`, dead, the promises decided
/// since `decided_since` by outcome, and the open waits that got their
/// last notice.
pub async fn overview_counts(
    ex: impl SqliteExecutor<'_>,
    dry_run: i64,
    hour: i64,
    day: i64,
    today: i64,
    decided_since: i64,
) -> sqlx::Result<OverviewRow> {
    sqlx::query_as!(
        OverviewRow,
        r#"SELECT
             (SELECT count(*) FROM notices
              WHERE status = 'pending' AND dry_run = ?1 AND send_at < ?2) AS "due_hour!: i64",
             (SELECT count(*) FROM notices
              WHERE status = 'pending' AND dry_run = ?1 AND send_at < ?3) AS "due_day!: i64",
             (SELECT count(*) FROM notices
              WHERE status = 'sent' AND dry_run = ?1 AND sent_at >= ?4) AS "sent_today!: i64",
             (SELECT count(*) FROM notices WHERE status = 'dead' AND dry_run = ?1) AS "dead!: i64",
             (SELECT count(*) FROM notices
              WHERE promise_outcome = 'kept' AND promise_decided_at >= ?5 AND dry_run = ?1) AS "kept!: i64",
             (SELECT count(*) FROM notices
              WHERE promise_outcome = 'superseded' AND promise_decided_at >= ?5 AND dry_run = ?1)
               AS "superseded!: i64",
             (SELECT count(*) FROM notices
              WHERE promise_outcome = 'broken' AND promise_decided_at >= ?5 AND dry_run = ?1) AS "broken!: i64",
             (SELECT count(*) FROM waits w
              WHERE w.ended_at IS NULL AND w.dry_run = ?1
                AND EXISTS (SELECT 1 FROM notices n
                            WHERE n.ticket_id = w.ticket_id AND n.episode = w.episode
                              AND n.dry_run = w.dry_run AND n.status = 'sent'
                              AND n.number >= n.max_notices)) AS "exhausted!: i64""#,
        dry_run,
        hour,
        day,
        today,
        decided_since
    )
    .fetch_one(ex)
    .await
}
