//! Browser sessions for the status pages. A browser cannot send a bearer
//! token, so `/login` takes the admin token once and sets a session
//! cookie (random, `HttpOnly`, `SameSite=Strict`) that stands for it for
//! [`LIFETIME`] or until the daemon stops. Each session has a CSRF token
//! that every form posts back, and a short label that the log names
//! instead of the secret cookie.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use subtle::ConstantTimeEq;

pub const COOKIE: &str = "interim_session";
/// How long a login lasts.
pub const LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// Sessions kept at most; the oldest goes first.
const MAX_SESSIONS: usize = 1_000;

/// A logged-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// What the log calls it (not the cookie, which is a credential).
    pub label: String,
    pub csrf: String,
    expires: Instant,
}

#[derive(Clone, Default)]
pub struct Sessions(Arc<Mutex<HashMap<String, Session>>>);

impl Sessions {
    /// A new session: its cookie value and the session.
    pub fn create(&self) -> (String, Session) {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        all.retain(|_, s| s.expires > now);
        if all.len() >= MAX_SESSIONS
            && let Some(oldest) = all
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(id, _)| id.clone())
        {
            all.remove(&oldest);
        }
        let id = random_hex();
        let session = Session {
            label: random_hex()[..8].to_owned(),
            csrf: random_hex(),
            expires: now + LIFETIME,
        };
        all.insert(id.clone(), session.clone());
        (id, session)
    }

    /// The live session the request's cookie names.
    pub fn of(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, COOKIE)?;
        let all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.get(id).filter(|s| s.expires > Instant::now()).cloned()
    }

    /// Ends the request's session.
    pub fn end(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, COOKIE) {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
        }
    }
}

impl Session {
    /// Whether `given` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, given: &str) -> bool {
        self.csrf.len() == given.len() && bool::from(self.csrf.as_bytes().ct_eq(given.as_bytes()))
    }
}

/// The `Set-Cookie` value of a session (`Path=/`: the pages may sit under
/// a proxy's prefix, the cookie is still only this daemon's).
pub fn set_cookie(id: &str) -> String {
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        LIFETIME.as_secs()
    )
}

pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The value of cookie `name` in the request.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// 256 random bits as hex.
fn random_hex() -> String {
    rand::random::<[u8; 32]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn a_session_is_found_by_its_cookie_and_ends() {
        let sessions = Sessions::default();
        let (id, session) = sessions.create();
        let mut headers = HeaderMap::new();
        let value = format!("other=1; {COOKIE}={id}");
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("")),
        );
        assert_eq!(sessions.of(&headers), Some(session.clone()));
        assert!(session.csrf_matches(&session.csrf));
        assert!(!session.csrf_matches("0"));
        sessions.end(&headers);
        assert_eq!(sessions.of(&headers), None);
    }
}
