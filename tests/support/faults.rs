//! Fault-injecting peers for the fault, hostile-data and safety suites: a
//! scripted SMTP server that can refuse, stall, drop or answer any code at
//! any step; a scripted HTTP endpoint that can hang, reset or answer late;
//! a TCP proxy that can cut a database connection mid-query; a second
//! connection holding a SQLite write lock; a tiny tmpfs that can be filled;
//! and a reader for Prometheus text.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use sqlx::Connection;

use super::{ReceivedMail, WEBHOOK_SECRET, block_on, lock};

/// How the scripted SMTP server treats one connection. A connection that
/// fails is closed after the failing reply, so every retry comes on a new
/// connection and takes the next step of the script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SmtpFault {
    /// A well-behaved server: every transaction on the connection is accepted.
    Accept,
    /// Greets with this reply (e.g. `421 4.3.2 going down`) and closes.
    Greeting(&'static str),
    /// Accepts the TCP connection and never says a word.
    Silent,
    /// Answers RCPT TO with this reply, then closes.
    AtRcpt(&'static str),
    /// Answers DATA with this reply, then closes.
    AtData(&'static str),
    /// Answers the end of the message (the final dot) with this reply, then closes.
    AfterData(&'static str),
    /// Says 354 to DATA, reads the first line of the message, then closes
    /// the connection without a reply.
    DropMidData,
    /// Offers AUTH PLAIN and LOGIN and answers AUTH with a 535 whose lines
    /// echo the command and the decoded credentials, then closes: a server
    /// that would put a password into the client's log.
    EchoAuth,
}

#[derive(Default)]
struct SmtpState {
    script: VecDeque<SmtpFault>,
    then: Option<SmtpFault>,
    connections: Vec<SmtpFault>,
    transactions: usize,
    mails: Vec<ReceivedMail>,
    /// When each accepted message was complete.
    accepted_at: Vec<Instant>,
    dropped_mid_data: usize,
}

/// An SMTP server on 127.0.0.1 whose connections follow a script of faults.
pub struct ScriptedSmtp {
    port: u16,
    state: Arc<Mutex<SmtpState>>,
}

impl ScriptedSmtp {
    /// Serves the first connections as `script` says, every later one as `then`.
    pub fn start(script: &[SmtpFault], then: SmtpFault) -> Self {
        Self::start_with(script, then, false)
    }

    /// Like [`Self::start`], but the server also offers SMTPUTF8.
    pub fn start_utf8(script: &[SmtpFault], then: SmtpFault) -> Self {
        Self::start_with(script, then, true)
    }

    fn start_with(script: &[SmtpFault], then: SmtpFault, smtputf8: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the scripted SMTP port");
        let port = listener.local_addr().expect("scripted SMTP address").port();
        let state = Arc::new(Mutex::new(SmtpState {
            script: script.iter().cloned().collect(),
            then: Some(then),
            ..SmtpState::default()
        }));
        let shared = state.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let fault = {
                    let mut s = lock(&shared);
                    let fault = s.script.pop_front().or_else(|| s.then.clone());
                    let fault = fault.unwrap_or(SmtpFault::Accept);
                    s.connections.push(fault.clone());
                    fault
                };
                let state = shared.clone();
                thread::spawn(move || serve_smtp(stream, &fault, &state, smtputf8));
            }
        });
        Self { port, state }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every message the server accepted (250 after the final dot).
    pub fn mails(&self) -> Vec<ReceivedMail> {
        lock(&self.state).mails.clone()
    }

    /// When each accepted message was complete, in order.
    pub fn accepted_at(&self) -> Vec<Instant> {
        lock(&self.state).accepted_at.clone()
    }

    /// The fault each connection so far was served with, in order.
    pub fn connections(&self) -> Vec<SmtpFault> {
        lock(&self.state).connections.clone()
    }

    /// MAIL FROM commands received.
    pub fn transactions(&self) -> usize {
        lock(&self.state).transactions
    }

    /// Messages cut off in the middle of DATA.
    pub fn dropped_mid_data(&self) -> usize {
        lock(&self.state).dropped_mid_data
    }
}

fn reply(out: &mut TcpStream, text: &str) -> std::io::Result<()> {
    out.write_all(text.as_bytes())?;
    out.write_all(b"\r\n")?;
    out.flush()
}

fn serve_smtp(
    stream: TcpStream,
    fault: &SmtpFault,
    state: &Mutex<SmtpState>,
    smtputf8: bool,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    match fault {
        SmtpFault::Greeting(text) => return reply(&mut out, text),
        SmtpFault::Silent => {
            // Hold the connection open until the client gives up.
            let mut ignored = Vec::new();
            let _ = reader.read_to_end(&mut ignored);
            return Ok(());
        }
        _ => reply(&mut out, "220 interim-faults ESMTP")?,
    }
    let mut mail: Option<ReceivedMail> = None;
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let command = String::from_utf8_lossy(&line).trim_end().to_string();
        let verb = command
            .split([' ', ':'])
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => {
                let utf8 = if smtputf8 { "250-SMTPUTF8\r\n" } else { "" };
                let auth = if *fault == SmtpFault::EchoAuth {
                    "250-AUTH PLAIN LOGIN\r\n"
                } else {
                    ""
                };
                out.write_all(
                    format!("250-interim-faults\r\n{utf8}{auth}250 8BITMIME\r\n").as_bytes(),
                )?;
                out.flush()?;
            }
            "AUTH" if *fault == SmtpFault::EchoAuth => {
                use base64::Engine;
                let payload = command.split_whitespace().nth(2).unwrap_or_default();
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(payload)
                    .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
                    .unwrap_or_default();
                return reply(
                    &mut out,
                    &format!(
                        "535-5.7.8 you sent: {command}\r\n535-5.7.8 that is:{decoded}\r\n\
                         535 5.7.8 Authentication credentials invalid"
                    ),
                );
            }
            "HELO" => reply(&mut out, "250 interim-faults")?,
            "MAIL" => {
                lock(state).transactions += 1;
                mail = Some(ReceivedMail {
                    from: envelope_address(&command),
                    to: Vec::new(),
                    data: Vec::new(),
                });
                reply(&mut out, "250 2.1.0 OK")?;
            }
            "RCPT" => {
                if let SmtpFault::AtRcpt(text) = fault {
                    return reply(&mut out, text);
                }
                if let Some(mail) = &mut mail {
                    mail.to.push(envelope_address(&command));
                }
                reply(&mut out, "250 2.1.5 OK")?;
            }
            "DATA" => {
                if let SmtpFault::AtData(text) = fault {
                    return reply(&mut out, text);
                }
                reply(&mut out, "354 end with <CRLF>.<CRLF>")?;
                if *fault == SmtpFault::DropMidData {
                    let mut first = Vec::new();
                    reader.read_until(b'\n', &mut first)?;
                    lock(state).dropped_mid_data += 1;
                    return out.shutdown(Shutdown::Both);
                }
                let data = read_message(&mut reader)?;
                if let SmtpFault::AfterData(text) = fault {
                    return reply(&mut out, text);
                }
                if let Some(mut done) = mail.take() {
                    done.data = data;
                    let mut s = lock(state);
                    s.mails.push(done);
                    s.accepted_at.push(Instant::now());
                }
                reply(&mut out, "250 2.0.0 queued")?;
            }
            "RSET" => {
                mail = None;
                reply(&mut out, "250 2.0.0 OK")?;
            }
            "NOOP" => reply(&mut out, "250 2.0.0 OK")?,
            "QUIT" => return reply(&mut out, "221 2.0.0 bye"),
            _ => reply(&mut out, "502 5.5.2 not implemented")?,
        }
    }
}

