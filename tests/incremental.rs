//! Incremental polling (issue 6): after a first full poll, only rows changed
//! since the watermark (minus `source.overlap`) are read, and a full resync
//! runs every `source.full_resync`. A closure seen by an incremental poll
//! cancels at once; a deleted ticket is noticed at the next full resync; a
//! row committed late with an older `updated_at` inside the overlap is not
//! missed. Each test runs against a SQLite helpdesk and, when
//! `INTERIM_TEST_POSTGRES_URL` is set, a PostgreSQL one (TIMESTAMPTZ columns).

mod support;

use std::fs;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use support::postgres::PgDatabase;
use support::{Helpdesk, INCREMENTAL_QUERY, Notice, Setup, TICKET_QUERY, sql_lit, toml_str};

/// The same with the watermark as integer Unix seconds (SQLite).
const INCREMENTAL_QUERY_UNIX: &str = "SELECT id, number, subject, state, priority, queue, \
    customer_email, customer_name, language, \
    CASE WHEN state = 'closed' THEN NULL ELSE waiting_since END AS waiting_since, \
    updated_at, thread_message_id FROM tickets \
    WHERE CAST(strftime('%s', updated_at) AS INTEGER) >= :since_unix";

const SOON: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug)]
enum Kind {
    Sqlite,
    /// SQLite with naive timestamps in `Europe/Berlin` (`source.timezone`).
    SqliteBerlin,
    Postgres,
}

/// The helpdesk the daemon polls: the harness's SQLite one (text
/// timestamps `YYYY-MM-DD HH:MM:SS` in the source's zone) or a PostgreSQL
/// database with TIMESTAMPTZ columns. The test maintains `updated_at`.
enum Desk {
    Sqlite(Helpdesk, chrono_tz::Tz),
    Postgres(PgDatabase),
}

impl Desk {
    /// The helpdesk of `kind` with `setup`'s source pointing at it; None
    /// when PostgreSQL is not configured (the test is skipped).
    fn create(kind: Kind, setup: &mut Setup) -> Option<Self> {
        Some(match kind {
            Kind::Sqlite => Desk::Sqlite(setup.helpdesk(), chrono_tz::UTC),
            Kind::SqliteBerlin => {
                setup.set("source.timezone", &toml_str("Europe/Berlin"));
                Desk::Sqlite(setup.helpdesk(), chrono_tz::Europe::Berlin)
            }
            Kind::Postgres => {
                let db = PgDatabase::create()?;
                db.execute(
                    "CREATE TABLE tickets (id BIGINT PRIMARY KEY, number TEXT, subject TEXT, \
                     state TEXT NOT NULL, priority TEXT, queue TEXT, customer_email TEXT, \
                     customer_name TEXT, language TEXT, waiting_since TIMESTAMPTZ, \
                     updated_at TIMESTAMPTZ NOT NULL, thread_message_id TEXT)",
                );
                setup.set("source.url", &toml_str(&db.url));
                Desk::Postgres(db)
            }
        })
    }

    fn execute(&self, sql: &str) {
        match self {
            Desk::Sqlite(h, _) => h.execute(sql),
            Desk::Postgres(db) => db.execute(sql),
        }
    }

    /// A timestamp literal as the helpdesk stores it.
    fn ts(&self, t: DateTime<Utc>) -> String {
        match self {
            Desk::Sqlite(_, zone) => {
                let local = t.with_timezone(zone);
                sql_lit(Some(&local.format("%Y-%m-%d %H:%M:%S").to_string()))
            }
            Desk::Postgres(_) => sql_lit(Some(&t.format("%Y-%m-%d %H:%M:%S+00").to_string())),
        }
    }

    /// An open English ticket waiting since `waiting_since`, last changed at `updated_at`.
    fn insert(&self, id: i64, waiting_since: DateTime<Utc>, updated_at: DateTime<Utc>) {
        self.execute(&format!(
            "INSERT INTO tickets (id, number, subject, state, priority, queue, customer_email, \
             customer_name, language, waiting_since, updated_at) VALUES ({id}, '#{id}', \
             'Printer on fire', 'open', 'normal', 'support', 'customer{id}@example.com', \
             'Customer {id}', 'en', {}, {})",
            self.ts(waiting_since),
            self.ts(updated_at)
        ));
    }

    /// `UPDATE tickets SET {set}, updated_at = now WHERE id = {id}`.
    fn update(&self, id: i64, set: &str) {
        let now = self.ts(Utc::now());
        self.execute(&format!(
            "UPDATE tickets SET {set}, updated_at = {now} WHERE id = {id}"
        ));
    }
}

