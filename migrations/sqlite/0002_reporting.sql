-- Reporting (render, upload, notify) after a run finishes. An incident needs reporting while its
-- latest attempt is finished and not yet reported: comparing attempts (not a flag) means a retried
-- incident is reported again after its new run, without touching the queue's statements.
ALTER TABLE incidents ADD COLUMN reported_attempt INTEGER NOT NULL DEFAULT 0;
-- Failed reporting tries of the current attempt; the reporter gives up after a bound.
ALTER TABLE incidents ADD COLUMN report_failures INTEGER NOT NULL DEFAULT 0;

-- What finished before this migration is not news: do not notify about it.
UPDATE incidents SET reported_attempt = attempt
    WHERE status IN ('succeeded', 'failed', 'timed_out');

CREATE INDEX incidents_unreported ON incidents (finished_at, id)
    WHERE status IN ('succeeded', 'failed', 'timed_out') AND reported_attempt < attempt;
