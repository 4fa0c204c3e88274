//! The rows the ledger's engines read and write, in the columns' own
//! types: instants are Unix milliseconds, flags 0 or 1, counts `i64`.
//! Both engine crates fill these (`sqlx::query_as!` checks each column
//! against its field at compile time) and take them, so the store above
//! them turns rows into the ledger's vocabulary once, not once per engine.
//! Depends on nothing.

/// A series with its next notice, if it has one (a LEFT JOIN: every
/// `next_*` field is None when it has none).
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesRow {
    pub ticket_id: String,
    pub policy: String,
    pub episode: i64,
    pub done: i64,
    pub last_sent_at: Option<i64>,
    pub active: i64,
    pub next_id: Option<String>,
    pub next_number: Option<i64>,
    pub next_status: Option<String>,
    pub next_due_at: Option<i64>,
    pub next_send_at: Option<i64>,
    pub next_ticket_hash: Option<i64>,
    pub next_channel: Option<String>,
    pub next_recipient: Option<String>,
    pub next_max_notices: Option<i64>,
}

/// A notice as a series is derived from it.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesNoticeRow {
    pub ticket_id: String,
    pub policy: String,
    pub episode: i64,
    pub id: String,
    pub number: i64,
    pub status: String,
    pub due_at: i64,
    pub send_at: i64,
    pub ticket_hash: i64,
    pub channel: String,
    pub recipient: Option<String>,
    pub max_notices: i64,
    pub last_attempt_at: Option<i64>,
}

/// The ticket data stored with a notice.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTicketRow {
    pub ticket_id: String,
    pub updated_at: i64,
    pub ticket: String,
}

/// A ticket id and the ticket data stored with one of its notices.
#[derive(Debug, Clone, PartialEq)]
pub struct TicketRow {
    pub ticket_id: String,
    pub ticket: String,
}

/// A ticket whose notices or series changed, and the mark to clear up to
/// once it is planned (SQLite: the newest `seq` it left; PostgreSQL: the
/// reading snapshot's horizon, the same on every row).
#[derive(Debug, Clone, PartialEq)]
pub struct ChangedRow {
    pub ticket_id: String,
    pub dry_run: i64,
    pub mark: i64,
}

/// A pending notice a sweep cancelled.
#[derive(Debug, Clone, PartialEq)]
pub struct SweptRow {
    pub id: String,
    pub ticket_id: String,
    pub policy: String,
}

/// A notice as a claim returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedRow {
    pub id: String,
    pub ticket_id: String,
    pub policy: String,
    pub episode: i64,
    pub dry_run: i64,
    pub number: i64,
    pub max_notices: i64,
    pub channel: String,
    pub recipient: Option<String>,
    pub due_at: i64,
    pub send_at: i64,
    pub attempts: i64,
    pub first_attempt_at: Option<i64>,
    pub ticket: String,
    pub ticket_hash: i64,
    pub claim_token: i64,
}

/// A notice as the operator's list shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedRow {
    pub id: String,
    pub ticket_id: String,
    pub policy: String,
    pub number: i64,
    pub max_notices: i64,
    pub status: String,
    pub attempts: i64,
    pub due_at: i64,
    pub send_at: i64,
    pub next_attempt_at: i64,
    pub sent_at: Option<i64>,
    pub last_error: Option<String>,
    pub channel: String,
    pub recipient: Option<String>,
    pub dry_run: i64,
    pub next_notice_at: Option<i64>,
    pub cancel_reason: Option<String>,
    pub episode: i64,
    pub ticket: String,
    pub promise_outcome: Option<String>,
    pub promise_reason: Option<String>,
    pub created_at: i64,
}

/// A stored suppression.
#[derive(Debug, Clone, PartialEq)]
pub struct SuppressionRow {
    pub address: String,
    pub reason: String,
    pub source: String,
    pub created_at: i64,
}

/// A dead notice to retry, with whether its series is still active.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryRow {
    pub status: String,
    pub number: i64,
    pub ticket_id: String,
    pub policy: String,
    pub episode: i64,
    pub dry_run: i64,
    pub active: Option<i64>,
}

/// A later notice of a series that is retried.
#[derive(Debug, Clone, PartialEq)]
pub struct LaterRow {
    pub id: String,
    pub number: i64,
    pub status: String,
    pub claim_until: Option<i64>,
}

/// The key of a series row.
#[derive(Debug, Clone, Copy)]
pub struct SeriesKeyArgs<'a> {
    pub ticket_id: &'a str,
    pub policy: &'a str,
    pub episode: i64,
    pub dry_run: i64,
}

