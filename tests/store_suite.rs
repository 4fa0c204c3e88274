//! One store test suite, run against both ledgers through the library API:
//! SQLite (a file in a temporary directory) and PostgreSQL (a database of
//! its own; skipped without `INTERIM_TEST_POSTGRES_URL`). The same
//! behaviour is expected of both: claims with a lease, series advancing,
//! cancellation by a plan, retries of dead notices, suppressions, the poll
//! time and watermark, and concurrent claims that never hand out one
//! notice twice.

mod support;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use interim::config::{self, Settings};
use interim::notice::{SeriesKey, Status, truncate_millis};
use interim::planner::{self, Plan};
use interim::store::{ClaimedNotice, NoticeFilter, Store};
use interim::ticket::Ticket;
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

    /// A full poll seeing `tickets` at `now`: plans against the ledger and
    /// applies the plan.
    async fn poll(&self, tickets: &[Ticket], now: DateTime<Utc>) -> Plan {
        let series = self.store.load_series(false).await.expect("load series");
        let plan = planner::plan(&self.settings, tickets, &series, false);
        self.store
            .apply_plan(&plan, false, now, None)
            .await
            .expect("apply the plan");
        plan
    }

    async fn claim(&self, now: DateTime<Utc>, limit: usize, instance: &str) -> Vec<ClaimedNotice> {
        self.store
            .claim_due(CHANNEL, now, limit, LEASE, instance)
            .await
            .expect("claim due notices")
    }

    async fn status(&self, id: &str) -> Option<Status> {
        self.store.status_of(id).await.expect("status of a notice")
    }
}

fn write_config(dir: &std::path::Path, store_url: &str) -> config::Config {
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
    config::load(&path).expect("a valid config")
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

fn secs(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

fn ticket(id: &str, waiting_since: DateTime<Utc>) -> Ticket {
    Ticket {
        id: id.into(),
        number: Some(format!("#{id}")),
        subject: Some("Printer on fire".into()),
        state: "open".into(),
        priority: None,
        queue: None,
        origin: None,
        customer_email: Some(format!("{id}@example.com")),
        customer_name: None,
        language: Some("en".into()),
        timezone: None,
        waiting_since,
        updated_at: None,
        thread_message_id: None,
        extra: Default::default(),
    }
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
    let now = t0();
    let waited = now - secs(600);
    // T3 started waiting now: its first notice is due in 60 s.
    let tickets = [
        ticket("T1", waited),
        ticket("T2", waited),
        ticket("T3", now),
    ];
    let plan = ctx.poll(&tickets, now).await;
    assert_eq!(plan.upserts.len(), 3, "one notice planned per ticket");

    let first = ctx.claim(now, 1, "a").await;
    assert_eq!(first.len(), 1, "the limit is respected");
    let rest = ctx.claim(now, 10, "a").await;
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
    let before_end = ctx.claim(now + secs(29), 10, "b").await;
    assert!(before_end.is_empty(), "claimed again within the lease");
    // The claimant died: after the lease they are handed out again.
    let after = ctx.claim(now + secs(31), 10, "b").await;
    assert_eq!(tickets_of(&after), set(&["T1", "T2"]));
    // A released claim is free at once.
    ctx.store
        .release(&after[0].id, None)
        .await
        .expect("release a claim");
    let released = ctx.claim(now + secs(32), 10, "c").await;
    assert_eq!(tickets_of(&released), set(&[after[0].ticket_id.as_str()]));
}

async fn record_done_advances_the_series_so_the_next_plan_proposes_number_two(ctx: Ctx) {
    let now = t0();
    let t1 = ticket("T1", now - secs(600));
    ctx.poll(std::slice::from_ref(&t1), now).await;
    let claimed = ctx.claim(now, 10, "a").await;
    assert_eq!(claimed.len(), 1);
    let n = &claimed[0];
    ctx.store
        .record_done(
            n,
            Status::Sent,
            now,
            now + secs(1),
            Some(now + secs(120)),
            None,
        )
        .await
        .expect("record the send");
    assert_eq!(ctx.status(&n.id).await, Some(Status::Sent));

    let series = ctx.store.load_series(false).await.expect("load series");
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].done, 1);
    assert_eq!(series[0].last_ref_at, Some(now));
    assert_eq!(series[0].next, None, "the sent notice is no longer next");

    let plan = ctx.poll(std::slice::from_ref(&t1), now).await;
    assert_eq!(plan.upserts.len(), 1, "{:?}", plan.upserts);
    let next = &plan.upserts[0];
    assert_eq!(next.number, 2);
    assert_eq!(next.id, notice_id(&t1, 2));
    assert_eq!(
        next.due_at,
        now + secs(120),
        "spaced repeat_every after the previous send"
    );

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
    let second = ctx.claim(now + secs(121), 10, "a").await;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].number, 2);
}

