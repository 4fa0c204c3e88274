//! The admin endpoint under abuse and the truth of its health answers
//! (issue 11, items 3, 4 and 8), all against real parts: a connection
//! flood under a real low descriptor limit (`prlimit`) stops no notice;
//! silent, dripping, kept-alive and deaf connections are closed by the
//! header and idle timeouts; large bodies and connections beyond
//! `http.max_connections` are refused; write actions that a browser page
//! elsewhere, a proxy, a rebinding page or another host send are refused
//! without the admin token, and only the token counts once it is set;
//! `/readyz` answers 503 within 2 s when the store's port closes, when it
//! is locked for writing, or when its file is deleted or replaced (then
//! nothing is claimed); `sources test` fails fast on a refused port.

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::admin::{
    ClosableProxy, Flood, dual_stack_loopback, open_descriptors, outside_address, raw,
    start_with_descriptor_limit, time_until_closed,
};
use support::faults::{lock_sqlite, prometheus_sum};
use support::http::{self, HttpResponse};
use support::postgres::PgDatabase;
use support::{Setup, SmtpSink, Ticket, ago, free_port, toml_str};

const SOON: Duration = Duration::from_secs(20);

/// A policy for open tickets, one notice once they waited `after`.
fn first_notice(after: &str, channel: &str) -> String {
    format!(
        "match = {{ state = [\"open\"] }}\nafter = \"{after}\"\nchannel = \"{channel}\"\ntemplate = \"interim\""
    )
}

fn socket(addr: &str) -> SocketAddr {
    addr.parse()
        .unwrap_or_else(|e| panic!("{addr} is not host:port: {e}"))
}

fn healthy(addr: &str) -> bool {
    http::get(addr, "/healthz").is_ok_and(|r| r.status == 200)
}

fn reloads(setup: &Setup) -> f64 {
    let text = http::get(&setup.admin(), "/metrics").map_or_else(|_| String::new(), |r| r.body);
    prometheus_sum(&text, "interim_config_reloads_total", &[])
}

fn log(setup: &Setup) -> String {
    std::fs::read_to_string(setup.path("daemon.log")).unwrap_or_default()
}

/// A POST of `/-/reload` with these header lines (Host is added).
fn reload_with(addr: &str, headers: &[&str], body: &str) -> HttpResponse {
    let host = format!("Host: {addr}");
    let mut head = vec!["POST /-/reload HTTP/1.1", host.as_str()];
    head.extend_from_slice(headers);
    raw(addr, &head, body).expect("POST /-/reload answers")
}

/// The daemon's whole descriptor budget under `prlimit`.
const NOFILE: u64 = 128;

