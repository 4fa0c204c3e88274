//! A steady poll plans only the tickets that changed (issue 13, item 3):
//! the real poller, store and dispatcher on an injected clock, with a
//! SQLite helpdesk. Each test checks both sides: what did not change is not
//! planned, and what did change (in the helpdesk, or in the ledger by
//! another writer) is planned at the next poll and acted on.

mod support;

use chrono::{DateTime, Utc};
use interim::clock::ManualClock;
use interim::notice::Status;
use sqlx::Connection;
use support::library::InProcess;
use support::{Setup, Ticket};

const TICKETS: i64 = 4;

/// Four open tickets waiting 10 minutes; policy `p` sends the first notice
/// after 1 h, then every hour, into a file channel.
fn setup() -> Setup {
    support::library::hourly_outbox(TICKETS)
}

async fn start(setup: &Setup) -> InProcess {
    let config = interim::setup::load(&setup.write_config()).unwrap_or_else(|e| panic!("{e}"));
    InProcess::start(config, ManualClock::new(Utc::now())).await
}

/// Polls until a poll plans no ticket (its own writes of the poll before
/// are changes like any other, so that takes two or three polls).
async fn poll_until_steady(daemon: &mut InProcess) {
    for _ in 0..4 {
        assert!(daemon.poll().await, "the poll succeeds");
        if daemon.last_poll().unchanged == TICKETS as usize {
            return;
        }
    }
    panic!("never steady: {:?}", daemon.last_poll());
}

fn status_of(rows: &[interim::store::NoticeRow], ticket: &str) -> Vec<(u32, Status)> {
    let mut out: Vec<(u32, Status)> = rows
        .iter()
        .filter(|r| r.ticket_id == ticket)
        .map(|r| (r.number, r.status))
        .collect();
    out.sort_by_key(|(number, _)| *number);
    out
}

fn hour() -> chrono::Duration {
    chrono::Duration::hours(1)
}

fn set_clock(daemon: &InProcess, at: DateTime<Utc>) {
    daemon.clock.set(at);
}

#[test]
fn a_steady_poll_plans_only_the_ticket_whose_data_changed() {
    let setup = setup();
    support::block_on(async {
        let mut daemon = start(&setup).await;
        assert!(daemon.poll().await);
        assert_eq!(
            daemon.last_poll().unchanged,
            0,
            "the first poll plans every ticket"
        );
        poll_until_steady(&mut daemon).await;
        assert_eq!(daemon.last_poll().planned, 0);

        let helpdesk = format!("sqlite://{}", setup.path("helpdesk.db").display());
        let mut helpdesk = sqlx::SqliteConnection::connect(&helpdesk)
            .await
            .expect("open the helpdesk");
        sqlx::query("UPDATE tickets SET subject = 'Printer still on fire' WHERE id = 2")
            .execute(&mut helpdesk)
            .await
            .expect("change ticket 2");
        helpdesk.close().await.expect("close the helpdesk");
        assert!(daemon.poll().await);
        let polled = daemon.last_poll();
        assert_eq!(
            (polled.unchanged, polled.planned),
            (TICKETS as usize - 1, 1),
            "only ticket 2 is planned, and its pending notice takes the new data: {polled:?}"
        );
        poll_until_steady(&mut daemon).await;

        // The changed data is what goes out.
        set_clock(&daemon, daemon.now() + hour());
        assert!(daemon.poll().await);
        assert_eq!(
            daemon.dispatch().await,
            TICKETS as usize,
            "every first notice is sent"
        );
        let sent = std::fs::read_dir(setup.path("outbox"))
            .expect("the outbox")
            .flatten()
            .map(|e| std::fs::read_to_string(e.path()).expect("a notice file"))
            .filter(|doc| doc.contains("Printer still on fire"))
            .count();
        assert_eq!(sent, 1, "ticket 2's notice carries its new subject");
        daemon.close().await;
    });
}

