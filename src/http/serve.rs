//! The admin endpoint's accept loop, bounded so that no client can take
//! what polling and delivery need: at most `http.max_connections`
//! connections, and never more than a quarter of the process's descriptor
//! limit (RLIMIT_NOFILE); headers within `http.header_timeout` (also the
//! wait for the next request of a kept-alive connection); a connection on
//! which nothing moves for `http.idle_timeout` is closed; request heads
//! and bodies are small.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::{debug, info, warn};

use crate::config::Settings;

/// Request line and headers together at most (hyper's smallest buffer).
const MAX_HEAD_BYTES: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;
/// How long open connections may finish their request at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The bounds the endpoint runs with, fixed at start.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    /// The soft RLIMIT_NOFILE at start (None: unlimited).
    pub descriptor_limit: Option<u64>,
}

impl Limits {
    pub fn new(settings: &Settings, descriptor_limit: Option<u64>) -> Limits {
        let http = &settings.http;
        Limits {
            connections: http.max_connections.min(descriptor_share(descriptor_limit)),
            header_timeout: http.header_timeout,
            idle_timeout: http.idle_timeout,
            descriptor_limit,
        }
    }
}

/// The process's soft limit of open descriptors (None: unlimited).
pub fn descriptor_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// A quarter of the descriptor limit: the rest stays for the store, the
/// source, SMTP and webhook connections, logs and the runtime.
pub fn descriptor_share(limit: Option<u64>) -> usize {
    match limit {
        Some(limit) => usize::try_from(limit / 4).unwrap_or(usize::MAX).max(1),
        None => usize::MAX,
    }
}

/// Serves `app` on `listener` until `shutdown` fires; then open
/// connections finish their request (within a short grace) and it returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    info!(
        listen = %listener.local_addr()?,
        max_connections = limits.connections,
        descriptor_limit = limits.descriptor_limit,
        header_timeout = %humantime::format_duration(limits.header_timeout),
        idle_timeout = %humantime::format_duration(limits.idle_timeout),
        "admin endpoint listening"
    );
    let slots = Arc::new(Semaphore::new(limits.connections));
    let connections = TaskTracker::new();
    let mut refused = Refusals::default();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors (the rest of the process took them) or
                // a connection reset before it was taken: wait a moment
                // instead of spinning.
                refused.accept_failed(&e);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            refused.full(limits.connections);
            refuse(stream);
            continue;
        };
        metrics::gauge!("interim_http_connections").increment(1.0);
        connections.spawn(connection(
            stream,
            peer,
            app.clone(),
            limits,
            shutdown.clone(),
            permit,
        ));
    }
    drop(listener);
    connections.close();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, connections.wait()).await;
    Ok(())
}

/// One connection, over HTTP/1.1, until the client or a limit ends it.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let answering = activity.answering();
            let app = app.clone();
            async move {
                let response = app.oneshot(request).await;
                drop(answering);
                response
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        let idle = activity.idle_for();
        tokio::select! {
            outcome = conn.as_mut() => {
                if let Err(e) = outcome {
                    debug!(peer = %peer, error = %e, "admin connection ended");
                }
                break;
            }
            _ = shutdown.cancelled(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = tokio::time::sleep(limits.idle_timeout.saturating_sub(idle)) => {
                if !activity.is_answering() && activity.idle_for() >= limits.idle_timeout {
                    debug!(peer = %peer, "admin connection idle for http.idle_timeout; closed");
                    break;
                }
            }
        }
    }
    metrics::gauge!("interim_http_connections").decrement(1.0);
}

/// Over the limit: a short 503 if the socket takes it at once, then close.
fn refuse(stream: TcpStream) {
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\
        content-type: text/plain\r\ncontent-length: 44\r\n\r\n\
        too many connections to the admin endpoint\r\n";
    let _ = stream.try_write(BUSY);
}

/// Counts refused connections and failed accepts, logging at most once a
/// minute: a flood must not turn into a flood of log lines.
#[derive(Default)]
struct Refusals {
    last_log: Option<Instant>,
    unlogged: u64,
}

impl Refusals {
    fn due(&mut self) -> bool {
        self.unlogged += 1;
        let due = self
            .last_log
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(60));
        if due {
            self.last_log = Some(Instant::now());
        }
        due
    }

    fn full(&mut self, limit: usize) {
        metrics::counter!("interim_http_connections_refused_total").increment(1);
        if self.due() {
            warn!(
                refused = std::mem::take(&mut self.unlogged),
                max_connections = limit,
                "admin endpoint at its connection limit: new connections are closed at once"
            );
        }
    }

    fn accept_failed(&mut self, error: &std::io::Error) {
        if self.due() {
            warn!(
                error = %error,
                failed = std::mem::take(&mut self.unlogged),
                "admin endpoint cannot accept connections"
            );
        }
    }
}

/// When a connection last moved a byte, and whether a request on it is
/// being answered (a reload may take a while without any byte moving).
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    answering: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            answering: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }

    fn is_answering(&self) -> bool {
        self.answering.load(Ordering::Relaxed) > 0
    }

    fn answering(self: &Arc<Self>) -> Answering {
        self.answering.fetch_add(1, Ordering::Relaxed);
        Answering(self.clone())
    }
}

/// A request being answered; its end counts as activity.
struct Answering(Arc<Activity>);

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.answering.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A stream that notes every byte it moves in its [`Activity`].
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_connections_get_a_quarter_of_the_descriptor_limit() {
        assert_eq!(descriptor_share(Some(1024)), 256);
        assert_eq!(descriptor_share(Some(128)), 32);
        assert_eq!(descriptor_share(Some(3)), 1);
        assert_eq!(descriptor_share(None), usize::MAX);
    }
}
