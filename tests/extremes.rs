//! No value from outside can panic the process: the whole i64 range of
//! Unix seconds and milliseconds, RFC 3339 extremes and `Retry-After`
//! extremes go through parsing, planning with a calendar and `send_at`,
//! the send-time checks, retry decisions and rendering. Out of range is a
//! skipped row with its reason, never a panic.
//! `INTERIM_PROPTEST_CASES` raises the case count for long runs.

use std::time::Duration;

use chrono::{DateTime, Utc};
use interim::planner::{self, Mode, SeriesState};
use interim::setup::{self, Config};
use interim::source::Cell;
use interim::source::columns::{parse_timestamp_text, timestamp_of};
use interim::templates::NoticeFacts;
use interim::ticket::Ticket;
use proptest::prelude::*;

fn cases(default: u32) -> u32 {
    std::env::var("INTERIM_PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default)
}

/// A policy with everything that does date arithmetic: a calendar with a
/// DST zone and holidays, `send_at` slots, repeats.
const CONFIG: &str = r#"
[daemon]
timezone = "Europe/Berlin"
[store]
url = "sqlite://DIR/ledger.db"
[source]
kind = "sql"
url = "sqlite://DIR/helpdesk.db"
query = "SELECT 1"
[channels.out]
kind = "file"
path = "DIR/out"
retry_max = "100y"
retry_for = "100y"
[calendars.office]
timezone = "Europe/Berlin"
hours = { mon = "08:00-18:00", tue = "08:00-18:00", wed = "08:00-18:00", thu = "08:00-18:00", fri = "08:00-16:00" }
holidays = ["2026-12-24", "2026-12-25"]
[[policies]]
name = "office"
after = "8h"
repeat_every = "2d"
max_notices = 3
calendar = "office"
send_at = "0 0 9,14 * * Mon-Fri"
channel = "out"
template = "interim"
continue = true
[[policies]]
name = "slots"
after = "100y"
repeat_every = "1s"
max_notices = 5
send_at = "0 30 2 * * *"
channel = "out"
template = "interim"
"#;

fn load() -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = CONFIG.replace("DIR", &dir.path().display().to_string());
    let path = dir.path().join("interim.toml");
    std::fs::write(&path, text).expect("write config");
    let config = setup::load(&path).unwrap_or_else(|e| panic!("{e}"));
    (dir, config)
}

/// Any instant chrono can hold, biased towards its ends and the years the
/// contract allows.
fn any_instant() -> impl Strategy<Value = DateTime<Utc>> {
    let min = DateTime::<Utc>::MIN_UTC.timestamp_millis();
    let max = DateTime::<Utc>::MAX_UTC.timestamp_millis();
    let at = |ms: i64| DateTime::from_timestamp_millis(ms).unwrap_or_default();
    prop_oneof![
        (min..=max).prop_map(at),
        (min..=min + 86_400_000 * 400).prop_map(at),
        (max - 86_400_000 * 400..=max).prop_map(at),
        (-5_000_000_000_000i64..5_000_000_000_000).prop_map(at),
        Just(DateTime::<Utc>::MAX_UTC),
        Just(DateTime::<Utc>::MIN_UTC),
    ]
}

fn ticket(waiting_since: DateTime<Utc>, zone: Option<&str>) -> Ticket {
    Ticket {
        id: "T-1".into(),
        number: Some("1".into()),
        subject: Some("Router".into()),
        state: "open".into(),
        priority: None,
        queue: None,
        origin: None,
        customer_email: Some("kunde@example.com".into()),
        customer_name: Some("Kunde".into()),
        language: Some("de".into()),
        timezone: zone.map(str::to_owned),
        waiting_since,
        updated_at: Some(waiting_since),
        thread_message_id: None,
        extra: Default::default(),
    }
}

