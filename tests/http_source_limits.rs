//! The `http` source within its limits (issue 11, items 1 and 2), against
//! real servers: a second API on 127.0.0.2 is the foreign origin and
//! records every request it gets; a page too large (declared, or endless
//! without `Content-Length`); a page with more rows than `max_rows`; a
//! reader that must wait for a slow planner.

mod support;

use std::fs;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};
use support::api::{ApiRequest, ApiResponse, ApiServer, EndlessPage, http_setup};
use support::shapes::freshdesk_ticket;
use support::{Setup, ago, block_on, toml_str};

const FIELDS: &str = r#"{ id = "/id", state = "/status", customer_email = "/requester/email", waiting_since = "/created_at" }"#;
const TOKEN: &str = "tok-origin-5ecret-93be";
const TOKEN_ENV: &str = "INTERIM_TEST_API_TOKEN";

/// A config reading `url` (tickets under `/tickets`, the next page's URL at
/// `/next`) with one policy whose notice is due an hour into the wait.
fn setup_for(url: &str) -> Setup {
    let mut setup = http_setup(url, FIELDS, 9);
    setup.set("source.items", "\"/tickets\"");
    setup.set(
        "source.pagination",
        r#"{ kind = "next_url", pointer = "/next" }"#,
    );
    setup.set("source.timeout", "\"30s\"");
    setup
}

/// The credentials a test source sends: a bearer token, or the token in a
/// custom header (which reqwest alone would carry across a redirect).
#[derive(Clone, Copy, Debug)]
enum Auth {
    Bearer,
    ApiKey,
}

impl Auth {
    fn configure(self, setup: &mut Setup) {
        match self {
            Auth::Bearer => setup.set("source.auth", "\"bearer\""),
            Auth::ApiKey => setup
                .set("source.auth", "\"header\"")
                .set("source.header", "\"X-Api-Key: {token}\""),
        };
        setup.set("source.token_env", &toml_str(TOKEN_ENV));
        setup.env(TOKEN_ENV, TOKEN);
    }

    fn carried_by(self, req: &ApiRequest) -> bool {
        match self {
            Auth::Bearer => req.header("authorization") == format!("Bearer {TOKEN}"),
            Auth::ApiKey => req.header("x-api-key") == TOKEN,
        }
    }
}

/// Whether a request carried any credential at all.
fn has_credentials(req: &ApiRequest) -> bool {
    req.headers.contains_key("authorization") || req.headers.contains_key("x-api-key")
}

/// A page of tickets waiting for two hours (their notices are due), with
/// `next` as the next page's URL when given.
fn page(ids: &[i64], next: Option<String>) -> ApiResponse {
    let since = ago(2 * 3600);
    let tickets: Vec<Value> = ids
        .iter()
        .map(|id| freshdesk_ticket(*id, 2, &since, None, None))
        .collect();
    ApiResponse::json(&json!({"tickets": tickets, "next": next}))
}

struct Run {
    code: Option<i32>,
    all: String,
    took: Duration,
}

fn sources_test(setup: &Setup) -> Run {
    let started = Instant::now();
    let out = setup.cli(&["sources", "test", "--rows", "1"]);
    Run {
        code: out.status.code(),
        all: format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        took: started.elapsed(),
    }
}

fn line_with<'a>(output: &'a str, needles: &[&str]) -> Option<&'a str> {
    output
        .lines()
        .find(|line| needles.iter().all(|n| line.contains(n)))
}

/// Runs the daemon until its log has a line with every needle, then checks
/// that the ledger stayed empty: the failed poll planned nothing.
fn daemon_fails_polls_and_plans_nothing(setup: &Setup, needles: &[&str]) {
    let _daemon = setup.start();
    let log = || fs::read_to_string(setup.path("daemon.log")).unwrap_or_default();
    setup.wait_until(Duration::from_secs(20), "a failed poll", || {
        line_with(&log(), &["poll failed"]).is_some_and(|l| needles.iter().all(|n| l.contains(n)))
    });
    let notices = setup.notices();
    assert!(notices.is_empty(), "nothing is planned: {notices:#?}");
    assert!(!log().contains(TOKEN), "the token leaked into the log");
}

