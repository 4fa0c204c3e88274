//! Sources of waiting tickets. A full poll yields every ticket that waits
//! now; an incremental poll (`source.incremental_query`) only the tickets
//! changed since a watermark, ended waits included.

pub mod columns;
pub mod http;
mod items;
mod page;
mod per_ticket;
pub mod sql;
mod sql_cells;

use std::time::Instant;

use chrono::{DateTime, Utc};

pub use columns::{Cell, RowError, SourceRow};
use sql::Param;

use crate::config::SourceSettings;
use crate::ticket::Ticket;
use crate::ticket_ids::TicketIds;

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
    /// Rows whose `updated_at` lies after the poll's start.
    pub future: Vec<RowError>,
    pub polled_at: DateTime<Utc>,
    /// The newest `updated_at` seen: the next watermark.
    pub max_updated_at: Option<DateTime<Utc>>,
}

impl Snapshot {
    fn empty(kind: PollKind, polled_at: DateTime<Utc>) -> Self {
        Self {
            kind,
            tickets: Vec::new(),
            ended: Vec::new(),
            skipped: Vec::new(),
            warnings: Vec::new(),
            future: Vec::new(),
            polled_at,
            max_updated_at: None,
        }
    }
}

enum Rows {
    Sql(
        tokio::sync::mpsc::Receiver<Result<Vec<sql::CellRow>, sqlx::Error>>,
        sql::SqlPool,
    ),
    Http(http::PageReceiver),
}

/// A poll in progress: [`next_chunk`](Self::next_chunk) yields its rows
/// after the column contract, chunk by chunk.
pub struct ChunkedPoll {
    rows: Rows,
    /// The task reading the source: stopped when the poll is dropped (a
    /// stop signal must not wait for a slow query). Its end is checked: a
    /// reader that died (a panic) never looks like a complete poll.
    reader: tokio::task::JoinHandle<()>,
    kind: PollKind,
    now: DateTime<Utc>,
    started: Instant,
    deadline: Instant,
    settings: SourceSettings,
    /// The ids seen so far: a duplicate row is skipped, and after a full
    /// poll every series of a ticket not among them ends. Once the poll is
    /// complete it includes the ids of skipped rows.
    pub seen: TicketIds,
    /// Ids of rows skipped for a contract error.
    skipped_ids: TicketIds,
    /// The reader has ended and was checked.
    complete: bool,
    /// The newest `updated_at` seen so far: the next watermark.
    pub max_updated_at: Option<DateTime<Utc>>,
}

