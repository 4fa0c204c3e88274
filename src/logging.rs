//! Logs go to stderr: text on a terminal, JSON otherwise (or as
//! `daemon.log_format` says), filtered by `INTERIM_LOG` (default `info`).
//! A closed stderr, or a full non-blocking one, loses log lines, never
//! the work.

use std::io::{self, IsTerminal, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// How log lines are written: `auto` is JSON unless stderr is a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Auto,
    Text,
    Json,
}

pub fn init(format: LogFormat) {
    init_with_default(format, "info");
}

/// Like [`init`], with another filter when `INTERIM_LOG` is unset.
pub fn init_with_default(format: LogFormat, default_filter: &str) {
    let mut filter =
        EnvFilter::try_from_env("INTERIM_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    // sqlx logs a connect URL's unknown parameters with their values: with
    // a password that holds an `&`, pieces of it.
    if let Ok(quiet) = "sqlx_postgres::options=error".parse() {
        filter = filter.add_directive(quiet);
    }
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(LossyStderr)
        // tracing-subscriber reports a failed write with `eprintln!`,
        // which panics when stderr is closed.
        .log_internal_errors(false)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.with_target(false).try_init()
    };
}

/// Stderr whose writes never fail: when the reader went away (EPIPE) or a
/// non-blocking pipe is full (EAGAIN), the line is dropped and the task
/// that logged carries on.
#[derive(Clone, Copy, Debug, Default)]
pub struct LossyStderr;

impl MakeWriter<'_> for LossyStderr {
    type Writer = LossyStderr;

    fn make_writer(&self) -> Self::Writer {
        LossyStderr
    }
}

impl Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // One call per event: the line goes out whole or stops where a write failed.
        let _ = io::stderr().lock().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = io::stderr().flush();
        Ok(())
    }
}

/// The most characters of a value from outside (ticket data, a server's
/// reply) that a log line shows.
pub const MAX_OUTSIDE_CHARS: usize = 200;

/// A value from outside as a log line shows it: at most
/// [`MAX_OUTSIDE_CHARS`] characters, with the original length when cut
/// (`…(10240 chars)`), control characters escaped so that it cannot start
/// a line of its own.
pub fn outside(text: &str) -> String {
    clip(text, MAX_OUTSIDE_CHARS)
}

/// [`outside`] with another limit (for our own text around such values).
pub fn clip(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut total = 0usize;
    for c in text.chars() {
        total += 1;
        if total > max {
            continue;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if total > max {
        out.push_str(&format!("…({total} chars)"));
    }
    out
}

/// A mail address as info lines show it: `a***@example.com`. Anything
/// that is not an address (a webhook URL, an outbox path) stays as it is.
pub fn mask_address(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) if !address.contains(['/', '\\']) => {
            let first = local.chars().next().map(String::from).unwrap_or_default();
            outside(&format!("{first}***@{domain}"))
        }
        _ => outside(address),
    }
}

/// `text` with every occurrence of `address` masked ([`mask_address`]).
pub fn mask_address_in(text: &str, address: &str) -> String {
    if address.is_empty() || !address.contains('@') {
        return text.to_owned();
    }
    let masked = mask_address(address);
    let lower = address.to_lowercase();
    text.replace(address, &masked).replace(&lower, &masked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_clipped_with_their_length() {
        let zone = "x".repeat(10_240);
        let shown = outside(&zone);
        assert_eq!(shown, format!("{}…(10240 chars)", "x".repeat(200)));
        assert_eq!(outside("Europe/Berlin"), "Europe/Berlin");
        assert_eq!(outside("a\nINFO forged"), "a\\nINFO forged");
    }

    #[test]
    fn addresses_are_masked_to_their_first_letter_and_domain() {
        assert_eq!(mask_address("alice@example.com"), "a***@example.com");
        assert_eq!(
            mask_address("https://hooks.example/x"),
            "https://hooks.example/x"
        );
        assert_eq!(
            mask_address_in(
                "550 5.1.1 <Alice@Example.com>: unknown",
                "Alice@Example.com"
            ),
            "550 5.1.1 <A***@Example.com>: unknown"
        );
    }
}
