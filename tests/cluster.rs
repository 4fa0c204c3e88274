//! Several daemons on one PostgreSQL store (issue 6): due notices are
//! shared out by claims with a lease, each delivered once; a killed
//! instance's claims are taken over when their lease ends, duplicating at
//! most its sends in flight; exactly one instance polls the source, and
//! another takes over when it dies. Skipped without
//! `INTERIM_TEST_POSTGRES_URL`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::thread;
use std::time::{Duration, Instant};

use support::cluster::Cluster;
use support::http;
use support::{
    Helpdesk, Setup, Ticket, WEBHOOK_SECRET, WEBHOOK_SECRET_ENV, WebhookReceiver, WebhookRequest,
    text, toml_str,
};

/// Sends in flight per instance: the most a kill may duplicate.
const CONCURRENCY: usize = 8;
/// `store.claim_lease`: a killed instance's claims come back after this.
/// Long enough that a live instance starved of CPU by the whole suite on
/// two cores still renews in time (with 5 s a late renewal once let a
/// second instance send a notice whose first send was still running).
const LEASE: Duration = Duration::from_secs(15);
/// `daemon.poll_interval`: every instance asks for the poller role once a poll.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How soon another instance becomes the poller after the poller is
/// killed. The role is a PostgreSQL advisory lock held by the poller's own
/// session (src/store/leader.rs), not a claim: `store.claim_lease` plays no
/// part. PostgreSQL frees the lock as soon as it sees the dead session's
/// connection close (at once on loopback), and each other instance tries
/// `pg_try_advisory_lock` at its next poll, so the takeover takes about one
/// poll interval; the rest is room for a CPU-starved two-core machine.
const TAKEOVER: Duration = Duration::from_secs(5);
/// A liveness deadline, not a speed target (BENCHMARKS.md measures speed):
/// generous, because the whole suite shares two cores with three daemons
/// and PostgreSQL here (alone, round 1 takes 14–18 s).
const LONG: Duration = Duration::from_secs(90);

/// One webhook channel (`hook`, timeout below the lease) and one notice per
/// open ticket that waited a minute; tickets wait ten minutes, so every
/// notice is due when planned.
fn cluster_setup(receiver: &WebhookReceiver) -> Setup {
    let mut setup = Setup::new();
    setup
        .set(
            "daemon.poll_interval",
            &toml_str(&format!("{}s", POLL_INTERVAL.as_secs())),
        )
        .set(
            "store.claim_lease",
            &toml_str(&format!("{}s", LEASE.as_secs())),
        )
        .env(WEBHOOK_SECRET_ENV, WEBHOOK_SECRET)
        .toml(&format!(
            "[channels.hook]\nkind = \"webhook\"\nurl = {}\nsecret_env = \"{WEBHOOK_SECRET_ENV}\"\n\
             timeout = \"2s\"\nconcurrency = {CONCURRENCY}\nretry_initial = \"1s\"",
            toml_str(receiver.url())
        ))
        .policy(
            "first",
            "match = { state = [\"open\"] }\nafter = \"1m\"\nchannel = \"hook\"\ntemplate = \"interim\"",
        );
    setup
}

fn insert_tickets(helpdesk: &Helpdesk, ids: std::ops::RangeInclusive<i64>) {
    let tickets: Vec<Ticket> = ids.map(Ticket::new).collect();
    for chunk in tickets.chunks(500) {
        helpdesk.insert(chunk);
    }
}

/// How often the receiver saw each webhook-id, and the ticket id of each.
struct Received {
    counts: BTreeMap<String, usize>,
    ticket_of: BTreeMap<String, String>,
    requests: Vec<WebhookRequest>,
}

impl Received {
    fn of(receiver: &WebhookReceiver) -> Self {
        let requests = receiver.requests();
        let mut counts = BTreeMap::new();
        let mut ticket_of = BTreeMap::new();
        for request in &requests {
            let id = request.header("webhook-id");
            *counts.entry(id.clone()).or_insert(0) += 1;
            ticket_of.insert(id, text(&request.body["ticket"]["id"]));
        }
        Self {
            counts,
            ticket_of,
            requests,
        }
    }

    /// Distinct notices received for tickets in `ids`.
    fn distinct_for(&self, ids: &std::ops::RangeInclusive<i64>) -> usize {
        self.ticket_of
            .values()
            .filter(|t| t.parse::<i64>().is_ok_and(|t| ids.contains(&t)))
            .count()
    }

    /// Requests (repeats included) for tickets in `ids`.
    fn requests_for(&self, ids: &std::ops::RangeInclusive<i64>) -> usize {
        self.counts
            .iter()
            .filter(|(id, _)| {
                self.ticket_of[*id]
                    .parse::<i64>()
                    .is_ok_and(|t| ids.contains(&t))
            })
            .map(|(_, n)| n)
            .sum()
    }

