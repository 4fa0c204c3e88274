//! `/`: is the daemon ready, what did the last poll do, what goes out
//! soon, what failed, were the promises of the last 30 days kept, who
//! waits now.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Asked, respond};
use crate::http::AdminState;
use crate::ledger::OverviewCounts;

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    lang: Option<String>,
}

/// What the overview shows (and its JSON).
#[derive(Debug, Serialize)]
pub struct Overview {
    pub ready: bool,
    /// Why not, when not ready (the same text as `/readyz`).
    pub not_ready_reason: Option<String>,
    pub last_poll_at: Option<String>,
    /// How long this process's last poll took, in milliseconds.
    pub last_poll_took_ms: Option<u64>,
    /// Tickets the last full poll saw.
    pub tickets_tracked: Option<usize>,
    pub counts: OverviewCounts,
    /// (kept + superseded) / decided over the last 30 days.
    pub kept_rate: Option<f64>,
    /// Open waits per configured policy (zero included).
    pub open_waits: BTreeMap<String, u64>,
    pub dry_run: bool,
}

pub async fn page(
    State(state): State<AdminState>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let asked = Asked::from(&headers, query.lang.as_deref(), "/", &state.sessions);
    let now = Utc::now();
    let live = state.dispatcher.live();
    let settings = &live.config.settings;
    match overview(&state, settings, now).await {
        Ok(data) => respond(
            &asked,
            "overview.html",
            "overview",
            &data,
            settings.daemon.timezone,
            now,
        ),
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "cannot read the overview");
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "the ledger cannot be read now; see the log\n",
            )
                .into_response()
        }
    }
}

async fn overview(
    state: &AdminState,
    settings: &crate::config::Settings,
    now: DateTime<Utc>,
) -> anyhow::Result<Overview> {
    let dry_run = settings.daemon.dry_run;
    let (reason, last_poll_at) = crate::http::readiness(state).await;
    let counts = state
        .store
        .overview_counts(dry_run, now, start_of_day(now, settings.daemon.timezone))
        .await?;
    let mut open_waits: BTreeMap<String, u64> = settings
        .policies
        .iter()
        .map(|p| (p.name.clone(), 0))
        .collect();
    open_waits.extend(state.store.open_waits_per_policy(dry_run).await?);
    let status = state.dispatcher.last_poll_status();
    let held = counts.kept.saturating_add(counts.superseded);
    let decided = held.saturating_add(counts.broken);
    Ok(Overview {
        ready: reason.is_none(),
        not_ready_reason: reason,
        last_poll_at: last_poll_at.map(crate::clock::rfc3339),
        last_poll_took_ms: status.map(|s| u64::try_from(s.took.as_millis()).unwrap_or(u64::MAX)),
        tickets_tracked: status.and_then(|s| s.tracked),
        kept_rate: (decided > 0).then(|| held as f64 / decided as f64),
        counts,
        open_waits,
        dry_run,
    })
}

/// Midnight of `now`'s day in `tz`.
fn start_of_day(now: DateTime<Utc>, tz: chrono_tz::Tz) -> DateTime<Utc> {
    let midnight = now
        .with_timezone(&tz)
        .date_naive()
        .and_time(chrono::NaiveTime::MIN);
    crate::calendar::local_to_utc(tz, midnight)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_day_starts_at_local_midnight() {
        let now = DateTime::parse_from_rfc3339("2026-12-08T23:30:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        // 00:30 on the 9th in Berlin: the day began at 23:00 UTC on the 8th.
        assert_eq!(
            crate::clock::rfc3339(start_of_day(now, chrono_tz::Europe::Berlin)),
            "2026-12-08T23:00:00Z"
        );
    }
}
