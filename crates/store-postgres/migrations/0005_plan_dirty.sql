-- A steady poll plans only the tickets that changed.
--
-- The poller remembers, in memory, which ticket data it last planned each
-- ticket from. Every change to a ticket's notices or series that planning
-- reads, by anyone (the poller itself, the dispatcher of any instance, an
-- operator's command), leaves a row here; the next poll plans that ticket
-- again and then deletes the rows it read. Claims, renewals and retry
-- times are not read by planning and leave none.
--
-- Rows commit out of order across transactions, so they are cleared by the
-- writing transaction's id: every row of a transaction older than the
-- reader's snapshot horizon was visible to the reader.
CREATE TABLE plan_dirty (
    xid       BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    ticket_id TEXT NOT NULL,
    dry_run   BIGINT NOT NULL
);
CREATE INDEX plan_dirty_xid ON plan_dirty (xid);

CREATE FUNCTION interim_plan_dirty() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO plan_dirty (ticket_id, dry_run) VALUES (OLD.ticket_id, OLD.dry_run);
    ELSE
        INSERT INTO plan_dirty (ticket_id, dry_run) VALUES (NEW.ticket_id, NEW.dry_run);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER notices_dirty AFTER INSERT OR DELETE OR UPDATE OF
    ticket_id, policy, episode, dry_run, number, max_notices, status, channel, recipient,
    due_at, send_at, last_attempt_at, ticket_hash
ON notices FOR EACH ROW EXECUTE FUNCTION interim_plan_dirty();
CREATE TRIGGER series_dirty AFTER INSERT OR DELETE OR UPDATE ON series
    FOR EACH ROW EXECUTE FUNCTION interim_plan_dirty();