#[test]
fn a_connection_flood_under_a_low_descriptor_limit_stops_no_notice_and_healthz_answers_once_it_ends()
 {
    let sink = SmtpSink::start();
    let mut setup = Setup::new();
    setup
        .set("http.header_timeout", &toml_str("2s"))
        .email_channel("mail", sink.port(), "")
        .policy("first-notice", &first_notice("1s", "mail"));
    let helpdesk = setup.helpdesk();
    helpdesk.insert(&[Ticket::new(1)]);
    let daemon = start_with_descriptor_limit(&setup, NOFILE);
    setup.wait_until(SOON, "ticket 1's notice went out before the flood", || {
        sink.mails_to(&Ticket::email(1)).len() == 1
    });
    let limit = std::fs::read_to_string(format!("/proc/{}/limits", daemon.pid()))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(
        limit.split_whitespace().any(|w| w == NOFILE.to_string()),
        "the daemon runs with nofile {NOFILE}: {limit}"
    );

    // Three times the descriptor limit, replaced as the daemon closes them.
    let flood = Flood::start(socket(&setup.admin()), 3 * NOFILE as usize);
    // As many connections as the daemon may have descriptors: enough to
    // starve a daemon that takes them all.
    setup.wait_until(SOON, "the flood is under way", || {
        flood.opened() >= NOFILE as usize
    });
    let started = Instant::now();
    helpdesk.insert(&(2..=6).map(Ticket::new).collect::<Vec<_>>());
    let mut peak = 0;
    setup.wait_until(SOON, "every notice went out during the flood", || {
        peak = peak.max(open_descriptors(daemon.pid()));
        (2..=6).all(|id| sink.mails_to(&Ticket::email(id)).len() == 1)
    });
    let sent_within = started.elapsed();

    // The attacker stops, leaving its connections open and idle: the
    // header timeout frees them.
    flood.stop_refilling();
    let stopped = Instant::now();
    setup.wait_until(Duration::from_secs(15), "/healthz answers again", || {
        healthy(&setup.admin())
    });
    let recovered = stopped.elapsed();
    let opened = flood.opened();
    drop(flood);

    println!(
        "measured: 5 notices sent {sent_within:?} into a flood of {opened} connections; \
         peak {peak} of {NOFILE} descriptors; /healthz answered {recovered:?} after the flood stopped"
    );
    assert!(
        recovered <= Duration::from_secs(5),
        "/healthz answers within the header timeout (2 s) and a margin: {recovered:?}"
    );
    assert_eq!(sink.mails().len(), 6, "each notice once");
    let log = log(&setup);
    for starved in ["Too many open files", "os error 24"] {
        assert!(
            !log.contains(starved),
            "the daemon ran out of descriptors:\n{log}"
        );
    }
    let metrics = http::get(&setup.admin(), "/metrics").expect("/metrics answers");
    assert!(
        prometheus_sum(&metrics.body, "interim_http_connections_refused_total", &[]) > 0.0,
        "refused connections are counted"
    );
}

#[test]
fn silent_slow_and_kept_alive_connections_are_closed_and_large_bodies_refused_on_every_route() {
    let mut setup = Setup::new();
    setup
        .set("http.header_timeout", &toml_str("1s"))
        .set("http.idle_timeout", &toml_str("2s"))
        .email_channel("mail", free_port(), "");
    let _daemon = setup.start();
    let addr = setup.admin();
    setup.wait_until(SOON, "/healthz answers", || healthy(&addr));

    // Connected, never a byte: closed after the header timeout.
    let mut silent = TcpStream::connect(&addr).expect("connect");
    let closed = time_until_closed(&mut silent, Duration::from_secs(6));
    assert!(
        closed.is_some_and(|t| t >= Duration::from_millis(800) && t <= Duration::from_secs(3)),
        "a silent connection is closed after http.header_timeout (1 s): {closed:?}"
    );

    // Headers dripped a line every 200 ms: the header timeout is a deadline
    // for all of them, not reset by each byte.
    let mut slow = TcpStream::connect(&addr).expect("connect");
    let start = Instant::now();
    let _ = slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n");
    let mut cut = None;
    while start.elapsed() < Duration::from_secs(6) {
        std::thread::sleep(Duration::from_millis(200));
        if slow.write_all(b"X-Drip: 1\r\n").is_err() {
            cut = Some(start.elapsed());
            break;
        }
        if let Some(t) = time_until_closed(&mut slow, Duration::from_millis(1)) {
            cut = Some(start.elapsed().max(t));
            break;
        }
    }
    assert!(
        cut.is_some_and(|t| t <= Duration::from_secs(3)),
        "a connection dripping its headers is closed after http.header_timeout: {cut:?}"
    );

    // Kept alive after an answer: the wait for the next request is bounded too.
    let mut kept = TcpStream::connect(&addr).expect("connect");
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send a request");
    let closed = time_until_closed(&mut kept, Duration::from_secs(6));
    assert!(
        closed.is_some_and(|t| t <= Duration::from_secs(3)),
        "a kept-alive connection is closed after http.header_timeout: {closed:?}"
    );

    // A client that sends requests and never reads the answers: once the
    // socket buffers are full no byte moves, and http.idle_timeout (2 s)
    // closes it. The gauge counts the scraping connection itself too.
    let open = |addr: &str| {
        let text = http::get(addr, "/metrics").map_or_else(|_| String::new(), |r| r.body);
        prometheus_sum(&text, "interim_http_connections", &[])
    };
    let mut deaf = TcpStream::connect(&addr).expect("connect");
    let _ = deaf.set_write_timeout(Some(Duration::from_secs(1)));
    let requests = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(20_000);
    let _ = deaf.write_all(requests.as_bytes());
    let start = Instant::now();
    setup.wait_until(
        Duration::from_secs(10),
        "the deaf connection is closed",
        || open(&addr) == 1.0,
    );
    let took = start.elapsed();
    println!("measured: a client that never reads was closed {took:?} after its last write");
    assert!(
        took >= Duration::from_millis(500),
        "not before the idle timeout: {took:?}"
    );
    drop(deaf);

    // Bodies: refused by their announced length, on every route.
    for path in ["/healthz", "/metrics", "/-/reload"] {
        let head = [
            &format!("POST {path} HTTP/1.1") as &str,
            "Host: 127.0.0.1",
            "Content-Type: application/json",
        ];
        let big = "x".repeat(64 * 1024);
        let answer = raw(&addr, &head, &big).expect("an answer");
        assert_eq!(
            answer.status, 413,
            "{path} with a 64 KiB body: {}",
            answer.body
        );
    }
}

