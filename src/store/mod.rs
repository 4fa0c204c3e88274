//! The ledger store. Every state of every notice is a row, so a restart
//! (even after `kill -9`) loses nothing and sends nothing twice by its own
//! choice. Transactions are short and never span a send.

mod rows;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use sqlx::AnyConnection;
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::{AssertSqlSafe, Connection, Executor, Row};

pub use rows::{ClaimedNotice, NoticeFilter, NoticeRow, Suppression};

use crate::notice::{SeriesKey, Status};
use crate::planner::{NextNotice, Plan, SeriesState};
use crate::secret::SecretUrl;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

const SERIES_SELECT: &str = "SELECT s.ticket_id, s.policy, s.episode, s.done, s.last_ref_at,
            n.id, n.number, n.status, n.due_at, n.send_at, n.ticket_hash
     FROM series s LEFT JOIN notices n ON n.id = s.next_id";

fn series_from_row(r: &sqlx::any::AnyRow) -> Result<SeriesState, sqlx::Error> {
    let next = match r.try_get::<Option<String>, _>(5)? {
        Some(id) => Some(NextNotice {
            id,
            number: r.try_get::<i64, _>(6)? as u32,
            status: Status::parse(&r.try_get::<String, _>(7)?).unwrap_or(Status::Pending),
            due_at: from_ms(r.try_get(8)?),
            send_at: from_ms(r.try_get(9)?),
            ticket_hash: r.try_get(10)?,
        }),
        None => None,
    };
    Ok(SeriesState {
        key: SeriesKey {
            ticket_id: r.try_get(0)?,
            policy: r.try_get(1)?,
            episode: from_ms(r.try_get(2)?),
        },
        done: r.try_get::<i64, _>(3)? as u32,
        last_ref_at: r.try_get::<Option<i64>, _>(4)?.map(from_ms),
        next,
    })
}

const CLAIM_SQL: &str = "UPDATE notices SET claimed_by = ?1, claim_until = ?2
     WHERE id IN (SELECT id FROM notices
                  WHERE status = 'pending' AND channel = ?3 AND next_attempt_at <= ?4
                    AND (claim_until IS NULL OR claim_until < ?4)
                  ORDER BY next_attempt_at LIMIT ?5)
     RETURNING id, ticket_id, policy, episode, dry_run, number, max_notices, channel, recipient,
               due_at, send_at, attempts, first_attempt_at, ticket";

pub fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub fn from_ms(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(v).unwrap_or_default()
}

/// Waits for an exclusive lock on `path` (created if missing).
async fn lock_file_blocking(path: PathBuf) -> anyhow::Result<std::fs::File> {
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
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

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The SQLite file, for the single-daemon lock.
    path: Option<PathBuf>,
    url: SecretUrl,
    /// PostgreSQL: the session that holds (or tries for) the poller lock.
    leadership: Arc<tokio::sync::Mutex<Option<AnyConnection>>>,
    is_poller: Arc<AtomicBool>,
}

/// The advisory lock key of the poller role ("interim" in ASCII).
const POLLER_LOCK_KEY: i64 = 0x0069_6e74_6572_696d;

/// A write transaction on one pooled connection, with explicit BEGIN and
/// COMMIT. When the COMMIT fails (a full disk) and the ROLLBACK fails too,
/// or the transaction is dropped unfinished, the connection is closed
/// instead of returning to the pool: an open transaction left on a pooled
/// SQLite connection would hold the write lock and block every later write.
pub struct WriteTx {
    conn: Option<sqlx::pool::PoolConnection<sqlx::Any>>,
}

