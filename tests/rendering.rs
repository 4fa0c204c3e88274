//! Notices in the customer's language and time zone: `waited`,
//! `waiting_since` and the promise `next_notice_at`, rendered by the real
//! template engine from a real config.

use chrono::{DateTime, Utc};
use interim::config::{self, Config};
use interim::templates::NoticeFacts;
use interim::ticket::Ticket;

fn config(dir: &std::path::Path) -> Config {
    let templates = dir.join("templates");
    std::fs::create_dir_all(&templates).expect("templates dir");
    for lang in ["de", "en"] {
        std::fs::write(
            templates.join(format!("t.{lang}.subject")),
            "{{ ticket.subject }}",
        )
        .expect("subject");
        std::fs::write(
            templates.join(format!("t.{lang}.txt")),
            "{{ waited }}|{{ waiting_since }}|{{ next_notice_at }}|{{ ticket.state_for_customer }}",
        )
        .expect("text");
    }
    let text = format!(
        r#"
[daemon]
timezone = "UTC"
default_language = "en"
[store]
url = "sqlite://{dir}/ledger.db"
[source]
kind = "sql"
url = "sqlite://{dir}/helpdesk.db"
query = "SELECT 1"
[wording.de]
in_progress = "Wir arbeiten an einer Lösung für Sie"
[calendars.office]
timezone = "Europe/Berlin"
hours = {{ mon = "08:00-18:00", tue = "08:00-18:00", wed = "08:00-18:00", thu = "08:00-18:00", fri = "08:00-18:00" }}
[channels.out]
kind = "file"
path = "{dir}/out"
format = "json"
[[policies]]
name = "with-calendar"
after = "1h"
repeat_every = "1d"
calendar = "office"
channel = "out"
template = "t"
[[policies]]
name = "plain"
after = "1h"
repeat_every = "1d"
channel = "out"
template = "t"
[templates]
dir = "{templates}"
"#,
        dir = dir.display(),
        templates = templates.display()
    );
    let path = dir.join("interim.toml");
    std::fs::write(&path, text).expect("config");
    config::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("time")
        .with_timezone(&Utc)
}

fn ticket(language: &str, timezone: Option<&str>) -> Ticket {
    serde_json::from_value(serde_json::json!({
        "id": "42",
        "subject": "Router",
        "state": "in_progress",
        "language": language,
        "timezone": timezone,
        "waiting_since": "2026-12-01T09:00:00Z",
    }))
    .expect("ticket")
}

fn render(config: &Config, ticket: &Ticket, policy: &str) -> String {
    let policy = config
        .settings
        .policies
        .iter()
        .find(|p| p.name == policy)
        .expect("policy");
    let facts = NoticeFacts {
        ticket,
        policy,
        notice_id: "n-1",
        number: 1,
        now: at("2026-12-03T09:00:00Z"),
        due_at: at("2026-12-03T09:00:00Z"),
        next_notice_at: Some(at("2026-12-03T13:00:00Z")),
    };
    config
        .templates
        .render(&config.settings, &facts)
        .expect("render")
        .text
}

#[test]
fn a_german_customer_reads_german_dates_in_their_own_zone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    let text = render(&config, &ticket("de", Some("Europe/Berlin")), "plain");
    assert_eq!(
        text,
        "seit 2 Tagen|Dienstag, 1. Dezember 2026, 10:00 Uhr|Donnerstag, 3. Dezember 2026, 14:00 Uhr|Wir arbeiten an einer Lösung für Sie"
    );
}

#[test]
fn an_english_customer_in_new_york_reads_new_york_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    let text = render(&config, &ticket("en", Some("America/New_York")), "plain");
    assert_eq!(
        text,
        "for 2 days|Tuesday, 1 December 2026, 4:00 AM|Thursday, 3 December 2026, 8:00 AM|in_progress"
    );
}

#[test]
fn without_a_customer_zone_dates_use_the_calendar_zone_then_the_daemon_zone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    let with_calendar = render(&config, &ticket("en", None), "with-calendar");
    assert!(
        with_calendar.contains("Thursday, 3 December 2026, 2:00 PM"),
        "{with_calendar}"
    );
    let plain = render(&config, &ticket("en", None), "plain");
    assert!(
        plain.contains("Thursday, 3 December 2026, 1:00 PM"),
        "{plain}"
    );
}

#[test]
fn an_unknown_customer_zone_falls_back_instead_of_failing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    let text = render(
        &config,
        &ticket("en", Some("Mars/Olympus_Mons")),
        "with-calendar",
    );
    assert!(
        text.contains("Thursday, 3 December 2026, 2:00 PM"),
        "{text}"
    );
}

#[test]
fn a_language_without_templates_falls_back_to_the_default_language() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    let text = render(&config, &ticket("fr", Some("Europe/Paris")), "plain");
    assert!(
        text.starts_with("for 2 days|Tuesday, 1 December 2026, 10:00 AM"),
        "{text}"
    );
}
