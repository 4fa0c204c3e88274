//! The config file as written by ops: plain serde structs, every table
//! `deny_unknown_fields` so a typo is an error, not a silently ignored key.
//! `settings.rs` turns this into typed values.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub daemon: RawDaemon,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub http: RawHttp,
    pub source: RawSource,
    #[serde(default)]
    pub wording: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    pub calendars: BTreeMap<String, RawCalendar>,
    #[serde(default)]
    pub policies: Vec<RawPolicy>,
    #[serde(default)]
    pub channels: BTreeMap<String, RawChannel>,
    #[serde(default)]
    pub templates: RawTemplates,
    #[serde(default)]
    pub suppress: RawSuppress,
    #[serde(default)]
    pub limits: RawLimits,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSuppress {
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub domains: Vec<String>,
    pub file: Option<String>,
    pub auto: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub per_recipient: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    pub timezone: Option<String>,
    pub default_language: Option<String>,
    pub poll_interval: Option<String>,
    pub max_snapshot_age: Option<String>,
    pub dry_run: Option<bool>,
    pub shutdown_timeout: Option<String>,
    pub log_format: Option<String>,
    pub repeat_log_every: Option<String>,
    pub promise_grace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub url: Option<String>,
    pub claim_lease: Option<String>,
    pub history_retention: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub listen: Option<String>,
    pub max_connections: Option<i64>,
    pub header_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub admin_token_env: Option<String>,
    pub admin_token_file: Option<String>,
    pub ui: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub preset: Option<String>,
    pub kind: Option<String>,
    pub url: Option<String>,
    pub url_env: Option<String>,
    pub url_file: Option<String>,
    /// http: no warning when credentials go over plain http://.
    pub allow_insecure: Option<bool>,
    pub query: Option<String>,
    pub recheck_query: Option<String>,
    pub incremental_query: Option<String>,
    pub full_resync: Option<String>,
    pub overlap: Option<String>,
    pub timezone: Option<String>,
    pub timeout: Option<String>,
    pub connect_timeout: Option<String>,
    pub max_skipped_share: Option<f64>,
    /// Which contact starts a wait: a mode the preset defines in `clocks`.
    pub clock: Option<String>,
    /// The preset's wait clocks: mode → SQL expression (`{waiting_since}`
    /// in the queries), JSON pointers or a field table
    /// (`fields.waiting_since`), or a refusal with its reason.
    #[serde(default)]
    pub clocks: BTreeMap<String, RawClock>,
    /// The helpdesk's ticket marker for subjects, e.g. `[Ticket#{number}]`.
    pub subject_marker: Option<String>,
    // http
    pub auth: Option<String>,
    pub token_env: Option<String>,
    pub token_file: Option<String>,
    pub username: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<String>,
    pub header: Option<String>,
    pub items: Option<String>,
    #[serde(default)]
    pub fields: BTreeMap<String, RawField>,
    /// The items are ids; their objects are at this pointer, keyed by id.
    pub items_by_id: Option<String>,
    pub extra_fields: Option<bool>,
    pub pagination: Option<RawPagination>,
    pub max_pages: Option<i64>,
    pub max_rows: Option<i64>,
    pub max_page_bytes: Option<RawBytes>,
    pub allowed_origins: Option<Vec<String>>,
    pub since_param: Option<String>,
    pub since_format: Option<String>,
    /// Query parameters every page request carries (a stable sort).
    pub params: Option<BTreeMap<String, String>>,
    pub waiting_states: Option<Vec<String>>,
    pub waiting_when: Option<RawWaitingWhen>,
    #[serde(default)]
    pub sideload: BTreeMap<String, RawSideload>,
    #[serde(default)]
    pub lookup: BTreeMap<String, RawLookup>,
    #[serde(default)]
    pub per_ticket: BTreeMap<String, RawPerTicket>,
}

/// One wait clock of a preset: a SQL expression, the pointers or the
/// field table of `fields.waiting_since`, or a clock the preset cannot
/// offer, with the reason. `Invalid` keeps a malformed entry so that
/// `source.rs` can name the forms instead of serde's "no variant matched".
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawClock {
    Sql(String),
    Pointers(Vec<String>),
    Unsupported(RawUnsupported),
    Field(RawFieldTable),
    Invalid(serde::de::IgnoredAny),
}

