//! Secrets come from the environment or a file, never from the config file
//! itself, and never show up in `Debug`, `Display`, logs or errors.

use std::fmt;

pub use secrecy::{ExposeSecret, SecretString};

/// A connection URL that may carry a password (`postgres://u:pw@host/db`).
/// Prints with the password replaced by `***`.
#[derive(Clone)]
pub struct SecretUrl(SecretString);

impl SecretUrl {
    pub fn new(url: String) -> Self {
        Self(SecretString::from(url))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The URL with any password (and query string, which may hold tokens) masked.
    pub fn redacted(&self) -> String {
        redact_url(self.expose())
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Masks `user:password@` and query strings of a URL-like string without
/// parsing it strictly, so even a malformed URL never leaks its password.
pub fn redact_url(url: &str) -> String {
    let without_query = match url.split_once('?') {
        Some((base, _)) => format!("{base}?***"),
        None => url.to_owned(),
    };
    let Some(scheme_end) = without_query.find("://") else {
        return without_query;
    };
    let rest_start = scheme_end + 3;
    let rest = &without_query[rest_start..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_owned()
            };
            format!(
                "{}{}@{}",
                &without_query[..rest_start],
                masked,
                &rest[at + 1..]
            )
        }
        None => without_query,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_a_url_is_masked() {
        assert_eq!(
            redact_url("postgres://helpdesk:s3cret@db:5432/hd"),
            "postgres://helpdesk:***@db:5432/hd"
        );
        assert_eq!(
            redact_url("mysql://root@localhost/x"),
            "mysql://root@localhost/x"
        );
        assert_eq!(redact_url("sqlite://var/x.db"), "sqlite://var/x.db");
        assert_eq!(
            redact_url("https://h.example/a?token=abc"),
            "https://h.example/a?***"
        );
        assert_eq!(
            redact_url("postgres://u:p@ss@host/db"),
            "postgres://u:***@host/db"
        );
    }
}
