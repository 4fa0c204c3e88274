//! The ledger's statements on SQLite, each checked against the migrated
//! schema at compile time (`sqlx::query!`, with the offline data in
//! `.sqlx/`; `tools/sqlx-prepare` writes it). One function per statement,
//! on any executor (the pool, or the connection of a transaction that
//! the store above holds); what the rows mean is the store's business.
//!
//! Sets of ticket ids are bound as one JSON array and read with
//! `json_each`, so a statement's text never depends on how many there are.

mod admin;
mod delivery;
mod pages;
mod plan;
mod promises;
mod waits;

pub use admin::*;
pub use delivery::*;
pub use pages::*;
pub use plan::*;
pub use promises::*;
pub use waits::*;

/// The migrations of a SQLite ledger.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A set of ids as the JSON array `json_each` reads.
fn id_set(ids: &[&str]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".to_owned())
}

/// How many rows a statement changed.
fn changed(done: sqlx::sqlite::SqliteQueryResult) -> u64 {
    done.rows_affected()
}
