//! Typed, validated configuration. Every raw string becomes a typed value
//! here (durations, zones, cron schedules, addresses, secrets); every
//! mistake becomes a `key.path: reason` line.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use chrono_tz::Tz;
use lettre::message::Mailbox;

use super::raw::{MatchValue, RawCalendar, RawChannel, RawConfig, RawPolicy};
pub use super::source::SourceSettings;
use crate::calendar::{Calendar, parse_day_hours, weekday_index};
use crate::policy::{MatchField, Matcher, Policy};
use crate::schedule::{SendAt, SendWindow};
use crate::secret::{SecretString, SecretUrl};

#[derive(Debug, Clone)]
pub struct Settings {
    pub daemon: DaemonSettings,
    pub store: StoreSettings,
    pub http: HttpSettings,
    pub source: SourceSettings,
    /// language -> helpdesk state -> what the customer reads
    pub wording: HashMap<String, HashMap<String, String>>,
    pub calendars: BTreeMap<String, Arc<Calendar>>,
    pub policies: Vec<Policy>,
    pub channels: BTreeMap<String, ChannelSettings>,
    pub templates_dir: PathBuf,
    pub suppress: SuppressSettings,
    pub limits: LimitSettings,
    /// Non-fatal findings worth telling ops (`check-config` prints them).
    pub warnings: Vec<String>,
}

/// Recipients that never get a notice.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SuppressSettings {
    /// Lower-case addresses.
    pub addresses: BTreeSet<String>,
    /// Lower-case domains (without `@`).
    pub domains: BTreeSet<String>,
    /// A file ops may append to: one address or `@domain` a line.
    pub file: Option<PathBuf>,
    /// Suppress an address after a permanent rejection of the recipient.
    pub auto: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimitSettings {
    /// At most one notice per recipient address per this period, across
    /// tickets and policies.
    pub per_recipient: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct DaemonSettings {
    pub timezone: Tz,
    pub default_language: String,
    pub poll_interval: Duration,
    pub max_snapshot_age: Duration,
    pub dry_run: bool,
    pub shutdown_timeout: Duration,
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Auto,
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub url: SecretUrl,
    pub claim_lease: Duration,
}

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone)]
pub struct ChannelSettings {
    pub name: String,
    pub kind: ChannelKind,
    /// One attempt's time limit; shorter than `store.claim_lease`, so a
    /// claim never expires while its send may still be running.
    pub timeout: Duration,
    pub concurrency: usize,
    /// Messages per second at most (None: unlimited).
    pub rate: Option<f64>,
    pub retry: RetryPolicy,
}

#[derive(Debug, Clone)]
pub enum ChannelKind {
    Email(EmailSettings),
    Webhook(WebhookSettings),
    File(FileSettings),
}

impl ChannelKind {
    pub fn name(&self) -> &'static str {
        match self {
            ChannelKind::Email(_) => "email",
            ChannelKind::Webhook(_) => "webhook",
            ChannelKind::File(_) => "file",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    StartTls,
    Tls,
    None,
}

#[derive(Debug, Clone)]
pub struct EmailSettings {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub from: Mailbox,
    pub reply_to: Option<Mailbox>,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub url: SecretUrl,
    /// The signing key: the bytes behind `whsec_BASE64`.
    pub key: Arc<SecretBytes>,
    pub timeout: Duration,
}

/// Key bytes that never print.
pub struct SecretBytes(pub Vec<u8>);

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, Clone)]
pub struct FileSettings {
    pub path: PathBuf,
    pub format: FileFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Eml,
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub retry_for: Duration,
    pub max_attempts: Option<u32>,
}

pub const DEFAULT_CONFIG_PATH: &str = "config/interim.toml";

/// Collects `key: reason` lines so that one run of `check-config` shows
/// every mistake, not just the first.
#[derive(Default)]
pub struct Problems {
    pub lines: Vec<String>,
}

impl Problems {
    pub fn add(&mut self, key: impl AsRef<str>, reason: impl AsRef<str>) {
        self.lines
            .push(format!("{}: {}", key.as_ref(), reason.as_ref()));
    }

