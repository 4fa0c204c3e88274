//! One delivery: the checks before a send (the policy still wants it, the
//! send window is open, the ticket still waits, the recipient may receive
//! it, the rate limits), then the attempt (`attempt.rs`), and recording a
//! result together with the series' next notice.

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Claim, Dispatcher, Live};
use crate::config::{ChannelKind, FileFormat, Settings};
use crate::ledger::{ClaimedNotice, DeliveryLedger, Outcome, Recorded};
use crate::notice::{Status, truncate_millis};
use crate::planner::{self, PlannedNotice, SeriesPlan, SeriesState, TicketFacts};
use crate::policy::Policy;
use crate::promise::Hold;
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

/// A recipient as info and warn lines show it: `a***@example.com`, in
/// full only when debug logging is on.
pub(super) fn shown(recipient: &str) -> String {
    if tracing::enabled!(tracing::Level::DEBUG) {
        crate::logging::outside(recipient)
    } else {
        crate::logging::mask_address(recipient)
    }
}

/// `text` (a server's reply, a suppression reason) with `recipient` in it
/// shown as [`shown`] shows it.
pub(super) fn shown_in(text: &str, recipient: &str) -> String {
    if tracing::enabled!(tracing::Level::DEBUG) {
        text.to_owned()
    } else {
        crate::logging::mask_address_in(text, recipient)
    }
}

/// How long a notice whose window never opens waits before it is looked
/// at again (a configuration mistake that `check-config` reports).
const NO_WINDOW_RETRY: chrono::Duration = chrono::Duration::hours(1);

