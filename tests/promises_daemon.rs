//! Issue 10's defects, one regression test each, through the binary.
//!
//! Each test names the behaviour that the defect broke, waits with
//! deadlines (what must not happen is checked after a positive event that
//! proves time passed: more polls, a later notice, an instant reached), and
//! checks liveness as well as safety: what must go out does, on time.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use support::api::{ApiRequest, ApiResponse, ApiServer, http_setup, page_of};
use support::faults::{HttpFault, HttpHit, ScriptedHttp};
use support::http;
use support::shapes::{FRESHDESK_FIELDS, freshdesk_ticket};
use support::{
    INCREMENTAL_QUERY, Notice, Setup, SmtpSink, TICKET_QUERY, Ticket, ago, sql_ago, toml_str,
};

const SOON: Duration = Duration::from_secs(20);

/// A policy for open tickets: one notice once they waited `after`.
fn first_notice(after: &str, channel: &str) -> String {
    format!(
        "match = {{ state = [\"open\"] }}\nafter = \"{after}\"\nchannel = \"{channel}\"\ntemplate = \"interim\""
    )
}

/// A policy for open tickets: notice 1 after `after`, then every `repeat`, at most `max`.
fn repeating(after: &str, repeat: &str, max: u32, channel: &str) -> String {
    format!(
        "{}\nrepeat_every = \"{repeat}\"\nmax_notices = {max}",
        first_notice(after, channel)
    )
}

fn parse_time(value: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value)
        .unwrap_or_else(|e| panic!("{value:?} is not RFC 3339: {e}"))
        .with_timezone(&Utc)
}

fn time_of(value: &Option<String>, what: &str) -> DateTime<Utc> {
    parse_time(value.as_deref().unwrap_or_else(|| panic!("no {what}")))
}

fn secs(d: chrono::Duration) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

/// (number, status) of a ticket's notices, in ledger order.
fn series_of(notices: &[Notice], ticket: i64) -> Vec<(u64, String)> {
    notices
        .iter()
        .filter(|n| n.ticket_id == ticket.to_string())
        .map(|n| (n.number, n.status.clone()))
        .collect()
}

/// Notice `number` of a ticket.
fn notice(notices: &[Notice], ticket: i64, number: u64) -> &Notice {
    let found = notices
        .iter()
        .find(|n| n.ticket_id == ticket.to_string() && n.number == number);
    found.unwrap_or_else(|| panic!("no notice {number} of ticket {ticket}: {notices:#?}"))
}

fn has(notices: &[Notice], ticket: i64, number: u64, status: &str) -> bool {
    notices
        .iter()
        .any(|n| n.ticket_id == ticket.to_string() && n.number == number && n.status == status)
}

fn readyz(setup: &Setup) -> Option<(u16, Value)> {
    http::get(&setup.admin(), "/readyz")
        .ok()
        .map(|r| (r.status, r.json()))
}

/// Requests the scripted receiver got for one notice, in order.
fn hits_of(receiver: &ScriptedHttp, id: &str) -> Vec<HttpHit> {
    let hits = receiver.hits().into_iter();
    hits.filter(|h| h.header("webhook-id") == id).collect()
}

