//! The API presets end to end: `zammad-api` and `zendesk-api` against a
//! local API serving the shapes their vendors document (`support::shapes`):
//! Zammad's ticket search with its assets, ticket states and priorities,
//! Zendesk's incremental export with side-loaded users and metric sets.
//! Customers, languages, priorities, state types, each wait clock, the
//! subject marker through the daemon and a real SMTP sink, and the config
//! errors of clocks.

mod support;

use std::fs;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use support::api::ApiResponse;
use support::presets::{
    H, Mailed, ZAMMAD_OFFLINE, ZAMMAD_TOKEN, ZENDESK_OFFLINE, ZENDESK_TOKEN, ZendeskRow,
    assert_mailed_end_to_end, has_line, instant, offline_setup, plan, sources_test, ticket_block,
    waiting_since, zammad_api, zammad_api_answering_articles, zammad_api_setup, zendesk_api_setup,
    zendesk_basic, zendesk_export,
};
use support::shapes::{ZammadTicket, ZammadUser, zendesk_metric_set, zendesk_ticket, zendesk_user};
use support::{SmtpSink, ago, lock};

/// A customer whose login is their email.
fn customer(id: i64, email: &str, first: &str, last: &str) -> ZammadUser {
    ZammadUser::new(id, email, first, last)
}

/// Zammad's custom state "in progress" (id 8) of the seeded type open (2).
const IN_PROGRESS: (i64, &str, i64) = (8, "in progress", 2);

/// The waiting_since `plan` read for `id` lies `secs` in the past (the
/// fixture's instants were taken a moment before the plan ran).
fn assert_waits_since(
    plan: &std::collections::BTreeMap<String, Value>,
    id: &str,
    secs: i64,
    what: &str,
) {
    let row = plan
        .get(id)
        .unwrap_or_else(|| panic!("{what}: ticket {id} waits, but plan has no notice: {plan:#?}"));
    let expected = Utc::now() - chrono::Duration::seconds(secs);
    let off = (waiting_since(row) - expected).num_seconds().abs();
    assert!(
        off < 120,
        "{what}: ticket {id} waits since {}, expected about {secs}s ago",
        waiting_since(row)
    );
}

/// `sources test` names the clock in effect (`None`: the default), in the
/// form `clock: NAME (`.
fn assert_names_clock(setup: &support::Setup, clock: Option<&str>) {
    let out = sources_test(setup);
    let name = clock.unwrap_or("last_public_contact");
    assert!(
        has_line(&out, &[&format!("clock: {name} (")]),
        "{name}: sources test names the clock:\n{out}"
    );
}

// --------------------------------------------------------------- zammad-api

/// Where Zammad lists a ticket's articles.
const BY_TICKET: &str = "/api/v1/ticket_articles/by_ticket/";

