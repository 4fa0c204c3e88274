//! The database presets: `zammad-db` against a real PostgreSQL and
//! `znuny-db` against a real MariaDB, with tables from the helpdesks'
//! published DDL (Zammad's db/migrate/20120101000010_create_ticket.rb and
//! 20120101000001_create_base.rb, Znuny's scripts/database/schema.mysql.sql;
//! only the tables and columns the presets touch, names and types as
//! published). The API presets are in `api_presets.rs`. A database test
//! without its server URL in the environment prints why it is skipped.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use support::mariadb::MariaDbDatabase;
use support::postgres::PgDatabase;
use support::presets::{H, has_line, plan, preset_setup, sources_test, waiting_since};
use support::{Setup, SmtpSink, text, toml_str};

// ---------------------------------------------------------------- zammad-db

/// Zammad's tables as its Rails migrations create them on PostgreSQL
/// (`t.timestamps limit: 3` = `timestamp(3) without time zone`, in UTC).
const ZAMMAD_DDL: &str = r#"
CREATE TABLE users (
    id serial PRIMARY KEY,
    organization_id integer NULL,
    login varchar(255) NOT NULL,
    firstname varchar(100) NULL DEFAULT '',
    lastname varchar(100) NULL DEFAULT '',
    email varchar(255) NULL DEFAULT '',
    active boolean NOT NULL DEFAULT true,
    preferences text NULL,
    updated_by_id integer NOT NULL,
    created_by_id integer NOT NULL,
    created_at timestamp(3) NOT NULL,
    updated_at timestamp(3) NOT NULL
);
CREATE UNIQUE INDEX index_users_on_login ON users (login);
CREATE TABLE groups (
    id serial PRIMARY KEY,
    name varchar(160) NOT NULL,
    active boolean NOT NULL DEFAULT true,
    note varchar(250) NULL,
    updated_by_id integer NOT NULL,
    created_by_id integer NOT NULL,
    created_at timestamp(3) NOT NULL,
    updated_at timestamp(3) NOT NULL
);
CREATE UNIQUE INDEX index_groups_on_name ON groups (name);
CREATE TABLE ticket_state_types (
    id serial PRIMARY KEY,
    name varchar(250) NOT NULL,
    note varchar(250) NULL,
    updated_by_id integer NOT NULL,
    created_by_id integer NOT NULL,
    created_at timestamp(3) NOT NULL,
    updated_at timestamp(3) NOT NULL
);
CREATE UNIQUE INDEX index_ticket_state_types_on_name ON ticket_state_types (name);
CREATE TABLE ticket_states (
    id serial PRIMARY KEY,
    state_type_id integer NOT NULL REFERENCES ticket_state_types (id),
    name varchar(250) NOT NULL,
    next_state_id integer NULL,
    ignore_escalation boolean NOT NULL DEFAULT false,
    default_create boolean NOT NULL DEFAULT false,
    default_follow_up boolean NOT NULL DEFAULT false,
    note varchar(250) NULL,
    active boolean NOT NULL DEFAULT true,
    updated_by_id integer NOT NULL,
    created_by_id integer NOT NULL,
    created_at timestamp(3) NOT NULL,
    updated_at timestamp(3) NOT NULL
);
CREATE UNIQUE INDEX index_ticket_states_on_name ON ticket_states (name);
CREATE TABLE ticket_priorities (
    id serial PRIMARY KEY,
    name varchar(250) NOT NULL,
    default_create boolean NOT NULL DEFAULT false,
    ui_icon varchar(100) NULL,
    ui_color varchar(100) NULL,
    note varchar(250) NULL,
    active boolean NOT NULL DEFAULT true,
    updated_by_id integer NOT NULL,
    created_by_id integer NOT NULL,
    created_at timestamp(3) NOT NULL,
    updated_at timestamp(3) NOT NULL
);
CREATE UNIQUE INDEX index_ticket_priorities_on_name ON ticket_priorities (name);
CREATE TABLE tickets (
    id serial PRIMARY KEY,
    group_id integer NOT NULL REFERENCES groups (id),
    priority_id integer NOT NULL REFERENCES ticket_priorities (id),
    state_id integer NOT NULL REFERENCES ticket_states (id),
    organization_id integer NULL,
    number varchar(60) NOT NULL,
    title varchar(250) NOT NULL,
    owner_id integer NOT NULL REFERENCES users (id),
    customer_id integer NOT NULL REFERENCES users (id),
    note varchar(250) NULL,
    first_response_at timestamp(3) NULL,
    close_at timestamp(3) NULL,
    last_close_at timestamp(3) NULL,
    last_contact_at timestamp(3) NULL,
    last_contact_agent_at timestamp(3) NULL,
    last_contact_customer_at timestamp(3) NULL,
    last_owner_update_at timestamp(3) NULL,
    create_article_type_id integer NULL,
    create_article_sender_id integer NULL,
    article_count integer NULL,
    escalation_at timestamp(3) NULL,
    pending_time timestamp(3) NULL,
    type varchar(100) NULL,
    preferences text NULL,
    updated_by_id integer NOT NULL,
    created_by_id integer NOT NULL,
    created_at timestamp(3) NOT NULL,
    updated_at timestamp(3) NOT NULL
);
CREATE UNIQUE INDEX index_tickets_on_number ON tickets (number);
CREATE INDEX index_tickets_on_updated_at ON tickets (updated_at);
CREATE TABLE ticket_article_types (
    id serial PRIMARY KEY,
    name varchar(250) NOT NULL,
    note varchar(250) NULL,
    communication boolean NOT NULL,
    active boolean NOT NULL DEFAULT true,
    updated_by_id integer NOT NULL,
    created_by_id integer NOT NULL,
    created_at timestamp(3) NOT NULL,
    updated_at timestamp(3) NOT NULL
);
CREATE UNIQUE INDEX index_ticket_article_types_on_name ON ticket_article_types (name);
CREATE TABLE ticket_article_senders (
    id serial PRIMARY KEY,
    name varchar(250) NOT NULL,
    note varchar(250) NULL,
    updated_by_id integer NOT NULL,
    created_by_id integer NOT NULL,
    created_at timestamp(3) NOT NULL,
    updated_at timestamp(3) NOT NULL
);
CREATE UNIQUE INDEX index_ticket_article_senders_on_name ON ticket_article_senders (name);
CREATE TABLE ticket_articles (
    id serial PRIMARY KEY,
    ticket_id integer NOT NULL REFERENCES tickets (id),
    type_id integer NOT NULL REFERENCES ticket_article_types (id),
    sender_id integer NOT NULL REFERENCES ticket_article_senders (id),
    "from" varchar(3000) NULL,
    "to" varchar(3000) NULL,
    cc varchar(3000) NULL,
    subject varchar(3000) NULL,
    reply_to varchar(300) NULL,
    message_id varchar(3000) NULL,
    message_id_md5 varchar(32) NULL,
    in_reply_to varchar(3000) NULL,
    content_type varchar(20) NOT NULL DEFAULT 'text/plain',
    "references" varchar(3200) NULL,
    body text NOT NULL,
    internal boolean NOT NULL DEFAULT false,
    preferences text NULL,
    updated_by_id integer NOT NULL,
    created_by_id integer NOT NULL,
    origin_by_id integer NULL,
    created_at timestamp(3) NOT NULL,
    updated_at timestamp(3) NOT NULL
);
CREATE INDEX index_ticket_articles_on_ticket_id ON ticket_articles (ticket_id);
CREATE INDEX index_ticket_articles_on_message_id_md5 ON ticket_articles (message_id_md5);
CREATE INDEX index_ticket_articles_on_internal ON ticket_articles (internal);
CREATE INDEX index_ticket_articles_on_created_at ON ticket_articles (created_at);
"#;

