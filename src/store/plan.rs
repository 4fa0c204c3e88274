//! The planning side of the ledger: series, plans, polls, the watermark.

use std::collections::{BTreeMap, HashSet};

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use interim_store_rows::{PendingArgs, SeriesArgs, WaitArgs};

use super::rows::{key_args, series, series_notice};
use super::{Db, Store, WriteTx, from_ms, ms, on_pool, on_tx};
use crate::ledger::{ChangedTickets, NextNotice, Plan, PlannedNotice, PollEnd, SeriesState, Swept};
use crate::notice::{SeriesKey, Status};

/// Ids bound per statement (one JSON array or one PostgreSQL array each).
/// 5,000 made PostgreSQL's second full poll of 100k tickets 2.2 → 3.0 s
/// (its plan for `= ANY` over a large array); SQLite was the same either way.
const IDS_PER_STATEMENT: usize = 500;

impl Store {
    pub async fn last_poll_at(&self) -> anyhow::Result<Option<DateTime<Utc>>> {
        self.meta_instant("last_poll_at")
            .await
            .context("failed to read the last poll time")
    }

    /// The source watermark: the newest `updated_at` seen by a poll, never
    /// later than that poll's start.
    pub async fn source_watermark(&self) -> anyhow::Result<Option<DateTime<Utc>>> {
        self.meta_instant("source_watermark")
            .await
            .context("failed to read the source watermark")
    }

    async fn meta_instant(&self, key: &'static str) -> anyhow::Result<Option<DateTime<Utc>>> {
        let value = on_pool!(self, meta_value(key))?;
        Ok(value.and_then(|v| v.parse::<i64>().ok()).map(from_ms))
    }

    /// Every series the ledger keeps (for one mode: live or dry run).
    pub async fn load_series(&self, dry_run: bool) -> anyhow::Result<Vec<SeriesState>> {
        let rows =
            on_pool!(self, all_series(i64::from(dry_run))).context("failed to load series")?;
        Ok(rows.into_iter().map(series).collect())
    }

    /// Every series of some tickets, active or not, all their waits.
    pub async fn load_series_for(
        &self,
        dry_run: bool,
        ticket_ids: &[&str],
    ) -> anyhow::Result<Vec<SeriesState>> {
        let mut out = Vec::new();
        for chunk in ticket_ids.chunks(IDS_PER_STATEMENT) {
            let rows = on_pool!(self, series_of_tickets(i64::from(dry_run), chunk))
                .context("failed to load series")?;
            out.extend(rows.into_iter().map(series));
        }
        Ok(out)
    }

    /// The states of series the ledger has notices of but no series row
    /// (a wait that came back after its row was removed, a ledger written
    /// by an older version), derived from their notices: the last number
    /// that reached an end, the start of the last real send, the notice
    /// after it. Keys without any notice are left out.
    pub async fn derive_series(
        &self,
        dry_run: bool,
        keys: &[SeriesKey],
    ) -> anyhow::Result<Vec<SeriesState>> {
        let wanted: HashSet<&SeriesKey> = keys.iter().collect();
        let mut ids: Vec<&str> = keys.iter().map(|k| k.ticket_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let sent = if dry_run { "dry_run" } else { "sent" };
        // Each notice of a wanted series, with when its last attempt started.
        type Attempted = (NextNotice, Option<DateTime<Utc>>);
        let mut notices: BTreeMap<SeriesKey, Vec<Attempted>> = BTreeMap::new();
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            let rows = on_pool!(self, notices_of_tickets(i64::from(dry_run), chunk))
                .context("failed to read the notices of a series")?;
            for row in rows {
                let (key, notice, attempt) = series_notice(row);
                if wanted.contains(&key) {
                    notices
                        .entry(key)
                        .or_default()
                        .push((notice, attempt.map(from_ms)));
                }
            }
        }
        Ok(notices
            .into_iter()
            .map(|(key, rows)| {
                let ended = |s: Status| {
                    matches!(
                        s,
                        Status::Sent | Status::Dead | Status::Suppressed | Status::DryRun
                    )
                };
                let done = rows
                    .iter()
                    .filter(|(n, _)| ended(n.status))
                    .map(|(n, _)| n.number)
                    .max()
                    .unwrap_or(0);
                let last_sent_at = rows
                    .iter()
                    .filter(|(n, _)| n.status.as_str() == sent)
                    .filter_map(|(_, at)| *at)
                    .max();
                let next = rows
                    .into_iter()
                    .map(|(n, _)| n)
                    .find(|n| Some(n.number) == done.checked_add(1));
                SeriesState {
                    key,
                    done,
                    last_sent_at,
                    active: true,
                    stored: false,
                    next,
                }
            })
            .collect())
    }

