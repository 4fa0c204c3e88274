//! One delivery: the checks before a send (still wanted, inside the send
//! window, ticket still waiting, recipient not suppressed, rate limits),
//! rendering, the send, and recording its result.

use chrono::{DateTime, Utc};
use tracing::{debug, error, info, warn};

use super::{Dispatcher, Live};
use crate::channels::{DeliveryError, Outgoing, Refusal};
use crate::config::{ChannelKind, FileFormat, Settings};
use crate::notice::{Status, truncate_millis};
use crate::policy::Policy;
use crate::retry::{RetryDecision, decide};
use crate::store::ClaimedNotice;
use crate::templates::NoticeFacts;
use crate::ticket::Ticket;

/// Whether a channel writes to the customer's address (email, or an .eml
/// outbox standing in for it): suppression and the per-recipient limit
/// apply there, not to internal webhooks.
fn addresses_customer(settings: &Settings, channel: &str) -> bool {
    settings
        .channels
        .get(channel)
        .is_some_and(|c| match &c.kind {
            ChannelKind::Email(_) => true,
            ChannelKind::File(f) => f.format == FileFormat::Eml,
            ChannelKind::Webhook(_) => false,
        })
}

impl Dispatcher {
    pub(super) async fn try_deliver(
        &self,
        live: &Live,
        notice: &ClaimedNotice,
    ) -> anyhow::Result<()> {
        let settings = &live.config.settings;
        // The claim itself is the check against the latest plan: it takes
        // only notices that are still pending, right before this send.
        let Some(policy) = settings.policies.iter().find(|p| p.name == notice.policy) else {
            // Renamed or removed: the next plan cancels it.
            self.store.release(&notice.id, None).await?;
            return Ok(());
        };
        let now = Utc::now();
        // Retries follow the send window too: never at night.
        if !policy.window.allows(now) {
            self.store
                .release(&notice.id, policy.window.first_send_instant(now))
                .await?;
            return Ok(());
        }
        let stored = match &notice.ticket {
            Ok(t) => t.clone(),
            Err(e) => {
                let reason = format!("the stored ticket cannot be read: {e}");
                return self
                    .finish(notice, Status::Dead, now, None, Some(&reason))
                    .await;
            }
        };
        let Some(ticket) = self.recheck(live, policy, notice, stored).await? else {
            return Ok(());
        };
        if let Some(rate) = live.rates.get(&notice.channel)
            && rate.check().is_err()
        {
            let wait = settings
                .channels
                .get(&notice.channel)
                .and_then(|c| c.rate)
                .map_or(1.0, |r| 1.0 / r);
            let next = now + chrono::Duration::milliseconds((wait * 1000.0) as i64);
            self.store.release(&notice.id, Some(next)).await?;
            return Ok(());
        }
        // Last check before the send: it may reserve the recipient.
        let customer = addresses_customer(settings, &notice.channel);
        if customer
            && !self
                .recipient_may_receive(live, policy, notice, now)
                .await?
        {
            return Ok(());
        }
        let result = self.render_and_send(live, policy, notice, &ticket).await;
        if let Some(recipient) = &notice.recipient {
            self.recipients_guard().remove(recipient);
        }
        result
    }

    /// With `source.recheck_query`, re-reads the ticket right before the
    /// send and cancels the notice when its wait is over. Returns the ticket
    /// to render (fresh when re-read), or None when nothing is to be sent.
    async fn recheck(
        &self,
        live: &Live,
        policy: &Policy,
        notice: &ClaimedNotice,
        stored: Ticket,
    ) -> anyhow::Result<Option<Ticket>> {
        let (Some(source), Some(query)) =
            (&live.recheck, &live.config.settings.source.recheck_query)
        else {
            return Ok(Some(stored));
        };
        let fresh = match source.recheck(query, &notice.ticket_id).await {
            Ok(fresh) => fresh,
            Err(e) => {
                // Unsure is not sent: try again shortly.
                warn!(
                    error = format!("{e:#}"),
                    "pre-send re-check failed; the notice waits"
                );
                let retry = Utc::now()
                    + chrono::Duration::from_std(live.config.settings.daemon.poll_interval)
                        .unwrap_or_default();
                self.store.release(&notice.id, Some(retry)).await?;
                return Ok(None);
            }
        };
        let reason = match &fresh {
            None => Some("the pre-send re-check found the ticket no longer waiting"),
            Some(t) if truncate_millis(t.waiting_since) != notice.episode => {
                Some("the pre-send re-check found the wait restarted")
            }
            Some(t)
                if !Policy::applicable(&live.config.settings.policies, t)
                    .iter()
                    .any(|p| p.name == policy.name) =>
            {
                Some("the pre-send re-check found the ticket no longer matching the policy")
            }
            Some(_) => None,
        };
        match reason {
            Some(reason) => {
                info!(reason, "pending notice cancelled");
                self.store.cancel(&notice.id, reason, Utc::now()).await?;
                Ok(None)
            }
            None => Ok(fresh),
        }
    }

