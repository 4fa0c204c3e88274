//! Black-box harness: drives the built `interim` binary against a real SMTP
//! server, a webhook receiver and a SQLite helpdesk, each test with its own
//! temporary directory and ports. Set `TEST_LOG=1` to print the daemon log of
//! every test, not only of failing ones.
#![allow(dead_code)]

pub mod admin;
pub mod api;
pub mod browser;
pub mod cluster;
pub mod faults;
mod helpdesk;
pub mod http;
pub mod ledger;
pub mod library;
pub mod mariadb;
pub mod postgres;
pub mod presets;
pub mod shapes;
mod smtp;
mod webhook;

#[allow(unused_imports)]
pub use helpdesk::{Helpdesk, Ticket, sql_lit};
#[allow(unused_imports)]
pub use smtp::{ReceivedMail, SmtpReply, SmtpSink};
#[allow(unused_imports)]
pub use webhook::{WebhookReceiver, WebhookRequest};

use std::fs::{self, OpenOptions};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use serde_json::Value;
use tempfile::TempDir;

/// The webhook secret the daemon signs with (`whsec_` + base64 of the key bytes).
pub const WEBHOOK_SECRET: &str = "whsec_aW50ZXJpbS1lMmUtdGVzdC1zZWNyZXQtMzItYnl0ZXMhIQ==";
pub const WEBHOOK_SECRET_ENV: &str = "INTERIM_TEST_WEBHOOK_SECRET";
/// The sender of every test email channel; Message-IDs end in `@interim.test`.
pub const FROM: &str = "Interim Service <service@interim.test>";
/// The full-poll query of the ticket column contract, over the test helpdesk.
pub const TICKET_QUERY: &str = "SELECT id, number, subject, state, priority, queue, \
    customer_email, customer_name, language, waiting_since, updated_at, thread_message_id \
    FROM tickets WHERE state <> 'closed'";
/// The changes since `:since` over the test helpdesk, closed tickets
/// included with a NULL `waiting_since` (their wait is over).
pub const INCREMENTAL_QUERY: &str = "SELECT id, number, subject, state, priority, queue, \
    customer_email, customer_name, language, \
    CASE WHEN state = 'closed' THEN NULL ELSE waiting_since END AS waiting_since, \
    updated_at, thread_message_id FROM tickets WHERE updated_at >= :since";
pub const WORDING_EN: &str = "We are working on a solution for you";
pub const WORDING_DE: &str = "Wir arbeiten an einer Lösung für Sie";

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener
        .local_addr()
        .expect("local address of a bound port")
        .port()
}

/// Runs a future on a throw-away runtime (the harness is synchronous).
/// A test that cannot run here says why and passes, except in CI (`CI`
/// set), where a skipped test would hide exactly what CI must check: there
/// it fails.
pub fn skip_or_fail(reason: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{reason}: CI must run this test (.ci/run provides what it needs)");
    }
    println!("skipped: {reason}");
}

pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build a tokio runtime")
        .block_on(future)
}

