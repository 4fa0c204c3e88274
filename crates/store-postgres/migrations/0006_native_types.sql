-- PostgreSQL's own types: instants are timestamptz, flags boolean (they
-- were Unix milliseconds and 0/1 as on SQLite). An operator's query reads
-- them as they are, and leases compare with the database's clock without
-- arithmetic. Milliseconds convert exactly (integer interval arithmetic,
-- no floating point).
--
-- A column in a trigger's column list cannot change its type: the
-- change-mark triggers of 0005 are dropped and created again, as they were.
DROP TRIGGER notices_dirty ON notices;
DROP TRIGGER series_dirty ON series;

ALTER TABLE notices
    ALTER COLUMN dry_run DROP DEFAULT,
    ALTER COLUMN dry_run TYPE boolean USING dry_run <> 0,
    ALTER COLUMN dry_run SET DEFAULT false,
    ALTER COLUMN episode TYPE timestamptz USING TIMESTAMPTZ 'epoch' + episode * INTERVAL '1 millisecond',
    ALTER COLUMN due_at TYPE timestamptz USING TIMESTAMPTZ 'epoch' + due_at * INTERVAL '1 millisecond',
    ALTER COLUMN send_at TYPE timestamptz USING TIMESTAMPTZ 'epoch' + send_at * INTERVAL '1 millisecond',
    ALTER COLUMN next_attempt_at TYPE timestamptz USING TIMESTAMPTZ 'epoch' + next_attempt_at * INTERVAL '1 millisecond',
    ALTER COLUMN first_attempt_at TYPE timestamptz USING TIMESTAMPTZ 'epoch' + first_attempt_at * INTERVAL '1 millisecond',
    ALTER COLUMN last_attempt_at TYPE timestamptz USING TIMESTAMPTZ 'epoch' + last_attempt_at * INTERVAL '1 millisecond',
    ALTER COLUMN sent_at TYPE timestamptz USING TIMESTAMPTZ 'epoch' + sent_at * INTERVAL '1 millisecond',
    ALTER COLUMN finished_at TYPE timestamptz USING TIMESTAMPTZ 'epoch' + finished_at * INTERVAL '1 millisecond',
    ALTER COLUMN next_notice_at TYPE timestamptz USING TIMESTAMPTZ 'epoch' + next_notice_at * INTERVAL '1 millisecond',
    ALTER COLUMN claim_until TYPE timestamptz USING TIMESTAMPTZ 'epoch' + claim_until * INTERVAL '1 millisecond',
    ALTER COLUMN created_at TYPE timestamptz USING TIMESTAMPTZ 'epoch' + created_at * INTERVAL '1 millisecond',
    ALTER COLUMN updated_at TYPE timestamptz USING TIMESTAMPTZ 'epoch' + updated_at * INTERVAL '1 millisecond';

ALTER TABLE series
    ALTER COLUMN dry_run TYPE boolean USING dry_run <> 0,
    ALTER COLUMN active DROP DEFAULT,
    ALTER COLUMN active TYPE boolean USING active <> 0,
    ALTER COLUMN active SET DEFAULT true,
    ALTER COLUMN episode TYPE timestamptz USING TIMESTAMPTZ 'epoch' + episode * INTERVAL '1 millisecond',
    ALTER COLUMN last_sent_at TYPE timestamptz USING TIMESTAMPTZ 'epoch' + last_sent_at * INTERVAL '1 millisecond';

ALTER TABLE suppressions
    ALTER COLUMN created_at TYPE timestamptz USING TIMESTAMPTZ 'epoch' + created_at * INTERVAL '1 millisecond';

ALTER TABLE plan_dirty
    ALTER COLUMN dry_run TYPE boolean USING dry_run <> 0;

CREATE TRIGGER notices_dirty AFTER INSERT OR DELETE OR UPDATE OF
    ticket_id, policy, episode, dry_run, number, max_notices, status, channel, recipient,
    due_at, send_at, last_attempt_at, ticket_hash
ON notices FOR EACH ROW EXECUTE FUNCTION interim_plan_dirty();
CREATE TRIGGER series_dirty AFTER INSERT OR DELETE OR UPDATE ON series
    FOR EACH ROW EXECUTE FUNCTION interim_plan_dirty();
