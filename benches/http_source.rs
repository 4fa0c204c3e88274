//! The HTTP source benchmark: `cargo bench --bench http_source`.
//!
//! Peak RSS and speed of reading tickets from a JSON API on 127.0.0.1
//! (served by this process, pages made on the fly) through the real
//! `interim::source::Source`, next to a bare reqwest + serde_json loop over
//! the same pages in the same run; and one oversized page, which the source
//! must refuse at once. Every measurement runs in a child process of its
//! own, so each peak (VmHWM) is that measurement's alone.
//!
//! Environment: INTERIM_BENCH_HTTP_TICKETS (default 1000000),
//! INTERIM_BENCH_HTTP_PAGE (default 1000), INTERIM_BENCH_OVERSIZED_MB
//! (default 400).

use std::convert::Infallible;
use std::process::Command;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderValue, Uri};
use axum::response::Response;
use chrono::Utc;
use interim::source::{PollKind, Source};
use serde_json::Value;

#[derive(Clone, Copy)]
struct Sizes {
    tickets: usize,
    page: usize,
    oversized_mb: usize,
}

fn sizes() -> Sizes {
    let var = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(default)
    };
    Sizes {
        tickets: var("INTERIM_BENCH_HTTP_TICKETS", 1_000_000),
        page: var("INTERIM_BENCH_HTTP_PAGE", 1000).max(1),
        oversized_mb: var("INTERIM_BENCH_OVERSIZED_MB", 400),
    }
}

const MODES: &[(&str, &str)] = &[
    ("idle", "process with runtime and API server, nothing read"),
    ("bare", "bare reqwest + serde_json loop, same pages"),
    ("source", "interim HTTP source (Source::poll_chunks)"),
    (
        "bare-oversized",
        "bare loop, one oversized page (no Content-Length)",
    ),
    (
        "source-oversized",
        "interim, one oversized page (no Content-Length)",
    ),
    (
        "source-declared",
        "interim, one oversized page (Content-Length)",
    ),
];

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--measure") {
        let mode = args.get(i + 1).cloned().unwrap_or_default();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        return rt.block_on(measure(&mode, sizes()));
    }
    let s = sizes();
    println!(
        "interim HTTP source benchmark ({} cores): {} tickets in pages of {}, oversized page {} MB",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        s.tickets,
        s.page,
        s.oversized_mb
    );
    println!();
    println!(
        "{:<54} {:>10} {:>12} {:>12}  outcome",
        "measurement", "seconds", "tickets/s", "peak RSS MB"
    );
    let exe = std::env::current_exe()?;
    for (mode, what) in MODES {
        let out = Command::new(&exe).args(["--measure", mode]).output()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        match stdout.lines().find_map(|l| l.strip_prefix("RESULT ")) {
            Some(result) => println!("{what:<54} {result}"),
            None => println!(
                "{what:<54} FAILED: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        }
    }
    Ok(())
}

/// Peak resident set size of this process, in MB.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn report(secs: f64, tickets: usize, outcome: &str) {
    let rate = if tickets > 0 {
        format!("{:.0}", tickets as f64 / secs)
    } else {
        "-".into()
    };
    println!(
        "RESULT {secs:>10.2} {rate:>12} {:>12.0}  {outcome}",
        peak_rss_mb()
    );
}

/// One ticket as a helpdesk API returns it (about 420 bytes).
fn ticket(id: usize, since: &str) -> String {
    format!(
        r#"{{"id":{id},"subject":"Printer on floor {} does not print","status":2,"priority":1,"group_id":{},"type":"Question","requester":{{"id":{},"name":"Customer {id}","email":"customer{id}@example.com"}},"created_at":"{since}","updated_at":"{since}","due_by":"{since}","tags":["printer","hardware"],"custom_fields":{{"product":"office"}},"stats":{{"agent_responded_at":null,"requester_responded_at":"{since}"}}}}"#,
        id % 40,
        id % 20,
        100_000 + id
    )
}

#[derive(Clone)]
struct Api {
    base: String,
    sizes: Sizes,
    since: String,
}

/// The value of `name` in the query of `uri` ("" for a bare name).
fn param<'a>(uri: &'a Uri, name: &str) -> Option<&'a str> {
    uri.query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })
}

/// `/tickets?page=N`: `{"tickets": [...], "next": URL or null}`.
async fn tickets(State(api): State<Api>, uri: Uri) -> Response {
    let n = param(&uri, "page")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1usize)
        .max(1);
    let first = (n - 1) * api.sizes.page;
    let last = (first + api.sizes.page).min(api.sizes.tickets);
    let mut body = String::with_capacity(api.sizes.page * 450 + 100);
    body.push_str(r#"{"tickets":["#);
    for id in first..last {
        if id > first {
            body.push(',');
        }
        body.push_str(&ticket(id, &api.since));
    }
    body.push_str("],\"next\":");
    if last < api.sizes.tickets {
        body.push_str(&format!("\"{}/tickets?page={}\"}}", api.base, n + 1));
    } else {
        body.push_str("null}");
    }
    json_response(Body::from(body), None)
}

