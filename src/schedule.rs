//! When a due notice may actually go out: the policy's calendar (working
//! hours, holidays) and its `send_at` cron slots.
//!
//! Cron slots are evaluated on local wall-clock time, not by the cron crate's
//! own time-zone iteration: in Europe/Berlin that skips a 02:30 slot on the
//! spring-forward day and fires it twice on the fall-back day. Here a slot in
//! the skipped hour fires at the first instant after the gap, and a slot in
//! the repeated hour fires once (at its earlier occurrence).

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::calendar::{Calendar, local_to_utc};

/// How many cron slots / calendar openings we try before giving up on
/// finding one that satisfies both.
const MAX_STEPS: usize = 10_000;

#[derive(Debug, Clone)]
pub struct SendAt {
    pub expression: String,
    schedule: cron::Schedule,
    pub timezone: Tz,
}

/// The crontab line with a seconds field and crontab's numeric weekdays
/// (0 and 7 = Sunday, 1 = Monday) as names, which the cron crate reads the
/// same way; a generic example when they cannot be translated.
fn six_field_hint(expression: &str) -> String {
    const NAMES: [&str; 8] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let fields: Vec<&str> = expression.split_whitespace().collect();
    let name = |n: &str| n.parse::<usize>().ok().and_then(|i| NAMES.get(i).copied());
    let weekday = fields[4]
        .split(',')
        .map(|part| match part.split_once('-') {
            // Sun = 1 … Sat = 7 in the cron crate: a range ending at
            // crontab's 7 would wrap.
            Some((a, b)) => match (a.parse::<usize>(), b.parse::<usize>()) {
                (Ok(x), Ok(y)) if x <= y && y < 7 => Some(format!("{}-{}", name(a)?, name(b)?)),
                _ if !part.chars().any(|c| c.is_ascii_digit()) => Some(part.to_owned()),
                _ => None,
            },
            None if part.chars().all(|c| c.is_ascii_digit()) => name(part).map(str::to_owned),
            None if part.chars().any(|c| c.is_ascii_digit()) => None,
            None => Some(part.to_owned()),
        })
        .collect::<Option<Vec<String>>>();
    match weekday {
        Some(days) => format!("0 {} {}", fields[..4].join(" "), days.join(",")),
        None => "0 0 9 * * Mon-Fri".to_owned(),
    }
}

/// The cron crate says "Hours must be less than 23" for 25: its bound is
/// inclusive, so say "at most".
fn at_most(reason: &str) -> String {
    reason.replace(" must be less than ", " must be at most ")
}

impl SendAt {
    pub fn parse(expression: &str, timezone: Tz) -> Result<Self, String> {
        let fields = expression.split_whitespace().count();
        if !expression.trim_start().starts_with('@') && fields == 5 {
            return Err(format!(
                "invalid cron expression \"{expression}\": 5-field crontab is not supported; \
                 add a seconds field first and write weekdays as names, e.g. \"{}\"",
                six_field_hint(expression)
            ));
        }
        let schedule = cron::Schedule::from_str(expression).map_err(|e| {
            // The cron crate repeats the expression with a caret line; its
            // last line is the reason.
            let text = e.to_string();
            let reason = text.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("").to_owned();
            if reason.is_empty() {
                format!("invalid cron expression \"{expression}\": expected 6 or 7 fields (sec min hour day-of-month month day-of-week [year])")
            } else {
                format!("invalid cron expression \"{expression}\": {}", at_most(&reason))
            }
        })?;
        Ok(Self {
            expression: expression.to_owned(),
            schedule,
            timezone,
        })
    }

    /// True when the day-of-week field uses numbers: the cron crate counts
    /// 1 = Sunday, unlike crontab's 1 = Monday, a classic trap.
    pub fn has_numeric_weekday(&self) -> bool {
        self.expression
            .split_whitespace()
            .nth(5)
            .is_some_and(|field| field.chars().any(|c| c.is_ascii_digit()))
    }

    /// The first slot instant at or after `at`.
    pub fn next_slot(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if !crate::clock::computable(at) {
            return None;
        }
        let local = at.with_timezone(&self.timezone).naive_local();
        // Evaluate cron on naive wall-clock time (as if it were UTC), starting
        // one second before `at` so a slot exactly at `at` counts.
        let start = local
            .checked_sub_signed(chrono::Duration::seconds(1))?
            .and_utc();
        for slot in self.schedule.after(&start).take(MAX_STEPS) {
            let instant = local_to_utc(self.timezone, slot.naive_utc());
            // A slot in the repeated autumn hour maps to its earlier
            // occurrence; when that lies before `at`, the slot has fired
            // today and the next one is tomorrow's, never the repeat.
            if instant >= at {
                return Some(instant);
            }
        }
        None
    }
}

