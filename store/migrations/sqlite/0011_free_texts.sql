-- Free text a person, an aidant or an operator types (the reason of a
-- disabling, an objection, an error declared) is personal data: it is
-- kept here, erasable, and the event carries only SHA-256(salt ‖ text)
-- (SPEC §6). Erasing clears the text and its salt and keeps the row, so
-- that an event's hash is known to have pointed at an erased text.
CREATE TABLE free_texts (
    hash        TEXT PRIMARY KEY,   -- hex SHA-256 of the salt then the text
    salt        TEXT,               -- hex, 16 random bytes; NULL once erased
    body        TEXT,               -- NULL once erased
    created_at  BIGINT NOT NULL,
    erased_at   BIGINT
);
