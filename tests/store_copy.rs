//! `interim store copy --to URL`: moving the ledger between SQLite and
//! PostgreSQL. Every table arrives row for row (ids and millisecond
//! instants exact, claims released), a daemon switched to the copy neither
//! resends a sent notice nor delays the next one, and the command refuses
//! a target with rows, a store a daemon uses, and never prints a password.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use interim::config::Settings;
use interim::notice::Status;
use interim::store::{Backend, DERIVED_TABLES, Kind, LEDGER_TABLES, OnCopy, Outcome, Store};
use interim::ticket::Ticket;
use sqlx::{AnyConnection, AssertSqlSafe, Connection, Row};
use support::postgres::PgDatabase;
use support::{Setup, SmtpSink, block_on, ledger, toml_str};

const SOON: Duration = Duration::from_secs(30);
const CHANNEL: &str = "out";
const POLICY: &str = "p";
const PASSWORD: &str = "s3cret-Pa55word";

/// Rows of one table as text, sorted (each database orders text by its
/// own collation, so ORDER BY could differ).
type Rows = Vec<Vec<Option<String>>>;

/// Every selected column as text, in the order selected.
fn query(url: &str, sql: &str) -> Rows {
    sqlx::any::install_default_drivers();
    let statement = AssertSqlSafe(sql.to_owned());
    block_on(async {
        let mut conn = AnyConnection::connect(url).await?;
        let rows = sqlx::query(statement).fetch_all(&mut conn).await?;
        let rows = rows
            .iter()
            .map(|r| (0..r.len()).map(|i| r.try_get(i)).collect())
            .collect::<Result<Rows, sqlx::Error>>()?;
        conn.close().await?;
        Ok::<_, sqlx::Error>(rows)
    })
    .unwrap_or_else(|e| panic!("{sql:?} on {url}: {e}"))
}

/// Every ledger table of the store at `url`, every column as text, as
/// SQLite keeps it (PostgreSQL's instants in Unix milliseconds, its flags
/// as 0 or 1), so that the two compare row for row.
fn dump(url: &str) -> BTreeMap<&'static str, Rows> {
    let postgres = url.starts_with("postgres");
    LEDGER_TABLES
        .iter()
        .map(|table| {
            let columns: Vec<String> = table
                .columns
                .iter()
                .map(|c| match (c.kind, postgres) {
                    (Kind::Instant, true) => format!(
                        "CAST((EXTRACT(EPOCH FROM {0}) * 1000)::bigint AS TEXT) AS {0}",
                        c.name
                    ),
                    (Kind::Flag, true) => format!("CAST({0}::int AS TEXT) AS {0}", c.name),
                    _ => format!("CAST({0} AS TEXT) AS {0}", c.name),
                })
                .collect();
            let mut rows = query(
                url,
                &format!("SELECT {} FROM {}", columns.join(", "), table.name),
            );
            rows.sort();
            (table.name, rows)
        })
        .collect()
}

/// The value of `column` in each row of `notices`, by notice id.
fn notices_column(dump: &BTreeMap<&str, Rows>, column: &str) -> BTreeMap<String, Option<String>> {
    assert_eq!(LEDGER_TABLES[0].name, "notices");
    assert_eq!(LEDGER_TABLES[0].columns[0].name, "id");
    let columns = LEDGER_TABLES[0].columns;
    let at = columns.iter().position(|c| c.name == column);
    let at = at.unwrap_or_else(|| panic!("notices has no column {column}"));
    dump["notices"]
        .iter()
        .map(|row| (row[0].clone().unwrap_or_default(), row[at].clone()))
        .collect()
}

fn parse_time(value: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value)
        .unwrap_or_else(|e| panic!("{value:?} is not RFC 3339: {e}"))
        .with_timezone(&Utc)
}

fn sqlite_url(setup: &Setup, name: &str) -> String {
    format!("sqlite://{}", setup.path(name).display())
}

