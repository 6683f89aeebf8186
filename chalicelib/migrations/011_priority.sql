-- Priorities: a high job's messages go to the high-priority queue (queue.JobQueue), so a backlog of
-- normal jobs never delays it. Every existing row is normal. No index: no query selects by it.
ALTER TABLE jobs ADD COLUMN priority VARCHAR(8) NOT NULL DEFAULT 'normal' AFTER run_at;
