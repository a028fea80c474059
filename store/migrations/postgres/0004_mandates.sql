-- Usagers (the assisted persons), mandate drafts with their consent
-- evidence, mandates and their démarches. Times are milliseconds (UTC).

CREATE TABLE usagers (
    id            TEXT PRIMARY KEY,
    issuer        TEXT NOT NULL,              -- FranceConnect issuer
    subject       TEXT NOT NULL,              -- FranceConnect sub
    given_name    TEXT NOT NULL,
    family_name   TEXT NOT NULL,
    birthdate     TEXT NOT NULL,
    gender        TEXT NOT NULL DEFAULT '',
    birthplace    TEXT NOT NULL DEFAULT '',
    birthcountry  TEXT NOT NULL DEFAULT '',
    email         TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    UNIQUE (issuer, subject)
);

CREATE TABLE mandate_drafts (
    id               TEXT PRIMARY KEY,
    organisation_id  TEXT NOT NULL REFERENCES organisations(id),
    created_by       TEXT NOT NULL REFERENCES aidants(id),
    created_at       BIGINT NOT NULL,
    demarches        TEXT NOT NULL,           -- comma-separated codes
    duration         TEXT NOT NULL,           -- 1j | 1m | 6m | 1a
    method           TEXT NOT NULL,           -- on_site | remote
    renews           TEXT,                    -- mandate id, for a renewal
    digest           TEXT NOT NULL,           -- base64url SHA-256 of the draft's canonical JSON
    salt             TEXT NOT NULL,           -- base64url, 128 bits
    status           TEXT NOT NULL,           -- pending | identified | accepted | refused | completed
    link_hash        TEXT UNIQUE,             -- SHA-256 of the remote consent link's token
    expires_at       BIGINT NOT NULL,         -- the draft (or its link) cannot be used afterwards
    usager_id        TEXT REFERENCES usagers(id),
    evidence_token   TEXT,                    -- the FranceConnect ID token (compact JWS)
    evidence_jwk     TEXT,                    -- the provider key that verified it
    identified_at    BIGINT,
    decided_at       BIGINT,
    mandate_id       TEXT
);
CREATE INDEX mandate_drafts_organisation ON mandate_drafts(organisation_id, created_at);

CREATE TABLE mandates (
    id               TEXT PRIMARY KEY,
    organisation_id  TEXT NOT NULL REFERENCES organisations(id),
    usager_id        TEXT NOT NULL REFERENCES usagers(id),
    created_by       TEXT NOT NULL REFERENCES aidants(id),
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    method           TEXT NOT NULL,
    draft_id         TEXT NOT NULL REFERENCES mandate_drafts(id),
    renews           TEXT,
    jws              TEXT NOT NULL,           -- the signed mandate
    evidence_token   TEXT NOT NULL,
    evidence_jwk     TEXT NOT NULL,
    revoked_at       BIGINT,                  -- the whole mandate
    revoked_by_kind  TEXT,
    revoked_by       TEXT,
    revoke_reason    TEXT
);
CREATE INDEX mandates_organisation ON mandates(organisation_id, created_at);
CREATE INDEX mandates_usager ON mandates(usager_id);

CREATE TABLE mandate_demarches (
    mandate_id       TEXT NOT NULL REFERENCES mandates(id),
    demarche         TEXT NOT NULL,
    revoked_at       BIGINT,
    revoked_by_kind  TEXT,
    revoked_by       TEXT,
    revoke_reason    TEXT,
    PRIMARY KEY (mandate_id, demarche)
);
