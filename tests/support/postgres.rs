//! A private PostgreSQL database per test on the server that
//! `INTERIM_TEST_POSTGRES_URL` names (created fresh, dropped at the end),
//! for the store and for a PostgreSQL helpdesk.

use sqlx::{AssertSqlSafe, Connection};

use super::block_on;

pub const POSTGRES_URL_VAR: &str = "INTERIM_TEST_POSTGRES_URL";

/// `CREATE DATABASE interim_test_<random>` on the test server; dropped
/// (`WITH (FORCE)`, so open connections do not keep it) when this is dropped.
pub struct PgDatabase {
    admin_url: String,
    pub name: String,
    /// `postgres://…/interim_test_<random>`.
    pub url: String,
}

impl PgDatabase {
    /// A new empty database, or None (after printing that the test was
    /// skipped, or fails in CI) when `INTERIM_TEST_POSTGRES_URL` is not set.
    pub fn create() -> Option<Self> {
        let Ok(admin_url) = std::env::var(POSTGRES_URL_VAR) else {
            super::skip_or_fail(&format!("{POSTGRES_URL_VAR} is not set"));
            return None;
        };
        let name = format!("interim_test_{:016x}", rand::random::<u64>());
        let base = admin_url.split('?').next().unwrap_or_default();
        let (server_url, _) = base
            .rsplit_once('/')
            .expect("INTERIM_TEST_POSTGRES_URL names a database: postgres://USER@HOST:PORT/DB");
        let db = Self {
            url: format!("{server_url}/{name}"),
            admin_url,
            name,
        };
        db.run(&db.admin_url, &format!("CREATE DATABASE {}", db.name));
        Some(db)
    }

    /// Runs statements (several, separated by `;`) in this database.
    pub fn execute(&self, sql: &str) {
        self.run(&self.url, sql);
    }

    /// The first column of the first row of `sql`, as text (NULL is None).
    pub fn query_text(&self, sql: &str) -> Option<String> {
        let query = AssertSqlSafe(sql.to_string());
        block_on(async {
            let mut conn = sqlx::PgConnection::connect(&self.url).await?;
            let value: Option<String> = sqlx::query_scalar(query).fetch_one(&mut conn).await?;
            conn.close().await?;
            Ok::<_, sqlx::Error>(value)
        })
        .unwrap_or_else(|e| panic!("query on {} failed: {e}\n{sql}", self.name))
    }

    fn run(&self, url: &str, sql: &str) {
        let result = Self::try_run(url, sql);
        result.unwrap_or_else(|e| panic!("statement on {} failed: {e}\n{sql}", self.name));
    }

    fn try_run(url: &str, sql: &str) -> Result<(), sqlx::Error> {
        let sql = AssertSqlSafe(sql.to_string());
        block_on(async {
            let mut conn = sqlx::PgConnection::connect(url).await?;
            sqlx::raw_sql(sql).execute(&mut conn).await?;
            conn.close().await
        })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = Self::try_run(&self.admin_url, &sql) {
            eprintln!("could not drop the test database {}: {e}", self.name);
        }
    }
}
