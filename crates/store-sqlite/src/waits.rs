//! The wait history: one row per wait (ticket, episode) a policy matched.

use futures::stream::BoxStream;
use interim_store_rows::{ReportWaitRow, WaitArgs, WaitRow};
use sqlx::SqliteExecutor;

use super::{changed, id_set};

/// Writes a wait as a poll saw it; one that had ended (its ticket left and
/// came back with the same `waiting_since`) is open again.
pub async fn upsert_wait(ex: impl SqliteExecutor<'_>, w: WaitArgs<'_>) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO waits (ticket_id, episode, dry_run, ticket_number, queue, priority, origin,
                            language, policies, first_due_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (ticket_id, episode, dry_run) DO UPDATE SET
             ticket_number = excluded.ticket_number, queue = excluded.queue,
             priority = excluded.priority, origin = excluded.origin,
             language = excluded.language, policies = excluded.policies,
             first_due_at = excluded.first_due_at, ended_at = NULL, end_reason = NULL,
             updated_at = excluded.updated_at",
        w.ticket_id,
        w.episode,
        w.dry_run,
        w.ticket_number,
        w.queue,
        w.priority,
        w.origin,
        w.language,
        w.policies,
        w.first_due_at,
        w.now
    )
    .execute(ex)
    .await?;
    Ok(())
}

/// Ends the open waits of a ticket, but the one of `except_episode`.
pub async fn end_waits(
    ex: impl SqliteExecutor<'_>,
    ticket_id: &str,
    dry_run: i64,
    except_episode: Option<i64>,
    reason: &str,
    now: i64,
) -> sqlx::Result<u64> {
    sqlx::query!(
        "UPDATE waits SET ended_at = ?5, end_reason = ?4, updated_at = ?5
         WHERE ticket_id = ?1 AND dry_run = ?2 AND ended_at IS NULL AND episode IS NOT ?3",
        ticket_id,
        dry_run,
        except_episode,
        reason,
        now
    )
    .execute(ex)
    .await
    .map(changed)
}

/// Ends the open waits of some tickets that left the source.
pub async fn end_waits_of_tickets(
    ex: impl SqliteExecutor<'_>,
    now: i64,
    dry_run: i64,
    ticket_ids: &[&str],
) -> sqlx::Result<u64> {
    let ids = id_set(ticket_ids);
    sqlx::query!(
        "UPDATE waits SET ended_at = ?1, end_reason = 'left', updated_at = ?1
         WHERE dry_run = ?2 AND ended_at IS NULL
           AND ticket_id IN (SELECT value FROM json_each(?3))",
        now,
        dry_run,
        ids
    )
    .execute(ex)
    .await
    .map(changed)
}

/// The waits of one ticket, oldest first.
pub async fn waits_of_ticket(
    ex: impl SqliteExecutor<'_>,
    ticket_id: &str,
    dry_run: i64,
) -> sqlx::Result<Vec<WaitRow>> {
    sqlx::query_as!(
        WaitRow,
        r#"SELECT ticket_id, episode, dry_run, ticket_number, queue, priority, origin, language,
                  policies, first_due_at, ended_at, end_reason
           FROM waits WHERE ticket_id = ?1 AND dry_run = ?2 ORDER BY episode"#,
        ticket_id,
        dry_run
    )
    .fetch_all(ex)
    .await
}

/// Deletes up to `limit` waits that ended before `before`.
pub async fn prune_waits(
    ex: impl SqliteExecutor<'_>,
    before: i64,
    limit: i64,
) -> sqlx::Result<u64> {
    sqlx::query!(
        "DELETE FROM waits WHERE rowid IN
             (SELECT rowid FROM waits WHERE ended_at < ?1 LIMIT ?2)",
        before,
        limit
    )
    .execute(ex)
    .await
    .map(changed)
}

/// The open waits of one mode, counted by their list of policies.
pub async fn open_waits_by_policies(
    ex: impl SqliteExecutor<'_>,
    dry_run: i64,
) -> sqlx::Result<Vec<(String, i64)>> {
    let rows = sqlx::query!(
        r#"SELECT policies, COUNT(*) AS "waits!: i64" FROM waits
           WHERE dry_run = ?1 AND ended_at IS NULL GROUP BY policies"#,
        dry_run
    )
    .fetch_all(ex)
    .await?;
    Ok(rows.into_iter().map(|r| (r.policies, r.waits)).collect())
}

/// Every wait a report over [`since`, `until`) counts, one row each,
/// with what its notices sent in the period add up to; streamed.
pub fn report_waits<'e>(
    ex: impl SqliteExecutor<'e> + 'e,
    dry_run: i64,
    since: i64,
    until: i64,
) -> BoxStream<'e, sqlx::Result<ReportWaitRow>> {
    sqlx::query_as!(
        ReportWaitRow,
        r#"SELECT w.ticket_id AS "ticket_id!", w.episode AS "episode!", w.dry_run AS "dry_run!",
                  w.ticket_number, w.queue, w.priority, w.origin, w.language,
                  w.policies AS "policies!", w.first_due_at, w.ended_at, w.end_reason,
                  group_concat(n.number) AS "numbers: String",
                  coalesce(sum(n.promise_outcome = 'kept'), 0) AS "kept!: i64",
                  coalesce(sum(n.promise_outcome = 'superseded'), 0) AS "superseded!: i64",
                  coalesce(sum(n.promise_outcome IN ('pending', 'due')), 0) AS "pending!: i64",
                  group_concat(CASE WHEN n.promise_outcome = 'broken'
                                    THEN coalesce(n.promise_reason, 'unknown') END) AS "broken: String",
                  coalesce(max(n.number >= n.max_notices
                               AND (w.ended_at IS NULL OR n.sent_at < w.ended_at)), 0) AS "got_last!: i64"
           FROM waits w
           LEFT JOIN notices n
             ON n.ticket_id = w.ticket_id AND n.episode = w.episode AND n.dry_run = w.dry_run
            AND n.status = 'sent' AND n.sent_at >= ?2 AND n.sent_at < ?3
           WHERE w.dry_run = ?1 AND w.episode < ?3 AND (w.ended_at IS NULL OR w.ended_at >= ?2)
           GROUP BY w.ticket_id, w.episode, w.dry_run"#,
        dry_run,
        since,
        until
    )
    .fetch(ex)
}
