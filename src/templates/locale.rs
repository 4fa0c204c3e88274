//! Dates and durations in the customer's language. Month and weekday names
//! come from chrono's locale data (pure-rust-locales), zone abbreviations
//! from chrono-tz (the tz database); the sentence shapes ("seit 2 Tagen",
//! "Donnerstag, 3. Dezember 2026, 14:00 Uhr") are ours.

use std::time::Duration;

use chrono::{DateTime, Locale, Offset, Utc};
use chrono_tz::{OffsetName, Tz};

/// "Donnerstag, 3. Dezember 2026, 14:00 Uhr" / "Thursday, 3 December 2026,
/// 2:00 PM", cut to the minute. With `name_zone` the zone's name follows
/// ("14:00 Uhr MEZ", "2:00 PM CET"): for a zone the customer did not give.
pub fn format_date_time(at: DateTime<Utc>, zone: Tz, language: &str, name_zone: bool) -> String {
    let local = at.with_timezone(&zone);
    let mut text = match language {
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
    };
    if name_zone {
        text.push(' ');
        text.push_str(&zone_name(&local, language));
    }
    text
}

/// A promise ("by Thursday 15:23"): like [`format_date_time`], but rounded
/// up to the minute shown, so the customer is never told a time before the
/// planned one (15:22:43 shows as 15:23, 15:22:00 stays 15:22).
pub fn format_promise(at: DateTime<Utc>, zone: Tz, language: &str, name_zone: bool) -> String {
    // Only at the very end of chrono's range (year 262143) is there no next
    // minute; the instant itself is shown then.
    let shown = round_up_to_minute(at, zone).unwrap_or(at);
    format_date_time(shown, zone, language, name_zone)
}

/// The first instant at or after `at` that is a whole minute on `zone`'s
/// clock (the same as in UTC except in zones with historic offsets of
/// seconds, e.g. local mean time). None past the end of chrono's range.
pub fn round_up_to_minute(at: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
    let offset = i64::from(at.with_timezone(&zone).offset().fix().local_minus_utc());
    let local = at.timestamp().checked_add(offset)?;
    let into_minute = local.rem_euclid(60);
    if into_minute == 0 && at.timestamp_subsec_nanos() == 0 {
        return Some(at);
    }
    let next_minute = local.checked_sub(into_minute)?.checked_add(60)?;
    DateTime::from_timestamp(next_minute.checked_sub(offset)?, 0)
}

/// The zone's name at that instant, as the customer's language writes it:
/// the tz database's abbreviation ("CET", "CEST", "EST", "GMT"), in German
/// the names German readers know for the European zones ("MEZ", "MESZ").
/// A zone the tz database names only by its offset ("+03") is written
/// "UTC+03:00".
fn zone_name(local: &DateTime<Tz>, language: &str) -> String {
    let Some(abbreviation) = local.offset().abbreviation() else {
        let seconds = local.offset().fix().local_minus_utc();
        let sign = if seconds < 0 { '-' } else { '+' };
        let minutes = seconds.unsigned_abs() / 60;
        return format!("UTC{sign}{:02}:{:02}", minutes / 60, minutes % 60);
    };
    if language == "de" {
        // Neither chrono-tz nor pure-rust-locales carries localized zone
        // names (CLDR's metazone names live in ICU4X, far too heavy for six
        // words), so this mirrors CLDR's German short names for the zones
        // our German customers are in. Every other abbreviation (UTC, GMT,
        // EST, …) is the same in German.
        let german = match abbreviation {
            "CET" => Some("MEZ"),
            "CEST" => Some("MESZ"),
            "WET" => Some("WEZ"),
            "WEST" => Some("WESZ"),
            "EET" => Some("OEZ"),
            "EEST" => Some("OESZ"),
            _ => None,
        };
        if let Some(name) = german {
            return name.to_owned();
        }
    }
    abbreviation.to_owned()
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
            format_date_time(t, chrono_tz::Europe::Berlin, "de", false),
            "Donnerstag, 3. Dezember 2026, 14:00 Uhr"
        );
        assert_eq!(
            format_date_time(t, chrono_tz::Europe::Berlin, "en", false),
            "Thursday, 3 December 2026, 2:00 PM"
        );
    }

    #[test]
    fn rounding_up_keeps_whole_minutes_and_never_goes_back() {
        let zone = chrono_tz::Europe::Berlin;
        let exact = at("2026-12-03T14:22:00Z");
        assert_eq!(round_up_to_minute(exact, zone), Some(exact));
        assert_eq!(
            round_up_to_minute(at("2026-12-03T14:22:00.001Z"), zone),
            Some(at("2026-12-03T14:23:00Z"))
        );
        assert_eq!(
            round_up_to_minute(at("2026-12-03T14:22:59.999Z"), zone),
            Some(at("2026-12-03T14:23:00Z"))
        );
    }

    #[test]
    fn rounding_up_follows_the_local_clock_of_a_zone_with_an_offset_in_seconds() {
        // Berlin's local mean time before 1893 was UTC+0:53:28.
        let zone = chrono_tz::Europe::Berlin;
        let t = at("1880-06-01T10:00:00Z");
        let up = round_up_to_minute(t, zone).unwrap_or(t);
        assert!(up >= t);
        assert_eq!(
            up.with_timezone(&zone).format("%H:%M:%S").to_string(),
            "10:54:00"
        );
    }

    #[test]
    fn the_end_of_time_is_shown_unrounded_instead_of_panicking() {
        let last = DateTime::<Utc>::MAX_UTC;
        assert_eq!(round_up_to_minute(last, chrono_tz::UTC), None);
        for zone in [chrono_tz::UTC, chrono_tz::Pacific::Kiritimati] {
            assert!(!format_promise(last, zone, "de", true).is_empty());
            assert!(!format_promise(DateTime::<Utc>::MIN_UTC, zone, "en", true).is_empty());
        }
    }

    #[test]
    fn zone_names_are_the_ones_readers_know() {
        let winter = at("2026-12-03T13:00:00Z");
        let summer = at("2026-07-02T13:00:00Z");
        let berlin = chrono_tz::Europe::Berlin;
        assert!(format_date_time(winter, berlin, "de", true).ends_with("14:00 Uhr MEZ"));
        assert!(format_date_time(summer, berlin, "de", true).ends_with("15:00 Uhr MESZ"));
        assert!(format_date_time(winter, berlin, "en", true).ends_with("2:00 PM CET"));
        assert!(format_date_time(summer, berlin, "en", true).ends_with("3:00 PM CEST"));
        let helsinki = chrono_tz::Europe::Helsinki;
        assert!(format_date_time(winter, helsinki, "de", true).ends_with("OEZ"));
        // A zone the tz database names by its offset only.
        let istanbul = chrono_tz::Europe::Istanbul;
        assert!(format_date_time(winter, istanbul, "en", true).ends_with("4:00 PM UTC+03:00"));
        assert!(format_date_time(winter, chrono_tz::UTC, "de", true).ends_with("13:00 Uhr UTC"));
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
