//! Planning: from waiting tickets, the policies and the ledger's series,
//! decide which notice each series should have pending next, which pending
//! notices must be cancelled, and how the series rows change. Pure: `now`
//! is an argument and the store applies the result.
//!
//! A series remembers how far it got (the last notice that reached an end,
//! the last real send) for as long as the ledger keeps it: a ticket that
//! leaves the snapshot and comes back with the same wait continues at the
//! next number, spaced from its last send.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use lettre::message::Mailbox;

use crate::config::{ChannelKind, FileFormat, FileSettings, Settings};
use crate::ledger::{EndedWaits, WaitEnd, WaitWrite};
use crate::notice::{SeriesKey, truncate_millis};
use crate::policy::{Localised, Policy};
use crate::source::RowError;
use crate::ticket::Ticket;

pub use crate::ledger::{Cancel, NextNotice, Plan, PlannedNotice, SeriesState, SeriesWrite};

/// Which series a plan is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The live series: notices are planned to be sent.
    Live,
    /// Dry run: its own series, recorded as `dry_run`, never sent.
    DryRun,
    /// The live series while dry run is on: nothing new is planned, but a
    /// pending notice whose wait ended is still cancelled.
    CancelOnly,
}

impl Mode {
    pub fn dry_run(self) -> bool {
        self == Mode::DryRun
    }

    /// The modes a poll plans in when `dry_run` is on or off.
    pub fn for_daemon(dry_run: bool) -> &'static [Mode] {
        if dry_run {
            &[Mode::DryRun, Mode::CancelOnly]
        } else {
            &[Mode::Live]
        }
    }
}

/// A stable hash of a ticket's JSON: SipHash with fixed keys.
pub fn ticket_hash(json: &str) -> i64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    json.hash(&mut hasher);
    hasher.finish() as i64
}

/// A ticket as the ledger stores it, with its hash.
pub fn ticket_record(ticket: &Ticket) -> (String, i64) {
    let json = serde_json::to_string(ticket).unwrap_or_default();
    let hash = ticket_hash(&json);
    (json, hash)
}

/// The series keys `tickets` belong to now (every applicable policy, in
/// their current wait): what the store must know before planning.
pub fn series_keys(settings: &Settings, tickets: &[Ticket]) -> Vec<SeriesKey> {
    tickets
        .iter()
        .flat_map(|t| {
            Policy::applicable(&settings.policies, t)
                .into_iter()
                .map(|p| SeriesKey::new(&t.id, &p.name, t.waiting_since))
        })
        .collect()
}

/// Plans the series of some tickets: `tickets` wait now, `ended` no longer
/// do; `series` holds every state the ledger has of these tickets (missing
/// ones are new). Tickets not mentioned are not touched: a full poll ends
/// the series of absent tickets (see `PlanLedger::finish_poll`).
pub fn plan(
    settings: &Settings,
    tickets: &[Ticket],
    ended: &[String],
    series: &[SeriesState],
    now: DateTime<Utc>,
    mode: Mode,
) -> Plan {
    let mut out = Plan {
        dry_run: mode.dry_run(),
        ..Plan::default()
    };
    let mut by_ticket: HashMap<&str, Vec<&SeriesState>> = HashMap::new();
    for state in series {
        by_ticket
            .entry(state.key.ticket_id.as_str())
            .or_default()
            .push(state);
    }
    let no_states = Vec::new();
    let mut localised = Localised::default();
    for ticket in tickets {
        let states = by_ticket.get(ticket.id.as_str()).unwrap_or(&no_states);
        plan_ticket(
            settings,
            ticket,
            states,
            now,
            mode,
            &mut localised,
            &mut out,
        );
    }
    for id in ended {
        let states = by_ticket.get(id.as_str()).unwrap_or(&no_states);
        for state in states {
            end_series(state, "the ticket is no longer waiting", false, &mut out);
        }
        if !states.is_empty() {
            out.ended_waits.push(EndedWaits {
                ticket_id: id.clone(),
                except_episode: None,
                how: WaitEnd::Left,
            });
        }
    }
    out
}

/// What a poll saw of a ticket's wait: the policies that matched it.
#[derive(Default)]
struct WaitSeen {
    policies: Vec<String>,
    first_due_at: Option<DateTime<Utc>>,
    /// Something of the wait was written: write the wait too.
    changed: bool,
}

impl WaitSeen {
    fn matched(&mut self, policy: &Policy, waiting_since: DateTime<Utc>) {
        self.policies.push(policy.name.clone());
        if let Some(due) = policy.due_at(waiting_since, 1, None) {
            self.first_due_at = Some(self.first_due_at.map_or(due, |d| d.min(due)));
        }
    }

