-- interim report reads every wait of its period with the notices sent in
-- it (a LEFT JOIN per wait). This index covers every column of a notice
-- that the join reads, so it never visits the notices table.
CREATE INDEX notices_report ON notices
    (ticket_id, episode, dry_run, sent_at, number, max_notices, promise_outcome, promise_reason)
    WHERE status = 'sent';
