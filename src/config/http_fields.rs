//! How an `http` source reads its items: `source.fields` (a pointer,
//! several, or a table with `join`, `remove` and, for waiting_since,
//! `unless_at_or_after`), `source.waiting_when`, and the objects joined
//! into each item (`source.sideload` from the page, `source.lookup` from
//! a list fetched once per poll, `source.per_ticket` from a request per
//! waiting ticket). Validated here, applied in `source::items` and
//! `source::per_ticket`.

use std::collections::{BTreeMap, BTreeSet};

use super::raw::{
    Pointers, RawField, RawFieldTable, RawFirst, RawScalar, RawSource, RawWaitingWhen,
};
use super::settings::Problems;

/// How one column is read from an item.
#[derive(Debug, Clone)]
pub struct FieldMap {
    /// JSON pointers into the item (joined objects included). Several:
    /// the latest when all are timestamps, else the first non-blank value.
    pub pointers: Vec<String>,
    /// Every non-blank value, joined with this separator ("Anna" + "Kunde").
    pub join: Option<String>,
    /// The first match is removed from a text value ("2 normal" → "normal").
    pub remove: Option<regex::Regex>,
    /// waiting_since only: the customer is not waiting when the latest of
    /// these timestamps is at or after waiting_since (an agent answered).
    pub unless_at_or_after: Vec<String>,
}

impl FieldMap {
    pub fn pointers(pointers: Vec<String>) -> Self {
        Self {
            pointers,
            join: None,
            remove: None,
            unless_at_or_after: Vec::new(),
        }
    }

    /// Every pointer the field reads, for `extra_fields`.
    pub fn all_pointers(&self) -> impl Iterator<Item = &String> {
        self.pointers.iter().chain(&self.unless_at_or_after)
    }
}

/// `source.waiting_when`: a row waits when the value at `pointer` is one
/// of `values` (compared as lower-case text; numbers by their digits).
#[derive(Debug, Clone)]
pub struct WaitingWhen {
    pub pointer: String,
    pub values: BTreeSet<String>,
}

/// Objects joined into each item as member `name`: from a list (or an
/// object keyed by id) in the page, or, with `url`, from one fetched once
/// per poll.
#[derive(Debug, Clone)]
pub struct Sideload {
    /// The member added to each item, e.g. `requester`.
    pub name: String,
    /// Pointer to the list (or object keyed by id): in the page, or in the
    /// lookup's body.
    pub items: String,
    /// Pointer to the key inside a listed object, e.g. `/id`; an object
    /// keyed by id uses its keys.
    pub key: String,
    /// Pointer to the referencing value inside an item, e.g. `/requester_id`.
    pub reference: String,
    /// `source.lookup`: the URL, absolute or relative to `source.url`.
    pub url: Option<String>,
}

/// `source.per_ticket.NAME`: what one request per waiting ticket adds to
/// it as member `name` (Zammad's first customer article, for its
/// Message-ID). Only fields that do not decide whether or since when a
/// ticket waits may read it, since it is fetched for waiting tickets only.
#[derive(Debug, Clone)]
pub struct PerTicket {
    pub name: String,
    /// Absolute or relative to `source.url`; `{id}` is the ticket's id.
    pub url: String,
    /// Pointer to the answer's list ("" = the body).
    pub items: String,
    /// The first listed object that matches; without it the first one (or
    /// the body, when it is no list).
    pub first: Option<First>,
}

/// The first listed object whose value at `pointer` is one of `values`
/// (compared as `waiting_when` does) and, with `nonblank`, has a value
/// there that is not empty.
#[derive(Debug, Clone)]
pub struct First {
    pub pointer: String,
    pub values: BTreeSet<String>,
    pub nonblank: Option<String>,
}

const FIELD_FORMS: &str =
    "a JSON pointer, a list of them, or a table { pointer = …, join = \" \", remove = \"REGEX\" }";

/// `source.fields` as field maps; `waiting_since` may come from a clock.
pub(super) fn fields(p: &mut Problems, s: &RawSource) -> BTreeMap<String, FieldMap> {
    let mut out = BTreeMap::new();
    for (column, raw) in &s.fields {
        let column = column.to_lowercase();
        if let Some(field) = field_map(p, &format!("source.fields.{column}"), &column, raw) {
            out.insert(column, field);
        }
    }
    out
}

/// One field definition; `key` is its path for errors.
pub(super) fn field_map(
    p: &mut Problems,
    key: &str,
    column: &str,
    raw: &RawField,
) -> Option<FieldMap> {
    let field = match raw {
        RawField::One(one) => FieldMap::pointers(vec![one.clone()]),
        RawField::Many(many) => FieldMap::pointers(many.clone()),
        RawField::Table(table) => field_table(p, key, column, table)?,
        RawField::Invalid(_) => {
            p.add(key, format!("must be {FIELD_FORMS}"));
            return None;
        }
    };
    if field.pointers.is_empty() {
        p.add(key, "names no pointer");
        return None;
    }
    for pointer in field.all_pointers() {
        check_pointer(p, key, pointer);
    }
    Some(field)
}

