//! What the one-shot commands show: the config summary, the plan, a
//! preview, the ledger. Tables for people, JSON (RFC 3339 times) for tools.

use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Format;
use crate::clock::rfc3339;
use crate::config::Settings;
use crate::ledger::Wait;
use crate::planner;
use crate::policy::Policy;
use crate::row_counts::RowCounts;
use crate::setup::Config;
use crate::source::{PollKind, Source};
use crate::store::{NoticeRow, Store};
use crate::templates::NoticeFacts;
use crate::ticket::Ticket;

#[derive(Debug, Serialize)]
pub struct PlanRow {
    pub ticket_id: String,
    /// The reference the customer knows ("#10423"), when the source has one.
    pub ticket_number: Option<String>,
    pub policy: String,
    pub number: u32,
    pub max: u32,
    pub due_at: String,
    pub send_at: String,
    pub channel: String,
    pub recipient: Option<String>,
    pub notice_id: String,
    pub why: String,
    /// The send instant in the window's zone and whose zone that is
    /// ("Mon 2026-12-07 09:00 in America/Los_Angeles, customer's zone");
    /// null when the policy has no calendar or `send_at`.
    pub window: Option<String>,
}

/// The notices due at or before `at + horizon`, each with the instant it
/// would be sent, evaluated as if now were `at` (on the tickets polled
/// now, without the staleness rule). Every notice of a series that falls
/// due within the horizon is listed, numbered, each spaced from the one
/// before as if that went out as planned.
pub async fn plan_rows(
    config: &Config,
    at: DateTime<Utc>,
    horizon: Duration,
) -> anyhow::Result<Vec<PlanRow>> {
    let settings = &config.settings;
    let source = Source::new(&settings.source)?;
    let snapshot = source.poll_once(Utc::now(), PollKind::Full).await?;
    source.close().await;
    for e in &snapshot.skipped {
        tracing::warn!("row skipped: {e}");
    }
    let dry_run = settings.daemon.dry_run;
    let series = stored_series(settings, &snapshot.tickets, dry_run).await?;
    let at = crate::clock::to_millis(at);
    let until = chrono::Duration::from_std(horizon)
        .ok()
        .and_then(|h| at.checked_add_signed(h))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    let mut rows = Vec::new();
    let mut localised = crate::policy::Localised::default();
    for ticket in &snapshot.tickets {
        for policy in Policy::applicable(&settings.policies, ticket) {
            let policy = &*localised.for_ticket(policy, ticket);
            let recipient = match planner::recipient_for(settings, policy, ticket) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("row skipped: {e} (policy {})", policy.name);
                    continue;
                }
            };
            let key = crate::notice::SeriesKey::new(&ticket.id, &policy.name, ticket.waiting_since);
            let state = series
                .iter()
                .find(|s| s.key == key)
                .cloned()
                .unwrap_or_else(|| planner::SeriesState::fresh(key.clone()));
            for (number, due_at, send_at) in upcoming(policy, ticket, &state, at, until, dry_run) {
                rows.push(PlanRow {
                    why: policy.explain_send(ticket, settings.daemon.timezone, due_at, send_at),
                    window: policy.window_text(ticket, send_at),
                    ticket_id: ticket.id.clone(),
                    ticket_number: ticket.number.clone(),
                    policy: policy.name.clone(),
                    number,
                    max: policy.max_notices,
                    due_at: rfc3339(due_at),
                    send_at: rfc3339(send_at),
                    channel: policy.channel.clone(),
                    recipient: recipient.clone(),
                    notice_id: key.notice_id(number, dry_run),
                });
            }
        }
    }
    rows.sort_by(|a, b| {
        a.send_at
            .cmp(&b.send_at)
            .then_with(|| crate::ticket::id_order(&a.ticket_id, &b.ticket_id))
            .then_with(|| (&a.policy, a.number).cmp(&(&b.policy, b.number)))
    });
    Ok(rows)
}

/// The stored series of these tickets, read as the poll reads them
/// ([`crate::daemon::series_of`], on the `PlanLedger`) from the store the
/// config names: the one place `plan` and `preview` open a store.
async fn stored_series(
    settings: &Settings,
    tickets: &[Ticket],
    dry_run: bool,
) -> anyhow::Result<Vec<planner::SeriesState>> {
    let store = Store::open(&settings.store.url).await?;
    let ids: Vec<&str> = tickets.iter().map(|t| t.id.as_str()).collect();
    let series = crate::daemon::series_of(&store, settings, tickets, &ids, dry_run).await?;
    store.close().await;
    Ok(series)
}

