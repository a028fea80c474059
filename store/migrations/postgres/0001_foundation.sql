-- Organisations, aidants and their memberships, browser sessions and
-- pending sign-ins. Times are milliseconds since the epoch (UTC).

CREATE TABLE organisations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    siret       TEXT NOT NULL UNIQUE,
    demarches   TEXT NOT NULL DEFAULT '',      -- allowed démarches, comma-separated; empty = all
    active      BOOLEAN NOT NULL DEFAULT TRUE,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE aidants (
    id                 TEXT PRIMARY KEY,
    issuer             TEXT,                   -- identity provider issuer, NULL until the first sign-in
    subject            TEXT,
    email              TEXT NOT NULL UNIQUE,   -- lower case; matches the first sign-in only
    given_name         TEXT NOT NULL,
    family_name        TEXT NOT NULL,
    habilitated_until  TEXT NOT NULL,          -- YYYY-MM-DD, inclusive, Europe/Paris
    active             BOOLEAN NOT NULL DEFAULT TRUE,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    UNIQUE (issuer, subject)
);

CREATE TABLE memberships (
    aidant_id        TEXT NOT NULL REFERENCES aidants(id),
    organisation_id  TEXT NOT NULL REFERENCES organisations(id),
    is_aidant        BOOLEAN NOT NULL DEFAULT TRUE,
    is_referent      BOOLEAN NOT NULL DEFAULT FALSE,
    active           BOOLEAN NOT NULL DEFAULT TRUE,
    created_at       BIGINT NOT NULL,
    PRIMARY KEY (aidant_id, organisation_id)
);
CREATE INDEX memberships_organisation ON memberships(organisation_id);

CREATE TABLE sessions (
    id               TEXT PRIMARY KEY,         -- SHA-256 of the secret in the cookie
    kind             TEXT NOT NULL,            -- aidant | usager
    principal_id     TEXT NOT NULL,
    organisation_id  TEXT,                     -- the aidant's current organisation
    auth_time        BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    last_seen_at     BIGINT NOT NULL,
    ended_at         BIGINT
);
CREATE INDEX sessions_principal ON sessions(principal_id);

CREATE TABLE auth_requests (
    state_hash    TEXT PRIMARY KEY,            -- SHA-256 of the state sent to the provider
    provider      TEXT NOT NULL,               -- aidants | franceconnect
    purpose       TEXT NOT NULL,
    browser_hash  TEXT NOT NULL,               -- SHA-256 of the binding cookie
    nonce         TEXT NOT NULL,
    verifier      TEXT NOT NULL,               -- PKCE code verifier
    return_to     TEXT NOT NULL DEFAULT '',
    data          TEXT NOT NULL DEFAULT '',
    created_at    BIGINT NOT NULL
);

CREATE TABLE instance_meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
