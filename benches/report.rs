//! The report benchmark: `cargo bench --bench report`.
//!
//! Fills a ledger with a wait history of N waits over 60 days (one in 50
//! still open) and 3 sent notices per wait with their promise outcomes,
//! then measures `interim report` over all of it three ways: the bare
//! baseline (the rows of the report's statement read with sqlx into plain
//! values, nothing counted), the report in this process (the store's read
//! folded into `promise_report::ReportBuilder`), and the binary end to end (`interim report
//! --format json`, with its peak RSS when /usr/bin/time is there).
//!
//! Environment: INTERIM_BENCH_REPORT_WAITS (default "100000"; the issue's
//! row is 1000000, i.e. 3M notices), INTERIM_TEST_POSTGRES_URL (adds the
//! PostgreSQL store).

use std::path::Path;
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use interim::promise_report::{GroupBy, ReportBuilder, ReportRequest};
use interim::store::Store;
use sqlx::{AssertSqlSafe, Connection, Row};

/// The history spans this many days, ending a day ago (so that every
/// notice was sent before now); the report covers it all.
const DAYS: i64 = 60;

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    let sizes: Vec<usize> = std::env::var("INTERIM_BENCH_REPORT_WAITS")
        .unwrap_or_else(|_| "100000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!("interim report benchmark");
    println!();
    println!("| measurement | value |");
    println!("|---|---:|");
    let mut stores: Vec<(&str, Option<String>)> = vec![("SQLite", None)];
    if let Ok(admin) = std::env::var("INTERIM_TEST_POSTGRES_URL") {
        stores.push(("PostgreSQL", Some(admin)));
    }
    for &n in &sizes {
        for (name, admin) in &stores {
            measure(n, name, admin.as_deref()).await?;
        }
    }
    Ok(())
}

fn row(what: &str, value: &str) {
    println!("| {what} | {value} |");
}

async fn measure(n: usize, store_name: &str, admin: Option<&str>) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (url, cleanup) = match admin {
        None => (format!("sqlite://{}/ledger.db", dir.path().display()), None),
        Some(admin) => {
            let name = format!("interim_bench_{:x}", rand::random::<u32>());
            let mut conn = sqlx::PgConnection::connect(admin).await?;
            sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await?;
            let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
            (format!("{base}/{name}"), Some((admin.to_owned(), name)))
        }
    };
    let label = format!(
        "{}k waits, {}k notices, {store_name}",
        n / 1000,
        3 * n / 1000
    );
    let now = Utc::now();
    let store = Store::open(&interim::secret::SecretUrl::new(url.clone())).await?;
    let t = Instant::now();
    fill(&url, n, now).await?;
    row(
        &format!("filling the ledger: {label}"),
        &format!("{:.1} s", t.elapsed().as_secs_f64()),
    );

    let since = now - chrono::Duration::days(DAYS + 2);
    let bare = bare_read(&url, since, now).await?;
    row(&format!("bare read of the same rows: {label}"), &secs(bare));

    let t = Instant::now();
    let request = ReportRequest {
        since,
        until: now,
        by: GroupBy::Queue,
        candidates: ["4h", "8h", "1d", "2d", "5d"]
            .iter()
            .filter_map(|c| Some(((*c).to_owned(), humantime::parse_duration(c).ok()?)))
            .collect(),
    };
    let mut builder = ReportBuilder::new(&request, now, |_| None);
    store
        .fold_report_waits(false, since, now, |w| builder.add(&w))
        .await?;
    let report = builder.finish();
    let ours = t.elapsed().as_secs_f64();
    assert_eq!(report.total.waits_started as usize, n, "every wait counted");
    assert_eq!(
        report.total.notices_sent as usize,
        3 * n,
        "every notice counted"
    );
    row(
        &format!("**report in process (read + fold): {label}**"),
        &format!("**{}** ({:.1}× bare)", secs(ours), ours / bare.max(1e-9)),
    );
    store.close().await;

    pages(&url, &label, now).await?;

    let (elapsed, rss) = binary_report(dir.path(), &url)?;
    row(
        &format!("**`interim report --format json` end to end: {label}**"),
        &format!(
            "**{}**{}",
            secs(elapsed),
            rss.map(|mb| format!(", peak RSS {mb:.0} MB"))
                .unwrap_or_default()
        ),
    );
    if let Some((admin, name)) = cleanup {
        let mut conn = sqlx::PgConnection::connect(&admin).await?;
        sqlx::query(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await?;
    }
    Ok(())
}

