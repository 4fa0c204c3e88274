//! The `sql` source: runs the configured query against SQLite, PostgreSQL
//! or MySQL/MariaDB and reads every column into a [`Cell`], whatever its
//! SQL type, streaming rows instead of collecting them.

use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, Utc};
use futures::TryStreamExt;
use sqlx::{AssertSqlSafe, Database};
use tokio::sync::mpsc;

use super::columns::Cell;
use super::sql_cells::{ColumnNames, read_row};
use crate::config::SourceSettings;
use crate::config::query_parameters::parameter_positions;
use crate::secret::SecretUrl;

/// One row as named cells. The names are shared by every row of a query
/// (see [`ColumnNames`]), not copied per cell.
pub type CellRow = Vec<(ColumnName, Cell)>;

/// A column's name, lower-case where it came from SQL.
pub type ColumnName = std::sync::Arc<str>;

/// Binds the parameter, reads the rows of one query and sends them in
/// chunks (a macro: each backend's query type is its own).
macro_rules! drain {
    ($query:expr, $db:ty, $value:expr, $binds:expr, $pool:expr, $chunk:expr, $tx:expr) => {{
        let mut query = $query;
        for _ in 0..$binds {
            query = match &$value {
                BindValue::None => query,
                BindValue::Text(t) => query.bind(t.clone()),
                BindValue::Instant(t) => query.bind(*t),
                BindValue::Naive(t) => query.bind(*t),
                BindValue::Int(i) => query.bind(*i),
            };
        }
        let mut rows = query.fetch($pool);
        let mut batch = Vec::with_capacity($chunk.min(10_000));
        let mut names = ColumnNames::default();
        let mut outcome: Result<(), sqlx::Error> = Ok(());
        loop {
            match rows.try_next().await {
                Ok(Some(row)) => {
                    batch.push(read_row::<$db>(&row, &mut names));
                    if batch.len() >= $chunk
                        && $tx.send(Ok(std::mem::take(&mut batch))).await.is_err()
                    {
                        break; // nobody listens any more
                    }
                }
                Ok(None) => {
                    if !batch.is_empty() {
                        let _ = $tx.send(Ok(std::mem::take(&mut batch))).await;
                    }
                    break;
                }
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        outcome
    }};
}

#[derive(Clone)]
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
        // sqlx's message may quote a piece of a URL it misread.
        let invalid = |e: sqlx::Error| {
            anyhow::anyhow!(
                "invalid source URL {}: {}",
                settings.url,
                settings.url.scrub(&e.to_string())
            )
        };
        if url.starts_with("sqlite:") {
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
                .map_err(invalid)?
                .read_only(true);
            Ok(SqlPool::Sqlite(
                pool_options(settings).connect_lazy_with(options),
            ))
        } else if url.starts_with("postgres") {
            let options = sqlx::postgres::PgConnectOptions::from_str(url).map_err(invalid)?;
            Ok(SqlPool::Postgres(
                pool_options(settings).connect_lazy_with(options),
            ))
        } else {
            let options = sqlx::mysql::MySqlConnectOptions::from_str(url).map_err(invalid)?;
            Ok(SqlPool::MySql(
                pool_options(settings).connect_lazy_with(options),
            ))
        }
    }

    /// Runs the query in a task of its own and sends its rows, as named
    /// cells, in chunks of `chunk` rows. The channel holds one chunk, so
    /// memory stays bounded while the consumer plans and writes.
    pub fn stream_chunks(
        &self,
        query: &str,
        param: Param<'_>,
        chunk: usize,
    ) -> (
        mpsc::Receiver<Result<Vec<CellRow>, sqlx::Error>>,
        tokio::task::JoinHandle<()>,
    ) {
        let (tx, rx) = mpsc::channel(1);
        let (sql, binds) = param.rewrite(query, matches!(self, SqlPool::Postgres(_)));
        let value = param.bind_value(
            matches!(self, SqlPool::Postgres(_)),
            matches!(self, SqlPool::MySql(_)),
        );
        let pool = self.clone();
        let chunk = chunk.max(1);
        let reader = tokio::spawn(async move {
            let sql = AssertSqlSafe(sql);
            let outcome = match &pool {
                SqlPool::Sqlite(p) => {
                    drain!(sqlx::query(sql), sqlx::Sqlite, value, binds, p, chunk, tx)
                }
                SqlPool::Postgres(p) => {
                    drain!(sqlx::query(sql), sqlx::Postgres, value, binds, p, chunk, tx)
                }
                SqlPool::MySql(p) => {
                    drain!(sqlx::query(sql), sqlx::MySql, value, binds, p, chunk, tx)
                }
            };
            if let Err(e) = outcome {
                let _ = tx.send(Err(e)).await;
            }
        });
        (rx, reader)
    }

    /// Runs a query with the ticket id bound to its `:id` (or `$1` / `?`)
    /// parameter, as text, and returns the first row.
    pub async fn first_row_for_id(
        &self,
        query: &str,
        id: &str,
    ) -> Result<Option<CellRow>, sqlx::Error> {
        let (mut chunks, _reader) = self.stream_chunks(query, Param::Id(id), 1);
        match chunks.recv().await {
            Some(Ok(mut rows)) => Ok(rows.pop()),
            Some(Err(e)) => Err(e),
            None => Ok(None),
        }
    }

    /// Why connecting fails, from one direct attempt within `within`: the
    /// pool only says it timed out waiting for a connection, which hides
    /// the cause. The driver's message is scrubbed of every piece of
    /// `url`'s secrets.
    pub async fn connect_error(
        &self,
        url: &SecretUrl,
        within: std::time::Duration,
    ) -> Option<String> {
        use sqlx::ConnectOptions;
        let attempt = async {
            match self {
                SqlPool::Sqlite(p) => p.connect_options().connect().await.map(drop),
                SqlPool::Postgres(p) => p.connect_options().connect().await.map(drop),
                SqlPool::MySql(p) => p.connect_options().connect().await.map(drop),
            }
        };
        match tokio::time::timeout(within, attempt).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(url.scrub(&e.to_string())),
            Err(_) => Some(format!(
                "no answer within {} (source.connect_timeout)",
                humantime::format_duration(within)
            )),
        }
    }

    pub async fn close(&self) {
        match self {
            SqlPool::Sqlite(p) => p.close().await,
            SqlPool::Postgres(p) => p.close().await,
            SqlPool::MySql(p) => p.close().await,
        }
    }
}

