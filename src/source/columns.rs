//! The ticket column contract: turns one source row (column name → value)
//! into a [`Ticket`], or says exactly which column of which ticket broke it.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use chrono::format::{Item, Parsed, StrftimeItems};
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::sql::{CellRow, ColumnName};
use crate::ticket::Ticket;

/// One cell, as read from any SQL backend or JSON API.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
    Timestamp(DateTime<Utc>),
    Naive(NaiveDateTime),
    Date(NaiveDate),
    /// An exact number outside `i64` (MySQL `BIGINT UNSIGNED`, PostgreSQL
    /// `NUMERIC`, a big JSON integer), as its decimal digits.
    Number(String),
    /// A type we cannot read; carries the SQL type name for the error.
    Unsupported(String),
    /// A value of a known type that cannot be read (invalid UTF-8); carries
    /// the reason.
    Invalid(String),
}

/// Floats hold every integer exactly only up to 2^53; a JSON id beyond
/// that may already have lost digits when it reaches us.
const EXACT_FLOAT_LIMIT: f64 = 9_007_199_254_740_992.0;

pub use crate::ticket::RowError;

const CONTRACT: &[&str] = &[
    "id",
    "number",
    "subject",
    "state",
    "priority",
    "queue",
    "origin",
    "customer_email",
    "customer_name",
    "language",
    "timezone",
    "waiting_since",
    "updated_at",
    "thread_message_id",
];

/// Applies the column contract. Column names are matched case-insensitively.
/// `warnings` receives non-fatal findings (an unknown time zone).
pub fn ticket_from_row(
    cells: CellRow,
    zone: Tz,
    warnings: &mut Vec<RowError>,
) -> Result<SourceRow, RowError> {
    let mut row: BTreeMap<ColumnName, Cell> = cells
        .into_iter()
        .map(|(name, cell)| {
            // SQL rows come lower-cased already (ColumnNames): no copy.
            let lower = name
                .chars()
                .all(|c| c.to_lowercase().eq(std::iter::once(c)));
            (
                if lower {
                    name
                } else {
                    name.to_lowercase().into()
                },
                cell,
            )
        })
        .collect();
    let id = match row.remove("id") {
        None => {
            return Err(error(
                None,
                "id",
                "missing: the query must select an id column",
            ));
        }
        Some(Cell::Unsupported(ty)) => {
            return Err(error(None, "id", unsupported(&ty)));
        }
        Some(Cell::Invalid(reason)) => return Err(error(None, "id", reason)),
        Some(Cell::Float(f)) if f.abs() >= EXACT_FLOAT_LIMIT || f.fract() != 0.0 => {
            return Err(error(
                None,
                "id",
                format!(
                    "{f} is a number that cannot be kept exactly; deliver ids as integers \
                     below 2^53 or as text"
                ),
            ));
        }
        Some(cell) => text_of(&cell).filter(|s| !s.trim().is_empty()),
    };
    let Some(id) = id else {
        return Err(error(None, "id", "empty or NULL"));
    };
    let fail = |column: &str, reason: String| error(Some(id.clone()), column, reason);

    let mut text = |name: &str| -> Result<Option<String>, RowError> {
        match row.remove(name) {
            None | Some(Cell::Null) => Ok(None),
            Some(Cell::Unsupported(ty)) => Err(fail(name, unsupported(&ty))),
            Some(Cell::Invalid(reason)) => Err(fail(name, reason)),
            Some(cell) => Ok(text_of(&cell)),
        }
    };
    let number = text("number")?;
    let subject = text("subject")?;
    let state = text("state")?.ok_or_else(|| fail("state", "missing or NULL".into()))?;
    let priority = text("priority")?;
    let queue = text("queue")?;
    let origin = text("origin")?;
    let customer_email = text("customer_email")?
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    let customer_name = text("customer_name")?;
    // Helpdesks store locales ("de-de", "en-US"); matchers, templates and
    // webhooks see the language code.
    let language = text("language")?.and_then(|l| crate::ticket::language_code(&l));
    let mut timezone = text("timezone")?.filter(|s| !s.trim().is_empty());
    let thread_message_id = text("thread_message_id")?;
    if let Some(zone_name) = &timezone
        && zone_name.trim().parse::<Tz>().is_err()
    {
        warnings.push(fail(
            "timezone",
            format!(
                "unknown time zone \"{}\"; dates are shown in the default zone",
                crate::logging::outside(zone_name)
            ),
        ));
        timezone = None;
    }

    let waiting_since = match row.remove("waiting_since") {
        None => {
            return Err(fail(
                "waiting_since",
                "missing: the query must select waiting_since".into(),
            ));
        }
        Some(cell) => timestamp_of(&cell, zone).map_err(|reason| fail("waiting_since", reason))?,
    };
    let updated_at = match row.remove("updated_at") {
        None => None,
        Some(cell) => timestamp_of(&cell, zone).map_err(|reason| fail("updated_at", reason))?,
    };
    // NULL means the customer is not waiting (answered, closed): how an
    // incremental query reports a wait that ended.
    let Some(waiting_since) = waiting_since else {
        return Ok(SourceRow::NotWaiting { id, updated_at });
    };

    let extra = row
        .into_iter()
        .filter(|(name, _)| !CONTRACT.contains(&&**name))
        .map(|(name, cell)| (name.to_string(), json_of(cell)))
        .collect();

    Ok(SourceRow::Waiting(Box::new(Ticket {
        id,
        number,
        subject,
        state,
        priority,
        queue,
        origin,
        customer_email,
        customer_name,
        language,
        timezone,
        waiting_since,
        updated_at,
        thread_message_id,
        extra,
    })))
}