/// Zammad's seeded state types, states (id, name, type; as
/// db/seeds/ticket_states.rb and ticket_state_types.rb seed them, and as
/// `support::shapes::ZAMMAD_STATES` lists them for the API), priorities,
/// article types and senders, plus a custom state "in progress" of type
/// open after the seeded ones (id 8).
const ZAMMAD_SEED: &str = r#"
INSERT INTO users (id, login, firstname, lastname, email, updated_by_id, created_by_id, created_at, updated_at)
VALUES (1, '-', '', '', '', 1, 1, now(), now()),
       (2, 'agent@example.com', 'Agnes', 'Agent', 'agent@example.com', 1, 1, now(), now());
INSERT INTO groups (id, name, updated_by_id, created_by_id, created_at, updated_at)
VALUES (1, 'Users', 1, 1, now(), now()), (2, 'Billing', 1, 1, now(), now());
INSERT INTO ticket_state_types (id, name, updated_by_id, created_by_id, created_at, updated_at)
VALUES (1, 'new', 1, 1, now(), now()), (2, 'open', 1, 1, now(), now()),
       (3, 'pending reminder', 1, 1, now(), now()), (4, 'pending action', 1, 1, now(), now()),
       (5, 'closed', 1, 1, now(), now()), (6, 'merged', 1, 1, now(), now()),
       (7, 'removed', 1, 1, now(), now()), (8, 'pending review', 1, 1, now(), now()),
       (9, 'delegated', 1, 1, now(), now());
INSERT INTO ticket_states (id, state_type_id, name, next_state_id, active, updated_by_id, created_by_id, created_at, updated_at)
VALUES (1, 1, 'new', NULL, true, 1, 1, now(), now()), (2, 2, 'open', NULL, true, 1, 1, now(), now()),
       (3, 3, 'pending reminder', NULL, true, 1, 1, now(), now()),
       (4, 5, 'closed', NULL, true, 1, 1, now(), now()),
       (5, 6, 'merged', NULL, true, 1, 1, now(), now()),
       (6, 7, 'removed', NULL, false, 1, 1, now(), now()),
       (7, 4, 'pending close', 4, true, 1, 1, now(), now()),
       (8, 2, 'in progress', NULL, true, 1, 1, now(), now());
INSERT INTO ticket_priorities (id, name, updated_by_id, created_by_id, created_at, updated_at)
VALUES (1, '1 low', 1, 1, now(), now()), (2, '2 normal', 1, 1, now(), now()),
       (3, '3 high', 1, 1, now(), now());
INSERT INTO ticket_article_types (id, name, communication, updated_by_id, created_by_id, created_at, updated_at)
VALUES (1, 'email', true, 1, 1, now(), now()), (5, 'phone', true, 1, 1, now(), now()),
       (10, 'note', false, 1, 1, now(), now()), (11, 'web', true, 1, 1, now(), now());
INSERT INTO ticket_article_senders (id, name, updated_by_id, created_by_id, created_at, updated_at)
VALUES (1, 'Agent', 1, 1, now(), now()), (2, 'Customer', 1, 1, now(), now()),
       (3, 'System', 1, 1, now(), now());
"#;

/// Who wrote an article, and how.
#[derive(Clone, Copy, PartialEq)]
enum Written {
    /// A public agent reply (email).
    Agent,
    /// An agent's internal note.
    InternalNote,
    /// An agent's note the customer may see (not a communication type).
    PublicNote,
    /// A customer's email.
    Customer,
    /// A customer-side auto-response (an out-of-office mail).
    CustomerAutoResponse,
    /// A trigger's auto-reply (sender System), visible to the customer.
    SystemAutoReply,
}

/// One seeded ticket: its state, when it was created, its articles (seconds
/// before the test's `now`, who wrote) and, per clock, when its wait began
/// (seconds before `now`; None: not waiting under that clock).
struct Seeded {
    id: i64,
    state: &'static str,
    created: i64,
    articles: &'static [(i64, Written)],
    last_public_contact: Option<i64>,
    agent_updates: Option<i64>,
    customer_message: Option<i64>,
}

const M: i64 = 60;

use Written::{Agent, Customer, CustomerAutoResponse, InternalNote, PublicNote, SystemAutoReply};

