//! Deciding promises, and pruning the wait history they are read with: the engine finds the ones that can be decided (marked
//! due by a trigger, or past their deadline), [`crate::promise::decide`]
//! decides each, and the outcomes are written in one transaction per batch.

use anyhow::Context;
use chrono::{DateTime, Utc};
use interim_store_rows::PromiseRow;

use super::{Store, from_ms, ms, on_pool, on_tx};
use crate::notice::Status;
use crate::promise::{self, DecidedPromise, Gap, Hold, NextNoticeFacts, PromiseFacts};

/// Promises read and decided per transaction.
const BATCH: i64 = 1_000;
/// Batches per call at most, so one sweep never holds the poller long; the
/// rest waits for the next poll.
const MAX_BATCHES: usize = 50;

fn facts(r: &PromiseRow) -> PromiseFacts {
    PromiseFacts {
        promised: from_ms(r.promised),
        next: r.next_status.as_deref().map(|status| NextNoticeFacts {
            // An unknown status (the schema's CHECK forbids it) reads as
            // pending: undecided until the deadline.
            status: Status::parse(status).unwrap_or(Status::Pending),
            sent_at: r.next_sent_at.map(from_ms),
            cancelled_by_reload: r
                .next_cancel_reason
                .as_deref()
                .is_some_and(promise::is_reload_cancel),
            held: match r.next_hold_reason.as_deref() {
                Some("stale") => Some(Hold::Stale),
                Some("limit") => Some(Hold::Limit),
                _ => None,
            },
        }),
        wait_ended_at: r.wait_ended_at.map(from_ms),
    }
}

/// Waits deleted per call at most: pruning never holds the writer long.
const PRUNE_BATCH: i64 = 1_000;

impl Store {
    /// Deletes a batch of the waits that ended before `before` (the history
    /// retention); how many.
    pub async fn prune_waits(&self, before: DateTime<Utc>) -> anyhow::Result<u64> {
        on_pool!(self, prune_waits(ms(before), PRUNE_BATCH))
            .context("failed to prune the wait history")
    }

    /// Decides every promise that can be decided at `now`; what was decided,
    /// for the metrics.
    pub async fn decide_promises(
        &self,
        now: DateTime<Utc>,
        grace: chrono::Duration,
        gap: Option<Gap>,
    ) -> anyhow::Result<Vec<DecidedPromise>> {
        let cutoff = ms(now.checked_sub_signed(grace).unwrap_or(now));
        let mut decided = Vec::new();
        for _ in 0..MAX_BATCHES {
            let rows = on_pool!(self, promises_to_decide(cutoff, BATCH))
                .context("failed to read the promises to decide")?;
            let full = i64::try_from(rows.len()).unwrap_or(i64::MAX) >= BATCH;
            let mut tx = self
                .begin_write()
                .await
                .context("failed to begin the promise transaction")?;
            for r in &rows {
                let facts = facts(r);
                match promise::decide(&facts, grace, now, gap) {
                    Some(outcome) => {
                        on_tx!(
                            tx,
                            decide_promise(&r.id, outcome.as_str(), outcome.reason(), ms(now))
                        )
                        .with_context(|| format!("failed to record the promise of {}", r.id))?;
                        let lateness = facts
                            .next
                            .as_ref()
                            .filter(|n| n.status == Status::Sent)
                            .and_then(|n| n.sent_at)
                            .map(|sent| sent.signed_duration_since(facts.promised));
                        decided.push(DecidedPromise {
                            notice_id: r.id.clone(),
                            policy: r.policy.clone(),
                            outcome,
                            lateness,
                        });
                    }
                    None => {
                        on_tx!(tx, promise_pending_again(&r.id)).with_context(|| {
                            format!("failed to requeue the promise of {}", r.id)
                        })?;
                    }
                }
            }
            tx.commit()
                .await
                .context("failed to commit the promise outcomes")?;
            if !full {
                break;
            }
        }
        Ok(decided)
    }
}