    pub(super) fn take<T>(&mut self, key: &str, result: Result<T, String>) -> Option<T> {
        result.map_err(|reason| self.add(key, reason)).ok()
    }
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        format!("invalid duration \"{text}\": {e} (write e.g. \"90s\", \"4h\", \"2d\")")
    })
}

pub(super) fn parse_zone(text: &str) -> Result<Tz, String> {
    text.parse::<Tz>().map_err(|_| {
        format!("unknown time zone \"{text}\" (use an IANA name like \"Europe/Berlin\")")
    })
}

/// Reads a secret from the environment variable or file a `*_env` /
/// `*_file` key names. The value itself never enters an error message.
pub(super) fn read_secret(
    problems: &mut Problems,
    base: &str,
    stem: &str,
    env: Option<&String>,
    file: Option<&String>,
) -> Option<SecretString> {
    match (env, file) {
        (Some(_), Some(_)) => {
            problems.add(
                format!("{base}.{stem}_env"),
                format!("set either {stem}_env or {stem}_file, not both"),
            );
            None
        }
        (Some(var), None) => match std::env::var(var) {
            Ok(value) => Some(SecretString::from(value)),
            Err(_) => {
                problems.add(
                    format!("{base}.{stem}_env"),
                    format!("environment variable {var} is not set"),
                );
                None
            }
        },
        (None, Some(path)) => {
            let full = PathBuf::from(path);
            match std::fs::read_to_string(&full) {
                Ok(value) => Some(SecretString::from(
                    value.trim_end_matches(['\n', '\r']).to_owned(),
                )),
                Err(e) => {
                    problems.add(
                        format!("{base}.{stem}_file"),
                        format!("cannot read {}: {e}", full.display()),
                    );
                    None
                }
            }
        }
        (None, None) => None,
    }
}

impl Settings {
    /// Validates a raw config. Relative paths (store, templates, outboxes,
    /// holidays and secret files) are relative to the working directory.
    pub fn from_raw(raw: RawConfig) -> Result<Settings, Vec<String>> {
        let mut p = Problems::default();
        let mut warnings = Vec::new();

        let d = &raw.daemon;
        let timezone = p
            .take(
                "daemon.timezone",
                parse_zone(d.timezone.as_deref().unwrap_or("UTC")),
            )
            .unwrap_or(chrono_tz::UTC);
        let default_language = d
            .default_language
            .clone()
            .unwrap_or_else(|| "en".into())
            .to_lowercase();
        let duration = |p: &mut Problems, key: &str, value: &Option<String>, default: &str| {
            p.take(key, parse_duration(value.as_deref().unwrap_or(default)))
                .unwrap_or_default()
        };
        let poll_interval = duration(&mut p, "daemon.poll_interval", &d.poll_interval, "30s");
        if poll_interval.is_zero()
            && parse_duration(d.poll_interval.as_deref().unwrap_or("30s")).is_ok()
        {
            p.add("daemon.poll_interval", "must be longer than zero");
        }
        let max_snapshot_age =
            duration(&mut p, "daemon.max_snapshot_age", &d.max_snapshot_age, "5m");
        if max_snapshot_age < poll_interval {
            p.add(
                "daemon.max_snapshot_age",
                format!(
                    "must be at least daemon.poll_interval ({}), or nothing would ever be sent",
                    humantime::format_duration(poll_interval)
                ),
            );
        }
        let shutdown_timeout = duration(
            &mut p,
            "daemon.shutdown_timeout",
            &d.shutdown_timeout,
            "30s",
        );
        let log_format = match d.log_format.as_deref().unwrap_or("auto") {
            "auto" => LogFormat::Auto,
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                p.add(
                    "daemon.log_format",
                    format!("\"{other}\" is not one of auto, text, json"),
                );
                LogFormat::Auto
            }
        };
        let daemon = DaemonSettings {
            timezone,
            default_language,
            poll_interval,
            max_snapshot_age,
            dry_run: d.dry_run.unwrap_or(false),
            shutdown_timeout,
            log_format,
        };

