//! `interim report`: its arguments, the rows it reads, and the report as a
//! table for people, JSON (DESIGN.md) for tools and CSV for spreadsheets.
//! The numbers themselves are [`crate::promise_report::build`]'s.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::report::render_table;
use crate::clock::rfc3339;
use crate::promise::BrokenBy;
use crate::promise_report::{GroupBy, LONGEST_OPEN, Report, ReportBuilder, ReportRequest};
use crate::setup::Config;
use crate::store::Store;

/// How `interim report` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
    Csv,
}

/// The period, grouping and candidates of `interim report`, from its
/// arguments; a usage error names the argument.
pub fn report_request(
    since: &str,
    until: Option<&str>,
    by: &str,
    promise: Option<&str>,
    now: DateTime<Utc>,
) -> Result<ReportRequest, String> {
    let instant = |flag: &str, text: &str| -> Result<DateTime<Utc>, String> {
        let t = text.trim();
        if let Ok(at) = DateTime::parse_from_rfc3339(t) {
            return Ok(at.with_timezone(&Utc));
        }
        if let Ok(day) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
            return Ok(day.and_time(chrono::NaiveTime::MIN).and_utc());
        }
        Err(format!(
            "{flag}: \"{text}\" is not a date (2026-11-01), an RFC 3339 time or, for --since, a duration back from now (30d)"
        ))
    };
    let since = match crate::config::parse_duration(since) {
        Ok(back) => chrono::Duration::from_std(back)
            .ok()
            .and_then(|back| now.checked_sub_signed(back))
            .ok_or_else(|| format!("--since: {since} reaches too far back"))?,
        Err(_) => instant("--since", since)?,
    };
    let until = match until {
        Some(text) => instant("--until", text)?,
        None => now,
    };
    if until <= since {
        return Err("--until must be after --since".into());
    }
    let by = GroupBy::parse(by.trim()).ok_or_else(|| {
        format!(
            "--by: \"{by}\" is not one of {}",
            GroupBy::ALL.map(|(name, _)| name).join(", ")
        )
    })?;
    let mut candidates = Vec::new();
    for part in promise
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let within = crate::config::parse_duration(part).map_err(|e| format!("--promise: {e}"))?;
        if candidates.iter().any(|(label, _)| label == part) {
            return Err(format!("--promise: {part} is listed twice"));
        }
        candidates.push((part.to_owned(), within));
    }
    Ok(ReportRequest {
        since,
        until,
        by,
        candidates,
    })
}

/// The waits and promises of the period, from the ledger alone.
pub async fn promise_report(
    config: &Config,
    store: &Store,
    request: &ReportRequest,
    now: DateTime<Utc>,
) -> anyhow::Result<Report> {
    let settings = &config.settings;
    let dry_run = settings.daemon.dry_run;
    let calendar_of = |policy: &str| {
        settings
            .policies
            .iter()
            .find(|p| p.name == policy)
            .and_then(|p| p.window.calendar.as_deref())
    };
    let mut report = ReportBuilder::new(request, now, calendar_of);
    store
        .fold_report_waits(dry_run, request.since, request.until, |w| report.add(&w))
        .await?;
    Ok(report.finish())
}

pub fn report_text(report: &Report, format: ReportFormat) -> anyhow::Result<String> {
    Ok(match format {
        ReportFormat::Json => serde_json::to_string_pretty(report)? + "\n",
        ReportFormat::Csv => report_csv(report)?,
        ReportFormat::Table => report_table(report),
    })
}

/// A group's label in a table: clipped, `-` for a ticket without the field.
fn group_label(key: Option<&str>, total: bool) -> String {
    match (key, total) {
        (_, true) => "total".to_owned(),
        (Some(k), false) => crate::logging::clip(k, 16).to_string(),
        (None, false) => "-".to_owned(),
    }
}

fn percent(share: f64) -> String {
    format!("{:.0}%", share * 100.0)
}

/// The report as tables of at most 100 columns: the numbers, one row per
/// group and a total; the shares that ended within each candidate promise;
/// the longest open waits.
fn report_table(report: &Report) -> String {
    let hours = |secs: u64| format!("{:.1}h", secs as f64 / 3600.0);
    let groups = || {
        report
            .groups
            .iter()
            .map(|g| (g, false))
            .chain(std::iter::once((&report.total, true)))
    };
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (g, total) in groups() {
        let spread = g
            .business_wait_seconds
            .or(g.wait_seconds)
            .map(|s| format!("{}/{}", hours(s.p50), hours(s.p90)))
            .unwrap_or_else(|| "-".into());
        rows.push(vec![
            group_label(g.key.as_deref(), total),
            g.waits_started.to_string(),
            g.waits_ended.to_string(),
            g.waits_open.to_string(),
            g.waits_crossed.to_string(),
            spread,
            g.notices_sent.to_string(),
            g.promises.made.to_string(),
            g.promises
                .kept_rate
                .map(percent)
                .unwrap_or_else(|| "-".into()),
            g.promises.broken.to_string(),
            g.exhausted.to_string(),
        ]);
    }
    let by = report.by.to_uppercase();
    let headers = [
        by.as_str(),
        "STARTED",
        "ENDED",
        "OPEN",
        "CROSSED",
        "P50/P90",
        "SENT",
        "PROMISES",
        "KEPT",
        "BROKEN",
        "EXHAUSTED",
    ];
    let mut out = format!(
        "{} to {}\n{}",
        rfc3339(report.since),
        rfc3339(report.until),
        render_table(&headers, &rows)
    );
    if let Some(candidates) = &report.total.ended_within {
        let mut headers = vec![by.clone()];
        headers.extend(candidates.iter().map(|(label, _)| format!("<={label}")));
        let rows: Vec<Vec<String>> = groups()
            .map(|(g, total)| {
                let mut row = vec![group_label(g.key.as_deref(), total)];
                let shares = g.ended_within.iter().flatten();
                row.extend(shares.map(|(_, share)| percent(*share)));
                row
            })
            .collect();
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        let _ = write!(
            out,
            "\nwaits that ended within each candidate promise\n{}",
            render_table(&headers, &rows)
        );
    }
    let open: Vec<Vec<String>> = report
        .groups
        .iter()
        .flat_map(|g| {
            g.longest_open.iter().map(|w| {
                vec![
                    group_label(g.key.as_deref(), false),
                    crate::logging::clip(w.ticket_number.as_deref().unwrap_or(&w.ticket_id), 24)
                        .to_string(),
                    rfc3339(w.since),
                    hours(w.waited_seconds),
                ]
            })
        })
        .collect();
    if !open.is_empty() {
        let _ = write!(
            out,
            "\nlongest open waits\n{}",
            render_table(&[by.as_str(), "TICKET", "SINCE", "WAITED"], &open)
        );
    }
    out
}

