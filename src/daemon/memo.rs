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

/// A ticket's id and data, hashed: 16 bytes per ticket, not its id and
/// JSON (a million tickets stay in tens of megabytes). An id collision can
/// only make a ticket be planned again: the data hash covers the id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TicketDigest {
    id: u64,
    /// None when the ticket cannot be serialized: planned every poll (and
    /// failing there, as before).
    data: Option<u64>,
}

/// The hasher of every digest: fixed keys, so equal input hashes equal.
fn hasher() -> std::hash::DefaultHasher {
    std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default().build_hasher()
}

fn id_hash(id: &str) -> u64 {
    let mut h = hasher();
    h.write(id.as_bytes());
    h.finish()
}

impl TicketDigest {
    pub fn of(ticket: &Ticket) -> Self {
        let mut data = HashWriter(hasher());
        Self {
            id: id_hash(&ticket.id),
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

#[derive(Debug, Clone, Copy)]
struct Entry {
    data: u64,
    /// The earliest send instant of a pending notice: from then on the
    /// plan depends on the clock (a passed window instant moves it).
    recheck_at: Option<DateTime<Utc>>,
}

/// One remembered plan, staged until its poll is applied.
#[derive(Debug, Clone, Copy)]
pub struct MemoUpdate {
    dry_run: bool,
    id: u64,
    entry: Option<Entry>,
}

#[derive(Default)]
pub struct PlanMemo {
    live: HashMap<u64, Entry>,
    dry_run: HashMap<u64, Entry>,
}

impl PlanMemo {
    fn map(&self, dry_run: bool) -> &HashMap<u64, Entry> {
        if dry_run { &self.dry_run } else { &self.live }
    }

    fn map_mut(&mut self, dry_run: bool) -> &mut HashMap<u64, Entry> {
        if dry_run {
            &mut self.dry_run
        } else {
            &mut self.live
        }
    }

    /// Everything forgotten (a reload: every plan may differ).
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
                && e.recheck_at.is_none_or(|at| now < at)
                && !changed.contains(&ticket.id, dry_run)
        })
    }

    /// What to remember of the tickets `plan` planned (read against
    /// `series`): each one's digest and the instant its plan starts to
    /// depend on the clock. A ticket skipped for a policy (a bad address)
    /// is planned every poll, so it is counted and reported as before.
    pub fn updates(
        planned: &[(&Ticket, TicketDigest)],
        series: &[SeriesState],
        plan: &Plan,
    ) -> Vec<MemoUpdate> {
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
        planned
            .iter()
            .map(|(ticket, digest)| MemoUpdate {
                dry_run: plan.dry_run,
                id: digest.id,
                entry: digest
                    .data
                    .filter(|_| !skipped.contains(ticket.id.as_str()))
                    .map(|data| Entry {
                        data,
                        recheck_at: recheck.get(ticket.id.as_str()).copied(),
                    }),
            })
            .collect()
    }

    /// Forgets a ticket that no longer waits.
    pub fn forget(id: &str, dry_run: bool) -> MemoUpdate {
        MemoUpdate {
            dry_run,
            id: id_hash(id),
            entry: None,
        }
    }

    /// Takes the updates of an applied poll. After a full poll only the
    /// tickets it saw are remembered.
    pub fn apply(&mut self, updates: Vec<MemoUpdate>, seen: Option<&HashSet<Box<str>>>) {
        for u in updates {
            let map = self.map_mut(u.dry_run);
            match u.entry {
                Some(e) => {
                    map.insert(u.id, e);
                }
                None => {
                    map.remove(&u.id);
                }
            }
        }
        if let Some(seen) = seen {
            let seen: HashSet<u64> = seen.iter().map(|id| id_hash(id)).collect();
            self.live.retain(|id, _| seen.contains(id));
            self.dry_run.retain(|id, _| seen.contains(id));
        }
    }
}
