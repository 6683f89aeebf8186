-- Held jobs (holds.py): an owner's jobs over its running cap wait in MySQL, not in the queue.
-- The index serves the release (an owner's oldest held jobs) and the sweeper (owners with held jobs).
ALTER TABLE jobs ADD COLUMN held BOOLEAN NOT NULL DEFAULT FALSE AFTER sent;
CREATE INDEX ix_jobs_held_owner ON jobs (held, owner, id);
