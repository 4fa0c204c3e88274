//! `/tickets/{id}`: one ticket's story, wait by wait: each notice with
//! the promise it made and how that turned out, and a sent notice as the
//! customer saw it (rendered again from the ticket as it was sent, with
//! the templates in force now).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::notices::{NoticeView, unavailable, view};
use super::{Asked, respond};
use crate::config::Settings;
use crate::http::AdminState;
use crate::ledger::{NoticeFilter, NoticeRow};
use crate::logging::mask_address_in;
use crate::templates::NoticeFacts;

#[derive(Debug, Default, Deserialize)]
pub struct TicketQuery {
    lang: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct TicketNotice {
    #[serde(flatten)]
    pub notice: NoticeView,
    /// A sent notice's subject and text as the customer got them.
    pub subject: Option<String>,
    pub text: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct WaitView {
    pub since: String,
    pub ended_at: Option<String>,
    /// `new_wait`, `left`, or none while open.
    pub ended: Option<&'static str>,
    pub policies: Vec<String>,
    pub notices: Vec<TicketNotice>,
}

#[derive(Debug, Serialize)]
pub struct TicketPage {
    pub ticket_id: String,
    pub ticket_number: Option<String>,
    pub waits: Vec<WaitView>,
    /// Notices of waits the history no longer (or never) held.
    pub other_notices: Vec<TicketNotice>,
}

pub async fn page(
    State(state): State<AdminState>,
    Path(wanted): Path<String>,
    Query(query): Query<TicketQuery>,
    headers: HeaderMap,
) -> Response {
    let asked = Asked::from(
        &headers,
        query.lang.as_deref(),
        "/tickets/x",
        &state.sessions,
    );
    let live = state.dispatcher.live();
    let settings = &live.config.settings;
    let id = match state.store.resolve_ticket(&wanted).await {
        Ok(Ok(id)) => id,
        Ok(Err(ambiguous)) => {
            return (StatusCode::BAD_REQUEST, format!("{ambiguous}\n")).into_response();
        }
        Err(e) => return unavailable(&e),
    };
    let dry_run = settings.daemon.dry_run;
    let of_ticket = NoticeFilter {
        status: None,
        ticket: Some(id.clone()),
    };
    let (waits, rows) = match tokio::try_join!(
        state.store.waits_of_ticket(&id, dry_run),
        state.store.list(&of_ticket)
    ) {
        Ok(found) => found,
        Err(e) => return unavailable(&e),
    };
    let rows: Vec<NoticeRow> = rows.into_iter().filter(|n| n.dry_run == dry_run).collect();
    if waits.is_empty() && rows.is_empty() {
        return (
            StatusCode::NOT_FOUND,
            format!("no wait and no notice of ticket {wanted}\n"),
        )
            .into_response();
    }
    let authenticated = settings.http.admin_token.is_some();
    let shown = |n: &NoticeRow| told(n, settings, &live.config.templates, authenticated);
    let data = TicketPage {
        ticket_number: rows.iter().find_map(|n| n.ticket_number.clone()),
        waits: waits
            .iter()
            .map(|w| WaitView {
                since: crate::clock::rfc3339(w.started_at),
                ended_at: w.ended_at.map(crate::clock::rfc3339),
                ended: w.ended.map(|e| e.as_str()),
                policies: w.policies.clone(),
                notices: rows
                    .iter()
                    .filter(|n| n.waiting_since == w.started_at)
                    .map(shown)
                    .collect(),
            })
            .collect(),
        other_notices: rows
            .iter()
            .filter(|n| !waits.iter().any(|w| w.started_at == n.waiting_since))
            .map(shown)
            .collect(),
        ticket_id: id,
    };
    respond(
        &asked,
        "ticket.html",
        "ticket",
        &data,
        settings.daemon.timezone,
        Utc::now(),
    )
}

/// A notice with, when it was sent, its message rendered again from the
/// ticket as it was then.
fn told(
    n: &NoticeRow,
    settings: &Settings,
    templates: &crate::templates::Templates,
    authenticated: bool,
) -> TicketNotice {
    let message = n
        .sent_at
        .and_then(|sent| message_at(n, sent, settings, templates, authenticated));
    let (subject, text) = message.unzip();
    TicketNotice {
        notice: view(n, authenticated),
        subject,
        text,
    }
}

/// A notice's subject and text as they read at `at`, from the ticket the
/// ledger holds for it (the recipient masked unless authenticated); None
/// when its policy is gone or it does not render.
pub(super) fn message_at(
    n: &NoticeRow,
    at: chrono::DateTime<Utc>,
    settings: &Settings,
    templates: &crate::templates::Templates,
    authenticated: bool,
) -> Option<(String, String)> {
    let ticket: crate::ticket::Ticket = serde_json::from_str(&n.ticket_json).ok()?;
    let policy = settings.policies.iter().find(|p| p.name == n.policy)?;
    let policy = policy.for_ticket(&ticket);
    let facts = NoticeFacts {
        ticket: &ticket,
        policy: &policy,
        notice_id: &n.id,
        number: n.number,
        now: at,
        due_at: n.due_at,
        next_notice_at: n.next_notice_at,
    };
    let message = templates.render(settings, &facts).ok()?;
    let mask = |text: String| match (&n.recipient, authenticated) {
        (Some(address), false) => mask_address_in(&text, address),
        _ => text,
    };
    Some((mask(message.subject), mask(message.text)))
}
