//! Nothing wrong said to a customer, through the built binary: suppressed
//! recipients (config, file, CLI), the per-recipient limit, the channel
//! rate, and the pre-send re-check of the ticket.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::faults::{HttpFault, ScriptedHttp, ScriptedSmtp, SmtpFault, prometheus_sum};
use support::{Notice, Setup, SmtpSink, Ticket, ago, toml_str};

const SOON: Duration = Duration::from_secs(20);

/// A policy for open tickets, one notice once they waited `after`.
fn first_notice(after: &str, channel: &str) -> String {
    format!(
        "match = {{ state = [\"open\"] }}\nafter = \"{after}\"\nchannel = \"{channel}\"\ntemplate = \"interim\""
    )
}

fn mail_setup(port: u16) -> Setup {
    let mut setup = Setup::new();
    setup
        .email_channel("mail", port, "")
        .policy("first-notice", &first_notice("5m", "mail"));
    setup
}

fn to(id: i64, address: &str) -> Ticket {
    Ticket {
        customer_email: address.into(),
        ..Ticket::new(id)
    }
}

fn metrics_text(setup: &Setup) -> String {
    support::http::get(&setup.admin(), "/metrics")
        .map(|r| r.body)
        .unwrap_or_default()
}

/// `notices --format json` as raw rows by ticket id (for `cancel_reason`).
fn ledger_by_ticket(setup: &Setup) -> BTreeMap<String, Value> {
    let json = setup
        .json(&["notices", "--format", "json"])
        .unwrap_or_else(|e| panic!("{e}"));
    let rows = json.as_array().cloned().unwrap_or_default();
    rows.into_iter()
        .map(|r| (support::text(&r["ticket_id"]), r))
        .collect()
}

fn status_of(notices: &[Notice], ticket: &str) -> Option<(String, u64)> {
    notices
        .iter()
        .find(|n| n.ticket_id == ticket)
        .map(|n| (n.status.clone(), n.attempts))
}

#[derive(serde::Deserialize, Debug, PartialEq)]
struct SuppressionRow {
    address: String,
    source: String,
    reason: String,
}

fn suppressions(setup: &Setup) -> Vec<SuppressionRow> {
    let json = setup
        .json(&["suppress", "list", "--format", "json"])
        .unwrap_or_else(|e| panic!("{e}"));
    serde_json::from_value(json).expect("suppress list --format json rows")
}

// ---------------------------------------------------------------------------
// Suppression
// ---------------------------------------------------------------------------

#[test]
fn config_suppressed_addresses_and_domains_get_status_suppressed_and_are_counted() {
    let sink = SmtpSink::start();
    let mut setup = mail_setup(sink.port());
    setup.toml("[suppress]\naddresses = [\"ceo@example.com\"]\ndomains = [\"blocked.example\"]");
    setup.helpdesk().insert(&[
        to(1, "CEO@Example.com"),
        to(2, "someone@blocked.example"),
        Ticket::new(3),
    ]);
    let _daemon = setup.start();

    setup.wait_for_notices("every notice is done", |n| {
        n.len() == 3 && n.iter().all(|n| n.status != "pending")
    });
    setup.wait_until(SOON, "the metrics count both suppressions", || {
        prometheus_sum(
            &metrics_text(&setup),
            "interim_notices_total",
            &[("status", "suppressed")],
        ) == 2.0
    });
    let suppressed = setup
        .json(&["notices", "--status", "suppressed", "--format", "json"])
        .unwrap_or_else(|e| panic!("{e}"));
    let reasons: BTreeMap<String, String> = suppressed
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| {
            (
                support::text(&r["ticket_id"]),
                support::text(&r["last_error"]),
            )
        })
        .collect();
    assert_eq!(
        reasons.keys().collect::<Vec<_>>(),
        ["1", "2"],
        "notices --status suppressed lists both: {suppressed}"
    );
    assert!(reasons["1"].contains("suppress.addresses"), "{reasons:?}");
    assert!(
        reasons["2"].contains("blocked.example") && reasons["2"].contains("suppress.domains"),
        "{reasons:?}"
    );
    let notices = setup.notices();
    assert_eq!(status_of(&notices, "3").map(|s| s.0), Some("sent".into()));
    setup.assert_stays(Duration::from_secs(1), "one mail, to ticket 3", || {
        sink.mails().len() == 1
    });
    assert_eq!(sink.mails()[0].to, vec![Ticket::email(3)]);
    let listed = suppressions(&setup);
    assert_eq!(
        listed
            .iter()
            .map(|r| (r.address.as_str(), r.source.as_str()))
            .collect::<Vec<_>>(),
        [
            ("ceo@example.com", "config"),
            ("@blocked.example", "config")
        ]
    );
}