/// Issue 10, "Incremental polling forgets repeats": notice n+1 was planned
/// only when its ticket showed up in a poll, so an untouched ticket got its
/// repeats only at the next full resync.
#[test]
fn an_incremental_source_sends_every_repeat_on_time_without_a_full_resync() {
    let sink = SmtpSink::start();
    let mut setup = Setup::new();
    setup
        .set("source.incremental_query", &toml_str(INCREMENTAL_QUERY))
        .set("source.full_resync", &toml_str("1h"))
        .email_channel("mail", sink.port(), "")
        .policy("repeat", &repeating("1s", "3s", 3, "mail"));
    let helpdesk = setup.helpdesk();
    // Ticket 1 starts waiting now and is never touched again: its last
    // change lies further behind the watermark than the overlap (2m), so no
    // incremental poll returns it. Ticket 2 (no policy matches it) changed
    // just now and holds the watermark at the present.
    helpdesk.insert(&[
        Ticket {
            waiting_since: ago(0),
            ..Ticket::new(1)
        },
        Ticket {
            state: "waiting_for_customer".into(),
            ..Ticket::new(2)
        },
    ]);
    helpdesk.execute(&format!(
        "UPDATE tickets SET updated_at = '{}' WHERE id = 1",
        sql_ago(600)
    ));
    let _daemon = setup.start();

    let mut notices = setup.wait_for_notices("all three notices are sent", |n| {
        n.len() == 3 && n.iter().all(|n| n.status == "sent")
    });
    notices.sort_by_key(|n| n.number);
    assert_eq!(
        series_of(&notices, 1),
        [1, 2, 3].map(|n| (n, "sent".to_string())),
        "{notices:#?}"
    );
    for n in &notices {
        let (send_at, sent) = (
            time_of(&n.send_at, "send_at"),
            time_of(&n.sent_at, "sent_at"),
        );
        let late = secs(sent - send_at);
        assert!(
            (0.0..=3.0).contains(&late),
            "notice {} went out {late} s after its planned instant",
            n.number
        );
    }
    for pair in notices.windows(2) {
        let (before, next) = (&pair[0], &pair[1]);
        let promised = time_of(&before.next_notice_at, "next_notice_at");
        assert!(
            time_of(&next.due_at, "due_at") <= promised,
            "notice {} is planned after the instant notice {} promised ({promised})",
            next.number,
            before.number
        );
        let late = secs(time_of(&next.sent_at, "sent_at") - promised);
        assert!(
            late <= 3.0,
            "notice {} went out {late} s after the promise of notice {}",
            next.number,
            before.number
        );
    }
    assert_eq!(notices[2].next_notice_at, None, "the last promises nothing");
    assert_eq!(sink.mails_to(&Ticket::email(1)).len(), 3);
    assert!(sink.mails_to(&Ticket::email(2)).is_empty());
    let (full, incremental) = setup.polls();
    assert_eq!(
        full, 1,
        "only the first poll was full ({incremental} incremental)"
    );
    assert!(incremental >= 3, "incremental polls ran: {incremental}");
    let log = setup.log_tail(usize::MAX);
    let saw_ticket_1 = log
        .lines()
        .filter(|l| l.contains("poll done") && l.contains("full: false"))
        .find(|l| !l.contains("tickets: 1,"));
    assert_eq!(
        saw_ticket_1, None,
        "test premise: incremental polls return ticket 2 only"
    );
}

/// Issue 10, "A series goes silent": a ticket missing from one full poll
/// lost its series; back with the same wait, notice 1 was planned again,
/// its id was already sent, and nothing more went out.
#[test]
fn a_ticket_missing_from_one_full_poll_continues_at_the_next_number() {
    let repeat = chrono::Duration::seconds(5);
    let sink = SmtpSink::start();
    let mut setup = Setup::new();
    setup
        .email_channel("mail", sink.port(), "")
        .policy("repeat", &repeating("1s", "5s", 2, "mail"));
    let helpdesk = setup.helpdesk();
    helpdesk.insert(&[Ticket::new(1)]);
    let _daemon = setup.start();

    setup.wait_for_notices("notice 1 is sent", |n| has(n, 1, 1, "sent"));
    // Closed: the full query no longer returns the ticket, for at least
    // one full poll; notice 2 is not due before 5 s.
    helpdesk.close(1);
    setup.wait_for_polls(1);
    let missed = setup.notices();
    assert!(
        !has(&missed, 1, 2, "sent") && !has(&missed, 1, 2, "pending"),
        "notice 2 stays back while the ticket is missing: {missed:#?}"
    );
    assert_eq!(sink.mails().len(), 1);

    // Back, with the same waiting_since.
    helpdesk.set(1, "state", "open");
    let notices = setup.wait_for_notices("notice 2 is sent", |n| has(n, 1, 2, "sent"));
    assert_eq!(
        series_of(&notices, 1),
        [(1, "sent".to_string()), (2, "sent".to_string())],
        "one row per number, never a second notice 1: {notices:#?}"
    );
    let sent = |n: u64| time_of(&notice(&notices, 1, n).sent_at, "sent_at");
    assert!(
        sent(2) - sent(1) >= repeat - chrono::Duration::milliseconds(500),
        "notice 2 is spaced by repeat_every from notice 1 ({} s)",
        secs(sent(2) - sent(1))
    );
    let mails = sink.mails_to(&Ticket::email(1));
    assert_eq!(mails.len(), 2);
    assert!(
        mails[0].text().contains("Notice 1 of 2"),
        "{}",
        mails[0].text()
    );
    assert!(
        mails[1].text().contains("Notice 2 of 2"),
        "{}",
        mails[1].text()
    );
    assert_ne!(mails[0].header("Message-ID"), mails[1].header("Message-ID"));
}

