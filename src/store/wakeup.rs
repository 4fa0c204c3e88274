//! PostgreSQL: instances wake each other when one commits new plans
//! (`NOTIFY`), so a notice another instance planned is claimed at its due
//! instant, not at the next safety tick. SQLite has one daemon: nothing to
//! tell.

use std::sync::Arc;
use std::time::Duration;

use interim_store_postgres::PLANS_CHANNEL;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::{Conn, Db, Store, WriteTx};

impl Store {
    /// Within a write transaction: announce new or changed plans; PostgreSQL
    /// delivers it at COMMIT (and drops it on ROLLBACK).
    pub(super) async fn announce_plans(tx: &mut WriteTx) -> anyhow::Result<()> {
        if let Conn::Postgres(conn) = tx.conn() {
            interim_store_postgres::announce_plans(&mut **conn).await?;
        }
        Ok(())
    }

    /// PostgreSQL: a task that wakes `wake` whenever an instance (this one
    /// included) commits plans, until `shutdown` or until the handle is
    /// dropped. None with SQLite. A connection that drops loses what was
    /// announced meanwhile, so each reconnection wakes `wake` too.
    pub fn listen_for_plans(
        &self,
        wake: Arc<Notify>,
        shutdown: CancellationToken,
    ) -> Option<AbortOnDropHandle<()>> {
        if !matches!(self.db, Db::Postgres(_)) {
            return None;
        }
        let url = self.url.clone();
        Some(AbortOnDropHandle::new(tokio::spawn(async move {
            let mut listening: Option<PgListener> = None;
            // Logged when it changes, not on every attempt.
            let mut broken = false;
            loop {
                let listener = match listening.as_mut() {
                    Some(listener) => listener,
                    None => {
                        let connected = tokio::select! {
                            _ = shutdown.cancelled() => return,
                            connected = connect(url.expose()) => connected,
                        };
                        match connected {
                            Ok(listener) => {
                                if std::mem::take(&mut broken) {
                                    tracing::info!("listening for other instances' plans again");
                                }
                                // Plans committed while nobody listened.
                                wake.notify_one();
                                listening.insert(listener)
                            }
                            Err(e) => {
                                if !std::mem::replace(&mut broken, true) {
                                    tracing::warn!(
                                        error = url.scrub(&format!("{e:#}")),
                                        "cannot listen for other instances' plans (LISTEN); their notices are claimed at the next safety tick (1 s) instead of at once"
                                    );
                                }
                                tokio::select! {
                                    _ = shutdown.cancelled() => return,
                                    _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                                }
                            }
                        }
                    }
                };
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    got = listener.try_recv() => match got {
                        Ok(Some(_)) => wake.notify_one(),
                        // The connection dropped; the next try_recv
                        // reconnects. What was announced meanwhile is lost:
                        // look anyway.
                        Ok(None) => wake.notify_one(),
                        Err(_) => {
                            wake.notify_one();
                            listening = None;
                        }
                    },
                }
            }
        })))
    }
}

async fn connect(url: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(PLANS_CHANNEL).await?;
    Ok(listener)
}