/// `/oversized` (`?declared` adds Content-Length): one page of
/// `oversized_mb` MB, streamed in 64 kB chunks of tickets.
async fn oversized(State(api): State<Api>, uri: Uri) -> Response {
    let item = ticket(1, &api.since);
    let per_chunk = 64 * 1024 / (item.len() + 1);
    let chunk = Bytes::from(format!("{item},").repeat(per_chunk));
    let head = Bytes::from_static(br#"{"tickets":["#);
    let tail = Bytes::from(format!("{item}]}}"));
    let chunks = (api.sizes.oversized_mb << 20) / chunk.len();
    let length = head.len() + chunks * chunk.len() + tail.len();
    let parts = std::iter::once(head)
        .chain(std::iter::repeat_n(chunk, chunks))
        .chain(std::iter::once(tail))
        .map(Ok::<_, Infallible>);
    let declared = param(&uri, "declared").is_some();
    json_response(
        Body::from_stream(futures::stream::iter(parts)),
        declared.then_some(length),
    )
}

fn json_response(body: Body, length: Option<usize>) -> Response {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(length) = length
        && let Ok(value) = length.to_string().parse()
    {
        headers.insert(CONTENT_LENGTH, value);
    }
    response
}

async fn serve(sizes: Sizes) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let since = (Utc::now() - chrono::Duration::hours(2)).to_rfc3339();
    let api = Api {
        base: base.clone(),
        sizes,
        since,
    };
    let app = axum::Router::new()
        .route("/tickets", axum::routing::get(tickets))
        .route("/oversized", axum::routing::get(oversized))
        .with_state(api);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(base)
}

fn source(url: &str) -> anyhow::Result<Source> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("interim.toml");
    std::fs::write(
        &path,
        format!(
            r#"[store]
url = "sqlite://{d}/ledger.db"
[source]
kind = "http"
url = "{url}"
items = "/tickets"
fields = {{ id = "/id", subject = "/subject", state = "/status", priority = "/priority", queue = "/group_id", customer_email = "/requester/email", customer_name = "/requester/name", waiting_since = ["/stats/requester_responded_at", "/created_at"], updated_at = "/updated_at" }}
pagination = {{ kind = "next_url", pointer = "/next" }}
max_pages = 100000
max_rows = 100000000
timeout = "30m"
[channels.out]
kind = "file"
path = "{d}/out"
[[policies]]
name = "p"
after = "1h"
channel = "out"
template = "interim"
"#,
            d = dir.path().display()
        ),
    )?;
    let config = interim::setup::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
    Source::new(&config.settings.source)
}

/// Reads every page through the source, as the daemon's poll does.
async fn read_with_source(url: &str) -> (usize, Result<(), String>) {
    let source = match source(url) {
        Ok(source) => source,
        Err(e) => return (0, Err(format!("{e:#}"))),
    };
    let mut poll = source.poll_chunks(Utc::now(), PollKind::Full, interim::daemon::CHUNK);
    let mut tickets = 0;
    while let Some(chunk) = poll.next_chunk().await {
        match chunk {
            Ok(snapshot) => tickets += snapshot.tickets.len(),
            Err(e) => return (tickets, Err(format!("{e:#}"))),
        }
    }
    (tickets, Ok(()))
}

/// The bare loop: each page whole into one `Value`, items counted.
async fn read_bare(url: &str) -> anyhow::Result<usize> {
    interim::net::install_crypto_provider();
    let client = reqwest::Client::new();
    let mut next = Some(url.to_owned());
    let mut tickets = 0;
    while let Some(url) = next.take() {
        let bytes = client.get(&url).send().await?.bytes().await?;
        let page: Value = serde_json::from_slice(&bytes)?;
        tickets += page["tickets"].as_array().map_or(0, Vec::len);
        next = page["next"].as_str().map(str::to_owned);
    }
    Ok(tickets)
}

async fn measure(mode: &str, sizes: Sizes) -> anyhow::Result<()> {
    let base = serve(sizes).await?;
    let started = Instant::now();
    match mode {
        "idle" => {
            tokio::time::sleep(Duration::from_millis(200)).await;
            report(0.0, 0, "baseline");
        }
        "bare" | "bare-oversized" => {
            let url = if mode == "bare" {
                format!("{base}/tickets")
            } else {
                format!("{base}/oversized")
            };
            let tickets = read_bare(&url).await?;
            report(
                started.elapsed().as_secs_f64(),
                tickets,
                &format!("read {tickets}"),
            );
        }
        _ => {
            let url = match mode {
                "source" => format!("{base}/tickets"),
                "source-oversized" => format!("{base}/oversized"),
                _ => format!("{base}/oversized?declared"),
            };
            let (tickets, outcome) = read_with_source(&url).await;
            let outcome = match outcome {
                Ok(()) => format!("read {tickets}"),
                // The reason only: what follows the URL's "?***: ".
                Err(e) => format!("failed: {}", e.rsplit(": ").next().unwrap_or(&e)),
            };
            report(started.elapsed().as_secs_f64(), tickets, &outcome);
        }
    }
    Ok(())
}