impl ChunkedPoll {
    /// The next chunk, None when the poll is complete. An error ends the
    /// poll: the caller must not treat what it got as complete.
    pub async fn next_chunk(&mut self) -> Option<anyhow::Result<Snapshot>> {
        let timeout = self.settings.timeout;
        let too_slow = || {
            anyhow::anyhow!(
                "the source took longer than source.timeout ({})",
                crate::clock::human_duration(timeout)
            )
        };
        let deadline = tokio::time::Instant::from_std(self.deadline);
        let raw = match &mut self.rows {
            Rows::Http(rx) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                Err(_) => return Some(Err(too_slow())),
                Ok(None) => None,
                Ok(Some(Err(e))) => return Some(Err(e)),
                Ok(Some(Ok(rows))) => Some(rows),
            },
            Rows::Sql(rx, pool) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                Err(_) => return Some(Err(too_slow())),
                Ok(None) => None,
                Ok(Some(Err(e))) => {
                    let cause = match e {
                        sqlx::Error::PoolTimedOut => pool
                            .connect_error(&self.settings.url, self.settings.connect_timeout)
                            .await
                            .unwrap_or_else(|| "timed out waiting for a connection".into()),
                        other => self.settings.url.scrub(&other.to_string()),
                    };
                    return Some(Err(anyhow::anyhow!(
                        "source query against {} failed: {cause}",
                        self.settings.url.redacted()
                    )));
                }
                Ok(Some(Ok(rows))) => Some(rows),
            },
        };
        let Some(raw) = raw else {
            // The channel closed: complete only if the reader ended normally.
            if self.complete {
                return None;
            }
            self.complete = true;
            if let Err(e) = (&mut self.reader).await {
                let what = if e.is_panic() {
                    "panicked"
                } else {
                    "was stopped"
                };
                return Some(Err(anyhow::anyhow!(
                    "the source reader {what} before the poll was complete; nothing of this poll is used"
                )));
            }
            metrics::histogram!("interim_source_poll_duration_seconds")
                .record(self.started.elapsed().as_secs_f64());
            self.seen.extend(std::mem::take(&mut self.skipped_ids));
            return None;
        };
        let mut snapshot = Snapshot::empty(self.kind, self.now);
        for cells in raw {
            match columns::ticket_from_row(cells, self.settings.timezone, &mut snapshot.warnings) {
                Ok(row) => {
                    if let Some(at) = row.updated_at() {
                        // The watermark never passes the poll's start: one
                        // row stamped in the future (a helpdesk clock set
                        // right later) would hide every change until then.
                        if at > self.now {
                            snapshot.future.push(RowError {
                                ticket_id: Some(row.id().to_owned()),
                                column: "updated_at".into(),
                                reason: format!(
                                    "{} lies in the future; the watermark stays at the poll's start",
                                    crate::clock::rfc3339(at)
                                ),
                            });
                        }
                        self.max_updated_at = self.max_updated_at.max(Some(at.min(self.now)));
                    }
                    if !self.seen.insert(row.id()) {
                        snapshot.skipped.push(RowError {
                            ticket_id: Some(row.id().to_owned()),
                            column: "id".into(),
                            reason: "the source returned this id twice; the first row counts"
                                .into(),
                        });
                        continue;
                    }
                    match row {
                        SourceRow::Waiting(ticket) => snapshot.tickets.push(*ticket),
                        SourceRow::NotWaiting { id, .. } => snapshot.ended.push(id),
                    }
                }
                Err(e) => {
                    // A row skipped for a contract error is not "absent":
                    // its ticket's series stay as they are.
                    if let Some(id) = &e.ticket_id {
                        self.skipped_ids.insert(id);
                    }
                    snapshot.skipped.push(e);
                }
            }
        }
        snapshot.max_updated_at = self.max_updated_at;
        Some(Ok(snapshot))
    }
}

impl Drop for ChunkedPoll {
    fn drop(&mut self) {
        self.reader.abort();
    }
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

    /// Starts a poll whose rows arrive in chunks of at most `chunk` rows,
    /// so a large helpdesk is never held in memory at once.
    pub fn poll_chunks(&self, now: DateTime<Utc>, kind: PollKind, chunk: usize) -> ChunkedPoll {
        let started = Instant::now();
        let deadline = started + self.settings.timeout;
        let (rows, reader) = match &self.backend {
            Backend::Http(api) => {
                let since = match kind {
                    PollKind::Changes { since } => Some(since),
                    PollKind::Full => None,
                };
                let (rows, reader) = api.stream_pages(since, deadline, chunk);
                (Rows::Http(rows), reader)
            }
            Backend::Sql(pool) => {
                let (query, param) = match (kind, &self.settings.incremental_query) {
                    (PollKind::Changes { since }, Some(query)) => {
                        let param = match crate::config::query_parameters::since_parameter(query) {
                            Some("since_unix") => Param::SinceUnix(since),
                            _ => Param::Since {
                                at: since,
                                zone: self.settings.timezone,
                            },
                        };
                        (query.as_str(), param)
                    }
                    _ => (self.settings.query.as_str(), Param::None),
                };
                let (rows, reader) = pool.stream_chunks(query, param, chunk);
                (Rows::Sql(rows, pool.clone()), reader)
            }
        };
        ChunkedPoll {
            rows,
            reader,
            kind,
            now,
            started,
            deadline,
            settings: self.settings.clone(),
            seen: TicketIds::default(),
            skipped_ids: TicketIds::default(),
            complete: false,
            max_updated_at: None,
        }
    }

