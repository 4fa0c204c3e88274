//! Property-based fuzzing of everything that reads outside input: config
//! files, durations, cron expressions, calendar hours, timestamps, and
//! template rendering and email building with hostile ticket data. Never a
//! panic; always a clear error or a safe result.
//! `INTERIM_PROPTEST_CASES` raises the case count for long runs.

use chrono::{DateTime, Utc};
use interim::calendar::parse_day_hours;
use interim::channels::Outgoing;
use interim::channels::email::build_message;
use interim::config::parse_duration;
use interim::schedule::SendAt;
use interim::setup::{self, Config};
use interim::source::columns::parse_timestamp_text;
use interim::templates::{Message, NoticeFacts};
use interim::ticket::Ticket;
use lettre::message::Mailbox;
use proptest::prelude::*;

fn cases(default: u32) -> u32 {
    std::env::var("INTERIM_PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default)
}

/// Text that hurts: control characters, CR/LF, NUL, template and HTML
/// syntax, right-to-left marks, emoji, quotes, very long runs.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\\r\\n\\t\\u{0}\\u{202e}\\u{1F600}<>&\"'{}%#a-zA-Z0-9 ]{0,80}",
        Just("{{ 7 * 7 }} {% for x in range(3) %}{{ x }}{% endfor %}".to_string()),
        Just("Subject\r\nBcc: evil@example.com\r\n\r\nbody".to_string()),
        Just("<script>alert(1)</script> & \"quotes\"".to_string()),
        Just("\u{202e}gnp.exe \u{1F4A9}\u{0}".to_string()),
        Just("x".repeat(100_000)),
    ]
}

const VALID: &str = r#"
[daemon]
poll_interval = "30s"
[store]
url = "sqlite://DIR/ledger.db"
[source]
kind = "sql"
url = "sqlite://DIR/helpdesk.db"
query = "SELECT 1"
[channels.out]
kind = "file"
path = "DIR/out"
[[policies]]
name = "p"
after = "1h"
channel = "out"
template = "interim"
"#;

fn write(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("interim.toml");
    std::fs::write(&path, text.replace("DIR", &dir.display().to_string())).expect("write config");
    path
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(64), ..ProptestConfig::default() })]

    #[test]
    fn any_config_text_loads_or_fails_with_a_reason(text in any::<String>()) {
        let dir = tempfile::tempdir().expect("tempdir");
        if let Err(e) = setup::load(&write(dir.path(), &text)) {
            prop_assert!(!e.lines.is_empty() && e.lines.iter().all(|l| !l.trim().is_empty()));
        }
    }

    #[test]
    fn a_valid_config_with_one_key_changed_loads_or_names_the_key(
        line in 5usize..17,
        value in prop_oneof![hostile_text().prop_map(|s| format!("{s:?}")), any::<i64>().prop_map(|i| i.to_string()), Just("true".into()), Just("[1, \"x\"]".into()), Just("{ a = 1 }".into())],
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let lines: Vec<String> = VALID
            .lines()
            .enumerate()
            .map(|(i, l)| match (i == line, l.split_once(" = ")) {
                (true, Some((key, _))) => format!("{key} = {value}"),
                _ => l.to_owned(),
            })
            .collect();
        if let Err(e) = setup::load(&write(dir.path(), &lines.join("\n"))) {
            prop_assert!(!e.lines.is_empty());
            prop_assert!(e.lines.iter().all(|l| l.contains(':')), "every problem names a key: {:?}", e.lines);
        }
    }

    #[test]
    fn parsers_of_durations_cron_hours_and_timestamps_never_panic(text in hostile_text()) {
        let _ = parse_duration(&text);
        let _ = SendAt::parse(&text, chrono_tz::Europe::Berlin);
        let _ = parse_day_hours(&text);
        let _ = parse_timestamp_text(&text, chrono_tz::Europe::Berlin);
        let _ = interim::suppress::Entry::parse(&text);
    }

    #[test]
    fn cron_expressions_built_from_fields_parse_or_fail_clearly(
        fields in proptest::collection::vec(prop_oneof![Just("*".to_string()), Just("Mon-Fri".to_string()), (0u32..80).prop_map(|n| n.to_string()), "[0-9,/*-]{1,6}"], 4..9)
    ) {
        let expression = fields.join(" ");
        match SendAt::parse(&expression, chrono_tz::UTC) {
            Ok(send_at) => {
                let _ = send_at.next_slot(Utc::now());
            }
            Err(reason) => prop_assert!(reason.contains(&expression), "{reason}"),
        }
    }
}

fn rendering_config(dir: &std::path::Path) -> Config {
    setup::load(&write(dir, VALID)).expect("valid config")
}

fn hostile_ticket(subject: String, name: String, state: String, extra: String) -> Ticket {
    serde_json::from_value(serde_json::json!({
        "id": format!("T-{}", subject.len()),
        "number": subject.chars().take(20).collect::<String>(),
        "subject": subject,
        "state": state,
        "customer_name": name,
        "customer_email": "kunde@example.com",
        "language": "de",
        "waiting_since": "2026-12-01T08:00:00Z",
        "extra": { "note": extra },
    }))
    .expect("ticket")
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("time")
        .with_timezone(&Utc)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(48), ..ProptestConfig::default() })]

    #[test]
    fn hostile_ticket_data_renders_as_text_and_never_breaks_a_header(
        subject in hostile_text(), name in hostile_text(), state in hostile_text(), extra in hostile_text(),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = rendering_config(dir.path());
        let ticket = hostile_ticket(subject.clone(), name, state, extra);
        let policy = &config.settings.policies[0];
        let facts = NoticeFacts {
            ticket: &ticket,
            policy,
            notice_id: "0b9d3b58-2f6c-5d3e-9a51-3f1c7e0d2a11",
            number: 1,
            now: at("2026-12-03T08:00:00Z"),
            due_at: at("2026-12-03T08:00:00Z"),
            next_notice_at: None,
        };
        let message: Message = config.templates.render(&config.settings, &facts).expect("renders");
        prop_assert!(!message.subject.contains(['\r', '\n', '\0']), "subject is one line");
        if subject.contains("{{ 7 * 7 }}") {
            prop_assert!(message.text.contains("{{ 7 * 7 }}") && !message.text.contains(" 49 "), "template syntax in data is printed");
        }
        if let Some(html) = &message.html {
            prop_assert!(!html.contains("<script>"), "HTML is escaped");
        }
        let from: Mailbox = "Service <service@example.com>".parse().expect("from");
        let outgoing = Outgoing {
            notice_id: facts.notice_id,
            policy: &policy.name,
            number: 1,
            max: 1,
            ticket: &ticket,
            state_for_customer: "x",
            due_at: facts.due_at,
            next_notice_at: None,
            waited_seconds: 1,
            message: &message,
        };
        let email = build_message(&from, None, &outgoing).expect("builds");
        let raw = String::from_utf8_lossy(&email.formatted()).into_owned();
        let headers = raw.split("\r\n\r\n").next().unwrap_or_default();
        let header_names: Vec<&str> = headers
            .split("\r\n")
            .filter(|l| !l.starts_with([' ', '\t']))
            .filter_map(|l| l.split_once(':').map(|(n, _)| n))
            .collect();
        prop_assert_eq!(header_names.iter().filter(|n| n.eq_ignore_ascii_case("subject")).count(), 1);
        prop_assert!(!header_names.iter().any(|n| n.eq_ignore_ascii_case("bcc")), "no injected header: {:?}", header_names);
        prop_assert!(headers.lines().all(|l| l.len() <= 998), "header lines within RFC 5322 limits");
    }
}
