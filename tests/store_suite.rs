//! The conformance suite of the two ledger engines (crates/store-sqlite,
//! crates/store-postgres), run through the library API against SQLite (a
//! file in a temporary directory) and PostgreSQL (a database of its own).
//! The same behaviour is expected of both: claims with a lease
//! and a fencing token, lease renewal, series advancing and remembered
//! while a ticket is away, series derived from their notices, cancellation
//! by a plan, retries of dead notices as the series' next notice,
//! suppressions, the poll time and watermark, unchanged polls that write
//! nothing, and concurrent claims that never hand out one notice twice.

mod support;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use interim::config::Settings;
use interim::notice::{SeriesKey, Status, truncate_millis};
use interim::planner::{PlannedNotice, SeriesPlan, SeriesState, TicketFacts};
use interim::setup::{self, Config};
use interim::store::{ClaimedNotice, NoticeFilter, Outcome, PollEnd, Recorded, Store};
use interim::ticket::Ticket;
use support::ledger::{self, Polled, ticket};
use support::postgres::PgDatabase;

const LEASE: Duration = Duration::from_secs(30);
const CHANNEL: &str = "out";
const POLICY: &str = "p";

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

/// What a suite test gets: an open store and the settings it plans with
/// (policy `p`: open tickets, first notice 60 s after `waiting_since`,
/// then every 120 s, at most 3, into the file channel `out`).
struct Ctx {
    store: Store,
    settings: Arc<Settings>,
}

impl Ctx {
    /// A second handle on the same store, as another instance would open it.
    async fn open_again(&self) -> Store {
        Store::open(&self.settings.store.url)
            .await
            .expect("open the store a second time")
    }

    /// A full poll seeing `tickets` at `now`: plans against the ledger,
    /// applies the plan and ends the series of absent tickets.
    async fn poll(&self, tickets: &[Ticket], now: DateTime<Utc>) -> Polled {
        ledger::full_poll(&self.store, &self.settings, tickets, now).await
    }

    async fn claim(&self, now: DateTime<Utc>, limit: usize, instance: &str) -> Vec<ClaimedNotice> {
        self.claim_with(now, limit, instance, LEASE).await
    }

    async fn claim_with(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        instance: &str,
        lease: Duration,
    ) -> Vec<ClaimedNotice> {
        self.store
            .claim_due(CHANNEL, false, now, limit, lease, instance)
            .await
            .expect("claim due notices")
    }

    /// Claims at `now` until something is handed out (a PostgreSQL lease
    /// runs on the database's clock: its end is waited for in real time).
    async fn claim_once_free(&self, now: DateTime<Utc>, instance: &str) -> Vec<ClaimedNotice> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.claim(now, 10, instance).await;
            if !got.is_empty() || std::time::Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn statuses(&self) -> Vec<(String, u32, Status)> {
        let rows = self
            .store
            .list(&NoticeFilter::default())
            .await
            .expect("list notices");
        rows.iter()
            .map(|r| (r.ticket_id.clone(), r.number, r.status))
            .collect()
    }

    async fn status(&self, id: &str) -> Option<Status> {
        self.store.status_of(id).await.expect("status of a notice")
    }
}

fn write_config(dir: &std::path::Path, store_url: &str) -> Config {
    let text = format!(
        r#"
[daemon]
poll_interval = "30s"
[store]
url = "{store_url}"
[source]
kind = "sql"
url = "sqlite://{dir}/unused.db"
query = "SELECT 1"
[channels.{CHANNEL}]
kind = "file"
path = "{dir}/out"
format = "json"
[[policies]]
name = "{POLICY}"
match = {{ state = ["open"] }}
after = "60s"
repeat_every = "120s"
max_notices = 3
channel = "{CHANNEL}"
template = "interim"
"#,
        dir = dir.display()
    );
    let path = dir.join("interim.toml");
    std::fs::write(&path, text).expect("write the config");
    setup::load(&path).expect("a valid config")
}

/// Runs one suite test against a fresh store of `backend`.
fn run<F, Fut>(backend: Backend, test: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => match PgDatabase::create() {
            Some(db) => Some(db),
            None => return,
        },
    };
    let url = match &db {
        Some(db) => db.url.clone(),
        None => format!("sqlite://{}/ledger.db", dir.path().display()),
    };
    let config = write_config(dir.path(), &url);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let settings = config.settings.clone();
        let store = Store::open(&settings.store.url)
            .await
            .unwrap_or_else(|e| panic!("open the {backend:?} store: {e:#}"));
        test(Ctx {
            store: store.clone(),
            settings,
        })
        .await;
        store.close().await;
    });
    drop(runtime);
    drop(db);
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0)
        .single()
        .expect("a valid instant")
}

/// The real time, for tests of leases (PostgreSQL measures them on the
/// database's clock).
fn real_now() -> DateTime<Utc> {
    truncate_millis(Utc::now())
}

