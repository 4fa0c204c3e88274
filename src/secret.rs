//! Secrets come from the environment or a file, never from the config file
//! itself, and never show up in `Debug`, `Display`, logs or errors.
//!
//! Every URL that is printed goes through [`redact_url`]: the password of
//! its user info, the values of query parameters that look like
//! credentials (`token=`, `key=`, `password=`, `access_token=`, `secret=`,
//! `api_key=`, …) and the fragment become `***`. A password may contain any
//! character, `/ ? # @ :` included, which makes a URL ambiguous; the
//! redactor masks what any plausible reading calls secret.

use std::fmt;
use std::ops::Range;

pub use secrecy::{ExposeSecret, SecretString};

/// A connection URL that may carry a password (`postgres://u:pw@host/db`).
/// Prints redacted ([`redact_url`]).
#[derive(Clone)]
pub struct SecretUrl(SecretString);

impl SecretUrl {
    pub fn new(url: String) -> Self {
        Self(SecretString::from(url))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The URL with its password, credential parameters and fragment masked.
    pub fn redacted(&self) -> String {
        redact_url(self.expose())
    }

    /// Whether printing the URL as it is would show a secret.
    pub fn carries_secret(&self) -> bool {
        !secret_ranges(self.expose()).is_empty()
    }

    /// `text` (a driver's error message, say) with this URL redacted and
    /// every secret part of it, or a piece of one, masked wherever it
    /// appears: a driver that misreads the URL may quote a piece of the
    /// password as a host, port or database name.
    pub fn scrub(&self, text: &str) -> String {
        scrub(text, self.expose())
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

/// The URL with every secret part replaced by `***`; the rest (scheme,
/// user, host, port, path, other parameters) exactly as written.
pub fn redact_url(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    let mut at = 0;
    for range in secret_ranges(url) {
        out.push_str(&url[at..range.start]);
        out.push_str("***");
        at = range.end;
    }
    out.push_str(&url[at..]);
    out
}

/// Query parameters whose names contain one of these (case-insensitive)
/// carry credentials: `token`, `access_token`, `key`, `api_key`,
/// `password`, `sslpassword`, `secret`, `client_secret`, `signature`, …
const SECRET_PARAMETER_WORDS: &[&str] = &[
    "token",
    "key",
    "pass",
    "pwd",
    "secret",
    "auth",
    "sig",
    "credential",
    "session",
];

/// Secret pieces shorter than this are masked inside their URL only; as
/// free text they would match ordinary words of a message.
const MIN_SCRUBBED_CHARS: usize = 4;

/// One way to read a URL: where its user info ends (the `@`), if it has
/// one, and where the host begins.
struct Reading {
    userinfo: Option<Range<usize>>,
    host_start: usize,
}

/// The byte ranges of `url` that some plausible reading calls secret,
/// sorted and merged. Every boundary is next to an ASCII delimiter, so
/// each range is a valid `str` slice.
fn secret_ranges(url: &str) -> Vec<Range<usize>> {
    merge(candidate_ranges(url))
}

/// [`secret_ranges`] before merging, empty ones included (an empty
/// `password=` before a `#` still marks where a secret begins).
fn candidate_ranges(url: &str) -> Vec<Range<usize>> {
    let scheme = scheme_of(url);
    let starts: Vec<usize> = match scheme {
        Some(s) if url[s.len() + 1..].starts_with("//") => vec![s.len() + 3],
        // `sqlite:path`, or no `//` where one was meant: the user info
        // could begin after the scheme or at the very start.
        Some(s) => vec![s.len() + 1, 0],
        None if url.starts_with("//") => vec![2],
        None => vec![0],
    };
    let scheme = scheme.unwrap_or("x");
    let mut ranges = Vec::new();
    for (i, start) in starts.into_iter().enumerate() {
        for reading in readings(url, start, scheme, i == 0) {
            if let Some(info) = &reading.userinfo {
                // user:password; the user stays visible.
                if let Some(colon) = url[info.clone()].find(':') {
                    ranges.push(info.start + colon + 1..info.end);
                }
            }
            ranges.extend(query_and_fragment(url, reading.host_start));
        }
    }
    ranges
}

/// The readings of the authority that begins at `start`: the standard one
/// (the authority ends at the first `/`, `?` or `#`; the user info at its
/// last `@`), and the one a password with a delimiter needs (the user
/// info ends at the last `@` of the whole URL). The standard reading is
/// dropped when its host and port do not parse while the other exists.
/// In the `primary` authority, a standard reading without `@` whose port
/// is no number reads it as a password whose `@host` was forgotten.
fn readings(url: &str, start: usize, scheme: &str, primary: bool) -> Vec<Reading> {
    let rest = &url[start..];
    let authority_end = start + rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let standard_at = url[start..authority_end].rfind('@').map(|i| start + i);
    let last_at = rest.rfind('@').map(|i| start + i);
    let standard = Reading {
        userinfo: standard_at.map(|at| start..at),
        host_start: standard_at.map_or(start, |at| at + 1),
    };
    let host_port = &url[standard.host_start..authority_end];
    let standard_parses = plausible_authority(scheme, host_port);
    let mut out = Vec::new();
    match last_at {
        Some(last) if Some(last) != standard_at => {
            if standard_parses {
                out.push(standard);
            }
            out.push(Reading {
                userinfo: Some(start..last),
                host_start: last + 1,
            });
        }
        _ => {
            if primary && !standard_parses && standard.userinfo.is_none() {
                // `u:pw` with the `@host` forgotten: what stands where a
                // port belongs is no port.
                if let Some(colon) = host_port.rfind(':') {
                    let port = standard.host_start + colon + 1..authority_end;
                    out.push(Reading {
                        userinfo: Some(standard.host_start..port.end),
                        host_start: authority_end,
                    });
                    return out;
                }
            }
            out.push(standard);
        }
    }
    out
}

/// Whether `host[:port]` is one the `url` crate accepts (an empty one is:
/// `sqlite:///path`, a PostgreSQL socket).
fn plausible_authority(scheme: &str, host_port: &str) -> bool {
    host_port.is_empty()
        || url::Url::parse(&format!("{scheme}://{host_port}/")).is_ok_and(|u| u.host().is_some())
}

/// `scheme` of `scheme:…` (RFC 3986: a letter, then letters, digits, `+`,
/// `-`, `.`).
fn scheme_of(url: &str) -> Option<&str> {
    let colon = url.find(':')?;
    let scheme = &url[..colon];
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(scheme)
}

/// The values of credential parameters, and the fragment, of the part of
/// `url` that begins with its host at `host_start`.
fn query_and_fragment(url: &str, host_start: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let rest = &url[host_start..];
    let Some(delimiter) = rest.find(['?', '#']) else {
        return out;
    };
    let mut at = host_start + delimiter;
    if url[at..].starts_with('?') {
        let query_start = at + 1;
        let query_end = query_start
            + url[query_start..]
                .find('#')
                .unwrap_or(url.len() - query_start);
        let mut param_start = query_start;
        for param in url[query_start..query_end].split('&') {
            if let Some(eq) = param.find('=')
                && is_secret_parameter(&param[..eq])
            {
                // A secret with an `&` in it runs on into what looks like
                // further parameters: everything after it goes.
                out.push(param_start + eq + 1..query_end);
                break;
            }
            param_start += param.len() + 1;
        }
        at = query_end;
    }
    if url[at..].starts_with('#') {
        out.push(at + 1..url.len());
    }
    out
}

fn is_secret_parameter(raw_name: &str) -> bool {
    let name = url::form_urlencoded::parse(raw_name.as_bytes())
        .next()
        .map_or_else(|| raw_name.to_owned(), |(name, _)| name.into_owned())
        .to_lowercase();
    SECRET_PARAMETER_WORDS
        .iter()
        .any(|word| name.contains(word))
}

fn merge(mut ranges: Vec<Range<usize>>) -> Vec<Range<usize>> {
    ranges.retain(|r| !r.is_empty());
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<Range<usize>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// `text` with `url` redacted and the secret parts of `url` masked: each
/// whole, and each piece of one that begins and ends at a delimiter
/// (where a misreading parser splits), as written, percent-decoded and
/// percent-encoded.
pub fn scrub(text: &str, url: &str) -> String {
    let mut out = if url.is_empty() {
        text.to_owned()
    } else {
        text.replace(url, &redact_url(url))
    };
    let mut pieces: Vec<String> = Vec::new();
    for range in spans(url, candidate_ranges(url)) {
        for part in delimited_pieces(&url[range]) {
            pieces.push(part.to_owned());
            pieces.push(percent_decoded(part));
            pieces.extend(percent_encoded(part));
        }
    }
    pieces.retain(|p| p.chars().count() >= MIN_SCRUBBED_CHARS);
    pieces.sort_by_key(|p| std::cmp::Reverse(p.len()));
    pieces.dedup();
    for piece in pieces {
        if out.contains(&piece) {
            out = out.replace(&piece, "***");
        }
    }
    out
}

/// Secret ranges joined where they overlap or only delimiters stand
/// between them (a query value and the fragment after it: one secret with
/// a `#` inside).
fn spans(url: &str, mut ranges: Vec<Range<usize>>) -> Vec<Range<usize>> {
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<Range<usize>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last)
                if r.start <= last.end || url[last.end..r.start].chars().all(is_delimiter) =>
            {
                last.end = last.end.max(r.end);
            }
            _ => out.push(r),
        }
    }
    out
}

fn is_delimiter(c: char) -> bool {
    matches!(c, '/' | '?' | '#' | '@' | ':' | '&' | '=' | ';')
}

/// Every substring of `secret` that starts at its start or after a
/// delimiter and ends at its end or before one.
fn delimited_pieces(secret: &str) -> Vec<&str> {
    let delimiters: Vec<usize> = secret.match_indices(is_delimiter).map(|(i, _)| i).collect();
    let starts = std::iter::once(0).chain(delimiters.iter().map(|i| i + 1));
    let ends: Vec<usize> = delimiters
        .iter()
        .copied()
        .chain(std::iter::once(secret.len()))
        .collect();
    let mut out = Vec::new();
    for start in starts {
        for &end in &ends {
            if start < end {
                out.push(&secret[start..end]);
            }
        }
    }
    out
}

/// `%XX` sequences decoded (invalid UTF-8 replaced); anything else as is.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(Some(hi)), Some(Some(lo))) = (
                bytes.get(i + 1).map(|b| hex(*b)),
                bytes.get(i + 2).map(|b| hex(*b)),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How the `url` crate writes `text` as a password and as a query value
/// (what a re-serialized URL, or a driver quoting it, would show).
fn percent_encoded(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(mut u) = url::Url::parse("x://h/") {
        if u.set_password(Some(text)).is_ok()
            && let Some(p) = u.password()
        {
            out.push(p.to_owned());
        }
        u.query_pairs_mut().clear().append_pair("k", text);
        if let Some(q) = u.query() {
            out.push(q.trim_start_matches("k=").to_owned());
        }
    }
    out
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
            redact_url("sqlite:var/x.db?mode=ro"),
            "sqlite:var/x.db?mode=ro"
        );
        assert_eq!(
            redact_url("postgres://u:p@ss@host/db"),
            "postgres://u:***@host/db"
        );
    }

    #[test]
    fn a_password_with_delimiters_is_masked_whole() {
        for (url, shown) in [
            ("postgres://u:pa/ss@db/hd", "postgres://u:***@db/hd"),
            (
                "postgres://u:12/34@db:5432/hd",
                "postgres://u:***@db:5432/hd",
            ),
            ("mysql://u:a?b@db/x", "mysql://u:***@db/x"),
            (
                "mysql://u:a#b@db/x?ssl-mode=required",
                "mysql://u:***@db/x?ssl-mode=required",
            ),
            // Also readable as host b, fragment e@db/hd: in doubt, more is masked.
            ("postgres://u:a@b/c?d#e@db/hd", "postgres://u:***"),
            (
                "https://agent@example.com/token:abc@acme.zendesk.com/api",
                "https://agent@example.com/token:***@acme.zendesk.com/api",
            ),
            ("postgres://u:pw/db", "postgres://u:***/db"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn credential_parameters_and_the_fragment_are_masked() {
        assert_eq!(
            redact_url("https://h.example/a?page=2&Token=abc&API_KEY=k#frag"),
            "https://h.example/a?page=2&Token=***#***"
        );
        assert_eq!(
            redact_url("https://h.example/a?query=state:open&expand=true"),
            "https://h.example/a?query=state:open&expand=true"
        );
        // An address in the query is not user info.
        assert_eq!(
            redact_url("https://h.example/s?customer=a@b.example"),
            "https://h.example/s?customer=a@b.example"
        );
        assert_eq!(
            redact_url("https://api.example/t?access_token=abcd@efgh"),
            "https://api.example/t?access_token=***"
        );
        assert_eq!(
            redact_url("sqlite:///var/h.db?key=x%26y"),
            "sqlite:///var/h.db?key=***"
        );
    }

    #[test]
    fn error_text_loses_every_piece_of_the_password() {
        let url = "postgres://u:1234/sec%40ret@db/hd";
        let text = format!("cannot connect to u:1234, database \"sec@ret@db/hd\"; {url}");
        let scrubbed = scrub(&text, url);
        assert!(!scrubbed.contains("1234"), "{scrubbed}");
        assert!(!scrubbed.contains("sec@ret"), "{scrubbed}");
        assert!(!scrubbed.contains("sec%40ret"), "{scrubbed}");
        assert!(scrubbed.contains("postgres://u:***@db/hd"), "{scrubbed}");
    }
}