/// What the status pages read from this ledger, each the best of five
/// runs, against a bare round trip (`SELECT 1`) on the same pool.
async fn pages(url: &str, label: &str, now: DateTime<Utc>) -> anyhow::Result<()> {
    use interim::ledger::NoticePage;
    let store = Store::open(&interim::secret::SecretUrl::new(url.to_owned())).await?;
    let mut any = sqlx::AnyConnection::connect(url).await?;
    let mut bare = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        sqlx::query("SELECT 1").execute(&mut any).await?;
        bare = bare.min(t.elapsed().as_secs_f64());
    }
    let first = NoticePage {
        limit: 50,
        ..NoticePage::default()
    };
    let filtered = NoticePage {
        status: Some(interim::notice::Status::Sent),
        policy: Some("p3".into()),
        ..first.clone()
    };
    // The history ends a day ago: count "today" and "the last 30 days"
    // from its last day, so that the counts read real ranges.
    let now = now - chrono::Duration::days(1);
    let today = now - chrono::Duration::hours(24);
    let mut times = Vec::new();
    for what in [
        "overview counts",
        "ledger, first page",
        "ledger, sent of one policy",
        "upcoming",
    ] {
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            match what {
                "overview counts" => drop(store.overview_counts(false, now, today).await?),
                "ledger, first page" => drop(store.page_notices(&first).await?),
                "ledger, sent of one policy" => drop(store.page_notices(&filtered).await?),
                _ => drop(store.upcoming_notices(false, 101).await?),
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        times.push((what, best));
    }
    for (what, best) in times {
        row(
            &format!("status page read, {what}: {label}"),
            &format!(
                "{} ({:.0}× a bare round trip of {})",
                secs(best),
                best / bare.max(1e-9),
                secs(bare)
            ),
        );
    }
    store.close().await;
    Ok(())
}

fn secs(s: f64) -> String {
    if s < 0.01 {
        format!("{:.2} ms", s * 1000.0)
    } else if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else {
        format!("{s:.2} s")
    }
}

