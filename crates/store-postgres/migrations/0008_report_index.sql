-- interim report reads the notices sent in its period: without this index
-- it would scan the whole ledger. It carries every column the report
-- reads, so the read can be an index-only scan.
CREATE INDEX notices_sent ON notices (dry_run, sent_at)
    INCLUDE (ticket_id, episode, number, max_notices, promise_outcome, promise_reason)
    WHERE status = 'sent';
