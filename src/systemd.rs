//! systemd integration (`Type=notify`): readiness, reload and stop states,
//! and the watchdog. Outside systemd (no NOTIFY_SOCKET) all of it is a no-op.

use sd_notify::NotifyState;
use std::time::{Duration, Instant};

pub fn ready() {
    let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status("running")]);
}

pub fn reloading() {
    let _ = sd_notify::notify(&[
        NotifyState::Reloading,
        NotifyState::monotonic_usec_now().unwrap_or(NotifyState::Status("reloading")),
    ]);
}

pub fn reloaded() {
    ready();
}

pub fn stopping() {
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
}

/// Feeds the watchdog from the daemon's main loop, so a hung loop stops
/// feeding it and systemd restarts the service.
pub struct Watchdog {
    interval: Option<Duration>,
    last: Instant,
}

impl Watchdog {
    pub fn from_env() -> Self {
        Self {
            interval: sd_notify::watchdog_enabled(),
            last: Instant::now(),
        }
    }

    /// Pings at most every half interval.
    pub fn feed(&mut self) {
        if let Some(interval) = self.interval
            && self.last.elapsed() >= interval / 2
        {
            let _ = sd_notify::notify(&[NotifyState::Watchdog]);
            self.last = Instant::now();
        }
    }
}
