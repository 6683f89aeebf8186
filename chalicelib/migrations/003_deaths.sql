-- Crash loops end (MAX_DEATHS): how many times in a row the job's worker died while running the
-- same chunk, counted where a new worker takes the job over from an expired lease (store.claim),
-- so it counts deaths whichever path sent the job again (SQS redelivery, the sweeper). Numbered 004
-- so that it never collides with a 003 of another branch.
ALTER TABLE jobs ADD COLUMN deaths SMALLINT UNSIGNED NOT NULL DEFAULT 0 AFTER lease_token;
-- The chunk (numbered from 1) those deaths happened in; a death at another chunk starts again at 1.
ALTER TABLE jobs ADD COLUMN death_chunk INT UNSIGNED NULL AFTER deaths;
