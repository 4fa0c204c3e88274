//! `source.per_ticket`: what one request per waiting ticket adds to its
//! row (Zammad's first customer article, for the Message-ID a reply
//! threads on). Asked for only for rows that wait, and only again when the
//! ticket's `updated_at` moved: a steady poll sends none (with
//! `updated_at` mapped; without it every poll asks). The fields that read
//! the member are read again from the answer.
//!
//! What such a request brings is an extra (a thread), never what decides a
//! notice: a request that fails, a ticket gone meanwhile (404) or a poll
//! running out of time leaves the member unset for this poll, with one
//! warning per poll, rather than failing the poll and so holding every
//! customer's notice. Failures are not cached: the next poll asks again.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;
use tracing::warn;

use super::columns::Cell;
use super::http::HttpSource;
use super::items::{self, Mapper};
use super::sql::CellRow;
use crate::config::{First, PerTicket, member};
use crate::logging::outside;

/// Requests in flight at once: enough to hide a helpdesk's latency on
/// the first poll, few enough not to be a load test.
const CONCURRENT_REQUESTS: usize = 4;

/// No per-ticket request starts with less than this left of the poll's
/// time: the pages still to read matter more than threads.
const RESERVE: Duration = Duration::from_secs(5);

/// What a per-ticket request found for a ticket at one `updated_at`.
struct Answer {
    updated_at: Option<String>,
    member: Option<Value>,
}

/// Answers by (per-ticket name, ticket id), kept across polls.
#[derive(Clone, Default)]
pub(super) struct Cache(Arc<Mutex<HashMap<(String, String), Answer>>>);

impl Cache {
    fn get(&self, key: &(String, String), updated_at: Option<&String>) -> Option<Option<Value>> {
        let cache = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let answer = cache.get(key)?;
        // Without an updated_at, nothing tells that the answer is current.
        (updated_at.is_some() && answer.updated_at.as_ref() == updated_at)
            .then(|| answer.member.clone())
    }

    fn put(&self, key: (String, String), updated_at: Option<String>, member: Option<Value>) {
        let mut cache = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        cache.insert(key, Answer { updated_at, member });
    }

    /// After a full poll: forget the tickets it did not list, so the cache
    /// holds no more than the helpdesk's waiting tickets.
    pub(super) fn keep_only(&self, ids: &HashSet<String>) {
        let mut cache = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        cache.retain(|(_, id), _| ids.contains(id));
    }
}

/// A cell that holds no value (NULL, or one that could not be read).
fn is_missing(cell: &Cell) -> bool {
    matches!(cell, Cell::Null | Cell::Invalid(_) | Cell::Unsupported(_))
}

/// A cell as the text that identifies it (ids, update times).
fn key_text(cell: &Cell) -> Option<String> {
    match cell {
        _ if is_missing(cell) => None,
        Cell::Text(t) => Some(t.clone()),
        Cell::Int(i) => Some(i.to_string()),
        Cell::Number(n) => Some(n.clone()),
        other => Some(format!("{other:?}")),
    }
}

/// The text of a row's column, as the cache keys it.
pub(super) fn column_text(row: &CellRow, name: &str) -> Option<String> {
    row.iter()
        .find(|(c, _)| &**c == name)
        .and_then(|(_, cell)| key_text(cell))
}

/// A row whose ticket waits: its wait has a start.
fn waits(row: &CellRow) -> bool {
    row.iter()
        .any(|(c, cell)| &**c == "waiting_since" && !is_missing(cell))
}

/// The member from an answer: the body at `items`, or the first listed
/// object that matches `first` (none when nothing does).
fn pick(body: &Value, load: &PerTicket) -> Option<Value> {
    let found = body.pointer(&load.items)?;
    let Value::Array(list) = found else {
        return Some(found.clone());
    };
    let matches = |object: &&Value| match &load.first {
        None => true,
        Some(First {
            pointer,
            values,
            nonblank,
        }) => {
            let value = object
                .pointer(pointer)
                .and_then(|v| items::comparable(&items::cell_of(v)));
            value.is_some_and(|v| values.contains(&v))
                && nonblank.as_ref().is_none_or(|p| {
                    object
                        .pointer(p)
                        .and_then(items::scalar_text)
                        .is_some_and(|v| !v.trim().is_empty())
                })
        }
    };
    list.iter().find(matches).cloned()
}

