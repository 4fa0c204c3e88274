//! One item of an `http` source as contract cells: the joined objects
//! (side-loaded or looked up) put in as members, each field read with its
//! pointers and transform, and the wait ended where the source says the
//! ticket does not wait (`unless_at_or_after`, `waiting_states`,
//! `waiting_when`). A field the item lacks entirely is a mapping that
//! broke, never "not waiting": read that way it would cancel every notice.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use super::columns::{Cell, parse_timestamp_text};
use super::sql::CellRow;
use crate::config::{FieldMap, HttpSourceSettings, Sideload};

/// Objects by key: a list's members by the value at `key`, or an object
/// keyed by id (Zammad's `assets.User`) as it is. None for anything else.
pub(super) fn index(value: &Value, key: &str) -> Option<HashMap<String, Value>> {
    match value {
        Value::Array(list) => Some(
            list.iter()
                .filter_map(|obj| Some((scalar_text(obj.pointer(key)?)?, obj.clone())))
                .collect(),
        ),
        Value::Object(map) => Some(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        _ => None,
    }
}

/// A joined object source and its objects by key.
pub(super) type Join<'a> = (&'a Sideload, &'a HashMap<String, Value>);

/// Reads items as `settings` says, naive timestamps in `zone`.
pub(super) struct Mapper<'a> {
    pub settings: &'a HttpSourceSettings,
    pub zone: Tz,
}

