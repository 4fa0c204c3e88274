//! Calendars and send windows through the real binary: `plan --at` shows
//! when a notice would go out, and bad calendar input is rejected by
//! `check-config` naming the key (and the file line of a holidays file).

mod support;

use serde_json::Value;
use support::{Setup, Ticket, toml_str};

const OFFICE: &str = "[calendars.office]\ntimezone = \"Europe/Berlin\"\n\
    hours = { mon = \"08:00-18:00\", tue = \"08:00-18:00\", wed = \"08:00-18:00\", thu = \"08:00-18:00\", fri = \"08:00-18:00\" }\n\
    holidays = [\"2026-12-24\"]";

fn weekend_setup() -> Setup {
    let mut setup = Setup::new();
    setup.toml(OFFICE);
    setup.toml("[channels.outbox]\nkind = \"file\"\npath = \"outbox\"\nformat = \"json\"");
    // Business time: one working hour after Friday 17:00 is closing time,
    // so the notice waits for Monday's opening.
    setup.policy("office-hours", "match = { queue = [\"office\"] }\nafter = \"1h\"\ncalendar = \"office\"\nchannel = \"outbox\"\ntemplate = \"interim\"");
    // Wall-clock threshold with morning send slots on weekdays.
    setup.policy(
        "weekday-mornings",
        "match = { queue = [\"slots\"] }\nafter = \"24h\"\nsend_at = \"0 0 8 * * Mon-Fri\"\nchannel = \"outbox\"\ntemplate = \"interim\"",
    );
    setup.set("daemon.timezone", &toml_str("Europe/Berlin"));
    let helpdesk = setup.helpdesk();
    let mut friday_evening = Ticket::new(1);
    friday_evening.queue = "office".into();
    friday_evening.waiting_since = "2026-12-04T17:00:00+01:00".into();
    let mut saturday_arrival = Ticket::new(2);
    saturday_arrival.queue = "office".into();
    saturday_arrival.waiting_since = "2026-12-05T10:00:00+01:00".into();
    let mut friday_morning = Ticket::new(3);
    friday_morning.queue = "slots".into();
    friday_morning.waiting_since = "2026-12-04T10:00:00+01:00".into();
    helpdesk.insert(&[friday_evening, saturday_arrival, friday_morning]);
    setup
}

fn plan_at(setup: &Setup, at: &str, horizon: &str) -> Vec<Value> {
    let json = setup
        .json(&["plan", "--at", at, "--horizon", horizon, "--format", "json"])
        .unwrap_or_else(|e| panic!("{e}"));
    json.as_array().cloned().expect("plan prints an array")
}

fn send_at_of(plan: &[Value], ticket: &str) -> Option<String> {
    plan.iter()
        .find(|row| row["ticket_id"] == ticket)
        .map(|row| row["send_at"].as_str().unwrap_or_default().to_owned())
}