        let store_url = raw
            .store
            .url
            .clone()
            .unwrap_or_else(|| "sqlite://var/interim.db".into());
        if !["sqlite:", "postgres:", "postgresql:"]
            .iter()
            .any(|scheme| store_url.starts_with(scheme))
        {
            p.add(
                "store.url",
                format!(
                    "unsupported store \"{}\": use sqlite://PATH (one machine) or postgres://… (several instances)",
                    crate::secret::redact_url(&store_url)
                ),
            );
        }
        let store = StoreSettings {
            url: SecretUrl::new(store_url),
            claim_lease: duration(&mut p, "store.claim_lease", &raw.store.claim_lease, "30s"),
        };

        let listen = raw
            .http
            .listen
            .clone()
            .unwrap_or_else(|| "127.0.0.1:9464".into());
        let http = HttpSettings {
            listen: p
                .take(
                    "http.listen",
                    listen.parse().map_err(|_| {
                        format!("\"{listen}\" is not an address like \"127.0.0.1:9464\"")
                    }),
                )
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9464))),
        };

        let source = super::source::source_settings(&mut p, &raw);

        let wording = raw
            .wording
            .iter()
            .map(|(lang, map)| {
                (
                    lang.to_lowercase(),
                    map.iter()
                        .map(|(k, v)| (k.to_lowercase(), v.clone()))
                        .collect(),
                )
            })
            .collect();

        let calendars: BTreeMap<String, Arc<Calendar>> = raw
            .calendars
            .iter()
            .filter_map(|(name, cal)| {
                calendar_settings(&mut p, name, cal, timezone).map(|c| (name.clone(), Arc::new(c)))
            })
            .collect();

        let channels: BTreeMap<String, ChannelSettings> = raw
            .channels
            .iter()
            .filter_map(|(name, ch)| channel_settings(&mut p, name, ch).map(|c| (name.clone(), c)))
            .collect();

        for (name, channel) in &channels {
            if channel.timeout >= store.claim_lease {
                p.add(
                    format!("channels.{name}.timeout"),
                    format!(
                        "{} must be shorter than store.claim_lease ({}), or a claim could expire while its send is still running",
                        humantime::format_duration(channel.timeout),
                        humantime::format_duration(store.claim_lease)
                    ),
                );
            }
        }

        let mut names = BTreeSet::new();
        let mut policies = Vec::new();
        for (index, rp) in raw.policies.iter().enumerate() {
            let key = format!("policies[{index}]");
            if !names.insert(rp.name.clone()) {
                p.add(
                    format!("{key}.name"),
                    format!("duplicate policy name \"{}\"", rp.name),
                );
            }
            if let Some(policy) =
                policy_settings(&mut p, &key, rp, &daemon, &calendars, &raw, &mut warnings)
            {
                policies.push(policy);
            }
        }
        if raw.policies.is_empty() {
            warnings.push("no [[policies]]: nothing will ever be sent".into());
        }
        if raw.channels.is_empty() {
            p.add("channels", "no channel is configured");
        }

        let templates_dir =
            PathBuf::from(raw.templates.dir.as_deref().unwrap_or("config/templates"));
        let suppress = suppress_settings(&mut p, &raw.suppress, &mut warnings);
        let limits = LimitSettings {
            per_recipient: match &raw.limits.per_recipient {
                Some(text) => p.take("limits.per_recipient", parse_duration(text)),
                None => None,
            },
        };

        if !p.lines.is_empty() {
            return Err(p.lines);
        }
        let source = source.ok_or_else(|| vec!["source: invalid".to_string()])?;
        Ok(Settings {
            daemon,
            store,
            http,
            source,
            wording,
            calendars,
            policies,
            channels,
            templates_dir,
            suppress,
            limits,
            warnings,
        })
    }
}