/// One source row after the column contract.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceRow {
    Waiting(Box<Ticket>),
    /// `waiting_since` is NULL: this ticket's wait is over.
    NotWaiting {
        id: String,
        updated_at: Option<DateTime<Utc>>,
    },
}

impl SourceRow {
    pub fn id(&self) -> &str {
        match self {
            SourceRow::Waiting(t) => &t.id,
            SourceRow::NotWaiting { id, .. } => id,
        }
    }

    pub fn updated_at(&self) -> Option<DateTime<Utc>> {
        match self {
            SourceRow::Waiting(t) => t.updated_at,
            SourceRow::NotWaiting { updated_at, .. } => *updated_at,
        }
    }
}

fn error(ticket_id: Option<String>, column: &str, reason: impl Into<String>) -> RowError {
    RowError {
        ticket_id,
        column: column.to_owned(),
        reason: reason.into(),
    }
}

fn unsupported(type_name: &str) -> String {
    format!("unsupported SQL type {type_name}; cast it to text in the query")
}

fn text_of(cell: &Cell) -> Option<String> {
    match cell {
        Cell::Null | Cell::Unsupported(_) | Cell::Invalid(_) => None,
        Cell::Int(i) => Some(i.to_string()),
        Cell::Number(digits) => Some(digits.clone()),
        Cell::Float(f) => Some(f.to_string()),
        Cell::Bool(b) => Some(b.to_string()),
        Cell::Text(s) => Some(s.clone()),
        Cell::Timestamp(t) => Some(t.to_rfc3339()),
        Cell::Naive(t) => Some(t.to_string()),
        Cell::Date(d) => Some(d.to_string()),
    }
}

fn json_of(cell: Cell) -> serde_json::Value {
    match cell {
        Cell::Null | Cell::Unsupported(_) | Cell::Invalid(_) => serde_json::Value::Null,
        Cell::Int(i) => i.into(),
        // Integers that fit u64 stay numbers; anything else keeps its
        // digits as text rather than rounding through a float.
        Cell::Number(digits) => digits
            .parse::<u64>()
            .map_or_else(|_| digits.into(), serde_json::Value::from),
        Cell::Float(f) => f.into(),
        Cell::Bool(b) => b.into(),
        Cell::Text(s) => s.into(),
        Cell::Timestamp(t) => t.to_rfc3339().into(),
        Cell::Naive(t) => t.to_string().into(),
        Cell::Date(d) => d.to_string().into(),
    }
}

