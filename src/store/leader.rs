//! Which instance polls the source: the one holding a PostgreSQL advisory
//! lock on its own session (with SQLite, the one daemon).

use std::sync::atomic::Ordering;

use anyhow::Context;
use sqlx::{AnyConnection, Connection};

use super::{Backend, Store};

/// The advisory lock key of the poller role ("interim" in ASCII).
const POLLER_LOCK_KEY: i64 = 0x0069_6e74_6572_696d;

/// Held shared by every running daemon on its poller session (pollers and
/// the others, which claim and send all the same), exclusively by `store
/// copy`: a copy cannot start while any daemon runs ("Rinterim").
const RUNNING_LOCK_KEY: i64 = 0x0069_6e74_6572_696d + 0x5200_0000_0000_0000;

impl Store {
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
            let mut conn = AnyConnection::connect(self.url.expose())
                .await
                .map_err(|e| anyhow::anyhow!("{}", self.url.scrub(&e.to_string())))?;
            let running: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock_shared($1)")
                .bind(RUNNING_LOCK_KEY)
                .fetch_one(&mut conn)
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

    /// Takes the poller lock and the running lock on a session of its own
    /// and keeps them for as long as the returned session lives, so that no
    /// daemon starts meanwhile; None when another session holds either (a
    /// daemon runs, polling or not). With SQLite there are no such locks
    /// (the daemon lock file plays their part).
    pub(super) async fn hold_poller_lock(&self) -> anyhow::Result<Option<AnyConnection>> {
        let mut session = AnyConnection::connect(self.url.expose())
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "failed to connect to the store {}: {}",
                    self.url,
                    self.url.scrub(&e.to_string())
                )
            })?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(POLLER_LOCK_KEY)
            .fetch_one(&mut session)
            .await
            .context("failed to ask for the poller lock")?;
        let alone = got
            && sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
                .bind(RUNNING_LOCK_KEY)
                .fetch_one(&mut session)
                .await
                .context("failed to ask for the running lock")?;
        if alone {
            return Ok(Some(session));
        }
        let _ = session.close().await;
        Ok(None)
    }
}
