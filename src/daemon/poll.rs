//! One poll: read the source (fully, or only what changed since the
//! watermark), plan the affected series chunk by chunk, and apply the plans
//! to the ledger only once the poll is complete. A poll that fails (an
//! error, a reader that died, too many skipped rows) changes nothing.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::memo::{PlanMemo, TicketDigest};
use super::stage::PlanStage;
use crate::config::Settings;
use crate::ledger::{PlanLedger, PollEnd};
use crate::notice::SeriesKey;
use crate::planner::{self, Mode, Plan};
use crate::row_counts::RowCounts;
use crate::source::{PollKind, Source};
use crate::ticket::Ticket;

/// What one poll did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PollSummary {
    pub full: bool,
    pub tickets: usize,
    pub ended: usize,
    pub skipped_rows: usize,
    pub planned: usize,
    pub cancelled: usize,
    /// Tickets (per mode) not planned: nothing about them changed.
    pub unchanged: usize,
}

/// A poll that was read completely but not taken: every row, or too large
/// a share of them, broke the column contract.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct PollRejected(pub String);

/// Remembers which bad rows were already logged, so a broken row is one
/// log line and one count in `interim_source_rows_skipped_total`, not one
/// per poll.
#[derive(Default)]
pub struct ProblemLog {
    seen: HashSet<String>,
}

impl ProblemLog {
    /// Logs the problems not logged before. A full poll replaces what is
    /// remembered (a fixed row may break again later and is logged again);
    /// an incremental one adds to it.
    fn report(&mut self, problems: impl Iterator<Item = String>, what: &str, full: bool) {
        let current: HashSet<String> = problems.collect();
        for problem in current.difference(&self.seen) {
            warn!(problem = %crate::logging::clip(problem, 2000), "{what}");
        }
        if full {
            self.seen = current;
        } else {
            self.seen.extend(current);
        }
    }
    /// How many of `problems` were not logged before (new since the last
    /// full poll): counted once, not once per poll.
    fn count_new(&self, problems: &HashSet<String>) -> usize {
        problems.difference(&self.seen).count()
    }
}

/// Decides between full and incremental polls: incremental ones only with
/// an incremental query and a known watermark, and a full one at least
/// every `source.full_resync` (the only way to see deleted tickets).
#[derive(Default)]
pub struct PollSchedule {
    last_full: Option<DateTime<Utc>>,
}

impl PollSchedule {
    pub async fn next_kind(
        &self,
        source: &Source,
        store: &impl PlanLedger,
        settings: &Settings,
        now: DateTime<Utc>,
    ) -> anyhow::Result<PollKind> {
        let resync = chrono::Duration::from_std(settings.source.full_resync)
            .unwrap_or(chrono::Duration::MAX);
        let resync_due = self
            .last_full
            .is_none_or(|at| now < at || now.signed_duration_since(at) >= resync);
        if !source.incremental() || resync_due {
            return Ok(PollKind::Full);
        }
        let overlap =
            chrono::Duration::from_std(settings.source.overlap).unwrap_or(chrono::Duration::zero());
        Ok(match store.source_watermark().await? {
            Some(watermark) => PollKind::Changes {
                since: watermark.checked_sub_signed(overlap).unwrap_or(watermark),
            },
            None => PollKind::Full,
        })
    }

    pub fn done(&mut self, kind: PollKind, now: DateTime<Utc>) {
        if kind == PollKind::Full {
            self.last_full = Some(now);
        }
    }
}

/// Rows planned per chunk: bounds memory on large helpdesks (a million
/// tickets are never held at once).
pub const CHUNK: usize = 5_000;

/// Polls the source once (as `kind` says) at `now`, plans every chunk
/// against the ledger and stages the plans; only when the poll is complete
/// are they applied, then a full poll ends the series of tickets it did
/// not see. The poll counts as successful (`last_poll_at`) only then.
pub async fn poll_and_plan(
    source: &Source,
    store: &impl PlanLedger,
    settings: &Settings,
    now: DateTime<Utc>,
    kind: PollKind,
    problems: &mut ProblemLog,
    memo: &mut PlanMemo,
) -> anyhow::Result<PollSummary> {
    poll_in_chunks(source, store, settings, now, kind, problems, memo, CHUNK).await
}

