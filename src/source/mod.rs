//! Sources of waiting tickets. A poll yields a [`Snapshot`]: every ticket
//! that is waiting now, plus the rows that broke the column contract.

pub mod columns;
pub mod sql;

use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, Utc};

pub use columns::{Cell, RowError};

use crate::config::SourceSettings;
use crate::ticket::Ticket;

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub tickets: Vec<Ticket>,
    /// Rows skipped for breaking the contract.
    pub skipped: Vec<RowError>,
    /// Non-fatal findings (unknown time zone names).
    pub warnings: Vec<RowError>,
    pub polled_at: DateTime<Utc>,
}

pub struct Source {
    settings: SourceSettings,
    pool: sql::SqlPool,
}

impl Source {
    pub fn new(settings: &SourceSettings) -> anyhow::Result<Source> {
        Ok(Source {
            settings: settings.clone(),
            pool: sql::SqlPool::connect(settings)?,
        })
    }

    /// One full poll. A failing query is an error for the whole poll (the
    /// caller keeps the previous state); a bad row is only skipped.
    pub async fn poll(&self, now: DateTime<Utc>) -> anyhow::Result<Snapshot> {
        let started = Instant::now();
        let mut snapshot = Snapshot {
            polled_at: now,
            ..Snapshot::default()
        };
        let zone = self.settings.timezone;
        let mut seen = std::collections::HashSet::new();
        let run =
            self.pool.for_each_row(
                &self.settings.query,
                |cells| match columns::ticket_from_row(cells, zone, &mut snapshot.warnings) {
                    Ok(ticket) => {
                        if seen.insert(ticket.id.clone()) {
                            snapshot.tickets.push(ticket);
                        } else {
                            snapshot.skipped.push(RowError {
                                ticket_id: Some(ticket.id),
                                column: "id".into(),
                                reason: "the query returned this id twice; the first row counts"
                                    .into(),
                            });
                        }
                    }
                    Err(e) => snapshot.skipped.push(e),
                },
            );
        tokio::time::timeout(self.settings.timeout, run)
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "the source query took longer than source.timeout ({})",
                    humantime::format_duration(self.settings.timeout)
                )
            })?
            .with_context(|| {
                format!(
                    "source query against {} failed",
                    self.settings.url.redacted()
                )
            })?;
        metrics::histogram!("interim_source_poll_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        Ok(snapshot)
    }

    /// Re-reads one ticket with `query` (`source.recheck_query`); None when
    /// the query returns no row for it.
    pub async fn recheck(&self, query: &str, id: &str) -> anyhow::Result<Option<Ticket>> {
        let row =
            tokio::time::timeout(self.settings.timeout, self.pool.first_row_for_id(query, id))
                .await
                .map_err(|_| anyhow::anyhow!("the re-check query took longer than source.timeout"))?
                .with_context(|| {
                    format!(
                        "re-check query against {} failed",
                        self.settings.url.redacted()
                    )
                })?;
        match row {
            None => Ok(None),
            Some(cells) => columns::ticket_from_row(cells, self.settings.timezone, &mut Vec::new())
                .map(Some)
                .map_err(|e| anyhow::anyhow!("re-check: {e}")),
        }
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
