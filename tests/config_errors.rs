//! `interim check-config`: exit 2 naming the key path of what is wrong, exit 0
//! with a summary for a good config.

mod support;

use support::presets::{ZAMMAD_OFFLINE, offline_setup};
use support::{Setup, toml_str};

/// A valid config: one email channel, one calendar, one policy using them.
fn good_config() -> Setup {
    let mut setup = Setup::new();
    setup.email_channel("mail", 2525, "");
    setup.toml("[calendars.office]\ntimezone = \"Europe/Berlin\"\nhours = { mon = \"08:00-18:00\", fri = \"08:00-16:00\" }");
    setup.policy(
        "first-notice",
        "match = { state = [\"open\"] }\nafter = \"8h\"\nrepeat_every = \"2d\"\ncalendar = \"office\"\n\
         send_at = \"0 0 9,14 * * Mon-Fri\"\nchannel = \"mail\"\ntemplate = \"interim\"",
    );
    setup
}

/// Replaces `key = …` inside the policy with `key = value`.
fn with_policy_key(key: &str, value: &str) -> Setup {
    let mut setup = Setup::new();
    setup.email_channel("mail", 2525, "");
    setup.toml(
        "[calendars.office]\ntimezone = \"Europe/Berlin\"\nhours = { mon = \"08:00-18:00\" }",
    );
    let mut lines = vec![
        ("match", "{ state = [\"open\"] }".to_string()),
        ("after", toml_str("8h")),
        ("calendar", toml_str("office")),
        ("channel", toml_str("mail")),
        ("template", toml_str("interim")),
    ];
    lines.retain(|(k, _)| *k != key);
    lines.push((key, value.to_string()));
    let body: Vec<String> = lines.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    setup.policy("first-notice", &body.join("\n"));
    setup
}

