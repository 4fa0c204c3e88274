//! A ledger written by an earlier schema is migrated in place by
//! `interim migrate`, and the daemon continues where the old one stopped:
//! on SQLite and on PostgreSQL, a ledger at migration 0004 (the schema
//! before `plan_dirty`) holding sent, pending and dead notices is
//! migrated; then the overdue pending notice goes out once, the dead one
//! stays dead and its series goes on, nothing sent is sent again, and the
//! notice not yet due comes when it is due.
//!
//! The rows are written as the daemon of that schema wrote them (ids from
//! the notice identity, instants in Unix milliseconds), so the test guards
//! every later rewrite of the store against losing or repeating a notice
//! of a ledger in the field.

mod support;

use std::path::Path;

use chrono::{DateTime, Duration, DurationRound, Utc};
use interim::clock::ManualClock;
use interim::notice::{SeriesKey, Status};
use sqlx::AnyPool;
use support::library::InProcess;
use support::postgres::PgDatabase;
use support::{Setup, Ticket, toml_str};

/// The last migration of the schema the ledger was written with.
const WRITTEN_AT: i64 = 4;
const POLICY: &str = "p";

#[derive(Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn dir(self) -> &'static str {
        match self {
            Backend::Sqlite => "store-sqlite",
            Backend::Postgres => "store-postgres",
        }
    }
}

/// The migrations up to `WRITTEN_AT`, as that version shipped them.
fn earlier_migrations(backend: Backend) -> tempfile::TempDir {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates")
        .join(backend.dir())
        .join("migrations");
    let to = tempfile::tempdir().expect("a folder for the migrations");
    for entry in std::fs::read_dir(&from).expect("the migrations").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let version: i64 = name
            .split('_')
            .next()
            .and_then(|v| v.parse().ok())
            .expect("a numbered migration");
        if version <= WRITTEN_AT {
            std::fs::copy(entry.path(), to.path().join(&name)).expect("copy a migration");
        }
    }
    to
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// One notice row as the earlier daemon wrote it.
struct Row {
    ticket: &'static str,
    episode: DateTime<Utc>,
    number: u32,
    status: &'static str,
    due_at: DateTime<Utc>,
    sent_at: Option<DateTime<Utc>>,
    next_notice_at: Option<DateTime<Utc>>,
    attempts: i64,
    error: Option<&'static str>,
}

impl Row {
    fn id(&self) -> String {
        SeriesKey::new(self.ticket, POLICY, self.episode).notice_id(self.number, false)
    }
}

fn ticket_json(id: &str, waiting_since: DateTime<Utc>) -> String {
    serde_json::json!({
        "id": id,
        "number": format!("#{id}"),
        "subject": "Printer on fire",
        "state": "open",
        "queue": "support",
        "customer_email": Ticket::email(id.parse().unwrap_or(0)),
        "language": "en",
        "waiting_since": waiting_since,
    })
    .to_string()
}

