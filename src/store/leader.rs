//! Which instance polls the source: the one holding a PostgreSQL advisory
//! lock on its own session (with SQLite, the one daemon).

use std::sync::atomic::Ordering;

use anyhow::Context;
use interim_store_postgres::{POLLER_LOCK_KEY, RUNNING_LOCK_KEY, try_lock, try_lock_shared};
use sqlx::Connection;
use sqlx::postgres::PgConnection;

use super::{Db, Store};

impl Store {
    /// Whether this instance is the one that polls the source. With SQLite
    /// always; with PostgreSQL the instance holding an advisory lock on its
    /// own session: when it dies, its session ends, the lock is free, and
    /// the next instance to try takes over.
    pub async fn lead_polling(&self) -> bool {
        if matches!(self.db, Db::Sqlite(_)) {
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

    async fn try_lead(&self, session: &mut Option<PgConnection>) -> anyhow::Result<bool> {
        if session.is_none() {
            let mut conn = PgConnection::connect(self.url.expose())
                .await
                .map_err(|e| anyhow::anyhow!("{}", self.url.scrub(&e.to_string())))?;
            let running = try_lock_shared(&mut conn, RUNNING_LOCK_KEY)
                .await
                .context("running lock")?;
            if !running {
                let _ = conn.close().await;
                anyhow::bail!("an `interim store copy` holds the store right now");
            }
            *session = Some(conn);
        }
        let Some(conn) = session.as_mut() else {
            return Ok(false);
        };
        if self.is_poller.load(Ordering::Relaxed) {
            // Still our session, still our lock: it lives as long as the session.
            interim_store_postgres::ping(&mut *conn)
                .await
                .context("poller session lost")?;
            return Ok(true);
        }
        let got = try_lock(&mut *conn, POLLER_LOCK_KEY)
            .await
            .context("poller lock")?;
        Ok(got)
    }

    /// What [`lead_polling`](Self::lead_polling) last found.
    pub fn is_poller(&self) -> bool {
        self.is_poller.load(Ordering::Relaxed)
    }

    /// Takes the poller lock and the running lock on a session of its own
    /// and keeps them for as long as the returned session lives, so that no
    /// daemon starts meanwhile; None when another session holds either (a
    /// daemon runs, polling or not). With SQLite there are no such locks
    /// (the daemon lock file plays their part).
    pub(super) async fn hold_poller_lock(&self) -> anyhow::Result<Option<PgConnection>> {
        let mut session = PgConnection::connect(self.url.expose())
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "failed to connect to the store {}: {}",
                    self.url,
                    self.url.scrub(&e.to_string())
                )
            })?;
        let got = try_lock(&mut session, POLLER_LOCK_KEY)
            .await
            .context("failed to ask for the poller lock")?;
        let alone = got
            && try_lock(&mut session, RUNNING_LOCK_KEY)
                .await
                .context("failed to ask for the running lock")?;
        if alone {
            return Ok(Some(session));
        }
        let _ = session.close().await;
        Ok(None)
    }
}
