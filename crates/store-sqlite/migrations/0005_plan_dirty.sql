-- A steady poll plans only the tickets that changed.
--
-- The poller remembers, in memory, which ticket data it last planned each
-- ticket from. Every change to a ticket's notices or series that planning
-- reads, by anyone (the poller itself, the dispatcher, an operator's
-- command), leaves a row here; the next poll plans that ticket again and
-- then deletes the rows it read. Claims, renewals and retry times are not
-- read by planning and leave none.
CREATE TABLE plan_dirty (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id TEXT NOT NULL,
    dry_run   INTEGER NOT NULL
);

CREATE TRIGGER notices_insert_dirty AFTER INSERT ON notices BEGIN
    INSERT INTO plan_dirty (ticket_id, dry_run) VALUES (NEW.ticket_id, NEW.dry_run);
END;
CREATE TRIGGER notices_update_dirty AFTER UPDATE OF
    ticket_id, policy, episode, dry_run, number, max_notices, status, channel, recipient,
    due_at, send_at, last_attempt_at, ticket_hash
ON notices BEGIN
    INSERT INTO plan_dirty (ticket_id, dry_run) VALUES (NEW.ticket_id, NEW.dry_run);
END;
CREATE TRIGGER notices_delete_dirty AFTER DELETE ON notices BEGIN
    INSERT INTO plan_dirty (ticket_id, dry_run) VALUES (OLD.ticket_id, OLD.dry_run);
END;

CREATE TRIGGER series_insert_dirty AFTER INSERT ON series BEGIN
    INSERT INTO plan_dirty (ticket_id, dry_run) VALUES (NEW.ticket_id, NEW.dry_run);
END;
CREATE TRIGGER series_update_dirty AFTER UPDATE ON series BEGIN
    INSERT INTO plan_dirty (ticket_id, dry_run) VALUES (NEW.ticket_id, NEW.dry_run);
END;
CREATE TRIGGER series_delete_dirty AFTER DELETE ON series BEGIN
    INSERT INTO plan_dirty (ticket_id, dry_run) VALUES (OLD.ticket_id, OLD.dry_run);
END;
