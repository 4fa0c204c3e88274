//! The SQL source against real PostgreSQL and MariaDB servers: native timestamp
//! types, naive timestamps in `source.timezone`, and integer Unix seconds.
//! Each test creates (and drops) its own database; without the server URL in
//! the environment a test prints why it is skipped and passes.

mod support;

use std::collections::BTreeSet;

use chrono::{Duration, Utc};
use support::mariadb::MariaDbDatabase;
use support::postgres::PgDatabase;
use support::{Setup, Ticket, text};

#[derive(Clone, Copy, PartialEq)]
enum Server {
    Postgres,
    MariaDb,
}

/// A throw-away database on a real server (the shared test helpers),
/// dropped when the test ends.
enum TestDatabase {
    Postgres(PgDatabase),
    MariaDb(MariaDbDatabase),
}

impl TestDatabase {
    fn create(server: Server) -> Option<Self> {
        match server {
            Server::Postgres => PgDatabase::create().map(Self::Postgres),
            Server::MariaDb => MariaDbDatabase::create().map(Self::MariaDb),
        }
    }

    fn execute(&self, sql: &str) {
        match self {
            Self::Postgres(db) => db.execute(sql),
            Self::MariaDb(db) => db.execute(sql),
        }
    }

    fn url(&self) -> &str {
        match self {
            Self::Postgres(db) => &db.url,
            Self::MariaDb(db) => &db.url,
        }
    }
}

/// Which column holds `waiting_since` and how a value is written into it.
struct Variant {
    sql_type: &'static str,
    literal: fn(chrono::DateTime<Utc>) -> String,
}

const TIMESTAMPTZ: Variant = Variant {
    sql_type: "TIMESTAMPTZ",
    literal: |t| format!("'{}'", t.to_rfc3339()),
};
const NAIVE: Variant = Variant {
    sql_type: "TIMESTAMP",
    literal: |t| format!("'{}'", t.format("%Y-%m-%d %H:%M:%S")),
};
const DATETIME: Variant = Variant {
    sql_type: "DATETIME",
    literal: |t| format!("'{}'", t.format("%Y-%m-%d %H:%M:%S")),
};
const UNIX: Variant = Variant {
    sql_type: "BIGINT",
    literal: |t| t.timestamp().to_string(),
};

/// Tickets 1 and 4 waited past the one-hour threshold; 2 did not; 3 is closed.
/// Naive values are written as wall-clock time in `zone`.
fn plan_due_tickets(server: Server, variant: Variant, zone: Option<chrono_tz::Tz>) {
    let Some(db) = TestDatabase::create(server) else {
        return;
    };
    db.execute(&format!(
        "CREATE TABLE tickets (id BIGINT PRIMARY KEY, number VARCHAR(20), state VARCHAR(20) NOT NULL, \
         customer_email VARCHAR(100), language VARCHAR(5), waiting_since {} NOT NULL)",
        variant.sql_type
    ));
    let rows = [
        (1, "open", 90),
        (2, "open", 30),
        (3, "closed", 120),
        (4, "open", 180),
    ];
    for (id, state, minutes) in rows {
        let instant = Utc::now() - Duration::minutes(minutes);
        let local = match zone {
            Some(zone) => instant.with_timezone(&zone).naive_local().and_utc(),
            None => instant,
        };
        db.execute(&format!(
            "INSERT INTO tickets VALUES ({id}, '#{id}', '{state}', '{}', 'en', {})",
            Ticket::email(id),
            (variant.literal)(local)
        ));
    }

    let mut setup = Setup::new();
    setup.set("source.url", &support::toml_str(db.url()));
    setup.set("source.query", &support::toml_str(
        "SELECT id, number, state, customer_email, language, waiting_since FROM tickets WHERE state <> 'closed'",
    ));
    if let Some(zone) = zone {
        setup.set("source.timezone", &support::toml_str(zone.name()));
    }
    setup.email_channel("mail", 9, "");
    setup.policy("first-notice", "match = { state = [\"open\"] }\nafter = \"1h\"\nchannel = \"mail\"\ntemplate = \"interim\"");

    let plan = setup
        .json(&["plan", "--format", "json"])
        .unwrap_or_else(|e| panic!("{e}"));
    let rows = plan.as_array().expect("plan --format json prints an array");
    let due: BTreeSet<String> = rows.iter().map(|r| text(&r["ticket_id"])).collect();
    assert_eq!(
        due,
        BTreeSet::from(["1".to_string(), "4".to_string()]),
        "{plan:#}"
    );
    for row in rows {
        assert_eq!(
            (row["policy"].as_str(), row["number"].as_u64()),
            (Some("first-notice"), Some(1))
        );
        assert_eq!(row["channel"], "mail");
        let recipient = text(&row["recipient"]);
        assert!(recipient.contains(&Ticket::email(text(&row["ticket_id"]).parse().unwrap_or(0))));
        for key in ["due_at", "send_at"] {
            let value = row[key].as_str().unwrap_or_default();
            assert!(
                chrono::DateTime::parse_from_rfc3339(value).is_ok(),
                "{key} = {value:?}"
            );
        }
    }
}

