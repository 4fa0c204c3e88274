//! Fault injection through the built binary: `kill -9` in the middle of a
//! batch, mail servers and webhook receivers that fail in every way, a
//! source that errs, breaks the column contract, stops mid-poll or is slow,
//! a store that is locked or full, and odd clocks. Every test asserts the
//! exact statuses, attempt counts and deliveries per notice id.
//!
//! The `kill -9` test runs 3 randomized rounds by default (CI). The long run
//! (the issue asks for at least 20 rounds):
//!
//! ```sh
//! INTERIM_FAULT_ROUNDS=20 cargo nextest run --test faults -E 'test(kill_9)' --no-capture
//! ```
//!
//! Every round prints its seed; `INTERIM_FAULT_SEED=N` replays from round seed N.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::thread;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use support::faults::{
    HttpFault, HttpHit, ScriptedHttp, ScriptedSmtp, SmtpFault, TcpProxy, TinyDisk, lock_sqlite,
    prometheus_sum,
};
use support::{Notice, Setup, SmtpSink, Ticket, WEBHOOK_SECRET, WEBHOOK_SECRET_ENV, ago, toml_str};

const SOON: Duration = Duration::from_secs(20);

/// A policy for open tickets, one notice once they waited `after`.
fn first_notice(after: &str, channel: &str) -> String {
    format!(
        "match = {{ state = [\"open\"] }}\nafter = \"{after}\"\nchannel = \"{channel}\"\ntemplate = \"interim\""
    )
}

/// `[channels.hook]`, a signed webhook to `url`; `extra` may set its own `timeout`.
fn hook_channel(setup: &mut Setup, url: &str, extra: &str) {
    setup.env(WEBHOOK_SECRET_ENV, WEBHOOK_SECRET);
    setup.toml(&format!(
        "[channels.hook]\nkind = \"webhook\"\nurl = {}\nsecret_env = \"{WEBHOOK_SECRET_ENV}\"\n{extra}",
        toml_str(url)
    ));
}

fn parse_time(value: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value)
        .unwrap_or_else(|e| panic!("{value:?} is not RFC 3339: {e}"))
        .with_timezone(&Utc)
}

/// Waits until the ledger holds exactly one notice that satisfies `done`.
fn the_notice(setup: &Setup, what: &str, done: impl Fn(&Notice) -> bool) -> Notice {
    let notices = setup.wait_for_notices(what, |n| n.len() == 1 && done(&n[0]));
    notices[0].clone()
}

/// The ledger as raw JSON (for fields the harness's `Notice` leaves out).
fn ledger_json(setup: &Setup) -> Vec<Value> {
    let json = setup
        .json(&["notices", "--format", "json"])
        .unwrap_or_else(|e| panic!("{e}"));
    json.as_array().cloned().unwrap_or_default()
}

fn metrics_text(setup: &Setup) -> String {
    support::http::get(&setup.admin(), "/metrics")
        .map(|r| r.body)
        .unwrap_or_default()
}

/// Lines of the whole daemon log that contain every one of `needles`.
fn log_lines(setup: &Setup, needles: &[&str]) -> Vec<String> {
    let log = setup.log_tail(usize::MAX);
    log.lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .map(str::to_string)
        .collect()
}

fn seconds_between(earlier: Instant, later: Instant) -> f64 {
    later.saturating_duration_since(earlier).as_secs_f64()
}

// ---------------------------------------------------------------------------
// A. kill -9 in the middle of a batch
// ---------------------------------------------------------------------------

const BATCH: i64 = 500;
const CONCURRENCY: usize = 8;

/// What one round of the kill test saw.
struct Round {
    seed: u64,
    delay_ms: u64,
    /// Requests the receiver had when each kill happened.
    marks: Vec<usize>,
    /// Notices re-sent after each kill (they were in flight at it).
    duplicates: Vec<usize>,
}

/// Which daemon life (0 before the first kill) a request arrived in.
fn life_of(index: usize, marks: &[usize]) -> usize {
    marks.iter().filter(|m| **m <= index).count()
}

fn kill_9_round(seed: u64) -> Round {
    let mut rng = StdRng::seed_from_u64(seed);
    let delay_ms = rng.random_range(5..=20);
    let receiver = ScriptedHttp::start(&[], HttpFault::Late(Duration::from_millis(delay_ms), 200));
    let mut setup = Setup::new();
    hook_channel(
        &mut setup,
        receiver.url(),
        &format!("concurrency = {CONCURRENCY}\ntimeout = \"10s\""),
    );
    setup.policy("escalate", &first_notice("5m", "hook"));
    let tickets: Vec<_> = (1..=BATCH).map(Ticket::new).collect();
    setup.helpdesk().insert(&tickets);

    // Kill points: after this many requests reached the receiver. A point
    // at or below the count of the previous life kills the restarted
    // daemon at once, in its start-up or first poll.
    let kills = rng.random_range(1..=3);
    let mut points: Vec<usize> = (0..kills)
        .map(|_| rng.random_range(1..BATCH as usize - 20))
        .collect();
    points.sort_unstable();

    let mut daemon = setup.start();
    let mut marks = Vec::new();
    for point in points {
        let start = Instant::now();
        while receiver.count() < point {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "round {seed}: the batch stalled at {} requests\n{}",
                receiver.count(),
                setup.log_tail(40)
            );
            thread::sleep(Duration::from_millis(2));
        }
        daemon.kill9();
        // Requests the dead process had fully sent still get recorded.
        thread::sleep(Duration::from_millis(150));
        marks.push(receiver.count());
        daemon = setup.spawn_run();
    }
    let all_sent = |n: &[Notice]| n.len() == BATCH as usize && n.iter().all(|n| n.status == "sent");
    setup.wait_until(Duration::from_secs(90), "every notice is sent", || {
        setup.try_notices().map(|n| all_sent(&n)).unwrap_or(false)
    });
    let settled = receiver.count();
    setup.assert_stays(Duration::from_secs(1), "no request after the batch", || {
        receiver.count() == settled
    });
    drop(daemon);

    let notices = setup.notices();
    let hits = receiver.hits();
    assert!(hits.iter().all(|h| h.verified), "every request is signed");
    assert!(
        notices.iter().all(|n| n.attempts == 1),
        "an unrecorded send is not an attempt: {:?}",
        notices
            .iter()
            .filter(|n| n.attempts != 1)
            .collect::<Vec<_>>()
    );
    let mut lives_by_id: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (index, hit) in hits.iter().enumerate() {
        let id = hit.header("webhook-id");
        assert_eq!(
            hit.body["id"],
            Value::String(id.clone()),
            "body id = webhook-id"
        );
        lives_by_id
            .entry(id)
            .or_default()
            .push(life_of(index, &marks));
    }
    let ledger_ids: BTreeSet<&str> = notices.iter().map(|n| n.id.as_str()).collect();
    let delivered: BTreeSet<&str> = lives_by_id.keys().map(String::as_str).collect();
    assert_eq!(
        delivered, ledger_ids,
        "every notice reached the receiver, and nothing else did"
    );
    let mut duplicates = vec![0; marks.len()];
    for (id, lives) in &lives_by_id {
        for pair in lives.windows(2) {
            assert!(
                pair[0] < pair[1],
                "round {seed}: notice {id} was delivered twice by one daemon life {pair:?} (kills at {marks:?})"
            );
            duplicates[pair[0]] += 1;
        }
    }
    for (kill, count) in duplicates.iter().enumerate() {
        assert!(
            *count <= CONCURRENCY,
            "round {seed}: kill {kill} duplicated {count} notices, more than concurrency {CONCURRENCY}"
        );
    }
    Round {
        seed,
        delay_ms,
        marks,
        duplicates,
    }
}

