-- The national statistics read the mandates of the last months (and the
-- longest duration before them) by creation date, across organisations.
CREATE INDEX mandates_created ON mandates (created_at);
