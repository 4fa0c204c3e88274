//! Who may use a write action (`POST /-/reload`, and every later one).
//!
//! With `http.admin_token_env`/`http.admin_token_file` set: only a request
//! with `Authorization: Bearer TOKEN` (compared in constant time), from
//! anywhere. Without a token, only what a browser page elsewhere cannot
//! send: from a loopback peer (`127.0.0.0/8`, `::1`, v4-mapped
//! `::ffff:127.0.0.1`), not through a proxy (no `Forwarded`,
//! `X-Forwarded-For`, `X-Real-IP`), to a loopback `Host` (a DNS-rebinding
//! page names its own), with no `Sec-Fetch-Site` other than `same-origin`
//! and no foreign `Origin`, and with a content type outside the three a
//! form may send (`application/json`, say) or the header `X-Interim-Admin`
//! — both make a browser ask first (CORS preflight), which this endpoint
//! never grants.

use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracing::warn;

use super::AdminState;
use crate::secret::{ExposeSecret, SecretString};

/// The header a script may send instead of a non-simple content type.
pub const ADMIN_HEADER: &str = "x-interim-admin";

/// Why a write action was refused; the text never quotes the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub reason: &'static str,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = Json(json!({"status": "refused", "reason": self.reason}));
        if self.status == StatusCode::UNAUTHORIZED {
            (
                self.status,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"interim\"")],
                body,
            )
                .into_response()
        } else {
            (self.status, body).into_response()
        }
    }
}

const fn forbidden(reason: &'static str) -> Refusal {
    Refusal {
        status: StatusCode::FORBIDDEN,
        reason,
    }
}

/// Middleware in front of every write route.
pub async fn require_write_access(
    State(state): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let live = state.dispatcher.live();
    let token = live.config.settings.http.admin_token.as_ref();
    match check(peer, request.headers(), token) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            metrics::counter!("interim_http_write_refused_total").increment(1);
            warn!(
                peer = %peer,
                path = request.uri().path(),
                reason = refusal.reason,
                "write action refused"
            );
            refusal.into_response()
        }
    }
}

/// The decision, apart from axum: see the module documentation.
pub fn check(
    peer: SocketAddr,
    headers: &HeaderMap,
    token: Option<&SecretString>,
) -> Result<(), Refusal> {
    if let Some(token) = token {
        return check_token(headers, token);
    }
    local_only(
        peer,
        headers,
        [
            "write actions from another host need the admin token (http.admin_token_env or http.admin_token_file)",
            "the request came through a proxy: write actions through a proxy need the admin token",
        ],
    )?;
    let host = text(headers, header::HOST.as_str());
    if headers.contains_key("sec-fetch-site")
        && text(headers, "sec-fetch-site") != Some("same-origin")
    {
        return Err(forbidden("a browser sent this request from another site"));
    }
    if headers.contains_key(header::ORIGIN) {
        let same = match (text(headers, header::ORIGIN.as_str()), host) {
            (Some(origin), Some(host)) => origin.eq_ignore_ascii_case(&format!("http://{host}")),
            _ => false,
        };
        if !same {
            return Err(forbidden("a browser sent this request from another origin"));
        }
    }
    if !headers.contains_key(ADMIN_HEADER) && !has_non_simple_content_type(headers) {
        return Err(forbidden(
            "send Content-Type: application/json or the header X-Interim-Admin (a web page cannot send either without asking first)",
        ));
    }
    Ok(())
}

/// Who may read the status pages: with the admin token, a request that
/// carries it; without one, only a request from this host that did not
/// come through a proxy and names a loopback `Host` (so no page on another
/// site can read them by rebinding a name to 127.0.0.1).
pub fn check_read(
    peer: SocketAddr,
    headers: &HeaderMap,
    token: Option<&SecretString>,
) -> Result<(), Refusal> {
    match token {
        Some(token) => check_token(headers, token),
        None => local_only(
            peer,
            headers,
            [
                "the status pages from another host need the admin token (http.admin_token_env or http.admin_token_file)",
                "the request came through a proxy: the status pages through a proxy need the admin token",
            ],
        ),
    }
}

