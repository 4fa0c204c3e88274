//! Notices in the customer's language and time zone: `waited`,
//! `waiting_since` and the promise `next_notice_at`, rendered by the real
//! template engine from a real config. The promise is rounded up to the
//! minute shown and the next notice is planned at or before it; a date in a
//! zone the customer did not give carries the zone's name.

mod support;

use std::str::FromStr;

use chrono::{DateTime, Utc};
use interim::clock::{Clock, ManualClock};
use interim::setup::{self, Config};
use interim::store::NoticeFilter;
use interim::templates::NoticeFacts;
use interim::ticket::Ticket;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};

fn config(dir: &std::path::Path) -> Config {
    config_in(dir, "UTC")
}

/// The test config with `daemon.timezone = zone`.
fn config_in(dir: &std::path::Path, zone: &str) -> Config {
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
timezone = "{zone}"
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
        templates = templates.display(),
    );
    let path = dir.join("interim.toml");
    std::fs::write(&path, text).expect("config");
    setup::load(&path).unwrap_or_else(|e| panic!("{e}"))
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
    render_promising(config, ticket, policy, at("2026-12-03T13:00:00Z"))
}

/// The promise as the customer reads it, `next_notice_at` being `promise`.
fn promise(config: &Config, ticket: &Ticket, policy: &str, promise: DateTime<Utc>) -> String {
    let text = render_promising(config, ticket, policy, promise);
    text.split('|').nth(2).unwrap_or_default().to_owned()
}

fn render_promising(
    config: &Config,
    ticket: &Ticket,
    policy: &str,
    next_notice_at: DateTime<Utc>,
) -> String {
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
        next_notice_at: Some(next_notice_at),
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
        with_calendar.contains("Thursday, 3 December 2026, 2:00 PM CET"),
        "{with_calendar}"
    );
    let plain = render(&config, &ticket("en", None), "plain");
    assert!(
        plain.contains("Thursday, 3 December 2026, 1:00 PM UTC"),
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
        text.contains("Thursday, 3 December 2026, 2:00 PM CET"),
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

#[test]
fn a_promise_of_15_22_43_is_shown_as_15_23_in_german_and_english() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    // 14:22:43 UTC is 15:22:43 in Berlin in December.
    let planned = at("2026-12-03T14:22:43Z");
    let de = ticket("de", Some("Europe/Berlin"));
    assert_eq!(
        promise(&config, &de, "plain", planned),
        "Donnerstag, 3. Dezember 2026, 15:23 Uhr"
    );
    let en = ticket("en", Some("Europe/Berlin"));
    assert_eq!(
        promise(&config, &en, "plain", planned),
        "Thursday, 3 December 2026, 3:23 PM"
    );
    // A millisecond past the minute is past it too.
    assert_eq!(
        promise(&config, &de, "plain", at("2026-12-03T14:22:00.001Z")),
        "Donnerstag, 3. Dezember 2026, 15:23 Uhr"
    );
}

#[test]
fn a_promise_on_the_minute_stays_on_that_minute() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    let planned = at("2026-12-03T14:22:00Z");
    assert_eq!(
        promise(
            &config,
            &ticket("de", Some("Europe/Berlin")),
            "plain",
            planned
        ),
        "Donnerstag, 3. Dezember 2026, 15:22 Uhr"
    );
    assert_eq!(
        promise(
            &config,
            &ticket("en", Some("Europe/Berlin")),
            "plain",
            planned
        ),
        "Thursday, 3 December 2026, 3:22 PM"
    );
}

#[test]
fn a_customer_without_a_zone_reads_the_default_zone_name_mez_in_winter_and_mesz_in_summer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_in(dir.path(), "Europe/Berlin");
    let de = ticket("de", None);
    assert_eq!(
        promise(&config, &de, "plain", at("2026-12-03T14:22:43Z")),
        "Donnerstag, 3. Dezember 2026, 15:23 Uhr MEZ"
    );
    assert_eq!(
        promise(&config, &de, "plain", at("2026-07-02T13:22:43Z")),
        "Donnerstag, 2. Juli 2026, 15:23 Uhr MESZ"
    );
    // Every date shown in that zone is named, not only the promise.
    let text = render(&config, &de, "plain");
    assert!(
        text.contains("|Dienstag, 1. Dezember 2026, 10:00 Uhr MEZ|"),
        "{text}"
    );
}

#[test]
fn an_english_customer_without_a_zone_reads_cet_in_winter_and_cest_in_summer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_in(dir.path(), "Europe/Berlin");
    let en = ticket("en", None);
    assert_eq!(
        promise(&config, &en, "plain", at("2026-12-03T14:22:43Z")),
        "Thursday, 3 December 2026, 3:23 PM CET"
    );
    assert_eq!(
        promise(&config, &en, "plain", at("2026-07-02T13:22:43Z")),
        "Thursday, 2 July 2026, 3:23 PM CEST"
    );
}

