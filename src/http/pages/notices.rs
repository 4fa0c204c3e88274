//! `/notices`: the ledger, newest first, filtered by status, policy,
//! channel and ticket, a page at a time; a dead notice with its last error
//! and a Retry button.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Asked, authorize_write, respond};
use crate::http::AdminState;
use crate::ledger::{NoticePage, NoticeRow};
use crate::logging::{mask_address, mask_address_in};
use crate::notice::Status;

/// Notices per page.
const PAGE: u32 = 50;

#[derive(Debug, Default, Deserialize)]
pub struct NoticesQuery {
    lang: Option<String>,
    status: Option<String>,
    policy: Option<String>,
    channel: Option<String>,
    ticket: Option<String>,
    /// The cursor of the page before: `MILLIS~ID`.
    before: Option<String>,
    /// A notice just retried from this page.
    retried: Option<String>,
    /// Why a retry from this page was refused.
    refused: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct RetryForm {
    #[serde(default)]
    csrf: String,
}

/// A notice as the page shows it (recipients and errors masked unless the
/// reader is authenticated).
#[derive(Debug, Serialize)]
pub struct NoticeView {
    pub id: String,
    pub ticket_id: String,
    pub ticket_number: Option<String>,
    pub policy: String,
    pub number: u32,
    pub max_notices: u32,
    pub status: Status,
    pub channel: String,
    pub send_at: String,
    pub sent_at: Option<String>,
    pub next_notice_at: Option<String>,
    pub recipient: Option<String>,
    pub promise: Option<String>,
    pub last_error: Option<String>,
    pub attempts: u32,
}

#[derive(Debug, Serialize)]
pub struct NoticesPage {
    pub status: Option<String>,
    pub policy: Option<String>,
    pub channel: Option<String>,
    pub ticket: Option<String>,
    pub statuses: Vec<&'static str>,
    pub policies: Vec<String>,
    pub channels: Vec<String>,
    pub notices: Vec<NoticeView>,
    /// The query string of the next (older) page, when there is one.
    pub older: Option<String>,
    /// Whether this reader may retry (write actions need the admin token).
    pub can_retry: bool,
    pub retried: Option<String>,
    pub refused: Option<String>,
}

pub async fn page(
    State(state): State<AdminState>,
    Query(query): Query<NoticesQuery>,
    headers: HeaderMap,
) -> Response {
    let asked = Asked::from(&headers, query.lang.as_deref(), "/notices", &state.sessions);
    let now = Utc::now();
    let live = state.dispatcher.live();
    let settings = &live.config.settings;
    let filter = match page_filter(&query, settings.daemon.dry_run) {
        Ok(filter) => filter,
        Err(problem) => return (StatusCode::BAD_REQUEST, format!("{problem}\n")).into_response(),
    };
    let filter = match &filter.ticket_id {
        Some(wanted) => match state.store.resolve_ticket(wanted).await {
            Ok(Ok(id)) => NoticePage {
                ticket_id: Some(id),
                ..filter
            },
            Ok(Err(ambiguous)) => {
                return (StatusCode::BAD_REQUEST, format!("ticket: {ambiguous}\n")).into_response();
            }
            Err(e) => return unavailable(&e),
        },
        None => filter,
    };
    let rows = match state.store.page_notices(&filter).await {
        Ok(rows) => rows,
        Err(e) => return unavailable(&e),
    };
    let authenticated = settings.http.admin_token.is_some();
    let older = (rows.len() == PAGE as usize)
        .then(|| rows.last().map(|last| older_query(&query, last)))
        .flatten();
    let data = NoticesPage {
        status: query.status.clone().filter(|s| !s.is_empty()),
        policy: query.policy.clone().filter(|s| !s.is_empty()),
        channel: query.channel.clone().filter(|s| !s.is_empty()),
        ticket: query.ticket.clone().filter(|s| !s.is_empty()),
        statuses: Status::ALL.iter().map(|s| s.as_str()).collect(),
        policies: settings.policies.iter().map(|p| p.name.clone()).collect(),
        channels: settings.channels.keys().cloned().collect(),
        notices: rows.iter().map(|n| view(n, authenticated)).collect(),
        older,
        can_retry: authenticated,
        retried: query.retried.clone(),
        refused: query.refused.clone(),
    };
    respond(
        &asked,
        "notices.html",
        "notices",
        &data,
        settings.daemon.timezone,
        now,
    )
}

pub(super) fn unavailable(e: &anyhow::Error) -> Response {
    tracing::warn!(
        error = format!("{e:#}"),
        "cannot read the ledger for a page"
    );
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the ledger cannot be read now; see the log\n",
    )
        .into_response()
}

