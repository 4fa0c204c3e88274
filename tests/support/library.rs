//! The daemon's own parts in the test process on an injected clock: the
//! real store, dispatcher and poller, built from a [`Setup`]'s config the
//! way `interim run` builds them, and stepped by the test (a poll, a
//! dispatch) at the instant it sets. tests/model.rs drives the same parts
//! through random days.
//!
//! [`Setup`]: super::Setup

use std::sync::Arc;

use chrono::{DateTime, Utc};
use interim::clock::{Clock, ManualClock};
use interim::daemon::Poller;
use interim::dispatch::Dispatcher;
use interim::setup::Config;
use interim::store::{NoticeFilter, NoticeRow, Store};

/// A daemon without its loops: nothing happens until the test calls.
pub struct InProcess {
    pub clock: ManualClock,
    pub config: Config,
    pub store: Store,
    pub dispatcher: Arc<Dispatcher<Store>>,
    poller: Poller,
}

impl InProcess {
    /// Opens (and migrates) the store, takes back stale claims and
    /// re-plans what is pending, as a starting daemon does. Call inside a
    /// runtime.
    pub async fn start(config: Config, clock: ManualClock) -> Self {
        let (store, dispatcher, poller) = start_parts(&config, &clock, "in-process").await;
        Self {
            clock,
            config,
            store,
            dispatcher,
            poller,
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// One poll now; true when it succeeded.
    pub async fn poll(&mut self) -> bool {
        let now = self.now();
        self.poller.tick(now).await
    }

    /// What the last successful poll did.
    pub fn last_poll(&self) -> interim::daemon::PollSummary {
        self.poller
            .last_summary()
            .cloned()
            .expect("a successful poll")
    }

    /// Dispatch passes now until one starts no send, each waiting for its
    /// sends to finish; how many sends were started in all.
    pub async fn dispatch(&self) -> usize {
        let mut started = 0;
        loop {
            let now = self.now();
            let n = self
                .dispatcher
                .dispatch_due(now)
                .await
                .expect("a dispatch pass");
            self.dispatcher.wait_idle().await;
            if n == 0 {
                return started;
            }
            started += n;
        }
    }

    /// The whole ledger.
    pub async fn notices(&self) -> Vec<NoticeRow> {
        self.store
            .list(&NoticeFilter::default())
            .await
            .expect("list the ledger")
    }

    pub async fn close(self) {
        self.dispatcher.wait_idle().await;
        self.poller.close().await;
        self.store.close().await;
    }
}

/// The store, dispatcher and poller as a starting daemon builds them:
/// store opened and migrated, stale claims taken back, pending notices
/// re-planned. Call inside a runtime.
pub async fn start_parts(
    config: &Config,
    clock: &ManualClock,
    instance: &str,
) -> (Store, Arc<Dispatcher<Store>>, Poller) {
    let store = Store::open(&config.settings.store.url)
        .await
        .expect("open the store");
    store.release_all_claims().await.expect("release claims");
    let channels = interim::channels::build(&config.settings).expect("build the channels");
    let dispatcher = Dispatcher::new(
        config.clone(),
        store.clone(),
        channels,
        instance.into(),
        Arc::new(clock.clone()),
    )
    .expect("a dispatcher");
    interim::daemon::replan(&store, &config.settings, clock.now())
        .await
        .expect("re-plan at start");
    let poller = Poller::new(store.clone(), dispatcher.clone()).expect("a poller");
    (store, dispatcher, poller)
}

/// Tickets 1..=`tickets`, open and waiting 10 minutes; policy `p` sends
/// after 1 h, then every hour, three at most, into a JSON file channel
/// (`outbox/`); the source may be a day old before sends are held.
pub fn hourly_outbox(tickets: i64) -> super::Setup {
    let mut setup = super::Setup::new();
    let outbox = setup.path("outbox");
    setup
        .toml(&format!(
            "[channels.outbox]\nkind = \"file\"\npath = {}\nformat = \"json\"",
            super::toml_str(&outbox.display().to_string())
        ))
        .set("daemon.max_snapshot_age", &super::toml_str("1d"))
        .policy(
            "p",
            "match = { state = [\"open\"] }\nafter = \"1h\"\nrepeat_every = \"1h\"\nmax_notices = 3\n\
             channel = \"outbox\"\ntemplate = \"interim\"",
        );
    setup
        .helpdesk()
        .insert(&(1..=tickets).map(super::Ticket::new).collect::<Vec<_>>());
    setup
}