/// How the requests of one poll went, for its one warning.
#[derive(Default)]
struct Tally {
    failed: usize,
    missing: usize,
    unasked: usize,
    first_failure: Option<String>,
}

/// One ticket's answer: a member (or none), or why there is none this poll.
enum Asked {
    Answer(Option<Value>),
    Missing,
    Failed(String),
    NoTime,
}

impl HttpSource {
    /// Adds the per-ticket members to the rows that wait and reads the
    /// fields that use them.
    pub(super) async fn add_per_ticket(&self, rows: &mut [CellRow], home: &str, deadline: Instant) {
        let loads = &self.settings().per_ticket;
        if loads.is_empty() {
            return;
        }
        let wanted: Vec<(usize, String, Option<String>)> = rows
            .iter()
            .enumerate()
            .filter(|(_, row)| waits(row))
            .filter_map(|(i, row)| {
                let id = column_text(row, "id")?;
                Some((i, id, column_text(row, "updated_at")))
            })
            .collect();
        for load in loads {
            let answers: Vec<(usize, Asked)> = futures::stream::iter(wanted.clone())
                .map(|(i, id, updated_at)| async move {
                    (i, self.ask(load, &id, updated_at, home, deadline).await)
                })
                .buffered(CONCURRENT_REQUESTS)
                .collect()
                .await;
            let mut tally = Tally::default();
            for (i, asked) in answers {
                let member = match asked {
                    Asked::Answer(member) => member,
                    Asked::Missing => {
                        tally.missing += 1;
                        None
                    }
                    Asked::NoTime => {
                        tally.unasked += 1;
                        None
                    }
                    Asked::Failed(why) => {
                        tally.failed += 1;
                        tally.first_failure.get_or_insert(why);
                        None
                    }
                };
                if let Some(row) = rows.get_mut(i) {
                    self.read_member_fields(row, &load.name, member);
                }
            }
            if tally.failed + tally.missing + tally.unasked > 0 {
                warn!(
                    per_ticket = %load.name,
                    failed = tally.failed,
                    not_found = tally.missing,
                    not_asked_in_time = tally.unasked,
                    first_failure = tally.first_failure.as_deref().unwrap_or(""),
                    "per-ticket requests left some waiting tickets without source.per_ticket.{}; their fields stay empty this poll (the notices go out all the same) and the next poll asks again",
                    load.name
                );
            }
        }
    }

    /// One ticket's member: cached while its updated_at stays, else asked for.
    async fn ask(
        &self,
        load: &PerTicket,
        id: &str,
        updated_at: Option<String>,
        home: &str,
        deadline: Instant,
    ) -> Asked {
        let key = (load.name.clone(), id.to_owned());
        if let Some(member) = self.per_ticket_cache().get(&key, updated_at.as_ref()) {
            return Asked::Answer(member);
        }
        if deadline.saturating_duration_since(Instant::now()) < RESERVE {
            return Asked::NoTime;
        }
        let name = &load.name;
        let shown_id = outside(id);
        let Some(segment) = path_segment(id) else {
            return Asked::Failed(format!(
                "ticket {shown_id}: the id cannot be one segment of a URL path"
            ));
        };
        let url = match self
            .base_url()
            .map(|base| base.join(&load.url.replace("{id}", &segment)))
        {
            Ok(Ok(url)) => url,
            Ok(Err(e)) => return Asked::Failed(format!("source.per_ticket.{name}.url: {e}")),
            Err(e) => return Asked::Failed(format!("{e:#}")),
        };
        let shown = self.shown(url.as_str());
        let bytes = match self.fetch_unless_missing(&url, home, deadline).await {
            Ok(Some((_, bytes))) => bytes,
            Ok(None) => return Asked::Missing,
            Err(e) => return Asked::Failed(format!("ticket {shown_id}: {e:#}")),
        };
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(body) => {
                let member = pick(&body, load);
                self.per_ticket_cache().put(key, updated_at, member.clone());
                Asked::Answer(member)
            }
            Err(e) => Asked::Failed(format!(
                "ticket {shown_id}: GET {shown}: the body is not JSON: {e}"
            )),
        }
    }

    /// Reads again the fields that read member `name`, from it alone.
    fn read_member_fields(&self, row: &mut CellRow, name: &str, answer: Option<Value>) {
        let Some(found) = answer else { return };
        let object = Value::Object(serde_json::Map::from_iter([(name.to_owned(), found)]));
        let mapper = Mapper {
            settings: self.settings(),
            zone: self.zone(),
        };
        for (column, field) in &self.settings().fields {
            if field.pointers.iter().any(|p| member(p) == name)
                && let Some((_, cell)) = row.iter_mut().find(|(c, _)| **c == **column)
            {
                *cell = mapper.field(&object, column, field);
            }
        }
    }
}