/// The notices of a series due by `until`, as (number, due, send): the
/// next one as the planner would place it at `now`, each later one spaced
/// from the one before as if that went out when planned.
fn upcoming(
    policy: &Policy,
    ticket: &crate::ticket::Ticket,
    state: &planner::SeriesState,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
    dry_run: bool,
) -> Vec<(u32, DateTime<Utc>, DateTime<Utc>)> {
    let mut out = Vec::new();
    let mut last_sent = state.last_sent_at;
    let first_id = state.key.notice_id(state.done.saturating_add(1), dry_run);
    let mut stored = state
        .next
        .as_ref()
        .filter(|n| n.id == first_id && n.status == crate::notice::Status::Pending)
        .map(|n| n.send_at);
    let mut number = state.done;
    while number < policy.max_notices {
        number += 1;
        let Some(due) = policy.due_at(ticket.waiting_since, number, last_sent) else {
            break;
        };
        if due > until {
            break;
        }
        let Some(send) = policy.window.place(due, now, stored.take()) else {
            break;
        };
        out.push((number, due, send));
        last_sent = Some(send);
    }
    out
}

/// JSON for tools, or an aligned table for people.
fn rows_text<T: Serialize>(
    rows: &[T],
    format: Format,
    headers: &[&str],
    cells: impl Fn(&T) -> Vec<String>,
) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(rows).unwrap_or_else(|_| "[]".into()) + "\n",
        Format::Table => {
            let table: Vec<Vec<String>> = rows.iter().map(cells).collect();
            render_table(headers, &table)
        }
    }
}

pub fn plan_text(rows: &[PlanRow], format: Format) -> String {
    let mut out = rows_text(
        rows,
        format,
        &[
            "SEND AT",
            "TICKET",
            "POLICY",
            "NO.",
            "CHANNEL",
            "RECIPIENT",
            "WHY THEN",
        ],
        |r| {
            vec![
                r.send_at.clone(),
                crate::ticket::label(&r.ticket_id, r.ticket_number.as_deref()),
                r.policy.clone(),
                format!("{}/{}", r.number, r.max),
                r.channel.clone(),
                r.recipient.clone().unwrap_or_default(),
                r.why.clone(),
            ]
        },
    );
    if format == Format::Table {
        let _ = writeln!(out, "{} notice(s)", rows.len());
    }
    out
}

pub fn notices_text(rows: &[NoticeRow], format: Format) -> String {
    rows_text(
        rows,
        format,
        &[
            "ID",
            "TICKET",
            "POLICY",
            "NO.",
            "STATUS",
            "TRIES",
            "PLANNED",
            "SENT",
            "PROMISE",
            "RECIPIENT",
            "NOTE",
        ],
        |r| {
            vec![
                r.id.clone(),
                crate::ticket::label(&r.ticket_id, r.ticket_number.as_deref()),
                r.policy.clone(),
                format!("{}/{}", r.number, r.max_notices),
                r.status.to_string(),
                r.attempts.to_string(),
                rfc3339(r.send_at),
                r.sent_at.map(rfc3339).unwrap_or_default(),
                r.promise.clone().unwrap_or_default(),
                r.recipient.clone().unwrap_or_default(),
                r.last_error
                    .clone()
                    .or_else(|| r.cancel_reason.clone())
                    .unwrap_or_default(),
            ]
        },
    )
}

