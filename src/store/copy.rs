//! `interim store copy`: the whole ledger into another, empty store (SQLite
//! to PostgreSQL and back), so that switching stores never resends a sent
//! notice and the next one of a series still comes on time. Every row of
//! every table is copied as it is, in one transaction on the target; only
//! claims are released, as no instance of the new store holds them.
//!
//! The copy reads and writes every table by the list in `tables.rs`, so
//! its statements are assembled from that list (not checked at compile
//! time as the engines' statements are) and run on the `Any` driver, one
//! session per store.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use sqlx::any::AnyRow;
use sqlx::postgres::PgConnection;
use sqlx::{AnyConnection, AssertSqlSafe, Connection, Executor, Row};

use super::tables::{Column, Kind, LEDGER_TABLES, OnCopy, Table};
use super::{Backend, DaemonLock, Db, Store, from_ms, on_pool};
use crate::secret::SecretUrl;

/// Bound parameters per INSERT at most: below SQLite's limit (32766) and
/// PostgreSQL's (65535), large enough that a big ledger takes few round trips.
const MAX_PARAMETERS: usize = 8000;

/// What a copy did.
#[derive(Debug)]
pub struct CopyReport {
    /// The source and target URLs, redacted.
    pub from: String,
    pub to: String,
    /// Rows copied per table, in [`LEDGER_TABLES`] order.
    pub rows: Vec<(&'static str, u64)>,
    /// Claimed notices that are claimable again in the copy.
    pub claims_released: u64,
}

impl CopyReport {
    /// The lines `interim store copy` prints.
    pub fn summary(&self) -> String {
        let mut out = format!("copied the ledger of {} into {}\n", self.from, self.to);
        for (table, n) in &self.rows {
            let _ = write!(out, "{table}: {}", rows(*n));
            if *table == "notices" && self.claims_released > 0 {
                let _ = write!(
                    out,
                    " ({} claimed, pending again in the copy)",
                    self.claims_released
                );
            }
            out.push('\n');
        }
        out.push_str(
            "this store is marked as moved: no daemon starts on it again\n\
             next: set store.url to the target and start the daemon\n",
        );
        out
    }
}

fn rows(n: u64) -> String {
    match n {
        1 => "1 row".to_owned(),
        n => format!("{n} rows"),
    }
}

/// The meta key of a ledger that was copied away.
const MOVED_TO: &str = "moved_to";

/// What keeps daemons off a store while it is copied: the SQLite daemon
/// lock, or a PostgreSQL session holding the poller lock.
enum Guard {
    File { _lock: DaemonLock },
    Session(PgConnection),
}

impl Guard {
    async fn release(self) {
        if let Guard::Session(session) = self {
            let _ = session.close().await;
        }
    }
}

/// One value of a row on its way.
enum Value {
    Int(Option<i64>),
    Text(Option<String>),
}

impl Store {
    /// Copies this store's whole ledger into the empty store at `target_url`
    /// (created and migrated like any store). Refused while a daemon uses
    /// this store or the target, when the target has rows and when this
    /// store has no notices and no series; a failure leaves the target
    /// empty (created and migrated).
    pub async fn copy_to(
        &self,
        target_url: &SecretUrl,
        now: DateTime<Utc>,
    ) -> anyhow::Result<CopyReport> {
        if target_url.expose() == self.url.expose() {
            bail!(
                "the target {target_url} is the configured store itself: copy into another store"
            );
        }
        if let Some(moved) = self.moved_to().await? {
            bail!(
                "the ledger of {} was already {moved}: a second copy would fork it (two ledgers, notices sent twice); copy from the store it moved to, or, if that copy is lost, remove the mark with DELETE FROM meta WHERE key = '{MOVED_TO}'",
                self.url
            );
        }
        let source_guard = self.keep_daemons_off_source().await?;
        let target = Store::open(target_url)
            .await
            .context("failed to open the target store")?;
        let copied = async {
            let target_guard = target.keep_daemons_off_target(self).await?;
            let copied = self.copy_into(&target).await;
            target_guard.release().await;
            copied
        }
        .await;
        target.close().await;
        source_guard.release().await;
        let (counts, claims_released) = copied?;
        // Started again on this store, a daemon would send what the copy's
        // daemon sends: two ledgers, notices twice.
        self.mark_moved(&target.shown_url(), now).await.with_context(|| {
            format!(
                "copied into {}, but failed to mark this store as moved: start no daemon on it again",
                target.shown_url()
            )
        })?;
        let names = LEDGER_TABLES.iter().map(|t| t.name);
        Ok(CopyReport {
            from: self.url.redacted(),
            to: target.shown_url(),
            rows: names.zip(counts).collect(),
            claims_released,
        })
    }

