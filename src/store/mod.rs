//! The ledger store. Every state of every notice is a row, so a restart
//! (even after `kill -9`) loses nothing and sends nothing twice by its own
//! choice. Transactions are short and never span a send.

mod admin;
mod copy;
mod delivery;
mod group;
mod leader;
mod ledger_impl;
mod pages;
mod plan;
mod promises;
mod rows;
mod tables;
mod wakeup;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, Executor, Postgres, Sqlite};

pub use crate::ledger::{
    ClaimedNotice, NoticeFilter, NoticeRow, Outcome, PollEnd, Recorded, Suppression, Swept,
};
pub use copy::CopyReport;
pub use tables::{Column, DERIVED_TABLES, Kind, LEDGER_TABLES, OnCopy, Table};

use crate::secret::SecretUrl;

/// Runs an engine's statement `$f` (a function of the same name in both
/// engine crates) on the store's pool.
macro_rules! on_pool {
    ($store:expr, $f:ident($($arg:expr),* $(,)?)) => {
        match &$store.db {
            $crate::store::Db::Sqlite(pool) => interim_store_sqlite::$f(pool, $($arg),*).await,
            $crate::store::Db::Postgres(pool) => interim_store_postgres::$f(pool, $($arg),*).await,
        }
    };
}

/// [`on_pool!`] on the connection of a [`WriteTx`].
macro_rules! on_tx {
    ($tx:expr, $f:ident($($arg:expr),* $(,)?)) => {
        match $tx.conn() {
            $crate::store::Conn::Sqlite(conn) => {
                interim_store_sqlite::$f(&mut **conn, $($arg),*).await
            }
            $crate::store::Conn::Postgres(conn) => {
                interim_store_postgres::$f(&mut **conn, $($arg),*).await
            }
        }
    };
}
pub(crate) use {on_pool, on_tx};

pub fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub fn from_ms(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(v).unwrap_or_default()
}

/// Waits for an exclusive lock on `path` (created if missing).
async fn lock_file_blocking(path: PathBuf) -> anyhow::Result<std::fs::File> {
    tokio::task::spawn_blocking(move || {
        let file = crate::private_files::open_options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("failed to open {}", path.display()))?;
        file.lock()
            .with_context(|| format!("failed to lock {}", path.display()))?;
        Ok(file)
    })
    .await
    .context("the lock task failed")?
}

/// Which database holds the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One machine, one daemon.
    Sqlite,
    /// Several instances share it.
    Postgres,
}

/// The pool of the store's engine.
#[derive(Clone)]
pub(crate) enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A pooled connection of the store's engine.
pub(crate) enum Conn {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
}

impl Conn {
    async fn execute(&mut self, sql: &'static str) -> sqlx::Result<()> {
        match self {
            Conn::Sqlite(conn) => conn.execute(sql).await.map(drop),
            Conn::Postgres(conn) => conn.execute(sql).await.map(drop),
        }
    }

    /// Closes the connection instead of handing it back to the pool.
    async fn close(self) {
        let _ = match self {
            Conn::Sqlite(conn) => conn.detach().close().await,
            Conn::Postgres(conn) => conn.detach().close().await,
        };
    }

    /// Drops the connection without handing it back to the pool (which
    /// closes it, rolling back what it had open).
    fn discard(self) {
        match self {
            Conn::Sqlite(conn) => drop(conn.detach()),
            Conn::Postgres(conn) => drop(conn.detach()),
        }
    }
}

#[derive(Clone)]
pub struct Store {
    db: Db,
    /// The SQLite file, for the single-daemon lock.
    path: Option<PathBuf>,
    /// The SQLite file as it was opened, to notice it being deleted or replaced.
    file: Option<Arc<FileWatch>>,
    url: SecretUrl,
    /// PostgreSQL: the session that holds (or tries for) the poller lock.
    leadership: Arc<tokio::sync::Mutex<Option<PgConnection>>>,
    is_poller: Arc<AtomicBool>,
    /// Writes results that arrive together in one transaction.
    results: group::GroupWriter,
    /// PostgreSQL: rows written since the last ANALYZE, and the rows
    /// written in all until then (see `Store::analyze_when_grown`).
    growth: Arc<std::sync::Mutex<(u64, u64)>>,
    /// What opening the store migrated.
    migrated: Arc<Migrated>,
}

/// The migrations a store has, and those that opening it applied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Migrated {
    /// Every migration the store has now.
    pub total: usize,
    /// Version and description of each one applied just now, in order.
    pub applied: Vec<(i64, String)>,
}

