//! `[source]`: a SQL query against the helpdesk database, or an HTTP API
//! mapped onto the ticket column contract; either may come from a preset.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono_tz::Tz;

use super::http_fields::{self, FieldMap, PerTicket, Sideload, WaitingWhen};
use super::raw::{RawBytes, RawClock, RawConfig, RawField, RawSource};
use super::settings::{Problems, parse_duration, parse_zone, read_secret};
use crate::secret::{SecretString, SecretUrl};

#[derive(Debug, Clone)]
pub struct SourceSettings {
    /// The database URL (sql) or the first page's URL (http).
    pub url: SecretUrl,
    /// http: the operator accepts credentials over plain `http://`.
    pub allow_insecure: bool,
    /// sql: the waiting tickets. Empty for http.
    pub query: String,
    /// sql: re-reads one ticket (`:id`) right before its notice is sent.
    pub recheck_query: Option<String>,
    /// sql: tickets changed since `:since` (closed ones included).
    pub incremental_query: Option<String>,
    /// http: the API settings.
    pub http: Option<HttpSourceSettings>,
    /// With incremental polls: how often a full poll runs anyway (to see
    /// deleted tickets).
    pub full_resync: Duration,
    /// How far before the watermark an incremental poll starts (clock skew,
    /// late commits).
    pub overlap: Duration,
    /// Zone of naive timestamps in source rows.
    pub timezone: Tz,
    pub timeout: Duration,
    /// How long the one-shot commands (`sources test`, `plan`, `preview`)
    /// wait for a SQL source to accept a connection, apart from `timeout`.
    pub connect_timeout: Duration,
    /// A poll that skips more than this share of its rows (or every row)
    /// for contract errors is a failed poll: a broken query must not look
    /// like "nobody waits" and cancel everything.
    pub max_skipped_share: f64,
    /// The wait clock in effect (`source.clock`), when the source defines
    /// clocks: shown by `sources test` and `plan`.
    pub clock: Option<String>,
    /// The helpdesk's ticket marker (`[Ticket#{number}]`), which templates
    /// put into the subject so that a customer's reply joins the ticket.
    pub subject_marker: Option<String>,
}

/// The wait clocks a preset may define, in the order they are documented.
pub const CLOCK_MODES: &[(&str, &str)] = &[
    (
        "last_public_contact",
        "any public message, from the customer or an agent, restarts the wait",
    ),
    (
        "agent_updates",
        "the wait restarts only when an agent writes publicly",
    ),
    (
        "customer_message",
        "the wait starts at the oldest customer message no agent has answered publicly",
    ),
];

/// `source.clock` when it is not set.
pub const DEFAULT_CLOCK: &str = "last_public_contact";

/// Where a SQL preset's query puts the clock's expression.
const CLOCK_PLACEHOLDER: &str = "{waiting_since}";

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

const SQL_ONLY: &[&str] = &["query", "recheck_query", "incremental_query"];