#[test]
fn zammad_api_end_to_end_mails_the_waiting_customers() {
    // 100 tickets whose customers wrote 10 minutes ago fill page 1; the
    // interesting ones are on page 2. (The search would not return pending
    // or closed tickets; they are served anyway, as from a broader query.)
    let mut tickets: Vec<ZammadTicket> = (1..=100)
        .map(|id| {
            let user = customer(1000 + id, &format!("filler{id}@example.com"), "Fill", "Er");
            let mut t = ZammadTicket::opened(id, 3 * H, user);
            t.agent_replies(2 * H).customer_writes(600);
            t
        })
        .collect();
    let anna = customer(2101, "anna.schmidt@example.com", "Anna", "Schmidt").locale("de-de");
    let ben = customer(2102, "ben.meier@example.com", "Ben", "Meier").locale("en-us");
    let mut t101 = ZammadTicket::opened(101, 9 * H, anna);
    t101.agent_replies(3 * H).customer_writes(2 * H);
    let t102 = ZammadTicket::opened(102, 90 * 60, ben).state(1);
    let mut t103 = ZammadTicket::opened(
        103,
        9 * H,
        customer(2103, "carla@example.com", "Carla", "C"),
    )
    .state(3);
    t103.agent_replies(6 * H).customer_writes(5 * H);
    let t104 =
        ZammadTicket::opened(104, 9 * H, customer(2104, "dirk@example.com", "Dirk", "D")).state(4);
    let mut t105 =
        ZammadTicket::opened(105, 9 * H, customer(2105, "emma@example.com", "Emma", "E"));
    t105.agent_replies(20 * 60);
    let t106 = ZammadTicket::opened(
        106,
        9 * H,
        customer(2106, "fritz@example.com", "Fritz", "F"),
    )
    .state(5);
    let t107 =
        ZammadTicket::opened(107, 9 * H, customer(2107, "gina@example.com", "Gina", "G")).state(7);
    let mut t108 =
        ZammadTicket::opened(108, 9 * H, customer(2108, "hugo@example.com", "Hugo", "H")).state(8);
    t108.agent_replies(5 * H).customer_writes(4 * H);
    tickets.extend([t101, t102, t103, t104, t105, t106, t107, t108]);
    let (server, _) = zammad_api(tickets, &[IN_PROGRESS]);
    let sink = SmtpSink::start();
    let setup = zammad_api_setup(&server, "1h", sink.port());

    let daemon = setup.start();
    let ledger = setup.wait_for_notices("the notices of 101, 102 and 108 went out", |n| {
        n.iter().filter(|n| n.status == "sent").count() == 3
    });
    setup.assert_stays_for_polls(2, "no further mail", || sink.mails().len() == 3);
    let pending_105 = ledger.iter().find(|n| n.ticket_id == "105");
    assert_eq!(
        pending_105.map(|n| n.status.as_str()),
        Some("pending"),
        "the agent's reply 20 minutes ago restarted the clock"
    );
    assert_eq!(ledger.len(), 3 + 1 + 100, "{ledger:#?}");

    // Stopped first: a poll in progress would have its lookups counted
    // without its pages.
    drop(daemon);
    let requests = server.requests();
    let first_poll: Vec<(&str, Option<usize>)> = requests
        .iter()
        .filter(|r| !r.path.starts_with(BY_TICKET))
        .take(5)
        .map(|r| (r.path.as_str(), r.number("page")))
        .collect();
    assert_eq!(
        first_poll,
        vec![
            ("/api/v1/ticket_priorities", None),
            ("/api/v1/ticket_states", None),
            ("/api/v1/tickets/search", Some(1)),
            ("/api/v1/tickets/search", Some(2)),
            ("/api/v1/tickets/search", Some(3)),
        ],
        "the lookups once per poll, before the pages"
    );
    let polls = requests
        .iter()
        .filter(|r| r.number("page") == Some(1))
        .count();
    let lookups = requests
        .iter()
        .filter(|r| r.path == "/api/v1/ticket_states")
        .count();
    assert_eq!(lookups, polls, "one state lookup per poll");
    assert!(polls >= 2, "the test saw a steady poll: {polls}");
    // The thread's article list: once for each waiting ticket (their
    // updated_at never moves here), never for the others.
    let mut asked: Vec<i64> = requests
        .iter()
        .filter_map(|r| r.path.strip_prefix(BY_TICKET)?.parse().ok())
        .collect();
    asked.sort_unstable();
    let waiting: Vec<i64> = (1..=102).chain([105, 108]).collect();
    assert_eq!(asked, waiting, "one article request per waiting ticket");
    for r in &requests {
        assert_eq!(
            r.header("authorization"),
            format!("Token token={ZAMMAD_TOKEN}")
        );
        if r.path == "/api/v1/tickets/search" {
            assert_eq!(r.param("per_page"), Some("100"));
            assert_eq!(r.param("expand"), None, "assets, not expanded names");
            assert_eq!(
                (r.param("sort_by"), r.param("order_by")),
                (Some("id"), Some("asc")),
                "pages in a stable order"
            );
            assert_eq!(r.param("query"), Some("state.name:(new OR open)"));
        }
    }
    // German for de-de, English for en-us, the default (de) without a
    // locale; the subject names the ticket's number and title.
    let mailed = [
        (101, "anna.schmidt@example.com", "Zwischenbescheid zu"),
        (102, "ben.meier@example.com", "Update on"),
        (108, "hugo@example.com", "Zwischenbescheid zu"),
    ]
    .map(|(id, address, words)| Mailed {
        ticket: id.to_string(),
        address: address.into(),
        subject_starts: words.into(),
        subject_names: vec![(31000 + id).to_string(), format!("Zammad ticket {id}")],
    });
    let untracked = ["103", "104", "106", "107"];
    assert_mailed_end_to_end(&setup, &ledger, &sink, &mailed, &untracked, ZAMMAD_TOKEN);
}