/// Tickets in every state Zammad seeds; 1 to 4 and 9 wait (state types new
/// and open), the others do not.
const ZAMMAD_TICKETS: [Seeded; 9] = [
    // Opened on the web form 3 h ago, nobody answered.
    Seeded {
        id: 1,
        state: "new",
        created: 3 * H,
        articles: &[(3 * H, Customer)],
        last_public_contact: Some(3 * H),
        agent_updates: Some(3 * H),
        customer_message: Some(3 * H),
    },
    // The agent answered 5 h ago; the customer wrote again 2 h and 1 h ago
    // (the second message moves no Zammad bookkeeping column); an internal
    // note 30 min ago is no contact.
    Seeded {
        id: 2,
        state: "open",
        created: 8 * H,
        articles: &[
            (8 * H, Customer),
            (5 * H, Agent),
            (2 * H, Customer),
            (H, Customer),
            (30 * M, InternalNote),
        ],
        last_public_contact: Some(H),
        agent_updates: Some(5 * H),
        customer_message: Some(2 * H),
    },
    // A trigger's auto-reply, then the agent's reply 90 min ago; the
    // customer's out-of-office answer to it is no contact.
    Seeded {
        id: 3,
        state: "open",
        created: 6 * H,
        articles: &[
            (6 * H, Customer),
            (6 * H - 10, SystemAutoReply),
            (90 * M, Agent),
            (80 * M, CustomerAutoResponse),
        ],
        last_public_contact: Some(90 * M),
        agent_updates: Some(90 * M),
        customer_message: None,
    },
    // An agent took the call and wrote the ticket 8 h ago, then only
    // notes, an internal one and one the customer may see.
    Seeded {
        id: 4,
        state: "open",
        created: 8 * H,
        articles: &[(8 * H, Agent), (4 * H, InternalNote), (2 * H, PublicNote)],
        last_public_contact: Some(8 * H),
        agent_updates: Some(8 * H),
        customer_message: None,
    },
    Seeded {
        id: 5,
        state: "pending reminder",
        created: 9 * H,
        articles: &[(9 * H, Customer), (7 * H, Agent)],
        last_public_contact: None,
        agent_updates: None,
        customer_message: None,
    },
    Seeded {
        id: 6,
        state: "pending close",
        created: 9 * H,
        articles: &[(9 * H, Customer), (6 * H, Agent)],
        last_public_contact: None,
        agent_updates: None,
        customer_message: None,
    },
    Seeded {
        id: 7,
        state: "closed",
        created: 9 * H,
        articles: &[(9 * H, Customer), (5 * H, Agent)],
        last_public_contact: None,
        agent_updates: None,
        customer_message: None,
    },
    Seeded {
        id: 8,
        state: "merged",
        created: 9 * H,
        articles: &[(8 * H, Customer)],
        last_public_contact: None,
        agent_updates: None,
        customer_message: None,
    },
    // A custom state of type open waits like open.
    Seeded {
        id: 9,
        state: "in progress",
        created: 7 * H,
        articles: &[(7 * H, Customer), (3 * H, Agent), (20 * M, Customer)],
        last_public_contact: Some(20 * M),
        agent_updates: Some(3 * H),
        customer_message: Some(20 * M),
    },
];

impl Seeded {
    /// When the wait began under `clock`, if the ticket waits.
    fn waiting_since(&self, clock: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let secs = match clock {
            "last_public_contact" => self.last_public_contact,
            "agent_updates" => self.agent_updates,
            _ => self.customer_message,
        }?;
        Some(now - chrono::Duration::seconds(secs))
    }

    /// Zammad's own bookkeeping under its default
    /// `ticket_last_contact_behaviour` ("check_if_agent_already_replied"):
    /// a customer message moves `last_contact_customer_at` only when the
    /// agent wrote since the last one. The preset must not read these.
    fn bookkeeping(&self) -> (Option<i64>, Option<i64>) {
        let (mut agent, mut customer): (Option<i64>, Option<i64>) = (None, None);
        for (at, written) in self.articles {
            match written {
                Agent => agent = Some(*at),
                Customer => {
                    // Seconds ago: the agent wrote after the customer when
                    // fewer seconds have passed since.
                    let agent_wrote_since = match (agent, customer) {
                        (_, None) => true,
                        (Some(a), Some(c)) => a < c,
                        (None, Some(_)) => false,
                    };
                    if agent_wrote_since {
                        customer = Some(*at);
                    }
                }
                _ => {}
            }
        }
        (agent, customer)
    }
}

/// The id of a state in `ZAMMAD_SEED`.
fn zammad_state_id(state: &str) -> i64 {
    match state {
        "new" => 1,
        "open" => 2,
        "pending reminder" => 3,
        "closed" => 4,
        "merged" => 5,
        "removed" => 6,
        "pending close" => 7,
        "in progress" => 8,
        other => panic!("no Zammad state {other:?} in the seed"),
    }
}

/// `timestamp(3)` text in UTC, or NULL.
fn naive_utc(now: DateTime<Utc>, secs: Option<i64>) -> String {
    secs.map_or("NULL".into(), |s| {
        let t = now - chrono::Duration::seconds(s);
        format!("'{}'", t.format("%Y-%m-%d %H:%M:%S"))
    })
}

/// The Message-ID of ticket N's customer article written `at` seconds ago.
fn zammad_message_id(ticket: i64, at: i64) -> String {
    format!("<customer.{ticket}.{at}@mail.example.com>")
}

/// A Zammad database with [`ZAMMAD_TICKETS`]; customer of ticket N is user
/// 100+N, "Anna Kunde N" <kunde.N@example.com>. Ticket 2 is of priority
/// "3 high", the others "2 normal".
fn zammad_database(now: DateTime<Utc>) -> Option<PgDatabase> {
    let db = PgDatabase::create()?;
    db.execute(ZAMMAD_DDL);
    db.execute(ZAMMAD_SEED);
    for t in &ZAMMAD_TICKETS {
        let user = 100 + t.id;
        db.execute(&format!(
            "INSERT INTO users (id, login, firstname, lastname, email, preferences, updated_by_id, created_by_id, created_at, updated_at) \
             VALUES ({user}, 'kunde.{id}@example.com', 'Anna', 'Kunde {id}', 'kunde.{id}@example.com', {prefs}, 1, 1, now(), now())",
            id = t.id,
            prefs = zammad_preferences(t.id),
        ));
        let (agent, customer) = t.bookkeeping();
        let last_contact = naive_utc(now, [agent, customer].into_iter().flatten().min());
        db.execute(&format!(
            "INSERT INTO tickets (id, group_id, priority_id, state_id, number, title, owner_id, customer_id, \
               last_contact_at, last_contact_agent_at, last_contact_customer_at, create_article_type_id, \
               create_article_sender_id, article_count, updated_by_id, created_by_id, created_at, updated_at) \
             VALUES ({id}, 1, {priority}, {state}, '{number}', 'Zammad ticket {id}', 2, {user}, {last_contact}, {agent}, \
               {customer}, 1, 2, {count}, 2, {user}, {created}, {updated})",
            id = t.id,
            priority = if t.id == 2 { 3 } else { 2 },
            state = zammad_state_id(t.state),
            number = 31000 + t.id,
            agent = naive_utc(now, agent),
            customer = naive_utc(now, customer),
            count = t.articles.len(),
            created = naive_utc(now, Some(t.created)),
            updated = naive_utc(now, Some(10 * M)),
        ));
        for (at, written) in t.articles {
            zammad_article(&db, now, t.id, *at, *written);
        }
    }
    Some(db)
}

