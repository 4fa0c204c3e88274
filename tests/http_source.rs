//! The `http` source against a local JSON API on 127.0.0.1 that answers in
//! the shapes the helpdesks document (Freshdesk, Help Scout, Zendesk, Jira
//! Service Management): every pagination style, 429 with Retry-After, a
//! page failing mid-poll, malformed pages, a 10,000-ticket export, bearer,
//! basic and custom-header authentication, the safety belts, incremental
//! polls, and `interim sources test`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::{DateTime, FixedOffset, Utc};
use serde_json::{Value, json};
use support::api::{ApiRequest, ApiResponse, ApiServer, http_setup, page_of};
use support::shapes::{
    FRESHDESK_FIELDS, freshdesk_ticket, helpscout_conversation, zendesk_ticket, zendesk_user,
};
use support::{Setup, SmtpSink, ago, text, toml_str};

/// `after` of the test policy: notice 1 is due one hour into the wait.
const AFTER_SECS: i64 = 3600;

/// Help Scout's conversation fields.
const HELPSCOUT_FIELDS: &str = r#"{ id = "/id", number = "/number", subject = "/subject", state = "/status", customer_email = "/primaryCustomer/email", customer_name = "/primaryCustomer/last", waiting_since = "/customerWaitingSince/time", updated_at = "/userUpdatedAt" }"#;

/// `interim plan --format json` over ten years: the first notice of every
/// waiting ticket, by ticket id.
fn plan(setup: &Setup) -> BTreeMap<String, Value> {
    let json = setup
        .json(&["plan", "--format", "json", "--horizon", "3650d"])
        .unwrap_or_else(|e| panic!("{e}"));
    let rows = json.as_array().expect("plan --format json prints an array");
    rows.iter()
        .map(|r| (text(&r["ticket_id"]), r.clone()))
        .collect()
}

fn ids(plan: &BTreeMap<String, Value>) -> BTreeSet<String> {
    plan.keys().cloned().collect()
}

fn set(ids: &[i64]) -> BTreeSet<String> {
    ids.iter().map(i64::to_string).collect()
}

fn instant(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s:?} is not RFC 3339: {e}"))
        .with_timezone(&Utc)
}

/// The `waiting_since` the daemon read: notice 1's due time minus `after`.
fn waiting_since(row: &Value) -> DateTime<Utc> {
    instant(row["due_at"].as_str().unwrap_or_default()) - chrono::Duration::seconds(AFTER_SECS)
}