#[test]
fn a_ticket_whose_threshold_falls_on_a_weekend_is_notified_on_monday_at_opening() {
    let setup = weekend_setup();
    // Saturday night: only ticket 3 is due (24 wall-clock hours ended on
    // Saturday 10:00); it is listed with the instant it goes out, the next
    // weekday slot, Monday 08:00. Nothing goes out on the weekend.
    let saturday = plan_at(&setup, "2026-12-05T23:00:00+01:00", "0s");
    let due: Vec<(String, String)> = saturday
        .iter()
        .map(|r| {
            (
                r["ticket_id"].as_str().unwrap_or_default().to_owned(),
                r["send_at"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        due,
        [("3".to_owned(), "2026-12-07T07:00:00Z".to_owned())],
        "nothing goes out on the weekend"
    );

    let monday = plan_at(&setup, "2026-12-07T08:05:00+01:00", "1h");
    // Friday 17:00 + 1 working hour = closing time → Monday 08:00 CET.
    assert_eq!(
        send_at_of(&monday, "1").as_deref(),
        Some("2026-12-07T07:00:00Z")
    );
    // Arrived on Saturday: its working hour starts Monday 08:00 → 09:00.
    assert_eq!(
        send_at_of(&monday, "2").as_deref(),
        Some("2026-12-07T08:00:00Z")
    );
    // 24 wall-clock hours end on Saturday 10:00; the next weekday slot is Monday 08:00.
    assert_eq!(
        send_at_of(&monday, "3").as_deref(),
        Some("2026-12-07T07:00:00Z")
    );
    let row = monday
        .iter()
        .find(|r| r["ticket_id"] == "3")
        .expect("ticket 3 planned");
    assert_eq!(row["due_at"], "2026-12-05T09:00:00Z", "due on Saturday");
}

#[test]
fn plan_explains_which_window_or_slot_sets_the_send_time() {
    let setup = weekend_setup();
    let out = setup.cli(&["plan", "--at", "2026-12-07T12:00:00+01:00"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.contains("calendar office"), "{table}");
    assert!(table.contains("0 0 8 * * Mon-Fri"), "{table}");
}

fn with_calendar(calendar: &str) -> Setup {
    let mut setup = Setup::new();
    setup.toml(calendar);
    setup.toml("[channels.outbox]\nkind = \"file\"\npath = \"outbox\"");
    setup.policy(
        "p",
        "after = \"1h\"\ncalendar = \"office\"\nchannel = \"outbox\"\ntemplate = \"interim\"",
    );
    setup
}

#[track_caller]
fn assert_rejected(setup: &Setup, needles: &[&str]) {
    let out = setup.cli(&["check-config"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "stderr names {needle}:\n{stderr}");
    }
}

#[test]
fn an_interval_that_ends_before_it_starts_is_rejected() {
    let setup = with_calendar("[calendars.office]\nhours = { mon = \"18:00-08:00\" }");
    assert_rejected(&setup, &["calendars.office.hours.mon", "18:00-08:00"]);
}

#[test]
fn an_unknown_weekday_is_rejected() {
    let setup = with_calendar(
        "[calendars.office]\nhours = { mon = \"08:00-17:00\", mo = \"08:00-17:00\" }",
    );
    assert_rejected(&setup, &["calendars.office.hours.mo", "unknown weekday"]);
}

#[test]
fn an_unknown_zone_is_rejected() {
    let setup = with_calendar(
        "[calendars.office]\ntimezone = \"Europe/Atlantis\"\nhours = { mon = \"08:00-17:00\" }",
    );
    assert_rejected(&setup, &["calendars.office.timezone", "Europe/Atlantis"]);
}

#[test]
fn an_invalid_date_in_a_holidays_file_names_the_file_line() {
    let setup = with_calendar(
        "[calendars.office]\nhours = { mon = \"08:00-17:00\" }\nholidays_file = \"holidays.txt\"",
    );
    std::fs::write(
        setup.path("holidays.txt"),
        "# company days off\n2026-12-24\n\n2026-02-30 # no such day\n",
    )
    .expect("write holidays");
    assert_rejected(
        &setup,
        &[
            "calendars.office.holidays_file",
            "holidays.txt:4",
            "2026-02-30",
        ],
    );
}

#[test]
fn an_invalid_holiday_date_in_the_config_is_rejected() {
    let setup = with_calendar(
        "[calendars.office]\nhours = { mon = \"08:00-17:00\" }\nholidays = [\"2026-12-24\", \"24.12.2026\"]",
    );
    assert_rejected(&setup, &["calendars.office.holidays[1]"]);
}

#[test]
fn the_shipped_german_holidays_file_is_valid() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/config/holidays-de.txt");
    let setup = with_calendar(&format!(
        "[calendars.office]\nhours = {{ mon = \"08:00-17:00\" }}\nholidays_file = {}",
        toml_str(file)
    ));
    let out = setup.cli(&["check-config"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