fn secs(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

/// The id of notice `number` of `ticket`'s current wait under the policy.
fn notice_id(t: &Ticket, number: u32) -> String {
    SeriesKey::new(&t.id, POLICY, t.waiting_since).notice_id(number, false)
}

fn tickets_of(claimed: &[ClaimedNotice]) -> BTreeSet<String> {
    claimed.iter().map(|n| n.ticket_id.clone()).collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

async fn claims_return_due_notices_once_until_their_lease_ends(ctx: Ctx) {
    let now = real_now();
    let waited = now - secs(600);
    // T3 started waiting now: its first notice is due in 60 s.
    let tickets = [
        ticket("T1", waited),
        ticket("T2", waited),
        ticket("T3", now),
    ];
    let polled = ctx.poll(&tickets, now).await;
    assert_eq!(
        polled.plan.upserts.len(),
        3,
        "one notice planned per ticket"
    );

    let short = Duration::from_secs(2);
    let first = ctx.claim_with(now, 1, "a", short).await;
    assert_eq!(first.len(), 1, "the limit is respected");
    let rest = ctx.claim_with(now, 10, "a", short).await;
    let claimed: Vec<ClaimedNotice> = first.into_iter().chain(rest).collect();
    assert_eq!(
        tickets_of(&claimed),
        set(&["T1", "T2"]),
        "the due notices, each once"
    );
    for n in &claimed {
        let t = tickets
            .iter()
            .find(|t| t.id == n.ticket_id)
            .expect("a ticket");
        assert_eq!(n.id, notice_id(t, 1));
        assert_eq!((n.number, n.max_notices, n.attempts), (1, 3, 0));
        assert_eq!(n.episode, truncate_millis(waited));
        assert_eq!(n.due_at, waited + secs(60));
        assert_eq!(n.channel, CHANNEL);
        assert_eq!(
            n.ticket.as_ref().expect("the stored ticket").id,
            n.ticket_id
        );
        assert_eq!(ctx.status(&n.id).await, Some(Status::Pending));
    }

    // Claimed: nobody else gets them before the lease ends.
    let during = ctx.claim(now + secs(1), 10, "b").await;
    assert!(
        during.is_empty(),
        "claimed again within the lease: {:?}",
        tickets_of(&during)
    );
    // The claimant died: after the lease they are handed out again, with
    // a new fencing token. (The two leases began one statement apart: on
    // PostgreSQL's clock they may end apart, so collect until both came.)
    let mut after = ctx.claim_once_free(now + secs(3), "b").await;
    if after.len() < 2 {
        after.extend(ctx.claim_once_free(now + secs(3), "b").await);
    }
    assert_eq!(tickets_of(&after), set(&["T1", "T2"]));
    for n in &after {
        let old = claimed
            .iter()
            .find(|c| c.id == n.id)
            .expect("claimed before");
        assert!(n.claim_token > old.claim_token, "a new claim, a new token");
    }
    // A released claim is free at once.
    assert_eq!(
        ctx.store
            .release(&after[0], None, None, None)
            .await
            .expect("release a claim"),
        Recorded::Done
    );
    let released = ctx.claim(now + secs(3), 10, "c").await;
    assert_eq!(tickets_of(&released), set(&[after[0].ticket_id.as_str()]));
}

async fn a_late_writer_whose_claim_was_taken_over_records_nothing(ctx: Ctx) {
    let now = real_now();
    ctx.poll(&[ticket("T1", now - secs(600))], now).await;
    let a = ctx
        .claim_with(now, 10, "a", Duration::from_millis(500))
        .await;
    assert_eq!(a.len(), 1);
    let b = ctx.claim_once_free(now + secs(1), "b").await;
    assert_eq!(b.len(), 1, "the expired claim is taken over");
    assert_eq!(
        ledger::record(&ctx.store, &b[0], Status::Sent, now + secs(1)).await,
        Recorded::Done
    );
    // Instance a comes back late with its failure: it must not overwrite.
    assert_eq!(
        ledger::record(&ctx.store, &a[0], Status::Dead, now + secs(2)).await,
        Recorded::Fenced
    );
    assert_eq!(
        ctx.store
            .record_retry(&a[0], now, now + secs(60), now, "timed out")
            .await
            .expect("record a retry"),
        Recorded::Fenced
    );
    assert_eq!(
        ctx.store
            .release(&a[0], None, None, None)
            .await
            .expect("release"),
        Recorded::Fenced
    );
    assert!(!ctx.store.renew(&a[0], now, LEASE).await.expect("renew"));
    assert_eq!(ctx.status(&a[0].id).await, Some(Status::Sent));
}

async fn a_renewed_lease_keeps_a_claim_past_its_first_deadline(ctx: Ctx) {
    let now = real_now();
    ctx.poll(&[ticket("T1", now - secs(600))], now).await;
    let lease = Duration::from_millis(800);
    let a = ctx.claim_with(now, 10, "a", lease).await;
    assert_eq!(a.len(), 1);
    // Renewed every 200 ms for 2.4 s: three leases long, never free.
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let at = real_now();
        assert!(ctx.store.renew(&a[0], at, lease).await.expect("renew"));
        assert!(
            ctx.claim(at, 10, "b").await.is_empty(),
            "a renewed claim was taken over"
        );
    }
    assert_eq!(
        ledger::record(&ctx.store, &a[0], Status::Sent, real_now()).await,
        Recorded::Done
    );
}

/// The notice after `n` as the dispatcher plans it when `n` was sent at `at`.
fn next_after(ctx: &Ctx, n: &ClaimedNotice, at: DateTime<Utc>) -> Option<PlannedNotice> {
    let policy = &ctx.settings.policies[0];
    let ticket = n.ticket.as_ref().expect("the stored ticket");
    let state = SeriesState {
        key: SeriesKey::new(&n.ticket_id, &n.policy, n.episode),
        done: n.number,
        last_sent_at: Some(at),
        active: true,
        stored: true,
        next: None,
    };
    let facts = TicketFacts {
        ticket,
        json: &n.ticket_json,
        hash: n.ticket_hash,
        recipient: n.recipient.clone(),
    };
    match interim::planner::plan_series(policy, &facts, &state, at, false) {
        SeriesPlan::Upsert(next) => Some(next),
        _ => None,
    }
}

async fn record_done_advances_the_series_and_plans_the_next_notice_at_once(ctx: Ctx) {
    let now = t0();
    let t1 = ticket("T1", now - secs(600));
    ctx.poll(std::slice::from_ref(&t1), now).await;
    let claimed = ctx.claim(now, 10, "a").await;
    assert_eq!(claimed.len(), 1);
    let n = &claimed[0];
    let next = next_after(&ctx, n, now).expect("a next notice");
    let recorded = ctx
        .store
        .record_done(
            n,
            &Outcome {
                status: Status::Sent,
                attempt_started: now,
                finished: now + secs(1),
                next_notice_at: Some(now + secs(120)),
                error: None,
            },
            Some(&next),
        )
        .await
        .expect("record the send");
    assert_eq!(recorded, Recorded::Done);
    assert_eq!(ctx.status(&n.id).await, Some(Status::Sent));

    let series = ctx.store.load_series(false).await.expect("load series");
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].done, 1);
    assert_eq!(series[0].last_sent_at, Some(now));
    assert_eq!(
        series[0]
            .next
            .as_ref()
            .map(|n| (n.number, n.status, n.send_at)),
        Some((2, Status::Pending, now + secs(120))),
        "notice 2 is planned with the send, at the instant notice 1 promised"
    );
    // The next poll agrees and writes nothing.
    let polled = ctx.poll(std::slice::from_ref(&t1), now + secs(2)).await;
    assert!(polled.plan.upserts.is_empty(), "{:?}", polled.plan.upserts);

    let rows = ctx
        .store
        .list(&NoticeFilter::default())
        .await
        .expect("list notices");
    let summary: Vec<(u32, Status)> = rows.iter().map(|r| (r.number, r.status)).collect();
    assert_eq!(summary, [(1, Status::Sent), (2, Status::Pending)]);
    assert_eq!(rows[0].sent_at, Some(now + secs(1)));
    assert_eq!(rows[0].next_notice_at, Some(now + secs(120)));
    assert!(
        ctx.claim(now + secs(60), 10, "a").await.is_empty(),
        "number 2 is not due yet"
    );
    let second = ctx.claim(now + secs(120), 10, "a").await;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].number, 2);
}

async fn spacing_counts_real_sends_only(ctx: Ctx) {
    let now = t0();
    let t1 = ticket("T1", now - secs(600));
    ctx.poll(std::slice::from_ref(&t1), now).await;
    let first = ctx.claim(now, 10, "a").await;
    ledger::record(&ctx.store, &first[0], Status::Sent, now).await;
    let polled = ctx.poll(std::slice::from_ref(&t1), now).await;
    assert_eq!(polled.plan.upserts[0].due_at, now + secs(120));
    let second = ctx.claim(now + secs(120), 10, "a").await;
    // Notice 2 is dead: notice 3 is spaced from notice 1, the last real send.
    ledger::record(&ctx.store, &second[0], Status::Dead, now + secs(120)).await;
    let polled = ctx.poll(std::slice::from_ref(&t1), now + secs(121)).await;
    let third = &polled.plan.upserts[0];
    assert_eq!(third.number, 3);
    assert_eq!(
        third.due_at,
        now + secs(120),
        "spaced from notice 1, the last real send, not from the dead notice 2"
    );
}

