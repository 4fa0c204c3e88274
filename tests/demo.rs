//! `interim demo`, the README's first command: it runs the real daemon
//! against a generated helpdesk and must show what the product promises:
//! notices sent in the customer's language, the promise of the next one,
//! a cancelled notice when the wait ended, nothing for a closed ticket.
//! (Whether promises are kept is tested where time can be controlled:
//! promises_*.rs, rendering.rs.)

use std::process::Command;

#[test]
fn the_demo_sends_notices_in_german_and_english_promising_the_next_and_shows_what_was_not_sent() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let demo = dir.path().join("demo");
    let out = Command::new(env!("CARGO_BIN_EXE_interim"))
        .args(["demo", "--dir"])
        .arg(&demo)
        .output()
        .expect("run interim demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    let sent: usize = stdout
        .lines()
        .find_map(|l| l.strip_suffix(" notices sent. Look at them:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count of sent notices:\n{stdout}"));
    let mails = std::fs::read_dir(demo.join("outbox/mail"))
        .map(|d| d.count())
        .unwrap_or(0);
    let team = std::fs::read_dir(demo.join("outbox/team"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(sent > 0, "{stdout}");
    assert_eq!(mails + team, sent, "every notice counted is in the outbox");
    // English customers get English notices, with the promise of the next.
    let english = english_notices_with_a_promise(&demo.join("outbox/mail"));
    assert!(
        english.iter().any(|(to, _)| to.ends_with("@example.com")),
        "an English customer got an English notice promising the next: {english:?}"
    );
    for needle in [
        // One sample mail, decoded, in German, with its promise.
        "| Subject: Zwischenstand zu Ihrer Anfrage #",
        "hören Sie wieder von uns",
        // What did not go out, and why.
        "nothing: closed",
        "nothing: we wait for the customer",
        "cancelled because",
        "is not a deliverable address",
    ] {
        assert!(
            stdout.contains(needle),
            "the demo shows {needle:?}:\n{stdout}"
        );
    }
}

/// (recipient, subject) of each mail in `outbox` written in English that
/// greets its customer and promises when they hear from us again.
fn english_notices_with_a_promise(outbox: &std::path::Path) -> Vec<(String, String)> {
    let files = std::fs::read_dir(outbox).expect("the demo's mail outbox");
    let mut found = Vec::new();
    for file in files {
        let eml = std::fs::read(file.expect("an outbox entry").path()).expect("read a mail");
        let Some(mail) = mail_parser::MessageParser::default().parse(&eml) else {
            panic!("the outbox holds a mail that does not parse")
        };
        let subject = mail.subject().unwrap_or_default().to_owned();
        let text = mail.body_text(0).unwrap_or_default();
        let to = mail
            .to()
            .and_then(|to| to.first())
            .and_then(|a| a.address())
            .unwrap_or_default()
            .to_owned();
        if subject.starts_with("Update on your request #")
            && text.starts_with("Hello ")
            && text.contains("you will hear from us again by")
        {
            found.push((to, subject));
        }
    }
    found
}