    /// The wait in progress, and the end of every other open wait of the
    /// ticket: an earlier one (its `waiting_since` moved: someone wrote),
    /// or this one too when no policy matches any more. A wait has series
    /// (one per policy that matched), so only a ticket with series of
    /// another wait, or with series but no match, has waits to end.
    /// Nothing new in cancel-only mode, which only ends.
    fn write(
        self,
        ticket: &Ticket,
        episode: DateTime<Utc>,
        states: &[&SeriesState],
        mode: Mode,
        out: &mut Plan,
    ) {
        let matched = !self.policies.is_empty();
        if matched && states.iter().any(|s| s.key.episode != episode) {
            out.ended_waits.push(EndedWaits {
                ticket_id: ticket.id.clone(),
                except_episode: Some(episode),
                how: WaitEnd::NewWait,
            });
        } else if !matched && !states.is_empty() {
            out.ended_waits.push(EndedWaits {
                ticket_id: ticket.id.clone(),
                except_episode: None,
                how: WaitEnd::Left,
            });
        }
        if matched && self.changed && mode != Mode::CancelOnly {
            out.waits.push(WaitWrite {
                ticket_id: ticket.id.clone(),
                episode,
                ticket_number: ticket.number.clone(),
                queue: ticket.queue.clone(),
                priority: ticket.priority.clone(),
                origin: ticket.origin.clone(),
                language: ticket.language.clone(),
                policies: self.policies,
                first_due_at: self.first_due_at,
            });
        }
    }
}

fn plan_ticket(
    settings: &Settings,
    ticket: &Ticket,
    states: &[&SeriesState],
    now: DateTime<Utc>,
    mode: Mode,
    localised: &mut Localised,
    out: &mut Plan,
) {
    let episode = truncate_millis(ticket.waiting_since);
    let mut handled: HashSet<&str> = HashSet::new();
    let mut record: Option<(String, i64)> = None;
    let mut wait = WaitSeen::default();
    let writes_before = (out.series.len(), out.upserts.len());
    for policy in Policy::applicable(&settings.policies, ticket) {
        handled.insert(policy.name.as_str());
        wait.matched(policy, ticket.waiting_since);
        // A customer-local window is placed in the ticket's zone.
        let policy = &*localised.for_ticket(policy, ticket);
        let key = SeriesKey::new(&ticket.id, &policy.name, ticket.waiting_since);
        let recipient = match recipient_for(settings, policy, ticket) {
            Ok(r) => r,
            Err(e) => {
                // Neither waiting nor ended for this policy: its series is
                // left exactly as it is.
                out.skipped.push((policy.name.clone(), e));
                continue;
            }
        };
        let state = states
            .iter()
            .find(|s| s.key == key)
            .map(|s| (*s).clone())
            .unwrap_or_else(|| SeriesState::fresh(key.clone()));
        if !state.stored || !state.active {
            out.series.push(SeriesWrite {
                key: key.clone(),
                done: state.done,
                last_sent_at: state.last_sent_at,
                active: true,
                next_id: state.next.as_ref().map(|n| n.id.clone()),
            });
        }
        if mode == Mode::CancelOnly {
            continue;
        }
        let (json, hash) = record.get_or_insert_with(|| ticket_record(ticket));
        let facts = TicketFacts {
            ticket,
            json,
            hash: *hash,
            recipient,
        };
        match plan_series(policy, &facts, &state, now, mode.dry_run()) {
            SeriesPlan::Upsert(n) => out.upserts.push(n),
            SeriesPlan::Cancel(c) => out.cancels.push(c),
            SeriesPlan::Unchanged | SeriesPlan::Finished => {}
        }
    }
    // The wait is written with its series (new, or active again) and
    // whenever a notice of it is written (the ticket changed, a reload):
    // an unchanged poll writes nothing.
    wait.changed = writes_before != (out.series.len(), out.upserts.len());
    wait.write(ticket, episode, states, mode, out);
    for state in states {
        if handled.contains(state.key.policy.as_str()) && state.key.episode == episode {
            continue;
        }
        if state.key.episode != episode {
            end_series(
                state,
                "the wait restarted (waiting_since changed)",
                true,
                out,
            );
        } else {
            let policy = &state.key.policy;
            let reason = if settings.policies.iter().any(|p| &p.name == policy) {
                format!("the ticket no longer matches policy {policy}")
            } else {
                unconfigured_reason(policy)
            };
            end_series(state, &reason, false, out);
        }
    }
}

