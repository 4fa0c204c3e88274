//! The one place that reads the wall clock. The daemon's loops ask a
//! [`Clock`] for `now` and pass it down; planning, claims, pre-send checks
//! and retry decisions take it as an argument. Tests inject a
//! [`ManualClock`] and drive days of waits in a second.
//!
//! Every instant is kept to the millisecond, the precision of the ledger:
//! a time computed in nanoseconds would never compare equal to the one
//! stored, and every poll would rewrite every pending notice.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

pub trait Clock: Send + Sync {
    /// The current instant, to the millisecond.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        to_millis(Utc::now())
    }
}

/// A clock that moves only when told to (tests, simulations).
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(Mutex::new(to_millis(start))),
        }
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = to_millis(at);
    }

    /// Moves the clock forward (a negative amount steps it back).
    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(next) = now.checked_add_signed(by) {
            *now = to_millis(next);
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The system clock, shared.
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// `t` cut to the millisecond (the ledger's precision).
pub fn to_millis(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

/// The years an instant from outside (a source row, a header) may lie in.
/// Inside them every sum with a configured duration (at most
/// [`MAX_DURATION_YEARS`]) stays far inside chrono's range, so planning
/// cannot overflow; outside them the value is a unit mistake (milliseconds
/// read as seconds) or garbage, and its row is skipped with the reason.
pub const YEARS: std::ops::RangeInclusive<i32> = 1900..=9999;

/// The longest duration a config key may hold.
pub const MAX_DURATION_YEARS: u64 = 100;

/// `t` if it lies in [`YEARS`], else why not.
pub fn plausible(t: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    use chrono::Datelike;
    if YEARS.contains(&t.year()) {
        Ok(t)
    } else {
        Err(format!(
            "{} lies outside the years {}-{}",
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            YEARS.start(),
            YEARS.end()
        ))
    }
}

/// The years calendar, cron and local-time arithmetic accept: every
/// plausible instant plus every configured duration lies inside, and
/// chrono's ends (where local time overflows) lie far outside. Outside,
/// those functions answer "no such instant" instead of panicking.
pub const COMPUTABLE_YEARS: std::ops::RangeInclusive<i32> = 1000..=20_000;

/// Whether calendar, cron and local-time arithmetic may work on `t`.
pub fn computable(t: DateTime<Utc>) -> bool {
    COMPUTABLE_YEARS.contains(&chrono::Datelike::year(&t))
}

/// A duration for people: humantime's units with a space before the long
/// ones ("2 days", "1 year 2 months 3 days 4h 5m"), never "2days".
pub fn human_duration(duration: std::time::Duration) -> String {
    humantime::format_duration(duration)
        .to_string()
        .split(' ')
        .map(|part| match part.find(|c: char| c.is_ascii_alphabetic()) {
            Some(i) if part.len() - i > 2 => format!("{} {}", &part[..i], &part[i..]),
            _ => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// An instant as every output of ours writes it: RFC 3339 in UTC, whole
/// seconds (`2026-12-03T14:00:00Z`).
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod human_duration_tests {
    use super::human_duration;
    use std::time::Duration;

    #[test]
    fn long_units_are_spaced_and_short_ones_not() {
        assert_eq!(human_duration(Duration::from_secs(2 * 86_400)), "2 days");
        assert_eq!(
            human_duration(Duration::from_secs(86_400 + 5_400)),
            "1 day 1h 30m"
        );
        assert_eq!(human_duration(Duration::from_secs(90)), "1m 30s");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1s 500ms");
    }
}
