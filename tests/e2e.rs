//! End to end: the built `interim run` against a SQLite helpdesk, a real SMTP
//! server and a signed-webhook receiver.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use support::{
    FROM, SmtpReply, SmtpSink, Ticket, WORDING_DE, WORDING_EN, WebhookReceiver, ago, sql_ago, text,
};

const SOON: Duration = Duration::from_secs(30);

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

#[test]
fn tickets_past_their_threshold_get_exactly_one_notice_each() {
    let sink = SmtpSink::start();
    let mut setup = support::Setup::new();
    setup
        .email_channel("mail", sink.port(), "")
        .policy("first-notice", &first_notice("5m", "mail"));
    let helpdesk = setup.helpdesk();
    helpdesk.insert(&[
        Ticket::new(1),
        Ticket {
            subject: "Drucker brennt".into(),
            language: Some("de".into()),
            ..Ticket::new(2)
        },
        Ticket {
            language: None,
            ..Ticket::new(3)
        },
        Ticket {
            waiting_since: ago(60),
            ..Ticket::new(4)
        },
        Ticket {
            thread_message_id: Some("<thread-5@helpdesk.example>".into()),
            ..Ticket::new(5)
        },
        Ticket {
            waiting_since: sql_ago(900),
            ..Ticket::new(6)
        },
    ]);

    let _daemon = setup.start();
    setup.wait_until(SOON, "five notices arrived", || sink.mails().len() >= 5);
    setup.assert_stays(Duration::from_secs(3), "no further mail", || {
        sink.mails().len() == 5
    });

    let notices = setup.notices();
    for id in [1, 2, 3, 5, 6] {
        let mails = sink.mails_to(&Ticket::email(id));
        assert_eq!(mails.len(), 1, "ticket {id} gets exactly one mail");
        let mail = &mails[0];
        let sent: Vec<_> = notices
            .iter()
            .filter(|n| n.ticket_id == id.to_string())
            .collect();
        assert_eq!(sent.len(), 1, "ticket {id} has one ledger row: {sent:?}");
        let notice = sent[0];
        assert_eq!(
            (notice.status.as_str(), notice.number, notice.attempts),
            ("sent", 1, 1)
        );
        assert_eq!(notice.policy, "first-notice");
        assert_eq!(mail.to, vec![Ticket::email(id)], "envelope recipient");
        assert!(
            mail.from.ends_with("@interim.test"),
            "envelope sender: {FROM}"
        );
        assert_eq!(
            mail.header("Message-ID"),
            Some(format!("<{}@interim.test>", notice.id))
        );
        assert_eq!(
            mail.header("Auto-Submitted").as_deref(),
            Some("auto-generated")
        );
        // Assumption: X-Interim-Ticket carries the ticket id, X-Interim-Notice the notice id.
        assert_eq!(mail.header("X-Interim-Ticket"), Some(id.to_string()));
        assert_eq!(
            mail.header("X-Interim-Ticket-Number"),
            Some(format!("#{id}"))
        );
        assert_eq!(mail.header("X-Interim-Notice"), Some(notice.id.clone()));
    }

    let english = &sink.mails_to(&Ticket::email(1))[0];
    assert_eq!(english.subject(), "Update on #1: Printer on fire");
    let body = english.text();
    assert!(body.contains("Hello Customer 1,"), "{body}");
    assert!(
        body.contains(&format!("your request #1: {WORDING_EN}.")),
        "{body}"
    );
    assert!(body.contains("Notice 1 of 1."), "{body}");
    assert_eq!(
        english.header("In-Reply-To"),
        None,
        "no thread, no In-Reply-To"
    );

    let german = &sink.mails_to(&Ticket::email(2))[0];
    assert_eq!(german.subject(), "Zwischenbescheid zu #2: Drucker brennt");
    assert!(
        german
            .text()
            .contains(&format!("Ihre Anfrage #2: {WORDING_DE}.")),
        "{}",
        german.text()
    );

    let fallback = &sink.mails_to(&Ticket::email(3))[0];
    assert!(
        fallback.subject().starts_with("Zwischenbescheid"),
        "default_language = de"
    );

    let threaded = &sink.mails_to(&Ticket::email(5))[0];
    assert_eq!(
        threaded.header("In-Reply-To").as_deref(),
        Some("<thread-5@helpdesk.example>")
    );
    let references = threaded.header("References").unwrap_or_default();
    assert!(
        references.contains("<thread-5@helpdesk.example>"),
        "References: {references}"
    );

    assert!(
        sink.mails_to(&Ticket::email(4)).is_empty(),
        "ticket 4 waited only a minute"
    );
    assert!(
        notices
            .iter()
            .all(|n| n.ticket_id != "4" || n.status == "pending"),
        "nothing but a pending plan for ticket 4: {notices:?}"
    );
}