#[test]
fn kill_9_during_a_batch_of_500_loses_nothing_and_duplicates_only_sends_in_flight() {
    let rounds: u64 = std::env::var("INTERIM_FAULT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let first_seed: u64 = std::env::var("INTERIM_FAULT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rand::random::<u32>().into());
    let mut total = 0;
    let mut kills = 0;
    for seed in first_seed..first_seed + rounds {
        let round = kill_9_round(seed);
        println!(
            "kill -9 round seed={} delay={}ms: killed at {:?} requests; duplicates per kill {:?}",
            round.seed, round.delay_ms, round.marks, round.duplicates
        );
        total += round.duplicates.iter().sum::<usize>();
        kills += round.marks.len();
    }
    println!(
        "kill -9: {rounds} rounds, {kills} kills, {total} duplicates in all (at most {CONCURRENCY} per kill allowed)"
    );
}

#[test]
fn kill_9_during_an_email_batch_duplicates_only_sends_in_flight_with_their_message_id() {
    const MAILS: i64 = 200;
    let sink = SmtpSink::start();
    let mut setup = Setup::new();
    setup
        .email_channel("mail", sink.port(), &format!("concurrency = {CONCURRENCY}"))
        .policy("first-notice", &first_notice("5m", "mail"));
    let tickets: Vec<_> = (1..=MAILS).map(Ticket::new).collect();
    setup.helpdesk().insert(&tickets);
    let point = rand::rng().random_range(20..MAILS as usize - 20);

    let mut daemon = setup.start();
    setup.wait_until(Duration::from_secs(60), "the batch is under way", || {
        sink.mails().len() >= point
    });
    daemon.kill9();
    thread::sleep(Duration::from_millis(150));
    let mark = sink.mails().len();
    let _daemon = setup.spawn_run();
    let all_sent = |n: &[Notice]| n.len() == MAILS as usize && n.iter().all(|n| n.status == "sent");
    setup.wait_until(Duration::from_secs(60), "every notice is sent", || {
        setup.try_notices().map(|n| all_sent(&n)).unwrap_or(false)
    });
    let settled = sink.mails().len();
    setup.assert_stays(Duration::from_secs(1), "no mail after the batch", || {
        sink.mails().len() == settled
    });

    let notices = setup.notices();
    let mut by_message_id: BTreeMap<String, Vec<(usize, String)>> = BTreeMap::new();
    for (index, mail) in sink.mails().iter().enumerate() {
        let message_id = mail.header("Message-ID").unwrap_or_default();
        by_message_id
            .entry(message_id)
            .or_default()
            .push((index, mail.to.join(",")));
    }
    let expected: BTreeSet<String> = notices
        .iter()
        .map(|n| format!("<{}@interim.test>", n.id))
        .collect();
    let seen: BTreeSet<String> = by_message_id.keys().cloned().collect();
    assert_eq!(seen, expected, "every notice arrived, under its Message-ID");
    let mut duplicates = 0;
    for (message_id, copies) in &by_message_id {
        assert!(
            copies.iter().all(|(_, to)| *to == copies[0].1),
            "{message_id} went to one recipient"
        );
        if copies.len() > 1 {
            assert_eq!(copies.len(), 2, "{message_id} arrived more than twice");
            assert!(
                copies[0].0 < mark && copies[1].0 >= mark,
                "{message_id}: a duplicate is a send in flight at the kill (mark {mark}): {copies:?}"
            );
            duplicates += 1;
        }
    }
    println!("kill -9 after {mark} of {MAILS} mails: {duplicates} duplicates");
    assert!(
        duplicates <= CONCURRENCY,
        "{duplicates} duplicates, more than concurrency {CONCURRENCY}"
    );
}

// ---------------------------------------------------------------------------
// B. The mail server fails
// ---------------------------------------------------------------------------

fn mail_setup(port: u16, extra: &str) -> Setup {
    let mut setup = Setup::new();
    setup
        .email_channel("mail", port, extra)
        .policy("first-notice", &first_notice("5m", "mail"));
    setup
}

#[test]
fn a_mail_server_that_refuses_connections_is_retried_until_max_attempts() {
    let closed = support::free_port();
    let setup = mail_setup(closed, "retry_initial = \"1s\"\nmax_attempts = 3");
    setup.helpdesk().insert(&[Ticket::new(1)]);
    let _daemon = setup.start();

    let notice = the_notice(&setup, "the notice is dead", |n| n.status == "dead");
    assert_eq!(notice.attempts, 3, "{notice:?}");
    let error = notice.last_error.unwrap_or_default();
    assert!(
        error.contains("max_attempts = 3") && error.to_lowercase().contains("refused"),
        "last_error names the refusal and the limit: {error}"
    );
}

#[test]
fn a_connection_dropped_mid_data_is_retried_and_delivered_once() {
    let server = ScriptedSmtp::start(&[SmtpFault::DropMidData], SmtpFault::Accept);
    let setup = mail_setup(server.port(), "retry_initial = \"1s\"");
    setup.helpdesk().insert(&[Ticket::new(1)]);
    let _daemon = setup.start();

    let notice = the_notice(&setup, "the notice is sent", |n| n.status == "sent");
    assert_eq!(notice.attempts, 2, "{notice:?}");
    assert_eq!(server.dropped_mid_data(), 1);
    setup.assert_stays(Duration::from_secs(2), "one message only", || {
        server.mails().len() == 1
    });
    assert_eq!(server.mails()[0].to, vec![Ticket::email(1)]);
    assert_eq!(
        server.mails()[0].header("Message-ID"),
        Some(format!("<{}@interim.test>", notice.id))
    );
}

