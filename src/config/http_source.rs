//! `[source]` of `kind = "http"`: how interim reaches the API (auth,
//! pagination, limits, origins) and where the tickets are in its pages.
//! Kept apart from the SQL side because it is most of what an http source
//! is; the field mappings are checked in `http_fields.rs`, and the wait
//! clock is put into `fields` by `clocks.rs`.

use std::collections::{BTreeMap, BTreeSet};

use super::http_fields::{self, FieldMap, PerTicket, Sideload, WaitingWhen};
use super::raw::{RawBytes, RawSource};
use super::settings::{Problems, read_secret};
use crate::secret::SecretString;

#[derive(Debug, Clone)]
pub struct HttpSourceSettings {
    pub auth: HttpAuth,
    /// JSON pointer to the list of tickets in a page ("" = the page itself).
    pub items: String,
    /// The listed items are ids, their objects at this pointer of the page
    /// (keyed by id, as Zammad's `assets.Ticket`).
    pub items_by_id: Option<String>,
    /// Contract column → how it is read from one item.
    pub fields: BTreeMap<String, FieldMap>,
    /// Unmapped top-level fields of an item go into `ticket.extra`.
    pub extra_fields: bool,
    pub pagination: Pagination,
    pub max_pages: usize,
    pub max_rows: usize,
    /// A page's body is read up to this many bytes; a larger page fails
    /// the poll.
    pub max_page_bytes: u64,
    /// Origins besides `source.url`'s that next pages may be on; they get
    /// the same credentials. Serialized as `Url::origin` does
    /// (`scheme://host[:port]`, the default port left out).
    pub allowed_origins: Vec<String>,
    /// Query parameter that asks only for tickets changed since the watermark.
    pub since_param: Option<String>,
    /// Query parameters set on every page request, replacing the URL's own
    /// of the same name (Zammad's search sorted by id, so that a ticket
    /// updated during a poll does not shift the pages).
    pub params: Vec<(String, String)>,
    pub since_unix: bool,
    /// Rows in other states are not waiting (their pending notices end).
    pub waiting_states: Option<BTreeSet<String>>,
    /// Instead of waiting_states: rows wait when a value is one of a list.
    pub waiting_when: Option<WaitingWhen>,
    /// Objects joined into each item: side-loaded from the page (e.g.
    /// Zendesk's users) or looked up once per poll (`source.lookup`).
    pub sideload: Vec<Sideload>,
    /// Objects fetched with one request per waiting ticket, cached until
    /// the ticket's updated_at moves (Zammad's first customer article).
    pub per_ticket: Vec<PerTicket>,
}

