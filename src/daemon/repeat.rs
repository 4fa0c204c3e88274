//! A failure that repeats every poll is logged at ERROR once; while it
//! lasts, a WARN reminder every `daemon.repeat_log_every` says how often it
//! happened since; its end is logged at INFO.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// What to log for one more occurrence.
#[derive(Debug, PartialEq, Eq)]
pub enum Repeat {
    /// A new failure (or a different one): log it at ERROR.
    First,
    /// Still failing and a reminder is due: `count` failures since the
    /// last line, `since` the first one.
    Remind { count: u64, since: DateTime<Utc> },
    /// Still failing, reminded recently: debug only.
    Quiet,
}

#[derive(Debug, Default)]
pub struct RepeatLog {
    failing: Option<Failing>,
}

#[derive(Debug)]
struct Failing {
    message: String,
    since: DateTime<Utc>,
    logged_at: DateTime<Utc>,
    unlogged: u64,
    total: u64,
}

impl RepeatLog {
    pub fn failed(&mut self, message: &str, now: DateTime<Utc>, every: Duration) -> Repeat {
        match &mut self.failing {
            Some(f) if f.message == message => {
                f.unlogged += 1;
                f.total += 1;
                let every = chrono::Duration::from_std(every).unwrap_or(chrono::Duration::MAX);
                if now.signed_duration_since(f.logged_at) >= every {
                    let count = std::mem::take(&mut f.unlogged);
                    f.logged_at = now;
                    Repeat::Remind {
                        count,
                        since: f.since,
                    }
                } else {
                    Repeat::Quiet
                }
            }
            _ => {
                self.failing = Some(Failing {
                    message: message.to_owned(),
                    since: now,
                    logged_at: now,
                    unlogged: 0,
                    total: 1,
                });
                Repeat::First
            }
        }
    }

    /// The failure ended: how many times it happened, if it was going on.
    pub fn recovered(&mut self) -> Option<u64> {
        self.failing.take().map(|f| f.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_failure_is_first_then_quiet_then_reminded_with_its_count() {
        let t0 = Utc::now();
        let s = |n| t0 + chrono::Duration::seconds(n);
        let every = Duration::from_secs(60);
        let mut log = RepeatLog::default();
        assert_eq!(log.failed("down", s(0), every), Repeat::First);
        assert_eq!(log.failed("down", s(30), every), Repeat::Quiet);
        assert_eq!(
            log.failed("down", s(60), every),
            Repeat::Remind {
                count: 2,
                since: s(0)
            }
        );
        assert_eq!(log.failed("other", s(61), every), Repeat::First);
        assert_eq!(log.recovered(), Some(1));
        assert_eq!(log.recovered(), None);
        assert_eq!(log.failed("down", s(62), every), Repeat::First);
    }
}