async fn a_full_poll_without_the_ticket_cancels_its_pending_notice(ctx: Ctx) {
    let now = t0();
    let waited = now - secs(600);
    let (t1, t2) = (ticket("T1", waited), ticket("T2", waited));
    ctx.poll(&[t1.clone(), t2.clone()], now).await;

    let polled = ctx.poll(std::slice::from_ref(&t2), now + secs(1)).await;
    assert_eq!(polled.swept.len(), 1, "{:?}", polled.swept);
    assert_eq!(polled.swept[0].id, notice_id(&t1, 1));
    assert_eq!(
        ctx.status(&notice_id(&t1, 1)).await,
        Some(Status::Cancelled)
    );
    let cancelled = ctx
        .store
        .list(&NoticeFilter {
            status: Some(Status::Cancelled),
            ticket: None,
        })
        .await
        .expect("list cancelled notices");
    assert_eq!(cancelled.len(), 1);
    assert_eq!(cancelled[0].ticket_id, "T1");
    assert_eq!(
        cancelled[0].cancel_reason.as_deref(),
        Some("the ticket is no longer waiting")
    );
    let claimed = ctx.claim(now + secs(2), 10, "a").await;
    assert_eq!(
        tickets_of(&claimed),
        set(&["T2"]),
        "a cancelled notice is never claimed"
    );
    // The pre-send re-check cancels the claimed one.
    assert_eq!(
        ctx.store
            .cancel_claimed(&claimed[0], "re-check: answered", now + secs(2))
            .await
            .expect("cancel"),
        Recorded::Done
    );

    // T1 waits again in the same wait: its notice comes back.
    ctx.poll(&[t1.clone(), t2.clone()], now + secs(3)).await;
    assert_eq!(ctx.status(&notice_id(&t1, 1)).await, Some(Status::Pending));
    let claimed = ctx.claim(now + secs(5), 10, "a").await;
    assert_eq!(tickets_of(&claimed), set(&["T1", "T2"]));
}

async fn a_ticket_that_returns_with_the_same_wait_continues_at_the_next_number(ctx: Ctx) {
    let now = t0();
    let t1 = ticket("T1", now - secs(600));
    ctx.poll(std::slice::from_ref(&t1), now).await;
    let first = ctx.claim(now, 10, "a").await;
    ledger::record(&ctx.store, &first[0], Status::Sent, now).await;
    // Away for one poll (a pending state, a shifted page), then back.
    let away = ctx.poll(&[], now + secs(10)).await;
    assert!(away.plan.upserts.is_empty());
    let back = ctx.poll(std::slice::from_ref(&t1), now + secs(20)).await;
    assert_eq!(back.plan.upserts.len(), 1, "{:?}", back.plan.upserts);
    let next = &back.plan.upserts[0];
    assert_eq!(next.number, 2, "the series continues");
    assert_eq!(next.due_at, now + secs(120), "spaced from the last send");
    let second = ctx.claim(now + secs(120), 10, "a").await;
    assert_eq!(second.len(), 1, "notice 2 goes out");
    assert_eq!(second[0].number, 2);
}

async fn a_series_without_its_row_is_derived_from_its_notices(ctx: Ctx) {
    let now = t0();
    let t1 = ticket("T1", now - secs(600));
    ctx.poll(std::slice::from_ref(&t1), now).await;
    let first = ctx.claim(now, 10, "a").await;
    ledger::record(&ctx.store, &first[0], Status::Sent, now).await;
    // A new wait ends the old one's series row for good ...
    let restarted = ticket("T1", now + secs(5));
    ctx.poll(std::slice::from_ref(&restarted), now + secs(5))
        .await;
    // ... then the helpdesk reports the old wait again (a deleted reply).
    let back = ctx.poll(std::slice::from_ref(&t1), now + secs(30)).await;
    let upserts: Vec<(u32, DateTime<Utc>)> = back
        .plan
        .upserts
        .iter()
        .map(|n| (n.number, n.due_at))
        .collect();
    assert_eq!(
        upserts,
        [(2, now + secs(120))],
        "continues at notice 2 from what the notices say, never notice 1 again"
    );
}

async fn retry_puts_a_dead_notice_back_as_the_next_notice_of_its_series(ctx: Ctx) {
    let now = t0();
    let t1 = ticket("T1", now - secs(600));
    ctx.poll(std::slice::from_ref(&t1), now).await;
    let claimed = ctx.claim(now, 10, "a").await;
    let id = claimed[0].id.clone();
    ledger::record(&ctx.store, &claimed[0], Status::Dead, now).await;
    // The next notice is planned after a dead one too.
    ctx.poll(std::slice::from_ref(&t1), now + secs(1)).await;
    assert_eq!(
        ctx.statuses().await,
        [
            ("T1".into(), 1, Status::Dead),
            ("T1".into(), 2, Status::Pending)
        ]
    );

    let later = now + secs(30);
    let refused = ctx
        .store
        .retry(&[id.clone(), "no-such-notice".into()], later)
        .await
        .expect("retry");
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].0, "no-such-notice");
    assert_eq!(
        ctx.statuses().await,
        [
            ("T1".into(), 1, Status::Pending),
            ("T1".into(), 2, Status::Cancelled)
        ],
        "the retried notice is the series' next again; the later one waits behind it"
    );
    let series = ctx.store.load_series(false).await.expect("series");
    assert_eq!(
        (
            series[0].done,
            series[0].next.as_ref().map(|n| n.id.clone())
        ),
        (0, Some(id.clone()))
    );
    let again = ctx.claim(later, 10, "a").await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, id);
    assert_eq!(again[0].attempts, 0, "a fresh retry window");
    assert_eq!(again[0].first_attempt_at, None);
    ctx.store
        .release(&again[0], None, None, None)
        .await
        .expect("release");
    let refused = ctx
        .store
        .retry(std::slice::from_ref(&id), later)
        .await
        .expect("retry");
    assert_eq!(refused.len(), 1, "only dead notices can be retried");

    // A dead notice of a wait that ended stays dead.
    let c = ctx.claim(later, 10, "a").await;
    ledger::record(&ctx.store, &c[0], Status::Dead, later).await;
    ctx.poll(&[], later + secs(1)).await;
    let refused = ctx
        .store
        .retry(std::slice::from_ref(&id), later + secs(2))
        .await
        .expect("retry");
    assert_eq!(refused.len(), 1);
    assert!(refused[0].1.contains("ended"), "{}", refused[0].1);
    assert_eq!(ctx.status(&id).await, Some(Status::Dead));
}

async fn record_retry_holds_the_notice_until_its_next_attempt(ctx: Ctx) {
    let now = t0();
    ctx.poll(&[ticket("T1", now - secs(600))], now).await;
    let claimed = ctx.claim(now, 10, "a").await;
    assert_eq!(claimed.len(), 1);
    ctx.store
        .record_retry(
            &claimed[0],
            now,
            now + secs(60),
            claimed[0].send_at,
            "timed out after 2s",
        )
        .await
        .expect("record a retry");
    assert_eq!(ctx.status(&claimed[0].id).await, Some(Status::Pending));
    assert!(
        ctx.claim(now + secs(59), 10, "b").await.is_empty(),
        "claimed before its next attempt"
    );
    let again = ctx.claim(now + secs(60), 10, "b").await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 1);
    assert_eq!(again[0].first_attempt_at, Some(now));
    let rows = ctx
        .store
        .list(&NoticeFilter::default())
        .await
        .expect("list");
    assert_eq!(rows[0].last_error.as_deref(), Some("timed out after 2s"));
}

