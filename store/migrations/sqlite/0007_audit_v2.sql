-- Format 2 of the journal (SPEC §6.1): the journal against its own operator.
-- Its tables are STRICT: a value of another type than its column's is
-- refused (audit verify checks each column's type as well, since an
-- operator could rebuild a table).
--
-- Each event gets a 32-byte random salt; its public entry is
-- SHA-256(salt ‖ canonical body) and its leaf hash tlog.RecordHash(entry), so
-- that the tree can be mirrored as tiles without revealing anything about
-- people. A log made with format 1 (leaf = the body itself) cannot be carried
-- over: its tables are kept, renamed audit_v1_*, as an inert archive, and the
-- journal starts afresh (SPEC §6.1: format 1 logs are development data).
--
-- A log may have several origins (the first line of its checkpoints, and its
-- key's name) one after the other: after an operator restored a backup older
-- than what the witnesses cosigned, the journal goes on under a new origin
-- whose first event records the old one's last witnessed checkpoint, never as
-- a second history under the same origin. Events keep one global position
-- (idx); an origin covers the positions from its start_idx, its leaf index is
-- idx - start_idx, and its stored hashes are audit_hashes rows from hash_base.

DROP TRIGGER audit_events_no_update;
DROP TRIGGER audit_events_no_delete;
DROP TRIGGER audit_hashes_no_update;
DROP TRIGGER audit_hashes_no_delete;
DROP TRIGGER audit_checkpoints_no_update;
DROP TRIGGER audit_checkpoints_no_delete;
DROP INDEX audit_events_usager;
DROP INDEX audit_events_organisation;
ALTER TABLE audit_events RENAME TO audit_v1_events;
ALTER TABLE audit_hashes RENAME TO audit_v1_hashes;
ALTER TABLE audit_checkpoints RENAME TO audit_v1_checkpoints;
ALTER TABLE audit_head RENAME TO audit_v1_head;

CREATE TABLE audit_origins (
    no          INTEGER PRIMARY KEY,           -- 1, 2, … in the order they started
    origin      TEXT NOT NULL UNIQUE,
    vkey        TEXT NOT NULL,                 -- note verifier key of its checkpoints
    start_idx   INTEGER NOT NULL,              -- global position of its first event
    hash_base   INTEGER NOT NULL,              -- audit_hashes id of its stored hash 0
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE audit_events (
    idx              INTEGER PRIMARY KEY,      -- global position, from 0 (the rowid)
    body             BLOB NOT NULL,            -- canonical JSON
    salt             BLOB NOT NULL,            -- 32 random bytes: entry = SHA-256(salt ‖ body)
    -- The columns below are copies of body fields for queries; audit verify
    -- recomputes each from the body.
    type             TEXT NOT NULL,
    time             INTEGER NOT NULL,
    organisation_id  TEXT,
    aidant_id        TEXT,
    usager_id        TEXT,
    mandate_id       TEXT,
    service_id       TEXT,
    demarches        TEXT                       -- ",code,code," for LIKE filters
) STRICT;
CREATE INDEX audit_events_usager ON audit_events(usager_id, idx) WHERE usager_id IS NOT NULL;
CREATE INDEX audit_events_organisation ON audit_events(organisation_id, idx) WHERE organisation_id IS NOT NULL;

CREATE TABLE audit_hashes (
    id    INTEGER PRIMARY KEY,                 -- hash_base + tlog.StoredHashIndex (the rowid)
    hash  BLOB NOT NULL
) STRICT;

CREATE TABLE audit_checkpoints (
    gsize       INTEGER PRIMARY KEY,           -- start_idx + size: unique across origins
    origin_no   INTEGER NOT NULL,
    size        INTEGER NOT NULL,
    note        BLOB NOT NULL,                 -- signed note, C2SP tlog-checkpoint
    created_at  INTEGER NOT NULL
) STRICT;

-- Checkpoints that reached the witness quorum, with the cosignatures.
CREATE TABLE audit_witnessed (
    id          INTEGER PRIMARY KEY,           -- 1, 2, … in the order stored
    gsize       INTEGER NOT NULL,              -- never decreasing with id
    origin_no   INTEGER NOT NULL,
    size        INTEGER NOT NULL,
    note        BLOB NOT NULL,                 -- the checkpoint with its cosignatures
    created_at  INTEGER NOT NULL
) STRICT;

-- Full tiles (c2sp.org/tlog-tiles), written once by the writer when the
-- 256th leaf of a tile is appended, so that a mirror's request is one row:
-- level 0 holds the 256 leaf hashes, level -1 the entry bundle. audit
-- verify rebuilds each from the events.
CREATE TABLE audit_tiles (
    origin_no   INTEGER NOT NULL,
    level       INTEGER NOT NULL,
    n           INTEGER NOT NULL,
    data        BLOB NOT NULL,
    PRIMARY KEY (origin_no, level, n)
) WITHOUT ROWID, STRICT;

CREATE TABLE audit_head (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    origin_no   INTEGER NOT NULL,              -- 0 until the first origin is registered
    size        INTEGER NOT NULL,              -- events of the current origin
    root        BLOB NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;
INSERT INTO audit_head (id, origin_no, size, root, updated_at) VALUES (1, 0, 0, X'', 0);

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
CREATE TRIGGER audit_witnessed_no_update BEFORE UPDATE ON audit_witnessed
BEGIN SELECT RAISE(ABORT, 'audit_witnessed is append-only'); END;
CREATE TRIGGER audit_witnessed_no_delete BEFORE DELETE ON audit_witnessed
BEGIN SELECT RAISE(ABORT, 'audit_witnessed is append-only'); END;
CREATE TRIGGER audit_origins_no_update BEFORE UPDATE ON audit_origins
BEGIN SELECT RAISE(ABORT, 'audit_origins is append-only'); END;
CREATE TRIGGER audit_origins_no_delete BEFORE DELETE ON audit_origins
BEGIN SELECT RAISE(ABORT, 'audit_origins is append-only'); END;
CREATE TRIGGER audit_tiles_no_update BEFORE UPDATE ON audit_tiles
BEGIN SELECT RAISE(ABORT, 'audit_tiles is append-only'); END;
CREATE TRIGGER audit_tiles_no_delete BEFORE DELETE ON audit_tiles
BEGIN SELECT RAISE(ABORT, 'audit_tiles is append-only'); END;
