//! Delivery channels: email over SMTP, signed webhooks over HTTP(S), and
//! files (demo, audit, dry runs). Each turns a rendered notice into one
//! delivery attempt and classifies failures as permanent or retryable.

pub mod email;
pub mod file;
pub mod webhook;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::clock::rfc3339;
use crate::config::{ChannelKind, Settings};
use crate::templates::Message;
use crate::ticket::Ticket;

/// Everything a channel needs for one attempt.
pub struct Outgoing<'a> {
    pub notice_id: &'a str,
    pub policy: &'a str,
    pub number: u32,
    pub max: u32,
    pub ticket: &'a Ticket,
    pub state_for_customer: &'a str,
    pub due_at: DateTime<Utc>,
    pub next_notice_at: Option<DateTime<Utc>>,
    pub waited_seconds: i64,
    pub message: &'a Message,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeliveryError {
    /// Retrying cannot help (5xx from SMTP, 4xx from a webhook).
    #[error("{reason}")]
    Permanent { reason: String, refusal: Refusal },
    /// Try again later; the receiver may say when.
    #[error("{reason}")]
    Retryable {
        reason: String,
        retry_after: Option<Duration>,
    },
}

impl DeliveryError {
    pub fn retryable(reason: impl Into<String>) -> Self {
        DeliveryError::Retryable {
            reason: reason.into(),
            retry_after: None,
        }
    }

    pub fn permanent(reason: impl Into<String>) -> Self {
        DeliveryError::Permanent {
            reason: reason.into(),
            refusal: Refusal::Other,
        }
    }

    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            DeliveryError::Permanent {
                refusal: Refusal::EndpointGone,
                ..
            } => "gone",
            DeliveryError::Permanent {
                refusal: Refusal::RecipientRejected,
                ..
            } => "rejected_recipient",
            DeliveryError::Permanent { .. } => "permanent",
            DeliveryError::Retryable { .. } => "retryable",
        }
    }
}

/// What a permanent failure refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Other,
    /// HTTP 410: the webhook endpoint is gone.
    EndpointGone,
    /// The mail server permanently rejected the recipient address.
    RecipientRejected,
}

pub enum Channel {
    Email(email::EmailChannel),
    Webhook(webhook::WebhookChannel),
    File(file::FileChannel),
}

impl Channel {
    pub async fn send(&self, out: &Outgoing<'_>) -> Result<(), DeliveryError> {
        match self {
            Channel::Email(c) => c.send(out).await,
            Channel::Webhook(c) => c.send(out).await,
            Channel::File(c) => c.send(out).await,
        }
    }
}

/// Builds every configured channel; one HTTP client is shared by all
/// webhooks.
pub fn build(settings: &Settings) -> anyhow::Result<BTreeMap<String, Arc<Channel>>> {
    let http = crate::net::client()?;
    settings
        .channels
        .iter()
        .map(|(name, ch)| {
            let channel = match &ch.kind {
                ChannelKind::Email(e) => Channel::Email(email::EmailChannel::new(e)?),
                ChannelKind::Webhook(w) => {
                    Channel::Webhook(webhook::WebhookChannel::new(w, http.clone()))
                }
                ChannelKind::File(f) => Channel::File(file::FileChannel::new(f)),
            };
            Ok((name.clone(), Arc::new(channel)))
        })
        .collect()
}

/// The JSON document of a notice: the webhook body and the file channel's
/// `.json` format (DESIGN.md, wire formats).
pub fn notice_document(out: &Outgoing<'_>) -> serde_json::Value {
    let t = out.ticket;
    json!({
        "type": "interim.notice",
        "id": out.notice_id,
        "policy": out.policy,
        "number": out.number,
        "max": out.max,
        "waited_seconds": out.waited_seconds,
        "due_at": rfc3339(out.due_at),
        "next_notice_at": out.next_notice_at.map(rfc3339),
        "ticket": {
            "id": t.id,
            "number": t.number,
            "subject": t.subject,
            "state": t.state,
            "state_for_customer": out.state_for_customer,
            "priority": t.priority,
            "queue": t.queue,
            "origin": t.origin,
            "language": out.message.language,
            "customer_email": t.customer_email,
            "customer_name": t.customer_name,
            "waiting_since": rfc3339(t.waiting_since),
            "extra": t.extra,
        },
        "message": {
            "subject": out.message.subject,
            "text": out.message.text,
            "html": out.message.html,
        },
    })
}