/// One ticket's story (`interim notices --ticket ID`, table format): each
/// wait of the history, oldest first, with its notices, the promise each
/// made and how it turned out. Notices of a wait the history does not
/// hold (pruned, or from before the history) come last.
pub fn ticket_timeline_text(waits: &[Wait], rows: &[NoticeRow]) -> String {
    let mut out = String::new();
    let notice_cells = |n: &NoticeRow| {
        vec![
            format!("{}/{}", n.number, n.max_notices),
            n.policy.clone(),
            n.status.to_string(),
            rfc3339(n.send_at),
            n.sent_at.map(rfc3339).unwrap_or_default(),
            n.next_notice_at.map(rfc3339).unwrap_or_default(),
            n.promise.clone().unwrap_or_default(),
        ]
    };
    let headers = [
        "NO.",
        "POLICY",
        "STATUS",
        "PLANNED",
        "SENT",
        "PROMISED BY",
        "PROMISE",
    ];
    let table = |notices: Vec<&NoticeRow>, out: &mut String| {
        if notices.is_empty() {
            let _ = writeln!(out, "  no notice");
            return;
        }
        let cells: Vec<Vec<String>> = notices.into_iter().map(notice_cells).collect();
        for line in render_table(&headers, &cells).lines() {
            let _ = writeln!(out, "  {line}");
        }
    };
    for (i, wait) in waits.iter().enumerate() {
        let end = match (wait.ended_at, wait.ended) {
            (Some(at), Some(how)) => format!("ended {} ({})", rfc3339(at), how.as_str()),
            _ => "open".to_owned(),
        };
        let _ = writeln!(
            out,
            "wait {}: since {}, {end}; policies {}",
            i + 1,
            rfc3339(wait.started_at),
            wait.policies.join(", ")
        );
        table(
            rows.iter()
                .filter(|n| n.waiting_since == wait.started_at)
                .collect(),
            &mut out,
        );
    }
    let outside: Vec<&NoticeRow> = rows
        .iter()
        .filter(|n| !waits.iter().any(|w| w.started_at == n.waiting_since))
        .collect();
    if !outside.is_empty() {
        let _ = writeln!(out, "notices of waits not in the history:");
        table(outside, &mut out);
    }
    if waits.is_empty() && rows.is_empty() {
        let _ = writeln!(out, "no wait and no notice");
    }
    out
}

pub fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let text: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        let _ = writeln!(out, "{}", text.join("  ").trim_end());
    };
    line(headers.to_vec(), &mut out);
    for row in rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

