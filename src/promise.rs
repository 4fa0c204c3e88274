//! Whether a promise was kept. Every sent notice with a `next_notice_at`
//! promises the customer to hear again by then; its outcome is decided
//! from what became of the next notice of its series and of the wait, as
//! soon as that is known (DESIGN.md, "Promises, waits and the report").
//! One pure function, so both stores decide alike and a test can walk
//! every case.

use chrono::{DateTime, Utc};

use crate::notice::Status;

/// How a promise turned out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromiseOutcome {
    /// The next notice went out by the promised instant + grace.
    Kept,
    /// The wait ended before the promise fell due: someone answered.
    Superseded,
    Broken(BrokenBy),
}

/// Why a promise was broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokenBy {
    /// The next notice went out after the promised instant + grace.
    Late,
    /// The next notice failed for good.
    Dead,
    /// Its recipient was suppressed.
    Suppressed,
    /// Held back: no fresh poll of the source.
    HeldStale,
    /// Held back by a rate or recipient limit.
    HeldLimit,
    /// Never planned: the daemon was down at the deadline, or the series
    /// was lost.
    NotPlanned,
    /// A reload took the notice away (the policy went, or sends fewer).
    CancelledByReload,
}

impl PromiseOutcome {
    /// The stored outcome column.
    pub fn as_str(self) -> &'static str {
        match self {
            PromiseOutcome::Kept => "kept",
            PromiseOutcome::Superseded => "superseded",
            PromiseOutcome::Broken(_) => "broken",
        }
    }

    /// The stored reason column: only a broken promise has one.
    pub fn reason(self) -> Option<&'static str> {
        match self {
            PromiseOutcome::Broken(by) => Some(by.as_str()),
            _ => None,
        }
    }
}

impl BrokenBy {
    /// Every reason, in the order reports list them.
    pub const ALL: [BrokenBy; 7] = [
        BrokenBy::Late,
        BrokenBy::Dead,
        BrokenBy::Suppressed,
        BrokenBy::HeldStale,
        BrokenBy::HeldLimit,
        BrokenBy::NotPlanned,
        BrokenBy::CancelledByReload,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BrokenBy::Late => "late",
            BrokenBy::Dead => "dead",
            BrokenBy::Suppressed => "suppressed",
            BrokenBy::HeldStale => "held_stale",
            BrokenBy::HeldLimit => "held_limit",
            BrokenBy::NotPlanned => "not_planned",
            BrokenBy::CancelledByReload => "cancelled_by_reload",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|by| by.as_str() == text)
    }
}

/// Whether a cancelled notice was taken away by a reload (the policy is
/// gone, or sends fewer notices) rather than by a change of the ticket:
/// the planner's reasons for the two (tested there).
pub fn is_reload_cancel(reason: &str) -> bool {
    reason.ends_with(" is no longer configured") || reason.contains(" now sends at most ")
}

/// Why the dispatcher last held a notice back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// No fresh poll (`daemon.max_snapshot_age`).
    Stale,
    /// A rate or recipient limit.
    Limit,
}

impl Hold {
    /// The stored `hold_reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Hold::Stale => "stale",
            Hold::Limit => "limit",
        }
    }
}

/// What became of the notice after the promise.
#[derive(Debug, Clone, PartialEq)]
pub struct NextNoticeFacts {
    pub status: Status,
    pub sent_at: Option<DateTime<Utc>>,
    /// Cancelled by a reload (the policy is gone or sends fewer notices),
    /// not because the ticket changed.
    pub cancelled_by_reload: bool,
    pub held: Option<Hold>,
}

/// Everything a promise's outcome depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct PromiseFacts {
    /// The promised instant: the sent notice's `next_notice_at`.
    pub promised: DateTime<Utc>,
    /// The next notice of the series, if the ledger has it.
    pub next: Option<NextNoticeFacts>,
    /// When the wait ended, if it has.
    pub wait_ended_at: Option<DateTime<Utc>>,
}

/// A promise decided by a sweep, for the metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct DecidedPromise {
    /// The sent notice that made the promise.
    pub notice_id: String,
    pub policy: String,
    pub outcome: PromiseOutcome,
    /// How long after the promised instant the next notice went out
    /// (negative: early), when it went out.
    pub lateness: Option<chrono::Duration>,
}