/// A parameter's value, owned, as the backend compares it.
#[derive(Clone)]
pub enum BindValue {
    None,
    Text(String),
    Instant(DateTime<Utc>),
    Naive(NaiveDateTime),
    Int(i64),
}

fn pool_options<DB: Database>(settings: &SourceSettings) -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::new()
        .max_connections(2)
        .acquire_timeout(settings.timeout)
}

/// The value a query's parameter is bound to.
pub enum Param<'a> {
    None,
    /// `:id`: the ticket id, as text.
    Id(&'a str),
    /// `:since`: a timestamp, bound as the backend compares timestamps
    /// (PostgreSQL timestamptz; MySQL DATETIME and SQLite
    /// `YYYY-MM-DD HH:MM:SS` text in the source's zone).
    Since {
        at: DateTime<Utc>,
        zone: chrono_tz::Tz,
    },
    /// `:since_unix`: the same instant as integer Unix seconds.
    SinceUnix(DateTime<Utc>),
}

impl Param<'_> {
    /// The value to bind, in the form the backend compares.
    fn bind_value(&self, postgres: bool, mysql: bool) -> BindValue {
        match self {
            Param::None => BindValue::None,
            Param::Id(id) => BindValue::Text((*id).to_owned()),
            Param::SinceUnix(at) => BindValue::Int(at.timestamp()),
            Param::Since { at, .. } if postgres => BindValue::Instant(*at),
            Param::Since { at, zone } if mysql => {
                BindValue::Naive(at.with_timezone(zone).naive_local())
            }
            Param::Since { at, zone } => BindValue::Text(
                at.with_timezone(zone)
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string(),
            ),
        }
    }

    fn name(&self) -> Option<&'static str> {
        match self {
            Param::None => None,
            Param::Id(_) => Some("id"),
            Param::Since { .. } => Some("since"),
            Param::SinceUnix(_) => Some("since_unix"),
        }
    }

    /// The query with `:name` replaced by the backend's placeholder, and how
    /// many values to bind (PostgreSQL's `$1` is bound once however often
    /// it occurs). A query written with `$1` or `?` itself is left as it is.
    fn rewrite(&self, query: &str, postgres: bool) -> (String, usize) {
        let Some(name) = self.name() else {
            return (query.to_owned(), 0);
        };
        let placeholder = if postgres { "$1" } else { "?" };
        let positions = parameter_positions(query, name);
        if positions.is_empty() {
            let binds = if postgres {
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
            last = at + name.len() + 1;
        }
        out.push_str(&query[last..]);
        (out, if postgres { 1 } else { positions.len() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_parameter_becomes_the_backend_placeholder() {
        let q =
            "SELECT * FROM t WHERE id = :id::int OR parent = :id AND x::identity = 1 AND :idx = 2";
        let (pg, binds) = Param::Id("x").rewrite(q, true);
        assert_eq!(
            pg,
            "SELECT * FROM t WHERE id = $1::int OR parent = $1 AND x::identity = 1 AND :idx = 2"
        );
        assert_eq!(binds, 1);
        let (other, binds) = Param::Id("x").rewrite(q, false);
        assert_eq!(binds, 2);
        assert!(other.starts_with("SELECT * FROM t WHERE id = ?::int OR parent = ?"));
    }
}
