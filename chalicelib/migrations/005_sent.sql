-- The outbox knows what was sent: TRUE from the insert on (optimistic: the send that follows it
-- almost always succeeds, so the happy path writes nothing more), set FALSE only when the send
-- failed. The sweeper sends unsent rows at its next pass and, much later (PENDING_LOST_SECONDS),
-- rows whose message must have been lost, so a backlog queued behind others is never sent twice.
ALTER TABLE jobs ADD COLUMN sent BOOLEAN NOT NULL DEFAULT TRUE AFTER cancel_requested;
-- The sweeper's two outbox rules: PENDING rows by sent, oldest first.
CREATE INDEX ix_jobs_status_sent_updated ON jobs (status, sent, updated_at);