    /// Tickets with an active series, in id order after `after`, each with
    /// the ticket data stored with its most recently written notice, live or
    /// dry run (both store what the source said): what a reload re-plans
    /// from. That copy can be of an earlier wait than the series; the
    /// caller checks.
    pub async fn active_tickets(
        &self,
        dry_run: bool,
        after: &str,
        limit: usize,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let ids = on_pool!(self, active_ticket_ids(i64::from(dry_run), after, limit))
            .context("failed to read the tickets with active series")?;
        let mut latest: BTreeMap<String, (i64, String)> = BTreeMap::new();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        for chunk in refs.chunks(IDS_PER_STATEMENT) {
            let rows =
                on_pool!(self, stored_tickets(chunk)).context("failed to read stored tickets")?;
            for r in rows {
                if latest
                    .get(&r.ticket_id)
                    .is_none_or(|(seen, _)| *seen < r.updated_at)
                {
                    latest.insert(r.ticket_id, (r.updated_at, r.ticket));
                }
            }
        }
        Ok(ids
            .into_iter()
            .map(|id| {
                let json = latest.remove(&id).map(|(_, j)| j).unwrap_or_default();
                (id, json)
            })
            .collect())
    }

    /// The tickets whose notices or series changed since the marks were
    /// last cleared (see crates/store-*/migrations/0005_plan_dirty.sql).
    pub async fn changed_tickets(&self) -> anyhow::Result<ChangedTickets> {
        let mut out = ChangedTickets::default();
        // Streamed into the sets: after a large change (the first poll of
        // a big helpdesk) there is a mark for every ticket.
        let mut rows = match &self.db {
            Db::Sqlite(pool) => interim_store_sqlite::changed_tickets(pool),
            Db::Postgres(pool) => interim_store_postgres::changed_tickets(pool),
        };
        while let Some(row) = rows
            .try_next()
            .await
            .context("failed to read the changed tickets")?
        {
            out.mark = Some(out.mark.map_or(row.mark, |m| m.max(row.mark)));
            if row.dry_run != 0 {
                out.dry_run.insert(&row.ticket_id);
            } else {
                out.live.insert(&row.ticket_id);
            }
        }
        Ok(out)
    }

    /// Forgets the changes that [`changed_tickets`](Self::changed_tickets)
    /// read with `mark`, and none written since.
    pub async fn clear_changed(&self, mark: i64) -> anyhow::Result<()> {
        on_pool!(self, clear_changed(mark)).context("failed to clear the changed tickets")
    }

    /// With dry run off, what dry run had pending is never recorded.
    pub async fn cancel_pending_dry_runs(&self, now: DateTime<Utc>) -> anyhow::Result<usize> {
        let done = on_pool!(self, cancel_pending_dry_runs(ms(now)))
            .context("failed to cancel pending dry-run notices")?;
        Ok(usize::try_from(done).unwrap_or(usize::MAX))
    }

    /// Applies one plan in one transaction.
    pub async fn apply_plan(&self, plan: &Plan, now: DateTime<Utc>) -> anyhow::Result<()> {
        if plan.is_empty() {
            return Ok(());
        }
        let mut tx = self
            .begin_write()
            .await
            .context("failed to begin the plan transaction")?;
        self.write_plan(&mut tx, plan, now).await?;
        Self::announce_plans(&mut tx).await?;
        tx.commit().await.context("failed to commit the plan")?;
        let written = plan.upserts.len().saturating_add(plan.series.len());
        self.analyze_when_grown(u64::try_from(written).unwrap_or(u64::MAX))
            .await;
        Ok(())
    }

    /// PostgreSQL plans the series lookup by its statistics: right after a
    /// first poll of many tickets (or a copy), before autovacuum has looked,
    /// it takes the tables for tiny and joins them row by row (a steady
    /// poll of 100,000 tickets took 270 s instead of seconds). So once the
    /// rows written since the last ANALYZE reach 1,000 and a tenth of all
    /// written before, this instance analyzes the two tables itself.
    pub(super) async fn analyze_when_grown(&self, written: u64) {
        if !matches!(self.db, Db::Postgres(_)) || written == 0 {
            return;
        }
        let due = {
            let mut growth = self.growth.lock().unwrap_or_else(|e| e.into_inner());
            growth.0 = growth.0.saturating_add(written);
            let due = growth.0 >= 1000 && growth.0 >= growth.1 / 10;
            if due {
                growth.1 = growth.1.saturating_add(growth.0);
                growth.0 = 0;
            }
            due
        };
        if due {
            self.analyze().await;
        }
    }

    /// ANALYZE of the ledger's big tables; a failure only costs speed.
    pub(super) async fn analyze(&self) {
        if let Db::Postgres(pool) = &self.db
            && let Err(e) = interim_store_postgres::analyze(pool).await
        {
            tracing::debug!(error = %e, "cannot analyze the ledger tables");
        }
    }

