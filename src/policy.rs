//! Policies: which tickets a rule covers and how its notices are spaced.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::schedule::SendWindow;
use crate::ticket::Ticket;

#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub matcher: Matcher,
    pub after: Duration,
    pub repeat_every: Option<Duration>,
    pub max_notices: u32,
    pub window: SendWindow,
    pub channel: String,
    pub template: String,
    pub continue_matching: bool,
}

/// Customer-local copies of policies (see [`Policy::for_ticket`]), each
/// made once per zone: a pass over many tickets in a few zones copies a
/// policy a few times, not once per ticket.
#[derive(Debug, Default)]
pub struct Localised {
    copies: HashMap<Tz, HashMap<String, Arc<Policy>>>,
}

/// A policy as it applies to one ticket: the configured one, or a copy
/// read in the ticket's zone.
#[derive(Debug)]
pub enum Applied<'p> {
    Configured(&'p Policy),
    Local(Arc<Policy>),
}

impl std::ops::Deref for Applied<'_> {
    type Target = Policy;
    fn deref(&self) -> &Policy {
        match self {
            Applied::Configured(p) => p,
            Applied::Local(p) => p,
        }
    }
}

impl Localised {
    /// [`Policy::for_ticket`], with the copy kept for the next ticket in
    /// that zone.
    pub fn for_ticket<'p>(&mut self, policy: &'p Policy, ticket: &Ticket) -> Applied<'p> {
        let Some(zone) = policy.window.moves_to(ticket.zone()) else {
            return Applied::Configured(policy);
        };
        let copies = self.copies.entry(zone).or_default();
        if let Some(copy) = copies.get(policy.name.as_str()) {
            return Applied::Local(copy.clone());
        }
        let copy = Arc::new(policy.for_ticket(ticket).into_owned());
        copies.insert(policy.name.clone(), copy.clone());
        Applied::Local(copy)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchField {
    State,
    Priority,
    Queue,
    Origin,
    Language,
    Extra(String),
}

/// All rules must hold; each rule is any-of its values (case-insensitive).
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    pub rules: Vec<(MatchField, Vec<String>)>,
}

impl Matcher {
    pub fn matches(&self, ticket: &Ticket) -> bool {
        self.rules.iter().all(|(field, values)| {
            let actual = match field {
                MatchField::State => Some(ticket.state.clone()),
                MatchField::Priority => ticket.priority.clone(),
                MatchField::Queue => ticket.queue.clone(),
                MatchField::Origin => ticket.origin.clone(),
                MatchField::Language => ticket.language.clone(),
                MatchField::Extra(name) => ticket.extra.get(name).and_then(|v| match v {
                    serde_json::Value::Null => None,
                    serde_json::Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                }),
            };
            actual.is_some_and(|a| values.iter().any(|v| v.eq_ignore_ascii_case(a.trim())))
        })
    }
}

impl Policy {
    /// Why a notice goes out when it does: how its wait is counted, which
    /// window or slot moved it, and the send time in the window's zone.
    pub fn explain_send(
        &self,
        ticket: &Ticket,
        daemon_zone: Tz,
        due: DateTime<Utc>,
        send: DateTime<Utc>,
    ) -> String {
        let policy = self;
        let mut why = Vec::new();
        if let Some(c) = &policy.window.calendar {
            why.push(format!("working time of calendar {}", c.name));
        }
        if send > due {
            match (&policy.window.calendar, &policy.window.send_at) {
                (Some(c), Some(s)) => why.push(format!(
                    "next \"{}\" slot inside calendar {}",
                    s.expression, c.name
                )),
                (Some(c), None) => why.push(format!("next opening of calendar {}", c.name)),
                (None, Some(s)) => why.push(format!("next \"{}\" slot", s.expression)),
                (None, None) => {}
            }
        } else {
            why.push("sent when due".into());
        }
        if policy.window.customer_local.is_some()
            && let Some(window) = policy.window_text(ticket, send)
        {
            return format!("{}; {window}", why.join(", "));
        }
        let zone = policy.window.zone().unwrap_or(daemon_zone);
        format!(
            "{}; {}",
            why.join(", "),
            send.with_timezone(&zone).format("%a %Y-%m-%d %H:%M %Z")
        )
    }

