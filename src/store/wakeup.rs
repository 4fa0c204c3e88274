//! PostgreSQL: instances wake each other when one commits new plans
//! (`NOTIFY`), so a notice another instance planned is claimed at its due
//! instant, not at the next safety tick. SQLite has one daemon: nothing to
//! tell.

use std::sync::Arc;
use std::time::Duration;

use sqlx::AnyConnection;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Backend, Store};

/// The channel plans are announced on.
const PLANS_CHANNEL: &str = "interim_plans";

impl Store {
    /// Within a write transaction: announce new or changed plans; PostgreSQL
    /// delivers it at COMMIT (and drops it on ROLLBACK).
    pub(super) async fn announce_plans(&self, conn: &mut AnyConnection) -> anyhow::Result<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(PLANS_CHANNEL)
                .execute(conn)
                .await?;
        }
        Ok(())
    }

    /// PostgreSQL: a task that wakes `wake` whenever an instance (this one
    /// included) commits plans, until `shutdown`. None with SQLite.
    pub fn listen_for_plans(
        &self,
        wake: Arc<Notify>,
        shutdown: CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        if self.backend != Backend::Postgres {
            return None;
        }
        let url = self.url.clone();
        Some(tokio::spawn(async move {
            let mut listening: Option<PgListener> = None;
            loop {
                let listener = match listening.as_mut() {
                    Some(listener) => listener,
                    None => match connect(url.expose()).await {
                        Ok(listener) => listening.insert(listener),
                        Err(e) => {
                            tracing::debug!(
                                error = url.scrub(&format!("{e:#}")),
                                "cannot listen for plans; the safety tick covers it"
                            );
                            tokio::select! {
                                _ = shutdown.cancelled() => return,
                                _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                            }
                        }
                    },
                };
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    got = listener.recv() => match got {
                        Ok(_) => wake.notify_one(),
                        // The listener reconnects on the next recv; what was
                        // announced meanwhile is lost, so look anyway.
                        Err(_) => {
                            wake.notify_one();
                            listening = None;
                            tokio::select! {
                                _ = shutdown.cancelled() => return,
                                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            }
                        }
                    },
                }
            }
        }))
    }
}

async fn connect(url: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(PLANS_CHANNEL).await?;
    Ok(listener)
}