/// The test server's URL for `db` with a password in it (trust
/// authentication: any password is accepted).
fn with_password(db: &PgDatabase) -> String {
    let (scheme, rest) = db.url.split_once("://").expect("a postgres:// URL");
    let (user, host) = rest.split_once('@').expect("postgres://USER@HOST/DB");
    format!("{scheme}://{user}:{PASSWORD}@{host}")
}

/// `interim store copy --to URL` with the store of `setup`: (exit code,
/// stdout, stderr).
fn copy(setup: &Setup, to: &str) -> (Option<i32>, String, String) {
    let out = setup.cli(&["store", "copy", "--to", to]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn copied(setup: &Setup, to: &str) -> String {
    let (code, stdout, stderr) = copy(setup, to);
    assert_eq!(code, Some(0), "store copy failed:\n{stdout}{stderr}");
    stdout
}

/// A config whose policy `p` sends open tickets' notices into the file
/// channel `out`: first 60 s after `waiting_since`, then every 120 s.
fn ledger_setup() -> Setup {
    let mut setup = Setup::new();
    let out = setup.path("out").display().to_string();
    setup
        .toml(&format!(
            "[channels.{CHANNEL}]\nkind = \"file\"\npath = {}",
            toml_str(&out)
        ))
        .policy(
            POLICY,
            &format!(
                "match = {{ state = [\"open\"] }}\nafter = \"60s\"\nrepeat_every = \"120s\"\n\
                 max_notices = 3\nchannel = \"{CHANNEL}\"\ntemplate = \"interim\""
            ),
        );
    setup
}

fn settings(setup: &Setup) -> std::sync::Arc<Settings> {
    let config = interim::setup::load(&setup.write_config());
    config
        .unwrap_or_else(|e| panic!("a valid config: {e}"))
        .settings
}

/// Instants with milliseconds, to see that none is rounded on the way.
fn t0() -> DateTime<Utc> {
    let t = Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).single();
    t.expect("a valid instant") + chrono::Duration::milliseconds(123)
}

/// A German ticket whose subject has quotes of several kinds, to see
/// them arrive unchanged.
fn ticket(id: &str, waiting_since: DateTime<Utc>) -> Ticket {
    Ticket {
        subject: Some("Drucker brennt «sofort» 'bitte'".into()),
        language: Some("de".into()),
        ..ledger::ticket(id, waiting_since)
    }
}

/// A ledger with something in every table: T1's first notice sent and its
/// second planned, T2's dead with an error, T3's claimed by an instance
/// that is gone, a suppression, the poll time in `meta`. Returns the id
/// of the claimed notice.
fn fill_ledger(setup: &Setup) -> String {
    let settings = settings(setup);
    block_on(async {
        let store = Store::open(&settings.store.url)
            .await
            .expect("open the store");
        let waited = t0() - chrono::Duration::milliseconds(600_777);
        let tickets = [
            ticket("T1", waited),
            ticket("T2", waited),
            ticket("T3", waited),
        ];
        ledger::full_poll(&store, &settings, &tickets, t0()).await;
        let lease = Duration::from_secs(30);
        let claimed = store
            .claim_due(CHANNEL, false, t0(), 10, lease, "gone-instance")
            .await
            .expect("claim the due notices");
        assert_eq!(claimed.len(), 3, "three first notices are due");
        let by_ticket = |id: &str| {
            let n = claimed.iter().find(|n| n.ticket_id == id);
            n.unwrap_or_else(|| panic!("{id} was claimed")).clone()
        };
        let sent_at = t0() + chrono::Duration::milliseconds(1_501);
        ledger::record(&store, &by_ticket("T1"), Status::Sent, sent_at).await;
        let dead = Outcome {
            status: Status::Dead,
            attempt_started: sent_at,
            finished: sent_at + chrono::Duration::milliseconds(7),
            next_notice_at: None,
            error: Some("550 «Postfach unbekannt»\n'second line'"),
        };
        let recorded = store.record_done(&by_ticket("T2"), &dead, None).await;
        recorded.expect("record a dead notice");
        store
            .suppress("gone@example.com", "bounced", "auto", t0())
            .await
            .expect("store a suppression");
        ledger::full_poll(
            &store,
            &settings,
            &tickets,
            t0() + chrono::Duration::seconds(5),
        )
        .await;
        store.close().await;
        by_ticket("T3").id
    })
}

#[test]
fn the_ledger_goes_from_sqlite_to_postgresql_and_back_row_for_row() {
    let Some(db) = PgDatabase::create() else {
        return;
    };
    let mut setup = ledger_setup();
    let claimed = fill_ledger(&setup);
    let original = dump(&sqlite_url(&setup, "interim.db"));
    assert!(
        original.values().all(|rows| !rows.is_empty()),
        "every table has rows to copy: {original:?}"
    );

    let there = copied(&setup, &db.url);
    for table in LEDGER_TABLES {
        let line = format!("{}: {} row", table.name, original[table.name].len());
        assert!(there.contains(&line), "{line:?} in:\n{there}");
    }
    assert!(
        there.contains("(1 claimed, pending again in the copy)"),
        "{there}"
    );
    let in_postgres = dump(&db.url);

    setup.set("store.url", &toml_str(&db.url));
    copied(&setup, &sqlite_url(&setup, "back.db"));
    let back = dump(&sqlite_url(&setup, "back.db"));
    assert_eq!(back, in_postgres, "PostgreSQL to SQLite changes nothing");

    // Only the claim differs from the original, and only in the copy.
    let released: Vec<&str> = LEDGER_TABLES[0]
        .columns
        .iter()
        .filter(|c| c.on_copy == OnCopy::Released)
        .map(|c| c.name)
        .collect();
    assert_eq!(released, ["claimed_by", "claim_until"]);
    for column in &released {
        let before = notices_column(&original, column);
        assert!(
            before[&claimed].is_some(),
            "{column} of the claimed notice in the source"
        );
        let after = notices_column(&in_postgres, column);
        assert!(
            after.values().all(Option::is_none),
            "no {column} in the copy: {after:?}"
        );
    }
    let blank_claims = |dump: &BTreeMap<&'static str, Rows>| {
        let mut dump = dump.clone();
        let columns = LEDGER_TABLES[0].columns;
        for row in dump.get_mut("notices").into_iter().flatten() {
            for (value, column) in row.iter_mut().zip(columns) {
                if column.on_copy == OnCopy::Released {
                    *value = None;
                }
            }
        }
        dump
    };
    assert_eq!(
        in_postgres,
        blank_claims(&original),
        "every other row and column as it was, ids and millisecond instants included"
    );
    let sent = notices_column(&in_postgres, "sent_at");
    let t1_sent = sent.values().flatten().next().expect("a sent notice");
    assert_eq!(t1_sent, &(t0().timestamp_millis() + 1_501).to_string());
}