#[test]
fn a_suppressed_notice_records_no_delivery_attempt() {
    let sink = SmtpSink::start();
    let mut setup = mail_setup(sink.port());
    setup.toml("[suppress]\naddresses = [\"customer1@example.com\"]");
    setup.helpdesk().insert(&[Ticket::new(1)]);
    let _daemon = setup.start();

    let notices = setup.wait_for_notices("the notice is suppressed", |n| {
        n.len() == 1 && n[0].status == "suppressed"
    });
    assert_eq!(
        notices[0].attempts, 0,
        "nothing was attempted: {:?}",
        notices[0]
    );
    assert_eq!(
        prometheus_sum(
            &metrics_text(&setup),
            "interim_delivery_attempts_total",
            &[]
        ),
        0.0
    );
    assert_eq!(sink.transactions(), 0);
}

#[test]
fn an_address_appended_to_the_suppression_file_while_running_is_suppressed() {
    let sink = SmtpSink::start();
    let mut setup = mail_setup(sink.port());
    let file = setup.path("suppressed.txt");
    std::fs::write(&file, "# bounces, one a line\nold@example.com\n").expect("write the file");
    setup.toml(&format!(
        "[suppress]\nfile = {}",
        toml_str(&file.display().to_string())
    ));
    let helpdesk = setup.helpdesk();
    helpdesk.insert(&[Ticket::new(1)]);
    let _daemon = setup.start();
    setup.wait_until(SOON, "ticket 1's mail arrived", || sink.mails().len() == 1);

    let mut append = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .expect("open the file for appending");
    writeln!(
        append,
        "customer2@example.com\n@blocked.example  # a whole domain"
    )
    .expect("append to the file");
    drop(append);
    helpdesk.insert(&[
        Ticket::new(2),
        to(3, "anyone@blocked.example"),
        Ticket::new(4),
    ]);

    let notices = setup.wait_for_notices("every notice is done", |n| {
        n.len() == 4 && n.iter().all(|n| n.status != "pending")
    });
    let statuses: BTreeMap<&str, &str> = notices
        .iter()
        .map(|n| (n.ticket_id.as_str(), n.status.as_str()))
        .collect();
    assert_eq!(
        statuses,
        BTreeMap::from([
            ("1", "sent"),
            ("2", "suppressed"),
            ("3", "suppressed"),
            ("4", "sent")
        ])
    );
    assert_eq!(sink.mails().len(), 2);
    let from_file: BTreeSet<String> = suppressions(&setup)
        .into_iter()
        .filter(|r| r.source == "file")
        .map(|r| r.address)
        .collect();
    assert_eq!(
        from_file,
        BTreeSet::from([
            "old@example.com".to_string(),
            "customer2@example.com".to_string(),
            "@blocked.example".to_string()
        ])
    );
}

#[test]
fn suppress_add_list_and_remove_through_the_cli() {
    let sink = SmtpSink::start();
    let mut setup = mail_setup(sink.port());
    setup.toml("[suppress]\naddresses = [\"ceo@example.com\"]");
    let helpdesk = setup.helpdesk();
    let _daemon = setup.start();

    let add = setup.cli(&[
        "suppress",
        "add",
        "Customer1@Example.com",
        "--reason",
        "asked us to stop",
    ]);
    assert!(add.status.success(), "{add:?}");
    let domain = setup.cli(&["suppress", "add", "@blocked.example"]);
    assert!(domain.status.success(), "{domain:?}");
    let bad = setup.cli(&["suppress", "add", "not an address"]);
    assert_eq!(bad.status.code(), Some(2), "a usage error: {bad:?}");

    let listed = suppressions(&setup);
    let cli: Vec<(&str, &str)> = listed
        .iter()
        .filter(|r| r.source == "cli")
        .map(|r| (r.address.as_str(), r.reason.as_str()))
        .collect();
    assert_eq!(
        cli,
        [
            ("@blocked.example", "added by an operator"),
            ("customer1@example.com", "asked us to stop")
        ]
    );

    helpdesk.insert(&[Ticket::new(1), to(2, "x@blocked.example")]);
    setup.wait_for_notices("both are suppressed", |n| {
        n.len() == 2 && n.iter().all(|n| n.status == "suppressed")
    });

    let remove = setup.cli(&["suppress", "remove", "customer1@example.com"]);
    assert!(remove.status.success(), "{remove:?}");
    let from_config = setup.cli(&["suppress", "remove", "ceo@example.com"]);
    assert_eq!(
        from_config.status.code(),
        Some(1),
        "a config entry is removed in the config: {from_config:?}"
    );
    assert!(
        !suppressions(&setup)
            .iter()
            .any(|r| r.address == "customer1@example.com"),
        "removed"
    );
    // The same customer's next ticket reaches them again.
    helpdesk.insert(&[Ticket {
        customer_email: Ticket::email(1),
        ..Ticket::new(3)
    }]);
    setup.wait_until(SOON, "the mail to customer 1 arrived", || {
        sink.mails_to(&Ticket::email(1)).len() == 1
    });
    let notices = setup.notices();
    assert_eq!(status_of(&notices, "3"), Some(("sent".into(), 1)));
    assert_eq!(
        status_of(&notices, "1").map(|s| s.0),
        Some("suppressed".into()),
        "a suppressed notice stays suppressed"
    );
}