pub(super) fn source_settings(p: &mut Problems, raw: &RawConfig) -> Option<SourceSettings> {
    let s = &raw.source;
    let kind = s.kind.clone().unwrap_or_else(|| "sql".into());
    if kind != "sql" && kind != "http" {
        p.add("source.kind", format!("\"{kind}\" is not one of sql, http"));
        return None;
    }
    let url = match (
        &s.url,
        read_secret(p, "source", "url", s.url_env.as_ref(), s.url_file.as_ref()),
    ) {
        (Some(url), None) => Some(url.clone()),
        (None, Some(secret)) => Some(secrecy::ExposeSecret::expose_secret(&secret).to_owned()),
        (Some(_), Some(_)) => {
            p.add("source.url", "set either url or url_env/url_file, not both");
            None
        }
        (None, None) => {
            let what = if kind == "sql" {
                "the helpdesk database URL (sqlite://…, postgres://…, mysql://…)"
            } else {
                "the API URL of the first page (https://…)"
            };
            p.add("source.url", format!("missing: {what}"));
            None
        }
    }?;
    let schemes: &[&str] = if kind == "sql" {
        &["sqlite:", "postgres:", "postgresql:", "mysql:", "mariadb:"]
    } else {
        &["http://", "https://"]
    };
    if !schemes.iter().any(|scheme| url.starts_with(scheme)) {
        p.add(
            "source.url",
            format!(
                "\"{}\" is not a {} URL ({})",
                crate::secret::redact_url(&url),
                kind,
                schemes.join(", ")
            ),
        );
    }
    let full_resync = p.take(
        "source.full_resync",
        parse_duration(s.full_resync.as_deref().unwrap_or("1h")),
    )?;
    let overlap = p.take(
        "source.overlap",
        parse_duration(s.overlap.as_deref().unwrap_or("2m")),
    )?;
    let timezone = p.take(
        "source.timezone",
        parse_zone(s.timezone.as_deref().unwrap_or("UTC")),
    )?;
    let timeout = p.take(
        "source.timeout",
        parse_duration(s.timeout.as_deref().unwrap_or("60s")),
    )?;
    // Never longer than the whole poll may take.
    let connect_timeout = match &s.connect_timeout {
        None => timeout.min(Duration::from_secs(5)),
        Some(text) => {
            let connect = p.take("source.connect_timeout", parse_duration(text))?;
            if connect.is_zero() || connect > timeout {
                p.add(
                    "source.connect_timeout",
                    format!(
                        "must be longer than zero and at most source.timeout ({})",
                        humantime::format_duration(timeout)
                    ),
                );
            }
            connect
        }
    };
    let max_skipped_share = match s.max_skipped_share {
        None => 0.5,
        Some(share) if (0.0..=1.0).contains(&share) => share,
        Some(share) => {
            p.add(
                "source.max_skipped_share",
                format!("{share} is not a share between 0.0 and 1.0"),
            );
            0.5
        }
    };
    let mut out = SourceSettings {
        url: SecretUrl::new(url.replacen("mariadb:", "mysql:", 1)),
        allow_insecure: s.allow_insecure.unwrap_or(false),
        query: String::new(),
        recheck_query: None,
        incremental_query: None,
        http: None,
        full_resync,
        overlap,
        timezone,
        timeout,
        connect_timeout,
        max_skipped_share,
        clock: None,
        subject_marker: subject_marker(p, s.subject_marker.as_deref()),
    };
    let clock = chosen_clock(p, s);
    out.clock = clock.as_ref().map(|(mode, _)| mode.clone());
    if kind == "http" {
        for key in SQL_ONLY {
            let set = match *key {
                "query" => s.query.is_some(),
                "recheck_query" => s.recheck_query.is_some(),
                _ => s.incremental_query.is_some(),
            };
            if set {
                p.add(format!("source.{key}"), "not a key of an http source");
            }
        }
        let mut http = http_settings(p, s, &url)?;
        // Every clock is checked, not only the chosen one: a preset's or an
        // override's mistake shows in check-config before anyone picks it.
        let mut http_clocks = BTreeMap::new();
        for (mode, clock) in &s.clocks {
            let key = format!("source.clocks.{mode}");
            let field = match clock {
                RawClock::Pointers(pointers) => RawField::Many(pointers.clone()),
                // One pointer, as fields take it.
                RawClock::Sql(text) if text.starts_with('/') => RawField::One(text.clone()),
                RawClock::Field(table) => RawField::Table(table.clone()),
                RawClock::Sql(_) => {
                    p.add(
                        &key,
                        "an http source's clock is a list of JSON pointers or { pointer = [...], unless_at_or_after = [...] }, not SQL",
                    );
                    continue;
                }
                RawClock::Unsupported(_) | RawClock::Invalid(_) => continue,
            };
            if let Some(field) = http_fields::field_map(p, &key, "waiting_since", &field) {
                http_clocks.insert(mode.clone(), field);
            }
        }
        match clock {
            // Presets leave fields.waiting_since to their clocks: when it is
            // set, it is the operator's, and it wins unless a clock was
            // asked for too.
            Some(_)
                if s.fields
                    .keys()
                    .any(|k| k.eq_ignore_ascii_case("waiting_since")) =>
            {
                out.clock = None;
                if s.clock.is_some() {
                    p.add(
                        "source.clock",
                        "fields.waiting_since is set too: set one of them",
                    );
                }
            }
            Some((mode, _)) => {
                if let Some(field) = http_clocks.remove(&mode) {
                    http.fields.insert("waiting_since".into(), field);
                }
            }
            None => {}
        }
        http_fields::check_per_ticket_reads(
            p,
            &http.fields,
            http.waiting_when.as_ref(),
            http.waiting_states.is_some(),
            &http.per_ticket,
        );
        out.http = Some(http);
        return Some(out);
    }
    if s.items.is_some()
        || s.items_by_id.is_some()
        || !s.fields.is_empty()
        || !s.sideload.is_empty()
        || !s.lookup.is_empty()
        || !s.per_ticket.is_empty()
        || s.waiting_when.is_some()
        || s.pagination.is_some()
        || s.auth.is_some()
        || s.since_param.is_some()
        || s.params.is_some()
        || s.allow_insecure.is_some()
        || s.allowed_origins.is_some()
        || s.max_page_bytes.is_some()
    {
        p.add(
            "source",
            "items, items_by_id, fields, sideload, lookup, per_ticket, waiting_when, pagination, auth, since_param, params, allow_insecure, allowed_origins and max_page_bytes belong to kind = \"http\"",
        );
    }
    let expression = match clock {
        Some((_, RawClock::Sql(expression))) => Some(expression),
        Some((mode, _)) => {
            p.add(
                format!("source.clocks.{mode}"),
                "a sql source's clock is a SQL expression, not JSON pointers",
            );
            None
        }
        None => None,
    };
    let clocked = |p: &mut Problems, key: &str, query: Option<&String>| {
        let query = query.filter(|q| !q.trim().is_empty())?;
        match &expression {
            Some(expression) if query.contains(CLOCK_PLACEHOLDER) => {
                Some(query.replace(CLOCK_PLACEHOLDER, &format!("({expression})")))
            }
            Some(_) if s.clock.is_some() => {
                p.add(
                    format!("source.{key}"),
                    format!(
                        "does not use {CLOCK_PLACEHOLDER}, so source.clock has no effect on it: compute waiting_since in it yourself, or remove source.clock"
                    ),
                );
                Some(query.clone())
            }
            None if query.contains(CLOCK_PLACEHOLDER) => {
                p.add(
                    format!("source.{key}"),
                    format!("uses {CLOCK_PLACEHOLDER}, but the source defines no clocks"),
                );
                Some(query.clone())
            }
            _ => Some(query.clone()),
        }
    };
    let query = clocked(p, "query", s.query.as_ref());
    if query.is_none() {
        p.add(
            "source.query",
            "missing: the SQL query that selects the waiting tickets",
        );
    }
    // An operator who replaces a preset's query computes waiting_since
    // their own way; the preset's recheck and incremental queries would
    // still read the preset's clock, so a re-read before each send would
    // see another wait (and cancel the notice) and polls would disagree.
    let own_query = s
        .query
        .as_ref()
        .is_some_and(|q| !q.trim().is_empty() && !q.contains(CLOCK_PLACEHOLDER));
    for (key, other) in [
        ("recheck_query", &s.recheck_query),
        ("incremental_query", &s.incremental_query),
    ] {
        if own_query
            && other
                .as_ref()
                .is_some_and(|q| q.contains(CLOCK_PLACEHOLDER))
        {
            p.add(
                format!("source.{key}"),
                format!(
                    "reads waiting_since with the clock ({CLOCK_PLACEHOLDER}), but source.query computes it without: both would see different waits; override {key} too, or set it to \"\" to turn it off"
                ),
            );
        }
    }
    out.recheck_query = clocked(p, "recheck_query", s.recheck_query.as_ref());
    if let Some(q) = &out.recheck_query
        && !super::query_parameters::has_id_parameter(q)
    {
        p.add(
            "source.recheck_query",
            "must use the ticket id parameter :id (or $1 / ?)",
        );
    }
    out.incremental_query = clocked(p, "incremental_query", s.incremental_query.as_ref());
    if !s
        .query
        .as_ref()
        .is_some_and(|q| q.contains(CLOCK_PLACEHOLDER))
    {
        out.clock = None;
    }
    if let Some(q) = &out.incremental_query
        && super::query_parameters::since_parameter(q).is_none()
    {
        p.add(
            "source.incremental_query",
            "must use the watermark parameter :since (or :since_unix)",
        );
    }
    out.query = query?;
    Some(out)
}