#[test]
fn a_421_greeting_and_a_451_at_data_are_retried_until_the_server_recovers() {
    let server = ScriptedSmtp::start(
        &[
            SmtpFault::Greeting("421 4.3.2 Service shutting down"),
            SmtpFault::AtData("451 4.3.0 Temporary failure, try again later"),
        ],
        SmtpFault::Accept,
    );
    let setup = mail_setup(server.port(), "retry_initial = \"1s\"");
    setup.helpdesk().insert(&[Ticket::new(1)]);
    let _daemon = setup.start();

    let notice = the_notice(&setup, "the notice is sent", |n| n.status == "sent");
    assert_eq!(notice.attempts, 3, "{notice:?}");
    assert_eq!(server.mails().len(), 1);
    let connections = server.connections();
    assert_eq!(
        connections[..3],
        [
            SmtpFault::Greeting("421 4.3.2 Service shutting down"),
            SmtpFault::AtData("451 4.3.0 Temporary failure, try again later"),
            SmtpFault::Accept
        ],
        "one connection per attempt"
    );
    let error = notice.last_error.unwrap_or_default();
    assert!(error.contains("451"), "the last failure is kept: {error}");
}

#[derive(serde::Deserialize, Debug)]
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

#[test]
fn a_550_5_1_1_at_rcpt_makes_the_notice_dead_and_suppresses_the_address() {
    let server = ScriptedSmtp::start(
        &[SmtpFault::AtRcpt(
            "550 5.1.1 <customer1@example.com>: Recipient address rejected: User unknown",
        )],
        SmtpFault::Accept,
    );
    let setup = mail_setup(server.port(), "retry_initial = \"1s\"");
    let helpdesk = setup.helpdesk();
    helpdesk.insert(&[Ticket::new(1)]);
    let _daemon = setup.start();

    let dead = the_notice(&setup, "the notice is dead", |n| n.status == "dead");
    assert_eq!(dead.attempts, 1, "{dead:?}");
    assert!(
        dead.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("5.1.1"),
        "{dead:?}"
    );
    let rows = suppressions(&setup);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].address.as_str(), rows[0].source.as_str()),
        ("customer1@example.com", "auto")
    );
    assert!(rows[0].reason.contains("5.1.1"), "{rows:?}");

    // A later ticket of the same customer: suppressed, never offered to the server.
    helpdesk.insert(&[Ticket {
        customer_email: Ticket::email(1),
        ..Ticket::new(2)
    }]);
    let notices = setup.wait_for_notices("the second notice is suppressed", |n| {
        n.iter()
            .any(|n| n.ticket_id == "2" && n.status == "suppressed")
    });
    assert_eq!(notices.len(), 2, "{notices:?}");
    setup.assert_stays(
        Duration::from_secs(2),
        "one SMTP transaction in all",
        || server.transactions() == 1,
    );
    assert!(server.mails().is_empty());
}

#[test]
fn a_plain_550_and_a_5_2_1_at_rcpt_suppress_the_address_too() {
    let server = ScriptedSmtp::start(
        &[
            SmtpFault::AtRcpt("550 mailbox unavailable"),
            SmtpFault::AtRcpt("550 5.2.1 mailbox disabled"),
        ],
        SmtpFault::Accept,
    );
    let setup = mail_setup(server.port(), "retry_initial = \"1s\"\nconcurrency = 1");
    setup.helpdesk().insert(&[Ticket::new(1), Ticket::new(2)]);
    let _daemon = setup.start();

    let notices = setup.wait_for_notices("both notices are dead", |n| {
        n.len() == 2 && n.iter().all(|n| n.status == "dead")
    });
    assert!(notices.iter().all(|n| n.attempts == 1), "{notices:?}");
    let rows = suppressions(&setup);
    let auto: BTreeSet<&str> = rows
        .iter()
        .filter(|r| r.source == "auto")
        .map(|r| r.address.as_str())
        .collect();
    assert_eq!(
        auto,
        BTreeSet::from(["customer1@example.com", "customer2@example.com"]),
        "{rows:?}"
    );
}

#[test]
fn a_550_5_7_1_at_data_makes_the_notice_dead_without_suppressing_the_address() {
    let server = ScriptedSmtp::start(
        &[SmtpFault::AtData("550 5.7.1 Message rejected as spam")],
        SmtpFault::Accept,
    );
    let setup = mail_setup(server.port(), "retry_initial = \"1s\"");
    let helpdesk = setup.helpdesk();
    helpdesk.insert(&[Ticket::new(1)]);
    let _daemon = setup.start();

    let dead = the_notice(&setup, "the notice is dead", |n| n.status == "dead");
    assert_eq!(dead.attempts, 1, "{dead:?}");
    assert!(
        dead.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("5.7.1"),
        "{dead:?}"
    );
    assert!(
        suppressions(&setup).is_empty(),
        "a rejected message is no rejected address"
    );

    helpdesk.insert(&[Ticket {
        customer_email: Ticket::email(1),
        ..Ticket::new(2)
    }]);
    let notices = setup.wait_for_notices("the same customer's next notice is sent", |n| {
        n.iter().any(|n| n.ticket_id == "2" && n.status == "sent")
    });
    let second: Vec<_> = notices.iter().filter(|n| n.ticket_id == "2").collect();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].attempts, 1);
    assert_eq!(server.mails().len(), 1);
}

#[test]
fn a_mail_server_that_never_answers_is_retried_after_the_channel_timeout() {
    let server = ScriptedSmtp::start(&[SmtpFault::Silent], SmtpFault::Accept);
    let setup = mail_setup(server.port(), "timeout = \"2s\"\nretry_initial = \"1s\"");
    setup.helpdesk().insert(&[Ticket::new(1)]);
    let started = Instant::now();
    let _daemon = setup.start();

    let notice = the_notice(&setup, "the notice is sent", |n| n.status == "sent");
    let took = started.elapsed();
    assert_eq!(notice.attempts, 2, "{notice:?}");
    assert_eq!(
        server.connections()[..2],
        [SmtpFault::Silent, SmtpFault::Accept]
    );
    assert!(
        took >= Duration::from_secs(2),
        "the first attempt waited for the timeout: {took:?}"
    );
    let error = notice.last_error.unwrap_or_default().to_lowercase();
    assert!(
        error.contains("timed out") || error.contains("timeout"),
        "{error}"
    );
    assert_eq!(server.mails().len(), 1);
}

