//! Customer-local send windows (`window_zone = "customer"`): the calendar
//! and `send_at` are read in the ticket's `timezone`, else in the
//! calendar's zone, by `plan` and by the send-time check alike. The
//! company sits in Auckland, the customer in Los Angeles: across the date
//! line, the customer's Monday 09:00 is Tuesday 06:00 in Auckland.

mod support;

use chrono::{DateTime, Utc};
use interim::clock::ManualClock;
use interim::notice::Status;
use serde_json::Value;
use support::library::InProcess;
use support::{Setup, Ticket, toml_str};

const QUERY: &str = "SELECT id, number, subject, state, priority, queue, customer_email, \
    customer_name, language, timezone, waiting_since, updated_at, thread_message_id \
    FROM tickets WHERE state <> 'closed'";

fn utc(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|e| panic!("{rfc3339:?} is not RFC 3339: {e}"))
        .with_timezone(&Utc)
}

/// An Auckland office calendar and a customer-local policy: one working
/// hour, then the 09:00 weekday slot. Ticket 1 is in Los Angeles, ticket 2
/// names a zone that does not exist, ticket 3 names none; all three began
/// waiting at Monday 2026-12-07 07:00 in Los Angeles (15:00 UTC).
fn setup() -> Setup {
    let mut setup = Setup::new();
    let outbox = setup.path("outbox");
    setup
        .set("source.query", &toml_str(QUERY))
        .set("daemon.max_snapshot_age", &toml_str("1d"))
        .set("daemon.default_language", &toml_str("en"))
        .toml(
            "[calendars.auckland]\ntimezone = \"Pacific/Auckland\"\n\
             hours = { mon = \"08:00-18:00\", tue = \"08:00-18:00\", wed = \"08:00-18:00\", thu = \"08:00-18:00\", fri = \"08:00-18:00\" }",
        )
        .toml(&format!(
            "[channels.outbox]\nkind = \"file\"\npath = {}\nformat = \"json\"",
            toml_str(&outbox.display().to_string())
        ))
        .policy(
            "customer-mornings",
            "match = { state = [\"open\"] }\nafter = \"1h\"\ncalendar = \"auckland\"\n\
             send_at = \"0 0 9 * * Mon-Fri\"\nwindow_zone = \"customer\"\n\
             channel = \"outbox\"\ntemplate = \"interim\"",
        );
    let helpdesk = setup.helpdesk();
    let since = "2026-12-07T07:00:00-08:00".to_owned();
    helpdesk.insert(&[1, 2, 3].map(|id| Ticket {
        waiting_since: since.clone(),
        ..Ticket::new(id)
    }));
    // After the insert: the helper's INSERT lists the standard columns only.
    helpdesk.execute("ALTER TABLE tickets ADD COLUMN timezone TEXT");
    helpdesk.set(1, "timezone", "America/Los_Angeles");
    helpdesk.set(2, "timezone", "Mars/Olympus");
    setup
}

fn row<'a>(plan: &'a [Value], ticket: &str) -> &'a Value {
    plan.iter()
        .find(|r| r["ticket_id"] == ticket)
        .unwrap_or_else(|| panic!("ticket {ticket} is planned: {plan:?}"))
}

#[test]
fn plan_places_a_customer_local_window_in_the_customers_zone_across_the_date_line() {
    let setup = setup();
    let json = setup
        .json(&[
            "plan",
            "--at",
            "2026-12-07T16:00:00Z",
            "--horizon",
            "1d",
            "--format",
            "json",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
    let plan = json.as_array().cloned().expect("plan prints an array");

    // One working hour from 07:00 in Los Angeles ends at 09:00 there (the
    // customer's hours open at 08:00); the 09:00 slot is then.
    let la = row(&plan, "1");
    assert_eq!(la["due_at"], "2026-12-07T17:00:00Z", "{la}");
    assert_eq!(la["send_at"], "2026-12-07T17:00:00Z", "{la}");
    assert_eq!(
        la["window"],
        "Mon 2026-12-07 09:00 in America/Los_Angeles, customer's zone"
    );
    assert!(
        la["why"]
            .as_str()
            .is_some_and(|w| w.ends_with("in America/Los_Angeles, customer's zone")),
        "{la}"
    );

    // No valid zone: Auckland's hours, Tuesday 08:00 + 1h = 09:00 NZDT.
    for ticket in ["2", "3"] {
        let home = row(&plan, ticket);
        assert_eq!(home["send_at"], "2026-12-07T20:00:00Z", "{home}");
        assert_eq!(
            home["window"],
            "Tue 2026-12-08 09:00 in Pacific/Auckland, calendar's zone, the ticket has no valid timezone"
        );
    }
}

#[test]
fn the_send_time_check_reads_the_window_in_the_customers_zone() {
    let setup = setup();
    let config = interim::setup::load(&setup.write_config()).unwrap_or_else(|e| panic!("{e}"));
    let outbox = || {
        std::fs::read_dir(setup.path("outbox"))
            .map(|d| d.flatten().count())
            .unwrap_or(0)
    };
    support::block_on(async {
        let mut daemon =
            InProcess::start(config, ManualClock::new(utc("2026-12-07T15:30:00Z"))).await;
        assert!(daemon.poll().await, "the first poll succeeds");
        let mut planned: Vec<(String, DateTime<Utc>)> = daemon
            .notices()
            .await
            .into_iter()
            .map(|n| (n.ticket_id, n.send_at))
            .collect();
        planned.sort();
        assert_eq!(
            planned,
            [
                ("1".to_owned(), utc("2026-12-07T17:00:00Z")),
                ("2".to_owned(), utc("2026-12-07T20:00:00Z")),
                ("3".to_owned(), utc("2026-12-07T20:00:00Z")),
            ]
        );

        daemon.clock.set(utc("2026-12-07T16:59:00Z"));
        assert_eq!(
            daemon.dispatch().await,
            0,
            "nothing before 09:00 in Los Angeles"
        );

        // 09:00 in Los Angeles is 06:00 in Auckland, outside the office's
        // hours there: only the customer-local reading sends it now.
        daemon.clock.set(utc("2026-12-07T17:00:00Z"));
        assert!(daemon.poll().await, "the poll at 17:00 UTC succeeds");
        assert_eq!(daemon.dispatch().await, 1, "ticket 1 goes out at its 09:00");
        assert_eq!(outbox(), 1);

        daemon.clock.set(utc("2026-12-07T20:00:00Z"));
        assert!(daemon.poll().await, "the poll at 20:00 UTC succeeds");
        assert_eq!(
            daemon.dispatch().await,
            2,
            "the fallbacks go out at Auckland's 09:00"
        );
        let ledger = daemon.notices().await;
        assert!(
            ledger.iter().all(|n| n.status == Status::Sent),
            "{ledger:?}"
        );
        let sent_at = |id: &str| {
            ledger
                .iter()
                .find(|n| n.ticket_id == id)
                .and_then(|n| n.sent_at)
        };
        assert_eq!(sent_at("1"), Some(utc("2026-12-07T17:00:00Z")));
        assert_eq!(sent_at("2"), Some(utc("2026-12-07T20:00:00Z")));
        daemon.close().await;
    });
}

#[test]
fn a_window_zone_other_than_calendar_or_customer_is_rejected() {
    let mut setup = setup();
    setup.replace_toml("window_zone = \"customer\"", "window_zone = \"ticket\"");
    let out = setup.cli(&["check-config"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("policies[0].window_zone") && stderr.contains("\"ticket\""),
        "{stderr}"
    );
}