/// `source.subject_marker`: one line with `{number}` in it; "" turns a
/// preset's marker off.
fn subject_marker(p: &mut Problems, raw: Option<&str>) -> Option<String> {
    let marker = raw?.trim();
    if marker.is_empty() {
        return None;
    }
    if !marker.contains("{number}") {
        p.add(
            "source.subject_marker",
            format!(
                "\"{marker}\" has no {{number}}: the helpdesk finds the ticket by its number, e.g. \"[Ticket#{{number}}]\""
            ),
        );
        return None;
    }
    if marker.chars().any(char::is_control) {
        p.add("source.subject_marker", "must be one line");
        return None;
    }
    Some(marker.to_owned())
}

/// The clock `source.clock` names (default: last_public_contact) and its
/// definition from `source.clocks`; none when the source defines no clocks.
/// A refused clock (`{ unsupported = "why" }`) is an error naming the
/// preset and its reason, with the clocks that are there.
fn chosen_clock(p: &mut Problems, s: &RawSource) -> Option<(String, RawClock)> {
    let whose = match &s.preset {
        Some(preset) => format!("preset {preset}"),
        None => "this source".to_owned(),
    };
    // The clocks this source offers, in their documented order, the
    // default marked.
    let offered = CLOCK_MODES
        .iter()
        .map(|(mode, _)| *mode)
        .filter(|mode| {
            s.clocks.get(*mode).is_some_and(|clock| {
                !matches!(clock, RawClock::Unsupported(_) | RawClock::Invalid(_))
            })
        })
        .map(|mode| {
            if mode == DEFAULT_CLOCK {
                format!("{mode} (default)")
            } else {
                mode.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    for (mode, clock) in &s.clocks {
        let key = format!("source.clocks.{mode}");
        if !CLOCK_MODES.iter().any(|(known, _)| known == mode) {
            let modes: Vec<&str> = CLOCK_MODES.iter().map(|(mode, _)| *mode).collect();
            p.add(
                &key,
                format!("\"{mode}\" is not a clock (clocks: {})", modes.join(", ")),
            );
        }
        if let RawClock::Invalid(_) = clock {
            p.add(
                &key,
                "must be a SQL expression (sql), a list of JSON pointers or { pointer = [...], unless_at_or_after = [...] } (http), or { unsupported = \"why\" }",
            );
        }
    }
    if s.clocks.is_empty() {
        if s.clock.is_some() {
            p.add(
                "source.clock",
                "this source defines no clocks (the presets do): your query or fields.waiting_since decide when a wait starts",
            );
        }
        return None;
    }
    let mode = s.clock.clone().unwrap_or_else(|| DEFAULT_CLOCK.into());
    if !CLOCK_MODES.iter().any(|(known, _)| *known == mode) {
        p.add(
            "source.clock",
            format!("\"{mode}\" is not a clock; choose one of {offered}"),
        );
        return None;
    }
    match s.clocks.get(&mode) {
        Some(RawClock::Unsupported(refused)) => {
            p.add(
                "source.clock",
                format!(
                    "\"{mode}\" is not available with {whose}: {}; choose one of {offered}",
                    refused.unsupported.trim().trim_end_matches('.')
                ),
            );
            None
        }
        Some(RawClock::Invalid(_)) => None,
        Some(clock) => Some((mode, clock.clone())),
        None => {
            p.add(
                "source.clock",
                format!("\"{mode}\" is not available with {whose}; choose one of {offered}"),
            );
            None
        }
    }
}

/// `url` is the first page's (from `url`, `url_env` or `url_file`).
fn http_settings(p: &mut Problems, s: &RawSource, url: &str) -> Option<HttpSourceSettings> {
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
    let source_url = match reqwest::Url::parse(url) {
        Ok(parsed) => Some(parsed),
        Err(e) => {
            p.add(
                "source.url",
                format!("{} is not a URL: {e}", crate::secret::redact_url(url)),
            );
            None
        }
    };
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