#[test]
fn a_closed_ticket_gets_no_further_notice() {
    let sink = SmtpSink::start();
    let mut setup = support::Setup::new();
    let policy = first_notice("1s", "mail") + "\nrepeat_every = \"4s\"\nmax_notices = 3";
    setup
        .email_channel("mail", sink.port(), "")
        .policy("repeating", &policy);
    let helpdesk = setup.helpdesk();
    helpdesk.insert(&[Ticket::new(1), Ticket::new(2)]);
    let _daemon = setup.start();

    setup.wait_until(SOON, "ticket 1 got its first notice", || {
        !sink.mails_to(&Ticket::email(1)).is_empty()
    });
    helpdesk.close(1);
    setup.wait_until(SOON, "ticket 2 got its second notice", || {
        sink.mails_to(&Ticket::email(2)).len() >= 2
    });
    setup.assert_stays(
        Duration::from_secs(2),
        "ticket 1 to have one mail only",
        || sink.mails_to(&Ticket::email(1)).len() == 1,
    );

    let later = setup
        .notices_of(1)
        .into_iter()
        .filter(|n| n.number > 1)
        .collect::<Vec<_>>();
    assert!(
        later.iter().all(|n| n.status == "cancelled"),
        "later notices of the closed ticket: {later:?}"
    );
}

#[test]
fn a_restarted_wait_starts_again_at_notice_number_one() {
    let sink = SmtpSink::start();
    let mut setup = support::Setup::new();
    let policy = first_notice("1m", "mail") + "\nrepeat_every = \"1h\"\nmax_notices = 3";
    setup
        .email_channel("mail", sink.port(), "")
        .policy("repeating", &policy);
    let helpdesk = setup.helpdesk();
    helpdesk.insert(&[Ticket::new(1)]);
    let _daemon = setup.start();
    setup.wait_until(SOON, "the first notice arrived", || sink.mails().len() == 1);

    // The customer wrote again five minutes ago and is waiting anew.
    helpdesk.set(1, "waiting_since", &ago(300));
    setup.wait_until(SOON, "the new wait's notice arrived", || {
        sink.mails().len() == 2
    });

    let notices = setup.notices_of(1);
    let sent: Vec<_> = notices.iter().filter(|n| n.status == "sent").collect();
    assert_eq!(sent.len(), 2, "{notices:?}");
    assert!(
        sent.iter().all(|n| n.number == 1),
        "both waits start at number 1: {sent:?}"
    );
    assert_ne!(sent[0].id, sent[1].id, "a new episode has new notice ids");
    let ids: HashSet<_> = sink
        .mails()
        .iter()
        .filter_map(|m| m.header("Message-ID"))
        .collect();
    assert_eq!(ids.len(), 2, "two distinct Message-IDs");
}

