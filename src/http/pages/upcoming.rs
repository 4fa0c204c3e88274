//! `/upcoming`: what goes out next, when, to whom (masked unless
//! authenticated), why then (the same words as `interim plan`), and a
//! preview of the notice as it would read.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::notices::{NoticeView, unavailable, view};
use super::ticket::message_at;
use super::{Asked, respond};
use crate::http::AdminState;

/// Notices the page lists at most.
const SHOWN: u32 = 100;

#[derive(Debug, Default, Deserialize)]
pub struct UpcomingQuery {
    lang: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Upcoming {
    #[serde(flatten)]
    pub notice: NoticeView,
    /// Why it goes out then (`interim plan`'s explanation).
    pub why: Option<String>,
    pub subject: Option<String>,
    pub text: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct UpcomingPage {
    pub notices: Vec<Upcoming>,
    /// More are pending than the page shows.
    pub more: bool,
}

pub async fn page(
    State(state): State<AdminState>,
    Query(query): Query<UpcomingQuery>,
    headers: HeaderMap,
) -> Response {
    let asked = Asked::from(
        &headers,
        query.lang.as_deref(),
        "/upcoming",
        &state.sessions,
    );
    let now = Utc::now();
    let live = state.dispatcher.live();
    let settings = &live.config.settings;
    let rows = match state
        .store
        .upcoming_notices(settings.daemon.dry_run, SHOWN + 1)
        .await
    {
        Ok(rows) => rows,
        Err(e) => return unavailable(&e),
    };
    let authenticated = settings.http.admin_token.is_some();
    let more = rows.len() > SHOWN as usize;
    let notices = rows
        .iter()
        .take(SHOWN as usize)
        .map(|n| {
            let ticket: Option<crate::ticket::Ticket> = serde_json::from_str(&n.ticket_json).ok();
            let why = ticket.as_ref().and_then(|ticket| {
                let policy = settings.policies.iter().find(|p| p.name == n.policy)?;
                let policy = policy.for_ticket(ticket);
                Some(policy.explain_send(ticket, settings.daemon.timezone, n.due_at, n.send_at))
            });
            let at = n.send_at.max(now);
            let (subject, text) =
                message_at(n, at, settings, &live.config.templates, authenticated).unzip();
            Upcoming {
                notice: view(n, authenticated),
                why,
                subject,
                text,
            }
        })
        .collect();
    let data = UpcomingPage { notices, more };
    respond(
        &asked,
        "upcoming.html",
        "upcoming",
        &data,
        settings.daemon.timezone,
        now,
    )
}