/// The filter the query asks for; a bad value names its parameter.
fn page_filter(q: &NoticesQuery, dry_run: bool) -> Result<NoticePage, String> {
    let given = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let status = match given(&q.status) {
        None => None,
        Some(s) => Some(Status::parse(&s).ok_or_else(|| {
            let all: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
            format!("status: \"{s}\" is not one of {}", all.join(", "))
        })?),
    };
    let before = match given(&q.before) {
        None => None,
        Some(cursor) => {
            let parsed = cursor.split_once('~').and_then(|(at, id)| {
                let at = DateTime::from_timestamp_millis(at.parse().ok()?)?;
                Some((at, id.to_owned()))
            });
            Some(parsed.ok_or_else(|| format!("before: \"{cursor}\" is not a page cursor"))?)
        }
    };
    Ok(NoticePage {
        dry_run,
        status,
        policy: given(&q.policy),
        channel: given(&q.channel),
        ticket_id: given(&q.ticket),
        before,
        limit: PAGE,
    })
}

/// The query of the page after `last`, with the same filters.
fn older_query(q: &NoticesQuery, last: &NoticeRow) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in [
        ("status", &q.status),
        ("policy", &q.policy),
        ("channel", &q.channel),
        ("ticket", &q.ticket),
        ("lang", &q.lang),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            query.append_pair(key, v);
        }
    }
    query.append_pair(
        "before",
        &format!("{}~{}", last.created_at.timestamp_millis(), last.id),
    );
    query.finish()
}

pub(super) fn view(n: &NoticeRow, authenticated: bool) -> NoticeView {
    let recipient = n.recipient.clone();
    let shown = |text: &str| match (&recipient, authenticated) {
        (Some(address), false) => mask_address_in(text, address),
        _ => text.to_owned(),
    };
    NoticeView {
        id: n.id.clone(),
        ticket_id: n.ticket_id.clone(),
        ticket_number: n.ticket_number.clone(),
        policy: n.policy.clone(),
        number: n.number,
        max_notices: n.max_notices,
        status: n.status,
        channel: n.channel.clone(),
        send_at: crate::clock::rfc3339(n.send_at),
        sent_at: n.sent_at.map(crate::clock::rfc3339),
        next_notice_at: n.next_notice_at.map(crate::clock::rfc3339),
        recipient: recipient.as_deref().map(|r| {
            if authenticated {
                r.to_owned()
            } else {
                mask_address(r)
            }
        }),
        promise: n.promise.clone(),
        last_error: n.last_error.as_deref().map(shown),
        attempts: n.attempts,
    }
}

/// `POST /notices/{id}/retry`: a dead notice back to pending, as `interim
/// retry` does; back to the ledger with what happened.
pub async fn retry(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<RetryForm>,
) -> Response {
    let who = match authorize_write(&state, &headers, &form.csrf) {
        Ok(who) => who,
        Err(refusal) => {
            tracing::warn!(notice.id = %id, reason = refusal.reason, "retry from the status page refused");
            return refusal.into_response();
        }
    };
    let refused = match state
        .store
        .retry(std::slice::from_ref(&id), Utc::now())
        .await
    {
        Ok(refused) => refused,
        Err(e) => return unavailable(&e),
    };
    let mut back = url::form_urlencoded::Serializer::new(String::new());
    match refused.first() {
        None => {
            tracing::info!(who = %who, notice.id = %id, "notice retried from the status page");
            back.append_pair("retried", &id);
        }
        Some((_, reason)) => {
            tracing::info!(who = %who, notice.id = %id, reason = %reason, "retry from the status page refused");
            back.append_pair("refused", reason);
        }
    }
    let location = format!("../../notices?{}", back.finish());
    (
        StatusCode::SEE_OTHER,
        [(axum::http::header::LOCATION, location)],
    )
        .into_response()
}
