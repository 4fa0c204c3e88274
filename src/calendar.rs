//! Business-hours calendars: working intervals per weekday in a time zone,
//! minus holidays. All arithmetic is on UTC instants; local wall-clock times
//! are converted at the edges, so a DST change counts the hours that really
//! passed.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// How far ahead we look for an open interval before concluding that a
/// calendar never opens (e.g. every day a holiday).
const MAX_DAYS_AHEAD: i64 = 3 * 366;

#[derive(Debug, Clone, PartialEq)]
pub struct Calendar {
    pub name: String,
    pub timezone: Tz,
    /// Index 0 = Monday. Each day's intervals are sorted and disjoint.
    pub hours: [Vec<(NaiveTime, NaiveTime)>; 7],
    pub holidays: BTreeSet<NaiveDate>,
}

impl Calendar {
    /// The working intervals of one local date, as UTC instants.
    fn intervals_on(&self, date: NaiveDate) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        if self.holidays.contains(&date) {
            return Vec::new();
        }
        let weekday = date.weekday().num_days_from_monday() as usize;
        self.hours[weekday]
            .iter()
            .map(|(start, end)| {
                // An end of 00:00 is midnight at the end of the day ("24:00").
                let end_date = if *end == NaiveTime::MIN {
                    date.succ_opt().unwrap_or(date)
                } else {
                    date
                };
                (
                    local_to_utc(self.timezone, date.and_time(*start)),
                    local_to_utc(self.timezone, end_date.and_time(*end)),
                )
            })
            .filter(|(start, end)| start < end)
            .collect()
    }

    /// Working intervals that end after `from`, in order, clipped to start at
    /// `from` at the earliest.
    fn intervals_from(
        &self,
        from: DateTime<Utc>,
    ) -> impl Iterator<Item = (DateTime<Utc>, DateTime<Utc>)> + '_ {
        // Start a day early: a local date's interval may begin before `from`'s
        // local date in UTC terms.
        // Near chrono's ends local time overflows: no intervals there.
        let first = crate::clock::computable(from)
            .then(|| {
                from.with_timezone(&self.timezone)
                    .date_naive()
                    .checked_sub_days(chrono::Days::new(1))
            })
            .flatten();
        (0..first.map_or(0, |_| MAX_DAYS_AHEAD))
            .filter_map(move |offset| first?.checked_add_days(chrono::Days::new(offset as u64)))
            .flat_map(move |date| self.intervals_on(date))
            .filter(move |(_, end)| *end > from)
            .map(move |(start, end)| (start.max(from), end))
    }

    /// True when `at` lies inside a working interval (half-open).
    pub fn is_open(&self, at: DateTime<Utc>) -> bool {
        self.intervals_from(at)
            .next()
            .is_some_and(|(start, _)| start <= at)
    }

    /// The first instant at or after `at` that is inside working hours.
    pub fn next_open(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.intervals_from(at).next().map(|(start, _)| start)
    }

    /// The instant when `amount` of working time has passed since `from`.
    /// The result is always inside working hours: an amount that ends
    /// exactly at closing time lands on the next opening (intervals are
    /// half-open). A zero amount yields `from` itself: the wait is
    /// measured here, the send window is applied separately.
    pub fn add_business_time(
        &self,
        from: DateTime<Utc>,
        amount: Duration,
    ) -> Option<DateTime<Utc>> {
        let mut left = chrono::Duration::from_std(amount).ok()?;
        if left.is_zero() {
            return Some(from);
        }
        for (start, end) in self.intervals_from(from) {
            let span = end - start;
            if left < span {
                return Some(start + left);
            }
            left -= span;
        }
        None
    }

    /// The working time between `from` and `to` (zero when `to` is not
    /// after `from`): how long a wait lasted in business hours. Bounded
    /// like every walk here: a wait longer than about three years counts
    /// its first three.
    pub fn business_time_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
        let mut total = chrono::Duration::zero();
        for (start, end) in self.intervals_from(from) {
            if start >= to {
                break;
            }
            total += end.min(to) - start;
        }
        total.to_std().unwrap_or(Duration::ZERO)
    }
}

/// Converts a local wall-clock time to an instant. A time inside a DST gap
/// maps to the first instant after the gap; an ambiguous time (the repeated
/// hour) to its earlier occurrence.
pub fn local_to_utc(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        chrono::LocalResult::Single(t) => t.with_timezone(&Utc),
        chrono::LocalResult::Ambiguous(early, _) => early.with_timezone(&Utc),
        chrono::LocalResult::None => {
            // Walk forward minute by minute to the end of the gap (gaps are at
            // most a few hours, and start on a minute boundary everywhere).
            let mut probe = local;
            for _ in 0..(24 * 60) {
                let Some(next) = probe.checked_add_signed(chrono::Duration::minutes(1)) else {
                    break;
                };
                probe = next;
                if let Some(t) = tz.from_local_datetime(&probe).earliest() {
                    let gap_end = t.with_timezone(&Utc);
                    // The first valid local minute after the gap, truncated to
                    // the minute: that is the instant the gap ends.
                    let seconds = probe.and_utc().timestamp() % 60;
                    return gap_end - chrono::Duration::seconds(seconds);
                }
            }
            Utc.from_utc_datetime(&local)
        }
    }
}

