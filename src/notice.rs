//! Notice identity and ledger status.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Namespace of interim's UUID v5 notice ids.
const NAMESPACE: Uuid = Uuid::from_u128(0x6c0f_1e5a_2b7d_4e1b_9a3c_5d8e_0f21_4b6a);

/// One wait of one ticket under one policy: the notices of a series are
/// numbered 1, 2, … up to the policy's `max_notices`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeriesKey {
    pub ticket_id: String,
    pub policy: String,
    /// `waiting_since` of the episode, to the millisecond.
    pub episode: DateTime<Utc>,
}

impl SeriesKey {
    pub fn new(ticket_id: &str, policy: &str, waiting_since: DateTime<Utc>) -> Self {
        Self {
            ticket_id: ticket_id.to_owned(),
            policy: policy.to_owned(),
            episode: truncate_millis(waiting_since),
        }
    }

    /// The same (ticket, policy, episode, number) always yields the same id,
    /// so receivers can de-duplicate. Dry-run notices get ids of their own:
    /// switching dry run off must not collide with what it recorded.
    pub fn notice_id(&self, number: u32, dry_run: bool) -> String {
        let name = format!(
            "{}\u{0}{}\u{0}{}\u{0}{}{}",
            self.ticket_id,
            self.policy,
            self.episode.timestamp_millis(),
            number,
            if dry_run { "\u{0}dry-run" } else { "" }
        );
        Uuid::new_v5(&NAMESPACE, name.as_bytes()).to_string()
    }
}

pub fn truncate_millis(t: DateTime<Utc>) -> DateTime<Utc> {
    crate::clock::to_millis(t)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Sent,
    Dead,
    Cancelled,
    Suppressed,
    DryRun,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Pending,
        Status::Sent,
        Status::Dead,
        Status::Cancelled,
        Status::Suppressed,
        Status::DryRun,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Sent => "sent",
            Status::Dead => "dead",
            Status::Cancelled => "cancelled",
            Status::Suppressed => "suppressed",
            Status::DryRun => "dry_run",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notice_ids_are_deterministic_and_distinct() {
        let key = SeriesKey::new(
            "42",
            "standard",
            DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
        );
        assert_eq!(key.notice_id(1, false), key.notice_id(1, false));
        assert_ne!(key.notice_id(1, false), key.notice_id(2, false));
        assert_ne!(key.notice_id(1, false), key.notice_id(1, true));
    }
}
