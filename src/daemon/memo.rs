//! What the poller planned each ticket from, so that a steady poll plans
//! only what changed: a ticket whose data is the same as when it was last
//! planned, whose notices and series nobody changed since (the ledger's
//! change marks, [`ChangedTickets`]) and none of whose pending notices has
//! come due, would be planned to exactly what the ledger holds. Its series
//! are not even read.
//!
//! Kept in memory only, per config: a reload, a restart or a change of
//! poller starts empty, and the first poll plans every ticket as before.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::io::Write;

use chrono::{DateTime, Utc};

use crate::ledger::{ChangedTickets, Plan, SeriesState};
use crate::ticket::Ticket;
use crate::ticket_ids::{TicketFingerprint, TicketIds};

/// A ticket's id and data, hashed: a fingerprint of the id and 8 bytes of
/// the data, not its id and JSON (a million tickets stay in tens of
/// megabytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TicketDigest {
    id: TicketFingerprint,
    /// None when the ticket cannot be serialized: planned every poll (and
    /// failing there, as before).
    data: Option<u64>,
}

impl TicketDigest {
    pub fn of(ticket: &Ticket) -> Self {
        let mut data = HashWriter(
            std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default().build_hasher(),
        );
        Self {
            id: TicketFingerprint::of(&ticket.id),
            data: serde_json::to_writer(&mut data, ticket)
                .ok()
                .map(|()| data.0.finish()),
        }
    }
}

/// Feeds serialized bytes into a hasher without building the string.
struct HashWriter(std::hash::DefaultHasher);

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// 16 bytes: with the fingerprint, 32 per remembered ticket.
#[derive(Debug, Clone, Copy)]
struct Entry {
    data: u64,
    /// The earliest send instant of a pending notice, in milliseconds
    /// (`i64::MAX`: none): from then on the plan depends on the clock (a
    /// passed window instant moves it).
    recheck_at_ms: i64,
}

/// Remembered as soon as a chunk is planned, before its poll is applied:
/// a poll that fails must [`clear`](PlanMemo::clear) the memo, or it would
/// remember plans the ledger never got.
#[derive(Default)]
pub struct PlanMemo {
    live: HashMap<TicketFingerprint, Entry>,
    dry_run: HashMap<TicketFingerprint, Entry>,
}

impl PlanMemo {
    fn map(&self, dry_run: bool) -> &HashMap<TicketFingerprint, Entry> {
        if dry_run { &self.dry_run } else { &self.live }
    }

    fn map_mut(&mut self, dry_run: bool) -> &mut HashMap<TicketFingerprint, Entry> {
        if dry_run {
            &mut self.dry_run
        } else {
            &mut self.live
        }
    }

    /// Everything forgotten (a reload: every plan may differ; a failed
    /// poll: what it planned was never applied).
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// Whether planning `ticket` at `now` would change nothing.
    pub fn unchanged(
        &self,
        ticket: &Ticket,
        digest: TicketDigest,
        dry_run: bool,
        changed: &ChangedTickets,
        now: DateTime<Utc>,
    ) -> bool {
        self.map(dry_run).get(&digest.id).is_some_and(|e| {
            Some(e.data) == digest.data
                && now.timestamp_millis() < e.recheck_at_ms
                && !changed.contains(&ticket.id, dry_run)
        })
    }

    /// Remembers the tickets `plan` planned (read against `series`): each
    /// one's digest and the instant its plan starts to depend on the
    /// clock. A ticket skipped for a policy (a bad address) is planned
    /// every poll, so it is counted and reported as before.
    pub fn remember(
        &mut self,
        planned: &[(&Ticket, TicketDigest)],
        series: &[SeriesState],
        plan: &Plan,
    ) {
        let mut recheck: HashMap<&str, DateTime<Utc>> = HashMap::new();
        let pending = series
            .iter()
            .filter_map(|s| Some((s.key.ticket_id.as_str(), s.pending_next()?.send_at)))
            .chain(
                plan.upserts
                    .iter()
                    .map(|n| (n.key.ticket_id.as_str(), n.send_at)),
            );
        for (id, at) in pending {
            recheck
                .entry(id)
                .and_modify(|t| *t = (*t).min(at))
                .or_insert(at);
        }
        let skipped: HashSet<&str> = plan
            .skipped
            .iter()
            .filter_map(|(_, e)| e.ticket_id.as_deref())
            .collect();
        let map = self.map_mut(plan.dry_run);
        for (ticket, digest) in planned {
            match digest
                .data
                .filter(|_| !skipped.contains(ticket.id.as_str()))
            {
                Some(data) => {
                    let recheck_at_ms = recheck
                        .get(ticket.id.as_str())
                        .map_or(i64::MAX, DateTime::timestamp_millis);
                    map.insert(
                        digest.id,
                        Entry {
                            data,
                            recheck_at_ms,
                        },
                    );
                }
                None => {
                    map.remove(&digest.id);
                }
            }
        }
    }

    /// Forgets tickets that no longer wait.
    pub fn forget<'a>(&mut self, ids: impl IntoIterator<Item = &'a str>, dry_run: bool) {
        let map = self.map_mut(dry_run);
        for id in ids {
            map.remove(&TicketFingerprint::of(id));
        }
    }

    /// After a full poll only the tickets it saw are remembered.
    pub fn keep_only(&mut self, seen: &TicketIds) {
        self.live.retain(|id, _| seen.contains_fingerprint(id));
        self.dry_run.retain(|id, _| seen.contains_fingerprint(id));
    }
}
