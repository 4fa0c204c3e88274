//! The status pages on the admin endpoint (`http.ui`, default on):
//! server-rendered HTML from templates embedded in the binary (minijinja,
//! auto-escaped as HTML), readable without JavaScript, in English or
//! German, times in `daemon.timezone`. Every page also answers
//! `Accept: application/json` with the data it shows. Who may read them
//! is [`access::check_read`](super::access::check_read)'s.

mod config;
mod login;
mod notices;
mod overview;
mod report;
mod session;
mod texts;
mod ticket;
mod upcoming;

use std::net::SocketAddr;
use std::sync::OnceLock;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use minijinja::{Environment, Value, context};
use serde::Serialize;
use tracing::{error, warn};

use super::AdminState;
pub use session::Sessions;
pub use texts::Lang;

/// The templates, compiled once. A `.html` name auto-escapes everything
/// a template prints.
fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        for (name, source) in [
            ("layout.html", include_str!("templates/layout.html")),
            ("overview.html", include_str!("templates/overview.html")),
            ("notices.html", include_str!("templates/notices.html")),
            ("login.html", include_str!("templates/login.html")),
            ("ticket.html", include_str!("templates/ticket.html")),
            ("report.html", include_str!("templates/report.html")),
            ("upcoming.html", include_str!("templates/upcoming.html")),
            ("config.html", include_str!("templates/config.html")),
        ] {
            if let Err(e) = env.add_template(name, source) {
                // A broken embedded template is a build mistake; the
                // test suite renders every page, so it never ships.
                error!(template = name, error = %e, "status page template does not compile");
            }
        }
        env.add_filter("local", local_time);
        env.add_filter("seconds", seconds_text);
        env
    })
}

/// The page routes: reading behind the read check; logging in open; the
/// write actions check for themselves ([`authorize_write`]).
pub fn routes(state: AdminState) -> Router<AdminState> {
    let read = Router::new()
        .route("/", get(overview::page))
        .route("/upcoming", get(upcoming::page))
        .route("/notices", get(notices::page))
        .route("/tickets/{id}", get(ticket::page))
        .route("/report", get(report::page))
        .route("/report.csv", get(report::csv))
        .route("/config", get(config::page))
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            require_read_access,
        ));
    Router::new()
        .merge(read)
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/notices/{id}/retry", post(notices::retry))
}

async fn require_read_access(
    State(state): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let live = state.dispatcher.live();
    let token = live.config.settings.http.admin_token.as_ref();
    if token.is_some() && state.sessions.of(request.headers()).is_some() {
        return next.run(request).await;
    }
    match super::access::check_read(peer, request.headers(), token) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            warn!(peer = %peer, path = request.uri().path(), reason = refusal.reason, "status page refused");
            let wants_html = request
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.contains("text/html"));
            if token.is_some() && wants_html {
                // A browser: to the login form, and back here after it.
                let path = request.uri().path();
                let back = request
                    .uri()
                    .path_and_query()
                    .map_or(path, |p| p.as_str())
                    .trim_start_matches('/');
                let mut target = url::form_urlencoded::Serializer::new(String::new());
                target.append_pair("next", back);
                let location = format!("{}login?{}", root_of(path), target.finish());
                return (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response();
            }
            refusal.into_response()
        }
    }
}