/// From a loopback peer, not through a proxy, to a loopback `Host`;
/// `[from_elsewhere, proxied]` are the refusals' reasons.
fn local_only(
    peer: SocketAddr,
    headers: &HeaderMap,
    [from_elsewhere, proxied]: [&'static str; 2],
) -> Result<(), Refusal> {
    if !is_loopback(peer.ip()) {
        return Err(forbidden(from_elsewhere));
    }
    if [
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-real-ip",
    ]
    .iter()
    .any(|name| headers.contains_key(*name))
    {
        return Err(forbidden(proxied));
    }
    let host = text(headers, header::HOST.as_str());
    if let Some(host) = host
        && !is_loopback_host(host)
    {
        return Err(forbidden(
            "the Host header names no loopback address: use 127.0.0.1, [::1] or localhost, or the admin token",
        ));
    }
    Ok(())
}

/// `Authorization: Bearer TOKEN` with the admin token.
pub fn check_token(headers: &HeaderMap, token: &SecretString) -> Result<(), Refusal> {
    let unauthorized = |reason| Refusal {
        status: StatusCode::UNAUTHORIZED,
        reason,
    };
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized(
            "this endpoint needs Authorization: Bearer TOKEN (http.admin_token_env or http.admin_token_file)",
        ));
    };
    let value = value.as_bytes();
    let given = match value.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => value[7..].trim_ascii(),
        _ => {
            return Err(unauthorized(
                "the Authorization header is not a Bearer token",
            ));
        }
    };
    if token_matches(given, token) {
        Ok(())
    } else {
        Err(unauthorized("wrong bearer token"))
    }
}

/// Whether `given` is the admin token. Equal-length digests: the
/// comparison takes as long for any token.
pub fn token_matches(given: &[u8], token: &SecretString) -> bool {
    let expected = Sha256::digest(token.expose_secret().as_bytes());
    let given = Sha256::digest(given);
    bool::from(expected.ct_eq(&given))
}

fn text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Loopback, also as an IPv4 address mapped into IPv6 (`::ffff:127.0.0.1`,
/// how a dual-stack `[::]` listener sees an IPv4 client).
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// `127.0.0.1`, `[::1]`, `localhost`, each with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inside, _)) => inside,
            None => return false,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok_and(is_loopback)
}

