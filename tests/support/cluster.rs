//! Several `interim run` processes sharing one PostgreSQL store: the same
//! config file, each with its own admin port (`INTERIM__HTTP__LISTEN`) and
//! its own log (`daemon-N.log` in the test directory).

use std::fs::{self, OpenOptions};
use std::path::PathBuf;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use prometheus_parse::{Sample, Scrape, Value};

use super::postgres::PgDatabase;
use super::{Daemon, Setup, free_port, http, toml_str};

/// One daemon process of a cluster.
pub struct Instance {
    pub index: usize,
    /// `host:port` of its admin endpoint.
    pub admin: String,
    pub log: PathBuf,
    daemon: Daemon,
}

impl Instance {
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    pub fn is_running(&mut self) -> bool {
        self.daemon.is_running()
    }

    /// SIGKILL: no chance to finish sends or release claims.
    pub fn kill9(&mut self) {
        self.daemon.kill9();
    }

    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.daemon.stop()
    }

    /// Every sample of `/metrics`, or None when the endpoint does not answer.
    pub fn scrape(&self) -> Option<Vec<Sample>> {
        let response = http::get(&self.admin, "/metrics").ok()?;
        if response.status != 200 {
            return None;
        }
        let lines = response.body.lines().map(|l| Ok(l.to_string()));
        Scrape::parse(lines).ok().map(|s| s.samples)
    }

    /// The sum of the samples named `name` whose labels include `labels`;
    /// None when `/metrics` does not answer or has no such sample.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let samples = self.scrape()?;
        let matching: Vec<f64> = samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
                _ => 0.0,
            })
            .collect();
        (!matching.is_empty()).then(|| matching.iter().sum())
    }

    /// `interim_poller` as this instance reports it (None: no answer yet).
    pub fn is_poller(&self) -> Option<bool> {
        self.metric("interim_poller", &[]).map(|v| v == 1.0)
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// Daemons sharing one PostgreSQL store (a database of their own) and the
/// SQLite helpdesk of `setup`. Dropping it kills the daemons first, then
/// drops the database.
pub struct Cluster {
    pub instances: Vec<Instance>,
    pub setup: Setup,
    pub db: PgDatabase,
}

impl Cluster {
    /// Points `setup`'s store at a new PostgreSQL database and migrates it;
    /// None (the test is skipped) without `INTERIM_TEST_POSTGRES_URL`.
    pub fn new(mut setup: Setup) -> Option<Self> {
        let db = PgDatabase::create()?;
        setup.set("store.url", &toml_str(&db.url));
        // Per-statement sqlx logs of three daemons would drown the rest.
        setup.env("INTERIM_LOG", "interim=debug,info");
        let migrate = setup.cli(&["migrate"]);
        assert!(
            migrate.status.success(),
            "interim migrate failed:\n{}",
            String::from_utf8_lossy(&migrate.stderr)
        );
        Some(Self {
            instances: Vec::new(),
            setup,
            db,
        })
    }

    /// Starts `n` more instances, each on a free admin port.
    pub fn start(&mut self, n: usize) {
        for _ in 0..n {
            self.start_one();
        }
    }

    pub fn start_one(&mut self) -> &mut Instance {
        let index = self.instances.len();
        let admin = format!("127.0.0.1:{}", free_port());
        let log = self.setup.path(&format!("daemon-{index}.log"));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open an instance log");
        let mut command = self.setup.command(&["run"]);
        command
            .env("INTERIM__HTTP__LISTEN", &admin)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file);
        let child = command.spawn().expect("spawn interim run");
        self.instances.push(Instance {
            index,
            admin,
            log,
            daemon: Daemon { child },
        });
        let last = self.instances.len() - 1;
        &mut self.instances[last]
    }

    /// Waits until every running instance answers `/healthz` and exactly
    /// one of them reports `interim_poller 1`; returns the poller's index.
    pub fn wait_for_single_poller(&mut self, deadline: Duration) -> usize {
        let mut poller = None;
        self.wait_until(
            deadline,
            "exactly one instance reports interim_poller 1",
            |c| {
                let mut pollers = Vec::new();
                for instance in c.instances.iter_mut() {
                    if !instance.is_running() {
                        continue;
                    }
                    match instance.is_poller() {
                        None => return false,
                        Some(true) => pollers.push(instance.index),
                        Some(false) => {}
                    }
                }
                poller = (pollers.len() == 1).then(|| pollers[0]);
                poller.is_some()
            },
        );
        poller.expect("a poller was found")
    }

    /// Polls `condition` every 100 ms; panics on timeout (the logs of every
    /// instance are printed when the cluster is dropped while panicking).
    pub fn wait_until(
        &mut self,
        deadline: Duration,
        what: &str,
        mut condition: impl FnMut(&mut Self) -> bool,
    ) {
        let start = Instant::now();
        while !condition(self) {
            assert!(
                start.elapsed() <= deadline,
                "timed out after {deadline:?} waiting until {what}"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for instance in &mut self.instances {
            if instance.is_running() {
                instance.kill9();
            }
        }
        if thread::panicking() || std::env::var_os("TEST_LOG").is_some() {
            for instance in &self.instances {
                eprintln!(
                    "--- log of instance {} (pid {}, {}) ---\n{}",
                    instance.index,
                    instance.pid(),
                    instance.admin,
                    instance.log_tail(80)
                );
            }
        }
    }
}