/// N waits evenly over the last [`DAYS`] days, lasting up to three days
/// (one in 50 still open), in five queues; three sent notices each, an
/// hour apart, the first two with a promise: mostly kept, some superseded,
/// broken or still pending.
async fn fill(url: &str, n: usize, now: DateTime<Utc>) -> anyhow::Result<()> {
    let base = (now - chrono::Duration::days(DAYS + 1)).timestamp_millis();
    let step = DAYS * 86_400_000 / i64::try_from(n.max(1))?;
    let (waits, notices) = if url.starts_with("sqlite:") {
        let series = |count: usize| {
            format!(
                "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < {})",
                count - 1
            )
        };
        (
            format!(
                "{} INSERT INTO waits (ticket_id, episode, dry_run, ticket_number, queue, priority,
                    origin, language, policies, first_due_at, ended_at, end_reason, updated_at)
                 SELECT CAST(i AS TEXT), {base} + i * {step}, 0, '#' || i, 'q' || (i % 5), 'normal',
                    'email', 'en', 'p' || (i % 5), {base} + i * {step} + 3600000,
                    CASE WHEN i % 50 = 0 THEN NULL ELSE {base} + i * {step} + (i * 7919 % 259200) * 1000 END,
                    CASE WHEN i % 50 = 0 THEN NULL ELSE 'left' END, {base}
                 FROM s",
                series(n)
            ),
            format!(
                "{} INSERT INTO notices (id, ticket_id, policy, episode, dry_run, number, max_notices,
                    status, channel, due_at, send_at, next_attempt_at, attempts, sent_at,
                    next_notice_at, ticket, created_at, updated_at, promise_outcome, promise_reason,
                    promise_decided_at)
                 SELECT 'n' || i, CAST(i / 3 AS TEXT), 'p' || (i / 3 % 5), {base} + i / 3 * {step}, 0,
                    i % 3 + 1, 3, 'sent', 'out', t, t, t, 1, t,
                    CASE WHEN i % 3 < 2 THEN t + 3600000 END, '{{}}', t, t,
                    CASE WHEN i % 3 = 2 THEN NULL WHEN i % 7 = 0 THEN 'broken'
                         WHEN i % 5 = 0 THEN 'superseded' WHEN i % 11 = 0 THEN 'pending'
                         ELSE 'kept' END,
                    CASE WHEN i % 3 < 2 AND i % 7 = 0 THEN 'late' END,
                    CASE WHEN i % 3 < 2 AND i % 11 <> 0 THEN t + 3600000 END
                 FROM (SELECT i, {base} + i / 3 * {step} + (i % 3 + 1) * 3600000 AS t FROM s)",
                series(3 * n)
            ),
        )
    } else {
        let at = |ms: &str| format!("to_timestamp(({ms})::double precision / 1000)");
        (
            format!(
                "INSERT INTO waits (ticket_id, episode, dry_run, ticket_number, queue, priority,
                    origin, language, policies, first_due_at, ended_at, end_reason, updated_at)
                 SELECT i::text, {}, false, '#' || i, 'q' || (i % 5), 'normal', 'email', 'en',
                    'p' || (i % 5), {},
                    CASE WHEN i % 50 = 0 THEN NULL ELSE {} END,
                    CASE WHEN i % 50 = 0 THEN NULL ELSE 'left' END, {}
                 FROM generate_series(0::bigint, {}) AS i",
                at(&format!("{base} + i * {step}")),
                at(&format!("{base} + i * {step} + 3600000")),
                at(&format!("{base} + i * {step} + (i * 7919 % 259200) * 1000")),
                at(&base.to_string()),
                n - 1
            ),
            format!(
                "INSERT INTO notices (id, ticket_id, policy, episode, dry_run, number, max_notices,
                    status, channel, due_at, send_at, next_attempt_at, attempts, sent_at,
                    next_notice_at, ticket, created_at, updated_at, promise_outcome, promise_reason,
                    promise_decided_at)
                 SELECT 'n' || i, (i / 3)::text, 'p' || (i / 3 % 5), {}, false, i % 3 + 1, 3,
                    'sent', 'out', t, t, t, 1, t,
                    CASE WHEN i % 3 < 2 THEN t + interval '1 hour' END, '{{}}', t, t,
                    CASE WHEN i % 3 = 2 THEN NULL WHEN i % 7 = 0 THEN 'broken'
                         WHEN i % 5 = 0 THEN 'superseded' WHEN i % 11 = 0 THEN 'pending'
                         ELSE 'kept' END,
                    CASE WHEN i % 3 < 2 AND i % 7 = 0 THEN 'late' END,
                    CASE WHEN i % 3 < 2 AND i % 11 <> 0 THEN t + interval '1 hour' END
                 FROM (SELECT i, {} AS t FROM generate_series(0::bigint, {}) AS i) AS s",
                at(&format!("{base} + i / 3 * {step}")),
                at(&format!("{base} + i / 3 * {step} + (i % 3 + 1) * 3600000")),
                3 * n - 1,
            ),
        )
    };
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    for sql in [waits, notices, "DELETE FROM plan_dirty".to_owned()] {
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await?;
    }
    let analyze = if url.starts_with("sqlite:") {
        "ANALYZE"
    } else {
        "ANALYZE waits; ANALYZE notices"
    };
    sqlx::raw_sql(analyze).execute(&mut conn).await?;
    conn.close().await?;
    Ok(())
}