#[test]
fn a_ledger_change_by_another_writer_is_planned_at_the_next_poll() {
    let setup = setup();
    support::block_on(async {
        let mut daemon = start(&setup).await;
        assert!(daemon.poll().await);
        poll_until_steady(&mut daemon).await;

        // Another writer (an operator's tool, another instance) cancels
        // ticket 3's pending notice behind the poller's back.
        let ledger = format!("sqlite://{}", setup.path("interim.db").display());
        let mut other = sqlx::SqliteConnection::connect(&ledger)
            .await
            .expect("open the ledger again");
        sqlx::query("UPDATE notices SET status = 'cancelled' WHERE ticket_id = '3'")
            .execute(&mut other)
            .await
            .expect("cancel ticket 3's notice");
        other.close().await.expect("close the second connection");
        assert_eq!(
            status_of(&daemon.notices().await, "3"),
            vec![(1, Status::Cancelled)]
        );

        // The ticket still waits: the next poll plans it again and revives
        // its notice; the others stay unplanned.
        assert!(daemon.poll().await);
        let polled = daemon.last_poll();
        assert_eq!(
            (polled.unchanged, polled.planned),
            (TICKETS as usize - 1, 1),
            "{polled:?}"
        );
        assert_eq!(
            status_of(&daemon.notices().await, "3"),
            vec![(1, Status::Pending)]
        );

        // And it keeps its promise: sent when due, then the next planned.
        set_clock(&daemon, daemon.now() + hour());
        assert!(daemon.poll().await);
        assert_eq!(daemon.dispatch().await, TICKETS as usize);
        assert_eq!(
            status_of(&daemon.notices().await, "3"),
            vec![(1, Status::Sent), (2, Status::Pending)]
        );
        // A send changes the ledger: the next poll plans the sent tickets
        // again, then they are steady.
        assert!(daemon.poll().await);
        assert_eq!(daemon.last_poll().unchanged, 0);
        poll_until_steady(&mut daemon).await;
        daemon.close().await;
    });
}

#[test]
fn a_rejected_poll_leaves_nothing_remembered_and_the_next_poll_plans_every_ticket() {
    let setup = setup();
    // Five rows that break the column contract: more than half of the
    // poll (source.max_skipped_share 0.5) is skipped, so the poll is
    // rejected after its four good tickets were planned in memory.
    let helpdesk = support::Helpdesk::open(&setup.path("helpdesk.db"));
    helpdesk.insert(
        &(TICKETS + 1..=TICKETS + 5)
            .map(|id| Ticket {
                waiting_since: "not a time".into(),
                ..Ticket::new(id)
            })
            .collect::<Vec<_>>(),
    );
    support::block_on(async {
        let mut daemon = start(&setup).await;
        assert!(!daemon.poll().await, "the poll is rejected");
        assert!(daemon.notices().await.is_empty(), "nothing was applied");

        let url = format!("sqlite://{}", setup.path("helpdesk.db").display());
        let mut conn = sqlx::SqliteConnection::connect(&url)
            .await
            .expect("open the helpdesk");
        sqlx::query("DELETE FROM tickets WHERE id > ?1")
            .bind(TICKETS)
            .execute(&mut conn)
            .await
            .expect("remove the broken rows");
        conn.close().await.expect("close the helpdesk");

        // Nothing about the four good tickets changed since the rejected
        // poll planned them, and the ledger never got those plans.
        assert!(daemon.poll().await);
        let polled = daemon.last_poll();
        assert_eq!(
            (polled.unchanged, polled.planned),
            (0, TICKETS as usize),
            "{polled:?}"
        );
        set_clock(&daemon, daemon.now() + hour());
        assert!(daemon.poll().await);
        assert_eq!(
            daemon.dispatch().await,
            TICKETS as usize,
            "every first notice is sent when due"
        );
        daemon.close().await;
    });
}
