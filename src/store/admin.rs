//! What the operator commands read and change: the notice list, retries,
//! suppressions.

use anyhow::Context;
use chrono::{DateTime, Utc};
use interim_store_rows::{SeriesKeyArgs, SuppressionRow};

use super::rows::{listed, stored_number, suppression};
use super::{Db, NoticeFilter, NoticeRow, Store, Suppression, ms, on_pool, on_tx};

impl Store {
    /// The waits of one ticket, oldest first.
    pub async fn waits_of_ticket(
        &self,
        ticket_id: &str,
        dry_run: bool,
    ) -> anyhow::Result<Vec<crate::ledger::Wait>> {
        let rows = on_pool!(self, waits_of_ticket(ticket_id, i64::from(dry_run)))
            .with_context(|| format!("failed to read the waits of ticket {ticket_id}"))?;
        Ok(rows.into_iter().map(super::rows::wait).collect())
    }

    /// Hands `add` every wait a report over [`since`, `until`) counts,
    /// with what its notices sent in the period add up to, as the rows
    /// stream in: a report over a million waits never holds them all.
    pub async fn fold_report_waits(
        &self,
        dry_run: bool,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        mut add: impl FnMut(crate::ledger::ReportWait),
    ) -> anyhow::Result<()> {
        use futures::TryStreamExt;
        let (dry_run, since, until) = (i64::from(dry_run), ms(since), ms(until));
        let mut rows = match &self.db {
            Db::Sqlite(pool) => interim_store_sqlite::report_waits(pool, dry_run, since, until),
            Db::Postgres(pool) => interim_store_postgres::report_waits(pool, dry_run, since, until),
        };
        while let Some(row) = rows
            .try_next()
            .await
            .context("failed to read the wait history")?
        {
            add(super::rows::report_wait(row));
        }
        Ok(())
    }

    /// How many waits are open, per policy that applies to them.
    pub async fn open_waits_per_policy(
        &self,
        dry_run: bool,
    ) -> anyhow::Result<std::collections::BTreeMap<String, u64>> {
        let rows = on_pool!(self, open_waits_by_policies(i64::from(dry_run)))
            .context("failed to count the open waits")?;
        let mut per_policy = std::collections::BTreeMap::new();
        for (policies, waits) in rows {
            let waits = u64::try_from(waits).unwrap_or(0);
            for policy in policies.split(',').filter(|p| !p.is_empty()) {
                let n: &mut u64 = per_policy.entry(policy.to_owned()).or_default();
                *n = n.saturating_add(waits);
            }
        }
        Ok(per_policy)
    }

    pub async fn list(&self, filter: &NoticeFilter) -> anyhow::Result<Vec<NoticeRow>> {
        let status = filter.status.map(|s| s.as_str());
        let rows = on_pool!(self, list_notices(status, filter.ticket.as_deref()))
            .context("failed to list notices")?;
        Ok(rows.into_iter().map(listed).collect())
    }

    /// The ticket id a `--ticket` value names among the stored tickets: the
    /// id itself, or the ticket whose stored `number` it is (see
    /// [`crate::ticket::resolve`]). The value as given when none matches;
    /// the error text when several do.
    pub async fn resolve_ticket(&self, wanted: &str) -> anyhow::Result<Result<String, String>> {
        // A coarse filter on the stored JSON (ASCII numbers as serde writes
        // them); the exact comparison is done on the parsed ticket.
        let bare = wanted.trim().trim_start_matches('#');
        let json = serde_json::to_string(bare).unwrap_or_default();
        let pattern = match bare.is_ascii() && !bare.is_empty() {
            true => format!(
                "%\"number\":%{}%",
                json.trim_matches('"')
                    .to_ascii_lowercase()
                    .replace(['%', '_'], "")
            ),
            false => "%".to_owned(),
        };
        let bare_id = wanted.strip_prefix("id:").unwrap_or(wanted);
        let rows = on_pool!(self, tickets_like(wanted, bare_id, &pattern))
            .context("failed to look up the ticket")?;
        let found: Vec<(String, Option<String>)> = rows
            .into_iter()
            .map(|r| {
                let number = stored_number(&r.ticket);
                (r.ticket_id, number)
            })
            .collect();
        Ok(crate::ticket::resolve(
            wanted,
            found.iter().map(|(id, n)| (id.as_str(), n.as_deref())),
        )
        .map(|id| id.unwrap_or_else(|| wanted.strip_prefix("id:").unwrap_or(wanted).to_owned())))
    }