/// The rows the report reads (its statement: one row per wait with its
/// notices aggregated), streamed with sqlx into plain values and dropped:
/// what reading them costs before anything is counted.
async fn bare_read(url: &str, since: DateTime<Utc>, until: DateTime<Utc>) -> anyhow::Result<f64> {
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    let sql = if url.starts_with("sqlite:") {
        let (s, u) = (since.timestamp_millis(), until.timestamp_millis());
        format!(
            "SELECT w.ticket_id, w.episode, w.ticket_number, w.queue, w.priority, w.origin,
                    w.language, w.policies, w.first_due_at, w.ended_at, w.end_reason,
                    group_concat(n.number),
                    coalesce(sum(n.promise_outcome = 'kept'), 0),
                    coalesce(sum(n.promise_outcome = 'superseded'), 0),
                    coalesce(sum(n.promise_outcome IN ('pending', 'due')), 0),
                    group_concat(CASE WHEN n.promise_outcome = 'broken' THEN n.promise_reason END),
                    coalesce(max(n.number >= n.max_notices
                                 AND (w.ended_at IS NULL OR n.sent_at < w.ended_at)), 0)
             FROM waits w LEFT JOIN notices n
               ON n.ticket_id = w.ticket_id AND n.episode = w.episode AND n.dry_run = w.dry_run
              AND n.status = 'sent' AND n.sent_at >= {s} AND n.sent_at < {u}
             WHERE w.dry_run = 0 AND w.episode < {u} AND (w.ended_at IS NULL OR w.ended_at >= {s})
             GROUP BY w.ticket_id, w.episode, w.dry_run"
        )
    } else {
        // Epoch numbers: the Any driver decodes no timestamptz.
        let ms = |c: &str| format!("(extract(epoch FROM {c}) * 1000)::bigint");
        let (s, u) = (since.to_rfc3339(), until.to_rfc3339());
        format!(
            "SELECT w.ticket_id, {}, w.ticket_number, w.queue, w.priority, w.origin,
                    w.language, w.policies, {}, {}, w.end_reason,
                    string_agg(n.number::text, ','),
                    count(*) FILTER (WHERE n.promise_outcome = 'kept'),
                    count(*) FILTER (WHERE n.promise_outcome = 'superseded'),
                    count(*) FILTER (WHERE n.promise_outcome IN ('pending', 'due')),
                    string_agg(n.promise_reason, ',') FILTER (WHERE n.promise_outcome = 'broken'),
                    coalesce(bool_or(n.number >= n.max_notices
                                     AND (w.ended_at IS NULL OR n.sent_at < w.ended_at)), false)::int::int8
             FROM waits w LEFT JOIN notices n
               ON n.ticket_id = w.ticket_id AND n.episode = w.episode AND n.dry_run = w.dry_run
              AND n.status = 'sent' AND n.sent_at >= '{s}' AND n.sent_at < '{u}'
             WHERE NOT w.dry_run AND w.episode < '{u}' AND (w.ended_at IS NULL OR w.ended_at >= '{s}')
             GROUP BY w.ticket_id, w.episode, w.dry_run",
            ms("w.episode"),
            ms("w.first_due_at"),
            ms("w.ended_at")
        )
    };
    let t = Instant::now();
    let mut seen = 0usize;
    let numbers = [1usize, 8, 9, 12, 13, 14, 16];
    let mut rows = sqlx::query(AssertSqlSafe(sql)).fetch(&mut conn);
    while let Some(r) = rows.try_next().await? {
        for i in 0..r.len() {
            if numbers.contains(&i) {
                let v: Option<i64> = r.try_get(i)?;
                seen += usize::from(v.is_some());
            } else {
                let v: Option<String> = r.try_get(i)?;
                seen += v.map_or(0, |s| s.len());
            }
        }
    }
    drop(rows);
    std::hint::black_box(seen);
    Ok(t.elapsed().as_secs_f64())
}

/// `interim report --since 62d --format json` on the ledger: seconds, and
/// the peak RSS in MB when /usr/bin/time can tell.
fn binary_report(dir: &Path, store_url: &str) -> anyhow::Result<(f64, Option<f64>)> {
    let config = dir.join("interim.toml");
    let mut policies = String::new();
    for q in 0..5 {
        policies.push_str(&format!(
            "[[policies]]\nname = \"p{q}\"\nmatch = {{ queue = [\"q{q}\"] }}\nafter = \"1h\"\n\
             repeat_every = \"1h\"\nmax_notices = 3\nchannel = \"out\"\ntemplate = \"interim\"\n"
        ));
    }
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = \"{store_url}\"\n[source]\nkind = \"sql\"\n\
             url = \"sqlite://{}/helpdesk.db\"\nquery = \"SELECT id, state, queue, customer_email, waiting_since FROM tickets\"\n\
             [channels.out]\nkind = \"file\"\npath = \"outbox\"\nformat = \"json\"\n{policies}",
            dir.display()
        ),
    )?;
    let binary = env!("CARGO_BIN_EXE_interim");
    let args = [
        "--config",
        &config.display().to_string(),
        "report",
        "--since",
        "62d",
        "--promise",
        "4h,8h,1d,2d,5d",
        "--format",
        "json",
    ]
    .map(str::to_owned);
    let timed = Path::new("/usr/bin/time").exists();
    let mut command = if timed {
        let mut c = std::process::Command::new("/usr/bin/time");
        c.args(["-f", "%M"]).arg(binary);
        c
    } else {
        std::process::Command::new(binary)
    };
    let t = Instant::now();
    let out = command.args(&args).current_dir(dir).output()?;
    let elapsed = t.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    anyhow::ensure!(out.status.success(), "interim report failed: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    anyhow::ensure!(
        report["total"]["notices_sent"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "the report counted nothing"
    );
    let rss = timed
        .then(|| stderr.lines().last()?.trim().parse::<f64>().ok())
        .flatten()
        .map(|kb| kb / 1024.0);
    Ok((elapsed, rss))
}