/// Plans, places, checks and renders every notice of the ticket at `now`.
fn plan_everything(config: &Config, t: &Ticket, now: DateTime<Utc>, sent: Option<DateTime<Utc>>) {
    let settings = &config.settings;
    let plan = planner::plan(settings, std::slice::from_ref(t), &[], &[], now, Mode::Live);
    for notice in &plan.upserts {
        let Some(policy) = settings
            .policies
            .iter()
            .find(|p| p.name == notice.key.policy)
        else {
            continue;
        };
        let _ = policy.window.still_sendable(notice.send_at, now);
        let _ = policy
            .window
            .place(notice.due_at, now, Some(notice.send_at));
        let _ = policy.due_at(t.waiting_since, notice.number + 1, sent);
        let next = policy
            .due_at(t.waiting_since, notice.number + 1, Some(notice.send_at))
            .and_then(|due| policy.window.first_send_instant(due));
        let facts = NoticeFacts {
            ticket: t,
            policy,
            notice_id: &notice.id,
            number: notice.number,
            now,
            due_at: notice.due_at,
            next_notice_at: next,
        };
        let _ = config.templates.render(settings, &facts);
        // The series after its first notice, as the ledger would hold it.
        let mut state = SeriesState::fresh(notice.key.clone());
        state.done = notice.number;
        state.last_sent_at = sent.or(Some(notice.send_at));
        let _ = planner::plan(
            settings,
            std::slice::from_ref(t),
            &[],
            &[state],
            now,
            Mode::Live,
        );
    }
    // Rendering any instant, whatever the plan said.
    for policy in &settings.policies {
        let facts = NoticeFacts {
            ticket: t,
            policy,
            notice_id: "0b9d3b58-2f6c-5d3e-9a51-3f1c7e0d2a11",
            number: 1,
            now,
            due_at: now,
            next_notice_at: Some(t.waiting_since),
        };
        let _ = config.templates.render(settings, &facts);
    }
    for policy in &settings.policies {
        let _ = policy.add_wait(t.waiting_since, Duration::from_secs(100 * 365 * 86_400));
        let _ = policy.window.first_send_instant(now);
        let _ = policy.window.place(t.waiting_since, now, Some(now));
        if let Some(send_at) = &policy.window.send_at {
            let _ = send_at.next_slot(now);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(48), ..ProptestConfig::default() })]

    #[test]
    fn any_unix_seconds_or_milliseconds_are_read_or_skipped_with_a_reason(n in any::<i64>()) {
        let zone = chrono_tz::Europe::Berlin;
        for cell in [
            Cell::Int(n),
            Cell::Float(n as f64),
            Cell::Float(n as f64 / 1000.0),
            Cell::Text(n.to_string()),
            Cell::Number(format!("{n}0000000000")),
        ] {
            match timestamp_of(&cell, zone) {
                Ok(Some(t)) => prop_assert!(interim::clock::YEARS.contains(&chrono::Datelike::year(&t)), "{cell:?} read as {t}"),
                Ok(None) => prop_assert!(false, "{cell:?} is not NULL"),
                Err(reason) => prop_assert!(!reason.is_empty()),
            }
        }
    }

    #[test]
    fn rfc3339_text_of_any_year_and_offset_is_read_or_skipped(
        year in prop_oneof![-262_144i32..=262_143, 1899i32..=1901, 9998i32..=10_000],
        month in 1u32..=12,
        day in 1u32..=31,
        hour in 0u32..=23,
        offset in -1439i32..=1439,
        fraction in prop_oneof![Just(String::new()), Just(".999999999".to_string()), "\\.[0-9]{1,12}"],
    ) {
        let sign = if offset < 0 { '-' } else { '+' };
        let text = format!(
            "{year:04}-{month:02}-{day:02}T{hour:02}:59:59{fraction}{sign}{:02}:{:02}",
            offset.abs() / 60,
            offset.abs() % 60
        );
        for zone in [chrono_tz::UTC, chrono_tz::Pacific::Kiritimati, chrono_tz::Etc::GMTPlus12] {
            if let Ok(Some(t)) = timestamp_of(&Cell::Text(text.clone()), zone) {
                prop_assert!(interim::clock::YEARS.contains(&chrono::Datelike::year(&t)), "{text} read as {t}");
            }
            let _ = parse_timestamp_text(&text, zone);
            let naive = text.replace('T', " ");
            let _ = timestamp_of(&Cell::Text(naive[..19.min(naive.len())].to_string()), zone);
        }
    }

    #[test]
    fn planning_rendering_and_send_checks_never_panic_at_any_instant(
        waiting_since in any_instant(),
        now in any_instant(),
        sent in proptest::option::of(any_instant()),
        zone in prop_oneof![Just(None), Just(Some("Pacific/Kiritimati")), Just(Some("America/Adak"))],
    ) {
        let (_dir, config) = load();
        plan_everything(&config, &ticket(waiting_since, zone), now, sent);
    }

    #[test]
    fn any_retry_after_is_capped_and_never_panics(
        seconds in any::<u64>(),
        date in any_instant(),
        now in any_instant(),
        first in any_instant(),
        attempts in any::<u32>(),
    ) {
        let (_dir, config) = load();
        let retry = &config.settings.channels["out"].retry;
        // chrono's RFC 2822 writer refuses years past 9999; a header need not.
        let http_date = date.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        for header in [seconds.to_string(), http_date, "Thu, 01 Jan 1970 00:00:00 GMT".into(), format!("{seconds}{seconds}")] {
            let wanted = interim::net::parse_retry_after(&header, now);
            let _ = interim::retry::decide(retry, attempts, first, now, wanted);
        }
    }
}

#[test]
fn configured_durations_longer_than_a_century_are_refused_with_their_key() {
    let (dir, _) = load();
    let text = CONFIG
        .replace("DIR", &dir.path().display().to_string())
        .replace("after = \"100y\"", "after = \"300000000y\"");
    let path = dir.path().join("long.toml");
    std::fs::write(&path, text).expect("write config");
    let error = match setup::load(&path) {
        Ok(_) => panic!("a 300000000-year wait is refused"),
        Err(e) => e.to_string(),
    };
    assert!(
        error.contains("policies[1].after") || error.contains("after"),
        "{error}"
    );
    assert!(
        error.contains("longer than 100 years") || error.contains("invalid duration"),
        "{error}"
    );
}
