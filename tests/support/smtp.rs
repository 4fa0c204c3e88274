//! `SmtpSink`: a real SMTP server (mailin-embedded) on 127.0.0.1 that records
//! every message and answers from a script.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use mailin_embedded::{Action, AuthMechanism, Handler, Response, Server, response};

use super::{free_port, lock};

/// How the sink answers one SMTP transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpReply {
    Accept,
    /// 451 to RCPT TO (temporary).
    TempFailRcpt,
    /// 451 to DATA (temporary).
    TempFailData,
    /// 550 to RCPT TO (permanent).
    RejectRcpt,
}

#[derive(Clone, Debug)]
pub struct ReceivedMail {
    pub from: String,
    pub to: Vec<String>,
    pub data: Vec<u8>,
}

impl ReceivedMail {
    /// Unfolded header lines as (name, raw value), in order.
    pub fn header_lines(&self) -> Vec<(String, String)> {
        let text = String::from_utf8_lossy(&self.data);
        let head = text.split("\r\n\r\n").next().unwrap_or_default();
        let mut lines: Vec<String> = Vec::new();
        for line in head.split("\r\n") {
            match lines.last_mut() {
                Some(last) if line.starts_with([' ', '\t']) => last.push_str(line),
                _ => lines.push(line.to_string()),
            }
        }
        lines
            .iter()
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect()
    }

    /// All raw values of a header (case-insensitive name).
    pub fn headers(&self, name: &str) -> Vec<String> {
        let lines = self.header_lines().into_iter();
        lines
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers(name).into_iter().next()
    }

    /// The decoded Subject (RFC 2047 words decoded).
    pub fn subject(&self) -> String {
        let parser = mail_parser::MessageParser::new().with_minimal_headers();
        let message = parser.parse(&self.data);
        message
            .and_then(|m| m.subject().map(str::to_string))
            .unwrap_or_default()
    }

    /// The decoded text/plain body.
    pub fn text(&self) -> String {
        let parser = mail_parser::MessageParser::new().with_minimal_headers();
        let message = parser.parse(&self.data);
        message
            .and_then(|m| m.body_text(0).map(|t| t.into_owned()))
            .unwrap_or_default()
    }
}

struct SinkState {
    script: VecDeque<SmtpReply>,
    then: SmtpReply,
    mails: Vec<ReceivedMail>,
    transactions: usize,
    /// When set, clients must authenticate with this user and password.
    credentials: Option<(String, String)>,
    /// Every AUTH attempt as (user, password, accepted).
    logins: Vec<(String, String, bool)>,
}

#[derive(Clone)]
struct SinkHandler {
    state: Arc<Mutex<SinkState>>,
    reply: SmtpReply,
    mail: Option<ReceivedMail>,
}

impl Handler for SinkHandler {
    fn mail(&mut self, _ip: std::net::IpAddr, _domain: &str, from: &str) -> Response {
        let mut state = lock(&self.state);
        state.transactions += 1;
        self.reply = state.script.pop_front().unwrap_or(state.then);
        let from = from.trim_matches(['<', '>']).to_string();
        self.mail = Some(ReceivedMail {
            from,
            to: Vec::new(),
            data: Vec::new(),
        });
        response::OK
    }

    fn rcpt(&mut self, to: &str) -> Response {
        match self.reply {
            SmtpReply::TempFailRcpt => return Response::custom(451, "try later".into()),
            SmtpReply::RejectRcpt => return Response::custom(550, "no such user".into()),
            _ => {}
        }
        if let Some(mail) = &mut self.mail {
            mail.to.push(to.trim_matches(['<', '>']).to_string());
        }
        response::OK
    }

    fn data_start(&mut self, _: &str, _: &str, _: bool, _: &[String]) -> Response {
        match self.reply {
            SmtpReply::TempFailData => Response::custom(451, "try later".into()),
            _ => response::OK,
        }
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if let Some(mail) = &mut self.mail {
            mail.data.extend_from_slice(buf);
        }
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        if let Some(mail) = self.mail.take() {
            lock(&self.state).mails.push(mail);
        }
        response::OK
    }

    fn auth_plain(&mut self, _authz: &str, user: &str, password: &str) -> Response {
        self.check_login(user, password)
    }