    /// One whole poll for a one-shot command (`sources test`, `plan`,
    /// `preview`). A SQL source is connected to first, within
    /// `source.connect_timeout`: a refused port, an unknown host or a wrong
    /// password fails in seconds with its cause, not after the whole
    /// `source.timeout` (the pool retries a refused connection until then).
    pub async fn poll_once(&self, now: DateTime<Utc>, kind: PollKind) -> anyhow::Result<Snapshot> {
        if let Backend::Sql(pool) = &self.backend
            && let Some(cause) = pool
                .connect_error(&self.settings.url, self.settings.connect_timeout)
                .await
        {
            anyhow::bail!(
                "cannot connect to the source {}: {cause}",
                self.settings.url.redacted()
            );
        }
        self.poll(now, kind).await
    }

    /// One whole poll, collected.
    pub async fn poll(&self, now: DateTime<Utc>, kind: PollKind) -> anyhow::Result<Snapshot> {
        let mut poll = self.poll_chunks(now, kind, 10_000);
        let mut all = Snapshot::empty(kind, now);
        while let Some(chunk) = poll.next_chunk().await {
            let chunk = chunk?;
            all.tickets.extend(chunk.tickets);
            all.ended.extend(chunk.ended);
            all.skipped.extend(chunk.skipped);
            all.warnings.extend(chunk.warnings);
            all.future.extend(chunk.future);
        }
        all.max_updated_at = poll.max_updated_at;
        Ok(all)
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
            .map_err(|e| {
                anyhow::anyhow!(
                    "re-check query against {} failed: {}",
                    self.settings.url,
                    self.settings.url.scrub(&e.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SourceSettings {
        SourceSettings {
            url: crate::secret::SecretUrl::new("https://helpdesk.invalid/tickets".into()),
            allow_insecure: false,
            query: String::new(),
            recheck_query: None,
            incremental_query: None,
            http: None,
            full_resync: std::time::Duration::from_secs(3600),
            overlap: std::time::Duration::from_secs(120),
            timezone: chrono_tz::UTC,
            timeout: std::time::Duration::from_secs(10),
            connect_timeout: std::time::Duration::from_secs(5),
            max_skipped_share: 0.5,
            clock: None,
            subject_marker: None,
        }
    }

    /// Issue 10: a reader task that panics drops its sender, so its channel
    /// closes exactly as after a complete poll. Taken as complete, an empty
    /// full poll would end every series; it must end in an error instead
    /// (the daemon then applies nothing of the poll and cancels nothing).
    #[tokio::test]
    async fn a_reader_that_panics_is_a_failed_poll_that_cancels_nothing() {
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let row: sql::CellRow = vec![
            ("id".into(), Cell::Int(7)),
            ("state".into(), Cell::Text("open".into())),
            (
                "waiting_since".into(),
                Cell::Text("2026-12-01T08:00:00Z".into()),
            ),
        ];
        let reader = tokio::spawn(async move {
            let _ = tx.send(Ok(vec![row])).await;
            panic!("a bug in the reader, after its first page");
        });
        let now = Utc::now();
        let started = Instant::now();
        let mut poll = ChunkedPoll {
            rows: Rows::Http(rx),
            reader,
            kind: PollKind::Full,
            now,
            started,
            deadline: started + std::time::Duration::from_secs(10),
            settings: settings(),
            seen: TicketIds::default(),
            skipped_ids: TicketIds::default(),
            complete: false,
            max_updated_at: None,
        };

        let first = poll.next_chunk().await;
        let tickets = match first {
            Some(Ok(snapshot)) => snapshot.tickets.len(),
            Some(Err(e)) => panic!("the page read before the panic is an error: {e:#}"),
            None => panic!("the page read before the panic is missing"),
        };
        assert_eq!(tickets, 1, "the page read before the panic");
        match poll.next_chunk().await {
            Some(Err(e)) => assert!(e.to_string().contains("panicked"), "{e:#}"),
            Some(Ok(_)) => panic!("a chunk after the reader panicked"),
            None => panic!("a reader that panicked ended the poll as complete"),
        }
    }
}
