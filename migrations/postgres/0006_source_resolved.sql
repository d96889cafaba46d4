-- When the source (a resolved Alertmanager alert) said the fault is over. Set on a pending
-- incident that then ends as `resolved`, and on a running one (which may be left to finish), so
-- the report can say that the alert resolved.
ALTER TABLE incidents ADD COLUMN resolved_at timestamptz;
