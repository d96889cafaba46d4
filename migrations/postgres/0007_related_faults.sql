-- Related faults (issue #14): the key that makes faults of one workload or object attach to one
-- incident (`fault::Fault::related_key`). NULL for incidents opened before this migration and
-- for faults that name no object.
ALTER TABLE incidents ADD COLUMN related_key TEXT;
CREATE INDEX incidents_related ON incidents (cluster, related_key, finished_at);
