//! Sets of ticket ids held as 128-bit fingerprints: a full poll of a
//! million tickets remembers which ids it saw (to end the series of the
//! others) in 16 bytes each instead of a string each, and so do the
//! ledger's change marks and the poller's memo.
//!
//! Two ids share a fingerprint with a probability of about n²/2¹²⁹: for a
//! million ids, 10⁻²⁷ per poll. A 64-bit fingerprint (10⁻⁸ per poll) was
//! not enough here, because a collision in the seen set would keep a
//! departed ticket's series alive and could send it a stale notice.

use std::collections::HashSet;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher, Hasher};

/// The fingerprint of one ticket id: two SipHash halves with fixed keys
/// and distinct domain bytes. Never persisted: only compared within one
/// process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TicketFingerprint([u64; 2]);

impl TicketFingerprint {
    pub fn of(id: &str) -> Self {
        let half = |domain: u8| {
            let mut h = BuildHasherDefault::<DefaultHasher>::default().build_hasher();
            h.write_u8(domain);
            h.write(id.as_bytes());
            h.finish()
        };
        Self([half(0), half(1)])
    }
}

/// A set of ticket ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TicketIds(HashSet<TicketFingerprint>);

impl TicketIds {
    /// Adds an id; false if it was already there.
    pub fn insert(&mut self, id: &str) -> bool {
        self.0.insert(TicketFingerprint::of(id))
    }

    pub fn contains(&self, id: &str) -> bool {
        self.0.contains(&TicketFingerprint::of(id))
    }

    pub fn contains_fingerprint(&self, fingerprint: &TicketFingerprint) -> bool {
        self.0.contains(fingerprint)
    }

    pub fn extend(&mut self, other: TicketIds) {
        self.0.extend(other.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> FromIterator<&'a str> for TicketIds {
    fn from_iter<I: IntoIterator<Item = &'a str>>(ids: I) -> Self {
        Self(ids.into_iter().map(TicketFingerprint::of).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_found_once_inserted_and_others_are_not() {
        let mut ids = TicketIds::default();
        assert!(ids.insert("T-1"));
        assert!(!ids.insert("T-1"), "a second insert reports the duplicate");
        assert!(ids.contains("T-1"));
        assert!(!ids.contains("T-2"));
        assert!(!ids.contains("T-1 "), "the whole id counts");
        assert_eq!(ids.len(), 1);
    }

    #[test]
    fn equal_ids_give_equal_fingerprints_and_the_halves_differ() {
        assert_eq!(TicketFingerprint::of("T-1"), TicketFingerprint::of("T-1"));
        assert_ne!(TicketFingerprint::of("T-1"), TicketFingerprint::of("T-2"));
        let halves = TicketFingerprint::of("T-1").0;
        assert_ne!(halves[0], halves[1], "the two halves are independent");
    }
}