#[test]
fn a_claimed_notice_is_pending_in_the_copy_and_claimable_at_once() {
    let Some(db) = PgDatabase::create() else {
        return;
    };
    let setup = ledger_setup();
    let claimed = fill_ledger(&setup);
    let tokens = notices_column(&dump(&sqlite_url(&setup, "interim.db")), "claim_token");
    copied(&setup, &db.url);

    let url = interim::secret::SecretUrl::new(db.url.clone());
    block_on(async {
        let store = Store::open(&url).await.expect("open the copy");
        assert_eq!(
            store.status_of(&claimed).await.expect("read a status"),
            Some(Status::Pending)
        );
        let lease = Duration::from_secs(30);
        let now = Utc::now();
        let got = store
            .claim_due(CHANNEL, false, now, 10, lease, "new-instance")
            .await
            .expect("claim in the copy");
        let ids: Vec<&str> = got.iter().map(|n| n.id.as_str()).collect();
        assert!(
            ids.contains(&claimed.as_str()),
            "claimable at once: {ids:?}"
        );
        let n = got
            .iter()
            .find(|n| n.id == claimed)
            .expect("the claimed notice");
        let before: i64 = tokens[&claimed]
            .as_deref()
            .and_then(|t| t.parse().ok())
            .expect("a claim token");
        assert_eq!(
            n.claim_token,
            before + 1,
            "the fencing token goes on growing"
        );
        store.close().await;
    });
}

