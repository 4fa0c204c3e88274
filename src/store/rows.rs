//! Typed rows read from the ledger.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::from_ms;

/// A count column as u32 (never negative, never wrapped).
pub(super) fn count(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}
use crate::ledger::{ClaimedNotice, NoticeRow, Status, Suppression};

impl ClaimedNotice {
    pub(super) fn from_row(r: &AnyRow) -> Result<Self, sqlx::Error> {
        let ticket_json: String = r.try_get("ticket")?;
        Ok(ClaimedNotice {
            id: r.try_get("id")?,
            ticket_id: r.try_get("ticket_id")?,
            policy: r.try_get("policy")?,
            episode: from_ms(r.try_get("episode")?),
            dry_run: r.try_get::<i64, _>("dry_run")? != 0,
            number: count(r.try_get("number")?),
            max_notices: count(r.try_get("max_notices")?),
            channel: r.try_get("channel")?,
            recipient: r.try_get("recipient")?,
            due_at: from_ms(r.try_get("due_at")?),
            send_at: from_ms(r.try_get("send_at")?),
            attempts: count(r.try_get("attempts")?),
            first_attempt_at: r
                .try_get::<Option<i64>, _>("first_attempt_at")?
                .map(from_ms),
            ticket: serde_json::from_str(&ticket_json).map_err(|e| e.to_string()),
            ticket_json,
            ticket_hash: r.try_get("ticket_hash")?,
            claim_token: r.try_get("claim_token")?,
        })
    }
}

impl NoticeRow {
    pub(super) fn from_row(r: &AnyRow) -> Result<Self, sqlx::Error> {
        let ticket_json: String = r.try_get("ticket")?;
        Ok(NoticeRow {
            id: r.try_get("id")?,
            ticket_id: r.try_get("ticket_id")?,
            ticket_number: stored_number(&ticket_json),
            policy: r.try_get("policy")?,
            number: count(r.try_get("number")?),
            max_notices: count(r.try_get("max_notices")?),
            status: Status::parse(&r.try_get::<String, _>("status")?).unwrap_or(Status::Pending),
            attempts: count(r.try_get("attempts")?),
            due_at: from_ms(r.try_get("due_at")?),
            send_at: from_ms(r.try_get("send_at")?),
            next_attempt_at: from_ms(r.try_get("next_attempt_at")?),
            sent_at: r.try_get::<Option<i64>, _>("sent_at")?.map(from_ms),
            last_error: r.try_get("last_error")?,
            channel: r.try_get("channel")?,
            recipient: r.try_get("recipient")?,
            dry_run: r.try_get::<i64, _>("dry_run")? != 0,
            next_notice_at: r.try_get::<Option<i64>, _>("next_notice_at")?.map(from_ms),
            cancel_reason: r.try_get("cancel_reason")?,
            waiting_since: from_ms(r.try_get("episode")?),
            ticket_json,
        })
    }
}

/// The `number` of a stored ticket's JSON.
pub(super) fn stored_number(ticket_json: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Number {
        number: Option<String>,
    }
    serde_json::from_str::<Number>(ticket_json)
        .ok()
        .and_then(|t| t.number)
}

impl Suppression {
    pub(super) fn from_row(r: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Suppression {
            address: r.try_get("address")?,
            reason: r.try_get("reason")?,
            source: r.try_get("source")?,
            created_at: from_ms(r.try_get("created_at")?),
        })
    }
}
