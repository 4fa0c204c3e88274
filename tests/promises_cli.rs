//! Issue 10's defects, one regression test each: CLI and library with an
//! injected clock.
//!
//! | test | defect of issue 10 |
//! |---|---|
//! | `an_overdue_notice_after_an_outage_waits_for_its_next_send_at_slot` | night sends: an overdue notice kept its past `send_at` slot |
//! | `a_reader_that_panics_is_a_failed_poll_that_cancels_nothing` (unit test in `src/source/mod.rs`) | a reader that panicked looked like a complete, empty poll |
//! | `preview_of_a_finished_series_says_it_is_finished` | `preview` invented notice 3 of 3 |
//! | `plan_horizon_lists_every_repeat_of_a_series_numbered` | `plan --horizon` showed only the first notice |
//! | `plan_at_lists_a_notice_due_before_t_whose_slot_is_after_t` | `plan --at T` did not plan as if now were T |
//! | `a_recheck_slower_than_the_lease_is_sent_once_across_two_instances` | a recheck could outlast the lease (PostgreSQL) |

mod support;

use std::thread;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use interim::clock::ManualClock;
use interim::notice::Status;
use serde_json::Value;
use support::cluster::Cluster;
use support::library::InProcess;
use support::postgres::PgDatabase;
use support::{
    Setup, Ticket, WEBHOOK_SECRET, WEBHOOK_SECRET_ENV, WebhookReceiver, ago, text, toml_str,
};

const SOON: Duration = Duration::from_secs(30);

fn utc(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|e| panic!("{rfc3339:?} is not RFC 3339: {e}"))
        .with_timezone(&Utc)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A file channel `outbox` writing one JSON document per notice.
fn outbox_channel(setup: &mut Setup) {
    let path = setup.path("outbox");
    setup.toml(&format!(
        "[channels.outbox]\nkind = \"file\"\npath = {}\nformat = \"json\"",
        toml_str(&path.display().to_string())
    ));
}

/// The notices the file channel wrote, by number.
fn outbox(setup: &Setup) -> Vec<Value> {
    let Ok(entries) = std::fs::read_dir(setup.path("outbox")) else {
        return Vec::new();
    };
    let mut docs: Vec<Value> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("json"))
        .map(|p| {
            let bytes = std::fs::read(&p).expect("read a notice file");
            serde_json::from_slice(&bytes).expect("a notice document")
        })
        .collect();
    docs.sort_by_key(|d| d["number"].as_u64());
    docs
}

fn plan_json(setup: &Setup, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["plan", "--format", "json"];
    all.extend_from_slice(args);
    let json = setup.json(&all).unwrap_or_else(|e| panic!("{e}"));
    json.as_array().cloned().expect("plan prints an array")
}

