//! What our HTTP conversations share, whichever way they go (the webhook
//! channel out, the HTTP source in): the TLS provider, how `Retry-After`
//! is read, and the channels' client (the source builds its own, with a
//! redirect policy that keeps credentials on their origin).

use std::time::Duration;

/// rustls needs one process-wide crypto provider; we use ring everywhere.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The shared HTTP client: no redirects followed (a redirect of a signed
/// notice is a receiver misconfiguration to surface, not to follow).
pub fn client() -> anyhow::Result<reqwest::Client> {
    install_crypto_provider();
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("interim/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// `Retry-After` as seconds or an HTTP date, measured from `now`; a date
/// in the past is no wait. Whatever it says, the retry policy caps it.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    if let Ok(secs) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value.trim()).ok()?;
    Some(
        at.with_timezone(&chrono::Utc)
            .signed_duration_since(now)
            .to_std()
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_accepts_seconds() {
        assert_eq!(
            parse_retry_after("120", chrono::Utc::now()),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after("soon", chrono::Utc::now()), None);
    }
}
