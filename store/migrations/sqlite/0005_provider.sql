-- The OpenID provider for public services (SPEC §7): registered services,
-- pending authorization requests, single-use codes, access tokens, and
-- the client assertions already seen (replay protection).

CREATE TABLE services (
    id                TEXT PRIMARY KEY,          -- the client_id
    name              TEXT NOT NULL,
    redirect_uris     TEXT NOT NULL,             -- one per line, exact match
    post_logout_uris  TEXT NOT NULL DEFAULT '',  -- one per line
    demarches         TEXT NOT NULL,             -- démarches served, comma-separated
    auth_method       TEXT NOT NULL,             -- private_key_jwt | client_secret_basic | client_secret_post
    jwks              TEXT,                      -- the client's public keys (private_key_jwt)
    secret_hash       TEXT,                      -- SHA-256 of a generated 256-bit secret
    id_token_alg      TEXT NOT NULL DEFAULT 'ES256',
    active            BOOLEAN NOT NULL DEFAULT TRUE,
    created_at        BIGINT NOT NULL
);

CREATE TABLE oidc_requests (
    id              TEXT PRIMARY KEY,            -- SHA-256 of the token in the aidant's page
    service_id      TEXT NOT NULL REFERENCES services(id),
    redirect_uri    TEXT NOT NULL,
    state           TEXT NOT NULL,
    nonce           TEXT NOT NULL,
    code_challenge  TEXT NOT NULL,
    scope           TEXT NOT NULL,
    rep_scope       TEXT NOT NULL DEFAULT '',    -- démarches asked through claims, comma-separated
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL
);

CREATE TABLE oidc_codes (
    hash             TEXT PRIMARY KEY,           -- SHA-256 of the code
    service_id       TEXT NOT NULL REFERENCES services(id),
    redirect_uri     TEXT NOT NULL,
    code_challenge   TEXT NOT NULL,
    nonce            TEXT NOT NULL,
    scope            TEXT NOT NULL,
    aidant_id        TEXT NOT NULL,
    organisation_id  TEXT NOT NULL,
    usager_id        TEXT NOT NULL,
    mandate_id       TEXT NOT NULL,
    demarche         TEXT NOT NULL,
    auth_time        BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    used_at          BIGINT
);

CREATE TABLE oidc_tokens (
    jti              TEXT PRIMARY KEY,
    code_hash        TEXT NOT NULL,
    service_id       TEXT NOT NULL,
    mandate_id       TEXT NOT NULL,
    demarche         TEXT NOT NULL,
    expires_at       BIGINT NOT NULL,
    revoked_at       BIGINT,
    claims           TEXT NOT NULL               -- what userinfo answers (the ID token's claims but iss, aud, nonce, times)
);
CREATE INDEX oidc_tokens_code ON oidc_tokens(code_hash);

CREATE TABLE client_assertions (
    jti         TEXT NOT NULL,
    client_id   TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (client_id, jti)
);

-- What has expired is purged every few seconds, through these indexes.
CREATE INDEX oidc_requests_expiry ON oidc_requests(expires_at);
CREATE INDEX oidc_codes_expiry ON oidc_codes(expires_at);
CREATE INDEX oidc_tokens_expiry ON oidc_tokens(expires_at);
CREATE INDEX client_assertions_expiry ON client_assertions(expires_at);