/// A stretch of time in which the daemon could not keep promises: it was
/// down (`NotPlanned`), or it had no fresh poll (`HeldStale`), from
/// `since` until the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub since: DateTime<Utc>,
    pub why: BrokenBy,
}

/// The outcome of a promise at `now`, or None while it is undecided. A
/// deadline that fell in `gap` was not the daemon's to keep: broken for
/// the gap's reason, even if the next notice goes out late now.
pub fn decide(
    facts: &PromiseFacts,
    grace: chrono::Duration,
    now: DateTime<Utc>,
    gap: Option<Gap>,
) -> Option<PromiseOutcome> {
    let deadline = facts
        .promised
        .checked_add_signed(grace)
        .unwrap_or(facts.promised);
    let gap = gap
        .filter(|g| g.since < deadline && deadline <= now)
        .map(|g| g.why);
    if let Some(next) = &facts.next {
        match next.status {
            Status::Sent => {
                let sent = next.sent_at.unwrap_or(now);
                return Some(if sent <= deadline {
                    PromiseOutcome::Kept
                } else if let Some(why) = gap {
                    PromiseOutcome::Broken(why)
                } else {
                    PromiseOutcome::Broken(BrokenBy::Late)
                });
            }
            Status::Dead => return Some(PromiseOutcome::Broken(BrokenBy::Dead)),
            Status::Suppressed => return Some(PromiseOutcome::Broken(BrokenBy::Suppressed)),
            Status::Cancelled if next.cancelled_by_reload => {
                return Some(PromiseOutcome::Broken(BrokenBy::CancelledByReload));
            }
            _ => {}
        }
    }
    if let Some(ended) = facts.wait_ended_at {
        return Some(if ended <= deadline {
            PromiseOutcome::Superseded
        } else {
            // The deadline passed while the customer still waited.
            late_by(facts.next.as_ref(), gap)
        });
    }
    if facts
        .next
        .as_ref()
        .is_some_and(|n| n.status == Status::Cancelled)
    {
        // Cancelled because the ticket changed (it no longer matches the
        // policy) while it still waits under another: not this promise's
        // series any more.
        return Some(PromiseOutcome::Superseded);
    }
    (now >= deadline).then(|| late_by(facts.next.as_ref(), gap))
}