fn suppress_settings(
    p: &mut Problems,
    raw: &super::raw::RawSuppress,
    warnings: &mut Vec<String>,
) -> SuppressSettings {
    let mut out = SuppressSettings {
        auto: raw.auto.unwrap_or(true),
        file: raw.file.as_ref().map(PathBuf::from),
        ..SuppressSettings::default()
    };
    for (i, address) in raw.addresses.iter().enumerate() {
        match address.trim().parse::<lettre::Address>() {
            Ok(a) => {
                out.addresses.insert(a.to_string().to_lowercase());
            }
            Err(_) => p.add(
                format!("suppress.addresses[{i}]"),
                format!("\"{address}\" is not an email address"),
            ),
        }
    }
    for (i, domain) in raw.domains.iter().enumerate() {
        let domain = domain.trim().trim_start_matches('@').to_lowercase();
        if domain.is_empty() || domain.contains(['@', ' ']) {
            p.add(
                format!("suppress.domains[{i}]"),
                format!("\"{domain}\" is not a domain like \"example.com\""),
            );
        } else {
            out.domains.insert(domain);
        }
    }
    if let Some(file) = &out.file {
        match crate::suppress::read_file(file) {
            Ok((_, problems)) => {
                for (line, reason) in problems {
                    p.add(format!("suppress.file ({}:{line})", file.display()), reason);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => warnings.push(format!(
                "suppress.file: {} does not exist yet; it is read once it does",
                file.display()
            )),
            Err(e) => p.add(
                "suppress.file",
                format!("cannot read {}: {e}", file.display()),
            ),
        }
    }
    out
}

fn calendar_settings(
    p: &mut Problems,
    name: &str,
    raw: &RawCalendar,
    default_tz: Tz,
) -> Option<Calendar> {
    let key = format!("calendars.{name}");
    let timezone = match &raw.timezone {
        Some(zone) => p.take(&format!("{key}.timezone"), parse_zone(zone))?,
        None => default_tz,
    };
    let mut hours: [Vec<_>; 7] = Default::default();
    for (day, spec) in &raw.hours {
        let Some(index) = weekday_index(day) else {
            p.add(
                format!("{key}.hours.{day}"),
                "unknown weekday (use mon, tue, wed, thu, fri, sat, sun)",
            );
            continue;
        };
        if let Some(intervals) = p.take(&format!("{key}.hours.{day}"), parse_day_hours(spec)) {
            hours[index] = intervals;
        }
    }
    if hours.iter().all(Vec::is_empty) {
        p.add(
            format!("{key}.hours"),
            "no working hours: a notice in this calendar could never be sent",
        );
    }
    let mut holidays = BTreeSet::new();
    for (i, day) in raw.holidays.iter().enumerate() {
        if let Some(date) = p.take(&format!("{key}.holidays[{i}]"), parse_date(day)) {
            holidays.insert(date);
        }
    }
    if let Some(file) = &raw.holidays_file {
        let path = PathBuf::from(file);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                for (number, line) in text.lines().enumerate() {
                    let content = line.split('#').next().unwrap_or("").trim();
                    if content.is_empty() {
                        continue;
                    }
                    match parse_date(content) {
                        Ok(date) => {
                            holidays.insert(date);
                        }
                        Err(reason) => p.add(
                            format!("{key}.holidays_file ({}:{})", path.display(), number + 1),
                            reason,
                        ),
                    }
                }
            }
            Err(e) => p.add(
                format!("{key}.holidays_file"),
                format!("cannot read {}: {e}", path.display()),
            ),
        }
    }
    Some(Calendar {
        name: name.to_owned(),
        timezone,
        hours,
        holidays,
    })
}

fn parse_date(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| format!("\"{text}\" is not a date like \"2026-12-24\""))
}

