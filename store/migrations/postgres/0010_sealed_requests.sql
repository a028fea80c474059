-- No durable write before an authenticated action (issue 13): a sign-in
-- leaving for an identity provider and a service's authorization request
-- waiting for the aidant's choice now travel sealed in the browser
-- (internal/seal), not in rows that any anonymous visit would write. What
-- stays is the record that one was used, written by the authenticated
-- step that consumes it, so that none is used twice; rows are swept once
-- expired, through the index. Requests pending during the upgrade are
-- lost: their sign-in or choice starts again.
DROP TABLE auth_requests;
DROP TABLE oidc_requests;

CREATE TABLE spent_requests (
    kind        TEXT NOT NULL,     -- sign-in | authorization
    id          TEXT NOT NULL,     -- SHA-256 of the sign-in's state, or the request's id
    expires_at  BIGINT NOT NULL,   -- when the sealed value it stands for expires (ms)
    PRIMARY KEY (kind, id)
);
CREATE INDEX spent_requests_expiry ON spent_requests (expires_at);