/// One article as Zammad writes it: sender, type, `internal`, and in
/// `preferences` the auto-response flag of an out-of-office mail.
fn zammad_article(db: &PgDatabase, now: DateTime<Utc>, ticket: i64, at: i64, written: Written) {
    let customer = 100 + ticket;
    let (sender, type_id, internal, by, preferences) = match written {
        Agent => (1, 1, false, 2, "NULL"),
        InternalNote => (1, 10, true, 2, "NULL"),
        PublicNote => (1, 10, false, 2, "NULL"),
        Customer => (2, 1, false, customer, "NULL"),
        CustomerAutoResponse => (
            2,
            1,
            false,
            customer,
            "E'--- !ruby/hash:ActiveSupport::HashWithIndifferentAccess\nis-auto-response: true\n'",
        ),
        SystemAutoReply => (
            3,
            1,
            false,
            1,
            "E'--- !ruby/hash:ActiveSupport::HashWithIndifferentAccess\nperform_origin: trigger\n'",
        ),
    };
    let message_id = if written == Customer {
        format!("'{}'", zammad_message_id(ticket, at))
    } else {
        format!("'<agent.{ticket}.{at}@zammad.example.com>'")
    };
    db.execute(&format!(
        "INSERT INTO ticket_articles (ticket_id, type_id, sender_id, \"from\", subject, message_id, body, internal, \
           preferences, updated_by_id, created_by_id, created_at, updated_at) \
         VALUES ({ticket}, {type_id}, {sender}, 'someone', 'Zammad ticket {ticket}', {message_id}, 'text', {internal}, \
           {preferences}, {by}, {by}, {at}, {at})",
        at = naive_utc(now, Some(at)),
    ));
}

/// `users.preferences` as Zammad stores them (a YAML-serialized hash):
/// the customer of ticket 2 uses en-us, of 3 de-de, of 4 has preferences
/// without a locale, of the others none at all.
fn zammad_preferences(ticket: i64) -> &'static str {
    match ticket {
        2 => {
            "E'--- !ruby/hash:ActiveSupport::HashWithIndifferentAccess\nlocale: en-us\nintro: true\n'"
        }
        3 => {
            "E'--- !ruby/hash:ActiveSupport::HashWithIndifferentAccess\nnotification_sound:\n  file: Xylo.mp3\n  enabled: true\nlocale: de-de\n'"
        }
        4 => "E'--- !ruby/hash:ActiveSupport::HashWithIndifferentAccess\nintro: true\n'",
        _ => "NULL",
    }
}

fn zammad_db_setup(db: &PgDatabase, after: &str) -> Setup {
    zammad_db_mailing(db, after, 9)
}

/// [`zammad_db_setup`] with its mail going to `mail_port`.
fn zammad_db_mailing(db: &PgDatabase, after: &str, mail_port: u16) -> Setup {
    let mut setup = preset_setup("zammad-db", after, mail_port);
    setup.set("source.url_env", "\"INTERIM_TEST_ZAMMAD_DB_URL\"");
    setup.env("INTERIM_TEST_ZAMMAD_DB_URL", &db.url);
    setup
}

/// The waits `plan` reads under `clock` are the table's.
fn assert_zammad_clock(setup: &Setup, clock: &str, now: DateTime<Utc>) {
    let expected = ZAMMAD_TICKETS
        .iter()
        .filter_map(|t| Some((t.id.to_string(), t.waiting_since(clock, now)?)))
        .collect();
    assert_clock(setup, clock, &expected);
}

/// The tickets `plan` lists under `clock`, with when each wait began, must
/// be exactly `expected`; `sources test` names the clock, and the preset's
/// re-check reads the first ticket as the poll did.
fn assert_clock(setup: &Setup, clock: &str, expected: &BTreeMap<String, DateTime<Utc>>) {
    let plan = plan(setup);
    let read: BTreeMap<String, DateTime<Utc>> = plan
        .iter()
        .map(|(id, row)| (id.clone(), waiting_since(row)))
        .collect();
    assert_eq!(&read, expected, "waits under clock {clock}\n{plan:#?}");
    let out = sources_test(setup);
    assert!(has_line(&out, &[&format!("clock: {clock} (")]), "{out}");
    assert!(
        has_line(
            &out,
            &["recheck_query: re-read ticket", "still waiting since"]
        ),
        "the preset's re-check reads the first ticket as the poll did\n{out}"
    );
}

#[test]
fn zammad_db_selects_new_and_open_tickets_since_the_last_public_contact() {
    let now = Utc::now().trunc_subsecs(0);
    let Some(db) = zammad_database(now) else {
        return;
    };
    let setup = zammad_db_setup(&db, "1h");
    assert_zammad_clock(&setup, "last_public_contact", now);
    let plan = plan(&setup);
    for id in ["1", "2", "3", "4", "9"] {
        assert_eq!(
            text(&plan[id]["recipient"]),
            format!("kunde.{id}@example.com")
        );
    }

    let out = sources_test(&setup);
    assert!(out.contains("read 5 waiting ticket(s)"), "{out}");
    assert!(has_line(&out, &["ticket 2 (#31002)"]), "{out}");
    assert!(
        has_line(
            &out,
            &["state \"open\"", "priority \"high\"", "queue \"Users\""]
        ),
        "the priority as a team reads it\n{out}"
    );
    assert!(
        has_line(&out, &["extra", "\"priority_raw\":\"3 high\""]),
        "{out}"
    );
    assert!(has_line(&out, &["priority \"normal\""]), "{out}");
    assert!(has_line(&out, &["state \"new\""]), "{out}");
    assert!(has_line(&out, &["state \"in progress\""]), "{out}");
    for (id, language) in [(1, "-"), (2, "en"), (3, "de"), (4, "-")] {
        assert!(
            has_line(
                &out,
                &[&format!(
                    "customer Anna Kunde {id} <kunde.{id}@example.com>, language {language},"
                )]
            ),
            "the customer's locale of ticket {id}\n{out}"
        );
    }
    assert!(has_line(&out, &["subject \"Zammad ticket 3\""]), "{out}");
    assert!(
        has_line(
            &out,
            &[
                "thread: subject carries [Ticket#31002], in reply to",
                &zammad_message_id(2, 8 * H)
            ]
        ),
        "replies find ticket 2 by its marker and its first customer article\n{out}"
    );
    assert!(
        has_line(&out, &["thread: subject carries [Ticket#31004]"]),
        "an agent-opened ticket has a marker but no customer article\n{out}"
    );
}

#[test]
fn zammad_db_clocks_agent_updates_and_customer_message() {
    let now = Utc::now().trunc_subsecs(0);
    let Some(db) = zammad_database(now) else {
        return;
    };
    for clock in ["agent_updates", "customer_message"] {
        let mut setup = zammad_db_setup(&db, "1h");
        setup.set("source.clock", &toml_str(clock));
        assert_zammad_clock(&setup, clock, now);
    }
}