/// Issue 10, "Dry run still sends": with `daemon.dry_run` turned on, the
/// pending live notices stayed claimable and went out, also for tickets
/// that had closed meanwhile.
#[test]
fn dry_run_sends_nothing_and_still_cancels_live_notices_whose_wait_ended() {
    let sink = SmtpSink::start();
    let mut setup = Setup::new();
    setup
        .email_channel("mail", sink.port(), "")
        .policy("first-notice", &first_notice("4s", "mail"));
    let helpdesk = setup.helpdesk();
    let waiting_since = ago(0);
    let due = parse_time(&waiting_since) + chrono::Duration::seconds(4);
    let ticket = |id| Ticket {
        waiting_since: waiting_since.clone(),
        ..Ticket::new(id)
    };
    helpdesk.insert(&[ticket(1), ticket(2)]);
    let daemon = setup.start();
    setup.wait_for_notices("two live notices are pending", |n| {
        n.len() == 2 && n.iter().all(|n| n.status == "pending" && !n.dry_run)
    });

    setup.set("daemon.dry_run", "true");
    setup.reload(&daemon);
    assert!(
        Utc::now() < due,
        "test premise: dry run is on before the live notices are due"
    );
    // Dry run records its own notices once they are due, the same instant
    // the live ones are; then one more poll.
    setup.wait_for_notices("dry run recorded both notices", |n| {
        n.iter().filter(|n| n.status == "dry_run").count() == 2
    });
    setup.wait_for_polls(1);
    assert!(Utc::now() > due);
    let live: Vec<Notice> = setup.notices().into_iter().filter(|n| !n.dry_run).collect();
    assert_eq!(live.len(), 2, "{live:#?}");
    assert!(
        live.iter()
            .all(|n| n.status == "pending" && n.attempts == 0),
        "no live notice was tried: {live:#?}"
    );
    assert!(sink.mails().is_empty(), "dry run sent a mail");

    helpdesk.close(1);
    let notices = setup.wait_for_notices("ticket 1's live notice is cancelled", |n| {
        n.iter()
            .any(|n| n.ticket_id == "1" && !n.dry_run && n.status == "cancelled")
    });
    let live_2 = notices.iter().find(|n| n.ticket_id == "2" && !n.dry_run);
    assert_eq!(live_2.map(|n| n.status.as_str()), Some("pending"));
    assert!(sink.mails().is_empty());

    // Dry run off: ticket 2 gets its one overdue live notice, ticket 1 none.
    setup.set("daemon.dry_run", "false");
    setup.reload(&daemon);
    setup.wait_until(SOON, "ticket 2's live notice is sent", || {
        sink.mails_to(&Ticket::email(2)).len() == 1
    });
    setup.wait_for_polls(1);
    assert_eq!(sink.mails().len(), 1, "only ticket 2's notice");
}

