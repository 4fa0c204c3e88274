//! One poll: read the source (fully, or only what changed since the
//! watermark), plan the affected series, and apply the plan to the ledger.

use std::collections::HashSet;
use std::time::Instant;

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use crate::config::Settings;
use crate::planner;
use crate::source::{PollKind, Source};
use crate::store::Store;

/// What one poll did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PollSummary {
    pub full: bool,
    pub tickets: usize,
    pub ended: usize,
    pub skipped_rows: usize,
    pub planned: usize,
    pub cancelled: usize,
}

/// Remembers which bad rows were already logged, so a broken row is one
/// log line, not one per poll (the metric still counts every poll).
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
            warn!(problem = %problem, "{what}");
        }
        if full {
            self.seen = current;
        } else {
            self.seen.extend(current);
        }
    }
}

/// Decides between full and incremental polls: incremental ones only with
/// `source.incremental_query` and a known watermark, and a full one at
/// least every `source.full_resync` (the only way to see deleted tickets).
#[derive(Default)]
pub struct PollSchedule {
    last_full: Option<Instant>,
}

impl PollSchedule {
    pub async fn next_kind(
        &self,
        source: &Source,
        store: &Store,
        settings: &Settings,
    ) -> anyhow::Result<PollKind> {
        let resync_due = self
            .last_full
            .is_none_or(|at| at.elapsed() >= settings.source.full_resync);
        if !source.incremental() || resync_due {
            return Ok(PollKind::Full);
        }
        let overlap = chrono::Duration::from_std(settings.source.overlap).unwrap_or_default();
        Ok(match store.source_watermark().await? {
            Some(watermark) => PollKind::Changes {
                since: watermark - overlap,
            },
            None => PollKind::Full,
        })
    }

    pub fn done(&mut self, kind: PollKind) {
        if kind == PollKind::Full {
            self.last_full = Some(Instant::now());
        }
    }
}

/// Rows planned and written per transaction: bounds memory on large
/// helpdesks (a million tickets are never held at once).
const CHUNK: usize = 5_000;

/// Polls the source once (as `kind` says) and applies the plan to the
/// ledger chunk by chunk; a full poll then ends the series of tickets it
/// did not see. The poll counts as successful (`last_poll_at`) only when
/// every chunk was applied.
pub async fn poll_and_plan(
    source: &Source,
    store: &Store,
    settings: &Settings,
    now: DateTime<Utc>,
    kind: PollKind,
    problems: &mut ProblemLog,
) -> anyhow::Result<PollSummary> {
    let dry_run = settings.daemon.dry_run;
    let full = kind == PollKind::Full;
    let mut summary = PollSummary {
        full,
        ..PollSummary::default()
    };
    let mut problems_now = Vec::new();
    let mut poll = source.poll_chunks(now, kind, CHUNK);
    while let Some(chunk) = poll.next_chunk().await {
        let snapshot = chunk?;
        let ids: Vec<&str> = snapshot
            .tickets
            .iter()
            .map(|t| t.id.as_str())
            .chain(snapshot.ended.iter().map(String::as_str))
            .collect();
        let series = store.load_series_for(dry_run, &ids).await?;
        let plan = planner::plan_changes(
            settings,
            &snapshot.tickets,
            &snapshot.ended,
            &series,
            dry_run,
        );
        store.apply_chunk(&plan, dry_run, now).await?;

        summary.tickets += snapshot.tickets.len();
        summary.ended += snapshot.ended.len();
        summary.skipped_rows += snapshot.skipped.len() + plan.skipped.len();
        summary.planned += plan.upserts.len();
        summary.cancelled += plan.cancels.len();
        metrics::counter!("interim_source_rows_skipped_total")
            .increment((snapshot.skipped.len() + plan.skipped.len()) as u64);
        // Today the only non-fatal finding is an unknown customer time zone.
        metrics::counter!("interim_source_invalid_timezone_total")
            .increment(snapshot.warnings.len() as u64);
        for planned in &plan.upserts {
            metrics::counter!("interim_notices_planned_total", "policy" => planned.key.policy.clone()).increment(1);
        }
        for c in &plan.cancels {
            info!(ticket.id = %c.key.ticket_id, policy = %c.key.policy, notice.id = %c.id, reason = %c.reason, "pending notice cancelled");
        }
        problems_now.extend(snapshot.skipped.iter().map(|e| e.to_string()));
        problems_now.extend(
            plan.skipped
                .iter()
                .map(|(policy, e)| format!("{e} (policy {policy})")),
        );
        problems_now.extend(snapshot.warnings.iter().map(|e| e.to_string()));
    }
    let watermark = match (store.source_watermark().await?, poll.max_updated_at) {
        (Some(old), Some(new)) => Some(old.max(new)),
        (old, new) => new.or(old),
    };
    let swept = store
        .finish_poll(dry_run, now, full.then_some(&poll.seen), watermark)
        .await?;
    for (id, ticket, policy) in &swept {
        info!(ticket.id = %ticket, policy = %policy, notice.id = %id, reason = "the ticket is no longer waiting", "pending notice cancelled");
    }
    summary.cancelled += swept.len();
    metrics::counter!("interim_notices_cancelled_total").increment(summary.cancelled as u64);
    if full {
        metrics::gauge!("interim_tickets_tracked").set(summary.tickets as f64);
    }
    metrics::gauge!("interim_source_last_success_timestamp_seconds").set(now.timestamp() as f64);
    problems.report(
        problems_now.into_iter(),
        "row skipped or corrected: it breaks the column contract",
        full,
    );
    Ok(summary)
}
