//! What planning exchanges with the ledger: the series as stored, and the
//! plan that changes them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::notice::{SeriesKey, Status};
use crate::ticket::RowError;
use crate::ticket_ids::TicketIds;

/// What the ledger knows of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesState {
    pub key: SeriesKey,
    /// The number of the last notice that reached an end (sent, dead,
    /// suppressed, dry run); 0 before the first.
    pub done: u32,
    /// When the series' last real send started (its successful attempt):
    /// the reference for spacing the next notice by `repeat_every`.
    pub last_sent_at: Option<DateTime<Utc>>,
    /// Whether the latest poll showed the ticket waiting under the policy.
    pub active: bool,
    /// False when the state was derived from the notices because the
    /// ledger had no series row (yet) for it.
    pub stored: bool,
    /// The notice after `done`, if the ledger has it.
    pub next: Option<NextNotice>,
}

impl SeriesState {
    /// A series the ledger has never seen.
    pub fn fresh(key: SeriesKey) -> Self {
        Self {
            key,
            done: 0,
            last_sent_at: None,
            active: true,
            stored: false,
            next: None,
        }
    }

    pub fn pending_next(&self) -> Option<&NextNotice> {
        self.next.as_ref().filter(|n| n.status == Status::Pending)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NextNotice {
    pub id: String,
    pub number: u32,
    pub status: Status,
    pub due_at: DateTime<Utc>,
    pub send_at: DateTime<Utc>,
    /// Hash of the ticket data stored with it (to see a changed ticket
    /// without loading its data).
    pub ticket_hash: i64,
    pub channel: String,
    pub recipient: Option<String>,
    pub max_notices: u32,
}

/// The notice a series should have pending now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedNotice {
    pub id: String,
    pub key: SeriesKey,
    pub number: u32,
    pub max_notices: u32,
    pub channel: String,
    pub recipient: Option<String>,
    pub due_at: DateTime<Utc>,
    pub send_at: DateTime<Utc>,
    /// The ticket as polled (JSON), stored with the notice for rendering.
    pub ticket_json: String,
    pub ticket_hash: i64,
}

/// A pending notice that must not go out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cancel {
    pub id: String,
    pub key: SeriesKey,
    pub reason: String,
}

/// A series row to create (with what the notices say of it) or whose
/// `active` flag changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesWrite {
    pub key: SeriesKey,
    pub done: u32,
    pub last_sent_at: Option<DateTime<Utc>>,
    pub active: bool,
    pub next_id: Option<String>,
}

/// A wait (ticket, episode) that a policy matched, as a poll saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitWrite {
    pub ticket_id: String,
    /// `waiting_since`: the wait's start.
    pub episode: DateTime<Utc>,
    pub ticket_number: Option<String>,
    pub queue: Option<String>,
    pub priority: Option<String>,
    pub origin: Option<String>,
    pub language: Option<String>,
    /// The policies that applied, in config order.
    pub policies: Vec<String>,
    /// When the first threshold is crossed: the earliest first notice.
    pub first_due_at: Option<DateTime<Utc>>,
}

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitEnd {
    /// `waiting_since` moved: someone wrote, a new wait began.
    NewWait,
    /// The ticket no longer matched any policy, or left the source.
    Left,
}

impl WaitEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitEnd::NewWait => "new_wait",
            WaitEnd::Left => "left",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "new_wait" => Some(WaitEnd::NewWait),
            "left" => Some(WaitEnd::Left),
            _ => None,
        }
    }
}

/// The open waits of a ticket to end, but the one of `except_episode`
/// (the wait in progress, when `waiting_since` moved).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndedWaits {
    pub ticket_id: String,
    pub except_episode: Option<DateTime<Utc>>,
    pub how: WaitEnd,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Whether the plan is about dry-run series (their own ids and rows).
    pub dry_run: bool,
    /// New or changed pending notices (also revivals of cancelled ones).
    pub upserts: Vec<PlannedNotice>,
    /// Pending notices to cancel.
    pub cancels: Vec<Cancel>,
    /// Series rows to create, activate or deactivate.
    pub series: Vec<SeriesWrite>,
    /// Series of waits that are over for good (`waiting_since` moved on).
    pub deleted_series: Vec<SeriesKey>,
    /// Waits to record (new, or their ticket's attributes changed).
    pub waits: Vec<WaitWrite>,
    /// Waits that ended.
    pub ended_waits: Vec<EndedWaits>,
    /// Tickets that could not be planned for a policy (bad address).
    #[serde(skip)]
    pub skipped: Vec<(String, RowError)>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty()
            && self.cancels.is_empty()
            && self.series.is_empty()
            && self.deleted_series.is_empty()
            && self.waits.is_empty()
            && self.ended_waits.is_empty()
    }
}

/// How a poll ends in the ledger.
pub struct PollEnd<'a> {
    pub now: DateTime<Utc>,
    /// A full poll: the ids it returned (skipped rows included). Every
    /// active series of a ticket not among them ends.
    pub seen: Option<&'a TicketIds>,
    /// The series modes to sweep (dry run or live).
    pub modes: &'a [bool],
    /// The next source watermark, if it moved.
    pub watermark: Option<DateTime<Utc>>,
}

/// A pending notice cancelled because its ticket left the snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Swept {
    pub id: String,
    pub ticket_id: String,
    pub policy: String,
}

/// The tickets whose notices or series changed (by anyone: the poller,
/// the dispatcher, another instance, an operator's command) since the
/// poller last cleared the marks, and the mark that clears exactly those.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChangedTickets {
    /// Ids of tickets whose live notices or series changed.
    pub live: TicketIds,
    /// Ids of tickets whose dry-run notices or series changed.
    pub dry_run: TicketIds,
    /// Passed to `PlanLedger::clear_changed` once the poll that read these
    /// is applied; None when there was nothing to read.
    pub mark: Option<i64>,
}

impl ChangedTickets {
    pub fn contains(&self, ticket_id: &str, dry_run: bool) -> bool {
        if dry_run {
            self.dry_run.contains(ticket_id)
        } else {
            self.live.contains(ticket_id)
        }
    }
}