/// The address inside `<…>` of a MAIL FROM or RCPT TO command.
fn envelope_address(command: &str) -> String {
    let start = command.find('<').map_or(0, |i| i + 1);
    let end = command[start..]
        .find('>')
        .map_or(command.len(), |i| start + i);
    command[start..end].to_string()
}

/// Reads a message up to the final dot and undoes dot-stuffing; CRLF kept.
fn read_message(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == b".\r\n" || line == b".\n" {
            return Ok(data);
        }
        let unstuffed = if line.starts_with(b"..") {
            &line[1..]
        } else {
            &line[..]
        };
        data.extend_from_slice(unstuffed);
    }
}

/// How the scripted HTTP endpoint answers one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpFault {
    /// Answers at once with this status.
    Status(u16),
    /// Answers at once with this status and one extra header.
    StatusWith(u16, &'static str, &'static str),
    /// Reads the request and never answers (until the client gives up).
    Hang,
    /// Reads the request and closes the connection without a word.
    Reset,
    /// Reads the request and answers with the status after the delay.
    Late(Duration, u16),
}

/// One request the scripted HTTP endpoint read completely.
#[derive(Clone, Debug)]
pub struct HttpHit {
    /// When the whole request had arrived.
    pub at: Instant,
    /// The same moment on the wall clock (to compare with ledger times).
    pub wall: SystemTime,
    pub headers: HeaderMap,
    pub body: Value,
    /// The Standard Webhooks signature checks out.
    pub verified: bool,
    /// How it was answered.
    pub fault: HttpFault,
}

