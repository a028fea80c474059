-- A withdrawal now gives a reason code (journaled) and, optionally, free
-- text kept erasable in free_texts (issue 14): the rows keep the text's
-- hash, the events too. Rows revoked before keep the text typed then in
-- revoke_reason.
ALTER TABLE mandates ADD COLUMN revoke_text TEXT;
ALTER TABLE mandate_demarches ADD COLUMN revoke_text TEXT;