#[test]
fn webhook_notices_are_signed_and_carry_the_documented_fields() {
    let receiver = WebhookReceiver::start(&[], 200, Duration::ZERO);
    let mut setup = support::Setup::new();
    let policy = first_notice("5m", "hook") + "\nrepeat_every = \"1h\"\nmax_notices = 2";
    setup
        .webhook_channel("hook", receiver.url(), "")
        .policy("escalate", &policy);
    let waiting_since = ago(600);
    let ticket = Ticket {
        queue: "billing".into(),
        waiting_since: waiting_since.clone(),
        ..Ticket::new(7)
    };
    setup.helpdesk().insert(&[ticket]);
    let _daemon = setup.start();

    let notices = setup.wait_for_notices("the notice is sent", |n| {
        n.iter().any(|n| n.status == "sent")
    });
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    let notice = &notices[0];
    assert!(
        request.verified,
        "Standard Webhooks signature verifies: {:?}",
        request.headers
    );
    assert!(
        request
            .header("content-type")
            .starts_with("application/json")
    );
    assert_eq!(request.header("webhook-id"), notice.id);
    let timestamp: i64 = request
        .header("webhook-timestamp")
        .parse()
        .expect("Unix seconds");
    assert!(
        (Utc::now().timestamp() - timestamp).abs() < 60,
        "timestamp of this attempt"
    );

    let body = &request.body;
    assert_eq!(body["type"], "interim.notice");
    assert_eq!(text(&body["id"]), notice.id);
    assert_eq!(body["policy"], "escalate");
    assert_eq!(
        (body["number"].as_u64(), body["max"].as_u64()),
        (Some(1), Some(2))
    );
    let waited = body["waited_seconds"]
        .as_i64()
        .expect("waited_seconds is an integer");
    assert!((600..700).contains(&waited), "waited_seconds = {waited}");
    let due_at = parse_time(body["due_at"].as_str().expect("due_at"));
    assert_eq!(
        due_at,
        parse_time(&waiting_since) + chrono::Duration::minutes(5)
    );
    let next = parse_time(
        body["next_notice_at"]
            .as_str()
            .expect("a next notice is planned"),
    );
    assert!(
        next >= Utc::now() + chrono::Duration::minutes(55),
        "next_notice_at = {next}"
    );

    let t = &body["ticket"];
    assert_eq!(text(&t["id"]), "7");
    assert_eq!(
        (t["number"].as_str(), t["subject"].as_str()),
        (Some("#7"), Some("Printer on fire"))
    );
    assert_eq!(
        (t["state"].as_str(), t["state_for_customer"].as_str()),
        (Some("open"), Some(WORDING_EN))
    );
    assert_eq!(
        (t["priority"].as_str(), t["queue"].as_str()),
        (Some("normal"), Some("billing"))
    );
    assert_eq!(
        (t["language"].as_str(), t["customer_name"].as_str()),
        (Some("en"), Some("Customer 7"))
    );
    assert_eq!(t["customer_email"], "customer7@example.com");
    assert_eq!(
        parse_time(t["waiting_since"].as_str().expect("waiting_since")),
        parse_time(&waiting_since)
    );
    assert!(t["extra"].is_object(), "ticket.extra is an object");

    let message = &body["message"];
    assert_eq!(message["subject"], "Update on #7: Printer on fire");
    let text_body = message["text"].as_str().expect("message.text");
    assert!(text_body.contains("Notice 1 of 2."), "{text_body}");
    assert!(message["html"].is_null(), "no HTML template, no HTML");
}

#[test]
fn a_webhook_answering_500_then_200_is_delivered_once() {
    let receiver = WebhookReceiver::start(&[500], 200, Duration::ZERO);
    let mut setup = support::Setup::new();
    setup.webhook_channel("hook", receiver.url(), "retry_initial = \"1s\"");
    setup.policy("escalate", &first_notice("5m", "hook"));
    setup.helpdesk().insert(&[Ticket::new(1)]);
    let _daemon = setup.start();

    let notices = setup.wait_for_notices("the notice is sent", |n| {
        n.iter().any(|n| n.status == "sent")
    });
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].attempts, 2);
    setup.assert_stays(Duration::from_secs(2), "no third request", || {
        receiver.requests().len() == 2
    });
    let requests = receiver.requests();
    assert!(
        requests.iter().all(|r| r.verified),
        "every attempt is signed anew"
    );
    assert!(
        requests
            .iter()
            .all(|r| r.header("webhook-id") == notices[0].id),
        "stable webhook-id"
    );
}

#[test]
fn a_webhook_answering_400_is_dead_after_one_attempt() {
    let receiver = WebhookReceiver::start(&[], 400, Duration::ZERO);
    let mut setup = support::Setup::new();
    setup.webhook_channel("hook", receiver.url(), "retry_initial = \"1s\"");
    setup.policy("escalate", &first_notice("5m", "hook"));
    setup.helpdesk().insert(&[Ticket::new(1)]);
    let _daemon = setup.start();

    let notices = setup.wait_for_notices("the notice is dead", |n| {
        n.iter().any(|n| n.status == "dead")
    });
    assert_eq!(notices[0].attempts, 1);
    assert!(notices[0].last_error.is_some(), "the error is recorded");
    setup.assert_stays(Duration::from_secs(3), "no retry", || {
        receiver.requests().len() == 1
    });
}

