//! What the status pages read.

use interim_store_rows::{ListedRow, NoticePageArgs, OverviewRow};
use sqlx::PgExecutor;

use super::convert::{PgListed, all, at, flag};

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

/// A page of the ledger, newest first (see [`NoticePageArgs`]).
pub async fn page_notices(
    ex: impl PgExecutor<'_>,
    a: NoticePageArgs<'_>,
) -> sqlx::Result<Vec<ListedRow>> {
    let (before_at, before_id) = match a.before {
        Some((at_ms, id)) => (Some(at(at_ms)?), Some(id)),
        None => (None, None),
    };
    let rows = sqlx::query_as!(
        PgListed,
        r#"SELECT id, ticket_id, policy, number, max_notices, status, attempts, due_at, send_at,
                  next_attempt_at, sent_at, last_error, channel, recipient, dry_run, next_notice_at,
                  cancel_reason, episode, ticket, promise_outcome, promise_reason, created_at
           FROM notices
           WHERE dry_run = $1 AND ($2::text IS NULL OR status = $2)
             AND ($3::text IS NULL OR policy = $3) AND ($4::text IS NULL OR channel = $4)
             AND ($5::text IS NULL OR ticket_id = $5)
             AND ($6::timestamptz IS NULL OR created_at < $6
                  OR (created_at = $6 AND id < $7))
           ORDER BY created_at DESC, id DESC
           LIMIT $8"#,
        flag(a.dry_run),
        a.status,
        a.policy,
        a.channel,
        a.ticket_id,
        before_at,
        before_id,
        a.limit
    )
    .fetch_all(ex)
    .await?;
    Ok(all(rows))
}

/// The pending notices that go out next, earliest first.
pub async fn upcoming_notices(
    ex: impl PgExecutor<'_>,
    dry_run: i64,
    limit: i64,
) -> sqlx::Result<Vec<ListedRow>> {
    let rows = sqlx::query_as!(
        PgListed,
        r#"SELECT id, ticket_id, policy, number, max_notices, status, attempts, due_at, send_at,
                  next_attempt_at, sent_at, last_error, channel, recipient, dry_run, next_notice_at,
                  cancel_reason, episode, ticket, promise_outcome, promise_reason, created_at
           FROM notices
           WHERE status = 'pending' AND dry_run = $1
           ORDER BY send_at, id
           LIMIT $2"#,
        flag(dry_run),
        limit
    )
    .fetch_all(ex)
    .await?;
    Ok(all(rows))
}
