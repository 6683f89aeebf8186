-- The token of the worker lease that last took the job (random, 32 hex characters). A worker's
-- hand-off and final UPDATEs carry `AND lease_token = <its token>`, so a worker whose lease was
-- taken over cannot overwrite the newer holder's checkpoint or outcome.
ALTER TABLE jobs ADD COLUMN lease_token CHAR(32) CHARACTER SET ascii COLLATE ascii_bin NULL AFTER cancel_requested;