// ---------------------------------------------------------------------------
// C. The webhook receiver fails
// ---------------------------------------------------------------------------

fn hook_setup(receiver: &ScriptedHttp, extra: &str) -> Setup {
    let mut setup = Setup::new();
    hook_channel(&mut setup, receiver.url(), extra);
    setup.policy("escalate", &first_notice("5m", "hook"));
    setup.helpdesk().insert(&[Ticket::new(1)]);
    setup
}

/// Every request carried the notice's id and a valid signature.
fn assert_same_notice(hits: &[HttpHit], notice: &Notice) {
    for hit in hits {
        assert_eq!(hit.header("webhook-id"), notice.id, "stable webhook-id");
        assert!(hit.verified, "each attempt is signed anew");
    }
}

#[test]
fn webhook_500_and_429_are_retried_until_a_2xx() {
    let receiver = ScriptedHttp::start(
        &[HttpFault::Status(500), HttpFault::Status(429)],
        HttpFault::Status(200),
    );
    let setup = hook_setup(&receiver, "retry_initial = \"1s\"");
    let _daemon = setup.start();

    let notice = the_notice(&setup, "the notice is sent", |n| n.status == "sent");
    assert_eq!(notice.attempts, 3, "{notice:?}");
    setup.assert_stays(Duration::from_secs(2), "three requests in all", || {
        receiver.count() == 3
    });
    assert_same_notice(&receiver.hits(), &notice);
}

#[test]
fn webhook_503_with_retry_after_is_retried_no_sooner_than_it_says() {
    let receiver = ScriptedHttp::start(
        &[HttpFault::StatusWith(503, "Retry-After", "3")],
        HttpFault::Status(200),
    );
    let setup = hook_setup(&receiver, "retry_initial = \"100ms\"");
    let _daemon = setup.start();

    setup.wait_until(SOON, "the first attempt failed", || {
        ledger_json(&setup)
            .first()
            .is_some_and(|n| n["attempts"] == 1)
    });
    let pending = ledger_json(&setup).remove(0);
    assert_eq!(pending["status"], "pending");
    let first_at = DateTime::<Utc>::from(receiver.hits()[0].wall);
    let planned_gap =
        parse_time(pending["next_attempt_at"].as_str().unwrap_or_default()) - first_at;
    assert!(
        planned_gap >= chrono::Duration::milliseconds(2900),
        "the ledger plans the retry 3 s after the refused attempt, not 100 ms: {pending}"
    );

    let notice = the_notice(&setup, "the notice is sent", |n| n.status == "sent");
    assert_eq!(notice.attempts, 2);
    let hits = receiver.hits();
    assert_eq!(hits.len(), 2);
    let gap = seconds_between(hits[0].at, hits[1].at);
    assert!(
        (3.0..6.0).contains(&gap),
        "Retry-After: 3 honoured (retry_initial is 100ms): {gap:.2} s"
    );
    assert_same_notice(&hits, &notice);
}

#[test]
fn a_retry_after_beyond_retry_max_waits_retry_max() {
    let receiver = ScriptedHttp::start(
        &[HttpFault::StatusWith(503, "Retry-After", "3600")],
        HttpFault::Status(200),
    );
    let setup = hook_setup(&receiver, "retry_initial = \"100ms\"\nretry_max = \"2s\"");
    let _daemon = setup.start();

    let notice = the_notice(&setup, "the notice is sent", |n| n.status == "sent");
    assert_eq!(notice.attempts, 2);
    let hits = receiver.hits();
    let gap = seconds_between(hits[0].at, hits[1].at);
    assert!(
        (1.9..5.0).contains(&gap),
        "Retry-After is honoured up to retry_max = 2s: {gap:.2} s"
    );
}

#[test]
fn webhook_410_is_dead_after_one_attempt_and_reported_as_gone() {
    let receiver = ScriptedHttp::start(&[], HttpFault::Status(410));
    let setup = hook_setup(&receiver, "retry_initial = \"1s\"");
    let _daemon = setup.start();

    let notice = the_notice(&setup, "the notice is dead", |n| n.status == "dead");
    assert_eq!(notice.attempts, 1);
    setup.assert_stays(Duration::from_secs(2), "no retry", || receiver.count() == 1);
    let gone = log_lines(&setup, &["endpoint is gone"]);
    assert_eq!(gone.len(), 1, "one error line says the endpoint is gone");
    assert!(gone[0].contains("ERROR"), "{}", gone[0]);
    let metrics = metrics_text(&setup);
    assert_eq!(
        prometheus_sum(
            &metrics,
            "interim_webhook_gone_total",
            &[("channel", "hook")]
        ),
        1.0,
        "{metrics}"
    );
}

#[test]
fn a_webhook_that_hangs_is_retried_after_the_timeout() {
    let receiver = ScriptedHttp::start(&[HttpFault::Hang], HttpFault::Status(200));
    let setup = hook_setup(&receiver, "timeout = \"1s\"\nretry_initial = \"1s\"");
    let _daemon = setup.start();

    let notice = the_notice(&setup, "the notice is sent", |n| n.status == "sent");
    assert_eq!(notice.attempts, 2);
    let hits = receiver.hits();
    assert_eq!(hits.len(), 2);
    assert!(
        seconds_between(hits[0].at, hits[1].at) >= 1.0,
        "the retry came after the 1 s timeout and the backoff"
    );
    let error = notice.last_error.clone().unwrap_or_default();
    assert!(error.contains("timed out after 1s"), "{error}");
    assert_same_notice(&hits, &notice);
}

#[test]
fn a_connection_closed_without_an_answer_is_retried() {
    let receiver = ScriptedHttp::start(&[HttpFault::Reset], HttpFault::Status(200));
    let setup = hook_setup(&receiver, "retry_initial = \"1s\"");
    let _daemon = setup.start();

    let notice = the_notice(&setup, "the notice is sent", |n| n.status == "sent");
    assert_eq!(notice.attempts, 2);
    setup.assert_stays(Duration::from_secs(1), "two requests in all", || {
        receiver.count() == 2
    });
    assert!(
        notice.last_error.is_some(),
        "the failed attempt is recorded"
    );
    assert_same_notice(&receiver.hits(), &notice);
}