/// Issue 10, "Reloads miss pending notices" (1/2): lowering `max_notices`
/// from 3 to 2 still sent #3.
#[test]
fn lowering_max_notices_by_reload_cancels_the_pending_notice_with_its_reason() {
    let sink = SmtpSink::start();
    let mut setup = Setup::new();
    setup
        .email_channel("mail", sink.port(), "")
        .policy("repeat", &repeating("1s", "4s", 3, "mail"));
    setup.helpdesk().insert(&[Ticket::new(1)]);
    let daemon = setup.start();
    let notices = setup.wait_for_notices("notice 2 is sent, notice 3 pending", |n| {
        has(n, 1, 2, "sent") && has(n, 1, 3, "pending")
    });
    let due_3 = time_of(&notice(&notices, 1, 3).due_at, "due_at of notice 3");

    setup.replace_toml("max_notices = 3", "max_notices = 2");
    setup.reload(&daemon);
    assert!(
        Utc::now() < due_3,
        "test premise: the reload came before notice 3 was due"
    );
    let notices = setup.wait_for_notices("notice 3 is cancelled", |n| has(n, 1, 3, "cancelled"));
    let reason = notice(&notices, 1, 3)
        .cancel_reason
        .clone()
        .unwrap_or_default();
    assert!(
        reason.contains("max_notices = 2"),
        "the reason names the change: {reason:?}"
    );
    // Nothing more: past notice 3's old due time, and one more poll.
    setup.wait_until(SOON, "notice 3's old due time passed", || {
        Utc::now() > due_3 + chrono::Duration::seconds(1)
    });
    setup.wait_for_polls(1);
    assert_eq!(
        series_of(&setup.notices(), 1),
        [(1, "sent"), (2, "sent"), (3, "cancelled")].map(|(n, s)| (n, s.to_string()))
    );
    assert_eq!(sink.mails().len(), 2);
}

/// Issue 10, "Reloads miss pending notices" (2/2): renaming a channel
/// stranded its pending rows on a channel that no longer exists.
#[test]
fn renaming_a_channel_by_reload_reroutes_its_pending_notices() {
    let sink = SmtpSink::start();
    let mut setup = Setup::new();
    setup
        .email_channel("mail", sink.port(), "")
        .policy("first-notice", &first_notice("4s", "mail"));
    let waiting_since = ago(0);
    let due = parse_time(&waiting_since) + chrono::Duration::seconds(4);
    setup.helpdesk().insert(&[Ticket {
        waiting_since,
        ..Ticket::new(1)
    }]);
    let daemon = setup.start();
    setup.wait_for_notices("the notice is pending on channel mail", |n| {
        n.len() == 1 && n[0].status == "pending" && n[0].channel == "mail"
    });

    setup
        .replace_toml("[channels.mail]", "[channels.mail2]")
        .replace_toml("channel = \"mail\"", "channel = \"mail2\"");
    setup.reload(&daemon);
    assert!(
        Utc::now() < due,
        "test premise: the reload came before the notice was due"
    );
    setup.wait_until(SOON, "the notice is delivered", || sink.mails().len() == 1);
    let notices = setup.wait_for_notices("the ledger records the send", |n| {
        n.iter().all(|n| n.status == "sent")
    });
    assert_eq!(notices.len(), 1, "{notices:#?}");
    assert_eq!(
        notices[0].channel, "mail2",
        "sent through the renamed channel"
    );
    assert_eq!(sink.mails_to(&Ticket::email(1)).len(), 1);
}

