//! Signed webhooks (Standard Webhooks): `webhook-id` is the notice id,
//! stable across retries; the timestamp and signature are made anew for
//! every attempt.

use base64::Engine;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use sha2::Sha256;

use super::{DeliveryError, Outgoing, Refusal, notice_document};
use crate::config::WebhookSettings;
use crate::net::parse_retry_after;

pub struct WebhookChannel {
    settings: WebhookSettings,
    client: reqwest::Client,
}

/// `v1,BASE64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

impl WebhookChannel {
    pub fn new(settings: &WebhookSettings, client: reqwest::Client) -> Self {
        Self {
            settings: settings.clone(),
            client,
        }
    }

    pub async fn send(&self, out: &Outgoing<'_>) -> Result<(), DeliveryError> {
        let body = serde_json::to_vec(&notice_document(out))
            .map_err(|e| DeliveryError::permanent(format!("cannot encode the body: {e}")))?;
        let timestamp = chrono::Utc::now().timestamp();
        let signature = sign(&self.settings.key.0, out.notice_id, timestamp, &body);
        let url = self.settings.url.redacted();
        let response = self
            .client
            .post(self.settings.url.expose())
            .timeout(self.settings.timeout)
            .header("content-type", "application/json")
            .header("webhook-id", out.notice_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                let what = if e.is_timeout() {
                    format!(
                        "timed out after {}",
                        crate::clock::human_duration(self.settings.timeout)
                    )
                } else if e.is_connect() {
                    "connection failed".to_string()
                } else {
                    "request failed".to_string()
                };
                // reqwest's error text may include the URL; ours is redacted.
                DeliveryError::retryable(format!("POST {url}: {what}"))
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
        let reason = format!("POST {url}: HTTP {}", status.as_u16());
        if status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
            || status.is_server_error()
        {
            return Err(DeliveryError::Retryable {
                reason,
                retry_after,
            });
        }
        if status == StatusCode::GONE {
            return Err(DeliveryError::Permanent {
                reason: format!("{reason}: the endpoint is gone"),
                refusal: Refusal::EndpointGone,
            });
        }
        if status.is_redirection() {
            return Err(DeliveryError::permanent(format!(
                "{reason}: redirects are not followed; configure the final URL"
            )));
        }
        Err(DeliveryError::permanent(reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_matches_the_standard_webhooks_example() {
        // From the Standard Webhooks specification's reference test vector.
        let key = base64::engine::general_purpose::STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap_or_default();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
