//! One attempt at a claimed notice that passed its checks, in three steps:
//! render it, send it (or, in a dry run, only say so), and record what the
//! attempt came to. The steps meet in [`Attempt`], so that what is
//! recorded is decided in one place, and logged where the cause is known.

use chrono::{DateTime, Utc};
use tracing::{error, info, warn};

use super::deliver::{shown, shown_in};
use super::{Claim, Dispatcher, Live};
use crate::channels::{DeliveryError, Outgoing, Refusal};
use crate::ledger::DeliveryLedger;
use crate::notice::{Status, truncate_millis};
use crate::policy::Policy;
use crate::retry::{RetryDecision, decide};
use crate::templates::{Message, NoticeFacts};
use crate::ticket::Ticket;

/// What one attempt came to, before it is recorded.
enum Attempt {
    /// Sent, or a dry run's "would send": the series goes on.
    Done {
        status: Status,
        next_notice_at: Option<DateTime<Utc>>,
    },
    /// No further attempt: it cannot be rendered, the receiver refused it
    /// for good, or the retries are spent.
    Dead { reason: String },
    /// Tried again at `at`; `send_at` is the send instant it then keeps
    /// (the next window's when the retry would miss this one).
    Retry {
        at: DateTime<Utc>,
        send_at: DateTime<Utc>,
        reason: String,
    },
    /// The channel was removed by a reload after the claim: the claim goes
    /// back and the next one finds the notice's channel.
    Release,
}

