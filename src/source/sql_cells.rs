//! Reads one SQL value into a [`Cell`], by the column's type name first:
//! a generic "try every Rust type" chain misreads what only one backend
//! has (MySQL's `UNSIGNED` integers decode as `bool`, PostgreSQL's
//! `NUMERIC` decodes as nothing), and ids must come out exactly as the
//! helpdesk stores them.

use bigdecimal::BigDecimal;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use sqlx::{Column, ColumnIndex, Database, Decode, Row, Type, TypeInfo, ValueRef};

use super::columns::Cell;
use super::sql::{CellRow, ColumnName};

/// A type this backend can decode.
pub trait Readable<DB: Database>: for<'r> Decode<'r, DB> + Type<DB> {}
impl<DB: Database, T: for<'r> Decode<'r, DB> + Type<DB>> Readable<DB> for T {}

/// What a backend reads differently from the others, asked before the
/// generic chain. `None` means "the generic chain knows this type".
pub trait Backend: Database {
    fn special(row: &Self::Row, i: usize, type_name: &str) -> Option<Cell>;
}

impl Backend for sqlx::Sqlite {
    fn special(_: &Self::Row, _: usize, _: &str) -> Option<Cell> {
        None
    }
}

impl Backend for sqlx::Postgres {
    fn special(row: &Self::Row, i: usize, type_name: &str) -> Option<Cell> {
        match type_name {
            "NUMERIC" => Some(exact(row.try_get::<BigDecimal, _>(i), type_name)),
            "OID" => Some(
                row.try_get::<sqlx::postgres::types::Oid, _>(i)
                    .map_or_else(|_| unreadable(type_name), |oid| Cell::Int(oid.0.into())),
            ),
            // A database in SQL_ASCII can hold any bytes in text columns.
            "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CITEXT" => Some(
                row.try_get::<String, _>(i)
                    .map_or_else(|_| Cell::Invalid(NOT_UTF8.into()), Cell::Text),
            ),
            _ => None,
        }
    }
}

impl Backend for sqlx::MySql {
    fn special(row: &Self::Row, i: usize, type_name: &str) -> Option<Cell> {
        // TIMESTAMP columns are absolute instants (sent in UTC), unlike
        // DATETIME, which is wall-clock time in the source zone.
        if type_name == "TIMESTAMP" {
            return row.try_get::<DateTime<Utc>, _>(i).ok().map(Cell::Timestamp);
        }
        if type_name.ends_with("UNSIGNED") && !type_name.starts_with("DECIMAL") {
            return Some(row.try_get::<u64, _>(i).map_or_else(
                |_| unreadable(type_name),
                |v| i64::try_from(v).map_or_else(|_| Cell::Number(v.to_string()), Cell::Int),
            ));
        }
        if type_name.starts_with("DECIMAL") {
            return Some(exact(row.try_get::<BigDecimal, _>(i), type_name));
        }
        None
    }
}

const NOT_UTF8: &str = "not valid UTF-8 text; convert it in the query";

fn unreadable(type_name: &str) -> Cell {
    Cell::Invalid(format!("a {type_name} value that could not be read"))
}

/// An exact decimal as its digits: an integer that fits `i64` stays an
/// integer, anything else keeps every digit as text, never a float.
fn exact<E>(value: Result<BigDecimal, E>, type_name: &str) -> Cell {
    match value {
        Ok(decimal) => {
            let digits = decimal.to_plain_string();
            digits
                .parse::<i64>()
                .map_or(Cell::Number(digits), Cell::Int)
        }
        Err(_) => unreadable(type_name),
    }
}

/// The lower-cased column names of the rows read so far: every row of a
/// statement has the same columns, so each name is copied and lower-cased
/// once per query, not once per cell (a million-row poll spent a tenth of
/// its time allocating and lower-casing names).
#[derive(Default)]
pub struct ColumnNames(Vec<(Box<str>, ColumnName)>);

