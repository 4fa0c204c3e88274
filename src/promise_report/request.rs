//! A report's period, grouping and candidate promises from the words of
//! `interim report` (and of the report page's query).

use chrono::{DateTime, Utc};

use super::{GroupBy, ReportRequest};

/// The period, grouping and candidates of `interim report`, from its
/// arguments; a usage error names the argument.
pub fn parse(
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