/// A series row as a plan writes it.
#[derive(Debug, Clone, Copy)]
pub struct SeriesArgs<'a> {
    pub key: SeriesKeyArgs<'a>,
    pub done: i64,
    pub last_sent_at: Option<i64>,
    pub next_id: Option<&'a str>,
    pub active: i64,
}

/// A planned notice as it is written pending.
#[derive(Debug, Clone, Copy)]
pub struct PendingArgs<'a> {
    pub id: &'a str,
    pub key: SeriesKeyArgs<'a>,
    pub number: i64,
    pub max_notices: i64,
    pub channel: &'a str,
    pub recipient: Option<&'a str>,
    pub due_at: i64,
    pub send_at: i64,
    pub ticket: &'a str,
    pub now: i64,
    pub ticket_hash: i64,
}

/// The end of a claimed notice.
#[derive(Debug, Clone, Copy)]
pub struct DoneArgs<'a> {
    pub id: &'a str,
    pub claim_token: i64,
    pub status: &'a str,
    pub attempt_started: i64,
    pub sent_at: Option<i64>,
    pub finished: i64,
    pub next_notice_at: Option<i64>,
    pub error: Option<&'a str>,
    /// A send is recorded even when a poll cancelled the notice meanwhile.
    pub also_cancelled: bool,
}

/// A failed attempt, tried again at `next_attempt`.
#[derive(Debug, Clone, Copy)]
pub struct RetryArgs<'a> {
    pub id: &'a str,
    pub claim_token: i64,
    pub attempt_started: i64,
    pub next_attempt: i64,
    pub send_at: i64,
    pub error: &'a str,
}

/// A wait as the planner writes it (created, or its attributes refreshed
/// and reopened).
#[derive(Debug, Clone, PartialEq)]
pub struct WaitArgs<'a> {
    pub ticket_id: &'a str,
    pub episode: i64,
    pub dry_run: i64,
    pub ticket_number: Option<&'a str>,
    pub queue: Option<&'a str>,
    pub priority: Option<&'a str>,
    pub origin: Option<&'a str>,
    pub language: Option<&'a str>,
    pub policies: &'a str,
    pub first_due_at: Option<i64>,
    pub now: i64,
}

/// A wait as the history holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitRow {
    pub ticket_id: String,
    pub episode: i64,
    pub dry_run: i64,
    pub ticket_number: Option<String>,
    pub queue: Option<String>,
    pub priority: Option<String>,
    pub origin: Option<String>,
    pub language: Option<String>,
    pub policies: String,
    pub first_due_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub end_reason: Option<String>,
}

/// Which notices a page of the ledger shows: every filter optional, the
/// page before the cursor (`created_at`, `id`), newest first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoticePageArgs<'a> {
    pub dry_run: i64,
    pub status: Option<&'a str>,
    pub policy: Option<&'a str>,
    pub channel: Option<&'a str>,
    pub ticket_id: Option<&'a str>,
    pub before: Option<(i64, &'a str)>,
    pub limit: i64,
}

/// The counts of the status page's overview.
#[derive(Debug, Clone, PartialEq)]
pub struct OverviewRow {
    pub due_hour: i64,
    pub due_day: i64,
    pub sent_today: i64,
    pub dead: i64,
    pub kept: i64,
    pub superseded: i64,
    pub broken: i64,
    pub exhausted: i64,
}

/// A wait of the history with what its notices sent in a period add up to.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportWaitRow {
    pub ticket_id: String,
    pub episode: i64,
    pub dry_run: i64,
    pub ticket_number: Option<String>,
    pub queue: Option<String>,
    pub priority: Option<String>,
    pub origin: Option<String>,
    pub language: Option<String>,
    pub policies: String,
    pub first_due_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub end_reason: Option<String>,
    /// The numbers of the sent notices, comma-separated.
    pub numbers: Option<String>,
    pub kept: i64,
    pub superseded: i64,
    pub pending: i64,
    /// The reasons of the broken promises, comma-separated.
    pub broken: Option<String>,
    /// 1 when the last notice went out while the wait went on.
    pub got_last: i64,
}

/// An undecided promise that may be decided now: the sent notice that
/// made it, and what became of the next notice of its series and of its
/// wait (every `next_*` and `wait_*` field None when the ledger has none).
#[derive(Debug, Clone, PartialEq)]
pub struct PromiseRow {
    pub id: String,
    pub policy: String,
    pub promised: i64,
    pub next_status: Option<String>,
    pub next_sent_at: Option<i64>,
    pub next_cancel_reason: Option<String>,
    pub next_hold_reason: Option<String>,
    pub wait_ended_at: Option<i64>,
}