#[test]
fn a_2xx_after_30_s_counts_as_a_timeout_and_the_retry_carries_the_same_webhook_id() {
    let receiver = ScriptedHttp::start(
        &[HttpFault::Late(Duration::from_secs(30), 200)],
        HttpFault::Status(200),
    );
    let setup = hook_setup(&receiver, "timeout = \"2s\"\nretry_initial = \"1s\"");
    let _daemon = setup.start();

    let notice = the_notice(&setup, "the notice is sent", |n| n.status == "sent");
    assert_eq!(notice.attempts, 2, "the late 200 did not count");
    let hits = receiver.hits();
    assert_eq!(hits.len(), 2, "the receiver saw the notice twice");
    assert_eq!(hits[0].fault, HttpFault::Late(Duration::from_secs(30), 200));
    assert_same_notice(&hits, &notice);
    let error = notice.last_error.unwrap_or_default();
    assert!(error.contains("timed out after 2s"), "{error}");
}

// ---------------------------------------------------------------------------
// D. The source fails
// ---------------------------------------------------------------------------

#[test]
fn a_failing_source_query_keeps_the_plan_and_the_daemon_up() {
    let sink = SmtpSink::start();
    let mut setup = Setup::new();
    setup
        .email_channel("mail", sink.port(), "")
        .policy("first-notice", &first_notice("1h", "mail"));
    let helpdesk = setup.helpdesk();
    helpdesk.insert(&[Ticket::new(1), Ticket::new(2)]);
    let mut daemon = setup.start();
    let pending = |n: &[Notice]| n.len() == 2 && n.iter().all(|n| n.status == "pending");
    setup.wait_for_notices("both notices are planned", pending);

    helpdesk.execute("ALTER TABLE tickets RENAME TO tickets_moved");
    setup.wait_until(SOON, "a poll failed", || {
        !log_lines(&setup, &["poll failed", "no such table"]).is_empty()
    });
    setup.assert_stays(Duration::from_secs(3), "both notices stay pending", || {
        setup.try_notices().map(|n| pending(&n)).unwrap_or(false)
    });
    assert!(daemon.is_running(), "the daemon stays up");
    let failures = prometheus_sum(
        &metrics_text(&setup),
        "interim_source_poll_failures_total",
        &[],
    );
    assert!(failures >= 2.0, "every failed poll counts: {failures}");

    helpdesk.execute("ALTER TABLE tickets_moved RENAME TO tickets");
    let restored = Utc::now().timestamp() as f64;
    setup.wait_until(SOON, "polls succeed again", || {
        prometheus_sum(
            &metrics_text(&setup),
            "interim_source_last_success_timestamp_seconds",
            &[],
        ) >= restored
    });
    assert!(pending(&setup.notices()), "nothing was cancelled");
    assert!(sink.mails().is_empty());
}

#[test]
fn rows_that_break_the_contract_are_skipped_with_one_log_line_each_and_the_others_are_sent() {
    let sink = SmtpSink::start();
    let mut setup = Setup::new();
    let query = support::TICKET_QUERY.replacen("SELECT id,", "SELECT NULLIF(id, 2) AS id,", 1);
    setup.set("source.query", &toml_str(&query));
    // Three of five rows are broken here on purpose: above the default
    // share that rejects a poll as a broken query.
    setup.set("source.max_skipped_share", "0.8");
    setup
        .email_channel("mail", sink.port(), "")
        .policy("first-notice", &first_notice("5m", "mail"));
    setup.helpdesk().insert(&[
        Ticket::new(1),
        Ticket::new(2),
        Ticket {
            waiting_since: "last Tuesday".into(),
            ..Ticket::new(3)
        },
        Ticket {
            waiting_since: "2026-13-45 99:99:99".into(),
            ..Ticket::new(4)
        },
        Ticket::new(5),
    ]);
    let mut daemon = setup.start();

    setup.wait_until(SOON, "two notices arrived", || sink.mails().len() == 2);
    // Several polls later, still one line per bad row.
    thread::sleep(Duration::from_secs(3));
    let mut recipients: Vec<String> = sink.mails().iter().map(|m| m.to.join(",")).collect();
    recipients.sort();
    assert_eq!(recipients, vec![Ticket::email(1), Ticket::email(5)]);
    let tickets: BTreeSet<String> = setup.notices().into_iter().map(|n| n.ticket_id).collect();
    assert_eq!(tickets, BTreeSet::from(["1".to_string(), "5".to_string()]));
    for needle in [
        "ticket (no id): column id",
        "ticket 3: column waiting_since",
        "ticket 4: column waiting_since",
    ] {
        let lines = log_lines(&setup, &[needle]);
        assert_eq!(lines.len(), 1, "one log line for {needle:?}: {lines:#?}");
    }
    let skipped = prometheus_sum(
        &metrics_text(&setup),
        "interim_source_rows_skipped_total",
        &[],
    );
    assert!(skipped >= 3.0, "skipped rows are counted: {skipped}");
    assert!(daemon.is_running());
}

/// `WHERE` clause that keeps SQLite busy for about two seconds per poll.
const SLOW_FILTER: &str = "(WITH RECURSIVE busy(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM busy WHERE x < 8000000) \
     SELECT max(x) FROM busy) > 0";

#[test]
fn a_source_query_slower_than_the_poll_interval_never_overlaps() {
    let sink = SmtpSink::start();
    let mut setup = Setup::new();
    let query = format!("{} AND {SLOW_FILTER}", support::TICKET_QUERY);
    setup.set("source.query", &toml_str(&query));
    setup.set("daemon.poll_interval", &toml_str("1s"));
    setup
        .email_channel("mail", sink.port(), "")
        .policy("first-notice", &first_notice("5m", "mail"));
    setup.helpdesk().insert(&[Ticket::new(1)]);
    let started = Instant::now();
    let _daemon = setup.start();

    setup.wait_until(SOON, "the notice arrived", || sink.mails().len() == 1);
    // However loaded the machine, wait for three finished polls, not for a
    // fixed time: each one takes longer than the interval by design.
    let polls = || {
        prometheus_sum(
            &metrics_text(&setup),
            "interim_source_poll_duration_seconds_count",
            &[],
        )
    };
    setup.wait_until(Duration::from_secs(120), "three polls finished", || {
        polls() >= 3.0
    });
    let text = metrics_text(&setup);
    let elapsed = started.elapsed().as_secs_f64();
    let count = prometheus_sum(&text, "interim_source_poll_duration_seconds_count", &[]);
    let sum = prometheus_sum(&text, "interim_source_poll_duration_seconds_sum", &[]);
    println!("{count} polls took {sum:.2} s in all within {elapsed:.2} s");
    assert!(count >= 3.0, "several polls ran: {count}");
    assert!(
        sum / count > 1.0,
        "each poll took longer than poll_interval (the premise): {:.2} s on average",
        sum / count
    );
    assert!(
        sum <= elapsed,
        "polls never overlap: {sum:.2} s of polling within {elapsed:.2} s"
    );
    assert_eq!(sink.mails().len(), 1, "one notice, however slow the polls");
}