/// Issue 10, "`interim retry` orphans": a retried notice was not linked
/// back into its series, so it went out even after its ticket closed.
#[test]
fn a_retried_dead_notice_of_a_closed_ticket_is_not_sent() {
    // Both first attempts fail (one attempt each: dead); later ones succeed.
    let failing = [HttpFault::Status(500), HttpFault::Status(500)];
    let receiver = ScriptedHttp::start(&failing, HttpFault::Status(200));
    let mut setup = Setup::new();
    setup
        .webhook_channel("hook", receiver.url(), "max_attempts = 1")
        .policy("escalate", &first_notice("1s", "hook"));
    let helpdesk = setup.helpdesk();
    helpdesk.insert(&[Ticket::new(1), Ticket::new(2)]);
    let _daemon = setup.start();
    let dead = setup.wait_for_notices("both notices are dead", |n| {
        n.len() == 2 && n.iter().all(|n| n.status == "dead")
    });
    let id_of = |ticket: &str| {
        let found = dead.iter().find(|n| n.ticket_id == ticket);
        found.map(|n| n.id.clone()).expect("a notice of the ticket")
    };
    let (closed, open) = (id_of("1"), id_of("2"));
    assert_eq!(receiver.count(), 2);

    helpdesk.close(1);
    // A full poll after the close saw that ticket 1's wait ended.
    setup.wait_for_polls(1);
    let out = setup.cli(&["retry", &closed, &open]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&closed) && stderr.contains("has ended"),
        "the refusal names the notice and why:\n{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("1 notice(s) put back"),
        "the open ticket's notice was retried: {stdout}"
    );

    // The open ticket's retried notice goes out: the dispatcher ran.
    setup.wait_until(SOON, "the retried notice of ticket 2 is delivered", || {
        hits_of(&receiver, &open).len() == 2
    });
    setup.wait_for_polls(1);
    assert_eq!(
        hits_of(&receiver, &closed).len(),
        1,
        "the closed ticket's notice was sent again"
    );
    let notices = setup.notices();
    assert_eq!(series_of(&notices, 1), [(1, "dead".to_string())]);
    assert_eq!(series_of(&notices, 2), [(1, "sent".to_string())]);
}

/// Issue 10, "A failed poll plans and sends": a poll that failed half way
/// had already planned, and the dispatcher sent, what its first pages held.
#[test]
fn a_poll_that_fails_on_page_7_plans_and_sends_nothing() {
    let sink = SmtpSink::start();
    // One ticket per page; every notice is due at once (waiting for 2 h).
    let created = ago(2 * 3600);
    let tickets: Vec<Value> = (1..=9)
        .map(|id| freshdesk_ticket(id, 2, &created, None, None))
        .collect();
    let page_7_fails = Arc::new(AtomicBool::new(true));
    let script = {
        let (tickets, fails) = (tickets.clone(), page_7_fails.clone());
        move |req: &ApiRequest| {
            let page = req.number("page").unwrap_or(1);
            if page == 7 && fails.load(Ordering::SeqCst) {
                return ApiResponse::error(500);
            }
            ApiResponse::json(&Value::Array(page_of(&tickets, page, 1)))
        }
    };
    // At first the helpdesk has no ticket: a good poll makes the snapshot
    // fresh, so only the failing poll itself could hold anything back.
    let server = ApiServer::start(|_| ApiResponse::json(&json!([])));
    let mut setup = http_setup(
        &server.url("/api/v2/tickets"),
        FRESHDESK_FIELDS,
        sink.port(),
    );
    setup.set(
        "source.pagination",
        r#"{ kind = "page", param = "page", size_param = "per_page", size = 1 }"#,
    );
    let _daemon = setup.start();
    setup.wait_until(SOON, "/readyz says ready", || {
        readyz(&setup).is_some_and(|(status, _)| status == 200)
    });

    server.set_script(script);
    setup.wait_until(SOON, "three polls failed on page 7", || {
        setup.metric("interim_source_poll_failures_total", &[]) >= 3.0
    });
    let asked: Vec<usize> = server
        .requests()
        .iter()
        .filter_map(|r| r.number("page"))
        .collect();
    assert!(
        asked.windows(2).any(|w| w == [6, 7]),
        "pages 1 to 6 were read before page 7 failed: {asked:?}"
    );
    assert!(
        setup.notices().is_empty(),
        "a failed poll planned: {:#?}",
        setup.notices()
    );
    assert!(sink.mails().is_empty(), "a failed poll's tickets got mail");

    page_7_fails.store(false, Ordering::SeqCst);
    setup.wait_until(SOON, "every ticket got its notice", || {
        sink.mails().len() == tickets.len()
    });
    for id in 1..=9 {
        assert_eq!(
            sink.mails_to(&format!("requester{id}@example.com")).len(),
            1
        );
    }
    let notices = setup.wait_for_notices("the ledger records every send", |n| {
        n.len() == tickets.len() && n.iter().all(|n| n.status == "sent")
    });
    assert!(notices.iter().all(|n| n.number == 1));
}

