//! Everything the daemon writes is private (files 0600, folders 0700),
//! whatever the umask it was started with: the ledger, its WAL, SHM and
//! lock files, the outbox and its notices.
//!
//! The test widens its own process's umask to 000 (nextest runs each test
//! in a process of its own), so the daemon it starts inherits the most
//! permissive one.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use support::{Setup, Ticket, toml_str};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn the_store_its_side_files_and_the_outbox_are_private_whatever_the_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0));
    let mut setup = Setup::new();
    let store = setup.path("var/ledger/interim.db");
    let outbox = setup.path("outbox/notices");
    setup.set(
        "store.url",
        &toml_str(&format!("sqlite://{}", store.display())),
    );
    setup
        .toml(&format!(
            "[channels.outbox]\nkind = \"file\"\npath = {}\nformat = \"json\"",
            toml_str(&outbox.display().to_string())
        ))
        .policy(
            "first",
            "after = \"5m\"\nchannel = \"outbox\"\ntemplate = \"interim\"",
        );
    setup.helpdesk().insert(&[Ticket::new(1)]);
    let _daemon = setup.start();
    let written = || {
        std::fs::read_dir(&outbox)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .find(|p| p.extension().is_some_and(|x| x == "json"))
            })
            .ok()
            .flatten()
    };
    setup.wait_until(
        Duration::from_secs(20),
        "the notice is in the outbox",
        || written().is_some(),
    );
    let notice = written().unwrap_or_default();
    setup.wait_until(Duration::from_secs(20), "the WAL files exist", || {
        store.with_extension("db-wal").exists() && store.with_extension("db-shm").exists()
    });

    let files = [
        store.clone(),
        store.with_extension("db-wal"),
        store.with_extension("db-shm"),
        store.with_extension("lock"),
        store.with_extension("setup.lock"),
        notice,
    ];
    for file in &files {
        assert_eq!(mode(file), 0o600, "{} is private", file.display());
    }
    for folder in [
        setup.path("var"),
        setup.path("var/ledger"),
        setup.path("outbox"),
        outbox.clone(),
    ] {
        assert_eq!(mode(&folder), 0o700, "{} is private", folder.display());
    }
}