#[test]
fn zammad_api_maps_the_customer_priority_and_state_type() {
    let tickets = vec![
        ZammadTicket::opened(
            1,
            3 * H,
            customer(201, "anna@example.com", "Anna", "Schmidt").locale("de-de"),
        )
        .priority(3),
        ZammadTicket::opened(
            2,
            3 * H,
            customer(202, "bob@example.com", "Bob", "Brown").locale("en-us"),
        ),
        // Zammad keeps "" for a customer without an address: the login it is.
        ZammadTicket::opened(3, 3 * H, {
            let mut carla = customer(203, "", "Carla", "");
            carla.login = "carla@example.org".into();
            carla
        }),
        ZammadTicket::opened(4, 3 * H, customer(204, "dora@example.com", "Dora", "Lee")).state(8),
        ZammadTicket::opened(5, 3 * H, customer(205, "ed@example.com", "Ed", "Kim")).state(7),
    ];
    let (server, _) = zammad_api(tickets, &[IN_PROGRESS]);
    let setup = zammad_api_setup(&server, "1h", 9);

    let out = sources_test(&setup);
    assert!(
        out.contains("read 4 waiting ticket(s), 1 ended, 0 skipped"),
        "\"pending close\" (type pending action) ends, \"in progress\" (type open) waits:\n{out}"
    );
    let one = ticket_block(&out, "1");
    for line in [
        "state \"open\", priority \"high\", queue \"Users\"",
        "customer Anna Schmidt <anna@example.com>, language de,",
        "extra {\"priority_raw\":\"3 high\"}",
        "thread: subject carries [Ticket#31001]",
    ] {
        assert!(one.contains(line), "ticket 1 shows {line:?}:\n{one}");
    }
    let two = ticket_block(&out, "2");
    assert!(
        two.contains("customer Bob Brown <bob@example.com>, language en,")
            && two.contains("priority \"normal\"")
            && two.contains("\"priority_raw\":\"2 normal\""),
        "{two}"
    );
    let three = ticket_block(&out, "3");
    assert!(
        three.contains("customer Carla <carla@example.org>, language -,"),
        "the login stands in for an empty email, no locale is no language:\n{three}"
    );
    assert!(
        ticket_block(&out, "4").contains("state \"in progress\""),
        "{out}"
    );
    assert!(ticket_block(&out, "5").is_empty(), "{out}");
}

/// Four Zammad tickets, each opened by its customer 10h (D: 5h) ago:
/// A: agent 8h, customer 6h and again 2h; B: agent 8h, customer 6h, an
/// internal note 1h; C: agent 3h; D: nothing more.
fn zammad_clock_tickets() -> Vec<ZammadTicket> {
    let user = |id: i64| customer(300 + id, &format!("c{id}@example.com"), "C", "Ustomer");
    let mut a = ZammadTicket::opened(1, 10 * H, user(1));
    a.agent_replies(8 * H)
        .customer_writes(6 * H)
        .customer_writes(2 * H);
    let mut b = ZammadTicket::opened(2, 10 * H, user(2));
    b.agent_replies(8 * H)
        .customer_writes(6 * H)
        .internal_note(H);
    let mut c = ZammadTicket::opened(3, 10 * H, user(3));
    c.agent_replies(3 * H);
    let d = ZammadTicket::opened(4, 5 * H, user(4));
    vec![a, b, c, d]
}

#[test]
fn zammad_api_each_clock_counts_its_own_contact() {
    let (server, _) = zammad_api(zammad_clock_tickets(), &[]);
    // (clock, A, B, C, D): seconds ago, None: not waiting.
    let cases: [(Option<&str>, [Option<i64>; 4]); 4] = [
        // Zammad's default behaviour: A's second message moves nothing;
        // the internal note of B is no contact.
        (None, [Some(6 * H), Some(6 * H), Some(3 * H), Some(5 * H)]),
        (
            Some("last_public_contact"),
            [Some(6 * H), Some(6 * H), Some(3 * H), Some(5 * H)],
        ),
        (
            Some("agent_updates"),
            [Some(8 * H), Some(8 * H), Some(3 * H), Some(5 * H)],
        ),
        // C's agent answered: the wait is over.
        (
            Some("customer_message"),
            [Some(6 * H), Some(6 * H), None, Some(5 * H)],
        ),
    ];
    for (clock, expected) in cases {
        let mut setup = zammad_api_setup(&server, "1h", 9);
        if let Some(clock) = clock {
            setup.set("source.clock", &format!("{clock:?}"));
        }
        let what = clock.unwrap_or("the default clock");
        assert_names_clock(&setup, clock);
        let rows = plan(&setup);
        for (id, secs) in (1..=4).zip(expected) {
            match secs {
                Some(secs) => assert_waits_since(&rows, &id.to_string(), secs, what),
                None => assert!(
                    !rows.contains_key(&id.to_string()),
                    "{what}: {id} does not wait: {rows:#?}"
                ),
            }
        }
    }
}

#[test]
fn zammad_api_customer_message_ends_the_wait_when_an_agent_answers() {
    let mut t = ZammadTicket::opened(1, 3 * H, customer(401, "wait@example.com", "Wai", "Ting"));
    t.agent_replies(2 * H).customer_writes(30 * 60);
    let (server, tickets) = zammad_api(vec![t], &[]);
    let mut setup = zammad_api_setup(&server, "1h", 9);
    setup.set("source.clock", "\"customer_message\"");
    let _daemon = setup.start();
    let planned = setup.wait_for_notices("notice 1 is planned", |n| {
        n.iter()
            .any(|n| n.ticket_id == "1" && n.status == "pending")
    });
    let planned: Vec<(String, Option<String>)> = planned
        .iter()
        .map(|n| (n.id.clone(), n.due_at.clone()))
        .collect();
    // The customer writes again: under Zammad's default the wait still
    // counts from the first unanswered message.
    if let Some(t) = tickets
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .first_mut()
    {
        t.customer_writes(60);
    }
    setup.assert_stays_for_polls(
        2,
        "the same wait: one pending notice, same id and due_at",
        || {
            let now: Vec<(String, Option<String>)> = setup
                .notices()
                .iter()
                .filter(|n| n.status == "pending")
                .map(|n| (n.id.clone(), n.due_at.clone()))
                .collect();
            planned.len() == 1 && now == planned && setup.notices().len() == 1
        },
    );
    if let Some(t) = tickets
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .first_mut()
    {
        t.agent_replies(0);
    }
    let ledger = setup.wait_for_notices("the agent's reply ends the wait", |n| {
        n.iter()
            .any(|n| n.ticket_id == "1" && n.status == "cancelled")
    });
    assert_eq!(ledger.len(), 1, "no new wait began: {ledger:#?}");
}