#[test]
fn a_postgres_source_stopped_mid_poll_fails_that_poll_only() {
    let Some(db) = support::postgres::PgDatabase::create() else {
        return;
    };
    db.execute(&format!(
        "CREATE TABLE tickets (id BIGINT PRIMARY KEY, state TEXT, customer_email TEXT, waiting_since TIMESTAMPTZ);
         INSERT INTO tickets VALUES (1, 'open', 'customer1@example.com', '{}'),
                                    (2, 'open', 'customer2@example.com', '{}')",
        ago(600),
        ago(600)
    ));
    let target = db
        .url
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("host:port in INTERIM_TEST_POSTGRES_URL");
    let target: std::net::SocketAddr = target
        .replace("localhost", "127.0.0.1")
        .parse()
        .expect("INTERIM_TEST_POSTGRES_URL names 127.0.0.1:PORT");
    let proxy = TcpProxy::start(target);
    let proxied = db.url.replacen(
        &target.to_string(),
        &format!("127.0.0.1:{}", proxy.port()),
        1,
    );
    let sink = SmtpSink::start();
    let mut setup = Setup::new();
    setup.set("source.url", &toml_str(&proxied));
    // Each poll sleeps a second inside the server, so a cut lands mid-poll.
    setup.set(
        "source.query",
        &toml_str(
            "SELECT t.id, t.state, t.customer_email, t.waiting_since \
             FROM tickets t, (SELECT pg_sleep(1)) AS pause WHERE t.state = 'open'",
        ),
    );
    setup
        .email_channel("mail", sink.port(), "")
        .policy("first-notice", &first_notice("1h", "mail"));
    let mut daemon = setup.start();
    let pending = |n: &[Notice]| n.len() == 2 && n.iter().all(|n| n.status == "pending");
    setup.wait_for_notices("both notices are planned", pending);

    thread::sleep(Duration::from_millis(1500));
    proxy.cut();
    setup.wait_until(SOON, "the cut poll failed", || {
        !log_lines(&setup, &["poll failed"]).is_empty()
    });
    setup.assert_stays(Duration::from_secs(2), "both notices stay pending", || {
        setup.try_notices().map(|n| pending(&n)).unwrap_or(false)
    });
    proxy.restore();
    let restored = Utc::now().timestamp() as f64;
    setup.wait_until(SOON, "polls succeed again", || {
        prometheus_sum(
            &metrics_text(&setup),
            "interim_source_last_success_timestamp_seconds",
            &[],
        ) >= restored
    });
    assert!(daemon.is_running(), "the daemon stays up");
    assert!(pending(&setup.notices()), "nothing was cancelled");
}

// ---------------------------------------------------------------------------
// E. The store fails
// ---------------------------------------------------------------------------

/// Tickets 1..=n whose first notice falls due about `secs` seconds from now
/// (policy `after = "1m"`), delivered to a scripted webhook through a
/// channel with the `channel` settings.
fn due_soon(setup: &mut Setup, receiver: &ScriptedHttp, n: i64, secs: i64, channel: &str) {
    hook_channel(setup, receiver.url(), channel);
    setup.policy("escalate", &first_notice("1m", "hook"));
    let tickets: Vec<_> = (1..=n)
        .map(|id| Ticket {
            waiting_since: ago(60 - secs),
            ..Ticket::new(id)
        })
        .collect();
    setup.helpdesk().insert(&tickets);
}

/// Every notice sent exactly once, and each delivered exactly once.
fn assert_each_delivered_once(setup: &Setup, receiver: &ScriptedHttp, n: usize) {
    let notices = setup.notices();
    assert_eq!(notices.len(), n);
    assert!(
        notices
            .iter()
            .all(|n| n.status == "sent" && n.attempts == 1),
        "{notices:?}"
    );
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for hit in receiver.hits() {
        *per_id.entry(hit.header("webhook-id")).or_default() += 1;
    }
    for notice in &notices {
        assert_eq!(
            per_id.get(&notice.id),
            Some(&1),
            "notice {} delivered exactly once",
            notice.id
        );
    }
    assert_eq!(per_id.len(), n, "nothing else was delivered");
}

#[test]
fn a_store_locked_by_another_process_holds_sends_until_it_is_free() {
    let receiver = ScriptedHttp::start(&[], HttpFault::Status(200));
    let mut setup = Setup::new();
    due_soon(&mut setup, &receiver, 5, 3, "timeout = \"5s\"");
    let _daemon = setup.start();
    setup.wait_for_notices("five notices are planned", |n| {
        n.len() == 5 && n.iter().all(|n| n.status == "pending")
    });

    let hold = Duration::from_secs(5);
    let lock = lock_sqlite(&setup.path("interim.db"), hold);
    let locked_at = Instant::now();
    setup.assert_stays(
        hold - Duration::from_millis(500),
        "nothing is sent while the store is locked",
        || receiver.count() == 0,
    );
    lock.join().expect("the lock thread ends");
    let unlocked_at = Instant::now();
    setup.wait_until(SOON, "all five arrived", || receiver.count() == 5);
    assert!(
        receiver
            .hits()
            .iter()
            .all(|h| h.at >= unlocked_at - Duration::from_millis(300)),
        "every send waited for the lock ({:.1} s held)",
        seconds_between(locked_at, unlocked_at)
    );
    setup.assert_stays(Duration::from_secs(1), "no duplicate", || {
        receiver.count() == 5
    });
    assert_each_delivered_once(&setup, &receiver, 5);
}

