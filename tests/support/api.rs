//! `ApiServer`: a JSON API on 127.0.0.1 (axum) that answers every request
//! from the test's script and records each request (path, query, headers,
//! arrival time), standing in for a helpdesk's HTTP API; `start_on` puts
//! one on another loopback address, a foreign origin. `EndlessPage` sends a
//! page whose body never ends.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{Setup, block_on, lock, toml_str};

/// One request the server received.
#[derive(Clone, Debug)]
pub struct ApiRequest {
    pub method: String,
    pub path: String,
    /// Decoded query pairs, in order.
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub at: Instant,
    /// `http://127.0.0.1:PORT`, for absolute next-page URLs.
    pub base: String,
}

impl ApiRequest {
    /// The (first) value of a query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        let found = self.query.iter().find(|(k, _)| k == name);
        found.map(|(_, v)| v.as_str())
    }

    /// A query parameter as a number (None when absent or not a number).
    pub fn number(&self, name: &str) -> Option<usize> {
        self.param(name).and_then(|v| v.parse().ok())
    }

    /// A header's value ("" when absent).
    pub fn header(&self, name: &str) -> String {
        let value = self.headers.get(name).and_then(|v| v.to_str().ok());
        value.unwrap_or_default().to_string()
    }
}

/// What the script answers.
#[derive(Clone, Debug)]
pub struct ApiResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl ApiResponse {
    /// 200 with a JSON body.
    pub fn json(body: &Value) -> Self {
        Self {
            status: 200,
            headers: Vec::new(),
            body: body.to_string(),
        }
    }

    /// `status` with a small JSON error body.
    pub fn error(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: serde_json::json!({"error": format!("HTTP {status}")}).to_string(),
        }
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

type Script = Arc<dyn Fn(&ApiRequest) -> ApiResponse + Send + Sync>;

struct ApiState {
    script: Script,
    requests: Vec<ApiRequest>,
    base: String,
}

/// A local JSON API answering from a script; every request is recorded.
pub struct ApiServer {
    base: String,
    state: Arc<Mutex<ApiState>>,
}

async fn answer(
    State(state): State<Arc<Mutex<ApiState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let (script, request) = {
        let mut s = lock(&state);
        let parsed = reqwest::Url::parse(&format!("{}{uri}", s.base));
        let query = parsed
            .map(|u| {
                u.query_pairs()
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let request = ApiRequest {
            method: method.to_string(),
            path: uri.path().to_string(),
            query,
            headers,
            at: Instant::now(),
            base: s.base.clone(),
        };
        s.requests.push(request.clone());
        (s.script.clone(), request)
    };
    let reply = script(&request);
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    for (name, value) in &reply.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(name, value);
        }
    }
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, headers, reply.body).into_response()
}

impl ApiServer {
    /// Serves every method and path with `script`.
    pub fn start(script: impl Fn(&ApiRequest) -> ApiResponse + Send + Sync + 'static) -> Self {
        Self::start_on("127.0.0.1", script)
    }

    /// Serves on the loopback address `ip` (e.g. `127.0.0.2`: another
    /// origin than a server on 127.0.0.1).
    pub fn start_on(
        ip: &str,
        script: impl Fn(&ApiRequest) -> ApiResponse + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind((ip, 0)).expect("bind the API port");
        let port = listener.local_addr().expect("API listener address").port();
        listener
            .set_nonblocking(true)
            .expect("non-blocking API listener");
        let base = format!("http://{ip}:{port}");
        let state = Arc::new(Mutex::new(ApiState {
            script: Arc::new(script),
            requests: Vec::new(),
            base: base.clone(),
        }));
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(state.clone());
        thread::spawn(move || {
            block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                axum::serve(listener, app).await
            })
        });
        Self { base, state }
    }

    /// `http://IP:PORT`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The absolute URL of `path_and_query`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base)
    }

    /// Replaces the script (e.g. to break a page between two polls).
    pub fn set_script(&self, script: impl Fn(&ApiRequest) -> ApiResponse + Send + Sync + 'static) {
        lock(&self.state).script = Arc::new(script);
    }

    pub fn requests(&self) -> Vec<ApiRequest> {
        lock(&self.state).requests.clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.state).requests.clear();
    }
}

/// The `page`-th slice (1-based) of `per_page` items; empty past the end.
pub fn page_of(items: &[Value], page: usize, per_page: usize) -> Vec<Value> {
    let start = page.saturating_sub(1).saturating_mul(per_page);
    items.iter().skip(start).take(per_page).cloned().collect()
}

/// A config polling the HTTP API at `url` with `fields` (an inline TOML
/// table), and one policy (notice 1 an hour into the wait) mailing to the
/// SMTP port `mail_port`.
pub fn http_setup(url: &str, fields: &str, mail_port: u16) -> Setup {
    let mut setup = Setup::new();
    setup.unset("source.query");
    setup.set("source.kind", "\"http\"");
    setup.set("source.url", &toml_str(url));
    setup.set("source.fields", fields);
    setup.email_channel("mail", mail_port, "");
    setup.policy(
        "first-notice",
        "after = \"1h\"\nchannel = \"mail\"\ntemplate = \"interim\"",
    );
    setup
}

/// A JSON page without `Content-Length` whose body never ends: `head`,
/// then `item` and a comma, again and again, until the client stops
/// reading and closes the connection.
pub struct EndlessPage {
    base: String,
    sent: Arc<AtomicU64>,
    closed: Arc<AtomicBool>,
}

impl EndlessPage {
    pub fn start(head: &str, item: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the endless page's port");
        let port = listener.local_addr().expect("endless page address").port();
        let (sent, closed) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (head, item) = (head.to_owned(), format!("{item},"));
        let (counter, ended) = (sent.clone(), closed.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut request = Vec::new();
                let mut byte = [0u8; 1];
                while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                    request.push(byte[0]);
                }
                let chunk = |data: &str| format!("{:x}\r\n{data}\r\n", data.len());
                let items = item.repeat((64 * 1024 / item.len()).max(1));
                let mut out = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n{}",
                    chunk(&head)
                );
                while stream.write_all(out.as_bytes()).is_ok() {
                    counter.fetch_add(out.len() as u64, Ordering::SeqCst);
                    out = chunk(&items);
                }
                ended.store(true, Ordering::SeqCst);
            }
        });
        Self {
            base: format!("http://127.0.0.1:{port}"),
            sent,
            closed,
        }
    }

    /// The absolute URL of `path_and_query`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base)
    }

    /// Bytes written so far (some may still sit in socket buffers).
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    /// Whether a client has closed the connection while the body went on.
    pub fn closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}
