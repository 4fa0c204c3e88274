//! Hostile ticket data, through the built binary: control characters in
//! every text column, a 1 MB subject, HTML and template syntax, right-to-left
//! text and emoji, and odd addresses. Each test asserts exactly what reaches
//! the mail server and the webhook receiver.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use support::faults::{ScriptedSmtp, SmtpFault};
use support::{
    Helpdesk, ReceivedMail, Setup, SmtpSink, Ticket, WebhookReceiver, ago, sql_lit, toml_str,
};

const SOON: Duration = Duration::from_secs(20);

/// A policy for every ticket, one notice after five minutes.
fn every_ticket(channel: &str) -> String {
    format!("after = \"5m\"\nchannel = \"{channel}\"\ntemplate = \"interim\"")
}

/// An email channel to `sink` and, for the same tickets, a webhook.
fn mail_and_hook(setup: &mut Setup, smtp_port: u16, hook_url: &str) {
    setup
        .email_channel("mail", smtp_port, "retry_initial = \"1s\"")
        .webhook_channel("hook", hook_url, "retry_initial = \"1s\"")
        .policy(
            "customer-mail",
            &(every_ticket("mail") + "\ncontinue = true"),
        )
        .policy("team-hook", &every_ticket("hook"));
}

/// An SQL expression for `text` that keeps NUL characters (a NUL inside
/// an SQL literal would end the statement).
fn sql_text(text: &str) -> String {
    text.split('\0')
        .map(|part| sql_lit(Some(part)))
        .collect::<Vec<_>>()
        .join(" || char(0) || ")
}

/// Inserts one helpdesk row; `columns` are (name, SQL expression), the
/// others get an open English ticket waiting for ten minutes.
fn insert_row(helpdesk: &Helpdesk, id: i64, columns: &[(&str, String)]) {
    let mut row = vec![
        ("id", id.to_string()),
        ("number", sql_lit(Some(&format!("#{id}")))),
        ("subject", sql_lit(Some("Printer on fire"))),
        ("state", sql_lit(Some("open"))),
        ("priority", sql_lit(Some("normal"))),
        ("queue", sql_lit(Some("support"))),
        ("customer_email", sql_lit(Some(&Ticket::email(id)))),
        ("customer_name", sql_lit(Some(&format!("Customer {id}")))),
        ("language", sql_lit(Some("en"))),
        ("waiting_since", sql_lit(Some(&ago(600)))),
        ("updated_at", "CURRENT_TIMESTAMP".to_string()),
        ("thread_message_id", "NULL".to_string()),
    ];
    for (name, value) in columns {
        let slot = row.iter_mut().find(|(n, _)| n == name);
        slot.expect("a helpdesk column").1 = value.clone();
    }
    let (names, values): (Vec<&str>, Vec<String>) = row.into_iter().unzip();
    helpdesk.execute(&format!(
        "INSERT INTO tickets ({}) VALUES ({})",
        names.join(", "),
        values.join(", ")
    ));
}

fn parse(mail: &ReceivedMail) -> mail_parser::Message<'_> {
    mail_parser::MessageParser::default()
        .parse(&mail.data)
        .expect("the mail parses")
}

/// The first `To:` mailbox as (display name, address).
fn to_mailbox(mail: &ReceivedMail) -> (String, String) {
    let message = parse(mail);
    let first = message
        .to()
        .and_then(|to| to.first())
        .expect("a To: mailbox");
    (
        first.name().unwrap_or_default().to_string(),
        first.address().unwrap_or_default().to_string(),
    )
}

fn header_names(mail: &ReceivedMail) -> BTreeSet<String> {
    mail.header_lines()
        .into_iter()
        .map(|(name, _)| name.to_ascii_lowercase())
        .collect()
}

/// The webhook request about `ticket_id`.
fn hook_about(receiver: &WebhookReceiver, ticket_id: &str) -> Value {
    let requests = receiver.requests();
    let about: Vec<_> = requests
        .iter()
        .filter(|r| r.body["ticket"]["id"] == ticket_id)
        .collect();
    assert_eq!(
        about.len(),
        1,
        "one webhook for ticket {ticket_id:?}: {requests:#?}"
    );
    assert!(about[0].verified, "signed");
    about[0].body.clone()
}