impl<L: DeliveryLedger + 'static> Dispatcher<L> {
    /// Renders, sends and records one notice for `ticket` as it is now.
    pub(super) async fn render_and_send(
        &self,
        live: &Live,
        policy: &Policy,
        claim: &Claim,
        ticket: &Ticket,
    ) -> anyhow::Result<()> {
        // The spacing reference of this notice: when its attempt started.
        let attempt_started = self.clock.now();
        let next_notice_at = policy.next_notice_at(
            ticket.waiting_since,
            claim.number,
            claim.max_notices,
            attempt_started,
        );
        let attempt = match render(live, policy, claim, ticket, attempt_started, next_notice_at) {
            Err(reason) => Attempt::Dead { reason },
            Ok(message) if claim.dry_run => {
                info!(channel = %claim.channel, recipient = %shown(claim.recipient.as_deref().unwrap_or("")), subject = %crate::logging::outside(&message.subject), "dry run: would send");
                Attempt::Done {
                    status: Status::DryRun,
                    next_notice_at,
                }
            }
            Ok(message) => {
                self.send(
                    live,
                    policy,
                    claim,
                    ticket,
                    &message,
                    attempt_started,
                    next_notice_at,
                )
                .await?
            }
        };
        self.record(live, policy, claim, ticket, attempt_started, attempt)
            .await
    }

    /// Sends the message on the claim's channel and says what came of it
    /// (an auto-suppression is written here, with the refusal at hand).
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        live: &Live,
        policy: &Policy,
        claim: &Claim,
        ticket: &Ticket,
        message: &Message,
        attempt_started: DateTime<Utc>,
        next_notice_at: Option<DateTime<Utc>>,
    ) -> anyhow::Result<Attempt> {
        let settings = &live.config.settings;
        let Some(channel) = live.channels.get(&claim.channel) else {
            return Ok(Attempt::Release);
        };
        let state_for_customer =
            crate::templates::state_for_customer(settings, ticket, &message.language);
        let outgoing = Outgoing {
            notice_id: &claim.id,
            policy: &claim.policy,
            number: claim.number,
            max: claim.max_notices,
            ticket,
            state_for_customer: &state_for_customer,
            due_at: claim.due_at,
            next_notice_at,
            waited_seconds: attempt_started
                .signed_duration_since(ticket.waiting_since)
                .num_seconds(),
            message,
        };
        let clock = std::time::Instant::now();
        let result = channel.send(&outgoing).await;
        metrics::histogram!("interim_delivery_duration_seconds", "channel" => claim.channel.clone()).record(clock.elapsed().as_secs_f64());
        let label = match &result {
            Ok(()) => "ok",
            Err(e) => e.kind(),
        };
        metrics::counter!("interim_delivery_attempts_total", "channel" => claim.channel.clone(), "result" => label).increment(1);
        let finished = self.clock.now();
        let recipient = claim.recipient.as_deref().unwrap_or("");
        Ok(match result {
            Ok(()) => {
                let lag = finished
                    .signed_duration_since(claim.send_at)
                    .num_milliseconds()
                    .max(0) as f64
                    / 1000.0;
                metrics::histogram!("interim_notice_lag_seconds", "channel" => claim.channel.clone()).record(lag);
                info!(channel = %claim.channel, recipient = %shown(recipient), attempt = claim.attempts + 1, "notice sent");
                Attempt::Done {
                    status: Status::Sent,
                    next_notice_at,
                }
            }
            Err(DeliveryError::Permanent { reason, refusal }) => {
                match refusal {
                    Refusal::EndpointGone => {
                        error!(channel = %claim.channel, error = %reason, "webhook endpoint is gone (HTTP 410): fix channels.{}.url", claim.channel);
                        metrics::counter!("interim_webhook_gone_total", "channel" => claim.channel.clone()).increment(1);
                    }
                    Refusal::RecipientRejected if live.suppressor.auto() => {
                        if let Some(recipient) = &claim.recipient {
                            warn!(recipient = %shown(recipient), error = %shown_in(&reason, recipient), "recipient rejected permanently; later notices to it are suppressed");
                            self.ledger
                                .suppress(recipient, &reason, "auto", finished)
                                .await?;
                        }
                    }
                    _ => {
                        warn!(channel = %claim.channel, error = %shown_in(&reason, recipient), "permanent delivery failure; notice is dead")
                    }
                }
                Attempt::Dead { reason }
            }
            Err(DeliveryError::Retryable {
                reason,
                retry_after,
            }) => {
                let attempts = claim.attempts.saturating_add(1);
                let first = claim.first_attempt_at.unwrap_or(attempt_started);
                let decision = match settings.channels.get(&claim.channel) {
                    Some(c) => decide(&c.retry, attempts, first, finished, retry_after),
                    None => RetryDecision::GiveUp("the channel is no longer configured".into()),
                };
                match decision {
                    RetryDecision::RetryAt(at) => {
                        // A retry inside the notice's window goes out then;
                        // one that would miss it waits for the next window.
                        let (at, send_at) = if policy.window.still_sendable(claim.send_at, at) {
                            (at, claim.send_at)
                        } else {
                            let next = policy.window.first_send_instant(at).unwrap_or(at);
                            (next, next)
                        };
                        warn!(channel = %claim.channel, error = %shown_in(&reason, recipient), attempt = attempts, retry_at = %crate::clock::rfc3339(at), "delivery failed; will retry");
                        Attempt::Retry {
                            at,
                            send_at,
                            reason,
                        }
                    }
                    RetryDecision::GiveUp(why) => {
                        let reason = format!("{reason}; {why}");
                        error!(channel = %claim.channel, error = %shown_in(&reason, recipient), "retries exhausted; notice is dead");
                        Attempt::Dead { reason }
                    }
                }
            }
        })
    }

    /// Writes what the attempt came to: a finished notice with its series'
    /// next one, a retry, or the claim given back.
    async fn record(
        &self,
        live: &Live,
        policy: &Policy,
        claim: &Claim,
        ticket: &Ticket,
        attempt_started: DateTime<Utc>,
        attempt: Attempt,
    ) -> anyhow::Result<()> {
        match attempt {
            Attempt::Done {
                status,
                next_notice_at,
            } => {
                self.finish(
                    live,
                    policy,
                    claim,
                    Some(ticket),
                    status,
                    attempt_started,
                    next_notice_at,
                    None,
                )
                .await
            }
            Attempt::Dead { reason } => {
                self.finish(
                    live,
                    policy,
                    claim,
                    Some(ticket),
                    Status::Dead,
                    attempt_started,
                    None,
                    Some(&reason),
                )
                .await
            }
            Attempt::Retry {
                at,
                send_at,
                reason,
            } => {
                let reason = reason.as_str();
                self.persist(claim, |n| async move {
                    self.ledger
                        .record_retry(&n, attempt_started, at, truncate_millis(send_at), reason)
                        .await
                })
                .await
            }
            Attempt::Release => {
                self.persist(claim, |n| async move {
                    self.ledger.release(&n, None, None, None).await
                })
                .await
            }
        }
    }
}

/// The message for this attempt, or why the notice cannot have one.
fn render(
    live: &Live,
    policy: &Policy,
    claim: &Claim,
    ticket: &Ticket,
    now: DateTime<Utc>,
    next_notice_at: Option<DateTime<Utc>>,
) -> Result<Message, String> {
    let facts = NoticeFacts {
        ticket,
        policy,
        notice_id: &claim.id,
        number: claim.number,
        now,
        due_at: claim.due_at,
        next_notice_at,
    };
    live.config
        .templates
        .render(&live.config.settings, &facts)
        .map_err(|e| {
            let reason = format!("template {} failed to render: {e}", policy.template);
            error!(error = %crate::logging::clip(&reason, 1000), "notice is dead");
            reason
        })
}