#[test]
fn a_connection_over_http_max_connections_is_answered_503_and_closed_at_once() {
    let mut setup = Setup::new();
    setup
        .set("http.max_connections", "3")
        .email_channel("mail", free_port(), "");
    let _daemon = setup.start();
    let addr = setup.admin();
    setup.wait_until(SOON, "/healthz answers", || healthy(&addr));

    // Accepted in order: the three idle ones take every slot (for the
    // header timeout, 5 s), the fourth finds none.
    let held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(&addr).expect("connect"))
        .collect();
    let start = Instant::now();
    let fourth = http::get(&addr, "/healthz");
    let took = start.elapsed();
    assert!(
        fourth.as_ref().is_err() || fourth.as_ref().is_ok_and(|r| r.status == 503),
        "the fourth connection is refused: {fourth:?}"
    );
    assert!(took < Duration::from_secs(1), "at once: {took:?}");
    drop(held);
    setup.wait_until(Duration::from_secs(5), "/healthz answers again", || {
        healthy(&addr)
    });
}

#[test]
fn a_cross_site_post_from_a_browser_a_proxied_request_and_a_rebinding_page_cannot_reload() {
    let mut setup = Setup::new();
    setup.email_channel("mail", free_port(), "");
    let _daemon = setup.start();
    let addr = setup.admin();
    setup.wait_until(SOON, "/healthz answers", || healthy(&addr));

    let refused: [(&str, &[&str]); 8] = [
        (
            "a cross-site text/plain POST (what a form or no-cors fetch sends)",
            &["Origin: http://evil.example", "Content-Type: text/plain"],
        ),
        (
            "a text/plain POST without Origin",
            &["Content-Type: text/plain"],
        ),
        ("a POST with neither content type nor custom header", &[]),
        (
            "a form POST",
            &["Content-Type: application/x-www-form-urlencoded"],
        ),
        (
            "JSON from another origin",
            &[
                "Origin: http://evil.example",
                "Content-Type: application/json",
            ],
        ),
        (
            "JSON a browser marks cross-site",
            &[
                "Sec-Fetch-Site: cross-site",
                "Content-Type: application/json",
            ],
        ),
        (
            "JSON through a same-host reverse proxy",
            &[
                "X-Forwarded-For: 192.0.2.7",
                "Content-Type: application/json",
            ],
        ),
        (
            "JSON through a proxy (RFC 7239)",
            &["Forwarded: for=192.0.2.7", "Content-Type: application/json"],
        ),
    ];
    for (what, headers) in refused {
        let answer = reload_with(&addr, headers, "reload");
        assert_eq!(answer.status, 403, "{what}: {}", answer.body);
        assert_eq!(
            answer.json()["status"],
            "refused",
            "{what}: {}",
            answer.body
        );
    }
    // A DNS-rebinding page: same origin as far as the browser knows, but
    // its own host name in Host.
    let rebinding = raw(
        &addr,
        &[
            "POST /-/reload HTTP/1.1",
            "Host: evil.example:9464",
            "Origin: http://evil.example:9464",
            "Content-Type: application/json",
        ],
        "{}",
    )
    .expect("an answer");
    assert_eq!(rebinding.status, 403, "rebinding: {}", rebinding.body);
    assert_eq!(reloads(&setup), 0.0, "nothing of that reloaded");
    assert!(log(&setup).contains("write action refused"));

    // What a local tool sends.
    for headers in [
        &["Content-Type: application/json"] as &[&str],
        &["X-Interim-Admin: 1"],
        &[
            "Content-Type: application/json",
            &format!("Origin: http://{addr}"),
            "Sec-Fetch-Site: same-origin",
        ],
    ] {
        let answer = reload_with(&addr, headers, "");
        assert_eq!(answer.status, 200, "{headers:?}: {}", answer.body);
        assert_eq!(answer.json()["status"], "reloaded");
    }
    assert_eq!(reloads(&setup), 3.0);
}

