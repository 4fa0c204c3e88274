//! A waiting ticket as the source delivers it, after the column contract
//! was applied: typed, validated, ready for matching and templates.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    pub waiting_since: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_message_id: Option<String>,
    #[serde(default)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Ticket {
    /// The customer's zone, when the `timezone` column names a valid one.
    pub fn zone(&self) -> Option<chrono_tz::Tz> {
        self.timezone.as_deref().and_then(|z| z.trim().parse().ok())
    }

    /// The language for templates: the ticket's, normalised (`de-AT` → `de`).
    pub fn language_or<'a>(&'a self, default: &'a str) -> String {
        self.language
            .as_deref()
            .map(|l| l.trim().to_lowercase())
            .and_then(|l| l.split(['-', '_']).next().map(str::to_owned))
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| default.to_owned())
    }
}
