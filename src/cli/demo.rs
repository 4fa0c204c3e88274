//! `interim demo`: a sample helpdesk in SQLite, the real daemon with
//! second-scale thresholds, notices into a folder, and a summary a newcomer
//! can read: which ticket got which notice, and why.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::SqlitePool;
use sqlx::sqlite::SqliteConnectOptions;
use tokio_util::sync::CancellationToken;

use crate::notice::Status;
use crate::store::{NoticeFilter, NoticeRow, Store};

/// A line of the demo's story on stdout. A reader that went away
/// (`interim demo | head`) loses the story, not the demo.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// One sample ticket: (number, subject, state, priority, customer, email,
/// language, seconds it has waited when the demo starts).
struct Sample {
    number: u32,
    subject: &'static str,
    state: &'static str,
    priority: &'static str,
    name: &'static str,
    email: &'static str,
    language: &'static str,
    waited: i64,
}

#[allow(clippy::too_many_arguments)] // a table row, read positionally
const fn t(
    number: u32,
    subject: &'static str,
    state: &'static str,
    priority: &'static str,
    name: &'static str,
    email: &'static str,
    language: &'static str,
    waited: i64,
) -> Sample {
    Sample {
        number,
        subject,
        state,
        priority,
        name,
        email,
        language,
        waited,
    }
}

const TICKETS: &[Sample] = &[
    t(
        10421,
        "Router verliert nachts die Verbindung",
        "in_progress",
        "normal",
        "Anna Becker",
        "anna.becker@example.de",
        "de",
        30,
    ),
    t(
        10422,
        "Rechnung doppelt abgebucht",
        "in_progress",
        "high",
        "Jonas Wolf",
        "jonas.wolf@example.de",
        "de",
        25,
    ),
    t(
        10423,
        "Ersatzteil für Kaffeemaschine",
        "waiting_for_supplier",
        "normal",
        "Petra Schulz",
        "p.schulz@example.de",
        "de",
        40,
    ),
    t(
        10424,
        "Login funktioniert nicht",
        "open",
        "urgent",
        "Mehmet Yilmaz",
        "m.yilmaz@example.de",
        "de",
        12,
    ),
    t(
        10425,
        "Lieferung unvollständig",
        "in_progress",
        "low",
        "Sabine Krause",
        "sabine.krause@example.de",
        "de",
        2,
    ),
    t(
        10426,
        "Vertrag kündigen",
        "pending_customer",
        "normal",
        "Uwe Braun",
        "uwe.braun@example.de",
        "de",
        50,
    ),
    t(
        10427,
        "Kundenkonto zusammenführen",
        "in_progress",
        "normal",
        "Lena Hoffmann",
        "lena.hoffmann@example.de",
        "de",
        9,
    ),
    t(
        10428,
        "Garantiefall Waschmaschine",
        "waiting_for_supplier",
        "high",
        "Tobias Neumann",
        "tobias.neumann@example.de",
        "de",
        33,
    ),
    t(
        10429,
        "Adresse ändern",
        "closed",
        "low",
        "Karin Fischer",
        "karin.fischer@example.de",
        "de",
        90,
    ),
    t(
        10430,
        "Passwort-Reset kommt nicht an",
        "open",
        "normal",
        "Felix Richter",
        "felix.richter(at)example.de",
        "de",
        20,
    ),
    t(
        10431,
        "Falscher Artikel geliefert",
        "in_progress",
        "normal",
        "Julia Zimmermann",
        "julia.z@example.de",
        "de",
        7,
    ),
    t(
        10432,
        "Ticket ohne Eile",
        "in_progress",
        "normal",
        "Stefan Koch",
        "stefan.koch@example.de",
        "de",
        -30,
    ),
    t(
        20511,
        "Refund still not received",
        "in_progress",
        "normal",
        "Emily Carter",
        "emily.carter@example.com",
        "en",
        28,
    ),
    t(
        20512,
        "App crashes on start",
        "open",
        "urgent",
        "James Miller",
        "james.miller@example.com",
        "en",
        15,
    ),
    t(
        20513,
        "Replacement part on back order",
        "waiting_for_supplier",
        "normal",
        "Olivia Brown",
        "olivia.brown@example.co.uk",
        "en",
        45,
    ),
    t(
        20514,
        "Invoice address wrong",
        "in_progress",
        "low",
        "Liam Wilson",
        "liam.wilson@example.com",
        "en",
        4,
    ),
    t(
        20515,
        "Cannot change my plan",
        "pending_customer",
        "normal",
        "Sophia Taylor",
        "sophia.taylor@example.com",
        "en",
        60,
    ),
    t(
        20516,
        "Shipment tracking stuck",
        "in_progress",
        "high",
        "Noah Davis",
        "noah.davis@example.com",
        "en",
        22,
    ),
    t(
        20517,
        "Account locked after update",
        "open",
        "normal",
        "Ava Thomas",
        "ava.thomas@example.com",
        "en",
        11,
    ),
    t(
        20518,
        "Data export request",
        "in_progress",
        "normal",
        "Lucas Martin",
        "lucas.martin@example.com",
        "en",
        8,
    ),
    t(
        20519,
        "Broken screen on delivery",
        "waiting_for_supplier",
        "high",
        "Mia Anderson",
        "mia.anderson@example.com",
        "en",
        36,
    ),
    t(
        20520,
        "Old ticket, already solved",
        "closed",
        "normal",
        "Ethan White",
        "ethan.white@example.com",
        "en",
        120,
    ),
    t(
        20521,
        "Question about warranty terms",
        "new",
        "normal",
        "Chloe Harris",
        "chloe.harris@example.com",
        "fr",
        14,
    ),
    t(
        20522,
        "Two-factor codes arrive late",
        "in_progress",
        "normal",
        "Henry Clark",
        "henry.clark@example.com",
        "en",
        1,
    ),
];