impl<L: DeliveryLedger + 'static> Dispatcher<L> {
    /// The checks before the send, at `now` (the claim's instant), then the
    /// send. The claim itself is the check against the latest plan: it
    /// takes only notices that are still pending, right before this send.
    pub(super) async fn try_deliver(
        &self,
        live: &Live,
        claim: &Claim,
        now: DateTime<Utc>,
        lost: &CancellationToken,
    ) -> anyhow::Result<()> {
        let settings = &live.config.settings;
        let Some(policy) = settings.policies.iter().find(|p| p.name == claim.policy) else {
            let reason = format!("policy {} is no longer configured", claim.policy);
            info!(reason, "pending notice cancelled");
            return self.cancel(claim, &reason, now).await;
        };
        if claim.number > policy.max_notices {
            let reason = format!(
                // Names the key, so the reason in the ledger leads to the
                // config change that caused it (issue 10, item 4).
                "policy {name} now sends at most {max} notice(s) (max_notices = {max})",
                name = policy.name,
                max = policy.max_notices
            );
            info!(reason, "pending notice cancelled");
            return self.cancel(claim, &reason, now).await;
        }
        // A customer-local window is read in the zone of the ticket the
        // notice was planned with, as the planner placed it.
        let policy = &*match &claim.ticket {
            Ok(t) => policy.for_ticket(t),
            Err(_) => std::borrow::Cow::Borrowed(policy),
        };
        // Attempts, first or retry, go out only inside the send window: a
        // notice held past its slot (an outage) waits for the next one.
        if !policy.window.still_sendable(claim.send_at, now) {
            let next = policy.window.first_send_instant(now);
            let at = next.unwrap_or(now + NO_WINDOW_RETRY);
            debug!(next = %crate::clock::rfc3339(at), "outside the send window; held for the next one");
            self.persist(claim, |n| async move {
                self.ledger
                    .release(&n, Some(at), next.map(truncate_millis), None)
                    .await
            })
            .await?;
            return Ok(());
        }
        let stored = match &claim.ticket {
            Ok(t) => t.clone(),
            Err(e) => {
                let reason = format!("the stored ticket cannot be read: {e}");
                return self
                    .finish(
                        live,
                        policy,
                        claim,
                        None,
                        Status::Dead,
                        now,
                        None,
                        Some(&reason),
                    )
                    .await;
            }
        };
        let Some(ticket) = self.recheck(live, policy, claim, stored, now).await? else {
            return Ok(());
        };
        if let Some(rate) = live.rates.get(&claim.channel)
            && rate.check().is_err()
        {
            let wait = settings
                .channels
                .get(&claim.channel)
                .and_then(|c| c.rate)
                .map_or(1.0, |r| 1.0 / r);
            // A rate far below one a second must not overflow the instant.
            let next = chrono::Duration::try_milliseconds((wait.min(86_400.0) * 1000.0) as i64)
                .and_then(|d| now.checked_add_signed(d))
                .unwrap_or(now);
            self.persist(claim, |n| async move {
                self.ledger
                    .release(&n, Some(next), None, Some(Hold::Limit))
                    .await
            })
            .await?;
            return Ok(());
        }
        // Last check before the send: it may reserve the recipient.
        let customer = addresses_customer(settings, &claim.channel);
        if customer
            && !self
                .recipient_may_receive(live, policy, claim, &ticket, now)
                .await?
        {
            return Ok(());
        }
        let result = if lost.is_cancelled() {
            // Taken over or cancelled while we checked: not ours to send.
            Ok(())
        } else {
            self.render_and_send(live, policy, claim, &ticket).await
        };
        if let Some(recipient) = &claim.recipient {
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
        claim: &Claim,
        stored: Ticket,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<Ticket>> {
        let (Some(source), Some(query)) =
            (&live.recheck, &live.config.settings.source.recheck_query)
        else {
            return Ok(Some(stored));
        };
        let fresh = match source.recheck(query, &claim.ticket_id).await {
            Ok(fresh) => fresh,
            Err(e) => {
                // Unsure is not sent: try again shortly.
                warn!(
                    error = format!("{e:#}"),
                    "pre-send re-check failed; the notice waits"
                );
                let retry = now
                    + chrono::Duration::from_std(live.config.settings.daemon.poll_interval)
                        .unwrap_or(chrono::Duration::minutes(1));
                self.persist(claim, |n| async move {
                    self.ledger.release(&n, Some(retry), None, None).await
                })
                .await?;
                return Ok(None);
            }
        };
        let reason = Policy::recheck_verdict(
            &live.config.settings.policies,
            Some(&policy.name),
            claim.episode,
            fresh.as_ref(),
        );
        match reason {
            Some(reason) => {
                info!(reason, "pending notice cancelled");
                self.cancel(claim, reason, now).await?;
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
        claim: &Claim,
        ticket: &Ticket,
        now: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        let Some(recipient) = claim.recipient.as_deref() else {
            return Ok(true);
        };
        if let Some(reason) = live.suppressor.reason(&self.ledger, recipient).await? {
            info!(recipient = %shown(recipient), reason = %shown_in(&reason, recipient), "recipient suppressed; notice not sent");
            self.finish(
                live,
                policy,
                claim,
                Some(ticket),
                Status::Suppressed,
                now,
                None,
                Some(&reason),
            )
            .await?;
            return Ok(false);
        }
        if let Some(interval) = live.config.settings.limits.per_recipient {
            let interval = chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::MAX);
            if let Some(last) = self.ledger.last_sent_to(recipient).await?
                && let Some(free_at) = last.checked_add_signed(interval)
                && free_at > now
            {
                let next = policy.window.first_send_instant(free_at);
                debug!(recipient, next = %crate::clock::rfc3339(next.unwrap_or(free_at)), "held by limits.per_recipient");
                self.persist(claim, |n| async move {
                    self.ledger
                        .release(
                            &n,
                            Some(next.unwrap_or(free_at)),
                            next.map(truncate_millis),
                            Some(Hold::Limit),
                        )
                        .await
                })
                .await?;
                return Ok(false);
            }
            // Two notices to one address never go out side by side.
            if !self.recipients_guard().insert(recipient.to_owned()) {
                self.persist(claim, |n| async move {
                    self.ledger
                        .release(
                            &n,
                            Some(now + chrono::Duration::seconds(1)),
                            None,
                            Some(Hold::Limit),
                        )
                        .await
                })
                .await?;
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Writes a result, retrying while the store cannot be written (locked,
    /// disk full) and holding the send slot meanwhile: no further notice of
    /// this slot goes out while a result is unrecorded. A fenced write (the
    /// claim was taken over) is final: the other holder records.
    pub(super) async fn persist<F, Fut>(&self, claim: &Claim, write: F) -> anyhow::Result<()>
    where
        F: Fn(ClaimedNotice) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Recorded>>,
    {
        let mut wait = std::time::Duration::from_millis(200);
        loop {
            match write(claim.current()).await {
                Ok(Recorded::Done) => return Ok(()),
                Ok(Recorded::Fenced) => {
                    warn!(notice.id = %claim.id, "the claim of this notice was taken over or the notice changed meanwhile; this instance's result is not recorded");
                    return Ok(());
                }
                Err(e) => {
                    warn!(error = format!("{e:#}"), notice.id = %claim.id, "cannot record a result yet; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(std::time::Duration::from_secs(5));
                }
            }
        }
    }

    async fn cancel(&self, claim: &Claim, reason: &str, now: DateTime<Utc>) -> anyhow::Result<()> {
        self.persist(claim, |n| async move {
            self.ledger.cancel_claimed(&n, reason, now).await
        })
        .await
    }

    /// Records the end of a notice and plans the next one of its series at
    /// once, from the ticket it was rendered for: a repeat never waits for
    /// a poll to see the ticket again.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn finish(
        &self,
        live: &Live,
        policy: &Policy,
        claim: &Claim,
        ticket: Option<&Ticket>,
        status: Status,
        attempt_started: DateTime<Utc>,
        next_notice_at: Option<DateTime<Utc>>,
        error: Option<&str>,
    ) -> anyhow::Result<()> {
        let finished = self.clock.now().max(attempt_started);
        let next = match ticket {
            Some(ticket) => {
                self.plan_next(
                    live,
                    policy,
                    claim,
                    ticket,
                    status,
                    attempt_started,
                    finished,
                )
                .await?
            }
            None => None,
        };
        let outcome = Outcome {
            status,
            attempt_started,
            finished,
            next_notice_at,
            error,
        };
        let (outcome, next) = (&outcome, next.as_ref());
        self.persist(claim, |n| async move {
            self.ledger.record_done(&n, outcome, next).await
        })
        .await?;
        metrics::counter!("interim_notices_total", "status" => status.as_str(), "policy" => claim.policy.clone(), "channel" => claim.channel.clone()).increment(1);
        if status == Status::Sent && claim.number >= claim.max_notices {
            // The last notice went out and the customer still waits: from
            // here a human must step in.
            metrics::counter!("interim_waits_exhausted_total", "policy" => claim.policy.clone())
                .increment(1);
        }
        Ok(())
    }

    /// The notice after this one, as the series will stand once this one
    /// is recorded. Spacing counts real sends only.
    #[allow(clippy::too_many_arguments)]
    async fn plan_next(
        &self,
        live: &Live,
        policy: &Policy,
        claim: &Claim,
        ticket: &Ticket,
        status: Status,
        attempt_started: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<PlannedNotice>> {
        if claim.number >= policy.max_notices {
            return Ok(None);
        }
        let last_sent_at = match status {
            Status::Sent | Status::DryRun => Some(attempt_started),
            _ => self.ledger.series_last_sent(claim).await?,
        };
        let state = SeriesState {
            key: crate::notice::SeriesKey {
                ticket_id: claim.ticket_id.clone(),
                policy: claim.policy.clone(),
                episode: claim.episode,
            },
            done: claim.number,
            last_sent_at,
            active: true,
            stored: true,
            next: None,
        };
        let Ok(recipient) = planner::recipient_for(&live.config.settings, policy, ticket) else {
            // The next poll reports the row and plans it once it is fixed.
            return Ok(None);
        };
        // The ticket as stored, unless the re-check read a fresher one.
        let fresh;
        let (json, hash) = match &claim.ticket {
            Ok(stored) if stored == ticket => (claim.ticket_json.as_str(), claim.ticket_hash),
            _ => {
                fresh = planner::ticket_record(ticket);
                (fresh.0.as_str(), fresh.1)
            }
        };
        let facts = TicketFacts {
            ticket,
            json,
            hash,
            recipient,
        };
        Ok(
            match planner::plan_series(policy, &facts, &state, now, claim.dry_run) {
                SeriesPlan::Upsert(next) => Some(next),
                _ => None,
            },
        )
    }
}
