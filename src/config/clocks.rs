//! The wait clocks: when a customer's wait starts. A preset offers several
//! (`source.clocks`), the operator picks one (`source.clock`), and it ends
//! up as an http source's `fields.waiting_since` or as the SQL expression
//! put into a sql source's queries at `{waiting_since}`. Kept in one place
//! so that both kinds of source choose, refuse and apply a clock alike.

use std::collections::BTreeMap;

use super::http_fields::{self, FieldMap};
use super::raw::{RawClock, RawField, RawSource};
use super::settings::Problems;

/// The wait clocks a preset may define, in the order they are documented.
pub const CLOCK_MODES: &[(&str, &str)] = &[
    (
        "last_public_contact",
        "any public message, from the customer or an agent, restarts the wait",
    ),
    (
        "agent_updates",
        "the wait restarts only when an agent writes publicly",
    ),
    (
        "customer_message",
        "the wait starts at the oldest customer message no agent has answered publicly",
    ),
];

/// `source.clock` when it is not set.
pub const DEFAULT_CLOCK: &str = "last_public_contact";

/// Where a SQL preset's query puts the clock's expression.
const CLOCK_PLACEHOLDER: &str = "{waiting_since}";

/// The clock `source.clock` names (default: last_public_contact) and its
/// definition from `source.clocks`; none when the source defines no clocks.
/// A refused clock (`{ unsupported = "why" }`) is an error naming the
/// preset and its reason, with the clocks that are there.
pub(super) fn chosen_clock(p: &mut Problems, s: &RawSource) -> Option<(String, RawClock)> {
    let whose = match &s.preset {
        Some(preset) => format!("preset {preset}"),
        None => "this source".to_owned(),
    };
    // The clocks this source offers, in their documented order, the
    // default marked.
    let offered = CLOCK_MODES
        .iter()
        .map(|(mode, _)| *mode)
        .filter(|mode| {
            s.clocks.get(*mode).is_some_and(|clock| {
                !matches!(clock, RawClock::Unsupported(_) | RawClock::Invalid(_))
            })
        })
        .map(|mode| {
            if mode == DEFAULT_CLOCK {
                format!("{mode} (default)")
            } else {
                mode.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    for (mode, clock) in &s.clocks {
        let key = format!("source.clocks.{mode}");
        if !CLOCK_MODES.iter().any(|(known, _)| known == mode) {
            let modes: Vec<&str> = CLOCK_MODES.iter().map(|(mode, _)| *mode).collect();
            p.add(
                &key,
                format!("\"{mode}\" is not a clock (clocks: {})", modes.join(", ")),
            );
        }
        if let RawClock::Invalid(_) = clock {
            p.add(
                &key,
                "must be a SQL expression (sql), a list of JSON pointers or { pointer = [...], unless_at_or_after = [...] } (http), or { unsupported = \"why\" }",
            );
        }
    }
    if s.clocks.is_empty() {
        if s.clock.is_some() {
            p.add(
                "source.clock",
                "this source defines no clocks (the presets do): your query or fields.waiting_since decide when a wait starts",
            );
        }
        return None;
    }
    let mode = s.clock.clone().unwrap_or_else(|| DEFAULT_CLOCK.into());
    if !CLOCK_MODES.iter().any(|(known, _)| *known == mode) {
        p.add(
            "source.clock",
            format!("\"{mode}\" is not a clock; choose one of {offered}"),
        );
        return None;
    }
    match s.clocks.get(&mode) {
        Some(RawClock::Unsupported(refused)) => {
            p.add(
                "source.clock",
                format!(
                    "\"{mode}\" is not available with {whose}: {}; choose one of {offered}",
                    refused.unsupported.trim().trim_end_matches('.')
                ),
            );
            None
        }
        Some(RawClock::Invalid(_)) => None,
        Some(clock) => Some((mode, clock.clone())),
        None => {
            p.add(
                "source.clock",
                format!("\"{mode}\" is not available with {whose}; choose one of {offered}"),
            );
            None
        }
    }
}

/// An http source's clocks: checks every `source.clocks` entry and puts the
/// chosen one into `fields` as `waiting_since`, unless the operator set
/// `fields.waiting_since` themselves. Returns the clock in effect.
pub(super) fn apply_http_clock(
    p: &mut Problems,
    s: &RawSource,
    clock: Option<(String, RawClock)>,
    fields: &mut BTreeMap<String, FieldMap>,
) -> Option<String> {
    // Every clock is checked, not only the chosen one: a preset's or an
    // override's mistake shows in check-config before anyone picks it.
    let mut http_clocks = BTreeMap::new();
    for (mode, clock) in &s.clocks {
        let key = format!("source.clocks.{mode}");
        let field = match clock {
            RawClock::Pointers(pointers) => RawField::Many(pointers.clone()),
            // One pointer, as fields take it.
            RawClock::Sql(text) if text.starts_with('/') => RawField::One(text.clone()),
            RawClock::Field(table) => RawField::Table(table.clone()),
            RawClock::Sql(_) => {
                p.add(
                    &key,
                    "an http source's clock is a list of JSON pointers or { pointer = [...], unless_at_or_after = [...] }, not SQL",
                );
                continue;
            }
            RawClock::Unsupported(_) | RawClock::Invalid(_) => continue,
        };
        if let Some(field) = http_fields::field_map(p, &key, "waiting_since", &field) {
            http_clocks.insert(mode.clone(), field);
        }
    }
    match clock {
        // Presets leave fields.waiting_since to their clocks: when it is
        // set, it is the operator's, and it wins unless a clock was
        // asked for too.
        Some(_)
            if s.fields
                .keys()
                .any(|k| k.eq_ignore_ascii_case("waiting_since")) =>
        {
            if s.clock.is_some() {
                p.add(
                    "source.clock",
                    "fields.waiting_since is set too: set one of them",
                );
            }
            None
        }
        Some((mode, _)) => {
            if let Some(field) = http_clocks.remove(&mode) {
                fields.insert("waiting_since".into(), field);
            }
            Some(mode)
        }
        None => None,
    }
}

/// A sql source's chosen clock, ready to go into its queries at
/// `{waiting_since}`.
pub(super) struct SqlClock {
    mode: Option<String>,
    /// The chosen clock's SQL expression; none without a clock or when the
    /// clock is not SQL.
    expression: Option<String>,
    /// `source.clock` is set: a query that ignores it is an error.
    asked_for: bool,
}

impl SqlClock {
    /// A clock of JSON pointers is an error for a sql source.
    pub(super) fn new(p: &mut Problems, s: &RawSource, clock: Option<(String, RawClock)>) -> Self {
        let mode = clock.as_ref().map(|(mode, _)| mode.clone());
        let expression = match clock {
            Some((_, RawClock::Sql(expression))) => Some(expression),
            Some((mode, _)) => {
                p.add(
                    format!("source.clocks.{mode}"),
                    "a sql source's clock is a SQL expression, not JSON pointers",
                );
                None
            }
            None => None,
        };
        SqlClock {
            mode,
            expression,
            asked_for: s.clock.is_some(),
        }
    }

    /// `query` (at `source.{key}`) with `{waiting_since}` replaced by the
    /// clock's expression; none when it is unset or blank.
    pub(super) fn clocked(
        &self,
        p: &mut Problems,
        key: &str,
        query: Option<&String>,
    ) -> Option<String> {
        let query = query.filter(|q| !q.trim().is_empty())?;
        match &self.expression {
            Some(expression) if query.contains(CLOCK_PLACEHOLDER) => {
                Some(query.replace(CLOCK_PLACEHOLDER, &format!("({expression})")))
            }
            Some(_) if self.asked_for => {
                p.add(
                    format!("source.{key}"),
                    format!(
                        "does not use {CLOCK_PLACEHOLDER}, so source.clock has no effect on it: compute waiting_since in it yourself, or remove source.clock"
                    ),
                );
                Some(query.clone())
            }
            None if query.contains(CLOCK_PLACEHOLDER) => {
                p.add(
                    format!("source.{key}"),
                    format!("uses {CLOCK_PLACEHOLDER}, but the source defines no clocks"),
                );
                Some(query.clone())
            }
            _ => Some(query.clone()),
        }
    }

    /// The clock in effect: none when `source.query` does not use it.
    pub(super) fn in_effect(&self, s: &RawSource) -> Option<String> {
        if !s
            .query
            .as_ref()
            .is_some_and(|q| q.contains(CLOCK_PLACEHOLDER))
        {
            return None;
        }
        self.mode.clone()
    }
}

/// An operator who replaces a preset's query computes waiting_since their
/// own way; the preset's recheck and incremental queries would still read
/// the preset's clock, so a re-read before each send would see another
/// wait (and cancel the notice) and polls would disagree.
pub(super) fn check_replaced_query(p: &mut Problems, s: &RawSource) {
    let own_query = s
        .query
        .as_ref()
        .is_some_and(|q| !q.trim().is_empty() && !q.contains(CLOCK_PLACEHOLDER));
    for (key, other) in [
        ("recheck_query", &s.recheck_query),
        ("incremental_query", &s.incremental_query),
    ] {
        if own_query
            && other
                .as_ref()
                .is_some_and(|q| q.contains(CLOCK_PLACEHOLDER))
        {
            p.add(
                format!("source.{key}"),
                format!(
                    "reads waiting_since with the clock ({CLOCK_PLACEHOLDER}), but source.query computes it without: both would see different waits; override {key} too, or set it to \"\" to turn it off"
                ),
            );
        }
    }
}