#[test]
fn a_temporary_smtp_failure_is_retried_until_delivered() {
    let sink = SmtpSink::scripted(
        &[SmtpReply::TempFailData, SmtpReply::TempFailRcpt],
        SmtpReply::Accept,
    );
    let mut setup = support::Setup::new();
    setup.email_channel("mail", sink.port(), "retry_initial = \"1s\"");
    setup.policy("first-notice", &first_notice("5m", "mail"));
    setup.helpdesk().insert(&[Ticket::new(1)]);
    let _daemon = setup.start();

    let notices = setup.wait_for_notices("the notice is sent", |n| {
        n.iter().any(|n| n.status == "sent")
    });
    assert_eq!(notices[0].attempts, 3);
    assert_eq!(sink.mails().len(), 1);
}

#[test]
fn a_permanent_smtp_rejection_makes_the_notice_dead() {
    let sink = SmtpSink::scripted(&[], SmtpReply::RejectRcpt);
    let mut setup = support::Setup::new();
    setup.email_channel("mail", sink.port(), "retry_initial = \"1s\"");
    setup.policy("first-notice", &first_notice("5m", "mail"));
    setup.helpdesk().insert(&[Ticket::new(1)]);
    let _daemon = setup.start();

    let notices = setup.wait_for_notices("the notice is dead", |n| {
        n.iter().any(|n| n.status == "dead")
    });
    assert_eq!(notices[0].attempts, 1);
    setup.assert_stays(Duration::from_secs(3), "no retry", || {
        sink.transactions() == 1
    });
}

#[test]
fn a_notice_waits_for_a_mail_server_that_is_down_and_goes_out_when_it_is_up() {
    let sink = SmtpSink::reserve(&[], SmtpReply::Accept);
    let mut setup = support::Setup::new();
    setup.email_channel("mail", sink.port(), "retry_initial = \"1s\"");
    setup.policy("first-notice", &first_notice("5m", "mail"));
    setup.helpdesk().insert(&[Ticket::new(1)]);
    let _daemon = setup.start();

    setup.wait_for_notices("a failed attempt is recorded", |n| {
        n.iter()
            .any(|n| n.status == "pending" && n.attempts >= 1 && n.last_error.is_some())
    });
    sink.serve();
    let notices = setup.wait_for_notices("the notice is sent", |n| {
        n.iter().any(|n| n.status == "sent")
    });
    assert!(notices[0].attempts >= 2, "{notices:?}");
    assert_eq!(sink.mails().len(), 1);
}

#[test]
fn a_daemon_stopped_and_started_again_sends_no_duplicate() {
    let sink = SmtpSink::start();
    let mut setup = support::Setup::new();
    setup
        .email_channel("mail", sink.port(), "")
        .policy("first-notice", &first_notice("5m", "mail"));
    let helpdesk = setup.helpdesk();
    helpdesk.insert(&[Ticket::new(1), Ticket::new(2), Ticket::new(3)]);

    let mut daemon = setup.start();
    setup.wait_until(SOON, "three notices arrived", || sink.mails().len() == 3);
    let status = daemon.stop();
    assert!(status.success(), "SIGTERM exits 0, got {status}");

    let _daemon = setup.start();
    helpdesk.insert(&[Ticket::new(4)]);
    setup.wait_until(SOON, "the new ticket's notice arrived", || {
        !sink.mails_to(&Ticket::email(4)).is_empty()
    });
    setup.assert_stays(Duration::from_secs(2), "four mails in all", || {
        sink.mails().len() == 4
    });
}

#[test]
fn a_daemon_killed_in_the_middle_of_a_batch_delivers_everything_after_restart() {
    const TICKETS: i64 = 200;
    const CONCURRENCY: usize = 4;
    let receiver = WebhookReceiver::start(&[], 200, Duration::from_millis(50));
    let mut setup = support::Setup::new();
    setup.webhook_channel(
        "hook",
        receiver.url(),
        &format!("concurrency = {CONCURRENCY}"),
    );
    setup.policy("escalate", &first_notice("5m", "hook"));
    let tickets: Vec<_> = (1..=TICKETS).map(Ticket::new).collect();
    setup.helpdesk().insert(&tickets);

    let mut daemon = setup.start();
    setup.wait_until(SOON, "the batch is under way", || {
        receiver.requests().len() >= 40
    });
    daemon.kill9();
    assert!(
        receiver.requests().len() < 200,
        "killed before the batch ended"
    );

    let _daemon = setup.start();
    let all_sent = |n: &[support::Notice]| n.len() == 200 && n.iter().all(|n| n.status == "sent");
    setup.wait_until(Duration::from_secs(60), "every notice is sent", || {
        setup.try_notices().map(|n| all_sent(&n)).unwrap_or(false)
    });

    let requests = receiver.requests();
    assert!(
        requests.iter().all(|r| r.verified),
        "every request is signed"
    );
    let mut ids_by_ticket: HashMap<String, HashSet<String>> = HashMap::new();
    for r in &requests {
        let ids = ids_by_ticket
            .entry(text(&r.body["ticket"]["id"]))
            .or_default();
        ids.insert(r.header("webhook-id"));
    }
    assert_eq!(
        ids_by_ticket.len(),
        200,
        "every ticket reached the receiver"
    );
    assert!(
        ids_by_ticket.values().all(|ids| ids.len() == 1),
        "a duplicate reuses its webhook-id"
    );
    let duplicates = requests.len() - 200;
    assert!(
        duplicates <= CONCURRENCY,
        "{duplicates} duplicates, more than concurrency {CONCURRENCY}"
    );
}

