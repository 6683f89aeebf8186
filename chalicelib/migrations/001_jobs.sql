-- The jobs table: the source of truth for every job and the outbox of the queue.
-- Common SQL of MySQL 8 and MariaDB 10.11: JSON is a real type in MySQL and a checked LONGTEXT in
-- MariaDB; both hand it to PyMySQL as text.
CREATE TABLE jobs (
  id               CHAR(26)     CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  owner            VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  type             VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  status           VARCHAR(16)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  payload          JSON NOT NULL,
  result           JSON NULL,
  error            TEXT NULL,
  progress         TINYINT UNSIGNED NOT NULL DEFAULT 0,
  progress_detail  JSON NULL,
  message          VARCHAR(1024) NULL,
  -- The durable checkpoint: written at hand-offs, read when Redis has lost the hot one.
  checkpoint       JSON NULL,
  checkpoint_seq   INT UNSIGNED NOT NULL DEFAULT 0,
  attempts         SMALLINT UNSIGNED NOT NULL DEFAULT 0,
  max_attempts     SMALLINT UNSIGNED NOT NULL,
  timeout_seconds  INT UNSIGNED NOT NULL,
  cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
  idempotency_key  VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NULL,
  request_hash     CHAR(64)     CHARACTER SET ascii COLLATE ascii_bin NULL,
  created_at       DATETIME(3) NOT NULL,
  started_at       DATETIME(3) NULL,
  finished_at      DATETIME(3) NULL,
  updated_at       DATETIME(3) NOT NULL,
  PRIMARY KEY (id),
  -- NULL keys never collide, so jobs without an Idempotency-Key are unconstrained.
  UNIQUE KEY uq_jobs_owner_idempotency (owner, idempotency_key),
  -- Listing a client's jobs newest first (ids are time-ordered), optionally by status or type.
  KEY ix_jobs_owner (owner, id),
  KEY ix_jobs_owner_status (owner, status, id),
  KEY ix_jobs_owner_type (owner, type, id),
  -- The sweeper: PENDING or RUNNING rows by age, terminal rows past retention.
  KEY ix_jobs_status_updated (status, updated_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