async fn suppressions_round_trip(ctx: Ctx) {
    let now = t0();
    let store = &ctx.store;
    assert!(store.suppressions().await.expect("list").is_empty());
    store
        .suppress("Bob@Example.COM", "550 5.1.1 unknown user", "auto", now)
        .await
        .expect("suppress an address");
    store
        .suppress("@example.org", "a competitor", "cli", now + secs(1))
        .await
        .expect("suppress a domain");

    let bob = store
        .suppression_of("bob@example.com")
        .await
        .expect("look up")
        .expect("bob is suppressed");
    assert_eq!(
        (
            bob.address.as_str(),
            bob.reason.as_str(),
            bob.source.as_str()
        ),
        ("bob@example.com", "550 5.1.1 unknown user", "auto")
    );
    assert_eq!(bob.created_at, now);
    let domain = store
        .suppression_of("Anyone@example.org")
        .await
        .expect("look up")
        .expect("the domain is suppressed");
    assert_eq!(domain.address, "@example.org");
    assert!(
        store
            .suppression_of("carol@example.com")
            .await
            .expect("look up")
            .is_none()
    );

    // Adding it again updates the reason.
    store
        .suppress("bob@example.com", "bounced again", "cli", now + secs(2))
        .await
        .expect("suppress again");
    let list = store.suppressions().await.expect("list");
    let listed: Vec<(&str, &str)> = list
        .iter()
        .map(|s| (s.address.as_str(), s.reason.as_str()))
        .collect();
    assert_eq!(
        listed,
        [
            ("@example.org", "a competitor"),
            ("bob@example.com", "bounced again")
        ]
    );

    assert!(store.unsuppress("BOB@example.com").await.expect("remove"));
    assert!(!store.unsuppress("bob@example.com").await.expect("remove"));
    assert!(
        store
            .suppression_of("bob@example.com")
            .await
            .expect("look up")
            .is_none()
    );
}

async fn the_poll_time_and_the_watermark_are_stored(ctx: Ctx) {
    let now = t0() + chrono::Duration::milliseconds(123);
    let store = &ctx.store;
    assert_eq!(store.last_poll_at().await.expect("last poll"), None);
    assert_eq!(store.source_watermark().await.expect("watermark"), None);
    let watermark = now - secs(5);
    let end = |now, watermark| PollEnd {
        now,
        seen: None,
        modes: &[false],
        watermark,
    };
    store
        .finish_poll(end(now, Some(watermark)))
        .await
        .expect("finish a poll");
    assert_eq!(store.last_poll_at().await.expect("last poll"), Some(now));
    assert_eq!(
        store.source_watermark().await.expect("watermark"),
        Some(watermark)
    );
    // A poll that saw no updated_at keeps the watermark.
    store
        .finish_poll(end(now + secs(1), None))
        .await
        .expect("finish a poll");
    assert_eq!(
        store.last_poll_at().await.expect("last poll"),
        Some(now + secs(1))
    );
    assert_eq!(
        store.source_watermark().await.expect("watermark"),
        Some(watermark)
    );
    // Another instance reads the same facts.
    let other = ctx.open_again().await;
    assert_eq!(
        other.last_poll_at().await.expect("last poll"),
        Some(now + secs(1))
    );
    other.close().await;
}

async fn an_incremental_plan_touches_only_the_changed_tickets(ctx: Ctx) {
    let now = t0();
    let waited = now - secs(600);
    let (t1, t2) = (ticket("T1", waited), ticket("T2", waited));
    ctx.poll(&[t1.clone(), t2.clone()], now).await;
    // T1's wait ended; T2 is not in the changes and keeps its notice.
    ledger::changes(
        &ctx.store,
        &ctx.settings,
        &[],
        &["T1".into()],
        now + secs(1),
    )
    .await;
    assert_eq!(
        ctx.status(&notice_id(&t1, 1)).await,
        Some(Status::Cancelled)
    );
    assert_eq!(ctx.status(&notice_id(&t2, 1)).await, Some(Status::Pending));
    let series = ctx
        .store
        .load_series_for(false, &["T1"])
        .await
        .expect("load series");
    assert_eq!(series.len(), 1, "the series is remembered");
    assert!(!series[0].active, "but no longer active");
}

async fn an_unchanged_poll_writes_nothing(ctx: Ctx) {
    let now = t0();
    // Sub-millisecond precision from the source must not look like a change.
    let waited = now - secs(600) + chrono::Duration::microseconds(123_456);
    let tickets = [ticket("T1", waited), ticket("T2", now - secs(30))];
    ctx.poll(&tickets, now).await;
    let before = ctx
        .store
        .list(&NoticeFilter::default())
        .await
        .expect("list");
    for step in 1..4 {
        let polled = ctx.poll(&tickets, now + secs(step)).await;
        assert!(
            polled.plan.is_empty(),
            "poll {step} changed something: {:?}",
            polled.plan
        );
    }
    let after = ctx
        .store
        .list(&NoticeFilter::default())
        .await
        .expect("list");
    let stamps = |rows: &[interim::store::NoticeRow]| {
        rows.iter()
            .map(|r| (r.id.clone(), r.send_at, r.due_at))
            .collect::<Vec<_>>()
    };
    assert_eq!(stamps(&before), stamps(&after));
}

/// Every change planning reads leaves a mark for the poller, whoever made
/// it; clearing with the mark of a read forgets exactly what that read
/// saw, not a change made after it. Claims and renewals leave none.
async fn changes_to_a_ticket_are_marked_until_the_poller_clears_what_it_read(ctx: Ctx) {
    let now = real_now();
    let tickets = [ticket("T1", now - secs(600)), ticket("T2", now - secs(30))];
    ctx.poll(&tickets, now).await;
    let read = ctx.store.changed_tickets().await.expect("read the marks");
    // Exactly T1 and T2.
    let only = |set: &interim::ticket_ids::TicketIds, ids: &[&str]| {
        set.len() == ids.len() && ids.iter().all(|id| set.contains(id))
    };
    assert!(only(&read.live, &["T1", "T2"]), "{read:?}");
    assert!(read.dry_run.is_empty(), "{read:?}");
    let mark = read.mark.expect("a mark");

    // Another writer (an instance's dispatcher) changes T1 after the read.
    let other = ctx.open_again().await;
    let claimed = ctx.claim(now, 10, "a").await;
    assert_eq!(claimed.len(), 1, "T1 is due");
    let recorded = other
        .record_done(&claimed[0], &sent_at(now), None)
        .await
        .expect("record the send");
    assert_eq!(recorded, Recorded::Done);
    other.close().await;

    ctx.store
        .clear_changed(mark)
        .await
        .expect("clear the marks");
    let after = ctx
        .store
        .changed_tickets()
        .await
        .expect("read the marks again");
    // T2's marks are gone, unless (PostgreSQL) a transaction elsewhere on
    // the server was open at the read: the horizon is the server's, and
    // marking too much costs a replan, never a lost change.
    assert!(
        after.live.contains("T1"),
        "the change after the read is still marked: {after:?}"
    );
    if ctx.store.backend() == interim::store::Backend::Sqlite {
        assert!(only(&after.live, &["T1"]), "{after:?}");
    }
    clear_every_mark(&ctx).await;

    // A claim and its renewal are not read by planning.
    let due = tickets[1].clone();
    let later = now + secs(3600);
    ctx.poll(&[due], later).await;
    clear_every_mark(&ctx).await;
    let claimed = ctx.claim_once_free(later, "b").await;
    assert!(!claimed.is_empty(), "T2 is due");
    assert_eq!(
        ctx.store.changed_tickets().await.expect("read the marks"),
        interim::ledger::ChangedTickets::default(),
        "a claim leaves no mark"
    );
}