/// Reads the timestamp forms of the contract: SQL timestamp types, RFC 3339
/// text, `YYYY-MM-DD HH:MM:SS[.fff]` text (naive, in the source zone) and
/// integer Unix seconds.
pub fn timestamp_of(cell: &Cell, zone: Tz) -> Result<Option<DateTime<Utc>>, String> {
    let read = any_timestamp_of(cell, zone)?;
    match (read, cell) {
        (None, _) => Ok(None),
        (Some(t), Cell::Int(secs)) => crate::clock::plausible(t).map(Some).map_err(|reason| {
            // The classic mistake: epoch milliseconds where seconds belong.
            let as_millis = DateTime::from_timestamp_millis(*secs)
                .is_some_and(|t| crate::clock::plausible(t).is_ok());
            if as_millis {
                format!("{reason}: {secs} looks like milliseconds; the contract wants Unix seconds")
            } else {
                format!("{secs} seconds: {reason}")
            }
        }),
        (Some(t), _) => crate::clock::plausible(t).map(Some),
    }
}

fn any_timestamp_of(cell: &Cell, zone: Tz) -> Result<Option<DateTime<Utc>>, String> {
    match cell {
        Cell::Null => Ok(None),
        Cell::Timestamp(t) => Ok(Some(*t)),
        Cell::Naive(n) => Ok(Some(naive_in(*n, zone))),
        Cell::Date(d) => Ok(d.and_hms_opt(0, 0, 0).map(|n| naive_in(n, zone))),
        Cell::Int(secs) => Utc
            .timestamp_opt(*secs, 0)
            .single()
            .map(Some)
            .ok_or_else(|| format!("{secs} is not a Unix timestamp in seconds")),
        Cell::Float(secs) if secs.is_finite() => Utc
            .timestamp_millis_opt((secs * 1000.0) as i64)
            .single()
            .map(Some)
            .ok_or_else(|| format!("{secs} is not a Unix timestamp in seconds")),
        Cell::Text(text) => parse_timestamp_text(text, zone).map(Some),
        Cell::Number(digits) => Err(format!("{digits} is not a Unix timestamp in seconds")),
        Cell::Invalid(reason) => Err(reason.clone()),
        Cell::Unsupported(ty) => Err(unsupported(ty)),
        other => Err(format!("cannot read {other:?} as a timestamp")),
    }
}

/// The formats of a timestamp in text after RFC 3339, each parsed once:
/// `parse_from_str` parses its format string again for every value.
struct TextFormats {
    /// Wall-clock times, in the source zone.
    naive: Vec<Vec<Item<'static>>>,
    /// ISO 8601 offsets without a colon ("+0700", Jira) and with a space.
    offset: Vec<Vec<Item<'static>>>,
}

static TEXT_FORMATS: LazyLock<TextFormats> = LazyLock::new(|| {
    let items = |formats: &[&'static str]| {
        formats
            .iter()
            .map(|f| StrftimeItems::new(f).collect())
            .collect()
    };
    TextFormats {
        naive: items(&[
            "%Y-%m-%d %H:%M:%S%.f",
            "%Y-%m-%dT%H:%M:%S%.f",
            "%Y-%m-%d %H:%M",
        ]),
        offset: items(&["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%#z"]),
    }
});