/// RFC 3339 UTC text for the instant `secs` seconds ago.
pub fn ago(secs: i64) -> String {
    let t = Utc::now() - chrono::Duration::seconds(secs);
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `YYYY-MM-DD HH:MM:SS` UTC text (SQLite's `CURRENT_TIMESTAMP`) for `secs` ago.
pub fn sql_ago(secs: i64) -> String {
    let t = Utc::now() - chrono::Duration::seconds(secs);
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// A TOML basic string literal (a JSON string is one).
pub fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// A ledger row from `interim notices --format json` (a missing field is an error).
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Notice {
    #[serde(deserialize_with = "as_text")]
    pub id: String,
    #[serde(deserialize_with = "as_text")]
    pub ticket_id: String,
    pub policy: String,
    pub number: u64,
    pub status: String,
    pub attempts: u64,
    pub due_at: Option<String>,
    /// The planned send instant (calendar and `send_at` applied).
    pub send_at: Option<String>,
    pub sent_at: Option<String>,
    /// The promise a sent notice made: when the next one goes out.
    pub next_notice_at: Option<String>,
    pub last_error: Option<String>,
    pub cancel_reason: Option<String>,
    pub channel: String,
    pub recipient: Option<String>,
    pub dry_run: bool,
    /// What became of its promise (`kept`, `broken (late)`, ...).
    pub promise: Option<String>,
}

/// Text of a JSON scalar: ids may be strings or integers; null is "".
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn as_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    serde::Deserialize::deserialize(d).map(|v: Value| text(&v))
}

/// A test's private directory, config file, helpdesk path and daemon log.
pub struct Setup {
    pub dir: TempDir,
    keys: Vec<(String, String, String)>,
    sections: Vec<String>,
    env: Vec<(String, String)>,
}

const SECTIONS: [&str; 5] = ["daemon", "store", "http", "source", "templates"];

impl Setup {
    /// Fast polling, German default language, the SQLite helpdesk at `helpdesk.db`,
    /// wording for the state `open`, and templates `interim.{en,de}`.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let root = dir.path().display().to_string();
        let mut setup = Self {
            dir,
            keys: Vec::new(),
            sections: Vec::new(),
            env: Vec::new(),
        };
        for (key, value) in [
            ("daemon.timezone", "UTC"),
            ("daemon.default_language", "de"),
            ("daemon.poll_interval", "1s"),
            ("daemon.max_snapshot_age", "1m"),
            ("daemon.shutdown_timeout", "5s"),
            ("store.url", &format!("sqlite://{root}/interim.db")),
            ("http.listen", &format!("127.0.0.1:{}", free_port())),
            ("source.kind", "sql"),
            ("source.url", &format!("sqlite://{root}/helpdesk.db")),
            ("source.query", TICKET_QUERY),
            ("templates.dir", &format!("{root}/templates")),
        ] {
            setup.set(key, &toml_str(value));
        }
        setup.toml(&format!("[wording.en]\nopen = {}", toml_str(WORDING_EN)));
        setup.toml(&format!("[wording.de]\nopen = {}", toml_str(WORDING_DE)));
        setup.template("interim", "en", "Update on {{ ticket.number }}: {{ ticket.subject }}",
            "Hello {{ ticket.customer_name }},\nyour request {{ ticket.number }}: {{ ticket.state_for_customer }}.\nNotice {{ notice.number }} of {{ notice.max }}.\n");
        setup.template("interim", "de", "Zwischenbescheid zu {{ ticket.number }}: {{ ticket.subject }}",
            "Guten Tag {{ ticket.customer_name }},\nIhre Anfrage {{ ticket.number }}: {{ ticket.state_for_customer }}.\nZwischenbescheid {{ notice.number }} von {{ notice.max }}.\n");
        setup
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn helpdesk(&self) -> Helpdesk {
        Helpdesk::create(&self.path("helpdesk.db"))
    }

    /// Sets `section.key` to a raw TOML value (replacing an earlier one).
    pub fn set(&mut self, key: &str, raw: &str) -> &mut Self {
        let (section, key) = key.split_once('.').expect("key of the form section.key");
        assert!(
            SECTIONS.contains(&section),
            "unknown section {section}; use toml()"
        );
        self.keys.retain(|(s, k, _)| !(s == section && k == key));
        self.keys.push((section.into(), key.into(), raw.into()));
        self
    }

    /// Removes `section.key` (so that, e.g., `source.url_env` can replace `source.url`).
    pub fn unset(&mut self, key: &str) -> &mut Self {
        let (section, key) = key.split_once('.').expect("key of the form section.key");
        self.keys.retain(|(s, k, _)| !(s == section && k == key));
        self
    }

    /// The raw TOML value of `section.key`, if set.
    pub fn get(&self, key: &str) -> Option<String> {
        let (section, key) = key.split_once('.').expect("key of the form section.key");
        let mut found = self
            .keys
            .iter()
            .filter(|(s, k, _)| s == section && k == key);
        found.next().map(|(_, _, raw)| raw.clone())
    }

    /// `host:port` of the admin endpoint (`http.listen`).
    pub fn admin(&self) -> String {
        let raw = self.get("http.listen").expect("http.listen is set");
        serde_json::from_str(&raw).expect("http.listen is a TOML basic string")
    }

    /// Replaces `from` with `to` in the raw TOML added by [`Self::toml`]
    /// (a policy's threshold, say); panics when `from` is not there.
    pub fn replace_toml(&mut self, from: &str, to: &str) -> &mut Self {
        let hits = self.sections.iter().filter(|s| s.contains(from)).count();
        assert!(hits > 0, "no TOML section contains {from:?}");
        for section in &mut self.sections {
            *section = section.replace(from, to);
        }
        self
    }

    /// Appends raw TOML (tables such as `[channels.x]`, `[[policies]]`).
    pub fn toml(&mut self, text: &str) -> &mut Self {
        self.sections.push(text.to_string());
        self
    }

    pub fn env(&mut self, key: &str, value: &str) -> &mut Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn template(&mut self, name: &str, lang: &str, subject: &str, text: &str) -> &mut Self {
        let dir = self.path("templates");
        fs::create_dir_all(&dir).expect("create the template directory");
        fs::write(dir.join(format!("{name}.{lang}.subject")), subject).expect("write subject");
        fs::write(dir.join(format!("{name}.{lang}.txt")), text).expect("write text template");
        self
    }

    /// `[channels.NAME]` of kind email, plaintext SMTP to the sink's port.
    pub fn email_channel(&mut self, name: &str, port: u16, extra: &str) -> &mut Self {
        self.toml(&format!(
            "[channels.{name}]\nkind = \"email\"\nhost = \"127.0.0.1\"\nport = {port}\n\
             tls = \"none\"\nfrom = {}\n{extra}",
            toml_str(FROM)
        ))
    }

    /// `[channels.NAME]` of kind webhook signing with [`WEBHOOK_SECRET`].
    pub fn webhook_channel(&mut self, name: &str, url: &str, extra: &str) -> &mut Self {
        self.env(WEBHOOK_SECRET_ENV, WEBHOOK_SECRET);
        self.toml(&format!(
            "[channels.{name}]\nkind = \"webhook\"\nurl = {}\nsecret_env = \"{WEBHOOK_SECRET_ENV}\"\n\
             timeout = \"5s\"\n{extra}",
            toml_str(url)
        ))
    }

    /// `[[policies]]` named NAME with the given body lines.
    pub fn policy(&mut self, name: &str, body: &str) -> &mut Self {
        self.toml(&format!("[[policies]]\nname = {}\n{body}", toml_str(name)))
    }

    pub fn config_text(&self) -> String {
        let mut out = String::new();
        for section in SECTIONS {
            out.push_str(&format!("[{section}]\n"));
            for (_, key, raw) in self.keys.iter().filter(|(s, _, _)| s == section) {
                out.push_str(&format!("{key} = {raw}\n"));
            }
            out.push('\n');
        }
        out + &self.sections.join("\n\n") + "\n"
    }

    /// Writes the config file when it changed, atomically: a running daemon
    /// or CLI never reads a half-written file.
    pub fn write_config(&self) -> PathBuf {
        let (path, text) = (self.path("interim.toml"), self.config_text());
        if fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            let tmp = self.path("interim.toml.tmp");
            fs::write(&tmp, text).expect("write the config file");
            fs::rename(&tmp, &path).expect("move the config file into place");
        }
        path
    }

    /// `interim --config PATH ARGS…` with the test's environment, not started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_interim"));
        cmd.arg("--config")
            .arg(self.write_config())
            .args(args)
            .current_dir(self.dir.path());
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("INTERIM")) {
            cmd.env_remove(key);
        }
        cmd.env("INTERIM_LOG", "debug")
            .envs(self.env.iter().cloned());
        cmd
    }

    /// Runs `interim --config PATH ARGS…` to completion.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run the interim binary")
    }

    /// Runs a command that prints JSON on stdout and parses it.
    pub fn json(&self, args: &[&str]) -> Result<Value, String> {
        let out = self.cli(args);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        let parsed = serde_json::from_slice(&out.stdout).map_err(|e| format!("bad JSON: {e}"));
        match parsed {
            Ok(json) if out.status.success() => Ok(json),
            Ok(_) => Err(format!(
                "interim {args:?} failed ({})\n{stderr}",
                out.status
            )),
            Err(e) => Err(format!(
                "interim {args:?} ({}): {e}\nstdout: {stdout}\nstderr: {stderr}",
                out.status
            )),
        }
    }

    pub fn try_notices(&self) -> Result<Vec<Notice>, String> {
        let json = self.json(&["notices", "--format", "json"])?;
        serde_json::from_value(json).map_err(|e| format!("notices --format json: {e}"))
    }

    pub fn notices(&self) -> Vec<Notice> {
        self.try_notices().unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn notices_of(&self, ticket_id: i64) -> Vec<Notice> {
        let all = self.notices().into_iter();
        all.filter(|n| n.ticket_id == ticket_id.to_string())
            .collect()
    }

    /// Starts `interim run`; stderr goes to `daemon.log` in the test directory.
    /// Runs `interim migrate` first, so that the CLI calls a test makes while
    /// the daemon starts never race it creating the store (that race has its
    /// own test).
    pub fn start(&self) -> Daemon {
        self.migrate();
        self.spawn_run()
    }

    /// Like [`Self::start`], with stderr on a pipe whose reader is gone
    /// before the daemon writes to it: every log line meets EPIPE.
    pub fn start_with_closed_stderr(&self) -> Daemon {
        self.migrate();
        let mut child = self.spawn_run_with_stderr(Stdio::piped());
        drop(child.stderr.take());
        Daemon { child }
    }

    fn migrate(&self) {
        let migrate = self.cli(&["migrate"]);
        let stderr = String::from_utf8_lossy(&migrate.stderr);
        assert!(
            migrate.status.success(),
            "interim migrate failed:\n{stderr}"
        );
    }

    /// Starts `interim run` as it is, without migrating first.
    pub fn spawn_run(&self) -> Daemon {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("daemon.log"));
        let log = log.expect("open the daemon log");
        Daemon {
            child: self.spawn_run_with_stderr(log.into()),
        }
    }

    fn spawn_run_with_stderr(&self, stderr: Stdio) -> Child {
        let mut command = self.command(&["run"]);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        command.spawn().expect("spawn interim run")
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let log = fs::read_to_string(self.path("daemon.log")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Polls `condition` every 75 ms; panics with the daemon log tail on timeout.
    pub fn wait_until(&self, deadline: Duration, what: &str, mut condition: impl FnMut() -> bool) {
        let start = Instant::now();
        while !condition() {
            if start.elapsed() > deadline {
                panic!(
                    "timed out after {deadline:?} waiting until {what}\n--- daemon log tail ---\n{}",
                    self.log_tail(60)
                );
            }
            thread::sleep(Duration::from_millis(75));
        }
    }

    /// Waits until the ledger satisfies `condition` and returns it.
    pub fn wait_for_notices(
        &self,
        what: &str,
        condition: impl Fn(&[Notice]) -> bool,
    ) -> Vec<Notice> {
        let mut seen = Vec::new();
        self.wait_until(Duration::from_secs(30), what, || match self.try_notices() {
            Ok(notices) => {
                seen = notices;
                condition(&seen)
            }
            Err(_) => false,
        });
        seen
    }

    /// The sum of the `/metrics` samples named `name` whose labels include
    /// `labels`; 0 when there is none or `/metrics` does not answer.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        http::get(&self.admin(), "/metrics")
            .map(|r| faults::prometheus_sum(&r.body, name, labels))
            .unwrap_or(0.0)
    }

    /// Waits until `n` polls that began after this call were taken and
    /// applied: the daemon has seen the source as it is now, and time
    /// passed (for asserting that something did not happen). The first
    /// poll to finish may have begun before the call, hence one more.
    pub fn wait_for_polls(&self, n: usize) {
        let applied = || {
            let (full, incremental) = self.polls();
            full + incremental
        };
        let target = applied() + n + 1;
        self.wait_until(
            Duration::from_secs(20),
            &format!("{n} more polls were applied"),
            || applied() >= target,
        );
    }

    /// The "poll done" log lines so far: (full polls, incremental polls).
    pub fn polls(&self) -> (usize, usize) {
        let log = fs::read_to_string(self.path("daemon.log")).unwrap_or_default();
        let done = log.lines().filter(|l| l.contains("poll done"));
        done.fold((0, 0), |(full, inc), line| {
            if line.contains("full: true") {
                (full + 1, inc)
            } else if line.contains("full: false") {
                (full, inc + 1)
            } else {
                panic!("a \"poll done\" line that does not say full: true|false: {line}")
            }
        })
    }

    /// Writes the config, sends SIGHUP and waits until the daemon counts
    /// the reload as successful; panics when it rejects it.
    pub fn reload(&self, daemon: &Daemon) {
        let reloads = |result| self.metric("interim_config_reloads_total", &[("result", result)]);
        let (ok, failed) = (reloads("success"), reloads("failure"));
        self.write_config();
        daemon.signal("HUP");
        self.wait_until(Duration::from_secs(20), "the reload is taken", || {
            assert!(
                reloads("failure") == failed,
                "the reload was rejected\n--- daemon log tail ---\n{}",
                self.log_tail(30)
            );
            reloads("success") > ok
        });
    }

    /// Asserts that `condition` holds from now until `n` polls that began
    /// after this call were applied (see [`Self::wait_for_polls`]): what
    /// must not happen did not, although the daemon looked again.
    pub fn assert_stays_for_polls(
        &self,
        n: usize,
        what: &str,
        mut condition: impl FnMut() -> bool,
    ) {
        let applied = || {
            let (full, incremental) = self.polls();
            full + incremental
        };
        let target = applied() + n + 1;
        let start = Instant::now();
        while applied() < target {
            assert!(
                condition(),
                "expected {what}\n--- daemon log tail ---\n{}",
                self.log_tail(60)
            );
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "timed out after 20 s waiting for {n} more polls (expecting {what} meanwhile)\n\
                 --- daemon log tail ---\n{}",
                self.log_tail(60)
            );
            thread::sleep(Duration::from_millis(75));
        }
        assert!(
            condition(),
            "expected {what} after {n} more polls\n--- daemon log tail ---\n{}",
            self.log_tail(60)
        );
    }

    /// Asserts that `condition` holds throughout `window` (for things that must not happen).
    pub fn assert_stays(&self, window: Duration, what: &str, mut condition: impl FnMut() -> bool) {
        let start = Instant::now();
        while start.elapsed() < window {
            assert!(
                condition(),
                "expected {what}\n--- daemon log tail ---\n{}",
                self.log_tail(60)
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        if thread::panicking() || std::env::var_os("TEST_LOG").is_some() {
            eprintln!(
                "--- daemon log ({}) ---\n{}",
                self.dir.path().display(),
                self.log_tail(200)
            );
        }
    }
}

/// A running `interim run` process; killed when dropped.
pub struct Daemon {
    child: Child,
}

impl Daemon {
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`HUP`, `TERM`, …) with kill(1).
    pub fn signal(&self, name: &str) {
        let kill = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status();
        assert!(
            kill.map(|s| s.success()).unwrap_or(false),
            "kill -{name} failed"
        );
    }

    /// Waits at most `deadline` for the process to exit; None if it still runs.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if start.elapsed() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// Sends SIGTERM and waits (at most 20 s) for the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let kill = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        assert!(
            kill.map(|s| s.success()).unwrap_or(false),
            "kill -TERM failed"
        );
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if start.elapsed() > Duration::from_secs(20) {
                self.kill9();
                panic!("interim did not exit within 20 s of SIGTERM");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.is_running() {
            self.kill9();
        }
    }
}