impl HttpHit {
    pub fn header(&self, name: &str) -> String {
        let value = self.headers.get(name).and_then(|v| v.to_str().ok());
        value.unwrap_or_default().to_string()
    }
}

struct HttpState {
    script: VecDeque<HttpFault>,
    then: HttpFault,
    hits: Vec<HttpHit>,
}

/// An HTTP endpoint on 127.0.0.1 (one request per connection) that answers
/// from a script of faults and records every request with its arrival time.
pub struct ScriptedHttp {
    url: String,
    state: Arc<Mutex<HttpState>>,
}

impl ScriptedHttp {
    pub fn start(script: &[HttpFault], then: HttpFault) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the scripted HTTP port");
        let port = listener.local_addr().expect("scripted HTTP address").port();
        let state = Arc::new(Mutex::new(HttpState {
            script: script.iter().cloned().collect(),
            then,
            hits: Vec::new(),
        }));
        let shared = state.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                thread::spawn(move || serve_http(stream, &state));
            }
        });
        Self {
            url: format!("http://127.0.0.1:{port}/hook"),
            state,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn hits(&self) -> Vec<HttpHit> {
        lock(&self.state).hits.clone()
    }

    /// How many requests arrived so far (cheaper than [`Self::hits`]).
    pub fn count(&self) -> usize {
        lock(&self.state).hits.len()
    }
}

fn serve_http(stream: TcpStream, state: &Mutex<HttpState>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    let mut headers = HeaderMap::new();
    let mut length = 0usize;
    let mut line = String::new();
    reader.read_line(&mut line)?; // request line
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().unwrap_or(0);
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(name, value);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let verified = standardwebhooks::Webhook::new(WEBHOOK_SECRET)
        .and_then(|hook| hook.verify(&body, &headers))
        .is_ok();
    let fault = {
        let mut s = lock(state);
        let fault = s.script.pop_front().unwrap_or_else(|| s.then.clone());
        s.hits.push(HttpHit {
            at: Instant::now(),
            wall: SystemTime::now(),
            headers,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            verified,
            fault: fault.clone(),
        });
        fault
    };
    let respond = |out: &mut TcpStream, status: u16, extra: &str| {
        let head = format!(
            "HTTP/1.1 {status} Scripted\r\nContent-Length: 0\r\nConnection: close\r\n{extra}\r\n"
        );
        out.write_all(head.as_bytes())?;
        out.flush()
    };
    match fault {
        HttpFault::Status(status) => respond(&mut out, status, ""),
        HttpFault::StatusWith(status, name, value) => {
            respond(&mut out, status, &format!("{name}: {value}\r\n"))
        }
        HttpFault::Hang => {
            let mut ignored = Vec::new();
            let _ = reader.read_to_end(&mut ignored);
            Ok(())
        }
        HttpFault::Reset => out.shutdown(Shutdown::Both),
        HttpFault::Late(delay, status) => {
            thread::sleep(delay);
            respond(&mut out, status, "")
        }
    }
}