/// A policy's send window: calendar and/or cron slots. Without either, a
/// due notice goes out at once.
#[derive(Debug, Clone, Default)]
pub struct SendWindow {
    pub calendar: Option<Arc<Calendar>>,
    pub send_at: Option<SendAt>,
    /// With `window_zone = "customer"`: the configured zone (the
    /// calendar's, else `daemon.timezone`), used when a ticket has no
    /// valid zone of its own. `None` reads the window in that zone always.
    pub customer_local: Option<Tz>,
}

impl SendWindow {
    /// The zone the calendar and `send_at` are read in, when there is a
    /// window at all.
    pub fn zone(&self) -> Option<Tz> {
        self.calendar
            .as_ref()
            .map(|c| c.timezone)
            .or(self.send_at.as_ref().map(|s| s.timezone))
    }

    /// The zone a customer-local window must be read in for a ticket whose
    /// zone is `zone`, when that is not the one it is read in now.
    pub fn moves_to(&self, zone: Option<Tz>) -> Option<Tz> {
        let zone = zone.unwrap_or(self.customer_local?);
        self.zone().filter(|current| *current != zone).map(|_| zone)
    }

    /// The window for a ticket whose zone is `zone`: for a customer-local
    /// window, a copy read in that zone (in the configured one when
    /// `None`); otherwise this window itself.
    pub fn for_zone(&self, zone: Option<Tz>) -> Cow<'_, SendWindow> {
        let Some(zone) = self.moves_to(zone) else {
            return Cow::Borrowed(self);
        };
        let mut local = self.clone();
        if let Some(calendar) = &mut local.calendar {
            Arc::make_mut(calendar).timezone = zone;
        }
        if let Some(send_at) = &mut local.send_at {
            send_at.timezone = zone;
        }
        Cow::Owned(local)
    }

    /// The first instant at or after `due` when a notice may be sent, or
    /// `None` when the window never opens (a configuration mistake that
    /// `check-config` reports).
    pub fn first_send_instant(&self, due: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut at = due;
        for _ in 0..MAX_STEPS {
            if let Some(calendar) = &self.calendar {
                at = calendar.next_open(at)?;
            }
            let Some(send_at) = &self.send_at else {
                return Some(at);
            };
            let slot = send_at.next_slot(at)?;
            match &self.calendar {
                Some(calendar) if !calendar.is_open(slot) => {
                    at = slot.checked_add_signed(chrono::Duration::seconds(1))?;
                }
                _ => return Some(slot),
            }
        }
        None
    }

    /// Whether a notice planned for the send instant `planned` may go out
    /// at `now`: inside the calendar's working hours, and with `send_at` no
    /// later than [`SLOT_GRACE`] after its slot. A notice held longer (an
    /// outage, a failed attempt) waits for the next slot: never a 9:00
    /// notice at 23:30.
    pub fn still_sendable(&self, planned: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        if now < planned {
            return false;
        }
        if let Some(calendar) = &self.calendar
            && !calendar.is_open(now)
        {
            return false;
        }
        match &self.send_at {
            None => true,
            Some(_) => planned
                .checked_add_signed(SLOT_GRACE)
                .is_none_or(|end| now < end),
        }
    }

    /// The send instant of a notice due at `due`, evaluated at `now`: the
    /// first window instant at or after `due`, unless that has passed and
    /// may no longer be used (see [`still_sendable`](Self::still_sendable));
    /// then the first window instant at or after `now`. Once a held notice
    /// was moved so, `stored` (its planned instant) is kept while it is
    /// usable, so the plan does not change on every poll.
    pub fn place(
        &self,
        due: DateTime<Utc>,
        now: DateTime<Utc>,
        stored: Option<DateTime<Utc>>,
    ) -> Option<DateTime<Utc>> {
        let usable = |at: DateTime<Utc>| at >= now || self.still_sendable(at, now);
        let first = self.first_send_instant(due)?;
        if usable(first) {
            return Some(first);
        }
        match stored {
            Some(s) if s > first && usable(s) && self.first_send_instant(s) == Some(s) => Some(s),
            _ => self.first_send_instant(now),
        }
    }
}

