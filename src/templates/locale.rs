//! Dates and durations in the customer's language. Month and weekday names
//! come from chrono's locale data (pure-rust-locales); the sentence shapes
//! ("seit 2 Tagen", "Donnerstag, 3. Dezember 2026, 14:00 Uhr") are ours.

use std::time::Duration;

use chrono::{DateTime, Locale, Utc};
use chrono_tz::Tz;

/// "Donnerstag, 3. Dezember 2026, 14:00 Uhr" / "Thursday, 3 December 2026, 2:00 PM".
pub fn format_date_time(at: DateTime<Utc>, zone: Tz, language: &str) -> String {
    let local = at.with_timezone(&zone);
    match language {
        "de" => local
            .format_localized("%A, %-d. %B %Y, %H:%M Uhr", Locale::de_DE)
            .to_string(),
        "en" => local
            .format_localized("%A, %-d %B %Y, %-I:%M %p", Locale::en_US)
            .to_string(),
        other => match locale_for(other) {
            Some(locale) => local
                .format_localized("%A %-d %B %Y, %H:%M", locale)
                .to_string(),
            None => local
                .format_localized("%A, %-d %B %Y, %H:%M", Locale::en_US)
                .to_string(),
        },
    }
}

/// The usual locale of a bare language code (`fr` → `fr_FR`).
fn locale_for(language: &str) -> Option<Locale> {
    let region = match language {
        "en" => "US",
        "sv" => "SE",
        "da" => "DK",
        "cs" => "CZ",
        "el" => "GR",
        "ja" => "JP",
        "uk" => "UA",
        other => {
            return Locale::try_from(format!("{other}_{}", other.to_uppercase()).as_str()).ok();
        }
    };
    Locale::try_from(format!("{language}_{region}").as_str()).ok()
}

/// How long the customer has waited, in their language: "seit 2 Tagen",
/// "for 2 days". Whole units, the largest that fits.
pub fn format_waited(waited: Duration, language: &str) -> String {
    let secs = waited.as_secs();
    let (count, unit) = if secs >= 86_400 {
        (secs / 86_400, Unit::Day)
    } else if secs >= 3_600 {
        (secs / 3_600, Unit::Hour)
    } else if secs >= 60 {
        (secs / 60, Unit::Minute)
    } else {
        (secs, Unit::Second)
    };
    match language {
        "de" => {
            let word = match (unit, count == 1) {
                (Unit::Day, true) => "einem Tag",
                (Unit::Day, false) => "Tagen",
                (Unit::Hour, true) => "einer Stunde",
                (Unit::Hour, false) => "Stunden",
                (Unit::Minute, true) => "einer Minute",
                (Unit::Minute, false) => "Minuten",
                (Unit::Second, true) => "einer Sekunde",
                (Unit::Second, false) => "Sekunden",
            };
            if count == 1 {
                format!("seit {word}")
            } else {
                format!("seit {count} {word}")
            }
        }
        _ => {
            let word = match unit {
                Unit::Day => "day",
                Unit::Hour => "hour",
                Unit::Minute => "minute",
                Unit::Second => "second",
            };
            let plural = if count == 1 { "" } else { "s" };
            format!("for {count} {word}{plural}")
        }
    }
}

#[derive(Clone, Copy)]
enum Unit {
    Day,
    Hour,
    Minute,
    Second,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn german_and_english_dates_read_naturally() {
        let t = at("2026-12-03T13:00:00Z");
        assert_eq!(
            format_date_time(t, chrono_tz::Europe::Berlin, "de"),
            "Donnerstag, 3. Dezember 2026, 14:00 Uhr"
        );
        assert_eq!(
            format_date_time(t, chrono_tz::Europe::Berlin, "en"),
            "Thursday, 3 December 2026, 2:00 PM"
        );
    }

    #[test]
    fn waiting_times_use_the_largest_whole_unit() {
        assert_eq!(
            format_waited(Duration::from_secs(2 * 86_400 + 5), "de"),
            "seit 2 Tagen"
        );
        assert_eq!(
            format_waited(Duration::from_secs(86_400), "de"),
            "seit einem Tag"
        );
        assert_eq!(
            format_waited(Duration::from_secs(3 * 3600), "en"),
            "for 3 hours"
        );
        assert_eq!(format_waited(Duration::from_secs(60), "en"), "for 1 minute");
    }
}