/// A TCP proxy on 127.0.0.1 in front of a server (a database), which can
/// cut every connection at once and refuse new ones: the server "stops".
pub struct TcpProxy {
    port: u16,
    up: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<TcpStream>>>,
}

impl TcpProxy {
    pub fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy port");
        let port = listener.local_addr().expect("proxy address").port();
        let up = Arc::new(AtomicBool::new(true));
        let live: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (is_up, conns) = (up.clone(), live.clone());
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if !is_up.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let pipes = (client.try_clone(), server.try_clone());
                let (Ok(client_out), Ok(server_out)) = pipes else {
                    continue;
                };
                {
                    let mut conns = lock(&conns);
                    conns.extend(client.try_clone());
                    conns.extend(server.try_clone());
                }
                thread::spawn(move || pipe(client, server_out));
                thread::spawn(move || pipe(server, client_out));
            }
        });
        Self { port, up, live }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Closes every proxied connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for conn in lock(&self.live).drain(..) {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }

    /// Accepts and forwards connections again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

/// Holds a write lock (`BEGIN EXCLUSIVE`) on a SQLite database from a
/// connection of its own; returns once the lock is held. The lock ends
/// after `hold`; join the handle to wait for that.
pub fn lock_sqlite(path: &Path, hold: Duration) -> thread::JoinHandle<()> {
    let url = format!("sqlite://{}", path.display());
    let (locked_tx, locked_rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        block_on(async {
            let options: sqlx::sqlite::SqliteConnectOptions =
                url.parse().expect("a SQLite URL for the lock");
            let options = options.busy_timeout(Duration::from_secs(30));
            let mut conn = sqlx::SqliteConnection::connect_with(&options)
                .await
                .expect("open the store for the lock");
            sqlx::raw_sql("BEGIN EXCLUSIVE")
                .execute(&mut conn)
                .await
                .expect("BEGIN EXCLUSIVE on the store");
            let _ = locked_tx.send(Instant::now());
            tokio::time::sleep(hold).await;
            sqlx::raw_sql("COMMIT")
                .execute(&mut conn)
                .await
                .expect("COMMIT the lock");
            conn.close().await.expect("close the lock connection");
        })
    });
    locked_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the store lock was taken within 30 s");
    handle
}

/// A tmpfs of a few MiB mounted at a test's folder, which can be filled to
/// the last byte and emptied again; unmounted when dropped.
pub struct TinyDisk {
    dir: PathBuf,
}

impl TinyDisk {
    /// Mounts a tmpfs of `size` (like `8m`) at `dir`; Err with the reason
    /// when this machine does not allow it (not root, no mount(8), …).
    pub fn mount(dir: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    fn filler(&self) -> PathBuf {
        self.dir.join("filler")
    }

    /// Writes a filler file until the file system is full; returns its size.
    pub fn fill(&self) -> u64 {
        let mut file = std::fs::File::create(self.filler()).expect("create the filler file");
        let chunk = vec![0x5a_u8; 4096];
        let mut written = 0u64;
        while file.write_all(&chunk).is_ok() {
            written += chunk.len() as u64;
        }
        // The last partial page, byte by byte.
        while file.write_all(&[0x5a]).is_ok() {
            written += 1;
        }
        let _ = file.sync_all();
        written
    }

    /// Removes the filler file: space returns.
    pub fn free(&self) {
        std::fs::remove_file(self.filler()).expect("remove the filler file");
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Samples of a Prometheus text exposition whose name is `name` and whose
/// labels include `labels`, summed (0 when there is none).
pub fn prometheus_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.trim().rsplit_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let all = labels
                .iter()
                .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")));
            all.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}
