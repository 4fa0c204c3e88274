-- interim report reads the notices sent in its period: without this index
-- it would scan the whole ledger.
CREATE INDEX notices_sent ON notices (dry_run, sent_at) WHERE status = 'sent';
