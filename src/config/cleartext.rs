//! Cleartext is a choice: a warning for each place where credentials (or,
//! for webhooks, signed customer data) would travel unencrypted to a host
//! that is not this machine, unless the table says `allow_insecure = true`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::http_source::HttpAuth;
use super::settings::{ChannelKind, ChannelSettings, SourceSettings, TlsMode};

const TRUSTED: &str = "or set allow_insecure = true if that network is trusted";

/// `check-config` prints these; the daemon logs them once at start.
pub(super) fn warnings(
    source: Option<&SourceSettings>,
    channels: &BTreeMap<String, ChannelSettings>,
) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(source) = source
        && let Some(http) = &source.http
        && !source.allow_insecure
        && let Some(host) = remote_plain_http(source.url.expose())
    {
        let what = match &http.auth {
            HttpAuth::Bearer(_) => Some("the bearer token travels".to_string()),
            HttpAuth::Basic { .. } => Some("the basic auth password travels".to_string()),
            HttpAuth::Header { name, .. } => Some(format!("the {name} header travels")),
            HttpAuth::None if source.url.carries_secret() => {
                Some("the credentials in the URL travel".to_string())
            }
            HttpAuth::None => None,
        };
        if let Some(what) = what {
            out.push(format!(
                "source: {what} unencrypted to {host} (http://); use https://, {TRUSTED} (source.allow_insecure)"
            ));
        }
    }
    for (name, channel) in channels {
        match &channel.kind {
            ChannelKind::Email(e)
                if e.tls == TlsMode::None
                    && e.password.is_some()
                    && !e.allow_insecure
                    && !is_loopback(&e.host) =>
            {
                out.push(format!(
                    "channels.{name}: tls = \"none\" sends the SMTP password unencrypted to {}:{}; use tls = \"starttls\" or \"tls\", {TRUSTED}",
                    e.host, e.port
                ));
            }
            ChannelKind::Webhook(w) if !w.allow_insecure => {
                if let Some(host) = remote_plain_http(w.url.expose()) {
                    let secret = if w.url.carries_secret() {
                        ", the credentials in its URL too"
                    } else {
                        ""
                    };
                    out.push(format!(
                        "channels.{name}: notices (customer data) travel unencrypted to {host} (http://){secret}; use https://, {TRUSTED}"
                    ));
                }
            }
            _ => {}
        }
    }
    out
}

/// The host of an `http://` URL whose host is not this machine.
fn remote_plain_http(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let host = parsed.host_str()?;
    (parsed.scheme() == "http" && !is_loopback(host)).then(|| host.to_owned())
}

/// `localhost`, `*.localhost`, 127.0.0.0/8, `::1` and v4-mapped 127.x.
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => {
            let name = bare.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_this_machine_only() {
        for host in [
            "127.0.0.1",
            "127.1.2.3",
            "[::1]",
            "::ffff:127.0.0.1",
            "localhost",
            "LocalHost.",
            "a.localhost",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "10.0.0.1",
            "mail.example.com",
            "localhost.example.com",
            "[::2]",
            "0.0.0.0",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn only_plain_http_to_another_host_counts() {
        assert_eq!(
            remote_plain_http("http://hooks.example.com/x"),
            Some("hooks.example.com".into())
        );
        assert_eq!(remote_plain_http("https://hooks.example.com/x"), None);
        assert_eq!(remote_plain_http("http://127.0.0.1:8080/x"), None);
        assert_eq!(remote_plain_http("http://[::1]:8080/x"), None);
    }
}