#[test]
fn zammad_api_subjects_carry_the_ticket_marker_so_replies_join_the_ticket() {
    let mut t = ZammadTicket::opened(
        7,
        3 * H,
        customer(507, "mara@example.com", "Mara", "Vogel").locale("de-de"),
    );
    t.agent_replies(2 * H).customer_writes(2 * H - 60);
    let u = ZammadTicket::opened(
        8,
        3 * H,
        customer(508, "noah@example.com", "Noah", "Smith").locale("en-us"),
    );
    let (server, _) = zammad_api(vec![t, u], &[]);
    let sink = SmtpSink::start();
    let mut setup = zammad_api_setup(&server, "1h", sink.port());
    // The shipped templates, which put the marker into the subject.
    for lang in ["de", "en"] {
        let read = |ext: &str| {
            let path = format!(
                "{}/config/templates/interim.{lang}.{ext}",
                env!("CARGO_MANIFEST_DIR")
            );
            fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("the shipped template interim.{lang}.{ext}: {e}"))
        };
        setup.template("interim", lang, &read("subject"), &read("txt"));
    }
    let out = sources_test(&setup);
    assert!(
        has_line(&out, &["thread: subject carries [Ticket#31007]"]),
        "{out}"
    );

    let _daemon = setup.start();
    setup.wait_for_notices("both notices went out", |n| {
        n.iter().filter(|n| n.status == "sent").count() == 2
    });
    for (address, start, marker) in [
        (
            "mara@example.com",
            "Zwischenstand zu Ihrer Anfrage: Zammad ticket 7",
            "[Ticket#31007]",
        ),
        (
            "noah@example.com",
            "Update on your request: Zammad ticket 8",
            "[Ticket#31008]",
        ),
    ] {
        let mails = sink.mails_to(address);
        assert_eq!(mails.len(), 1, "{address}");
        let subject = mails[0].subject();
        assert_eq!(
            subject,
            format!("{start} {marker}"),
            "the marker Zammad's follow-up check looks for, the number not twice"
        );
    }

    // "" turns the preset's marker off; the Message-ID still threads.
    setup.set("source.subject_marker", "\"\"");
    let out = sources_test(&setup);
    assert!(
        has_line(
            &out,
            &["thread: in reply to <customer.7.1@mail.example.net>"]
        ),
        "{out}"
    );
}

#[test]
fn zammad_api_notices_answer_the_customers_first_email() {
    let by_email = |id: i64| {
        let user = customer(700 + id, &format!("c{id}@example.com"), "C", "D").locale("en-us");
        ZammadTicket::opened(id, 3 * H, user)
    };
    // 1: opened by email, answered, written to again: the first email.
    let mut t1 = by_email(1);
    t1.agent_replies(2 * H).customer_writes(2 * H - 60);
    // 2: opened through the web form (no Message-ID), then an email.
    let mut t2 = by_email(2).via_web();
    t2.customer_writes(2 * H);
    // 3: the web form only: the marker alone threads it.
    let t3 = by_email(3).via_web();
    // 4: pending: it does not wait, so its articles are never asked for.
    let t4 = by_email(4).state(4);
    let expected = [
        (1, Some(t1.customer_message_id(1))),
        (2, Some(t2.customer_message_id(2))),
        (3, None),
    ];
    let (server, tickets) = zammad_api(vec![t1, t2, t3, t4], &[]);
    let sink = SmtpSink::start();
    let setup = zammad_api_setup(&server, "1h", sink.port());

    let out = sources_test(&setup);
    assert!(
        has_line(
            &out,
            &[
                "thread: subject carries [Ticket#31001], in reply to <customer.1.1@mail.example.net>"
            ]
        ),
        "{out}"
    );
    let asked = |id: i64| {
        server
            .requests()
            .iter()
            .filter(|r| r.path == format!("{BY_TICKET}{id}"))
            .count()
    };
    // `sources test` read each waiting ticket's articles once, in its own
    // process; the daemon starts with an empty cache.
    assert_eq!((asked(1), asked(2), asked(3), asked(4)), (1, 1, 1, 0));
    let _daemon = setup.start();
    setup.wait_for_notices("the three notices went out", |n| {
        n.iter().filter(|n| n.status == "sent").count() == 3
    });
    for (id, thread) in &expected {
        let mails = sink.mails_to(&format!("c{id}@example.com"));
        assert_eq!(mails.len(), 1, "ticket {id}");
        let mail = &mails[0];
        assert_eq!(mail.header("In-Reply-To"), thread.clone(), "ticket {id}");
        assert_eq!(mail.header("References"), thread.clone(), "ticket {id}");
    }

    let polls = || {
        server
            .requests()
            .iter()
            .filter(|r| r.path == "/api/v1/tickets/search" && r.number("page") == Some(1))
            .count()
    };
    // An internal note moves ticket 1's updated_at: its articles are read
    // again, once; the others' stay cached through further polls.
    lock(&tickets)[0].internal_note(30);
    setup.wait_until(
        Duration::from_secs(30),
        "ticket 1's articles read again",
        || asked(1) == 3,
    );
    let seen = polls();
    setup.wait_until(Duration::from_secs(30), "two more polls", || {
        polls() >= seen + 2
    });
    assert_eq!(
        (asked(1), asked(2), asked(3), asked(4)),
        (3, 2, 2, 0),
        "articles are asked for when a waiting ticket is new or changed"
    );
}