/// An id as one path segment: anything but unreserved characters escaped,
/// so `a/b` stays inside the URL it is put in. None for an id a URL
/// parser would take as a step (empty, `.`, `..`, also when escaped).
fn path_segment(id: &str) -> Option<String> {
    if id.is_empty() || id.chars().all(|c| c == '.') {
        return None;
    }
    Some(
        id.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                other => format!("%{other:02X}"),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeSet;

    fn load(first: Option<First>) -> PerTicket {
        PerTicket {
            name: "article".into(),
            url: "/a/{id}".into(),
            items: String::new(),
            first,
        }
    }

    fn first(pointer: &str, value: &str, nonblank: Option<&str>) -> Option<First> {
        Some(First {
            pointer: pointer.into(),
            values: BTreeSet::from([value.to_owned()]),
            nonblank: nonblank.map(str::to_owned),
        })
    }

    #[test]
    fn the_first_matching_object_with_a_nonblank_value_is_picked() {
        let body = json!([
            {"id": 1, "sender": "Agent", "internal": true, "message_id": "<a@x>"},
            {"id": 2, "sender": "Customer", "internal": false, "message_id": ""},
            {"id": 3, "sender": "Customer", "internal": false, "message_id": "<c@x>"},
            {"id": 4, "sender": "Customer", "internal": false, "message_id": "<d@x>"}
        ]);
        let customer = first("/sender", "customer", Some("/message_id"));
        assert_eq!(pick(&body, &load(customer)), Some(body[2].clone()));
        assert_eq!(pick(&body, &load(None)), Some(body[0].clone()));
        // Booleans compare as waiting_when's do.
        let public = first("/internal", "false", None);
        assert_eq!(pick(&body, &load(public)), Some(body[1].clone()));
        assert_eq!(pick(&json!({"x": 1}), &load(None)), Some(json!({"x": 1})));
        assert_eq!(pick(&json!([]), &load(None)), None);
    }

    #[test]
    fn an_id_stays_one_path_segment() {
        assert_eq!(path_segment("42").as_deref(), Some("42"));
        assert_eq!(path_segment("../admin").as_deref(), Some("..%2Fadmin"));
        assert_eq!(path_segment("a b?c").as_deref(), Some("a%20b%3Fc"));
        for step in ["", ".", "..", "..."] {
            assert_eq!(path_segment(step), None, "{step:?}");
        }
        // What the URL parser makes of it: still below the base.
        let base =
            reqwest::Url::parse("https://h/api/by_ticket/").unwrap_or_else(|_| unreachable!());
        let joined = base.join(&path_segment("../x").unwrap_or_default());
        assert_eq!(
            joined.map(|u| u.path().to_owned()).ok().as_deref(),
            Some("/api/by_ticket/..%2Fx")
        );
    }
}