/// The table form; `unless_at_or_after` only on waiting_since, which is
/// a timestamp and so takes neither `join` nor `remove`.
pub(super) fn field_table(
    p: &mut Problems,
    key: &str,
    column: &str,
    table: &RawFieldTable,
) -> Option<FieldMap> {
    let remove = match &table.remove {
        None => None,
        Some(pattern) => match regex::Regex::new(pattern) {
            Ok(re) => Some(re),
            Err(e) => {
                p.add(
                    format!("{key}.remove"),
                    format!("\"{pattern}\" is not a regular expression: {e}"),
                );
                None
            }
        },
    };
    let timestamp = column == "waiting_since";
    if timestamp && (table.join.is_some() || table.remove.is_some()) {
        p.add(
            key,
            "waiting_since is a timestamp: it takes no join or remove",
        );
    }
    if !timestamp && table.unless_at_or_after.is_some() {
        p.add(
            format!("{key}.unless_at_or_after"),
            "only waiting_since (or a clock) ends a wait with unless_at_or_after",
        );
    }
    Some(FieldMap {
        pointers: list(&table.pointer),
        join: table.join.clone(),
        remove,
        unless_at_or_after: table
            .unless_at_or_after
            .as_ref()
            .map(list)
            .unwrap_or_default(),
    })
}

fn list(pointers: &Pointers) -> Vec<String> {
    match pointers {
        Pointers::One(one) => vec![one.clone()],
        Pointers::Many(many) => many.clone(),
    }
}

fn check_pointer(p: &mut Problems, key: &str, pointer: &str) {
    if !pointer.is_empty() && !pointer.starts_with('/') {
        p.add(
            key,
            format!("\"{pointer}\" is not a JSON pointer (it starts with /)"),
        );
    }
}

/// `source.waiting_when`, which decides instead of `waiting_states`.
pub(super) fn waiting_when(p: &mut Problems, s: &RawSource) -> Option<WaitingWhen> {
    let RawWaitingWhen { pointer, values } = s.waiting_when.as_ref()?;
    if s.waiting_states.is_some() {
        p.add(
            "source.waiting_when",
            "waiting_states is set too: set one of them (a preset may set one; override that one)",
        );
    }
    check_pointer(p, "source.waiting_when.pointer", pointer);
    if values.is_empty() {
        p.add(
            "source.waiting_when.in",
            "is empty: no ticket would ever wait",
        );
    }
    Some(WaitingWhen {
        pointer: pointer.clone(),
        values: comparable(values),
    })
}

/// Values to compare with: lower-case text, numbers and booleans as text.
fn comparable(values: &[RawScalar]) -> BTreeSet<String> {
    values
        .iter()
        .map(|v| match v {
            RawScalar::Int(i) => i.to_string(),
            RawScalar::Bool(b) => b.to_string(),
            RawScalar::Text(t) => t.to_lowercase(),
        })
        .collect()
}

/// An error when `target` (a lookup's or per-ticket URL at `key`) is not
/// a URL or is on an origin that does not get the source's credentials.
fn check_same_origin(
    p: &mut Problems,
    key: &str,
    target: &str,
    source_url: Option<&reqwest::Url>,
    allowed_origins: &[String],
) {
    let Some(base) = source_url else { return };
    match base.join(target) {
        Err(e) => p.add(
            key,
            format!(
                "\"{}\" is not a URL: {e}",
                crate::secret::redact_url(target)
            ),
        ),
        Ok(url) => {
            let origin = url.origin().ascii_serialization();
            let home = base.origin().ascii_serialization();
            if origin != home && !allowed_origins.contains(&origin) {
                p.add(
                    key,
                    format!(
                        "{origin} is another origin than source.url's {home}; the source's credentials go only there (list it in source.allowed_origins if it belongs to the helpdesk)"
                    ),
                );
            }
        }
    }
}