#[test]
fn a_next_page_on_another_origin_is_never_asked_and_fails_the_poll() {
    let foreign = ApiServer::start_on("127.0.0.2", |_| page(&[3], None));
    let next = foreign.url("/tickets?page=2");
    let home = ApiServer::start(move |_| page(&[1, 2], Some(next.clone())));
    for auth in [Auth::Bearer, Auth::ApiKey] {
        home.clear_requests();
        let mut setup = setup_for(&home.url("/tickets"));
        auth.configure(&mut setup);

        let out = sources_test(&setup);
        assert_eq!(out.code, Some(1), "{auth:?}: {}", out.all);
        let line = line_with(&out.all, &[home.base(), foreign.base()]);
        assert!(
            line.is_some_and(|l| l.contains("source.allowed_origins")),
            "{auth:?}: one line names both origins and the key: {}",
            out.all
        );
        assert!(!out.all.contains(TOKEN), "{auth:?}: {}", out.all);
        assert!(
            home.requests().iter().all(|r| auth.carried_by(r)),
            "{auth:?}: the home origin gets the credentials"
        );
        if let Auth::Bearer = auth {
            daemon_fails_polls_and_plans_nothing(&setup, &[home.base(), foreign.base()]);
        }
    }
    assert!(
        foreign.requests().is_empty(),
        "the foreign origin received nothing: {:#?}",
        foreign.requests()
    );
}