#[test]
fn a_full_disk_stops_sends_until_space_returns_and_sends_nothing_twice() {
    let receiver = ScriptedHttp::start(&[], HttpFault::Status(200));
    let mut setup = Setup::new();
    // A tmpfs needs root (CAP_SYS_ADMIN); without it this test only says why
    // it did not run (a loop device or a FUSE file system need the same).
    let disk = match TinyDisk::mount(&setup.path("disk"), "8m") {
        Ok(disk) => disk,
        Err(reason) => {
            support::skip_or_fail(&format!("cannot mount a tiny file system: {reason}"));
            return;
        }
    };
    let store = setup.path("disk").join("interim.db");
    setup.set(
        "store.url",
        &toml_str(&format!("sqlite://{}", store.display())),
    );
    // A short lease: a claim whose result was never recorded would be
    // taken again (and sent twice) within the test.
    setup.set("store.claim_lease", &toml_str("3s"));
    due_soon(
        &mut setup,
        &receiver,
        20,
        3,
        "timeout = \"2s\"\nconcurrency = 2",
    );
    let _daemon = setup.start();
    setup.wait_for_notices("twenty notices are planned", |n| {
        n.len() == 20 && n.iter().all(|n| n.status == "pending")
    });

    let filled = disk.fill();
    println!("filled the store's file system with {filled} bytes");
    // SQLite can still commit a small write into WAL space a failed larger
    // one left behind, so a claim may get through; but a send whose result
    // cannot be recorded must hold its slot: at most `concurrency` sends.
    thread::sleep(Duration::from_secs(6));
    let while_full = receiver.count();
    assert!(
        while_full <= 2,
        "{while_full} notices were sent while their results could not be recorded"
    );
    disk.free();
    setup.wait_for_notices("all twenty are sent", |n| {
        n.len() == 20 && n.iter().all(|n| n.status == "sent")
    });
    // Longer than the lease: an unrecorded claim would come back now.
    setup.assert_stays(Duration::from_secs(4), "twenty requests in all", || {
        receiver.count() == 20
    });
    assert_each_delivered_once(&setup, &receiver, 20);
}

// ---------------------------------------------------------------------------
// F. Clocks
// ---------------------------------------------------------------------------

#[test]
fn a_waiting_since_in_the_future_gets_its_notice_only_after_it_passed() {
    let sink = SmtpSink::start();
    let mut setup = Setup::new();
    setup
        .email_channel("mail", sink.port(), "")
        .policy("first-notice", &first_notice("1s", "mail"));
    let waiting_since = ago(-4);
    setup.helpdesk().insert(&[Ticket {
        waiting_since: waiting_since.clone(),
        ..Ticket::new(1)
    }]);
    let _daemon = setup.start();

    let due = parse_time(&waiting_since) + chrono::Duration::seconds(1);
    let planned = setup.wait_for_notices("the notice is planned", |n| n.len() == 1);
    assert_eq!(planned[0].status, "pending");
    assert_eq!(
        parse_time(planned[0].due_at.as_deref().unwrap_or_default()),
        due
    );
    setup.wait_until(SOON, "the wait began and passed the threshold", || {
        assert!(
            Utc::now() >= due - chrono::Duration::milliseconds(50) || sink.mails().is_empty(),
            "a notice went out before waiting_since + after"
        );
        !sink.mails().is_empty()
    });
    setup.assert_stays(Duration::from_secs(2), "exactly one mail", || {
        sink.mails().len() == 1
    });
    let sent = setup.notices();
    let sent_at = parse_time(sent[0].sent_at.as_deref().expect("sent_at"));
    assert!(sent_at >= due, "sent {sent_at}, due {due}");
}

#[test]
fn a_waiting_since_in_1970_gets_one_notice_not_a_burst() {
    let sink = SmtpSink::start();
    let mut setup = Setup::new();
    let policy = first_notice("1m", "mail") + "\nrepeat_every = \"1h\"\nmax_notices = 3";
    setup
        .email_channel("mail", sink.port(), "")
        .policy("repeating", &policy);
    setup.helpdesk().insert(&[Ticket {
        waiting_since: "1970-01-01T00:00:00Z".into(),
        ..Ticket::new(1)
    }]);
    let _daemon = setup.start();

    setup.wait_until(SOON, "the overdue notice arrived", || {
        !sink.mails().is_empty()
    });
    setup.assert_stays(Duration::from_secs(3), "one mail, not three", || {
        sink.mails().len() == 1
    });
    let notices = setup.notices();
    assert_eq!(notices.len(), 2, "{notices:?}");
    let (first, second) = (&notices[0], &notices[1]);
    assert_eq!((first.number, first.status.as_str()), (1, "sent"));
    assert_eq!(first.due_at.as_deref(), Some("1970-01-01T00:01:00Z"));
    assert_eq!((second.number, second.status.as_str()), (2, "pending"));
    let sent_at = parse_time(first.sent_at.as_deref().expect("sent_at"));
    let next_due = parse_time(second.due_at.as_deref().expect("due_at"));
    let gap = next_due - sent_at;
    assert!(
        gap > chrono::Duration::minutes(59) && gap <= chrono::Duration::hours(1),
        "the next notice waits repeat_every after the sent one: {gap}"
    );
}

#[test]
fn a_null_waiting_since_means_not_waiting_no_notice_and_no_error() {
    let sink = SmtpSink::start();
    let mut setup = Setup::new();
    setup
        .email_channel("mail", sink.port(), "")
        .policy("first-notice", &first_notice("5m", "mail"));
    let helpdesk = setup.helpdesk();
    helpdesk.insert(&[Ticket::new(1), Ticket::new(2)]);
    helpdesk.execute("UPDATE tickets SET waiting_since = NULL WHERE id = 2");
    let _daemon = setup.start();

    setup.wait_until(SOON, "ticket 1's notice arrived", || {
        sink.mails().len() == 1
    });
    setup.assert_stays(Duration::from_secs(2), "no mail for ticket 2", || {
        sink.mails().len() == 1
    });
    assert!(setup.notices_of(2).is_empty(), "no ledger row for ticket 2");
    let complaints: Vec<String> = setup
        .log_tail(usize::MAX)
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .map(str::to_string)
        .collect();
    assert!(
        complaints.is_empty(),
        "no warning or error: {complaints:#?}"
    );
}

// The system clock stepping back is not tested through the binary: the
// daemon reads the machine's wall clock, and stepping that back needs
// CAP_SYS_TIME, changes the clock of every other test and process running
// at the same time, and cannot be restored exactly afterwards (libfaketime
// is not available either). The library takes `now` as an argument where
// it matters (planner, store, dispatcher), so the step is simulated there.

mod clock {
    use super::*;
    use interim::notice::Status;
    use interim::store::Store;
    use interim::ticket::Ticket as SourceTicket;

