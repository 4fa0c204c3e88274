//! `interim demo`, the README's first command: it runs the real daemon
//! against a generated helpdesk and must show what the product promises:
//! notices sent in the customer's language, the promise of the next one,
//! a cancelled notice when the wait ended, nothing for a closed ticket.

use std::process::Command;

#[test]
fn the_demo_shows_notices_sent_kept_promises_and_cancellations() {
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