/// Reads and clears the marks until none is left (on PostgreSQL a read
/// clears only what transactions below the server's horizon wrote), within
/// a deadline.
async fn clear_every_mark(ctx: &Ctx) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let read = ctx.store.changed_tickets().await.expect("read the marks");
        let Some(mark) = read.mark else {
            return;
        };
        ctx.store
            .clear_changed(mark)
            .await
            .expect("clear the marks");
        assert!(
            std::time::Instant::now() < deadline,
            "marks still left after 30 s: {read:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn concurrent_claims_never_return_the_same_notice_twice(ctx: Ctx) {
    let now = t0();
    let tickets: Vec<Ticket> = (0..300)
        .map(|i| ticket(&format!("T{i}"), now - secs(600)))
        .collect();
    ctx.poll(&tickets, now).await;

    let mut tasks = Vec::new();
    let start = Arc::new(tokio::sync::Barrier::new(3));
    for instance in ["a", "b", "c"] {
        let store = ctx.open_again().await;
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let mut got = Vec::new();
            loop {
                let claimed = store
                    .claim_due(CHANNEL, false, now, 3, LEASE, instance)
                    .await
                    .expect("claim");
                if claimed.is_empty() {
                    break;
                }
                got.extend(claimed.into_iter().map(|n| n.id));
            }
            store.close().await;
            got
        }));
    }
    let mut all = Vec::new();
    let mut shares = Vec::new();
    for task in tasks {
        let got = task.await.expect("a claiming task");
        shares.push(got.len());
        all.extend(got);
    }
    println!("claims per instance: {shares:?}");
    let distinct: BTreeSet<&String> = all.iter().collect();
    assert_eq!(
        distinct.len(),
        all.len(),
        "a notice was claimed by two instances at once ({} claims, {} distinct)",
        all.len(),
        distinct.len()
    );
    assert_eq!(distinct.len(), 300, "every due notice was claimed");
    assert!(ctx.claim(now, 10, "d").await.is_empty());
}

/// The send of notice 1 at `now`, answered a second later; it promised
/// the next notice two minutes on.
fn sent_at(now: DateTime<Utc>) -> Outcome<'static> {
    Outcome {
        status: Status::Sent,
        attempt_started: now,
        finished: now + secs(1),
        next_notice_at: Some(now + secs(120)),
        error: None,
    }
}

/// Ticket `T<i>` of `tickets_numbered`: its number.
fn index_of(n: &ClaimedNotice) -> usize {
    n.ticket_id[1..].parse().expect("a ticket T<number>")
}

fn tickets_numbered(count: usize, waiting_since: DateTime<Utc>) -> Vec<Ticket> {
    (0..count)
        .map(|i| ticket(&format!("T{i}"), waiting_since))
        .collect()
}

/// What became of ticket `T<i>`'s send among twenty finishing at once.
#[derive(Clone, Copy, PartialEq)]
enum Fate {
    /// Its claim was taken over since (the notice carries a newer token).
    TakenOver,
    Retried,
    Sent,
}

fn fate(i: usize) -> Fate {
    match i % 5 {
        0 => Fate::TakenOver,
        1 => Fate::Retried,
        _ => Fate::Sent,
    }
}

async fn results_recorded_at_once_land_as_each_would_alone(ctx: Ctx) {
    let now = t0();
    ctx.poll(&tickets_numbered(20, now - secs(600)), now).await;
    let claimed = ctx.claim(now, 20, "a").await;
    assert_eq!(claimed.len(), 20);

    // Twenty slots finish at once; the sent ones plan notice 2.
    let start = Arc::new(tokio::sync::Barrier::new(claimed.len()));
    let mut tasks = Vec::new();
    for mut n in claimed {
        let i = index_of(&n);
        if fate(i) == Fate::TakenOver {
            n.claim_token -= 1;
        }
        let next = next_after(&ctx, &n, now);
        let (store, start) = (ctx.store.clone(), start.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let recorded = if fate(i) == Fate::Retried {
                store
                    .record_retry(&n, now, now + secs(30), n.send_at, "503 busy")
                    .await
            } else {
                store.record_done(&n, &sent_at(now), next.as_ref()).await
            };
            (i, recorded.expect("record a result"))
        }));
    }
    for task in tasks {
        let (i, recorded) = task.await.expect("a recording task");
        let expected = if fate(i) == Fate::TakenOver {
            Recorded::Fenced
        } else {
            Recorded::Done
        };
        assert_eq!(recorded, expected, "T{i}");
    }

    let rows = ctx
        .store
        .list(&NoticeFilter::default())
        .await
        .expect("list notices");
    let series = ctx.store.load_series(false).await.expect("load series");
    assert_eq!(series.len(), 20);
    for i in 0..20 {
        let id = format!("T{i}");
        let of_ticket: Vec<_> = rows.iter().filter(|r| r.ticket_id == id).collect();
        let first = of_ticket
            .iter()
            .find(|r| r.number == 1)
            .unwrap_or_else(|| panic!("notice 1 of {id}"));
        let s = series
            .iter()
            .find(|s| s.key.ticket_id == id)
            .unwrap_or_else(|| panic!("the series of {id}"));
        let next = s.next.as_ref().map(|n| (n.number, n.status, n.send_at));
        match fate(i) {
            Fate::TakenOver => {
                assert_eq!((first.status, first.attempts), (Status::Pending, 0), "{id}");
                assert_eq!(of_ticket.len(), 1, "{id}: a fenced result plans nothing");
                assert_eq!((s.done, s.last_sent_at), (0, None), "{id}");
                assert_eq!(next, Some((1, Status::Pending, first.send_at)), "{id}");
            }
            Fate::Retried => {
                assert_eq!((first.status, first.attempts), (Status::Pending, 1), "{id}");
                assert_eq!(first.next_attempt_at, now + secs(30), "{id}");
                assert_eq!(first.last_error.as_deref(), Some("503 busy"), "{id}");
                assert_eq!(of_ticket.len(), 1, "{id}");
                assert_eq!((s.done, s.last_sent_at), (0, None), "{id}");
            }
            Fate::Sent => {
                assert_eq!((first.status, first.attempts), (Status::Sent, 1), "{id}");
                assert_eq!(first.sent_at, Some(now + secs(1)), "{id}");
                assert_eq!(
                    of_ticket.len(),
                    2,
                    "{id}: notice 2 is planned with the send"
                );
                assert_eq!((s.done, s.last_sent_at), (1, Some(now)), "{id}");
                assert_eq!(next, Some((2, Status::Pending, now + secs(120))), "{id}");
            }
        }
    }
}

