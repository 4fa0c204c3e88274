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

use super::items::{self, Join, Mapper};
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
    per_ticket: super::per_ticket::Cache,
}

/// `scheme://host[:port]`, the default port left out.
fn origin(url: &reqwest::Url) -> String {
    url.origin().ascii_serialization()
}

/// The source's own client: redirects are followed only to the origin of
/// the URL asked for, so credentials never travel with one (reqwest drops
/// `Authorization` on a cross-host redirect, but not a custom header).
fn client() -> anyhow::Result<reqwest::Client> {
    crate::net::install_crypto_provider();
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
            per_ticket: super::per_ticket::Cache::default(),
        })
    }

    pub(super) fn settings(&self) -> &HttpSourceSettings {
        &self.settings
    }

    pub(super) fn zone(&self) -> chrono_tz::Tz {
        self.zone
    }

    pub(super) fn per_ticket_cache(&self) -> &super::per_ticket::Cache {
        &self.per_ticket
    }

    /// A URL as errors print it: redacted, and scrubbed of every piece of
    /// the configured URL's secrets. A password with a `/` after an empty
    /// or default port parses as a path (`https://u:/pw@host` is host `u`),
    /// and its serialization no longer looks like user info to the
    /// redactor; the configured text still does.
    pub(super) fn shown(&self, url: &str) -> String {
        crate::secret::scrub(&redact_url(url), &self.url)
    }

    pub(super) fn base_url(&self) -> anyhow::Result<reqwest::Url> {
        reqwest::Url::parse(&self.url)
            .map_err(|e| anyhow::anyhow!("source.url {}: {e}", redact_url(&self.url)))
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
        let mut url = self.base_url()?;
        let home = origin(&url);
        if let (Some(param), Some(since)) = (&self.settings.since_param, since) {
            let value = if self.settings.since_unix {
                since.timestamp().to_string()
            } else {
                crate::clock::rfc3339(since)
            };
            set_param(&mut url, param, &value);
        }
        for (name, value) in &self.settings.params {
            set_param(&mut url, name, value);
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
        let lookups = self.lookups(&home, deadline).await?;
        let mut rows = 0usize;
        // A full poll lists every waiting ticket: the per-ticket answers of
        // the others are forgotten at its end.
        let mut listed = (since.is_none() && !self.settings.per_ticket.is_empty())
            .then(std::collections::HashSet::new);
        for page in 1..=self.settings.max_pages {
            let (headers, bytes) = self.fetch(&url, &home, deadline).await?;
            let shown = self.shown(url.as_str());
            let (body, items) = self.decode(&bytes, rows, &lookups).map_err(|e| match e {
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
            let mut items = items;
            self.add_per_ticket(&mut items, &home, deadline).await;
            if let Some(listed) = listed.as_mut() {
                listed.extend(
                    items
                        .iter()
                        .filter_map(|row| super::per_ticket::column_text(row, "id")),
                );
            }
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
                        page_number = page_number.checked_add(1).ok_or_else(|| {
                            anyhow::anyhow!(
                                "GET {shown}: page {page_number} has no next number; check source.pagination.start"
                            )
                        })?;
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
                if let Some(listed) = &listed {
                    self.per_ticket.keep_only(listed);
                }
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
            self.shown(url.as_str()),
            self.settings.max_pages
        )
    }

    /// Whether `origin` may get the source's requests and credentials.
    fn trusted(&self, home: &str, origin: &str) -> bool {
        origin == home || self.settings.allowed_origins.iter().any(|o| o == origin)
    }

    /// One page's items as cells, counted against what is left of
    /// `max_rows` while they are decoded; the rest of the page (next-page
    /// pointers, side-loaded lists) as JSON. `lookups` are this poll's
    /// `source.lookup` lists by name.
    fn decode(
        &self,
        bytes: &[u8],
        rows: usize,
        lookups: &HashMap<String, HashMap<String, Value>>,
    ) -> Result<(Value, Vec<CellRow>), PageError> {
        let budget = self.settings.max_rows.saturating_sub(rows);
        let items = &self.settings.items;
        let mapper = Mapper {
            settings: &self.settings,
            zone: self.zone,
        };
        let from_page = self.settings.items_by_id.is_some()
            || self.settings.sideload.iter().any(|s| s.url.is_none());
        if !from_page {
            // Each item becomes its cells at once; its JSON is dropped.
            let joins = self.joins(lookups, &[]);
            let page = page::decode(bytes, items, budget, |item| mapper.cells(item, &joins))?;
            return Ok((page.body, page.items));
        }
        // Side-loaded lists may come after the items: join at the end.
        let page = page::decode(bytes, items, budget, |item| item)?;
        let indexed: Vec<HashMap<String, Value>> = self
            .settings
            .sideload
            .iter()
            .filter(|s| s.url.is_none())
            .map(|s| {
                let list = page.body.pointer(&s.items).unwrap_or(&Value::Null);
                items::index(list, &s.key).unwrap_or_default()
            })
            .collect();
        let joins = self.joins(lookups, &indexed);
        let objects = self.settings.items_by_id.as_ref().map(|pointer| {
            let found = page.body.pointer(pointer).unwrap_or(&Value::Null);
            (pointer, items::index(found, "/id").unwrap_or_default())
        });
        let cells = page
            .items
            .into_iter()
            .map(|item| match &objects {
                None => mapper.cells(item, &joins),
                Some((pointer, objects)) => match items::scalar_text(&item) {
                    Some(id) => match objects.get(&id) {
                        Some(object) => mapper.cells(object.clone(), &joins),
                        None => invalid_id(format!(
                            "the page lists {id} at {items}, but {pointer} has no object for it"
                        )),
                    },
                    None => invalid_id(format!(
                        "an item at {items} is not an id (source.items_by_id reads ids there): {}",
                        crate::logging::clip(&item.to_string(), 60)
                    )),
                },
            })
            .collect();
        Ok((page.body, cells))
    }

    /// Every join of the source with its objects: lookups by name, the
    /// page's side-loaded ones in order from `indexed`.
    fn joins<'a>(
        &'a self,
        lookups: &'a HashMap<String, HashMap<String, Value>>,
        indexed: &'a [HashMap<String, Value>],
    ) -> Vec<Join<'a>> {
        let mut from_page = indexed.iter();
        self.settings
            .sideload
            .iter()
            .filter_map(|load| match &load.url {
                Some(_) => lookups.get(&load.name).map(|index| (load, index)),
                None => from_page.next().map(|index| (load, index)),
            })
            .collect()
    }

    /// This poll's `source.lookup` lists, fetched once, before the pages,
    /// with the source's credentials (their origins were checked when the
    /// config loaded, and are checked again here). One that cannot be read
    /// fails the poll, naming it.
    async fn lookups(
        &self,
        home: &str,
        deadline: Instant,
    ) -> anyhow::Result<HashMap<String, HashMap<String, Value>>> {
        let mut out = HashMap::new();
        let base = self.base_url()?;
        for load in &self.settings.sideload {
            let Some(target) = &load.url else { continue };
            let name = &load.name;
            let url = base
                .join(target)
                .map_err(|e| anyhow::anyhow!("source.lookup.{name}.url: {e}"))?;
            let shown = self.shown(url.as_str());
            if !self.trusted(home, &origin(&url)) {
                anyhow::bail!(
                    "source.lookup.{name}: {shown} is on another origin than source.url's {home}"
                );
            }
            let (_, bytes) = self
                .fetch(&url, home, deadline)
                .await
                .map_err(|e| anyhow::anyhow!("source.lookup.{name}: {e:#}"))?;
            let body: Value = serde_json::from_slice(&bytes).map_err(|e| {
                anyhow::anyhow!("source.lookup.{name}: GET {shown}: the body is not JSON: {e}")
            })?;
            let list = body.pointer(&load.items).unwrap_or(&Value::Null);
            let index = items::index(list, &load.key).ok_or_else(|| {
                anyhow::anyhow!(
                    "source.lookup.{name}: GET {shown}: the items pointer \"{}\" does not resolve to a list or an object",
                    load.items
                )
            })?;
            out.insert(name.clone(), index);
        }
        Ok(out)
    }

    /// One page's body, honouring 429/503 `Retry-After` within the poll's
    /// deadline. Requests (and credentials) go only to a trusted origin.
    async fn fetch(
        &self,
        url: &reqwest::Url,
        home: &str,
        deadline: Instant,
    ) -> anyhow::Result<(HeaderMap, Vec<u8>)> {
        self.fetch_or_missing(url, home, deadline, false)
            .await?
            .ok_or_else(|| anyhow::anyhow!("GET {}: HTTP 404", self.shown(url.as_str())))
    }

    /// As `fetch`, but None for a 404: what a per-ticket request gets for a
    /// ticket deleted since the page listed it.
    pub(super) async fn fetch_unless_missing(
        &self,
        url: &reqwest::Url,
        home: &str,
        deadline: Instant,
    ) -> anyhow::Result<Option<(HeaderMap, Vec<u8>)>> {
        self.fetch_or_missing(url, home, deadline, true).await
    }

    async fn fetch_or_missing(
        &self,
        url: &reqwest::Url,
        home: &str,
        deadline: Instant,
        missing_ok: bool,
    ) -> anyhow::Result<Option<(HeaderMap, Vec<u8>)>> {
        let shown = self.shown(url.as_str());
        // Every caller checks first; this keeps it so for the next one.
        if !self.trusted(home, &origin(url)) {
            anyhow::bail!(
                "GET {shown}: on {}, another origin than source.url's {home}: not asked for",
                origin(url)
            );
        }
        for _ in 0..=MAX_THROTTLED_RETRIES {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut request = self
                .client
                .get(url.clone())
                .timeout(left.max(Duration::from_millis(1)))
                .header("accept", "application/json");
            request = match &self.settings.auth {
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
                    .and_then(|v| crate::net::parse_retry_after(v, chrono::Utc::now()))
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
            if missing_ok && status.as_u16() == 404 {
                return Ok(None);
            }
            if !status.is_success() {
                anyhow::bail!("GET {shown}: HTTP {}", status.as_u16());
            }
            let headers = response.headers().clone();
            let body = page::read_body(response, self.settings.max_page_bytes, &shown).await?;
            return Ok(Some((headers, body)));
        }
        anyhow::bail!("GET {shown}: still throttled after {MAX_THROTTLED_RETRIES} retries")
    }
}

/// A row that says only why its item could not be read: the column
/// contract skips it, naming the reason.
fn invalid_id(reason: String) -> CellRow {
    vec![("id".into(), super::columns::Cell::Invalid(reason))]
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