/// The daemon on SQLite sends notice 1, stops; the ledger is copied to
/// PostgreSQL, store.url switched, the daemon started again: notice 1 is
/// not sent again, and notice 2 comes when notice 1 promised it, not
/// earlier (or, should the switch outlast the promise on a loaded machine,
/// at once after the restart). The 30 s repeat leaves the switch room.
#[test]
fn a_daemon_switched_to_the_copy_resends_nothing_and_keeps_its_promise() {
    let Some(db) = PgDatabase::create() else {
        return;
    };
    let sink = SmtpSink::start();
    let mut setup = Setup::new();
    setup.email_channel("mail", sink.port(), "").policy(
        "repeating",
        "match = { state = [\"open\"] }\nafter = \"1s\"\nrepeat_every = \"30s\"\n\
         max_notices = 2\nchannel = \"mail\"\ntemplate = \"interim\"",
    );
    setup.helpdesk().insert(&[support::Ticket::new(1)]);
    let customer = support::Ticket::email(1);

    let mut daemon = setup.start();
    setup.wait_until(SOON, "notice 1 arrived", || {
        sink.mails_to(&customer).len() == 1
    });
    assert!(daemon.stop().success(), "SIGTERM exits 0");
    let on_sqlite = setup.notices();
    let first = on_sqlite
        .iter()
        .find(|n| n.number == 1 && n.status == "sent")
        .unwrap_or_else(|| panic!("notice 1 is sent: {on_sqlite:?}"))
        .clone();
    let promised = parse_time(
        first
            .next_notice_at
            .as_deref()
            .expect("notice 1 promises notice 2"),
    );
    let first_sent = parse_time(first.sent_at.as_deref().expect("notice 1's sent_at"));
    let repeat = (promised - first_sent).num_milliseconds();
    assert!(
        (29_000..=31_000).contains(&repeat),
        "notice 1 at {first_sent} promised notice 2 for {promised}, not repeat_every later"
    );

    copied(&setup, &db.url);
    setup.set("store.url", &toml_str(&db.url));
    let restarted_at = Utc::now();
    let _daemon = setup.start();
    let latest = promised.max(restarted_at) + chrono::Duration::seconds(5);
    let deadline = (latest - Utc::now()).to_std().unwrap_or_default() + SOON;
    let mut done = Vec::new();
    setup.wait_until(deadline, "notice 2 is sent from PostgreSQL", || {
        done = setup.try_notices().unwrap_or_default();
        done.iter().any(|n| n.number == 2 && n.status == "sent")
    });

    let mails = sink.mails_to(&customer);
    let ids: Vec<Option<String>> = mails.iter().map(|m| m.header("X-Interim-Notice")).collect();
    assert_eq!(mails.len(), 2, "notice 1 once, notice 2 once: {ids:?}");
    assert_ne!(ids[0], ids[1], "two different notices");
    let again = done
        .iter()
        .find(|n| n.id == first.id)
        .expect("notice 1 in the copy");
    assert_eq!(
        (again.status.as_str(), again.attempts, &again.sent_at),
        ("sent", 1, &first.sent_at),
        "notice 1 as the SQLite daemon recorded it"
    );
    let second = done.iter().find(|n| n.number == 2).expect("notice 2");
    let sent = parse_time(second.sent_at.as_deref().expect("sent_at"));
    assert!(
        sent >= promised,
        "notice 2 at {sent} came before the promised {promised}"
    );
    assert!(
        sent <= latest,
        "notice 2 at {sent} is late: promised for {promised}, daemon restarted at {restarted_at}"
    );
    setup.assert_stays_for_polls(2, "two mails in all", || {
        sink.mails_to(&customer).len() == 2
    });
}