#[test]
fn with_an_admin_token_only_the_bearer_token_reloads_from_anywhere_and_it_is_never_printed() {
    let token = "admin-token-3f9c1e7a5b2d4c6e8f0a";
    let outside = outside_address();
    let mut setup = Setup::new();
    let port = free_port();
    setup
        .set("http.listen", &toml_str(&format!("0.0.0.0:{port}")))
        .email_channel("mail", free_port(), "");
    let _daemon = setup.start();
    let local = format!("127.0.0.1:{port}");
    setup.wait_until(SOON, "/healthz answers", || healthy(&local));
    let json = ["Content-Type: application/json"];

    // No token yet: another host is refused, loopback is not.
    if let Some(ip) = outside {
        let remote = format!("{ip}:{port}");
        let answer = reload_with(&remote, &json, "");
        assert_eq!(
            answer.status, 403,
            "from {ip} without a token: {}",
            answer.body
        );
    } else {
        support::skip_or_fail("this machine has no non-loopback address");
    }

    // The token comes with a reload: it is read from the live config.
    let token_file = setup.path("admin.token");
    std::fs::write(&token_file, format!("{token}\n")).expect("write the token file");
    setup.set(
        "http.admin_token_file",
        &toml_str(&token_file.display().to_string()),
    );
    setup.write_config();
    let answer = reload_with(&local, &json, "");
    assert_eq!(answer.status, 200, "{}", answer.body);

    let bearer = format!("Authorization: Bearer {token}");
    let wrong = format!("Authorization: Bearer {token}x");
    let refused: [(&str, Vec<&str>); 4] = [
        ("no Authorization, from loopback", json.to_vec()),
        ("a wrong token", vec![json[0], wrong.as_str()]),
        (
            "a token one byte short",
            vec![json[0], &bearer[..bearer.len() - 1]],
        ),
        (
            "Basic instead of Bearer",
            vec![json[0], "Authorization: Basic YWRtaW46eA=="],
        ),
    ];
    for (what, headers) in &refused {
        let answer = reload_with(&local, headers, "");
        assert_eq!(answer.status, 401, "{what}: {}", answer.body);
    }
    let answer = reload_with(&local, &[bearer.as_str()], "");
    assert_eq!(answer.status, 200, "with the token: {}", answer.body);
    if let Some(ip) = outside {
        let remote = format!("{ip}:{port}");
        let answer = reload_with(&remote, &[bearer.as_str(), json[0]], "");
        assert_eq!(
            answer.status, 200,
            "from {ip} with the token: {}",
            answer.body
        );
    }

    let check = setup.cli(&["check-config"]);
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(check.status.success(), "{printed}");
    for (what, text) in [("check-config", printed), ("the daemon log", log(&setup))] {
        assert!(
            !text.contains(token),
            "{what} shows the admin token:\n{text}"
        );
    }
}

