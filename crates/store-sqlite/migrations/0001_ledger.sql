-- The ledger: every planned, sent, failed or cancelled notice is a row.
-- Times are Unix milliseconds (UTC).
CREATE TABLE notices (
    id               TEXT PRIMARY KEY NOT NULL,  -- UUID v5 of (ticket, policy, episode, number)
    ticket_id        TEXT NOT NULL,
    policy           TEXT NOT NULL,
    episode          INTEGER NOT NULL,           -- waiting_since of the wait
    dry_run          INTEGER NOT NULL DEFAULT 0,
    number           INTEGER NOT NULL,
    max_notices      INTEGER NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'dead', 'cancelled', 'suppressed', 'dry_run')),
    channel          TEXT NOT NULL,
    recipient        TEXT,
    due_at           INTEGER NOT NULL,           -- when the policy says it is due
    send_at          INTEGER NOT NULL,           -- planned send instant (window applied): the promise
    next_attempt_at  INTEGER NOT NULL,           -- send_at, or the next retry
    attempts         INTEGER NOT NULL DEFAULT 0,
    first_attempt_at INTEGER,
    last_attempt_at  INTEGER,
    sent_at          INTEGER,
    finished_at      INTEGER,
    next_notice_at   INTEGER,                    -- the promise made in this notice
    last_error       TEXT,
    cancel_reason    TEXT,
    claimed_by       TEXT,
    claim_until      INTEGER,
    ticket           TEXT NOT NULL,              -- the ticket as last polled (JSON)
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);

-- Finding due notices reads only pending rows, in due order, per channel.
CREATE INDEX notices_due ON notices (channel, next_attempt_at) WHERE status = 'pending';
CREATE INDEX notices_ticket ON notices (ticket_id);
CREATE INDEX notices_status ON notices (status);

-- One row per current wait of a ticket under a policy: how far its series got.
CREATE TABLE series (
    ticket_id   TEXT NOT NULL,
    policy      TEXT NOT NULL,
    episode     INTEGER NOT NULL,
    dry_run     INTEGER NOT NULL,
    done        INTEGER NOT NULL DEFAULT 0,   -- number of the last notice that reached an end
    last_ref_at INTEGER,                      -- when that notice's last attempt started
    next_id     TEXT,                         -- the notice after `done`, once planned
    PRIMARY KEY (ticket_id, policy, episode, dry_run)
);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
