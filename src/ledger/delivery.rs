//! What delivery exchanges with the ledger: claimed notices and their ends.

use chrono::{DateTime, Utc};

use crate::notice::Status;
use crate::ticket::Ticket;

/// A due notice this instance has claimed and may now send.
#[derive(Debug, Clone)]
pub struct ClaimedNotice {
    pub id: String,
    pub ticket_id: String,
    pub policy: String,
    pub episode: DateTime<Utc>,
    pub dry_run: bool,
    pub number: u32,
    pub max_notices: u32,
    pub channel: String,
    pub recipient: Option<String>,
    pub due_at: DateTime<Utc>,
    pub send_at: DateTime<Utc>,
    /// Attempts before this one.
    pub attempts: u32,
    pub first_attempt_at: Option<DateTime<Utc>>,
    /// The ticket as last polled; an error when the stored JSON is unreadable.
    pub ticket: Result<Ticket, String>,
    /// The stored ticket JSON and its hash, as the planner wrote them.
    pub ticket_json: String,
    pub ticket_hash: i64,
    /// The fencing token of this claim: a result is recorded only while
    /// the notice still carries it (no other instance claimed it since).
    pub claim_token: i64,
}

/// What recording a result found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Written.
    Done,
    /// Not written: the claim was taken over (or the notice changed status)
    /// since this instance claimed it.
    Fenced,
}

/// The end of one notice, as the ledger records it.
#[derive(Debug, Clone)]
pub struct Outcome<'a> {
    pub status: Status,
    /// When the deciding attempt started (the spacing reference of a send).
    pub attempt_started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    /// The promise the notice made, if it was sent.
    pub next_notice_at: Option<DateTime<Utc>>,
    pub error: Option<&'a str>,
}