pub enum PreviewError {
    NotFound(String),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for PreviewError {
    fn from(e: anyhow::Error) -> Self {
        PreviewError::Other(e)
    }
}

/// Renders the next notice of a ticket for each policy that applies (or the
/// one named), exactly as it would go out now.
pub async fn preview(
    config: &Config,
    ticket_id: &str,
    policy_name: Option<&str>,
) -> Result<String, PreviewError> {
    let settings = &config.settings;
    let source = Source::new(&settings.source)?;
    let snapshot = source.poll_once(Utc::now(), PollKind::Full).await?;
    source.close().await;
    // The id or the number the team knows.
    let wanted = ticket_id;
    let ticket_id = crate::ticket::resolve(
        wanted,
        snapshot
            .tickets
            .iter()
            .map(|t| (t.id.as_str(), t.number.as_deref())),
    )
    .map_err(PreviewError::NotFound)?
    .unwrap_or_else(|| wanted.strip_prefix("id:").unwrap_or(wanted).to_owned());
    let ticket_id = ticket_id.as_str();
    let Some(ticket) = snapshot.tickets.iter().find(|t| t.id == ticket_id) else {
        let skipped = snapshot
            .skipped
            .iter()
            .find(|e| e.ticket_id.as_deref() == Some(ticket_id));
        return Err(PreviewError::NotFound(match skipped {
            Some(e) => format!("ticket {ticket_id} is skipped: {e}"),
            None => format!(
                "ticket {ticket_id} is not among the waiting tickets the source query returns"
            ),
        }));
    };
    let policies: Vec<&Policy> = match policy_name {
        Some(name) => vec![
            settings
                .policies
                .iter()
                .find(|p| p.name == name)
                .ok_or_else(|| PreviewError::NotFound(format!("no policy \"{name}\"")))?,
        ],
        None => Policy::applicable(&settings.policies, ticket),
    };
    if policies.is_empty() {
        return Err(PreviewError::NotFound(format!(
            "no policy applies to ticket {ticket_id} (state \"{}\")",
            ticket.state
        )));
    }
    let dry_run = settings.daemon.dry_run;
    let series = stored_series(settings, std::slice::from_ref(ticket), dry_run).await?;
    let now = crate::clock::to_millis(Utc::now());
    let mut out = String::new();
    for policy in policies {
        let policy = &*policy.for_ticket(ticket);
        let key = crate::notice::SeriesKey::new(&ticket.id, &policy.name, ticket.waiting_since);
        let state = series
            .iter()
            .find(|s| s.key == key)
            .cloned()
            .unwrap_or_else(|| planner::SeriesState::fresh(key.clone()));
        let Some((number, due_at, send_at)) = upcoming(
            policy,
            ticket,
            &state,
            now,
            DateTime::<Utc>::MAX_UTC,
            dry_run,
        )
        .into_iter()
        .next() else {
            let _ = writeln!(
                out,
                "policy:    {} (series finished)\n\nAll {} notice(s) of this wait have gone out{}; the next notice comes only when the wait restarts.\n",
                policy.name,
                state.done.min(policy.max_notices),
                state
                    .last_sent_at
                    .map(|t| format!(" (the last attempt started {})", rfc3339(t)))
                    .unwrap_or_default(),
            );
            continue;
        };
        // Rendered as it will go out: at its send instant.
        let at = send_at.max(now);
        let next_notice_at =
            policy.next_notice_at(ticket.waiting_since, number, policy.max_notices, at);
        let id = key.notice_id(number, dry_run);
        let facts = NoticeFacts {
            ticket,
            policy,
            notice_id: &id,
            number,
            now: at,
            due_at,
            next_notice_at,
        };
        let message = config.templates.render(settings, &facts).map_err(|e| {
            PreviewError::Other(anyhow::anyhow!(
                "template {} failed to render: {e}",
                policy.template
            ))
        })?;
        let recipient = planner::recipient_for(settings, policy, ticket)
            .map_err(|e| PreviewError::NotFound(e.to_string()))?;
        let _ = writeln!(
            out,
            "ticket:    {}",
            crate::ticket::label(&ticket.id, ticket.number.as_deref())
        );
        let _ = writeln!(
            out,
            "policy:    {} (notice {number} of {})",
            policy.name, policy.max_notices
        );
        let _ = writeln!(out, "channel:   {}", policy.channel);
        let _ = writeln!(out, "recipient: {}", recipient.unwrap_or_default());
        let _ = writeln!(out, "language:  {}", message.language);
        let _ = writeln!(out, "due at:    {}", rfc3339(due_at));
        let _ = writeln!(out, "sends at:  {}", rfc3339(send_at));
        let _ = writeln!(out, "subject:   {}", message.subject);
        let _ = writeln!(out, "\n{}", message.text.trim_end());
        if let Some(html) = &message.html {
            let _ = writeln!(out, "\n--- html ---\n{}", html.trim_end());
        }
        let _ = writeln!(out);
    }
    Ok(out)
}

#[derive(Debug, Serialize)]
pub struct SuppressionRow {
    pub address: String,
    pub source: String,
    pub reason: String,
    pub since: Option<String>,
}

/// Every suppression in force: config, suppression file, store.
pub async fn suppression_rows(
    config: &Config,
    store: &Store,
) -> anyhow::Result<Vec<SuppressionRow>> {
    let s = &config.settings.suppress;
    let mut rows: Vec<SuppressionRow> = s
        .addresses
        .iter()
        .map(|a| (a.clone(), "suppress.addresses"))
        .chain(
            s.domains
                .iter()
                .map(|d| (format!("@{d}"), "suppress.domains")),
        )
        .map(|(address, key)| SuppressionRow {
            address,
            source: "config".into(),
            reason: format!("listed in {key}"),
            since: None,
        })
        .collect();
    if let Some(file) = &s.file
        && let Ok((entries, _)) = crate::suppress::read_file(file)
    {
        rows.extend(entries.iter().map(|e| SuppressionRow {
            address: e.key(),
            source: "file".into(),
            reason: format!("listed in {}", file.display()),
            since: None,
        }));
    }
    rows.extend(
        store
            .suppressions()
            .await?
            .into_iter()
            .map(|x| SuppressionRow {
                address: x.address,
                source: x.source,
                reason: x.reason,
                since: Some(rfc3339(x.created_at)),
            }),
    );
    Ok(rows)
}

pub fn suppressions_text(rows: &[SuppressionRow], format: Format) -> String {
    rows_text(
        rows,
        format,
        &["ADDRESS", "SOURCE", "SINCE", "REASON"],
        |r| {
            vec![
                r.address.clone(),
                r.source.clone(),
                r.since.clone().unwrap_or_default(),
                r.reason.clone(),
            ]
        },
    )
}

/// How a customer's reply finds the ticket: the marker in the subject and
/// the message the notice answers.
fn thread_text(settings: &Settings, t: &Ticket) -> String {
    let marker = crate::templates::subject_marker_of(t, settings.source.subject_marker.as_deref());
    let reply = t
        .thread_message_id
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty());
    match (marker, reply) {
        (None, None) => {
            "none (no subject marker, no thread_message_id: a reply may open a new ticket)".into()
        }
        (Some(marker), None) => format!("subject carries {marker}"),
        (None, Some(reply)) => format!("in reply to {reply}"),
        (Some(marker), Some(reply)) => format!("subject carries {marker}, in reply to {reply}"),
    }
}