    /// Puts dead notices back to pending as the next notice of their series,
    /// due now with a fresh retry window, so that every pre-send check
    /// applies to them again. A notice is refused (with the reason) when it
    /// is not dead, when its wait has ended, or when a later notice of its
    /// series already went out; a later notice still pending is cancelled
    /// (it follows the retried one).
    pub async fn retry(
        &self,
        ids: &[String],
        now: DateTime<Utc>,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let mut refused = Vec::new();
        for id in ids {
            if let Err(reason) = self
                .retry_one(id, now)
                .await
                .with_context(|| format!("failed to retry notice {id}"))?
            {
                refused.push((id.clone(), reason));
            }
        }
        Ok(refused)
    }

    async fn retry_one(&self, id: &str, now: DateTime<Utc>) -> anyhow::Result<Result<(), String>> {
        let mut tx = self.begin_write().await?;
        let Some(row) = on_tx!(tx, retry_target(id))? else {
            return Ok(Err("no such notice".into()));
        };
        if row.status != "dead" {
            return Ok(Err(format!("it is {}, not dead", row.status)));
        }
        let number = row.number;
        let (ticket_id, policy) = (&row.ticket_id, &row.policy);
        if row.active != Some(1) {
            return Ok(Err(format!(
                "the wait it belongs to has ended (ticket {ticket_id} no longer waits under policy {policy})"
            )));
        }
        let key = SeriesKeyArgs {
            ticket_id,
            policy,
            episode: row.episode,
            dry_run: row.dry_run,
        };
        let later = on_tx!(tx, later_notices(key, number))?;
        let mut superseded = Vec::new();
        for r in later {
            match r.status.as_str() {
                "cancelled" => {}
                "pending" => {
                    if r.claim_until.is_some_and(|until| until >= ms(now)) {
                        return Ok(Err(format!(
                            "notice {} of its series is being sent right now; try again in a moment",
                            r.number
                        )));
                    }
                    superseded.push(r.id);
                }
                other => {
                    return Ok(Err(format!(
                        "notice {} of its series is already {other}; retrying would repeat an older notice",
                        r.number
                    )));
                }
            }
        }
        let reason = format!("notice {number} was retried and goes first");
        for later_id in &superseded {
            on_tx!(tx, cancel_pending(later_id, &reason, ms(now)))?;
        }
        on_tx!(tx, revive_dead(id, ms(now)))?;
        on_tx!(tx, reset_series(key, number.saturating_sub(1).max(0), id))?;
        Self::announce_plans(&mut tx).await?;
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// The stored suppression of an address or its `@domain`, if any.
    pub async fn suppression_of(&self, address: &str) -> anyhow::Result<Option<Suppression>> {
        let address = address.to_lowercase();
        let domain = address
            .rsplit_once('@')
            .map(|(_, d)| format!("@{d}"))
            .unwrap_or_default();
        let row = on_pool!(self, suppression_of(&address, &domain))
            .context("failed to read suppressions")?;
        Ok(row.map(suppression))
    }

    /// Adds (or updates) a suppression. `address` is an address or `@domain`.
    pub async fn suppress(
        &self,
        address: &str,
        reason: &str,
        source: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let row = SuppressionRow {
            address: address.to_lowercase(),
            reason: reason.to_owned(),
            source: source.to_owned(),
            created_at: ms(now),
        };
        on_pool!(self, suppress(&row)).context("failed to store a suppression")
    }

    /// Removes a stored suppression; false when there was none.
    pub async fn unsuppress(&self, address: &str) -> anyhow::Result<bool> {
        let address = address.to_lowercase();
        let done =
            on_pool!(self, unsuppress(&address)).context("failed to remove a suppression")?;
        Ok(done > 0)
    }

    pub async fn suppressions(&self) -> anyhow::Result<Vec<Suppression>> {
        let rows = on_pool!(self, suppressions()).context("failed to list suppressions")?;
        Ok(rows.into_iter().map(suppression).collect())
    }
}
