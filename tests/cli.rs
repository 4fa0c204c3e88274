//! The command line around the daemon: dry run, the store lock, `plan`,
//! `preview`, `notices` and `retry`.

mod support;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use support::{
    Notice, Setup, SmtpSink, Ticket, WORDING_DE, WORDING_EN, WebhookReceiver, free_port, http, text,
};

const SOON: Duration = Duration::from_secs(20);

/// A policy for open tickets, one notice once they waited `after`.
fn first_notice(after: &str, channel: &str) -> String {
    format!(
        "match = {{ state = [\"open\"] }}\nafter = \"{after}\"\nchannel = \"{channel}\"\ntemplate = \"interim\""
    )
}

fn parse_time(value: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value)
        .unwrap_or_else(|e| panic!("{value:?} is not RFC 3339: {e}"))
        .with_timezone(&Utc)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn notices_with(setup: &Setup, args: &[&str]) -> Vec<Notice> {
    let mut all = vec!["notices", "--format", "json"];
    all.extend_from_slice(args);
    let json = setup.json(&all).unwrap_or_else(|e| panic!("{e}"));
    serde_json::from_value(json).expect("notices --format json rows")
}

#[test]
fn dry_run_records_dry_run_rows_and_sends_nothing() {
    let sink = SmtpSink::start();
    let mut setup = Setup::new();
    setup
        .set("daemon.dry_run", "true")
        .email_channel("mail", sink.port(), "")
        .policy("first-notice", &first_notice("5m", "mail"));
    setup.helpdesk().insert(&[Ticket::new(1), Ticket::new(2)]);
    let _daemon = setup.start();

    let notices = setup.wait_for_notices("both notices are recorded as dry runs", |n| {
        n.len() == 2 && n.iter().all(|n| n.status == "dry_run")
    });
    setup.assert_stays(
        Duration::from_secs(2),
        "the SMTP sink to stay empty",
        || sink.transactions() == 0,
    );
    assert!(
        notices
            .iter()
            .all(|n| n.sent_at.is_none() || n.status == "dry_run"),
        "{notices:?}"
    );
    let filtered = notices_with(&setup, &["--status", "dry_run"]);
    assert_eq!(filtered.len(), 2);
    assert!(notices_with(&setup, &["--status", "sent"]).is_empty());
}

