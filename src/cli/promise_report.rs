//! How `interim report` prints: a table for people, JSON (DESIGN.md) for
//! tools, CSV for spreadsheets. The numbers, their reading from the store
//! and the CSV are [`crate::promise_report`]'s.

use std::fmt::Write as _;

use super::report::render_table;
use crate::clock::rfc3339;
use crate::promise_report::Report;

/// How `interim report` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
    Csv,
}

pub fn report_text(report: &Report, format: ReportFormat) -> anyhow::Result<String> {
    Ok(match format {
        ReportFormat::Json => serde_json::to_string_pretty(report)? + "\n",
        ReportFormat::Csv => crate::promise_report::csv(report)?,
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
