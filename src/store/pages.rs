//! What the status pages read from the ledger.

use anyhow::Context;
use chrono::{DateTime, Utc};

use super::{Store, ms, on_pool};
use crate::ledger::OverviewCounts;

impl Store {
    /// The overview's counts as of `now`; `today` is the start of the day
    /// in `daemon.timezone`.
    pub async fn overview_counts(
        &self,
        dry_run: bool,
        now: DateTime<Utc>,
        today: DateTime<Utc>,
    ) -> anyhow::Result<OverviewCounts> {
        let after = |d: chrono::Duration| ms(now.checked_add_signed(d).unwrap_or(now));
        let r = on_pool!(
            self,
            overview_counts(
                i64::from(dry_run),
                after(chrono::Duration::hours(1)),
                after(chrono::Duration::days(1)),
                ms(today),
                after(-chrono::Duration::days(30)),
            )
        )
        .context("failed to count the notices for the overview")?;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(OverviewCounts {
            due_next_hour: count(r.due_hour),
            due_next_day: count(r.due_day),
            sent_today: count(r.sent_today),
            dead: count(r.dead),
            kept: count(r.kept),
            superseded: count(r.superseded),
            broken: count(r.broken),
            exhausted: count(r.exhausted),
        })
    }
}
