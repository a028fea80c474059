-- The provider's conformance (issue 12): a service may ask for a signed
-- userinfo; a request remembers how recent the aidant's authentication
-- must be (max_age, prompt=login) and the claims asked through the claims
-- parameter; a code remembers those claims and the level of assurance
-- achieved; a session remembers whether the aidant used a second factor,
-- which decides that level (docs/SERVICES.md).

ALTER TABLE services ADD COLUMN userinfo_signed BOOLEAN NOT NULL DEFAULT FALSE;

-- The aidant must have authenticated at or after this time (ms), or NULL.
ALTER TABLE oidc_requests ADD COLUMN auth_after BIGINT;
-- The claims parameter, as the provider understood it (JSON), or ''.
ALTER TABLE oidc_requests ADD COLUMN claims TEXT NOT NULL DEFAULT '';

ALTER TABLE oidc_codes ADD COLUMN claims TEXT NOT NULL DEFAULT '';
-- What the ID token asserts in acr; codes of before this migration were
-- issued asserting eidas1.
ALTER TABLE oidc_codes ADD COLUMN acr TEXT NOT NULL DEFAULT 'eidas1';

-- Sessions of before this migration are taken as single-factor: nothing
-- recorded that they were not.
ALTER TABLE sessions ADD COLUMN mfa BOOLEAN NOT NULL DEFAULT FALSE;