/// How long after its `send_at` slot a held notice may still go out (a
/// backlog draining, a quick retry); after that it waits for the next slot.
pub const SLOT_GRACE: chrono::Duration = chrono::Duration::minutes(10);

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn a_customer_local_window_is_read_in_the_given_zone_else_the_configured_one() {
        let send_at = SendAt::parse("0 0 9 * * Mon-Fri", chrono_tz::Pacific::Auckland).ok();
        let window = SendWindow {
            calendar: None,
            send_at,
            customer_local: Some(chrono_tz::Pacific::Auckland),
        };
        let la = window.for_zone(Some(chrono_tz::America::Los_Angeles));
        assert_eq!(la.zone(), Some(chrono_tz::America::Los_Angeles));
        // Mon 2026-12-07 09:00 in Los Angeles (PST), not Auckland's morning.
        assert_eq!(
            la.first_send_instant(utc("2026-12-07T00:00:00Z")),
            Some(utc("2026-12-07T17:00:00Z"))
        );
        let home = la.for_zone(None);
        assert_eq!(home.zone(), Some(chrono_tz::Pacific::Auckland));
        assert!(matches!(window.for_zone(None), Cow::Borrowed(_)));
        let fixed = SendWindow {
            customer_local: None,
            ..window.clone()
        };
        assert_eq!(
            fixed.for_zone(Some(chrono_tz::America::Los_Angeles)).zone(),
            Some(chrono_tz::Pacific::Auckland)
        );
    }

    #[test]
    fn five_field_crontab_gets_a_helpful_error() {
        let err = SendAt::parse("0 9 * * Mon-Fri", chrono_tz::UTC)
            .err()
            .unwrap_or_default();
        assert!(err.contains("seconds field"), "{err}");
        let err = SendAt::parse("0 0 25 * * *", chrono_tz::UTC)
            .err()
            .unwrap_or_default();
        assert!(err.contains("0 0 25 * * *"), "{err}");
    }

    #[test]
    fn the_five_field_hint_names_crontab_weekdays() {
        assert_eq!(six_field_hint("0 9 * * 1-5"), "0 0 9 * * Mon-Fri");
        assert_eq!(six_field_hint("30 8 * * 0,6"), "0 30 8 * * Sun,Sat");
        assert_eq!(six_field_hint("0 9 * * Mon-Fri"), "0 0 9 * * Mon-Fri");
        assert_eq!(six_field_hint("0 9 * * *"), "0 0 9 * * *");
        assert_eq!(six_field_hint("0 9 * * 5-7"), "0 0 9 * * Mon-Fri");
        for hint in ["0 9 * * 1-5", "30 8 * * 0,6", "0 9 * * *"].map(six_field_hint) {
            assert!(SendAt::parse(&hint, chrono_tz::UTC).is_ok(), "{hint}");
        }
    }

    #[test]
    fn a_slot_in_the_spring_gap_fires_once_right_after_it() {
        let send_at = SendAt::parse("0 30 2 * * *", chrono_tz::Europe::Berlin).ok();
        let send_at = send_at.as_ref();
        let from = utc("2026-03-28T12:00:00Z");
        let first = send_at.and_then(|s| s.next_slot(from));
        assert_eq!(first, Some(utc("2026-03-29T01:00:00Z"))); // 03:00 CEST
        let second = send_at.and_then(|s| s.next_slot(utc("2026-03-29T01:00:01Z")));
        assert_eq!(second, Some(utc("2026-03-30T00:30:00Z"))); // 02:30 CEST next day
    }

    #[test]
    fn a_slot_in_the_repeated_autumn_hour_fires_once() {
        let send_at = SendAt::parse("0 30 2 * * *", chrono_tz::Europe::Berlin).ok();
        let send_at = send_at.as_ref();
        let first = send_at.and_then(|s| s.next_slot(utc("2026-10-24T12:00:00Z")));
        assert_eq!(first, Some(utc("2026-10-25T00:30:00Z"))); // 02:30 CEST
        let next = send_at.and_then(|s| s.next_slot(utc("2026-10-25T00:30:01Z")));
        assert_eq!(next, Some(utc("2026-10-26T01:30:00Z"))); // 02:30 CET the next day, not the repeat
    }
}
