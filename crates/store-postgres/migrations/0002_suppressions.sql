-- Addresses that never receive a notice: added by `interim suppress add`
-- or automatically after a permanent rejection of the recipient.
CREATE TABLE suppressions (
    address    TEXT PRIMARY KEY NOT NULL,  -- lower-case address, or @domain
    reason     TEXT NOT NULL,
    source     TEXT NOT NULL,               -- cli | auto
    created_at BIGINT NOT NULL
);

-- The per-recipient rate limit looks up the last notice sent to an address.
CREATE INDEX notices_recipient_sent ON notices (recipient, sent_at) WHERE status = 'sent';
