//! What the API preset tests share: a config whose `[source]` is only a
//! preset, `plan` and `sources test` read back, and local Zammad and
//! Zendesk APIs answering in their documented shapes (`shapes`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::api::{ApiRequest, ApiResponse, ApiServer};
use super::shapes::{
    ZammadTicket, zammad_search_page, zammad_ticket_priorities, zammad_ticket_states,
};
use super::{Notice, Setup, SmtpSink, lock, text, toml_str};

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
    api_setup("zammad-api", &server.url(ZAMMAD_SEARCH), after, mail_port)
}

/// An API preset polling `url`, with the preset's credentials (zammad-api's
/// token, zendesk-api's user and token) in the environment.
fn api_setup(preset: &str, url: &str, after: &str, mail_port: u16) -> Setup {
    let mut setup = preset_setup(preset, after, mail_port);
    setup.set("source.url", &toml_str(url));
    match preset {
        "zammad-api" => {
            setup.set("source.token_env", "\"INTERIM_TEST_ZAMMAD_TOKEN\"");
            setup.env("INTERIM_TEST_ZAMMAD_TOKEN", ZAMMAD_TOKEN);
        }
        "zendesk-api" => {
            setup.set("source.username", &toml_str(ZENDESK_USER));
            setup.set("source.password_env", "\"INTERIM_TEST_ZENDESK_TOKEN\"");
            setup.env("INTERIM_TEST_ZENDESK_TOKEN", ZENDESK_TOKEN);
        }
        other => panic!("no test credentials for preset {other}"),
    }
    setup
}

/// URLs of the API presets that `check-config` never reaches.
pub const ZAMMAD_OFFLINE: &str = "https://zammad.example.com/api/v1/tickets/search?query=x";
pub const ZENDESK_OFFLINE: &str =
    "https://acme.zendesk.com/api/v2/incremental/tickets/cursor.json?start_time=0";

/// An API preset whose `url` is never reached (for `check-config`), with
/// its credentials in the environment.
pub fn offline_setup(preset: &str, url: &str) -> Setup {
    api_setup(preset, url, "1h", 9)
}

/// One first notice an end-to-end test expects: the ticket, the address
/// that got its one mail, how the subject begins and what else it names.
pub struct Mailed {
    pub ticket: String,
    pub address: String,
    pub subject_starts: String,
    pub subject_names: Vec<String>,
}

/// What an API preset's end-to-end run shows in the end: exactly the
/// `mailed` tickets' notices were sent (in `ledger`), one mail to each
/// address with the expected subject, no notice at all for the `untracked`
/// tickets, and `token` never in the daemon log.
pub fn assert_mailed_end_to_end(
    setup: &Setup,
    ledger: &[Notice],
    sink: &SmtpSink,
    mailed: &[Mailed],
    untracked: &[&str],
    token: &str,
) {
    let sent: BTreeSet<&str> = ledger
        .iter()
        .filter(|n| n.status == "sent")
        .map(|n| n.ticket_id.as_str())
        .collect();
    let expected: BTreeSet<&str> = mailed.iter().map(|m| m.ticket.as_str()).collect();
    assert_eq!(sent, expected, "the tickets whose notice was sent");
    for m in mailed {
        let mails = sink.mails_to(&m.address);
        assert_eq!(mails.len(), 1, "one notice to {}", m.address);
        let subject = mails[0].subject();
        assert!(
            subject.starts_with(&m.subject_starts),
            "{}: {subject} does not begin with {:?} (the customer's language)",
            m.address,
            m.subject_starts
        );
        for name in &m.subject_names {
            assert!(
                subject.contains(name.as_str()),
                "{}: {subject} does not name {name:?}",
                m.address
            );
        }
    }
    let tracked: BTreeSet<&str> = ledger.iter().map(|n| n.ticket_id.as_str()).collect();
    for id in untracked {
        assert!(
            !tracked.contains(id),
            "ticket {id} does not wait: {ledger:#?}"
        );
    }
    let log = fs::read_to_string(setup.path("daemon.log")).unwrap_or_default();
    assert!(!log.contains(token), "the token leaked into the log");
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
    api_setup("zendesk-api", &server.url(ZENDESK_EXPORT), after, mail_port)
}

/// A Zendesk export checking the API token: a full export (start_time=0)
/// serves `pages` one after another by their after_cursor (c1, c2, …); an
/// incremental one (a later start_time) serves what `changes` holds then.
pub fn zendesk_export(
    pages: Vec<Vec<ZendeskRow>>,
    changes: Arc<Mutex<Vec<ZendeskRow>>>,
) -> ApiServer {
    let expected = zendesk_basic();
    let cursor = |i: usize| format!("c{i}");
    ApiServer::start(move |req| {
        if req.header("authorization") != expected {
            return ApiResponse::json(&json!({"error": "Couldn't authenticate you"}))
                .with_status(401);
        }
        if req.path != "/api/v2/incremental/tickets/cursor.json" {
            return ApiResponse::error(404);
        }
        let page = |i: usize| {
            let rows = pages.get(i).map_or(&[][..], Vec::as_slice);
            zendesk_page(rows, &cursor(i + 1), i + 1 >= pages.len(), req)
        };
        match (req.param("cursor"), req.param("start_time")) {
            (Some(c), _) => match c.strip_prefix('c').and_then(|i| i.parse().ok()) {
                Some(i) if i < pages.len() => page(i),
                _ => zendesk_page(&[], c, true, req),
            },
            (None, Some("0")) => page(0),
            (None, _) => {
                let rows = lock(&changes).clone();
                zendesk_page(&rows, &cursor(pages.len() + 1), true, req)
            }
        }
    })
}