/// Issue 10, "The watermark runs ahead": one `updated_at` in the future
/// lifted the watermark, every incremental poll then returned nothing, and
/// a closed ticket kept its notice until the next full resync.
#[test]
fn an_updated_at_in_the_future_does_not_hide_later_changes() {
    let sink = SmtpSink::start();
    let mut setup = Setup::new();
    setup
        .set("source.incremental_query", &toml_str(INCREMENTAL_QUERY))
        .set("source.full_resync", &toml_str("1h"))
        .email_channel("mail", sink.port(), "")
        .policy("later", &first_notice("1h", "mail"));
    let helpdesk = setup.helpdesk();
    helpdesk.insert(&[Ticket::new(1), Ticket::new(2)]);
    // Ticket 1 was stamped by a helpdesk clock running a year ahead.
    helpdesk.execute(&format!(
        "UPDATE tickets SET updated_at = '{}' WHERE id = 1",
        sql_ago(-365 * 86_400)
    ));
    let _daemon = setup.start();
    setup.wait_for_notices("both notices are pending", |n| {
        n.len() == 2 && n.iter().all(|n| n.status == "pending")
    });
    setup.wait_until(SOON, "an incremental poll ran", || setup.polls().1 >= 1);

    helpdesk.close(2);
    let notices = setup.wait_for_notices("ticket 2's notice is cancelled", |n| {
        has(n, 2, 1, "cancelled")
    });
    assert_eq!(series_of(&notices, 1), [(1, "pending".to_string())]);
    let (full, incremental) = setup.polls();
    assert_eq!(
        full, 1,
        "an incremental poll saw the close, not a full resync ({incremental} incremental)"
    );
    assert!(sink.mails().is_empty(), "nothing is due for an hour");
    assert!(
        setup.metric("interim_source_future_updated_at_total", &[]) >= 1.0,
        "the future updated_at is counted"
    );
}

/// Issue 10, "A broken query cancels everything": with `waiting_since`
/// renamed in the query, every row was skipped and every pending notice
/// cancelled as "no longer waiting", while `/readyz` said ready.
#[test]
fn a_query_whose_waiting_since_was_renamed_cancels_nothing_and_readyz_says_why() {
    let sink = SmtpSink::start();
    let mut setup = Setup::new();
    // A short snapshot age: while the query is broken, due notices are held.
    setup
        .set("daemon.max_snapshot_age", &toml_str("3s"))
        .email_channel("mail", sink.port(), "")
        .policy("first-notice", &first_notice("9s", "mail"));
    let waiting_since = ago(0);
    let due = parse_time(&waiting_since) + chrono::Duration::seconds(9);
    let ticket = |id| Ticket {
        waiting_since: waiting_since.clone(),
        ..Ticket::new(id)
    };
    setup.helpdesk().insert(&[ticket(1), ticket(2)]);
    let daemon = setup.start();
    let pending = setup.wait_for_notices("two notices are pending", |n| {
        n.len() == 2 && n.iter().all(|n| n.status == "pending")
    });

    let broken = TICKET_QUERY.replace("waiting_since,", "waiting_since AS waited_since,");
    assert_ne!(broken, TICKET_QUERY);
    setup.set("source.query", &toml_str(&broken));
    setup.reload(&daemon);
    assert!(
        Utc::now() + chrono::Duration::seconds(3) < due,
        "test premise: the query broke well before the notices were due"
    );
    let says_why = |setup: &Setup| {
        readyz(setup).is_some_and(|(status, body)| {
            status == 503
                && body["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("waiting_since"))
        })
    };
    setup.wait_until(SOON, "/readyz answers 503 naming waiting_since", || {
        says_why(&setup)
    });
    let rejected = || setup.metric("interim_source_polls_rejected_total", &[]);
    let before = rejected();
    setup.wait_until(
        SOON,
        "the notices are due and 3 more polls rejected",
        || Utc::now() > due + chrono::Duration::seconds(1) && rejected() >= before + 3.0,
    );
    let held = setup.notices();
    assert!(
        held.iter()
            .all(|n| n.status == "pending" && n.attempts == 0),
        "nothing cancelled, nothing tried: {held:#?}"
    );
    assert!(sink.mails().is_empty());
    assert!(says_why(&setup), "{:?}", readyz(&setup));

    setup.set("source.query", &toml_str(TICKET_QUERY));
    setup.reload(&daemon);
    setup.wait_until(SOON, "both held notices go out", || sink.mails().len() == 2);
    let sent = setup.wait_for_notices("the ledger records both sends", |n| {
        n.iter().all(|n| n.status == "sent")
    });
    let ids = |n: &[Notice]| n.iter().map(|n| n.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&sent), ids(&pending), "the same notices, not new ones");
    setup.wait_until(SOON, "/readyz answers 200 again", || {
        readyz(&setup).is_some_and(|(status, _)| status == 200)
    });
}

