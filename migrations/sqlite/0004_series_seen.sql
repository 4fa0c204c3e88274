-- The poll that last saw a series' ticket: a full poll read in chunks ends
-- the series of tickets it did not see.
ALTER TABLE series ADD COLUMN seen_poll INTEGER NOT NULL DEFAULT 0;
