//! `[channels.NAME]`: email, webhook and file channels, their retries
//! and limits.

use std::path::PathBuf;
use std::sync::Arc;

use lettre::message::Mailbox;

use super::raw::RawChannel;
use super::settings::*;
use crate::secret::SecretUrl;

pub(super) fn channel_settings(
    p: &mut Problems,
    name: &str,
    raw: &RawChannel,
) -> Option<ChannelSettings> {
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
            "allow_insecure",
        ],
        "webhook" => &["url", "secret_env", "secret_file", "allow_insecure"],
        "file" => &["path", "format"],
        other => {
            p.add(
                format!("{key}.kind"),
                format!("\"{other}\" is not one of email, webhook, file"),
            );
            return None;
        }
    };
    let present: [(&str, bool); 13] = [
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
        ("allow_insecure", raw.allow_insecure.is_some()),
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
                allow_insecure: raw.allow_insecure.unwrap_or(false),
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
            } else {
                super::http_source::parse_request_url(p, &format!("{key}.url"), &url);
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
                allow_insecure: raw.allow_insecure.unwrap_or(false),
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
pub(super) fn decode_webhook_secret(secret: &str) -> Result<Vec<u8>, String> {
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
