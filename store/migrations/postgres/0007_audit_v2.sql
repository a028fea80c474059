-- Format 2 of the journal (SPEC §6.1): the journal against its own operator.
--
-- Each event gets a 32-byte random salt; its public entry is
-- SHA-256(salt ‖ canonical body) and its leaf hash tlog.RecordHash(entry), so
-- that the tree can be mirrored as tiles without revealing anything about
-- people. A log made with format 1 (leaf = the body itself) cannot be carried
-- over: its tables are kept, renamed audit_v1_*, as an inert archive, and the
-- journal starts afresh (SPEC §6.1: format 1 logs are development data).
--
-- A log may have several origins one after the other (see the SQLite
-- migration of the same number): events keep one global position (idx); an
-- origin covers the positions from its start_idx, its leaf index is
-- idx - start_idx, and its stored hashes are audit_hashes rows from hash_base.

DROP TRIGGER audit_events_no_change ON audit_events;
DROP TRIGGER audit_events_no_truncate ON audit_events;
DROP TRIGGER audit_hashes_no_change ON audit_hashes;
DROP TRIGGER audit_hashes_no_truncate ON audit_hashes;
DROP TRIGGER audit_checkpoints_no_change ON audit_checkpoints;
DROP TRIGGER audit_checkpoints_no_truncate ON audit_checkpoints;
DROP INDEX audit_events_usager;
DROP INDEX audit_events_organisation;
ALTER TABLE audit_events RENAME TO audit_v1_events;
ALTER INDEX audit_events_pkey RENAME TO audit_v1_events_pkey;
ALTER TABLE audit_hashes RENAME TO audit_v1_hashes;
ALTER INDEX audit_hashes_pkey RENAME TO audit_v1_hashes_pkey;
ALTER TABLE audit_checkpoints RENAME TO audit_v1_checkpoints;
ALTER INDEX audit_checkpoints_pkey RENAME TO audit_v1_checkpoints_pkey;
ALTER TABLE audit_head RENAME TO audit_v1_head;
ALTER INDEX audit_head_pkey RENAME TO audit_v1_head_pkey;

CREATE TABLE audit_origins (
    no          INTEGER PRIMARY KEY,
    origin      TEXT NOT NULL UNIQUE,
    vkey        TEXT NOT NULL,
    start_idx   BIGINT NOT NULL,
    hash_base   BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE audit_events (
    idx              BIGINT PRIMARY KEY,
    body             BYTEA NOT NULL,
    salt             BYTEA NOT NULL,
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

CREATE TABLE audit_hashes (
    id    BIGINT PRIMARY KEY,
    hash  BYTEA NOT NULL
);

CREATE TABLE audit_checkpoints (
    gsize       BIGINT PRIMARY KEY,
    origin_no   INTEGER NOT NULL,
    size        BIGINT NOT NULL,
    note        BYTEA NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE audit_witnessed (
    id          BIGINT PRIMARY KEY,            -- 1, 2, … in the order stored
    gsize       BIGINT NOT NULL,               -- never decreasing with id
    origin_no   INTEGER NOT NULL,
    size        BIGINT NOT NULL,
    note        BYTEA NOT NULL,                 -- the checkpoint with its cosignatures
    created_at  BIGINT NOT NULL
);

-- Full tiles (c2sp.org/tlog-tiles), written once by the writer when the
-- 256th leaf of a tile is appended, so that a mirror's request is one row:
-- level 0 holds the 256 leaf hashes, level -1 the entry bundle. audit
-- verify rebuilds each from the events.
CREATE TABLE audit_tiles (
    origin_no   INTEGER NOT NULL,
    level       INTEGER NOT NULL,
    n           BIGINT NOT NULL,
    data        BYTEA NOT NULL,
    PRIMARY KEY (origin_no, level, n)
);

CREATE TABLE audit_head (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    origin_no   INTEGER NOT NULL,
    size        BIGINT NOT NULL,
    root        BYTEA NOT NULL,
    updated_at  BIGINT NOT NULL
);
INSERT INTO audit_head (id, origin_no, size, root, updated_at) VALUES (1, 0, 0, '\x'::bytea, 0);

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
CREATE TRIGGER audit_witnessed_no_change BEFORE UPDATE OR DELETE ON audit_witnessed
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_witnessed_no_truncate BEFORE TRUNCATE ON audit_witnessed
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_origins_no_change BEFORE UPDATE OR DELETE ON audit_origins
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_origins_no_truncate BEFORE TRUNCATE ON audit_origins
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_tiles_no_change BEFORE UPDATE OR DELETE ON audit_tiles
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_tiles_no_truncate BEFORE TRUNCATE ON audit_tiles
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
