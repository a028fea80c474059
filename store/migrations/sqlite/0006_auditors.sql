-- Auditors (SPEC §8.4): administrations' systems that query the journal
-- with OAuth2 client credentials and private_key_jwt.
CREATE TABLE auditors (
    id             TEXT PRIMARY KEY,           -- the client_id
    name           TEXT NOT NULL,
    jwks           TEXT NOT NULL DEFAULT '',   -- public keys, or
    jwks_uri       TEXT NOT NULL DEFAULT '',   -- where to fetch them
    scope_all      BOOLEAN NOT NULL,
    organisations  TEXT NOT NULL DEFAULT '',   -- organisation ids, comma-separated
    services       TEXT NOT NULL DEFAULT '',   -- service client_ids, comma-separated
    active         BOOLEAN NOT NULL DEFAULT TRUE,
    created_at     BIGINT NOT NULL
);
