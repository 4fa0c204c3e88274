//! The numbers of `interim report` (DESIGN.md, "Promises, waits and the
//! report"): derived only from the wait history and the ledger's notices,
//! so both stores give the same report. One pure function over the rows;
//! reading them and printing the result are the command's.

mod csv;
mod read;
mod request;

pub use csv::csv;
pub use read::read;
pub use request::parse as parse_request;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Datelike, Utc};
use serde::Serialize;

use crate::calendar::Calendar;
use crate::ledger::{ReportWait, Wait};

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
    /// Keyed by the notice's number (a string in JSON), in order.
    pub notices_by_number: BTreeMap<u32, u64>,
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

/// What a group adds up to while the waits stream in.
#[derive(Default)]
struct Tally {
    started: u64,
    open: u64,
    crossed: u64,
    /// How long the ended waits lasted: wall clock, and business time
    /// where their first policy has a calendar.
    lasted: Vec<(Duration, Option<Duration>)>,
    notices_sent: u64,
    by_number: BTreeMap<u32, u64>,
    promises: Promises,
    exhausted: u64,
    /// The waits open at the end that began first, at most [`LONGEST_OPEN`].
    longest_open: Vec<OpenWait>,
}

/// Folds waits into the report one by one, so that a report over a
/// million waits holds their durations, not their rows.
pub struct ReportBuilder<'r, F> {
    request: &'r ReportRequest,
    now: DateTime<Utc>,
    calendar_of: F,
    groups: BTreeMap<Option<String>, Tally>,
    total: Tally,
}

impl<'r, 'c, F: Fn(&str) -> Option<&'c Calendar>> ReportBuilder<'r, F> {
    /// A report as of `now`; `calendar_of` gives a policy's calendar.
    pub fn new(request: &'r ReportRequest, now: DateTime<Utc>, calendar_of: F) -> Self {
        Self {
            request,
            now,
            calendar_of,
            groups: BTreeMap::new(),
            total: Tally::default(),
        }
    }

    /// Counts one wait (one that does not touch the period counts nothing).
    pub fn add(&mut self, w: &ReportWait) {
        let (request, wait) = (self.request, &w.wait);
        let touches =
            wait.started_at < request.until && wait.ended_at.is_none_or(|end| end >= request.since);
        if !touches {
            return;
        }
        let in_range = |at: DateTime<Utc>| request.since <= at && at < request.until;
        let lasted = wait.ended_at.filter(|end| in_range(*end)).map(|end| {
            let wall = end
                .signed_duration_since(wait.started_at)
                .to_std()
                .unwrap_or(Duration::ZERO);
            let business = wait
                .policies
                .first()
                .and_then(|p| (self.calendar_of)(p))
                .map(|c| c.business_time_between(wait.started_at, end));
            (wall, business)
        });
        let started = in_range(wait.started_at);
        let crossed = started
            && wait
                .first_due_at
                .is_some_and(|due| due < wait.ended_at.unwrap_or(self.now));
        let open_at_end = wait.ended_at.is_none_or(|end| end >= request.until);
        let end = request.until.min(self.now);
        let group = self.groups.entry(request.by.key(wait)).or_default();
        for tally in [group, &mut self.total] {
            tally.started += u64::from(started);
            tally.crossed += u64::from(crossed);
            tally.lasted.extend(lasted);
            tally.notices_sent += w.sent_numbers.len() as u64;
            for n in &w.sent_numbers {
                *tally.by_number.entry(*n).or_default() += 1;
            }
            // The counts come from the store's rows: saturating, never wrapping.
            let p = &mut tally.promises;
            let broken = w.broken.len() as u64;
            p.kept = p.kept.saturating_add(w.kept);
            p.superseded = p.superseded.saturating_add(w.superseded);
            p.pending = p.pending.saturating_add(w.pending);
            p.broken = p.broken.saturating_add(broken);
            p.made = [w.kept, w.superseded, w.pending, broken]
                .into_iter()
                .fold(p.made, u64::saturating_add);
            for reason in &w.broken {
                *p.broken_by_reason.entry(reason.clone()).or_default() += 1;
            }
            tally.exhausted += u64::from(w.got_last);
            if open_at_end {
                tally.open += 1;
                keep_longest(&mut tally.longest_open, wait, end);
            }
        }
    }

