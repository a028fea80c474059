-- What the person objects to, and the aidant's declarations of error
-- (issue 15 items 3 and 4). Their free texts live in free_texts (erasable);
-- these rows hold only the texts' hashes, as the events do.
CREATE TABLE objections (
    id               TEXT PRIMARY KEY,
    action_index     BIGINT NOT NULL UNIQUE,   -- the mandate.used event objected to
    usager_id        TEXT NOT NULL,
    organisation_id  TEXT NOT NULL,
    mandate_id       TEXT NOT NULL,
    aidant_id        TEXT NOT NULL,
    reason           TEXT NOT NULL,
    text_hash        TEXT,
    withdrew         BOOLEAN NOT NULL DEFAULT FALSE,
    created_at       BIGINT NOT NULL,
    handled_at       BIGINT,
    handled_by       TEXT,
    answer_hash      TEXT
);
CREATE INDEX objections_organisation ON objections (organisation_id, created_at);
CREATE INDEX objections_usager ON objections (usager_id);

CREATE TABLE error_declarations (
    id               TEXT PRIMARY KEY,
    action_index     BIGINT NOT NULL,          -- the mandate.used event
    usager_id        TEXT NOT NULL,
    organisation_id  TEXT NOT NULL,
    mandate_id       TEXT NOT NULL,
    aidant_id        TEXT NOT NULL,            -- who declares
    what_hash        TEXT NOT NULL,            -- what went wrong
    fix_hash         TEXT NOT NULL,            -- what was or will be done
    completes        TEXT,                     -- the declaration this one completes
    created_at       BIGINT NOT NULL
);
CREATE INDEX error_declarations_action ON error_declarations (action_index);
CREATE INDEX error_declarations_usager ON error_declarations (usager_id);