/// `sources test` read both tickets, ticket 1 without its first
/// customer mail (only the marker threads it), ticket 2 with it.
fn assert_only_ticket_2_threaded(out: &str) {
    assert!(out.contains("read 2 waiting ticket(s)"), "{out}");
    assert!(
        has_line(out, &["thread: subject carries [Ticket#31001]"])
            && !has_line(out, &["[Ticket#31001], in reply to"])
            && has_line(
                out,
                &["[Ticket#31002], in reply to <customer.2.1@mail.example.net>"]
            ),
        "{out}"
    );
}

#[test]
fn zammad_api_a_failing_article_request_leaves_the_notice_unthreaded_and_is_asked_again() {
    let tickets: Vec<ZammadTicket> = (1..=2)
        .map(|id| {
            let user = customer(800 + id, &format!("c{id}@example.com"), "C", "D");
            ZammadTicket::opened(id, 3 * H, user.locale("en-us"))
        })
        .collect();
    // Ticket 1's articles: HTTP 500 until `healed`.
    let healed = Arc::new(Mutex::new(false));
    let heals = healed.clone();
    let (server, _) = zammad_api_answering_articles(tickets, &[], move |id, articles| {
        if id == 1 && !*lock(&heals) {
            ApiResponse::error(500)
        } else {
            ApiResponse::json(&Value::Array(articles.to_vec()))
        }
    });
    let sink = SmtpSink::start();
    let setup = zammad_api_setup(&server, "1h", sink.port());

    // The poll is taken: a thread is not worth holding every notice for.
    let out = sources_test(&setup);
    assert_only_ticket_2_threaded(&out);

    let _daemon = setup.start();
    setup.wait_for_notices("both notices went out", |n| {
        n.iter().filter(|n| n.status == "sent").count() == 2
    });
    let mail_1 = &sink.mails_to("c1@example.com")[0];
    assert_eq!(mail_1.header("In-Reply-To"), None, "unthreaded, not held");
    let log = fs::read_to_string(setup.path("daemon.log")).unwrap_or_default();
    assert!(
        log.contains("per-ticket requests left some waiting tickets without source.per_ticket.first_customer_article")
            && log.contains("ticket 1: GET ")
            && log.contains("HTTP 500"),
        "one warning naming the ticket and the status:\n{log}"
    );
    // A failure is not cached: once the helpdesk answers, the thread is read.
    *lock(&healed) = true;
    let asked_1 = || {
        server
            .requests()
            .iter()
            .filter(|r| r.path == format!("{BY_TICKET}1"))
            .count()
    };
    let before = asked_1();
    setup.wait_until(
        Duration::from_secs(30),
        "ticket 1's articles asked again",
        || asked_1() > before,
    );
    let out = sources_test(&setup);
    assert!(
        has_line(
            &out,
            &["[Ticket#31001], in reply to <customer.1.1@mail.example.net>"]
        ),
        "{out}"
    );
}

#[test]
fn zammad_api_a_ticket_deleted_since_the_search_is_read_unthreaded() {
    let tickets: Vec<ZammadTicket> = (1..=2)
        .map(|id| ZammadTicket::opened(id, 3 * H, customer(900 + id, "c@example.com", "C", "D")))
        .collect();
    let (server, _) = zammad_api_answering_articles(tickets, &[], |id, articles| {
        if id == 1 {
            ApiResponse::error(404)
        } else {
            ApiResponse::json(&Value::Array(articles.to_vec()))
        }
    });
    let setup = zammad_api_setup(&server, "1h", 9);
    let out = sources_test(&setup);
    assert_only_ticket_2_threaded(&out);
}