#[derive(Debug, Clone)]
pub enum HttpAuth {
    None,
    Bearer(SecretString),
    Basic {
        username: String,
        password: SecretString,
    },
    /// A custom header, e.g. `Authorization: Token token=…`.
    Header {
        name: String,
        value: SecretString,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Pagination {
    /// One page only.
    None,
    /// `Link: <…>; rel="next"` headers.
    Link,
    /// The next page's URL at a pointer in the page.
    NextUrl { pointer: String },
    /// `param=1,2,3…` until an empty page.
    Page {
        param: String,
        start: i64,
        size: Option<(String, i64)>,
    },
    /// `param=CURSOR` from a pointer in the page, until it is empty or
    /// `has_more` is false.
    Cursor {
        param: String,
        pointer: String,
        has_more: Option<String>,
    },
}

/// `source.max_page_bytes` when it is not set: 32 MiB.
pub const DEFAULT_MAX_PAGE_BYTES: u64 = 32 * 1024 * 1024;

/// `url` is the first page's (from `url`, `url_env` or `url_file`).
pub(super) fn http_settings(
    p: &mut Problems,
    s: &RawSource,
    url: &str,
) -> Option<HttpSourceSettings> {
    let auth = match s.auth.as_deref().unwrap_or("none") {
        "none" => HttpAuth::None,
        "bearer" => HttpAuth::Bearer(required_secret(
            p,
            "token",
            s.token_env.as_ref(),
            s.token_file.as_ref(),
        )?),
        "basic" => {
            let username = s.username.clone().or_else(|| {
                p.add("source.username", "missing: basic auth needs a username");
                None
            })?;
            HttpAuth::Basic {
                username,
                password: required_secret(
                    p,
                    "password",
                    s.password_env.as_ref(),
                    s.password_file.as_ref(),
                )?,
            }
        }
        "header" => {
            // "Authorization: Token token={token}", or just a name: the
            // token is the whole value.
            let spec = s.header.clone().or_else(|| {
                p.add(
                    "source.header",
                    "missing: the header, e.g. \"Authorization: Token token={token}\"",
                );
                None
            })?;
            let (name, template) = match spec.split_once(':') {
                Some((name, template)) => (name.trim().to_owned(), template.trim().to_owned()),
                None => (spec.trim().to_owned(), "{token}".to_owned()),
            };
            let token = required_secret(p, "token", s.token_env.as_ref(), s.token_file.as_ref())?;
            let value = template.replace("{token}", secrecy::ExposeSecret::expose_secret(&token));
            HttpAuth::Header {
                name,
                value: SecretString::from(value),
            }
        }
        other => {
            p.add(
                "source.auth",
                format!("\"{other}\" is not one of none, bearer, basic, header"),
            );
            return None;
        }
    };
    let fields = http_fields::fields(p, s);
    for required in ["id", "state", "waiting_since"] {
        // A preset's clock supplies waiting_since.
        let from_clock = required == "waiting_since" && !s.clocks.is_empty();
        let named = s.fields.keys().any(|c| c.eq_ignore_ascii_case(required));
        if !named && !from_clock {
            p.add(
                format!("source.fields.{required}"),
                "missing: the JSON pointer of this required column",
            );
        }
    }
    let pagination = match &s.pagination {
        None => Pagination::None,
        Some(raw) => {
            let key = "source.pagination";
            match raw.kind.as_str() {
                "none" => Pagination::None,
                "link" => Pagination::Link,
                "next_url" => Pagination::NextUrl {
                    pointer: raw.pointer.clone().or_else(|| {
                        p.add(
                            format!("{key}.pointer"),
                            "missing: where the next page's URL is in a page",
                        );
                        None
                    })?,
                },
                "page" => Pagination::Page {
                    param: raw.param.clone().unwrap_or_else(|| "page".into()),
                    start: raw.start.unwrap_or(1),
                    size: raw
                        .size_param
                        .clone()
                        .map(|param| (param, raw.size.unwrap_or(100))),
                },
                "cursor" => Pagination::Cursor {
                    param: raw.param.clone().unwrap_or_else(|| "cursor".into()),
                    pointer: raw.pointer.clone().or_else(|| {
                        p.add(
                            format!("{key}.pointer"),
                            "missing: where the next cursor is in a page",
                        );
                        None
                    })?,
                    has_more: raw.has_more.clone(),
                },
                other => {
                    p.add(
                        format!("{key}.kind"),
                        format!("\"{other}\" is not one of none, link, next_url, page, cursor"),
                    );
                    return None;
                }
            }
        }
    };
    let limit = |p: &mut Problems, key: &str, value: Option<i64>, default: usize| match value {
        None => default,
        Some(n) if n > 0 => n as usize,
        Some(n) => {
            p.add(key, format!("{n} must be above 0"));
            default
        }
    };
    let since_unix = match s.since_format.as_deref().unwrap_or("rfc3339") {
        "rfc3339" => false,
        "unix" => true,
        other => {
            p.add(
                "source.since_format",
                format!("\"{other}\" is not one of rfc3339, unix"),
            );
            false
        }
    };
    let max_page_bytes = match &s.max_page_bytes {
        None => DEFAULT_MAX_PAGE_BYTES,
        Some(raw) => p
            .take("source.max_page_bytes", parse_bytes(raw))
            .unwrap_or(DEFAULT_MAX_PAGE_BYTES),
    };
    let allowed_origins: Vec<String> = s
        .allowed_origins
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, text)| p.take(&format!("source.allowed_origins[{i}]"), parse_origin(text)))
        .collect();
    let source_url = parse_request_url(p, "source.url", url);
    let sideload = http_fields::joins(p, s, source_url.as_ref(), &allowed_origins);
    let per_ticket = http_fields::per_ticket(p, s, source_url.as_ref(), &allowed_origins);
    if let Some(pointer) = &s.items_by_id
        && !pointer.starts_with('/')
    {
        p.add(
            "source.items_by_id",
            format!("\"{pointer}\" is not a JSON pointer (it starts with /)"),
        );
    }
    Some(HttpSourceSettings {
        auth,
        items: s.items.clone().unwrap_or_default(),
        items_by_id: s.items_by_id.clone(),
        fields,
        extra_fields: s.extra_fields.unwrap_or(false),
        pagination,
        max_pages: limit(p, "source.max_pages", s.max_pages, 1000),
        max_rows: limit(p, "source.max_rows", s.max_rows, 1_000_000),
        max_page_bytes,
        allowed_origins,
        since_param: s.since_param.clone(),
        params: s
            .params
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        since_unix,
        waiting_states: s
            .waiting_states
            .as_ref()
            .map(|list| list.iter().map(|v| v.to_lowercase()).collect()),
        waiting_when: http_fields::waiting_when(p, s),
        sideload,
        per_ticket,
    })
}

