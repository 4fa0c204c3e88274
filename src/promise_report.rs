//! The numbers of `interim report` (DESIGN.md, "Promises, waits and the
//! report"): derived only from the wait history and the ledger's notices,
//! so both stores give the same report. One pure function over the rows;
//! reading them and printing the result are the command's.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Datelike, Utc};
use serde::Serialize;

use crate::calendar::Calendar;
use crate::ledger::{PromiseState, SentNotice, Wait};

/// What the report groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Queue,
    Policy,
    Priority,
    Origin,
    Language,
    Week,
    Month,
}

impl GroupBy {
    pub const ALL: [(&'static str, GroupBy); 7] = [
        ("queue", GroupBy::Queue),
        ("policy", GroupBy::Policy),
        ("priority", GroupBy::Priority),
        ("origin", GroupBy::Origin),
        ("language", GroupBy::Language),
        ("week", GroupBy::Week),
        ("month", GroupBy::Month),
    ];

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(n, _)| *n == text)
            .map(|(_, by)| *by)
    }

    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, by)| *by == self)
            .map_or("queue", |(n, _)| n)
    }

    /// The group of a wait; None when the ticket lacks the field.
    fn key(self, wait: &Wait) -> Option<String> {
        match self {
            GroupBy::Queue => wait.queue.clone(),
            GroupBy::Policy => wait.policies.first().cloned(),
            GroupBy::Priority => wait.priority.clone(),
            GroupBy::Origin => wait.origin.clone(),
            GroupBy::Language => wait.language.clone(),
            GroupBy::Week => {
                let week = wait.started_at.iso_week();
                Some(format!("{}-W{:02}", week.year(), week.week()))
            }
            GroupBy::Month => Some(wait.started_at.format("%Y-%m").to_string()),
        }
    }
}

/// What the report covers and how.
#[derive(Debug, Clone)]
pub struct ReportRequest {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub by: GroupBy,
    /// Candidate promises (`--promise 4h,1d`): label and length.
    pub candidates: Vec<(String, Duration)>,
}

/// Median, 90th percentile and maximum, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub p50: u64,
    pub p90: u64,
    pub max: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Promises {
    pub made: u64,
    pub kept: u64,
    pub superseded: u64,
    pub broken: u64,
    pub pending: u64,
    /// (kept + superseded) / decided; None when nothing is decided.
    pub kept_rate: Option<f64>,
    pub broken_by_reason: BTreeMap<String, u64>,
}

/// One group's numbers (or the total's).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    pub key: Option<String>,
    pub waits_started: u64,
    pub waits_ended: u64,
    pub waits_open: u64,
    pub waits_crossed: u64,
    /// Ended waits, wall-clock.
    pub wait_seconds: Option<Spread>,
    /// Ended waits in business time, where a calendar applies.
    pub business_wait_seconds: Option<Spread>,
    pub notices_sent: u64,
    pub notices_by_number: BTreeMap<String, u64>,
    pub promises: Promises,
    pub exhausted: u64,
    /// The waits open longest at the end of the period, longest first.
    pub longest_open: Vec<OpenWait>,
    /// Per candidate promise, in the order given, the share of ended
    /// waits that ended within it (a JSON object).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "shares_as_object"
    )]
    pub ended_within: Option<Vec<(String, f64)>>,
}

/// Candidate shares as one JSON object, keys in the candidates' order.
fn shares_as_object<S: serde::Serializer>(
    shares: &Option<Vec<(String, f64)>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match shares {
        Some(shares) => serializer.collect_map(shares.iter().map(|(k, v)| (k, v))),
        None => serializer.serialize_none(),
    }
}

/// A wait still open at the end of the period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenWait {
    pub ticket_id: String,
    pub ticket_number: Option<String>,
    pub since: DateTime<Utc>,
    /// From `since` to the end of the period (or now, if that is earlier).
    pub waited_seconds: u64,
}

/// How many of a group's open waits the report names.
pub const LONGEST_OPEN: usize = 3;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub by: &'static str,
    pub groups: Vec<Group>,
    pub total: Group,
}

/// The facts of one wait the report counts.
struct Counted<'a> {
    wait: &'a Wait,
    notices: Vec<&'a SentNotice>,
    /// How long it lasted (ended waits): wall-clock, and business time
    /// where its first policy has a calendar.
    lasted: Option<(Duration, Option<Duration>)>,
}

