//! `/report`: the numbers of `interim report` for a period and a
//! grouping, with charts drawn on the server as SVG (the kept rate per
//! week, the wait durations per group, the "realistic promise" shares)
//! and the same numbers as a CSV download (`/report.csv`).

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::notices::unavailable;
use super::{Asked, respond};
use crate::http::AdminState;
use crate::promise_report::{GroupBy, Report, ReportRequest};

/// Candidates the page shows when the query names none.
const DEFAULT_CANDIDATES: &str = "4h,8h,1d,2d,5d";

#[derive(Debug, Default, Deserialize)]
pub struct ReportQuery {
    lang: Option<String>,
    since: Option<String>,
    until: Option<String>,
    by: Option<String>,
    promise: Option<String>,
}

/// One bar of a chart: its label, the value as text, its length in
/// percent of the chart.
#[derive(Debug, Serialize)]
pub struct Bar {
    pub label: String,
    pub value: String,
    pub percent: f64,
}

/// A group's waits: the median and 90th percentile as bars, in percent
/// of the longest 90th percentile.
#[derive(Debug, Serialize)]
pub struct WaitBar {
    pub label: String,
    pub p50: f64,
    pub p90: f64,
    pub text: String,
}

#[derive(Debug, Serialize)]
pub struct ReportPage {
    pub since: String,
    pub until: String,
    pub by: String,
    pub promise: String,
    pub groupings: Vec<&'static str>,
    /// The numbers, exactly as `interim report --format json` gives them.
    pub report: Report,
    pub kept_by_week: Vec<Bar>,
    pub waits_by_group: Vec<WaitBar>,
    pub within: Vec<Bar>,
    /// The query string of this report, for the CSV link.
    pub query: String,
}

/// The request the query asks for; a bad value names its parameter.
fn request(q: &ReportQuery, now: chrono::DateTime<Utc>) -> Result<ReportRequest, String> {
    crate::promise_report::parse_request(
        q.since
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or("30d"),
        q.until.as_deref().filter(|s| !s.is_empty()),
        q.by.as_deref().filter(|s| !s.is_empty()).unwrap_or("queue"),
        Some(
            q.promise
                .as_deref()
                .filter(|s| !s.is_empty())
                .unwrap_or(DEFAULT_CANDIDATES),
        ),
        now,
    )
}

pub async fn page(
    State(state): State<AdminState>,
    Query(query): Query<ReportQuery>,
    headers: HeaderMap,
) -> Response {
    let asked = Asked::from(&headers, query.lang.as_deref(), "/report", &state.sessions);
    let now = Utc::now();
    let live = state.dispatcher.live();
    let settings = &live.config.settings;
    let wanted = match request(&query, now) {
        Ok(r) => r,
        Err(problem) => return (StatusCode::BAD_REQUEST, format!("{problem}\n")).into_response(),
    };
    let weekly = ReportRequest {
        by: GroupBy::Week,
        ..wanted.clone()
    };
    let (report, weeks) = match tokio::try_join!(
        crate::promise_report::read(settings, &state.store, &wanted, now),
        crate::promise_report::read(settings, &state.store, &weekly, now)
    ) {
        Ok(both) => both,
        Err(e) => return unavailable(&e),
    };
    let percent = |share: f64| (share * 100.0).clamp(0.0, 100.0);
    let kept_by_week = weeks
        .groups
        .iter()
        .filter_map(|g| {
            let rate = g.promises.kept_rate?;
            Some(Bar {
                label: g.key.clone().unwrap_or_default(),
                value: format!("{:.0} %", rate * 100.0),
                percent: percent(rate),
            })
        })
        .collect();
    let spread = |g: &crate::promise_report::Group| g.business_wait_seconds.or(g.wait_seconds);
    let longest = report
        .groups
        .iter()
        .filter_map(|g| spread(g).map(|s| s.p90))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let hours = |secs: u64| format!("{:.1} h", secs as f64 / 3600.0);
    let waits_by_group = report
        .groups
        .iter()
        .filter_map(|g| {
            let s = spread(g)?;
            Some(WaitBar {
                label: g.key.clone().unwrap_or_else(|| "-".into()),
                p50: s.p50 as f64 / longest * 100.0,
                p90: s.p90 as f64 / longest * 100.0,
                text: format!("p50 {} · p90 {}", hours(s.p50), hours(s.p90)),
            })
        })
        .collect();
    let within = report
        .total
        .ended_within
        .iter()
        .flatten()
        .map(|(label, share)| Bar {
            label: label.clone(),
            value: format!("{:.0} %", share * 100.0),
            percent: percent(*share),
        })
        .collect();
    let mut link = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in [
        ("since", &query.since),
        ("until", &query.until),
        ("by", &query.by),
        ("promise", &query.promise),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            link.append_pair(key, v);
        }
    }
    let data = ReportPage {
        since: query.since.clone().unwrap_or_else(|| "30d".into()),
        until: query.until.clone().unwrap_or_default(),
        by: report.by.to_owned(),
        promise: query
            .promise
            .clone()
            .unwrap_or_else(|| DEFAULT_CANDIDATES.into()),
        groupings: GroupBy::ALL.iter().map(|(name, _)| *name).collect(),
        report,
        kept_by_week,
        waits_by_group,
        within,
        query: link.finish(),
    };
    respond(
        &asked,
        "report.html",
        "report",
        &data,
        settings.daemon.timezone,
        now,
    )
}

/// `/report.csv`: the same numbers as `interim report --format csv`.
pub async fn csv(State(state): State<AdminState>, Query(query): Query<ReportQuery>) -> Response {
    let now = Utc::now();
    let live = state.dispatcher.live();
    let wanted = match request(&query, now) {
        Ok(r) => r,
        Err(problem) => return (StatusCode::BAD_REQUEST, format!("{problem}\n")).into_response(),
    };
    let text = crate::promise_report::read(&live.config.settings, &state.store, &wanted, now)
        .await
        .and_then(|report| crate::promise_report::csv(&report));
    match text {
        Ok(text) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"interim-report.csv\"",
                ),
            ],
            text,
        )
            .into_response(),
        Err(e) => unavailable(&e),
    }
}
