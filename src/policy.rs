//! Policies: which tickets a rule covers and how its notices are spaced.

use std::time::Duration;

use chrono::{DateTime, Utc};

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
    /// Adds wait time: business time in the policy's calendar, else wall-clock.
    pub fn add_wait(&self, from: DateTime<Utc>, amount: Duration) -> Option<DateTime<Utc>> {
        match &self.window.calendar {
            Some(calendar) => calendar.add_business_time(from, amount),
            None => chrono::Duration::from_std(amount)
                .ok()
                .and_then(|d| from.checked_add_signed(d)),
        }
    }

    /// When notice `number` (1-based) is due, given the planning reference
    /// instant of the previous notice (when its successful attempt started).
    /// `max(waiting_since + after + (n-1)·repeat, previous + repeat)`.
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
}