    /// Ends a poll: a full poll ends the active series of tickets it did not
    /// return (their pending notices are cancelled, returned for the log;
    /// the series rows stay, so a ticket that comes back with the same wait
    /// continues where it was); then the poll time and the watermark.
    pub async fn finish_poll(&self, end: PollEnd<'_>) -> anyhow::Result<Vec<Swept>> {
        let mut absent: Vec<(bool, Vec<String>)> = Vec::new();
        if let Some(seen) = end.seen {
            for &dry_run in end.modes {
                let dry = i64::from(dry_run);
                let mut ids = match &self.db {
                    Db::Sqlite(pool) => interim_store_sqlite::tracked_ticket_ids(pool, dry),
                    Db::Postgres(pool) => interim_store_postgres::tracked_ticket_ids(pool, dry),
                };
                // Filtered as they stream: only the absent ones are held.
                let mut gone = Vec::new();
                while let Some(id) = ids
                    .try_next()
                    .await
                    .context("failed to read the tracked tickets")?
                {
                    if !seen.contains(&id) {
                        gone.push(id);
                    }
                }
                absent.push((dry_run, gone));
            }
        }
        let mut tx = self
            .begin_write()
            .await
            .context("failed to begin the poll transaction")?;
        let mut swept = Vec::new();
        let now = ms(end.now);
        for (dry_run, ids) in &absent {
            let dry_run = i64::from(*dry_run);
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            for chunk in refs.chunks(IDS_PER_STATEMENT) {
                let rows = on_tx!(tx, sweep_tickets(now, dry_run, chunk))?;
                swept.extend(rows.into_iter().map(|r| Swept {
                    id: r.id,
                    ticket_id: r.ticket_id,
                    policy: r.policy,
                }));
                on_tx!(tx, deactivate_series(dry_run, chunk))?;
                on_tx!(tx, end_waits_of_tickets(now, dry_run, chunk))?;
            }
        }
        self.write_poll_meta(&mut tx, end.now, end.watermark)
            .await?;
        tx.commit().await.context("failed to commit the poll")?;
        Ok(swept)
    }

    async fn write_poll_meta(
        &self,
        tx: &mut WriteTx,
        now: DateTime<Utc>,
        watermark: Option<DateTime<Utc>>,
    ) -> anyhow::Result<()> {
        let now = ms(now).to_string();
        on_tx!(tx, set_meta("last_poll_at", &now))?;
        if let Some(watermark) = watermark {
            let watermark = ms(watermark).to_string();
            on_tx!(tx, set_meta("source_watermark", &watermark))?;
        }
        Ok(())
    }

    /// Series rows, cancels, ended waits and pending notices of one plan.
    async fn write_plan(
        &self,
        tx: &mut WriteTx,
        plan: &Plan,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let now_ms = ms(now);
        for s in &plan.series {
            let series = SeriesArgs {
                key: key_args(&s.key, plan.dry_run),
                done: i64::from(s.done),
                last_sent_at: s.last_sent_at.map(ms),
                next_id: s.next_id.as_deref(),
                active: i64::from(s.active),
            };
            on_tx!(tx, upsert_series(series))?;
        }
        for cancel in &plan.cancels {
            on_tx!(tx, cancel_pending(&cancel.id, &cancel.reason, now_ms))?;
        }
        for key in &plan.deleted_series {
            on_tx!(tx, delete_series(key_args(key, plan.dry_run)))?;
        }
        for n in &plan.upserts {
            self.write_pending(tx, n, plan.dry_run, now).await?;
        }
        let dry_run = i64::from(plan.dry_run);
        for w in &plan.waits {
            let policies = w.policies.join(",");
            let wait = WaitArgs {
                ticket_id: &w.ticket_id,
                episode: ms(w.episode),
                dry_run,
                ticket_number: w.ticket_number.as_deref(),
                queue: w.queue.as_deref(),
                priority: w.priority.as_deref(),
                origin: w.origin.as_deref(),
                language: w.language.as_deref(),
                policies: &policies,
                first_due_at: w.first_due_at.map(ms),
                now: now_ms,
            };
            on_tx!(tx, upsert_wait(wait)).context("failed to record a wait")?;
        }
        for end in &plan.ended_waits {
            let except = end.except_episode.map(ms);
            on_tx!(
                tx,
                end_waits(&end.ticket_id, dry_run, except, end.how.as_str(), now_ms)
            )
            .context("failed to end a wait")?;
        }
        Ok(())
    }

    /// Writes a planned notice as the pending next notice of its series. A
    /// pending notice follows the plan (a changed threshold moves it) while
    /// its retry schedule stays; a cancelled one comes back when its ticket
    /// matches again. Ended notices never change.
    pub(super) async fn write_pending(
        &self,
        tx: &mut WriteTx,
        n: &PlannedNotice,
        dry_run: bool,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let key = key_args(&n.key, dry_run);
        let pending = PendingArgs {
            id: &n.id,
            key,
            number: i64::from(n.number),
            max_notices: i64::from(n.max_notices),
            channel: &n.channel,
            recipient: n.recipient.as_deref(),
            due_at: ms(n.due_at),
            send_at: ms(n.send_at),
            ticket: &n.ticket_json,
            now: ms(now),
            ticket_hash: n.ticket_hash,
        };
        on_tx!(tx, write_pending(pending))?;
        on_tx!(tx, set_next_id(key, &n.id))?;
        Ok(())
    }
}