/// Writes the ledger at schema `WRITTEN_AT`.
async fn write_earlier_ledger(backend: Backend, url: &str, rows: &[Row]) {
    sqlx::any::install_default_drivers();
    let migrations = earlier_migrations(backend);
    sqlx::any::install_default_drivers();
    let pool = AnyPool::connect(url)
        .await
        .expect("open the earlier ledger");
    sqlx::migrate::Migrator::new(migrations.path())
        .await
        .expect("the earlier migrations")
        .run(&pool)
        .await
        .expect("migrate to the earlier schema");
    let sql = |text: &str| match backend {
        Backend::Sqlite => text.replace('$', "?"),
        Backend::Postgres => text.to_owned(),
    };
    for r in rows {
        let started = r.sent_at.or((r.status == "dead").then_some(r.due_at));
        let finished = r.sent_at.or(started);
        sqlx::query(sqlx::AssertSqlSafe(sql(
            "INSERT INTO notices (id, ticket_id, policy, episode, dry_run, number, max_notices, status,
                channel, recipient, due_at, send_at, next_attempt_at, attempts, first_attempt_at,
                last_attempt_at, sent_at, finished_at, next_notice_at, last_error, ticket,
                created_at, updated_at, ticket_hash, claim_token)
             VALUES ($1, $2, $3, $4, 0, $5, 3, $6, 'outbox', $7, $8, $8, $8, $9, $10, $10, $11, $12,
                $13, $14, $15, $16, $16, 0, 0)",
        )))
        .bind(r.id())
        .bind(r.ticket)
        .bind(POLICY)
        .bind(ms(r.episode))
        .bind(i64::from(r.number))
        .bind(r.status)
        .bind(Ticket::email(r.ticket.parse().unwrap_or(0)))
        .bind(ms(r.due_at))
        .bind(r.attempts)
        .bind(started.map(ms))
        .bind(r.sent_at.map(ms))
        .bind(finished.filter(|_| r.status != "pending").map(ms))
        .bind(r.next_notice_at.map(ms))
        .bind(r.error)
        .bind(ticket_json(r.ticket, r.episode))
        .bind(ms(r.due_at - Duration::hours(1)))
        .execute(&pool)
        .await
        .expect("write a notice of the earlier schema");
    }
    // Each series: the last number that reached an end, the last real
    // send, the notice after it.
    let mut tickets: Vec<&str> = rows.iter().map(|r| r.ticket).collect();
    tickets.dedup();
    for ticket in tickets {
        let of = |r: &&Row| r.ticket == ticket;
        let done = rows
            .iter()
            .filter(of)
            .filter(|r| r.status != "pending")
            .map(|r| r.number)
            .max()
            .unwrap_or(0);
        let last_sent = rows.iter().filter(of).filter_map(|r| r.sent_at).max();
        let next = rows.iter().filter(of).find(|r| r.number == done + 1);
        let episode = rows.iter().find(of).map(|r| r.episode).expect("a row");
        sqlx::query(sqlx::AssertSqlSafe(sql(
            "INSERT INTO series (ticket_id, policy, episode, dry_run, done, last_sent_at, next_id, active)
             VALUES ($1, $2, $3, 0, $4, $5, $6, 1)",
        )))
        .bind(ticket)
        .bind(POLICY)
        .bind(ms(episode))
        .bind(i64::from(done))
        .bind(last_sent.map(ms))
        .bind(next.map(Row::id))
        .execute(&pool)
        .await
        .expect("write a series of the earlier schema");
    }
    pool.close().await;
}

