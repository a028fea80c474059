-- The tamper-evident audit log (SPEC §6). Events are the leaves of an
-- RFC 6962 Merkle tree; audit_hashes holds one row per tlog stored-hash
-- index; audit_checkpoints one signed note per committed batch. These three
-- tables are append-only: the triggers below refuse UPDATE and DELETE.
-- audit_head is the single row the writer locks and moves forward.

CREATE TABLE audit_events (
    idx              INTEGER PRIMARY KEY,      -- leaf index, from 0 (the rowid: no extra index)
    body             BLOB NOT NULL,            -- canonical JSON, hashed as is
    type             TEXT NOT NULL,
    time             BIGINT NOT NULL,
    organisation_id  TEXT,
    aidant_id        TEXT,
    usager_id        TEXT,
    mandate_id       TEXT,
    service_id       TEXT,
    demarches        TEXT                       -- ",code,code," for LIKE filters
);
CREATE INDEX audit_events_usager ON audit_events(usager_id, idx) WHERE usager_id IS NOT NULL;
CREATE INDEX audit_events_organisation ON audit_events(organisation_id, idx) WHERE organisation_id IS NOT NULL;
-- Two secondary indexes only: every index costs a random page per event at
-- commit. A mandate's events are found through its person's index.

CREATE TABLE audit_hashes (
    id    INTEGER PRIMARY KEY,                 -- tlog.StoredHashIndex (the rowid)
    hash  BLOB NOT NULL
);

CREATE TABLE audit_checkpoints (
    size        INTEGER PRIMARY KEY,
    note        BLOB NOT NULL,                 -- signed note, C2SP tlog-checkpoint
    created_at  BIGINT NOT NULL
);

CREATE TABLE audit_head (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    size        BIGINT NOT NULL,
    root        BLOB NOT NULL,
    updated_at  BIGINT NOT NULL
);
INSERT INTO audit_head (id, size, root, updated_at) VALUES (1, 0, X'', 0);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER audit_hashes_no_update BEFORE UPDATE ON audit_hashes
BEGIN SELECT RAISE(ABORT, 'audit_hashes is append-only'); END;
CREATE TRIGGER audit_hashes_no_delete BEFORE DELETE ON audit_hashes
BEGIN SELECT RAISE(ABORT, 'audit_hashes is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