/// Parses `"08:00-12:00,13:00-17:00"` into sorted, disjoint intervals.
pub fn parse_day_hours(spec: &str) -> Result<Vec<(NaiveTime, NaiveTime)>, String> {
    let mut intervals = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (start, end) = part
            .split_once('-')
            .ok_or_else(|| format!("\"{part}\" is not an interval like \"08:00-17:00\""))?;
        let start = parse_clock(start.trim())?;
        let end = parse_clock(end.trim())?;
        let to_midnight = end == NaiveTime::MIN && end_text_is_midnight(part);
        if end <= start && !to_midnight {
            return Err(format!(
                "\"{part}\" ends before it starts; an interval cannot span midnight, split it in two days"
            ));
        }
        intervals.push((start, end));
    }
    intervals.sort();
    // An end of 00:00 means midnight at the end of the day.
    let end_of = |end: NaiveTime| {
        if end == NaiveTime::MIN {
            86_400
        } else {
            end.num_seconds_from_midnight()
        }
    };
    for pair in intervals.windows(2) {
        if pair[1].0.num_seconds_from_midnight() < end_of(pair[0].1) {
            return Err(format!("intervals in \"{spec}\" overlap"));
        }
    }
    Ok(intervals)
}

fn end_text_is_midnight(part: &str) -> bool {
    part.split_once('-')
        .is_some_and(|(_, end)| matches!(end.trim(), "24:00" | "00:00"))
}

fn parse_clock(text: &str) -> Result<NaiveTime, String> {
    if text == "24:00" {
        // Stored as 00:00: as an interval's end it means the next midnight.
        return Ok(NaiveTime::MIN);
    }
    NaiveTime::parse_from_str(text, "%H:%M")
        .map_err(|_| format!("\"{text}\" is not a time of day like \"08:00\""))
}

/// Weekday key (`mon` … `sun`) to index (0 = Monday).
pub fn weekday_index(key: &str) -> Option<usize> {
    ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .position(|d| d.eq_ignore_ascii_case(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn office() -> Calendar {
        let day = parse_day_hours("08:00-12:00,13:00-17:00").unwrap_or_default();
        Calendar {
            name: "office".into(),
            timezone: chrono_tz::Europe::Berlin,
            hours: [
                day.clone(),
                day.clone(),
                day.clone(),
                day.clone(),
                day,
                vec![],
                vec![],
            ],
            holidays: [NaiveDate::from_ymd_opt(2026, 12, 24)]
                .into_iter()
                .flatten()
                .collect(),
        }
    }

    fn berlin(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        local_to_utc(
            chrono_tz::Europe::Berlin,
            NaiveDate::from_ymd_opt(y, m, d)
                .and_then(|d| d.and_hms_opt(h, min, 0))
                .unwrap_or_default(),
        )
    }

    #[test]
    fn a_wait_across_a_weekend_and_a_holiday_counts_only_working_hours() {
        let office = office();
        // Friday 16:00 to Monday 09:00: Friday's last hour and Monday's first.
        assert_eq!(
            office.business_time_between(berlin(2026, 12, 4, 16, 0), berlin(2026, 12, 7, 9, 0)),
            Duration::from_secs(2 * 3600)
        );
        // Wednesday 23 December 16:00 to Friday 25 December 10:00: one hour
        // on the 23rd, Christmas Eve a holiday, two hours on the 25th.
        assert_eq!(
            office.business_time_between(berlin(2026, 12, 23, 16, 0), berlin(2026, 12, 25, 10, 0)),
            Duration::from_secs(3 * 3600)
        );
        // The lunch break does not count; an end before the start is zero.
        assert_eq!(
            office.business_time_between(berlin(2026, 12, 7, 11, 0), berlin(2026, 12, 7, 14, 0)),
            Duration::from_secs(2 * 3600)
        );
        assert_eq!(
            office.business_time_between(berlin(2026, 12, 7, 14, 0), berlin(2026, 12, 7, 11, 0)),
            Duration::ZERO
        );
    }

    #[test]
    fn business_time_skips_the_weekend() {
        // Friday 2026-12-04 16:00 + 2h = Monday 09:00.
        let due = office().add_business_time(berlin(2026, 12, 4, 16, 0), Duration::from_secs(7200));
        assert_eq!(due, Some(berlin(2026, 12, 7, 9, 0)));
    }

    #[test]
    fn business_time_skips_lunch_and_holidays() {
        let due =
            office().add_business_time(berlin(2026, 12, 23, 16, 0), Duration::from_secs(3 * 3600));
        // 1h on the 23rd, the 24th is a holiday, the 25th (Fri) 08:00 + 2h.
        assert_eq!(due, Some(berlin(2026, 12, 25, 10, 0)));
        let due =
            office().add_business_time(berlin(2026, 12, 1, 11, 0), Duration::from_secs(2 * 3600));
        assert_eq!(due, Some(berlin(2026, 12, 1, 14, 0)));
    }

    #[test]
    fn closing_time_is_not_open() {
        assert!(!office().is_open(berlin(2026, 12, 1, 17, 0)));
        assert_eq!(
            office().next_open(berlin(2026, 12, 1, 17, 0)),
            Some(berlin(2026, 12, 2, 8, 0))
        );
    }

    #[test]
    fn a_time_in_the_spring_gap_maps_to_the_end_of_the_gap() {
        let t = local_to_utc(
            chrono_tz::Europe::Berlin,
            NaiveDate::from_ymd_opt(2026, 3, 29)
                .and_then(|d| d.and_hms_opt(2, 30, 0))
                .unwrap_or_default(),
        );
        assert_eq!(t, berlin(2026, 3, 29, 3, 0));
        assert_eq!(t.to_rfc3339(), "2026-03-29T01:00:00+00:00");
    }

    #[test]
    fn reversed_intervals_are_rejected() {
        assert!(parse_day_hours("18:00-08:00").is_err());
        assert!(parse_day_hours("8-9").is_err());
    }
}
