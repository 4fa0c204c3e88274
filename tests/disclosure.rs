//! What the daemon gives away (issue 11, items 7 and 9): credentials about
//! to travel in cleartext are warned about (check-config, once in the
//! daemon's log) unless `allow_insecure = true`; values from outside are
//! clipped in log lines; an SMTP reply that echoes the AUTH exchange is
//! logged without it; recipients in info lines are masked, in full only
//! at debug.

mod support;

use std::time::Duration;

use support::faults::{ScriptedSmtp, SmtpFault};
use support::{Setup, SmtpSink, TICKET_QUERY, Ticket, toml_str};

const SOON: Duration = Duration::from_secs(20);
const SMTP_USER: &str = "interim-service";
const SMTP_PASSWORD: &str = "Smtp-Pa55word-4c1e";
const PASSWORD_ENV: &str = "INTERIM_TEST_SMTP_PASSWORD";

fn first_notice(channel: &str) -> String {
    format!("after = \"5m\"\nchannel = \"{channel}\"\ntemplate = \"interim\"")
}

/// An email channel with the test password; `host` and `tls` as given.
fn mail_with_password(setup: &mut Setup, name: &str, host: &str, port: u16, extra: &str) {
    setup.env(PASSWORD_ENV, SMTP_PASSWORD).toml(&format!(
        "[channels.{name}]\nkind = \"email\"\nhost = {}\nport = {port}\ntls = \"none\"\n\
         username = \"{SMTP_USER}\"\npassword_env = \"{PASSWORD_ENV}\"\nfrom = {}\n\
         retry_initial = \"1s\"\n{extra}",
        toml_str(host),
        toml_str(support::FROM)
    ));
}

/// A config with each kind of cleartext credential to a remote host, and
/// the same to loopback (which is fine); `allow` adds `allow_insecure =
/// true` to each remote one.
fn cleartext_setup(allow: bool) -> Setup {
    let allow = if allow { "allow_insecure = true\n" } else { "" };
    let mut setup = Setup::new();
    setup
        .unset("source.query")
        .set("source.kind", "\"http\"")
        .set(
            "source.url",
            &toml_str("http://helpdesk.example.com/api/tickets"),
        )
        .set("source.auth", "\"bearer\"")
        .set("source.token_env", "\"INTERIM_TEST_API_TOKEN\"")
        .set(
            "source.fields",
            r#"{ id = "/id", state = "/state", waiting_since = "/waiting_since" }"#,
        )
        .env("INTERIM_TEST_API_TOKEN", "api-token-9d2f");
    if !allow.is_empty() {
        setup.set("source.allow_insecure", "true");
    }
    mail_with_password(&mut setup, "relay", "mail.example.com", 25, allow);
    mail_with_password(&mut setup, "local-relay", "127.0.0.1", 2525, "");
    setup
        .webhook_channel("team-hook", "http://hooks.example.com/interim", allow)
        .webhook_channel("local-hook", "http://[::1]:8080/interim", "")
        .policy("customer-mail", &first_notice("relay"));
    setup
}

fn check_config(setup: &Setup) -> String {
    let out = setup.cli(&["check-config"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "check-config passes:\n{text}");
    text
}

#[test]
fn check_config_warns_when_credentials_would_travel_in_cleartext_unless_allowed() {
    let warned = check_config(&cleartext_setup(false));
    let lines: Vec<&str> = warned
        .lines()
        .filter(|l| l.starts_with("warning:") && l.contains("unencrypted"))
        .collect();
    for (what, needles) in [
        (
            "the bearer token",
            &["source:", "bearer token", "helpdesk.example.com"][..],
        ),
        (
            "the SMTP password",
            &["channels.relay:", "tls = \"none\"", "mail.example.com:25"][..],
        ),
        (
            "the webhook",
            &["channels.team-hook:", "hooks.example.com"][..],
        ),
    ] {
        assert!(
            lines.iter().any(|l| needles.iter().all(|n| l.contains(n))),
            "a warning about {what}:\n{warned}"
        );
    }
    assert_eq!(lines.len(), 3, "loopback is not warned about:\n{warned}");
    assert!(
        lines.iter().all(|l| l.contains("allow_insecure = true")),
        "each says how to silence it:\n{warned}"
    );

    let allowed = check_config(&cleartext_setup(true));
    assert!(
        !allowed.contains("unencrypted"),
        "allow_insecure = true silences each:\n{allowed}"
    );
}

#[test]
fn the_daemon_logs_each_cleartext_warning_once_at_start() {
    let sink = SmtpSink::start();
    let mut setup = Setup::new();
    setup
        .email_channel("mail", sink.port(), "")
        .webhook_channel("team-hook", "http://hooks.example.invalid/interim", "")
        .policy("customer-mail", &first_notice("mail"));
    mail_with_password(&mut setup, "relay", "mail.example.invalid", 25, "");
    setup.helpdesk().insert(&[Ticket::new(1)]);
    let mut daemon = setup.start();

    setup.wait_until(SOON, "a notice is sent and more polls ran", || {
        !sink.mails().is_empty() && setup.log_tail(usize::MAX).matches("poll done").count() >= 3
    });
    daemon.signal("HUP");
    setup.wait_until(SOON, "the config is reloaded", || {
        setup.log_tail(usize::MAX).contains("config reloaded")
    });
    let log = setup.log_tail(usize::MAX);
    for needle in [
        "channels.relay: tls = \\\"none\\\" sends the SMTP password unencrypted to mail.example.invalid:25",
        "channels.team-hook: notices (customer data) travel unencrypted to hooks.example.invalid",
    ] {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(needle)).collect();
        assert_eq!(
            lines.len(),
            1,
            "logged once, not per poll or reload: {needle}\n{log}"
        );
        assert!(lines[0].contains("WARN"), "{}", lines[0]);
    }
    assert!(daemon.stop().success());
}

