-- Retry (POST /jobs/{id}/retry): a FAILED or CANCELLED job runs again under the same id, and the
-- error of the run before is kept here (the view's `previousError`) while `error` starts empty.
-- A job retried after a cancel (no error) keeps the error of the run before that.
ALTER TABLE jobs ADD COLUMN previous_error TEXT NULL AFTER error;