    pub fn finish(self) -> Report {
        let request = self.request;
        Report {
            since: request.since,
            until: request.until,
            by: request.by.as_str(),
            groups: self
                .groups
                .into_iter()
                .map(|(key, tally)| group(key, tally, request))
                .collect(),
            total: group(None, self.total, request),
        }
    }
}

/// The report over `waits` as of `now`: [`ReportBuilder`] over a slice.
pub fn build<'c>(
    request: &ReportRequest,
    waits: &[ReportWait],
    now: DateTime<Utc>,
    calendar_of: impl Fn(&str) -> Option<&'c Calendar>,
) -> Report {
    let mut builder = ReportBuilder::new(request, now, calendar_of);
    for w in waits {
        builder.add(w);
    }
    builder.finish()
}

fn group(key: Option<String>, mut tally: Tally, request: &ReportRequest) -> Group {
    let p = &mut tally.promises;
    let held = p.kept.saturating_add(p.superseded);
    let decided = held.saturating_add(p.broken);
    p.kept_rate = (decided > 0).then(|| held as f64 / decided as f64);
    let lasted = &tally.lasted;
    let ended_within = (!request.candidates.is_empty()).then(|| {
        request
            .candidates
            .iter()
            .map(|(label, within)| {
                let inside = lasted
                    .iter()
                    .filter(|(wall, business)| business.unwrap_or(*wall) <= *within)
                    .count();
                let share = match lasted.len() {
                    0 => 0.0,
                    ended => inside as f64 / ended as f64,
                };
                (label.clone(), share)
            })
            .collect()
    });
    let walls: Vec<Duration> = lasted.iter().map(|(w, _)| *w).collect();
    let business: Vec<Duration> = lasted.iter().filter_map(|(_, b)| *b).collect();
    Group {
        key,
        waits_started: tally.started,
        waits_ended: lasted.len() as u64,
        waits_open: tally.open,
        longest_open: tally.longest_open,
        waits_crossed: tally.crossed,
        wait_seconds: spread(&walls),
        business_wait_seconds: spread(&business),
        notices_sent: tally.notices_sent,
        notices_by_number: tally.by_number,
        promises: tally.promises,
        exhausted: tally.exhausted,
        ended_within,
    }
}

/// Keeps `wait` among the [`LONGEST_OPEN`] open waits that began first,
/// with how long it had waited at `end`.
fn keep_longest(longest: &mut Vec<OpenWait>, wait: &Wait, end: DateTime<Utc>) {
    let this = (wait.started_at, wait.ticket_id.as_str());
    let at = longest
        .iter()
        .position(|o| this < (o.since, o.ticket_id.as_str()))
        .unwrap_or(longest.len());
    if at >= LONGEST_OPEN {
        return;
    }
    longest.insert(
        at,
        OpenWait {
            ticket_id: wait.ticket_id.clone(),
            ticket_number: wait.ticket_number.clone(),
            since: wait.started_at,
            waited_seconds: end
                .signed_duration_since(wait.started_at)
                .to_std()
                .map_or(0, |d| d.as_secs()),
        },
    );
    longest.truncate(LONGEST_OPEN);
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

    /// A wait of `queue` with the numbers of its sent notices and
    /// their promises.
    fn wait(
        id: &str,
        queue: &str,
        (started, ended): (i64, Option<i64>),
        sent_numbers: &[u32],
        (kept, superseded, broken): (u64, u64, &[&str]),
        got_last: bool,
    ) -> ReportWait {
        ReportWait {
            wait: Wait {
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
            },
            sent_numbers: sent_numbers.to_vec(),
            kept,
            superseded,
            pending: 0,
            broken: broken.iter().map(|r| (*r).to_owned()).collect(),
            got_last,
        }
    }

    #[test]
    fn a_known_history_gives_every_number() {
        let waits = [
            // Answered before the first threshold.
            wait("A", "billing", (0, Some(0)), &[], (0, 0, &[]), false),
            // Answered after notice 1, whose promise it superseded.
            wait("B", "billing", (0, Some(3)), &[1], (0, 1, &[]), false),
            // Got both notices and still waits: exhausted; notice 1's
            // promise kept by notice 2, whose own promise was late.
            wait("C", "support", (0, None), &[1, 2], (1, 0, &["late"]), true),
        ];
        let request = ReportRequest {
            since: at(0),
            until: at(10),
            by: GroupBy::Queue,
            candidates: vec![("1h".into(), Duration::from_secs(3600))],
        };
        let report = build(&request, &waits, at(10), |_| None);
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
        assert_eq!(t.notices_by_number.get(&2), Some(&1));
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