#[test]
fn a_second_daemon_on_the_same_store_refuses_to_start() {
    let mut setup = Setup::new();
    setup
        .email_channel("mail", free_port(), "")
        .policy("first-notice", &first_notice("1h", "mail"));
    setup.helpdesk().insert(&[Ticket::new(1)]);
    let mut first = setup.start();
    setup.wait_until(SOON, "the first daemon is ready", || {
        http::get(&setup.admin(), "/readyz").is_ok_and(|r| r.status == 200)
    });

    // Another admin port, so that only the store stands in the way.
    let stderr_path = setup.path("second.log");
    let stderr = File::create(&stderr_path).expect("create the second daemon's log");
    let mut second = setup
        .command(&["run"])
        .env(
            "INTERIM__HTTP__LISTEN",
            format!("127.0.0.1:{}", free_port()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn a second interim run");
    let mut status = None;
    setup.wait_until(SOON, "the second daemon exits", || {
        status = second.try_wait().ok().flatten();
        status.is_some()
    });
    let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let status = status.expect("an exit status");
    assert_eq!(status.code(), Some(1), "exit 1 (runtime failure):\n{log}");
    assert!(
        log.contains("another interim daemon") && log.contains("lock"),
        "the message names the lock:\n{log}"
    );
    assert!(first.is_running(), "the first daemon keeps running");
}

#[test]
fn plan_at_a_future_time_shows_a_notice_that_is_not_due_now() {
    let mut setup = Setup::new();
    setup
        .email_channel("mail", free_port(), "")
        .policy("first-notice", &first_notice("1h", "mail"));
    let ticket = Ticket::new(1);
    setup.helpdesk().insert(std::slice::from_ref(&ticket));
    let due = parse_time(&ticket.waiting_since) + chrono::Duration::hours(1);

    let now = setup
        .json(&["plan", "--format", "json"])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(now, serde_json::json!([]), "nothing is due now");

    let at = rfc3339(Utc::now() + chrono::Duration::hours(2));
    let later = setup
        .json(&["plan", "--at", &at, "--format", "json"])
        .unwrap_or_else(|e| panic!("{e}"));
    let rows = later.as_array().expect("an array");
    assert_eq!(rows.len(), 1, "{later}");
    let row = &rows[0];
    assert_eq!(text(&row["ticket_id"]), "1");
    assert_eq!(row["policy"], "first-notice");
    assert_eq!(row["number"], 1);
    assert_eq!(row["channel"], "mail");
    assert_eq!(row["recipient"], Ticket::email(1));
    let due_at = parse_time(row["due_at"].as_str().expect("due_at"));
    assert_eq!(due_at, due, "waiting_since + 1h");
    assert_eq!(parse_time(row["send_at"].as_str().expect("send_at")), due);

    let horizon = setup
        .json(&["plan", "--horizon", "2h", "--format", "json"])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(horizon, later, "now + 2h horizon shows the same notice");
    assert!(
        setup.notices().is_empty(),
        "plan records nothing in the ledger"
    );
}

/// `interim plan | head -1`: the reader takes its line and goes away, and
/// the rest of the table meets a closed pipe (EPIPE).
#[test]
fn plan_into_a_reader_that_stops_after_one_line_exits_0_without_a_panic() {
    let mut setup = Setup::new();
    setup
        .email_channel("mail", free_port(), "")
        .policy("first-notice", &first_notice("5m", "mail"));
    // More rows than a pipe holds (64 KiB), so the writer outlives the reader.
    let tickets: Vec<_> = (1..=1000).map(Ticket::new).collect();
    setup.helpdesk().insert(&tickets);

    let mut plan = setup
        .command(&["plan"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn interim plan");
    let mut first = String::new();
    BufReader::new(plan.stdout.take().expect("a stdout pipe"))
        .read_line(&mut first)
        .expect("read the first line");
    let out = plan.wait_with_output().expect("wait for interim plan");

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        first.starts_with("SEND AT"),
        "the table's header: {first:?}"
    );
    assert_eq!(out.status.code(), Some(0), "exit 0:\n{stderr}");
    assert!(!stderr.contains("panicked"), "no panic:\n{stderr}");
}

#[test]
fn preview_prints_recipient_subject_and_body_in_the_tickets_language() {
    let mut setup = Setup::new();
    setup
        .email_channel("mail", free_port(), "")
        .policy("first-notice", &first_notice("5m", "mail"));
    setup.helpdesk().insert(&[
        Ticket {
            subject: "Drucker brennt".into(),
            language: Some("de".into()),
            ..Ticket::new(1)
        },
        Ticket::new(2),
    ]);

    let out = setup.cli(&["preview", "--ticket", "1"]);
    let german = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "mail",
        &Ticket::email(1),
        "Zwischenbescheid zu #1: Drucker brennt",
        "Guten Tag Customer 1,",
        &format!("Ihre Anfrage #1: {WORDING_DE}."),
    ] {
        assert!(
            german.contains(expected),
            "preview shows {expected:?}:\n{german}"
        );
    }

    let out = setup.cli(&["preview", "--ticket", "2", "--policy", "first-notice"]);
    let english = String::from_utf8_lossy(&out.stdout);
    for expected in [
        Ticket::email(2).as_str(),
        "Update on #2: Printer on fire",
        "Hello Customer 2,",
        &format!("your request #2: {WORDING_EN}."),
    ] {
        assert!(
            english.contains(expected),
            "preview shows {expected:?}:\n{english}"
        );
    }

    let out = setup.cli(&["preview", "--ticket", "999"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an unknown ticket is an error");
    assert!(
        stderr.contains("999"),
        "the error names the ticket:\n{stderr}"
    );
    assert!(setup.notices().is_empty(), "preview records nothing");
}

#[test]
fn the_built_in_english_template_begins_its_first_sentence_in_capitals() {
    let mut setup = Setup::new();
    setup.set("templates.dir", &support::toml_str("built-in-only"));
    setup
        .email_channel("mail", free_port(), "")
        .policy("first-notice", &first_notice("5m", "mail"));
    setup.helpdesk().insert(&[Ticket::new(2)]);

    let out = setup.cli(&["preview", "--ticket", "2"]);
    let english = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        english.contains("Hello Customer 2,\n\nYou have been waiting"),
        "{english}"
    );
    assert!(
        english.contains("<p>You have been waiting"),
        "the HTML part too:\n{english}"
    );
}

#[test]
fn healthcheck_is_listed_in_help_as_the_dockerfile_uses_it() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_interim"))
        .arg("--help")
        .output()
        .expect("run interim --help");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{help}");
    assert!(
        help.lines()
            .any(|l| l.trim_start().starts_with("healthcheck") && l.contains("/healthz")),
        "{help}"
    );
    let dockerfile = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile"))
        .expect("read the Dockerfile");
    assert!(dockerfile.contains(r#"CMD ["interim", "healthcheck"]"#));
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read the README");
    assert!(
        readme.contains("| `interim healthcheck` |"),
        "the README's command table"
    );

    let mut setup = Setup::new();
    setup
        .email_channel("mail", free_port(), "")
        .policy("first-notice", &first_notice("5m", "mail"));
    let out = setup.cli(&["healthcheck"]);
    assert_eq!(out.status.code(), Some(1), "no daemon runs: exit 1");
    assert!(String::from_utf8_lossy(&out.stderr).contains("/healthz"));
}

#[test]
fn retry_puts_a_dead_notice_back_to_pending_and_it_is_delivered() {
    let receiver = WebhookReceiver::start(&[400], 200, Duration::ZERO);
    let mut setup = Setup::new();
    setup
        .webhook_channel("hook", receiver.url(), "")
        .policy("escalate", &first_notice("5m", "hook"));
    setup.helpdesk().insert(&[Ticket::new(1)]);
    let mut daemon = setup.start();
    let dead = setup.wait_for_notices("the notice is dead", |n| {
        n.iter().any(|n| n.status == "dead")
    });
    let id = dead[0].id.clone();
    assert!(daemon.stop().success());

    let out = setup.cli(&["retry", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pending = notices_with(&setup, &["--status", "pending"]);
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0].id, id);

    let out = setup.cli(&["retry", &id, "no-such-notice"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&id) && stderr.contains("no-such-notice"),
        "the error names the notices that were not dead:\n{stderr}"
    );

    let _daemon = setup.start();
    let sent = setup.wait_for_notices("the retried notice is sent", |n| {
        n.iter().any(|n| n.status == "sent")
    });
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].id, id, "the same notice, not a new one");
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2, "one 400, one 200");
    assert!(requests.iter().all(|r| r.header("webhook-id") == id));
}

#[test]
fn notices_filters_by_status_and_ticket() {
    let sink = SmtpSink::start();
    let receiver = WebhookReceiver::start(&[], 400, Duration::ZERO);
    let mut setup = Setup::new();
    let by_queue = |queue: &str, channel: &str| {
        format!(
            "match = {{ queue = [\"{queue}\"] }}\nafter = \"5m\"\nchannel = \"{channel}\"\ntemplate = \"interim\""
        )
    };
    setup
        .email_channel("mail", sink.port(), "")
        .webhook_channel("hook", receiver.url(), "")
        .policy("customer", &by_queue("support", "mail"))
        .policy("team", &by_queue("billing", "hook"));
    let billing = |id| Ticket {
        queue: "billing".into(),
        ..Ticket::new(id)
    };
    setup
        .helpdesk()
        .insert(&[Ticket::new(1), Ticket::new(2), billing(3), billing(4)]);
    let _daemon = setup.start();
    setup.wait_for_notices("two sent, two dead", |n| {
        n.iter().filter(|n| n.status == "sent").count() == 2
            && n.iter().filter(|n| n.status == "dead").count() == 2
    });

    let dead = notices_with(&setup, &["--status", "dead"]);
    let mut tickets: Vec<&str> = dead.iter().map(|n| n.ticket_id.as_str()).collect();
    tickets.sort();
    assert_eq!(tickets, ["3", "4"]);
    assert!(
        dead.iter()
            .all(|n| n.channel == "hook" && n.last_error.is_some())
    );

    let sent = notices_with(&setup, &["--status", "sent"]);
    let mut tickets: Vec<&str> = sent.iter().map(|n| n.ticket_id.as_str()).collect();
    tickets.sort();
    assert_eq!(tickets, ["1", "2"]);

    let one = notices_with(&setup, &["--status", "dead", "--ticket", "3"]);
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].ticket_id, "3");
    assert!(notices_with(&setup, &["--status", "sent", "--ticket", "3"]).is_empty());

    let out = setup.cli(&["notices", "--status", "bogus"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown status is a usage error"
    );
}