impl Mapper<'_> {
    /// One item as contract columns.
    pub fn cells(&self, mut item: Value, joins: &[Join<'_>]) -> CellRow {
        for (load, index) in joins {
            let joined = item
                .pointer(&load.reference)
                .and_then(scalar_text)
                .and_then(|key| index.get(&key).cloned());
            if let (Some(obj), Some(joined)) = (item.as_object_mut(), joined) {
                obj.insert(load.name.clone(), joined);
            }
        }
        let mut cells: CellRow = self
            .settings
            .fields
            .iter()
            .map(|(column, field)| (column.as_str().into(), self.field(&item, column, field)))
            .collect();
        if let Some(ended) = self.not_waiting(&item, &cells) {
            for (column, cell) in cells.iter_mut() {
                if &**column == "waiting_since" {
                    *cell = ended.clone();
                }
            }
        }
        if self.settings.extra_fields
            && let Some(obj) = item.as_object()
        {
            let mapped: Vec<&str> = self
                .settings
                .fields
                .values()
                .flat_map(FieldMap::all_pointers)
                .filter_map(|p| p.strip_prefix('/'))
                .map(|p| p.split('/').next().unwrap_or(""))
                .collect();
            for (key, value) in obj {
                if !mapped.contains(&key.as_str())
                    && !cells.iter().any(|(c, _)| **c == **key)
                    && !value.is_object()
                    && !value.is_array()
                {
                    cells.push((key.as_str().into(), cell_of(value)));
                }
            }
        }
        cells
    }

    pub fn field(&self, item: &Value, column: &str, field: &FieldMap) -> Cell {
        let timestamp = column == "waiting_since" || column == "updated_at";
        if column == "waiting_since" && field.pointers.iter().all(|p| item.pointer(p).is_none()) {
            return Cell::Invalid(format!(
                "the item has no field {}; check source.fields.waiting_since (or the clock)",
                field.pointers.join(" or ")
            ));
        }
        let cell = match &field.join {
            Some(separator) => joined(item, &field.pointers, separator),
            None => self.resolve(item, &field.pointers, timestamp),
        };
        let cell = match (cell, &field.remove) {
            (Cell::Text(text), Some(re)) => Cell::Text(re.replacen(&text, 1, "").into_owned()),
            (cell, _) => cell,
        };
        if field.unless_at_or_after.is_empty() {
            return cell;
        }
        self.unless_answered(item, cell, &field.unless_at_or_after)
    }

    /// `unless_at_or_after`: no wait (NULL) when the latest of `answers`
    /// is at or after the wait's start; an answer that is not a timestamp
    /// breaks the row rather than guessing.
    fn unless_answered(&self, item: &Value, since: Cell, answers: &[String]) -> Cell {
        let start = match &since {
            Cell::Timestamp(t) => Some(*t),
            Cell::Text(text) => parse_timestamp_text(text, self.zone).ok(),
            Cell::Int(secs) => DateTime::from_timestamp(*secs, 0),
            _ => None,
        };
        let Some(start) = start else {
            return since;
        };
        let mut latest: Option<DateTime<Utc>> = None;
        for pointer in answers {
            let Some(value) = item.pointer(pointer).filter(|v| !v.is_null()) else {
                continue;
            };
            match self.instant(value, true) {
                Some(t) => latest = latest.max(Some(t)),
                None => {
                    return Cell::Invalid(format!(
                        "{pointer} (unless_at_or_after) is not a timestamp: {}",
                        crate::logging::clip(&value.to_string(), 60)
                    ));
                }
            }
        }
        match latest {
            Some(answered) if answered >= start => Cell::Null,
            _ => Cell::Timestamp(start),
        }
    }

    /// Why the row does not wait, as the cell waiting_since becomes: NULL
    /// for a state outside `waiting_states` / `waiting_when`, invalid when
    /// the `waiting_when` pointer is not in the item at all.
    fn not_waiting(&self, item: &Value, cells: &CellRow) -> Option<Cell> {
        if let Some(states) = &self.settings.waiting_states {
            let state = cells.iter().find(|(c, _)| &**c == "state").map(|(_, v)| v);
            let waiting = state
                .and_then(comparable)
                .is_some_and(|t| states.contains(&t));
            if !waiting {
                return Some(Cell::Null);
            }
        }
        if let Some(when) = &self.settings.waiting_when {
            let Some(value) = item.pointer(&when.pointer) else {
                return Some(Cell::Invalid(format!(
                    "the item has no field {}; check source.waiting_when.pointer",
                    when.pointer
                )));
            };
            let waiting = comparable(&cell_of(value)).is_some_and(|t| when.values.contains(&t));
            if !waiting {
                return Some(Cell::Null);
            }
        }
        None
    }

    /// The value at the first pointer; with several, the latest when every
    /// value is a timestamp (last agent or last customer contact), else
    /// the first that is not blank (an email, else the login).
    fn resolve(&self, item: &Value, pointers: &[String], timestamp_column: bool) -> Cell {
        let values: Vec<&Value> = pointers
            .iter()
            .filter_map(|p| item.pointer(p))
            .filter(|v| !v.is_null())
            .collect();
        if values.len() > 1 {
            let instants: Option<Vec<DateTime<Utc>>> = values
                .iter()
                .map(|v| self.instant(v, timestamp_column))
                .collect();
            if let Some(latest) = instants.and_then(|all| all.into_iter().max()) {
                return Cell::Timestamp(latest);
            }
        }
        let first = values.iter().find(|v| !is_blank(v)).or(values.first());
        first.map_or(Cell::Null, |v| cell_of(v))
    }

    /// A JSON value as an instant: date-time text; Unix seconds (numbers
    /// or digits) only where the column is a timestamp, so that ids and
    /// logins are never mistaken for one.
    fn instant(&self, value: &Value, numbers: bool) -> Option<DateTime<Utc>> {
        match value {
            Value::String(s) if !numbers && s.trim().bytes().all(|b| b.is_ascii_digit()) => None,
            Value::String(s) => parse_timestamp_text(s, self.zone).ok(),
            Value::Number(n) if numbers => n.as_i64().and_then(|s| DateTime::from_timestamp(s, 0)),
            _ => None,
        }
    }
}

