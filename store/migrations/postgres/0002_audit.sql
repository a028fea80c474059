-- The tamper-evident audit log (SPEC §6). Events are the leaves of an
-- RFC 6962 Merkle tree; audit_hashes holds one row per tlog stored-hash
-- index; audit_checkpoints one signed note per committed batch. These three
-- tables are append-only: the triggers below refuse UPDATE, DELETE and
-- TRUNCATE. audit_head is the single row the writers lock (SELECT … FOR
-- UPDATE) so that several processes keep one linear history.

CREATE TABLE audit_events (
    idx              BIGINT PRIMARY KEY,
    body             BYTEA NOT NULL,
    type             TEXT NOT NULL,
    time             BIGINT NOT NULL,
    organisation_id  TEXT,
    aidant_id        TEXT,
    usager_id        TEXT,
    mandate_id       TEXT,
    service_id       TEXT,
    demarches        TEXT
);
CREATE INDEX audit_events_usager ON audit_events(usager_id, idx) WHERE usager_id IS NOT NULL;
CREATE INDEX audit_events_organisation ON audit_events(organisation_id, idx) WHERE organisation_id IS NOT NULL;
-- Two secondary indexes only: every index costs a random page per event at
-- commit. A mandate's events are found through its person's index.

CREATE TABLE audit_hashes (
    id    BIGINT PRIMARY KEY,
    hash  BYTEA NOT NULL
);

CREATE TABLE audit_checkpoints (
    size        BIGINT PRIMARY KEY,
    note        BYTEA NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE audit_head (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    size        BIGINT NOT NULL,
    root        BYTEA NOT NULL,
    updated_at  BIGINT NOT NULL
);
INSERT INTO audit_head (id, size, root, updated_at) VALUES (1, 0, '\x'::bytea, 0);

CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END;
$$;

CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_hashes_no_change BEFORE UPDATE OR DELETE ON audit_hashes
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_hashes_no_truncate BEFORE TRUNCATE ON audit_hashes
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_checkpoints_no_change BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