// ---------------------------------------------------------------------------
// Rate limits
// ---------------------------------------------------------------------------

#[test]
fn the_per_recipient_limit_holds_the_second_notice_until_the_period_passed() {
    let server = ScriptedSmtp::start(&[], SmtpFault::Accept);
    let mut setup = mail_setup(server.port());
    setup.toml("[limits]\nper_recipient = \"4s\"");
    setup.helpdesk().insert(&[
        to(1, "shared@example.com"),
        to(2, "shared@example.com"),
        Ticket::new(3),
    ]);
    let started = Instant::now();
    let _daemon = setup.start();

    setup.wait_for_notices("two notices are sent", |n| {
        n.iter().filter(|n| n.status == "sent").count() == 2
    });
    // The second notice to shared@ waits, pending, without an attempt.
    setup.assert_stays(Duration::from_secs(2), "the second notice is held", || {
        let notices = setup.try_notices().unwrap_or_default();
        let held = notices
            .iter()
            .filter(|n| n.status == "pending" && n.attempts == 0)
            .count();
        server.mails().len() == 2 && held == 1
    });
    setup.wait_until(SOON, "the held notice went out", || {
        server.mails().len() == 3
    });
    let mails = server.mails();
    let times = server.accepted_at();
    let to_shared: Vec<_> = (0..3)
        .filter(|i| mails[*i].to == ["shared@example.com"])
        .map(|i| times[i])
        .collect();
    assert_eq!(to_shared.len(), 2);
    let gap = to_shared[1].duration_since(to_shared[0]);
    assert!(
        gap >= Duration::from_millis(3900),
        "one notice per recipient per 4 s: {gap:?}"
    );
    let other = (0..3)
        .find(|i| mails[*i].to == [Ticket::email(3)])
        .map(|i| times[i])
        .expect("the mail to customer 3");
    assert!(
        other.duration_since(started) < gap,
        "another recipient is not held"
    );
    let notices = setup.wait_for_notices("all sent", |n| {
        n.len() == 3 && n.iter().all(|n| n.status == "sent")
    });
    assert!(notices.iter().all(|n| n.attempts == 1), "{notices:?}");
}

#[test]
fn a_channel_rate_spreads_a_burst_and_drops_nothing() {
    let receiver = ScriptedHttp::start(&[], HttpFault::Status(200));
    let mut setup = Setup::new();
    setup.webhook_channel("hook", receiver.url(), "rate = 2.0");
    setup.policy("escalate", &first_notice("5m", "hook"));
    let tickets: Vec<_> = (1..=6).map(Ticket::new).collect();
    setup.helpdesk().insert(&tickets);
    let _daemon = setup.start();

    setup.wait_until(SOON, "all six arrived", || receiver.count() == 6);
    let hits = receiver.hits();
    let span = hits[5].at.duration_since(hits[0].at);
    assert!(
        span >= Duration::from_millis(2400),
        "6 notices at 2 per second take 2.5 s: {span:?}"
    );
    for pair in hits.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(gap >= Duration::from_millis(400), "spread evenly: {gap:?}");
    }
    let ids: BTreeSet<String> = hits.iter().map(|h| h.header("webhook-id")).collect();
    assert_eq!(ids.len(), 6, "six different notices, none twice");
    let notices = setup.wait_for_notices("all six are sent", |n| {
        n.len() == 6 && n.iter().all(|n| n.status == "sent")
    });
    assert!(
        notices.iter().all(|n| n.attempts == 1),
        "held, not failed: {notices:?}"
    );
}

// ---------------------------------------------------------------------------
// Pre-send re-check
// ---------------------------------------------------------------------------