    /// Every request is signed, and its webhook-id is the notice id in its body.
    fn assert_signed_and_identified(&self) {
        for request in &self.requests {
            assert!(request.verified, "a request failed signature verification");
            assert_eq!(
                request.header("webhook-id"),
                text(&request.body["id"]),
                "webhook-id is not the notice id of the body"
            );
        }
    }
}

/// `interim_delivery_attempts_total{channel="hook",result="ok"}` per running instance.
fn delivered_per_instance(cluster: &mut Cluster) -> Vec<f64> {
    let labels = [("channel", "hook"), ("result", "ok")];
    let mut counts = Vec::new();
    for instance in cluster.instances.iter_mut() {
        if instance.is_running() {
            let count = instance.metric("interim_delivery_attempts_total", &labels);
            counts.push(count.unwrap_or(0.0));
        }
    }
    counts
}

#[test]
fn three_instances_deliver_each_notice_once_and_a_kill_duplicates_only_its_sends_in_flight() {
    let receiver = WebhookReceiver::start(&[], 200, Duration::from_millis(3));
    let setup = cluster_setup(&receiver);
    let helpdesk = setup.helpdesk();
    let Some(mut cluster) = Cluster::new(setup) else {
        return;
    };
    cluster.start(3);
    cluster.wait_for_single_poller(LONG);

    // Round 1: 2,000 due notices, three instances, nobody dies.
    let first = 1..=2000;
    insert_tickets(&helpdesk, first.clone());
    let started = Instant::now();
    cluster.wait_until(LONG, "the receiver saw all 2,000 notices", |_| {
        Received::of(&receiver).distinct_for(&first) == 2000
    });
    println!("round 1: 2,000 notices in {:?}", started.elapsed());
    // Nothing more may arrive: no second send of any of them.
    thread::sleep(Duration::from_secs(2));
    let received = Received::of(&receiver);
    received.assert_signed_and_identified();
    let repeated: Vec<_> = received.counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeated.is_empty(),
        "{} notices were delivered more than once without any instance dying, e.g. {:?}",
        repeated.len(),
        repeated.iter().take(5).collect::<Vec<_>>()
    );
    assert_eq!(received.requests.len(), 2000);
    let per_instance = delivered_per_instance(&mut cluster);
    println!("round 1: deliveries per instance {per_instance:?}");
    assert_eq!(
        per_instance.iter().sum::<f64>(),
        2000.0,
        "the instances' delivery counters do not add up to 2,000: {per_instance:?}"
    );
    assert!(
        per_instance.iter().all(|n| *n > 0.0),
        "every instance takes a share of the due notices: {per_instance:?}"
    );
    let ledger = cluster.setup.notices();
    assert_eq!(ledger.len(), 2000, "one ledger row per notice");
    assert!(
        ledger.iter().all(|n| n.status == "sent" && n.attempts == 1),
        "every notice is sent after one attempt"
    );

    // Round 2: 1,000 more; one instance (not the poller) is killed mid-batch.
    let second = 2001..=3000;
    insert_tickets(&helpdesk, second.clone());
    cluster.wait_until(LONG, "a third of round 2 arrived", |_| {
        Received::of(&receiver).distinct_for(&second) >= 300
    });
    let victim = cluster
        .instances
        .iter()
        .position(|i| i.is_poller() == Some(false))
        .expect("an instance that is not the poller");
    cluster.instances[victim].kill9();
    let killed_at = Instant::now();
    let at_kill = Received::of(&receiver).distinct_for(&second);
    println!("round 2: killed instance {victim} after {at_kill} of 1,000 notices");
    assert!(
        at_kill < 1000,
        "the batch finished before the kill; the test proves nothing"
    );
    cluster.wait_until(LONG, "the receiver saw all of round 2", |_| {
        Received::of(&receiver).distinct_for(&second) == 1000
    });
    println!("round 2: complete {:?} after the kill", killed_at.elapsed());
    cluster.wait_until(LONG, "the ledger records all 3,000 as sent", |c| {
        c.setup
            .try_notices()
            .is_ok_and(|l| l.len() == 3000 && l.iter().all(|n| n.status == "sent"))
    });
    thread::sleep(Duration::from_secs(1));

    let received = Received::of(&receiver);
    received.assert_signed_and_identified();
    assert_eq!(
        received.requests_for(&first),
        2000,
        "round 1 was delivered again"
    );
    let duplicates = received.requests_for(&second) - 1000;
    let repeated: Vec<_> = received.counts.iter().filter(|(_, n)| **n > 1).collect();
    println!(
        "round 2: {duplicates} duplicate deliveries, of notices {:?}",
        repeated
    );
    assert!(
        duplicates <= CONCURRENCY,
        "{duplicates} duplicates, more than the killed instance's {CONCURRENCY} sends in flight: {repeated:?}"
    );
    assert!(
        repeated.iter().all(|(_, n)| **n == 2),
        "a notice was delivered more than twice: {repeated:?}"
    );
    let ids: BTreeSet<&String> = received.counts.keys().collect();
    assert_eq!(ids.len(), 3000, "one webhook-id per notice");
}