/// Scripted helpdesk events during the demo: (second, ticket number, what).
const EVENTS: &[(u64, u32, Event)] = &[
    (7, 10421, Event::Close),
    (9, 20511, Event::CustomerWrote),
    (11, 10431, Event::AgentParked),
];

#[derive(Clone, Copy)]
enum Event {
    Close,
    CustomerWrote,
    AgentParked,
}

impl Event {
    fn describe(self) -> &'static str {
        match self {
            Event::Close => "an agent solved and closed it",
            Event::CustomerWrote => "the customer wrote again: a new wait begins",
            Event::AgentParked => "an agent set it to pending_customer (waiting for the customer)",
        }
    }
}

/// `dir` is absolute (relative paths in a config resolve against its folder).
fn config_text(dir: &Path) -> String {
    let d = dir.display();
    // The repository's templates when run from a checkout; the built-in
    // copies otherwise.
    let t = std::path::absolute("config/templates").unwrap_or_default();
    let t = t.display();
    format!(
        r#"# Written by `interim demo`. Thresholds are seconds instead of hours.
[daemon]
timezone = "Europe/Berlin"
default_language = "en"
poll_interval = "1s"
max_snapshot_age = "30s"
log_format = "text"

[store]
url = "sqlite://{d}/interim.db"

[source]
kind = "sql"
url = "sqlite://{d}/helpdesk.db"
timezone = "UTC"
query = """
SELECT id, number, subject, status AS state, priority, queue,
       email AS customer_email, name AS customer_name, lang AS language,
       last_public_contact AS waiting_since
FROM tickets
WHERE status NOT IN ('closed')
"""

[wording.de]
new = "Ihre Anfrage ist bei uns eingegangen"
open = "Ihre Anfrage ist einem Mitarbeiter zugewiesen"
in_progress = "Wir arbeiten an einer Lösung für Sie"
waiting_for_supplier = "Wir warten auf die Antwort unseres Zulieferers"

[wording.en]
new = "We have received your request"
open = "Your request has been assigned to a member of our team"
in_progress = "We are working on a solution for you"
waiting_for_supplier = "We are waiting for our supplier to get back to us"

[[policies]]
name = "team-escalation"
match = {{ priority = ["urgent"] }}
after = "15s"
channel = "team-hook"
template = "interim"
continue = true

[[policies]]
name = "urgent"
match = {{ state = ["open", "in_progress", "waiting_for_supplier"], priority = ["high", "urgent"] }}
after = "10s"
repeat_every = "6s"
max_notices = 2
channel = "customer-mail"
template = "interim"

[[policies]]
name = "standard"
match = {{ state = ["new", "open", "in_progress", "waiting_for_supplier"] }}
after = "20s"
repeat_every = "8s"
max_notices = 3
channel = "customer-mail"
template = "interim"

[channels.customer-mail]
kind = "file"
path = "{d}/outbox/mail"
format = "eml"

[channels.team-hook]
kind = "file"
path = "{d}/outbox/team"
format = "json"

[templates]
dir = "{t}"
"#
    )
}

