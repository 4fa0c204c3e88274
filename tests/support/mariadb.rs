//! A private MariaDB/MySQL database per test on the server that
//! `INTERIM_TEST_MYSQL_URL` names (created fresh, dropped at the end), for
//! a MariaDB helpdesk.

use sqlx::{AssertSqlSafe, Connection};

use super::block_on;

pub const MYSQL_URL_VAR: &str = "INTERIM_TEST_MYSQL_URL";

/// `CREATE DATABASE interim_test_<random>` on the test server; dropped when
/// this is dropped.
pub struct MariaDbDatabase {
    admin_url: String,
    pub name: String,
    /// `mysql://…/interim_test_<random>`.
    pub url: String,
}

impl MariaDbDatabase {
    /// A new empty database, or None (after printing that the test was
    /// skipped, or fails in CI) when `INTERIM_TEST_MYSQL_URL` is not set.
    pub fn create() -> Option<Self> {
        let Ok(admin_url) = std::env::var(MYSQL_URL_VAR) else {
            super::skip_or_fail(&format!("{MYSQL_URL_VAR} is not set"));
            return None;
        };
        let name = format!("interim_test_{:016x}", rand::random::<u64>());
        let base = admin_url.split('?').next().unwrap_or_default();
        let (server_url, _) = base
            .rsplit_once('/')
            .expect("INTERIM_TEST_MYSQL_URL names a database: mysql://USER@HOST:PORT/DB");
        let db = Self {
            url: format!("{server_url}/{name}"),
            admin_url,
            name,
        };
        db.run(
            &db.admin_url,
            &format!("CREATE DATABASE {} CHARACTER SET utf8mb4", db.name),
        );
        Some(db)
    }

    /// Runs statements (several, separated by `;`) in this database.
    pub fn execute(&self, sql: &str) {
        self.run(&self.url, sql);
    }

    fn run(&self, url: &str, sql: &str) {
        let result = Self::try_run(url, sql);
        result.unwrap_or_else(|e| panic!("statement on {} failed: {e}\n{sql}", self.name));
    }

    fn try_run(url: &str, sql: &str) -> Result<(), sqlx::Error> {
        let sql = AssertSqlSafe(sql.to_string());
        block_on(async {
            let mut conn = sqlx::MySqlConnection::connect(url).await?;
            sqlx::raw_sql(sql).execute(&mut conn).await?;
            conn.close().await
        })
    }
}

impl Drop for MariaDbDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {}", self.name);
        if let Err(e) = Self::try_run(&self.admin_url, &sql) {
            eprintln!("could not drop the test database {}: {e}", self.name);
        }
    }
}