    /// Suppression and the per-recipient limit. False when the notice is
    /// not to be sent now (it was recorded or released accordingly).
    async fn recipient_may_receive(
        &self,
        live: &Live,
        policy: &Policy,
        notice: &ClaimedNotice,
        now: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        let Some(recipient) = notice.recipient.as_deref() else {
            return Ok(true);
        };
        if let Some(reason) = live.suppressor.reason(&self.store, recipient).await? {
            info!(recipient, reason = %reason, "recipient suppressed; notice not sent");
            self.finish(notice, Status::Suppressed, now, None, Some(&reason))
                .await?;
            return Ok(false);
        }
        if let Some(interval) = live.config.settings.limits.per_recipient {
            let interval = chrono::Duration::from_std(interval).unwrap_or_default();
            if let Some(last) = self.store.last_sent_to(recipient).await?
                && last + interval > now
            {
                let next = policy
                    .window
                    .first_send_instant(last + interval)
                    .unwrap_or(last + interval);
                debug!(recipient, next = %crate::channels::rfc3339(next), "held by limits.per_recipient");
                self.store.release(&notice.id, Some(next)).await?;
                return Ok(false);
            }
            // Two notices to one address never go out side by side.
            if !self.recipients_guard().insert(recipient.to_owned()) {
                self.store
                    .release(&notice.id, Some(now + chrono::Duration::seconds(1)))
                    .await?;
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn render_and_send(
        &self,
        live: &Live,
        policy: &Policy,
        notice: &ClaimedNotice,
        ticket: &Ticket,
    ) -> anyhow::Result<()> {
        let settings = &live.config.settings;
        let attempt_started = Utc::now();
        let next_notice_at = policy.next_notice_at(
            ticket.waiting_since,
            notice.number,
            notice.max_notices,
            attempt_started,
        );
        let facts = NoticeFacts {
            ticket,
            policy,
            notice_id: &notice.id,
            number: notice.number,
            now: attempt_started,
            due_at: notice.due_at,
            next_notice_at,
        };
        let message = match live.config.templates.render(settings, &facts) {
            Ok(m) => m,
            Err(e) => {
                let reason = format!("template {} failed to render: {e}", policy.template);
                error!(error = %reason, "notice is dead");
                return self
                    .finish(notice, Status::Dead, attempt_started, None, Some(&reason))
                    .await;
            }
        };
        if notice.dry_run {
            info!(channel = %notice.channel, recipient = notice.recipient.as_deref().unwrap_or(""), subject = %message.subject, "dry run: would send");
            return self
                .finish(
                    notice,
                    Status::DryRun,
                    attempt_started,
                    next_notice_at,
                    None,
                )
                .await;
        }
        let Some(channel) = live.channels.get(&notice.channel) else {
            self.store.release(&notice.id, None).await?;
            return Ok(());
        };
        let state_for_customer =
            crate::templates::state_for_customer(settings, ticket, &message.language);
        let outgoing = Outgoing {
            notice_id: &notice.id,
            policy: &notice.policy,
            number: notice.number,
            max: notice.max_notices,
            ticket,
            state_for_customer: &state_for_customer,
            due_at: notice.due_at,
            next_notice_at,
            waited_seconds: (attempt_started - ticket.waiting_since).num_seconds(),
            message: &message,
        };
        let clock = std::time::Instant::now();
        let result = channel.send(&outgoing).await;
        metrics::histogram!("interim_delivery_duration_seconds", "channel" => notice.channel.clone()).record(clock.elapsed().as_secs_f64());
        let label = match &result {
            Ok(()) => "ok",
            Err(e) => e.kind(),
        };
        metrics::counter!("interim_delivery_attempts_total", "channel" => notice.channel.clone(), "result" => label).increment(1);
        match result {
            Ok(()) => {
                let lag = (Utc::now() - notice.send_at).num_milliseconds().max(0) as f64 / 1000.0;
                metrics::histogram!("interim_notice_lag_seconds", "channel" => notice.channel.clone()).record(lag);
                info!(channel = %notice.channel, recipient = notice.recipient.as_deref().unwrap_or(""), attempt = notice.attempts + 1, "notice sent");
                self.finish(notice, Status::Sent, attempt_started, next_notice_at, None)
                    .await
            }
            Err(DeliveryError::Permanent { reason, refusal }) => {
                match refusal {
                    Refusal::EndpointGone => {
                        error!(channel = %notice.channel, error = %reason, "webhook endpoint is gone (HTTP 410): fix channels.{}.url", notice.channel);
                        metrics::counter!("interim_webhook_gone_total", "channel" => notice.channel.clone()).increment(1);
                    }
                    Refusal::RecipientRejected if live.suppressor.auto() => {
                        if let Some(recipient) = &notice.recipient {
                            warn!(recipient, error = %reason, "recipient rejected permanently; later notices to it are suppressed");
                            self.store
                                .suppress(recipient, &reason, "auto", Utc::now())
                                .await?;
                        }
                    }
                    _ => {
                        warn!(channel = %notice.channel, error = %reason, "permanent delivery failure; notice is dead")
                    }
                }
                self.finish(notice, Status::Dead, attempt_started, None, Some(&reason))
                    .await
            }
            Err(DeliveryError::Retryable {
                reason,
                retry_after,
            }) => {
                let attempts = notice.attempts + 1;
                let first = notice.first_attempt_at.unwrap_or(attempt_started);
                let decision = match settings.channels.get(&notice.channel) {
                    Some(c) => decide(&c.retry, attempts, first, Utc::now(), retry_after),
                    None => RetryDecision::GiveUp("the channel is no longer configured".into()),
                };
                match decision {
                    RetryDecision::RetryAt(at) => {
                        let at = policy.window.first_send_instant(at).unwrap_or(at);
                        warn!(channel = %notice.channel, error = %reason, attempt = attempts, retry_at = %crate::channels::rfc3339(at), "delivery failed; will retry");
                        self.persist(notice, || {
                            self.store
                                .record_retry(notice, attempt_started, at, &reason)
                        })
                        .await
                    }
                    RetryDecision::GiveUp(why) => {
                        let reason = format!("{reason}; {why}");
                        error!(channel = %notice.channel, error = %reason, "retries exhausted; notice is dead");
                        self.finish(notice, Status::Dead, attempt_started, None, Some(&reason))
                            .await
                    }
                }
            }
        }
    }

    /// Writes a result, retrying while the store cannot be written (locked,
    /// disk full) and holding the send slot meanwhile: no further notice of
    /// this slot goes out while a result is unrecorded. Gives up when the
    /// claim's lease would end (then the notice is tried again, same id).
    async fn persist<F, Fut>(&self, notice: &ClaimedNotice, write: F) -> anyhow::Result<()>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>>,
    {
        let lease = self.live().config.settings.store.claim_lease;
        let deadline = std::time::Instant::now() + lease;
        let mut wait = std::time::Duration::from_millis(200);
        loop {
            match write().await {
                Ok(()) => return Ok(()),
                Err(e) if std::time::Instant::now() + wait < deadline => {
                    warn!(error = format!("{e:#}"), notice.id = %notice.id, "cannot record a result yet; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(std::time::Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub(super) async fn finish(
        &self,
        notice: &ClaimedNotice,
        status: Status,
        attempt_started: DateTime<Utc>,
        next_notice_at: Option<DateTime<Utc>>,
        error: Option<&str>,
    ) -> anyhow::Result<()> {
        let finished = Utc::now();
        self.persist(notice, || {
            self.store.record_done(
                notice,
                status,
                attempt_started,
                finished,
                next_notice_at,
                error,
            )
        })
        .await?;
        metrics::counter!("interim_notices_total", "status" => status.as_str(), "policy" => notice.policy.clone(), "channel" => notice.channel.clone()).increment(1);
        Ok(())
    }
}
