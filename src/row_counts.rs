//! How many rows a poll read and how many it had to skip, and whether that
//! share means a broken query. One judgement for the daemon's polls and for
//! `interim sources test`, so what the command reports is what the daemon
//! does.

use std::collections::{BTreeMap, HashMap};

use crate::config::Settings;
use crate::policy::Policy;
use crate::source::{RowError, Snapshot};
use crate::ticket::Ticket;

/// Incremental polls judge their share of skipped rows from this many rows
/// on: one broken row in a quiet minute must not hold every notice.
const MIN_ROWS_FOR_SHARE: usize = 10;

/// Rows a poll read and how many of them it had to skip, by column.
#[derive(Debug, Default)]
pub struct RowCounts {
    pub rows: usize,
    /// Rows that broke the column contract.
    pub source_skipped: usize,
    /// Waiting tickets every applicable policy had to skip.
    pub policy_skipped: usize,
    by_column: BTreeMap<String, usize>,
}

impl RowCounts {
    /// Every skipped row, whichever side skipped it.
    pub fn skipped(&self) -> usize {
        self.source_skipped + self.policy_skipped
    }

    /// Counts one chunk's rows and its contract skips.
    pub fn source_rows(&mut self, snapshot: &Snapshot) {
        self.rows += snapshot.tickets.len() + snapshot.ended.len() + snapshot.skipped.len();
        for e in &snapshot.skipped {
            self.source_skipped += 1;
            self.by_column(&e.column);
        }
    }

    /// A waiting ticket counts as skipped when every policy that applies
    /// to it had to skip it (an email policy and no valid address);
    /// `skips` are the (policy, error) pairs of the plan.
    pub fn policy_skips(
        &mut self,
        settings: &Settings,
        tickets: &[Ticket],
        skips: &[(String, RowError)],
    ) {
        if skips.is_empty() {
            return;
        }
        let mut per_ticket: HashMap<&str, Vec<&RowError>> = HashMap::new();
        for (_, e) in skips {
            if let Some(id) = e.ticket_id.as_deref() {
                per_ticket.entry(id).or_default().push(e);
            }
        }
        for ticket in tickets {
            let Some(skips) = per_ticket.get(ticket.id.as_str()) else {
                continue;
            };
            if skips.len() >= Policy::applicable(&settings.policies, ticket).len()
                && let Some(first) = skips.first()
            {
                self.policy_skipped += 1;
                self.by_column(&first.column);
            }
        }
    }

    fn by_column(&mut self, column: &str) {
        *self.by_column.entry(column.to_owned()).or_default() += 1;
    }

    /// Why the poll must not be taken, if it must not.
    pub fn rejection(&self, share: f64, full: bool) -> Option<String> {
        let skipped = self.skipped();
        if self.rows == 0 || skipped == 0 {
            return None;
        }
        let all = skipped >= self.rows;
        let too_many = (skipped as f64) / (self.rows as f64) > share;
        let judged = full || self.rows >= MIN_ROWS_FOR_SHARE;
        if !(judged && (all || too_many)) {
            return None;
        }
        let columns: Vec<String> = self
            .by_column
            .iter()
            .map(|(column, n)| format!("column {column}: {n}"))
            .collect();
        Some(format!(
            "the poll was not taken: {skipped} of {} rows broke the column contract ({}); more than source.max_skipped_share ({share}) means a broken query, not tickets that stopped waiting",
            self.rows,
            columns.join(", ")
        ))
    }
}
