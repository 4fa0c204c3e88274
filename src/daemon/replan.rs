//! After a reload (and at start-up) every active series is planned again
//! from the ticket data the ledger stores: a changed threshold, limit,
//! channel, calendar or `send_at` moves, re-routes or cancels what is
//! pending at once, also with incremental polls that would see most
//! tickets only at the next full resync.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use tracing::{debug, info, warn};

use super::poll::series_of;
use crate::config::Settings;
use crate::ledger::{PlanLedger, SeriesState};
use crate::notice::truncate_millis;
use crate::planner::{self, Mode};
use crate::ticket::Ticket;

/// Tickets re-planned per step.
const PAGE: usize = 1_000;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct ReplanSummary {
    /// Pending notices written anew (moved, re-routed, revived, or the next
    /// notice of a series whose limit was raised).
    pub moved: usize,
    pub cancelled: usize,
}

impl ReplanSummary {
    pub fn changed(&self) -> bool {
        self.moved > 0 || self.cancelled > 0
    }
}

/// Plans every active series again with `settings` at `now`.
pub async fn replan(
    store: &impl PlanLedger,
    settings: &Settings,
    now: DateTime<Utc>,
) -> anyhow::Result<ReplanSummary> {
    let mut summary = ReplanSummary::default();
    for &mode in Mode::for_daemon(settings.daemon.dry_run) {
        let dry_run = mode.dry_run();
        let mut after = String::new();
        loop {
            let page = store.active_tickets(dry_run, &after, PAGE).await?;
            let Some((last, _)) = page.last() else {
                break;
            };
            after = last.clone();
            let mut tickets: Vec<Ticket> = Vec::with_capacity(page.len());
            for (id, json) in &page {
                match serde_json::from_str(json) {
                    Ok(ticket) => tickets.push(ticket),
                    Err(e) => {
                        warn!(ticket.id = %crate::logging::outside(id), error = %e, "the stored ticket cannot be read; its series waits for the next poll")
                    }
                }
            }
            let ids: Vec<&str> = tickets.iter().map(|t| t.id.as_str()).collect();
            let series = series_of(store, settings, &tickets, &ids, dry_run).await?;
            let tickets = current_snapshots(tickets, &series);
            let plan = planner::plan(settings, &tickets, &[], &series, now, mode);
            for c in &plan.cancels {
                info!(ticket.id = %crate::logging::outside(&c.key.ticket_id), policy = %c.key.policy, notice.id = %c.id, reason = %c.reason, "pending notice cancelled");
            }
            summary.moved += plan.upserts.len();
            summary.cancelled += plan.cancels.len();
            store.apply_plan(&plan, now).await?;
        }
    }
    if !settings.daemon.dry_run {
        summary.cancelled += store.cancel_pending_dry_runs(now).await?;
    }
    Ok(summary)
}

/// The stored tickets whose snapshot is of a wait the ledger still tracks:
/// the newest stored copy of a ticket can be older than its series (a poll
/// in dry run saw a new wait and planned nothing live), and re-planning
/// that old wait would revive notices of a wait that has ended. Such a
/// ticket waits for the next poll, which sees it as it is.
fn current_snapshots(tickets: Vec<Ticket>, series: &[SeriesState]) -> Vec<Ticket> {
    let tracked: HashSet<(&str, DateTime<Utc>)> = series
        .iter()
        .filter(|s| s.stored && s.active)
        .map(|s| (s.key.ticket_id.as_str(), s.key.episode))
        .collect();
    tickets
        .into_iter()
        .filter(|t| {
            let current = tracked.contains(&(t.id.as_str(), truncate_millis(t.waiting_since)));
            if !current {
                debug!(ticket.id = %crate::logging::outside(&t.id), "the stored ticket is of an earlier wait; its series waits for the next poll");
            }
            current
        })
        .collect()
}