#[test]
fn postgres_timestamptz_columns_select_the_due_tickets() {
    plan_due_tickets(Server::Postgres, TIMESTAMPTZ, None);
}

#[test]
fn postgres_naive_timestamps_are_read_in_utc_by_default() {
    plan_due_tickets(Server::Postgres, NAIVE, None);
}

#[test]
fn postgres_unix_seconds_select_the_due_tickets() {
    plan_due_tickets(Server::Postgres, UNIX, None);
}

#[test]
fn mariadb_datetime_columns_select_the_due_tickets() {
    plan_due_tickets(Server::MariaDb, DATETIME, None);
}

#[test]
fn mariadb_datetimes_are_read_in_the_source_timezone() {
    plan_due_tickets(Server::MariaDb, DATETIME, Some(chrono_tz::Asia::Kolkata));
}

#[test]
fn mariadb_unix_seconds_select_the_due_tickets() {
    plan_due_tickets(Server::MariaDb, UNIX, None);
}

/// Every id of `ids` is written into an `id` column of `sql_type`; `plan`
/// must list each ticket under exactly that id.
fn ids_come_out_exactly(server: Server, sql_type: &str, ids: &[&str]) {
    let Some(db) = TestDatabase::create(server) else {
        return;
    };
    db.execute(&format!(
        "CREATE TABLE tickets (id {sql_type} PRIMARY KEY, state VARCHAR(20) NOT NULL, \
         customer_email VARCHAR(100), waiting_since BIGINT NOT NULL)"
    ));
    let since = (Utc::now() - Duration::hours(2)).timestamp();
    for (n, id) in ids.iter().enumerate() {
        db.execute(&format!(
            "INSERT INTO tickets VALUES ({id}, 'open', '{}', {since})",
            Ticket::email(n as i64)
        ));
    }
    let mut setup = Setup::new();
    setup.set("source.url", &support::toml_str(db.url()));
    setup.set(
        "source.query",
        &support::toml_str("SELECT id, state, customer_email, waiting_since FROM tickets"),
    );
    setup.email_channel("mail", 9, "");
    setup.policy(
        "first-notice",
        "match = { state = [\"open\"] }\nafter = \"1h\"\nchannel = \"mail\"\ntemplate = \"interim\"",
    );
    let plan = setup
        .json(&["plan", "--format", "json"])
        .unwrap_or_else(|e| panic!("{sql_type}: {e}"));
    let got: BTreeSet<String> = plan
        .as_array()
        .map(|rows| rows.iter().map(|r| text(&r["ticket_id"])).collect())
        .unwrap_or_default();
    let wanted: BTreeSet<String> = ids.iter().map(|id| (*id).to_string()).collect();
    assert_eq!(got, wanted, "{sql_type} ids\n{plan:#}");
}

#[test]
fn mariadb_unsigned_ids_of_every_width_come_out_exactly() {
    for (sql_type, max) in [
        ("TINYINT UNSIGNED", "255"),
        ("SMALLINT UNSIGNED", "65535"),
        ("MEDIUMINT UNSIGNED", "16777215"),
        ("INT UNSIGNED", "4294967295"),
        ("BIGINT UNSIGNED", "18446744073709551615"),
    ] {
        ids_come_out_exactly(Server::MariaDb, sql_type, &["0", "1", "2", max]);
    }
}

#[test]
fn mariadb_signed_and_decimal_ids_come_out_exactly() {
    ids_come_out_exactly(
        Server::MariaDb,
        "BIGINT",
        &["-9223372036854775808", "9223372036854775807", "1"],
    );
    ids_come_out_exactly(
        Server::MariaDb,
        "DECIMAL(30,0)",
        &["123456789012345678901234567890", "7"],
    );
}

#[test]
fn postgres_integer_and_numeric_ids_come_out_exactly() {
    ids_come_out_exactly(Server::Postgres, "SMALLINT", &["-32768", "32767"]);
    ids_come_out_exactly(Server::Postgres, "INTEGER", &["-2147483648", "2147483647"]);
    ids_come_out_exactly(
        Server::Postgres,
        "BIGINT",
        &["-9223372036854775808", "9223372036854775807"],
    );
    ids_come_out_exactly(
        Server::Postgres,
        "NUMERIC",
        &[
            "123456789012345678901234567890",
            "18446744073709551616",
            "3",
        ],
    );
    ids_come_out_exactly(
        Server::Postgres,
        "NUMERIC(20,0)",
        &["18446744073709551615", "4"],
    );
}