    fn auth_login(&mut self, user: &str, password: &str) -> Response {
        self.check_login(user, password)
    }
}

impl SinkHandler {
    fn check_login(&mut self, user: &str, password: &str) -> Response {
        let mut state = lock(&self.state);
        let accepted = state
            .credentials
            .as_ref()
            .is_some_and(|(u, p)| u == user && p == password);
        state.logins.push((user.into(), password.into(), accepted));
        if accepted {
            response::AUTH_OK
        } else {
            response::INVALID_CREDENTIALS
        }
    }
}

/// One SMTP session over a plaintext connection that offers AUTH PLAIN and
/// LOGIN (mailin-embedded only offers AUTH after STARTTLS).
fn serve_plaintext_auth(stream: TcpStream, handler: SinkHandler) -> std::io::Result<()> {
    let mut builder = mailin::SessionBuilder::new("interim-test-sink");
    builder
        .enable_auth(AuthMechanism::Plain)
        .enable_auth(AuthMechanism::Login)
        .insecure_enable_plaintext_auth();
    let mut session = builder.build(stream.peer_addr()?.ip(), handler);
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = BufWriter::new(stream);
    session.greeting().write_to(&mut writer)?;
    writer.flush()?;
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let reply = session.process(&line);
        if reply.action != Action::NoReply {
            reply.write_to(&mut writer)?;
            writer.flush()?;
        }
        if matches!(reply.action, Action::Close | Action::UpgradeTls) {
            return Ok(());
        }
    }
}

/// A real SMTP server (mailin-embedded) on 127.0.0.1 that records messages.
pub struct SmtpSink {
    port: u16,
    state: Arc<Mutex<SinkState>>,
}

impl SmtpSink {
    /// A sink that accepts every message.
    pub fn start() -> Self {
        Self::scripted(&[], SmtpReply::Accept)
    }

    /// Answers the first transactions from `script`, all later ones with `then`.
    pub fn scripted(script: &[SmtpReply], then: SmtpReply) -> Self {
        let sink = Self::reserve(script, then);
        sink.serve();
        sink
    }

    /// A sink that accepts only clients authenticating (AUTH PLAIN or LOGIN,
    /// without TLS) as `user` with `password`.
    pub fn with_auth(user: &str, password: &str) -> Self {
        let sink = Self::reserve(&[], SmtpReply::Accept);
        lock(&sink.state).credentials = Some((user.into(), password.into()));
        sink.serve();
        sink
    }

    /// Picks a port but does not listen yet (the server is "down"); see [`Self::serve`].
    pub fn reserve(script: &[SmtpReply], then: SmtpReply) -> Self {
        let script = script.iter().copied().collect();
        let state = SinkState {
            script,
            then,
            mails: Vec::new(),
            transactions: 0,
            credentials: None,
            logins: Vec::new(),
        };
        Self {
            port: free_port(),
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// Starts serving on the chosen port ("up").
    pub fn serve(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).expect("bind the SMTP port");
        let handler = SinkHandler {
            state: self.state.clone(),
            reply: SmtpReply::Accept,
            mail: None,
        };
        if lock(&self.state).credentials.is_some() {
            thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    let handler = handler.clone();
                    thread::spawn(move || serve_plaintext_auth(stream, handler));
                }
            });
            return;
        }
        thread::spawn(move || {
            let mut server = Server::new(handler);
            // Pooled client connections each hold a thread: keep plenty.
            server.with_num_threads(32).with_tcp_listener(listener);
            if let Err(e) = server.serve() {
                eprintln!("SMTP sink stopped: {e}");
            }
        });
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn mails(&self) -> Vec<ReceivedMail> {
        lock(&self.state).mails.clone()
    }

    pub fn mails_to(&self, address: &str) -> Vec<ReceivedMail> {
        let mails = self.mails().into_iter();
        mails
            .filter(|m| m.to.iter().any(|t| t == address))
            .collect()
    }

    /// SMTP transactions started (MAIL FROM), accepted or not.
    pub fn transactions(&self) -> usize {
        lock(&self.state).transactions
    }

    /// Every AUTH attempt as (user, password, accepted).
    pub fn logins(&self) -> Vec<(String, String, bool)> {
        lock(&self.state).logins.clone()
    }
}
