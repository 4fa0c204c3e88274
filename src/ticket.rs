//! A waiting ticket as the source delivers it, after the column contract
//! was applied: typed, validated, ready for matching and templates.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    pub waiting_since: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_message_id: Option<String>,
    #[serde(default)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Ticket {
    /// The customer's zone, when the `timezone` column names a valid one.
    pub fn zone(&self) -> Option<chrono_tz::Tz> {
        self.timezone.as_deref().and_then(|z| z.trim().parse().ok())
    }

    /// The language for templates: the ticket's, normalised (`de-AT` → `de`).
    pub fn language_or<'a>(&'a self, default: &'a str) -> String {
        self.language
            .as_deref()
            .and_then(language_code)
            .unwrap_or_else(|| default.to_owned())
    }
}

/// A locale as the language code the contract speaks: `de-de`, `de_AT`,
/// `en-US` → `de`, `de`, `en`; none when blank.
pub fn language_code(locale: &str) -> Option<String> {
    let code = locale.trim().to_lowercase();
    let code = code.split(['-', '_']).next().unwrap_or_default();
    (!code.is_empty()).then(|| code.to_owned())
}

/// Orders ticket ids as a team reads them: numeric ids by value (1, 2, 11)
/// and before the others, which sort as text. The store's notice list
/// orders the same way in SQL.
pub fn id_order(a: &str, b: &str) -> Ordering {
    fn key(id: &str) -> (bool, usize, &str) {
        let numeric = !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit());
        let digits = id.trim_start_matches('0');
        match numeric {
            true => (false, digits.len(), digits),
            false => (true, 0, id),
        }
    }
    key(a).cmp(&key(b)).then_with(|| a.cmp(b))
}

/// A ticket as outputs show it: its id, with its number beside it when it
/// has one ("1 (#1)").
pub fn label(id: &str, number: Option<&str>) -> String {
    match number.map(str::trim).filter(|n| !n.is_empty() && *n != id) {
        Some(number) => format!("{id} ({number})"),
        None => id.to_owned(),
    }
}

/// Which ticket a `--ticket` value names, among (id, number) pairs: the
/// one with that id or with that number (`10423` also finds `#10423`);
/// `id:VALUE` looks at ids only. `Ok(None)` when none does; an error that
/// names the candidates when several tickets do.
pub fn resolve<'a>(
    wanted: &str,
    tickets: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> Result<Option<String>, String> {
    let (wanted, ids_only) = match wanted.strip_prefix("id:") {
        Some(id) => (id, true),
        None => (wanted, false),
    };
    let bare = |n: &str| n.trim().trim_start_matches('#').to_lowercase();
    let wanted_number = bare(wanted);
    let mut by_id: Option<String> = None;
    let mut by_number: Vec<(String, String)> = Vec::new();
    for (id, number) in tickets {
        if id == wanted {
            by_id = Some(label(id, number));
        } else if !ids_only
            && !wanted_number.is_empty()
            && number.is_some_and(|n| bare(n) == wanted_number)
            && !by_number.iter().any(|(other, _)| other == id)
        {
            by_number.push((id.to_owned(), label(id, number)));
        }
    }
    match (by_id, by_number.as_slice()) {
        (Some(_), []) => Ok(Some(wanted.to_owned())),
        (None, []) => Ok(None),
        (None, [(id, _)]) => Ok(Some(id.clone())),
        (by_id, many) => {
            let mut named: Vec<String> = by_id
                .iter()
                .map(|l| format!("ticket {l} by its id"))
                .collect();
            named.extend(
                many.iter()
                    .map(|(_, l)| format!("ticket {l} by its number")),
            );
            let hint = match by_id.is_some() {
                true => format!("; write id:{wanted} for the ticket with that id"),
                false => String::new(),
            };
            Err(format!(
                "--ticket {wanted} is ambiguous: it names {}{hint}",
                named.join(" and ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_ids_sort_by_value_before_text_ids() {
        let mut ids = vec!["11", "b", "2", "1", "a10", "010"];
        ids.sort_by(|a, b| id_order(a, b));
        assert_eq!(ids, ["1", "2", "010", "11", "a10", "b"]);
    }

    #[test]
    fn a_ticket_value_finds_the_id_or_the_number_and_says_when_it_is_ambiguous() {
        let tickets = [("1", Some("#10423")), ("2", Some("#2")), ("10423", None)];
        let find = |wanted: &str| resolve(wanted, tickets.iter().map(|(i, n)| (*i, *n)));
        assert_eq!(find("2"), Ok(Some("2".into())), "its own number");
        assert_eq!(find("#2"), Ok(Some("2".into())));
        assert_eq!(find("7"), Ok(None));
        assert_eq!(find("id:10423"), Ok(Some("10423".into())));
        let err = find("10423").err().unwrap_or_default();
        assert!(
            err.contains("ambiguous") && err.contains("1 (#10423)") && err.contains("id:10423"),
            "{err}"
        );
        assert_eq!(
            find("#10423"),
            Ok(Some("1".into())),
            "only a number has the #"
        );
    }
}

/// A row that breaks the contract: skipped, logged once, counted. Its
/// text clips the values from outside ([`crate::logging::outside`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "ticket {}: column {}: {}",
    crate::logging::outside(ticket_id.as_deref().unwrap_or("(no id)")),
    crate::logging::outside(column),
    crate::logging::clip(reason, 1000)
)]
pub struct RowError {
    pub ticket_id: Option<String>,
    pub column: String,
    pub reason: String,
}