#[test]
fn a_customer_whose_zone_is_invalid_reads_the_name_of_the_zone_used_instead() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_in(dir.path(), "Europe/Berlin");
    let de = ticket("de", Some("Mars/Olympus_Mons"));
    assert_eq!(
        promise(&config, &de, "plain", at("2026-12-03T14:22:43Z")),
        "Donnerstag, 3. Dezember 2026, 15:23 Uhr MEZ"
    );
}

#[test]
fn a_customer_with_a_valid_zone_reads_no_zone_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_in(dir.path(), "Europe/Berlin");
    let de = render(
        &config,
        &ticket("de", Some("Europe/Berlin")),
        "with-calendar",
    );
    assert!(!de.contains("MEZ"), "{de}");
    let en = render(&config, &ticket("en", Some("America/New_York")), "plain");
    assert!(!en.contains("EST") && !en.contains("CET"), "{en}");
}

/// Through the real poll path, dispatcher, file channel and SQLite ledger:
/// notice 1 goes out at 09:00:00.250 and promises notice 2 for 14:22:43.250
/// UTC (repeat_every 5h 22m 43s), 15:22:43 in Berlin.
#[tokio::test]
async fn the_next_notice_is_planned_at_or_before_the_promise_it_makes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path();
    let options = SqliteConnectOptions::from_str(&format!(
        "sqlite://{}/helpdesk.db?mode=rwc",
        path.display()
    ))
    .expect("helpdesk url");
    let helpdesk = SqlitePool::connect_with(options)
        .await
        .expect("the helpdesk");
    sqlx::raw_sql(
        "CREATE TABLE tickets(id TEXT PRIMARY KEY, state TEXT, language TEXT, waiting_since TEXT);
         INSERT INTO tickets VALUES ('42', 'open', 'de', '2026-12-03T08:00:00Z');",
    )
    .execute(&helpdesk)
    .await
    .expect("fill the helpdesk");
    let outbox = path.join("outbox");
    let text = format!(
        r#"
[daemon]
timezone = "Europe/Berlin"
default_language = "de"
[store]
url = "sqlite://{dir}/ledger.db"
[source]
kind = "sql"
url = "sqlite://{dir}/helpdesk.db"
query = "SELECT id, state, language, waiting_since FROM tickets WHERE state = 'open'"
[templates]
dir = "{dir}/no-templates"
[channels.out]
kind = "file"
path = "{outbox}"
format = "json"
[[policies]]
name = "plain"
after = "1h"
repeat_every = "5h 22m 43s"
max_notices = 3
channel = "out"
template = "interim"
"#,
        dir = path.display(),
        outbox = outbox.display(),
    );
    let config_path = path.join("interim.toml");
    std::fs::write(&config_path, text).expect("config");
    let config = setup::load(&config_path).unwrap_or_else(|e| panic!("{e}"));

    let sent_at = at("2026-12-03T09:00:00.250Z");
    let clock = ManualClock::new(sent_at);
    let (store, dispatcher, mut poller) =
        support::library::start_parts(&config, &clock, "rendering").await;
    assert!(poller.tick(clock.now()).await, "the poll failed");
    let started = dispatcher
        .dispatch_due(clock.now())
        .await
        .expect("dispatch");
    dispatcher.wait_idle().await;
    assert_eq!(started, 1, "notice 1 was not sent");

    let written: Vec<_> = std::fs::read_dir(&outbox)
        .expect("the outbox")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(written.len(), 1, "{written:?}");
    let document: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&written[0]).expect("read the notice"))
            .expect("json");
    let body = document["message"]["text"].as_str().unwrap_or_default();
    assert!(
        body.contains("Spätestens am Donnerstag, 3. Dezember 2026, 15:23 Uhr MEZ hören Sie"),
        "{body}"
    );
    let shown = at("2026-12-03T14:23:00Z");

    // A poll after the send leaves notice 2 where the ledger planned it.
    clock.set(sent_at + chrono::Duration::seconds(30));
    assert!(poller.tick(clock.now()).await, "the second poll failed");
    let notices = store
        .list(&NoticeFilter {
            status: None,
            ticket: Some("42".into()),
        })
        .await
        .expect("the ledger");
    let second = notices
        .iter()
        .find(|n| n.number == 2)
        .unwrap_or_else(|| panic!("notice 2 is not planned: {notices:?}"));
    assert!(
        second.send_at <= shown && second.next_attempt_at <= shown,
        "notice 2 is planned for {} but the customer was promised {shown}",
        second.send_at
    );
    assert!(
        second.send_at > at("2026-12-03T14:22:00Z"),
        "cut to the minute the promise would have been early: {}",
        second.send_at
    );
    let first = notices.iter().find(|n| n.number == 1).expect("notice 1");
    assert!(
        first.next_notice_at.is_some_and(|p| p <= shown),
        "{first:?}"
    );
}

