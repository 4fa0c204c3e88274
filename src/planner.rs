//! Planning: from a snapshot of waiting tickets, the policies and the
//! ledger's series, decide which notice each series should have pending
//! next and which pending notices must be cancelled. Pure: time is an
//! argument, the store applies the result.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use lettre::message::Mailbox;

use crate::config::{ChannelKind, FileFormat, FileSettings, Settings};
use crate::notice::{SeriesKey, Status};
use crate::policy::Policy;
use crate::source::RowError;
use crate::ticket::Ticket;

/// What the ledger knows of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesState {
    pub key: SeriesKey,
    /// The number of the last notice that reached an end (sent, dead,
    /// suppressed, dry run); 0 before the first.
    pub done: u32,
    /// When the last done notice's final attempt started: the reference for
    /// spacing the next one by `repeat_every`.
    pub last_ref_at: Option<DateTime<Utc>>,
    /// The notice after `done`, if the ledger has it.
    pub next: Option<NextNotice>,
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
}

/// The notice a series should have pending now.
#[derive(Debug, Clone, PartialEq)]
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

/// A pending notice whose wait ended before it went out.
#[derive(Debug, Clone, PartialEq)]
pub struct Cancel {
    pub id: String,
    pub key: SeriesKey,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct Plan {
    /// New or changed pending notices (also revivals of cancelled ones).
    pub upserts: Vec<PlannedNotice>,
    /// Every notice a series should have pending, changed or not: only
    /// collected for `interim plan` (see [`plan_all`]).
    pub wanted: Vec<PlannedNotice>,
    /// Pending notices to cancel.
    pub cancels: Vec<Cancel>,
    /// Series to create in the ledger.
    pub new_series: Vec<SeriesKey>,
    /// Series whose ticket is gone or whose wait restarted.
    pub ended_series: Vec<SeriesKey>,
    /// Tickets that could not be planned for a policy (bad address).
    pub skipped: Vec<(String, RowError)>,
}

/// Plans every series for `tickets` (a full snapshot: a ticket missing from
/// it is no longer waiting).
pub fn plan(
    settings: &Settings,
    tickets: &[Ticket],
    series: &[SeriesState],
    dry_run: bool,
) -> Plan {
    plan_scoped(settings, tickets, &[], series, dry_run, true, false)
}

/// Like [`plan`], and also lists every notice the series want, changed or
/// not, in [`Plan::wanted`] (what `interim plan` shows).
pub fn plan_all(
    settings: &Settings,
    tickets: &[Ticket],
    series: &[SeriesState],
    dry_run: bool,
) -> Plan {
    plan_scoped(settings, tickets, &[], series, dry_run, true, true)
}

/// A stable hash of a ticket's JSON: SipHash with fixed keys.
pub fn ticket_hash(json: &str) -> i64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    json.hash(&mut hasher);
    hasher.finish() as i64
}

/// Plans the series of changed tickets only (an incremental poll):
/// `tickets` still wait, `ended` no longer do; every other ticket's series
/// stays as it is. `series` may hold only the series of these tickets.
pub fn plan_changes(
    settings: &Settings,
    tickets: &[Ticket],
    ended: &[String],
    series: &[SeriesState],
    dry_run: bool,
) -> Plan {
    plan_scoped(settings, tickets, ended, series, dry_run, false, false)
}