/// A daemon polling fully once and then incrementally; notices are planned
/// an hour after `waiting_since` (so they stay pending) into a file outbox.
fn incremental_setup(
    kind: Kind,
    query: &str,
    full_resync: &str,
    overlap: &str,
) -> Option<(Setup, Desk)> {
    let mut setup = Setup::new();
    let desk = Desk::create(kind, &mut setup)?;
    let outbox = setup.path("outbox").display().to_string();
    setup
        .set("source.query", &toml_str(TICKET_QUERY))
        .set("source.incremental_query", &toml_str(query))
        .set("source.full_resync", &toml_str(full_resync))
        .set("source.overlap", &toml_str(overlap))
        .toml(&format!(
            "[channels.out]\nkind = \"file\"\npath = {}\nformat = \"json\"",
            toml_str(&outbox)
        ))
        .policy(
            "later",
            "match = { state = [\"open\"] }\nafter = \"1h\"\nchannel = \"out\"\ntemplate = \"interim\"",
        );
    Some((setup, desk))
}

fn minutes_ago(m: i64) -> DateTime<Utc> {
    Utc::now() - chrono::Duration::minutes(m)
}

fn status_of(notices: &[Notice], ticket: i64) -> Vec<String> {
    notices
        .iter()
        .filter(|n| n.ticket_id == ticket.to_string())
        .map(|n| n.status.clone())
        .collect()
}

fn wait_for_incremental_poll(setup: &Setup) {
    let (_, before) = setup.polls();
    setup.wait_until(SOON, "an incremental poll ran", || setup.polls().1 > before);
}

fn closed_ticket_is_cancelled_by_the_next_incremental_poll(kind: Kind) {
    let Some((setup, desk)) = incremental_setup(kind, INCREMENTAL_QUERY, "1h", "2m") else {
        return;
    };
    for id in 1..=3 {
        desk.insert(id, minutes_ago(10), Utc::now());
    }
    let _daemon = setup.start();
    setup.wait_for_notices("three pending notices", |n| {
        n.len() == 3 && n.iter().all(|n| n.status == "pending")
    });
    wait_for_incremental_poll(&setup);

    // Ticket 1 is closed (the incremental query reports waiting_since NULL);
    // ticket 2 now waits for the customer (it still has a waiting_since, but
    // no policy matches it any more); ticket 3 keeps waiting.
    desk.update(1, "state = 'closed'");
    desk.update(2, "state = 'waiting_for_customer'");
    let changed = Instant::now();
    let mut notices = Vec::new();
    setup.wait_until(SOON, "the notices of tickets 1 and 2 are cancelled", || {
        notices = setup.try_notices().unwrap_or_default();
        status_of(&notices, 1) == ["cancelled"] && status_of(&notices, 2) == ["cancelled"]
    });
    println!(
        "{kind:?}: cancelled {:?} after the change",
        changed.elapsed()
    );
    assert_eq!(status_of(&notices, 3), ["pending"]);
    let (full, incremental) = setup.polls();
    assert_eq!(
        full, 1,
        "only the first poll may be full (full_resync = 1h); {incremental} incremental"
    );
}

#[test]
fn a_ticket_closed_between_polls_is_cancelled_by_the_next_incremental_poll_sqlite() {
    closed_ticket_is_cancelled_by_the_next_incremental_poll(Kind::Sqlite);
}

#[test]
fn a_ticket_closed_between_polls_is_cancelled_by_the_next_incremental_poll_postgres() {
    closed_ticket_is_cancelled_by_the_next_incremental_poll(Kind::Postgres);
}

