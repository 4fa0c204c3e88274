//! The `sql` source: runs the configured query against SQLite, PostgreSQL
//! or MySQL/MariaDB and reads every column into a [`Cell`], whatever its
//! SQL type, streaming rows instead of collecting them.

use std::str::FromStr;

use anyhow::Context;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use futures::TryStreamExt;
use sqlx::{AssertSqlSafe, Column, ColumnIndex, Database, Decode, Row, Type, TypeInfo, ValueRef};

use super::columns::Cell;
use crate::config::SourceSettings;

pub enum SqlPool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
    MySql(sqlx::MySqlPool),
}

impl SqlPool {
    /// Connects lazily: a helpdesk database that is down at start-up is a
    /// failed poll (retried), not a failed start.
    pub fn connect(settings: &SourceSettings) -> anyhow::Result<SqlPool> {
        let url = settings.url.expose();
        let redacted = settings.url.redacted();
        if url.starts_with("sqlite:") {
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
                .with_context(|| format!("invalid source URL {redacted}"))?
                .read_only(true);
            Ok(SqlPool::Sqlite(
                pool_options(settings).connect_lazy_with(options),
            ))
        } else if url.starts_with("postgres") {
            let options = sqlx::postgres::PgConnectOptions::from_str(url)
                .with_context(|| format!("invalid source URL {redacted}"))?;
            Ok(SqlPool::Postgres(
                pool_options(settings).connect_lazy_with(options),
            ))
        } else {
            let options = sqlx::mysql::MySqlConnectOptions::from_str(url)
                .with_context(|| format!("invalid source URL {redacted}"))?;
            Ok(SqlPool::MySql(
                pool_options(settings).connect_lazy_with(options),
            ))
        }
    }

    /// Runs the query and hands every row, as named cells, to `each`.
    pub async fn for_each_row(
        &self,
        query: &str,
        mut each: impl FnMut(Vec<(String, Cell)>),
    ) -> Result<(), sqlx::Error> {
        let sql = || AssertSqlSafe(query.to_owned());
        match self {
            SqlPool::Sqlite(pool) => {
                let mut rows = sqlx::query(sql()).fetch(pool);
                while let Some(row) = rows.try_next().await? {
                    each(read_row::<sqlx::Sqlite>(&row, false));
                }
            }
            SqlPool::Postgres(pool) => {
                let mut rows = sqlx::query(sql()).fetch(pool);
                while let Some(row) = rows.try_next().await? {
                    each(read_row::<sqlx::Postgres>(&row, false));
                }
            }
            SqlPool::MySql(pool) => {
                let mut rows = sqlx::query(sql()).fetch(pool);
                while let Some(row) = rows.try_next().await? {
                    each(read_row::<sqlx::MySql>(&row, true));
                }
            }
        }
        Ok(())
    }

    /// Runs a query with the ticket id bound to its `:id` (or `$1` / `?`)
    /// parameter, as text, and returns the first row.
    pub async fn first_row_for_id(
        &self,
        query: &str,
        id: &str,
    ) -> Result<Option<Vec<(String, Cell)>>, sqlx::Error> {
        let (postgres, mysql) = (
            matches!(self, SqlPool::Postgres(_)),
            matches!(self, SqlPool::MySql(_)),
        );
        let (sql, binds) = bind_id_parameter(query, if postgres { "$1" } else { "?" });
        let sql = || AssertSqlSafe(sql.clone());
        Ok(match self {
            SqlPool::Sqlite(pool) => {
                let mut q = sqlx::query(sql());
                for _ in 0..binds {
                    q = q.bind(id);
                }
                q.fetch_optional(pool)
                    .await?
                    .map(|row| read_row::<sqlx::Sqlite>(&row, false))
            }
            SqlPool::Postgres(pool) => sqlx::query(sql())
                .bind(id)
                .fetch_optional(pool)
                .await?
                .map(|row| read_row::<sqlx::Postgres>(&row, false)),
            SqlPool::MySql(pool) => {
                let mut q = sqlx::query(sql());
                for _ in 0..binds {
                    q = q.bind(id);
                }
                q.fetch_optional(pool)
                    .await?
                    .map(|row| read_row::<sqlx::MySql>(&row, mysql))
            }
        })
    }

    pub async fn close(&self) {
        match self {
            SqlPool::Sqlite(p) => p.close().await,
            SqlPool::Postgres(p) => p.close().await,
            SqlPool::MySql(p) => p.close().await,
        }
    }
}

fn pool_options<DB: Database>(settings: &SourceSettings) -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::new()
        .max_connections(2)
        .acquire_timeout(settings.timeout)
}

/// A type this backend can decode.
trait Readable<DB: Database>: for<'r> Decode<'r, DB> + Type<DB> {}
impl<DB: Database, T: for<'r> Decode<'r, DB> + Type<DB>> Readable<DB> for T {}

fn read_row<DB>(row: &DB::Row, mysql: bool) -> Vec<(String, Cell)>
where
    DB: Database,
    usize: ColumnIndex<DB::Row>,
    String: Readable<DB>,
    i64: Readable<DB>,
    i32: Readable<DB>,
    i16: Readable<DB>,
    f64: Readable<DB>,
    f32: Readable<DB>,
    bool: Readable<DB>,
    DateTime<Utc>: Readable<DB>,
    NaiveDateTime: Readable<DB>,
    NaiveDate: Readable<DB>,
    Vec<u8>: Readable<DB>,
{
    row.columns()
        .iter()
        .enumerate()
        .map(|(i, column)| (column.name().to_owned(), read_cell::<DB>(row, i, mysql)))
        .collect()
}

