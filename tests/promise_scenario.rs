//! Promises measured (issue 14): a scripted day with a known answer, run
//! through the daemon's own poller, dispatcher and store on an injected
//! clock (a restart included), a real webhook receiver and a helpdesk
//! whose table goes away for a while; read back with the binary's
//! `interim report` as JSON and CSV, and from `/metrics`.
//!
//! The day, from S (a day ago, so the binary's own clock is past it all);
//! every policy sends after 1 h, then hourly:
//! - T1 (support) is answered after 30 min, before its first notice;
//! - T2 (support) is answered after its first notice: promise superseded;
//! - T3 (support) gets all three notices (two promises kept), then an
//!   answer: an exhausted wait;
//! - T4 (billing, webhook) gets notice 1; the receiver refuses notice 2
//!   for good: promise broken (`dead`);
//! - T5 (support, from S+3h) gets notice 1, then the helpdesk's table is
//!   gone from S+4h to S+6h: notice 2 is held, promise broken
//!   (`held_stale`);
//! - T6 (support, from S+6h) gets notice 1, then the daemon is down from
//!   S+7h to S+8h30: promise broken (`not_planned`); notice 2 goes out late
//!   at the restart and its promise is superseded by the answer at S+8h45;
//! - T7 (support, from S+9h) gets notice 1 at S+10h and still waits: an
//!   open wait with a pending promise.

mod support;

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, DurationRound, SecondsFormat, Utc};
use interim::clock::ManualClock;
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, SqliteConnection};
use support::library::InProcess;
use support::postgres::PgDatabase;
use support::{Setup, Ticket, WebhookReceiver, toml_str};

/// Policies `mail` (queue support, three notices into a JSON file) and
/// `hook` (queue billing, two notices to `receiver`); the source may be
/// 30 minutes old before sends are held.
fn setup(receiver: &WebhookReceiver) -> Setup {
    let mut setup = Setup::new();
    let (outbox, secret) = (setup.path("outbox"), setup.path("webhook.secret"));
    std::fs::write(&secret, support::WEBHOOK_SECRET).expect("write the webhook secret");
    setup
        .toml(&format!(
            "[channels.outbox]\nkind = \"file\"\npath = {}\nformat = \"json\"",
            toml_str(&outbox.display().to_string())
        ))
        .toml(&format!(
            "[channels.hook]\nkind = \"webhook\"\nurl = {}\nsecret_file = {}\ntimeout = \"5s\"",
            toml_str(receiver.url()),
            toml_str(&secret.display().to_string())
        ))
        .set("daemon.max_snapshot_age", &toml_str("30m"))
        .policy(
            "mail",
            "match = { state = [\"open\"], queue = [\"support\"] }\nafter = \"1h\"\n\
             repeat_every = \"1h\"\nmax_notices = 3\nchannel = \"outbox\"\ntemplate = \"interim\"",
        )
        .policy(
            "hook",
            "match = { state = [\"open\"], queue = [\"billing\"] }\nafter = \"1h\"\n\
             repeat_every = \"1h\"\nmax_notices = 2\nchannel = \"hook\"\ntemplate = \"interim\"",
        );
    setup.helpdesk();
    setup
}

/// The scenario's start: a day ago, on the minute.
fn start() -> DateTime<Utc> {
    (Utc::now() - Duration::days(1))
        .duration_trunc(Duration::minutes(1))
        .expect("a minute")
}

fn minutes(m: i64) -> Duration {
    Duration::minutes(m)
}

/// The helpdesk, written by the scenario while the daemon polls it.
struct Desk(SqliteConnection);

impl Desk {
    async fn open(setup: &Setup) -> Self {
        let url = format!("sqlite://{}", setup.path("helpdesk.db").display());
        Self(
            SqliteConnection::connect(&url)
                .await
                .expect("open the helpdesk"),
        )
    }