/// A content type a form or a no-CORS `fetch` cannot send.
fn has_non_simple_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = text(headers, header::CONTENT_TYPE.as_str()) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    !essence.is_empty()
        && ![
            "application/x-www-form-urlencoded",
            "multipart/form-data",
            "text/plain",
        ]
        .contains(&essence.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn peer(text: &str) -> SocketAddr {
        match text.parse() {
            Ok(addr) => addr,
            Err(e) => panic!("{text}: {e}"),
        }
    }

    #[test]
    fn loopback_includes_ipv6_and_v4_mapped() {
        for ip in ["127.0.0.1", "127.3.4.5", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback(ip.parse().expect("an address")), "{ip}");
        }
        for ip in ["192.0.2.1", "::ffff:192.0.2.1", "fd00::2", "0.0.0.0"] {
            assert!(!is_loopback(ip.parse().expect("an address")), "{ip}");
        }
        for host in [
            "127.0.0.1:9464",
            "[::1]:9464",
            "localhost",
            "LOCALHOST:1",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "evil.example:9464",
            "evil.example",
            "[::1",
            "192.0.2.1:9464",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn pages_are_read_from_this_host_only_or_with_the_token() {
        let host = ("host", "127.0.0.1:9464");
        // A browser on this host: a plain GET is enough.
        assert_eq!(
            check_read(peer("127.0.0.1:5000"), &headers(&[host]), None),
            Ok(())
        );
        for (from, sent) in [
            ("192.0.2.7:5000", headers(&[host])),
            (
                "127.0.0.1:5000",
                headers(&[host, ("x-forwarded-for", "192.0.2.7")]),
            ),
            ("127.0.0.1:5000", headers(&[("host", "evil.example:9464")])),
        ] {
            let refused = check_read(peer(from), &sent, None);
            assert_eq!(
                refused.map_err(|r| r.status),
                Err(StatusCode::FORBIDDEN),
                "{from} {sent:?}"
            );
        }
        let token = SecretString::from("a-long-enough-admin-token");
        let bearer = ("authorization", "Bearer a-long-enough-admin-token");
        assert_eq!(
            check_read(peer("192.0.2.7:5000"), &headers(&[bearer]), Some(&token)),
            Ok(())
        );
        let missing = check_read(peer("127.0.0.1:5000"), &headers(&[host]), Some(&token));
        assert_eq!(missing.map_err(|r| r.status), Err(StatusCode::UNAUTHORIZED));
    }

    #[test]
    fn without_a_token_only_what_a_browser_cannot_send_is_allowed() {
        let local = peer("127.0.0.1:5000");
        let json = ("content-type", "application/json");
        let host = ("host", "127.0.0.1:9464");
        assert_eq!(check(local, &headers(&[json, host]), None), Ok(()));
        assert_eq!(
            check(local, &headers(&[(ADMIN_HEADER, "1"), host]), None),
            Ok(())
        );
        assert_eq!(
            check(
                local,
                &headers(&[
                    json,
                    host,
                    ("origin", "http://127.0.0.1:9464"),
                    ("sec-fetch-site", "same-origin")
                ]),
                None
            ),
            Ok(())
        );
        let refused = [
            headers(&[host]),
            headers(&[("content-type", "text/plain"), host]),
            headers(&[("content-type", "application/x-www-form-urlencoded"), host]),
            headers(&[("content-type", "Multipart/Form-Data; boundary=x"), host]),
            headers(&[json, host, ("origin", "http://evil.example")]),
            headers(&[json, host, ("origin", "null")]),
            headers(&[json, host, ("sec-fetch-site", "cross-site")]),
            headers(&[json, host, ("sec-fetch-site", "same-site")]),
            headers(&[json, ("host", "evil.example:9464")]),
            headers(&[json, host, ("x-forwarded-for", "192.0.2.7")]),
            headers(&[json, host, ("forwarded", "for=192.0.2.7")]),
        ];
        for h in &refused {
            assert!(check(local, h, None).is_err(), "{h:?}");
        }
        assert!(check(peer("192.0.2.1:5000"), &headers(&[json]), None).is_err());
        assert_eq!(
            check(peer("[::ffff:127.0.0.1]:5000"), &headers(&[json]), None),
            Ok(())
        );
        assert_eq!(check(peer("[::1]:5000"), &headers(&[json]), None), Ok(()));
    }

    #[test]
    fn with_a_token_only_the_token_counts() {
        let token = SecretString::from("0123456789abcdef-token");
        let remote = peer("192.0.2.1:5000");
        let ok = headers(&[("authorization", "Bearer 0123456789abcdef-token")]);
        assert_eq!(check(remote, &ok, Some(&token)), Ok(()));
        let lower = headers(&[("authorization", "bearer 0123456789abcdef-token")]);
        assert_eq!(check(remote, &lower, Some(&token)), Ok(()));
        for h in [
            headers(&[]),
            headers(&[("authorization", "Bearer 0123456789abcdef-toke")]),
            headers(&[("authorization", "Basic MDEyMzQ1Njc4OWFiY2RlZi10b2tlbg==")]),
            headers(&[("content-type", "application/json")]),
        ] {
            let refusal = check(peer("127.0.0.1:1"), &h, Some(&token));
            assert_eq!(
                refusal.map_err(|r| r.status),
                Err(StatusCode::UNAUTHORIZED),
                "{h:?}"
            );
        }
    }
}
