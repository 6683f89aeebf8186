-- Completion webhooks (issue 19). The job row is the webhook's outbox, so a terminal write and its
-- delivery cannot come apart: `callback_state` is WAITING from the insert on (NULL: no callback),
-- the final UPDATE sets `callback_due_at`, and the sweeper enqueues a terminal job still WAITING a
-- minute later (the worker enqueues it right after the final write and marks it QUEUED, the one
-- statement a job with a callback costs more). The delivery function records each attempt in
-- `deliveries` (a JSON list, shown by GET /jobs/{id}/deliveries) and ends in DELIVERED or FAILED.
ALTER TABLE jobs ADD COLUMN callback_url VARCHAR(2048) CHARACTER SET ascii COLLATE ascii_bin NULL AFTER result_key;
ALTER TABLE jobs ADD COLUMN callback_state VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NULL AFTER callback_url;
-- When the next delivery attempt is due: the job's end, then each retry's time.
ALTER TABLE jobs ADD COLUMN callback_due_at DATETIME(3) NULL AFTER callback_state;
ALTER TABLE jobs ADD COLUMN deliveries JSON NULL AFTER callback_due_at;
-- The sweeper's two webhook rules: WAITING terminal rows and QUEUED rows long past due, oldest first.
CREATE INDEX ix_jobs_callback_due ON jobs (callback_state, callback_due_at);
