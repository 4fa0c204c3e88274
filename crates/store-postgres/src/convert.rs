//! PostgreSQL keeps instants as `timestamptz` and flags as `boolean`; the
//! store above speaks Unix milliseconds and 0/1, as SQLite keeps them.
//! The rows as PostgreSQL returns them, and their conversion.

use chrono::{DateTime, Utc};
use interim_store_rows::{
    ClaimedRow, LaterRow, ListedRow, ReportWaitRow, RetryRow, SeriesNoticeRow, SeriesRow,
    StoredTicketRow, SuppressionRow, WaitRow,
};

/// An instant (Unix milliseconds) as PostgreSQL stores it.
pub(crate) fn at(ms: i64) -> sqlx::Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| {
        sqlx::Error::Encode(format!("the instant {ms} (Unix milliseconds) is out of range").into())
    })
}

pub(crate) fn at_opt(ms: Option<i64>) -> sqlx::Result<Option<DateTime<Utc>>> {
    ms.map(at).transpose()
}

pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// A 0/1 flag as a boolean.
pub(crate) fn flag(v: i64) -> bool {
    v != 0
}

fn bit(v: bool) -> i64 {
    i64::from(v)
}

pub(crate) struct PgSeries {
    pub ticket_id: String,
    pub policy: String,
    pub episode: DateTime<Utc>,
    pub done: i64,
    pub last_sent_at: Option<DateTime<Utc>>,
    pub active: bool,
    pub next_id: Option<String>,
    pub next_number: Option<i64>,
    pub next_status: Option<String>,
    pub next_due_at: Option<DateTime<Utc>>,
    pub next_send_at: Option<DateTime<Utc>>,
    pub next_ticket_hash: Option<i64>,
    pub next_channel: Option<String>,
    pub next_recipient: Option<String>,
    pub next_max_notices: Option<i64>,
}

impl From<PgSeries> for SeriesRow {
    fn from(r: PgSeries) -> Self {
        SeriesRow {
            ticket_id: r.ticket_id,
            policy: r.policy,
            episode: ms(r.episode),
            done: r.done,
            last_sent_at: r.last_sent_at.map(ms),
            active: bit(r.active),
            next_id: r.next_id,
            next_number: r.next_number,
            next_status: r.next_status,
            next_due_at: r.next_due_at.map(ms),
            next_send_at: r.next_send_at.map(ms),
            next_ticket_hash: r.next_ticket_hash,
            next_channel: r.next_channel,
            next_recipient: r.next_recipient,
            next_max_notices: r.next_max_notices,
        }
    }
}

pub(crate) struct PgSeriesNotice {
    pub ticket_id: String,
    pub policy: String,
    pub episode: DateTime<Utc>,
    pub id: String,
    pub number: i64,
    pub status: String,
    pub due_at: DateTime<Utc>,
    pub send_at: DateTime<Utc>,
    pub ticket_hash: i64,
    pub channel: String,
    pub recipient: Option<String>,
    pub max_notices: i64,
    pub last_attempt_at: Option<DateTime<Utc>>,
}

impl From<PgSeriesNotice> for SeriesNoticeRow {
    fn from(r: PgSeriesNotice) -> Self {
        SeriesNoticeRow {
            ticket_id: r.ticket_id,
            policy: r.policy,
            episode: ms(r.episode),
            id: r.id,
            number: r.number,
            status: r.status,
            due_at: ms(r.due_at),
            send_at: ms(r.send_at),
            ticket_hash: r.ticket_hash,
            channel: r.channel,
            recipient: r.recipient,
            max_notices: r.max_notices,
            last_attempt_at: r.last_attempt_at.map(ms),
        }
    }
}

pub(crate) struct PgStoredTicket {
    pub ticket_id: String,
    pub updated_at: DateTime<Utc>,
    pub ticket: String,
}

impl From<PgStoredTicket> for StoredTicketRow {
    fn from(r: PgStoredTicket) -> Self {
        StoredTicketRow {
            ticket_id: r.ticket_id,
            updated_at: ms(r.updated_at),
            ticket: r.ticket,
        }
    }
}

pub(crate) struct PgClaimed {
    pub id: String,
    pub ticket_id: String,
    pub policy: String,
    pub episode: DateTime<Utc>,
    pub dry_run: bool,
    pub number: i64,
    pub max_notices: i64,
    pub channel: String,
    pub recipient: Option<String>,
    pub due_at: DateTime<Utc>,
    pub send_at: DateTime<Utc>,
    pub attempts: i64,
    pub first_attempt_at: Option<DateTime<Utc>>,
    pub ticket: String,
    pub ticket_hash: i64,
    pub claim_token: i64,
}

impl From<PgClaimed> for ClaimedRow {
    fn from(r: PgClaimed) -> Self {
        ClaimedRow {
            id: r.id,
            ticket_id: r.ticket_id,
            policy: r.policy,
            episode: ms(r.episode),
            dry_run: bit(r.dry_run),
            number: r.number,
            max_notices: r.max_notices,
            channel: r.channel,
            recipient: r.recipient,
            due_at: ms(r.due_at),
            send_at: ms(r.send_at),
            attempts: r.attempts,
            first_attempt_at: r.first_attempt_at.map(ms),
            ticket: r.ticket,
            ticket_hash: r.ticket_hash,
            claim_token: r.claim_token,
        }
    }
}