    /// Where `interim store copy` moved this ledger ("copied to URL at
    /// INSTANT"), if it did: no daemon runs on it then.
    pub async fn moved_to(&self) -> anyhow::Result<Option<String>> {
        on_pool!(self, meta_value(MOVED_TO)).context("failed to read whether the ledger was moved")
    }

    async fn mark_moved(&self, to: &str, now: DateTime<Utc>) -> anyhow::Result<()> {
        let text = format!("copied to {to} at {}", crate::clock::rfc3339(now));
        on_pool!(self, set_meta(MOVED_TO, &text))?;
        Ok(())
    }

    /// A running daemon would go on writing into the ledger being copied
    /// (a notice sent after the copy read it would be sent again from the
    /// new store): SQLite's daemon lock, taken here for the copy, proves
    /// none runs; on PostgreSQL every running daemon holds the running lock
    /// shared (and one the poller lock), and a claim whose lease still runs
    /// may be a send in flight.
    async fn keep_daemons_off_source(&self) -> anyhow::Result<Guard> {
        let Db::Postgres(pool) = &self.db else {
            let lock = self
                .lock_for_daemon()
                .context("stop the daemon before copying its ledger")?;
            return Ok(Guard::File { _lock: lock });
        };
        let Some(session) = self.hold_poller_lock().await? else {
            bail!(
                "a daemon is running on the store {} (it holds the poller or the running lock): stop every interim daemon that uses it, then copy",
                self.url
            );
        };
        let (count, until) = interim_store_postgres::live_claims(pool)
            .await
            .context("failed to look for claims in progress")?;
        if let (1.., Some(until)) = (count, until) {
            let _ = session.close().await;
            bail!(
                "{count} notice(s) of the store {} are claimed with a lease until {}: an instance may be sending them; stop every interim daemon that uses the store and copy after that",
                self.url,
                crate::clock::rfc3339(from_ms(until))
            );
        }
        Ok(Guard::Session(session))
    }

    /// No daemon may start on the target while it fills.
    async fn keep_daemons_off_target(&self, source: &Store) -> anyhow::Result<Guard> {
        if let (Some(mine), Some(theirs)) = (self.path(), source.path())
            && same_file(mine, theirs)
        {
            bail!(
                "the target {} is the configured store itself: copy into another store",
                self.url
            );
        }
        if self.backend() == Backend::Sqlite {
            let lock = self
                .lock_for_daemon()
                .context("a daemon is using the target store: stop it before copying into it")?;
            return Ok(Guard::File { _lock: lock });
        }
        match self.hold_poller_lock().await? {
            Some(session) => Ok(Guard::Session(session)),
            None => bail!(
                "a daemon is running on the target store {} (its poller or running lock is held), or it is the configured store under another name: stop the daemon before copying into it",
                self.url
            ),
        }
    }

    /// Rows copied per table and the number of released claims.
    async fn copy_into(&self, target: &Store) -> anyhow::Result<(Vec<u64>, u64)> {
        let mut tx = target.begin_copy().await?;
        target.refuse_rows(&mut tx).await?;
        let mut source = self.read_snapshot().await?;
        let claims: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM notices WHERE claimed_by IS NOT NULL OR claim_until IS NOT NULL",
        )
        .fetch_one(&mut source)
        .await
        .context("failed to count claims")?;
        let mut counts = Vec::with_capacity(LEDGER_TABLES.len());
        for table in LEDGER_TABLES {
            let n = copy_table(&mut source, self.backend(), target, &mut tx, table)
                .await
                .with_context(|| format!("failed to copy the table {}", table.name))?;
            counts.push(n);
        }
        let filled = LEDGER_TABLES
            .iter()
            .zip(&counts)
            .any(|(table, n)| matches!(table.name, "notices" | "series") && *n > 0);
        if !filled {
            bail!(
                "the store {} holds no notices and no series: nothing to copy (is store.url the daemon's store?); the target stays empty",
                self.url
            );
        }
        if target.backend() == Backend::Postgres {
            advance_sequences(&mut tx).await?;
        }
        // A failed COMMIT leaves nothing: the session ends with it.
        tx.execute("COMMIT")
            .await
            .with_context(|| format!("failed to commit the copy into {}", target.url))?;
        let _ = tx.close().await;
        // Fresh statistics for the copied rows (see `analyze_when_grown`).
        target.analyze().await;
        // Only read: ending the session ends its snapshot.
        let _ = source.close().await;
        Ok((counts, u64::try_from(claims).unwrap_or(0)))
    }