/// Tickets 1, 2 and 11, waiting since the same instant; ticket 11 is the
/// one customers know as #10423, and ticket 2 carries the number #1.
fn numbered_tickets(setup: &mut Setup) {
    setup
        .email_channel("mail", free_port(), "")
        .policy("first-notice", &first_notice("1h", "mail"));
    let since = rfc3339(Utc::now() - chrono::Duration::minutes(10));
    let helpdesk = setup.helpdesk();
    helpdesk.insert(&[11, 2, 1].map(|id| Ticket {
        waiting_since: since.clone(),
        ..Ticket::new(id)
    }));
    helpdesk.set(11, "number", "#10423");
    helpdesk.set(2, "number", "#1");
}

#[test]
fn preview_finds_a_ticket_by_the_number_the_team_knows() {
    let mut setup = Setup::new();
    numbered_tickets(&mut setup);

    let out = setup.cli(&["preview", "--ticket", "10423"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("ticket:    11 (#10423)"), "{text}");
    assert!(text.contains(&Ticket::email(11)), "{text}");
    assert!(text.contains("Update on #10423"), "{text}");

    // "1" is ticket 1's id and ticket 2's number: say so, and how to choose.
    let out = setup.cli(&["preview", "--ticket", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("ambiguous") && stderr.contains("2 (#1)") && stderr.contains("id:1"),
        "{stderr}"
    );
    let out = setup.cli(&["preview", "--ticket", "id:1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&Ticket::email(1)), "{text}");
}

#[test]
fn notices_and_plan_show_the_number_accept_it_and_sort_ids_numerically() {
    let mut setup = Setup::new();
    numbered_tickets(&mut setup);

    let at = rfc3339(Utc::now() + chrono::Duration::hours(2));
    let plan = setup
        .json(&["plan", "--at", &at, "--format", "json"])
        .unwrap_or_else(|e| panic!("{e}"));
    let rows = plan.as_array().cloned().unwrap_or_default();
    let ids: Vec<String> = rows.iter().map(|r| text(&r["ticket_id"])).collect();
    assert_eq!(ids, ["1", "2", "11"], "{plan}");
    let numbers: Vec<&str> = rows
        .iter()
        .map(|r| r["ticket_number"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(numbers, ["#1", "#1", "#10423"]);
    let table = setup.cli(&["plan", "--at", &at]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("11 (#10423)"), "{table}");

    let _daemon = setup.start();
    setup.wait_for_notices("one pending notice per ticket", |n| n.len() == 3);
    let all = setup
        .json(&["notices", "--format", "json"])
        .unwrap_or_else(|e| panic!("{e}"));
    let all = all.as_array().cloned().unwrap_or_default();
    let ids: Vec<String> = all.iter().map(|r| text(&r["ticket_id"])).collect();
    assert_eq!(ids, ["1", "2", "11"], "ids sort as numbers");
    assert_eq!(all[2]["ticket_number"], "#10423");
    let table = setup.cli(&["notices"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("11 (#10423)"), "{table}");

    for wanted in ["10423", "#10423", "11"] {
        let one = notices_with(&setup, &["--ticket", wanted]);
        let ids: Vec<&str> = one.iter().map(|n| n.ticket_id.as_str()).collect();
        assert_eq!(ids, ["11"], "--ticket {wanted}");
    }
    let out = setup.cli(&["notices", "--ticket", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("ambiguous"), "{stderr}");
    let one = notices_with(&setup, &["--ticket", "id:1"]);
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].ticket_id, "1");
}
