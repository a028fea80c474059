-- What the person is told by email (issue 15). usagers.action_mails: the
-- person wants a message for each action taken for them (they can turn it
-- off in their space); action_mail_at: when the last such message was
-- queued. mail_actions holds the actions that came within the hour after
-- that message, grouped into one message when the hour ends.
ALTER TABLE usagers ADD COLUMN action_mails BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE usagers ADD COLUMN action_mail_at BIGINT;
CREATE TABLE mail_actions (
    usager_id        TEXT NOT NULL,
    event_index      BIGINT NOT NULL,   -- the mandate.used event
    at               BIGINT NOT NULL,
    aidant_id        TEXT NOT NULL,
    organisation_id  TEXT NOT NULL,
    service_id       TEXT NOT NULL,
    demarche         TEXT NOT NULL,
    due_at           BIGINT NOT NULL,   -- when the grouped message leaves
    PRIMARY KEY (usager_id, event_index)
);
CREATE INDEX mail_actions_due ON mail_actions (due_at);

-- The time-triggered messages already decided (a mandate ending, a
-- habilitation ending), kept after the outbox forgets its messages.
CREATE TABLE mail_sweeps (
    dedup_key  TEXT PRIMARY KEY,
    at         BIGINT NOT NULL
);

-- How many times a remote consent link was sent by email (at most 3).
ALTER TABLE mandate_drafts ADD COLUMN link_sends INTEGER NOT NULL DEFAULT 0;