pub(crate) struct PgWait {
    pub ticket_id: String,
    pub episode: DateTime<Utc>,
    pub dry_run: bool,
    pub ticket_number: Option<String>,
    pub queue: Option<String>,
    pub priority: Option<String>,
    pub origin: Option<String>,
    pub language: Option<String>,
    pub policies: String,
    pub first_due_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub end_reason: Option<String>,
}

impl From<PgWait> for WaitRow {
    fn from(r: PgWait) -> Self {
        WaitRow {
            ticket_id: r.ticket_id,
            episode: ms(r.episode),
            dry_run: bit(r.dry_run),
            ticket_number: r.ticket_number,
            queue: r.queue,
            priority: r.priority,
            origin: r.origin,
            language: r.language,
            policies: r.policies,
            first_due_at: r.first_due_at.map(ms),
            ended_at: r.ended_at.map(ms),
            end_reason: r.end_reason,
        }
    }
}

pub(crate) struct PgReportWait {
    pub ticket_id: String,
    pub episode: DateTime<Utc>,
    pub dry_run: bool,
    pub ticket_number: Option<String>,
    pub queue: Option<String>,
    pub priority: Option<String>,
    pub origin: Option<String>,
    pub language: Option<String>,
    pub policies: String,
    pub first_due_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub end_reason: Option<String>,
    pub numbers: Option<String>,
    pub kept: i64,
    pub superseded: i64,
    pub pending: i64,
    pub broken: Option<String>,
    pub got_last: bool,
}

impl From<PgReportWait> for ReportWaitRow {
    fn from(r: PgReportWait) -> Self {
        ReportWaitRow {
            ticket_id: r.ticket_id,
            episode: ms(r.episode),
            dry_run: bit(r.dry_run),
            ticket_number: r.ticket_number,
            queue: r.queue,
            priority: r.priority,
            origin: r.origin,
            language: r.language,
            policies: r.policies,
            first_due_at: r.first_due_at.map(ms),
            ended_at: r.ended_at.map(ms),
            end_reason: r.end_reason,
            numbers: r.numbers,
            kept: r.kept,
            superseded: r.superseded,
            pending: r.pending,
            broken: r.broken,
            got_last: bit(r.got_last),
        }
    }
}

pub(crate) struct PgListed {
    pub id: String,
    pub ticket_id: String,
    pub policy: String,
    pub number: i64,
    pub max_notices: i64,
    pub status: String,
    pub attempts: i64,
    pub due_at: DateTime<Utc>,
    pub send_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub channel: String,
    pub recipient: Option<String>,
    pub dry_run: bool,
    pub next_notice_at: Option<DateTime<Utc>>,
    pub cancel_reason: Option<String>,
    pub episode: DateTime<Utc>,
    pub ticket: String,
    pub promise_outcome: Option<String>,
    pub promise_reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<PgListed> for ListedRow {
    fn from(r: PgListed) -> Self {
        ListedRow {
            id: r.id,
            ticket_id: r.ticket_id,
            policy: r.policy,
            number: r.number,
            max_notices: r.max_notices,
            status: r.status,
            attempts: r.attempts,
            due_at: ms(r.due_at),
            send_at: ms(r.send_at),
            next_attempt_at: ms(r.next_attempt_at),
            sent_at: r.sent_at.map(ms),
            last_error: r.last_error,
            channel: r.channel,
            recipient: r.recipient,
            dry_run: bit(r.dry_run),
            next_notice_at: r.next_notice_at.map(ms),
            cancel_reason: r.cancel_reason,
            episode: ms(r.episode),
            ticket: r.ticket,
            promise_outcome: r.promise_outcome,
            promise_reason: r.promise_reason,
            created_at: ms(r.created_at),
        }
    }
}

pub(crate) struct PgSuppression {
    pub address: String,
    pub reason: String,
    pub source: String,
    pub created_at: DateTime<Utc>,
}

impl From<PgSuppression> for SuppressionRow {
    fn from(r: PgSuppression) -> Self {
        SuppressionRow {
            address: r.address,
            reason: r.reason,
            source: r.source,
            created_at: ms(r.created_at),
        }
    }
}

pub(crate) struct PgRetry {
    pub status: String,
    pub number: i64,
    pub ticket_id: String,
    pub policy: String,
    pub episode: DateTime<Utc>,
    pub dry_run: bool,
    pub active: Option<bool>,
}

impl From<PgRetry> for RetryRow {
    fn from(r: PgRetry) -> Self {
        RetryRow {
            status: r.status,
            number: r.number,
            ticket_id: r.ticket_id,
            policy: r.policy,
            episode: ms(r.episode),
            dry_run: bit(r.dry_run),
            active: r.active.map(bit),
        }
    }
}

pub(crate) struct PgLater {
    pub id: String,
    pub number: i64,
    pub status: String,
    pub claim_until: Option<DateTime<Utc>>,
}

impl From<PgLater> for LaterRow {
    fn from(r: PgLater) -> Self {
        LaterRow {
            id: r.id,
            number: r.number,
            status: r.status,
            claim_until: r.claim_until.map(ms),
        }
    }
}

/// Rows converted, in order.
pub(crate) fn all<P, R: From<P>>(rows: Vec<P>) -> Vec<R> {
    rows.into_iter().map(R::from).collect()
}