/// `source.recheck_query` run once for the first waiting ticket, as the
/// daemon runs it before each send, judged as the daemon judges it.
async fn recheck_text(
    source: &Source,
    query: &str,
    tickets: &[Ticket],
    policies: &[Policy],
) -> String {
    // One a policy applies to, so the policy check means something.
    let first = tickets
        .iter()
        .find(|t| !Policy::applicable(policies, t).is_empty());
    let Some(ticket) = first.or(tickets.first()) else {
        return "recheck_query: not run (no waiting ticket to re-read)".into();
    };
    if first.is_none() {
        return format!(
            "recheck_query: not run (no policy applies to any waiting ticket; e.g. ticket {})",
            ticket.id
        );
    }
    let started = std::time::Instant::now();
    let result = source.recheck(query, &ticket.id).await;
    let took = started.elapsed().as_secs_f64() * 1000.0;
    let fresh = match result {
        Ok(fresh) => fresh,
        Err(e) => return format!("recheck_query: failed for ticket {}: {e:#}", ticket.id),
    };
    let verdict = Policy::recheck_verdict(policies, None, ticket.waiting_since, fresh.as_ref());
    let read = format!(
        "recheck_query: re-read ticket {} in {took:.1} ms",
        ticket.id
    );
    match (fresh, verdict) {
        (Some(fresh), None) => format!(
            "{read}: still waiting since {}",
            rfc3339(fresh.waiting_since)
        ),
        (None, _) => format!(
            "{read}: not waiting (the poll read it as waiting; does the re-check select the same tickets?)"
        ),
        (Some(fresh), Some(_))
            if crate::notice::truncate_millis(fresh.waiting_since)
                != crate::notice::truncate_millis(ticket.waiting_since) =>
        {
            format!(
                "{read}: waiting since {}, but the poll read {} \
             (the re-check must compute waiting_since as the query does, or every notice is cancelled)",
                rfc3339(fresh.waiting_since),
                rfc3339(ticket.waiting_since)
            )
        }
        (Some(_), Some(_)) => format!(
            "{read}: no policy matches the re-read ticket, though one matched the poll's \
             (the re-check must return the columns the policies match, as the query does, or every notice is cancelled)"
        ),
    }
}

/// What `interim sources test` found: the report, and why the daemon would
/// not take this poll, if it would not.
pub struct SourcesTest {
    pub report: String,
    pub rejected: Option<String>,
}

