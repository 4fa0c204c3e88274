//! Retry timing: exponential backoff with jitter, bounded by the channel's
//! `retry_max`, `retry_for` and `max_attempts`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;

use crate::config::RetryPolicy;

/// What to do after a failed attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum RetryDecision {
    RetryAt(DateTime<Utc>),
    GiveUp(String),
}

/// `attempts` counts the attempts made so far, including the failed one.
/// The delay doubles from `retry_initial` up to `retry_max`, with ±20 %
/// jitter so a burst of failures does not retry in lockstep; a receiver's
/// `Retry-After` is honoured up to `retry_max`.
pub fn decide(
    policy: &RetryPolicy,
    attempts: u32,
    first_attempt: DateTime<Utc>,
    now: DateTime<Utc>,
    retry_after: Option<Duration>,
) -> RetryDecision {
    if let Some(max) = policy.max_attempts
        && attempts >= max
    {
        return RetryDecision::GiveUp(format!(
            "gave up after {attempts} attempts (max_attempts = {max})"
        ));
    }
    let exponent = attempts.saturating_sub(1).min(30);
    let base = policy
        .initial
        .saturating_mul(1u32 << exponent)
        .min(policy.max);
    let jitter = rand::rng().random_range(0.8..=1.2);
    let mut delay = base.mul_f64(jitter).min(policy.max);
    if let Some(wanted) = retry_after {
        delay = delay.max(wanted.min(policy.max));
    }
    let after = |from: DateTime<Utc>, d: Duration| {
        chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| from.checked_add_signed(d))
    };
    // An instant beyond chrono's range is "never": give up rather than panic.
    let (Some(next), Some(deadline)) = (after(now, delay), after(first_attempt, policy.retry_for))
    else {
        return RetryDecision::GiveUp(format!(
            "gave up after {attempts} attempts: the next attempt lies beyond any date"
        ));
    };
    if next > deadline {
        return RetryDecision::GiveUp(format!(
            "gave up after {attempts} attempts over {} (retry_for = {})",
            crate::clock::human_duration(Duration::from_secs(
                (now - first_attempt).num_seconds().max(0) as u64
            )),
            crate::clock::human_duration(policy.retry_for)
        ));
    }
    RetryDecision::RetryAt(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_secs(30),
            max: Duration::from_secs(3600),
            retry_for: Duration::from_secs(2 * 86_400),
            max_attempts: None,
        }
    }

    #[test]
    fn delays_double_within_jitter_and_stop_at_retry_max() {
        let t0 = Utc::now();
        for (attempts, base) in [(1u32, 30.0), (2, 60.0), (3, 120.0), (10, 3600.0)] {
            let RetryDecision::RetryAt(at) = decide(&policy(), attempts, t0, t0, None) else {
                panic!("expected a retry");
            };
            let secs = (at - t0).num_milliseconds() as f64 / 1000.0;
            assert!(
                secs >= base * 0.8 - 0.01 && secs <= (base * 1.2).min(3600.0) + 0.01,
                "attempt {attempts}: {secs}"
            );
        }
    }

    #[test]
    fn retry_after_is_honoured_up_to_retry_max() {
        let t0 = Utc::now();
        let RetryDecision::RetryAt(at) =
            decide(&policy(), 1, t0, t0, Some(Duration::from_secs(600)))
        else {
            panic!("expected a retry");
        };
        assert!((at - t0).num_seconds() >= 600);
    }

    #[test]
    fn retries_end_after_retry_for_or_max_attempts() {
        let t0 = Utc::now();
        let later = t0 + chrono::Duration::days(2);
        assert!(matches!(
            decide(&policy(), 5, t0, later, None),
            RetryDecision::GiveUp(_)
        ));
        let capped = RetryPolicy {
            max_attempts: Some(3),
            ..policy()
        };
        assert!(matches!(
            decide(&capped, 3, t0, t0, None),
            RetryDecision::GiveUp(_)
        ));
    }
}
