//! Loading the configuration: one TOML file plus `INTERIM__SECTION__KEY`
//! environment overrides, validated into [`Settings`] and compiled
//! [`Templates`].

mod calendars;
mod channels;
mod cleartext;
mod clocks;
mod http_fields;
mod http_source;
mod paths;
mod policies;
pub mod query_parameters;
mod raw;
mod settings;
mod source;
pub mod suppress_file;

use std::path::{Path, PathBuf};

pub use clocks::{CLOCK_MODES, DEFAULT_CLOCK};
pub use http_fields::{FieldMap, First, PerTicket, Sideload, WaitingWhen, member};
pub use http_source::{HttpAuth, HttpSourceSettings, Pagination};
pub use settings::{
    ChannelKind, ChannelSettings, DEFAULT_CONFIG_PATH, DaemonSettings, EmailSettings, FileFormat,
    FileSettings, LimitSettings, LogFormat, RetryPolicy, Settings, SourceSettings,
    SuppressSettings, TlsMode, WebhookSettings, parse_duration,
};

/// A configuration that failed validation: one `key.path: reason` per line.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration in {path}:\n  {}", lines.join("\n  "))]
pub struct ConfigError {
    pub path: String,
    pub lines: Vec<String>,
}

/// Where a package installs the config.
pub const INSTALLED_CONFIG_PATH: &str = "/etc/interim/interim.toml";

/// `--config`, else `$INTERIM_CONFIG`, else `config/interim.toml`, else
/// (when that does not exist) `/etc/interim/interim.toml`.
pub fn resolve_path(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_owned)
        .or_else(|| std::env::var_os("INTERIM_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| {
            if Path::new(DEFAULT_CONFIG_PATH).exists() {
                PathBuf::from(DEFAULT_CONFIG_PATH)
            } else {
                PathBuf::from(INSTALLED_CONFIG_PATH)
            }
        })
}

/// Reads and validates the settings of one config file (plus the
/// `INTERIM__…` overrides); `crate::setup::load` adds the templates.
pub fn load_settings(path: &Path) -> Result<Settings, ConfigError> {
    let fail = |lines: Vec<String>| ConfigError {
        path: path.display().to_string(),
        lines,
    };
    if !path.exists() {
        return Err(fail(vec![format!(
            "file not found (give --config PATH or set INTERIM_CONFIG; the working directory is {})",
            std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_default()
        )]));
    }
    let preset = preset_of(path).map_err(|e| fail(vec![e]))?;
    let mut builder = config::Config::builder();
    if let Some((_, text)) = preset {
        builder = builder.add_source(config::File::from_str(text, config::FileFormat::Toml));
    }
    let builder = builder
        .add_source(config::File::from(path).format(config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix("INTERIM")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        );
    let merged = builder
        .build()
        .map_err(|e| fail(vec![describe_config_error(&e)]))?;
    let mut raw: raw::RawConfig = serde_path_to_error::deserialize(merged).map_err(|e| {
        let key = e.path().to_string();
        let inner = describe_config_error(e.inner());
        if let Some(missing) = missing_key(&inner) {
            return fail(vec![format!("{missing}: missing (this key is required)")]);
        }
        fail(vec![if key.is_empty() || key == "." {
            inner
        } else {
            format!("{key}: {inner}")
        }])
    })?;
    let base = std::path::absolute(path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_owned))
        .unwrap_or_default();
    paths::resolve(&mut raw, &base);
    let mut settings = Settings::from_raw(raw).map_err(fail)?;
    if !settings.templates_dir.is_dir() {
        settings.warnings.push(format!(
            "templates.dir: {} does not exist; only the built-in templates are used",
            settings.templates_dir.display()
        ));
    }
    Ok(settings)
}

/// The presets: prepared `[source]` tables, overridable key by key.
pub const PRESETS: &[(&str, &str)] = &[
    (
        "zammad-db",
        include_str!("../../config/presets/zammad-db.toml"),
    ),
    (
        "znuny-db",
        include_str!("../../config/presets/znuny-db.toml"),
    ),
    (
        "zammad-api",
        include_str!("../../config/presets/zammad-api.toml"),
    ),
    (
        "zendesk-api",
        include_str!("../../config/presets/zendesk-api.toml"),
    ),
];

/// The preset a config file names in `source.preset` (or the environment
/// override INTERIM__SOURCE__PRESET), if any.
fn preset_of(path: &Path) -> Result<Option<(&'static str, &'static str)>, String> {
    let named = config::Config::builder()
        .add_source(config::File::from(path).format(config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix("INTERIM")
                .prefix_separator("__")
                .separator("__"),
        )
        .build()
        .ok()
        .and_then(|c| c.get_string("source.preset").ok());
    let Some(name) = named else {
        return Ok(None);
    };
    PRESETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|p| Some(*p))
        .ok_or_else(|| {
            let known: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
            format!(
                "source.preset: unknown preset \"{name}\" (known: {})",
                known.join(", ")
            )
        })
}

/// The config crate reports a missing key as `missing configuration field
/// "policies[1]after"`: the key path, with the dot after an index restored.
fn missing_key(message: &str) -> Option<String> {
    let key = message
        .strip_prefix("missing configuration field \"")?
        .strip_suffix('"')?;
    let mut out = String::new();
    let mut chars = key.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == ']' && chars.peek().is_some_and(|n| *n != '[' && *n != '.') {
            out.push('.');
        }
    }
    Some(out)
}

fn describe_config_error(e: &config::ConfigError) -> String {
    let text = e.to_string();
    // TOML syntax errors come as a multi-line drawing; one line with the
    // position and the reason reads better in logs.
    if let Some(start) = text.find("TOML parse error at ") {
        let first = text[start..].lines().next().unwrap_or_default();
        let position = first.trim_start_matches("TOML parse error at ").trim();
        let reason = text
            .lines()
            .map(str::trim)
            .rfind(|l| {
                !l.is_empty()
                    && !l.starts_with('|')
                    && !l.contains(" | ")
                    && !l.starts_with("in ")
                    && !l.starts_with('^')
            })
            .unwrap_or("");
        return format!("{position}: {reason}");
    }
    // The config crate appends "for key `x`" and the file path; the message
    // itself is what ops need, the key path we add ourselves.
    let text = text.split(" for key `").next().unwrap_or(&text);
    text.split(" in ").next().unwrap_or(text).to_owned()
}