#[test]
fn a_target_with_rows_is_refused_naming_the_table_and_left_as_it_was() {
    let Some(db) = PgDatabase::create() else {
        return;
    };
    let setup = ledger_setup();
    fill_ledger(&setup);
    let url = interim::secret::SecretUrl::new(db.url.clone());
    block_on(async {
        let store = Store::open(&url).await.expect("open the target");
        let now = Utc::now();
        store
            .suppress("keep@example.com", "mine", "cli", now)
            .await
            .expect("a row");
        store.close().await;
    });
    let before = dump(&db.url);

    let (code, stdout, stderr) = copy(&setup, &with_password(&db));
    assert_eq!(code, Some(1), "refused:\n{stdout}{stderr}");
    assert!(stderr.contains("not empty"), "{stderr}");
    assert!(stderr.contains("table suppressions has 1 row"), "{stderr}");
    assert!(
        !stderr.contains("table notices"),
        "only tables with rows: {stderr}"
    );
    assert!(!format!("{stdout}{stderr}").contains(PASSWORD), "{stderr}");
    assert!(
        stderr.contains(":***@"),
        "the URL is shown redacted: {stderr}"
    );
    assert_eq!(dump(&db.url), before, "nothing written");
}

#[test]
fn a_failure_halfway_leaves_the_target_empty() {
    let Some(db) = PgDatabase::create() else {
        return;
    };
    let setup = ledger_setup();
    fill_ledger(&setup);
    let url = interim::secret::SecretUrl::new(db.url.clone());
    block_on(async {
        Store::open(&url)
            .await
            .expect("migrate the target")
            .close()
            .await
    });
    // The last table fails, after every other one was written.
    let last = LEDGER_TABLES.last().expect("a table").name;
    db.execute(&format!(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'disk on fire'; END $$;
         CREATE TRIGGER refuse BEFORE INSERT ON {last} FOR EACH ROW EXECUTE FUNCTION refuse()"
    ));

    let (code, stdout, stderr) = copy(&setup, &db.url);
    assert_eq!(code, Some(1), "failed:\n{stdout}{stderr}");
    assert!(
        stderr.contains("disk on fire") && stderr.contains(last),
        "{stderr}"
    );
    let after = dump(&db.url);
    assert!(
        after.values().all(Vec::is_empty),
        "the target is empty: {after:?}"
    );
}

#[test]
fn the_target_may_come_from_an_environment_variable() {
    let mut setup = ledger_setup();
    fill_ledger(&setup);
    let out = setup.cli(&["store", "copy", "--to-env", "INTERIM_TEST_COPY_TARGET"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--to-env INTERIM_TEST_COPY_TARGET: the environment variable is not set")
    );
    let target = sqlite_url(&setup, "target.db");
    setup.env("INTERIM_TEST_COPY_TARGET", &target);
    let out = setup.cli(&["store", "copy", "--to-env", "INTERIM_TEST_COPY_TARGET"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("notices: "), "{stdout}");
    assert!(
        !dump(&target)["notices"].is_empty(),
        "the copy holds the notices"
    );
}

#[test]
fn the_output_shows_the_target_with_its_password_redacted() {
    let Some(db) = PgDatabase::create() else {
        return;
    };
    let setup = ledger_setup();
    fill_ledger(&setup);
    let notices = dump(&sqlite_url(&setup, "interim.db"))["notices"].len();
    let (code, stdout, stderr) = copy(&setup, &with_password(&db));
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        !format!("{stdout}{stderr}").contains(PASSWORD),
        "{stdout}{stderr}"
    );
    let shown = with_password(&db).replace(PASSWORD, "***");
    assert!(stdout.contains(&format!("into {shown}\n")), "{stdout}");
    let counted = format!("notices: {notices} rows");
    assert!(stdout.lines().any(|l| l.starts_with(&counted)), "{stdout}");
}

#[test]
fn a_missing_or_empty_store_is_not_copied() {
    // A mistyped store.url: nothing is created, neither here nor there.
    let setup = ledger_setup();
    let target = sqlite_url(&setup, "target.db");
    let (code, stdout, stderr) = copy(&setup, &target);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains("interim.db does not exist: nothing to copy"),
        "{stderr}"
    );
    assert!(!setup.path("interim.db").exists() && !setup.path("target.db").exists());

    // A store with no notices and no series: a daemon moved onto its copy
    // would start from nothing and send every due notice again.
    let out = setup.cli(&["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, stdout, stderr) = copy(&setup, &target);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("holds no notices and no series: nothing to copy"),
        "{stderr}"
    );
    let left = dump(&target);
    assert!(
        left.values().all(Vec::is_empty),
        "the target stays empty: {left:?}"
    );
}

#[test]
fn a_copied_ledger_is_marked_moved_so_no_daemon_or_second_copy_uses_it() {
    let setup = ledger_setup();
    fill_ledger(&setup);
    let target = sqlite_url(&setup, "target.db");
    let summary = copied(&setup, &target);
    assert!(
        summary.contains("this store is marked as moved"),
        "{summary}"
    );

    // A daemon started on the old store would send what the copy's sends.
    let mut daemon = setup.spawn_run();
    let exit = daemon.wait_exit(Duration::from_secs(30));
    assert!(
        exit.is_some_and(|status| !status.success()),
        "the daemon refuses to run on a moved ledger"
    );
    let log = std::fs::read_to_string(setup.path("daemon.log")).unwrap_or_default();
    assert!(
        log.contains(&format!("was copied to {target} at "))
            && log.contains("set store.url to that store"),
        "{log}"
    );
    // A second copy would fork the ledger.
    let (code, stdout, stderr) = copy(&setup, &sqlite_url(&setup, "second.db"));
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("a second copy would fork it"), "{stderr}");
    assert!(!setup.path("second.db").exists(), "no second target");
    // The copy itself carries no mark: its daemon runs.
    let moved: Vec<_> = dump(&target)["meta"]
        .iter()
        .filter(|row| row.iter().any(|v| v.as_deref() == Some("moved_to")))
        .cloned()
        .collect();
    assert!(moved.is_empty(), "{moved:?}");
}

