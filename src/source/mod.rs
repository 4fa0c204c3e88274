//! Sources of waiting tickets. A full poll yields every ticket that waits
//! now; an incremental poll (`source.incremental_query`) only the tickets
//! changed since a watermark, ended waits included.

pub mod columns;
pub mod http;
pub mod sql;

use std::collections::HashSet;
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, Utc};

pub use columns::{Cell, RowError, SourceRow};
use sql::Param;

use crate::config::SourceSettings;
use crate::ticket::Ticket;

/// Which tickets a poll returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollKind {
    /// Every waiting ticket: one missing from it no longer waits.
    Full,
    /// Only tickets changed since this instant (watermark minus overlap).
    Changes { since: DateTime<Utc> },
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub kind: PollKind,
    /// Tickets that wait.
    pub tickets: Vec<Ticket>,
    /// Ids whose wait is over (`waiting_since` NULL).
    pub ended: Vec<String>,
    /// Rows skipped for breaking the contract.
    pub skipped: Vec<RowError>,
    /// Non-fatal findings (unknown time zone names).
    pub warnings: Vec<RowError>,
    pub polled_at: DateTime<Utc>,
    /// The newest `updated_at` seen: the next watermark.
    pub max_updated_at: Option<DateTime<Utc>>,
}

pub struct Source {
    settings: SourceSettings,
    backend: Backend,
}

enum Backend {
    Sql(sql::SqlPool),
    Http(Box<http::HttpSource>),
}

impl Source {
    pub fn new(settings: &SourceSettings) -> anyhow::Result<Source> {
        let backend = match &settings.http {
            Some(api) => Backend::Http(Box::new(http::HttpSource::new(settings, api)?)),
            None => Backend::Sql(sql::SqlPool::connect(settings)?),
        };
        Ok(Source {
            settings: settings.clone(),
            backend,
        })
    }

    /// Whether incremental polls are configured.
    pub fn incremental(&self) -> bool {
        match &self.settings.http {
            Some(api) => api.since_param.is_some(),
            None => self.settings.incremental_query.is_some(),
        }
    }

    /// One poll. A failing query or page fails the whole poll (the caller
    /// keeps its previous state); a bad row is only skipped.
    pub async fn poll(&self, now: DateTime<Utc>, kind: PollKind) -> anyhow::Result<Snapshot> {
        let started = Instant::now();
        let mut snapshot = Snapshot {
            kind,
            tickets: Vec::new(),
            ended: Vec::new(),
            skipped: Vec::new(),
            warnings: Vec::new(),
            polled_at: now,
            max_updated_at: None,
        };
        let zone = self.settings.timezone;
        let mut seen = HashSet::new();
        let each = |cells| match columns::ticket_from_row(cells, zone, &mut snapshot.warnings) {
            Ok(row) => {
                if let Some(at) = row.updated_at() {
                    snapshot.max_updated_at = snapshot.max_updated_at.max(Some(at));
                }
                if !seen.insert(row.id().to_owned()) {
                    snapshot.skipped.push(RowError {
                        ticket_id: Some(row.id().to_owned()),
                        column: "id".into(),
                        reason: "the source returned this id twice; the first row counts".into(),
                    });
                    return;
                }
                match row {
                    SourceRow::Waiting(ticket) => snapshot.tickets.push(*ticket),
                    SourceRow::NotWaiting { id, .. } => snapshot.ended.push(id),
                }
            }
            Err(e) => snapshot.skipped.push(e),
        };
        let too_slow = || {
            anyhow::anyhow!(
                "the source took longer than source.timeout ({})",
                humantime::format_duration(self.settings.timeout)
            )
        };
        match &self.backend {
            Backend::Http(api) => {
                let since = match kind {
                    PollKind::Changes { since } => Some(since),
                    PollKind::Full => None,
                };
                let deadline = started + self.settings.timeout;
                tokio::time::timeout(
                    self.settings.timeout,
                    api.for_each_row(since, deadline, each),
                )
                .await
                .map_err(|_| too_slow())??;
            }
            Backend::Sql(pool) => {
                let (query, param) = match (kind, &self.settings.incremental_query) {
                    (PollKind::Changes { since }, Some(query)) => {
                        let param = match sql::since_parameter(query) {
                            Some("since_unix") => Param::SinceUnix(since),
                            _ => Param::Since { at: since, zone },
                        };
                        (query.as_str(), param)
                    }
                    _ => (self.settings.query.as_str(), Param::None),
                };
                let outcome = tokio::time::timeout(
                    self.settings.timeout,
                    pool.for_each_row(query, param, each),
                )
                .await
                .map_err(|_| too_slow())?;
                if let Err(e) = outcome {
                    let cause = match e {
                        sqlx::Error::PoolTimedOut => pool
                            .connect_error()
                            .await
                            .unwrap_or_else(|| "timed out waiting for a connection".into()),
                        other => crate::secret::redact_url(&other.to_string()),
                    };
                    anyhow::bail!(
                        "source query against {} failed: {cause}",
                        self.settings.url.redacted()
                    );
                }
            }
        }
        metrics::histogram!("interim_source_poll_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        Ok(snapshot)
    }

    /// Re-reads one ticket with `query` (`source.recheck_query`); None when
    /// it no longer waits (no row, or `waiting_since` NULL).
    pub async fn recheck(&self, query: &str, id: &str) -> anyhow::Result<Option<Ticket>> {
        let Backend::Sql(pool) = &self.backend else {
            anyhow::bail!("source.recheck_query needs a sql source");
        };
        let row = tokio::time::timeout(self.settings.timeout, pool.first_row_for_id(query, id))
            .await
            .map_err(|_| anyhow::anyhow!("the re-check query took longer than source.timeout"))?
            .with_context(|| {
                format!(
                    "re-check query against {} failed",
                    self.settings.url.redacted()
                )
            })?;
        let Some(cells) = row else {
            return Ok(None);
        };
        match columns::ticket_from_row(cells, self.settings.timezone, &mut Vec::new()) {
            Ok(SourceRow::Waiting(ticket)) => Ok(Some(*ticket)),
            Ok(SourceRow::NotWaiting { .. }) => Ok(None),
            Err(e) => Err(anyhow::anyhow!("re-check: {e}")),
        }
    }

    pub async fn close(&self) {
        if let Backend::Sql(pool) = &self.backend {
            pool.close().await;
        }
    }
}
