//! What the operator's commands read from the ledger.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::notice::Status;

/// One ledger row as `interim notices` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NoticeRow {
    pub id: String,
    pub ticket_id: String,
    /// The ticket's number as stored with the notice ("#10423").
    pub ticket_number: Option<String>,
    pub policy: String,
    pub number: u32,
    pub max_notices: u32,
    pub status: Status,
    pub attempts: u32,
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
    pub waiting_since: DateTime<Utc>,
    /// The outcome of the promise this notice made (`pending`, `kept`,
    /// `superseded`, `broken (REASON)`); None when it made none.
    pub promise: Option<String>,
    /// When the notice was planned: the ledger's order.
    pub created_at: DateTime<Utc>,
    #[serde(skip)]
    pub ticket_json: String,
}

#[derive(Debug, Clone, Default)]
pub struct NoticeFilter {
    pub status: Option<Status>,
    pub ticket: Option<String>,
}

/// A stored suppression: an address or `@domain` that gets no notice.
#[derive(Debug, Clone, Serialize)]
pub struct Suppression {
    pub address: String,
    pub reason: String,
    /// `cli` or `auto`.
    pub source: String,
    pub created_at: DateTime<Utc>,
}

/// Where a promise stands, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromiseState {
    Pending,
    Kept,
    Superseded,
    /// Broken, with its reason (`late`, `dead`, ...).
    Broken(String),
}

impl PromiseState {
    /// From the stored outcome and reason columns; `due` (marked for the
    /// next sweep) is still pending.
    pub fn parse(outcome: Option<&str>, reason: Option<&str>) -> Option<Self> {
        Some(match outcome? {
            "kept" => PromiseState::Kept,
            "superseded" => PromiseState::Superseded,
            "broken" => PromiseState::Broken(reason.unwrap_or("unknown").to_owned()),
            _ => PromiseState::Pending,
        })
    }
}

/// As the operator reads it: `pending`, `kept`, `superseded`, `broken (late)`.
impl std::fmt::Display for PromiseState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PromiseState::Pending => f.write_str("pending"),
            PromiseState::Kept => f.write_str("kept"),
            PromiseState::Superseded => f.write_str("superseded"),
            PromiseState::Broken(reason) => write!(f, "broken ({reason})"),
        }
    }
}

/// Which notices a page of the ledger shows, newest first: every filter
/// optional, `before` the cursor of the page before (its last notice's
/// `created_at` and id).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NoticePage {
    pub dry_run: bool,
    pub status: Option<Status>,
    pub policy: Option<String>,
    pub channel: Option<String>,
    pub ticket_id: Option<String>,
    pub before: Option<(DateTime<Utc>, String)>,
    pub limit: u32,
}

/// The counts of the status page's overview.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OverviewCounts {
    /// Pending notices planned to go out within the next hour (overdue
    /// ones included), and within the next day.
    pub due_next_hour: u64,
    pub due_next_day: u64,
    /// Sent since midnight in `daemon.timezone`.
    pub sent_today: u64,
    pub dead: u64,
    /// Promises decided in the last 30 days, by outcome.
    pub kept: u64,
    pub superseded: u64,
    pub broken: u64,
    /// Open waits that got their last notice: a person must step in.
    pub exhausted: u64,
}

/// A wait as `interim report` counts it: the wait, and what its notices
/// sent in the report's period add up to.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportWait {
    pub wait: Wait,
    /// The number of each notice sent in the period.
    pub sent_numbers: Vec<u32>,
    /// Their promises: kept, superseded, still pending.
    pub kept: u64,
    pub superseded: u64,
    pub pending: u64,
    /// The reason of each broken one.
    pub broken: Vec<String>,
    /// Its last notice went out in the period while it still waited.
    pub got_last: bool,
}

/// One wait of the history: an episode (ticket, `waiting_since`) that at
/// least one policy matched.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Wait {
    pub ticket_id: String,
    pub ticket_number: Option<String>,
    /// `waiting_since`: when the wait began.
    pub started_at: DateTime<Utc>,
    pub dry_run: bool,
    pub queue: Option<String>,
    pub priority: Option<String>,
    pub origin: Option<String>,
    pub language: Option<String>,
    /// The policies that applied, in config order.
    pub policies: Vec<String>,
    /// When the first threshold is crossed (the earliest first notice).
    pub first_due_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// None while the wait is open.
    pub ended: Option<crate::ledger::WaitEnd>,
}
