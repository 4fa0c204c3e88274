//! `[calendars.NAME]`: working hours, holidays and holiday files.

use std::collections::BTreeSet;
use std::path::PathBuf;

use chrono::NaiveDate;
use chrono_tz::Tz;

use super::raw::RawCalendar;
use super::settings::*;
use crate::calendar::{Calendar, parse_day_hours, weekday_index};

pub(super) fn calendar_settings(
    p: &mut Problems,
    name: &str,
    raw: &RawCalendar,
    default_tz: Tz,
) -> Option<Calendar> {
    let key = format!("calendars.{name}");
    let timezone = match &raw.timezone {
        Some(zone) => p.take(&format!("{key}.timezone"), parse_zone(zone))?,
        None => default_tz,
    };
    let mut hours: [Vec<_>; 7] = Default::default();
    for (day, spec) in &raw.hours {
        let Some(index) = weekday_index(day) else {
            p.add(
                format!("{key}.hours.{day}"),
                "unknown weekday (use mon, tue, wed, thu, fri, sat, sun)",
            );
            continue;
        };
        if let Some(intervals) = p.take(&format!("{key}.hours.{day}"), parse_day_hours(spec)) {
            hours[index] = intervals;
        }
    }
    if hours.iter().all(Vec::is_empty) {
        p.add(
            format!("{key}.hours"),
            "no working hours: a notice in this calendar could never be sent",
        );
    }
    let mut holidays = BTreeSet::new();
    for (i, day) in raw.holidays.iter().enumerate() {
        if let Some(date) = p.take(&format!("{key}.holidays[{i}]"), parse_date(day)) {
            holidays.insert(date);
        }
    }
    if let Some(file) = &raw.holidays_file {
        let path = PathBuf::from(file);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                for (number, line) in text.lines().enumerate() {
                    let content = line.split('#').next().unwrap_or("").trim();
                    if content.is_empty() {
                        continue;
                    }
                    match parse_date(content) {
                        Ok(date) => {
                            holidays.insert(date);
                        }
                        Err(reason) => p.add(
                            format!("{key}.holidays_file ({}:{})", path.display(), number + 1),
                            reason,
                        ),
                    }
                }
            }
            Err(e) => p.add(
                format!("{key}.holidays_file"),
                format!("cannot read {}: {e}", path.display()),
            ),
        }
    }
    Some(Calendar {
        name: name.to_owned(),
        timezone,
        hours,
        holidays,
    })
}

pub(super) fn parse_date(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| format!("\"{text}\" is not a date like \"2026-12-24\""))
}