/// [`poll_and_plan`] with a chosen chunk size (tests use small ones).
#[allow(clippy::too_many_arguments)]
pub async fn poll_in_chunks(
    source: &Source,
    store: &impl PlanLedger,
    settings: &Settings,
    now: DateTime<Utc>,
    kind: PollKind,
    problems: &mut ProblemLog,
    memo: &mut PlanMemo,
    chunk: usize,
) -> anyhow::Result<PollSummary> {
    let polled = plan_and_apply(source, store, settings, now, kind, problems, memo, chunk).await;
    if polled.is_err() {
        // The memo took this poll's plans as they were made; the ledger
        // may have none or only some of them.
        memo.clear();
    }
    polled
}

#[allow(clippy::too_many_arguments)]
async fn plan_and_apply(
    source: &Source,
    store: &impl PlanLedger,
    settings: &Settings,
    now: DateTime<Utc>,
    kind: PollKind,
    problems: &mut ProblemLog,
    memo: &mut PlanMemo,
    chunk: usize,
) -> anyhow::Result<PollSummary> {
    let modes = Mode::for_daemon(settings.daemon.dry_run);
    let full = kind == PollKind::Full;
    let mut summary = PollSummary {
        full,
        ..PollSummary::default()
    };
    let mut counts = RowCounts::default();
    let mut problems_now = Vec::new();
    let mut skipped_now: HashSet<String> = HashSet::new();
    let mut stage = PlanStage::default();
    // Read before any series: a change made after this is read again by
    // the next poll, whatever this one planned.
    let changed = store.changed_tickets().await?;
    let mut poll = source.poll_chunks(now, kind, chunk);
    while let Some(chunk) = poll.next_chunk().await {
        let snapshot = chunk?;
        let digests: Vec<TicketDigest> = snapshot.tickets.iter().map(TicketDigest::of).collect();
        for (i, mode) in modes.iter().enumerate() {
            let dry_run = mode.dry_run();
            let planned: Vec<(&Ticket, TicketDigest)> = snapshot
                .tickets
                .iter()
                .zip(&digests)
                .filter(|(t, d)| !memo.unchanged(t, **d, dry_run, &changed, now))
                .map(|(t, d)| (t, *d))
                .collect();
            summary.unchanged += snapshot.tickets.len() - planned.len();
            let subset: Vec<Ticket>;
            let tickets: &[Ticket] = if planned.len() == snapshot.tickets.len() {
                &snapshot.tickets
            } else {
                subset = planned.iter().map(|(t, _)| (*t).clone()).collect();
                &subset
            };
            let (plan, series) =
                plan_chunk(store, settings, tickets, &snapshot.ended, now, *mode).await?;
            memo.remember(&planned, &series, &plan);
            memo.forget(snapshot.ended.iter().map(String::as_str), dry_run);
            if i == 0 {
                counts.policy_skips(settings, &snapshot.tickets, &plan.skipped);
                skipped_now.extend(
                    plan.skipped
                        .iter()
                        .map(|(policy, e)| format!("{e} (policy {policy})")),
                );
                problems_now.extend(
                    plan.skipped
                        .iter()
                        .map(|(policy, e)| format!("{e} (policy {policy})")),
                );
            }
            stage.push(plan)?;
        }
        counts.source_rows(&snapshot);
        summary.tickets += snapshot.tickets.len();
        summary.ended += snapshot.ended.len();
        // Today the only non-fatal finding is an unknown customer time zone.
        metrics::counter!("interim_source_invalid_timezone_total")
            .increment(snapshot.warnings.len() as u64);
        metrics::counter!("interim_source_future_updated_at_total")
            .increment(snapshot.future.len() as u64);
        skipped_now.extend(snapshot.skipped.iter().map(|e| e.to_string()));
        problems_now.extend(snapshot.skipped.iter().map(|e| e.to_string()));
        problems_now.extend(snapshot.warnings.iter().map(|e| e.to_string()));
        problems_now.extend(snapshot.future.iter().map(|e| e.to_string()));
    }
    summary.skipped_rows = counts.skipped();
    // Each skipped row once, when it is first seen: not again every poll.
    metrics::counter!("interim_source_rows_skipped_total")
        .increment(problems.count_new(&skipped_now) as u64);
    problems.report(
        problems_now.into_iter(),
        "row skipped or corrected: it breaks the column contract",
        full,
    );
    if let Some(reason) = counts.rejection(settings.source.max_skipped_share, full) {
        metrics::counter!("interim_source_polls_rejected_total").increment(1);
        return Err(PollRejected(reason).into());
    }

    // The poll is complete: now, and only now, it changes the ledger.
    for plan in stage.into_plans()? {
        let plan = plan?;
        store.apply_plan(&plan, now).await?;
        summary.planned += plan.upserts.len();
        summary.cancelled += plan.cancels.len();
        for planned in &plan.upserts {
            metrics::counter!("interim_notices_planned_total", "policy" => planned.key.policy.clone()).increment(1);
        }
        for c in &plan.cancels {
            info!(ticket.id = %crate::logging::outside(&c.key.ticket_id), policy = %c.key.policy, notice.id = %c.id, reason = %c.reason, "pending notice cancelled");
        }
    }
    let watermark = match (store.source_watermark().await?, poll.max_updated_at) {
        (Some(old), Some(new)) => Some(old.max(new)),
        (old, new) => new.or(old),
    }
    .map(|w| w.min(now));
    let dry_flags: Vec<bool> = modes.iter().map(|m| m.dry_run()).collect();
    let swept = store
        .finish_poll(PollEnd {
            now,
            seen: full.then_some(&poll.seen),
            modes: &dry_flags,
            watermark,
        })
        .await?;
    if let Some(mark) = changed.mark {
        store.clear_changed(mark).await?;
    }
    if full {
        memo.keep_only(&poll.seen);
    }
    for s in &swept {
        info!(ticket.id = %crate::logging::outside(&s.ticket_id), policy = %s.policy, notice.id = %s.id, reason = "the ticket is no longer waiting", "pending notice cancelled");
    }
    summary.cancelled += swept.len();
    metrics::counter!("interim_notices_cancelled_total").increment(summary.cancelled as u64);
    if full {
        metrics::gauge!("interim_tickets_tracked").set(summary.tickets as f64);
    }
    metrics::gauge!("interim_source_last_success_timestamp_seconds").set(now.timestamp() as f64);
    Ok(summary)
}