/// The latest timestamp at `pointers` in `item`.
fn latest(item: &Value, pointers: &[&str]) -> DateTime<Utc> {
    let found = pointers
        .iter()
        .filter_map(|p| item.pointer(p).and_then(Value::as_str))
        .map(instant);
    found.max().expect("a timestamp at one of the pointers")
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

fn run(setup: &Setup, args: &[&str]) -> Run {
    let out = setup.cli(args);
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn sources_test(setup: &Setup, rows: usize) -> Run {
    run(setup, &["sources", "test", "--rows", &rows.to_string()])
}

/// Whether one line of `output` contains every needle.
fn has_line(output: &str, needles: &[&str]) -> bool {
    output
        .lines()
        .any(|line| needles.iter().all(|n| line.contains(n)))
}

fn pages_asked(requests: &[ApiRequest], param: &str) -> Vec<Option<String>> {
    requests
        .iter()
        .map(|r| r.param(param).map(str::to_owned))
        .collect()
}

/// A Freshdesk list endpoint: `page`/`per_page`, with `Link: <…>;rel="next"`
/// (the request's own query with the next page) while more pages follow,
/// when `link` is set.
fn freshdesk(tickets: Vec<Value>, link: bool, req: &ApiRequest) -> ApiResponse {
    let page = req.number("page").unwrap_or(1);
    let per_page = req.number("per_page").unwrap_or(30);
    let items = page_of(&tickets, page, per_page);
    let mut reply = ApiResponse::json(&Value::Array(items));
    if link && page * per_page < tickets.len() {
        let mut query: Vec<String> = req
            .query
            .iter()
            .filter(|(k, _)| k != "page")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        query.push(format!("page={}", page + 1));
        let next = format!(
            "<{}{}?{}>; rel=\"next\"",
            req.base,
            req.path,
            query.join("&")
        );
        reply = reply.with_header("link", &next);
    }
    reply
}

/// Five open Freshdesk tickets, each with another last contact.
fn five_freshdesk_tickets() -> Vec<Value> {
    let created = ago(6 * 3600);
    vec![
        freshdesk_ticket(1, 2, &created, None, None),
        freshdesk_ticket(2, 2, &created, Some(&ago(5 * 3600)), Some(&ago(2 * 3600))),
        freshdesk_ticket(3, 2, &created, Some(&ago(90 * 60)), Some(&ago(4 * 3600))),
        freshdesk_ticket(4, 2, &created, None, Some(&ago(3 * 3600))),
        freshdesk_ticket(5, 2, &created, Some(&ago(600)), None),
    ]
}

#[test]
fn link_header_pagination_reads_every_page() {
    let tickets = five_freshdesk_tickets();
    let fixture = tickets.clone();
    let server = ApiServer::start(move |req| freshdesk(fixture.clone(), true, req));
    let mut setup = http_setup(
        &server.url("/api/v2/tickets?include=requester,stats&per_page=2"),
        FRESHDESK_FIELDS,
        9,
    );
    setup.set("source.pagination", r#"{ kind = "link" }"#);

    let plan = plan(&setup);
    assert_eq!(ids(&plan), set(&[1, 2, 3, 4, 5]), "{plan:#?}");
    for ticket in &tickets {
        let row = &plan[&text(&ticket["id"])];
        let expected = latest(
            ticket,
            &[
                "/stats/agent_responded_at",
                "/stats/requester_responded_at",
                "/created_at",
            ],
        );
        assert_eq!(waiting_since(row), expected, "ticket {}", ticket["id"]);
        assert_eq!(row["recipient"], ticket["requester"]["email"]);
    }
    let requests = server.requests();
    assert_eq!(
        pages_asked(&requests, "page"),
        vec![None, Some("2".into()), Some("3".into())],
        "one request per page, following rel=\"next\""
    );
    assert!(requests.iter().all(|r| r.path == "/api/v2/tickets"));
}

#[test]
fn next_url_pagination_follows_the_pointer_until_it_is_gone() {
    // Help Scout: HAL pages, the next page at /_links/next/href, absent on the last.
    let conversations = vec![
        helpscout_conversation(1, "active", &ago(2 * 3600)),
        helpscout_conversation(2, "active", &ago(3 * 3600)),
        helpscout_conversation(3, "pending", &ago(3600)),
        helpscout_conversation(4, "closed", &ago(9 * 3600)),
        helpscout_conversation(5, "active", &ago(30 * 60)),
    ];
    let fixture = conversations.clone();
    let server = ApiServer::start(move |req| {
        let page = req.number("page").unwrap_or(1);
        let pages = fixture.len().div_ceil(2);
        let href = |n: usize| json!({"href": format!("{}/v2/conversations?status=all&page={n}", req.base)});
        let mut links = json!({"self": href(page), "first": href(1), "last": href(pages)});
        if page < pages {
            links["next"] = href(page + 1);
        }
        ApiResponse::json(&json!({
            "_embedded": {"conversations": page_of(&fixture, page, 2)},
            "_links": links,
            "page": {"size": 2, "totalElements": fixture.len(), "totalPages": pages, "number": page}
        }))
    });
    let mut setup = http_setup(
        &server.url("/v2/conversations?status=all"),
        HELPSCOUT_FIELDS,
        9,
    );
    setup.set("source.items", "\"/_embedded/conversations\"");
    setup.set(
        "source.pagination",
        r#"{ kind = "next_url", pointer = "/_links/next/href" }"#,
    );
    setup.set("source.waiting_states", r#"["active"]"#);

    let plan = plan(&setup);
    assert_eq!(
        ids(&plan),
        set(&[1, 2, 5]),
        "active conversations wait; pending and closed ones do not"
    );
    for c in conversations.iter().filter(|c| c["status"] == "active") {
        let row = &plan[&text(&c["id"])];
        assert_eq!(
            waiting_since(row),
            latest(c, &["/customerWaitingSince/time"])
        );
        assert_eq!(row["recipient"], c["primaryCustomer"]["email"]);
    }
    let requests = server.requests();
    assert_eq!(
        pages_asked(&requests, "page"),
        vec![None, Some("2".into()), Some("3".into())]
    );
}

#[test]
fn page_numbers_are_counted_up_until_an_empty_page() {
    let tickets = five_freshdesk_tickets();
    let fixture = tickets.clone();
    let server = ApiServer::start(move |req| freshdesk(fixture.clone(), false, req));
    let mut setup = http_setup(
        &server.url("/api/v2/tickets?include=requester,stats"),
        FRESHDESK_FIELDS,
        9,
    );
    setup.set(
        "source.pagination",
        r#"{ kind = "page", param = "page", size_param = "per_page", size = 2 }"#,
    );

    let plan = plan(&setup);
    assert_eq!(ids(&plan), set(&[1, 2, 3, 4, 5]));
    let requests = server.requests();
    assert_eq!(
        pages_asked(&requests, "page"),
        ["1", "2", "3", "4"].map(|p| Some(p.to_string())).to_vec(),
        "pages 1 to 3 hold tickets, page 4 is empty and ends the poll"
    );
    for r in &requests {
        assert_eq!(r.param("per_page"), Some("2"));
        assert_eq!(r.param("include"), Some("requester,stats"));
    }
}

#[test]
fn cursor_pagination_stops_when_has_more_is_false() {
    // Zendesk's cursor pagination: ?page[size]=2, then ?page[after]=CURSOR
    // from /meta/after_cursor while /meta/has_more is true. The last page
    // still carries an after_cursor.
    let tickets: Vec<Value> = (1..=5)
        .map(|id| zendesk_ticket(id, "open", 500 + id, &ago(9 * 3600), &ago(id * 3600)))
        .collect();
    let users: Vec<Value> = (1..=5)
        .map(|id| {
            let email = format!("requester{id}@example.com");
            zendesk_user(
                500 + id,
                &format!("Requester {id}"),
                &email,
                "en-US",
                "Europe/Berlin",
            )
        })
        .collect();
    let (t, u) = (tickets.clone(), users.clone());
    let server = ApiServer::start(move |req| {
        let page = match req.param("page[after]") {
            None => 1,
            Some(cursor) => cursor.trim_start_matches("eyJvIjo").parse().unwrap_or(99),
        };
        let size = req.number("page[size]").unwrap_or(100);
        let pages = t.len().div_ceil(size);
        ApiResponse::json(&json!({
            "tickets": page_of(&t, page, size),
            "users": page_of(&u, page, size),
            "meta": {"has_more": page < pages, "after_cursor": format!("eyJvIjo{}", page + 1), "before_cursor": format!("eyJvIjo{}", page - 1)},
            "links": {"prev": null, "next": null}
        }))
    });
    let mut setup = http_setup(
        &server.url("/api/v2/tickets.json?page[size]=2&include=users"),
        r#"{ id = "/id", subject = "/subject", state = "/status", customer_email = "/requester/email", customer_name = "/requester/name", language = "/requester/locale", timezone = "/requester/iana_time_zone", waiting_since = "/updated_at" }"#,
        9,
    );
    setup.set("source.items", "\"/tickets\"");
    setup.set(
        "source.pagination",
        r#"{ kind = "cursor", param = "page[after]", pointer = "/meta/after_cursor", has_more = "/meta/has_more" }"#,
    );
    setup.toml("[source.sideload.requester]\nitems = \"/users\"\nkey = \"/id\"\nreference = \"/requester_id\"");

    let plan = plan(&setup);
    assert_eq!(ids(&plan), set(&[1, 2, 3, 4, 5]));
    for ticket in &tickets {
        let row = &plan[&text(&ticket["id"])];
        assert_eq!(waiting_since(row), latest(ticket, &["/updated_at"]));
        assert_eq!(
            text(&row["recipient"]),
            format!("requester{}@example.com", ticket["id"])
        );
    }
    let requests = server.requests();
    assert_eq!(
        pages_asked(&requests, "page[after]"),
        vec![None, Some("eyJvIjo2".into()), Some("eyJvIjo3".into())],
        "three pages, then has_more = false ends the poll"
    );
    assert!(requests.iter().all(|r| r.param("page[size]") == Some("2")));
}

#[test]
fn numeric_states_are_matched_against_waiting_states() {
    // Freshdesk documents `status` as a number: 2 open, 3 pending, 4
    // resolved, 5 closed.
    let created = ago(5 * 3600);
    let tickets = vec![
        freshdesk_ticket(1, 2, &created, None, None),
        freshdesk_ticket(2, 3, &created, None, None),
        freshdesk_ticket(3, 4, &created, None, None),
        freshdesk_ticket(4, 5, &created, None, None),
        freshdesk_ticket(5, 2, &created, None, Some(&ago(3600))),
    ];
    let server = ApiServer::start(move |req| freshdesk(tickets.clone(), true, req));
    let mut setup = http_setup(
        &server.url("/api/v2/tickets?include=requester,stats&per_page=100"),
        FRESHDESK_FIELDS,
        9,
    );
    setup.set("source.pagination", r#"{ kind = "link" }"#);
    setup.set("source.waiting_states", r#"["2"]"#);

    assert_eq!(
        ids(&plan(&setup)),
        set(&[1, 5]),
        "status 2 (open) waits; 3, 4 and 5 do not"
    );
    let out = sources_test(&setup, 5);
    assert!(
        out.stdout.contains("read 2 waiting ticket(s), 3 ended"),
        "{}",
        out.all()
    );
}

#[test]
fn jira_service_management_timestamps_with_numeric_offsets_are_read() {
    // JSM's DateDTO: {"iso8601": "2015-10-08T14:05:00+0700", "epochMillis": …};
    // pages: {"isLastPage": false, "_links": {"next": "…"}, "values": […]}.
    let zone = FixedOffset::east_opt(7 * 3600).expect("UTC+7");
    let date = |secs: i64| {
        let t = (Utc::now() - chrono::Duration::seconds(secs)).with_timezone(&zone);
        json!({
            "iso8601": t.format("%Y-%m-%dT%H:%M:%S%z").to_string(),
            "jira": t.format("%Y-%m-%dT%H:%M:%S%.3f%z").to_string(),
            "friendly": "Today 14:05 PM",
            "epochMillis": t.timestamp_millis()
        })
    };
    let request = |id: i64, status: &str, since: Value| {
        json!({
            "_expands": ["participant", "status", "sla", "requestType", "serviceDesk", "attachment", "action", "comment"],
            "issueId": format!("{}", 107000 + id),
            "issueKey": format!("HELPDESK-{id}"),
            "requestTypeId": "25",
            "serviceDeskId": "10",
            "createdDate": date(10 * 3600),
            "reporter": {
                "accountId": format!("qm:a713c8ea-1075-4e30-9d96-891a7d181739:{id}"),
                "emailAddress": format!("reporter{id}@example.com"),
                "displayName": format!("Reporter {id}"),
                "active": true,
                "timeZone": "Australia/Sydney"
            },
            "requestFieldValues": [{"fieldId": "summary", "label": "What do you need?", "value": format!("Request {id}")}],
            "currentStatus": {"status": status, "statusCategory": "NEW", "statusDate": since}
        })
    };
    let values = vec![
        request(1, "Waiting for support", date(2 * 3600)),
        request(2, "Waiting for customer", date(3 * 3600)),
        request(3, "Waiting for support", date(5 * 3600)),
    ];
    let fixture = values.clone();
    let server = ApiServer::start(move |req| {
        let start = req.number("start").unwrap_or(0);
        let limit = req.number("limit").unwrap_or(50);
        let page: Vec<Value> = fixture.iter().skip(start).take(limit).cloned().collect();
        let last = start + limit >= fixture.len();
        let mut links = json!({"base": req.base, "context": "", "self": format!("{}/rest/servicedeskapi/request", req.base)});
        if !last {
            links["next"] = json!(format!(
                "{}/rest/servicedeskapi/request?requestStatus=OPEN_REQUESTS&start={}&limit={limit}",
                req.base,
                start + limit
            ));
        }
        ApiResponse::json(
            &json!({"size": page.len(), "start": start, "limit": limit, "isLastPage": last, "_links": links, "values": page}),
        )
    });
    let mut setup = http_setup(
        &server.url("/rest/servicedeskapi/request?requestStatus=OPEN_REQUESTS&start=0&limit=2"),
        r#"{ id = "/issueId", number = "/issueKey", subject = "/requestFieldValues/0/value", state = "/currentStatus/status", customer_email = "/reporter/emailAddress", customer_name = "/reporter/displayName", timezone = "/reporter/timeZone", waiting_since = "/currentStatus/statusDate/iso8601" }"#,
        9,
    );
    setup.set("source.items", "\"/values\"");
    setup.set(
        "source.pagination",
        r#"{ kind = "next_url", pointer = "/_links/next" }"#,
    );
    setup.set("source.waiting_states", r#"["Waiting for support"]"#);

    let out = sources_test(&setup, 5);
    assert!(
        out.stdout
            .contains("read 2 waiting ticket(s), 1 ended, 0 skipped"),
        "JSM's \"+0700\" offsets must be read\n{}",
        out.all()
    );
    let plan = plan(&setup);
    assert_eq!(
        ids(&plan),
        BTreeSet::from(["107001".into(), "107003".into()])
    );
    for v in values
        .iter()
        .filter(|v| v["currentStatus"]["status"] == "Waiting for support")
    {
        let millis = v["currentStatus"]["statusDate"]["epochMillis"]
            .as_i64()
            .unwrap_or_default();
        let expected = DateTime::from_timestamp(millis / 1000, 0).unwrap_or_default();
        assert_eq!(waiting_since(&plan[&text(&v["issueId"])]), expected);
    }
    // Two polls (sources test, plan) of two pages each.
    assert_eq!(server.requests().len(), 4);
}

#[test]
fn throttling_429_waits_for_retry_after() {
    let throttled = Arc::new(AtomicBool::new(false));
    let once = throttled.clone();
    let tickets = five_freshdesk_tickets();
    let server = ApiServer::start(move |req| {
        if req.number("page") == Some(2) && !once.swap(true, Ordering::SeqCst) {
            // Freshdesk: 429 Too Many Requests with Retry-After in seconds.
            return ApiResponse::error(429).with_header("retry-after", "2");
        }
        freshdesk(tickets.clone(), true, req)
    });
    let mut setup = http_setup(
        &server.url("/api/v2/tickets?include=requester&per_page=2"),
        FRESHDESK_FIELDS,
        9,
    );
    setup.set("source.pagination", r#"{ kind = "link" }"#);

    let out = sources_test(&setup, 1);
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert!(
        out.stdout.contains("read 5 waiting ticket(s)"),
        "{}",
        out.all()
    );
    let requests = server.requests();
    let page2: Vec<&ApiRequest> = requests
        .iter()
        .filter(|r| r.param("page") == Some("2"))
        .collect();
    assert_eq!(page2.len(), 2, "page 2 is asked again after the 429");
    let waited = page2[1].at.duration_since(page2[0].at);
    assert!(
        waited >= Duration::from_millis(1900),
        "the retry came {waited:?} after the 429, before Retry-After: 2"
    );
    assert_eq!(requests.len(), 4, "pages 1, 2 (429), 2, 3");
}

#[test]
fn a_retry_after_beyond_the_timeout_fails_the_poll_at_once() {
    let server = ApiServer::start(|_| ApiResponse::error(429).with_header("retry-after", "120"));
    let mut setup = http_setup(
        &server.url("/api/v2/tickets?per_page=2"),
        FRESHDESK_FIELDS,
        9,
    );
    setup.set("source.timeout", "\"5s\"");
    let started = Instant::now();
    let out = sources_test(&setup, 1);
    assert_eq!(out.code, Some(1), "{}", out.all());
    assert!(
        out.stderr.contains("HTTP 429") && out.stderr.contains("Retry-After 120s"),
        "{}",
        out.all()
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "no point waiting for a Retry-After past source.timeout"
    );
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn a_hanging_api_fails_the_poll_after_the_timeout() {
    let server = ApiServer::start(|_| {
        // The server's only request: blocking its thread is fine.
        std::thread::sleep(Duration::from_secs(6));
        ApiResponse::json(&json!([]))
    });
    let mut setup = http_setup(&server.url("/api/v2/tickets"), FRESHDESK_FIELDS, 9);
    setup.set("source.timeout", "\"2s\"");
    let started = Instant::now();
    let out = sources_test(&setup, 1);
    assert_eq!(out.code, Some(1), "{}", out.all());
    assert!(
        out.stderr.contains("timed out") || out.stderr.contains("source.timeout"),
        "{}",
        out.all()
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the poll gave up after {:?}",
        started.elapsed()
    );
}

#[test]
fn a_500_mid_pagination_keeps_the_previous_snapshot() {
    let sink = SmtpSink::start();
    // Both notices fall due 8 s after the tickets are written.
    let since = ago(AFTER_SECS - 8);
    let tickets = vec![
        freshdesk_ticket(1, 2, &since, None, None),
        freshdesk_ticket(2, 2, &since, None, None),
    ];
    let broken = Arc::new(AtomicBool::new(false));
    let flag = broken.clone();
    let server = ApiServer::start(move |req| {
        if req.number("page") == Some(2) && flag.load(Ordering::SeqCst) {
            return ApiResponse::error(500);
        }
        freshdesk(tickets.clone(), true, req)
    });
    let token = "tok-500-5ecret-9e1b";
    let mut setup = http_setup(
        &server.url("/api/v2/tickets?include=requester&per_page=1"),
        FRESHDESK_FIELDS,
        sink.port(),
    );
    setup.set("source.pagination", r#"{ kind = "link" }"#);
    setup.set("source.auth", "\"bearer\"");
    setup.set("source.token_env", "\"INTERIM_TEST_API_TOKEN\"");
    setup.env("INTERIM_TEST_API_TOKEN", token);

    let _daemon = setup.start();
    setup.wait_for_notices("both tickets have a planned notice", |n| {
        n.len() == 2 && n.iter().all(|n| n.status == "pending")
    });
    broken.store(true, Ordering::SeqCst);
    let broke_at = Instant::now();
    setup.wait_until(Duration::from_secs(10), "a poll failed on page 2", || {
        fs::read_to_string(setup.path("daemon.log"))
            .unwrap_or_default()
            .contains("HTTP 500")
    });
    let ledger = setup.wait_for_notices("both notices went out", |n| {
        n.iter().filter(|n| n.status == "sent").count() == 2
    });
    assert!(
        ledger.iter().all(|n| n.status == "sent"),
        "nothing cancelled: {ledger:#?}"
    );
    for id in [1, 2] {
        assert_eq!(
            sink.mails_to(&format!("requester{id}@example.com")).len(),
            1
        );
    }
    let failed_polls = server
        .requests()
        .iter()
        .filter(|r| r.at > broke_at && r.param("page") == Some("2"))
        .count();
    assert!(
        failed_polls >= 2,
        "the notices went out while polls failed ({failed_polls} failed page-2 requests)"
    );
    let log = fs::read_to_string(setup.path("daemon.log")).unwrap_or_default();
    let failure = log
        .lines()
        .find(|l| l.contains("HTTP 500"))
        .unwrap_or_default();
    assert!(
        failure.contains("poll failed") && failure.contains(&server.url("/api/v2/tickets")),
        "the log line names the URL and the status: {failure}"
    );
    assert!(!log.contains(token), "the token leaked into the log");
}

#[test]
fn a_malformed_page_fails_the_poll_naming_url_and_pointer() {
    // Zendesk offset pagination: {"tickets": […], "next_page": URL, "count": N}.
    let mode = Arc::new(AtomicUsize::new(0));
    let current = mode.clone();
    let server = ApiServer::start(move |req| {
        let page = req.number("page").unwrap_or(1);
        if page == 2 {
            match current.load(Ordering::SeqCst) {
                0 => {
                    return ApiResponse::json(
                        &json!({"error": "InvalidEndpoint", "description": "Not found"}),
                    );
                }
                1 => return ApiResponse::json(&json!({"tickets": {"id": 3}, "count": 3})),
                _ => {
                    return ApiResponse {
                        status: 200,
                        headers: vec![("content-type".into(), "text/html".into())],
                        body: "<html><body>Down for maintenance</body></html>".into(),
                    };
                }
            }
        }
        let tickets = vec![zendesk_ticket(1, "open", 501, &ago(7200), &ago(7200))];
        ApiResponse::json(&json!({
            "tickets": tickets,
            "next_page": format!("{}/api/v2/tickets.json?api_key=query-SECRET-77&page=2", req.base),
            "previous_page": null,
            "count": 3
        }))
    });
    let token = "tok-malformed-5ecret-41aa";
    let mut setup = http_setup(
        &server.url("/api/v2/tickets.json?api_key=query-SECRET-77"),
        r#"{ id = "/id", state = "/status", waiting_since = "/updated_at" }"#,
        9,
    );
    setup.set("source.items", "\"/tickets\"");
    setup.set(
        "source.pagination",
        r#"{ kind = "next_url", pointer = "/next_page" }"#,
    );
    setup.set("source.auth", "\"bearer\"");
    setup.set("source.token_env", "\"INTERIM_TEST_API_TOKEN\"");
    setup.env("INTERIM_TEST_API_TOKEN", token);

    for (variant, reason) in [(0, "\"/tickets\""), (1, "\"/tickets\""), (2, "not JSON")] {
        mode.store(variant, Ordering::SeqCst);
        let out = sources_test(&setup, 1);
        assert_eq!(out.code, Some(1), "variant {variant}: {}", out.all());
        let line = out
            .stderr
            .lines()
            .find(|l| l.contains(reason))
            .unwrap_or_else(|| panic!("variant {variant}: no line names {reason}\n{}", out.all()));
        assert!(
            line.contains(&server.url("/api/v2/tickets.json")),
            "variant {variant}: the URL is named: {line}"
        );
        if variant < 2 {
            assert!(line.contains("page 2"), "variant {variant}: {line}");
        }
        for secret in [token, "query-SECRET-77"] {
            assert!(
                !out.all().contains(secret),
                "variant {variant}: {secret} leaked\n{}",
                out.all()
            );
        }
    }
}

#[test]
fn a_ten_thousand_ticket_export_is_read_page_by_page() {
    const TOTAL: usize = 10_000;
    let since = ago(2 * 3600);
    let server = ApiServer::start(move |req| {
        let page = req.number("page").unwrap_or(1);
        let per_page = req.number("per_page").unwrap_or(100).min(100);
        let first = (page - 1) * per_page + 1;
        let items: Vec<Value> = (first..first + per_page)
            .filter(|id| *id <= TOTAL)
            .map(|id| freshdesk_ticket(id as i64, 2, &since, None, None))
            .collect();
        ApiResponse::json(&Value::Array(items))
    });
    let mut setup = http_setup(
        &server.url("/api/v2/tickets?include=requester,stats"),
        FRESHDESK_FIELDS,
        9,
    );
    setup.set(
        "source.pagination",
        r#"{ kind = "page", param = "page", size_param = "per_page", size = 100 }"#,
    );

    let started = Instant::now();
    let out = sources_test(&setup, 2);
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert!(
        out.stdout
            .contains("read 10000 waiting ticket(s), 0 ended, 0 skipped"),
        "{}",
        out.stdout
    );
    let requests = server.requests();
    assert_eq!(
        requests.len(),
        TOTAL / 100 + 1,
        "100 full pages and one empty"
    );
    assert!(requests.iter().all(|r| r.param("per_page") == Some("100")));
    let pages: Vec<usize> = requests.iter().filter_map(|r| r.number("page")).collect();
    assert_eq!(pages, (1..=TOTAL / 100 + 1).collect::<Vec<_>>());
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}

/// Serves one Freshdesk ticket to requests that carry `header: expected`,
/// 401 to others; then checks that the daemon sent exactly that header and
/// that no secret shows in `sources test`, `check-config`, a failing poll
/// or the daemon's log.
fn check_auth(
    configure: impl FnOnce(&mut Setup),
    header: &'static str,
    expected: String,
    secrets: &[&str],
) {
    let wanted = expected.clone();
    let script = move |req: &ApiRequest| {
        if req.header(header) != wanted {
            return ApiResponse::error(401).with_header("www-authenticate", "Bearer");
        }
        let ticket = freshdesk_ticket(1, 2, &ago(7200), None, None);
        ApiResponse::json(&json!([ticket]))
    };
    let server = ApiServer::start(script);
    let mut setup = http_setup(&server.url("/api/v2/tickets"), FRESHDESK_FIELDS, 9);
    configure(&mut setup);
    let leaks = |what: &str, output: &str| {
        for secret in secrets {
            assert!(
                !output.contains(secret),
                "{what}: the secret {secret:?} leaked\n{output}"
            );
        }
    };

    let out = sources_test(&setup, 1);
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert!(
        out.stdout.contains("read 1 waiting ticket(s)"),
        "{}",
        out.all()
    );
    leaks("sources test", &out.all());
    let seen = server.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header(header), expected, "the {header} header");
    leaks("check-config", &run(&setup, &["check-config"]).all());

    let _daemon = setup.start();
    setup.wait_until(Duration::from_secs(10), "two polls", || {
        server.requests().len() >= 3
    });
    server.set_script(|_| ApiResponse::error(401).with_header("www-authenticate", "Bearer"));
    let out = sources_test(&setup, 1);
    assert_eq!(out.code, Some(1), "{}", out.all());
    assert!(out.stderr.contains("HTTP 401"), "{}", out.all());
    leaks("a rejected poll", &out.all());
    setup.wait_until(Duration::from_secs(10), "the daemon saw the 401", || {
        fs::read_to_string(setup.path("daemon.log"))
            .unwrap_or_default()
            .contains("HTTP 401")
    });
    leaks(
        "the daemon log",
        &fs::read_to_string(setup.path("daemon.log")).unwrap_or_default(),
    );
}

#[test]
fn bearer_token_from_the_environment() {
    let token = "tok-bearer-env-8c2f0d";
    check_auth(
        |s| {
            s.set("source.auth", "\"bearer\"");
            s.set("source.token_env", "\"INTERIM_TEST_API_TOKEN\"");
            s.env("INTERIM_TEST_API_TOKEN", token);
        },
        "authorization",
        format!("Bearer {token}"),
        &[token],
    );
}

#[test]
fn bearer_token_from_a_file() {
    let token = "tok-bearer-file-77aa01";
    check_auth(
        |s| {
            let path = s.path("api-token");
            fs::write(&path, format!("{token}\n")).expect("write the token file");
            s.set("source.auth", "\"bearer\"");
            s.set("source.token_file", &toml_str(&path.display().to_string()));
        },
        "authorization",
        format!("Bearer {token}"),
        &[token],
    );
}

#[test]
fn basic_auth_with_a_password_from_the_environment() {
    let password = "pw-basic-3f9a7c";
    let user = "agent@example.com/token";
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    check_auth(
        |s| {
            s.set("source.auth", "\"basic\"");
            s.set("source.username", &toml_str(user));
            s.set("source.password_env", "\"INTERIM_TEST_API_PASSWORD\"");
            s.env("INTERIM_TEST_API_PASSWORD", password);
        },
        "authorization",
        format!("Basic {encoded}"),
        &[password, &encoded],
    );
}

#[test]
fn a_custom_header_with_the_token_in_a_template() {
    let token = "tok-header-0b5e11";
    check_auth(
        |s| {
            s.set("source.auth", "\"header\"");
            s.set("source.header", "\"X-Api-Key: key={token}\"");
            s.set("source.token_env", "\"INTERIM_TEST_API_TOKEN\"");
            s.env("INTERIM_TEST_API_TOKEN", token);
        },
        "x-api-key",
        format!("key={token}"),
        &[token],
    );
}

#[test]
fn a_custom_header_named_alone_carries_the_token() {
    let token = "tok-bare-header-6d0c";
    check_auth(
        |s| {
            s.set("source.auth", "\"header\"");
            s.set("source.header", "\"X-Auth-Token\"");
            s.set("source.token_env", "\"INTERIM_TEST_API_TOKEN\"");
            s.env("INTERIM_TEST_API_TOKEN", token);
        },
        "x-auth-token",
        token.to_string(),
        &[token],
    );
}

#[test]
fn the_page_and_row_limits_fail_the_poll_clearly() {
    let tickets = five_freshdesk_tickets();
    let server = ApiServer::start(move |req| freshdesk(tickets.clone(), true, req));
    let url = server.url("/api/v2/tickets?include=requester&per_page=2");
    let belted = |key: &str, value: i64| {
        let mut setup = http_setup(&url, FRESHDESK_FIELDS, 9);
        setup.set("source.pagination", r#"{ kind = "link" }"#);
        setup.set(key, &value.to_string());
        setup
    };

    // Three pages, five rows: the limits themselves are allowed.
    for setup in [belted("source.max_pages", 3), belted("source.max_rows", 5)] {
        let out = sources_test(&setup, 1);
        assert_eq!(out.code, Some(0), "{}", out.all());
        assert!(
            out.stdout.contains("read 5 waiting ticket(s)"),
            "{}",
            out.all()
        );
    }

    for (key, value, message) in [
        (
            "source.max_pages",
            2,
            "more than source.max_pages (2) pages",
        ),
        ("source.max_rows", 3, "more than source.max_rows (3) rows"),
    ] {
        let setup = belted(key, value);
        server.clear_requests();
        let out = sources_test(&setup, 1);
        assert_eq!(out.code, Some(1), "{key}: {}", out.all());
        assert!(out.stderr.contains(message), "{key}: {}", out.all());
        assert_eq!(
            server.requests().len(),
            2,
            "{key}: the poll stops at the page that breaks the limit"
        );
        let plan = run(&setup, &["plan", "--format", "json"]);
        assert_eq!(plan.code, Some(1), "{key}: plan fails too: {}", plan.all());
        assert!(plan.stderr.contains(message), "{key}: {}", plan.all());
    }
}

#[test]
fn incremental_polls_ask_for_changes_since_the_watermark() {
    // Help Scout's modifiedSince: only conversations changed after it.
    let conversations = vec![
        helpscout_conversation(1, "active", &ago(30 * 60)),
        helpscout_conversation(2, "active", &ago(40 * 60)),
        helpscout_conversation(3, "active", &ago(20 * 60)),
    ];
    let watermark = conversations
        .iter()
        .map(|c| latest(c, &["/userUpdatedAt"]))
        .max()
        .unwrap_or_default();
    let changes: Arc<Mutex<Vec<Value>>> = Arc::new(Mutex::new(Vec::new()));
    let changed = changes.clone();
    let server = ApiServer::start(move |req| {
        let list = match req.param("modifiedSince") {
            None => conversations.clone(),
            Some(_) => changed.lock().map(|c| c.clone()).unwrap_or_default(),
        };
        ApiResponse::json(&json!({
            "_embedded": {"conversations": list},
            "_links": {"self": {"href": format!("{}/v2/conversations", req.base)}},
            "page": {"size": 50, "totalElements": list.len(), "totalPages": 1, "number": 1}
        }))
    });
    let mut setup = http_setup(
        &server.url("/v2/conversations?status=all"),
        HELPSCOUT_FIELDS,
        9,
    );
    setup.set("source.items", "\"/_embedded/conversations\"");
    setup.set("source.waiting_states", r#"["active"]"#);
    setup.set("source.since_param", "\"modifiedSince\"");
    setup.set("source.overlap", "\"1m\"");

    let _daemon = setup.start();
    setup.wait_for_notices("three planned notices", |n| {
        n.len() == 3 && n.iter().all(|n| n.status == "pending")
    });
    let mut closed = helpscout_conversation(2, "closed", &ago(0));
    closed["closedAt"] = json!(ago(0));
    if let Ok(mut c) = changes.lock() {
        c.push(closed);
    }
    let ledger = setup.wait_for_notices("the closed conversation's notice is cancelled", |n| {
        n.iter()
            .any(|n| n.ticket_id == "2" && n.status == "cancelled")
    });
    for n in ledger.iter().filter(|n| n.ticket_id != "2") {
        assert_eq!(n.status, "pending", "{n:?}");
    }
    let requests = server.requests();
    assert_eq!(
        requests[0].param("modifiedSince"),
        None,
        "the first poll is a full one"
    );
    let first_since = requests
        .iter()
        .find_map(|r| r.param("modifiedSince"))
        .expect("an incremental poll");
    assert_eq!(
        instant(first_since),
        watermark - chrono::Duration::seconds(60),
        "since = newest updated_at of the full poll minus source.overlap"
    );
}

#[test]
fn sources_test_shows_count_first_rows_and_policies() {
    let conversations = vec![
        helpscout_conversation(1, "active", &ago(2 * 3600)),
        helpscout_conversation(2, "active", &ago(3 * 3600)),
        helpscout_conversation(3, "active", &ago(600)),
        helpscout_conversation(4, "closed", &ago(9 * 3600)),
    ];
    let fixture = conversations.clone();
    let server = ApiServer::start(move |_| {
        ApiResponse::json(
            &json!({"_embedded": {"conversations": fixture}, "_links": {}, "page": {"number": 1}}),
        )
    });
    let mut setup = http_setup(
        &server.url("/v2/conversations?status=all"),
        HELPSCOUT_FIELDS,
        9,
    );
    setup.set("source.items", "\"/_embedded/conversations\"");
    setup.set("source.waiting_states", r#"["active"]"#);

    let out = sources_test(&setup, 2);
    assert_eq!(out.code, Some(0), "{}", out.all());
    let o = &out.stdout;
    assert!(
        has_line(o, &["source: http", &server.url("/v2/conversations")]),
        "{o}"
    );
    assert!(
        o.contains("read 3 waiting ticket(s), 1 ended, 0 skipped"),
        "{o}"
    );
    assert!(o.contains("first 2 ticket(s), as plan sees them:"), "{o}");
    for c in &conversations[..2] {
        let id = text(&c["id"]);
        assert!(
            has_line(o, &[&format!("ticket {id} (#{})", c["number"])]),
            "{o}"
        );
        let since = latest(c, &["/customerWaitingSince/time"]);
        assert!(
            has_line(
                o,
                &[
                    "waiting since",
                    &since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ]
            ),
            "ticket {id}: {o}"
        );
        assert!(
            has_line(
                o,
                &[&format!("customer Bear {id} <customer{id}@example.com>")]
            ),
            "{o}"
        );
    }
    assert!(has_line(o, &["state \"active\""]), "{o}");
    assert_eq!(
        o.matches("policies: first-notice").count(),
        2,
        "each shown ticket names its policy\n{o}"
    );
    assert!(
        !has_line(o, &["ticket 3 "]),
        "only --rows 2 tickets are shown\n{o}"
    );
    assert!(!o.contains("skipped by a policy:"), "{o}");
    assert!(!o.contains("skipped by the column contract:"), "{o}");
}

#[test]
fn sources_test_counts_and_lists_every_skipped_row_and_exits_0() {
    let since = ago(2 * 3600);
    let item = |id: Value, state: Value, waiting: &str, email: &str| json!({"id": id, "status": state, "waiting_since": waiting, "email": email, "tz": "Europe/Berlin"});
    let mut bad_zone = item(json!(15), json!("open"), &since, "c15@example.com");
    bad_zone["tz"] = json!("Mars/Olympus_Mons");
    let items = vec![
        item(json!(11), json!("open"), &since, "c11@example.com"),
        json!({"status": "open", "waiting_since": since, "email": "anonymous@example.com"}),
        item(json!(12), json!("open"), "next tuesday", "c12@example.com"),
        item(json!(13), Value::Null, &since, "c13@example.com"),
        item(json!(11), json!("open"), &since, "again11@example.com"),
        bad_zone,
        item(json!(14), json!("open"), &since, "not-an-address"),
        // Enough good rows that half of them, not more, are skipped.
        item(json!(16), json!("open"), &since, "c16@example.com"),
        item(json!(17), json!("open"), &since, "c17@example.com"),
        item(json!(18), json!("open"), &since, "c18@example.com"),
    ];
    let server = ApiServer::start(move |_| ApiResponse::json(&json!({"tickets": items})));
    let mut setup = http_setup(
        &server.url("/tickets"),
        r#"{ id = "/id", state = "/status", waiting_since = "/waiting_since", customer_email = "/email", timezone = "/tz" }"#,
        9,
    );
    setup.set("source.items", "\"/tickets\"");

    let out = sources_test(&setup, 1);
    assert_eq!(
        out.code,
        Some(0),
        "bad rows never fail the command\n{}",
        out.all()
    );
    let o = &out.stdout;
    assert!(
        o.contains(
            "read 6 waiting ticket(s), 0 ended, 4 skipped by the column contract, \
             1 skipped by every policy that applies (10 row(s))"
        ),
        "the summary counts the rows it lists, each side named\n{o}"
    );
    let contract = o
        .split("skipped by the column contract:")
        .nth(1)
        .and_then(|rest| rest.split("skipped by a policy:").next())
        .unwrap_or_default();
    assert_eq!(
        contract.lines().filter(|l| l.contains("ticket ")).count(),
        4,
        "{o}"
    );
    for needles in [
        &["ticket (no id)", "column id", "empty or NULL"][..],
        &[
            "ticket 12",
            "column waiting_since",
            "next tuesday",
            "not a timestamp",
        ],
        &["ticket 13", "column state", "missing or NULL"],
        &["ticket 11", "column id", "twice"],
        &["ticket 15", "column timezone", "Mars/Olympus_Mons"],
    ] {
        assert!(has_line(o, needles), "no line with {needles:?}\n{o}");
    }
    assert!(
        has_line(
            o,
            &["ticket 14", "customer_email", "not a valid email address"]
        ),
        "ticket 14 cannot get its email notice: it is listed with the skipped rows \
         even when it is not among the --rows shown\n{o}"
    );
}

#[test]
fn sources_test_exits_1_when_every_row_is_skipped() {
    let items = vec![
        json!({"id": 21, "status": "open", "waiting": ago(7200), "email": "c21@example.com"}),
        json!({"id": 22, "status": "open", "waiting": ago(7200), "email": "c22@example.com"}),
    ];
    let server = ApiServer::start(move |_| ApiResponse::json(&json!({"tickets": items})));
    // The query's waiting_since points at a field that was renamed.
    let mut setup = http_setup(
        &server.url("/tickets"),
        r#"{ id = "/id", state = "/status", waiting_since = "/waiting_since", customer_email = "/email" }"#,
        9,
    );
    setup.set("source.items", "\"/tickets\"");

    let out = sources_test(&setup, 1);
    assert_eq!(out.code, Some(1), "{}", out.all());
    assert!(
        out.stdout
            .contains("read 0 waiting ticket(s), 0 ended, 2 skipped by the column contract, 0 skipped by every policy that applies (2 row(s))"),
        "{}",
        out.all()
    );
    assert!(
        out.stderr.contains("column waiting_since: 2"),
        "the error names the column\n{}",
        out.all()
    );
}

#[test]
fn json_ids_above_2_pow_53_keep_every_digit() {
    // Raw JSON: 2^53 + 1 and u64::MAX are exact integers a float cannot hold.
    let body = format!(
        r#"{{"tickets": [
            {{"id": 9007199254740993, "status": "open", "waiting_since": "{w}", "email": "c1@example.com"}},
            {{"id": 9007199254740992, "status": "open", "waiting_since": "{w}", "email": "c2@example.com"}},
            {{"id": 18446744073709551615, "status": "open", "waiting_since": "{w}", "email": "c3@example.com"}},
            {{"id": 123456789012345678901234567890, "status": "open", "waiting_since": "{w}", "email": "c4@example.com"}}
        ]}}"#,
        w = ago(7200)
    );
    let server = ApiServer::start(move |_| ApiResponse {
        status: 200,
        headers: Vec::new(),
        body: body.clone(),
    });
    let mut setup = http_setup(
        &server.url("/tickets"),
        r#"{ id = "/id", state = "/status", waiting_since = "/waiting_since", customer_email = "/email" }"#,
        9,
    );
    setup.set("source.items", "\"/tickets\"");

    let plan = setup
        .json(&["plan", "--format", "json"])
        .unwrap_or_else(|e| panic!("{e}"));
    let ids: BTreeSet<String> = plan
        .as_array()
        .map(|rows| rows.iter().map(|r| text(&r["ticket_id"])).collect())
        .unwrap_or_default();
    assert_eq!(
        ids,
        BTreeSet::from([
            "9007199254740993".to_string(),
            "9007199254740992".to_string(),
            "18446744073709551615".to_string(),
        ]),
        "ids that differ only beyond a float's precision stay apart; \
         one that JSON cannot carry exactly is skipped\n{plan:#}"
    );
    let out = sources_test(&setup, 0);
    assert!(
        has_line(&out.stdout, &["column id", "cannot be kept exactly"]),
        "{}",
        out.all()
    );
}