#[test]
fn a_copy_is_refused_while_a_daemon_holds_the_sqlite_store() {
    let mut setup = Setup::new();
    setup
        .email_channel("mail", support::free_port(), "")
        .policy(
            "first-notice",
            "match = { state = [\"open\"] }\nafter = \"5m\"\nchannel = \"mail\"\ntemplate = \"interim\"",
        );
    setup.helpdesk();
    let _daemon = setup.start();
    setup.wait_until(SOON, "the daemon polled", || setup.polls().0 > 0);

    let target = sqlite_url(&setup, "copy.db");
    let (code, stdout, stderr) = copy(&setup, &target);
    assert_eq!(code, Some(1), "refused:\n{stdout}{stderr}");
    assert!(stderr.contains("stop the daemon"), "{stderr}");
    assert!(stderr.contains("interim.lock"), "names the lock: {stderr}");
    assert!(!setup.path("copy.db").exists(), "no target was created");
}

#[test]
fn a_copy_is_refused_while_a_daemon_runs_on_the_postgresql_store() {
    let Some(db) = PgDatabase::create() else {
        return;
    };
    let mut setup = Setup::new();
    setup
        .set("store.url", &toml_str(&db.url))
        .email_channel("mail", support::free_port(), "")
        .policy(
            "first-notice",
            "match = { state = [\"open\"] }\nafter = \"5m\"\nchannel = \"mail\"\ntemplate = \"interim\"",
        );
    setup.helpdesk();
    let _daemon = setup.start();
    setup.wait_until(SOON, "the daemon is the poller", || {
        setup.metric("interim_poller", &[]) == 1.0
    });

    let (code, stdout, stderr) = copy(&setup, &sqlite_url(&setup, "copy.db"));
    assert_eq!(code, Some(1), "refused:\n{stdout}{stderr}");
    assert!(stderr.contains("stop every interim daemon"), "{stderr}");
    assert!(!setup.path("copy.db").exists(), "no target was created");
}