#[track_caller]
fn assert_rejected(setup: &Setup, key_path: &str) {
    let out = setup.cli(&["check-config"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "exit code for a bad config; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains(key_path),
        "stderr names {key_path}:\n{stderr}\nconfig:\n{}",
        setup.config_text()
    );
}

#[test]
fn a_good_config_passes_with_a_summary() {
    let setup = good_config();
    let out = setup.cli(&["check-config"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    assert!(
        stdout.contains("first-notice"),
        "the summary names the policy:\n{stdout}"
    );
}

#[test]
fn the_config_flag_may_follow_the_subcommand() {
    let setup = good_config();
    let path = setup.write_config();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_interim"))
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .current_dir(setup.dir.path())
        .output()
        .expect("run interim");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_unknown_key_is_an_error() {
    let mut setup = good_config();
    setup.set("daemon.pol_interval", &toml_str("30s"));
    assert_rejected(&setup, "daemon.pol_interval");
}

#[test]
fn a_bad_duration_is_an_error() {
    let mut setup = good_config();
    setup.set("daemon.poll_interval", &toml_str("soon"));
    assert_rejected(&setup, "daemon.poll_interval");
}

#[test]
fn a_bad_duration_from_an_environment_override_is_an_error() {
    let mut setup = good_config();
    setup.env("INTERIM__DAEMON__POLL_INTERVAL", "soon");
    assert_rejected(&setup, "daemon.poll_interval");
}

#[test]
fn an_invalid_cron_expression_is_an_error() {
    assert_rejected(
        &with_policy_key("send_at", &toml_str("0 0 25 * * *")),
        "policies[0].send_at",
    );
}

#[test]
fn a_policy_naming_a_missing_channel_is_an_error() {
    assert_rejected(
        &with_policy_key("channel", &toml_str("nowhere")),
        "policies[0].channel",
    );
}

#[test]
fn a_policy_naming_a_missing_template_is_an_error() {
    assert_rejected(
        &with_policy_key("template", &toml_str("nowhere")),
        "policies[0].template",
    );
}

#[test]
fn a_policy_naming_a_missing_calendar_is_an_error() {
    assert_rejected(
        &with_policy_key("calendar", &toml_str("nowhere")),
        "policies[0].calendar",
    );
}

#[test]
fn a_template_with_a_syntax_error_is_an_error() {
    let mut setup = good_config();
    setup.template(
        "interim",
        "en",
        "Update on {{ ticket.number }}",
        "Hello {{ ticket.customer_name ",
    );
    // Templates are files, not keys: the error names the file (assumption).
    assert_rejected(&setup, "interim.en.txt");
}

#[test]
fn relative_paths_resolve_against_the_config_files_folder() {
    let mut setup = good_config();
    setup.set("templates.dir", &toml_str("templates"));
    setup.set("store.url", &toml_str("sqlite://ledger/interim.db"));
    setup.template("only-here", "de", "Betreff", "Text\n");
    std::fs::write(setup.path("holidays.txt"), "2026-12-24\n").expect("write holidays");
    setup.toml(
        "[calendars.home]\ntimezone = \"UTC\"\nhours = { mon = \"08:00-18:00\" }\nholidays_file = \"holidays.txt\"",
    );
    setup.policy(
        "here",
        "match = { state = [\"open\"] }\nafter = \"1h\"\ncalendar = \"home\"\nchannel = \"mail\"\ntemplate = \"only-here\"",
    );
    let elsewhere = tempfile::tempdir().expect("a temporary directory");

    let out = setup
        .command(&["check-config"])
        .current_dir(elsewhere.path())
        .output()
        .expect("run check-config");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(!all.contains("does not exist"), "{all}");

    let out = setup
        .command(&["notices"])
        .current_dir(elsewhere.path())
        .output()
        .expect("run notices");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        setup.path("ledger/interim.db").exists(),
        "the store is created beside the config file"
    );
    assert!(!elsewhere.path().join("ledger").exists());
}

#[test]
fn check_config_warns_when_the_templates_folder_does_not_exist() {
    let mut setup = good_config();
    setup.set("templates.dir", &toml_str("no-such-folder"));
    let out = setup.cli(&["check-config"]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(
        all.contains("warning: templates.dir:") && all.contains("no-such-folder does not exist"),
        "{all}"
    );
}

#[test]
fn without_a_config_flag_the_installed_path_is_the_fallback() {
    let empty = tempfile::tempdir().expect("a temporary directory");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_interim"));
    cmd.arg("check-config").current_dir(empty.path());
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("INTERIM")) {
        cmd.env_remove(key);
    }
    let out = cmd.output().expect("run check-config");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if std::path::Path::new("/etc/interim/interim.toml").exists() {
        support::skip_or_fail("/etc/interim/interim.toml exists on this machine");
        return;
    }
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("/etc/interim/interim.toml"), "{stderr}");
}

/// check-config's stdout and stderr together.
fn check_config_output(setup: &Setup) -> (Option<i32>, String) {
    let out = setup.cli(&["check-config"]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), all)
}

#[test]
fn the_five_field_cron_hint_suggests_weekday_names_not_numbers() {
    let (code, all) = check_config_output(&with_policy_key("send_at", &toml_str("0 9 * * 1-5")));
    assert_eq!(code, Some(2), "{all}");
    assert!(all.contains("e.g. \"0 0 9 * * Mon-Fri\""), "{all}");
    assert!(!all.contains("0 0 9 * * 1-5\""), "{all}");
}

#[test]
fn an_hour_out_of_range_says_the_largest_valid_hour() {
    let (code, all) = check_config_output(&with_policy_key("send_at", &toml_str("0 0 25 * * *")));
    assert_eq!(code, Some(2), "{all}");
    assert!(all.contains("Hours must be at most 23"), "{all}");
    assert!(!all.contains("less than 23"), "{all}");
}

#[test]
fn a_missing_policy_key_is_named_with_a_dotted_path() {
    let mut setup = good_config();
    setup.policy(
        "second",
        "match = { state = [\"open\"] }\nchannel = \"mail\"\ntemplate = \"interim\"",
    );
    let (code, all) = check_config_output(&setup);
    assert_eq!(code, Some(2), "{all}");
    assert!(all.contains("policies[1].after: missing"), "{all}");
    assert!(!all.contains("]after"), "{all}");
}

#[test]
fn the_summary_writes_durations_with_spaced_units() {
    let (code, all) = check_config_output(&good_config());
    assert_eq!(code, Some(0), "{all}");
    assert!(all.contains("every 2 days"), "{all}");
    assert!(!all.contains("2days"), "{all}");
}

#[test]
fn a_typo_in_a_wording_key_is_a_warning() {
    let mut setup = good_config();
    setup.replace_toml("[wording.en]\nopen =", "[wording.en]\nopne =");
    let (code, all) = check_config_output(&setup);
    assert_eq!(code, Some(0), "{all}");
    assert!(
        all.contains("warning: wording.en: no \"open\", which wording.de has"),
        "{all}"
    );
    assert!(
        all.contains("warning: wording.de: no \"opne\", which wording.en has"),
        "{all}"
    );
}

#[test]
fn a_state_a_policy_matches_without_wording_is_a_warning() {
    let mut setup = good_config();
    setup.policy(
        "pending",
        "match = { state = [\"Pending_Reminder\"] }\nafter = \"1h\"\nchannel = \"mail\"\ntemplate = \"interim\"",
    );
    let (code, all) = check_config_output(&setup);
    assert_eq!(code, Some(0), "{all}");
    assert!(
        all.contains("warning: wording: no language has words for the state \"pending_reminder\""),
        "{all}"
    );
}

#[test]
fn a_wording_language_without_templates_is_a_warning() {
    let mut setup = good_config();
    setup.toml("[wording.fr]\nopen = \"Nous travaillons sur votre demande\"");
    let (code, all) = check_config_output(&setup);
    assert_eq!(code, Some(0), "{all}");
    assert!(
        all.contains("warning: wording.fr: no policy's template is written in fr; customers in fr get the de template"),
        "{all}"
    );
}

/// A zammad-db config (no database is reached by check-config).
fn zammad_db_config() -> Setup {
    let mut setup = good_config();
    for key in ["source.kind", "source.url", "source.query"] {
        setup.unset(key);
    }
    setup.set("source.preset", &toml_str("zammad-db"));
    setup.set(
        "source.url",
        &toml_str("postgres://interim_ro@127.0.0.1:1/zammad"),
    );
    setup
}

#[test]
fn a_clock_that_is_not_a_clock_is_an_error_naming_the_choices() {
    // A sql preset and an http one.
    for (preset, mut setup) in [
        ("zammad-db", zammad_db_config()),
        ("zammad-api", offline_setup("zammad-api", ZAMMAD_OFFLINE)),
    ] {
        let (code, all) = check_config_output(&setup);
        assert_eq!(code, Some(0), "{preset} as it is passes:\n{all}");
        setup.set("source.clock", &toml_str("first_response"));
        assert_rejected(
            &setup,
            "source.clock: \"first_response\" is not a clock; choose one of \
             last_public_contact (default), agent_updates, customer_message",
        );
    }
}

#[test]
fn a_clock_for_a_source_without_clocks_is_an_error() {
    let mut setup = good_config();
    setup.set("source.clock", &toml_str("agent_updates"));
    assert_rejected(&setup, "source.clock: this source defines no clocks");
}

#[test]
fn a_clock_with_a_query_that_ignores_it_is_an_error() {
    let mut setup = zammad_db_config();
    setup.set("source.clock", &toml_str("agent_updates"));
    setup.set(
        "source.query",
        &toml_str("SELECT id, 'open' AS state, created_at AS waiting_since FROM tickets"),
    );
    assert_rejected(&setup, "source.query: does not use {waiting_since}");
}

#[test]
fn every_zammad_db_clock_passes_check_config() {
    for clock in ["last_public_contact", "agent_updates", "customer_message"] {
        let mut setup = zammad_db_config();
        setup.set("source.clock", &toml_str(clock));
        let out = setup.cli(&["check-config"]);
        assert!(
            out.status.success(),
            "clock {clock}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_subject_marker_without_the_number_or_on_two_lines_is_an_error() {
    let mut setup = good_config();
    setup.set("source.subject_marker", &toml_str("[Ticket#]"));
    assert_rejected(
        &setup,
        "source.subject_marker: \"[Ticket#]\" has no {number}",
    );
    setup.set(
        "source.subject_marker",
        &toml_str("[Ticket#{number}]\nBcc: x"),
    );
    assert_rejected(&setup, "source.subject_marker: must be one line");
}

#[test]
fn a_preset_query_replaced_without_the_clock_needs_its_recheck_and_incremental_queries_replaced_too()
 {
    let mut setup = zammad_db_config();
    setup.set(
        "source.query",
        &toml_str("SELECT id, 'open' AS state, created_at AS waiting_since FROM tickets"),
    );
    for key in ["recheck_query", "incremental_query"] {
        assert_rejected(
            &setup,
            &format!(
                "source.{key}: reads waiting_since with the clock ({{waiting_since}}), but source.query computes it without"
            ),
        );
    }
    // Turned off, they no longer disagree.
    setup.set("source.recheck_query", "\"\"");
    setup.set("source.incremental_query", "\"\"");
    let out = setup.cli(&["check-config"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
