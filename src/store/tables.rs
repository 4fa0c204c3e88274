//! The ledger's tables and every one of their columns, as `interim store
//! copy` moves them between SQLite and PostgreSQL. Kept in one list so that
//! a test can hold it against the migrated schemas.

/// How a column's values are read and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// INTEGER (SQLite), BIGINT (PostgreSQL): counts, hashes, tokens.
    Int,
    /// An instant: INTEGER Unix milliseconds (SQLite, [`super::ms`]),
    /// `timestamptz` (PostgreSQL); copied exactly, to the millisecond.
    Instant,
    /// A flag: INTEGER 0 or 1 (SQLite), `boolean` (PostgreSQL).
    Flag,
    /// TEXT on both.
    Text,
}

impl Kind {
    /// The type the migrations give a column of this kind, as SQLite's
    /// `pragma_table_info` and PostgreSQL's `information_schema` name it.
    pub fn declared(self, backend: super::Backend) -> &'static str {
        use super::Backend::{Postgres, Sqlite};
        match (self, backend) {
            (Kind::Int | Kind::Instant | Kind::Flag, Sqlite) => "INTEGER",
            (Kind::Text, _) => "TEXT",
            (Kind::Int, Postgres) => "bigint",
            (Kind::Instant, Postgres) => "timestamp with time zone",
            (Kind::Flag, Postgres) => "boolean",
        }
    }
}

/// What the copy writes for a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnCopy {
    /// The value as it is.
    Exact,
    /// NULL: part of a claim, which belongs to an instance of the old store.
    Released,
}

#[derive(Debug)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    pub on_copy: OnCopy,
}

/// A table of the ledger and every one of its columns.
#[derive(Debug)]
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [Column],
}

const fn int(name: &'static str) -> Column {
    Column {
        name,
        kind: Kind::Int,
        on_copy: OnCopy::Exact,
    }
}

const fn instant(name: &'static str) -> Column {
    Column {
        name,
        kind: Kind::Instant,
        on_copy: OnCopy::Exact,
    }
}

const fn flag(name: &'static str) -> Column {
    Column {
        name,
        kind: Kind::Flag,
        on_copy: OnCopy::Exact,
    }
}

const fn text(name: &'static str) -> Column {
    Column {
        name,
        kind: Kind::Text,
        on_copy: OnCopy::Exact,
    }
}

const fn released(column: Column) -> Column {
    Column {
        on_copy: OnCopy::Released,
        ..column
    }
}

/// Tables the migrations create whose rows a copy leaves behind: the
/// target's own triggers fill them as the copied rows arrive.
pub const DERIVED_TABLES: &[&str] = &["plan_dirty"];

/// Every table the migrations create (but [`DERIVED_TABLES`]), with every column, in both stores
/// alike (tests/store_copy.rs compares this with freshly migrated SQLite
/// and PostgreSQL databases, so a table or column added to the migrations
/// but not here fails it).
pub const LEDGER_TABLES: &[Table] = &[
    Table {
        name: "notices",
        columns: &[
            text("id"),
            text("ticket_id"),
            text("policy"),
            instant("episode"),
            flag("dry_run"),
            int("number"),
            int("max_notices"),
            text("status"),
            text("channel"),
            text("recipient"),
            instant("due_at"),
            instant("send_at"),
            instant("next_attempt_at"),
            int("attempts"),
            instant("first_attempt_at"),
            instant("last_attempt_at"),
            instant("sent_at"),
            instant("finished_at"),
            instant("next_notice_at"),
            text("last_error"),
            text("cancel_reason"),
            // A claimed notice stays `pending`; clearing who holds it and
            // until when makes it claimable at once in the new store.
            released(text("claimed_by")),
            released(instant("claim_until")),
            text("ticket"),
            instant("created_at"),
            instant("updated_at"),
            int("ticket_hash"),
            // The fencing counter only grows; copied as it is so that it
            // keeps doing so.
            int("claim_token"),
            text("promise_outcome"),
            text("promise_reason"),
            instant("promise_decided_at"),
            text("hold_reason"),
        ],
    },
    Table {
        name: "series",
        columns: &[
            text("ticket_id"),
            text("policy"),
            instant("episode"),
            flag("dry_run"),
            int("done"),
            instant("last_sent_at"),
            text("next_id"),
            flag("active"),
        ],
    },
    Table {
        name: "waits",
        columns: &[
            text("ticket_id"),
            instant("episode"),
            flag("dry_run"),
            text("ticket_number"),
            text("queue"),
            text("priority"),
            text("origin"),
            text("language"),
            text("policies"),
            instant("first_due_at"),
            instant("ended_at"),
            text("end_reason"),
            instant("updated_at"),
        ],
    },
    Table {
        name: "meta",
        columns: &[text("key"), text("value")],
    },
    Table {
        name: "suppressions",
        columns: &[
            text("address"),
            text("reason"),
            text("source"),
            instant("created_at"),
        ],
    },
];