#[test]
fn zammad_db_notice_threads_into_the_ticket() {
    let now = Utc::now().trunc_subsecs(0);
    let Some(db) = zammad_database(now) else {
        return;
    };
    let sink = SmtpSink::start();
    let mut setup = zammad_db_mailing(&db, "1h", sink.port());
    // The templates the package ships, not the test's own.
    setup.set(
        "templates.dir",
        &toml_str(concat!(env!("CARGO_MANIFEST_DIR"), "/config/templates")),
    );
    let _daemon = setup.start();
    setup.wait_until(
        Duration::from_secs(30),
        "the notice to ticket 2's customer",
        || !sink.mails_to("kunde.2@example.com").is_empty(),
    );
    let mail = &sink.mails_to("kunde.2@example.com")[0];
    assert_eq!(
        mail.subject(),
        "Update on your request: Zammad ticket 2 [Ticket#31002]",
        "English for the en-us customer, Zammad's marker in the subject"
    );
    let first = zammad_message_id(2, 8 * H);
    assert_eq!(mail.header("In-Reply-To").as_deref(), Some(first.as_str()));
    assert!(
        mail.header("References")
            .is_some_and(|r| r.contains(&first)),
        "{:?}",
        mail.header("References")
    );
}

#[test]
fn zammad_db_incremental_polls_end_a_closed_wait() {
    // A PostgreSQL server whose TimeZone is not UTC (initdb takes the host's
    // zone), while Zammad writes UTC into its `timestamp` columns: the
    // `:since` comparison must not depend on the session's zone. Only an
    // incremental poll can end the wait: the next full one is an hour away.
    let now = Utc::now().trunc_subsecs(0);
    let Some(db) = zammad_database(now) else {
        return;
    };
    db.execute(&format!(
        "ALTER DATABASE {} SET timezone TO 'Asia/Kolkata'",
        db.name
    ));
    let mut setup = zammad_db_setup(&db, "10h");
    setup.set("source.full_resync", "\"1h\"");
    let _daemon = setup.start();
    setup.wait_for_notices("five planned notices", |n| {
        n.len() == 5 && n.iter().all(|n| n.status == "pending")
    });
    db.execute(
        "UPDATE tickets SET state_id = 4, close_at = (now() AT TIME ZONE 'UTC'), \
         updated_at = (now() AT TIME ZONE 'UTC') WHERE id = 2",
    );
    let ledger = setup.wait_for_notices(
        "the closed ticket's notice is cancelled by an incremental poll",
        |n| {
            n.iter()
                .any(|n| n.ticket_id == "2" && n.status == "cancelled")
        },
    );
    for n in ledger.iter().filter(|n| n.ticket_id != "2") {
        assert_eq!(n.status, "pending", "{n:?}");
    }
}

// ---------------------------------------------------------------- znuny-db