/// A daemon that polls once an hour, with the re-check query, and tickets
/// 1..=4 whose notices fall due about three seconds after the start.
fn recheck_setup(port: u16, recheck: &str) -> (Setup, support::Helpdesk) {
    let mut setup = Setup::new();
    setup.set("daemon.poll_interval", &toml_str("1h"));
    setup.set("daemon.max_snapshot_age", &toml_str("2h"));
    setup.set("source.recheck_query", &toml_str(recheck));
    setup
        .email_channel("mail", port, "")
        .policy("first-notice", &first_notice("1m", "mail"));
    let tickets: Vec<_> = (1..=4)
        .map(|id| Ticket {
            waiting_since: ago(57),
            ..Ticket::new(id)
        })
        .collect();
    let helpdesk = setup.helpdesk();
    helpdesk.insert(&tickets);
    (setup, helpdesk)
}

#[test]
fn the_recheck_query_cancels_a_notice_whose_ticket_changed_since_the_poll() {
    let sink = SmtpSink::start();
    let recheck = format!("{} AND id = :id", support::TICKET_QUERY);
    let (setup, helpdesk) = recheck_setup(sink.port(), &recheck);
    let _daemon = setup.start();
    setup.wait_for_notices("four notices are planned", |n| {
        n.len() == 4 && n.iter().all(|n| n.status == "pending")
    });

    // Right after the (hourly) poll: an agent closes 1, the customer
    // writes again on 2, and 3 is put on hold (its policy wants "open").
    helpdesk.close(1);
    helpdesk.set(2, "waiting_since", &ago(5));
    helpdesk.set(3, "state", "on_hold");

    setup.wait_until(SOON, "ticket 4's mail arrived", || sink.mails().len() == 1);
    let ledger = setup.wait_for_notices("the other three are cancelled", |n| {
        n.iter().filter(|n| n.status == "cancelled").count() == 3
    });
    setup.assert_stays(Duration::from_secs(2), "one mail only", || {
        sink.mails().len() == 1
    });
    assert_eq!(sink.mails()[0].to, vec![Ticket::email(4)]);
    assert_eq!(status_of(&ledger, "4"), Some(("sent".into(), 1)));
    let rows = ledger_by_ticket(&setup);
    for (ticket, reason) in [
        ("1", "no longer waiting"),
        ("2", "wait restarted"),
        ("3", "no longer matching the policy"),
    ] {
        let row = &rows[ticket];
        assert_eq!(
            (row["status"].as_str(), row["attempts"].as_u64()),
            (Some("cancelled"), Some(0)),
            "ticket {ticket}: {row}"
        );
        let why = support::text(&row["cancel_reason"]);
        assert!(why.contains(reason), "ticket {ticket}: {why}");
    }
}

#[test]
fn sources_test_judges_the_recheck_query_as_the_daemon_does() {
    let cases = [
        (
            format!("{} AND id = :id", support::TICKET_QUERY),
            "still waiting since",
        ),
        // Another state than the poll's: the policy (state = open) no
        // longer matches, and the daemon would cancel every notice.
        (
            "SELECT id, 'on_hold' AS state, waiting_since FROM tickets WHERE id = :id".to_owned(),
            "no policy matches the re-read ticket, though one matched the poll's",
        ),
        (
            "SELECT id, state, updated_at AS waiting_since FROM tickets WHERE id = :id".to_owned(),
            "but the poll read",
        ),
    ];
    for (recheck, verdict) in cases {
        let (setup, helpdesk) = recheck_setup(9, &recheck);
        helpdesk.set(1, "updated_at", &ago(3));
        let out = setup.cli(&["sources", "test"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("recheck_query: re-read ticket") && l.contains(verdict)),
            "{recheck}: {verdict}\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_failing_recheck_query_holds_the_notice_instead_of_sending_it() {
    let sink = SmtpSink::start();
    let recheck = "SELECT id, state, waiting_since, no_such_column FROM tickets WHERE id = :id";
    let (setup, _helpdesk) = recheck_setup(sink.port(), recheck);
    let _daemon = setup.start();

    setup.wait_until(SOON, "the re-check failed", || {
        setup
            .log_tail(usize::MAX)
            .lines()
            .any(|l| l.contains("pre-send re-check failed"))
    });
    setup.assert_stays(Duration::from_secs(2), "nothing is sent", || {
        sink.mails().is_empty()
    });
    let notices = setup.notices();
    assert_eq!(notices.len(), 4);
    assert!(
        notices
            .iter()
            .all(|n| n.status == "pending" && n.attempts == 0),
        "unsure is not sent, and not an attempt: {notices:?}"
    );
}