fn channel_settings(p: &mut Problems, name: &str, raw: &RawChannel) -> Option<ChannelSettings> {
    let key = format!("channels.{name}");
    let used: &[&str] = match raw.kind.as_str() {
        "email" => &[
            "host",
            "port",
            "tls",
            "username",
            "password_env",
            "password_file",
            "from",
            "reply_to",
        ],
        "webhook" => &["url", "secret_env", "secret_file"],
        "file" => &["path", "format"],
        other => {
            p.add(
                format!("{key}.kind"),
                format!("\"{other}\" is not one of email, webhook, file"),
            );
            return None;
        }
    };
    let present: [(&str, bool); 12] = [
        ("host", raw.host.is_some()),
        ("port", raw.port.is_some()),
        ("tls", raw.tls.is_some()),
        ("username", raw.username.is_some()),
        ("password_env", raw.password_env.is_some()),
        ("password_file", raw.password_file.is_some()),
        ("from", raw.from.is_some()),
        ("reply_to", raw.reply_to.is_some()),
        ("url", raw.url.is_some()),
        ("secret_env", raw.secret_env.is_some()),
        ("secret_file", raw.secret_file.is_some()),
        ("path", raw.path.is_some()),
    ];
    for (field, is_set) in present {
        if is_set && !used.contains(&field) {
            p.add(
                format!("{key}.{field}"),
                format!("not a key of a {} channel", raw.kind),
            );
        }
    }
    if raw.format.is_some() && raw.kind != "file" {
        p.add(
            format!("{key}.format"),
            format!("not a key of a {} channel", raw.kind),
        );
    }
    let timeout = p.take(
        &format!("{key}.timeout"),
        parse_duration(raw.timeout.as_deref().unwrap_or("20s")),
    )?;
    let concurrency = match raw.concurrency.unwrap_or(8) {
        n @ 1..=1024 => n as usize,
        n => {
            p.add(
                format!("{key}.concurrency"),
                format!("{n} is not between 1 and 1024"),
            );
            1
        }
    };
    let rate = match raw.rate {
        None => None,
        Some(r) if r.is_finite() && r > 0.0 && r <= 1_000_000.0 => Some(r),
        Some(r) => {
            p.add(
                format!("{key}.rate"),
                format!("{r} is not a number of messages per second above 0"),
            );
            None
        }
    };
    let retry = RetryPolicy {
        initial: p.take(
            &format!("{key}.retry_initial"),
            parse_duration(raw.retry_initial.as_deref().unwrap_or("30s")),
        )?,
        max: p.take(
            &format!("{key}.retry_max"),
            parse_duration(raw.retry_max.as_deref().unwrap_or("1h")),
        )?,
        retry_for: p.take(
            &format!("{key}.retry_for"),
            parse_duration(raw.retry_for.as_deref().unwrap_or("2d")),
        )?,
        max_attempts: match raw.max_attempts {
            None => None,
            Some(n @ 1..=10_000) => Some(n as u32),
            Some(n) => {
                p.add(
                    format!("{key}.max_attempts"),
                    format!("{n} is not between 1 and 10000"),
                );
                None
            }
        },
    };
    let kind = match raw.kind.as_str() {
        "email" => {
            let host = raw.host.clone().or_else(|| {
                p.add(
                    format!("{key}.host"),
                    "missing: the SMTP server's host name",
                );
                None
            });
            let tls = match raw.tls.as_deref().unwrap_or("starttls") {
                "starttls" => TlsMode::StartTls,
                "tls" => TlsMode::Tls,
                "none" => TlsMode::None,
                other => {
                    p.add(
                        format!("{key}.tls"),
                        format!("\"{other}\" is not one of starttls, tls, none"),
                    );
                    TlsMode::StartTls
                }
            };
            let port = raw.port.unwrap_or(match tls {
                TlsMode::StartTls => 587,
                TlsMode::Tls => 465,
                TlsMode::None => 25,
            });
            let password = read_secret(
                p,
                &key,
                "password",
                raw.password_env.as_ref(),
                raw.password_file.as_ref(),
            );
            if raw.username.is_some() != password.is_some()
                && (raw.password_env.is_none() && raw.password_file.is_none())
            {
                p.add(
                    format!("{key}.password_env"),
                    "a username needs password_env or password_file",
                );
            }
            let from = match &raw.from {
                Some(from) => p.take(
                    &format!("{key}.from"),
                    from.parse::<Mailbox>()
                        .map_err(|e| format!("\"{from}\" is not a mail address: {e}")),
                ),
                None => {
                    p.add(format!("{key}.from"), "missing: the sender address");
                    None
                }
            };
            let reply_to = match &raw.reply_to {
                Some(r) => p.take(
                    &format!("{key}.reply_to"),
                    r.parse::<Mailbox>()
                        .map_err(|e| format!("\"{r}\" is not a mail address: {e}")),
                ),
                None => None,
            };
            ChannelKind::Email(EmailSettings {
                host: host?,
                port,
                tls,
                username: raw.username.clone(),
                password,
                from: from?,
                reply_to,
                timeout,
            })
        }
        "webhook" => {
            let url = raw.url.clone().or_else(|| {
                p.add(format!("{key}.url"), "missing: the receiver's URL");
                None
            })?;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                p.add(
                    format!("{key}.url"),
                    format!(
                        "\"{}\" is not an http:// or https:// URL",
                        crate::secret::redact_url(&url)
                    ),
                );
            }
            let secret = read_secret(
                p,
                &key,
                "secret",
                raw.secret_env.as_ref(),
                raw.secret_file.as_ref(),
            );
            let Some(secret) = secret else {
                if raw.secret_env.is_none() && raw.secret_file.is_none() {
                    p.add(format!("{key}.secret_env"), "missing: webhooks are signed; set secret_env or secret_file (a whsec_… secret)");
                }
                return None;
            };
            let key_bytes =
                match decode_webhook_secret(secrecy::ExposeSecret::expose_secret(&secret)) {
                    Ok(bytes) => bytes,
                    Err(reason) => {
                        let which = if raw.secret_env.is_some() {
                            "secret_env"
                        } else {
                            "secret_file"
                        };
                        p.add(format!("{key}.{which}"), reason);
                        return None;
                    }
                };
            ChannelKind::Webhook(WebhookSettings {
                url: SecretUrl::new(url),
                key: Arc::new(SecretBytes(key_bytes)),
                timeout,
            })
        }
        _ => {
            let path = raw.path.clone().or_else(|| {
                p.add(
                    format!("{key}.path"),
                    "missing: the folder notices are written to",
                );
                None
            })?;
            let format = match raw.format.as_deref().unwrap_or("eml") {
                "eml" => FileFormat::Eml,
                "json" => FileFormat::Json,
                other => {
                    p.add(
                        format!("{key}.format"),
                        format!("\"{other}\" is not one of eml, json"),
                    );
                    FileFormat::Eml
                }
            };
            ChannelKind::File(FileSettings {
                path: PathBuf::from(path),
                format,
            })
        }
    };
    Some(ChannelSettings {
        name: name.to_owned(),
        kind,
        timeout,
        concurrency,
        rate,
        retry,
    })
}