/// The plan of some tickets of a chunk in one mode, against what the
/// ledger knows of them (series rows, or their notices where a row is
/// missing), and the series it was planned against.
async fn plan_chunk(
    store: &impl PlanLedger,
    settings: &Settings,
    tickets: &[Ticket],
    ended: &[String],
    now: DateTime<Utc>,
    mode: Mode,
) -> anyhow::Result<(Plan, Vec<planner::SeriesState>)> {
    let ids: Vec<&str> = tickets
        .iter()
        .map(|t| t.id.as_str())
        .chain(ended.iter().map(String::as_str))
        .collect();
    if ids.is_empty() {
        return Ok((
            Plan {
                dry_run: mode.dry_run(),
                ..Plan::default()
            },
            Vec::new(),
        ));
    }
    let series = series_of(store, settings, tickets, &ids, mode.dry_run()).await?;
    let plan = planner::plan(settings, tickets, ended, &series, now, mode);
    Ok((plan, series))
}

/// Every series state of these tickets: the stored rows, and for a wait
/// without a row, what its notices say.
pub async fn series_of(
    store: &impl PlanLedger,
    settings: &Settings,
    tickets: &[crate::ticket::Ticket],
    ids: &[&str],
    dry_run: bool,
) -> anyhow::Result<Vec<planner::SeriesState>> {
    let mut series = store.load_series_for(dry_run, ids).await?;
    let known: HashSet<&SeriesKey> = series.iter().map(|s| &s.key).collect();
    let missing: Vec<SeriesKey> = planner::series_keys(settings, tickets)
        .into_iter()
        .filter(|k| !known.contains(k))
        .collect();
    if !missing.is_empty() {
        let derived = store.derive_series(dry_run, &missing).await?;
        series.extend(derived);
    }
    Ok(series)
}
