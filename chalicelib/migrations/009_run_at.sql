-- Scheduled jobs (runAt, delaySeconds): SCHEDULED until due. The index serves the sweeper, which
-- sends each one once it is due within SQS's 15-minute delay (and finds the lost ones).
ALTER TABLE jobs ADD COLUMN run_at DATETIME(3) NULL AFTER timeout_seconds;
CREATE INDEX ix_jobs_status_run_at ON jobs (status, sent, run_at);