#[test]
fn a_link_header_to_another_origin_fails_the_poll_the_same_way() {
    let foreign = ApiServer::start_on("127.0.0.2", |_| page(&[3], None));
    let next = foreign.url("/tickets?page=2");
    let home = ApiServer::start(move |_| {
        page(&[1], None).with_header("link", &format!("<{next}>; rel=\"next\""))
    });
    let mut setup = setup_for(&home.url("/tickets"));
    setup.set("source.pagination", r#"{ kind = "link" }"#);
    Auth::Bearer.configure(&mut setup);

    let out = sources_test(&setup);
    assert_eq!(out.code, Some(1), "{}", out.all);
    assert!(
        line_with(&out.all, &[home.base(), foreign.base()]).is_some(),
        "{}",
        out.all
    );
    assert!(foreign.requests().is_empty(), "{:#?}", foreign.requests());
}

#[test]
fn an_origin_in_allowed_origins_is_read_with_the_credentials() {
    let foreign = ApiServer::start_on("127.0.0.2", |req| {
        if Auth::Bearer.carried_by(req) {
            page(&[3], None)
        } else {
            ApiResponse::error(401)
        }
    });
    let next = foreign.url("/tickets?page=2");
    let home = ApiServer::start(move |_| page(&[1, 2], Some(next.clone())));
    let mut setup = setup_for(&home.url("/tickets"));
    Auth::Bearer.configure(&mut setup);
    // Written with a trailing slash, as ops might: it is only the origin.
    setup.set(
        "source.allowed_origins",
        &format!("[{}]", toml_str(&format!("{}/", foreign.base()))),
    );

    let out = sources_test(&setup);
    assert_eq!(out.code, Some(0), "{}", out.all);
    assert!(out.all.contains("read 3 waiting ticket(s)"), "{}", out.all);
    let asked = foreign.requests();
    assert_eq!(asked.len(), 1, "{asked:#?}");
    assert!(Auth::Bearer.carried_by(&asked[0]));

    let _daemon = setup.start();
    let notices = setup.wait_for_notices("a notice for each page's tickets", |n| n.len() == 3);
    let mut tickets: Vec<&str> = notices.iter().map(|n| n.ticket_id.as_str()).collect();
    tickets.sort_unstable();
    assert_eq!(tickets, ["1", "2", "3"]);
}

#[test]
fn a_redirect_to_another_origin_is_not_followed_and_one_within_the_origin_is() {
    let foreign = ApiServer::start_on("127.0.0.2", |_| page(&[9], None));
    let elsewhere = foreign.url("/tickets");
    let home = ApiServer::start(move |req| match req.path.as_str() {
        "/moved-away" => ApiResponse::error(307).with_header("location", &elsewhere),
        "/moved-here" => ApiResponse::error(301).with_header("location", "/tickets"),
        _ if Auth::ApiKey.carried_by(req) || Auth::Bearer.carried_by(req) => page(&[1], None),
        _ => ApiResponse::error(401),
    });
    for auth in [Auth::Bearer, Auth::ApiKey] {
        let mut setup = setup_for(&home.url("/moved-away"));
        auth.configure(&mut setup);
        let out = sources_test(&setup);
        assert_eq!(out.code, Some(1), "{auth:?}: {}", out.all);
        assert!(
            line_with(&out.all, &["HTTP 307", home.base(), foreign.base()]).is_some(),
            "{auth:?}: the line names the status and both origins: {}",
            out.all
        );
        assert!(!out.all.contains(TOKEN), "{auth:?}: {}", out.all);

        let mut setup = setup_for(&home.url("/moved-here"));
        auth.configure(&mut setup);
        let out = sources_test(&setup);
        assert_eq!(out.code, Some(0), "{auth:?}: {}", out.all);
        assert!(out.all.contains("read 1 waiting ticket(s)"), "{}", out.all);
        let last = home.requests().pop();
        assert!(
            last.is_some_and(|r| r.path == "/tickets" && auth.carried_by(&r)),
            "{auth:?}: the redirect within the origin keeps the credentials"
        );
    }
    assert!(
        !foreign.requests().iter().any(has_credentials),
        "no credential reached the foreign origin: {:#?}",
        foreign.requests()
    );
    assert!(foreign.requests().is_empty(), "{:#?}", foreign.requests());
}

#[test]
fn a_page_over_max_page_bytes_fails_the_poll_at_once_naming_the_url() {
    // Declared: page 2 says it is 200 kB, the cap is 64 KiB. Page 1 is fine,
    // and still nothing of the poll is planned.
    let big: Vec<i64> = (10..1_000).collect();
    let home = ApiServer::start(move |req| match req.param("page") {
        None => page(&[1, 2], Some(format!("{}/tickets?page=2", req.base))),
        Some(_) => page(&big, None),
    });
    let mut setup = setup_for(&home.url("/tickets"));
    setup.set("source.max_page_bytes", "\"64KiB\"");
    let url = home.url("/tickets");
    let out = sources_test(&setup);
    assert_eq!(out.code, Some(1), "{}", out.all);
    assert!(
        line_with(
            &out.all,
            &[
                &url,
                "Content-Length",
                "source.max_page_bytes (65536 bytes)"
            ]
        )
        .is_some(),
        "{}",
        out.all
    );
    daemon_fails_polls_and_plans_nothing(&setup, &[&url, "source.max_page_bytes"]);

    // Undeclared and endless: reading stops at the cap.
    let item = freshdesk_ticket(1, 2, &ago(7200), None, None).to_string();
    let endless = EndlessPage::start(r#"{"tickets": ["#, &item);
    let mut setup = setup_for(&endless.url("/tickets"));
    setup.set("source.max_page_bytes", "1048576");
    let out = sources_test(&setup);
    assert_eq!(out.code, Some(1), "{}", out.all);
    assert!(
        line_with(
            &out.all,
            &[
                &endless.url("/tickets"),
                "larger than source.max_page_bytes (1048576 bytes)"
            ]
        )
        .is_some(),
        "{}",
        out.all
    );
    assert!(
        out.took < Duration::from_secs(10),
        "fails at once, not at source.timeout (30s): {:?}",
        out.took
    );
    setup.wait_until(Duration::from_secs(5), "the reader hangs up", || {
        endless.closed()
    });
    assert!(
        endless.sent() < 64 << 20,
        "the reader stopped near the cap: {} bytes sent",
        endless.sent()
    );
}

#[test]
fn max_rows_stops_decoding_a_page_at_the_first_row_too_many() {
    // Three tickets, then a fourth, then bytes that are not JSON: a reader
    // that counts as it decodes stops at the fourth and never sees them.
    let since = ago(7200);
    let tickets: Vec<String> = (1..=4)
        .map(|id| freshdesk_ticket(id, 2, &since, None, None).to_string())
        .collect();
    let body = format!(r#"{{"tickets": [{}, <<< not JSON >>>"#, tickets.join(", "));
    let home = ApiServer::start(move |_| ApiResponse {
        status: 200,
        headers: Vec::new(),
        body: body.clone(),
    });
    let mut setup = setup_for(&home.url("/tickets"));
    setup.set("source.max_rows", "3");
    let out = sources_test(&setup);
    assert_eq!(out.code, Some(1), "{}", out.all);
    assert!(
        line_with(
            &out.all,
            &[&home.url("/tickets"), "more than source.max_rows (3) rows"]
        )
        .is_some(),
        "{}",
        out.all
    );
    assert!(!out.all.contains("not JSON"), "{}", out.all);

    // With room for every row the same page is read on, to the broken bytes.
    setup.set("source.max_rows", "10");
    let out = sources_test(&setup);
    assert_eq!(out.code, Some(1), "{}", out.all);
    assert!(out.all.contains("the body is not JSON"), "{}", out.all);
}

#[test]
fn the_reader_waits_for_a_slow_consumer_instead_of_piling_up_pages() {
    const PAGES: usize = 40;
    const PER_PAGE: usize = 50;
    let since = ago(7200);
    let home = ApiServer::start(move |req| {
        let n = req.number("page").unwrap_or(1);
        let first = (n - 1) * PER_PAGE + 1;
        let ids: Vec<Value> = (first..first + PER_PAGE)
            .filter(|_| n <= PAGES)
            .map(|id| freshdesk_ticket(id as i64, 2, &since, None, None))
            .collect();
        ApiResponse::json(&json!({"tickets": ids}))
    });
    let mut setup = setup_for(&home.url("/tickets"));
    setup.set("source.pagination", r#"{ kind = "page", param = "page" }"#);
    let config = interim::setup::load(&setup.write_config()).unwrap_or_else(|e| panic!("{e}"));
    let source =
        interim::source::Source::new(&config.settings.source).unwrap_or_else(|e| panic!("{e:#}"));

    let rows = block_on(async {
        let mut poll = source.poll_chunks(Utc::now(), interim::source::PollKind::Full, PER_PAGE);
        let mut rows = match poll.next_chunk().await {
            Some(Ok(chunk)) => chunk.tickets.len(),
            other => panic!(
                "the first chunk: {:?}",
                other.map(|r| r.map(|s| s.tickets.len()))
            ),
        };
        // The planner is busy: the reader may fill the channel, then waits.
        tokio::time::sleep(Duration::from_millis(800)).await;
        let asked = home.requests().len();
        assert!(
            asked <= 5,
            "{asked} of {PAGES} pages read ahead of a consumer that took one"
        );
        while let Some(chunk) = poll.next_chunk().await {
            rows += chunk.unwrap_or_else(|e| panic!("{e:#}")).tickets.len();
        }
        rows
    });
    assert_eq!(rows, PAGES * PER_PAGE, "every row arrives in the end");
    assert_eq!(home.requests().len(), PAGES + 1, "and the empty last page");
}

#[test]
fn the_new_keys_are_checked_with_their_key_path() {
    let mut setup = setup_for("https://helpdesk.example.com/tickets");
    for (key, value, reason) in [
        ("source.max_page_bytes", "\"lots\"", "not a size in bytes"),
        ("source.max_page_bytes", "0", "must be above 0"),
        (
            "source.allowed_origins",
            r#"["https://api2.example.com/v2"]"#,
            "source.allowed_origins[0]",
        ),
        (
            "source.allowed_origins",
            r#"["ftp://files.example.com"]"#,
            "not an http or https origin",
        ),
        (
            "source.allowed_origins",
            r#"["https://u:pw-77@api2.example.com"]"#,
            "more than an origin",
        ),
    ] {
        setup.set(key, value);
        let out = setup.cli(&["check-config"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{key} = {value}: {stderr}");
        assert!(
            stderr.contains(key) && stderr.contains(reason),
            "{key} = {value}: {stderr}"
        );
        assert!(
            !stderr.contains("pw-77"),
            "a password in an origin is masked: {stderr}"
        );
        setup.unset(key);
    }
    for (key, value) in [
        ("source.max_page_bytes", "\"32MiB\""),
        ("source.max_page_bytes", "1000000"),
        (
            "source.allowed_origins",
            r#"["https://API2.example.com:443", "http://127.0.0.2:8080"]"#,
        ),
    ] {
        setup.set(key, value);
        let out = setup.cli(&["check-config"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{key} = {value}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        setup.unset(key);
    }
}
