//! Reloads: re-read and validate the config, swap it in, and let what is
//! pending follow it.

use tracing::{error, info, warn};

use super::replan;
use crate::config::Settings;
use crate::dispatch::Dispatcher;
use crate::setup;
use crate::store::Store;

pub(super) async fn replan_logged(
    store: &Store,
    settings: &Settings,
    now: chrono::DateTime<chrono::Utc>,
) {
    match replan(store, settings, now).await {
        Ok(summary) if summary.changed() => info!(
            moved = summary.moved,
            cancelled = summary.cancelled,
            "pending notices follow the config"
        ),
        Ok(_) => {}
        Err(e) => error!(
            error = format!("{e:#}"),
            "cannot re-plan the pending notices; the next polls do"
        ),
    }
}

/// Re-reads config and templates, validates them fully and swaps them in;
/// an invalid new config is rejected and the old one keeps running.
pub(super) fn reload(path: &std::path::Path, dispatcher: &Dispatcher<Store>) -> Result<(), String> {
    crate::systemd::reloading();
    let outcome = try_reload(path, dispatcher);
    crate::systemd::reloaded();
    dispatcher.note_reload(chrono::Utc::now(), outcome.as_ref().err().cloned());
    match &outcome {
        Ok(()) => {
            metrics::counter!("interim_config_reloads_total", "result" => "success").increment(1);
            metrics::gauge!("interim_config_last_reload_successful").set(1.0);
            crate::telemetry::register(&dispatcher.live().config.settings);
            info!(config = %path.display(), "config reloaded");
        }
        Err(reason) => {
            metrics::counter!("interim_config_reloads_total", "result" => "failure").increment(1);
            metrics::gauge!("interim_config_last_reload_successful").set(0.0);
            error!(config = %path.display(), reason = %reason, "reload rejected; the previous config keeps running");
        }
    }
    outcome
}

fn try_reload(path: &std::path::Path, dispatcher: &Dispatcher<Store>) -> Result<(), String> {
    let new = setup::load(path).map_err(|e| e.lines.join("; "))?;
    let old = dispatcher.live().config.settings.clone();
    if new.settings.store.url.expose() != old.store.url.expose() {
        return Err(
            "store.url: cannot change while running; restart the daemon to move the store".into(),
        );
    }
    let (was, now) = (&old.http, &new.settings.http);
    if now.listen != was.listen
        || now.max_connections != was.max_connections
        || now.header_timeout != was.header_timeout
        || now.idle_timeout != was.idle_timeout
    {
        warn!("[http] changed: takes effect at the next restart (the admin token at once)");
    }
    let channels = crate::channels::build(&new.settings).map_err(|e| format!("channels: {e:#}"))?;
    let added: Vec<String> = new
        .settings
        .warnings
        .iter()
        .filter(|w| !old.warnings.contains(w))
        .cloned()
        .collect();
    dispatcher
        .replace(new, channels)
        .map_err(|e| format!("{e:#}"))?;
    for warning in added {
        warn!(config = %path.display(), "{warning}");
    }
    Ok(())
}
