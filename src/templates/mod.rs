//! Notice templates: minijinja files `NAME.LANG.subject|txt|html` that ops
//! edit, with the shipped examples embedded as a fallback so a slim
//! container works without a templates folder.

pub mod locale;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use minijinja::{Environment, UndefinedBehavior, context};
use serde::Serialize;

use crate::config::Settings;
use crate::policy::Policy;
use crate::ticket::Ticket;

/// The example templates from `config/templates/`, compiled in.
const EMBEDDED: &[(&str, &str)] = &[
    (
        "interim.de.subject",
        include_str!("../../config/templates/interim.de.subject"),
    ),
    (
        "interim.de.txt",
        include_str!("../../config/templates/interim.de.txt"),
    ),
    (
        "interim.de.html",
        include_str!("../../config/templates/interim.de.html"),
    ),
    (
        "interim.en.subject",
        include_str!("../../config/templates/interim.en.subject"),
    ),
    (
        "interim.en.txt",
        include_str!("../../config/templates/interim.en.txt"),
    ),
    (
        "interim.en.html",
        include_str!("../../config/templates/interim.en.html"),
    ),
];

const PARTS: [&str; 3] = ["subject", "txt", "html"];

pub struct Templates {
    env: Environment<'static>,
    /// Every template file name available (folder and embedded).
    names: BTreeSet<String>,
    default_language: String,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("names", &self.names)
            .finish()
    }
}

/// A rendered notice, ready for a channel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    pub language: String,
}

/// Everything a template may show, computed by the dispatcher.
pub struct NoticeFacts<'a> {
    pub ticket: &'a Ticket,
    pub policy: &'a Policy,
    pub notice_id: &'a str,
    pub number: u32,
    pub now: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    pub next_notice_at: Option<DateTime<Utc>>,
}

impl Templates {
    /// Loads and compiles every template in `dir` (if it exists) plus the
    /// embedded examples, and checks that every policy's template exists in
    /// the default language. Errors name the file or the policy.
    pub fn load(settings: &Settings) -> Result<Arc<Templates>, Vec<String>> {
        let dir = settings.templates_dir.clone();
        let mut problems = Vec::new();
        let mut in_folder: BTreeSet<String> = BTreeSet::new();
        match std::fs::read_dir(&dir) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if PARTS.iter().any(|part| name.ends_with(&format!(".{part}"))) {
                        in_folder.insert(name);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => problems.push(format!("templates.dir: cannot read {}: {e}", dir.display())),
        }
        // A built-in example is used only for a NAME.LANG the folder has no
        // file of at all: never a built-in HTML part under an ops-written text.
        let embedded: BTreeSet<String> = EMBEDDED
            .iter()
            .map(|(n, _)| (*n).to_owned())
            .filter(|n| !in_folder.iter().any(|f| template_set(f) == template_set(n)))
            .collect();
        let names: BTreeSet<String> = in_folder.union(&embedded).cloned().collect();

        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_keep_trailing_newline(true);
        let loader_dir = dir.clone();
        env.set_loader(move |name| load_source(&loader_dir, name, &in_folder, &embedded));

        for name in &names {
            if let Err(e) = env.get_template(name) {
                problems.push(format!(
                    "templates.dir: {}: {}",
                    template_path(&dir, name),
                    describe(&e)
                ));
            }
        }

        let default_language = settings.daemon.default_language.clone();
        for (index, policy) in settings.policies.iter().enumerate() {
            for part in ["subject", "txt"] {
                let name = format!("{}.{}.{}", policy.template, default_language, part);
                if !names.contains(&name) {
                    problems.push(format!(
                        "policies[{index}].template: no template {name} in {} (every template needs the default language {default_language} as fallback)",
                        dir.display()
                    ));
                }
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Arc::new(Templates {
            env,
            names,
            default_language,
        }))
    }

    /// Languages that have a subject for this template.
    pub fn languages(&self, template: &str) -> Vec<String> {
        self.names
            .iter()
            .filter_map(|n| {
                n.strip_prefix(&format!("{template}."))
                    .and_then(|rest| rest.strip_suffix(".subject"))
                    .map(str::to_owned)
            })
            .collect()
    }

    /// Renders a notice in the ticket's language, falling back to the
    /// default language when the template has no version for it.
    pub fn render(
        &self,
        settings: &Settings,
        facts: &NoticeFacts<'_>,
    ) -> Result<Message, minijinja::Error> {
        let wanted = facts.ticket.language_or(&self.default_language);
        let template = &facts.policy.template;
        let language = if self.names.contains(&format!("{template}.{wanted}.subject")) {
            wanted
        } else {
            self.default_language.clone()
        };
        let shown = customer_zone(settings, facts.ticket, facts.policy);
        // A zone the customer did not give is named next to every date.
        let date = |t| locale::format_date_time(t, shown.zone, &language, !shown.customer_given);
        let state_for_customer = state_for_customer(settings, facts.ticket, &language);
        let waited = (facts.now - facts.ticket.waiting_since)
            .to_std()
            .unwrap_or_default();
        let ctx = context! {
            ticket => ticket_value(facts.ticket, &state_for_customer, settings.source.subject_marker.as_deref()),
            notice => context! {
                id => facts.notice_id,
                number => facts.number,
                max => facts.policy.max_notices,
                is_last => facts.next_notice_at.is_none(),
                due_at => date(facts.due_at),
            },
            policy => context! { name => &facts.policy.name },
            waited => locale::format_waited(waited, &language),
            waited_seconds => waited.as_secs(),
            waiting_since => date(facts.ticket.waiting_since),
            // The promise is rounded up, never shown before the plan.
            next_notice_at => facts.next_notice_at.map(|t| {
                locale::format_promise(t, shown.zone, &language, !shown.customer_given)
            }),
            language => &language,
        };
        let render = |part: &str| -> Result<Option<String>, minijinja::Error> {
            let name = format!("{template}.{language}.{part}");
            if !self.names.contains(&name) {
                return Ok(None);
            }
            self.env.get_template(&name)?.render(&ctx).map(Some)
        };
        let subject = render("subject")?.unwrap_or_default();
        Ok(Message {
            subject: clip(&single_line(&subject), MAX_SUBJECT_CHARS),
            text: without_controls(&render("txt")?.unwrap_or_default()),
            html: render("html")?.map(|h| without_controls(&h)),
            language,
        })
    }
}

/// The zone a notice's dates are shown in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShownZone {
    pub zone: Tz,
    /// Whether it is the ticket's own `timezone`; a fallback zone is named
    /// next to each date ("15:23 Uhr MEZ").
    pub customer_given: bool,
}