/// Who may use a write action of the pages, and who they are for the
/// log: always with the admin token (none configured: refused), as a
/// bearer token (a script), or as a logged-in browser whose form carries
/// the session's CSRF token and that comes from this site.
pub fn authorize_write(
    state: &AdminState,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<String, super::access::Refusal> {
    use super::access::Refusal;
    let refuse = |status, reason| Err(Refusal { status, reason });
    let live = state.dispatcher.live();
    let Some(token) = live.config.settings.http.admin_token.as_ref() else {
        return refuse(
            StatusCode::FORBIDDEN,
            "write actions from the status pages need the admin token (http.admin_token_env or http.admin_token_file)",
        );
    };
    if headers.contains_key(header::AUTHORIZATION) {
        return super::access::check_token(headers, token).map(|()| "bearer token".to_owned());
    }
    let Some(session) = state.sessions.of(headers) else {
        return refuse(StatusCode::UNAUTHORIZED, "log in first (/login)");
    };
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if site.is_some_and(|s| s != "same-origin") {
        return refuse(
            StatusCode::FORBIDDEN,
            "a browser sent this request from another site",
        );
    }
    if !session.csrf_matches(csrf) {
        return refuse(
            StatusCode::FORBIDDEN,
            "the form's CSRF token is missing or stale: reload the page and try again",
        );
    }
    Ok(format!("session {}", session.label))
}

/// The way from `path` up to the pages' root, as a relative URL prefix
/// (`""` for `/notices`, `"../"` for `/tickets/7`), so the pages also work
/// under a proxy's path prefix.
pub fn root_of(path: &str) -> String {
    let depth = path.trim_start_matches('/').matches('/').count();
    "../".repeat(depth)
}

/// How a page was asked for: its language, HTML or JSON, the way to the
/// pages' root, and the session's CSRF token for its forms.
pub struct Asked {
    pub lang: Lang,
    pub json: bool,
    pub root: String,
    pub csrf: Option<String>,
}

impl Asked {
    pub fn from(
        headers: &HeaderMap,
        query_lang: Option<&str>,
        path: &str,
        sessions: &Sessions,
    ) -> Self {
        let header_text = |name: header::HeaderName| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let accept = header_text(header::ACCEPT).unwrap_or_default();
        Self {
            lang: Lang::choose(query_lang, header_text(header::ACCEPT_LANGUAGE).as_deref()),
            json: accept.contains("application/json") && !accept.contains("text/html"),
            root: root_of(path),
            csrf: sessions.of(headers).map(|s| s.csrf),
        }
    }
}

/// The page `template` with `data`, or `data` as JSON.
pub fn respond<T: Serialize>(
    asked: &Asked,
    template: &str,
    title_key: &str,
    data: &T,
    tz: Tz,
    now: DateTime<Utc>,
) -> Response {
    if asked.json {
        return Json(data).into_response();
    }
    let t = texts::texts(asked.lang);
    let title = t.get(title_key).copied().unwrap_or(title_key);
    let rendered = templates().get_template(template).and_then(|tmpl| {
        tmpl.render(context! {
            t => t,
            lang => asked.lang.code(),
            root => asked.root,
            csrf => asked.csrf,
            logged_in => asked.csrf.is_some(),
            page => template.trim_end_matches(".html"),
            title => title,
            tz => tz.name(),
            now => crate::clock::rfc3339(now),
            data => Value::from_serialize(data),
        })
    });
    match rendered {
        Ok(html) => ([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response(),
        Err(e) => {
            error!(template, error = %e, "cannot render a status page");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot render this page; see the log\n",
            )
                .into_response()
        }
    }
}

/// `{{ at|local(tz) }}`: an RFC 3339 instant as `2026-12-08 14:00 CET` in
/// the zone `tz` names; anything else as it is.
fn local_time(value: String, tz: String) -> String {
    let Ok(at) = DateTime::parse_from_rfc3339(&value) else {
        return value;
    };
    let zone: Tz = tz.parse().unwrap_or(Tz::UTC);
    at.with_timezone(&zone)
        .format("%Y-%m-%d %H:%M %Z")
        .to_string()
}

/// `{{ ms|seconds }}`: milliseconds as `850 ms` or `2.4 s`.
fn seconds_text(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles() {
        for name in [
            "layout.html",
            "overview.html",
            "notices.html",
            "login.html",
            "ticket.html",
        ] {
            assert!(templates().get_template(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn instants_print_in_the_zone_and_milliseconds_as_seconds() {
        assert_eq!(
            local_time("2026-12-08T13:00:00Z".into(), "Europe/Berlin".into()),
            "2026-12-08 14:00 CET"
        );
        assert_eq!(seconds_text(850), "850 ms");
        assert_eq!(seconds_text(2400), "2.4 s");
    }
}
