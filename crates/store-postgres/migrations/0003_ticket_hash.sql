-- A hash of the stored ticket JSON: planning sees a changed ticket without
-- loading every pending notice's ticket data.
ALTER TABLE notices ADD COLUMN ticket_hash BIGINT NOT NULL DEFAULT 0;