/// The zone dates are shown in: the customer's, else the policy calendar's,
/// else the daemon's. An invalid customer zone falls back silently here;
/// the source already warned about it.
pub fn customer_zone(settings: &Settings, ticket: &Ticket, policy: &Policy) -> ShownZone {
    if let Some(zone) = ticket
        .timezone
        .as_deref()
        .and_then(|z| z.parse::<Tz>().ok())
    {
        return ShownZone {
            zone,
            customer_given: true,
        };
    }
    ShownZone {
        zone: policy
            .window
            .calendar
            .as_ref()
            .map_or(settings.daemon.timezone, |c| c.timezone),
        customer_given: false,
    }
}

fn ticket_value(
    ticket: &Ticket,
    state_for_customer: &str,
    subject_marker: Option<&str>,
) -> minijinja::Value {
    let mut value = serde_json::to_value(ticket).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.insert("state_for_customer".into(), state_for_customer.into());
        map.insert(
            "subject_marker".into(),
            subject_marker_of(ticket, subject_marker).into(),
        );
        // Absent or blank optional columns are empty (none), not undefined,
        // in templates, so `{% if ticket.number %}` leaves no stray space.
        for key in [
            "number",
            "subject",
            "priority",
            "queue",
            "origin",
            "customer_email",
            "customer_name",
            "language",
            "timezone",
            "thread_message_id",
        ] {
            let value = map.entry(key).or_insert(serde_json::Value::Null);
            if value.as_str().is_some_and(|s| s.trim().is_empty()) {
                *value = serde_json::Value::Null;
            }
        }
    }
    minijinja::Value::from_serialize(&value)
}

/// `[Ticket#{number}]` with the ticket's number; none without a number
/// (a marker without one would match no ticket).
pub fn subject_marker_of(ticket: &Ticket, marker: Option<&str>) -> Option<String> {
    let number = ticket
        .number
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())?;
    Some(marker?.replace("{number}", number))
}

/// A subject is one line: CR, LF and other control characters (which ticket
/// data may carry) become spaces, so nothing can start a new header.
pub fn single_line(text: &str) -> String {
    let replaced: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    replaced.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Bodies keep line breaks and tabs; other control characters (a NUL in
/// ticket data) may not appear in mail (RFC 2045) and are dropped.
fn without_controls(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
        .collect()
}

/// The longest subject we send, in characters: mail clients show far less,
/// and header lines must stay within RFC 5322's limits.
pub const MAX_SUBJECT_CHARS: usize = 200;

/// Cuts text to `max` characters, marking the cut with "…".
pub fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => {
            let keep = text[..cut]
                .char_indices()
                .nth(max.saturating_sub(1))
                .map_or(cut, |(i, _)| i);
            format!("{}…", &text[..keep])
        }
        None => text.to_owned(),
    }
}

/// `interim.de.subject` -> `interim.de`.
fn template_set(name: &str) -> &str {
    name.rsplit_once('.').map_or(name, |(set, _)| set)
}

fn load_source(
    dir: &Path,
    name: &str,
    in_folder: &BTreeSet<String>,
    embedded: &BTreeSet<String>,
) -> Result<Option<String>, minijinja::Error> {
    if in_folder.contains(name) {
        return std::fs::read_to_string(dir.join(name))
            .map(Some)
            .map_err(|e| {
                minijinja::Error::new(
                    minijinja::ErrorKind::TemplateNotFound,
                    format!("cannot read {}: {e}", dir.join(name).display()),
                )
            });
    }
    if embedded.contains(name) {
        return Ok(EMBEDDED
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| (*t).to_owned()));
    }
    Ok(None)
}

fn template_path(dir: &Path, name: &str) -> String {
    let path: PathBuf = dir.join(name);
    if path.exists() {
        path.display().to_string()
    } else {
        format!("{name} (embedded)")
    }
}

fn describe(e: &minijinja::Error) -> String {
    match e.line() {
        Some(line) => format!("line {line}: {}", e.detail().unwrap_or(&e.to_string())),
        None => e.to_string(),
    }
}

/// The customer's words for the ticket's state (`[wording]`), else the
/// state as the helpdesk names it.
pub fn state_for_customer(settings: &Settings, ticket: &Ticket, language: &str) -> String {
    let state = ticket.state.to_lowercase();
    settings
        .wording
        .get(language)
        .and_then(|w| w.get(&state))
        .or_else(|| {
            settings
                .wording
                .get(&settings.daemon.default_language)
                .and_then(|w| w.get(&state))
        })
        .cloned()
        .unwrap_or_else(|| ticket.state.clone())
}
