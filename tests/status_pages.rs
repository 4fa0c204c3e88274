//! The status pages (issue 15) in a real browser: headless chromium over
//! WebDriver against the real daemon, a SQLite helpdesk, a real SMTP sink
//! and a webhook receiver that refuses everything.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::browser::{Browser, html_problems};
use support::{Setup, SmtpSink, Ticket, WebhookReceiver, http};

/// Tickets 1 and 2 (support) get notice 1 by email at once and notice 2
/// half an hour later; ticket 3 (billing) gets one webhook notice, which
/// the receiver refuses for good.
fn setup(sink: &SmtpSink, receiver: &WebhookReceiver) -> Setup {
    let mut setup = Setup::new();
    setup
        .email_channel("mail", sink.port(), "")
        .webhook_channel("hook", receiver.url(), "")
        .policy(
            "mail",
            "match = { state = [\"open\"], queue = [\"support\"] }\nafter = \"1s\"\n\
             repeat_every = \"30m\"\nmax_notices = 2\nchannel = \"mail\"\ntemplate = \"interim\"",
        )
        .policy(
            "hook",
            "match = { state = [\"open\"], queue = [\"billing\"] }\nafter = \"1s\"\n\
             channel = \"hook\"\ntemplate = \"interim\"",
        );
    setup.helpdesk().insert(&[
        Ticket::new(1),
        Ticket::new(2),
        Ticket {
            queue: "billing".into(),
            ..Ticket::new(3)
        },
    ]);
    setup
}

/// What a test's daemon needs alive: the SMTP sink, the webhook receiver
/// and the daemon itself.
struct Running {
    _sink: SmtpSink,
    receiver: WebhookReceiver,
    _daemon: support::Daemon,
}

/// [`setup`], changed by `configure`, with its daemon started; the
/// webhook answers `statuses`, then `then` for ever.
fn running(statuses: &[u16], then: u16, configure: impl FnOnce(&mut Setup)) -> (Setup, Running) {
    let sink = SmtpSink::start();
    let receiver = WebhookReceiver::start(statuses, then, Duration::ZERO);
    let mut setup = setup(&sink, &receiver);
    configure(&mut setup);
    let daemon = setup.start();
    let running = Running {
        _sink: sink,
        receiver,
        _daemon: daemon,
    };
    (setup, running)
}

/// Every page needs the admin token `a-long-enough-admin-token`.
fn with_token(setup: &mut Setup) {
    setup
        .env("INTERIM_TEST_ADMIN_TOKEN", "a-long-enough-admin-token")
        .set("http.admin_token_env", "\"INTERIM_TEST_ADMIN_TOKEN\"");
}

/// Waits until notice 1 of tickets 1 and 2 is sent and ticket 3's is dead.
fn two_sent_and_one_dead(setup: &Setup) {
    setup.wait_for_notices("two sent and one dead", |n| {
        let count = |status: &str| n.iter().filter(|n| n.status == status).count();
        (count("sent"), count("dead")) == (2, 1)
    });
}

/// The overview's JSON, as a tool asks for it.
fn overview_json(setup: &Setup) -> Option<Value> {
    let response = http::request_with(
        &setup.admin(),
        "GET",
        "/",
        &[("Accept", "application/json")],
    )
    .ok()?;
    (response.status == 200).then(|| response.json())
}

