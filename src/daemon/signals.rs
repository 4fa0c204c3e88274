//! Unix signals: SIGTERM/SIGINT stop the daemon (a second one exits at
//! once), SIGHUP reloads config and templates.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::http::ReloadRequest;

/// SIGTERM / SIGINT cancel the token; a second signal exits at once.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            let _ = tokio::signal::ctrl_c().await;
            trigger.cancel();
            return;
        };
        let mut count = 0;
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            count += 1;
            if count == 1 {
                info!(
                    "stop signal received: finishing sends in flight (signal again to exit at once)"
                );
                trigger.cancel();
            } else {
                warn!(
                    "second stop signal: exiting now; unfinished claims are taken back at the next start"
                );
                std::process::exit(1);
            }
        }
    });
    token
}

/// Forwards every SIGHUP as a reload request (nobody waits for the answer;
/// the outcome is logged and counted).
pub fn reload_on_sighup(requests: mpsc::Sender<ReloadRequest>) {
    tokio::spawn(async move {
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            warn!("cannot listen for SIGHUP; reload through POST /-/reload instead");
            return;
        };
        while hup.recv().await.is_some() {
            info!("SIGHUP received: reloading config and templates");
            let (answer, _ignored) = tokio::sync::oneshot::channel();
            if requests.send(answer).await.is_err() {
                break;
            }
        }
    });
}