    /// A session reading one consistent state of the whole ledger (off the
    /// pool, so that an error on the way never hands it back mid-transaction).
    async fn read_snapshot(&self) -> anyhow::Result<AnyConnection> {
        let mut conn = self
            .copy_session()
            .await
            .with_context(|| format!("the source store {} is unreachable", self.url))?;
        let begin = match self.backend() {
            // Deferred: the snapshot begins with the first read and holds (WAL).
            Backend::Sqlite => "BEGIN",
            Backend::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        };
        conn.execute(begin)
            .await
            .context("failed to begin reading the ledger")?;
        Ok(conn)
    }

    /// A session of the copy's own on this store.
    async fn copy_session(&self) -> anyhow::Result<AnyConnection> {
        sqlx::any::install_default_drivers();
        let mut conn = match self.path() {
            Some(path) => {
                AnyConnection::connect(&format!("sqlite://{}?mode=rw", path.display())).await?
            }
            None => AnyConnection::connect(self.url.expose())
                .await
                .map_err(|e| anyhow::anyhow!("{}", self.url.scrub(&e.to_string())))?,
        };
        if self.backend() == Backend::Sqlite {
            conn.execute("PRAGMA busy_timeout = 30000").await?;
        }
        Ok(conn)
    }

    /// The copy's write transaction on this (the target) store: dropped
    /// unfinished, its session ends and the transaction rolls back.
    async fn begin_copy(&self) -> anyhow::Result<AnyConnection> {
        let mut conn = self
            .copy_session()
            .await
            .with_context(|| format!("the target store {} is unreachable", self.url))?;
        let begin = match self.backend() {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        conn.execute(begin)
            .await
            .context("failed to begin writing the copy")?;
        Ok(conn)
    }

    /// A store to copy into has no row in any ledger table.
    async fn refuse_rows(&self, tx: &mut AnyConnection) -> anyhow::Result<()> {
        let mut filled = Vec::new();
        for table in LEDGER_TABLES {
            let count = AssertSqlSafe(format!("SELECT COUNT(*) FROM {}", table.name));
            let n: i64 = sqlx::query_scalar(count)
                .fetch_one(&mut *tx)
                .await
                .with_context(|| format!("failed to count the rows of {}", table.name))?;
            if n > 0 {
                filled.push(format!(
                    "table {} has {}",
                    table.name,
                    rows(n.unsigned_abs())
                ));
            }
        }
        if !filled.is_empty() {
            bail!(
                "the target store {} is not empty ({}): copy only into an empty store; nothing was written",
                self.url,
                filled.join(", ")
            );
        }
        Ok(())
    }
}

impl Store {
    /// The URL to put into store.url: a SQLite file by its absolute path
    /// (a relative one would be read against the config file's folder).
    fn shown_url(&self) -> String {
        match self.path() {
            Some(path) => match std::fs::canonicalize(path) {
                Ok(real) => format!("sqlite://{}", real.display()),
                Err(_) => self.url.redacted(),
            },
            None => self.url.redacted(),
        }
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    let real = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    real(a) == real(b)
}

/// Streams one table from the source into the target, a batch of rows per
/// INSERT; the number of rows.
async fn copy_table(
    source: &mut AnyConnection,
    source_backend: Backend,
    target: &Store,
    tx: &mut AnyConnection,
    table: &Table,
) -> anyhow::Result<u64> {
    let columns: Vec<String> = table
        .columns
        .iter()
        .map(|c| read_as_stored_on_sqlite(c, source_backend))
        .collect();
    let select = AssertSqlSafe(format!("SELECT {} FROM {}", columns.join(", "), table.name));
    let per_batch = (MAX_PARAMETERS / table.columns.len()).max(1);
    let mut batch = Vec::with_capacity(per_batch);
    let mut copied = 0;
    let mut rows = sqlx::query(select).fetch(&mut *source);
    while let Some(row) = rows
        .try_next()
        .await
        .with_context(|| format!("failed to read the source's {}", table.name))?
    {
        batch.push(read_row(&row, table)?);
        if batch.len() == per_batch {
            copied += insert(target, tx, table, &batch).await?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        copied += insert(target, tx, table, &batch).await?;
    }
    Ok(copied)
}

fn read_row(row: &AnyRow, table: &Table) -> anyhow::Result<Vec<Value>> {
    table
        .columns
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let value = match (column.kind, column.on_copy) {
                (Kind::Text, OnCopy::Released) => Value::Text(None),
                (_, OnCopy::Released) => Value::Int(None),
                (Kind::Text, OnCopy::Exact) => Value::Text(row.try_get(i)?),
                (_, OnCopy::Exact) => Value::Int(row.try_get(i)?),
            };
            Ok::<_, sqlx::Error>(value)
        })
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("failed to read a row of the source's {}: {e}", table.name))
}