/// `join`: the non-blank values of the pointers, in order, as text.
fn joined(item: &Value, pointers: &[String], separator: &str) -> Cell {
    let parts: Vec<String> = pointers
        .iter()
        .filter_map(|p| item.pointer(p))
        .filter_map(|v| match v {
            Value::String(s) => Some(s.trim().to_owned()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        })
        .filter(|s| !s.is_empty())
        .collect();
    if parts.is_empty() {
        Cell::Null
    } else {
        Cell::Text(parts.join(separator))
    }
}

fn is_blank(value: &Value) -> bool {
    value.as_str().is_some_and(|s| s.trim().is_empty())
}

/// A state (or any value) as `waiting_states` and `waiting_when` compare
/// it: lower-case text; numbers count too (Freshdesk's `"status": 2`).
pub(super) fn comparable(cell: &Cell) -> Option<String> {
    match cell {
        Cell::Text(s) => Some(s.to_lowercase()),
        Cell::Int(i) => Some(i.to_string()),
        Cell::Float(f) => Some(f.to_string()),
        Cell::Number(digits) => Some(digits.clone()),
        Cell::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub(super) fn cell_of(value: &Value) -> Cell {
    match value {
        Value::Null => Cell::Null,
        Value::Bool(b) => Cell::Bool(*b),
        // u64 ids above i64 keep their digits; only real fractions (and
        // integers beyond u64, which serde_json has already rounded) are
        // floats, and the contract refuses a float id it cannot keep.
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Cell::Int(i),
            (None, Some(u), _) => Cell::Number(u.to_string()),
            (None, None, Some(f)) => Cell::Float(f),
            (None, None, None) => Cell::Null,
        },
        Value::String(s) => Cell::Text(s.clone()),
        other => Cell::Text(other.to_string()),
    }
}

pub(super) fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use serde_json::json;

    use super::*;
    use crate::config::{HttpAuth, Pagination, WaitingWhen};

    fn settings(fields: &[(&str, FieldMap)]) -> HttpSourceSettings {
        HttpSourceSettings {
            auth: HttpAuth::None,
            items: String::new(),
            items_by_id: None,
            fields: fields
                .iter()
                .map(|(c, f)| ((*c).to_owned(), f.clone()))
                .collect::<BTreeMap<_, _>>(),
            extra_fields: false,
            pagination: Pagination::None,
            max_pages: 1,
            max_rows: 10,
            max_page_bytes: 1 << 20,
            allowed_origins: Vec::new(),
            since_param: None,
            params: Vec::new(),
            since_unix: false,
            waiting_states: None,
            waiting_when: None,
            sideload: Vec::new(),
            per_ticket: Vec::new(),
        }
    }

    fn ptrs(list: &[&str]) -> FieldMap {
        FieldMap::pointers(list.iter().map(|p| (*p).to_owned()).collect())
    }

    fn cell(cells: &CellRow, column: &str) -> Cell {
        let found = cells.iter().find(|(c, _)| &**c == column);
        found.map_or(Cell::Unsupported("absent".into()), |(_, v)| v.clone())
    }

    fn at(text: &str) -> Cell {
        parse_timestamp_text(text, chrono_tz::UTC).map_or(Cell::Null, Cell::Timestamp)
    }

    #[test]
    fn several_pointers_give_the_latest_timestamp_or_the_first_non_blank_value() {
        let s = settings(&[
            ("waiting_since", ptrs(&["/a", "/b"])),
            ("customer_email", ptrs(&["/email", "/login"])),
            ("number", ptrs(&["/number", "/id"])),
        ]);
        let mapper = Mapper {
            settings: &s,
            zone: chrono_tz::UTC,
        };
        let item = json!({"a": "2026-01-01T10:00:00Z", "b": "2026-01-02T10:00:00Z",
                          "email": " ", "login": "12345", "number": "", "id": 7});
        let cells = mapper.cells(item, &[]);
        assert_eq!(cell(&cells, "waiting_since"), at("2026-01-02T10:00:00Z"));
        // Digits and numbers are no timestamps outside timestamp columns.
        assert_eq!(cell(&cells, "customer_email"), Cell::Text("12345".into()));
        assert_eq!(cell(&cells, "number"), Cell::Int(7));
    }

    #[test]
    fn join_and_remove_transform_the_value() {
        let name = FieldMap {
            join: Some(" ".into()),
            ..ptrs(&["/first", "/last"])
        };
        let priority = FieldMap {
            remove: regex::Regex::new("^[0-9]+ +").ok(),
            ..ptrs(&["/priority"])
        };
        let s = settings(&[("customer_name", name), ("priority", priority)]);
        let mapper = Mapper {
            settings: &s,
            zone: chrono_tz::UTC,
        };
        let cells = mapper.cells(
            json!({"first": "Anna", "last": " Kunde ", "priority": "2 normal"}),
            &[],
        );
        assert_eq!(
            cell(&cells, "customer_name"),
            Cell::Text("Anna Kunde".into())
        );
        assert_eq!(cell(&cells, "priority"), Cell::Text("normal".into()));
        let cells = mapper.cells(
            json!({"first": "", "last": null, "priority": "urgent"}),
            &[],
        );
        assert_eq!(cell(&cells, "customer_name"), Cell::Null);
        assert_eq!(cell(&cells, "priority"), Cell::Text("urgent".into()));
    }

    #[test]
    fn unless_at_or_after_ends_the_wait_when_the_answer_is_not_older() {
        let clock = FieldMap {
            unless_at_or_after: vec!["/agent".into()],
            ..ptrs(&["/customer"])
        };
        let s = settings(&[("waiting_since", clock)]);
        let mapper = Mapper {
            settings: &s,
            zone: chrono_tz::UTC,
        };
        let since = |item| cell(&mapper.cells(item, &[]), "waiting_since");
        let (t1, t2) = ("2026-01-01T10:00:00.000Z", "2026-01-01T11:00:00.000Z");
        assert_eq!(since(json!({"customer": t2, "agent": t1})), at(t2));
        assert_eq!(since(json!({"customer": t2, "agent": null})), at(t2));
        assert_eq!(since(json!({"customer": t1, "agent": t2})), Cell::Null);
        assert_eq!(since(json!({"customer": t1, "agent": t1})), Cell::Null);
        assert_eq!(since(json!({"customer": null, "agent": t1})), Cell::Null);
        assert!(matches!(
            since(json!({"customer": t2, "agent": "soon"})),
            Cell::Invalid(_)
        ));
        assert!(matches!(since(json!({"agent": t1})), Cell::Invalid(_)));
    }

    #[test]
    fn waiting_when_decides_by_a_joined_value_and_a_missing_one_breaks_the_row() {
        let mut s = settings(&[
            ("waiting_since", ptrs(&["/since"])),
            ("state", ptrs(&["/state"])),
        ]);
        s.waiting_when = Some(WaitingWhen {
            pointer: "/ticket_state/state_type_id".into(),
            values: BTreeSet::from(["1".to_owned(), "2".to_owned()]),
        });
        let load = Sideload {
            name: "ticket_state".into(),
            items: String::new(),
            key: "/id".into(),
            reference: "/state_id".into(),
            url: Some("/api/v1/ticket_states".into()),
        };
        let states = index(
            &json!([{"id": 2, "state_type_id": 2}, {"id": 8, "state_type_id": 2}, {"id": 7, "state_type_id": 4}]),
            "/id",
        )
        .unwrap_or_default();
        let mapper = Mapper {
            settings: &s,
            zone: chrono_tz::UTC,
        };
        let since = |state_id: i64| {
            let item = json!({"since": "2026-01-01T10:00:00Z", "state": "x", "state_id": state_id});
            cell(&mapper.cells(item, &[(&load, &states)]), "waiting_since")
        };
        assert_eq!(since(8), Cell::Text("2026-01-01T10:00:00Z".into()));
        assert_eq!(since(7), Cell::Null);
        assert!(matches!(since(99), Cell::Invalid(_)));
    }

    #[test]
    fn an_object_keyed_by_id_is_an_index_as_it_is() {
        let users = index(
            &json!({"5": {"email": "a@x"}, "6": {"email": "b@x"}}),
            "/ignored",
        );
        assert_eq!(
            users
                .as_ref()
                .and_then(|u| u.get("6"))
                .map(|u| u["email"].clone()),
            Some(json!("b@x"))
        );
        assert!(index(&json!("nope"), "/id").is_none());
    }
}
