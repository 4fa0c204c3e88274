//! The pipeline benchmark: `cargo bench --bench pipeline`.
//!
//! Prints one table: planning throughput (full and incremental polls) at
//! several ticket counts, end-to-end delivery rates into a local webhook
//! receiver and SMTP server for the SQLite and PostgreSQL stores next to a
//! bare client loop with no ledger, the lag between the planned send time
//! and delivery, and peak RSS.
//!
//! Every delivery row is followed by its ratio against the bare loop of
//! the same run, every steady poll by its ratio against a bare SELECT of
//! the same rows; with PostgreSQL, planning and delivery run on both
//! stores, and two daemon processes share one PostgreSQL store.
//!
//! Environment: INTERIM_BENCH_SIZES (default "10000,100000"; add 1000000
//! for the full run), INTERIM_BENCH_NOTICES (default 2000),
//! INTERIM_TEST_POSTGRES_URL (PostgreSQL rows are skipped without it),
//! INTERIM_BENCH_DELIVERY=0 (planning rows only),
//! INTERIM_BENCH_STEADY_REPEAT=N (N more steady polls, for a profile).

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use interim::daemon::{PlanMemo, ProblemLog, poll_and_plan};
use interim::setup::{self, Config};
use interim::source::{PollKind, Source};
use interim::store::{NoticeFilter, Store};
use sqlx::Connection;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "whsec_aW50ZXJpbS1iZW5jaG1hcmstc2VjcmV0LTMyLWJ5dGVzIQ==";
const CONCURRENCY: usize = 8;

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let sizes: Vec<usize> = std::env::var("INTERIM_BENCH_SIZES")
        .unwrap_or_else(|_| "10000,100000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let notices: usize = std::env::var("INTERIM_BENCH_NOTICES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    println!(
        "interim pipeline benchmark ({} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!();
    println!("{:<58} {:>14} {:>12}", "measurement", "value", "unit");
    for &n in &sizes {
        for (store_name, admin) in stores() {
            planning(n, store_name, admin.as_ref()).await?;
        }
    }
    if std::env::var("INTERIM_BENCH_DELIVERY").as_deref() != Ok("0") {
        delivery(notices).await?;
    }
    Ok(())
}

fn row(what: &str, value: f64, unit: &str) {
    println!("{what:<58} {value:>14.1} {unit:>12}");
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

fn config_text(
    dir: &Path,
    store_url: &str,
    channel: &str,
    after: &str,
    incremental: bool,
) -> String {
    config_with_poll(dir, store_url, channel, after, incremental, "1s")
}

fn config_with_poll(
    dir: &Path,
    store_url: &str,
    channel: &str,
    after: &str,
    incremental: bool,
    poll_interval: &str,
) -> String {
    let d = dir.display();
    let mut policies = String::new();
    for q in 0..20 {
        policies.push_str(&format!(
            "[[policies]]\nname = \"p{q}\"\nmatch = {{ queue = [\"q{q}\"] }}\nafter = \"{after}\"\nrepeat_every = \"1d\"\nchannel = \"out\"\ntemplate = \"interim\"\n"
        ));
    }
    let incremental_query = if incremental {
        "incremental_query = \"SELECT id, subject, state, queue, customer_email, language, waiting_since, updated_at FROM tickets WHERE updated_at >= :since\"\n"
    } else {
        ""
    };
    format!(
        r#"[daemon]
poll_interval = "{poll_interval}"
max_snapshot_age = "10m"
shutdown_timeout = "5s"
[store]
url = "{store_url}"
claim_lease = "60s"
[source]
kind = "sql"
url = "sqlite://{d}/helpdesk.db"
query = "SELECT id, subject, state, queue, customer_email, language, waiting_since, updated_at FROM tickets"
{incremental_query}timeout = "10m"
{channel}
{policies}"#
    )
}

async fn helpdesk(
    dir: &Path,
    n: usize,
    waited_secs: i64,
) -> anyhow::Result<sqlx::SqliteConnection> {
    let url = format!("sqlite://{}/helpdesk.db?mode=rwc", dir.display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await?;
    sqlx::query("CREATE TABLE tickets (id INTEGER PRIMARY KEY, subject TEXT, state TEXT, queue TEXT, customer_email TEXT, language TEXT, waiting_since TEXT, updated_at TEXT)")
        .execute(&mut conn)
        .await?;
    let since = (Utc::now() - chrono::Duration::seconds(waited_secs))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let mut tx = conn.begin().await?;
    for i in 0..n {
        sqlx::query("INSERT INTO tickets VALUES (?1, ?2, 'open', ?3, ?4, 'en', ?5, ?5)")
            .bind(i as i64)
            .bind(format!("Ticket {i}"))
            .bind(format!("q{}", i % 20))
            .bind(format!("customer{i}@example.com"))
            .bind(&since)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(conn)
}

/// The stores a run measures: SQLite always, PostgreSQL with
/// INTERIM_TEST_POSTGRES_URL (the admin URL a fresh database is made from).
fn stores() -> Vec<(&'static str, Option<String>)> {
    let mut stores = vec![("SQLite", None)];
    if let Ok(admin) = std::env::var("INTERIM_TEST_POSTGRES_URL") {
        stores.push(("PostgreSQL", Some(admin)));
    }
    stores
}

/// A store URL for one measurement: a SQLite file in `dir`, or a fresh
/// PostgreSQL database (dropped by [`drop_store`]).
async fn fresh_store(
    dir: &Path,
    admin: Option<&String>,
) -> anyhow::Result<(String, Option<(String, String)>)> {
    let Some(admin) = admin else {
        return Ok((format!("sqlite://{}/ledger.db", dir.display()), None));
    };
    let name = format!("interim_bench_{:x}", rand::random::<u32>());
    let mut conn = sqlx::PgConnection::connect(admin).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await?;
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    Ok((format!("{base}/{name}"), Some((admin.clone(), name))))
}

async fn drop_store(cleanup: Option<(String, String)>) {
    let Some((admin, name)) = cleanup else { return };
    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await;
    }
}

/// The bare baseline of a poll: the same rows read from the same helpdesk
/// with sqlx into plain values, no column contract, no ledger.
async fn bare_select(dir: &Path) -> anyhow::Result<f64> {
    use sqlx::Row;
    let url = format!("sqlite://{}/helpdesk.db?mode=ro", dir.display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await?;
    let t = Instant::now();
    // Streamed, as the daemon reads: a million rows held at once made
    // this baseline the process's peak memory (1.4 GB).
    let mut rows = sqlx::query(
        "SELECT id, subject, state, queue, customer_email, language, waiting_since, updated_at FROM tickets",
    )
    .fetch(&mut conn);
    let mut bytes = 0usize;
    while let Some(row) = futures::TryStreamExt::try_next(&mut rows).await? {
        let id: i64 = row.try_get(0)?;
        bytes += usize::try_from(id).unwrap_or(0) % 2;
        for i in 1..8 {
            let text: Option<String> = row.try_get(i)?;
            bytes += text.map_or(0, |t| t.len());
        }
    }
    let secs = t.elapsed().as_secs_f64();
    std::hint::black_box(bytes);
    Ok(secs)
}

fn load(dir: &Path, text: &str) -> anyhow::Result<Config> {
    let path = dir.join("interim.toml");
    std::fs::write(&path, text)?;
    setup::load(&path).map_err(|e| anyhow::anyhow!("{e}"))
}

async fn planning(n: usize, store_name: &str, admin: Option<&String>) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let channel = format!(
        "[channels.out]\nkind = \"file\"\npath = \"{}/out\"\nformat = \"json\"",
        dir.path().display()
    );
    let (store_url, cleanup) = fresh_store(dir.path(), admin).await?;
    let config = load(
        dir.path(),
        &config_text(dir.path(), &store_url, &channel, "1h", true),
    )?;
    let mut helpdesk = helpdesk(dir.path(), n, 60).await?;
    let settings = &config.settings;
    let source = Source::new(&settings.source)?;
    let store = Store::open(&settings.store.url).await?;
    let mut problems = ProblemLog::default();
    let mut memo = PlanMemo::default();
    // One poll of `kind` now, timed; the memo carries over, as in the daemon.
    macro_rules! timed_poll {
        ($kind:expr) => {{
            let t = Instant::now();
            poll_and_plan(
                &source,
                &store,
                settings,
                Utc::now(),
                $kind,
                &mut problems,
                &mut memo,
            )
            .await?;
            t.elapsed().as_secs_f64()
        }};
    }

    let first = timed_poll!(PollKind::Full);
    row(
        &format!("planning {n} tickets, {store_name} store, first full poll (all new)"),
        n as f64 / first,
        "tickets/s",
    );
    // The second poll plans again what the first wrote (its own changes
    // are changes like any other); the third is the steady state.
    let second = timed_poll!(PollKind::Full);
    row(
        &format!(
            "planning {n} tickets, {store_name} store, second full poll (its own writes changed every ticket)"
        ),
        second * 1000.0,
        "ms",
    );
    let steady = timed_poll!(PollKind::Full);
    // More steady polls, for a profile dominated by them.
    let repeat: usize = std::env::var("INTERIM_BENCH_STEADY_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    for _ in 0..repeat {
        let _ = timed_poll!(PollKind::Full);
    }
    let bare = bare_select(dir.path()).await?;
    row(
        &format!("planning {n} tickets, {store_name} store, full poll (steady)"),
        steady * 1000.0,
        "ms",
    );
    row(
        &format!("  bare SELECT of the same {n} rows (no contract, no ledger)"),
        bare * 1000.0,
        "ms",
    );
    row(
        "  steady full poll / bare SELECT",
        steady / bare.max(1e-9),
        "×",
    );
    breakdown(n, &source, &store, settings).await?;

    // 1 % of the tickets change; the incremental poll reads only those.
    let changed = (n / 100).max(1);
    let now_text = Utc::now().format("%Y-%m-%d %H:%M:%S").to_string();
    sqlx::query(
        "UPDATE tickets SET subject = subject || ' (updated)', updated_at = ?1 WHERE id % 100 = 0",
    )
    .bind(&now_text)
    .execute(&mut helpdesk)
    .await?;
    let since = Utc::now() - chrono::Duration::seconds(1);
    let inc = timed_poll!(PollKind::Changes { since });
    row(
        &format!("planning {n} tickets, {store_name} store, incremental poll, {changed} changed"),
        inc * 1000.0,
        "ms",
    );
    row(
        &format!("peak RSS after {n} tracked tickets"),
        peak_rss_mb(),
        "MB",
    );
    store.close().await;
    source.close().await;
    drop_store(cleanup).await;
    Ok(())
}

/// Where a steady full poll spends its time, step by step (the profile
/// behind BENCHMARKS.md), on one chunk of up to 5,000 rows scaled to the
/// whole poll.
async fn breakdown(
    n: usize,
    source: &Source,
    store: &Store,
    settings: &interim::config::Settings,
) -> anyhow::Result<()> {
    let t = Instant::now();
    let mut poll = source.poll_chunks(Utc::now(), PollKind::Full, 5000);
    let Some(chunk) = poll.next_chunk().await else {
        return Ok(());
    };
    let chunk = chunk?;
    let read = t.elapsed().as_secs_f64();
    drop(poll);
    let ids: Vec<&str> = chunk.tickets.iter().map(|t| t.id.as_str()).collect();
    // The chunk holds min(n, 5,000) rows; scaled to the whole poll.
    let scale = n as f64 / ids.len().max(1) as f64;
    let t = Instant::now();
    let series = store.load_series_for(false, &ids).await?;
    let load = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let plan = interim::planner::plan(
        settings,
        &chunk.tickets,
        &chunk.ended,
        &series,
        Utc::now(),
        interim::planner::Mode::Live,
    );
    let planning = t.elapsed().as_secs_f64();
    let t = Instant::now();
    store.apply_plan(&plan, Utc::now()).await?;
    let apply = t.elapsed().as_secs_f64();
    for (what, secs) in [
        ("read + column contract", read),
        ("load series", load),
        ("plan", planning),
        ("write (no changes)", apply),
    ] {
        row(
            &format!("  steady poll of {n}, {what} (scaled from one chunk)"),
            secs * scale * 1000.0,
            "ms",
        );
    }
    Ok(())
}

/// A webhook receiver counting requests (no signature check: the bare loop
/// and the daemon pay the same receiver cost).
async fn receiver(delay: Duration) -> anyhow::Result<(String, Arc<AtomicUsize>)> {
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |_body: axum::body::Bytes| {
            let counter = counter.clone();
            async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                counter.fetch_add(1, Ordering::Relaxed);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, count))
}

#[derive(Clone)]
struct CountingSmtp(Arc<AtomicUsize>);

impl mailin_embedded::Handler for CountingSmtp {
    fn data_end(&mut self) -> mailin_embedded::Response {
        self.0.fetch_add(1, Ordering::Relaxed);
        mailin_embedded::response::OK
    }
}

fn smtp_sink() -> anyhow::Result<(u16, Arc<AtomicUsize>)> {
    let count = Arc::new(AtomicUsize::new(0));
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let mut server = mailin_embedded::Server::new(CountingSmtp(count.clone()));
    server.with_tcp_listener(listener).with_num_threads(16);
    std::thread::spawn(move || {
        let _ = server.serve();
    });
    Ok((port, count))
}

/// The webhook signing secret, in a file (secret_file) that outlives the run.
fn secret_file() -> anyhow::Result<String> {
    let path = std::env::temp_dir().join("interim-bench-webhook-secret");
    std::fs::write(&path, SECRET)?;
    Ok(path.display().to_string())
}

/// Waits until the first of `n` new notices arrives, then until all have:
/// the delivery rate, without the daemon's start-up and first poll.
async fn delivery_rate(
    count: &AtomicUsize,
    before: usize,
    n: usize,
    limit: Duration,
) -> Option<f64> {
    let start = Instant::now();
    while count.load(Ordering::Relaxed) == before {
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let first = Instant::now();
    wait_for(count, before + n, limit).await?;
    Some((n - 1) as f64 / first.elapsed().as_secs_f64())
}

async fn wait_for(count: &AtomicUsize, target: usize, limit: Duration) -> Option<f64> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if count.load(Ordering::Relaxed) >= target {
            return Some(start.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// One daemon in this process delivering `notices` due notices through
/// `channel` into a store of `admin`'s kind: notices/s from the first
/// received to the last, None when they did not all arrive.
async fn daemon_rate(
    channel: &str,
    count: &AtomicUsize,
    notices: usize,
    admin: Option<&String>,
) -> anyhow::Result<Option<f64>> {
    let dir = tempfile::tempdir()?;
    let (store_url, cleanup) = fresh_store(dir.path(), admin).await?;
    let config = load(
        dir.path(),
        &config_text(dir.path(), &store_url, channel, "1s", false),
    )?;
    let _helpdesk = helpdesk(dir.path(), notices, 3600).await?;
    let before = count.load(Ordering::Relaxed);
    let shutdown = CancellationToken::new();
    let daemon = tokio::spawn(interim::daemon::run_with_listener(
        config,
        None,
        shutdown.clone(),
    ));
    let rate = delivery_rate(count, before, notices, Duration::from_secs(600)).await;
    shutdown.cancel();
    let _ = daemon.await;
    drop_store(cleanup).await;
    Ok(rate)
}

fn rate_row(what: &str, rate: Option<f64>) {
    match rate {
        Some(rate) => row(what, rate, "notices/s"),
        None => row(&format!("{what}: INCOMPLETE"), 0.0, "notices/s"),
    }
}

/// `ours` against the bare loop of the same run.
fn ratio_row(ours: Option<f64>, bare: f64) {
    if let Some(ours) = ours {
        row(
            "  the row above / the same run's bare loop",
            100.0 * ours / bare.max(1e-9),
            "%",
        );
    }
}

async fn delivery(notices: usize) -> anyhow::Result<()> {
    let (hook_url, hook_count) = receiver(Duration::ZERO).await?;
    let (smtp_port, smtp_count) = smtp_sink()?;
    let (slow_url, slow_count) = receiver(Duration::from_millis(5)).await?;
    let secret = secret_file()?;
    let webhook = |url: &str| {
        format!(
            "[channels.out]\nkind = \"webhook\"\nurl = \"{url}\"\nsecret_file = \"{secret}\"\ntimeout = \"10s\"\nconcurrency = {CONCURRENCY}"
        )
    };
    let email = format!(
        "[channels.out]\nkind = \"email\"\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"none\"\nfrom = \"Bench <bench@example.com>\"\ntimeout = \"10s\"\nconcurrency = {CONCURRENCY}"
    );
    let bare_instant =
        bare_webhook_loop(&hook_url, &hook_count, notices, "instant receiver").await?;
    let bare_slow = bare_webhook_loop(&slow_url, &slow_count, notices, "5 ms receiver").await?;
    let bare_smtp = bare_smtp_loop(smtp_port, &smtp_count, notices).await?;
    for (store_name, admin) in stores() {
        let admin = admin.as_ref();
        for (what, channel, count, bare) in [
            (
                "webhook (instant receiver)",
                webhook(&hook_url),
                &hook_count,
                bare_instant,
            ),
            (
                "webhook (5 ms receiver)",
                webhook(&slow_url),
                &slow_count,
                bare_slow,
            ),
            ("SMTP", email.clone(), &smtp_count, bare_smtp),
        ] {
            let rate = daemon_rate(&channel, count, notices, admin).await?;
            let label = format!("delivery {what}, {store_name} store, end to end");
            rate_row(&label, rate);
            ratio_row(rate, bare);
        }
    }
    steady_lag(&hook_url, &hook_count).await?;
    if let Ok(admin) = std::env::var("INTERIM_TEST_POSTGRES_URL") {
        two_instances(&admin, notices).await?;
    }
    Ok(())
}

/// Two daemon processes on one PostgreSQL store deliver `notices`
/// notices: the rate from the first to the last distinct notice, and the
/// duplicates (requests beyond one per notice id), which must be 0.
async fn two_instances(admin: &str, notices: usize) -> anyhow::Result<()> {
    let ids = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = ids.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let seen = seen.clone();
            async move {
                let id = headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                seen.lock().unwrap_or_else(|e| e.into_inner()).push(id);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let dir = tempfile::tempdir()?;
    let admin = admin.to_owned();
    let (store_url, cleanup) = fresh_store(dir.path(), Some(&admin)).await?;
    let secret = secret_file()?;
    let channel = format!(
        "[channels.out]\nkind = \"webhook\"\nurl = \"{url}\"\nsecret_file = \"{secret}\"\ntimeout = \"10s\"\nconcurrency = {CONCURRENCY}"
    );
    let _helpdesk = helpdesk(dir.path(), notices, 3600).await?;
    let mut daemons = Vec::new();
    for instance in 0..2 {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let text = format!(
            "{}\n[http]\nlisten = \"127.0.0.1:{port}\"\n",
            config_text(dir.path(), &store_url, &channel, "1s", false)
        );
        let path = dir.path().join(format!("instance{instance}.toml"));
        std::fs::write(&path, text)?;
        daemons.push(
            std::process::Command::new(env!("CARGO_BIN_EXE_interim"))
                .args(["--config", &path.display().to_string(), "run"])
                .env("RUST_LOG", "warn")
                .stderr(std::process::Stdio::null())
                .spawn()?,
        );
    }
    let distinct = |ids: &[String]| ids.iter().collect::<std::collections::HashSet<_>>().len();
    let received = || ids.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let deadline = Instant::now() + Duration::from_secs(600);
    while received().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let first = Instant::now();
    while distinct(&received()) < notices && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = first.elapsed().as_secs_f64();
    // Late duplicates would come within a lease; wait a little for them.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for mut daemon in daemons {
        let _ = daemon.kill();
        let _ = daemon.wait();
    }
    let all = received();
    let unique = distinct(&all);
    rate_row(
        "delivery webhook (instant receiver), 2 instances on one PostgreSQL store",
        (unique >= notices).then(|| (notices - 1) as f64 / took),
    );
    row(
        "  duplicates (requests beyond one per notice)",
        all.len().saturating_sub(unique) as f64,
        "requests",
    );
    drop_store(cleanup).await;
    Ok(())
}

async fn bare_webhook_loop(
    url: &str,
    count: &AtomicUsize,
    n: usize,
    what: &str,
) -> anyhow::Result<f64> {
    interim::net::install_crypto_provider();
    let client = reqwest::Client::new();
    let body = serde_json::to_vec(
        &serde_json::json!({"type": "interim.notice", "message": {"subject": "x".repeat(60), "text": "y".repeat(600)}}),
    )?;
    let before = count.load(Ordering::Relaxed);
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let permit = slots.clone().acquire_owned().await?;
        let (client, body, url) = (client.clone(), body.clone(), url.to_owned());
        tasks.spawn(async move {
            let _ = client
                .post(url)
                .header("webhook-id", i.to_string())
                .body(body)
                .send()
                .await;
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
    let _ = wait_for(count, before + n, Duration::from_secs(60)).await;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    row(
        &format!("delivery webhook ({what}), bare client loop (no ledger)"),
        rate,
        "notices/s",
    );
    Ok(rate)
}

async fn bare_smtp_loop(port: u16, count: &AtomicUsize, n: usize) -> anyhow::Result<f64> {
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(port)
        .build();
    let before = count.load(Ordering::Relaxed);
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let permit = slots.clone().acquire_owned().await?;
        let transport = transport.clone();
        let message = Message::builder()
            .from("Bench <bench@example.com>".parse()?)
            .to(format!("customer{i}@example.com").parse()?)
            .subject("Update on your request")
            .body("y".repeat(600))?;
        tasks.spawn(async move {
            let _ = transport.send(message).await;
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
    let _ = wait_for(count, before + n, Duration::from_secs(60)).await;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    row(
        "delivery SMTP, bare client loop (no ledger)",
        rate,
        "notices/s",
    );
    Ok(rate)
}

/// Lag in steady state: tickets become due one by one over ~10 s, below
/// capacity, as in production.
async fn steady_lag(url: &str, count: &AtomicUsize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let secret = secret_file()?;
    let channel = format!(
        "[channels.out]\nkind = \"webhook\"\nurl = \"{url}\"\nsecret_file = \"{secret}\"\ntimeout = \"10s\""
    );
    let store_url = format!("sqlite://{}/ledger.db", dir.path().display());
    // poll_interval 30 s: the lag must not depend on it.
    let config = load(
        dir.path(),
        &config_with_poll(dir.path(), &store_url, &channel, "30s", false, "30s"),
    )?;
    let n = 200;
    let mut conn = helpdesk(dir.path(), 0, 0).await?;
    let now = Utc::now();
    for i in 0..n {
        // Due between 5 s and 15 s from now (after = 30s): after the
        // daemon's start-up (migrations, first poll), so the rows measure
        // the steady state, not how long starting took.
        let since =
            now - chrono::Duration::seconds(30) + chrono::Duration::milliseconds(5000 + i * 50);
        sqlx::query("INSERT INTO tickets VALUES (?1, 'x', 'open', ?2, ?3, 'en', ?4, ?4)")
            .bind(i)
            .bind(format!("q{}", i % 20))
            .bind(format!("c{i}@example.com"))
            .bind(since.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
            .execute(&mut conn)
            .await?;
    }
    let before = count.load(Ordering::Relaxed);
    let shutdown = CancellationToken::new();
    let daemon = tokio::spawn(interim::daemon::run_with_listener(
        config.clone(),
        None,
        shutdown.clone(),
    ));
    let _ = wait_for(count, before + n as usize, Duration::from_secs(60)).await;
    shutdown.cancel();
    let _ = daemon.await;
    let store = Store::open(&config.settings.store.url).await?;
    let rows = store.list(&NoticeFilter::default()).await?;
    store.close().await;
    let mut lags: Vec<f64> = rows
        .iter()
        .filter_map(|r| r.sent_at.map(|s| (s - r.send_at).num_milliseconds() as f64))
        .collect();
    lags.sort_by(|a, b| a.total_cmp(b));
    if !lags.is_empty() {
        row(
            "lag due → sent, p50 (steady, poll_interval 30s)",
            lags[(lags.len() - 1) / 2],
            "ms",
        );
        row(
            "lag due → sent, p99 (steady, poll_interval 30s)",
            lags[((lags.len() - 1) as f64 * 0.99) as usize],
            "ms",
        );
    }
    row("peak RSS of the benchmark process", peak_rss_mb(), "MB");
    Ok(())
}