/// Znuny's tables exactly as scripts/database/schema.mysql.sql creates them.
const ZNUNY_DDL: &str = r#"
CREATE TABLE queue (
    id INTEGER NOT NULL AUTO_INCREMENT,
    name VARCHAR (200) NOT NULL,
    group_id INTEGER NOT NULL,
    unlock_timeout INTEGER NULL,
    first_response_time INTEGER NULL,
    first_response_notify SMALLINT NULL,
    update_time INTEGER NULL,
    update_notify SMALLINT NULL,
    solution_time INTEGER NULL,
    solution_notify SMALLINT NULL,
    system_address_id SMALLINT NOT NULL,
    calendar_name VARCHAR (100) NULL,
    default_sign_key VARCHAR (100) NULL,
    salutation_id SMALLINT NOT NULL,
    signature_id SMALLINT NOT NULL,
    follow_up_id SMALLINT NOT NULL,
    follow_up_lock SMALLINT NOT NULL,
    comments VARCHAR (250) NULL,
    valid_id SMALLINT NOT NULL,
    create_time DATETIME NOT NULL,
    create_by INTEGER NOT NULL,
    change_time DATETIME NOT NULL,
    change_by INTEGER NOT NULL,
    PRIMARY KEY(id),
    UNIQUE INDEX queue_name (name),
    INDEX queue_group_id (group_id)
);
CREATE TABLE ticket_priority (
    id SMALLINT NOT NULL AUTO_INCREMENT,
    name VARCHAR (200) NOT NULL,
    valid_id SMALLINT NOT NULL,
    create_time DATETIME NOT NULL,
    create_by INTEGER NOT NULL,
    change_time DATETIME NOT NULL,
    change_by INTEGER NOT NULL,
    PRIMARY KEY(id),
    UNIQUE INDEX ticket_priority_name (name)
);
CREATE TABLE ticket_state (
    id SMALLINT NOT NULL AUTO_INCREMENT,
    name VARCHAR (200) NOT NULL,
    comments VARCHAR (250) NULL,
    type_id SMALLINT NOT NULL,
    valid_id SMALLINT NOT NULL,
    create_time DATETIME NOT NULL,
    create_by INTEGER NOT NULL,
    change_time DATETIME NOT NULL,
    change_by INTEGER NOT NULL,
    PRIMARY KEY(id),
    UNIQUE INDEX ticket_state_name (name)
);
CREATE TABLE ticket_state_type (
    id SMALLINT NOT NULL AUTO_INCREMENT,
    name VARCHAR (200) NOT NULL,
    comments VARCHAR (250) NULL,
    create_time DATETIME NOT NULL,
    create_by INTEGER NOT NULL,
    change_time DATETIME NOT NULL,
    change_by INTEGER NOT NULL,
    PRIMARY KEY(id),
    UNIQUE INDEX ticket_state_type_name (name)
);
CREATE TABLE ticket (
    id BIGINT NOT NULL AUTO_INCREMENT,
    tn VARCHAR (50) NOT NULL,
    title VARCHAR (255) NULL,
    queue_id INTEGER NOT NULL,
    ticket_lock_id SMALLINT NOT NULL,
    type_id SMALLINT NULL,
    service_id INTEGER NULL,
    sla_id INTEGER NULL,
    user_id INTEGER NOT NULL,
    responsible_user_id INTEGER NOT NULL,
    ticket_priority_id SMALLINT NOT NULL,
    ticket_state_id SMALLINT NOT NULL,
    customer_id VARCHAR (150) NULL,
    customer_user_id VARCHAR (250) NULL,
    timeout INTEGER NOT NULL,
    until_time INTEGER NOT NULL,
    escalation_time INTEGER NOT NULL,
    escalation_update_time INTEGER NOT NULL,
    escalation_response_time INTEGER NOT NULL,
    escalation_solution_time INTEGER NOT NULL,
    archive_flag SMALLINT NOT NULL DEFAULT 0,
    create_time DATETIME NOT NULL,
    create_by INTEGER NOT NULL,
    change_time DATETIME NOT NULL,
    change_by INTEGER NOT NULL,
    PRIMARY KEY(id),
    UNIQUE INDEX ticket_tn (tn),
    INDEX ticket_archive_flag (archive_flag),
    INDEX ticket_create_time (create_time),
    INDEX ticket_customer_id (customer_id),
    INDEX ticket_customer_user_id (customer_user_id),
    INDEX ticket_queue_id (queue_id),
    INDEX ticket_queue_view (ticket_state_id, ticket_lock_id),
    INDEX ticket_ticket_priority_id (ticket_priority_id),
    INDEX ticket_ticket_state_id (ticket_state_id),
    INDEX ticket_until_time (until_time)
);
CREATE TABLE article (
    id BIGINT NOT NULL AUTO_INCREMENT,
    ticket_id BIGINT NOT NULL,
    article_sender_type_id SMALLINT NOT NULL,
    communication_channel_id BIGINT NOT NULL,
    is_visible_for_customer SMALLINT NOT NULL,
    search_index_needs_rebuild SMALLINT NOT NULL DEFAULT 1,
    insert_fingerprint VARCHAR (64) NULL,
    create_time DATETIME NOT NULL,
    create_by INTEGER NOT NULL,
    change_time DATETIME NOT NULL,
    change_by INTEGER NOT NULL,
    PRIMARY KEY(id),
    INDEX article_article_sender_type_id (article_sender_type_id),
    INDEX article_communication_channel_id (communication_channel_id),
    INDEX article_search_index_needs_rebuild (search_index_needs_rebuild),
    INDEX article_ticket_id (ticket_id)
);
CREATE TABLE customer_user (
    id INTEGER NOT NULL AUTO_INCREMENT,
    login VARCHAR (200) NOT NULL,
    email VARCHAR (150) NOT NULL,
    customer_id VARCHAR (150) NOT NULL,
    pw VARCHAR (128) NULL,
    title VARCHAR (50) NULL,
    first_name VARCHAR (100) NOT NULL,
    last_name VARCHAR (100) NOT NULL,
    phone VARCHAR (150) NULL,
    fax VARCHAR (150) NULL,
    mobile VARCHAR (150) NULL,
    street VARCHAR (150) NULL,
    zip VARCHAR (200) NULL,
    city VARCHAR (200) NULL,
    country VARCHAR (200) NULL,
    comments VARCHAR (250) NULL,
    valid_id SMALLINT NOT NULL,
    create_time DATETIME NOT NULL,
    create_by INTEGER NOT NULL,
    change_time DATETIME NOT NULL,
    change_by INTEGER NOT NULL,
    PRIMARY KEY(id),
    UNIQUE INDEX customer_user_login (login)
);
CREATE TABLE article_sender_type (
    id SMALLINT NOT NULL AUTO_INCREMENT,
    name VARCHAR (200) NOT NULL,
    comments VARCHAR (250) NULL,
    valid_id SMALLINT NOT NULL,
    create_time DATETIME NOT NULL,
    create_by INTEGER NOT NULL,
    change_time DATETIME NOT NULL,
    change_by INTEGER NOT NULL,
    PRIMARY KEY(id),
    UNIQUE INDEX article_sender_type_name (name)
);
CREATE TABLE article_data_mime (
    id BIGINT NOT NULL AUTO_INCREMENT,
    article_id BIGINT NOT NULL,
    a_from MEDIUMTEXT NULL,
    a_reply_to MEDIUMTEXT NULL,
    a_to MEDIUMTEXT NULL,
    a_cc MEDIUMTEXT NULL,
    a_bcc MEDIUMTEXT NULL,
    a_subject TEXT NULL,
    a_message_id TEXT NULL,
    a_message_id_md5 VARCHAR (32) NULL,
    a_in_reply_to MEDIUMTEXT NULL,
    a_references MEDIUMTEXT NULL,
    a_content_type VARCHAR (250) NULL,
    a_body MEDIUMTEXT NULL,
    incoming_time INTEGER NOT NULL,
    create_time DATETIME NOT NULL,
    create_by INTEGER NOT NULL,
    change_time DATETIME NOT NULL,
    change_by INTEGER NOT NULL,
    PRIMARY KEY(id),
    INDEX article_data_mime_article_id (article_id),
    INDEX article_data_mime_message_id_md5 (a_message_id_md5)
);
CREATE TABLE customer_preferences (
    user_id VARCHAR (250) NOT NULL,
    preferences_key VARCHAR (150) NOT NULL,
    preferences_value VARCHAR (250) NULL,
    INDEX customer_preferences_user_id (user_id)
);
"#;

/// Znuny's initial_insert.mysql.sql rows for these tables.
const ZNUNY_SEED: &str = r#"
INSERT INTO ticket_state_type (id, name, comments, create_by, create_time, change_by, change_time)
VALUES (1, 'new', 'All new state types (default: viewable).', 1, NOW(), 1, NOW()),
       (2, 'open', 'All open state types (default: viewable).', 1, NOW(), 1, NOW()),
       (3, 'closed', 'All closed state types (default: not viewable).', 1, NOW(), 1, NOW()),
       (4, 'pending reminder', 'All ''pending reminder'' state types (default: viewable).', 1, NOW(), 1, NOW()),
       (5, 'pending auto', 'All ''pending auto *'' state types (default: viewable).', 1, NOW(), 1, NOW()),
       (6, 'removed', 'All ''removed'' state types (default: not viewable).', 1, NOW(), 1, NOW()),
       (7, 'merged', 'State type for merged tickets (default: not viewable).', 1, NOW(), 1, NOW());
INSERT INTO ticket_state (id, name, comments, type_id, valid_id, create_by, create_time, change_by, change_time)
VALUES (1, 'new', 'New ticket created by customer.', 1, 1, 1, NOW(), 1, NOW()),
       (2, 'closed successful', 'Ticket is closed successful.', 3, 1, 1, NOW(), 1, NOW()),
       (3, 'closed unsuccessful', 'Ticket is closed unsuccessful.', 3, 1, 1, NOW(), 1, NOW()),
       (4, 'open', 'Open tickets.', 2, 1, 1, NOW(), 1, NOW()),
       (5, 'removed', 'Customer removed ticket.', 6, 1, 1, NOW(), 1, NOW()),
       (6, 'pending reminder', 'Ticket is pending for agent reminder.', 4, 1, 1, NOW(), 1, NOW()),
       (7, 'pending auto close+', 'Ticket is pending for automatic close.', 5, 1, 1, NOW(), 1, NOW()),
       (8, 'pending auto close-', 'Ticket is pending for automatic close.', 5, 1, 1, NOW(), 1, NOW()),
       (9, 'merged', 'State for merged tickets.', 7, 1, 1, NOW(), 1, NOW());
