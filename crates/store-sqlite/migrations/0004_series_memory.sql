-- Every promise kept.
--
-- A series row is the memory of a wait: it stays when the ticket leaves
-- the snapshot (active = 0) so that a return with the same wait continues
-- at the next number.
ALTER TABLE series ADD COLUMN active INTEGER NOT NULL DEFAULT 1;

-- Spacing counts real sends only: the start of the last successful attempt
-- (dead and suppressed notices no longer count).
ALTER TABLE series RENAME COLUMN last_ref_at TO last_sent_at;
UPDATE series SET last_sent_at = (
    SELECT MAX(n.last_attempt_at) FROM notices n
    WHERE n.ticket_id = series.ticket_id AND n.policy = series.policy
      AND n.episode = series.episode AND n.dry_run = series.dry_run
      AND n.status = CASE WHEN series.dry_run = 1 THEN 'dry_run' ELSE 'sent' END
);

-- A fencing token: every claim increments it, and a result is recorded only
-- by the holder of the current claim.
ALTER TABLE notices ADD COLUMN claim_token INTEGER NOT NULL DEFAULT 0;

-- Deriving a series from its notices, and the absent-ticket sweep.
CREATE INDEX notices_series ON notices (ticket_id, policy, episode, dry_run, number);
CREATE INDEX series_active ON series (dry_run, active, ticket_id);