    /// A config whose policy sends through a JSON file outbox.
    pub fn outbox_config(setup: &mut Setup) -> interim::setup::Config {
        let outbox = setup.path("outbox").display().to_string();
        setup.toml(&format!(
            "[channels.outbox]\nkind = \"file\"\npath = {}\nformat = \"json\"",
            toml_str(&outbox)
        ));
        let policy = first_notice("1m", "outbox") + "\nrepeat_every = \"10m\"\nmax_notices = 3";
        setup.policy("repeating", &policy);
        interim::setup::load(&setup.write_config()).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn ticket(waiting_since: DateTime<Utc>) -> SourceTicket {
        SourceTicket {
            number: None,
            subject: None,
            customer_email: Some("customer1@example.com".into()),
            ..support::ledger::ticket("1", waiting_since)
        }
    }

    /// One poll at `now`: plan from the ledger and apply.
    pub async fn poll(
        store: &Store,
        config: &interim::setup::Config,
        tickets: &[SourceTicket],
        now: DateTime<Utc>,
    ) -> interim::planner::Plan {
        support::ledger::full_poll(store, &config.settings, tickets, now)
            .await
            .plan
    }

    pub fn at(text: &str) -> DateTime<Utc> {
        parse_time(text)
    }

    pub const LEASE: Duration = Duration::from_secs(30);

    pub async fn claim(store: &Store, now: DateTime<Utc>) -> Vec<interim::store::ClaimedNotice> {
        store
            .claim_due("outbox", false, now, 8, LEASE, "test")
            .await
            .expect("claim")
    }

    pub async fn statuses(store: &Store) -> Vec<(u32, Status)> {
        let rows = store
            .list(&interim::store::NoticeFilter::default())
            .await
            .expect("list notices");
        rows.iter().map(|r| (r.number, r.status)).collect()
    }
}

#[test]
fn the_clock_stepping_back_an_hour_between_polls_sends_nothing_twice_and_loses_nothing() {
    use clock::*;
    use interim::notice::Status;
    let mut setup = Setup::new();
    let config = outbox_config(&mut setup);
    support::block_on(async {
        let store = interim::store::Store::open(&config.settings.store.url)
            .await
            .expect("open the store");
        let t = at("2026-03-02T10:00:00Z");
        let tickets = [ticket(t - chrono::Duration::minutes(30))];

        // At T: notice 1 is overdue, claimed and sent.
        poll(&store, &config, &tickets, t).await;
        let claimed = claim(&store, t).await;
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].number, 1);
        support::ledger::record(&store, &claimed[0], Status::Sent, t).await;
        poll(&store, &config, &tickets, t).await;
        let ten_past = t + chrono::Duration::minutes(10);

        // The clock steps back an hour; polls and dispatches go on.
        for minutes in [0, 1, 30, 59] {
            let now = t - chrono::Duration::hours(1) + chrono::Duration::minutes(minutes);
            let plan = poll(&store, &config, &tickets, now).await;
            assert!(
                plan.upserts
                    .iter()
                    .all(|n| n.number == 2 && n.due_at == ten_past),
                "notice 1 is never planned again, notice 2 stays at T+10m: {:?}",
                plan.upserts
            );
            assert!(
                claim(&store, now).await.is_empty(),
                "nothing is due at {now}"
            );
        }
        assert_eq!(
            statuses(&store).await,
            vec![(1, Status::Sent), (2, Status::Pending)]
        );

        // Time catches up: notice 2 goes out once, at T+10m.
        poll(&store, &config, &tickets, ten_past).await;
        let second = claim(&store, ten_past).await;
        assert_eq!(second.len(), 1, "notice 2 is not lost");
        assert_eq!(second[0].number, 2);
        // A claim taken at T+10m, then the clock steps back again: the
        // claim is not handed out a second time.
        let back = ten_past - chrono::Duration::hours(1);
        assert!(claim(&store, back).await.is_empty());
        assert!(claim(&store, ten_past).await.is_empty());
        support::ledger::record(&store, &second[0], Status::Sent, ten_past).await;
        poll(&store, &config, &tickets, ten_past).await;
        assert_eq!(
            statuses(&store).await,
            vec![(1, Status::Sent), (2, Status::Sent), (3, Status::Pending)]
        );
        store.close().await;
    });
}

#[test]
fn after_the_clock_stepped_back_a_last_poll_in_the_future_is_not_fresh() {
    use clock::*;
    let mut setup = Setup::new();
    setup.set("daemon.max_snapshot_age", &toml_str("5m"));
    let config = outbox_config(&mut setup);
    let outbox = setup.path("outbox");
    support::block_on(async {
        let store = interim::store::Store::open(&config.settings.store.url)
            .await
            .expect("open the store");
        let now = Utc::now();
        let tickets = [ticket(now - chrono::Duration::minutes(30))];
        // The last successful poll was recorded by a clock one hour ahead;
        // then the clock stepped back, and the source has not answered
        // since: 50 minutes of real time later the snapshot is that old.
        poll(&store, &config, &tickets, now + chrono::Duration::hours(1)).await;
        let channels = interim::channels::build(&config.settings).expect("channels");
        let dispatcher = interim::dispatch::Dispatcher::new(
            config.clone(),
            store.clone(),
            channels,
            "test".into(),
            interim::clock::system(),
        )
        .expect("a dispatcher");
        let fifty_minutes_later = now + chrono::Duration::minutes(50);
        let started = dispatcher
            .dispatch_due(fifty_minutes_later)
            .await
            .expect("dispatch");
        dispatcher.tracker().close();
        dispatcher.tracker().wait().await;
        let written = std::fs::read_dir(&outbox).map(|d| d.count()).unwrap_or(0);
        assert_eq!(
            (started, written),
            (0, 0),
            "a last poll stamped 10 minutes in the future is no fresh snapshot: nothing is sent on it"
        );
        store.close().await;
    });
}

// ---------------------------------------------------------------------------
// G. The log's reader goes away
// ---------------------------------------------------------------------------

/// `interim run 2>&1 | head -2`: once the pipe closed, every write to
/// stderr fails with EPIPE. The lines are lost; the work is not.
#[test]
fn a_closed_stderr_does_not_stop_the_daemon() {
    let sink = SmtpSink::start();
    let setup = mail_setup(sink.port(), "");
    setup.helpdesk().insert(&[Ticket::new(1)]);
    let mut daemon = setup.start_with_closed_stderr();

    let notice = the_notice(&setup, "the notice is recorded as sent", |n| {
        n.status == "sent"
    });
    assert_eq!(notice.attempts, 1, "{notice:?}");
    assert_eq!(sink.mails_to(&Ticket::email(1)).len(), 1);
    setup.wait_until(SOON, "/readyz answers ready", || {
        support::http::get(&setup.admin(), "/readyz").is_ok_and(|r| r.status == 200)
    });
    assert!(daemon.is_running(), "the daemon still runs");

    daemon.signal("TERM");
    let status = daemon.wait_exit(SOON);
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM stops the daemon with exit 0 within {SOON:?}: {status:?}"
    );
}