/// `whsec_` followed by base64 of the key bytes (Standard Webhooks).
fn decode_webhook_secret(secret: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    let encoded = secret
        .trim()
        .strip_prefix("whsec_")
        .unwrap_or(secret.trim());
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| "the secret is not a whsec_ secret (whsec_ followed by base64)".to_string())?;
    if bytes.len() < 24 {
        return Err(format!(
            "the secret has {} bytes; use at least 24 (Standard Webhooks recommends 24–64)",
            bytes.len()
        ));
    }
    Ok(bytes)
}

#[allow(clippy::too_many_arguments)]
fn policy_settings(
    p: &mut Problems,
    key: &str,
    raw: &RawPolicy,
    daemon: &DaemonSettings,
    calendars: &BTreeMap<String, Arc<Calendar>>,
    config: &RawConfig,
    warnings: &mut Vec<String>,
) -> Option<Policy> {
    if raw.name.trim().is_empty() {
        p.add(format!("{key}.name"), "must not be empty");
    }
    let matcher = matcher_settings(p, &format!("{key}.match"), &raw.matcher);
    let after = p.take(&format!("{key}.after"), parse_duration(&raw.after));
    let repeat_every = match &raw.repeat_every {
        Some(text) => {
            let repeat = p.take(&format!("{key}.repeat_every"), parse_duration(text))?;
            if repeat.is_zero() {
                p.add(format!("{key}.repeat_every"), "must be longer than zero");
            }
            Some(repeat)
        }
        None => None,
    };
    let max_notices = match (raw.max_notices, repeat_every) {
        (None, None) => 1,
        (None, Some(_)) => 3,
        (Some(n @ 1..=1000), _) => n as u32,
        (Some(n), _) => {
            p.add(
                format!("{key}.max_notices"),
                format!("{n} is not between 1 and 1000"),
            );
            1
        }
    };
    if max_notices > 1 && repeat_every.is_none() {
        p.add(
            format!("{key}.max_notices"),
            "more than one notice needs repeat_every",
        );
    }
    let calendar = match &raw.calendar {
        Some(name) => match calendars.get(name) {
            Some(c) => Some(c.clone()),
            None => {
                if !config.calendars.contains_key(name) {
                    p.add(
                        format!("{key}.calendar"),
                        format!("no calendar \"{name}\" in [calendars]"),
                    );
                }
                None
            }
        },
        None => None,
    };
    let zone = calendar
        .as_ref()
        .map(|c| c.timezone)
        .unwrap_or(daemon.timezone);
    let send_at = match &raw.send_at {
        Some(expr) => {
            let parsed = p.take(&format!("{key}.send_at"), SendAt::parse(expr, zone))?;
            if parsed.has_numeric_weekday() {
                warnings.push(format!(
                    "{key}.send_at: \"{expr}\" uses numeric weekdays, which the cron crate counts 1 = Sunday … 7 = Saturday; write names (Mon-Fri)"
                ));
            }
            Some(parsed)
        }
        None => None,
    };
    if !config.channels.contains_key(&raw.channel) {
        p.add(
            format!("{key}.channel"),
            format!("no channel \"{}\" in [channels]", raw.channel),
        );
    }
    let window = SendWindow {
        calendar: calendar.clone(),
        send_at,
    };
    if (window.calendar.is_some() || window.send_at.is_some())
        && window.first_send_instant(chrono::Utc::now()).is_none()
    {
        p.add(
            format!("{key}.send_at"),
            "the send window never opens (no cron slot falls inside the calendar's working hours)",
        );
    }
    Some(Policy {
        name: raw.name.clone(),
        matcher: matcher?,
        after: after?,
        repeat_every,
        max_notices,
        window,
        channel: raw.channel.clone(),
        template: raw.template.clone(),
        continue_matching: raw.continue_matching,
    })
}

