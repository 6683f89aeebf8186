-- Recurring schedules (POST /schedules): a cron expression in an IANA zone and a job template. The
-- sweeper (schedules.py) makes each occurrence's job ahead of time as a SCHEDULED job whose
-- Idempotency-Key, `schedule:<id>:<generation>:<epoch seconds>`, is unique per owner in jobs: a second
-- sweeper, a retried pass or one killed mid-pass finds that job instead of making another.
CREATE TABLE schedules (
  id              CHAR(26)     CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  owner           VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  cron            VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  timezone        VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  -- The job template as the client gave it (validated as POST /jobs validates a submission).
  job             JSON NOT NULL,
  overlap         VARCHAR(8)   CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  paused          BOOLEAN NOT NULL DEFAULT FALSE,
  -- The next occurrence to make a job for; NULL while paused. A guarded UPDATE advances it.
  next_run_at     DATETIME(3) NULL,
  -- Since when the schedule is paused: on resume, the latest occurrence missed since runs once.
  paused_at       DATETIME(3) NULL,
  -- One more at each pause, resume or change of cron or zone: an occurrence whose job was withdrawn
  -- then (cancelled before it was due) can have a job again under the new generation.
  generation      INT UNSIGNED NOT NULL DEFAULT 0,
  last_run_at     DATETIME(3) NULL,
  last_job_id     CHAR(26)     CHARACTER SET ascii COLLATE ascii_bin NULL,
  skipped         INT UNSIGNED NOT NULL DEFAULT 0,
  last_skipped_at DATETIME(3) NULL,
  last_skip_reason VARCHAR(255) NULL,
  created_at      DATETIME(3) NOT NULL,
  updated_at      DATETIME(3) NOT NULL,
  PRIMARY KEY (id),
  -- A client's schedules, oldest first (ids are time-ordered), and their count against maxSchedules.
  KEY ix_schedules_owner (owner, id),
  -- The sweeper's one range: schedules due by a moment, soonest first (paused ones are NULL: not in it).
  KEY ix_schedules_next_run (next_run_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
