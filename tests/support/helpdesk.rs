//! The test helpdesk: a SQLite `tickets` table the daemon polls.

use std::path::Path;

use sqlx::{AssertSqlSafe, Connection};

use super::{ago, block_on};

/// One row of the test helpdesk; `number` is `#ID`, `customer_name` is
/// `Customer ID` and `priority` is `normal`.
#[derive(Clone, Debug)]
pub struct Ticket {
    pub id: i64,
    pub subject: String,
    pub state: String,
    pub queue: String,
    pub customer_email: String,
    pub language: Option<String>,
    pub waiting_since: String,
    pub thread_message_id: Option<String>,
}

impl Ticket {
    /// An open English ticket of `customer{id}@example.com`, waiting for 10 minutes.
    pub fn new(id: i64) -> Self {
        Self {
            id,
            subject: "Printer on fire".into(),
            state: "open".into(),
            queue: "support".into(),
            customer_email: Self::email(id),
            language: Some("en".into()),
            waiting_since: ago(600),
            thread_message_id: None,
        }
    }

    pub fn email(id: i64) -> String {
        format!("customer{id}@example.com")
    }
}

/// The SQLite helpdesk database the daemon polls (WAL, so reads never block writes).
pub struct Helpdesk {
    url: String,
}

impl Helpdesk {
    /// The helpdesk a setup already created.
    pub fn open(path: &Path) -> Self {
        Self {
            url: format!("sqlite://{}", path.display()),
        }
    }

    pub fn create(path: &Path) -> Self {
        let helpdesk = Self {
            url: format!("sqlite://{}?mode=rwc", path.display()),
        };
        helpdesk.execute(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE tickets(id INTEGER PRIMARY KEY, number TEXT, subject TEXT, state TEXT,
               priority TEXT, queue TEXT, customer_email TEXT, customer_name TEXT, language TEXT,
               waiting_since TEXT, updated_at TEXT, thread_message_id TEXT);",
        );
        helpdesk
    }

    pub fn execute(&self, sql: &str) {
        block_on(async {
            let mut conn = sqlx::SqliteConnection::connect(&self.url).await?;
            sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
                .execute(&mut conn)
                .await?;
            conn.close().await
        })
        .unwrap_or_else(|e| panic!("helpdesk statement failed: {e}\n{sql}"));
    }

    pub fn insert(&self, tickets: &[Ticket]) {
        let rows: Vec<String> = tickets
            .iter()
            .map(|t| {
                let id = t.id;
                let text = [&t.subject, &t.state, &t.queue, &t.customer_email];
                let [subject, state, queue, email] = text.map(|v| sql_lit(Some(v)));
                let language = sql_lit(t.language.as_deref());
                let thread = sql_lit(t.thread_message_id.as_deref());
                let since = sql_lit(Some(&t.waiting_since));
                format!(
                    "({id}, '#{id}', {subject}, {state}, 'normal', {queue}, {email}, \
                         'Customer {id}', {language}, {since}, CURRENT_TIMESTAMP, {thread})"
                )
            })
            .collect();
        self.execute(&format!("INSERT INTO tickets VALUES {}", rows.join(",\n")));
    }

    pub fn set(&self, id: i64, column: &str, value: &str) {
        let value = sql_lit(Some(value));
        let set = format!("{column} = {value}, updated_at = CURRENT_TIMESTAMP");
        self.execute(&format!("UPDATE tickets SET {set} WHERE id = {id}"));
    }

    pub fn close(&self, id: i64) {
        self.set(id, "state", "closed");
    }
}

/// An SQL string literal, or NULL.
pub fn sql_lit(value: Option<&str>) -> String {
    value.map_or("NULL".into(), |v| format!("'{}'", v.replace('\'', "''")))
}
