//! What the API preset tests share: a config whose `[source]` is only a
//! preset, `plan` and `sources test` read back, and local Zammad and
//! Zendesk APIs answering in their documented shapes (`shapes`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::api::{ApiRequest, ApiResponse, ApiServer};
use super::shapes::{
    ZammadTicket, zammad_search_page, zammad_ticket_priorities, zammad_ticket_states,
};
use super::{Setup, lock, text, toml_str};

/// An hour in seconds.
pub const H: i64 = 3600;
/// `after` of the test policies' first notice ("1h").
pub const AFTER_SECS: i64 = 3600;

/// A config whose `[source]` is only `preset = NAME` (plus what the test
/// adds), with one email policy (notice 1 after `after`) to `mail_port`.
pub fn preset_setup(preset: &str, after: &str, mail_port: u16) -> Setup {
    let mut setup = Setup::new();
    for key in ["source.kind", "source.url", "source.query"] {
        setup.unset(key);
    }
    setup.set("source.preset", &toml_str(preset));
    setup.email_channel("mail", mail_port, "");
    setup.policy(
        "first-notice",
        &format!(
            "after = {}\nchannel = \"mail\"\ntemplate = \"interim\"",
            toml_str(after)
        ),
    );
    setup
}

/// `interim plan --format json` over ten years, by ticket id.
pub fn plan(setup: &Setup) -> BTreeMap<String, Value> {
    let json = setup
        .json(&["plan", "--format", "json", "--horizon", "3650d"])
        .unwrap_or_else(|e| panic!("{e}"));
    let rows = json.as_array().expect("plan --format json prints an array");
    rows.iter()
        .map(|r| (text(&r["ticket_id"]), r.clone()))
        .collect()
}

pub fn instant(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s:?} is not RFC 3339: {e}"))
        .with_timezone(&Utc)
}

/// The `waiting_since` the daemon read: notice 1's due time minus `after`
/// (AFTER_SECS).
pub fn waiting_since(row: &Value) -> DateTime<Utc> {
    instant(row["due_at"].as_str().unwrap_or_default()) - chrono::Duration::seconds(AFTER_SECS)
}

/// `interim sources test --rows 20`'s stdout; it must succeed.
pub fn sources_test(setup: &Setup) -> String {
    let out = setup.cli(&["sources", "test", "--rows", "20"]);
    let all = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "sources test failed:\n{all}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn has_line(output: &str, needles: &[&str]) -> bool {
    output
        .lines()
        .any(|line| needles.iter().all(|n| line.contains(n)))
}

/// `sources test`'s block of one ticket ("  ticket ID …" up to the next).
pub fn ticket_block<'a>(output: &'a str, id: &str) -> &'a str {
    let head = format!("  ticket {id} ");
    let Some(start) = output.find(&head) else {
        return "";
    };
    let rest = &output[start + head.len()..];
    let end = rest.find("\n  ticket ").map_or(rest.len(), |e| e + 1);
    &output[start..start + head.len() + end]
}

pub const ZAMMAD_TOKEN: &str = "zammad-tok-4f1e9a0c";

/// The search URL of the docs, on `server`.
pub const ZAMMAD_SEARCH: &str = "/api/v1/tickets/search?query=state.name:(new%20OR%20open)";

/// Zammad's API with `Authorization: Token token=…`: the ticket search
/// (without expand; page/per_page, at most 200), `/api/v1/ticket_states`
/// (the seeded states and `custom` ones) and `/api/v1/ticket_priorities`.
/// The tickets can change between polls.
pub fn zammad_api(
    tickets: Vec<ZammadTicket>,
    custom_states: &[(i64, &str, i64)],
) -> (ApiServer, Arc<Mutex<Vec<ZammadTicket>>>) {
    zammad_api_answering_articles(tickets, custom_states, |_, articles| {
        ApiResponse::json(&Value::Array(articles.to_vec()))
    })
}