/// The report over `waits` (and the notices of the ticket ids among
/// `notices`), as of `now`. `calendar_of` gives a policy's calendar.
pub fn build<'c>(
    request: &ReportRequest,
    waits: &[Wait],
    notices: &[SentNotice],
    now: DateTime<Utc>,
    calendar_of: impl Fn(&str) -> Option<&'c Calendar>,
) -> Report {
    let in_range = |at: DateTime<Utc>| request.since <= at && at < request.until;
    let mut by_wait: BTreeMap<(&str, DateTime<Utc>), Vec<&SentNotice>> = BTreeMap::new();
    for n in notices {
        by_wait
            .entry((n.ticket_id.as_str(), n.waiting_since))
            .or_default()
            .push(n);
    }
    let mut groups: BTreeMap<Option<String>, Vec<Counted<'_>>> = BTreeMap::new();
    for wait in waits {
        let touches =
            wait.started_at < request.until && wait.ended_at.is_none_or(|end| end >= request.since);
        if !touches {
            continue;
        }
        let lasted = wait.ended_at.filter(|end| in_range(*end)).map(|end| {
            let wall = end
                .signed_duration_since(wait.started_at)
                .to_std()
                .unwrap_or(Duration::ZERO);
            let business = wait
                .policies
                .first()
                .and_then(|p| calendar_of(p))
                .map(|c| c.business_time_between(wait.started_at, end));
            (wall, business)
        });
        let notices = by_wait
            .get(&(wait.ticket_id.as_str(), wait.started_at))
            .cloned()
            .unwrap_or_default();
        groups
            .entry(request.by.key(wait))
            .or_default()
            .push(Counted {
                wait,
                notices,
                lasted,
            });
    }
    let all: Vec<&Counted<'_>> = groups.values().flatten().collect();
    let total = group(None, &all, request, now);
    Report {
        since: request.since,
        until: request.until,
        by: request.by.as_str(),
        groups: groups
            .iter()
            .map(|(key, counted)| {
                group(
                    key.clone(),
                    &counted.iter().collect::<Vec<_>>(),
                    request,
                    now,
                )
            })
            .collect(),
        total,
    }
}