    async fn run(&mut self, sql: &str) {
        sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
            .execute(&mut self.0)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Ticket `id` of `queue` starts waiting at `since`.
    async fn waits(&mut self, id: i64, queue: &str, since: DateTime<Utc>) {
        let t = Ticket::new(id);
        let since = since.format("%Y-%m-%d %H:%M:%S");
        self.run(&format!(
            "INSERT INTO tickets VALUES ({id}, '#{id}', 'Printer on fire', 'open', 'normal', \
             '{queue}', '{}', 'Customer {id}', 'en', '{since}', '{since}', NULL)",
            t.customer_email
        ))
        .await;
    }

    /// Someone answered ticket `id` (in `table`: it may be renamed away).
    async fn answer(&mut self, table: &str, id: i64) {
        self.run(&format!(
            "UPDATE {table} SET state = 'closed' WHERE id = {id}"
        ))
        .await;
    }
}

/// The daemon at `at`: a poll, the sends due, and the poll after them
/// that decides what the sends made decidable; how many were sent.
async fn step(daemon: &mut InProcess, at: DateTime<Utc>) -> usize {
    daemon.clock.set(at);
    assert!(daemon.poll().await, "the poll at {at} succeeds");
    let sent = daemon.dispatch().await;
    assert!(daemon.poll().await, "the poll after the sends at {at}");
    sent
}

/// Runs the day of the module comment; returns the metrics text the last
/// daemon's `/metrics` served.
async fn run_day(setup: &Setup, s: DateTime<Utc>) -> String {
    let metrics = interim::telemetry::install();
    let config = interim::setup::load(&setup.write_config()).unwrap_or_else(|e| panic!("{e}"));
    interim::telemetry::register(&config.settings);
    let mut desk = Desk::open(setup).await;
    for (id, queue) in [
        (1, "support"),
        (2, "support"),
        (3, "support"),
        (4, "billing"),
    ] {
        desk.waits(id, queue, s).await;
    }
    let mut daemon = InProcess::start(config.clone(), ManualClock::new(s)).await;
    assert_eq!(step(&mut daemon, s).await, 0);

    desk.answer("tickets", 1).await;
    assert_eq!(step(&mut daemon, s + minutes(30)).await, 0, "T1 answered");
    assert_eq!(
        step(&mut daemon, s + minutes(60)).await,
        3,
        "notice 1 of T2-T4"
    );
    desk.answer("tickets", 2).await;
    assert_eq!(step(&mut daemon, s + minutes(90)).await, 0, "T2 answered");
    // Notice 2 of T3 is sent; T4's is refused for good.
    assert_eq!(step(&mut daemon, s + minutes(120)).await, 2);
    desk.answer("tickets", 4).await;
    assert_eq!(step(&mut daemon, s + minutes(150)).await, 0, "T4 answered");
    desk.waits(5, "support", s + minutes(180)).await;
    assert_eq!(step(&mut daemon, s + minutes(180)).await, 1, "T3's last");
    desk.answer("tickets", 3).await;
    assert_eq!(step(&mut daemon, s + minutes(210)).await, 0, "T3 answered");
    assert_eq!(step(&mut daemon, s + minutes(240)).await, 1, "T5's first");

    // The helpdesk's table is gone for two hours: nothing fresh, nothing
    // sent, T5's promise (S+5h) falls due meanwhile.
    desk.run("ALTER TABLE tickets RENAME TO tickets_away").await;
    for at in [300, 330] {
        daemon.clock.set(s + minutes(at));
        assert!(!daemon.poll().await, "the poll at S+{at}m fails");
        assert_eq!(
            daemon.dispatch().await,
            0,
            "held at S+{at}m: the source is stale"
        );
    }
    desk.answer("tickets_away", 5).await;
    desk.run("ALTER TABLE tickets_away RENAME TO tickets").await;
    desk.waits(6, "support", s + minutes(360)).await;
    assert_eq!(step(&mut daemon, s + minutes(360)).await, 0, "T5 answered");
    assert_eq!(step(&mut daemon, s + minutes(420)).await, 1, "T6's first");

    // Down from S+7h until S+8h30: T6's promise (S+8h) falls due meanwhile.
    daemon.close().await;
    let mut daemon = InProcess::start(config, ManualClock::new(s + minutes(510))).await;
    assert_eq!(
        step(&mut daemon, s + minutes(510)).await,
        1,
        "T6's second, late"
    );
    desk.answer("tickets", 6).await;
    assert_eq!(step(&mut daemon, s + minutes(525)).await, 0, "T6 answered");
    desk.waits(7, "support", s + minutes(540)).await;
    assert_eq!(step(&mut daemon, s + minutes(540)).await, 0);
    assert_eq!(step(&mut daemon, s + minutes(600)).await, 1, "T7's first");

    let text = match metrics {
        Some(handle) => served_metrics(&daemon, handle).await,
        None => panic!("the metrics recorder is this test's"),
    };
    daemon.close().await;
    text
}

/// `/metrics` as the daemon's admin endpoint serves it.
async fn served_metrics(
    daemon: &InProcess,
    handle: metrics_exporter_prometheus::PrometheusHandle,
) -> String {
    let (reload, _requests) = tokio::sync::mpsc::channel(1);
    let state = interim::http::AdminState::new(
        daemon.store.clone(),
        daemon.dispatcher.clone(),
        Some(handle),
        reload,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the admin port");
    let addr = listener.local_addr().expect("the admin address");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(interim::http::serve(listener, state, shutdown.clone()));
    let got =
        tokio::task::spawn_blocking(move || support::http::get(&addr.to_string(), "/metrics"))
            .await
            .expect("the request thread");
    shutdown.cancel();
    let _ = server.await;
    let response = got.unwrap_or_else(|e| panic!("GET /metrics: {e}"));
    assert_eq!(response.status, 200);
    response.body
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `interim report ARGS… --since S --until S+11h`.
fn report_args(s: DateTime<Utc>, more: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["report", "--since"].map(str::to_owned).to_vec();
    args.push(rfc3339(s));
    args.push("--until".into());
    args.push(rfc3339(s + minutes(660)));
    args.extend(more.iter().map(|a| (*a).to_owned()));
    args
}

fn report_json(setup: &Setup, s: DateTime<Utc>) -> Value {
    let args = report_args(s, &["--promise", "1h,2h,4h", "--format", "json"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    setup.json(&args).unwrap_or_else(|e| panic!("{e}"))
}

/// Every number the day must give, group by group.
fn expected_report(s: DateTime<Utc>) -> Value {
    let promises =
        |made: u64, kept: u64, superseded: u64, broken: u64, pending: u64, reasons: Value| {
            let decided: u64 = kept + superseded + broken;
            json!({
                "made": made, "kept": kept, "superseded": superseded, "broken": broken,
                "pending": pending,
                "kept_rate": (kept + superseded) as f64 / decided as f64,
                "broken_by_reason": reasons,
            })
        };
    let spread = |p50: u64, p90: u64, max: u64| json!({"p50": p50, "p90": p90, "max": max});
    let t7 = json!([{
        "ticket_id": "7", "ticket_number": "#7",
        "since": rfc3339(s + minutes(540)), "waited_seconds": 7200,
    }]);
    json!({
        "since": rfc3339(s),
        "until": rfc3339(s + minutes(660)),
        "by": "queue",
        "groups": [
            {
                "key": "billing",
                "waits_started": 1, "waits_ended": 1, "waits_open": 0, "waits_crossed": 1,
                "wait_seconds": spread(9000, 9000, 9000),
                "business_wait_seconds": null,
                "notices_sent": 1, "notices_by_number": {"1": 1},
                "promises": promises(1, 0, 0, 1, 0, json!({"dead": 1})),
                "exhausted": 0,
                "longest_open": [],
                "ended_within": {"1h": 0.0, "2h": 0.0, "4h": 1.0},
            },
            {
                "key": "support",
                "waits_started": 6, "waits_ended": 5, "waits_open": 1, "waits_crossed": 5,
                // T1 30m, T2 1h30, T6 2h45, T5 3h, T3 3h30.
                "wait_seconds": spread(9900, 12600, 12600),
                "business_wait_seconds": null,
                "notices_sent": 8, "notices_by_number": {"1": 5, "2": 2, "3": 1},
                "promises": promises(7, 2, 2, 2, 1, json!({"held_stale": 1, "not_planned": 1})),
                "exhausted": 1,
                "longest_open": t7,
                "ended_within": {"1h": 0.2, "2h": 0.4, "4h": 1.0},
            },
        ],
        "total": {
            "key": null,
            "waits_started": 7, "waits_ended": 6, "waits_open": 1, "waits_crossed": 6,
            "wait_seconds": spread(9000, 12600, 12600),
            "business_wait_seconds": null,
            "notices_sent": 9, "notices_by_number": {"1": 6, "2": 2, "3": 1},
            "promises": promises(
                8, 2, 2, 3, 1,
                json!({"dead": 1, "held_stale": 1, "not_planned": 1})
            ),
            "exhausted": 1,
            "longest_open": t7,
            "ended_within": {"1h": 1.0 / 6.0, "2h": 2.0 / 6.0, "4h": 1.0},
        },
    })
}

/// Which promise each sent notice made and how it turned out, as
/// `interim notices --format json` shows it: (ticket, number, promise).
fn promises_of(setup: &Setup) -> Vec<(String, u64, Value)> {
    let notices = setup
        .json(&["notices", "--status", "sent", "--format", "json"])
        .unwrap_or_else(|e| panic!("{e}"));
    let mut out: Vec<(String, u64, Value)> = notices
        .as_array()
        .expect("an array")
        .iter()
        .map(|n| {
            let ticket = n["ticket_id"].as_str().unwrap_or_default().to_owned();
            (
                ticket,
                n["number"].as_u64().unwrap_or(0),
                n["promise"].clone(),
            )
        })
        .collect();
    out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    out
}

fn expected_promises() -> Vec<(String, u64, Value)> {
    [
        ("2", 1, json!("superseded")),
        ("3", 1, json!("kept")),
        ("3", 2, json!("kept")),
        ("3", 3, Value::Null),
        ("4", 1, json!("broken (dead)")),
        ("5", 1, json!("broken (held_stale)")),
        ("6", 1, json!("broken (not_planned)")),
        ("6", 2, json!("superseded")),
        ("7", 1, json!("pending")),
    ]
    .map(|(t, n, p)| (t.to_owned(), n, p))
    .to_vec()
}

fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    support::faults::prometheus_sum(text, name, labels)
}

#[test]
fn the_scripted_day_gives_every_number_of_the_report_in_json_csv_and_metrics() {
    let receiver = WebhookReceiver::start(&[200], 400, StdDuration::ZERO);
    let setup = setup(&receiver);
    let s = start();
    let metrics = support::block_on(run_day(&setup, s));
    assert_eq!(
        receiver.requests().len(),
        2,
        "notice 1 and the refused notice 2 of T4"
    );

    assert_eq!(promises_of(&setup), expected_promises());
    let report = report_json(&setup, s);
    assert_eq!(report, expected_report(s), "the report:\n{report:#}");

    // The table: within 100 columns, the candidates as a second table,
    // the open wait named.
    let args = report_args(s, &["--promise", "1h,2h,4h"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = setup.cli(&args);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    assert!(table.lines().all(|l| l.chars().count() <= 100), "{table}");
    for line in [
        "support  6        5      1     5        2.8h/3.5h  8     7         67%   2       1",
        "total    17%   33%   100%",
        "support  #7      ",
    ] {
        assert!(table.contains(line), "{line:?} in:\n{table}");
    }

    // The same numbers as CSV rows: billing, support and the total.
    let args = report_args(s, &["--promise", "1h,2h,4h", "--format", "csv"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = setup.cli(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.split_inclusive('\n').all(|l| l.ends_with("\r\n")),
        "RFC 4180 ends every record with CRLF:\n{text:?}"
    );
    let mut csv = csv::Reader::from_reader(out.stdout.as_slice());
    let header = csv.headers().expect("a header row").clone();
    let rows: Vec<csv::StringRecord> = csv.records().map(|r| r.expect("a CSV row")).collect();
    assert_eq!(rows.len(), 3, "two groups and the total");
    let cell = |row: usize, column: &str| -> String {
        let i = header
            .iter()
            .position(|h| h == column)
            .unwrap_or_else(|| panic!("no column {column} in {header:?}"));
        rows[row][i].to_owned()
    };
    let expected = expected_report(s);
    for (row, group) in [
        (0, &expected["groups"][0]),
        (1, &expected["groups"][1]),
        (2, &expected["total"]),
    ] {
        assert_eq!(cell(row, "row"), if row == 2 { "total" } else { "group" });
        assert_eq!(cell(row, "key"), group["key"].as_str().unwrap_or(""));
        for column in [
            "waits_started",
            "waits_ended",
            "waits_open",
            "waits_crossed",
            "notices_sent",
            "exhausted",
        ] {
            assert_eq!(
                cell(row, column),
                group[column].to_string(),
                "{column} of row {row}"
            );
        }
        for (column, value) in [
            ("wait_seconds.p50", &group["wait_seconds"]["p50"]),
            ("wait_seconds.p90", &group["wait_seconds"]["p90"]),
            ("wait_seconds.max", &group["wait_seconds"]["max"]),
            ("promises.made", &group["promises"]["made"]),
            ("promises.kept", &group["promises"]["kept"]),
            ("promises.superseded", &group["promises"]["superseded"]),
            ("promises.broken", &group["promises"]["broken"]),
            ("promises.pending", &group["promises"]["pending"]),
        ] {
            assert_eq!(
                cell(row, column),
                value.to_string(),
                "{column} of row {row}"
            );
        }
        let number = |column: &str, value: &Value| {
            let got: f64 = cell(row, column).parse().unwrap_or(f64::NAN);
            assert_eq!(got, value.as_f64().unwrap_or(0.0), "{column} of row {row}");
        };
        number("promises.kept_rate", &group["promises"]["kept_rate"]);
        for n in ["1", "2", "3"] {
            number(
                &format!("notices_by_number.{n}"),
                &group["notices_by_number"][n],
            );
        }
        for reason in [
            "late",
            "dead",
            "held_stale",
            "not_planned",
            "cancelled_by_reload",
        ] {
            number(
                &format!("promises.broken_by_reason.{reason}"),
                &group["promises"]["broken_by_reason"][reason],
            );
        }
        for c in ["1h", "2h", "4h"] {
            number(&format!("ended_within.{c}"), &group["ended_within"][c]);
        }
        assert_eq!(cell(row, "business_wait_seconds.p50"), "", "no calendar");
    }
    assert_eq!(cell(1, "longest_open.1.ticket_id"), "7");
    assert_eq!(cell(1, "longest_open.1.waited_seconds"), "7200");
    assert_eq!(
        cell(0, "longest_open.1.ticket_id"),
        "",
        "billing has no open wait"
    );

    // And in the metrics the daemon served.
    for (policy, outcome, n) in [
        ("mail", "kept", 2.0),
        ("mail", "superseded", 2.0),
        ("mail", "broken", 2.0),
        ("hook", "kept", 0.0),
        ("hook", "broken", 1.0),
    ] {
        let got = metric(
            &metrics,
            "interim_promises_total",
            &[("policy", policy), ("outcome", outcome)],
        );
        assert_eq!(got, n, "{policy} {outcome}:\n{metrics}");
    }
    for (policy, reason) in [
        ("mail", "held_stale"),
        ("mail", "not_planned"),
        ("hook", "dead"),
    ] {
        let got = metric(
            &metrics,
            "interim_promises_broken_total",
            &[("policy", policy), ("reason", reason)],
        );
        assert_eq!(got, 1.0, "{policy} broken by {reason}:\n{metrics}");
    }
    // Lateness is observed for the next notices that went out before their
    // promise was decided: T3's two (on time). T6's second went out after
    // the restart had already decided the promise broken.
    let lateness = metric(
        &metrics,
        "interim_promise_lateness_seconds_count",
        &[("policy", "mail")],
    );
    assert_eq!(lateness, 2.0, "{metrics}");
    let exhausted = metric(
        &metrics,
        "interim_waits_exhausted_total",
        &[("policy", "mail")],
    );
    assert_eq!(exhausted, 1.0, "{metrics}");
    let open = metric(&metrics, "interim_waits_open", &[("policy", "mail")]);
    assert_eq!(open, 1.0, "T7 still waits:\n{metrics}");
    let open = metric(&metrics, "interim_waits_open", &[("policy", "hook")]);
    assert_eq!(open, 0.0, "{metrics}");
}

#[test]
fn the_scripted_day_gives_the_same_report_on_postgresql() {
    let Some(db) = PgDatabase::create() else {
        return;
    };
    let receivers = [(); 2].map(|_| WebhookReceiver::start(&[200], 400, StdDuration::ZERO));
    let on_sqlite = setup(&receivers[0]);
    let mut on_postgres = setup(&receivers[1]);
    on_postgres.set("store.url", &toml_str(&db.url));
    let s = start();
    support::block_on(async {
        run_day(&on_sqlite, s).await;
        run_day(&on_postgres, s).await;
    });
    let report = report_json(&on_postgres, s);
    assert_eq!(report, expected_report(s), "on PostgreSQL:\n{report:#}");
    assert_eq!(
        report,
        report_json(&on_sqlite, s),
        "the same on both stores"
    );
    assert_eq!(promises_of(&on_postgres), expected_promises());
}

/// 2026-11-27 is a Friday; `hour` is UTC (Berlin is an hour ahead).
fn utc(day: u32, month: u32, hour: u32) -> DateTime<Utc> {
    chrono::NaiveDate::from_ymd_opt(2026, month, day)
        .and_then(|d| d.and_hms_opt(hour, 0, 0))
        .expect("a date")
        .and_utc()
}

#[test]
fn business_time_wait_durations_in_the_report_skip_a_weekend_and_a_holiday() {
    let mut setup = Setup::new();
    let outbox = setup.path("outbox");
    setup
        .toml(
            "[calendars.office]\ntimezone = \"Europe/Berlin\"\n\
             hours = { mon = \"08:00-18:00\", tue = \"08:00-18:00\", wed = \"08:00-18:00\", \
             thu = \"08:00-18:00\", fri = \"08:00-18:00\" }\nholidays = [\"2026-12-01\"]",
        )
        .toml(&format!(
            "[channels.outbox]\nkind = \"file\"\npath = {}\nformat = \"json\"",
            toml_str(&outbox.display().to_string())
        ))
        .policy(
            "office",
            "match = { state = [\"open\"] }\nafter = \"1h\"\ncalendar = \"office\"\n\
             channel = \"outbox\"\ntemplate = \"interim\"",
        );
    setup.helpdesk();
    support::block_on(async {
        let config = interim::setup::load(&setup.write_config()).unwrap_or_else(|e| panic!("{e}"));
        let mut desk = Desk::open(&setup).await;
        // T1 waits from Friday 17:00 (Berlin) to Monday 09:00: an hour on
        // Friday, an hour on Monday.
        desk.waits(1, "support", utc(27, 11, 16)).await;
        let mut daemon = InProcess::start(config, ManualClock::new(utc(27, 11, 16))).await;
        // (The notices are not this test's: due at closing time, they
        // wait for the office to open.)
        for at in [utc(27, 11, 16), utc(27, 11, 17), utc(30, 11, 7)] {
            step(&mut daemon, at).await;
        }
        desk.answer("tickets", 1).await;
        step(&mut daemon, utc(30, 11, 8)).await;
        // T2 waits from Monday 17:00 to Wednesday 10:00: an hour on Monday,
        // none on the holiday, two on Wednesday.
        desk.waits(2, "support", utc(30, 11, 16)).await;
        for at in [utc(30, 11, 16), utc(30, 11, 17), utc(2, 12, 8)] {
            step(&mut daemon, at).await;
        }
        desk.answer("tickets", 2).await;
        step(&mut daemon, utc(2, 12, 9)).await;
        daemon.close().await;
    });
    let report = setup
        .json(&[
            "report",
            "--since",
            "2026-11-27",
            "--until",
            "2026-12-03",
            "--promise",
            "2h,1d",
            "--format",
            "json",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
    let total = &report["total"];
    assert_eq!(total["waits_ended"], 2, "{report:#}");
    assert_eq!(
        total["business_wait_seconds"],
        json!({"p50": 2 * 3600, "p90": 3 * 3600, "max": 3 * 3600}),
        "{report:#}"
    );
    assert_eq!(
        total["wait_seconds"],
        json!({"p50": 41 * 3600, "p90": 64 * 3600, "max": 64 * 3600}),
        "wall-clock beside it: {report:#}"
    );
    assert_eq!(
        total["ended_within"],
        json!({"2h": 0.5, "1d": 1.0}),
        "candidates count business time: {report:#}"
    );
}
