//! Business time the way a service desk counts it: table tests against
//! hand-computed cases (weekends, holidays, split days, starting outside
//! hours, both DST changes of 2026 in Europe/Berlin and America/New_York),
//! and properties of the arithmetic and of send windows.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use interim::calendar::{Calendar, local_to_utc, parse_day_hours};
use interim::schedule::{SendAt, SendWindow};
use proptest::prelude::*;

const BERLIN: Tz = chrono_tz::Europe::Berlin;
const NEW_YORK: Tz = chrono_tz::America::New_York;

fn calendar(zone: Tz, weekdays: &str, weekend: &str, holidays: &[&str]) -> Calendar {
    let day = parse_day_hours(weekdays).expect("weekday hours");
    let end = parse_day_hours(weekend).expect("weekend hours");
    Calendar {
        name: "test".into(),
        timezone: zone,
        hours: [
            day.clone(),
            day.clone(),
            day.clone(),
            day.clone(),
            day,
            end.clone(),
            end,
        ],
        holidays: holidays
            .iter()
            .map(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").expect("date"))
            .collect(),
    }
}

/// Mon–Fri 08:00–12:00 and 13:00–17:00 in Berlin, closed on Christmas Eve.
fn office() -> Calendar {
    calendar(
        BERLIN,
        "08:00-12:00,13:00-17:00",
        "",
        &["2026-12-24", "2026-12-25"],
    )
}

fn round_the_clock(zone: Tz) -> Calendar {
    calendar(zone, "00:00-24:00", "00:00-24:00", &[])
}

fn local(zone: Tz, text: &str) -> DateTime<Utc> {
    local_to_utc(
        zone,
        chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").expect("local time"),
    )
}

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

fn hours(h: f64) -> Duration {
    Duration::from_secs_f64(h * 3600.0)
}

/// (what, calendar, start, working time to add, expected due time)
type Case = (
    &'static str,
    Calendar,
    DateTime<Utc>,
    Duration,
    DateTime<Utc>,
);

#[test]
fn business_time_addition_matches_hand_computed_cases() {
    let cases: Vec<Case> = vec![
        (
            "over a weekend",
            office(),
            local(BERLIN, "2026-12-04 16:00"),
            hours(2.0),
            local(BERLIN, "2026-12-07 09:00"),
        ),
        (
            "over two holidays",
            office(),
            local(BERLIN, "2026-12-23 16:00"),
            hours(3.0),
            local(BERLIN, "2026-12-28 10:00"),
        ),
        (
            "over the lunch break",
            office(),
            local(BERLIN, "2026-12-01 11:00"),
            hours(2.0),
            local(BERLIN, "2026-12-01 14:00"),
        ),
        (
            "starting before opening",
            office(),
            local(BERLIN, "2026-12-01 06:00"),
            hours(0.5),
            local(BERLIN, "2026-12-01 08:30"),
        ),
        (
            "starting at lunch",
            office(),
            local(BERLIN, "2026-12-01 12:30"),
            hours(1.0),
            local(BERLIN, "2026-12-01 14:00"),
        ),
        (
            "starting on a Saturday",
            office(),
            local(BERLIN, "2026-12-05 10:00"),
            hours(1.0),
            local(BERLIN, "2026-12-07 09:00"),
        ),
        (
            "ending exactly at closing time waits for the next opening",
            office(),
            local(BERLIN, "2026-12-01 16:00"),
            hours(1.0),
            local(BERLIN, "2026-12-02 08:00"),
        ),
        (
            "a whole working week",
            office(),
            local(BERLIN, "2026-11-30 08:00"),
            hours(40.0),
            local(BERLIN, "2026-12-07 08:00"),
        ),
        // Europe/Berlin 2026: clocks go forward on 29 March 02:00 → 03:00 and
        // back on 25 October 03:00 → 02:00. Three hours of work are three
        // real hours, whatever the wall clock shows.
        (
            "Berlin spring forward, round the clock",
            round_the_clock(BERLIN),
            utc("2026-03-29T00:00:00Z"),
            hours(3.0),
            utc("2026-03-29T03:00:00Z"),
        ),
        (
            "Berlin fall back, round the clock",
            round_the_clock(BERLIN),
            utc("2026-10-24T23:00:00Z"),
            hours(3.0),
            utc("2026-10-25T02:00:00Z"),
        ),
        (
            "Berlin office over the spring weekend",
            office(),
            local(BERLIN, "2026-03-27 16:00"),
            hours(2.0),
            local(BERLIN, "2026-03-30 09:00"),
        ),
        (
            "Berlin office over the autumn weekend",
            office(),
            local(BERLIN, "2026-10-23 16:00"),
            hours(2.0),
            local(BERLIN, "2026-10-26 09:00"),
        ),
        // America/New_York 2026: forward on 8 March, back on 1 November.
        (
            "New York spring forward, round the clock",
            round_the_clock(NEW_YORK),
            utc("2026-03-08T05:00:00Z"),
            hours(4.0),
            utc("2026-03-08T09:00:00Z"),
        ),
        (
            "New York fall back, round the clock",
            round_the_clock(NEW_YORK),
            utc("2026-11-01T04:00:00Z"),
            hours(4.0),
            utc("2026-11-01T08:00:00Z"),
        ),
        (
            "New York office over the spring weekend",
            calendar(NEW_YORK, "09:00-17:00", "", &[]),
            local(NEW_YORK, "2026-03-06 16:00"),
            hours(2.0),
            local(NEW_YORK, "2026-03-09 10:00"),
        ),
        (
            "New York office over the autumn weekend",
            calendar(NEW_YORK, "09:00-17:00", "", &[]),
            local(NEW_YORK, "2026-10-30 16:00"),
            hours(2.0),
            local(NEW_YORK, "2026-11-02 10:00"),
        ),
    ];
    for (name, cal, from, amount, expected) in cases {
        assert_eq!(
            cal.add_business_time(from, amount),
            Some(expected),
            "{name}"
        );
    }
    // The wall clock agrees: spring forward 00:00Z+3h is 05:00 CEST.
    assert_eq!(
        utc("2026-03-29T03:00:00Z")
            .with_timezone(&BERLIN)
            .format("%H:%M")
            .to_string(),
        "05:00"
    );
}

#[test]
fn a_day_with_the_clock_change_has_23_or_25_working_hours() {
    let cal = round_the_clock(BERLIN);
    let spring = cal.add_business_time(local(BERLIN, "2026-03-29 00:00"), hours(23.0));
    assert_eq!(spring, Some(local(BERLIN, "2026-03-30 00:00")));
    let autumn = cal.add_business_time(local(BERLIN, "2026-10-25 00:00"), hours(25.0));
    assert_eq!(autumn, Some(local(BERLIN, "2026-10-26 00:00")));
}

/// Iterates a daily slot through 2026 and counts firings per local date.
fn firings_per_day(expression: &str, zone: Tz) -> BTreeMap<NaiveDate, usize> {
    let send_at = SendAt::parse(expression, zone).expect("cron");
    let mut at = utc("2026-01-01T00:00:00Z");
    let end = utc("2027-01-01T00:00:00Z");
    let mut count = BTreeMap::new();
    while let Some(slot) = send_at.next_slot(at) {
        if slot >= end {
            break;
        }
        *count
            .entry(slot.with_timezone(&zone).date_naive())
            .or_insert(0) += 1;
        at = slot + chrono::Duration::seconds(1);
    }
    count
}

#[test]
fn each_daily_send_at_slot_fires_exactly_once_per_day_across_dst() {
    for (expression, zone) in [
        ("0 30 2 * * *", BERLIN),
        ("0 30 2 * * *", NEW_YORK),
        ("0 0 9 * * *", BERLIN),
        ("0 30 1 * * *", NEW_YORK),
    ] {
        let count = firings_per_day(expression, zone);
        assert_eq!(
            count.len(),
            365,
            "{expression} in {zone}: a day without a firing"
        );
        assert!(
            count.values().all(|&n| n == 1),
            "{expression} in {zone}: a day with two firings"
        );
    }
    // The 02:30 slot on the spring-forward day fires right after the gap.
    let send_at = SendAt::parse("0 30 2 * * *", BERLIN).expect("cron");
    assert_eq!(
        send_at.next_slot(local(BERLIN, "2026-03-29 00:00")),
        Some(local(BERLIN, "2026-03-29 03:00"))
    );
}

fn start_instant() -> impl Strategy<Value = DateTime<Utc>> {
    // Any minute of 2026.
    (0i64..365 * 24 * 60).prop_map(|m| utc("2026-01-01T00:00:00Z") + chrono::Duration::minutes(m))
}

fn amount() -> impl Strategy<Value = Duration> {
    (0u64..120 * 60).prop_map(|m| Duration::from_secs(m * 60))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("INTERIM_PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256), ..ProptestConfig::default() })]

    #[test]
    fn a_due_time_is_never_inside_a_non_working_period(from in start_instant(), a in amount()) {
        prop_assume!(!a.is_zero());
        let due = office().add_business_time(from, a).expect("the office opens");
        prop_assert!(office().is_open(due), "{from} + {a:?} = {due} is outside working hours");
    }

    #[test]
    fn adding_business_time_is_monotonic(from in start_instant(), a in amount(), b in amount(), later in 0i64..10_000) {
        let cal = office();
        let (small, large) = if a <= b { (a, b) } else { (b, a) };
        prop_assert!(cal.add_business_time(from, small) <= cal.add_business_time(from, large));
        let from2 = from + chrono::Duration::minutes(later);
        prop_assert!(cal.add_business_time(from, a) <= cal.add_business_time(from2, a));
    }

    #[test]
    fn adding_a_then_b_equals_adding_a_plus_b(from in start_instant(), a in amount(), b in amount()) {
        let cal = office();
        let stepwise = cal.add_business_time(from, a).and_then(|mid| cal.add_business_time(mid, b));
        prop_assert_eq!(stepwise, cal.add_business_time(from, a + b));
    }

    #[test]
    fn no_notice_is_ever_sent_outside_hours_or_on_a_holiday(due in start_instant(), with_slots in any::<bool>()) {
        let cal = Arc::new(office());
        let window = SendWindow {
            calendar: Some(cal.clone()),
            send_at: with_slots.then(|| SendAt::parse("0 0 9,14 * * Mon-Fri", BERLIN).expect("cron")),
            customer_local: None,
        };
        let send = window.first_send_instant(due).expect("the window opens");
        prop_assert!(send >= due);
        prop_assert!(cal.is_open(send), "{send} is outside working hours");
        prop_assert!(!cal.holidays.contains(&send.with_timezone(&BERLIN).date_naive()));
        if with_slots {
            let local = send.with_timezone(&BERLIN);
            prop_assert!(matches!(local.format("%H:%M:%S").to_string().as_str(), "09:00:00" | "14:00:00"), "{local} is not a slot");
        }
    }
}

#[test]
fn new_york_spring_forward_keeps_a_morning_slot_in_local_time() {
    let send_at = SendAt::parse("0 0 9 * * Mon-Fri", NEW_YORK).expect("cron");
    // Friday 6 March 10:00 EST → Monday 9 March 09:00 EDT (13:00Z).
    let from = NEW_YORK
        .with_ymd_and_hms(2026, 3, 6, 10, 0, 0)
        .single()
        .expect("time")
        .with_timezone(&Utc);
    assert_eq!(send_at.next_slot(from), Some(utc("2026-03-09T13:00:00Z")));
}