    /// The send instant in the zone the window is read in, and whose zone
    /// that is; `self` is the policy [`Policy::for_ticket`] gave for `ticket`.
    pub fn window_text(&self, ticket: &Ticket, send: DateTime<Utc>) -> Option<String> {
        let policy = self;
        let zone = policy.window.zone()?;
        let home = if policy.window.calendar.is_some() {
            "calendar's zone"
        } else {
            "daemon.timezone"
        };
        let whose = match (policy.window.customer_local, ticket.zone()) {
            (Some(_), Some(_)) => "customer's zone".to_owned(),
            (Some(_), None) => format!("{home}, the ticket has no valid timezone"),
            (None, _) => home.to_owned(),
        };
        Some(format!(
            "{} in {zone}, {whose}",
            send.with_timezone(&zone).format("%a %Y-%m-%d %H:%M")
        ))
    }

    /// The policy as it applies to `ticket`: with `window_zone =
    /// "customer"`, its calendar and `send_at` read in the ticket's zone
    /// (the configured one when the ticket has no valid zone). Planner,
    /// `plan` and the send-time check all go through here, so they agree.
    pub fn for_ticket(&self, ticket: &Ticket) -> Cow<'_, Policy> {
        match self.window.for_zone(ticket.zone()) {
            Cow::Borrowed(_) => Cow::Borrowed(self),
            Cow::Owned(window) => Cow::Owned(Policy {
                window,
                ..self.clone()
            }),
        }
    }

    /// Adds wait time: business time in the policy's calendar, else wall-clock.
    /// The result is cut to the millisecond, the ledger's precision.
    pub fn add_wait(&self, from: DateTime<Utc>, amount: Duration) -> Option<DateTime<Utc>> {
        let at = match &self.window.calendar {
            Some(calendar) => calendar.add_business_time(from, amount),
            None => chrono::Duration::from_std(amount)
                .ok()
                .and_then(|d| from.checked_add_signed(d)),
        };
        at.map(crate::clock::to_millis)
    }

    /// When notice `number` (1-based) is due, given when the series' last
    /// real send started (its successful attempt; dead, suppressed and
    /// cancelled notices do not count):
    /// `max(waiting_since + after + (n-1)·repeat, last_sent + repeat)`.
    pub fn due_at(
        &self,
        waiting_since: DateTime<Utc>,
        number: u32,
        previous: Option<DateTime<Utc>>,
    ) -> Option<DateTime<Utc>> {
        let first = self.add_wait(waiting_since, self.after)?;
        if number <= 1 {
            return Some(first);
        }
        let repeat = self.repeat_every?;
        let mut by_schedule = first;
        for _ in 1..number {
            by_schedule = self.add_wait(by_schedule, repeat)?;
        }
        match previous {
            Some(prev) => Some(by_schedule.max(self.add_wait(prev, repeat)?)),
            None => Some(by_schedule),
        }
    }

    /// The promise a notice makes: when notice `number + 1` will go out if
    /// notice `number` is sent at `sent` (send window applied), or None
    /// when `number` is the last (`max` is the smaller of the notice's and
    /// the policy's limit).
    pub fn next_notice_at(
        &self,
        waiting_since: DateTime<Utc>,
        number: u32,
        max: u32,
        sent: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if number >= max.min(self.max_notices) {
            return None;
        }
        self.due_at(waiting_since, number + 1, Some(sent))
            .and_then(|due| self.window.first_send_instant(due))
    }

    /// The policies that apply to a ticket: in order, the first match, and
    /// after it every further match while `continue = true` allows.
    pub fn applicable<'a>(policies: &'a [Policy], ticket: &Ticket) -> Vec<&'a Policy> {
        let mut out = Vec::new();
        for policy in policies {
            if policy.matcher.matches(ticket) {
                out.push(policy);
                if !policy.continue_matching {
                    break;
                }
            }
        }
        out
    }

    /// Why the pre-send re-read `fresh` of a ticket stops a notice of
    /// `policy` (any applicable one when None) on the wait that began at
    /// `episode`; None when it still goes. The daemon decides by it, and
    /// `sources test` shows it.
    pub fn recheck_verdict(
        policies: &[Policy],
        policy: Option<&str>,
        episode: DateTime<Utc>,
        fresh: Option<&Ticket>,
    ) -> Option<&'static str> {
        let Some(t) = fresh else {
            return Some("the pre-send re-check found the ticket no longer waiting");
        };
        if crate::notice::truncate_millis(t.waiting_since)
            != crate::notice::truncate_millis(episode)
        {
            return Some("the pre-send re-check found the wait restarted");
        }
        let applies = Policy::applicable(policies, t);
        let matches = match policy {
            Some(name) => applies.iter().any(|p| p.name == name),
            None => !applies.is_empty(),
        };
        (!matches).then_some("the pre-send re-check found the ticket no longer matching the policy")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn ticket(state: &str, priority: Option<&str>) -> Ticket {
        serde_json::from_value(serde_json::json!({
            "id": "1",
            "state": state,
            "priority": priority,
            "waiting_since": "2026-12-01T08:00:00Z",
            "extra": {"product": "Router"}
        }))
        .unwrap_or_else(|e| panic!("test ticket: {e}"))
    }

    fn policy(name: &str, rules: Vec<(MatchField, Vec<&str>)>, continue_matching: bool) -> Policy {
        Policy {
            name: name.into(),
            matcher: Matcher {
                rules: rules
                    .into_iter()
                    .map(|(f, v)| (f, v.into_iter().map(String::from).collect()))
                    .collect(),
            },
            after: Duration::from_secs(8 * 3600),
            repeat_every: Some(Duration::from_secs(2 * 86_400)),
            max_notices: 3,
            window: SendWindow::default(),
            channel: "mail".into(),
            template: "interim".into(),
            continue_matching,
        }
    }

    #[test]
    fn a_customer_local_policy_is_copied_once_per_zone() {
        let mut p = policy("p", vec![], false);
        p.window = SendWindow {
            calendar: None,
            send_at: crate::schedule::SendAt::parse("0 0 9 * * Mon-Fri", chrono_tz::UTC).ok(),
            customer_local: Some(chrono_tz::UTC),
        };
        let in_zone = |zone: Option<&str>| {
            let mut t = ticket("open", None);
            t.timezone = zone.map(String::from);
            t
        };
        let mut localised = Localised::default();
        let (a, b) = (in_zone(Some("Asia/Tokyo")), in_zone(Some("Asia/Tokyo")));
        let (first, second) = (localised.for_ticket(&p, &a), localised.for_ticket(&p, &b));
        match (&first, &second) {
            (Applied::Local(x), Applied::Local(y)) => assert!(Arc::ptr_eq(x, y)),
            other => panic!("two copies or none: {other:?}"),
        }
        assert_eq!(first.window.zone(), Some(chrono_tz::Asia::Tokyo));
        for home in [None, Some("UTC"), Some("Mars/Olympus")] {
            assert!(matches!(
                localised.for_ticket(&p, &in_zone(home)),
                Applied::Configured(_)
            ));
        }
    }

    #[test]
    fn matching_is_any_of_per_field_all_fields_and_case_insensitive() {
        let p = policy(
            "p",
            vec![
                (MatchField::State, vec!["Open", "in_progress"]),
                (MatchField::Extra("product".into()), vec!["router"]),
            ],
            false,
        );
        assert!(p.matcher.matches(&ticket("open", None)));
        assert!(!p.matcher.matches(&ticket("closed", None)));
        let q = policy("q", vec![(MatchField::Priority, vec!["high"])], false);
        assert!(
            !q.matcher.matches(&ticket("open", None)),
            "a missing column never matches"
        );
    }

    #[test]
    fn the_first_match_wins_unless_it_continues() {
        let all = vec![
            policy(
                "escalate",
                vec![(MatchField::Priority, vec!["urgent"])],
                true,
            ),
            policy(
                "urgent",
                vec![(MatchField::Priority, vec!["urgent", "high"])],
                false,
            ),
            policy("standard", vec![], false),
        ];
        let names = |t: &Ticket| {
            Policy::applicable(&all, t)
                .iter()
                .map(|p| p.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&ticket("open", Some("urgent"))),
            ["escalate", "urgent"]
        );
        assert_eq!(names(&ticket("open", Some("high"))), ["urgent"]);
        assert_eq!(names(&ticket("open", Some("low"))), ["standard"]);
    }

    #[test]
    fn notice_n_is_due_after_the_threshold_and_never_closer_than_repeat_to_the_last() {
        let p = policy("p", vec![], false);
        let ws = Utc
            .with_ymd_and_hms(2026, 12, 1, 8, 0, 0)
            .single()
            .unwrap_or_default();
        assert_eq!(p.due_at(ws, 1, None), Some(ws + chrono::Duration::hours(8)));
        // On schedule: waiting_since + after + repeat.
        let sent1 = ws + chrono::Duration::hours(8);
        assert_eq!(
            p.due_at(ws, 2, Some(sent1)),
            Some(ws + chrono::Duration::hours(8 + 48))
        );
        // The first went out late (downtime): the second waits repeat_every after it.
        let late = ws + chrono::Duration::hours(50);
        assert_eq!(
            p.due_at(ws, 2, Some(late)),
            Some(late + chrono::Duration::hours(48))
        );
    }
}