#[test]
fn when_the_poller_dies_another_instance_takes_over_within_a_few_polls_and_nothing_is_planned_twice()
 {
    let receiver = WebhookReceiver::start(&[], 200, Duration::ZERO);
    let setup = cluster_setup(&receiver);
    let helpdesk = setup.helpdesk();
    let Some(mut cluster) = Cluster::new(setup) else {
        return;
    };
    cluster.start(3);
    let poller = cluster.wait_for_single_poller(LONG);

    let before = 1..=50;
    insert_tickets(&helpdesk, before.clone());
    cluster.wait_until(LONG, "the first 50 notices are sent", |c| {
        c.setup
            .try_notices()
            .is_ok_and(|l| l.len() == 50 && l.iter().all(|n| n.status == "sent"))
    });
    assert_eq!(Received::of(&receiver).distinct_for(&before), 50);

    // Nothing is in flight now: every delivery from here on is a new one.
    cluster.instances[poller].kill9();
    let killed_at = Instant::now();
    let successor = cluster.wait_for_single_poller(LONG);
    let took = killed_at.elapsed();
    println!("instance {successor} became the poller {took:?} after instance {poller} died");
    assert_ne!(successor, poller);
    assert!(
        took <= TAKEOVER,
        "the next poller took over after {took:?}, more than {TAKEOVER:?} (poll interval {POLL_INTERVAL:?})"
    );

    // The new poller plans new tickets.
    let after = 51..=100;
    insert_tickets(&helpdesk, after.clone());
    cluster.wait_until(LONG, "all 100 notices are sent", |c| {
        c.setup
            .try_notices()
            .is_ok_and(|l| l.len() == 100 && l.iter().all(|n| n.status == "sent"))
    });

    // The killed instance comes back: it does not become a second poller.
    cluster.start_one();
    thread::sleep(Duration::from_secs(3));
    assert_eq!(
        cluster.wait_for_single_poller(LONG),
        successor,
        "the restarted instance took the poller role from a live poller"
    );

    let ledger = cluster.setup.notices();
    let mut per_ticket: BTreeMap<String, usize> = BTreeMap::new();
    for notice in &ledger {
        *per_ticket.entry(notice.ticket_id.clone()).or_insert(0) += 1;
        assert_eq!(
            (notice.number, notice.status.as_str(), notice.attempts),
            (1, "sent", 1),
            "notice {notice:?}"
        );
    }
    assert_eq!(per_ticket.len(), 100, "one series per ticket");
    assert!(
        per_ticket.values().all(|n| *n == 1),
        "a ticket got more than one notice planned: {per_ticket:?}"
    );
    let received = Received::of(&receiver);
    received.assert_signed_and_identified();
    let repeated: Vec<_> = received.counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeated.is_empty(),
        "delivered more than once: {repeated:?}"
    );
    assert_eq!(received.counts.len(), 100);
    let ledger_ids: BTreeSet<&str> = ledger.iter().map(|n| n.id.as_str()).collect();
    let received_ids: BTreeSet<&str> = received.counts.keys().map(String::as_str).collect();
    assert_eq!(ledger_ids, received_ids);
}

/// The `/readyz` status of every running instance (0: no answer).
fn readyz_statuses(cluster: &mut Cluster) -> Vec<u16> {
    let mut statuses = Vec::new();
    for instance in cluster.instances.iter_mut() {
        if instance.is_running() {
            let response = http::get(&instance.admin, "/readyz");
            statuses.push(response.map_or(0, |r| r.status));
        }
    }
    statuses
}

/// Whether a `/readyz` body says that its instance polls: `"poller": bool`,
/// `"is_poller": bool` or `"role": "poller"|…`. None when it does not say.
fn readyz_says_poller(body: &serde_json::Value) -> Option<bool> {
    ["poller", "is_poller"]
        .iter()
        .find_map(|key| body[key].as_bool())
        .or_else(|| body["role"].as_str().map(|role| role == "poller"))
}

