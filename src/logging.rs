//! Logs go to stderr: text on a terminal, JSON otherwise (or as
//! `daemon.log_format` says), filtered by `INTERIM_LOG` (default `info`).
//! A closed stderr, or a full non-blocking one, loses log lines, never
//! the work.

use std::io::{self, IsTerminal, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;

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
