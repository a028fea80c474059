-- The mail outbox (issue 15): every message to a person or an aidant is
-- queued here in the same transaction as the change that causes it, and a
-- background sender delivers it (package mail). A row is pending while
-- sent_at and failed_at are both NULL; next_attempt_at is when it is due,
-- and while a sender holds it, the end of that sender's lease.
CREATE TABLE mail_outbox (
    id               TEXT PRIMARY KEY,
    message_id       TEXT NOT NULL UNIQUE,    -- <…@domain>, the same at every attempt
    recipient        TEXT NOT NULL,
    subject          TEXT NOT NULL,
    text_body        TEXT NOT NULL,
    html_body        TEXT NOT NULL DEFAULT '',
    dedup_key        TEXT UNIQUE,             -- a message queued once whatever the retries of its cause
    created_at       BIGINT NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    attempted_at     BIGINT,                  -- the last attempt's start
    attempts         INTEGER NOT NULL DEFAULT 0,
    claim            TEXT,                    -- the attempt that holds the row
    sent_at          BIGINT,                  -- the relay took it
    failed_at        BIGINT,                  -- given up
    last_error       TEXT NOT NULL DEFAULT '' -- why the last attempt failed, no secret nor address
);
CREATE INDEX mail_outbox_due ON mail_outbox (next_attempt_at) WHERE sent_at IS NULL AND failed_at IS NULL;
CREATE INDEX mail_outbox_created ON mail_outbox (created_at);