#[test]
fn on_a_dual_stack_listener_ipv4_and_ipv6_loopback_may_reload() {
    if !dual_stack_loopback() {
        support::skip_or_fail("no dual-stack loopback ([::] taking 127.0.0.1 and ::1)");
        return;
    }
    let mut setup = Setup::new();
    let port = free_port();
    setup
        .set("http.listen", &toml_str(&format!("[::]:{port}")))
        .email_channel("mail", free_port(), "");
    let _daemon = setup.start();
    let (v4, v6) = (format!("127.0.0.1:{port}"), format!("[::1]:{port}"));
    setup.wait_until(SOON, "/healthz answers", || healthy(&v4));
    // From 127.0.0.1 the daemon sees ::ffff:127.0.0.1.
    for addr in [&v4, &v6] {
        let answer = http::post(addr, "/-/reload").expect("POST /-/reload answers");
        assert_eq!(answer.status, 200, "from {addr}: {}", answer.body);
    }
}

#[test]
fn new_admin_and_source_keys_are_checked_by_check_config() {
    let empty = Setup::new();
    std::fs::write(empty.path("empty.token"), "\n").expect("write an empty token file");
    let cases = [
        (
            "http.admin_token_file",
            toml_str(&empty.path("empty.token").display().to_string()),
            "the admin token is empty",
        ),
        (
            "http.admin_token_env",
            toml_str("INTERIM_TEST_NO_SUCH_TOKEN"),
            "is not set",
        ),
        (
            "http.max_connections",
            "0".to_owned(),
            "between 1 and 100000",
        ),
        ("http.header_timeout", toml_str("0s"), "longer than zero"),
        ("http.idle_timeout", toml_str("soon"), "invalid duration"),
        (
            "source.connect_timeout",
            toml_str("2m"),
            "at most source.timeout",
        ),
    ];
    for (key, value, reason) in cases {
        let mut setup = Setup::new();
        setup
            .set(key, &value)
            .email_channel("mail", free_port(), "");
        let out = setup.cli(&["check-config"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{key} = {value}: {stderr}");
        assert!(
            stderr.contains(key) && stderr.contains(reason),
            "{key} = {value} names the key and {reason:?}: {stderr}"
        );
    }
}

/// `postgres://USER@HOST:PORT/DB` → the URL with HOST:PORT replaced, and HOST:PORT.
fn via(url: &str, port: u16) -> (String, SocketAddr) {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (authority, path) = rest.split_once('/').expect("a database path");
    let (user, host_port) = authority.rsplit_once('@').unwrap_or(("", authority));
    let target: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(host_port)
        .ok()
        .and_then(|mut a| a.find(SocketAddr::is_ipv4))
        .unwrap_or_else(|| panic!("{host_port} resolves"));
    let user = if user.is_empty() {
        String::new()
    } else {
        format!("{user}@")
    };
    (format!("{scheme}://{user}127.0.0.1:{port}/{path}"), target)
}

#[test]
fn readyz_answers_503_within_two_seconds_when_the_postgresql_store_port_closes() {
    let Some(db) = PgDatabase::create() else {
        return;
    };
    let (_, target) = via(&db.url, 0);
    let mut proxy = ClosableProxy::start(target);
    let (store_url, _) = via(&db.url, proxy.port());
    let mut setup = Setup::new();
    setup
        .set("store.url", &toml_str(&store_url))
        .email_channel("mail", free_port(), "");
    let _helpdesk = setup.helpdesk();
    let _daemon = setup.start();
    let addr = setup.admin();
    setup.wait_until(SOON, "/readyz answers 200", || {
        http::get(&addr, "/readyz").is_ok_and(|r| r.status == 200)
    });

    proxy.close();
    let mut took = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let answer = http::get(&addr, "/readyz").expect("/readyz answers");
        took.push(start.elapsed());
        assert_eq!(answer.status, 503, "{}", answer.body);
        let reason = answer.json()["reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            reason.contains("store"),
            "the reason names the store: {reason}"
        );
    }
    println!("measured: /readyz with the store's port closed answered 503 in {took:?}");
    assert!(
        took.iter().all(|t| *t < Duration::from_secs(2)),
        "/readyz answers within 2 s: {took:?}"
    );
    assert!(healthy(&addr), "/healthz still answers");
}

#[test]
fn readyz_answers_503_within_two_seconds_while_the_sqlite_store_cannot_be_written() {
    let mut setup = Setup::new();
    setup.email_channel("mail", free_port(), "");
    let _helpdesk = setup.helpdesk();
    let _daemon = setup.start();
    let addr = setup.admin();
    setup.wait_until(SOON, "/readyz answers 200", || {
        http::get(&addr, "/readyz").is_ok_and(|r| r.status == 200)
    });

    let lock = lock_sqlite(&setup.path("interim.db"), Duration::from_secs(6));
    // The write probe runs at most once a second: the answer before the
    // lock may be repeated for that long.
    std::thread::sleep(Duration::from_millis(1100));
    let start = Instant::now();
    let answer = http::get(&addr, "/readyz").expect("/readyz answers");
    let took = start.elapsed();
    println!(
        "measured: /readyz with the store locked for writing answered {} in {took:?}",
        answer.status
    );
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert!(took < Duration::from_secs(2), "within 2 s: {took:?}");
    let _ = lock.join();
    setup.wait_until(SOON, "/readyz answers 200 again", || {
        http::get(&addr, "/readyz").is_ok_and(|r| r.status == 200)
    });
}

#[test]
fn deleting_the_sqlite_store_file_makes_readyz_503_and_nothing_is_claimed_or_sent() {
    let sink = SmtpSink::start();
    let mut setup = Setup::new();
    setup
        .email_channel("mail", sink.port(), "")
        .policy("first-notice", &first_notice("4s", "mail"));
    let helpdesk = setup.helpdesk();
    helpdesk.insert(&[Ticket {
        waiting_since: ago(0),
        ..Ticket::new(1)
    }]);
    let _daemon = setup.start();
    let addr = setup.admin();
    setup.wait_for_notices("ticket 1's notice is planned", |n| {
        n.iter()
            .any(|n| n.ticket_id == "1" && n.status == "pending")
    });
    setup.wait_until(SOON, "/readyz answers 200", || {
        http::get(&addr, "/readyz").is_ok_and(|r| r.status == 200)
    });

    // From here on no CLI command: it would create a new store file.
    let store = setup.path("interim.db");
    std::fs::remove_file(&store).expect("delete the store file");
    let start = Instant::now();
    let answer = http::get(&addr, "/readyz").expect("/readyz answers");
    let took = start.elapsed();
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert!(took < Duration::from_secs(2), "within 2 s: {took:?}");
    let reason = answer.json()["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        reason.contains(&store.display().to_string()) && reason.contains("deleted"),
        "the reason says what happened: {reason}"
    );
    setup.wait_until(SOON, "the log says so", || {
        log(&setup).contains("nothing is claimed or sent")
    });
    setup.assert_stays(
        Duration::from_secs(8),
        "no notice sent after the store file was deleted (it was due 4 s after the start)",
        || sink.mails().is_empty() && http::get(&addr, "/readyz").is_ok_and(|r| r.status == 503),
    );

    // Another file at the path is not the ledger this daemon writes either.
    std::fs::write(&store, b"").expect("put a new file at the path");
    let answer = http::get(&addr, "/readyz").expect("/readyz answers");
    let reason = answer.json()["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert!(reason.contains("replaced"), "{reason}");
    assert!(sink.mails().is_empty());
}

#[test]
fn a_store_file_renamed_away_stops_claims_and_renamed_back_lets_them_resume() {
    let sink = SmtpSink::start();
    let mut setup = Setup::new();
    setup
        .email_channel("mail", sink.port(), "")
        .policy("first-notice", &first_notice("3s", "mail"));
    let helpdesk = setup.helpdesk();
    helpdesk.insert(&[Ticket {
        waiting_since: ago(0),
        ..Ticket::new(1)
    }]);
    let _daemon = setup.start();
    let addr = setup.admin();
    setup.wait_until(SOON, "/readyz answers 200", || {
        http::get(&addr, "/readyz").is_ok_and(|r| r.status == 200)
    });

    let (store, away) = (setup.path("interim.db"), setup.path("elsewhere.db"));
    std::fs::rename(&store, &away).expect("rename the store file away");
    setup.assert_stays(
        Duration::from_secs(5),
        "nothing sent while the store file is elsewhere (the notice is due 3 s after the start)",
        || sink.mails().is_empty() && http::get(&addr, "/readyz").is_ok_and(|r| r.status == 503),
    );
    std::fs::rename(&away, &store).expect("rename the store file back");
    setup.wait_until(SOON, "the notice goes out once the file is back", || {
        sink.mails_to(&Ticket::email(1)).len() == 1
    });
    setup.wait_until(SOON, "/readyz answers 200 again", || {
        http::get(&addr, "/readyz").is_ok_and(|r| r.status == 200)
    });
    assert!(log(&setup).contains("claiming resumes"));
}

#[test]
fn sources_test_against_a_refused_port_fails_within_seconds_and_check_config_does_not_connect() {
    let closed = free_port();
    for url in [
        format!("postgres://interim@127.0.0.1:{closed}/helpdesk"),
        format!("mysql://interim@127.0.0.1:{closed}/helpdesk"),
        format!("http://127.0.0.1:{closed}/tickets"),
    ] {
        let mut setup = Setup::new();
        setup
            .set("source.url", &toml_str(&url))
            .set("source.timeout", &toml_str("60s"))
            .email_channel("mail", free_port(), "");
        if url.starts_with("http:") {
            setup
                .set("source.kind", &toml_str("http"))
                .unset("source.query")
                .set("source.items", &toml_str("/tickets"))
                .set(
                    "source.fields",
                    "{ id = \"/id\", state = \"/state\", waiting_since = \"/since\" }",
                );
        }
        let start = Instant::now();
        let out = setup.cli(&["sources", "test"]);
        let took = start.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        println!("measured: sources test against {url} (refused) failed in {took:?}");
        assert_eq!(out.status.code(), Some(1), "{url}: {stderr}");
        assert!(
            took < Duration::from_secs(5),
            "{url}: fails within seconds, not source.timeout (60 s): {took:?}\n{stderr}"
        );
        assert!(
            stderr.to_lowercase().contains("refused") || stderr.contains("connection failed"),
            "{url}: says why: {stderr}"
        );

        let start = Instant::now();
        let check = setup.cli(&["check-config"]);
        assert!(
            check.status.success(),
            "{}",
            String::from_utf8_lossy(&check.stderr)
        );
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "check-config connects to nothing"
        );
    }
}

#[test]
fn the_container_image_and_the_reference_config_listen_on_loopback() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).expect("read the Dockerfile");
    let instructions: Vec<&str> = dockerfile
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    for line in &instructions {
        assert!(
            !line.contains("HTTP__LISTEN") && !line.contains("0.0.0.0"),
            "the image must not widen http.listen by default: {line}"
        );
    }
    let reference =
        std::fs::read_to_string(root.join("config/interim.toml")).expect("read the reference");
    assert!(
        reference
            .lines()
            .any(|l| l.trim() == "listen = \"127.0.0.1:9464\""),
        "config/interim.toml listens on loopback"
    );
}
