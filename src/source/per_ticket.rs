//! `source.per_ticket`: what one request per waiting ticket adds to its
//! row (Zammad's first customer article, for the Message-ID a reply
//! threads on). Asked for only for rows that wait, and only again when the
//! ticket's `updated_at` moved: a steady poll sends none. The fields that
//! read the member are read again from the answer.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use futures::StreamExt;
use serde_json::Value;

use super::columns::Cell;
use super::http::HttpSource;
use super::items::{self, Mapper};
use super::sql::CellRow;
use crate::config::{First, PerTicket, member};
use crate::secret::redact_url;

/// Requests in flight at once: enough to hide a helpdesk's latency on
/// the first poll, few enough not to be a load test.
const CONCURRENT_REQUESTS: usize = 4;

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

/// A cell as the text that identifies it (ids, update times).
pub(super) fn key_text(cell: &Cell) -> Option<String> {
    match cell {
        Cell::Null | Cell::Invalid(_) | Cell::Unsupported(_) => None,
        Cell::Text(t) => Some(t.clone()),
        Cell::Int(i) => Some(i.to_string()),
        Cell::Number(n) => Some(n.clone()),
        other => Some(format!("{other:?}")),
    }
}

fn column<'a>(row: &'a CellRow, name: &str) -> Option<&'a Cell> {
    row.iter().find(|(c, _)| c == name).map(|(_, cell)| cell)
}

/// A row whose ticket waits: its wait has a start.
fn waits(row: &CellRow) -> bool {
    column(row, "waiting_since")
        .is_some_and(|cell| !matches!(cell, Cell::Null | Cell::Invalid(_) | Cell::Unsupported(_)))
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
            let value = object.pointer(pointer).and_then(items::scalar_text);
            value.is_some_and(|v| values.contains(&v.to_lowercase()))
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

impl HttpSource {
    /// Adds the per-ticket members to the rows that wait and reads the
    /// fields that use them. A request that fails fails the poll (naming
    /// the ticket); the answers got so far stay cached, so the next poll
    /// goes on from there. A ticket the helpdesk no longer has (404) gets
    /// no member.
    pub(super) async fn add_per_ticket(
        &self,
        rows: &mut [CellRow],
        home: &str,
        deadline: Instant,
    ) -> anyhow::Result<()> {
        let loads = &self.settings().per_ticket;
        if loads.is_empty() {
            return Ok(());
        }
        let wanted: Vec<(usize, String, Option<String>)> = rows
            .iter()
            .enumerate()
            .filter(|(_, row)| waits(row))
            .filter_map(|(i, row)| {
                let id = column(row, "id").and_then(key_text)?;
                let updated_at = column(row, "updated_at").and_then(key_text);
                Some((i, id, updated_at))
            })
            .collect();
        for load in loads {
            let answers: Vec<anyhow::Result<(usize, Option<Value>)>> =
                futures::stream::iter(wanted.clone())
                    .map(|(i, id, updated_at)| async move {
                        let member = self.member(load, &id, &updated_at, home, deadline).await?;
                        Ok((i, member))
                    })
                    .buffered(CONCURRENT_REQUESTS)
                    .collect()
                    .await;
            for answer in answers {
                let (i, member) = answer?;
                if let Some(row) = rows.get_mut(i) {
                    self.read_member_fields(row, &load.name, member);
                }
            }
        }
        Ok(())
    }

    /// One ticket's member: cached while its updated_at stays, else asked for.
    async fn member(
        &self,
        load: &PerTicket,
        id: &str,
        updated_at: &Option<String>,
        home: &str,
        deadline: Instant,
    ) -> anyhow::Result<Option<Value>> {
        let key = (load.name.clone(), id.to_owned());
        if let Some(member) = self.per_ticket_cache().get(&key, updated_at.as_ref()) {
            return Ok(member);
        }
        let name = &load.name;
        let target = load.url.replace("{id}", &urlencoding(id));
        let url = self
            .base_url()?
            .join(&target)
            .map_err(|e| anyhow::anyhow!("source.per_ticket.{name}.url: {e}"))?;
        let shown = redact_url(url.as_str());
        let body = match self
            .fetch_unless_missing(&url, home, deadline)
            .await
            .map_err(|e| anyhow::anyhow!("source.per_ticket.{name}: ticket {id}: {e:#}"))?
        {
            None => None,
            Some((_, bytes)) => {
                let body: Value = serde_json::from_slice(&bytes).map_err(|e| {
                    anyhow::anyhow!(
                        "source.per_ticket.{name}: ticket {id}: GET {shown}: the body is not JSON: {e}"
                    )
                })?;
                pick(&body, load)
            }
        };
        self.per_ticket_cache()
            .put(key, updated_at.clone(), body.clone());
        Ok(body)
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
                && let Some((_, cell)) = row.iter_mut().find(|(c, _)| c == column)
            {
                *cell = mapper.field(&object, column, field);
            }
        }
    }
}

/// An id as one path segment: anything but unreserved characters escaped,
/// so an id like `../admin` stays inside the URL it is put in.
fn urlencoding(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect::<String>()
        .replace("..", "%2E%2E")
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

    #[test]
    fn the_first_matching_object_with_a_nonblank_value_is_picked() {
        let body = json!([
            {"id": 1, "sender": "Agent", "message_id": "<a@x>"},
            {"id": 2, "sender": "Customer", "message_id": ""},
            {"id": 3, "sender": "Customer", "message_id": "<c@x>"},
            {"id": 4, "sender": "Customer", "message_id": "<d@x>"}
        ]);
        let first = First {
            pointer: "/sender".into(),
            values: BTreeSet::from(["customer".to_owned()]),
            nonblank: Some("/message_id".into()),
        };
        assert_eq!(pick(&body, &load(Some(first))), Some(body[2].clone()));
        assert_eq!(pick(&body, &load(None)), Some(body[0].clone()));
        assert_eq!(pick(&json!({"x": 1}), &load(None)), Some(json!({"x": 1})));
    }

    #[test]
    fn an_id_stays_one_path_segment() {
        assert_eq!(urlencoding("42"), "42");
        assert_eq!(urlencoding("../admin"), "%2E%2E%2Fadmin");
        assert_eq!(urlencoding("a b?c"), "a%20b%3Fc");
    }
}
