//! `[[policies]]`: matchers, thresholds, windows and their references to
//! channels, templates and calendars.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::raw::{MatchValue, RawConfig, RawPolicy};
use super::settings::*;
use crate::calendar::Calendar;
use crate::policy::{MatchField, Matcher, Policy};
use crate::schedule::{SendAt, SendWindow};

#[allow(clippy::too_many_arguments)]
pub(super) fn policy_settings(
    p: &mut Problems,
    key: &str,
    raw: &RawPolicy,
    daemon: &DaemonSettings,
    calendars: &BTreeMap<String, Arc<Calendar>>,
    config: &RawConfig,
    warnings: &mut Vec<String>,
) -> Option<Policy> {
    if raw.name.trim().is_empty() {
        p.add(format!("{key}.name"), "must not be empty");
    }
    let matcher = matcher_settings(p, &format!("{key}.match"), &raw.matcher);
    let after = p.take(&format!("{key}.after"), parse_duration(&raw.after));
    let repeat_every = match &raw.repeat_every {
        Some(text) => {
            let repeat = p.take(&format!("{key}.repeat_every"), parse_duration(text))?;
            if repeat.is_zero() {
                p.add(format!("{key}.repeat_every"), "must be longer than zero");
            }
            Some(repeat)
        }
        None => None,
    };
    let max_notices = match (raw.max_notices, repeat_every) {
        (None, None) => 1,
        (None, Some(_)) => 3,
        (Some(n @ 1..=1000), _) => n as u32,
        (Some(n), _) => {
            p.add(
                format!("{key}.max_notices"),
                format!("{n} is not between 1 and 1000"),
            );
            1
        }
    };
    if max_notices > 1 && repeat_every.is_none() {
        p.add(
            format!("{key}.max_notices"),
            "more than one notice needs repeat_every",
        );
    }
    let calendar = match &raw.calendar {
        Some(name) => match calendars.get(name) {
            Some(c) => Some(c.clone()),
            None => {
                if !config.calendars.contains_key(name) {
                    p.add(
                        format!("{key}.calendar"),
                        format!("no calendar \"{name}\" in [calendars]"),
                    );
                }
                None
            }
        },
        None => None,
    };
    let zone = calendar
        .as_ref()
        .map(|c| c.timezone)
        .unwrap_or(daemon.timezone);
    let send_at = match &raw.send_at {
        Some(expr) => {
            let parsed = p.take(&format!("{key}.send_at"), SendAt::parse(expr, zone))?;
            if parsed.has_numeric_weekday() {
                warnings.push(format!(
                    "{key}.send_at: \"{expr}\" uses numeric weekdays, which the cron crate counts 1 = Sunday … 7 = Saturday; write names (Mon-Fri)"
                ));
            }
            Some(parsed)
        }
        None => None,
    };
    if !config.channels.contains_key(&raw.channel) {
        p.add(
            format!("{key}.channel"),
            format!("no channel \"{}\" in [channels]", raw.channel),
        );
    }
    let customer_local = match raw.window_zone.as_deref() {
        None | Some("calendar") => None,
        Some("customer") => Some(zone),
        Some(other) => {
            p.add(
                format!("{key}.window_zone"),
                format!("\"{other}\" is neither \"calendar\" nor \"customer\""),
            );
            None
        }
    };
    if customer_local.is_some() && calendar.is_none() && raw.send_at.is_none() {
        warnings.push(format!(
            "{key}.window_zone: \"customer\" has no effect without a calendar or send_at"
        ));
    }
    let window = SendWindow {
        calendar: calendar.clone(),
        send_at,
        customer_local,
    };
    if (window.calendar.is_some() || window.send_at.is_some())
        && window.first_send_instant(chrono::Utc::now()).is_none()
    {
        p.add(
            format!("{key}.send_at"),
            "the send window never opens (no cron slot falls inside the calendar's working hours)",
        );
    }
    Some(Policy {
        name: raw.name.clone(),
        matcher: matcher?,
        after: after?,
        repeat_every,
        max_notices,
        window,
        channel: raw.channel.clone(),
        template: raw.template.clone(),
        continue_matching: raw.continue_matching,
    })
}

pub(super) fn matcher_settings(
    p: &mut Problems,
    key: &str,
    raw: &BTreeMap<String, MatchValue>,
) -> Option<Matcher> {
    let mut rules = Vec::new();
    let mut ok = true;
    for (field, value) in raw {
        let path = format!("{key}.{field}");
        let base = match field.to_lowercase().as_str() {
            "state" => Some(MatchField::State),
            "priority" => Some(MatchField::Priority),
            "queue" => Some(MatchField::Queue),
            "origin" => Some(MatchField::Origin),
            "language" => Some(MatchField::Language),
            "extra" => None,
            other => match other.strip_prefix("extra.") {
                Some(name) => {
                    match value_list(value) {
                        Some(values) => rules.push((MatchField::Extra(name.to_owned()), values)),
                        None => {
                            p.add(&path, "expected a string or a list of strings");
                            ok = false;
                        }
                    }
                    continue;
                }
                None => {
                    p.add(&path, "unknown match field (state, priority, queue, origin, language, extra.NAME)");
                    ok = false;
                    continue;
                }
            },
        };
        match (base, value) {
            (None, MatchValue::Nested(map)) => {
                for (name, inner) in map {
                    match value_list(inner) {
                        Some(values) => {
                            rules.push((MatchField::Extra(name.to_lowercase()), values))
                        }
                        None => {
                            p.add(
                                format!("{path}.{name}"),
                                "expected a string or a list of strings",
                            );
                            ok = false;
                        }
                    }
                }
            }
            (Some(field), value) => match value_list(value) {
                Some(values) => rules.push((field, values)),
                None => {
                    p.add(&path, "expected a string or a list of strings");
                    ok = false;
                }
            },
            (None, _) => {
                p.add(&path, "expected a table like extra = { product = [\"x\"] }");
                ok = false;
            }
        }
    }
    ok.then_some(Matcher { rules })
}

pub(super) fn value_list(value: &MatchValue) -> Option<Vec<String>> {
    match value {
        MatchValue::One(v) => Some(vec![v.clone()]),
        MatchValue::Many(vs) => Some(vs.clone()),
        MatchValue::Nested(_) => None,
    }
}