fn parsed_as(text: &str, items: &[Item<'static>]) -> Option<Parsed> {
    let mut parsed = Parsed::new();
    chrono::format::parse(&mut parsed, text, items.iter()).ok()?;
    Some(parsed)
}

pub fn parse_timestamp_text(text: &str, zone: Tz) -> Result<DateTime<Utc>, String> {
    let t = text.trim();
    if let Ok(parsed) = DateTime::parse_from_rfc3339(t) {
        return Ok(parsed.with_timezone(&Utc));
    }
    let formats = &*TEXT_FORMATS;
    for items in &formats.naive {
        if let Some(naive) =
            parsed_as(t, items).and_then(|p| p.to_naive_datetime_with_offset(0).ok())
        {
            return Ok(naive_in(naive, zone));
        }
    }
    for items in &formats.offset {
        if let Some(parsed) = parsed_as(t, items).and_then(|p| p.to_datetime().ok()) {
            return Ok(parsed.with_timezone(&Utc));
        }
    }
    if let Ok(secs) = t.parse::<i64>() {
        return timestamp_of(&Cell::Int(secs), zone).map(|o| o.unwrap_or_default());
    }
    Err(format!(
        "\"{}\" is not a timestamp (RFC 3339, YYYY-MM-DD HH:MM:SS or Unix seconds)",
        truncate(t, 40)
    ))
}

fn naive_in(naive: NaiveDateTime, zone: Tz) -> DateTime<Utc> {
    crate::calendar::local_to_utc(zone, naive)
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[(&str, Cell)]) -> CellRow {
        cells
            .iter()
            .map(|(n, c)| ((*n).into(), c.clone()))
            .collect()
    }

    #[test]
    fn all_three_timestamp_forms_are_read() {
        let berlin = chrono_tz::Europe::Berlin;
        let expected = Utc.with_ymd_and_hms(2026, 12, 3, 13, 0, 0).single();
        assert_eq!(
            parse_timestamp_text("2026-12-03T14:00:00+01:00", berlin).ok(),
            expected
        );
        assert_eq!(
            parse_timestamp_text("2026-12-03 14:00:00", berlin).ok(),
            expected
        );
        assert_eq!(
            parse_timestamp_text("2026-12-03 14:00:00.000", berlin).ok(),
            expected
        );
        assert_eq!(
            timestamp_of(&Cell::Int(1_796_302_800), berlin)
                .ok()
                .flatten(),
            expected
        );
        assert_eq!(
            parse_timestamp_text("2026-12-03T20:00:00+0700", berlin).ok(),
            expected
        );
        assert!(parse_timestamp_text("yesterday", berlin).is_err());
    }

    #[test]
    fn extra_columns_land_in_extra_and_names_are_case_insensitive() {
        let mut warnings = Vec::new();
        let ticket = ticket_from_row(
            row(&[
                ("ID", Cell::Int(7)),
                ("State", Cell::Text("open".into())),
                ("WAITING_SINCE", Cell::Text("2026-01-01 00:00:00".into())),
                ("product", Cell::Text("router".into())),
                ("timezone", Cell::Text("Mars/Olympus".into())),
            ]),
            chrono_tz::UTC,
            &mut warnings,
        );
        let ticket = match ticket {
            Ok(SourceRow::Waiting(t)) => Some(*t),
            _ => None,
        };
        assert_eq!(ticket.as_ref().map(|t| t.id.as_str()), Some("7"));
        assert_eq!(
            ticket.as_ref().and_then(|t| t.extra.get("product")),
            Some(&serde_json::json!("router"))
        );
        assert_eq!(ticket.and_then(|t| t.timezone), None);
        assert_eq!(warnings.len(), 1);
    }

    #[test]
    fn a_null_waiting_since_means_the_wait_is_over() {
        let row = ticket_from_row(
            row(&[
                ("id", Cell::Int(9)),
                ("state", Cell::Text("closed".into())),
                ("waiting_since", Cell::Null),
                ("updated_at", Cell::Int(1_800_000_000)),
            ]),
            chrono_tz::UTC,
            &mut Vec::new(),
        );
        assert!(
            matches!(row, Ok(SourceRow::NotWaiting { ref id, updated_at: Some(_) }) if id == "9"),
            "{row:?}"
        );
    }

    #[test]
    fn a_broken_row_names_ticket_and_column() {
        let err = ticket_from_row(
            row(&[
                ("id", Cell::Text("T-1".into())),
                ("state", Cell::Text("open".into())),
                ("waiting_since", Cell::Text("soon".into())),
            ]),
            chrono_tz::UTC,
            &mut Vec::new(),
        )
        .err();
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            text.starts_with("ticket T-1: column waiting_since:"),
            "{text}"
        );
    }
}
