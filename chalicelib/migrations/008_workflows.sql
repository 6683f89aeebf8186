-- Workflows (issue 17): batches with a fan-in (`then`), and jobs that wait for others (`dependsOn`).
-- A waiting job is WAITING until every job it depends on has ended; its dependencies are rows of
-- job_dependencies (a batch's `then` depends on every member), found from either side: a waiter's
-- dependencies when it is settled, a job's waiters by the sweeper's safety net.
CREATE TABLE batches (
  id              CHAR(26)     CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  owner           VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  job_count       SMALLINT UNSIGNED NOT NULL,
  then_job_id     CHAR(26)     CHARACTER SET ascii COLLATE ascii_bin NULL,
  then_on_failure VARCHAR(8)   CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT 'cancel',
  callback_url    VARCHAR(2048) CHARACTER SET ascii COLLATE ascii_bin NULL,
  cancelled       BOOLEAN NOT NULL DEFAULT FALSE,
  idempotency_key VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NULL,
  request_hash    CHAR(64)     CHARACTER SET ascii COLLATE ascii_bin NULL,
  created_at      DATETIME(3) NOT NULL,
  updated_at      DATETIME(3) NOT NULL,
  PRIMARY KEY (id),
  UNIQUE KEY uq_batches_owner_idempotency (owner, idempotency_key),
  KEY ix_batches_owner (owner, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE job_dependencies (
  job_id     CHAR(26) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  depends_on CHAR(26) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  PRIMARY KEY (job_id, depends_on),
  KEY ix_dependencies_depends_on (depends_on)
) ENGINE=InnoDB;

-- A member's (or a `then` job's) batch; the ids a job was submitted with in `dependsOn` (for its view:
-- the table has them too); whether a waiter runs even when a dependency failed (thenOnFailure "run").
ALTER TABLE jobs ADD COLUMN batch_id CHAR(26) CHARACTER SET ascii COLLATE ascii_bin NULL AFTER owner;
ALTER TABLE jobs ADD COLUMN depends_on JSON NULL AFTER batch_id;
ALTER TABLE jobs ADD COLUMN run_on_failure BOOLEAN NOT NULL DEFAULT FALSE AFTER depends_on;
-- A batch's members by status: its counts, its `then`'s release, its bulk cancel.
CREATE INDEX ix_jobs_batch_status ON jobs (batch_id, status, id);