INSERT INTO ticket_priority (id, name, valid_id, create_by, create_time, change_by, change_time)
VALUES (1, '1 very low', 1, 1, NOW(), 1, NOW()), (2, '2 low', 1, 1, NOW(), 1, NOW()),
       (3, '3 normal', 1, 1, NOW(), 1, NOW()), (4, '4 high', 1, 1, NOW(), 1, NOW()),
       (5, '5 very high', 1, 1, NOW(), 1, NOW());
INSERT INTO article_sender_type (id, name, valid_id, create_by, create_time, change_by, change_time)
VALUES (1, 'agent', 1, 1, NOW(), 1, NOW()), (2, 'system', 1, 1, NOW(), 1, NOW()),
       (3, 'customer', 1, 1, NOW(), 1, NOW());
INSERT INTO queue (id, name, group_id, system_address_id, salutation_id, signature_id, follow_up_id,
                   follow_up_lock, valid_id, create_by, create_time, change_by, change_time)
VALUES (1, 'Postmaster', 1, 1, 1, 1, 1, 0, 1, 1, NOW(), 1, NOW()),
       (2, 'Raw', 1, 1, 1, 1, 1, 0, 1, 1, NOW(), 1, NOW()),
       (3, 'Junk', 1, 1, 1, 1, 1, 0, 1, 1, NOW(), 1, NOW()),
       (4, 'Misc', 1, 1, 1, 1, 1, 0, 1, 1, NOW(), 1, NOW());
"#;

/// Znuny sender types (article_sender_type).
const ZNUNY_AGENT: i64 = 1;
const ZNUNY_SYSTEM: i64 = 2;
const ZNUNY_CUSTOMER: i64 = 3;

/// One Znuny ticket: state id, created (seconds ago), articles as (seconds
/// ago, sender type, visible for the customer), and when its wait began
/// under the clocks last_public_contact, agent_updates, customer_message
/// (seconds ago; None: not waiting).
struct ZnunyTicket {
    id: i64,
    state: i64,
    created: i64,
    articles: &'static [(i64, i64, bool)],
    clocks: [Option<i64>; 3],
}

const ZNUNY_CLOCKS: [&str; 3] = ["last_public_contact", "agent_updates", "customer_message"];

const fn znuny(
    id: i64,
    state: i64,
    created: i64,
    articles: &'static [(i64, i64, bool)],
    clocks: [Option<i64>; 3],
) -> ZnunyTicket {
    ZnunyTicket {
        id,
        state,
        created,
        articles,
        clocks,
    }
}

const ENDED: [Option<i64>; 3] = [None, None, None];

const ZNUNY_TICKETS: [ZnunyTicket; 9] = [
    znuny(
        1,
        1,
        3 * H,
        &[(3 * H, ZNUNY_CUSTOMER, true)],
        [Some(3 * H), Some(3 * H), Some(3 * H)],
    ),
    // The agent answered 4 h ago, the customer wrote again 2 h and 1 h ago;
    // the internal note 30 min ago is no contact.
    znuny(
        2,
        4,
        6 * H,
        &[
            (6 * H, ZNUNY_CUSTOMER, true),
            (4 * H, ZNUNY_AGENT, true),
            (2 * H, ZNUNY_CUSTOMER, true),
            (H, ZNUNY_CUSTOMER, true),
            (30 * 60, ZNUNY_AGENT, false),
        ],
        [Some(H), Some(4 * H), Some(2 * H)],
    ),
    // Znuny's auto-reply (sender system, visible), then the agent's public
    // reply 90 min ago.
    znuny(
        3,
        4,
        7 * H,
        &[
            (6 * H, ZNUNY_CUSTOMER, true),
            (6 * H - 10, ZNUNY_SYSTEM, true),
            (90 * 60, ZNUNY_AGENT, true),
        ],
        [Some(90 * 60), Some(90 * 60), None],
    ),
    znuny(4, 6, 8 * H, &[(5 * H, ZNUNY_CUSTOMER, true)], ENDED),
    znuny(5, 2, 8 * H, &[(5 * H, ZNUNY_CUSTOMER, true)], ENDED),
    znuny(6, 9, 8 * H, &[(5 * H, ZNUNY_CUSTOMER, true)], ENDED),
    // A walk-in customer without a customer_user row: the login is the
    // address. Only Znuny's auto-reply answered.
    znuny(
        7,
        4,
        5 * H,
        &[
            (4 * H, ZNUNY_CUSTOMER, true),
            (4 * H - 5, ZNUNY_SYSTEM, true),
        ],
        [Some(4 * H), Some(5 * H), Some(4 * H)],
    ),
    znuny(8, 7, 8 * H, &[(5 * H, ZNUNY_CUSTOMER, true)], ENDED),
    znuny(9, 5, 8 * H, &[(5 * H, ZNUNY_CUSTOMER, true)], ENDED),
];

/// The Message-ID of Znuny ticket N's article written `at` seconds ago.
fn znuny_message_id(ticket: i64, at: i64) -> String {
    format!("<znuny.{ticket}.{at}@mail.example.de>")
}

const ZNUNY_ZONE: chrono_tz::Tz = chrono_tz::Europe::Berlin;

/// DATETIME text as Znuny writes it: wall-clock time of the server's zone.
fn berlin(now: DateTime<Utc>, secs: i64) -> String {
    let t = (now - chrono::Duration::seconds(secs)).with_timezone(&ZNUNY_ZONE);
    format!("'{}'", t.format("%Y-%m-%d %H:%M:%S"))
}