fn group(
    key: Option<String>,
    counted: &[&Counted<'_>],
    request: &ReportRequest,
    now: DateTime<Utc>,
) -> Group {
    let in_range = |at: DateTime<Utc>| request.since <= at && at < request.until;
    let started: Vec<&&Counted<'_>> = counted
        .iter()
        .filter(|c| in_range(c.wait.started_at))
        .collect();
    let lasted: Vec<(Duration, Option<Duration>)> =
        counted.iter().filter_map(|c| c.lasted).collect();
    let walls: Vec<Duration> = lasted.iter().map(|(w, _)| *w).collect();
    let business: Vec<Duration> = lasted.iter().filter_map(|(_, b)| *b).collect();
    let mut promises = Promises::default();
    let mut notices_sent = 0;
    let mut by_number: BTreeMap<String, u64> = BTreeMap::new();
    let mut exhausted = 0;
    for c in counted {
        let mut got_last = false;
        for n in &c.notices {
            let sent = n.sent_at;
            if !in_range(sent) {
                continue;
            }
            notices_sent += 1;
            *by_number.entry(n.number.to_string()).or_default() += 1;
            if n.number >= n.max_notices && c.wait.ended_at.is_none_or(|end| sent < end) {
                got_last = true;
            }
            match &n.promise {
                None => {}
                Some(PromiseState::Kept) => promises.kept += 1,
                Some(PromiseState::Superseded) => promises.superseded += 1,
                Some(PromiseState::Pending) => promises.pending += 1,
                Some(PromiseState::Broken(reason)) => {
                    promises.broken += 1;
                    *promises.broken_by_reason.entry(reason.clone()).or_default() += 1;
                }
            }
            if n.promise.is_some() {
                promises.made += 1;
            }
        }
        exhausted += u64::from(got_last);
    }
    let decided = promises.kept + promises.superseded + promises.broken;
    promises.kept_rate =
        (decided > 0).then(|| (promises.kept + promises.superseded) as f64 / decided as f64);
    let ended_within = (!request.candidates.is_empty()).then(|| {
        request
            .candidates
            .iter()
            .map(|(label, within)| {
                let ended = lasted.len().max(1) as f64;
                let inside = lasted
                    .iter()
                    .filter(|(wall, business)| business.unwrap_or(*wall) <= *within)
                    .count() as f64;
                let share = if lasted.is_empty() {
                    0.0
                } else {
                    inside / ended
                };
                (label.clone(), share)
            })
            .collect()
    });
    let open_at_end: Vec<&Wait> = counted
        .iter()
        .map(|c| c.wait)
        .filter(|w| w.ended_at.is_none_or(|end| end >= request.until))
        .collect();
    Group {
        key,
        waits_started: started.len() as u64,
        waits_ended: lasted.len() as u64,
        waits_open: open_at_end.len() as u64,
        longest_open: longest_open(&open_at_end, request.until.min(now)),
        waits_crossed: started
            .iter()
            .filter(|c| {
                c.wait
                    .first_due_at
                    .is_some_and(|due| due < c.wait.ended_at.unwrap_or(now))
            })
            .count() as u64,
        wait_seconds: spread(&walls),
        business_wait_seconds: spread(&business),
        notices_sent,
        notices_by_number: by_number,
        promises,
        exhausted,
        ended_within,
    }
}

/// The [`LONGEST_OPEN`] waits that began first, with how long they had
/// waited at `end`.
fn longest_open(open: &[&Wait], end: DateTime<Utc>) -> Vec<OpenWait> {
    let mut open = open.to_vec();
    open.sort_by(|a, b| (a.started_at, &a.ticket_id).cmp(&(b.started_at, &b.ticket_id)));
    open.iter()
        .take(LONGEST_OPEN)
        .map(|w| OpenWait {
            ticket_id: w.ticket_id.clone(),
            ticket_number: w.ticket_number.clone(),
            since: w.started_at,
            waited_seconds: end
                .signed_duration_since(w.started_at)
                .to_std()
                .map_or(0, |d| d.as_secs()),
        })
        .collect()
}

/// Nearest-rank percentiles of some durations, in whole seconds.
fn spread(durations: &[Duration]) -> Option<Spread> {
    let mut secs: Vec<u64> = durations.iter().map(Duration::as_secs).collect();
    secs.sort_unstable();
    let rank = |p: usize| {
        let i = (secs.len() * p).div_ceil(100).saturating_sub(1);
        secs.get(i).copied().unwrap_or(0)
    };
    (!secs.is_empty()).then(|| Spread {
        p50: rank(50),
        p90: rank(90),
        max: secs.last().copied().unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(hours: i64) -> DateTime<Utc> {
        DateTime::UNIX_EPOCH + chrono::Duration::hours(hours)
    }

    fn wait(id: &str, queue: &str, started: i64, ended: Option<i64>) -> Wait {
        Wait {
            ticket_id: id.into(),
            ticket_number: None,
            started_at: at(started),
            dry_run: false,
            queue: Some(queue.into()),
            priority: None,
            origin: None,
            language: None,
            policies: vec!["p".into()],
            first_due_at: Some(at(started + 1)),
            ended_at: ended.map(at),
            ended: None,
        }
    }

    fn sent(
        id: &str,
        started: i64,
        number: u32,
        at_hour: i64,
        promise: Option<PromiseState>,
    ) -> SentNotice {
        SentNotice {
            ticket_id: id.into(),
            waiting_since: at(started),
            number,
            max_notices: 2,
            sent_at: at(at_hour),
            promise,
        }
    }

    #[test]
    fn a_known_history_gives_every_number() {
        let waits = [
            // Answered before the first threshold.
            wait("A", "billing", 0, Some(0)),
            // Answered after notice 1, whose promise it superseded.
            wait("B", "billing", 0, Some(3)),
            // Got both notices and still waits: exhausted; notice 1's
            // promise kept by notice 2.
            wait("C", "support", 0, None),
        ];
        let notices = [
            sent("B", 0, 1, 1, Some(PromiseState::Superseded)),
            sent("C", 0, 1, 1, Some(PromiseState::Kept)),
            sent("C", 0, 2, 2, Some(PromiseState::Broken("late".into()))),
        ];
        let request = ReportRequest {
            since: at(0),
            until: at(10),
            by: GroupBy::Queue,
            candidates: vec![("1h".into(), Duration::from_secs(3600))],
        };
        let report = build(&request, &waits, &notices, at(10), |_| None);
        assert_eq!(report.groups.len(), 2);
        let billing = &report.groups[0];
        assert_eq!(billing.key.as_deref(), Some("billing"));
        assert_eq!(
            (
                billing.waits_started,
                billing.waits_ended,
                billing.waits_open
            ),
            (2, 2, 0)
        );
        assert_eq!(
            billing.waits_crossed, 1,
            "B waited past its first threshold"
        );
        assert_eq!(
            billing.wait_seconds,
            Some(Spread {
                p50: 0,
                p90: 3 * 3600,
                max: 3 * 3600
            })
        );
        assert_eq!(billing.business_wait_seconds, None, "no calendar");
        assert_eq!(billing.ended_within, Some(vec![("1h".to_owned(), 0.5)]));
        let t = &report.total;
        assert_eq!((t.waits_started, t.waits_open, t.exhausted), (3, 1, 1));
        assert_eq!(t.notices_sent, 3);
        assert_eq!(t.notices_by_number.get("2"), Some(&1));
        assert_eq!(
            (
                t.promises.made,
                t.promises.kept,
                t.promises.superseded,
                t.promises.broken
            ),
            (3, 1, 1, 1)
        );
        assert_eq!(t.promises.broken_by_reason.get("late"), Some(&1));
        assert_eq!(t.promises.kept_rate, Some(2.0 / 3.0));
        assert_eq!(
            t.longest_open,
            [OpenWait {
                ticket_id: "C".into(),
                ticket_number: None,
                since: at(0),
                waited_seconds: 10 * 3600,
            }],
            "C still waits at the end of the period"
        );
        assert!(billing.longest_open.is_empty());
    }

    #[test]
    fn percentiles_are_nearest_rank_and_empty_is_none() {
        let secs = |v: &[u64]| {
            v.iter()
                .map(|s| Duration::from_secs(*s))
                .collect::<Vec<_>>()
        };
        assert_eq!(spread(&[]), None);
        assert_eq!(
            spread(&secs(&[10, 20, 30, 40, 50, 60, 70, 80, 90, 100])),
            Some(Spread {
                p50: 50,
                p90: 90,
                max: 100
            })
        );
    }
}