/// Issue 10, "A retried dead notice bursts": a dead notice counted as a
/// send for the spacing, so after `interim retry` the next notice followed
/// seconds later instead of `repeat_every` after the retried one went out.
#[test]
fn a_retried_dead_notice_spaces_the_next_one_by_repeat_every() {
    let repeat = Duration::from_secs(6);
    // The first attempt fails (max_attempts = 1: dead); every later one succeeds.
    let receiver = ScriptedHttp::start(&[HttpFault::Status(500)], HttpFault::Status(200));
    let mut setup = Setup::new();
    setup
        .webhook_channel("hook", receiver.url(), "max_attempts = 1")
        .policy("escalate", &repeating("1s", "6s", 2, "hook"));
    // The wait begins now: notice 2 falls due by the schedule only 7 s in,
    // after the operator retried notice 1.
    let waiting_since = ago(0);
    let scheduled_2 = parse_time(&waiting_since) + chrono::Duration::seconds(7);
    setup.helpdesk().insert(&[Ticket {
        waiting_since,
        ..Ticket::new(1)
    }]);
    let _daemon = setup.start();
    let dead = setup.wait_for_notices("notice 1 is dead", |n| has(n, 1, 1, "dead"));
    let first = notice(&dead, 1, 1).id.clone();

    let out = setup.cli(&["retry", &first]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        Utc::now() + chrono::Duration::seconds(2) < scheduled_2,
        "test premise: notice 1 was retried well before notice 2 was due"
    );
    let notices = setup.wait_for_notices("notice 2 is sent", |n| has(n, 1, 2, "sent"));
    let (notice_1, notice_2) = (notice(&notices, 1, 1), notice(&notices, 1, 2));
    let second = notice_2.id.clone();
    let (hits_1, hits_2) = (hits_of(&receiver, &first), hits_of(&receiver, &second));
    assert_eq!(hits_1.len(), 2, "one 500, then the retried delivery");
    assert_eq!(hits_2.len(), 1);
    // The spacing runs from the start of notice 1's successful attempt,
    // a few milliseconds before the receiver has the request.
    let gap = hits_2[0].at.duration_since(hits_1[1].at);
    assert!(
        gap + Duration::from_millis(150) >= repeat,
        "notice 2 followed the retried notice 1 after {gap:?}, not repeat_every ({repeat:?})"
    );
    let promised = time_of(&notice_1.next_notice_at, "next_notice_at of notice 1");
    assert_eq!(time_of(&notice_2.due_at, "due_at"), promised);
    let late = secs(time_of(&notice_2.sent_at, "sent_at") - promised);
    assert!(late <= 3.0, "notice 2 went out {late} s after its promise");
    assert_eq!(receiver.count(), 3);
}
