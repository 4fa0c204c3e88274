//! The status pages' words in English and German. A key without a German
//! text falls back to English, so a page never shows a key.

use serde::Serialize;

/// The languages of the pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    En,
    De,
}

impl Lang {
    /// `?lang=` first, then the first supported language of
    /// `Accept-Language` (quality values are ignored: browsers list by
    /// preference), else English.
    pub fn choose(query: Option<&str>, accept_language: Option<&str>) -> Lang {
        let pick = |tag: &str| {
            let primary = tag.split(['-', '_', ';']).next().unwrap_or("").trim();
            match primary.to_ascii_lowercase().as_str() {
                "de" => Some(Lang::De),
                "en" => Some(Lang::En),
                _ => None,
            }
        };
        query
            .and_then(pick)
            .or_else(|| accept_language?.split(',').find_map(pick))
            .unwrap_or(Lang::En)
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::De => "de",
        }
    }
}

/// (key, English, German).
const TEXTS: &[(&str, &str, &str)] = &[
    ("overview", "Overview", "Übersicht"),
    ("ready", "Ready", "Bereit"),
    ("not_ready", "Not ready", "Nicht bereit"),
    ("last_poll", "Last poll", "Letzte Abfrage"),
    (
        "no_poll",
        "no successful poll yet",
        "noch keine erfolgreiche Abfrage",
    ),
    ("took", "took", "Dauer"),
    ("tickets_tracked", "Tickets tracked", "Beobachtete Tickets"),
    (
        "due_hour",
        "Due in the next hour",
        "Fällig in der nächsten Stunde",
    ),
    (
        "due_day",
        "Due in the next day",
        "Fällig in den nächsten 24 Stunden",
    ),
    ("sent_today", "Sent today", "Heute gesendet"),
    ("dead", "Dead", "Fehlgeschlagen"),
    (
        "dead_hint",
        "failed for good: see Notices, retry",
        "endgültig fehlgeschlagen: siehe Bescheide, erneut senden",
    ),
    (
        "kept_30d",
        "Promises kept, last 30 days",
        "Eingehaltene Zusagen, letzte 30 Tage",
    ),
    ("kept", "kept", "eingehalten"),
    ("superseded", "superseded", "überholt"),
    ("broken", "broken", "gebrochen"),
    (
        "no_promises",
        "no promise decided yet",
        "noch keine Zusage entschieden",
    ),
    ("exhausted", "Exhausted waits", "Ausgeschöpfte Wartezeiten"),
    (
        "exhausted_hint",
        "got every notice and still wait: a person must step in",
        "haben jeden Bescheid erhalten und warten noch: ein Mensch muss übernehmen",
    ),
    (
        "open_waits",
        "Open waits by policy",
        "Offene Wartezeiten nach Regel",
    ),
    ("policy", "Policy", "Regel"),
    ("waits", "Waits", "Wartezeiten"),
    (
        "no_waits",
        "No customer waits under any policy right now.",
        "Gerade wartet kein Kunde unter einer Regel.",
    ),
    (
        "empty",
        "Nothing has happened yet. Check that source.url reaches the helpdesk (interim sources test) and that a policy matches its tickets (interim plan).",
        "Noch ist nichts geschehen. Prüfen Sie, ob source.url den Helpdesk erreicht (interim sources test) und eine Regel auf seine Tickets passt (interim plan).",
    ),
    ("language", "Language", "Sprache"),
    ("notices", "Notices", "Bescheide"),
    ("filter", "Filter", "Filter"),
    ("status", "Status", "Status"),
    ("all", "all", "alle"),
    ("channel", "Channel", "Kanal"),
    ("ticket", "Ticket", "Ticket"),
    ("show", "Show", "Anzeigen"),
    (
        "no_notices",
        "No notice matches these filters.",
        "Kein Bescheid passt zu diesen Filtern.",
    ),
    ("number", "No.", "Nr."),
    ("planned", "Planned", "Geplant"),
    ("sent", "Sent", "Gesendet"),
    ("recipient", "Recipient", "Empfänger"),
    ("promise", "Promise", "Zusage"),
    ("last_error", "Last error", "Letzter Fehler"),
    ("retry", "Retry", "Erneut senden"),
    (
        "retry_needs_token",
        "Retrying from this page needs the admin token (http.admin_token_env); on the host:",
        "Erneut senden auf dieser Seite braucht das Admin-Token (http.admin_token_env); auf dem Rechner:",
    ),
    ("older", "Older", "Ältere"),
    ("retried", "Pending again:", "Wieder ausstehend:"),
    ("retry_refused", "Not retried", "Nicht erneut gesendet"),
    ("login", "Log in", "Anmelden"),
    ("wait", "Wait", "Wartezeit"),
    ("config", "Config", "Konfiguration"),
    ("loaded_from", "Loaded from", "Geladen aus"),
    (
        "reload_taken",
        "The last reload was taken",
        "Das letzte Neuladen wurde übernommen",
    ),
    (
        "reload_rejected",
        "The last reload was rejected; the previous config keeps running",
        "Das letzte Neuladen wurde abgelehnt; die vorherige Konfiguration läuft weiter",
    ),
    ("warnings", "Warnings", "Warnungen"),
    ("in_force", "In force", "In Kraft"),
    ("templates", "Templates", "Vorlagen"),
    ("template", "Template", "Vorlage"),
    ("languages", "Languages", "Sprachen"),
    ("upcoming", "Upcoming", "Demnächst"),
    (
        "nothing_upcoming",
        "Nothing is planned: no customer waits past a threshold yet.",
        "Nichts geplant: Noch wartet kein Kunde über eine Schwelle hinaus.",
    ),
    ("when", "When", "Wann"),
    ("why_then", "Why then", "Warum dann"),
    ("preview", "Preview", "Vorschau"),
    (
        "more_upcoming",
        "Only the next 100 are shown; interim plan --horizon 1d lists them all.",
        "Nur die nächsten 100 sind aufgeführt; interim plan --horizon 1d zeigt alle.",
    ),
    ("report", "Report", "Bericht"),
    ("since_label", "Since", "Seit"),
    ("until_label", "Until", "Bis"),
    ("now_word", "now", "jetzt"),
    ("by", "By", "Nach"),
    ("candidates", "Candidate promises", "Mögliche Zusagen"),
    ("started", "Started", "Begonnen"),
    ("ended_col", "Ended", "Beendet"),
    ("open_col", "Open", "Offen"),
    ("crossed", "Crossed", "Überschritten"),
    ("promises", "Promises", "Zusagen"),
    ("kept_col", "Kept", "Eingehalten"),
    ("broken_col", "Broken", "Gebrochen"),
    ("total", "total", "gesamt"),
    (
        "kept_by_week",
        "Promises kept per week",
        "Eingehaltene Zusagen je Woche",
    ),
    (
        "wait_durations",
        "How long customers waited (ended waits)",
        "Wie lange Kunden warteten (beendete Wartezeiten)",
    ),
    (
        "wait_legend",
        "Dark: median; light: 90th percentile; business time where a calendar applies.",
        "Dunkel: Median; hell: 90. Perzentil; Geschäftszeit, wo ein Kalender gilt.",
    ),
    (
        "no_ended_waits",
        "No wait ended in this period.",
        "In diesem Zeitraum endete keine Wartezeit.",
    ),
    (
        "realistic",
        "Waits that ended within each candidate promise",
        "Wartezeiten, die innerhalb jeder möglichen Zusage endeten",
    ),
    (
        "realistic_hint",
        "Before promising an answer within a time, look at how often it would have held.",
        "Bevor Sie eine Antwort binnen einer Frist zusagen: Wie oft hätte sie gehalten?",
    ),
    ("since", "since", "seit"),
    ("ended", "ended", "beendet"),
    ("open", "still waiting", "wartet noch"),
    ("promised_by", "Promised by", "Zugesagt bis"),
    (
        "as_sent",
        "As the customer got it",
        "Wie der Kunde ihn erhielt",
    ),
    (
        "no_notice_yet",
        "No notice in this wait.",
        "Kein Bescheid in dieser Wartezeit.",
    ),
    (
        "other_notices",
        "Notices of earlier waits",
        "Bescheide früherer Wartezeiten",
    ),
    ("logout", "Log out", "Abmelden"),
    ("admin_token", "Admin token", "Admin-Token"),
    (
        "login_failed",
        "That is not the admin token.",
        "Das ist nicht das Admin-Token.",
    ),
    (
        "login_hint",
        "The token of http.admin_token_env or http.admin_token_file. The login lasts 8 hours or until the daemon restarts.",
        "Das Token aus http.admin_token_env oder http.admin_token_file. Die Anmeldung gilt 8 Stunden oder bis der Dienst neu startet.",
    ),
    (
        "no_token",
        "No admin token is configured: the pages can be read on this host without logging in, and nothing can be changed from them. Set http.admin_token_env or http.admin_token_file to log in and retry from here.",
        "Kein Admin-Token eingerichtet: Die Seiten sind auf diesem Rechner ohne Anmeldung lesbar, ändern lässt sich über sie nichts. Setzen Sie http.admin_token_env oder http.admin_token_file, um sich anzumelden und von hier erneut zu senden.",
    ),
    ("times_in", "Times in", "Zeiten in"),
];

/// Every text of the pages in `lang`, keyed for the templates (`t.ready`).
pub fn texts(lang: Lang) -> std::collections::BTreeMap<&'static str, &'static str> {
    TEXTS
        .iter()
        .map(|(key, en, de)| {
            let text = match lang {
                Lang::En => en,
                Lang::De if de.is_empty() => en,
                Lang::De => de,
            };
            (*key, *text)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_wins_then_the_first_supported_accept_language() {
        assert_eq!(Lang::choose(Some("de"), Some("en-US")), Lang::De);
        assert_eq!(
            Lang::choose(None, Some("fr-FR, de-DE;q=0.8, en;q=0.5")),
            Lang::De
        );
        assert_eq!(Lang::choose(None, Some("fr")), Lang::En);
        assert_eq!(Lang::choose(Some("xx"), None), Lang::En);
    }

    #[test]
    fn every_text_has_both_languages() {
        for (key, en, de) in TEXTS {
            assert!(!en.is_empty() && !de.is_empty(), "{key}");
        }
    }
}