#[test]
fn readyz_of_each_instance_says_whether_it_is_the_poller() {
    let receiver = WebhookReceiver::start(&[], 200, Duration::ZERO);
    let setup = cluster_setup(&receiver);
    setup.helpdesk();
    let Some(mut cluster) = Cluster::new(setup) else {
        return;
    };
    cluster.start(2);
    let poller = cluster.wait_for_single_poller(LONG);
    cluster.wait_until(LONG, "every instance is ready", |c| {
        readyz_statuses(c).iter().all(|s| *s == 200)
    });
    for instance in &cluster.instances {
        let response = http::get(&instance.admin, "/readyz").expect("/readyz answers");
        assert_eq!(response.status, 200, "{}", response.body);
        assert_eq!(
            readyz_says_poller(&response.json()),
            Some(instance.index == poller),
            "/readyz of instance {} (poller: {}) does not say whether it polls: {}",
            instance.index,
            instance.index == poller,
            response.body
        );
    }
}

#[test]
fn every_instance_holds_notices_when_the_shared_last_poll_is_stale() {
    let receiver = WebhookReceiver::start(&[], 200, Duration::ZERO);
    let mut setup = cluster_setup(&receiver);
    setup.set("daemon.max_snapshot_age", &toml_str("3s"));
    let helpdesk = setup.helpdesk();
    let Some(mut cluster) = Cluster::new(setup) else {
        return;
    };
    cluster.start(2);
    cluster.wait_for_single_poller(LONG);
    cluster.wait_until(LONG, "both instances are ready", |c| {
        readyz_statuses(c) == [200, 200]
    });

    // Ticket 1's notice falls due 12 s from now; it is planned at once.
    let due_in = Duration::from_secs(12);
    let planted = Instant::now();
    helpdesk.insert(&[Ticket {
        waiting_since: support::ago(60 - due_in.as_secs() as i64),
        ..Ticket::new(1)
    }]);
    cluster.wait_until(LONG, "ticket 1's notice is planned", |c| {
        c.setup.try_notices().is_ok_and(|l| l.len() == 1)
    });
    // The source breaks: the poller's polls fail, the last successful poll
    // ages, and both instances (the one that never polls too) stop being ready.
    helpdesk.execute("ALTER TABLE tickets RENAME TO tickets_away");
    cluster.wait_until(LONG, "both instances report not ready", |c| {
        readyz_statuses(c) == [503, 503]
    });
    assert!(
        planted.elapsed() < due_in,
        "the snapshot went stale only after the notice fell due; the test proves nothing"
    );
    // The notice falls due while the snapshot is stale: nobody sends it.
    while planted.elapsed() < due_in + Duration::from_secs(2) {
        assert!(
            receiver.requests().is_empty(),
            "a notice was sent although the last successful poll is older than max_snapshot_age"
        );
        thread::sleep(Duration::from_millis(100));
    }
    helpdesk.execute("ALTER TABLE tickets_away RENAME TO tickets");
    cluster.wait_until(LONG, "the notice is sent once the source answers", |_| {
        receiver.requests().len() == 1
    });
    cluster.wait_until(LONG, "both instances are ready again", |c| {
        readyz_statuses(c) == [200, 200]
    });
}

#[test]
fn when_the_pollers_database_session_is_cut_exactly_one_instance_polls_again() {
    let receiver = WebhookReceiver::start(&[], 200, Duration::ZERO);
    let setup = cluster_setup(&receiver);
    let helpdesk = setup.helpdesk();
    let Some(mut cluster) = Cluster::new(setup) else {
        return;
    };
    cluster.start(3);
    cluster.wait_for_single_poller(LONG);

    // The poller's process lives on, but its session (the one holding the
    // poller's advisory lock, key "\0interim" as classid and objid) is gone,
    // as after a network cut or a server restart.
    let terminated = cluster.db.query_text(
        "SELECT count(*)::text FROM (SELECT pg_terminate_backend(pid) FROM pg_locks \
         WHERE locktype = 'advisory' AND granted AND mode = 'ExclusiveLock' \
         AND classid = 6909556 AND objid = 1701996909 \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())) t",
    );
    assert_eq!(
        terminated.as_deref(),
        Some("1"),
        "one session held the poller lock"
    );
    thread::sleep(Duration::from_secs(3));
    let poller = cluster.wait_for_single_poller(LONG);
    println!("instance {poller} polls after the cut");

    insert_tickets(&helpdesk, 1..=20);
    cluster.wait_until(LONG, "the new tickets' notices are sent", |c| {
        c.setup
            .try_notices()
            .is_ok_and(|l| l.len() == 20 && l.iter().all(|n| n.status == "sent"))
    });
    thread::sleep(Duration::from_secs(1));
    let received = Received::of(&receiver);
    assert_eq!(received.requests.len(), 20, "each notice delivered once");
    assert_eq!(cluster.wait_for_single_poller(LONG), poller);
}
