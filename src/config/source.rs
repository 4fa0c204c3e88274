//! `[source]`: a SQL query against the helpdesk database, or an HTTP API
//! mapped onto the ticket column contract; either may come from a preset.
//! The API's own settings are read in `http_source.rs`, the wait clock in
//! `clocks.rs`.

use std::time::Duration;

use chrono_tz::Tz;

use super::http_source::{self, HttpSourceSettings};
use super::raw::RawConfig;
use super::settings::{Problems, parse_duration, parse_zone, read_secret};
use super::{clocks, http_fields};
use crate::secret::SecretUrl;

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
    let clock = clocks::chosen_clock(p, s);
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
        let mut http = http_source::http_settings(p, s, &url)?;
        out.clock = clocks::apply_http_clock(p, s, clock, &mut http.fields);
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
    let clock = clocks::SqlClock::new(p, s, clock);
    let query = clock.clocked(p, "query", s.query.as_ref());
    if query.is_none() {
        p.add(
            "source.query",
            "missing: the SQL query that selects the waiting tickets",
        );
    }
    clocks::check_replaced_query(p, s);
    out.recheck_query = clock.clocked(p, "recheck_query", s.recheck_query.as_ref());
    if let Some(q) = &out.recheck_query
        && !super::query_parameters::has_id_parameter(q)
    {
        p.add(
            "source.recheck_query",
            "must use the ticket id parameter :id (or $1 / ?)",
        );
    }
    out.incremental_query = clock.clocked(p, "incremental_query", s.incremental_query.as_ref());
    out.clock = clock.in_effect(s);
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