#[test]
fn a_crlf_in_the_subject_cannot_add_a_header() {
    let sink = SmtpSink::start();
    let mut setup = support::Setup::new();
    setup
        .email_channel("mail", sink.port(), "")
        .policy("first-notice", &first_notice("5m", "mail"));
    let subject = "Printer broken\r\nBcc: evil@example.com".to_string();
    setup.helpdesk().insert(&[Ticket {
        subject,
        ..Ticket::new(1)
    }]);
    let _daemon = setup.start();

    setup.wait_until(SOON, "the notice arrived", || sink.mails().len() == 1);
    let mail = &sink.mails()[0];
    let raw = String::from_utf8_lossy(&mail.data);
    assert_eq!(
        mail.headers("Subject").len(),
        1,
        "exactly one Subject header:\n{raw}"
    );
    assert!(mail.headers("Bcc").is_empty(), "no Bcc header:\n{raw}");
    assert_eq!(
        mail.to,
        vec![Ticket::email(1)],
        "no extra envelope recipient"
    );
    assert!(
        mail.subject().contains("evil@example.com"),
        "the text stays inside the subject"
    );
}

#[test]
fn template_syntax_in_ticket_data_is_printed_not_evaluated() {
    let sink = SmtpSink::start();
    let mut setup = support::Setup::new();
    setup
        .email_channel("mail", sink.port(), "")
        .policy("first-notice", &first_notice("5m", "mail"));
    let subject = "{{ 7 * 7 }} {% if true %}x{% endif %}".to_string();
    setup.helpdesk().insert(&[Ticket {
        subject: subject.clone(),
        ..Ticket::new(1)
    }]);
    let _daemon = setup.start();

    setup.wait_until(SOON, "the notice arrived", || sink.mails().len() == 1);
    assert_eq!(
        sink.mails()[0].subject(),
        format!("Update on #1: {subject}")
    );
}

#[test]
fn a_row_with_an_invalid_email_is_skipped_and_the_others_are_sent() {
    let sink = SmtpSink::start();
    let mut setup = support::Setup::new();
    setup
        .email_channel("mail", sink.port(), "")
        .policy("first-notice", &first_notice("5m", "mail"));
    let invalid = Ticket {
        customer_email: "not an address".into(),
        ..Ticket::new(4242)
    };
    setup
        .helpdesk()
        .insert(&[Ticket::new(1), invalid, Ticket::new(3)]);
    let mut daemon = setup.start();

    setup.wait_until(SOON, "two notices arrived", || sink.mails().len() == 2);
    setup.assert_stays(Duration::from_secs(2), "two mails only", || {
        sink.mails().len() == 2
    });
    assert!(
        setup.notices_of(4242).is_empty(),
        "no notice for the invalid row"
    );
    assert!(daemon.is_running(), "the daemon keeps running");
    let log = setup.log_tail(10_000);
    let named = log
        .lines()
        .any(|l| l.contains("4242") && l.contains("customer_email"));
    assert!(named, "a log line names the ticket and the column");
}

#[test]
fn the_daemon_and_the_cli_can_open_a_fresh_store_at_the_same_time() {
    for _ in 0..3 {
        let mut setup = support::Setup::new();
        setup
            .email_channel("mail", support::free_port(), "")
            .policy("first-notice", &first_notice("5m", "mail"));
        setup.helpdesk();
        let mut daemon = setup.spawn_run();
        let out = setup.cli(&["notices", "--format", "json"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "notices beside a starting daemon:\n{stderr}"
        );
        setup.assert_stays(Duration::from_secs(1), "the daemon to keep running", || {
            daemon.is_running()
        });
    }
}