/// Cancels a series' pending notice and deactivates it (or deletes it,
/// when its wait is over for good).
fn end_series(state: &SeriesState, reason: &str, delete: bool, out: &mut Plan) {
    if let Some(next) = state.pending_next() {
        out.cancels.push(Cancel {
            id: next.id.clone(),
            key: state.key.clone(),
            reason: reason.to_owned(),
        });
    }
    if delete {
        out.deleted_series.push(state.key.clone());
    } else if state.active && state.stored {
        out.series.push(SeriesWrite {
            key: state.key.clone(),
            done: state.done,
            last_sent_at: state.last_sent_at,
            active: false,
            next_id: state.next.as_ref().map(|n| n.id.clone()),
        });
    }
}

/// A ticket with what the ledger stores of it and its recipient under one
/// policy.
pub struct TicketFacts<'a> {
    pub ticket: &'a Ticket,
    pub json: &'a str,
    pub hash: i64,
    pub recipient: Option<String>,
}

/// What one series needs now.
#[derive(Debug, Clone, PartialEq)]
pub enum SeriesPlan {
    /// This notice should be pending (new, moved, re-routed or revived).
    Upsert(PlannedNotice),
    /// The pending notice is right as it is.
    Unchanged,
    /// The pending notice must not go out (the policy sends fewer now).
    Cancel(Cancel),
    /// Every notice of the series has been sent.
    Finished,
}

/// The notice a series should have pending at `now`: number `done + 1`,
/// due by the policy's timing and placed in its send window (an overdue
/// notice whose window instant has passed goes to the next one).
pub fn plan_series(
    policy: &Policy,
    facts: &TicketFacts<'_>,
    state: &SeriesState,
    now: DateTime<Utc>,
    dry_run: bool,
) -> SeriesPlan {
    let next = state.pending_next();
    if state.done >= policy.max_notices {
        return match next {
            Some(n) => SeriesPlan::Cancel(Cancel {
                id: n.id.clone(),
                key: state.key.clone(),
                reason: fewer_notices_reason(&policy.name, policy.max_notices),
            }),
            None => SeriesPlan::Finished,
        };
    }
    let number = state.done + 1;
    let id = state.key.notice_id(number, dry_run);
    let stored = next.filter(|n| n.id == id);
    let Some(due_at) = policy.due_at(facts.ticket.waiting_since, number, state.last_sent_at) else {
        return SeriesPlan::Finished;
    };
    let Some(send_at) = policy
        .window
        .place(due_at, now, stored.map(|n| n.send_at))
        .map(truncate_millis)
    else {
        return SeriesPlan::Finished;
    };
    let unchanged = stored.is_some_and(|n| {
        n.due_at == due_at
            && n.send_at == send_at
            && n.ticket_hash == facts.hash
            && n.channel == policy.channel
            && n.recipient == facts.recipient
            && n.max_notices == policy.max_notices
    });
    if unchanged {
        return SeriesPlan::Unchanged;
    }
    SeriesPlan::Upsert(PlannedNotice {
        id,
        key: state.key.clone(),
        number,
        max_notices: policy.max_notices,
        channel: policy.channel.clone(),
        recipient: facts.recipient.clone(),
        due_at,
        send_at,
        ticket_json: facts.json.to_owned(),
        ticket_hash: facts.hash,
    })
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
                    crate::logging::outside(&crate::templates::single_line(raw))
                ))
            })?;
            Ok(Some(mailbox.email.to_string()))
        }
        ChannelKind::Webhook(w) => Ok(Some(w.url.redacted())),
        ChannelKind::File(f) => Ok(Some(f.path.display().to_string())),
    }
}

/// Why a pending notice of a policy that a reload removed is cancelled
/// (a reload's cancel: [`crate::promise::is_reload_cancel`] knows it).
fn unconfigured_reason(policy: &str) -> String {
    format!("policy {policy} is no longer configured")
}

/// Why a pending notice is cancelled when a reload lowered its policy's
/// `max_notices`. Names the key, so the reason in the ledger leads to the
/// config change that caused it (issue 10, item 4).
fn fewer_notices_reason(policy: &str, max: u32) -> String {
    format!("policy {policy} now sends at most {max} notice(s) (max_notices = {max})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reasons_of_a_reload_are_known_as_reload_cancels_and_a_ticket_change_is_not() {
        assert!(crate::promise::is_reload_cancel(&unconfigured_reason("p")));
        assert!(crate::promise::is_reload_cancel(&fewer_notices_reason(
            "p", 2
        )));
        assert!(!crate::promise::is_reload_cancel(
            "the ticket no longer matches policy p"
        ));
        assert!(!crate::promise::is_reload_cancel(
            "the ticket is no longer waiting"
        ));
    }
}