/// A URL that requests (and credentials) go to, parsed; a problem at `key`
/// when it does not parse or when it reads as another host than meant.
pub(super) fn parse_request_url(p: &mut Problems, key: &str, url: &str) -> Option<reqwest::Url> {
    match reqwest::Url::parse(url) {
        Ok(parsed) => {
            if parsed.username().is_empty()
                && parsed.password().is_none()
                && parsed.path().contains('@')
            {
                // `https://u:/pw@host` is host `u` with the password in its
                // path: the request would go to `u`, password and all.
                p.add(
                    key,
                    "has an @ in its path and no user info: percent-encode a password's / ? # \
                     (%2F %3F %23), or write an @ that belongs to the path as %40",
                );
            }
            Some(parsed)
        }
        Err(e) => {
            p.add(
                key,
                format!("{} is not a URL: {e}", crate::secret::redact_url(url)),
            );
            None
        }
    }
}

/// Bytes as an integer or with a unit: `33554432`, `"32MiB"`, `"500 kB"`.
fn parse_bytes(raw: &RawBytes) -> Result<u64, String> {
    let hint = "write e.g. 33554432, \"32MiB\" or \"512KiB\"";
    let bytes = match raw {
        RawBytes::Count(n) => u64::try_from(*n).ok(),
        RawBytes::Text(text) => {
            let text = text.trim();
            let split = text
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(text.len());
            let (digits, unit) = text.split_at(split);
            let factor: Option<u64> = match unit.trim().to_ascii_lowercase().as_str() {
                "" | "b" => Some(1),
                "kb" => Some(1_000),
                "mb" => Some(1_000_000),
                "gb" => Some(1_000_000_000),
                "kib" => Some(1 << 10),
                "mib" => Some(1 << 20),
                "gib" => Some(1 << 30),
                _ => None,
            };
            digits
                .parse::<u64>()
                .ok()
                .zip(factor)
                .and_then(|(n, f)| n.checked_mul(f))
        }
    };
    let shown = match raw {
        RawBytes::Count(n) => n.to_string(),
        RawBytes::Text(text) => format!("\"{text}\""),
    };
    match bytes {
        Some(0) => Err(format!("{shown} must be above 0")),
        Some(n) => Ok(n),
        None => Err(format!("{shown} is not a size in bytes ({hint})")),
    }
}

/// `scheme://host[:port]` as `Url::origin` serializes it (lower case, the
/// default port left out), so that it compares with a page URL's origin.
fn parse_origin(text: &str) -> Result<String, String> {
    let shown = crate::secret::redact_url(text);
    let form = "write scheme://host[:port], e.g. \"https://api2.example.com\"";
    let url = reqwest::Url::parse(text.trim())
        .map_err(|e| format!("\"{shown}\" is not an origin ({e}; {form})"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!(
            "\"{shown}\" is not an http or https origin ({form})"
        ));
    }
    if !url.username().is_empty()
        || url.password().is_some()
        || url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(format!(
            "\"{shown}\" is more than an origin: no credentials, path or query ({form})"
        ));
    }
    Ok(url.origin().ascii_serialization())
}

fn required_secret(
    p: &mut Problems,
    stem: &str,
    env: Option<&String>,
    file: Option<&String>,
) -> Option<SecretString> {
    let secret = read_secret(p, "source", stem, env, file);
    if secret.is_none() && env.is_none() && file.is_none() {
        p.add(
            format!("source.{stem}_env"),
            format!("missing: set {stem}_env or {stem}_file"),
        );
    }
    secret
}
