//! A minimal blocking HTTP/1.0 client for the daemon's admin endpoint: one
//! request per connection, so there is no chunked encoding to undo.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

impl HttpResponse {
    /// The body as JSON (Null when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// `METHOD path` against `addr` (`host:port`); an error when nothing answers.
pub fn request(addr: &str, method: &str, path: &str) -> std::io::Result<HttpResponse> {
    request_with(addr, method, path, &[])
}

/// [`request`] with extra header lines (`("Authorization", "Bearer …")`).
pub fn request_with(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<HttpResponse> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n{extra}Content-Length: 0\r\n\r\n"
    )?;
    stream.flush()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP status line in {head:?}")))?;
    Ok(HttpResponse {
        status,
        body: body.to_string(),
    })
}

pub fn get(addr: &str, path: &str) -> std::io::Result<HttpResponse> {
    request(addr, "GET", path)
}

/// A POST as a local tool sends it: with `Content-Type: application/json`,
/// which write actions without a token require (a browser page elsewhere
/// cannot send it without asking first).
pub fn post(addr: &str, path: &str) -> std::io::Result<HttpResponse> {
    request_with(addr, "POST", path, &[("Content-Type", "application/json")])
}
