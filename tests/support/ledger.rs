//! The planning path through the library, as the daemon's poll runs it:
//! series of the polled tickets (stored or derived from their notices),
//! the planner at an explicit `now`, the plan applied, and a full poll
//! ending the series of tickets it did not see.

use chrono::{DateTime, Utc};
use interim::config::Settings;
use interim::planner::{self, Mode, Plan};
use interim::store::{ClaimedNotice, Outcome, PollEnd, Recorded, Store, Swept};
use interim::ticket::Ticket;

/// An open ticket `id` waiting since `waiting_since`: number `#ID`,
/// subject "Printer on fire", an English customer at `ID@example.com`,
/// nothing else (a test changes fields with struct update syntax).
pub fn ticket(id: &str, waiting_since: DateTime<Utc>) -> Ticket {
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

/// What one poll did.
pub struct Polled {
    pub plan: Plan,
    /// Pending notices cancelled because their ticket was absent.
    pub swept: Vec<Swept>,
}

/// A full poll that saw `tickets` at `now` (live series).
pub async fn full_poll(
    store: &Store,
    settings: &Settings,
    tickets: &[Ticket],
    now: DateTime<Utc>,
) -> Polled {
    let plan = changes(store, settings, tickets, &[], now).await;
    let seen: interim::ticket_ids::TicketIds = tickets.iter().map(|t| t.id.as_str()).collect();
    let swept = store
        .finish_poll(PollEnd {
            now,
            seen: Some(&seen),
            modes: &[false],
            watermark: None,
        })
        .await
        .expect("finish the poll");
    Polled { plan, swept }
}

/// An incremental poll: `tickets` changed and wait, `ended` no longer do.
pub async fn changes(
    store: &Store,
    settings: &Settings,
    tickets: &[Ticket],
    ended: &[String],
    now: DateTime<Utc>,
) -> Plan {
    let ids: Vec<&str> = tickets
        .iter()
        .map(|t| t.id.as_str())
        .chain(ended.iter().map(String::as_str))
        .collect();
    let series = interim::daemon::series_of(store, settings, tickets, &ids, false)
        .await
        .expect("load series");
    let plan = planner::plan(settings, tickets, ended, &series, now, Mode::Live);
    store.apply_plan(&plan, now).await.expect("apply the plan");
    plan
}

/// Records the end of a claimed notice at `at` (no next notice planned:
/// the next poll plans it).
pub async fn record(
    store: &Store,
    n: &ClaimedNotice,
    status: interim::notice::Status,
    at: DateTime<Utc>,
) -> Recorded {
    store
        .record_done(
            n,
            &Outcome {
                status,
                attempt_started: at,
                finished: at,
                next_notice_at: None,
                error: None,
            },
            None,
        )
        .await
        .expect("record a result")
}