#[test]
fn zammad_api_preset_values_can_be_overridden_key_by_key() {
    let t = |id: i64, state: i64| {
        let mut t = ZammadTicket::opened(
            id,
            3 * H,
            customer(600 + id, &format!("c{id}@example.com"), "C", "D"),
        );
        t.customer_writes(2 * H);
        t.state(state)
    };
    let tickets = vec![t(1, 2), t(2, 1), t(3, 3), t(4, 4), t(5, 2)];
    let (server, _) = zammad_api(tickets, &[]);
    let mut setup = zammad_api_setup(&server, "1h", 9);
    // One key of the preset's pagination table, and of waiting_when: pending
    // reminder (type 3) waits too.
    setup.set("source.pagination", "{ size = 2 }");
    setup.set("source.waiting_when", "{ in = [1, 2, 3] }");

    let out = sources_test(&setup);
    assert!(
        out.contains("read 4 waiting ticket(s), 1 ended, 0 skipped"),
        "{out}"
    );
    let pages: Vec<(Option<usize>, Option<usize>)> = server
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v1/tickets/search")
        .map(|r| (r.number("page"), r.number("per_page")))
        .collect();
    assert_eq!(
        pages,
        vec![
            (Some(1), Some(2)),
            (Some(2), Some(2)),
            (Some(3), Some(2)),
            (Some(4), Some(2))
        ]
    );
}