#[test]
fn control_characters_in_every_text_column_never_make_a_header_and_arrive_as_data() {
    let sink = SmtpSink::start();
    let receiver = WebhookReceiver::start(&[], 200, Duration::ZERO);
    let mut setup = Setup::new();
    // The id column too: text with CR, LF and NUL for ticket 1.
    let id = "1\0\r\nX-Evil-Id: 1";
    let query = support::TICKET_QUERY.replacen(
        "SELECT id,",
        &format!(
            "SELECT CASE WHEN id = 1 THEN {} ELSE id END AS id,",
            sql_text(id)
        ),
        1,
    );
    setup.set("source.query", &toml_str(&query));
    mail_and_hook(&mut setup, sink.port(), receiver.url());
    let number = "#1\r\nX-Evil-Number: 1\0";
    let subject = "Printer\r\nBcc: evil@example.com\0\r\n\r\n<html>body</html>";
    let state = "open\r\nX-Evil-State: 1\0";
    let priority = "normal\r\nX-Evil-Priority: 1\0";
    let queue = "support\r\nX-Evil-Queue: 1\0";
    let name = "Anna\r\nBcc: evil@example.com\0Mallory";
    let language = "en\0\r\n";
    let thread = "<t1@helpdesk.example>\r\nBcc: evil@example.com\0";
    let helpdesk = setup.helpdesk();
    insert_row(
        &helpdesk,
        1,
        &[
            ("number", sql_text(number)),
            ("subject", sql_text(subject)),
            ("state", sql_text(state)),
            ("priority", sql_text(priority)),
            ("queue", sql_text(queue)),
            ("customer_name", sql_text(name)),
            ("language", sql_text(language)),
            ("thread_message_id", sql_text(thread)),
        ],
    );
    let bad_email = "customer2@example.com\r\nBcc: evil@example.com\0";
    insert_row(&helpdesk, 2, &[("customer_email", sql_text(bad_email))]);
    let _daemon = setup.start();

    setup.wait_until(SOON, "the mail and both webhooks arrived", || {
        sink.mails().len() == 1 && receiver.requests().len() == 2
    });
    setup.assert_stays(Duration::from_secs(2), "nothing more", || {
        sink.mails().len() == 1 && receiver.requests().len() == 2
    });

    // The mail: every value stays inside its own header, on one line.
    let mail = &sink.mails()[0];
    let raw = String::from_utf8_lossy(&mail.data).into_owned();
    assert_eq!(mail.to, vec![Ticket::email(1)], "one envelope recipient");
    let names = header_names(mail);
    assert!(
        names.iter().all(|n| !n.starts_with("x-evil") && n != "bcc"),
        "no injected header: {names:?}\n{raw}"
    );
    for single in ["subject", "to", "from", "message-id", "x-interim-ticket"] {
        assert_eq!(mail.headers(single).len(), 1, "one {single} header:\n{raw}");
    }
    assert!(
        !names.contains("in-reply-to") && !names.contains("references"),
        "a thread id with CR/LF is no reference:\n{raw}"
    );
    // The language "en\0\r\n" is no known language: the default (de) applies.
    assert_eq!(
        mail.subject(),
        "Zwischenbescheid zu #1 X-Evil-Number: 1 : Printer Bcc: evil@example.com <html>body</html>"
    );
    assert_eq!(
        to_mailbox(mail),
        (
            "Anna Bcc: evil@example.com Mallory".to_string(),
            Ticket::email(1)
        )
    );
    assert_eq!(
        mail.header("X-Interim-Ticket").as_deref(),
        Some("1 X-Evil-Id: 1")
    );
    assert_eq!(
        mail.header("X-Interim-Ticket-Number").as_deref(),
        Some("#1 X-Evil-Number: 1"),
        "the number stays on its own header line"
    );
    // The body is text: the name's line breaks stay in the body, but a
    // NUL byte never goes on the wire (RFC 2045 forbids it in 7bit and
    // 8bit data); whether it becomes nothing, a space or U+FFFD is free.
    assert!(
        !mail.data.contains(&0),
        "a NUL byte went out in the message:\n{raw:?}"
    );
    let text = mail.text();
    let expected = "Guten Tag Anna\r\nBcc: evil@example.com\0Mallory,\r\nIhre Anfrage #1\r\n\
                    X-Evil-Number: 1\0: open\r\nX-Evil-State: 1\0.\r\nZwischenbescheid 1 von 1.\r\n";
    let visible = |t: &str| -> String {
        t.chars()
            .filter(|c| !matches!(c, '\0' | ' ' | '\u{FFFD}'))
            .collect()
    };
    assert_eq!(
        visible(text.trim_end()),
        visible(expected.trim_end()),
        "the body says what the ticket says: {text:?}"
    );
    // The webhook carries every value exactly as the helpdesk holds it.
    let body = hook_about(&receiver, id);
    let ticket = &body["ticket"];
    for (field, value) in [
        ("number", number),
        ("subject", subject),
        ("state", state),
        ("priority", priority),
        ("queue", queue),
        ("customer_name", name),
    ] {
        assert_eq!(ticket[field], value, "ticket.{field} in the webhook");
    }
    assert_eq!(body["message"]["subject"], mail.subject());

    // A customer_email with CR/LF is no address: skipped for the email
    // policy with one log line, while the webhook policy still applies.
    let other = hook_about(&receiver, "2");
    assert_eq!(other["ticket"]["customer_email"], bad_email);
    let notices = setup.notices_of(2);
    assert_eq!(notices.len(), 1, "only the webhook notice: {notices:?}");
    assert_eq!(notices[0].policy, "team-hook");
    let log = setup.log_tail(usize::MAX);
    let lines: Vec<_> = log
        .lines()
        .filter(|l| l.contains("ticket 2: column customer_email"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "one log line names ticket and column: {lines:#?}"
    );
}

#[test]
fn a_one_megabyte_subject_is_clipped_in_the_mail_and_whole_in_the_webhook() {
    let sink = SmtpSink::start();
    let receiver = WebhookReceiver::start(&[], 200, Duration::ZERO);
    let mut setup = Setup::new();
    mail_and_hook(&mut setup, sink.port(), receiver.url());
    // 1 MiB of UTF-8, with two-byte characters, so a clip inside a
    // character would show.
    let subject = "Größe ".repeat(1 << 17);
    assert_eq!(subject.len(), 1 << 20);
    setup.helpdesk().insert(&[Ticket {
        subject: subject.clone(),
        ..Ticket::new(1)
    }]);
    let _daemon = setup.start();

    setup.wait_until(SOON, "the mail and the webhook arrived", || {
        sink.mails().len() == 1 && receiver.requests().len() == 1
    });
    let mail = &sink.mails()[0];
    let full = format!("Update on #1: {}", subject.trim_end());
    let clipped: String = full.chars().take(199).chain(['…']).collect();
    assert_eq!(mail.subject(), clipped);
    assert_eq!(mail.subject().chars().count(), 200);
    assert!(
        mail.data.len() < 20_000,
        "the mail stays small: {} bytes",
        mail.data.len()
    );

    let body = hook_about(&receiver, "1");
    assert_eq!(
        body["ticket"]["subject"].as_str().map(str::len),
        Some(1 << 20),
        "the webhook carries the whole subject"
    );
    assert_eq!(body["ticket"]["subject"], subject);
    assert_eq!(body["message"]["subject"], clipped);
    let notices = setup.notices();
    assert!(
        notices
            .iter()
            .all(|n| n.status == "sent" && n.attempts == 1),
        "{notices:?}"
    );
}

#[test]
fn html_and_template_syntax_in_subject_and_name_are_printed_and_escaped_in_html() {
    let sink = SmtpSink::start();
    let mut setup = Setup::new();
    setup
        .email_channel("mail", sink.port(), "")
        .policy("customer-mail", &every_ticket("mail"));
    std::fs::write(
        setup.path("templates").join("interim.en.html"),
        "<p>Hello {{ ticket.customer_name }}</p>\n<p>{{ ticket.subject }}</p>\n",
    )
    .expect("write the HTML template");
    let subject = r#"<b>{{ 7 * 7 }}</b> {% if true %}yes{% endif %} & "quotes" 'single'"#;
    let name = r#"<script>alert("x")</script>{{ ticket.id }}{# c #}"#;
    let helpdesk = setup.helpdesk();
    insert_row(
        &helpdesk,
        1,
        &[
            ("subject", sql_lit(Some(subject))),
            ("customer_name", sql_lit(Some(name))),
        ],
    );
    let _daemon = setup.start();

    setup.wait_until(SOON, "the mail arrived", || sink.mails().len() == 1);
    let mail = &sink.mails()[0];
    assert_eq!(mail.subject(), format!("Update on #1: {subject}"));
    assert_eq!(
        to_mailbox(mail).0,
        name,
        "the display name is the name as it is"
    );
    let text = mail.text();
    assert!(
        text.starts_with(&format!("Hello {name},\r\n")),
        "printed, not evaluated: {text:?}"
    );
    let message = parse(mail);
    let html = message.body_html(0).expect("an HTML part").into_owned();
    assert_eq!(
        html,
        "<p>Hello &lt;script&gt;alert(&quot;x&quot;)&lt;&#x2f;script&gt;{{ ticket.id }}{# c #}</p>\r\n\
         <p>&lt;b&gt;{{ 7 * 7 }}&lt;&#x2f;b&gt; {% if true %}yes{% endif %} &amp; &quot;quotes&quot; &#x27;single&#x27;</p>\r\n"
    );
}

#[test]
fn right_to_left_text_and_emoji_survive_intact() {
    let sink = SmtpSink::start();
    let receiver = WebhookReceiver::start(&[], 200, Duration::ZERO);
    let mut setup = Setup::new();
    mail_and_hook(&mut setup, sink.port(), receiver.url());
    let subject = "مرحبا שלום 👋🏽 \u{202E}fdp.exe 家族👨‍👩‍👧";
    let name = "محمد 李小龍 👩🏽‍💻";
    insert_row(
        &setup.helpdesk(),
        1,
        &[
            ("subject", sql_lit(Some(subject))),
            ("customer_name", sql_lit(Some(name))),
        ],
    );
    let _daemon = setup.start();

    setup.wait_until(SOON, "the mail and the webhook arrived", || {
        sink.mails().len() == 1 && receiver.requests().len() == 1
    });
    let mail = &sink.mails()[0];
    let expected = format!("Update on #1: {subject}");
    assert_eq!(mail.subject(), expected);
    assert_eq!(to_mailbox(mail), (name.to_string(), Ticket::email(1)));
    assert!(
        mail.text().starts_with(&format!("Hello {name},\r\n")),
        "{:?}",
        mail.text()
    );
    let body = hook_about(&receiver, "1");
    assert_eq!(body["ticket"]["subject"], subject);
    assert_eq!(body["ticket"]["customer_name"], name);
    assert_eq!(body["message"]["subject"], expected);
}

/// One ticket whose customer_email is `address`, through an email channel.
fn one_mail_to(port: u16, address: &str) -> Setup {
    let mut setup = Setup::new();
    setup
        .email_channel("mail", port, "retry_initial = \"1s\"")
        .policy("customer-mail", &every_ticket("mail"));
    setup.helpdesk().insert(&[
        Ticket {
            customer_email: address.into(),
            ..Ticket::new(1)
        },
        Ticket::new(2),
    ]);
    setup
}

#[test]
fn an_address_with_two_at_signs_is_skipped_with_one_log_line() {
    let sink = SmtpSink::start();
    let setup = one_mail_to(sink.port(), "a@b@c");
    let mut daemon = setup.start();

    setup.wait_until(SOON, "ticket 2's mail arrived", || sink.mails().len() == 1);
    setup.assert_stays(Duration::from_secs(2), "no other mail", || {
        sink.mails().len() == 1
    });
    assert_eq!(sink.mails()[0].to, vec![Ticket::email(2)]);
    assert!(setup.notices_of(1).is_empty(), "no notice for a@b@c");
    let log = setup.log_tail(usize::MAX);
    let lines: Vec<_> = log
        .lines()
        .filter(|l| l.contains("ticket 1: column customer_email") && l.contains("a@b@c"))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(daemon.is_running());
}

#[test]
fn a_quoted_local_part_is_delivered_to_that_address() {
    let sink = SmtpSink::start();
    let setup = one_mail_to(sink.port(), "\"x\"@example.com");
    let _daemon = setup.start();

    let notices = setup.wait_for_notices("both notices are sent", |n| {
        n.len() == 2 && n.iter().all(|n| n.status == "sent")
    });
    // "x"@example.com and x@example.com are one address (RFC 5321 4.1.2):
    // the needless quotes may go.
    let first = notices
        .iter()
        .find(|n| n.ticket_id == "1")
        .expect("notice 1");
    assert_eq!(first.recipient.as_deref(), Some("x@example.com"));
    let mails = sink.mails_to("x@example.com");
    assert_eq!(mails.len(), 1, "envelope recipient x@example.com");
    assert_eq!(to_mailbox(&mails[0]).1, "x@example.com");
}

#[test]
fn a_local_part_that_needs_its_quotes_is_skipped_not_mangled() {
    // "john doe"@example.com is valid RFC 5322, but the mail library cannot
    // send it; the row is skipped with a log line rather than sent to a
    // mangled `john doe@example.com`.
    let server = ScriptedSmtp::start(&[], SmtpFault::Accept);
    let setup = one_mail_to(server.port(), "\"john doe\"@example.com");
    let _daemon = setup.start();

    setup.wait_until(SOON, "ticket 2's mail arrived", || {
        server.mails().len() == 1
    });
    setup.assert_stays(Duration::from_secs(1), "no other mail", || {
        server.mails().len() == 1 && server.transactions() == 1
    });
    assert!(setup.notices_of(1).is_empty(), "no notice for ticket 1");
    let log = setup.log_tail(usize::MAX);
    let lines: Vec<_> = log
        .lines()
        .filter(|l| l.contains("ticket 1: column customer_email") && l.contains("john doe"))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:#?}");
}

#[test]
fn an_idn_domain_is_delivered_as_punycode_to_a_server_without_smtputf8() {
    let sink = SmtpSink::start();
    let setup = one_mail_to(sink.port(), "kunde@bücher.example");
    let _daemon = setup.start();

    setup.wait_until(SOON, "ticket 2's mail arrived", || {
        !sink.mails_to(&Ticket::email(2)).is_empty()
    });
    let notices = setup.wait_for_notices("ticket 1's notice is done", |n| {
        n.iter()
            .any(|n| n.ticket_id == "1" && n.status != "pending")
            || n.iter().any(|n| n.ticket_id == "1" && n.attempts >= 2)
    });
    let first = notices
        .iter()
        .find(|n| n.ticket_id == "1")
        .expect("notice 1");
    assert_eq!(
        (first.status.as_str(), first.attempts),
        ("sent", 1),
        "the domain part of an address can always be sent as punycode: {first:?}"
    );
    let mails = sink.mails_to("kunde@xn--bcher-kva.example");
    assert_eq!(mails.len(), 1, "envelope kunde@xn--bcher-kva.example");
}

/// The domain goes out as punycode to every server, also one that speaks
/// SMTPUTF8: the same mailbox, and one behaviour to reason about.
#[test]
fn an_idn_domain_is_delivered_as_punycode_to_a_server_with_smtputf8() {
    let server = ScriptedSmtp::start_utf8(&[], SmtpFault::Accept);
    let setup = one_mail_to(server.port(), "kunde@bücher.example");
    let _daemon = setup.start();

    let notices = setup.wait_for_notices("both notices are sent", |n| {
        n.len() == 2 && n.iter().all(|n| n.status == "sent")
    });
    assert!(notices.iter().all(|n| n.attempts == 1), "{notices:?}");
    let envelopes: BTreeSet<Vec<String>> = server.mails().into_iter().map(|m| m.to).collect();
    assert_eq!(
        envelopes,
        BTreeSet::from([
            vec!["kunde@xn--bcher-kva.example".to_string()],
            vec![Ticket::email(2)]
        ])
    );
}

#[test]
fn a_customer_email_with_a_display_name_is_delivered_to_its_address() {
    let sink = SmtpSink::start();
    let setup = one_mail_to(sink.port(), "Anna <anna@example.com>");
    let _daemon = setup.start();

    let notices = setup.wait_for_notices("both notices are sent", |n| {
        n.len() == 2 && n.iter().all(|n| n.status == "sent")
    });
    let first = notices
        .iter()
        .find(|n| n.ticket_id == "1")
        .expect("notice 1");
    assert_eq!(first.recipient.as_deref(), Some("anna@example.com"));
    let mails = sink.mails_to("anna@example.com");
    assert_eq!(mails.len(), 1);
    assert_eq!(
        to_mailbox(&mails[0]),
        ("Customer 1".to_string(), "anna@example.com".to_string()),
        "the ticket's customer_name is the display name"
    );
}

#[test]
fn text_that_is_not_utf8_is_skipped_with_that_reason() {
    let mut setup = Setup::new();
    setup
        .email_channel("mail", 9, "")
        .policy("customer-mail", &every_ticket("mail"));
    let helpdesk = setup.helpdesk();
    helpdesk.insert(&[Ticket::new(1), Ticket::new(2)]);
    // SQLite keeps whatever bytes it is given in a TEXT column.
    helpdesk.execute("UPDATE tickets SET subject = CAST(x'48e96c6c6f' AS TEXT) WHERE id = 2");

    let out = setup.cli(&["sources", "test"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains("ticket 2:"))
        .unwrap_or_else(|| panic!("ticket 2 is listed as skipped\n{stdout}"));
    assert!(
        line.contains("column subject") && line.contains("not valid UTF-8"),
        "the skip names the column and the real reason: {line}"
    );
    assert!(!line.contains("unsupported SQL type"), "{line}");
    assert!(
        stdout.contains("read 1 waiting ticket(s), 0 ended, 1 skipped by the column contract"),
        "{stdout}"
    );
}

#[test]
fn a_waiting_since_beyond_the_year_9999_skips_its_row_and_the_daemon_keeps_sending() {
    let sink = SmtpSink::start();
    let mut setup = Setup::new();
    setup
        .email_channel("mail", sink.port(), "")
        .toml(
            "[calendars.always]\ntimezone = \"Europe/Berlin\"\n\
             hours = { mon = \"00:00-24:00\", tue = \"00:00-24:00\", wed = \"00:00-24:00\", \
             thu = \"00:00-24:00\", fri = \"00:00-24:00\", sat = \"00:00-24:00\", sun = \"00:00-24:00\" }",
        )
        .policy(
            "customer-mail",
            &(every_ticket("mail") + "\ncalendar = \"always\"\nrepeat_every = \"1d\""),
        );
    let helpdesk = setup.helpdesk();
    helpdesk.insert(&[Ticket::new(1), Ticket::new(2), Ticket::new(3)]);
    // Integer seconds of the year 262140: chrono can hold it, but no
    // calendar arithmetic on it can (this panicked on every start).
    helpdesk.execute("UPDATE tickets SET waiting_since = 8210266876799 WHERE id = 2");

    let plan = setup.cli(&["plan", "--format", "json"]);
    let stderr = String::from_utf8_lossy(&plan.stderr);
    assert_eq!(plan.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("ticket 2: column waiting_since") && stderr.contains("9999"),
        "the skip names the ticket, the column and the range\n{stderr}"
    );
    let planned: Value = serde_json::from_slice(&plan.stdout).unwrap_or(Value::Null);
    let ids: BTreeSet<String> = planned
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| support::text(&r["ticket_id"]))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(ids, BTreeSet::from(["1".to_string(), "3".to_string()]));

    let mut daemon = setup.start();
    setup.wait_until(SOON, "tickets 1 and 3 got their notice", || {
        sink.mails().len() == 2
    });
    assert!(daemon.is_running(), "the row did not stop the daemon");
    let tickets: BTreeSet<String> = setup.notices().into_iter().map(|n| n.ticket_id).collect();
    assert_eq!(tickets, BTreeSet::from(["1".to_string(), "3".to_string()]));
}