fn znuny_database(now: DateTime<Utc>) -> Option<MariaDbDatabase> {
    let db = MariaDbDatabase::create()?;
    db.execute(ZNUNY_DDL);
    db.execute(ZNUNY_SEED);
    for ZnunyTicket {
        id,
        state,
        created,
        articles,
        ..
    } in ZNUNY_TICKETS
    {
        let login = if id == 7 {
            "walk-in@example.org".to_string()
        } else {
            format!("kunde{id}")
        };
        if id != 7 {
            db.execute(&format!(
                "INSERT INTO customer_user (login, email, customer_id, first_name, last_name, valid_id, \
                   create_time, create_by, change_time, change_by) \
                 VALUES ('{login}', 'kunde{id}@example.de', 'ACME', 'Karl', 'Kunde {id}', 1, NOW(), 1, NOW(), 1)"
            ));
            // Customer 2 reads English (en_US), 3 German, 1 set no language.
            let language = match id {
                2 => Some("en_US"),
                3 => Some("de"),
                _ => None,
            };
            for (key, value) in [("UserLanguage", language), ("UserShowTickets", Some("25"))] {
                if let Some(value) = value {
                    db.execute(&format!(
                        "INSERT INTO customer_preferences (user_id, preferences_key, preferences_value) \
                         VALUES ('{login}', '{key}', '{value}')"
                    ));
                }
            }
        }
        let until = if state == 6 {
            now.timestamp() + 86_400
        } else {
            0
        };
        db.execute(&format!(
            "INSERT INTO ticket (id, tn, title, queue_id, ticket_lock_id, type_id, user_id, responsible_user_id, \
               ticket_priority_id, ticket_state_id, customer_id, customer_user_id, timeout, until_time, \
               escalation_time, escalation_update_time, escalation_response_time, escalation_solution_time, \
               create_time, create_by, change_time, change_by) \
             VALUES ({id}, '202601010000{id:02}', 'Znuny ticket {id}', 4, 1, 1, 1, 1, 3, {state}, 'ACME', '{login}', \
               0, {until}, 0, 0, 0, 0, {created}, 1, {changed}, 1)",
            created = berlin(now, created),
            changed = berlin(now, 20 * 60),
        ));
        for (at, sender, visible) in articles {
            let channel = if *visible { 1 } else { 3 };
            // One connection for both: LAST_INSERT_ID() is per connection.
            db.execute(&format!(
                "INSERT INTO article (ticket_id, article_sender_type_id, communication_channel_id, \
                   is_visible_for_customer, create_time, create_by, change_time, change_by) \
                 VALUES ({id}, {sender}, {channel}, {visible}, {at}, 1, {at}, 1); \
                 INSERT INTO article_data_mime (article_id, a_from, a_subject, a_message_id, a_body, \
                   incoming_time, create_time, create_by, change_time, change_by) \
                 VALUES (LAST_INSERT_ID(), 'someone', 'Znuny ticket {id}', '{message_id}', 'text', \
                   {incoming}, {at}, 1, {at}, 1)",
                visible = i32::from(*visible),
                message_id = znuny_message_id(id, *at),
                incoming = now.timestamp() - at,
                at = berlin(now, *at),
            ));
        }
    }
    Some(db)
}

fn znuny_setup(db: &MariaDbDatabase, after: &str) -> Setup {
    let mut setup = preset_setup("znuny-db", after, 9);
    setup.set("source.url_env", "\"INTERIM_TEST_ZNUNY_DB_URL\"");
    setup.env("INTERIM_TEST_ZNUNY_DB_URL", &db.url);
    setup.set("source.timezone", &toml_str(ZNUNY_ZONE.name()));
    setup
}

#[test]
fn znuny_db_selects_new_and_open_tickets_since_the_newest_visible_article() {
    let now = Utc::now().trunc_subsecs(0);
    let Some(db) = znuny_database(now) else {
        return;
    };
    let setup = znuny_setup(&db, "1h");

    assert_znuny_clock(&setup, "last_public_contact", now);
    let plan = plan(&setup);
    for (id, recipient) in [
        ("1", "kunde1@example.de"),
        ("2", "kunde2@example.de"),
        ("3", "kunde3@example.de"),
        ("7", "walk-in@example.org"),
    ] {
        assert_eq!(text(&plan[id]["recipient"]), recipient, "ticket {id}");
    }

    let out = sources_test(&setup);
    assert!(out.contains("read 4 waiting ticket(s)"), "{out}");
    assert!(has_line(&out, &["ticket 2 (#20260101000002)"]), "{out}");
    assert!(
        has_line(
            &out,
            &["state \"open\"", "priority \"normal\"", "queue \"Misc\""]
        ),
        "the priority as a team reads it\n{out}"
    );
    assert!(
        has_line(&out, &["extra", "\"priority_raw\":\"3 normal\""]),
        "{out}"
    );
    assert!(
        has_line(
            &out,
            &[
                "thread: subject carries [Ticket#20260101000002], in reply to",
                &znuny_message_id(2, 6 * H)
            ]
        ),
        "replies find ticket 2 by its marker and its first customer article\n{out}"
    );
    assert!(has_line(&out, &["state \"new\""]), "{out}");
    for (id, language) in [(1, "-"), (2, "en"), (3, "de")] {
        assert!(
            has_line(
                &out,
                &[&format!(
                    "customer Karl Kunde {id} <kunde{id}@example.de>, language {language},"
                )]
            ),
            "the customer's UserLanguage of ticket {id}\n{out}"
        );
    }
    assert!(has_line(&out, &["<walk-in@example.org>"]), "{out}");
    assert!(has_line(&out, &["extra", "\"pending_until\":0"]), "{out}");
}

/// The waits `plan` reads under `clock` are the table's.
fn assert_znuny_clock(setup: &Setup, clock: &str, now: DateTime<Utc>) {
    let index = ZNUNY_CLOCKS
        .iter()
        .position(|c| *c == clock)
        .unwrap_or_else(|| panic!("no clock {clock}"));
    let expected = ZNUNY_TICKETS
        .iter()
        .filter_map(|t| {
            let secs = t.clocks[index]?;
            Some((t.id.to_string(), now - chrono::Duration::seconds(secs)))
        })
        .collect();
    assert_clock(setup, clock, &expected);
}

#[test]
fn znuny_db_clocks_agent_updates_and_customer_message() {
    let now = Utc::now().trunc_subsecs(0);
    let Some(db) = znuny_database(now) else {
        return;
    };
    for clock in ["agent_updates", "customer_message"] {
        let mut setup = znuny_setup(&db, "1h");
        setup.set("source.clock", &toml_str(clock));
        assert_znuny_clock(&setup, clock, now);
    }
}

#[test]
fn znuny_db_incremental_polls_end_a_closed_wait() {
    let now = Utc::now().trunc_subsecs(0);
    let Some(db) = znuny_database(now) else {
        return;
    };
    let mut setup = znuny_setup(&db, "10h");
    // Only an incremental poll can end the wait: the next full one is an hour away.
    setup.set("source.full_resync", "\"1h\"");
    let _daemon = setup.start();
    setup.wait_for_notices("four planned notices", |n| {
        n.len() == 4 && n.iter().all(|n| n.status == "pending")
    });
    db.execute(&format!(
        "UPDATE ticket SET ticket_state_id = 2, change_time = {} WHERE id = 2",
        berlin(Utc::now(), 0)
    ));
    let ledger = setup.wait_for_notices(
        "the closed ticket's notice is cancelled by an incremental poll",
        |n| {
            n.iter()
                .any(|n| n.ticket_id == "2" && n.status == "cancelled")
        },
    );
    for n in ledger.iter().filter(|n| n.ticket_id != "2") {
        assert_eq!(n.status, "pending", "{n:?}");
    }
}
