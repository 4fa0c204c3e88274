//! What the status pages read.

use interim_store_rows::OverviewRow;
use sqlx::PgExecutor;

use super::convert::{at, flag};

/// The overview's counts at once: pending notices planned before
/// `hour` and before `day`, sent since `today`, dead, the promises decided
/// since `decided_since` by outcome, and the open waits that got their
/// last notice.
pub async fn overview_counts(
    ex: impl PgExecutor<'_>,
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
              WHERE status = 'pending' AND dry_run = $1 AND send_at < $2) AS "due_hour!",
             (SELECT count(*) FROM notices
              WHERE status = 'pending' AND dry_run = $1 AND send_at < $3) AS "due_day!",
             (SELECT count(*) FROM notices
              WHERE status = 'sent' AND dry_run = $1 AND sent_at >= $4) AS "sent_today!",
             (SELECT count(*) FROM notices WHERE status = 'dead' AND dry_run = $1) AS "dead!",
             (SELECT count(*) FROM notices
              WHERE promise_outcome = 'kept' AND promise_decided_at >= $5 AND dry_run = $1) AS "kept!",
             (SELECT count(*) FROM notices
              WHERE promise_outcome = 'superseded' AND promise_decided_at >= $5 AND dry_run = $1)
               AS "superseded!",
             (SELECT count(*) FROM notices
              WHERE promise_outcome = 'broken' AND promise_decided_at >= $5 AND dry_run = $1) AS "broken!",
             (SELECT count(*) FROM waits w
              WHERE w.ended_at IS NULL AND w.dry_run = $1
                AND EXISTS (SELECT 1 FROM notices n
                            WHERE n.ticket_id = w.ticket_id AND n.episode = w.episode
                              AND n.dry_run = w.dry_run AND n.status = 'sent'
                              AND n.number >= n.max_notices)) AS "exhausted!""#,
        flag(dry_run),
        at(hour)?,
        at(day)?,
        at(today)?,
        at(decided_since)?
    )
    .fetch_one(ex)
    .await
}
