//! The `http` source: pages through a JSON API and maps each item onto the
//! ticket column contract with JSON pointers. A page that cannot be read
//! fails the whole poll, so a broken API never looks like "no tickets".
//! Requests (and credentials) go only to `source.url`'s origin and
//! `source.allowed_origins`; pages are read within the limits of `page`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, LINK, LOCATION, RETRY_AFTER};
use reqwest::redirect;
use serde_json::Value;
use tokio::sync::mpsc;

use super::columns::{Cell, parse_timestamp_text};
use super::page::{self, PageError};
use super::sql::CellRow;
use crate::config::{HttpAuth, HttpSourceSettings, Pagination, SourceSettings};
use crate::secret::{ExposeSecret, redact_url};

/// How often one page is asked for again after 429/503 with Retry-After.
const MAX_THROTTLED_RETRIES: usize = 5;
/// Redirects followed for one page (all within its origin).
const MAX_REDIRECTS: usize = 10;
/// Chunks of rows read ahead of the consumer: the reader waits when they
/// are not taken, so a slow planner never lets pages pile up in memory.
const CHUNKS_IN_FLIGHT: usize = 2;

/// Rows of one poll as they are read, chunk by chunk, or the error that
/// ended it.
pub type PageReceiver = mpsc::Receiver<anyhow::Result<Vec<CellRow>>>;

#[derive(Clone)]
pub struct HttpSource {
    url: String,
    settings: HttpSourceSettings,
    zone: chrono_tz::Tz,
    client: reqwest::Client,
}

/// `scheme://host[:port]`, the default port left out.
fn origin(url: &reqwest::Url) -> String {
    url.origin().ascii_serialization()
}

