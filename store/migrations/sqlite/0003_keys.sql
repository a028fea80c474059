-- The instance's JOSE signing keys (package keys): those that sign mandates
-- and the ID and access tokens of the OpenID provider. The private part is
-- encrypted (AES-256-GCM, the kid as additional data) under a key derived
-- from keys.encryption_secret; the database never holds it in clear.
-- A current key has retired_at and published_until NULL; a retired key
-- signs nothing more and stays in the JWKS until published_until.

CREATE TABLE signing_keys (
    kid              TEXT PRIMARY KEY,
    use              TEXT NOT NULL,            -- mandate | token
    alg              TEXT NOT NULL,            -- ES256 | RS256
    public_jwk       TEXT NOT NULL,            -- JSON, public part only
    private_enc      BLOB NOT NULL,            -- version byte, nonce, AES-GCM sealed PKCS #8
    created_at       BIGINT NOT NULL,
    retired_at       BIGINT NULL,
    published_until  BIGINT NULL
);
-- At most one current key per (use, alg), whatever the processes racing.
CREATE UNIQUE INDEX signing_keys_current ON signing_keys(use, alg) WHERE retired_at IS NULL;