pub async fn run(dir: &Path, length: Duration) -> anyhow::Result<()> {
    let dir = &std::path::absolute(dir).context("failed to resolve the demo folder")?;
    prepare_dir(dir)?;
    let config_path = dir.join("interim.toml");
    crate::private_files::write(&config_path, config_text(dir).as_bytes())
        .with_context(|| format!("failed to write {}", config_path.display()))?;
    let helpdesk = create_helpdesk(&dir.join("helpdesk.db")).await?;
    let config = crate::setup::load(&config_path).map_err(|e| anyhow::anyhow!("{e}"))?;

    say!(
        "interim demo: a sample helpdesk with {} tickets (German, English and one French customer)",
        TICKETS.len()
    );
    say!("and three policies, with seconds where a service team would configure hours:");
    say!(
        "  team-escalation  urgent priority: one JSON notice to the team after 15s (continue = true: the next rules apply too)"
    );
    say!(
        "  urgent           high/urgent priority: first notice after 10s, then every 6s, at most 2"
    );
    say!("  standard         everything else that waits: after 20s, then every 8s, at most 3");
    say!("Tickets in pending_customer (we wait for the customer) and closed ones get nothing.");
    say!(
        "The daemon runs for {}s; notices go to {}/outbox.\n",
        length.as_secs(),
        dir.display()
    );

    let shutdown = CancellationToken::new();
    let daemon = tokio::spawn(crate::daemon::run_with_listener(
        config.clone(),
        None,
        shutdown.clone(),
    ));
    let started = tokio::time::Instant::now();
    for (second, number, event) in EVENTS {
        if *second >= length.as_secs() {
            break;
        }
        tokio::time::sleep_until(started + Duration::from_secs(*second)).await;
        apply_event(&helpdesk, *number, *event).await?;
        say!("  t+{second:>2}s  #{number}: {}", event.describe());
    }
    tokio::time::sleep_until(started + length).await;
    shutdown.cancel();
    daemon.await.context("the demo daemon panicked")??;

    let store = Store::open(&config.settings.store.url).await?;
    let notices = store.list(&NoticeFilter::default()).await?;
    store.close().await;
    say!("{}", summary(&notices, dir).trim_end());
    Ok(())
}

fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        // Only ever remove what a previous demo created.
        for name in [
            "interim.db",
            "interim.db-wal",
            "interim.db-shm",
            "interim.lock",
            "helpdesk.db",
            "interim.toml",
        ] {
            let _ = std::fs::remove_file(dir.join(name));
        }
        let _ = std::fs::remove_dir_all(dir.join("outbox"));
    }
    crate::private_files::create_dir_all(dir)
        .with_context(|| format!("failed to create {}", dir.display()))
}

async fn create_helpdesk(path: &Path) -> anyhow::Result<SqlitePool> {
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .create_if_missing(true);
    let pool = SqlitePool::connect_with(options)
        .await
        .context("failed to create the demo helpdesk")?;
    sqlx::query(
        "CREATE TABLE tickets (id INTEGER PRIMARY KEY, number TEXT, subject TEXT, status TEXT, priority TEXT, queue TEXT,
                               email TEXT, name TEXT, lang TEXT, last_public_contact TEXT)",
    )
    .execute(&pool)
    .await?;
    let now = Utc::now();
    for (i, s) in TICKETS.iter().enumerate() {
        sqlx::query("INSERT INTO tickets VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)")
            .bind(i as i64 + 1)
            .bind(s.number.to_string())
            .bind(s.subject)
            .bind(s.state)
            .bind(s.priority)
            .bind(if s.language == "de" {
                "Privatkunden"
            } else {
                "International"
            })
            .bind(s.email)
            .bind(s.name)
            .bind(s.language)
            .bind(sqlite_time(now - chrono::Duration::seconds(s.waited)))
            .execute(&pool)
            .await?;
    }
    Ok(pool)
}

/// SQLite's CURRENT_TIMESTAMP form, with milliseconds.
fn sqlite_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

async fn apply_event(pool: &SqlitePool, number: u32, event: Event) -> anyhow::Result<()> {
    let sql = match event {
        Event::Close => "UPDATE tickets SET status = 'closed' WHERE number = ?1",
        Event::CustomerWrote => "UPDATE tickets SET last_public_contact = ?2 WHERE number = ?1",
        Event::AgentParked => "UPDATE tickets SET status = 'pending_customer' WHERE number = ?1",
    };
    sqlx::query(sql)
        .bind(number.to_string())
        .bind(sqlite_time(Utc::now()))
        .execute(pool)
        .await?;
    Ok(())
}

