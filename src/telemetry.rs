//! Metrics: one Prometheus recorder for the process (metrics crate), every
//! name prefixed `interim_`, rendered by the admin endpoint's `/metrics`.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder once and returns its handle (None only if another
/// recorder was installed first, e.g. by an embedding program).
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let seconds = [
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                900.0, 3600.0,
            ];
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)
                .ok()?
                .install_recorder()
                .ok()?;
            describe();
            Some(handle)
        })
        .clone()
}

/// Histogram upkeep (the exporter needs it periodically).
pub async fn run_upkeep(handle: PrometheusHandle) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        handle.run_upkeep();
    }
}

fn describe() {
    describe_gauge!(
        "interim_build_info",
        "Version and git commit (empty outside a checkout) of the running interim (value is always 1)"
    );
    metrics::gauge!(
        "interim_build_info",
        "version" => env!("CARGO_PKG_VERSION"),
        "commit" => env!("INTERIM_COMMIT")
    )
    .set(1.0);
    describe_gauge!(
        "interim_tickets_tracked",
        "Waiting tickets in the latest successful poll"
    );
    describe_counter!(
        "interim_notices_total",
        "Notices that reached a status, by status, policy and channel"
    );
    describe_counter!(
        "interim_notices_planned_total",
        "Notices planned (new or rescheduled), by policy"
    );
    describe_counter!(
        "interim_promises_total",
        "Promises decided (a sent notice's next update by then), by policy and outcome (kept, superseded, broken)"
    );
    describe_counter!(
        "interim_promises_broken_total",
        "Broken promises by policy and reason (late, dead, suppressed, held_stale, held_limit, not_planned, cancelled_by_reload)"
    );
    describe_histogram!(
        "interim_promise_lateness_seconds",
        Unit::Seconds,
        "How late a promised next notice went out (0 when on time), by policy"
    );
    describe_counter!(
        "interim_waits_exhausted_total",
        "Waits whose last notice went out while the customer still waited (a human must step in), by policy"
    );
    describe_gauge!(
        "interim_waits_open",
        "Waits in progress that a policy matched, by policy"
    );
    describe_counter!(
        "interim_notices_cancelled_total",
        "Pending notices cancelled because the wait ended"
    );
    describe_counter!(
        "interim_delivery_attempts_total",
        "Delivery attempts by channel and result (ok, retryable, permanent, gone)"
    );
    describe_histogram!(
        "interim_delivery_duration_seconds",
        Unit::Seconds,
        "Duration of one delivery attempt, by channel"
    );
    describe_histogram!(
        "interim_notice_lag_seconds",
        Unit::Seconds,
        "From the planned send instant to delivery, by channel"
    );
    describe_histogram!(
        "interim_source_poll_duration_seconds",
        Unit::Seconds,
        "Duration of a successful source poll"
    );
    describe_gauge!(
        "interim_source_last_success_timestamp_seconds",
        "Unix time of the last successful poll"
    );
    describe_counter!("interim_source_poll_failures_total", "Failed source polls");
    describe_counter!(
        "interim_source_rows_skipped_total",
        "Source rows skipped for breaking the column contract, each counted once when first seen (again if it breaks again after being fixed)"
    );
    describe_counter!(
        "interim_config_reloads_total",
        "Config reloads by result (success, failure)"
    );
    describe_gauge!(
        "interim_config_last_reload_successful",
        "1 when the last reload succeeded, 0 when it was rejected"
    );
    describe_gauge!(
        "interim_snapshot_fresh",
        "1 while the last successful poll is within max_snapshot_age"
    );
    describe_counter!(
        "interim_webhook_gone_total",
        "HTTP 410 answers: the webhook endpoint is gone"
    );
    describe_gauge!(
        "interim_http_connections",
        "Open connections to the admin endpoint"
    );
    describe_counter!(
        "interim_http_connections_refused_total",
        "Admin connections closed at once because the endpoint was at its connection limit"
    );
    describe_counter!(
        "interim_http_write_refused_total",
        "Write actions (POST /-/reload) refused for want of a token or as a possible cross-site request"
    );
    describe_counter!(
        "interim_source_polls_rejected_total",
        "Polls read completely but not taken (too many rows broke the contract)"
    );
    describe_counter!(
        "interim_source_invalid_timezone_total",
        "Rows whose time zone is unknown (dates fall back to another zone)"
    );
    describe_counter!(
        "interim_source_future_updated_at_total",
        "Rows whose updated_at lies in the future (corrected to the poll's instant)"
    );
    describe_gauge!(
        "interim_poller",
        "1 while this instance is the one that polls the source"
    );
    describe_gauge!(
        "interim_notices",
        "Notices in the ledger now, by status (pending, dead)"
    );
    at_zero();
}

/// Every metric without labels, and those whose labels are fixed, start
/// at zero: a dashboard or alert sees them before their first event.
fn at_zero() {
    for name in [
        "interim_notices_cancelled_total",
        "interim_source_poll_failures_total",
        "interim_source_rows_skipped_total",
        "interim_source_polls_rejected_total",
        "interim_source_invalid_timezone_total",
        "interim_source_future_updated_at_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    for result in ["success", "failure"] {
        metrics::counter!("interim_config_reloads_total", "result" => result).increment(0);
    }
    for name in [
        "interim_tickets_tracked",
        "interim_source_last_success_timestamp_seconds",
        "interim_snapshot_fresh",
        "interim_poller",
    ] {
        metrics::gauge!(name).set(0.0);
    }
    // The config the process starts with was valid.
    metrics::gauge!("interim_config_last_reload_successful").set(1.0);
    for status in ["pending", "dead"] {
        metrics::gauge!("interim_notices", "status" => status).set(0.0);
    }
}

/// The labelled counters of a config's policies and channels, at zero
/// (again after a reload; existing values are kept).
pub fn register(settings: &crate::config::Settings) {
    for policy in &settings.policies {
        metrics::counter!("interim_notices_planned_total", "policy" => policy.name.clone())
            .increment(0);
        for status in ["sent", "dead", "suppressed"] {
            metrics::counter!("interim_notices_total", "status" => status,
                "policy" => policy.name.clone(), "channel" => policy.channel.clone())
            .increment(0);
        }
        metrics::counter!("interim_waits_exhausted_total", "policy" => policy.name.clone())
            .increment(0);
        for outcome in ["kept", "superseded", "broken"] {
            metrics::counter!("interim_promises_total",
                "policy" => policy.name.clone(), "outcome" => outcome)
            .increment(0);
        }
    }
    for (name, channel) in &settings.channels {
        let kind = match channel.kind {
            crate::config::ChannelKind::Email(_) => Some("rejected_recipient"),
            crate::config::ChannelKind::Webhook(_) => {
                metrics::counter!("interim_webhook_gone_total", "channel" => name.clone())
                    .increment(0);
                Some("gone")
            }
            _ => None,
        };
        for result in ["ok", "retryable", "permanent"].into_iter().chain(kind) {
            metrics::counter!("interim_delivery_attempts_total", "channel" => name.clone(), "result" => result)
                .increment(0);
        }
    }
}

/// Sets `interim_notices{status}` from the ledger's counts.
pub fn set_notice_counts(pending: u64, dead: u64) {
    metrics::gauge!("interim_notices", "status" => "pending").set(pending as f64);
    metrics::gauge!("interim_notices", "status" => "dead").set(dead as f64);
}
