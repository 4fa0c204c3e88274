//! Promises measured (issue 14): one ticket's story through the real
//! poller, dispatcher and store on an injected clock, read back with the
//! binary's `interim notices --ticket`.

mod support;

use chrono::{DateTime, Duration, Utc};
use interim::clock::ManualClock;
use sqlx::Connection;
use support::Setup;
use support::library::InProcess;

/// Ticket 1 waits; policy `p` sends after 1 h, then every hour, three at
/// most, into a file channel.
fn setup() -> Setup {
    support::library::hourly_outbox(1)
}

async fn step(daemon: &mut InProcess, at: DateTime<Utc>) -> usize {
    daemon.clock.set(at);
    assert!(daemon.poll().await, "the poll at {at} succeeds");
    let sent = daemon.dispatch().await;
    // The poll after the sends decides what they made decidable.
    assert!(daemon.poll().await);
    sent
}

#[test]
fn a_tickets_story_reads_back_as_its_timeline_and_in_the_reports_numbers() {
    let setup = setup();
    let start = Utc::now();
    support::block_on(async {
        let config = interim::setup::load(&setup.write_config()).unwrap_or_else(|e| panic!("{e}"));
        let mut daemon = InProcess::start(config, ManualClock::new(start)).await;
        assert!(daemon.poll().await);
        // Notice 1 after an hour (the ticket already waited 10 minutes),
        // promising notice 2 an hour later; notice 2 keeps that promise.
        assert_eq!(step(&mut daemon, start + Duration::minutes(55)).await, 1);
        assert_eq!(step(&mut daemon, start + Duration::minutes(115)).await, 1);

        // Then someone answers and the customer writes again: a new wait.
        let url = format!("sqlite://{}", setup.path("helpdesk.db").display());
        let mut helpdesk = sqlx::SqliteConnection::connect(&url)
            .await
            .expect("open the helpdesk");
        let again = (start + Duration::minutes(130))
            .format("%Y-%m-%d %H:%M:%S")
            .to_string();
        sqlx::query("UPDATE tickets SET waiting_since = ?1 WHERE id = 1")
            .bind(&again)
            .execute(&mut helpdesk)
            .await
            .expect("the ticket waits again");
        helpdesk.close().await.expect("close the helpdesk");
        assert_eq!(step(&mut daemon, start + Duration::minutes(131)).await, 0);
        daemon.close().await;
    });

    let out = setup.cli(&["notices", "--ticket", "1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    let wait_lines: Vec<&&str> = lines.iter().filter(|l| l.starts_with("wait ")).collect();
    assert_eq!(wait_lines.len(), 2, "two waits:\n{text}");
    assert!(
        wait_lines[0].contains("(new_wait)") && wait_lines[0].contains("policies p"),
        "the first wait ended when the customer wrote again:\n{text}"
    );
    assert!(
        wait_lines[1].contains(", open;"),
        "the second is open:\n{text}"
    );
    let notice = |number: &str| {
        lines
            .iter()
            .find(|l| l.trim_start().starts_with(number))
            .unwrap_or_else(|| panic!("notice {number} in:\n{text}"))
    };
    assert!(
        notice("1/3").contains("kept"),
        "notice 2 kept notice 1's promise:\n{text}"
    );
    assert!(
        notice("2/3").contains("superseded"),
        "the wait ended before notice 3 was due:\n{text}"
    );
    assert!(notice("3/3").contains("cancelled"), "{text}");

    // The same story in the report's numbers (the clock ran ahead of the
    // real one, so the period reaches into the future).
    let until = (start + Duration::days(1)).to_rfc3339();
    let report = setup
        .json(&[
            "report", "--since", "1d", "--until", &until, "--format", "json",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
    let total = &report["total"];
    assert_eq!(total["waits_started"], 2, "{report:#}");
    assert_eq!(total["waits_ended"], 1, "{report:#}");
    assert_eq!(total["waits_open"], 1, "{report:#}");
    assert_eq!(total["notices_sent"], 2, "{report:#}");
    assert_eq!(total["promises"]["made"], 2, "{report:#}");
    assert_eq!(total["promises"]["kept"], 1, "{report:#}");
    assert_eq!(total["promises"]["superseded"], 1, "{report:#}");
    assert_eq!(total["promises"]["kept_rate"], 1.0, "{report:#}");
    assert_eq!(report["by"], "queue");
    assert_eq!(report["groups"][0]["key"], "support");
    let table = setup.cli(&["report", "--since", "1d", "--until", &until]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(table.status.success(), "{text}");
    assert!(
        text.lines().all(|l| l.chars().count() <= 100),
        "fits 100 columns:\n{text}"
    );
    assert!(text.contains("total"), "{text}");
}
