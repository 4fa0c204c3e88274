//! The ledger's statements on PostgreSQL, each checked against the
//! migrated schema at compile time (`sqlx::query!`, with the offline data
//! in `.sqlx/`; `tools/sqlx-prepare` writes it). One function per
//! statement, on any executor (the pool, or the connection of a
//! transaction that the store above holds); what the rows mean is the
//! store's business.
//!
//! Instants are `timestamptz` and flags `boolean` (the store above speaks
//! Unix milliseconds and 0/1, converted here), sets of ticket ids are
//! bound as one array (`= ANY($1)`), leases are measured on the
//! database's clock, and claims skip rows that another instance has
//! locked.

mod admin;
mod convert;
mod delivery;
mod locks;
mod pages;
mod plan;
mod promises;
mod waits;

pub use admin::*;
pub use delivery::*;
pub use locks::*;
pub use pages::*;
pub use plan::*;
pub use promises::*;
pub use waits::*;

/// The migrations of a PostgreSQL ledger.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How many rows a statement changed.
fn changed(done: sqlx::postgres::PgQueryResult) -> u64 {
    done.rows_affected()
}