/// `interim sources test`: one full poll, what it read, as `plan` sees it.
pub async fn sources_test(config: &Config, shown: usize) -> anyhow::Result<SourcesTest> {
    let settings = &config.settings;
    let kind = if settings.source.http.is_some() {
        "http"
    } else {
        "sql"
    };
    let source = Source::new(&settings.source)?;
    let started = std::time::Instant::now();
    let snapshot = match source.poll_once(Utc::now(), PollKind::Full).await {
        Ok(snapshot) => snapshot,
        Err(e) => {
            source.close().await;
            anyhow::bail!("source {kind} {}: {e:#}", settings.source.url);
        }
    };
    // Tickets a policy has to skip (an email policy without a valid
    // address) count as skipped rows too, as in the daemon.
    let policy_skips: Vec<(String, crate::source::RowError)> = snapshot
        .tickets
        .iter()
        .flat_map(|t| {
            Policy::applicable(&settings.policies, t)
                .into_iter()
                .filter_map(move |p| {
                    planner::recipient_for(settings, p, t)
                        .err()
                        .map(|e| (p.name.clone(), e))
                })
        })
        .collect();
    let mut counts = RowCounts::default();
    counts.source_rows(&snapshot);
    counts.policy_skips(settings, &snapshot.tickets, &policy_skips);
    let mut out = String::new();
    let _ = writeln!(out, "source: {kind} {}", settings.source.url);
    if let Some(clock) = &settings.source.clock {
        let meaning = crate::config::CLOCK_MODES
            .iter()
            .find(|(mode, _)| mode == clock)
            .map_or("", |(_, meaning)| *meaning);
        let _ = writeln!(out, "clock: {clock} ({meaning})");
    }
    let _ = writeln!(
        out,
        "read {} waiting ticket(s), {} ended, {} skipped by the column contract, \
         {} skipped by every policy that applies ({} row(s)), in {:.1} s",
        snapshot.tickets.len(),
        snapshot.ended.len(),
        counts.source_skipped,
        counts.policy_skipped,
        counts.rows,
        started.elapsed().as_secs_f64()
    );
    if !snapshot.tickets.is_empty() {
        let _ = writeln!(
            out,
            "\nfirst {} ticket(s), as plan sees them:",
            shown.min(snapshot.tickets.len())
        );
    }
    let now = Utc::now();
    for t in snapshot.tickets.iter().take(shown) {
        let waited = (now - t.waiting_since)
            .to_std()
            .map(|d| {
                crate::clock::human_duration(std::time::Duration::from_secs(d.as_secs() / 60 * 60))
                    .to_string()
            })
            .unwrap_or_else(|_| "not yet".into());
        let policies: Vec<String> = Policy::applicable(&settings.policies, t)
            .iter()
            .map(|p| match planner::recipient_for(settings, p, t) {
                Ok(_) => p.name.clone(),
                Err(e) => format!("{} (skipped: {})", p.name, e.reason),
            })
            .collect();
        let _ = writeln!(
            out,
            "  ticket {}{}",
            t.id,
            t.number
                .as_deref()
                .map(|n| format!(" (#{n})"))
                .unwrap_or_default()
        );
        let _ = writeln!(
            out,
            "    state {:?}, priority {:?}, queue {:?}",
            t.state,
            t.priority.as_deref().unwrap_or(""),
            t.queue.as_deref().unwrap_or("")
        );
        let _ = writeln!(
            out,
            "    waiting since {} ({waited})",
            rfc3339(t.waiting_since)
        );
        let _ = writeln!(
            out,
            "    customer {} <{}>, language {}, zone {}",
            t.customer_name.as_deref().unwrap_or("-"),
            t.customer_email.as_deref().unwrap_or("-"),
            t.language.as_deref().unwrap_or("-"),
            t.timezone.as_deref().unwrap_or("-")
        );
        if let Some(subject) = &t.subject {
            let _ = writeln!(out, "    subject {:?}", crate::templates::clip(subject, 80));
        }
        let _ = writeln!(out, "    thread: {}", thread_text(settings, t));
        if !t.extra.is_empty() {
            let _ = writeln!(
                out,
                "    extra {}",
                serde_json::to_string(&t.extra).unwrap_or_default()
            );
        }
        let _ = writeln!(
            out,
            "    policies: {}",
            if policies.is_empty() {
                "none applies".into()
            } else {
                policies.join(", ")
            }
        );
    }
    if !snapshot.skipped.is_empty() {
        let _ = writeln!(out, "\nskipped by the column contract:");
        for e in &snapshot.skipped {
            let _ = writeln!(out, "  {e}");
        }
    }
    if !policy_skips.is_empty() {
        let _ = writeln!(out, "\nskipped by a policy:");
        for (policy, e) in &policy_skips {
            let _ = writeln!(out, "  {e} (policy {policy})");
        }
    }
    if !snapshot.warnings.is_empty() {
        let _ = writeln!(out, "\nwarning(s):");
        for e in &snapshot.warnings {
            let _ = writeln!(out, "  {e}");
        }
    }
    if let Some(query) = &settings.source.recheck_query {
        let _ = writeln!(
            out,
            "\n{}",
            recheck_text(&source, query, &snapshot.tickets, &settings.policies).await
        );
    }
    source.close().await;
    let rejected = counts.rejection(settings.source.max_skipped_share, true);
    if let Some(reason) = &rejected {
        let _ = writeln!(out, "\nthe daemon would not take this poll: {reason}");
    }
    Ok(SourcesTest {
        report: out,
        rejected,
    })
}