fn deleted_ticket_is_noticed_at_the_next_full_resync(kind: Kind) {
    let Some((setup, desk)) = incremental_setup(kind, INCREMENTAL_QUERY, "3s", "2m") else {
        return;
    };
    for id in 1..=2 {
        desk.insert(id, minutes_ago(10), Utc::now());
    }
    let _daemon = setup.start();
    setup.wait_for_notices("two pending notices", |n| {
        n.len() == 2 && n.iter().all(|n| n.status == "pending")
    });
    // Delete right after a full poll, so incremental polls come first.
    let (full_before, _) = setup.polls();
    setup.wait_until(SOON, "a full resync ran", || setup.polls().0 > full_before);
    desk.execute("DELETE FROM tickets WHERE id = 1");
    let deleted = Instant::now();
    let (_, incremental_before) = setup.polls();
    setup.assert_stays(
        Duration::from_millis(1500),
        "incremental polls not to notice the deletion",
        || {
            let notices = setup.try_notices().unwrap_or_default();
            status_of(&notices, 1) == ["pending"]
        },
    );
    assert!(
        setup.polls().1 > incremental_before,
        "no incremental poll ran between the deletion and the next full resync"
    );
    setup.wait_until(SOON, "the deleted ticket's notice is cancelled", || {
        let notices = setup.try_notices().unwrap_or_default();
        status_of(&notices, 1) == ["cancelled"]
    });
    println!(
        "{kind:?}: cancelled {:?} after the deletion",
        deleted.elapsed()
    );
    let notices = setup.notices();
    assert_eq!(status_of(&notices, 2), ["pending"]);

    // The poll that cancelled it was a full one.
    let log = fs::read_to_string(setup.path("daemon.log")).expect("daemon log");
    let lines: Vec<&str> = log.lines().collect();
    let cancelled = lines
        .iter()
        .position(|l| l.contains("pending notice cancelled"))
        .expect("a log line about the cancelled notice");
    let poll = lines[cancelled..]
        .iter()
        .find(|l| l.contains("poll done"))
        .expect("the poll that cancelled it finished");
    assert!(
        poll.contains("full: true"),
        "the deletion was noticed by a poll that is not a full resync: {poll}"
    );
}

#[test]
fn a_ticket_deleted_from_the_source_is_noticed_at_the_next_full_resync_sqlite() {
    deleted_ticket_is_noticed_at_the_next_full_resync(Kind::Sqlite);
}

#[test]
fn a_ticket_deleted_from_the_source_is_noticed_at_the_next_full_resync_postgres() {
    deleted_ticket_is_noticed_at_the_next_full_resync(Kind::Postgres);
}

fn late_commit_inside_the_overlap_is_not_missed(kind: Kind, query: &str) {
    let Some((setup, desk)) = incremental_setup(kind, query, "1h", "1m") else {
        return;
    };
    // Ticket 1 sets the watermark to `watermark`.
    let watermark = Utc::now();
    desk.insert(1, minutes_ago(10), watermark);
    let _daemon = setup.start();
    setup.wait_for_notices("ticket 1's pending notice", |n| n.len() == 1);
    wait_for_incremental_poll(&setup);

    // Committed late: changed 30 s before the watermark, inside the 1 min
    // overlap. Ticket 3 is older than the overlap: an incremental poll does
    // not see it (only a full resync would), which shows that only
    // incremental polls ran.
    desk.insert(
        2,
        minutes_ago(10),
        watermark - chrono::Duration::seconds(30),
    );
    desk.insert(
        3,
        minutes_ago(10),
        watermark - chrono::Duration::minutes(10),
    );
    setup.wait_until(SOON, "ticket 2 (committed late) is planned", || {
        let notices = setup.try_notices().unwrap_or_default();
        status_of(&notices, 2) == ["pending"]
    });
    let (_, incremental_before) = setup.polls();
    setup.assert_stays(
        Duration::from_millis(2500),
        "ticket 3, older than watermark - overlap, to stay unseen by incremental polls",
        || {
            let notices = setup.try_notices().unwrap_or_default();
            status_of(&notices, 3).is_empty()
        },
    );
    let (full, incremental) = setup.polls();
    assert!(incremental > incremental_before, "no incremental poll ran");
    assert_eq!(
        full, 1,
        "only the first poll may be full (full_resync = 1h)"
    );
}

#[test]
fn a_row_committed_late_with_an_older_updated_at_inside_the_overlap_is_not_missed_sqlite() {
    late_commit_inside_the_overlap_is_not_missed(Kind::Sqlite, INCREMENTAL_QUERY);
}

#[test]
fn a_row_committed_late_inside_the_overlap_is_not_missed_with_local_time_text() {
    late_commit_inside_the_overlap_is_not_missed(Kind::SqliteBerlin, INCREMENTAL_QUERY);
}

#[test]
fn a_row_committed_late_inside_the_overlap_is_not_missed_with_since_unix() {
    late_commit_inside_the_overlap_is_not_missed(Kind::Sqlite, INCREMENTAL_QUERY_UNIX);
}

#[test]
fn a_row_committed_late_with_an_older_updated_at_inside_the_overlap_is_not_missed_postgres() {
    late_commit_inside_the_overlap_is_not_missed(Kind::Postgres, INCREMENTAL_QUERY);
}