fn plan_scoped(
    settings: &Settings,
    tickets: &[Ticket],
    ended: &[String],
    series: &[SeriesState],
    dry_run: bool,
    full: bool,
    collect_wanted: bool,
) -> Plan {
    let mut out = Plan::default();
    let known: HashMap<&SeriesKey, &SeriesState> = series.iter().map(|s| (&s.key, s)).collect();
    let mut wanted_keys: HashSet<SeriesKey> = HashSet::new();
    let mut episodes: HashMap<&str, DateTime<Utc>> = HashMap::new();

    for ticket in tickets {
        episodes.insert(
            &ticket.id,
            crate::notice::truncate_millis(ticket.waiting_since),
        );
        let mut ticket_json: Option<(String, i64)> = None;
        for policy in Policy::applicable(&settings.policies, ticket) {
            let recipient = match recipient_for(settings, policy, ticket) {
                Ok(r) => r,
                Err(e) => {
                    out.skipped.push((policy.name.clone(), e));
                    continue;
                }
            };
            let key = SeriesKey::new(&ticket.id, &policy.name, ticket.waiting_since);
            wanted_keys.insert(key.clone());
            let state = known.get(&key);
            if state.is_none() {
                out.new_series.push(key.clone());
            }
            let done = state.map_or(0, |s| s.done);
            if done >= policy.max_notices {
                continue;
            }
            let number = done + 1;
            let Some(due_at) = policy.due_at(
                ticket.waiting_since,
                number,
                state.and_then(|s| s.last_ref_at),
            ) else {
                continue;
            };
            let Some(send_at) = policy.window.first_send_instant(due_at) else {
                continue;
            };
            let (json, hash) = ticket_json.get_or_insert_with(|| {
                let json = serde_json::to_string(ticket).unwrap_or_default();
                let hash = ticket_hash(&json);
                (json, hash)
            });
            let id = key.notice_id(number, dry_run);
            let unchanged = state.and_then(|s| s.next.as_ref()).is_some_and(|next| {
                next.id == id
                    && next.status == Status::Pending
                    && next.due_at == due_at
                    && next.send_at == send_at
                    && next.ticket_hash == *hash
            });
            if unchanged && !collect_wanted {
                continue;
            }
            let planned = PlannedNotice {
                id,
                key: key.clone(),
                number,
                max_notices: policy.max_notices,
                channel: policy.channel.clone(),
                recipient,
                due_at,
                send_at,
                ticket_json: json.clone(),
                ticket_hash: *hash,
            };
            if collect_wanted {
                out.wanted.push(planned.clone());
            }
            if !unchanged {
                out.upserts.push(planned);
            }
        }
    }

    let ended: HashSet<&str> = ended.iter().map(String::as_str).collect();
    for state in series {
        if wanted_keys.contains(&state.key) {
            continue;
        }
        let ticket_id = state.key.ticket_id.as_str();
        // A partial snapshot says nothing about tickets it does not list.
        if !full && !episodes.contains_key(ticket_id) && !ended.contains(ticket_id) {
            continue;
        }
        let same_episode = episodes.get(state.key.ticket_id.as_str()) == Some(&state.key.episode);
        let reason = if !episodes.contains_key(state.key.ticket_id.as_str()) {
            "the ticket is no longer waiting"
        } else if !same_episode {
            "the wait restarted (waiting_since changed)"
        } else {
            "the ticket no longer matches the policy"
        };
        if let Some(next) = state.next.as_ref().filter(|n| n.status == Status::Pending) {
            out.cancels.push(Cancel {
                id: next.id.clone(),
                key: state.key.clone(),
                reason: reason.to_owned(),
            });
        }
        if !same_episode {
            out.ended_series.push(state.key.clone());
        }
    }
    out
}

/// Who a notice goes to. An email policy needs a valid customer address;
/// a ticket without one is skipped for that policy, never fatal.
pub fn recipient_for(
    settings: &Settings,
    policy: &Policy,
    ticket: &Ticket,
) -> Result<Option<String>, RowError> {
    let Some(channel) = settings.channels.get(&policy.channel) else {
        return Ok(None);
    };
    match &channel.kind {
        // An .eml outbox stands in for email: it needs the same recipient.
        ChannelKind::Email(_)
        | ChannelKind::File(FileSettings {
            format: FileFormat::Eml,
            ..
        }) => {
            let fail = |reason: String| RowError {
                ticket_id: Some(ticket.id.clone()),
                column: "customer_email".into(),
                reason,
            };
            let raw = ticket.customer_email.as_deref().ok_or_else(|| {
                fail(format!(
                    "missing, but policy \"{}\" sends email",
                    policy.name
                ))
            })?;
            let mailbox: Mailbox = raw.parse().map_err(|_| {
                fail(format!(
                    "\"{}\" is not a valid email address",
                    crate::templates::single_line(raw)
                ))
            })?;
            Ok(Some(mailbox.email.to_string()))
        }
        ChannelKind::Webhook(w) => Ok(Some(w.url.redacted())),
        ChannelKind::File(f) => Ok(Some(f.path.display().to_string())),
    }
}
