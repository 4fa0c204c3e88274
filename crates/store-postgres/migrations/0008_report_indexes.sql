-- interim report joins every wait of its period with the notices sent in
-- it. This index finds those notices by the period and carries every
-- column the join reads, so it can be an index-only scan; the status
-- page's "sent today" counts from it as well.
CREATE INDEX notices_sent ON notices (dry_run, sent_at)
    INCLUDE (ticket_id, episode, number, max_notices, promise_outcome, promise_reason)
    WHERE status = 'sent';

-- The status page's overview counts the notices due soon and the promises
-- decided lately; each count reads one of these ranges.
CREATE INDEX notices_pending_send ON notices (dry_run, send_at) WHERE status = 'pending';
-- (Partial on the decision time: a range on it implies the condition, so
-- SQLite uses the index; an IN list of outcomes it would not.)
CREATE INDEX notices_promise_decided ON notices (dry_run, promise_outcome, promise_decided_at)
    WHERE promise_decided_at IS NOT NULL;
-- The status page's ledger lists the newest notices first, a page at a time.
CREATE INDEX notices_created ON notices (created_at, id);
