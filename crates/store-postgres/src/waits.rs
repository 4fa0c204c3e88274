//! The wait history: one row per wait (ticket, episode) a policy matched.

use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use interim_store_rows::{ReportWaitRow, WaitArgs, WaitRow};
use sqlx::PgExecutor;

use super::changed;
use super::convert::{PgReportWait, PgWait, all, at, at_opt, flag};

/// Writes a wait as a poll saw it; one that had ended (its ticket left and
/// came back with the same `waiting_since`) is open again.
pub async fn upsert_wait(ex: impl PgExecutor<'_>, w: WaitArgs<'_>) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO waits (ticket_id, episode, dry_run, ticket_number, queue, priority, origin,
                            language, policies, first_due_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (ticket_id, episode, dry_run) DO UPDATE SET
             ticket_number = excluded.ticket_number, queue = excluded.queue,
             priority = excluded.priority, origin = excluded.origin,
             language = excluded.language, policies = excluded.policies,
             first_due_at = excluded.first_due_at, ended_at = NULL, end_reason = NULL,
             updated_at = excluded.updated_at",
        w.ticket_id,
        at(w.episode)?,
        flag(w.dry_run),
        w.ticket_number,
        w.queue,
        w.priority,
        w.origin,
        w.language,
        w.policies,
        at_opt(w.first_due_at)?,
        at(w.now)?
    )
    .execute(ex)
    .await?;
    Ok(())
}

/// Ends the open waits of a ticket, but the one of `except_episode`.
pub async fn end_waits(
    ex: impl PgExecutor<'_>,
    ticket_id: &str,
    dry_run: i64,
    except_episode: Option<i64>,
    reason: &str,
    now: i64,
) -> sqlx::Result<u64> {
    sqlx::query!(
        "UPDATE waits SET ended_at = $5, end_reason = $4, updated_at = $5
         WHERE ticket_id = $1 AND dry_run = $2 AND ended_at IS NULL
           AND episode IS DISTINCT FROM $3",
        ticket_id,
        flag(dry_run),
        at_opt(except_episode)?,
        reason,
        at(now)?
    )
    .execute(ex)
    .await
    .map(changed)
}

/// Ends the open waits of some tickets that left the source.
pub async fn end_waits_of_tickets(
    ex: impl PgExecutor<'_>,
    now: i64,
    dry_run: i64,
    ticket_ids: &[&str],
) -> sqlx::Result<u64> {
    sqlx::query!(
        "UPDATE waits SET ended_at = $1, end_reason = 'left', updated_at = $1
         WHERE dry_run = $2 AND ended_at IS NULL AND ticket_id = ANY($3)",
        at(now)?,
        flag(dry_run),
        ticket_ids as &[&str]
    )
    .execute(ex)
    .await
    .map(changed)
}

/// The waits of one ticket, oldest first.
pub async fn waits_of_ticket(
    ex: impl PgExecutor<'_>,
    ticket_id: &str,
    dry_run: i64,
) -> sqlx::Result<Vec<WaitRow>> {
    let rows = sqlx::query_as!(
        PgWait,
        "SELECT ticket_id, episode, dry_run, ticket_number, queue, priority, origin, language,
                policies, first_due_at, ended_at, end_reason
         FROM waits WHERE ticket_id = $1 AND dry_run = $2 ORDER BY episode",
        ticket_id,
        flag(dry_run)
    )
    .fetch_all(ex)
    .await?;
    Ok(all(rows))
}

/// Deletes up to `limit` waits that ended before `before`.
pub async fn prune_waits(ex: impl PgExecutor<'_>, before: i64, limit: i64) -> sqlx::Result<u64> {
    sqlx::query!(
        "DELETE FROM waits WHERE ctid IN
             (SELECT ctid FROM waits WHERE ended_at < $1 LIMIT $2)",
        at(before)?,
        limit
    )
    .execute(ex)
    .await
    .map(changed)
}

/// The open waits of one mode, counted by their list of policies.
pub async fn open_waits_by_policies(
    ex: impl PgExecutor<'_>,
    dry_run: i64,
) -> sqlx::Result<Vec<(String, i64)>> {
    let rows = sqlx::query!(
        r#"SELECT policies, COUNT(*) AS "waits!" FROM waits
           WHERE dry_run = $1 AND ended_at IS NULL GROUP BY policies"#,
        flag(dry_run)
    )
    .fetch_all(ex)
    .await?;
    Ok(rows.into_iter().map(|r| (r.policies, r.waits)).collect())
}

/// Every wait a report over [`since`, `until`) counts, one row each,
/// with what its notices sent in the period add up to; streamed.
pub fn report_waits<'e>(
    ex: impl PgExecutor<'e> + 'e,
    dry_run: i64,
    since: i64,
    until: i64,
) -> BoxStream<'e, sqlx::Result<ReportWaitRow>> {
    let (since, until) = match (at(since), at(until)) {
        (Ok(since), Ok(until)) => (since, until),
        (Err(e), _) | (_, Err(e)) => return futures::stream::once(async move { Err(e) }).boxed(),
    };
    sqlx::query_as!(
        PgReportWait,
        r#"SELECT w.ticket_id, w.episode, w.dry_run, w.ticket_number, w.queue, w.priority, w.origin,
                  w.language, w.policies, w.first_due_at, w.ended_at, w.end_reason,
                  string_agg(n.number::text, ',') AS numbers,
                  count(*) FILTER (WHERE n.promise_outcome = 'kept') AS "kept!",
                  count(*) FILTER (WHERE n.promise_outcome = 'superseded') AS "superseded!",
                  count(*) FILTER (WHERE n.promise_outcome IN ('pending', 'due')) AS "pending!",
                  string_agg(coalesce(n.promise_reason, 'unknown'), ',')
                    FILTER (WHERE n.promise_outcome = 'broken') AS broken,
                  coalesce(bool_or(n.number >= n.max_notices
                                   AND (w.ended_at IS NULL OR n.sent_at < w.ended_at)), false)
                    AS "got_last!"
           FROM waits w
           LEFT JOIN notices n
             ON n.ticket_id = w.ticket_id AND n.episode = w.episode AND n.dry_run = w.dry_run
            AND n.status = 'sent' AND n.sent_at >= $2 AND n.sent_at < $3
           WHERE w.dry_run = $1 AND w.episode < $3 AND (w.ended_at IS NULL OR w.ended_at >= $2)
           GROUP BY w.ticket_id, w.episode, w.dry_run"#,
        flag(dry_run),
        since,
        until
    )
    .fetch(ex)
    .map_ok(ReportWaitRow::from)
    .boxed()
}