fn read_cell<DB>(row: &DB::Row, i: usize, mysql: bool) -> Cell
where
    DB: Database,
    usize: ColumnIndex<DB::Row>,
    String: Readable<DB>,
    i64: Readable<DB>,
    i32: Readable<DB>,
    i16: Readable<DB>,
    f64: Readable<DB>,
    f32: Readable<DB>,
    bool: Readable<DB>,
    DateTime<Utc>: Readable<DB>,
    NaiveDateTime: Readable<DB>,
    NaiveDate: Readable<DB>,
    Vec<u8>: Readable<DB>,
{
    let Ok(raw) = row.try_get_raw(i) else {
        return Cell::Null;
    };
    if raw.is_null() {
        return Cell::Null;
    }
    let type_name = raw.type_info().name().to_ascii_uppercase();
    // MySQL TIMESTAMP columns are absolute instants (sent in UTC), unlike
    // DATETIME, which is wall-clock time in the source zone.
    if mysql
        && type_name == "TIMESTAMP"
        && let Ok(t) = row.try_get::<DateTime<Utc>, _>(i)
    {
        return Cell::Timestamp(t);
    }
    if let Ok(v) = row.try_get::<String, _>(i) {
        return Cell::Text(v);
    }
    if let Ok(v) = row.try_get::<i64, _>(i) {
        return Cell::Int(v);
    }
    if let Ok(v) = row.try_get::<i32, _>(i) {
        return Cell::Int(v.into());
    }
    if let Ok(v) = row.try_get::<i16, _>(i) {
        return Cell::Int(v.into());
    }
    if let Ok(v) = row.try_get::<bool, _>(i) {
        return Cell::Bool(v);
    }
    if let Ok(v) = row.try_get::<f64, _>(i) {
        return Cell::Float(v);
    }
    if let Ok(v) = row.try_get::<f32, _>(i) {
        return Cell::Float(v.into());
    }
    if let Ok(v) = row.try_get::<NaiveDateTime, _>(i) {
        return Cell::Naive(v);
    }
    if let Ok(v) = row.try_get::<DateTime<Utc>, _>(i) {
        return Cell::Timestamp(v);
    }
    if let Ok(v) = row.try_get::<NaiveDate, _>(i) {
        return Cell::Date(v);
    }
    // MySQL hands out some text (e.g. from CONCAT over binary collations)
    // as bytes.
    if let Ok(bytes) = row.try_get::<Vec<u8>, _>(i)
        && let Ok(text) = String::from_utf8(bytes)
    {
        return Cell::Text(text);
    }
    Cell::Unsupported(type_name)
}

/// True when the query has an id parameter: `:id`, `$1` or `?`.
pub fn has_id_parameter(query: &str) -> bool {
    !id_parameter_positions(query).is_empty() || query.contains("$1") || query.contains('?')
}

/// Replaces each `:id` with the backend's placeholder and says how many
/// values to bind (PostgreSQL's `$1` is bound once however often it occurs).
fn bind_id_parameter(query: &str, placeholder: &str) -> (String, usize) {
    let positions = id_parameter_positions(query);
    if positions.is_empty() {
        let binds = if placeholder == "$1" {
            1
        } else {
            query.matches('?').count().max(1)
        };
        return (query.to_owned(), binds);
    }
    let mut out = String::with_capacity(query.len());
    let mut last = 0;
    for &at in &positions {
        out.push_str(&query[last..at]);
        out.push_str(placeholder);
        last = at + 3;
    }
    out.push_str(&query[last..]);
    let binds = if placeholder == "$1" {
        1
    } else {
        positions.len()
    };
    (out, binds)
}

/// Byte offsets of `:id` tokens (not `::id…` casts, not `:identifier`).
fn id_parameter_positions(query: &str) -> Vec<usize> {
    let bytes = query.as_bytes();
    query
        .match_indices(":id")
        .map(|(at, _)| at)
        .filter(|&at| {
            let before_ok = at == 0 || bytes[at - 1] != b':';
            let after = bytes.get(at + 3).copied();
            let after_ok = after.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == b'_'));
            before_ok && after_ok
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_parameter_becomes_the_backend_placeholder() {
        let q =
            "SELECT * FROM t WHERE id = :id::int OR parent = :id AND x::identity = 1 AND :idx = 2";
        let (pg, binds) = bind_id_parameter(q, "$1");
        assert_eq!(
            pg,
            "SELECT * FROM t WHERE id = $1::int OR parent = $1 AND x::identity = 1 AND :idx = 2"
        );
        assert_eq!(binds, 1);
        let (other, binds) = bind_id_parameter(q, "?");
        assert_eq!(binds, 2);
        assert!(other.starts_with("SELECT * FROM t WHERE id = ?::int OR parent = ?"));
        assert!(has_id_parameter("SELECT 1 WHERE id = ?"));
        assert!(!has_id_parameter("SELECT 1"));
    }
}