#[test]
fn the_overview_shows_the_ledgers_counts_in_a_real_browser() {
    let (setup, _running) = running(&[], 400, |_| {});
    let mut overview = Value::Null;
    setup.wait_until(
        Duration::from_secs(30),
        "two notices are sent, one is dead and the daemon is ready",
        || {
            overview = overview_json(&setup).unwrap_or(Value::Null);
            let counts = &overview["counts"];
            overview["ready"] == true
                && counts["sent_today"] == 2
                && counts["dead"] == 1
                && overview["tickets_tracked"] == 3
        },
    );
    // Notice 2 of tickets 1 and 2 is due within the hour (and the day).
    assert_eq!(overview["counts"]["due_next_hour"], 2, "{overview:#}");
    assert_eq!(overview["counts"]["due_next_day"], 2, "{overview:#}");
    assert_eq!(overview["open_waits"]["mail"], 2, "{overview:#}");
    assert_eq!(overview["open_waits"]["hook"], 1, "{overview:#}");
    assert_eq!(overview["kept_rate"], Value::Null, "nothing decided yet");

    let url = format!("http://{}/", setup.admin());
    support::block_on(async {
        for (width, height, name) in [
            (1280, 800, "overview-counts-1280"),
            (390, 844, "overview-counts-390"),
        ] {
            let Some(browser) = Browser::start(width, height).await else {
                return;
            };
            browser.client.goto(&url).await.expect("open the overview");
            let title = browser.client.title().await.expect("a title");
            assert!(title.starts_with("interim"), "{title}");
            assert_eq!(browser.text("#readiness").await, "Ready");
            for (card, value) in [
                ("#sent-today .value", "2"),
                ("#dead .value", "1"),
                ("#due-hour .value", "2"),
                ("#due-day .value", "2"),
                ("#tickets-tracked .value", "3"),
                ("#exhausted .value", "0"),
            ] {
                assert_eq!(browser.text(card).await, value, "{card}");
            }
            let waits = browser.text("#open-waits").await;
            assert!(
                waits.contains("mail 2") && waits.contains("hook 1"),
                "{waits}"
            );
            browser.screenshot(name).await;

            // The German page, by the switch.
            browser
                .client
                .goto(&format!("{url}?lang=de"))
                .await
                .expect("open the German overview");
            assert_eq!(browser.text("h1").await, "Übersicht");
            assert_eq!(browser.text("#readiness").await, "Bereit");
            browser.close().await;
        }
    });
}

#[test]
fn the_notices_page_filters_the_ledger_and_shows_why_a_notice_died() {
    let (setup, _running) = running(&[], 400, |_| {});
    setup.wait_for_notices("two sent, two pending and one dead", |n| {
        let count = |status: &str| n.iter().filter(|n| n.status == status).count();
        (count("sent"), count("pending"), count("dead")) == (2, 2, 1)
    });
    let url = format!("http://{}/notices", setup.admin());
    support::block_on(async {
        let Some(browser) = Browser::start(1280, 800).await else {
            return;
        };
        browser.client.goto(&url).await.expect("open the ledger");
        assert_eq!(
            browser.count("#notices tbody tr[id^=notice-]").await,
            5,
            "every notice of the ledger"
        );
        let all = browser.text("#notices").await;
        assert!(
            all.contains("c***@example.com"),
            "recipients are masked:\n{all}"
        );
        assert!(!all.contains("customer1@example.com"), "{all}");
        browser.screenshot("notices-all-1280").await;

        // Filtered by the form: only the dead one, with its error and how
        // to retry it without a token.
        browser.submit("form.filters", "status", "dead").await;
        browser.wait_for_page("/notices", "status=dead").await;
        assert_eq!(
            browser.count("#notices tbody tr[id^=notice-]").await,
            1,
            "only the dead notice"
        );
        let dead = browser.text("#notices").await;
        assert!(
            dead.contains("HTTP 400") && dead.contains("interim retry"),
            "{dead}"
        );
        browser.close().await;
    });
    let bad = http::get(&setup.admin(), "/notices?status=lost").expect("an answer");
    assert_eq!(bad.status, 400);
    assert!(
        bad.body.contains("status") && bad.body.contains("lost"),
        "{}",
        bad.body
    );
}

