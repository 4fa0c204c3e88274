-- The wait history and promise outcomes (the promise-report issue).
--
-- A wait is one episode (ticket, waiting_since) that at least one policy
-- matched; the planner writes it in the same transaction as the plan.
-- Times are Unix milliseconds (UTC), as everywhere in this ledger.
CREATE TABLE waits (
    ticket_id     TEXT NOT NULL,
    episode       INTEGER NOT NULL,          -- waiting_since: the wait's start
    dry_run       INTEGER NOT NULL,
    ticket_number TEXT,
    queue         TEXT,
    priority      TEXT,
    origin        TEXT,
    language      TEXT,
    policies      TEXT NOT NULL,             -- the policies that applied, comma-separated in config order
    first_due_at  INTEGER,                   -- when the first threshold is crossed (the earliest first notice)
    ended_at      INTEGER,
    end_reason    TEXT CHECK (end_reason IN ('new_wait', 'left')),
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (ticket_id, episode, dry_run)
);
-- Reports read waits by start and by end; pruning by end.
CREATE INDEX waits_started ON waits (episode);
CREATE INDEX waits_ended ON waits (ended_at) WHERE ended_at IS NOT NULL;
-- The open waits by policy (the interim_waits_open gauge), read from the
-- index alone.
CREATE INDEX waits_open ON waits (dry_run, policies) WHERE ended_at IS NULL;

-- The waits in progress when this ledger was upgraded: the series that are
-- active now. Their other columns are filled in by the next poll (a
-- restarted daemon plans every ticket once).
INSERT INTO waits (ticket_id, episode, dry_run, policies, updated_at)
SELECT ticket_id, episode, dry_run, group_concat(policy, ','), CAST(strftime('%s', 'now') AS INTEGER) * 1000
FROM series WHERE active = 1
GROUP BY ticket_id, episode, dry_run;

-- Every sent notice with a next_notice_at made a promise; its outcome is
-- decided as soon as it is known: 'kept', 'superseded' or 'broken' with a
-- reason. Undecided it is 'pending', or 'due' once something happened
-- that decides it (the next notice ended, the wait ended): the poller's
-- next sweep decides those, and the pending ones whose deadline passed.
ALTER TABLE notices ADD COLUMN promise_outcome TEXT
    CHECK (promise_outcome IN ('pending', 'due', 'kept', 'superseded', 'broken'));
ALTER TABLE notices ADD COLUMN promise_reason TEXT;
ALTER TABLE notices ADD COLUMN promise_decided_at INTEGER;
-- Why the dispatcher last held this notice back ('stale': no fresh poll;
-- 'limit': a rate or recipient limit), for the promise it was to keep.
ALTER TABLE notices ADD COLUMN hold_reason TEXT CHECK (hold_reason IN ('stale', 'limit'));

UPDATE notices SET promise_outcome = 'pending'
WHERE status = 'sent' AND next_notice_at IS NOT NULL;

-- Undecided promises, found without reading every notice.
CREATE INDEX notices_promise_pending ON notices (next_notice_at) WHERE promise_outcome = 'pending';
CREATE INDEX notices_promise_due ON notices (id) WHERE promise_outcome = 'due';

-- The next notice of a series reached an end: the promise before it can
-- be decided.
CREATE TRIGGER notices_promise_due AFTER UPDATE OF status ON notices
WHEN NEW.number > 1 AND OLD.status = 'pending' AND NEW.status <> 'pending'
BEGIN
    UPDATE notices SET promise_outcome = 'due'
    WHERE ticket_id = NEW.ticket_id AND policy = NEW.policy AND episode = NEW.episode
      AND dry_run = NEW.dry_run AND number = NEW.number - 1 AND promise_outcome = 'pending';
END;

-- A wait ended: every promise made in it can be decided.
CREATE TRIGGER waits_promise_due AFTER UPDATE OF ended_at ON waits
WHEN NEW.ended_at IS NOT NULL AND OLD.ended_at IS NULL
BEGIN
    UPDATE notices SET promise_outcome = 'due'
    WHERE ticket_id = NEW.ticket_id AND episode = NEW.episode AND dry_run = NEW.dry_run
      AND promise_outcome = 'pending';
END;