/// Every notice in the outbox: (ticket, number), sorted.
fn outbox(setup: &Setup) -> Vec<(String, u64)> {
    let Ok(entries) = std::fs::read_dir(setup.path("outbox")) else {
        return Vec::new();
    };
    let mut out: Vec<(String, u64)> = entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .map(|e| {
            let doc: serde_json::Value =
                serde_json::from_slice(&std::fs::read(e.path()).expect("read a notice"))
                    .expect("a notice document");
            (
                doc["ticket"]["id"].as_str().unwrap_or_default().to_owned(),
                doc["number"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    out
}

fn upgrade_and_continue(backend: Backend) {
    let pg = match backend {
        Backend::Postgres => match PgDatabase::create() {
            Some(db) => Some(db),
            None => return,
        },
        Backend::Sqlite => None,
    };
    let mut setup = Setup::new();
    let store_url = match &pg {
        Some(db) => db.url.clone(),
        None => format!("sqlite://{}?mode=rwc", setup.path("interim.db").display()),
    };
    let outbox_dir = setup.path("outbox");
    setup
        .set("store.url", &toml_str(&store_url))
        .set("daemon.max_snapshot_age", &toml_str("1d"))
        .toml(&format!(
            "[channels.outbox]\nkind = \"file\"\npath = {}\nformat = \"json\"",
            toml_str(&outbox_dir.display().to_string())
        ))
        .policy(
            POLICY,
            "match = { state = [\"open\"] }\nafter = \"1h\"\nrepeat_every = \"1h\"\nmax_notices = 3\n\
             channel = \"outbox\"\ntemplate = \"interim\"",
        );
    let now = Utc::now()
        .duration_trunc(Duration::seconds(1))
        .expect("now to the second");
    let hours = |h: i64| Duration::minutes(h * 60);
    let (e1, e2, e3) = (now - hours(3), now - hours(3), now - Duration::minutes(90));
    let rows = [
        // Ticket 1: notice 1 sent two hours ago, promising the next an
        // hour ago; notice 2 pending and overdue (the daemon was stopped).
        Row {
            ticket: "1",
            episode: e1,
            number: 1,
            status: "sent",
            due_at: e1 + hours(1),
            sent_at: Some(e1 + hours(1)),
            next_notice_at: Some(e1 + hours(2)),
            attempts: 1,
            error: None,
        },
        Row {
            ticket: "1",
            episode: e1,
            number: 2,
            status: "pending",
            due_at: e1 + hours(2),
            sent_at: None,
            next_notice_at: None,
            attempts: 0,
            error: None,
        },
        // Ticket 2: notice 1 dead after five attempts.
        Row {
            ticket: "2",
            episode: e2,
            number: 1,
            status: "dead",
            due_at: e2 + hours(1),
            sent_at: None,
            next_notice_at: None,
            attempts: 5,
            error: Some("HTTP 500"),
        },
        // Ticket 3: notice 1 sent half an hour ago, notice 2 due in half
        // an hour.
        Row {
            ticket: "3",
            episode: e3,
            number: 1,
            status: "sent",
            due_at: e3 + hours(1),
            sent_at: Some(e3 + hours(1)),
            next_notice_at: Some(e3 + hours(2)),
            attempts: 1,
            error: None,
        },
        Row {
            ticket: "3",
            episode: e3,
            number: 2,
            status: "pending",
            due_at: e3 + hours(2),
            sent_at: None,
            next_notice_at: None,
            attempts: 0,
            error: None,
        },
    ];
    support::block_on(write_earlier_ledger(backend, &store_url, &rows));
    setup.helpdesk().insert(&[
        Ticket {
            waiting_since: e1.to_rfc3339(),
            ..Ticket::new(1)
        },
        Ticket {
            waiting_since: e2.to_rfc3339(),
            ..Ticket::new(2)
        },
        Ticket {
            waiting_since: e3.to_rfc3339(),
            ..Ticket::new(3)
        },
    ]);

    let out = setup.cli(&["migrate"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "interim migrate: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("applied migration 0005 plan dirty"),
        "migrate names what it applied:\n{text}"
    );
    let again = setup.cli(&["migrate"]);
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("0 applied now"),
        "a second migrate applies nothing: {}",
        String::from_utf8_lossy(&again.stdout)
    );

    let config = interim::setup::load(&setup.write_config()).unwrap_or_else(|e| panic!("{e}"));
    support::block_on(async {
        let mut daemon = InProcess::start(config, ManualClock::new(now)).await;
        assert!(
            daemon.poll().await,
            "the first poll after the upgrade succeeds"
        );
        // The waits in progress are in the history, open, with what the
        // first poll saw of their tickets.
        for (id, since) in [("1", e1), ("2", e2), ("3", e3)] {
            let waits = daemon
                .store
                .waits_of_ticket(id, false)
                .await
                .expect("read the waits");
            assert_eq!(waits.len(), 1, "ticket {id}: {waits:?}");
            assert_eq!(
                (
                    waits[0].started_at,
                    waits[0].ended,
                    waits[0].queue.as_deref()
                ),
                (since, None, Some("support")),
                "ticket {id}"
            );
        }
        daemon.dispatch().await;
        // The overdue notice 2 of ticket 1 goes out, and ticket 2's series
        // goes on after its dead notice; nothing sent is sent again.
        assert_eq!(
            outbox(&setup),
            vec![("1".to_owned(), 2), ("2".to_owned(), 2)],
            "{:#?}",
            daemon.notices().await
        );
        let status = |rows: &[interim::store::NoticeRow], id: &str| {
            rows.iter().find(|r| r.id == id).map(|r| r.status)
        };
        let ledger = daemon.notices().await;
        assert_eq!(status(&ledger, &rows[0].id()), Some(Status::Sent));
        assert_eq!(status(&ledger, &rows[2].id()), Some(Status::Dead));
        assert_eq!(status(&ledger, &rows[4].id()), Some(Status::Pending));

        // Ticket 3's promise is kept: its notice 2 when it falls due.
        daemon.clock.set(e3 + hours(2));
        assert!(daemon.poll().await);
        daemon.dispatch().await;
        assert_eq!(
            outbox(&setup),
            vec![
                ("1".to_owned(), 2),
                ("2".to_owned(), 2),
                ("3".to_owned(), 2)
            ]
        );
        daemon.close().await;
    });
}

#[test]
fn a_sqlite_ledger_of_the_earlier_schema_is_migrated_and_continues_without_a_duplicate() {
    upgrade_and_continue(Backend::Sqlite);
}

#[test]
fn a_postgresql_ledger_of_the_earlier_schema_is_migrated_and_continues_without_a_duplicate() {
    upgrade_and_continue(Backend::Postgres);
}