/// The source's own client: redirects are followed only to the origin of
/// the URL asked for, so credentials never travel with one (reqwest drops
/// `Authorization` on a cross-host redirect, but not a custom header).
fn client() -> anyhow::Result<reqwest::Client> {
    crate::channels::install_crypto_provider();
    let policy = redirect::Policy::custom(|attempt| {
        let home = attempt.previous().first().map(origin);
        if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
        } else if home.is_some_and(|home| home == origin(attempt.url())) {
            attempt.follow()
        } else {
            attempt.stop()
        }
    });
    Ok(reqwest::Client::builder()
        .redirect(policy)
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("interim/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

impl HttpSource {
    pub fn new(source: &SourceSettings, settings: &HttpSourceSettings) -> anyhow::Result<Self> {
        Ok(Self {
            url: source.url.expose().to_owned(),
            settings: settings.clone(),
            zone: source.timezone,
            client: client()?,
        })
    }

    /// Reads every page (changes since `since` when given) in a task of
    /// its own and sends the items, as named cells, in chunks of at most
    /// `chunk` rows. `deadline` bounds the whole poll.
    pub fn stream_pages(
        &self,
        since: Option<DateTime<Utc>>,
        deadline: Instant,
        chunk: usize,
    ) -> (PageReceiver, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let this = self.clone();
        let reader = tokio::spawn(async move {
            if let Err(e) = this.read_pages(since, deadline, chunk.max(1), &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        (rx, reader)
    }

    async fn read_pages(
        &self,
        since: Option<DateTime<Utc>>,
        deadline: Instant,
        chunk: usize,
        tx: &mpsc::Sender<anyhow::Result<Vec<CellRow>>>,
    ) -> anyhow::Result<()> {
        let mut url = reqwest::Url::parse(&self.url)
            .map_err(|e| anyhow::anyhow!("source.url {}: {e}", redact_url(&self.url)))?;
        let home = origin(&url);
        if let (Some(param), Some(since)) = (&self.settings.since_param, since) {
            let value = if self.settings.since_unix {
                since.timestamp().to_string()
            } else {
                crate::channels::rfc3339(since)
            };
            set_param(&mut url, param, &value);
        }
        let mut page_number = match &self.settings.pagination {
            Pagination::Page { start, .. } => *start,
            _ => 1,
        };
        if let Pagination::Page { param, size, .. } = &self.settings.pagination {
            set_param(&mut url, param, &page_number.to_string());
            if let Some((size_param, size)) = size {
                set_param(&mut url, size_param, &size.to_string());
            }
        }
        let mut rows = 0usize;
        for page in 1..=self.settings.max_pages {
            let (headers, bytes) = self.fetch(&url, &home, deadline).await?;
            let shown = redact_url(url.as_str());
            let (body, items) = self.decode(&bytes, rows).map_err(|e| match e {
                PageError::NotJson(e) => anyhow::anyhow!("GET {shown}: the body is not JSON: {e}"),
                PageError::NoList => anyhow::anyhow!(
                    "GET {shown}: page {page}: the items pointer \"{}\" does not resolve to a list",
                    self.settings.items
                ),
                PageError::TooManyRows => anyhow::anyhow!(
                    "GET {shown}: more than source.max_rows ({}) rows; raise it if this is right",
                    self.settings.max_rows
                ),
            })?;
            drop(bytes);
            rows += items.len();
            let empty = items.is_empty();
            let mut items = items.into_iter();
            loop {
                let batch: Vec<CellRow> = items.by_ref().take(chunk).collect();
                if batch.is_empty() {
                    break;
                }
                if tx.send(Ok(batch)).await.is_err() {
                    // Nobody reads this poll any more.
                    return Ok(());
                }
            }
            let next = match &self.settings.pagination {
                Pagination::None => None,
                Pagination::Link => next_link(&headers).and_then(|next| url.join(&next).ok()),
                Pagination::NextUrl { pointer } => match body.pointer(pointer) {
                    Some(Value::String(next)) if !next.is_empty() => {
                        Some(url.join(next).map_err(|e| {
                            anyhow::anyhow!("GET {shown}: next page URL at {pointer}: {e}")
                        })?)
                    }
                    _ => None,
                },
                Pagination::Page { param, .. } => {
                    if empty {
                        None
                    } else {
                        page_number += 1;
                        let mut next = url.clone();
                        set_param(&mut next, param, &page_number.to_string());
                        Some(next)
                    }
                }
                Pagination::Cursor {
                    param,
                    pointer,
                    has_more,
                } => {
                    // `has_more = "/meta/has_more"`, or negated: "!/end_of_stream".
                    let more = has_more.as_ref().is_none_or(|p| match p.strip_prefix('!') {
                        Some(p) => !body.pointer(p).and_then(Value::as_bool).unwrap_or(true),
                        None => body.pointer(p).and_then(Value::as_bool).unwrap_or(false),
                    });
                    match body.pointer(pointer) {
                        Some(Value::String(cursor)) if more && !cursor.is_empty() => {
                            let mut next = url.clone();
                            set_param(&mut next, param, cursor);
                            Some(next)
                        }
                        _ => None,
                    }
                }
            };
            let Some(next) = next else {
                return Ok(());
            };
            let there = origin(&next);
            if !self.trusted(&home, &there) {
                anyhow::bail!(
                    "GET {shown}: the next page is on {there}, another origin than source.url's {home}; \
                     not asked for, so the source's credentials stay with {home} \
                     (list it in source.allowed_origins if it belongs to the helpdesk)"
                );
            }
            url = next;
        }
        anyhow::bail!(
            "GET {}: more than source.max_pages ({}) pages; raise it if this is right",
            redact_url(url.as_str()),
            self.settings.max_pages
        )
    }

    /// Whether `origin` may get the source's requests and credentials.
    fn trusted(&self, home: &str, origin: &str) -> bool {
        origin == home || self.settings.allowed_origins.iter().any(|o| o == origin)
    }

    /// One page's items as cells, counted against what is left of
    /// `max_rows` while they are decoded; the rest of the page (next-page
    /// pointers, side-loaded lists) as JSON.
    fn decode(&self, bytes: &[u8], rows: usize) -> Result<(Value, Vec<CellRow>), PageError> {
        let budget = self.settings.max_rows.saturating_sub(rows);
        let items = &self.settings.items;
        if self.settings.sideload.is_empty() {
            // Each item becomes its cells at once; its JSON is dropped.
            let page = page::decode(bytes, items, budget, |item| self.cells(item, &[]))?;
            return Ok((page.body, page.items));
        }
        // Side-loaded lists may come after the items: join at the end.
        let page = page::decode(bytes, items, budget, |item| item)?;
        let sideloaded = self.sideloaded(&page.body);
        let cells = page
            .items
            .into_iter()
            .map(|item| self.cells(item, &sideloaded))
            .collect();
        Ok((page.body, cells))
    }

    /// One page's body, honouring 429/503 `Retry-After` within the poll's
    /// deadline. Credentials go only to a trusted origin.
    async fn fetch(
        &self,
        url: &reqwest::Url,
        home: &str,
        deadline: Instant,
    ) -> anyhow::Result<(HeaderMap, Vec<u8>)> {
        let shown = redact_url(url.as_str());
        let credentials = self.trusted(home, &origin(url));
        for _ in 0..=MAX_THROTTLED_RETRIES {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut request = self
                .client
                .get(url.clone())
                .timeout(left.max(Duration::from_millis(1)))
                .header("accept", "application/json");
            request = match &self.settings.auth {
                _ if !credentials => request,
                HttpAuth::None => request,
                HttpAuth::Bearer(token) => request.bearer_auth(token.expose_secret()),
                HttpAuth::Basic { username, password } => {
                    request.basic_auth(username, Some(password.expose_secret()))
                }
                HttpAuth::Header { name, value } => {
                    request.header(name.as_str(), value.expose_secret())
                }
            };
            let response = request.send().await.map_err(|e| {
                let what = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "connection failed"
                } else if e.is_redirect() {
                    "too many redirects"
                } else {
                    "request failed"
                };
                anyhow::anyhow!("GET {shown}: {what}")
            })?;
            let status = response.status();
            if status.as_u16() == 429 || status.as_u16() == 503 {
                let wait = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| {
                        crate::channels::webhook::parse_retry_after(v, chrono::Utc::now())
                    })
                    .unwrap_or(Duration::from_secs(1));
                // A Retry-After of u64::MAX seconds overflows an Instant.
                if Instant::now()
                    .checked_add(wait)
                    .is_none_or(|t| t >= deadline)
                {
                    anyhow::bail!(
                        "GET {shown}: HTTP {} and Retry-After {}s is beyond source.timeout",
                        status.as_u16(),
                        wait.as_secs()
                    );
                }
                tokio::time::sleep(wait).await;
                continue;
            }
            if status.is_redirection() {
                // The redirect policy stopped: the target is elsewhere.
                let target = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|location| response.url().join(location).ok());
                if let Some(target) = target
                    && origin(&target) != origin(response.url())
                {
                    anyhow::bail!(
                        "GET {shown}: HTTP {} redirects to {}, another origin than {}; \
                         redirects are followed only within the origin, so the credentials stay there",
                        status.as_u16(),
                        origin(&target),
                        origin(response.url())
                    );
                }
            }
            if !status.is_success() {
                anyhow::bail!("GET {shown}: HTTP {}", status.as_u16());
            }
            let headers = response.headers().clone();
            let body = page::read_body(response, self.settings.max_page_bytes, &shown).await?;
            return Ok((headers, body));
        }
        anyhow::bail!("GET {shown}: still throttled after {MAX_THROTTLED_RETRIES} retries")
    }

    /// Side-loaded lists of a page, indexed by their key.
    fn sideloaded(&self, body: &Value) -> Vec<HashMap<String, Value>> {
        self.settings
            .sideload
            .iter()
            .map(|s| {
                let list = body
                    .pointer(&s.items)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                list.into_iter()
                    .filter_map(|obj| Some((scalar_text(obj.pointer(&s.key)?)?, obj)))
                    .collect()
            })
            .collect()
    }

    /// One item as contract columns.
    fn cells(&self, mut item: Value, sideloaded: &[HashMap<String, Value>]) -> CellRow {
        for (load, index) in self.settings.sideload.iter().zip(sideloaded) {
            let joined = item
                .pointer(&load.reference)
                .and_then(scalar_text)
                .and_then(|key| index.get(&key).cloned());
            if let (Some(obj), Some(joined)) = (item.as_object_mut(), joined) {
                obj.insert(load.name.clone(), joined);
            }
        }
        let mut cells: Vec<(String, Cell)> = self
            .settings
            .fields
            .iter()
            .map(|(column, pointers)| {
                // A waiting_since field that is not there at all (not even
                // null) is a mapping that broke, not a wait that ended:
                // read as "ended" it would cancel every notice.
                let absent =
                    column == "waiting_since" && pointers.iter().all(|p| item.pointer(p).is_none());
                let cell = if absent {
                    Cell::Invalid(format!(
                        "the item has no field {}; check source.fields.waiting_since",
                        pointers.join(" or ")
                    ))
                } else {
                    self.resolve(&item, pointers)
                };
                (column.clone(), cell)
            })
            .collect();
        if let Some(states) = &self.settings.waiting_states {
            let state = cells
                .iter()
                .find(|(c, _)| c == "state")
                .map(|(_, v)| v.clone());
            // Numbers count too (Freshdesk's `"status": 2`).
            let text = match &state {
                Some(Cell::Text(s)) => Some(s.to_lowercase()),
                Some(Cell::Int(i)) => Some(i.to_string()),
                Some(Cell::Float(f)) => Some(f.to_string()),
                Some(Cell::Number(digits)) => Some(digits.clone()),
                Some(Cell::Bool(b)) => Some(b.to_string()),
                _ => None,
            };
            let waiting = text.is_some_and(|t| states.contains(&t));
            if !waiting {
                // Not a waiting state: the row reports a wait that ended.
                for (column, cell) in cells.iter_mut() {
                    if column == "waiting_since" {
                        *cell = Cell::Null;
                    }
                }
            }
        }
        if self.settings.extra_fields
            && let Some(obj) = item.as_object()
        {
            let mapped: Vec<String> = self
                .settings
                .fields
                .values()
                .flatten()
                .filter_map(|p| p.strip_prefix('/'))
                .map(|p| p.split('/').next().unwrap_or("").to_owned())
                .collect();
            for (key, value) in obj {
                if !mapped.contains(key)
                    && !cells.iter().any(|(c, _)| c == key)
                    && !value.is_object()
                    && !value.is_array()
                {
                    cells.push((key.clone(), cell_of(value)));
                }
            }
        }
        cells
    }

    /// The value at the first pointer, or with several pointers the latest
    /// timestamp among them (e.g. last agent or last customer contact).
    fn resolve(&self, item: &Value, pointers: &[String]) -> Cell {
        let values: Vec<&Value> = pointers
            .iter()
            .filter_map(|p| item.pointer(p))
            .filter(|v| !v.is_null())
            .collect();
        if values.len() > 1 {
            let latest = values
                .iter()
                .filter_map(|v| {
                    v.as_str()
                        .and_then(|s| parse_timestamp_text(s, self.zone).ok())
                        .or_else(|| v.as_i64().and_then(|s| DateTime::from_timestamp(s, 0)))
                })
                .max();
            if let Some(latest) = latest {
                return Cell::Timestamp(latest);
            }
        }
        values.first().map_or(Cell::Null, |v| cell_of(v))
    }
}

fn cell_of(value: &Value) -> Cell {
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

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn set_param(url: &mut reqwest::Url, name: &str, value: &str) {
    let others: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.query_pairs_mut()
        .clear()
        .extend_pairs(others)
        .append_pair(name, value);
}

/// The `rel="next"` target of a `Link` header. Link values are split on
/// commas outside `<…>` (a URL may contain commas: `include=a,b`).
fn next_link(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(split_link_values)
        .find_map(|part| {
            let (target, params) = part.split_once('>')?;
            params
                .split(';')
                .any(|p| {
                    matches!(
                        p.trim().replace(' ', "").as_str(),
                        "rel=\"next\"" | "rel=next"
                    )
                })
                .then(|| target.trim().trim_start_matches('<').to_owned())
        })
}

fn split_link_values(header: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let (mut current, mut in_url) = (String::new(), false);
    for c in header.chars() {
        match c {
            '<' => in_url = true,
            '>' => in_url = false,
            ',' if !in_url => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_link_is_found_among_several() {
        let mut headers = HeaderMap::new();
        headers.insert(
            LINK,
            "<https://h/x?page=1>; rel=\"prev\", <https://h/x?page=3>; rel=\"next\""
                .parse()
                .unwrap_or_else(|_| unreachable!()),
        );
        assert_eq!(next_link(&headers).as_deref(), Some("https://h/x?page=3"));
    }
}