/// Runs the migrations the store lacks (sqlx's migrator: each in a
/// transaction, PostgreSQL under an advisory lock) and says which those were.
async fn migrate(db: &Db) -> anyhow::Result<Migrated> {
    // A new store has no table of applied migrations yet: none applied.
    let (before, migrator) = match db {
        Db::Sqlite(pool) => {
            let before = interim_store_sqlite::applied_migrations(pool).await;
            interim_store_sqlite::MIGRATOR.run(pool).await?;
            (before, &interim_store_sqlite::MIGRATOR)
        }
        Db::Postgres(pool) => {
            let before = interim_store_postgres::applied_migrations(pool).await;
            interim_store_postgres::MIGRATOR.run(pool).await?;
            (before, &interim_store_postgres::MIGRATOR)
        }
    };
    let before = before.unwrap_or_default();
    Ok(Migrated {
        total: migrator.iter().count(),
        applied: migrator
            .iter()
            .filter(|m| !before.contains(&m.version))
            .map(|m| (m.version, m.description.to_string()))
            .collect(),
    })
}

/// A write transaction on one pooled connection, with explicit BEGIN and
/// COMMIT. When the COMMIT fails (a full disk) and the ROLLBACK fails too,
/// or the transaction is dropped unfinished, the connection is closed
/// instead of returning to the pool: an open transaction left on a pooled
/// SQLite connection would hold the write lock and block every later write.
pub struct WriteTx {
    conn: Option<Conn>,
}

impl WriteTx {
    fn conn(&mut self) -> &mut Conn {
        match self.conn.as_mut() {
            Some(conn) => conn,
            None => unreachable!("a WriteTx holds its connection until commit"),
        }
    }

    async fn commit(mut self) -> anyhow::Result<()> {
        let Some(mut conn) = self.conn.take() else {
            return Ok(());
        };
        match conn.execute("COMMIT").await {
            Ok(()) => Ok(()),
            Err(e) => {
                if conn.execute("ROLLBACK").await.is_err() {
                    conn.close().await;
                }
                Err(e.into())
            }
        }
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        // Unfinished (an error on the way): never hand the open transaction
        // back to the pool; dropping the detached connection closes it,
        // which rolls the transaction back.
        if let Some(conn) = self.conn.take() {
            conn.discard();
        }
    }
}

/// The identity (device, inode) of the SQLite file when it was opened. A
/// deleted or replaced file goes on working for the open connections, but
/// its ledger is gone for every later start: nothing may be claimed then.
struct FileWatch {
    path: PathBuf,
    identity: (u64, u64),
    /// The problem last logged, so each change is logged once.
    reported: Mutex<Option<String>>,
}

