//! The engines' rows as the ledger's vocabulary, and its keys as the
//! engines' arguments.

use interim_store_rows::{
    ClaimedRow, ListedRow, ReportWaitRow, SeriesKeyArgs, SeriesNoticeRow, SeriesRow,
    SuppressionRow, WaitRow,
};

use super::from_ms;
use crate::ledger::{
    ClaimedNotice, NextNotice, NoticeRow, PromiseState, ReportWait, SeriesState, Status,
    Suppression, Wait, WaitEnd,
};
use crate::notice::SeriesKey;

/// A count column as u32 (never negative, never wrapped).
pub(super) fn count(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

/// A stored status; an unknown one (the schema's CHECK forbids it) reads
/// as pending, which sends nothing by itself.
fn status(s: &str) -> Status {
    Status::parse(s).unwrap_or(Status::Pending)
}

/// A series' key as the engines bind it.
pub(super) fn key_args(key: &SeriesKey, dry_run: bool) -> SeriesKeyArgs<'_> {
    SeriesKeyArgs {
        ticket_id: &key.ticket_id,
        policy: &key.policy,
        episode: super::ms(key.episode),
        dry_run: i64::from(dry_run),
    }
}

/// The key of a claimed notice's series as the engines bind it.
pub(super) fn claimed_key(n: &ClaimedNotice) -> SeriesKeyArgs<'_> {
    SeriesKeyArgs {
        ticket_id: &n.ticket_id,
        policy: &n.policy,
        episode: super::ms(n.episode),
        dry_run: i64::from(n.dry_run),
    }
}

pub(super) fn series(r: SeriesRow) -> SeriesState {
    let next = match (r.next_id, r.next_number, r.next_status, r.next_channel) {
        (Some(id), Some(number), Some(next_status), Some(channel)) => Some(NextNotice {
            id,
            number: count(number),
            status: status(&next_status),
            due_at: from_ms(r.next_due_at.unwrap_or_default()),
            send_at: from_ms(r.next_send_at.unwrap_or_default()),
            ticket_hash: r.next_ticket_hash.unwrap_or_default(),
            channel,
            recipient: r.next_recipient,
            max_notices: count(r.next_max_notices.unwrap_or_default()),
        }),
        _ => None,
    };
    SeriesState {
        key: SeriesKey {
            ticket_id: r.ticket_id,
            policy: r.policy,
            episode: from_ms(r.episode),
        },
        done: count(r.done),
        last_sent_at: r.last_sent_at.map(from_ms),
        active: r.active != 0,
        stored: true,
        next,
    }
}

/// A notice of a series being derived, and when its last attempt started.
pub(super) fn series_notice(r: SeriesNoticeRow) -> (SeriesKey, NextNotice, Option<i64>) {
    let key = SeriesKey {
        ticket_id: r.ticket_id,
        policy: r.policy,
        episode: from_ms(r.episode),
    };
    let notice = NextNotice {
        id: r.id,
        number: count(r.number),
        status: status(&r.status),
        due_at: from_ms(r.due_at),
        send_at: from_ms(r.send_at),
        ticket_hash: r.ticket_hash,
        channel: r.channel,
        recipient: r.recipient,
        max_notices: count(r.max_notices),
    };
    (key, notice, r.last_attempt_at)
}

pub(super) fn claimed(r: ClaimedRow) -> ClaimedNotice {
    ClaimedNotice {
        ticket: serde_json::from_str(&r.ticket).map_err(|e| e.to_string()),
        ticket_json: r.ticket,
        id: r.id,
        ticket_id: r.ticket_id,
        policy: r.policy,
        episode: from_ms(r.episode),
        dry_run: r.dry_run != 0,
        number: count(r.number),
        max_notices: count(r.max_notices),
        channel: r.channel,
        recipient: r.recipient,
        due_at: from_ms(r.due_at),
        send_at: from_ms(r.send_at),
        attempts: count(r.attempts),
        first_attempt_at: r.first_attempt_at.map(from_ms),
        ticket_hash: r.ticket_hash,
        claim_token: r.claim_token,
    }
}

pub(super) fn listed(r: ListedRow) -> NoticeRow {
    NoticeRow {
        ticket_number: stored_number(&r.ticket),
        ticket_json: r.ticket,
        id: r.id,
        ticket_id: r.ticket_id,
        policy: r.policy,
        number: count(r.number),
        max_notices: count(r.max_notices),
        status: status(&r.status),
        attempts: count(r.attempts),
        due_at: from_ms(r.due_at),
        send_at: from_ms(r.send_at),
        next_attempt_at: from_ms(r.next_attempt_at),
        sent_at: r.sent_at.map(from_ms),
        last_error: r.last_error,
        channel: r.channel,
        recipient: r.recipient,
        dry_run: r.dry_run != 0,
        next_notice_at: r.next_notice_at.map(from_ms),
        cancel_reason: r.cancel_reason,
        waiting_since: from_ms(r.episode),
        promise: promise_of(r.promise_outcome.as_deref(), r.promise_reason.as_deref()),
        created_at: from_ms(r.created_at),
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

pub(super) fn suppression(r: SuppressionRow) -> Suppression {
    Suppression {
        address: r.address,
        reason: r.reason,
        source: r.source,
        created_at: from_ms(r.created_at),
    }
}

/// A stored wait.
pub(super) fn wait(r: WaitRow) -> Wait {
    Wait {
        ticket_id: r.ticket_id,
        ticket_number: r.ticket_number,
        started_at: from_ms(r.episode),
        dry_run: r.dry_run != 0,
        queue: r.queue,
        priority: r.priority,
        origin: r.origin,
        language: r.language,
        policies: r
            .policies
            .split(',')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
        first_due_at: r.first_due_at.map(from_ms),
        ended_at: r.ended_at.map(from_ms),
        ended: r.end_reason.as_deref().and_then(WaitEnd::parse),
    }
}

/// A wait as the report counts it. A list that does not parse (the
/// engines write it) counts nothing rather than something wrong.
pub(super) fn report_wait(r: ReportWaitRow) -> ReportWait {
    let list = |text: Option<&str>| -> Vec<String> {
        text.unwrap_or("")
            .split(',')
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let sent_numbers = list(r.numbers.as_deref())
        .iter()
        .filter_map(|n| n.trim().parse::<u32>().ok())
        .collect();
    let broken = list(r.broken.as_deref());
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    ReportWait {
        sent_numbers,
        kept: count(r.kept),
        superseded: count(r.superseded),
        pending: count(r.pending),
        broken,
        got_last: r.got_last != 0,
        wait: wait(WaitRow {
            ticket_id: r.ticket_id,
            episode: r.episode,
            dry_run: r.dry_run,
            ticket_number: r.ticket_number,
            queue: r.queue,
            priority: r.priority,
            origin: r.origin,
            language: r.language,
            policies: r.policies,
            first_due_at: r.first_due_at,
            ended_at: r.ended_at,
            end_reason: r.end_reason,
        }),
    }
}

/// A stored promise outcome as the operator reads it: `pending`, `kept`,
/// `superseded`, `broken (late)`; None for a notice that made no promise.
fn promise_of(outcome: Option<&str>, reason: Option<&str>) -> Option<String> {
    PromiseState::parse(outcome, reason).map(|p| p.to_string())
}
