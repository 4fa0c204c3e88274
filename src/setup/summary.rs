//! The config in force in a few lines, as `check-config` prints it and
//! the status page's `/config` shows it: no secret, URLs redacted.

use std::fmt::Write as _;

use super::Config;
use crate::config::ChannelKind;

/// The summary of `config`.
pub fn summary(config: &Config) -> String {
    let s = &config.settings;
    let mut out = String::new();
    let _ = writeln!(out, "configuration OK: {}", config.path.display());
    let _ = writeln!(
        out,
        "  source:    {} {} (poll every {})",
        if s.source.http.is_some() {
            "http"
        } else {
            "sql"
        },
        s.source.url,
        crate::clock::human_duration(s.daemon.poll_interval)
    );
    let _ = writeln!(out, "  store:     {}", s.store.url);
    let _ = writeln!(out, "  policies:  {}", s.policies.len());
    for p in &s.policies {
        let repeat = match p.repeat_every {
            Some(r) => format!(
                ", every {} up to {} notices",
                crate::clock::human_duration(r),
                p.max_notices
            ),
            None => ", one notice".into(),
        };
        let mut window = match (&p.window.calendar, &p.window.send_at) {
            (Some(c), Some(cron)) => format!(", in calendar {} at \"{}\"", c.name, cron.expression),
            (Some(c), None) => format!(", in calendar {}", c.name),
            (None, Some(cron)) => format!(", at \"{}\" ({})", cron.expression, cron.timezone),
            (None, None) => String::new(),
        };
        if p.window.customer_local.is_some() && !window.is_empty() {
            window.push_str(" in the customer's zone");
        }
        let _ = writeln!(
            out,
            "    {:<24} after {}{repeat}{window} -> {} / {}{}",
            p.name,
            crate::clock::human_duration(p.after),
            p.channel,
            p.template,
            if p.continue_matching {
                " (continue)"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(out, "  channels:  {}", s.channels.len());
    for (name, c) in &s.channels {
        let target = match &c.kind {
            ChannelKind::Email(e) => format!("{}:{}", e.host, e.port),
            ChannelKind::Webhook(w) => w.url.redacted(),
            ChannelKind::File(f) => f.path.display().to_string(),
        };
        let _ = writeln!(
            out,
            "    {:<24} {} {} (concurrency {})",
            name,
            c.kind.name(),
            target,
            c.concurrency
        );
    }
    if !s.calendars.is_empty() {
        let _ = writeln!(out, "  calendars: {}", s.calendars.len());
        for (name, c) in &s.calendars {
            let open_days = c.hours.iter().filter(|d| !d.is_empty()).count();
            let _ = writeln!(
                out,
                "    {:<24} {}, {} working days a week, {} holidays",
                name,
                c.timezone,
                open_days,
                c.holidays.len()
            );
        }
    }
    let mut templates: Vec<&str> = s.policies.iter().map(|p| p.template.as_str()).collect();
    templates.sort_unstable();
    templates.dedup();
    let _ = writeln!(out, "  templates: {}", s.templates_dir.display());
    for t in templates {
        let _ = writeln!(
            out,
            "    {:<24} languages: {}",
            t,
            config.templates.languages(t).join(", ")
        );
    }
    let _ = writeln!(
        out,
        "  default language: {}, time zone: {}",
        s.daemon.default_language, s.daemon.timezone
    );
    if s.daemon.dry_run {
        let _ = writeln!(out, "  DRY RUN: notices are recorded, nothing is sent");
    }
    for w in &s.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}