#[test]
fn an_smtp_reply_that_echoes_the_auth_exchange_is_logged_without_it() {
    use base64::Engine;
    let server = ScriptedSmtp::start(&[], SmtpFault::EchoAuth);
    let mut setup = Setup::new();
    mail_with_password(&mut setup, "mail", "127.0.0.1", server.port(), "");
    setup.policy("customer-mail", &first_notice("mail"));
    setup.helpdesk().insert(&[Ticket::new(1)]);
    let _daemon = setup.start();

    let notices = setup.wait_for_notices("the notice is dead", |n| {
        n.iter().any(|n| n.status == "dead")
    });
    let last_error = notices[0].last_error.clone().unwrap_or_default();
    assert!(
        last_error.contains("535") && last_error.contains("5.7.8"),
        "the codes of the refusal are kept: {last_error}"
    );
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let plain = b64(&format!("\0{SMTP_USER}\0{SMTP_PASSWORD}"));
    let log = setup.log_tail(usize::MAX);
    let ledger = format!("{notices:?}");
    for (what, secret) in [
        ("the password", SMTP_PASSWORD.to_string()),
        ("the password, base64", b64(SMTP_PASSWORD)),
        (
            "the AUTH PLAIN payload",
            plain.trim_end_matches('=').to_string(),
        ),
        ("the AUTH command", "AUTH PLAIN".to_string()),
        ("the echo", "you sent".to_string()),
    ] {
        assert!(!log.contains(&secret), "{what} in the daemon log:\n{log}");
        assert!(!ledger.contains(&secret), "{what} in the ledger: {ledger}");
    }
}

#[test]
fn recipients_are_masked_and_outside_values_clipped_in_log_lines() {
    let sink = SmtpSink::start();
    let mut setup = Setup::new();
    // Ticket 2 says its customer's time zone is 10,240 characters long.
    let zone = "Z".repeat(10_240);
    let query = TICKET_QUERY.replace(
        " FROM",
        &format!(", CASE WHEN id = 2 THEN '{zone}' END AS timezone FROM"),
    );
    setup
        .email_channel("mail", sink.port(), "")
        .policy("customer-mail", &first_notice("mail"))
        .set("source.query", &toml_str(&query))
        .env("INTERIM_LOG", "info");
    let helpdesk = setup.helpdesk();
    helpdesk.insert(&[Ticket::new(1), Ticket::new(2)]);
    let mut daemon = setup.start();

    setup.wait_until(SOON, "both notices are sent", || sink.mails().len() == 2);
    setup.wait_until(SOON, "both sends are logged", || {
        setup.log_tail(usize::MAX).matches("notice sent").count() == 2
    });
    assert!(daemon.stop().success());
    let log = setup.log_tail(usize::MAX);
    for id in [1, 2] {
        let address = Ticket::email(id);
        assert!(!log.contains(&address), "{address} in full at info:\n{log}");
    }
    let sent: Vec<&str> = log.lines().filter(|l| l.contains("notice sent")).collect();
    assert!(
        sent.iter().all(|l| l.contains("c***@example.com")),
        "the recipient is shown masked: {sent:#?}"
    );
    let zone_lines: Vec<&str> = log.lines().filter(|l| l.contains("ZZZZ")).collect();
    assert_eq!(zone_lines.len(), 1, "the bad zone is logged once");
    assert!(
        zone_lines[0].contains(&format!("{}…(10240 chars)", "Z".repeat(200)))
            && !zone_lines[0].contains(&"Z".repeat(201)),
        "clipped to 200 characters with the original length: {}",
        zone_lines[0]
    );
    assert!(
        log.lines().all(|l| l.chars().count() < 2_000),
        "no log line carries a value unclipped"
    );

    // At debug, the address is there in full.
    helpdesk.insert(&[Ticket::new(3)]);
    setup.env("INTERIM_LOG", "debug");
    let mut daemon = setup.start();
    setup.wait_until(SOON, "ticket 3's notice is sent and logged", || {
        sink.mails().len() == 3 && setup.log_tail(usize::MAX).contains(&Ticket::email(3))
    });
    assert!(daemon.stop().success());
}