/// `source.per_ticket`: each URL names `{id}` and stays with the
/// credentials' origins, each name is a member of its own.
pub(super) fn per_ticket(
    p: &mut Problems,
    s: &RawSource,
    source_url: Option<&reqwest::Url>,
    allowed_origins: &[String],
) -> Vec<PerTicket> {
    let mut out = Vec::new();
    for (name, raw) in &s.per_ticket {
        let key = format!("source.per_ticket.{name}");
        if s.sideload.contains_key(name) || s.lookup.contains_key(name) {
            p.add(
                &key,
                "a sideload or lookup joins into the same member: rename one",
            );
        }
        if !raw.url.contains("{id}") {
            p.add(
                format!("{key}.url"),
                "names no {id}: every ticket would get the same answer",
            );
        }
        check_same_origin(
            p,
            &format!("{key}.url"),
            &raw.url.replace("{id}", "1"),
            source_url,
            allowed_origins,
        );
        if let Some(items) = &raw.items {
            check_pointer(p, &format!("{key}.items"), items);
        }
        let first = raw.first.as_ref().map(
            |RawFirst {
                 pointer,
                 values,
                 nonblank,
             }| {
                check_pointer(p, &format!("{key}.first.pointer"), pointer);
                if let Some(nonblank) = nonblank {
                    check_pointer(p, &format!("{key}.first.nonblank"), nonblank);
                }
                if values.is_empty() {
                    p.add(format!("{key}.first.in"), "is empty: nothing would match");
                }
                First {
                    pointer: pointer.clone(),
                    values: comparable(values),
                    nonblank: nonblank.clone(),
                }
            },
        );
        out.push(PerTicket {
            name: name.clone(),
            url: raw.url.clone(),
            items: raw.items.clone().unwrap_or_default(),
            first,
        });
    }
    out
}

/// The member a pointer reads, `/first_article/message_id` → `first_article`.
pub fn member(pointer: &str) -> &str {
    pointer
        .strip_prefix('/')
        .unwrap_or(pointer)
        .split('/')
        .next()
        .unwrap_or("")
}

/// Fields that read a per-ticket member read nothing else (they are read
/// again once it is fetched), and the columns that decide whether a
/// ticket waits, and which ticket it is, read none.
pub(super) fn check_per_ticket_reads(
    p: &mut Problems,
    fields: &BTreeMap<String, FieldMap>,
    waiting_when: Option<&WaitingWhen>,
    waiting_states: bool,
    per_ticket: &[PerTicket],
) {
    let fetched = |pointer: &str| per_ticket.iter().find(|d| d.name == member(pointer));
    for (column, field) in fields {
        let key = format!("source.fields.{column}");
        let reads: Vec<&String> = field
            .all_pointers()
            .filter(|pointer| fetched(pointer).is_some())
            .collect();
        let Some(first) = reads.first() else { continue };
        let name = member(first);
        let decides = matches!(column.as_str(), "id" | "updated_at" | "waiting_since")
            || (column == "state" && waiting_states);
        if decides {
            p.add(
                &key,
                format!(
                    "reads {first} of source.per_ticket.{name}, which is fetched only for a ticket that waits, once its {column} is known"
                ),
            );
        } else if field.all_pointers().any(|pointer| member(pointer) != name) {
            p.add(
                &key,
                format!(
                    "reads {first} of source.per_ticket.{name} and pointers outside it: a field reads one or the other"
                ),
            );
        }
    }
    if let Some(when) = waiting_when
        && let Some(load) = fetched(&when.pointer)
    {
        p.add(
            "source.waiting_when.pointer",
            format!(
                "reads source.per_ticket.{}, which is fetched only for a ticket that waits",
                load.name
            ),
        );
    }
}

/// `source.sideload` and `source.lookup`, one list; a name used by both is
/// an error (one member cannot hold two objects). A lookup's URL must
/// stay with the origins that get the source's credentials.
pub(super) fn joins(
    p: &mut Problems,
    s: &RawSource,
    source_url: Option<&reqwest::Url>,
    allowed_origins: &[String],
) -> Vec<Sideload> {
    let mut out = Vec::new();
    for (name, raw) in &s.sideload {
        let key = format!("source.sideload.{name}");
        for (what, pointer) in [
            ("items", Some(&raw.items)),
            ("key", raw.key.as_ref()),
            ("reference", Some(&raw.reference)),
        ] {
            if let Some(pointer) = pointer {
                check_pointer(p, &format!("{key}.{what}"), pointer);
            }
        }
        out.push(Sideload {
            name: name.clone(),
            items: raw.items.clone(),
            key: raw.key.clone().unwrap_or_else(|| "/id".into()),
            reference: raw.reference.clone(),
            url: None,
        });
    }
    for (name, raw) in &s.lookup {
        let key = format!("source.lookup.{name}");
        if s.sideload.contains_key(name) {
            p.add(
                &key,
                format!("source.sideload.{name} joins into the same member: rename one"),
            );
        }
        for (what, pointer) in [
            ("items", raw.items.as_ref()),
            ("key", raw.key.as_ref()),
            ("reference", Some(&raw.reference)),
        ] {
            if let Some(pointer) = pointer {
                check_pointer(p, &format!("{key}.{what}"), pointer);
            }
        }
        check_same_origin(
            p,
            &format!("{key}.url"),
            &raw.url,
            source_url,
            allowed_origins,
        );
        out.push(Sideload {
            name: name.clone(),
            items: raw.items.clone().unwrap_or_default(),
            key: raw.key.clone().unwrap_or_else(|| "/id".into()),
            reference: raw.reference.clone(),
            url: Some(raw.url.clone()),
        });
    }
    out
}