fn preview(setup: &Setup, ticket: &str) -> String {
    let out = setup.cli(&["preview", "--ticket", ticket]);
    assert!(
        out.status.success(),
        "interim preview failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---------------------------------------------------------------------------
// Night sends
// ---------------------------------------------------------------------------

/// A notice due Monday 08:00 (Berlin) is planned for the 09:00 slot of
/// `send_at = "0 0 9 * * Mon-Fri"`; the daemon is down from 07:00 until
/// 23:30. Its first dispatch pass at 23:30 comes before any poll or
/// re-plan, so only the check at send time stands between the stale 09:00
/// slot and a notice at night: it must hold the notice (09:00 + SLOT_GRACE
/// is long past) for Tuesday 09:00, when it goes out promising the next
/// one for the instant the ledger plans it.
#[test]
fn an_overdue_notice_after_an_outage_waits_for_its_next_send_at_slot() {
    let mut setup = Setup::new();
    outbox_channel(&mut setup);
    setup
        .set("daemon.timezone", &toml_str("Europe/Berlin"))
        .set("daemon.default_language", &toml_str("en"))
        // Long enough that the 23:30 pass is not held for a stale snapshot:
        // the slot rule alone must hold it.
        .set("daemon.max_snapshot_age", &toml_str("1d"))
        .template(
            "promise",
            "en",
            "Update on {{ ticket.number }}",
            "Notice {{ notice.number }} of {{ notice.max }}. Next update by {{ next_notice_at }}.\n",
        )
        .policy(
            "mornings",
            "match = { state = [\"open\"] }\nafter = \"2h\"\nrepeat_every = \"1d\"\nmax_notices = 2\n\
             send_at = \"0 0 9 * * Mon-Fri\"\nchannel = \"outbox\"\ntemplate = \"promise\"",
        );
    setup.helpdesk().insert(&[Ticket {
        // Monday 30 November 2026, 06:00 CET: due 08:00, slot 09:00.
        waiting_since: "2026-11-30T06:00:00+01:00".into(),
        ..Ticket::new(1)
    }]);
    let config = interim::setup::load(&setup.write_config()).unwrap_or_else(|e| panic!("{e}"));
    let monday_0700 = utc("2026-11-30T07:00:00+01:00");
    let monday_0900 = utc("2026-11-30T09:00:00+01:00");
    let tuesday_0900 = utc("2026-12-01T09:00:00+01:00");
    let wednesday_0900 = utc("2026-12-02T09:00:00+01:00");

    support::block_on(async {
        let mut daemon = InProcess::start(config, ManualClock::new(monday_0700)).await;
        assert!(daemon.poll().await, "the poll at 07:00 succeeds");
        let planned = daemon.notices().await;
        assert_eq!(planned.len(), 1, "{planned:?}");
        assert_eq!(planned[0].due_at, utc("2026-11-30T08:00:00+01:00"));
        assert_eq!(
            planned[0].send_at, monday_0900,
            "planned for the 09:00 slot"
        );
        assert_eq!(daemon.dispatch().await, 0, "not due at 07:00");

        // The outage: no poll, no dispatch until 23:30.
        daemon.clock.set(utc("2026-11-30T23:30:00+01:00"));
        daemon.dispatch().await;
        assert!(
            outbox(&setup).is_empty(),
            "a 09:00 notice went out at 23:30"
        );
        let held = daemon.notices().await;
        assert_eq!(
            (held[0].status, held[0].attempts, held[0].send_at),
            (Status::Pending, 0, tuesday_0900),
            "held, without an attempt, for Tuesday's slot: {held:?}"
        );
        // The daemon polls again and keeps trying: still nothing at night.
        assert!(daemon.poll().await, "the poll at 23:30 succeeds");
        daemon.dispatch().await;
        daemon.clock.set(utc("2026-12-01T08:59:00+01:00"));
        assert!(daemon.poll().await, "the poll at 08:59 succeeds");
        daemon.dispatch().await;
        assert!(outbox(&setup).is_empty(), "nothing before Tuesday 09:00");

        daemon.clock.set(tuesday_0900);
        assert!(daemon.poll().await, "the poll at 09:00 succeeds");
        assert_eq!(daemon.dispatch().await, 1, "sent on Tuesday's slot");
        let sent = outbox(&setup);
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(sent[0]["number"], 1);

        // The promise it made is the next notice's plan: Wednesday's slot,
        // one repeat_every after this send.
        let ledger = daemon.notices().await;
        let first = ledger.iter().find(|n| n.number == 1).expect("notice 1");
        let second = ledger.iter().find(|n| n.number == 2).expect("notice 2");
        assert_eq!(
            (first.status, first.sent_at),
            (Status::Sent, Some(tuesday_0900))
        );
        assert_eq!(
            (second.status, second.send_at),
            (Status::Pending, wednesday_0900)
        );
        assert_eq!(first.next_notice_at, Some(wednesday_0900));
        assert_eq!(sent[0]["next_notice_at"], rfc3339(wednesday_0900));
        let body = sent[0]["message"]["text"].as_str().unwrap_or_default();
        assert!(
            body.contains("Next update by Wednesday, 2 December 2026, 9:00 AM CET."),
            "the text promises Wednesday 09:00 Berlin time: {body:?}"
        );
        daemon.close().await;
    });
}

// ---------------------------------------------------------------------------
// preview and plan --horizon
// ---------------------------------------------------------------------------

/// Three notices, one second apart once the first is due: a series that
/// the daemon finishes within seconds.
fn short_series(setup: &mut Setup) {
    outbox_channel(setup);
    setup.policy(
        "short",
        "match = { state = [\"open\"] }\nafter = \"1m\"\nrepeat_every = \"1s\"\nmax_notices = 3\n\
         channel = \"outbox\"\ntemplate = \"interim\"",
    );
    setup.helpdesk().insert(&[Ticket::new(1)]);
}

#[test]
fn preview_of_a_finished_series_says_it_is_finished() {
    let mut setup = Setup::new();
    short_series(&mut setup);
    let before = preview(&setup, "1");
    assert!(
        before.contains("(notice 1 of 3)"),
        "before any send, preview shows the first notice:\n{before}"
    );

    let mut daemon = setup.start();
    setup.wait_for_notices("all three notices are sent", |n| {
        n.len() == 3 && n.iter().all(|n| n.status == "sent")
    });
    daemon.stop();

    let after = preview(&setup, "1");
    assert!(
        after.contains("series finished") && after.contains("All 3 notice(s)"),
        "preview says the series is finished:\n{after}"
    );
    assert!(
        !after.contains("of 3)"),
        "preview shows no notice as still to come:\n{after}"
    );
    assert_eq!(outbox(&setup).len(), 3, "and nothing more went out");
}

#[test]
fn plan_horizon_lists_every_repeat_of_a_series_numbered() {
    let mut setup = Setup::new();
    outbox_channel(&mut setup);
    setup.policy(
        "every-other-day",
        "match = { state = [\"open\"] }\nafter = \"1m\"\nrepeat_every = \"2d\"\nmax_notices = 5\n\
         channel = \"outbox\"\ntemplate = \"interim\"",
    );
    let ticket = Ticket::new(1);
    setup.helpdesk().insert(std::slice::from_ref(&ticket));
    let first_due = utc(&ticket.waiting_since) + chrono::Duration::minutes(1);

    let rows = plan_json(&setup, &["--horizon", "20d"]);
    let numbered: Vec<(String, u64, String)> = rows
        .iter()
        .map(|r| {
            (
                text(&r["ticket_id"]),
                r["number"].as_u64().unwrap_or_default(),
                r["due_at"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, u64, String)> = (0..5)
        .map(|i| {
            let due = first_due + chrono::Duration::days(2 * i);
            ("1".to_owned(), (i + 1) as u64, rfc3339(due))
        })
        .collect();
    assert_eq!(
        numbered, expected,
        "notices 1 to 5 of the series, two days apart"
    );
    let ids: std::collections::BTreeSet<&str> = rows
        .iter()
        .filter_map(|r| r["notice_id"].as_str())
        .collect();
    assert_eq!(ids.len(), 5, "each with its own notice id: {rows:?}");

    // A shorter horizon lists what falls due within it, no more.
    let five_days = plan_json(&setup, &["--horizon", "5d"]);
    let numbers: Vec<u64> = five_days
        .iter()
        .filter_map(|r| r["number"].as_u64())
        .collect();
    assert_eq!(numbers, [1, 2, 3], "due now, in 2 and in 4 days");
}

// ---------------------------------------------------------------------------
// plan --at
// ---------------------------------------------------------------------------

/// Monday 30 November 2026: ticket 1 is due at 08:00 (Berlin) and ticket 2
/// at 09:30; both policies send on the 09:00 weekday slot.
#[test]
fn plan_at_lists_a_notice_due_before_t_whose_slot_is_after_t() {
    let mut setup = Setup::new();
    outbox_channel(&mut setup);
    setup
        .set("daemon.timezone", &toml_str("Europe/Berlin"))
        .policy(
            "mornings",
            "match = { state = [\"open\"] }\nafter = \"2h\"\nsend_at = \"0 0 9 * * Mon-Fri\"\n\
             channel = \"outbox\"\ntemplate = \"interim\"",
        );
    setup.helpdesk().insert(&[
        Ticket {
            waiting_since: "2026-11-30T06:00:00+01:00".into(),
            ..Ticket::new(1)
        },
        Ticket {
            waiting_since: "2026-11-30T07:30:00+01:00".into(),
            ..Ticket::new(2)
        },
    ]);
    let rows_at = |at: &str, horizon: &str| -> Vec<(String, String, String)> {
        plan_json(&setup, &["--at", at, "--horizon", horizon])
            .iter()
            .map(|r| {
                (
                    text(&r["ticket_id"]),
                    r["due_at"].as_str().unwrap_or_default().to_owned(),
                    r["send_at"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    let due_1 = "2026-11-30T07:00:00Z".to_owned(); // 08:00 CET
    let due_2 = "2026-11-30T08:30:00Z".to_owned(); // 09:30 CET
    let monday_slot = "2026-11-30T08:00:00Z".to_owned(); // 09:00 CET
    let tuesday_slot = "2026-12-01T08:00:00Z".to_owned();

    // At 08:30 ticket 1 is due and waits for the 09:00 slot, after T;
    // ticket 2 is not due by T.
    assert_eq!(
        rows_at("2026-11-30T08:30:00+01:00", "0s"),
        [("1".to_owned(), due_1.clone(), monday_slot.clone())],
        "the notice due at 08:00 is listed with its 09:00 slot"
    );
    // Evaluated as if now were T: at 09:45 Monday's slot has passed (and
    // its grace), so both go out on Tuesday's.
    assert_eq!(
        rows_at("2026-11-30T09:45:00+01:00", "0s"),
        [
            ("1".to_owned(), due_1, tuesday_slot.clone()),
            ("2".to_owned(), due_2, tuesday_slot),
        ],
        "a slot before T is not a send instant"
    );
}

// ---------------------------------------------------------------------------
// Leases
// ---------------------------------------------------------------------------

/// `store.claim_lease`; the channel's timeout must be shorter.
const LEASE: Duration = Duration::from_secs(3);
/// How long the pre-send re-check sleeps inside PostgreSQL: more than two
/// leases.
const RECHECK: Duration = Duration::from_secs(7);

/// Two instances on one PostgreSQL store; the helpdesk is a PostgreSQL
/// database too, so the re-check query can take `RECHECK` (`pg_sleep`).
/// Whichever instance claims the notice re-reads its ticket for more than
/// two leases; the other keeps trying to claim all that time. Only the
/// renewal of the lease keeps the claim, so exactly one delivery, one
/// claim and one attempt. Skipped without `INTERIM_TEST_POSTGRES_URL`
/// (and failed in CI).
#[test]
fn a_recheck_slower_than_the_lease_is_sent_once_across_two_instances() {
    let Some(helpdesk) = PgDatabase::create() else {
        return;
    };
    helpdesk.execute(
        "CREATE TABLE tickets (id BIGINT PRIMARY KEY, state TEXT, customer_email TEXT, \
         language TEXT, waiting_since TIMESTAMPTZ)",
    );
    let receiver = WebhookReceiver::start(&[], 200, Duration::ZERO);
    let mut setup = Setup::new();
    setup
        .set("source.url", &toml_str(&helpdesk.url))
        .set(
            "source.query",
            &toml_str("SELECT id, state, customer_email, language, waiting_since FROM tickets WHERE state = 'open'"),
        )
        .set(
            "source.recheck_query",
            &toml_str(&format!(
                "SELECT t.id, t.state, t.customer_email, t.language, t.waiting_since \
                 FROM tickets t, (SELECT pg_sleep({})) AS pause \
                 WHERE t.state = 'open' AND t.id::text = :id",
                RECHECK.as_secs()
            )),
        )
        .set(
            "store.claim_lease",
            &toml_str(&format!("{}s", LEASE.as_secs())),
        )
        .env(WEBHOOK_SECRET_ENV, WEBHOOK_SECRET)
        .toml(&format!(
            "[channels.hook]\nkind = \"webhook\"\nurl = {}\nsecret_env = \"{WEBHOOK_SECRET_ENV}\"\n\
             timeout = \"1s\"",
            toml_str(receiver.url())
        ))
        .policy(
            "first",
            "match = { state = [\"open\"] }\nafter = \"1m\"\nchannel = \"hook\"\ntemplate = \"interim\"",
        );
    let Some(mut cluster) = Cluster::new(setup) else {
        return;
    };
    cluster.start(2);
    cluster.wait_for_single_poller(SOON);

    // Both instances run before the notice exists: either may claim it,
    // and the other is there to take it over the moment a lease ends.
    helpdesk.execute(&format!(
        "INSERT INTO tickets VALUES (1, 'open', 'customer1@example.com', 'en', '{}')",
        ago(600)
    ));
    let inserted = Instant::now();
    cluster.wait_until(SOON, "the notice was delivered", |_| {
        !receiver.requests().is_empty()
    });
    let took = inserted.elapsed();
    assert!(
        took >= RECHECK,
        "delivered {took:?} after the insert: the re-check did not outlast the lease"
    );
    // A second claim can only be taken before the first send is recorded,
    // and would re-check for RECHECK before its own send: wait that long.
    let window = RECHECK + Duration::from_secs(1);
    let start = Instant::now();
    while start.elapsed() < window {
        assert_eq!(receiver.requests().len(), 1, "the notice was sent twice");
        thread::sleep(Duration::from_millis(100));
    }

    let request = &receiver.requests()[0];
    assert!(request.verified, "signed");
    let ledger = cluster.setup.notices();
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(request.header("webhook-id"), ledger[0].id);
    assert_eq!(
        (ledger[0].status.as_str(), ledger[0].attempts),
        ("sent", 1),
        "{ledger:?}"
    );
    // Every claim increments the fencing token: one claim, kept by renewal.
    let claims = cluster
        .db
        .query_text("SELECT claim_token::text FROM notices")
        .unwrap_or_default();
    assert_eq!(claims, "1", "the notice was claimed {claims} times");
    for instance in &cluster.instances {
        let log = std::fs::read_to_string(&instance.log).unwrap_or_default();
        assert!(
            !log.contains("claim of this notice was lost"),
            "instance {} lost its claim:\n{}",
            instance.index,
            instance.log_tail(40)
        );
    }
}