fn summary(notices: &[NoticeRow], dir: &Path) -> String {
    let mut by_ticket: BTreeMap<String, Vec<&NoticeRow>> = BTreeMap::new();
    for n in notices {
        by_ticket.entry(n.ticket_id.clone()).or_default().push(n);
    }
    let mut out = String::new();
    let _ = writeln!(out, "\nWhat each ticket got:");
    let mut sent_total = 0;
    for (index, s) in TICKETS.iter().enumerate() {
        let id = (index + 1).to_string();
        let rows = by_ticket.get(&id).map(Vec::as_slice).unwrap_or(&[]);
        let sent: Vec<&&NoticeRow> = rows.iter().filter(|n| n.status == Status::Sent).collect();
        sent_total += sent.len();
        let what = if sent.is_empty() {
            why_nothing(s, rows)
        } else {
            let mut parts: Vec<String> = sent
                .iter()
                .map(|n| format!("{} {}/{}", n.policy, n.number, n.max_notices))
                .collect();
            if let Some(c) = rows.iter().find(|n| n.status == Status::Cancelled) {
                parts.push(format!(
                    "then cancelled: {}",
                    c.cancel_reason.as_deref().unwrap_or("")
                ));
            }
            parts.join(", ")
        };
        let events: Vec<String> = EVENTS
            .iter()
            .filter(|(_, number, _)| *number == s.number)
            .map(|(second, _, event)| format!(" [t+{second}s: {}]", event.describe()))
            .collect();
        let _ = writeln!(
            out,
            "  {:<11} {:<2} {:<21} {:<9} waited {:>3}s  {}{}",
            crate::ticket::label(&id, Some(&format!("#{}", s.number))),
            s.language,
            s.state,
            s.priority,
            s.waited,
            what,
            events.concat()
        );
    }
    let _ = writeln!(out, "\n{sent_total} notices sent. Look at them:");
    let _ = writeln!(
        out,
        "  ls {}/outbox/mail {}/outbox/team",
        dir.display(),
        dir.display()
    );
    if let Some(example) = notices
        .iter()
        .find(|n| n.status == Status::Sent && n.channel == "customer-mail")
    {
        let path = PathBuf::from(dir)
            .join("outbox/mail")
            .join(format!("{}.eml", example.id));
        if let Ok(text) = std::fs::read_to_string(&path) {
            let body = decode_eml_text(&text);
            let _ = writeln!(out, "\nOne of them ({}):\n", path.display());
            for line in body.lines().take(24) {
                let _ = writeln!(out, "  | {line}");
            }
        }
    }
    let _ = writeln!(
        out,
        "\nThe ledger: cargo run --release -- --config {}/interim.toml notices\n\
         What would go out next: cargo run --release -- --config {}/interim.toml plan --horizon 1h",
        dir.display(),
        dir.display()
    );
    out
}

fn why_nothing(s: &Sample, rows: &[&NoticeRow]) -> String {
    if let Some(c) = rows.iter().find(|n| n.status == Status::Cancelled) {
        return format!(
            "nothing: planned {} {}, cancelled because {}",
            c.policy,
            c.number,
            c.cancel_reason.as_deref().unwrap_or("it stopped waiting")
        );
    }
    if s.state == "closed" {
        return "nothing: closed".into();
    }
    if s.state == "pending_customer" {
        return "nothing: we wait for the customer, not the customer for us".into();
    }
    if !s.email.contains('@') {
        return format!(
            "nothing: skipped, \"{}\" is not a deliverable address (see the log line above)",
            s.email
        );
    }
    if s.waited < 0 {
        return "nothing: its wait begins in the future".into();
    }
    if let Some(p) = rows.iter().find(|n| n.status == Status::Pending) {
        return format!("nothing yet: {} {} is planned", p.policy, p.number);
    }
    "nothing: still under its threshold".into()
}

/// The recipient, subject and text part of a notice .eml, decoded for display.
fn decode_eml_text(eml: &str) -> String {
    let mut out = String::new();
    let Some(message) = mail_parser::MessageParser::default().parse(eml.as_bytes()) else {
        return out;
    };
    let recipients: Vec<String> = message
        .to()
        .into_iter()
        .flat_map(|to| to.iter())
        .filter_map(|a| a.address().map(str::to_owned))
        .collect();
    if !recipients.is_empty() {
        let _ = writeln!(out, "To: {}", recipients.join(", "));
    }
    if let Some(subject) = message.subject() {
        let _ = writeln!(out, "Subject: {subject}");
    }
    if let Some(text) = message.body_text(0) {
        let _ = writeln!(out, "\n{}", text.trim_end());
    }
    out
}