/// The first row of a batch as its key columns say it, for an error.
fn first_row(table: &Table, batch: &[Vec<Value>]) -> String {
    let Some(row) = batch.first() else {
        return String::new();
    };
    let shown: Vec<String> = table
        .columns
        .iter()
        .zip(row)
        .take(2)
        .map(|(column, value)| match value {
            Value::Int(Some(v)) => format!("{} = {v}", column.name),
            Value::Text(Some(v)) => format!("{} = {}", column.name, crate::logging::outside(v)),
            _ => format!("{} = NULL", column.name),
        })
        .collect();
    shown.join(", ")
}

async fn insert(
    target: &Store,
    tx: &mut AnyConnection,
    table: &Table,
    batch: &[Vec<Value>],
) -> anyhow::Result<u64> {
    let backend = target.backend();
    let names: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
    let mut sql = format!("INSERT INTO {} ({}) VALUES ", table.name, names.join(", "));
    let mut index = 0;
    for (r, _) in batch.iter().enumerate() {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for (c, column) in table.columns.iter().enumerate() {
            index += 1;
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&write_as_stored_on_sqlite(column, backend, index));
        }
        sql.push(')');
    }
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for value in batch.iter().flatten() {
        query = match value {
            Value::Int(v) => query.bind(*v),
            Value::Text(v) => query.bind(v.as_deref()),
        };
    }
    let done = query.execute(&mut *tx).await.with_context(|| {
        format!(
            "failed to write rows into the target's {} (a batch from {})",
            table.name,
            first_row(table, batch)
        )
    })?;
    Ok(done.rows_affected())
}

/// A column as SQLite stores it (instants as Unix milliseconds, flags as
/// 0 or 1), the form a copy carries every value in.
fn read_as_stored_on_sqlite(column: &Column, backend: Backend) -> String {
    let name = column.name;
    match (column.kind, backend) {
        (Kind::Instant, Backend::Postgres) => {
            format!("(EXTRACT(EPOCH FROM {name}) * 1000)::bigint AS {name}")
        }
        (Kind::Flag, Backend::Postgres) => format!("{name}::int::bigint AS {name}"),
        _ => name.to_owned(),
    }
}

/// The placeholder of parameter `index` for a value carried as SQLite
/// stores it, turned into the column's type on `backend`.
fn write_as_stored_on_sqlite(column: &Column, backend: Backend, index: usize) -> String {
    match (column.kind, backend) {
        (_, Backend::Sqlite) => format!("?{index}"),
        (Kind::Instant, Backend::Postgres) => {
            format!("TIMESTAMPTZ 'epoch' + ${index} * INTERVAL '1 millisecond'")
        }
        (Kind::Flag, Backend::Postgres) => format!("(${index} <> 0)"),
        (_, Backend::Postgres) => format!("${index}"),
    }
}

/// Ids that come from a sequence (none in today's migrations; a later
/// `BIGSERIAL` would) continue after the copied ones, so that new rows do
/// not collide with them.
async fn advance_sequences(tx: &mut AnyConnection) -> anyhow::Result<()> {
    for table in LEDGER_TABLES {
        for column in table.columns.iter().filter(|c| c.kind == Kind::Int) {
            let sequence: Option<String> =
                sqlx::query_scalar("SELECT pg_get_serial_sequence($1, $2)")
                    .bind(table.name)
                    .bind(column.name)
                    .fetch_one(&mut *tx)
                    .await
                    .with_context(|| format!("failed to look up a sequence of {}", table.name))?;
            let Some(sequence) = sequence else {
                continue;
            };
            let advance = AssertSqlSafe(format!(
                "SELECT setval($1::text::regclass, COALESCE((SELECT MAX({}) FROM {}), 0) + 1, false)",
                column.name, table.name
            ));
            sqlx::query(advance)
                .bind(&sequence)
                .execute(&mut *tx)
                .await
                .with_context(|| format!("failed to advance the sequence {sequence}"))?;
        }
    }
    Ok(())
}