#[test]
fn a_copy_is_refused_while_an_instance_that_does_not_poll_still_runs() {
    let Some(db) = PgDatabase::create() else {
        return;
    };
    let mut setup = ledger_setup();
    setup.set("store.url", &toml_str(&db.url));
    let url = interim::secret::SecretUrl::new(db.url.clone());
    let (code, stdout, stderr) = block_on(async {
        // Two instances: the poller, and one that claims and sends only.
        let poller = Store::open(&url).await.expect("open the store");
        let other = Store::open(&url).await.expect("open the store again");
        assert!(poller.lead_polling().await, "the first instance polls");
        assert!(!other.lead_polling().await, "the second one does not");
        // The poller stops; the other one still runs.
        poller.close().await;
        drop(poller);
        let refused = copy(&setup, &sqlite_url(&setup, "copy.db"));
        other.close().await;
        refused
    });
    assert_eq!(code, Some(1), "refused:\n{stdout}{stderr}");
    assert!(
        stderr.contains("holds the poller or the running lock"),
        "{stderr}"
    );
    assert!(!setup.path("copy.db").exists(), "no target was created");
}

/// The tables a freshly migrated store has, each with its columns and
/// their declared types (lower-case), without sqlx's own bookkeeping.
type Schema = BTreeMap<String, BTreeSet<(String, String)>>;

fn schema(url: &str, tables_sql: &str, columns_sql: impl Fn(&str) -> String) -> Schema {
    let tables = query(url, tables_sql);
    tables
        .into_iter()
        // Left to the target's triggers, not copied.
        .filter(|row| {
            !row[0]
                .as_deref()
                .is_some_and(|t| DERIVED_TABLES.contains(&t))
        })
        .map(|row| {
            let table = row[0].clone().expect("a table name");
            let columns = query(url, &columns_sql(&table)).into_iter().map(|c| {
                let name = c[0].clone().expect("a column name");
                (
                    name,
                    c[1].as_deref().unwrap_or_default().to_ascii_lowercase(),
                )
            });
            (table, columns.collect())
        })
        .collect()
}

/// What `LEDGER_TABLES` says the store on `backend` has.
fn copied_schema(backend: Backend) -> Schema {
    LEDGER_TABLES
        .iter()
        .map(|t| {
            let columns = t.columns.iter().map(|c| {
                (
                    c.name.to_owned(),
                    c.kind.declared(backend).to_ascii_lowercase(),
                )
            });
            (t.name.to_owned(), columns.collect())
        })
        .collect()
}

#[test]
fn the_copy_lists_every_table_and_column_of_the_sqlite_migrations() {
    let setup = Setup::new();
    let url = interim::secret::SecretUrl::new(sqlite_url(&setup, "fresh.db"));
    block_on(async { Store::open(&url).await.expect("migrate").close().await });
    let found = schema(
        url.expose(),
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite!_%' ESCAPE '!' AND name <> '_sqlx_migrations'",
        |table| format!("SELECT name, type FROM pragma_table_info('{table}')"),
    );
    assert_eq!(
        found,
        copied_schema(Backend::Sqlite),
        "a table or column of crates/store-sqlite/migrations is missing from LEDGER_TABLES (src/store/tables.rs)"
    );
}

#[test]
fn the_copy_lists_every_table_and_column_of_the_postgresql_migrations() {
    let Some(db) = PgDatabase::create() else {
        return;
    };
    let url = interim::secret::SecretUrl::new(db.url.clone());
    block_on(async { Store::open(&url).await.expect("migrate").close().await });
    let found = schema(
        &db.url,
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
         AND table_name <> '_sqlx_migrations'",
        |table| {
            format!(
                "SELECT column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = '{table}'"
            )
        },
    );
    assert_eq!(
        found,
        copied_schema(Backend::Postgres),
        "a table or column of crates/store-postgres/migrations is missing from LEDGER_TABLES (src/store/tables.rs)"
    );
}

#[test]
fn store_copy_is_in_the_help_and_the_readme() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_interim"))
        .args(["store", "--help"])
        .output()
        .expect("run interim store --help");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{help}");
    assert!(
        help.lines().any(|l| l.trim_start().starts_with("copy")),
        "{help}"
    );
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read the README");
    assert!(
        readme.contains("| `interim store copy --to URL` |"),
        "the README's command table"
    );
    let postgres = readme
        .split("## Several instances, PostgreSQL")
        .nth(1)
        .expect("the README's PostgreSQL section");
    assert!(
        postgres.contains("interim store copy --to postgres://"),
        "the PostgreSQL section says how to move a ledger"
    );
}