/// The report as RFC 4180 CSV: a header row of dotted names
/// (`promises.kept`), one row per group and a `total` row. The columns are
/// the same whatever the data: every broken reason, every notice number
/// and candidate the report holds, [`LONGEST_OPEN`] open waits.
fn report_csv(report: &Report) -> anyhow::Result<String> {
    let total = &report.total;
    let mut header: Vec<String> = [
        "row",
        "key",
        "waits_started",
        "waits_ended",
        "waits_open",
        "waits_crossed",
        "wait_seconds.p50",
        "wait_seconds.p90",
        "wait_seconds.max",
        "business_wait_seconds.p50",
        "business_wait_seconds.p90",
        "business_wait_seconds.max",
        "notices_sent",
    ]
    .map(str::to_owned)
    .to_vec();
    // The total holds every notice number, reason and candidate a group has.
    let numbers: Vec<&u32> = total.notices_by_number.keys().collect();
    header.extend(numbers.iter().map(|n| format!("notices_by_number.{n}")));
    header.extend(
        [
            "made",
            "kept",
            "superseded",
            "broken",
            "pending",
            "kept_rate",
        ]
        .map(|f| format!("promises.{f}")),
    );
    let mut reasons: Vec<String> = BrokenBy::ALL.map(|r| r.as_str().to_owned()).to_vec();
    reasons.extend(
        total
            .promises
            .broken_by_reason
            .keys()
            .filter(|r| BrokenBy::parse(r).is_none())
            .cloned(),
    );
    header.extend(
        reasons
            .iter()
            .map(|r| format!("promises.broken_by_reason.{r}")),
    );
    header.push("exhausted".into());
    for i in 1..=LONGEST_OPEN {
        for f in ["ticket_id", "ticket_number", "since", "waited_seconds"] {
            header.push(format!("longest_open.{i}.{f}"));
        }
    }
    let candidates: Vec<&String> = total
        .ended_within
        .iter()
        .flatten()
        .map(|(label, _)| label)
        .collect();
    header.extend(candidates.iter().map(|c| format!("ended_within.{c}")));

    // RFC 4180 ends records with CRLF; the crate's default is LF.
    let mut csv = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    csv.write_record(&header)?;
    let groups = report.groups.iter().map(|g| ("group", g));
    for (row, g) in groups.chain(std::iter::once(("total", total))) {
        let spread = |s: Option<crate::promise_report::Spread>| -> [String; 3] {
            s.map_or_else(Default::default, |s| {
                [s.p50.to_string(), s.p90.to_string(), s.max.to_string()]
            })
        };
        let mut cells: Vec<String> = vec![
            row.to_owned(),
            g.key.clone().unwrap_or_default(),
            g.waits_started.to_string(),
            g.waits_ended.to_string(),
            g.waits_open.to_string(),
            g.waits_crossed.to_string(),
        ];
        cells.extend(spread(g.wait_seconds));
        cells.extend(spread(g.business_wait_seconds));
        cells.push(g.notices_sent.to_string());
        cells.extend(numbers.iter().map(|n| {
            g.notices_by_number
                .get(*n)
                .copied()
                .unwrap_or(0)
                .to_string()
        }));
        let p = &g.promises;
        cells.extend([p.made, p.kept, p.superseded, p.broken, p.pending].map(|n| n.to_string()));
        cells.push(p.kept_rate.map(|r| r.to_string()).unwrap_or_default());
        cells.extend(
            reasons
                .iter()
                .map(|r| p.broken_by_reason.get(r).copied().unwrap_or(0).to_string()),
        );
        cells.push(g.exhausted.to_string());
        for i in 0..LONGEST_OPEN {
            match g.longest_open.get(i) {
                Some(w) => cells.extend([
                    w.ticket_id.clone(),
                    w.ticket_number.clone().unwrap_or_default(),
                    rfc3339(w.since),
                    w.waited_seconds.to_string(),
                ]),
                None => cells.extend(std::iter::repeat_n(String::new(), 4)),
            }
        }
        cells.extend(candidates.iter().map(|c| {
            let shares = g.ended_within.iter().flatten();
            shares
                .filter(|(label, _)| label == *c)
                .map(|(_, share)| share.to_string())
                .next()
                .unwrap_or_default()
        }));
        csv.write_record(&cells)?;
    }
    let bytes = csv
        .into_inner()
        .map_err(|e| anyhow::anyhow!("failed to write the CSV: {e}"))?;
    Ok(String::from_utf8(bytes)?)
}
