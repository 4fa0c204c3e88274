//! Advisory locks, held by a session: they end when it does.

use sqlx::PgExecutor;

/// The poller role ("interim" in ASCII).
pub const POLLER_LOCK_KEY: i64 = 0x0069_6e74_6572_696d;

/// Held shared by every running daemon on its poller session, exclusively
/// by `store copy`: a copy cannot start while any daemon runs ("Rinterim").
pub const RUNNING_LOCK_KEY: i64 = 0x0069_6e74_6572_696d + 0x5200_0000_0000_0000;

/// Takes the lock `key` for the session unless another session holds it.
pub async fn try_lock(ex: impl PgExecutor<'_>, key: i64) -> sqlx::Result<bool> {
    sqlx::query_scalar!(r#"SELECT pg_try_advisory_lock($1) AS "got!""#, key)
        .fetch_one(ex)
        .await
}

/// Takes the lock `key` shared unless a session holds it exclusively.
pub async fn try_lock_shared(ex: impl PgExecutor<'_>, key: i64) -> sqlx::Result<bool> {
    sqlx::query_scalar!(r#"SELECT pg_try_advisory_lock_shared($1) AS "got!""#, key)
        .fetch_one(ex)
        .await
}
