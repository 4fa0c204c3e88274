//! For the admin-endpoint tests: a daemon under a real low descriptor
//! limit (`prlimit`), a flood of idle TCP connections, raw HTTP requests
//! with any header a browser or proxy would send, and a TCP proxy whose
//! port really closes (connection refused), for a store that goes away.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::http::HttpResponse;
use super::{Daemon, Setup, lock};

/// Starts `interim run` (after `migrate`) under `prlimit --nofile=N:N`:
/// the daemon itself may open at most `nofile` descriptors.
pub fn start_with_descriptor_limit(setup: &Setup, nofile: u64) -> Daemon {
    setup.migrate();
    let inner = setup.command(&["run"]);
    let mut command = Command::new("prlimit");
    command
        .arg(format!("--nofile={nofile}:{nofile}"))
        .arg("--")
        .arg(inner.get_program())
        .args(inner.get_args());
    if let Some(dir) = inner.get_current_dir() {
        command.current_dir(dir);
    }
    for (key, value) in inner.get_envs() {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(setup.path("daemon.log"))
        .expect("open the daemon log");
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // prlimit execs the command: the child's pid is the daemon's.
    Daemon {
        child: command.spawn().expect("spawn prlimit interim run"),
    }
}

/// How many descriptors process `pid` has open now.
pub fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count())
}

/// Idle TCP connections to one address, kept at `target` open ones: a
/// connection the server closes is replaced, as an attacker would.
pub struct Flood {
    refill: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    opened: Arc<AtomicUsize>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Flood {
    pub fn start(addr: SocketAddr, target: usize) -> Self {
        let refill = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let opened: Arc<AtomicUsize> = Arc::default();
        let streams: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let thread = {
            let (refill, stop, opened, streams) = (
                refill.clone(),
                stop.clone(),
                opened.clone(),
                streams.clone(),
            );
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if refill.load(Ordering::SeqCst) {
                        let mut streams = lock(&streams);
                        // Closed by the server (EOF, reset) or answered
                        // with a refusal: replace it.
                        streams.retain(|s| {
                            let mut byte = [0u8; 1];
                            matches!(s.peek(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock)
                        });
                        while streams.len() < target && refill.load(Ordering::SeqCst) {
                            match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                                Ok(stream) => {
                                    let _ = stream.set_nonblocking(true);
                                    streams.push(stream);
                                    opened.fetch_add(1, Ordering::SeqCst);
                                }
                                Err(_) => break,
                            }
                        }
                    }
                    thread::sleep(Duration::from_millis(20));
                }
            })
        };
        Self {
            refill,
            stop,
            opened,
            streams,
            thread: Some(thread),
        }
    }

    /// Connections opened so far, replacements included.
    pub fn opened(&self) -> usize {
        self.opened.load(Ordering::SeqCst)
    }

    /// Stops opening new connections; the open ones stay open (and idle).
    pub fn stop_refilling(&self) {
        self.refill.store(false, Ordering::SeqCst);
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.refill.store(false, Ordering::SeqCst);
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        lock(&self.streams).clear();
    }
}

/// Sends `head` (request line and header lines, without the blank line)
/// and `body` as they are, and reads the answer until the server closes.
pub fn raw(addr: &str, head: &[&str], body: &str) -> std::io::Result<HttpResponse> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut request = head.join("\r\n");
    request.push_str(&format!("\r\nContent-Length: {}\r\n", body.len()));
    request.push_str("Connection: close\r\n\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes())?;
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

/// Waits until the server closes `stream` (EOF or reset); how long that took.
pub fn time_until_closed(stream: &mut TcpStream, deadline: Duration) -> Option<Duration> {
    let start = Instant::now();
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 4096];
    while start.elapsed() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

/// This machine's address towards the outside (not loopback), if it has
/// one: the source address a UDP socket would use (nothing is sent).
pub fn outside_address() -> Option<std::net::IpAddr> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// Whether `[::]` listeners take IPv4 connections (v4-mapped) and `::1`
/// works here.
pub fn dual_stack_loopback() -> bool {
    let Ok(listener) = TcpListener::bind("[::]:0") else {
        return false;
    };
    let Ok(port) = listener.local_addr().map(|a| a.port()) else {
        return false;
    };
    let v4 = TcpStream::connect(("127.0.0.1", port)).is_ok();
    let v6 = TcpStream::connect(("::1", port)).is_ok();
    v4 && v6
}

/// A TCP proxy on 127.0.0.1 in front of a server whose port really
/// closes on [`close`](Self::close): new connections are refused and open
/// ones cut, as when the server's host goes away.
pub struct ClosableProxy {
    port: u16,
    closed: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl ClosableProxy {
    pub fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy port");
        let port = listener.local_addr().expect("proxy address").port();
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let closed = Arc::new(AtomicBool::new(false));
        let live: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (is_closed, conns) = (closed.clone(), live.clone());
        let thread = thread::spawn(move || {
            // The listener is dropped (its port closed) when this ends.
            while !is_closed.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let (Ok(client_out), Ok(server_out)) = (client.try_clone(), server.try_clone())
                else {
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
        Self {
            port,
            closed,
            live,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Closes the port (connections are refused from now on) and cuts
    /// every proxied connection.
    pub fn close(&mut self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        for conn in lock(&self.live).drain(..) {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for ClosableProxy {
    fn drop(&mut self) {
        self.close();
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