/// SQL that makes every update of ticket T3's notices fail, as a broken
/// constraint would: no result the ledger writes fails on its own.
fn refuse_t3(backend: interim::store::Backend) -> [&'static str; 2] {
    match backend {
        interim::store::Backend::Sqlite => [
            "CREATE TRIGGER refuse_t3 BEFORE UPDATE ON notices WHEN NEW.ticket_id = 'T3'
             BEGIN SELECT RAISE(ABORT, 'T3 is refused'); END",
            "SELECT 1",
        ],
        interim::store::Backend::Postgres => [
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN RAISE EXCEPTION 'T3 is refused'; END $$",
            "CREATE TRIGGER refuse_t3 BEFORE UPDATE ON notices FOR EACH ROW
             WHEN (NEW.ticket_id = 'T3') EXECUTE FUNCTION refuse()",
        ],
    }
}

/// PostgreSQL: a poll that writes many rows analyzes the ledger tables
/// itself (a manual ANALYZE, not autovacuum's), so the next poll's series
/// lookup is planned on real statistics.
async fn a_large_first_poll_gives_postgresql_fresh_statistics(ctx: Ctx) {
    use sqlx::Connection;
    if ctx.store.backend() != interim::store::Backend::Postgres {
        return;
    }
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(ctx.settings.store.url.expose())
        .await
        .expect("a connection of our own");
    let analyzed = "SELECT COALESCE(SUM(analyze_count), 0)::BIGINT FROM pg_stat_user_tables \
                    WHERE relname IN ('notices', 'series')";
    let before: i64 = sqlx::query_scalar(analyzed)
        .fetch_one(&mut conn)
        .await
        .expect("read the statistics");
    let now = t0();
    ctx.poll(&tickets_numbered(1200, now - secs(600)), now)
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let after: i64 = sqlx::query_scalar(analyzed)
            .fetch_one(&mut conn)
            .await
            .expect("read the statistics");
        if after >= before + 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no ANALYZE of notices and series after 1,200 new tickets ({before} → {after})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn a_result_that_fails_does_not_take_the_results_beside_it_along(ctx: Ctx) {
    use sqlx::{Connection, Executor};
    let now = t0();
    ctx.poll(&tickets_numbered(10, now - secs(600)), now).await;
    let claimed = ctx.claim(now, 10, "a").await;
    assert_eq!(claimed.len(), 10);
    let backend = ctx.store.backend();
    sqlx::any::install_default_drivers();
    let mut other = sqlx::AnyConnection::connect(ctx.settings.store.url.expose())
        .await
        .expect("a connection of our own");
    for sql in refuse_t3(backend) {
        other.execute(sql).await.expect("install the trigger");
    }

    // Another writer holds the lock: the results queue behind it and go
    // in together once it lets go, T3's among the others.
    let hold = match backend {
        interim::store::Backend::Sqlite => "BEGIN IMMEDIATE",
        interim::store::Backend::Postgres => "BEGIN; LOCK TABLE notices IN EXCLUSIVE MODE",
    };
    other.execute(hold).await.expect("hold the write lock");
    let (refused, others): (Vec<_>, Vec<_>) =
        claimed.into_iter().partition(|n| n.ticket_id == "T3");
    let record = |n: ClaimedNotice| {
        let (store, next) = (ctx.store.clone(), next_after(&ctx, &n, now));
        tokio::spawn(async move {
            let recorded = store.record_done(&n, &sent_at(now), next.as_ref()).await;
            (n, recorded)
        })
    };
    let mut tasks: Vec<_> = others.into_iter().map(record).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = record(refused.into_iter().next().expect("T3 was claimed"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    other.execute("COMMIT").await.expect("let go of the lock");

    let (t3, failed) = refused.await.expect("T3's recording task");
    let error = failed.expect_err("T3's result is refused");
    assert!(format!("{error:#}").contains("T3 is refused"), "{error:#}");
    for task in tasks.drain(..) {
        let (n, recorded) = task.await.expect("a recording task");
        assert_eq!(
            recorded.expect("record a result"),
            Recorded::Done,
            "{}",
            n.ticket_id
        );
        assert_eq!(
            ctx.status(&n.id).await,
            Some(Status::Sent),
            "{}",
            n.ticket_id
        );
    }
    assert_eq!(ctx.status(&t3.id).await, Some(Status::Pending));
    let rows = ctx
        .store
        .list(&NoticeFilter::default())
        .await
        .expect("list");
    assert_eq!(rows.len(), 19, "nine sends planned notice 2, T3's did not");

    // Once the cause is gone, the caller's retry records it.
    let drop_trigger = match backend {
        interim::store::Backend::Sqlite => "DROP TRIGGER refuse_t3",
        interim::store::Backend::Postgres => "DROP TRIGGER refuse_t3 ON notices",
    };
    other.execute(drop_trigger).await.expect("drop the trigger");
    let next = next_after(&ctx, &t3, now);
    let recorded = ctx
        .store
        .record_done(&t3, &sent_at(now), next.as_ref())
        .await;
    assert_eq!(recorded.expect("record T3 again"), Recorded::Done);
    assert_eq!(ctx.status(&t3.id).await, Some(Status::Sent));
    let _ = other.close().await;
}

async fn the_notice_list_sorts_numeric_ids_by_value_and_finds_tickets_by_number(ctx: Ctx) {
    let now = t0();
    let waited = now - secs(600);
    let mut known = ticket("11", waited);
    known.number = Some("#10423".into());
    let mut two = ticket("2", waited);
    two.number = Some("#1".into());
    ctx.poll(&[known, two, ticket("1", waited), ticket("B", waited)], now)
        .await;
    let ids: Vec<String> = ctx
        .statuses()
        .await
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    assert_eq!(
        ids,
        ["1", "2", "11", "B"],
        "numeric ids by value, then text"
    );
    let rows = ctx
        .store
        .list(&NoticeFilter::default())
        .await
        .expect("list notices");
    assert_eq!(rows[2].ticket_number.as_deref(), Some("#10423"));

    let find = |wanted: &'static str| {
        let store = ctx.store.clone();
        async move { store.resolve_ticket(wanted).await.expect("look up") }
    };
    assert_eq!(find("10423").await, Ok("11".to_owned()));
    assert_eq!(find("#10423").await, Ok("11".to_owned()));
    assert_eq!(
        find("b").await,
        Ok("B".to_owned()),
        "numbers match in any case"
    );
    assert_eq!(
        find("7").await,
        Ok("7".to_owned()),
        "no such ticket: as given"
    );
    assert_eq!(find("id:1").await, Ok("1".to_owned()));
    let err = find("1").await.err().unwrap_or_default();
    assert!(err.contains("ambiguous") && err.contains("2 (#1)"), "{err}");
}

/// The wait history: a wait a policy matched is recorded with the ticket's
/// attributes and when its first threshold is crossed; it ends as
/// `new_wait` when `waiting_since` moves, as `left` when the ticket stops
/// waiting or leaves a full poll, and opens again when the ticket comes
/// back with the same wait.
async fn waits_are_recorded_and_end_as_new_wait_or_left(ctx: Ctx) {
    use interim::ledger::WaitEnd;
    let now = t0();
    let first = ticket("T1", now - secs(30));
    let other = Ticket {
        queue: Some("billing".into()),
        priority: Some("high".into()),
        ..ticket("T2", now - secs(600))
    };
    ctx.poll(&[first.clone(), other.clone()], now).await;
    let waits = |id: &'static str| {
        let store = ctx.store.clone();
        async move { store.waits_of_ticket(id, false).await.expect("read waits") }
    };
    let w = waits("T2").await;
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].started_at, truncate_millis(other.waiting_since));
    assert_eq!(w[0].ticket_number.as_deref(), Some("#T2"));
    assert_eq!(
        (w[0].queue.as_deref(), w[0].priority.as_deref()),
        (Some("billing"), Some("high"))
    );
    assert_eq!(w[0].policies, vec![POLICY.to_owned()]);
    assert_eq!(
        w[0].first_due_at,
        Some(truncate_millis(other.waiting_since + secs(60))),
        "the policy's first notice is due 60 s into the wait"
    );
    assert_eq!((w[0].ended_at, w[0].ended), (None, None));
    let open = ctx
        .store
        .open_waits_per_policy(false)
        .await
        .expect("count open waits");
    assert_eq!(open.get(POLICY), Some(&2), "{open:?}");

    // Someone wrote on T1: its wait restarts.
    let later = now + secs(300);
    let moved = ticket("T1", later - secs(10));
    ctx.poll(&[moved.clone(), other.clone()], later).await;
    let w = waits("T1").await;
    assert_eq!(w.len(), 2, "{w:?}");
    assert_eq!(
        (w[0].started_at, w[0].ended_at, w[0].ended),
        (
            truncate_millis(first.waiting_since),
            Some(later),
            Some(WaitEnd::NewWait)
        )
    );
    assert_eq!(
        (w[1].started_at, w[1].ended),
        (truncate_millis(moved.waiting_since), None)
    );

    // T2 leaves the source; T1 stops waiting (an incremental poll's NULL).
    let end = later + secs(60);
    ledger::full_poll(&ctx.store, &ctx.settings, std::slice::from_ref(&moved), end).await;
    let w = waits("T2").await;
    assert_eq!(
        (w[0].ended_at, w[0].ended),
        (Some(end), Some(WaitEnd::Left))
    );
    let stop = end + secs(60);
    ledger::changes(&ctx.store, &ctx.settings, &[], &["T1".to_owned()], stop).await;
    let w = waits("T1").await;
    assert_eq!(
        (w[1].ended_at, w[1].ended),
        (Some(stop), Some(WaitEnd::Left))
    );
    let open = ctx
        .store
        .open_waits_per_policy(false)
        .await
        .expect("count open waits");
    assert_eq!(open.get(POLICY), None, "no wait is open: {open:?}");

    // T2 comes back with the same wait: it is open again, not a new one.
    let back = stop + secs(60);
    ledger::changes(
        &ctx.store,
        &ctx.settings,
        std::slice::from_ref(&other),
        &[],
        back,
    )
    .await;
    let w = waits("T2").await;
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!((w[0].ended_at, w[0].ended), (None, None));
}