/// `{ unsupported = "why" }`: the preset knows this clock and why its
/// helpdesk cannot give it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUnsupported {
    pub unsupported: String,
}

/// How an http source reads one column: a pointer, several, or a table
/// with a transform. `Invalid` as in [`RawClock`].
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawField {
    One(String),
    Many(Vec<String>),
    Table(RawFieldTable),
    Invalid(serde::de::IgnoredAny),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFieldTable {
    pub pointer: Pointers,
    /// Every non-blank value, joined with this separator.
    pub join: Option<String>,
    /// A regular expression; its first match is removed from the value.
    pub remove: Option<String>,
    /// waiting_since only: no wait when the latest of these is at or after it.
    pub unless_at_or_after: Option<Pointers>,
}

/// `waiting_when = { pointer = "/state/type_id", in = [1, 2] }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWaitingWhen {
    pub pointer: String,
    #[serde(rename = "in")]
    pub values: Vec<RawScalar>,
}

/// A value to compare with: text, an integer or a boolean.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawScalar {
    Int(i64),
    Bool(bool),
    Text(String),
}

/// A size in bytes: an integer, or text with a unit (`"32MiB"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawBytes {
    Count(i64),
    Text(String),
}

/// One JSON pointer, or several: the latest timestamp (or first value) wins.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Pointers {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPagination {
    pub kind: String,
    pub param: Option<String>,
    pub start: Option<i64>,
    pub size_param: Option<String>,
    pub size: Option<i64>,
    pub pointer: Option<String>,
    pub has_more: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSideload {
    pub items: String,
    pub key: Option<String>,
    pub reference: String,
}

/// A list fetched once per poll (`GET url`) and joined into each item
/// like a side-loaded one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLookup {
    pub url: String,
    pub items: Option<String>,
    pub key: Option<String>,
    pub reference: String,
}

/// A request per waiting ticket (`GET url` with `{id}`), its answer (or
/// the first listed object that matches) joined into the item.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPerTicket {
    pub url: String,
    pub items: Option<String>,
    pub first: Option<RawFirst>,
}

/// `first = { pointer = "/sender", in = ["Customer"], nonblank = "/message_id" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFirst {
    pub pointer: String,
    #[serde(rename = "in")]
    pub values: Vec<RawScalar>,
    pub nonblank: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCalendar {
    pub timezone: Option<String>,
    #[serde(default)]
    pub hours: BTreeMap<String, String>,
    #[serde(default)]
    pub holidays: Vec<String>,
    pub holidays_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub name: String,
    #[serde(default, rename = "match")]
    pub matcher: BTreeMap<String, MatchValue>,
    pub after: String,
    pub repeat_every: Option<String>,
    pub max_notices: Option<i64>,
    pub calendar: Option<String>,
    pub send_at: Option<String>,
    pub window_zone: Option<String>,
    pub channel: String,
    pub template: String,
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
}

/// `state = "open"`, `state = ["open", "new"]` or `extra = { product = [...] }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum MatchValue {
    One(String),
    Many(Vec<String>),
    Nested(BTreeMap<String, MatchValue>),
}

/// One flat table for every channel kind; `settings.rs` rejects the keys a
/// kind does not use, naming them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChannel {
    pub kind: String,
    // email
    pub host: Option<String>,
    pub port: Option<u16>,
    pub tls: Option<String>,
    pub username: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<String>,
    pub from: Option<String>,
    pub reply_to: Option<String>,
    // webhook
    pub url: Option<String>,
    pub secret_env: Option<String>,
    pub secret_file: Option<String>,
    // file
    pub path: Option<String>,
    pub format: Option<String>,
    // email and webhook: no warning about cleartext
    pub allow_insecure: Option<bool>,
    // every kind
    pub timeout: Option<String>,
    pub concurrency: Option<i64>,
    pub rate: Option<f64>,
    pub retry_initial: Option<String>,
    pub retry_max: Option<String>,
    pub retry_for: Option<String>,
    pub max_attempts: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTemplates {
    pub dir: Option<String>,
}