impl FileWatch {
    fn open(path: &Path) -> anyhow::Result<FileWatch> {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("failed to read the store file {}", path.display()))?;
        Ok(FileWatch {
            path: path.to_owned(),
            identity: (meta.dev(), meta.ino()),
            reported: Mutex::new(None),
        })
    }

    fn problem(&self) -> Option<String> {
        let shown = self.path.display();
        let problem = match std::fs::metadata(&self.path) {
            Ok(meta) if (meta.dev(), meta.ino()) == self.identity => None,
            Ok(_) => Some(format!(
                "the store file {shown} was replaced by another file while the daemon ran"
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(format!(
                "the store file {shown} was deleted while the daemon ran"
            )),
            Err(e) => Some(format!("cannot check the store file {shown}: {e}")),
        };
        let mut reported = self.reported.lock().unwrap_or_else(|e| e.into_inner());
        if *reported != problem {
            match &problem {
                Some(reason) => tracing::error!(
                    reason = %reason,
                    "the ledger on disk is not the one this daemon writes: nothing is claimed or sent; \
                     put the store file back and restart (a restart on an empty store sends every due notice again)"
                ),
                None => {
                    tracing::info!(store = %shown, "the store file is the one opened again: claiming resumes")
                }
            }
            reported.clone_from(&problem);
        }
        problem
    }
}

/// Held by the one daemon that may use a SQLite store (a no-op for
/// PostgreSQL, which several instances share).
pub struct DaemonLock {
    _file: Option<std::fs::File>,
}

impl Store {
    /// What opening this store migrated.
    pub fn migrated(&self) -> &Migrated {
        &self.migrated
    }

    /// The file of a `sqlite:` store URL; None for another scheme.
    pub fn sqlite_file(url: &SecretUrl) -> anyhow::Result<Option<PathBuf>> {
        let Some(rest) = url.expose().strip_prefix("sqlite:") else {
            return Ok(None);
        };
        let path = PathBuf::from(
            rest.trim_start_matches("//")
                .split('?')
                .next()
                .unwrap_or(""),
        );
        if path.as_os_str().is_empty() {
            bail!("store.url {url} names no file");
        }
        Ok(Some(path))
    }

    /// Opens the store: a missing SQLite file is created and migrated; a
    /// PostgreSQL database must exist (its tables are migrated).
    pub async fn open(url: &SecretUrl) -> anyhow::Result<Store> {
        let raw = url.expose();
        if raw.starts_with("postgres:") || raw.starts_with("postgresql:") {
            return Self::open_postgres(url).await;
        }
        let Some(path) = Self::sqlite_file(url)? else {
            bail!("unsupported store URL {url}: use sqlite://PATH or postgres://…");
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::private_files::create_dir_all(dir).with_context(|| {
                format!("failed to create the store's folder {}", dir.display())
            })?;
        }
        // Creating the file, switching it to WAL and migrating must not race
        // with another process doing the same (a CLI command next to a
        // starting daemon): one at a time, under a lock file.
        let setup_lock = lock_file_blocking(path.with_extension("setup.lock")).await?;
        // Created here, private, before SQLite creates it with its default
        // mode; its WAL and SHM files take the database file's mode.
        crate::private_files::create_file(&path)
            .with_context(|| format!("failed to create the store {}", path.display()))?;
        // Wait for a lock instead of failing at once; WAL makes readers and
        // the one writer not block each other.
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .busy_timeout(Duration::from_secs(30))
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .with_context(|| format!("failed to open the store {url}"))?;
        let db = Db::Sqlite(pool);
        let migrated = migrate(&db)
            .await
            .with_context(|| format!("failed to migrate the store {url}"))?;
        drop(setup_lock);
        let file = FileWatch::open(&path)?;
        Ok(Store {
            db,
            file: Some(Arc::new(file)),
            path: Some(path),
            url: url.clone(),
            leadership: Arc::default(),
            is_poller: Arc::new(AtomicBool::new(true)),
            results: group::GroupWriter::default(),
            growth: Arc::default(),
            migrated: Arc::new(migrated),
        })
    }

    async fn open_postgres(url: &SecretUrl) -> anyhow::Result<Store> {
        // One direct connection first: a pool only reports that it timed out,
        // not why (refused, unknown database, authentication).
        let probe =
            tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(url.expose()))
                .await
                .map_err(|_| {
                    anyhow::anyhow!("failed to connect to the store {url}: no answer within 10 s")
                })?
                .map_err(|e| {
                    anyhow::anyhow!(
                        "failed to connect to the store {url}: {}",
                        url.scrub(&e.to_string())
                    )
                })?;
        let _ = probe.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url.expose())
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "failed to connect to the store {url}: {}",
                    url.scrub(&e.to_string())
                )
            })?;
        // Several instances may start at once: migrations run one at a time
        // (sqlx's migrator takes an advisory lock on PostgreSQL).
        let db = Db::Postgres(pool);
        let migrated = migrate(&db)
            .await
            .with_context(|| format!("failed to migrate the store {url}"))?;
        Ok(Store {
            db,
            path: None,
            file: None,
            url: url.clone(),
            leadership: Arc::default(),
            is_poller: Arc::new(AtomicBool::new(false)),
            results: group::GroupWriter::default(),
            growth: Arc::default(),
            migrated: Arc::new(migrated),
        })
    }

    /// Begins a write transaction (SQLite: IMMEDIATE, so it takes the write
    /// lock at once instead of failing on upgrade).
    async fn begin_write(&self) -> anyhow::Result<WriteTx> {
        let (mut conn, begin) = match &self.db {
            Db::Sqlite(pool) => (
                Conn::Sqlite(pool.acquire().await.context("store unreachable")?),
                "BEGIN IMMEDIATE",
            ),
            Db::Postgres(pool) => (
                Conn::Postgres(pool.acquire().await.context("store unreachable")?),
                "BEGIN",
            ),
        };
        conn.execute(begin)
            .await
            .context("failed to begin a transaction")?;
        Ok(WriteTx { conn: Some(conn) })
    }

    pub fn backend(&self) -> Backend {
        match self.db {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// Only one daemon may use a SQLite store at a time; PostgreSQL stores
    /// are shared by design.
    pub fn lock_for_daemon(&self) -> anyhow::Result<DaemonLock> {
        let Some(path) = &self.path else {
            return Ok(DaemonLock { _file: None });
        };
        let lock_path = path.with_extension("lock");
        let file = crate::private_files::open_options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("failed to open {}", lock_path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(DaemonLock { _file: Some(file) }),
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "another interim daemon is using the store {} (lock {} is held); one daemon per SQLite store",
                path.display(),
                lock_path.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("failed to lock {}", lock_path.display()))
            }
        }
    }

    /// Closes the pool and the poller session: the advisory locks it held
    /// are free when this returns, not when the socket is noticed gone.
    pub async fn close(&self) {
        self.results.close();
        if let Some(session) = self.leadership.lock().await.take() {
            let _ = sqlx::Connection::close(session).await;
        }
        match &self.db {
            Db::Sqlite(pool) => pool.close().await,
            Db::Postgres(pool) => pool.close().await,
        }
    }

    pub async fn ping(&self) -> anyhow::Result<()> {
        on_pool!(self, ping()).context("store unreachable")
    }

    /// A write that proves the store takes writes now (disk full, a
    /// read-only file or database, a lock held elsewhere all fail it).
    pub async fn probe_write(&self, now: DateTime<Utc>) -> anyhow::Result<()> {
        let value = ms(now).to_string();
        on_pool!(self, set_meta("write_probe", &value)).context("the store cannot be written")
    }

    /// Why the SQLite file at the store's path is no longer the one this
    /// process writes (deleted, replaced), logged once per change; None
    /// for PostgreSQL and while it is the same file.
    pub fn file_problem(&self) -> Option<String> {
        self.file.as_ref().and_then(|watch| watch.problem())
    }

    /// The SQLite file, if the store is one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}