impl ColumnNames {
    fn of<C: Column>(&mut self, columns: &[C]) -> &[(Box<str>, ColumnName)] {
        let same = self.0.len() == columns.len()
            && self
                .0
                .iter()
                .zip(columns)
                .all(|((raw, _), c)| &**raw == c.name());
        if !same {
            self.0 = columns
                .iter()
                .map(|c| (c.name().into(), c.name().to_lowercase().into()))
                .collect();
        }
        &self.0
    }
}

/// Every column of the row as a named cell. (One generic function: the
/// list of decodable types is written once.)
pub fn read_row<DB>(row: &DB::Row, names: &mut ColumnNames) -> CellRow
where
    DB: Backend,
    usize: ColumnIndex<DB::Row>,
    String: Readable<DB>,
    i64: Readable<DB>,
    i32: Readable<DB>,
    i16: Readable<DB>,
    f64: Readable<DB>,
    f32: Readable<DB>,
    bool: Readable<DB>,
    DateTime<Utc>: Readable<DB>,
    NaiveDateTime: Readable<DB>,
    NaiveDate: Readable<DB>,
    Vec<u8>: Readable<DB>,
{
    let read_cell = |i: usize| -> Cell {
        let Ok(raw) = row.try_get_raw(i) else {
            return Cell::Null;
        };
        if raw.is_null() {
            return Cell::Null;
        }
        let info = raw.type_info();
        let info: &DB::TypeInfo = &info;
        let name = info.name();
        // Type names come upper-case from every driver we know; no copy then.
        let type_name: std::borrow::Cow<'_, str> = if name.bytes().any(|b| b.is_ascii_lowercase()) {
            name.to_ascii_uppercase().into()
        } else {
            name.into()
        };
        if let Some(cell) = DB::special(row, i, &type_name) {
            return cell;
        }
        // The first type of the chain that decodes the value. Asking
        // `compatible` first is the check `try_get` makes itself, without
        // building an error for every type that does not fit (a non-text
        // column went through several such errors per value).
        macro_rules! attempt {
            ($t:ty) => {
                (info.is_null() || <$t as Type<DB>>::compatible(info))
                    .then(|| row.try_get::<$t, _>(i).ok())
                    .flatten()
            };
        }
        if let Some(v) = attempt!(String) {
            return Cell::Text(v);
        }
        if let Some(v) = attempt!(i64) {
            return Cell::Int(v);
        }
        if let Some(v) = attempt!(i32) {
            return Cell::Int(v.into());
        }
        if let Some(v) = attempt!(i16) {
            return Cell::Int(v.into());
        }
        if let Some(v) = attempt!(bool) {
            return Cell::Bool(v);
        }
        if let Some(v) = attempt!(f64) {
            return Cell::Float(v);
        }
        if let Some(v) = attempt!(f32) {
            return Cell::Float(v.into());
        }
        if let Some(v) = attempt!(NaiveDateTime) {
            return Cell::Naive(v);
        }
        if let Some(v) = attempt!(DateTime<Utc>) {
            return Cell::Timestamp(v);
        }
        if let Some(v) = attempt!(NaiveDate) {
            return Cell::Date(v);
        }
        // MySQL hands out some text (e.g. from CONCAT over binary collations)
        // as bytes; SQLite text may hold any bytes.
        if let Some(bytes) = attempt!(Vec<u8>) {
            return match String::from_utf8(bytes) {
                Ok(text) => Cell::Text(text),
                Err(e) => Cell::Invalid(format!(
                    "{NOT_UTF8} (bad byte at offset {})",
                    e.utf8_error().valid_up_to()
                )),
            };
        }
        Cell::Unsupported(type_name.into_owned())
    };
    names
        .of(row.columns())
        .iter()
        .enumerate()
        .map(|(i, (_, name))| (name.clone(), read_cell(i)))
        .collect()
}