/// A config whose policy uses the built-in `interim` templates (the
/// templates folder does not exist).
fn builtin_config(dir: &std::path::Path, marker: Option<&str>) -> Config {
    let marker = marker.map_or(String::new(), |m| format!("subject_marker = {m:?}\n"));
    let text = format!(
        r#"
[daemon]
default_language = "en"
[store]
url = "sqlite://{dir}/ledger.db"
[source]
kind = "sql"
url = "sqlite://{dir}/helpdesk.db"
query = "SELECT 1"
{marker}
[channels.out]
kind = "file"
path = "{dir}/out"
[[policies]]
name = "builtin"
after = "1h"
repeat_every = "1d"
channel = "out"
template = "interim"
[templates]
dir = "{dir}/no-templates-here"
"#,
        dir = dir.display(),
    );
    let path = dir.join("interim.toml");
    std::fs::write(&path, text).expect("config");
    setup::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// What a sentence must never show when a field it mentions is empty.
fn stray_punctuation(text: &str) -> Option<&'static str> {
    let text = text.replace("<br>", "\n");
    let bad = [
        " :",
        " ,",
        " .",
        "( ",
        " )",
        "()",
        "(\"\")",
        "(„“)",
        "„“",
        "#:",
        "# ",
        "#.",
        "#<",
        "[]",
        "[ ",
        " ]",
        "<strong></strong>",
        "<strong>#</strong>",
        "  ",
    ];
    let found = bad.into_iter().find(|b| text.contains(b));
    if found.is_some() {
        return found;
    }
    text.lines()
        .any(|l| l.ends_with(' ') || l.ends_with(':') || l.starts_with(' '))
        .then_some("a line that begins or ends with a space, or ends with a colon")
}

#[test]
fn built_in_templates_leave_no_stray_space_or_punctuation_when_an_optional_field_is_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let full = serde_json::json!({
        "id": "42",
        "number": "10423",
        "subject": "Router",
        "state": "in_progress",
        "priority": "normal",
        "queue": "Billing",
        "origin": "email",
        "customer_email": "anna@example.com",
        "customer_name": "Anna Kunde",
        "language": "de",
        "timezone": "Europe/Berlin",
        "thread_message_id": "<first@example.com>",
        "waiting_since": "2026-12-01T09:00:00Z",
    });
    let optional = [
        "number",
        "subject",
        "priority",
        "queue",
        "origin",
        "customer_email",
        "customer_name",
        "timezone",
        "thread_message_id",
    ];
    for marker in [None, Some("[Ticket#{number}]")] {
        let config = builtin_config(dir.path(), marker);
        assert_eq!(
            config.settings.source.subject_marker.as_deref(),
            marker,
            "the config carries the marker under test"
        );
        let policy = &config.settings.policies[0];
        for language in ["de", "en"] {
            for missing in std::iter::once(None).chain(optional.iter().map(Some)) {
                for empty in [serde_json::Value::Null, "".into(), " ".into()] {
                    for next_notice_at in [None, Some(at("2026-12-05T09:00:00Z"))] {
                        let mut json = full.clone();
                        json["language"] = language.into();
                        if let Some(field) = missing {
                            json[*field] = empty.clone();
                        }
                        let ticket: Ticket = serde_json::from_value(json).expect("ticket");
                        let facts = NoticeFacts {
                            ticket: &ticket,
                            policy,
                            notice_id: "n-1",
                            number: 1,
                            now: at("2026-12-03T09:00:00Z"),
                            due_at: at("2026-12-03T09:00:00Z"),
                            next_notice_at,
                        };
                        let message = config
                            .templates
                            .render(&config.settings, &facts)
                            .expect("render");
                        assert_eq!(message.language, language);
                        let html = message.html.clone().unwrap_or_default();
                        if missing.is_none() {
                            assert_full_ticket_is_shown(&message.subject, &message.text, marker);
                        }
                        for (part, text) in [
                            ("subject", &message.subject),
                            ("txt", &message.text),
                            ("html", &html),
                        ] {
                            assert!(
                                !text.is_empty() || part == "html",
                                "{language}.{part} is empty"
                            );
                            if let Some(bad) = stray_punctuation(text) {
                                panic!(
                                    "interim.{language}.{part} with {missing:?} = {empty:?}, marker {marker:?}: \
                                     {bad:?} in\n{text}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Liveness beside the checks for what must not show: with every field
/// there, the subject names the ticket (its marker, or else its number) and
/// its subject, and the body greets the customer by name.
fn assert_full_ticket_is_shown(subject: &str, text: &str, marker: Option<&str>) {
    let id = match marker {
        Some(m) => m.replace("{number}", "10423"),
        None => "#10423".to_string(),
    };
    assert!(
        subject.contains(&id) && subject.contains("Router"),
        "the subject of the full ticket (marker {marker:?}) lacks {id:?} or \"Router\": {subject}"
    );
    if marker.is_some() {
        assert!(
            !subject.contains("#10423 ") && subject.matches("10423").count() == 1,
            "with a marker the number is shown once, in the marker: {subject}"
        );
    }
    assert!(
        text.contains("Anna Kunde"),
        "the body of the full ticket does not name the customer:\n{text}"
    );
}
