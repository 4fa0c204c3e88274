//! `WebhookReceiver`: an HTTP endpoint on 127.0.0.1 that checks Standard
//! Webhooks signatures with the `standardwebhooks` crate and answers from a script.

use std::collections::VecDeque;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

use super::{WEBHOOK_SECRET, block_on, lock};

#[derive(Clone, Debug)]
pub struct WebhookRequest {
    pub headers: HeaderMap,
    pub body: Value,
    pub verified: bool,
}

impl WebhookRequest {
    pub fn header(&self, name: &str) -> String {
        let value = self.headers.get(name).and_then(|v| v.to_str().ok());
        value.unwrap_or_default().to_string()
    }
}

struct ReceiverState {
    statuses: VecDeque<u16>,
    then: u16,
    delay: Duration,
    requests: Vec<WebhookRequest>,
}

/// An HTTP endpoint that checks Standard Webhooks signatures and answers from a script.
pub struct WebhookReceiver {
    url: String,
    state: Arc<Mutex<ReceiverState>>,
}

async fn receive(
    State(state): State<Arc<Mutex<ReceiverState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let verified = standardwebhooks::Webhook::new(WEBHOOK_SECRET)
        .and_then(|hook| hook.verify(&body, &headers))
        .is_ok();
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (delay, answered) = {
        let mut s = lock(&state);
        let answered = s.statuses.pop_front().unwrap_or(s.then);
        s.requests.push(WebhookRequest {
            headers,
            body: json,
            verified,
        });
        (s.delay, answered)
    };
    tokio::time::sleep(delay).await;
    StatusCode::from_u16(answered).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl WebhookReceiver {
    /// Answers `statuses` in order, then `then` for ever, each after `delay`.
    pub fn start(statuses: &[u16], then: u16, delay: Duration) -> Self {
        let statuses = statuses.iter().copied().collect();
        let state = ReceiverState {
            statuses,
            then,
            delay,
            requests: Vec::new(),
        };
        let state = Arc::new(Mutex::new(state));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the webhook port");
        let port = listener
            .local_addr()
            .expect("webhook listener address")
            .port();
        listener
            .set_nonblocking(true)
            .expect("non-blocking webhook listener");
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(state.clone());
        thread::spawn(move || {
            block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                axum::serve(listener, app).await
            })
        });
        Self {
            url: format!("http://127.0.0.1:{port}/hook"),
            state,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn requests(&self) -> Vec<WebhookRequest> {
        lock(&self.state).requests.clone()
    }
}