/// Why a deadline passed without the next notice.
fn late_by(next: Option<&NextNoticeFacts>, gap: Option<BrokenBy>) -> PromiseOutcome {
    if let Some(why) = gap {
        return PromiseOutcome::Broken(why);
    }
    PromiseOutcome::Broken(match next {
        None => BrokenBy::NotPlanned,
        Some(n) => match n.held {
            Some(Hold::Stale) => BrokenBy::HeldStale,
            Some(Hold::Limit) => BrokenBy::HeldLimit,
            None => BrokenBy::Late,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::UNIX_EPOCH + chrono::Duration::minutes(minutes)
    }

    fn down(since: i64) -> Gap {
        Gap {
            since: at(since),
            why: BrokenBy::NotPlanned,
        }
    }

    fn grace() -> chrono::Duration {
        chrono::Duration::minutes(5)
    }

    /// Promised at minute 60.
    fn facts(next: Option<NextNoticeFacts>, wait_ended_at: Option<DateTime<Utc>>) -> PromiseFacts {
        PromiseFacts {
            promised: at(60),
            next,
            wait_ended_at,
        }
    }

    fn next(status: Status, sent_at: Option<DateTime<Utc>>) -> NextNoticeFacts {
        NextNoticeFacts {
            status,
            sent_at,
            cancelled_by_reload: false,
            held: None,
        }
    }

    #[test]
    fn a_next_notice_sent_by_the_deadline_keeps_the_promise_and_later_breaks_it() {
        let on_time = facts(Some(next(Status::Sent, Some(at(64)))), None);
        assert_eq!(
            decide(&on_time, grace(), at(64), None),
            Some(PromiseOutcome::Kept)
        );
        let late = facts(Some(next(Status::Sent, Some(at(66)))), None);
        assert_eq!(
            decide(&late, grace(), at(66), None),
            Some(PromiseOutcome::Broken(BrokenBy::Late))
        );
    }

    #[test]
    fn a_pending_next_notice_is_undecided_until_the_deadline_passes() {
        let pending = facts(Some(next(Status::Pending, None)), None);
        assert_eq!(decide(&pending, grace(), at(64), None), None);
        assert_eq!(
            decide(&pending, grace(), at(65), None),
            Some(PromiseOutcome::Broken(BrokenBy::Late))
        );
        let held = facts(
            Some(NextNoticeFacts {
                held: Some(Hold::Stale),
                ..next(Status::Pending, None)
            }),
            None,
        );
        assert_eq!(
            decide(&held, grace(), at(70), None),
            Some(PromiseOutcome::Broken(BrokenBy::HeldStale))
        );
        let limited = facts(
            Some(NextNoticeFacts {
                held: Some(Hold::Limit),
                ..next(Status::Pending, None)
            }),
            None,
        );
        assert_eq!(
            decide(&limited, grace(), at(70), None),
            Some(PromiseOutcome::Broken(BrokenBy::HeldLimit))
        );
        assert_eq!(
            decide(&facts(None, None), grace(), at(70), None),
            Some(PromiseOutcome::Broken(BrokenBy::NotPlanned)),
            "no next notice at all"
        );
    }

    #[test]
    fn a_wait_that_ends_before_the_deadline_supersedes_the_promise() {
        let answered = facts(Some(next(Status::Cancelled, None)), Some(at(30)));
        assert_eq!(
            decide(&answered, grace(), at(30), None),
            Some(PromiseOutcome::Superseded)
        );
        let too_late = facts(Some(next(Status::Cancelled, None)), Some(at(90)));
        assert_eq!(
            decide(&too_late, grace(), at(90), None),
            Some(PromiseOutcome::Broken(BrokenBy::Late)),
            "the deadline had passed while the customer still waited"
        );
    }

    #[test]
    fn dead_suppressed_and_reload_cancelled_next_notices_break_it_at_once() {
        for (status, by) in [
            (Status::Dead, BrokenBy::Dead),
            (Status::Suppressed, BrokenBy::Suppressed),
        ] {
            let f = facts(Some(next(status, None)), None);
            assert_eq!(
                decide(&f, grace(), at(10), None),
                Some(PromiseOutcome::Broken(by))
            );
        }
        let reload = facts(
            Some(NextNoticeFacts {
                cancelled_by_reload: true,
                ..next(Status::Cancelled, None)
            }),
            None,
        );
        assert_eq!(
            decide(&reload, grace(), at(10), None),
            Some(PromiseOutcome::Broken(BrokenBy::CancelledByReload))
        );
    }

    #[test]
    fn a_deadline_that_fell_while_the_daemon_was_down_was_not_planned() {
        let pending = facts(Some(next(Status::Pending, None)), None);
        assert_eq!(
            decide(&pending, grace(), at(120), Some(down(50))),
            Some(PromiseOutcome::Broken(BrokenBy::NotPlanned))
        );
        let sent_late = facts(Some(next(Status::Sent, Some(at(121)))), None);
        assert_eq!(
            decide(&sent_late, grace(), at(121), Some(down(50))),
            Some(PromiseOutcome::Broken(BrokenBy::NotPlanned))
        );
        assert_eq!(
            decide(&pending, grace(), at(120), Some(down(100))),
            Some(PromiseOutcome::Broken(BrokenBy::Late)),
            "down only after the deadline: late, not unplanned"
        );
    }

    #[test]
    fn a_deadline_without_a_fresh_poll_was_held_stale() {
        let pending = facts(Some(next(Status::Pending, None)), None);
        let stale = Gap {
            since: at(62),
            why: BrokenBy::HeldStale,
        };
        assert_eq!(
            decide(&pending, grace(), at(80), Some(stale)),
            Some(PromiseOutcome::Broken(BrokenBy::HeldStale))
        );
    }

    #[test]
    fn every_reason_reads_back_from_its_stored_name() {
        for by in [
            BrokenBy::Late,
            BrokenBy::Dead,
            BrokenBy::Suppressed,
            BrokenBy::HeldStale,
            BrokenBy::HeldLimit,
            BrokenBy::NotPlanned,
            BrokenBy::CancelledByReload,
        ] {
            assert_eq!(BrokenBy::parse(by.as_str()), Some(by));
        }
    }
}