/// Promise outcomes (the promise-report issue): a sent notice's promise is
/// pending until the next notice of its series goes out (kept by the
/// promised instant + grace, else broken late), dies (broken dead), or
/// the wait ends first (superseded); past the deadline with no next notice
/// sent it is broken, and a deadline inside a gap takes the gap's reason.
async fn promises_are_kept_superseded_or_broken_as_the_next_notice_and_the_wait_go(ctx: Ctx) {
    use interim::promise::{BrokenBy, Gap, PromiseOutcome};
    let grace = chrono::Duration::minutes(5);
    let now = t0();
    let ids = ["T1", "T2", "T3", "T4", "T5"];
    let tickets: Vec<Ticket> = ids.iter().map(|id| ticket(id, now - secs(600))).collect();
    ctx.poll(&tickets, now).await;
    // Every first notice goes out at `now`, promising the next by now + 120 s.
    let first = ctx.claim(now, 10, "a").await;
    assert_eq!(first.len(), ids.len(), "every first notice is due");
    for n in &first {
        let recorded = ctx
            .store
            .record_done(n, &sent_at(now), None)
            .await
            .expect("record a send");
        assert_eq!(recorded, Recorded::Done);
    }
    let promise_of = |id: &'static str| {
        let store = ctx.store.clone();
        async move {
            let rows = store
                .list(&NoticeFilter {
                    ticket: Some(id.to_owned()),
                    ..NoticeFilter::default()
                })
                .await
                .expect("list");
            rows.iter()
                .find(|r| r.number == 1)
                .and_then(|r| r.promise.clone())
        }
    };
    assert_eq!(promise_of("T1").await.as_deref(), Some("pending"));
    let decided = ctx
        .store
        .decide_promises(now + secs(1), grace, None)
        .await
        .expect("decide");
    assert!(decided.is_empty(), "nothing is decided yet: {decided:?}");

    // T2's wait ends (someone answered) before its promise falls due.
    ledger::changes(
        &ctx.store,
        &ctx.settings,
        &[],
        &["T2".to_owned()],
        now + secs(30),
    )
    .await;
    // T1, T3, T4 get their next notice planned; T5 never does (its series
    // is lost, as if the daemon had not planned it).
    let later = now + secs(60);
    let planned = [tickets[0].clone(), tickets[2].clone(), tickets[3].clone()];
    ledger::changes(&ctx.store, &ctx.settings, &planned, &[], later).await;

    // T1's next notice goes out on time, T3's 10 minutes late, T4's dies.
    let second = ctx.claim(now + secs(120), 10, "b").await;
    let by_ticket = |id: &str| {
        second
            .iter()
            .find(|n| n.ticket_id == id)
            .unwrap_or_else(|| panic!("{id}'s next notice is due: {second:?}"))
    };
    ctx.store
        .record_done(by_ticket("T1"), &sent_at(now + secs(150)), None)
        .await
        .expect("record T1");
    ctx.store
        .record_done(by_ticket("T3"), &sent_at(now + secs(720)), None)
        .await
        .expect("record T3");
    let dead = Outcome {
        status: Status::Dead,
        next_notice_at: None,
        error: Some("gone"),
        ..sent_at(now + secs(130))
    };
    ctx.store
        .record_done(by_ticket("T4"), &dead, None)
        .await
        .expect("record T4");

    // At now + 500 s every first promise (due by now + 120 s + grace) is
    // decided; the second notices' promises are not yet.
    let at = now + secs(500);
    let decided = ctx
        .store
        .decide_promises(at, grace, None)
        .await
        .expect("decide");
    let outcome_of = |id: &str| {
        let notice = notice_id(&tickets[ids.iter().position(|t| *t == id).unwrap_or(0)], 1);
        decided
            .iter()
            .find(|d| d.notice_id == notice)
            .map(|d| d.outcome)
    };
    assert_eq!(outcome_of("T1"), Some(PromiseOutcome::Kept), "{decided:?}");
    assert_eq!(outcome_of("T2"), Some(PromiseOutcome::Superseded));
    assert_eq!(
        outcome_of("T3"),
        Some(PromiseOutcome::Broken(BrokenBy::Late))
    );
    assert_eq!(
        outcome_of("T4"),
        Some(PromiseOutcome::Broken(BrokenBy::Dead))
    );
    assert_eq!(
        outcome_of("T5"),
        Some(PromiseOutcome::Broken(BrokenBy::NotPlanned))
    );
    assert_eq!(decided.len(), 5, "{decided:?}");
    let late = decided
        .iter()
        .find(|d| d.outcome == PromiseOutcome::Kept)
        .and_then(|d| d.lateness);
    assert_eq!(
        late,
        Some(secs(31)),
        "T1 reached its customer 31 s after the promise (sent at the attempt's end)"
    );
    assert_eq!(promise_of("T1").await.as_deref(), Some("kept"));
    assert_eq!(promise_of("T3").await.as_deref(), Some("broken (late)"));
    assert!(
        ctx.store
            .decide_promises(at + secs(10), grace, None)
            .await
            .expect("decide again")
            .is_empty(),
        "a decided promise stays decided"
    );

    // T1's second notice promised the third by now + 271 s; the daemon
    // was down from now + 200 s until after that deadline.
    let down = Gap {
        since: now + secs(200),
        why: BrokenBy::NotPlanned,
    };
    let decided = ctx
        .store
        .decide_promises(now + secs(700), grace, Some(down))
        .await
        .expect("decide after the downtime");
    let t1_second = notice_id(&tickets[0], 2);
    assert_eq!(
        decided
            .iter()
            .find(|d| d.notice_id == t1_second)
            .map(|d| d.outcome),
        Some(PromiseOutcome::Broken(BrokenBy::NotPlanned)),
        "{decided:?}"
    );
}