impl WriteTx {
    fn conn(&mut self) -> &mut AnyConnection {
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
            Ok(_) => Ok(()),
            Err(e) => {
                if conn.execute("ROLLBACK").await.is_err() {
                    let _ = conn.detach().close().await;
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
            drop(conn.detach());
        }
    }
}

/// Held by the one daemon that may use a SQLite store (a no-op for
/// PostgreSQL, which several instances share).
pub struct DaemonLock {
    _file: Option<std::fs::File>,
}

impl Store {
    /// Opens the store: a missing SQLite file is created and migrated; a
    /// PostgreSQL database must exist (its tables are migrated).
    pub async fn open(url: &SecretUrl) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let raw = url.expose();
        if raw.starts_with("postgres:") || raw.starts_with("postgresql:") {
            return Self::open_postgres(url).await;
        }
        let Some(rest) = raw.strip_prefix("sqlite:") else {
            bail!("unsupported store URL {url}: use sqlite://PATH or postgres://…");
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
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| {
                format!("failed to create the store's folder {}", dir.display())
            })?;
        }
        // Creating the file, switching it to WAL and migrating must not race
        // with another process doing the same (a CLI command next to a
        // starting daemon): one at a time, under a lock file.
        let setup_lock = lock_file_blocking(path.with_extension("setup.lock")).await?;
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // Wait for a lock instead of failing at once; WAL makes
                    // readers and the one writer not block each other.
                    conn.execute("PRAGMA busy_timeout = 30000").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    Ok(())
                })
            })
            .connect(&format!("sqlite://{}?mode=rwc", path.display()))
            .await
            .with_context(|| format!("failed to open the store {url}"))?;
        sqlx::query("PRAGMA journal_mode = WAL")
            .execute(&pool)
            .await
            .with_context(|| format!("failed to switch the store {url} to WAL"))?;
        SQLITE_MIGRATIONS
            .run(&pool)
            .await
            .with_context(|| format!("failed to migrate the store {url}"))?;
        drop(setup_lock);
        Ok(Store {
            pool,
            backend: Backend::Sqlite,
            path: Some(path),
            url: url.clone(),
            leadership: Arc::default(),
            is_poller: Arc::new(AtomicBool::new(true)),
        })
    }

    async fn open_postgres(url: &SecretUrl) -> anyhow::Result<Store> {
        // One direct connection first: a pool only reports that it timed out,
        // not why (refused, unknown database, authentication).
        let probe = tokio::time::timeout(
            Duration::from_secs(10),
            AnyConnection::connect(url.expose()),
        )
        .await
        .map_err(|_| {
            anyhow::anyhow!("failed to connect to the store {url}: no answer within 10 s")
        })?
        .map_err(|e| {
            anyhow::anyhow!(
                "failed to connect to the store {url}: {}",
                crate::secret::redact_url(&e.to_string())
            )
        })?;
        let _ = probe.close().await;
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url.expose())
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "failed to connect to the store {url}: {}",
                    crate::secret::redact_url(&e.to_string())
                )
            })?;
        // Several instances may start at once: migrations run one at a time
        // (sqlx's migrator takes an advisory lock on PostgreSQL).
        POSTGRES_MIGRATIONS
            .run(&pool)
            .await
            .with_context(|| format!("failed to migrate the store {url}"))?;
        Ok(Store {
            pool,
            backend: Backend::Postgres,
            path: None,
            url: url.clone(),
            leadership: Arc::default(),
            is_poller: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Whether this instance is the one that polls the source. With SQLite
    /// always; with PostgreSQL the instance holding an advisory lock on its
    /// own session: when it dies, its session ends, the lock is free, and
    /// the next instance to try takes over.
    pub async fn lead_polling(&self) -> bool {
        if self.backend == Backend::Sqlite {
            return true;
        }
        let mut session = self.leadership.lock().await;
        let leading = match self.try_lead(&mut session).await {
            Ok(leading) => leading,
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "cannot reach the store for the poller lock"
                );
                *session = None;
                false
            }
        };
        if leading != self.is_poller.swap(leading, Ordering::Relaxed) {
            tracing::info!(poller = leading, "poller role changed");
        }
        leading
    }

    async fn try_lead(&self, session: &mut Option<AnyConnection>) -> anyhow::Result<bool> {
        if session.is_none() {
            *session = Some(
                AnyConnection::connect(self.url.expose())
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!("{}", crate::secret::redact_url(&e.to_string()))
                    })?,
            );
        }
        let Some(conn) = session.as_mut() else {
            return Ok(false);
        };
        if self.is_poller.load(Ordering::Relaxed) {
            // Still our session, still our lock: it lives as long as the session.
            sqlx::query("SELECT 1")
                .execute(&mut *conn)
                .await
                .context("poller session lost")?;
            return Ok(true);
        }
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(POLLER_LOCK_KEY)
            .fetch_one(&mut *conn)
            .await
            .context("poller lock")?;
        Ok(got)
    }

    /// What [`lead_polling`](Self::lead_polling) last found.
    pub fn is_poller(&self) -> bool {
        self.is_poller.load(Ordering::Relaxed)
    }

    /// Begins a write transaction (SQLite: IMMEDIATE, so it takes the write
    /// lock at once instead of failing on upgrade).
    async fn begin_write(&self) -> anyhow::Result<WriteTx> {
        let mut conn = self.pool.acquire().await.context("store unreachable")?;
        let begin = match self.backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        conn.execute(begin)
            .await
            .context("failed to begin a transaction")?;
        Ok(WriteTx { conn: Some(conn) })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// SQL is written with SQLite's `?N` parameters; PostgreSQL spells them `$N`.
    fn sql(&self, text: &'static str) -> AssertSqlSafe<String> {
        AssertSqlSafe(match self.backend {
            Backend::Sqlite => text.to_owned(),
            Backend::Postgres => text.replace('?', "$"),
        })
    }

    /// Only one daemon may use a SQLite store at a time; PostgreSQL stores
    /// are shared by design.
    pub fn lock_for_daemon(&self) -> anyhow::Result<DaemonLock> {
        let Some(path) = &self.path else {
            return Ok(DaemonLock { _file: None });
        };
        let lock_path = path.with_extension("lock");
        let file = std::fs::OpenOptions::new()
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

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A restarted daemon takes back its unfinished claims at once: with
    /// SQLite it is the only daemon, so every claim was its own. (On
    /// PostgreSQL a dead instance's claims end with their lease.)
    pub async fn release_all_claims(&self) -> anyhow::Result<u64> {
        if self.backend == Backend::Postgres {
            return Ok(0);
        }
        let done = sqlx::query(self.sql(
            "UPDATE notices SET claimed_by = NULL, claim_until = NULL WHERE claimed_by IS NOT NULL",
        ))
        .execute(&self.pool)
        .await
        .context("failed to release claims")?;
        Ok(done.rows_affected())
    }

    pub async fn last_poll_at(&self) -> anyhow::Result<Option<DateTime<Utc>>> {
        let row = sqlx::query(self.sql("SELECT value FROM meta WHERE key = 'last_poll_at'"))
            .fetch_optional(&self.pool)
            .await
            .context("failed to read the last poll time")?;
        Ok(row
            .and_then(|r| r.get::<String, _>(0).parse::<i64>().ok())
            .map(from_ms))
    }

    pub async fn ping(&self) -> anyhow::Result<()> {
        sqlx::query(self.sql("SELECT 1"))
            .execute(&self.pool)
            .await
            .context("store unreachable")?;
        Ok(())
    }

    /// The ledger's view of every current series (for one mode: live or dry run).
    pub async fn load_series(&self, dry_run: bool) -> anyhow::Result<Vec<SeriesState>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "{SERIES_SELECT} WHERE s.dry_run = {}",
            i64::from(dry_run)
        )))
        .fetch_all(&self.pool)
        .await
        .context("failed to load series")?;
        rows.iter()
            .map(series_from_row)
            .collect::<Result<_, sqlx::Error>>()
            .context("failed to read series")
    }

    /// The series of some tickets only (an incremental poll's).
    pub async fn load_series_for(
        &self,
        dry_run: bool,
        ticket_ids: &[&str],
    ) -> anyhow::Result<Vec<SeriesState>> {
        let mut out = Vec::new();
        for chunk in ticket_ids.chunks(500) {
            let params: Vec<String> = (1..=chunk.len()).map(|i| self.placeholder(i)).collect();
            let sql = format!(
                "{SERIES_SELECT} WHERE s.dry_run = {} AND s.ticket_id IN ({})",
                i64::from(dry_run),
                params.join(", ")
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(*id);
            }
            let rows = query
                .fetch_all(&self.pool)
                .await
                .context("failed to load series")?;
            for row in &rows {
                out.push(series_from_row(row).context("failed to read series")?);
            }
        }
        Ok(out)
    }

    fn placeholder(&self, index: usize) -> String {
        match self.backend {
            Backend::Sqlite => format!("?{index}"),
            Backend::Postgres => format!("${index}"),
        }
    }

    /// The source watermark: the newest `updated_at` seen by a poll.
    pub async fn source_watermark(&self) -> anyhow::Result<Option<DateTime<Utc>>> {
        let row = sqlx::query(self.sql("SELECT value FROM meta WHERE key = 'source_watermark'"))
            .fetch_optional(&self.pool)
            .await
            .context("failed to read the source watermark")?;
        Ok(row
            .and_then(|r| r.get::<String, _>(0).parse::<i64>().ok())
            .map(from_ms))
    }

    /// Applies a plan in one transaction and records the poll time.
    pub async fn apply_plan(
        &self,
        plan: &Plan,
        dry_run: bool,
        now: DateTime<Utc>,
        watermark: Option<DateTime<Utc>>,
    ) -> anyhow::Result<()> {
        self.apply(plan, dry_run, now, Some(watermark)).await
    }

    /// Applies the plan of one chunk of a poll (the poll's time is written
    /// by [`finish_poll`](Self::finish_poll) once every chunk is in).
    pub async fn apply_chunk(
        &self,
        plan: &Plan,
        dry_run: bool,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        self.apply(plan, dry_run, now, None).await
    }

    /// Ends a poll: with `seen` (the ids a full poll returned) the series of
    /// tickets it did not return end and their pending notices are
    /// cancelled (returned for the log); then records the poll time and
    /// the watermark. Reading the series' ticket ids costs less than
    /// marking every seen series on every poll.
    pub async fn finish_poll(
        &self,
        dry_run: bool,
        now: DateTime<Utc>,
        seen: Option<&std::collections::HashSet<Box<str>>>,
        watermark: Option<DateTime<Utc>>,
    ) -> anyhow::Result<Vec<(String, String, String)>> {
        let mut absent: Vec<String> = Vec::new();
        if let Some(seen) = seen {
            let ids: Vec<String> = sqlx::query_scalar(
                self.sql("SELECT DISTINCT ticket_id FROM series WHERE dry_run = ?1"),
            )
            .bind(i64::from(dry_run))
            .fetch_all(&self.pool)
            .await
            .context("failed to read the tracked tickets")?;
            absent = ids
                .into_iter()
                .filter(|id| !seen.contains(id.as_str()))
                .collect();
        }
        let mut tx = self
            .begin_write()
            .await
            .context("failed to begin the poll transaction")?;
        let mut cancelled = Vec::new();
        for chunk in absent.chunks(500) {
            let params: Vec<String> = (3..chunk.len() + 3).map(|i| self.placeholder(i)).collect();
            let list = params.join(", ");
            let sql = format!(
                "UPDATE notices SET status = 'cancelled', cancel_reason = 'the ticket is no longer waiting',
                        finished_at = {now}, updated_at = {now}, claimed_by = NULL, claim_until = NULL
                 WHERE status = 'pending'
                   AND id IN (SELECT next_id FROM series WHERE dry_run = {dry} AND next_id IS NOT NULL AND ticket_id IN ({list}))
                 RETURNING id, ticket_id, policy",
                now = self.placeholder(1),
                dry = self.placeholder(2),
            );
            let mut query = sqlx::query(AssertSqlSafe(sql))
                .bind(ms(now))
                .bind(i64::from(dry_run));
            for id in chunk {
                query = query.bind(id.as_str());
            }
            for r in &query.fetch_all(tx.conn()).await? {
                cancelled.push((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?));
            }
            let params: Vec<String> = (2..chunk.len() + 2).map(|i| self.placeholder(i)).collect();
            let sql = format!(
                "DELETE FROM series WHERE dry_run = {} AND ticket_id IN ({})",
                self.placeholder(1),
                params.join(", ")
            );
            let mut query = sqlx::query(AssertSqlSafe(sql)).bind(i64::from(dry_run));
            for id in chunk {
                query = query.bind(id.as_str());
            }
            query.execute(tx.conn()).await?;
        }
        self.write_poll_meta(&mut tx, now, watermark).await?;
        tx.commit().await.context("failed to commit the poll")?;
        Ok(cancelled)
    }

    async fn write_poll_meta(
        &self,
        tx: &mut WriteTx,
        now: DateTime<Utc>,
        watermark: Option<DateTime<Utc>>,
    ) -> anyhow::Result<()> {
        sqlx::query(self.sql("INSERT INTO meta (key, value) VALUES ('last_poll_at', ?1) ON CONFLICT (key) DO UPDATE SET value = excluded.value"))
            .bind(ms(now).to_string())
            .execute(tx.conn())
            .await?;
        if let Some(watermark) = watermark {
            sqlx::query(self.sql("INSERT INTO meta (key, value) VALUES ('source_watermark', ?1) ON CONFLICT (key) DO UPDATE SET value = excluded.value"))
                .bind(ms(watermark).to_string())
                .execute(tx.conn())
                .await?;
        }
        Ok(())
    }

    /// One transaction: new series, cancels, ended series, upserts, and
    /// (a whole poll at once) the poll's time and watermark.
    async fn apply(
        &self,
        plan: &Plan,
        dry_run: bool,
        now: DateTime<Utc>,
        meta: Option<Option<DateTime<Utc>>>,
    ) -> anyhow::Result<()> {
        let mut tx = self
            .begin_write()
            .await
            .context("failed to begin the plan transaction")?;
        let now_ms = ms(now);
        for key in &plan.new_series {
            sqlx::query(self.sql("INSERT INTO series (ticket_id, policy, episode, dry_run) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING"))
                .bind(&key.ticket_id)
                .bind(&key.policy)
                .bind(ms(key.episode))
                .bind(i64::from(dry_run))
                .execute(tx.conn())
                .await?;
        }
        for cancel in &plan.cancels {
            sqlx::query(self.sql("UPDATE notices SET status = 'cancelled', cancel_reason = ?2, finished_at = ?3, updated_at = ?3,
                        claimed_by = NULL, claim_until = NULL
                 WHERE id = ?1 AND status = 'pending'"))
            .bind(&cancel.id)
            .bind(&cancel.reason)
            .bind(now_ms)
            .execute(tx.conn())
            .await?;
        }
        for key in &plan.ended_series {
            sqlx::query(self.sql("DELETE FROM series WHERE ticket_id = ?1 AND policy = ?2 AND episode = ?3 AND dry_run = ?4"))
                .bind(&key.ticket_id)
                .bind(&key.policy)
                .bind(ms(key.episode))
                .bind(i64::from(dry_run))
                .execute(tx.conn())
                .await?;
        }
        for n in &plan.upserts {
            // A pending notice follows the plan (a changed threshold moves
            // it) unless a retry is scheduled; a cancelled one comes back
            // when its ticket matches again. Ended notices never change.
            sqlx::query(self.sql("INSERT INTO notices (id, ticket_id, policy, episode, dry_run, number, max_notices, status, channel,
                                      recipient, due_at, send_at, next_attempt_at, ticket, created_at, updated_at, ticket_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?9, ?10, ?11, ?11, ?12, ?13, ?13, ?14)
                 ON CONFLICT (id) DO UPDATE SET
                    max_notices = excluded.max_notices, channel = excluded.channel, recipient = excluded.recipient,
                    due_at = excluded.due_at, send_at = excluded.send_at, ticket = excluded.ticket, ticket_hash = excluded.ticket_hash,
                    next_attempt_at = CASE WHEN notices.status = 'cancelled' OR notices.attempts = 0
                                           THEN excluded.next_attempt_at ELSE notices.next_attempt_at END,
                    attempts = CASE WHEN notices.status = 'cancelled' THEN 0 ELSE notices.attempts END,
                    first_attempt_at = CASE WHEN notices.status = 'cancelled' THEN NULL ELSE notices.first_attempt_at END,
                    cancel_reason = NULL, finished_at = NULL,
                    status = 'pending', updated_at = excluded.updated_at
                 WHERE notices.status IN ('pending', 'cancelled')"))
            .bind(&n.id)
            .bind(&n.key.ticket_id)
            .bind(&n.key.policy)
            .bind(ms(n.key.episode))
            .bind(i64::from(dry_run))
            .bind(n.number as i64)
            .bind(n.max_notices as i64)
            .bind(&n.channel)
            .bind(&n.recipient)
            .bind(ms(n.due_at))
            .bind(ms(n.send_at))
            .bind(&n.ticket_json)
            .bind(now_ms)
            .bind(n.ticket_hash)
            .execute(tx.conn())
            .await?;
            sqlx::query(self.sql("UPDATE series SET next_id = ?5 WHERE ticket_id = ?1 AND policy = ?2 AND episode = ?3 AND dry_run = ?4"))
                .bind(&n.key.ticket_id)
                .bind(&n.key.policy)
                .bind(ms(n.key.episode))
                .bind(i64::from(dry_run))
                .bind(&n.id)
                .execute(tx.conn())
                .await?;
        }
        if let Some(watermark) = meta {
            self.write_poll_meta(&mut tx, now, watermark).await?;
        }
        tx.commit().await.context("failed to commit the plan")?;
        Ok(())
    }

    /// Claims up to `limit` due notices of a channel with a lease, in one
    /// short statement. The send happens outside any transaction.
    pub async fn claim_due(
        &self,
        channel: &str,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
        instance: &str,
    ) -> anyhow::Result<Vec<ClaimedNotice>> {
        let until = now + chrono::Duration::from_std(lease).unwrap_or_default();
        // On PostgreSQL, instances skip each other's locked rows instead of
        // waiting for them.
        let sql = match self.backend {
            Backend::Sqlite => self.sql(CLAIM_SQL),
            Backend::Postgres => AssertSqlSafe(
                CLAIM_SQL
                    .replace("LIMIT ?5", "LIMIT ?5 FOR UPDATE SKIP LOCKED")
                    .replace('?', "$"),
            ),
        };
        let rows = sqlx::query(sql)
            .bind(instance)
            .bind(ms(until))
            .bind(channel)
            .bind(ms(now))
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .with_context(|| format!("failed to claim due notices of channel {channel}"))?;
        rows.iter()
            .map(ClaimedNotice::from_row)
            .collect::<Result<_, _>>()
            .context("failed to read claimed notices")
    }

    /// The notice's status as the latest plan left it (the pre-send check).
    pub async fn status_of(&self, id: &str) -> anyhow::Result<Option<Status>> {
        let v: Option<String> =
            sqlx::query_scalar(self.sql("SELECT status FROM notices WHERE id = ?1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .context("failed to read a notice's status")?;
        Ok(v.as_deref().and_then(Status::parse))
    }

    /// Records a delivered (or dry-run) notice and advances its series.
    pub async fn record_done(
        &self,
        n: &ClaimedNotice,
        status: Status,
        attempt_started: DateTime<Utc>,
        finished: DateTime<Utc>,
        next_notice_at: Option<DateTime<Utc>>,
        error: Option<&str>,
    ) -> anyhow::Result<()> {
        let mut tx = self.begin_write().await?;
        let sent_at = matches!(status, Status::Sent | Status::DryRun).then_some(ms(finished));
        sqlx::query(self.sql("UPDATE notices SET status = ?2, attempts = attempts + CASE WHEN ?2 = 'suppressed' THEN 0 ELSE 1 END, first_attempt_at = COALESCE(first_attempt_at, ?3),
                    last_attempt_at = ?3, sent_at = ?4, finished_at = ?5, next_notice_at = ?6, last_error = COALESCE(?7, last_error),
                    claimed_by = NULL, claim_until = NULL, updated_at = ?5
             WHERE id = ?1"))
        .bind(&n.id)
        .bind(status.as_str())
        .bind(ms(attempt_started))
        .bind(sent_at)
        .bind(ms(finished))
        .bind(next_notice_at.map(ms))
        .bind(error)
        .execute(tx.conn())
        .await?;
        // The next notice is spaced from when this one's final attempt began.
        sqlx::query(self.sql(
            "UPDATE series SET done = ?5, last_ref_at = ?6, next_id = NULL
             WHERE ticket_id = ?1 AND policy = ?2 AND episode = ?3 AND dry_run = ?4 AND done < ?5",
        ))
        .bind(&n.ticket_id)
        .bind(&n.policy)
        .bind(ms(n.episode))
        .bind(i64::from(n.dry_run))
        .bind(n.number as i64)
        .bind(ms(attempt_started))
        .execute(tx.conn())
        .await?;
        tx.commit()
            .await
            .with_context(|| format!("failed to record notice {}", n.id))?;
        Ok(())
    }

    /// Records a failed attempt that will be retried at `next_attempt`.
    pub async fn record_retry(
        &self,
        n: &ClaimedNotice,
        attempt_started: DateTime<Utc>,
        next_attempt: DateTime<Utc>,
        error: &str,
    ) -> anyhow::Result<()> {
        sqlx::query(self.sql("UPDATE notices SET attempts = attempts + 1, first_attempt_at = COALESCE(first_attempt_at, ?2), last_attempt_at = ?2,
                    next_attempt_at = ?3, last_error = ?4, claimed_by = NULL, claim_until = NULL, updated_at = ?2
             WHERE id = ?1 AND status = 'pending'"))
        .bind(&n.id)
        .bind(ms(attempt_started))
        .bind(ms(next_attempt))
        .bind(error)
        .execute(&self.pool)
        .await
        .with_context(|| format!("failed to record a retry of notice {}", n.id))?;
        Ok(())
    }

    /// Gives a claim back without an attempt (e.g. outside the send window,
    /// or shutting down before the send began).
    pub async fn release(
        &self,
        id: &str,
        next_attempt: Option<DateTime<Utc>>,
    ) -> anyhow::Result<()> {
        sqlx::query(self.sql("UPDATE notices SET claimed_by = NULL, claim_until = NULL, next_attempt_at = COALESCE(?2, next_attempt_at)
             WHERE id = ?1 AND status = 'pending'"))
        .bind(id)
        .bind(next_attempt.map(ms))
        .execute(&self.pool)
        .await
        .with_context(|| format!("failed to release notice {id}"))?;
        Ok(())
    }

    pub async fn list(&self, filter: &NoticeFilter) -> anyhow::Result<Vec<NoticeRow>> {
        let rows = sqlx::query(self.sql("SELECT id, ticket_id, policy, number, max_notices, status, attempts, due_at, send_at, next_attempt_at,
                    sent_at, last_error, channel, recipient, dry_run, next_notice_at, cancel_reason, episode, ticket
             FROM notices
             WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR ticket_id = ?2)
             ORDER BY created_at, ticket_id, policy, number"))
        .bind(filter.status.map(|s| s.as_str()))
        .bind(filter.ticket.as_deref())
        .fetch_all(&self.pool)
        .await
        .context("failed to list notices")?;
        rows.iter()
            .map(NoticeRow::from_row)
            .collect::<Result<_, _>>()
            .context("failed to read notices")
    }

    /// Puts dead notices back to pending, due now, with a fresh retry window.
    /// Returns the ids that were not dead (unknown or in another status).
    pub async fn retry(&self, ids: &[String], now: DateTime<Utc>) -> anyhow::Result<Vec<String>> {
        let mut refused = Vec::new();
        for id in ids {
            let done = sqlx::query(self.sql("UPDATE notices SET status = 'pending', next_attempt_at = ?2, first_attempt_at = NULL, finished_at = NULL,
                        updated_at = ?2
                 WHERE id = ?1 AND status = 'dead'"))
            .bind(id)
            .bind(ms(now))
            .execute(&self.pool)
            .await
            .with_context(|| format!("failed to retry notice {id}"))?;
            if done.rows_affected() == 0 {
                refused.push(id.clone());
            }
        }
        Ok(refused)
    }

    /// Cancels a pending notice (the pre-send re-check found the wait over).
    pub async fn cancel(&self, id: &str, reason: &str, now: DateTime<Utc>) -> anyhow::Result<()> {
        sqlx::query(self.sql("UPDATE notices SET status = 'cancelled', cancel_reason = ?2, finished_at = ?3, updated_at = ?3,
                    claimed_by = NULL, claim_until = NULL
             WHERE id = ?1 AND status = 'pending'"))
        .bind(id)
        .bind(reason)
        .bind(ms(now))
        .execute(&self.pool)
        .await
        .with_context(|| format!("failed to cancel notice {id}"))?;
        Ok(())
    }

    /// When a notice last went out to this recipient (for the per-recipient limit).
    pub async fn last_sent_to(&self, recipient: &str) -> anyhow::Result<Option<DateTime<Utc>>> {
        let v: Option<i64> = sqlx::query_scalar(
            self.sql("SELECT MAX(sent_at) FROM notices WHERE status = 'sent' AND recipient = ?1"),
        )
        .bind(recipient)
        .fetch_one(&self.pool)
        .await
        .context("failed to read the last notice to a recipient")?;
        Ok(v.map(from_ms))
    }

    /// The stored suppression of an address or its `@domain`, if any.
    pub async fn suppression_of(&self, address: &str) -> anyhow::Result<Option<Suppression>> {
        let address = address.to_lowercase();
        let domain = address
            .rsplit_once('@')
            .map(|(_, d)| format!("@{d}"))
            .unwrap_or_default();
        let row = sqlx::query(self.sql("SELECT address, reason, source, created_at FROM suppressions WHERE address IN (?1, ?2) ORDER BY created_at LIMIT 1"))
            .bind(&address)
            .bind(&domain)
            .fetch_optional(&self.pool)
            .await
            .context("failed to read suppressions")?;
        row.map(|r| Suppression::from_row(&r))
            .transpose()
            .context("failed to read a suppression")
    }

    /// Adds (or updates) a suppression. `address` is an address or `@domain`.
    pub async fn suppress(
        &self,
        address: &str,
        reason: &str,
        source: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        sqlx::query(self.sql("INSERT INTO suppressions (address, reason, source, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (address) DO UPDATE SET reason = excluded.reason, source = excluded.source"))
        .bind(address.to_lowercase())
        .bind(reason)
        .bind(source)
        .bind(ms(now))
        .execute(&self.pool)
        .await
        .context("failed to store a suppression")?;
        Ok(())
    }

    /// Removes a stored suppression; false when there was none.
    pub async fn unsuppress(&self, address: &str) -> anyhow::Result<bool> {
        let done = sqlx::query(self.sql("DELETE FROM suppressions WHERE address = ?1"))
            .bind(address.to_lowercase())
            .execute(&self.pool)
            .await
            .context("failed to remove a suppression")?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn suppressions(&self) -> anyhow::Result<Vec<Suppression>> {
        let rows =
            sqlx::query(self.sql(
                "SELECT address, reason, source, created_at FROM suppressions ORDER BY address",
            ))
            .fetch_all(&self.pool)
            .await
            .context("failed to list suppressions")?;
        rows.iter()
            .map(Suppression::from_row)
            .collect::<Result<_, _>>()
            .context("failed to read suppressions")
    }

    /// The SQLite file, if the store is one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}