#[test]
fn every_page_is_valid_html_with_a_title_labels_and_titled_images() {
    let (setup, _running) = running(&[], 400, |_| {});
    setup.wait_until(Duration::from_secs(30), "the daemon serves pages", || {
        overview_json(&setup).is_some()
    });
    setup.wait_for_notices("ticket 1 has a notice", |n| {
        n.iter().any(|n| n.ticket_id == "1")
    });
    for path in [
        "/",
        "/?lang=de",
        "/notices",
        "/notices?status=dead&lang=de",
        "/tickets/1",
        "/login",
        "/report",
        "/report?by=week&lang=de",
        "/upcoming",
        "/config",
    ] {
        let page = http::get(&setup.admin(), path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(page.status, 200, "{path}");
        let (problems, title) = html_problems(&page.body);
        assert!(problems.is_empty(), "{path}: {problems:#?}");
        assert!(title.starts_with("interim"), "{path}: {title}");
    }
}

#[test]
fn pages_are_refused_through_a_proxy_and_without_the_token_when_one_is_set() {
    let sink = SmtpSink::start();
    let receiver = WebhookReceiver::start(&[], 400, Duration::ZERO);
    let mut setup = setup(&sink, &receiver);
    let daemon = setup.start();
    setup.wait_until(Duration::from_secs(30), "the daemon serves pages", || {
        overview_json(&setup).is_some()
    });
    let proxied = http::request_with(
        &setup.admin(),
        "GET",
        "/",
        &[("X-Forwarded-For", "203.0.113.9")],
    )
    .expect("an answer");
    assert_eq!(proxied.status, 403, "{}", proxied.body);
    drop(daemon);

    // With an admin token every page needs it.
    setup
        .env("INTERIM_TEST_ADMIN_TOKEN", "a-long-enough-admin-token")
        .set("http.admin_token_env", "\"INTERIM_TEST_ADMIN_TOKEN\"");
    let _daemon = setup.start();
    setup.wait_until(Duration::from_secs(30), "the daemon answers", || {
        http::get(&setup.admin(), "/healthz").is_ok_and(|r| r.status == 200)
    });
    let without = http::get(&setup.admin(), "/").expect("an answer");
    assert_eq!(without.status, 401, "{}", without.body);
    let with = http::request_with(
        &setup.admin(),
        "GET",
        "/",
        &[("Authorization", "Bearer a-long-enough-admin-token")],
    )
    .expect("an answer");
    assert_eq!(with.status, 200, "{}", with.body);
    assert!(with.body.contains("<title>interim"), "{}", with.body);
}

/// The checker itself finds what it looks for (else a page test passes
/// for a checker that sees nothing).
#[test]
fn the_html_checker_reports_parse_errors_and_unlabelled_controls() {
    let (problems, title) = html_problems(
        "<!DOCTYPE html><html><head><title>interim · x</title></head>\
         <body><form><input id=q name=q></form><svg></svg></span></body></html>",
    );
    assert_eq!(title, "interim · x");
    assert!(
        problems.iter().any(|p| p.contains("without a label")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("SVG without a title")),
        "{problems:?}"
    );
    assert!(problems.len() >= 3, "and the stray </span>: {problems:?}");
}

#[test]
fn retry_on_a_dead_notice_after_logging_in_sends_it_once_the_receiver_recovers() {
    // The first attempt is refused for good; the retried one is accepted.
    let (setup, running) = running(&[400], 200, with_token);
    let receiver = &running.receiver;
    let notices = setup.wait_for_notices("ticket 3's notice is dead", |n| {
        n.iter().any(|n| n.ticket_id == "3" && n.status == "dead")
    });
    let dead = notices
        .iter()
        .find(|n| n.ticket_id == "3")
        .map(|n| n.id.clone())
        .expect("the dead notice");

    let base = format!("http://{}/", setup.admin());
    support::block_on(async {
        let Some(browser) = Browser::start(1280, 800).await else {
            return;
        };
        // Without a session the ledger sends the browser to the login form.
        browser
            .client
            .goto(&format!("{base}notices"))
            .await
            .expect("open the ledger");
        browser.wait_for_page("/login", "next=notices").await;
        browser
            .submit("form.login", "token", "a-long-enough-admin-token")
            .await;
        // Back where the login began.
        browser.wait_for_page("/notices", "").await;

        // A form without the session's CSRF token is refused, and so is
        // one without the session.
        let cookie = browser
            .client
            .get_named_cookie("interim_session")
            .await
            .expect("the session cookie");
        let path = format!("/notices/{dead}/retry");
        let form_type = ("Content-Type", "application/x-www-form-urlencoded");
        let session = format!("interim_session={}", cookie.value());
        let forged = http::request_with(
            &setup.admin(),
            "POST",
            &path,
            &[form_type, ("Cookie", &session)],
        )
        .expect("an answer");
        assert_eq!(forged.status, 403, "{}", forged.body);
        let anonymous =
            http::request_with(&setup.admin(), "POST", &path, &[form_type]).expect("an answer");
        assert_eq!(anonymous.status, 401, "{}", anonymous.body);
        assert_eq!(receiver.requests().len(), 1, "nothing was retried yet");

        // The Retry button.
        browser
            .client
            .find(fantoccini::Locator::Css(&format!("#retry-{dead}")))
            .await
            .expect("the Retry button of the dead notice")
            .click()
            .await
            .expect("click Retry");
        browser.wait_for_page("/notices", "retried=").await;
        let banner = browser.text("#retried").await;
        assert!(banner.contains(&dead), "{banner}");
        browser.screenshot("notices-retried-1280").await;
        browser.close().await;
    });
    setup.wait_for_notices("the retried notice is sent", |n| {
        n.iter().any(|n| n.id == dead && n.status == "sent")
    });
    assert_eq!(receiver.requests().len(), 2, "refused once, sent once");
    let log = std::fs::read_to_string(setup.path("daemon.log")).unwrap_or_default();
    assert!(
        log.lines()
            .any(|l| l.contains("notice retried from the status page") && l.contains("session")),
        "the action is logged with who did it"
    );
    assert!(
        !log.contains("a-long-enough-admin-token"),
        "the token is never logged"
    );
}

#[test]
fn the_ticket_page_shows_each_promise_its_outcome_and_the_notice_as_sent() {
    let sink = SmtpSink::start();
    let mut setup = Setup::new();
    setup.email_channel("mail", sink.port(), "").policy(
        "mail",
        "match = { state = [\"open\"] }\nafter = \"1s\"\nrepeat_every = \"2s\"\nmax_notices = 2\n\
         channel = \"mail\"\ntemplate = \"interim\"",
    );
    setup.helpdesk().insert(&[Ticket::new(1)]);
    let _daemon = setup.start();
    let notices = setup.wait_for_notices("notice 2 keeps notice 1's promise", |n| {
        n.iter()
            .any(|n| n.number == 1 && n.promise.as_deref() == Some("kept"))
    });
    let first = notices
        .iter()
        .find(|n| n.number == 1)
        .map(|n| n.id.clone())
        .expect("notice 1");
    let url = format!("http://{}/tickets/%231", setup.admin());
    support::block_on(async {
        let Some(browser) = Browser::start(390, 844).await else {
            return;
        };
        browser
            .client
            .goto(&url)
            .await
            .expect("open the ticket by its number");
        assert_eq!(browser.text("h1").await, "Ticket #1");
        let wait = browser.text("#wait-1 h2").await;
        assert!(wait.contains("still waiting"), "{wait}");
        let promise = browser.text(&format!("#notice-{first} .promise")).await;
        assert_eq!(promise, "kept");
        let summary = browser
            .text(&format!("#notice-{first} + tr.message summary"))
            .await;
        assert!(summary.contains("Update on #1"), "{summary}");
        browser.screenshot("ticket-kept-390").await;
        browser.close().await;
    });
    let missing = http::get(&setup.admin(), "/tickets/404").expect("an answer");
    assert_eq!(missing.status, 404, "{}", missing.body);
}

#[test]
fn the_report_page_gives_the_numbers_of_interim_report_with_charts_and_a_csv() {
    let (setup, _running) = running(&[], 400, |_| {});
    two_sent_and_one_dead(&setup);
    // A period that has ended: how long the open waits had waited by its
    // end is then the same for the command and for the page, whenever
    // each of them runs.
    let end = chrono::Utc::now();
    let since = (end - chrono::Duration::days(1)).to_rfc3339();
    let until = end.to_rfc3339();
    let cli = setup
        .json(&[
            "report",
            "--since",
            &since,
            "--until",
            &until,
            "--promise",
            "1h,1d",
            "--format",
            "json",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("since", &since)
        .append_pair("until", &until)
        .append_pair("promise", "1h,1d");
    let query = query.finish();
    let page = http::request_with(
        &setup.admin(),
        "GET",
        &format!("/report?{query}"),
        &[("Accept", "application/json")],
    )
    .expect("an answer");
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(
        page.json()["report"],
        cli,
        "the page's numbers are the command's"
    );
    assert_eq!(cli["total"]["waits_started"], 3, "{cli:#}");

    let csv = http::get(&setup.admin(), &format!("/report.csv?{query}")).expect("an answer");
    assert_eq!(csv.status, 200);
    let cli_csv = setup.cli(&[
        "report",
        "--since",
        &since,
        "--until",
        &until,
        "--promise",
        "1h,1d",
        "--format",
        "csv",
    ]);
    assert_eq!(
        csv.body.as_bytes(),
        cli_csv.stdout.as_slice(),
        "the download is the command's CSV"
    );

    let url = format!("http://{}/report?{query}", setup.admin());
    support::block_on(async {
        let Some(browser) = Browser::start(1280, 800).await else {
            return;
        };
        browser.client.goto(&url).await.expect("open the report");
        let total = browser.text("#report-numbers tfoot").await;
        assert!(total.starts_with("total 3 0 3 3 2 2"), "{total}");
        let charts = browser
            .client
            .find_all(fantoccini::Locator::Css("svg.chart"))
            .await
            .expect("the charts");
        // No wait ended and no promise is decided yet: only the candidates'
        // chart, and the other two say why they are empty.
        assert_eq!(charts.len(), 1, "the candidates' chart");
        let empty = browser.text(".charts").await;
        assert!(empty.contains("No wait ended in this period."), "{empty}");
        browser.screenshot("report-query-1280").await;
        browser.close().await;
    });
}

#[test]
fn upcoming_lists_what_goes_out_next_in_order_with_why_and_a_preview() {
    let (setup, _running) = running(&[], 400, |_| {});
    let notices = setup.wait_for_notices("notice 2 of tickets 1 and 2 is planned", |n| {
        let pending = |number| {
            n.iter()
                .filter(|n| n.status == "pending" && n.number == number)
                .count()
        };
        pending(1) == 0 && pending(2) == 2
    });
    let mut pending: Vec<&support::Notice> =
        notices.iter().filter(|n| n.status == "pending").collect();
    pending.sort_by(|a, b| (&a.send_at, &a.id).cmp(&(&b.send_at, &b.id)));
    let url = format!("http://{}/upcoming", setup.admin());
    support::block_on(async {
        let Some(browser) = Browser::start(1280, 800).await else {
            return;
        };
        browser.client.goto(&url).await.expect("open upcoming");
        let rows = browser
            .client
            .find_all(fantoccini::Locator::Css("#upcoming tbody tr[id^=notice-]"))
            .await
            .expect("the rows");
        let mut ids = Vec::new();
        for row in &rows {
            ids.push(row.attr("id").await.expect("an id").unwrap_or_default());
        }
        let expected: Vec<String> = pending.iter().map(|n| format!("notice-{}", n.id)).collect();
        assert_eq!(ids, expected, "the pending notices, the earliest first");
        let why = browser.text(&format!("#{} .why", expected[0])).await;
        assert!(why.starts_with("sent when due"), "{why}");
        let preview = browser
            .text(&format!("#{} + tr.message summary", expected[0]))
            .await;
        assert!(preview.contains("Update on #"), "{preview}");
        browser.screenshot("upcoming-order-1280").await;
        browser.close().await;
    });
}

#[test]
fn the_config_page_shows_what_is_in_force_without_a_secret() {
    let (setup, _running) = running(&[], 400, with_token);
    let bearer = [("Authorization", "Bearer a-long-enough-admin-token")];
    let mut page = None;
    setup.wait_until(Duration::from_secs(30), "the config page answers", || {
        page = http::request_with(&setup.admin(), "GET", "/config", &bearer)
            .ok()
            .filter(|r| r.status == 200);
        page.is_some()
    });
    let body = page.map(|p| p.body).unwrap_or_default();
    for shown in ["mail", "hook", "interim", "interim.toml"] {
        assert!(body.contains(shown), "{shown} in:\n{body}");
    }
    for secret in [support::WEBHOOK_SECRET, "a-long-enough-admin-token"] {
        assert!(!body.contains(secret), "a secret on the page:\n{body}");
    }
}

/// A screenshot of every page at laptop and phone size under
/// `target/screenshots/` for a reviewer; each page has its title there.
#[test]
fn every_page_is_captured_at_laptop_and_phone_size() {
    let (setup, _running) = running(&[], 400, |_| {});
    two_sent_and_one_dead(&setup);
    let base = format!("http://{}", setup.admin());
    support::block_on(async {
        for (width, height) in [(1280, 800), (390, 844)] {
            let Some(browser) = Browser::start(width, height).await else {
                return;
            };
            for (path, name) in [
                ("/", "overview"),
                ("/upcoming", "upcoming"),
                ("/notices", "notices"),
                ("/tickets/1", "ticket"),
                ("/report", "report"),
                ("/config", "config"),
                ("/login", "login"),
            ] {
                browser
                    .client
                    .goto(&format!("{base}{path}"))
                    .await
                    .expect("open the page");
                let title = browser.client.title().await.expect("a title");
                assert!(title.starts_with("interim · "), "{path}: {title}");
                browser.screenshot(&format!("{name}-{width}")).await;
            }
            browser.close().await;
        }
    });
}