async fn a_plan_without_the_ticket_cancels_its_pending_notice(ctx: Ctx) {
    let now = t0();
    let waited = now - secs(600);
    let (t1, t2) = (ticket("T1", waited), ticket("T2", waited));
    ctx.poll(&[t1.clone(), t2.clone()], now).await;

    let plan = ctx.poll(std::slice::from_ref(&t2), now + secs(1)).await;
    assert_eq!(plan.cancels.len(), 1, "{:?}", plan.cancels);
    assert_eq!(plan.cancels[0].id, notice_id(&t1, 1));
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
    ctx.store
        .release(&claimed[0].id, None)
        .await
        .expect("release");

    // The ticket waits again in the same episode: the notice comes back.
    ctx.poll(&[t1.clone(), t2.clone()], now + secs(3)).await;
    assert_eq!(ctx.status(&notice_id(&t1, 1)).await, Some(Status::Pending));

    // Cancelling one notice directly (the pre-send re-check).
    ctx.store
        .cancel(&notice_id(&t2, 1), "re-check: answered", now + secs(4))
        .await
        .expect("cancel");
    assert_eq!(
        ctx.status(&notice_id(&t2, 1)).await,
        Some(Status::Cancelled)
    );
    let claimed = ctx.claim(now + secs(5), 10, "a").await;
    assert_eq!(tickets_of(&claimed), set(&["T1"]));
}

async fn retry_puts_a_dead_notice_back_to_pending(ctx: Ctx) {
    let now = t0();
    let t1 = ticket("T1", now - secs(600));
    ctx.poll(std::slice::from_ref(&t1), now).await;
    let claimed = ctx.claim(now, 10, "a").await;
    assert_eq!(claimed.len(), 1);
    let id = claimed[0].id.clone();
    ctx.store
        .record_done(
            &claimed[0],
            Status::Dead,
            now,
            now,
            None,
            Some("HTTP 410 Gone"),
        )
        .await
        .expect("record a dead notice");
    assert_eq!(ctx.status(&id).await, Some(Status::Dead));
    assert!(ctx.claim(now + secs(1), 10, "a").await.is_empty());

    let later = now + secs(600);
    let refused = ctx
        .store
        .retry(&[id.clone(), "no-such-notice".into()], later)
        .await
        .expect("retry");
    assert_eq!(refused, ["no-such-notice"]);
    assert_eq!(ctx.status(&id).await, Some(Status::Pending));
    let again = ctx.claim(later, 10, "a").await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, id);
    assert_eq!(again[0].attempts, 1, "the failed attempt is kept");
    assert_eq!(
        again[0].first_attempt_at, None,
        "a fresh retry window starts"
    );
    let refused = ctx
        .store
        .retry(std::slice::from_ref(&id), later)
        .await
        .expect("retry");
    assert_eq!(refused, [id], "only dead notices can be retried");
}

async fn record_retry_holds_the_notice_until_its_next_attempt(ctx: Ctx) {
    let now = t0();
    ctx.poll(&[ticket("T1", now - secs(600))], now).await;
    let claimed = ctx.claim(now, 10, "a").await;
    assert_eq!(claimed.len(), 1);
    ctx.store
        .record_retry(&claimed[0], now, now + secs(60), "timed out after 2s")
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
    store
        .apply_plan(&Plan::default(), false, now, Some(watermark))
        .await
        .expect("apply");
    assert_eq!(store.last_poll_at().await.expect("last poll"), Some(now));
    assert_eq!(
        store.source_watermark().await.expect("watermark"),
        Some(watermark)
    );
    // A poll that saw no updated_at keeps the watermark.
    store
        .apply_plan(&Plan::default(), false, now + secs(1), None)
        .await
        .expect("apply");
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

    let series = ctx
        .store
        .load_series_for(false, &["T1"])
        .await
        .expect("load series of T1");
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].key.ticket_id, "T1");
    // T1's wait ended; T2 is not in the changes and keeps its notice.
    let plan = planner::plan_changes(&ctx.settings, &[], &["T1".into()], &series, false);
    ctx.store
        .apply_plan(&plan, false, now + secs(1), None)
        .await
        .expect("apply");
    assert_eq!(
        ctx.status(&notice_id(&t1, 1)).await,
        Some(Status::Cancelled)
    );
    assert_eq!(ctx.status(&notice_id(&t2, 1)).await, Some(Status::Pending));
    assert!(
        ctx.store
            .load_series_for(false, &["T1"])
            .await
            .expect("load series")
            .is_empty(),
        "the ended wait's series is gone"
    );
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
                    .claim_due(CHANNEL, now, 3, LEASE, instance)
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

suite!(
    claims_return_due_notices_once_until_their_lease_ends,
    record_done_advances_the_series_so_the_next_plan_proposes_number_two,
    a_plan_without_the_ticket_cancels_its_pending_notice,
    retry_puts_a_dead_notice_back_to_pending,
    record_retry_holds_the_notice_until_its_next_attempt,
    suppressions_round_trip,
    the_poll_time_and_the_watermark_are_stored,
    an_incremental_plan_touches_only_the_changed_tickets,
    concurrent_claims_never_return_the_same_notice_twice,
);