#[test]
fn zammad_api_fails_the_poll_when_a_lookup_cannot_be_read() {
    let (server, _) = zammad_api(zammad_clock_tickets(), &[]);
    server.set_script(|req| match req.path.as_str() {
        "/api/v1/ticket_states" => ApiResponse::error(403),
        _ => ApiResponse::json(&json!({"tickets": [], "tickets_count": 0, "assets": {}})),
    });
    let setup = zammad_api_setup(&server, "1h", 9);
    let out = setup.cli(&["sources", "test"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("source.lookup.ticket_state")
            && err.contains("/api/v1/ticket_states: HTTP 403"),
        "the lookup and its status are named: {err}"
    );
}

// -------------------------------------------------------------- zendesk-api

/// A Zendesk row: ticket `id` created `created` seconds ago, its requester,
/// and a metric set when either update time is given.
fn zendesk_row(
    id: i64,
    status: &str,
    created: i64,
    updated: &str,
    requester: Option<i64>,
    assignee: Option<i64>,
    user: Value,
) -> ZendeskRow {
    let requester_id = user["id"].as_i64().unwrap_or_default();
    ZendeskRow {
        ticket: zendesk_ticket(id, status, requester_id, &ago(created), updated),
        user,
        metrics: (requester.is_some() || assignee.is_some()).then(|| {
            zendesk_metric_set(
                id,
                requester.map(ago).as_deref(),
                assignee.map(ago).as_deref(),
            )
        }),
    }
}

#[test]
fn zendesk_api_end_to_end_mails_new_open_and_on_hold_tickets() {
    let user = |id: i64, name: &str, email: &str, locale: &str, zone: &str| {
        zendesk_user(id, name, email, locale, zone)
    };
    let newest_update = ago(600);
    let older = ago(900);
    let page1 = vec![
        zendesk_row(
            1001,
            "open",
            10 * H,
            &older,
            Some(3 * H),
            Some(5 * H),
            user(
                501,
                "Clara Schulz",
                "clara@example.de",
                "de",
                "Europe/Berlin",
            ),
        ),
        zendesk_row(
            1002,
            "new",
            2 * H,
            &older,
            None,
            None,
            user(
                502,
                "Dan Brown",
                "dan@example.com",
                "en-US",
                "America/New_York",
            ),
        ),
        zendesk_row(
            1003,
            "hold",
            10 * H,
            &older,
            Some(4 * H),
            None,
            user(
                503,
                "Eve Adams",
                "eve@example.com",
                "en-GB",
                "Europe/London",
            ),
        ),
        zendesk_row(
            1004,
            "pending",
            10 * H,
            &older,
            Some(5 * H),
            Some(6 * H),
            user(
                504,
                "Hal Jordan",
                "hal@example.com",
                "en-US",
                "America/Chicago",
            ),
        ),
    ];
    let page2 = vec![
        zendesk_row(
            1005,
            "solved",
            10 * H,
            &older,
            Some(5 * H),
            Some(6 * H),
            user(
                505,
                "Ida Wells",
                "ida@example.com",
                "en-US",
                "America/Chicago",
            ),
        ),
        zendesk_row(
            1006,
            "closed",
            10 * H,
            &older,
            Some(5 * H),
            Some(6 * H),
            user(
                506,
                "Jon Snow",
                "jon@example.com",
                "en-US",
                "America/Chicago",
            ),
        ),
        zendesk_row(
            1007,
            "deleted",
            10 * H,
            &older,
            Some(5 * H),
            Some(6 * H),
            user(
                507,
                "Kim Park",
                "kim@example.com",
                "en-US",
                "America/Chicago",
            ),
        ),
        zendesk_row(
            1008,
            "open",
            10 * H,
            &newest_update,
            Some(5 * H),
            Some(10 * 60),
            user(
                508,
                "Finn Berg",
                "finn@example.com",
                "de-CH",
                "Europe/Zurich",
            ),
        ),
    ];
    let changes: Arc<Mutex<Vec<ZendeskRow>>> = Arc::new(Mutex::new(Vec::new()));
    let server = zendesk_export(vec![page1, page2], changes.clone());
    let basic = zendesk_basic();
    let sink = SmtpSink::start();
    let setup = zendesk_api_setup(&server, "1h", sink.port());

    let _daemon = setup.start();
    let ledger = setup.wait_for_notices("the notices of 1001, 1002 and 1003 went out", |n| {
        n.iter().filter(|n| n.status == "sent").count() == 3
    });
    let notice_1008 = ledger.iter().find(|n| n.ticket_id == "1008");
    assert_eq!(
        notice_1008.map(|n| n.status.as_str()),
        Some("pending"),
        "the assignee's update 10 minutes ago restarted the clock"
    );

    // The requester's ticket is solved: the incremental export reports it.
    let solved = ZendeskRow {
        ticket: zendesk_ticket(1008, "solved", 508, &ago(10 * H), &ago(0)),
        user: zendesk_user(
            508,
            "Finn Berg",
            "finn@example.com",
            "de-CH",
            "Europe/Zurich",
        ),
        metrics: Some(zendesk_metric_set(1008, Some(&ago(5 * H)), Some(&ago(0)))),
    };
    if let Ok(mut c) = changes.lock() {
        c.push(solved);
    }
    setup.wait_for_notices("the solved ticket's notice is cancelled", |n| {
        n.iter()
            .any(|n| n.ticket_id == "1008" && n.status == "cancelled")
    });
    assert_eq!(sink.mails().len(), 3, "no other mail went out");

    let requests = server.requests();
    assert_eq!(
        requests[0].param("include"),
        Some("users,metric_sets"),
        "users and metric sets are side-loaded"
    );
    assert_eq!(
        requests[1].param("cursor"),
        Some("c1"),
        "page 2 by after_cursor"
    );
    let incremental = requests
        .iter()
        .find_map(|r| r.param("start_time").filter(|s| *s != "0"))
        .expect("an incremental poll");
    assert_eq!(
        incremental.parse::<i64>().ok(),
        Some(instant(&newest_update).timestamp() - 120),
        "start_time = the newest updated_at minus source.overlap (2m)"
    );
    for r in &requests {
        assert_eq!(r.header("authorization"), basic);
    }
    // The requester's locale picks the language; the ticket id is the
    // request number.
    let mailed = [
        ("1001", "clara@example.de", "Zwischenbescheid zu"),
        ("1002", "dan@example.com", "Update on"),
        ("1003", "eve@example.com", "Update on"),
    ]
    .map(|(ticket, address, words)| Mailed {
        ticket: ticket.into(),
        address: address.into(),
        subject_starts: words.into(),
        subject_names: vec![format!("{words} {ticket}:")],
    });
    let untracked = ["1004", "1005", "1006", "1007"];
    assert_mailed_end_to_end(&setup, &ledger, &sink, &mailed, &untracked, ZENDESK_TOKEN);
}

#[test]
fn zendesk_api_each_clock_counts_what_the_metric_set_can_tell() {
    let user = |id: i64| {
        zendesk_user(
            id,
            "Req Uester",
            &format!("r{id}@example.com"),
            "en-US",
            "Europe/Berlin",
        )
    };
    let old = ago(11 * H);
    let rows = vec![
        // A: the requester wrote a second time 2h ago; the assignee 8h ago.
        zendesk_row(1, "open", 10 * H, &old, Some(2 * H), Some(8 * H), user(701)),
        // B: an internal note of the assignee 1h ago moved assignee_updated_at.
        zendesk_row(2, "open", 10 * H, &old, Some(6 * H), Some(H), user(702)),
        // C: the assignee replied 3h ago.
        zendesk_row(3, "open", 10 * H, &old, Some(6 * H), Some(3 * H), user(703)),
        // D: new, no metric set yet.
        zendesk_row(4, "new", 5 * H, &old, None, None, user(704)),
    ];
    let server = zendesk_export(vec![rows], Arc::default());
    let cases: [(Option<&str>, [Option<i64>; 4]); 4] = [
        (None, [Some(2 * H), Some(H), Some(3 * H), Some(5 * H)]),
        (
            Some("last_public_contact"),
            [Some(2 * H), Some(H), Some(3 * H), Some(5 * H)],
        ),
        (
            Some("agent_updates"),
            [Some(8 * H), Some(H), Some(3 * H), Some(5 * H)],
        ),
        // Zendesk cannot tell the internal note (B) from a reply (C): both
        // end the wait. A counts from the newest message, all Zendesk keeps.
        (
            Some("customer_message"),
            [Some(2 * H), None, None, Some(5 * H)],
        ),
    ];
    for (clock, expected) in cases {
        let mut setup = zendesk_api_setup(&server, "1h", 9);
        if let Some(clock) = clock {
            setup.set("source.clock", &format!("{clock:?}"));
        }
        let what = clock.unwrap_or("the default clock");
        assert_names_clock(&setup, clock);
        let rows = plan(&setup);
        for (id, secs) in (1..=4).zip(expected) {
            match secs {
                Some(secs) => assert_waits_since(&rows, &id.to_string(), secs, what),
                None => assert!(
                    !rows.contains_key(&id.to_string()),
                    "{what}: {id} does not wait: {rows:#?}"
                ),
            }
        }
    }
    // No subject marker: Zendesk does not thread by one.
    let out = sources_test(&zendesk_api_setup(&server, "1h", 9));
    assert!(has_line(&out, &["thread: none"]), "{out}");
    assert!(
        has_line(
            &out,
            &["customer Req Uester <r701@example.com>, language en,"]
        ),
        "{out}"
    );
}

// ------------------------------------------------------------ config errors

/// `check-config`'s exit code and stderr.
fn check_config(setup: &support::Setup) -> (Option<i32>, String) {
    let out = setup.cli(&["check-config"]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_clock_a_preset_cannot_give_is_an_error_naming_its_reason_and_the_choices() {
    // (A clock that is not one at all: config_errors.rs.)
    let mut setup = offline_setup("zendesk-api", ZENDESK_OFFLINE);
    let (code, err) = check_config(&setup);
    assert_eq!(code, Some(0), "zendesk-api as it is passes:\n{err}");
    setup.toml("[source.clocks]\nagent_updates = { unsupported = \"the export does not say which agent wrote\" }");
    setup.set("source.clock", "\"agent_updates\"");
    let (code, err) = check_config(&setup);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("source.clock: \"agent_updates\" is not available with preset zendesk-api: the export does not say which agent wrote; choose one of last_public_contact (default), customer_message"),
        "{err}"
    );
}

/// check-config refuses the config (exit 2), naming each of `lines`.
fn assert_refused_with(setup: &support::Setup, lines: &[&str]) {
    let (code, err) = check_config(setup);
    assert_eq!(code, Some(2), "{err}");
    for line in lines {
        assert!(err.contains(line), "{line}\n---\n{err}");
    }
}

#[test]
fn field_and_state_mistakes_of_an_http_source_name_their_key() {
    let mut setup = offline_setup("zammad-api", ZAMMAD_OFFLINE);
    setup.set("source.waiting_states", "[\"open\"]");
    setup.toml(
        "[source.clocks]\ncustomer_message = \"t.last_contact_customer_at\"\n\
         [source.lookup.owner]\nurl = \"https://elsewhere.example.com/api/v1/users\"\nreference = \"/owner_id\"",
    );
    setup.set("source.clock", "\"customer_message\"");
    setup.set(
        "source.fields",
        "{ priority = { pointer = \"/ticket_priority/name\", remove = \"([0-9\" }, customer_name = { pointer = \"/customer/firstname\", joni = \" \" } }",
    );
    assert_refused_with(
        &setup,
        &[
            "source.waiting_when: waiting_states is set too: set one of them",
            "source.clocks.customer_message: an http source's clock is a list of JSON pointers",
            "source.fields.priority.remove: \"([0-9\" is not a regular expression",
            "source.fields.customer_name: must be a JSON pointer, a list of them, or a table",
            "source.lookup.owner.url: https://elsewhere.example.com is another origin than source.url's https://zammad.example.com",
        ],
    );
}

#[test]
fn per_ticket_mistakes_name_their_key() {
    let mut setup = offline_setup("zammad-api", ZAMMAD_OFFLINE);
    setup.toml(
        "[source.per_ticket.history]\nurl = \"https://elsewhere.example.com/api/v1/history\"\n\
         first = { pointer = \"sender\", in = [] }\n\
         [source.per_ticket.customer]\nurl = \"/api/v1/users/{id}\"",
    );
    setup.set(
        "source.fields",
        "{ waiting_since = \"/history/created_at\", customer_name = [\"/history/from\", \"/title\"] }",
    );
    assert_refused_with(
        &setup,
        &[
            "source.per_ticket.history.url: names no {id}: every ticket would get the same answer",
            "source.per_ticket.history.url: https://elsewhere.example.com is another origin than source.url's https://zammad.example.com",
            "source.per_ticket.history.first.pointer: \"sender\" is not a JSON pointer",
            "source.per_ticket.history.first.in: is empty: nothing would match",
            "source.per_ticket.customer: a sideload or lookup joins into the same member: rename one",
            "source.fields.waiting_since: reads /history/created_at of source.per_ticket.history, which is fetched only for a ticket that waits",
            "source.fields.customer_name: reads /history/from of source.per_ticket.history and pointers outside it",
        ],
    );
}