fn matcher_settings(
    p: &mut Problems,
    key: &str,
    raw: &BTreeMap<String, MatchValue>,
) -> Option<Matcher> {
    let mut rules = Vec::new();
    let mut ok = true;
    for (field, value) in raw {
        let path = format!("{key}.{field}");
        let base = match field.to_lowercase().as_str() {
            "state" => Some(MatchField::State),
            "priority" => Some(MatchField::Priority),
            "queue" => Some(MatchField::Queue),
            "origin" => Some(MatchField::Origin),
            "language" => Some(MatchField::Language),
            "extra" => None,
            other => match other.strip_prefix("extra.") {
                Some(name) => {
                    match value_list(value) {
                        Some(values) => rules.push((MatchField::Extra(name.to_owned()), values)),
                        None => {
                            p.add(&path, "expected a string or a list of strings");
                            ok = false;
                        }
                    }
                    continue;
                }
                None => {
                    p.add(&path, "unknown match field (state, priority, queue, origin, language, extra.NAME)");
                    ok = false;
                    continue;
                }
            },
        };
        match (base, value) {
            (None, MatchValue::Nested(map)) => {
                for (name, inner) in map {
                    match value_list(inner) {
                        Some(values) => {
                            rules.push((MatchField::Extra(name.to_lowercase()), values))
                        }
                        None => {
                            p.add(
                                format!("{path}.{name}"),
                                "expected a string or a list of strings",
                            );
                            ok = false;
                        }
                    }
                }
            }
            (Some(field), value) => match value_list(value) {
                Some(values) => rules.push((field, values)),
                None => {
                    p.add(&path, "expected a string or a list of strings");
                    ok = false;
                }
            },
            (None, _) => {
                p.add(&path, "expected a table like extra = { product = [\"x\"] }");
                ok = false;
            }
        }
    }
    ok.then_some(Matcher { rules })
}

fn value_list(value: &MatchValue) -> Option<Vec<String>> {
    match value {
        MatchValue::One(v) => Some(vec![v.clone()]),
        MatchValue::Many(vs) => Some(vs.clone()),
        MatchValue::Nested(_) => None,
    }
}