/// `zammad_api`, with `articles(ticket id, its articles)` answering
/// `/api/v1/ticket_articles/by_ticket/ID` for the tickets it serves.
pub fn zammad_api_answering_articles(
    tickets: Vec<ZammadTicket>,
    custom_states: &[(i64, &str, i64)],
    articles: impl Fn(i64, &[Value]) -> ApiResponse + Send + Sync + 'static,
) -> (ApiServer, Arc<Mutex<Vec<ZammadTicket>>>) {
    let tickets = Arc::new(Mutex::new(tickets));
    let served = tickets.clone();
    let states = zammad_ticket_states(custom_states);
    let server = ApiServer::start(move |req: &ApiRequest| {
        if req.header("authorization") != format!("Token token={ZAMMAD_TOKEN}") {
            return ApiResponse::json(&json!({"error": "Authentication required"}))
                .with_status(401);
        }
        match req.path.as_str() {
            "/api/v1/tickets/search" => {
                let per_page = req.number("per_page").unwrap_or(50).min(200);
                let page = req.number("page").unwrap_or(1);
                let tickets = lock(&served).clone();
                ApiResponse::json(&zammad_search_page(&tickets, page, per_page))
            }
            "/api/v1/ticket_states" => ApiResponse::json(&states),
            "/api/v1/ticket_priorities" => ApiResponse::json(&zammad_ticket_priorities()),
            path => {
                let ticket = path
                    .strip_prefix("/api/v1/ticket_articles/by_ticket/")
                    .and_then(|id| id.parse::<i64>().ok())
                    .and_then(|id| lock(&served).iter().find(|t| t.id == id).cloned());
                match ticket {
                    Some(t) => articles(t.id, &t.articles),
                    None => ApiResponse::error(404),
                }
            }
        }
    });
    (server, tickets)
}

/// The zammad-api preset against `server` with the token in the environment.
pub fn zammad_api_setup(server: &ApiServer, after: &str, mail_port: u16) -> Setup {
    let mut setup = preset_setup("zammad-api", after, mail_port);
    setup.set("source.url", &toml_str(&server.url(ZAMMAD_SEARCH)));
    setup.set("source.token_env", "\"INTERIM_TEST_ZAMMAD_TOKEN\"");
    setup.env("INTERIM_TEST_ZAMMAD_TOKEN", ZAMMAD_TOKEN);
    setup
}

pub const ZENDESK_TOKEN: &str = "zendesk-api-tok-77c1b2";
pub const ZENDESK_USER: &str = "agent@example.com/token";
/// The export URL of the docs, on a local server.
pub const ZENDESK_EXPORT: &str =
    "/api/v2/incremental/tickets/cursor.json?start_time=0&include=users,metric_sets";

/// One row of the Zendesk fixture: the ticket, its requester and metric set.
#[derive(Clone)]
pub struct ZendeskRow {
    pub ticket: Value,
    pub user: Value,
    pub metrics: Option<Value>,
}

/// One page of the cursor export with its side-loaded users and metric sets.
pub fn zendesk_page(
    rows: &[ZendeskRow],
    after_cursor: &str,
    end: bool,
    req: &ApiRequest,
) -> ApiResponse {
    let url = |cursor: &str| {
        format!(
            "{}/api/v2/incremental/tickets/cursor.json?cursor={cursor}",
            req.base
        )
    };
    ApiResponse::json(&json!({
        "tickets": rows.iter().map(|r| r.ticket.clone()).collect::<Vec<_>>(),
        "users": rows.iter().map(|r| r.user.clone()).collect::<Vec<_>>(),
        "metric_sets": rows.iter().filter_map(|r| r.metrics.clone()).collect::<Vec<_>>(),
        "after_url": url(after_cursor),
        "after_cursor": after_cursor,
        "before_url": null,
        "before_cursor": null,
        "end_of_stream": end
    }))
}

/// `Authorization: Basic …` of the test's API token.
pub fn zendesk_basic() -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{ZENDESK_USER}:{ZENDESK_TOKEN}"))
    )
}

/// The zendesk-api preset against `server` with the token in the environment.
pub fn zendesk_api_setup(server: &ApiServer, after: &str, mail_port: u16) -> Setup {
    let mut setup = preset_setup("zendesk-api", after, mail_port);
    setup.set("source.url", &toml_str(&server.url(ZENDESK_EXPORT)));
    setup.set("source.username", &toml_str(ZENDESK_USER));
    setup.set("source.password_env", "\"INTERIM_TEST_ZENDESK_TOKEN\"");
    setup.env("INTERIM_TEST_ZENDESK_TOKEN", ZENDESK_TOKEN);
    setup
}