/// The wait history keeps what `store.history_retention` says: pruning
/// deletes waits that ended before the cutoff, never an open one or one
/// that ended after it.
async fn pruning_deletes_only_waits_that_ended_before_the_cutoff(ctx: Ctx) {
    let now = t0();
    let tickets = [
        ticket("T1", now - secs(600)),
        ticket("T2", now - secs(600)),
        ticket("T3", now - secs(600)),
    ];
    ctx.poll(&tickets, now).await;
    // T1 stops waiting early, T2 later; T3 still waits.
    ledger::changes(
        &ctx.store,
        &ctx.settings,
        &[],
        &["T1".to_owned()],
        now + secs(10),
    )
    .await;
    ledger::changes(
        &ctx.store,
        &ctx.settings,
        &[],
        &["T2".to_owned()],
        now + secs(100),
    )
    .await;
    let pruned = ctx.store.prune_waits(now + secs(50)).await.expect("prune");
    assert_eq!(pruned, 1, "only T1's wait ended before the cutoff");
    let count = |id: &'static str| {
        let store = ctx.store.clone();
        async move { store.waits_of_ticket(id, false).await.expect("waits").len() }
    };
    assert_eq!(
        (count("T1").await, count("T2").await, count("T3").await),
        (0, 1, 1)
    );
    assert_eq!(
        ctx.store
            .prune_waits(now + secs(50))
            .await
            .expect("prune again"),
        0
    );
}

macro_rules! suite {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $test() {
                    super::run(super::Backend::Sqlite, super::$test);
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $test() {
                    super::run(super::Backend::Postgres, super::$test);
                }
            )*
        }
    };
}

/// The dispatcher sleeps until `next_attempt`: the earliest next attempt
/// among the notices nobody holds a claim on.
async fn next_attempt_is_the_earliest_notice_nobody_holds(ctx: Ctx) {
    let now = real_now();
    let (early, late) = (ticket("T1", now - secs(600)), ticket("T2", now - secs(30)));
    assert_eq!(
        ctx.store
            .next_attempt(CHANNEL, false, now)
            .await
            .expect("next attempt"),
        None,
        "an empty ledger has nothing to wake for"
    );
    ctx.poll(&[early.clone(), late.clone()], now).await;
    let next = |at| {
        let store = ctx.store.clone();
        async move {
            store
                .next_attempt(CHANNEL, false, at)
                .await
                .expect("next attempt")
        }
    };
    assert_eq!(
        next(now).await,
        Some(truncate_millis(early.waiting_since + secs(60)))
    );
    let claimed = ctx.claim_with(now, 1, "a", Duration::from_secs(60)).await;
    assert_eq!(tickets_of(&claimed), set(&["T1"]));
    assert_eq!(
        next(now).await,
        Some(truncate_millis(late.waiting_since + secs(60))),
        "a claimed notice is not waited for"
    );
    assert_eq!(
        ctx.store
            .next_attempt(CHANNEL, true, now)
            .await
            .expect("next attempt"),
        None,
        "dry runs are apart"
    );
}

/// PostgreSQL instances hear of each other's plans; SQLite has no one to
/// tell.
async fn committed_plans_wake_the_listening_instances(ctx: Ctx) {
    let wake = Arc::new(tokio::sync::Notify::new());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let Some(listener) = ctx.store.listen_for_plans(wake.clone(), shutdown.clone()) else {
        assert_eq!(ctx.store.backend(), interim::store::Backend::Sqlite);
        return;
    };
    // Once subscribed, the listener wakes the dispatcher for what it may
    // have missed before.
    tokio::time::timeout(Duration::from_secs(20), wake.notified())
        .await
        .expect("the listener subscribes and wakes once");
    // Nothing planned, nothing heard.
    let quiet = tokio::time::timeout(Duration::from_secs(1), wake.notified()).await;
    assert!(quiet.is_err(), "woken without a plan");
    // Another instance plans: this one hears it.
    let other = Ctx {
        store: ctx.open_again().await,
        settings: ctx.settings.clone(),
    };
    let now = real_now();
    other.poll(&[ticket("T1", now - secs(600))], now).await;
    tokio::time::timeout(Duration::from_secs(10), wake.notified())
        .await
        .expect("the other instance's plan reached the listener");
    shutdown.cancel();
    drop(listener);
    other.store.close().await;
}

suite!(
    pruning_deletes_only_waits_that_ended_before_the_cutoff,
    promises_are_kept_superseded_or_broken_as_the_next_notice_and_the_wait_go,
    waits_are_recorded_and_end_as_new_wait_or_left,
    claims_return_due_notices_once_until_their_lease_ends,
    a_large_first_poll_gives_postgresql_fresh_statistics,
    a_late_writer_whose_claim_was_taken_over_records_nothing,
    a_renewed_lease_keeps_a_claim_past_its_first_deadline,
    record_done_advances_the_series_and_plans_the_next_notice_at_once,
    spacing_counts_real_sends_only,
    a_full_poll_without_the_ticket_cancels_its_pending_notice,
    a_ticket_that_returns_with_the_same_wait_continues_at_the_next_number,
    a_series_without_its_row_is_derived_from_its_notices,
    retry_puts_a_dead_notice_back_as_the_next_notice_of_its_series,
    record_retry_holds_the_notice_until_its_next_attempt,
    suppressions_round_trip,
    the_poll_time_and_the_watermark_are_stored,
    an_incremental_plan_touches_only_the_changed_tickets,
    an_unchanged_poll_writes_nothing,
    changes_to_a_ticket_are_marked_until_the_poller_clears_what_it_read,
    concurrent_claims_never_return_the_same_notice_twice,
    the_notice_list_sorts_numeric_ids_by_value_and_finds_tickets_by_number,
    next_attempt_is_the_earliest_notice_nobody_holds,
    committed_plans_wake_the_listening_instances,
    results_recorded_at_once_land_as_each_would_alone,
    a_result_that_fails_does_not_take_the_results_beside_it_along,
);
