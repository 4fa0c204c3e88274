//! Typed, validated configuration. Every raw string becomes a typed value
//! here (durations, zones, cron schedules, addresses, secrets); every
//! mistake becomes a `key.path: reason` line.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;
use lettre::message::Mailbox;

use super::raw::RawConfig;
pub use super::source::SourceSettings;
use crate::calendar::Calendar;
use crate::policy::Policy;
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
    /// A failure that repeats (a poll) is logged at ERROR once, then
    /// reminded at this interval with its count.
    pub repeat_log_every: Duration,
    /// A promise is kept when the next notice goes out by the promised
    /// instant plus this.
    pub promise_grace: Duration,
}

pub use crate::logging::LogFormat;

#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub url: SecretUrl,
    pub claim_lease: Duration,
    /// Waits that ended longer ago than this leave the history.
    pub history_retention: Duration,
}

/// The admin endpoint and its bounds.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    /// Connections at once at most (also at most a quarter of the
    /// process's descriptor limit, see `http::serve`).
    pub max_connections: usize,
    /// A request's headers must arrive within this; also how long a
    /// kept-alive connection may wait for its next request.
    pub header_timeout: Duration,
    /// A connection on which no byte moves for this long, while no request
    /// is being answered, is closed.
    pub idle_timeout: Duration,
    /// Bearer token for write actions (`POST /-/reload`); None: write
    /// actions only from loopback, and only as a browser cannot send them.
    pub admin_token: Option<SecretString>,
    /// The status pages (`/`, ...) on the admin endpoint.
    pub ui: bool,
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
    /// The operator accepts the password in cleartext (`tls = "none"`).
    pub allow_insecure: bool,
}

#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub url: SecretUrl,
    /// The signing key: the bytes behind `whsec_BASE64`.
    pub key: Arc<SecretBytes>,
    pub timeout: Duration,
    /// The operator accepts notices over plain `http://`.
    pub allow_insecure: bool,
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

/// A duration from the config: humantime syntax, at most
/// [`MAX_DURATION_YEARS`](crate::clock::MAX_DURATION_YEARS) long, so every
/// instant plus a configured duration stays computable.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text.trim()).map_err(|e| {
        format!("invalid duration \"{text}\": {e} (write e.g. \"90s\", \"4h\", \"2d\")")
    })?;
    let years = crate::clock::MAX_DURATION_YEARS;
    // humantime's year is 365.25 days.
    if duration > Duration::from_secs(years * 31_557_600) {
        return Err(format!("duration \"{text}\" is longer than {years} years"));
    }
    Ok(duration)
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
    /// Validates a raw config whose relative paths `load` has already
    /// resolved against the config file's folder.
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
                    crate::clock::human_duration(poll_interval)
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
            repeat_log_every: duration(
                &mut p,
                "daemon.repeat_log_every",
                &d.repeat_log_every,
                "10m",
            ),
            promise_grace: duration(&mut p, "daemon.promise_grace", &d.promise_grace, "5m"),
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
            history_retention: duration(
                &mut p,
                "store.history_retention",
                &raw.store.history_retention,
                "400d",
            ),
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
            max_connections: match raw.http.max_connections.unwrap_or(64) {
                n @ 1..=100_000 => usize::try_from(n).unwrap_or(64),
                n => {
                    p.add(
                        "http.max_connections",
                        format!("{n} is not between 1 and 100000"),
                    );
                    64
                }
            },
            header_timeout: positive(
                &mut p,
                "http.header_timeout",
                &raw.http.header_timeout,
                "5s",
            ),
            idle_timeout: positive(&mut p, "http.idle_timeout", &raw.http.idle_timeout, "30s"),
            admin_token: admin_token(&mut p, &raw.http, &mut warnings),
            ui: raw.http.ui.unwrap_or(true),
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
                super::calendars::calendar_settings(&mut p, name, cal, timezone)
                    .map(|c| (name.clone(), Arc::new(c)))
            })
            .collect();

        let channels: BTreeMap<String, ChannelSettings> = raw
            .channels
            .iter()
            .filter_map(|(name, ch)| {
                super::channels::channel_settings(&mut p, name, ch).map(|c| (name.clone(), c))
            })
            .collect();

        for (name, channel) in &channels {
            if channel.timeout >= store.claim_lease {
                p.add(
                    format!("channels.{name}.timeout"),
                    format!(
                        "{} must be shorter than store.claim_lease ({}), or a claim could expire while its send is still running",
                        crate::clock::human_duration(channel.timeout),
                        crate::clock::human_duration(store.claim_lease)
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
            if let Some(policy) = super::policies::policy_settings(
                &mut p,
                &key,
                rp,
                &daemon,
                &calendars,
                &raw,
                &mut warnings,
            ) {
                policies.push(policy);
            }
        }
        if raw.policies.is_empty() {
            warnings.push("no [[policies]]: nothing will ever be sent".into());
        }
        if raw.channels.is_empty() {
            p.add("channels", "no channel is configured");
        }

        let templates_dir = PathBuf::from(raw.templates.dir.as_deref().unwrap_or("templates"));
        let suppress = suppress_settings(&mut p, &raw.suppress, &mut warnings);
        let limits = LimitSettings {
            per_recipient: match &raw.limits.per_recipient {
                Some(text) => p.take("limits.per_recipient", parse_duration(text)),
                None => None,
            },
        };

        warnings.extend(super::cleartext::warnings(source.as_ref(), &channels));

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

/// A duration key that must be longer than zero.
fn positive(p: &mut Problems, key: &str, value: &Option<String>, default: &str) -> Duration {
    let text = value.as_deref().unwrap_or(default);
    match p.take(key, parse_duration(text)) {
        Some(d) if d.is_zero() => {
            p.add(key, "must be longer than zero");
            Duration::from_secs(1)
        }
        Some(d) => d,
        None => Duration::from_secs(1),
    }
}

/// `http.admin_token_env` / `http.admin_token_file`: an empty token would
/// let anyone in, so it is an error; a short one a warning.
fn admin_token(
    p: &mut Problems,
    raw: &super::raw::RawHttp,
    warnings: &mut Vec<String>,
) -> Option<SecretString> {
    use secrecy::ExposeSecret;
    let token = read_secret(
        p,
        "http",
        "admin_token",
        raw.admin_token_env.as_ref(),
        raw.admin_token_file.as_ref(),
    )?;
    let key = if raw.admin_token_env.is_some() {
        "http.admin_token_env"
    } else {
        "http.admin_token_file"
    };
    let length = token.expose_secret().trim().chars().count();
    if length == 0 {
        p.add(key, "the admin token is empty");
        return None;
    }
    if token.expose_secret().trim() != token.expose_secret() {
        p.add(key, "the admin token has leading or trailing white space");
        return None;
    }
    if length < 16 {
        warnings.push(format!(
            "{key}: the admin token has only {length} characters; use at least 16 (e.g. openssl rand -hex 32)"
        ));
    }
    Some(token)
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
        match super::suppress_file::read_file(file) {
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
