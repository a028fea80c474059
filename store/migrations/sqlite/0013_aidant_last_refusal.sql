-- Why an aidant's last sign-in was refused, until one succeeds (issue 14):
-- an aidant without a second factor at the provider can never sign in,
-- and their référent must see it rather than "Actif".
ALTER TABLE aidants ADD COLUMN last_refusal TEXT;
