//! The admin endpoint on `http.listen`: `/healthz` (alive), `/readyz`
//! (the store takes writes and a fresh poll; answered within 2 s),
//! `/metrics` (Prometheus text), the status pages ([`pages`]) and
//! `POST /-/reload`, a write action (see [`access`]). [`serve`] bounds connections, time and bytes so that
//! no client of this port can hurt polling or delivery.

pub mod access;
pub mod pages;
pub mod serve;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::dispatch::Dispatcher;
use crate::store::Store;

/// A reload request; the answer says whether the new config was taken.
pub type ReloadRequest = oneshot::Sender<Result<(), String>>;

/// Request bodies on every route at most (write actions are small forms).
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// `/readyz` decides within this, whatever the store does (then 503).
pub const READY_BUDGET: Duration = Duration::from_millis(1500);
/// The store's write probe runs at most once per this.
const PROBE_EVERY: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct AdminState {
    pub store: Store,
    pub dispatcher: Arc<Dispatcher<Store>>,
    pub metrics: Option<PrometheusHandle>,
    pub reload: mpsc::Sender<ReloadRequest>,
    /// The last write probe: a flood of `/readyz` writes once a second.
    probe: Arc<Mutex<Option<Probed>>>,
    /// The status pages' logged-in browsers.
    pub sessions: pages::Sessions,
}

/// When the write probe ran, and what it found.
type Probed = (Instant, Result<(), String>);

impl AdminState {
    pub fn new(
        store: Store,
        dispatcher: Arc<Dispatcher<Store>>,
        metrics: Option<PrometheusHandle>,
        reload: mpsc::Sender<ReloadRequest>,
    ) -> Self {
        Self {
            store,
            dispatcher,
            metrics,
            reload,
            probe: Arc::default(),
            sessions: pages::Sessions::default(),
        }
    }
}

pub fn router(state: AdminState) -> Router {
    let writes = Router::new().route("/-/reload", post(reload)).route_layer(
        axum::middleware::from_fn_with_state(state.clone(), access::require_write_access),
    );
    let ui = state.dispatcher.live().config.settings.http.ui;
    let pages = if ui {
        pages::routes(state.clone())
    } else {
        Router::new()
    };
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(writes)
        .merge(pages)
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            MAX_BODY_BYTES,
        ))
        .with_state(state)
}

/// Serves until `shutdown` fires, within the limits of `[http]` and of
/// the process's descriptor limit (read now).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let settings = state.dispatcher.live().config.settings.clone();
    let limits = serve::Limits::new(&settings, serve::descriptor_limit());
    serve::serve(listener, router(state), limits, shutdown).await
}

/// GETs `/healthz` of a daemon listening on `listen` (a wildcard address
/// is probed on loopback).
pub async fn probe_health(listen: SocketAddr) -> anyhow::Result<()> {
    let mut target = listen;
    if target.ip().is_unspecified() {
        target.set_ip(std::net::IpAddr::from([127, 0, 0, 1]));
    }
    let client = crate::net::client()?;
    let response = client
        .get(format!("http://{target}/healthz"))
        .timeout(std::time::Duration::from_secs(4))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("no answer from http://{target}/healthz: {e}"))?;
    anyhow::ensure!(
        response.status().is_success(),
        "http://{target}/healthz answered {}",
        response.status()
    );
    Ok(())
}

/// Why the daemon is not ready (or None when it is), and the last
/// successful poll (read once, so the answer is consistent). Decided
/// within [`READY_BUDGET`]: a store that does not answer is not ready.
pub async fn readiness(state: &AdminState) -> (Option<String>, Option<chrono::DateTime<Utc>>) {
    match tokio::time::timeout(READY_BUDGET, readiness_unbounded(state)).await {
        Ok(answer) => answer,
        Err(_) => (
            Some(format!(
                "store unreachable or not writable: no answer within {} ms",
                READY_BUDGET.as_millis()
            )),
            None,
        ),
    }
}

async fn readiness_unbounded(
    state: &AdminState,
) -> (Option<String>, Option<chrono::DateTime<Utc>>) {
    let (store, dispatcher) = (&state.store, &state.dispatcher);
    if let Some(problem) = store.file_problem() {
        return (Some(format!("{problem}: nothing is claimed or sent")), None);
    }
    if let Err(reason) = probe_write(state).await {
        return (Some(reason), None);
    }
    // A rejected poll (a broken query) needs an operator at once, even
    // while the previous snapshot is still fresh enough to send on.
    if let Some(problem) = dispatcher.poll_problem() {
        return (Some(problem), store.last_poll_at().await.ok().flatten());
    }
    let max_age = dispatcher.live().config.settings.daemon.max_snapshot_age;
    match store.last_poll_at().await {
        Err(e) => (Some(format!("store unreachable: {e:#}")), None),
        Ok(None) => (Some("no successful poll yet".into()), None),
        Ok(Some(at)) => (stale_reason(at, max_age), Some(at)),
    }
}

/// The store's write probe, at most once per [`PROBE_EVERY`]; concurrent
/// callers wait for the one in progress.
async fn probe_write(state: &AdminState) -> Result<(), String> {
    let mut last = state.probe.lock().await;
    if let Some((at, outcome)) = last.as_ref()
        && at.elapsed() < PROBE_EVERY
    {
        return outcome.clone();
    }
    let outcome = state
        .store
        .probe_write(Utc::now())
        .await
        .map_err(|e| format!("{e:#}"));
    *last = Some((Instant::now(), outcome.clone()));
    outcome
}

fn stale_reason(at: chrono::DateTime<Utc>, max_age: std::time::Duration) -> Option<String> {
    let age = (Utc::now() - at).to_std().unwrap_or_default();
    (age > max_age).then(|| {
        format!(
            "last successful poll {} ago, longer than max_snapshot_age ({}): notices are held",
            crate::clock::human_duration(std::time::Duration::from_secs(age.as_secs())),
            crate::clock::human_duration(max_age)
        )
    })
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let (reason, last_poll) = readiness(&state).await;
    let last_poll = last_poll.map(crate::clock::rfc3339);
    // Whether this instance polls the source (one of several sharing a store).
    let poller = state.store.is_poller();
    match reason {
        None => (StatusCode::OK, Json(json!({"status": "ready", "last_poll_at": last_poll, "poller": poller}))).into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "reason": reason, "last_poll_at": last_poll, "poller": poller})),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AdminState>) -> Response {
    match &state.metrics {
        Some(handle) => (
            [("content-type", "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder not installed\n",
        )
            .into_response(),
    }
}

/// Behind [`access::require_write_access`].
async fn reload(State(state): State<AdminState>) -> Response {
    let (answer, result) = oneshot::channel();
    if state.reload.send(answer).await.is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "failed", "reason": "shutting down"})),
        )
            .into_response();
    }
    match result.await {
        Ok(Ok(())) => (StatusCode::OK, Json(json!({"status": "reloaded"}))).into_response(),
        Ok(Err(reason)) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"status": "rejected", "reason": reason})),
        )
            .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "failed", "reason": "shutting down"})),
        )
            .into_response(),
    }
}
