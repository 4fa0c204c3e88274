//! `/login` and `/logout`: a browser trades the admin token for a session
//! cookie ([`super::session`]). Without a configured token there is
//! nothing to log in to: the pages are read-only on loopback.

use std::net::SocketAddr;

use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::session::{clear_cookie, set_cookie};
use super::{Asked, respond};
use crate::http::AdminState;

#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    lang: Option<String>,
    /// The page to return to, relative to the pages' root (`notices?status=dead`).
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
    #[serde(default)]
    next: String,
    #[serde(default)]
    lang: String,
}

#[derive(Debug, Serialize)]
struct LoginPage {
    next: String,
    /// The last attempt was wrong.
    failed: bool,
    /// No admin token is configured: there is nothing to log in to.
    no_token: bool,
}

pub async fn form(
    State(state): State<AdminState>,
    Query(query): Query<LoginQuery>,
    headers: HeaderMap,
) -> Response {
    let asked = Asked::from(&headers, query.lang.as_deref(), "/login", &state.sessions);
    show(
        &state,
        &asked,
        safe_next(query.next.as_deref().unwrap_or("")),
        false,
        StatusCode::OK,
    )
}

pub async fn submit(
    State(state): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let asked = Asked::from(&headers, Some(&form.lang), "/login", &state.sessions);
    let next = safe_next(&form.next);
    let live = state.dispatcher.live();
    let Some(token) = live.config.settings.http.admin_token.as_ref() else {
        return show(&state, &asked, next, false, StatusCode::NOT_FOUND);
    };
    if !crate::http::access::token_matches(form.token.trim().as_bytes(), token) {
        warn!(peer = %peer, "status page login refused: wrong admin token");
        return show(&state, &asked, next, true, StatusCode::UNAUTHORIZED);
    }
    let (id, session) = state.sessions.create();
    info!(peer = %peer, session = %session.label, "status page login");
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, set_cookie(&id)),
            (header::LOCATION, format!("./{next}")),
        ],
    )
        .into_response()
}

pub async fn logout(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if let Some(session) = state.sessions.of(&headers) {
        info!(session = %session.label, "status page logout");
    }
    state.sessions.end(&headers);
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, clear_cookie()),
            (header::LOCATION, "./login".to_owned()),
        ],
    )
        .into_response()
}

fn show(
    state: &AdminState,
    asked: &Asked,
    next: String,
    failed: bool,
    status: StatusCode,
) -> Response {
    let live = state.dispatcher.live();
    let settings = &live.config.settings;
    let data = LoginPage {
        next,
        failed,
        no_token: settings.http.admin_token.is_none(),
    };
    let mut response = respond(
        asked,
        "login.html",
        "login",
        &data,
        settings.daemon.timezone,
        Utc::now(),
    );
    *response.status_mut() = status;
    response
}

/// A return target that stays on these pages: a relative path without a
/// scheme, host or way up.
fn safe_next(next: &str) -> String {
    let given = next.trim();
    if given.starts_with("//") {
        // A scheme-relative URL: another host.
        return String::new();
    }
    let next = given.trim_start_matches('/');
    let harmless = next
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/?&=-_.~%+".contains(c));
    if harmless && !next.contains("..") && !next.contains("//") {
        next.to_owned()
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_return_target_never_leaves_the_pages() {
        assert_eq!(safe_next("/notices?status=dead"), "notices?status=dead");
        for hostile in [
            "//evil.example/",
            "https://evil.example",
            "../x",
            "\\\\evil",
            "a b",
        ] {
            assert_eq!(safe_next(hostile), "", "{hostile}");
        }
    }
}
