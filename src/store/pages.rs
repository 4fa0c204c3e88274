//! What the status pages read from the ledger.

use anyhow::Context;
use chrono::{DateTime, Utc};

use super::{Store, ms, on_pool};
use interim_store_rows::NoticePageArgs;

use super::rows::listed;
use crate::ledger::{NoticePage, NoticeRow, OverviewCounts};

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

    /// A page of the ledger, newest first.
    pub async fn page_notices(&self, page: &NoticePage) -> anyhow::Result<Vec<NoticeRow>> {
        let args = NoticePageArgs {
            dry_run: i64::from(page.dry_run),
            status: page.status.map(|s| s.as_str()),
            policy: page.policy.as_deref(),
            channel: page.channel.as_deref(),
            ticket_id: page.ticket_id.as_deref(),
            before: page.before.as_ref().map(|(at, id)| (ms(*at), id.as_str())),
            limit: i64::from(page.limit),
        };
        let rows =
            on_pool!(self, page_notices(args)).context("failed to read a page of the ledger")?;
        Ok(rows.into_iter().map(listed).collect())
    }

    /// The `limit` pending notices that go out next, earliest first.
    pub async fn upcoming_notices(
        &self,
        dry_run: bool,
        limit: u32,
    ) -> anyhow::Result<Vec<NoticeRow>> {
        let rows = on_pool!(self, upcoming_notices(i64::from(dry_run), i64::from(limit)))
            .context("failed to read the upcoming notices")?;
        Ok(rows.into_iter().map(listed).collect())
    }
}
