//! A report read from the store: the waits of the period streamed into
//! [`ReportBuilder`], each business time on its first policy's calendar.

use chrono::{DateTime, Utc};

use super::{Report, ReportBuilder, ReportRequest};
use crate::config::Settings;
use crate::store::Store;

/// The waits and promises of the period, from the ledger alone.
pub async fn read(
    settings: &Settings,
    store: &Store,
    request: &ReportRequest,
    now: DateTime<Utc>,
) -> anyhow::Result<Report> {
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
