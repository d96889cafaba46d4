-- Two more incident states: `resolved` (the source said the fault is over before an agent ran)
-- and `expired` (pending longer than the operator's TTL). SQLite cannot alter a CHECK constraint,
-- so the table is rebuilt. sqlx runs SQLite migrations inside a transaction, where
-- `PRAGMA foreign_keys = OFF` has no effect, and dropping a parent table with foreign keys on
-- deletes its children (ON DELETE CASCADE). So the children are rebuilt too, each new child
-- pointing at `incidents_new`; the old children go first, then the old parent (nothing left to
-- cascade into), and the renames carry the new children's references along. The triggers that
-- name these tables are dropped first and re-created last.

DROP TRIGGER agent_run_opens_on_claim;
DROP TRIGGER incident_finishes_with_its_run;

CREATE TABLE incidents_new (
    id               TEXT PRIMARY KEY NOT NULL,
    cluster          TEXT NOT NULL CHECK (cluster <> ''),
    fault_id         TEXT NOT NULL CHECK (fault_id <> ''),
    fault_type       TEXT NOT NULL,
    severity         TEXT NOT NULL,
    namespace        TEXT,
    resource_kind    TEXT NOT NULL,
    resource_name    TEXT NOT NULL,
    resource_uid     TEXT NOT NULL,
    context          TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN
                         ('pending', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled',
                          'skipped', 'resolved', 'expired')),
    failure_reason   TEXT,
    occurrences      INTEGER NOT NULL CHECK (occurrences >= 1),
    first_seen       INTEGER NOT NULL,
    last_seen        INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    attempt          INTEGER NOT NULL DEFAULT 0,
    attempt_base     INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    reported_attempt INTEGER NOT NULL DEFAULT 0,
    report_failures  INTEGER NOT NULL DEFAULT 0
) STRICT;

INSERT INTO incidents_new (id, cluster, fault_id, fault_type, severity, namespace, resource_kind,
    resource_name, resource_uid, context, status, failure_reason, occurrences, first_seen,
    last_seen, created_at, started_at, finished_at, attempt, attempt_base, lease_owner,
    lease_expires_at, reported_attempt, report_failures)
SELECT id, cluster, fault_id, fault_type, severity, namespace, resource_kind,
    resource_name, resource_uid, context, status, failure_reason, occurrences, first_seen,
    last_seen, created_at, started_at, finished_at, attempt, attempt_base, lease_owner,
    lease_expires_at, reported_attempt, report_failures
FROM incidents;

CREATE TABLE fault_occurrences_new (
    id               INTEGER PRIMARY KEY,
    incident_id      TEXT NOT NULL REFERENCES incidents_new (id) ON DELETE CASCADE,
    cluster          TEXT NOT NULL,
    fault_id         TEXT NOT NULL,
    fault_type       TEXT NOT NULL,
    severity         TEXT NOT NULL,
    namespace        TEXT,
    resource_kind    TEXT NOT NULL,
    resource_name    TEXT NOT NULL,
    resource_uid     TEXT NOT NULL,
    context          TEXT NOT NULL,
    server_timestamp TEXT NOT NULL,
    received_at      INTEGER NOT NULL,
    raw              TEXT NOT NULL
) STRICT;
INSERT INTO fault_occurrences_new SELECT id, incident_id, cluster, fault_id, fault_type, severity,
    namespace, resource_kind, resource_name, resource_uid, context, server_timestamp, received_at,
    raw FROM fault_occurrences;

CREATE TABLE agent_runs_new (
    incident_id TEXT NOT NULL REFERENCES incidents_new (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    worker      TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    pid         INTEGER,
    exit_code   INTEGER,
    outcome     TEXT CHECK (outcome IN
                    ('pending', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled', 'skipped')),
    reason      TEXT,
    log_path    TEXT,
    PRIMARY KEY (incident_id, attempt)
) STRICT;
INSERT INTO agent_runs_new SELECT incident_id, attempt, worker, started_at, finished_at, pid,
    exit_code, outcome, reason, log_path FROM agent_runs;

DROP TABLE fault_occurrences;
DROP TABLE agent_runs;
DROP TABLE incidents;
ALTER TABLE incidents_new RENAME TO incidents;
ALTER TABLE fault_occurrences_new RENAME TO fault_occurrences;
ALTER TABLE agent_runs_new RENAME TO agent_runs;

CREATE INDEX fault_occurrences_incident ON fault_occurrences (incident_id, id);

CREATE UNIQUE INDEX incidents_open_fault ON incidents (cluster, fault_id)
    WHERE status IN ('pending', 'running');
CREATE INDEX incidents_finished_fault ON incidents (cluster, fault_id, finished_at)
    WHERE finished_at IS NOT NULL;
CREATE INDEX incidents_pending ON incidents (created_at, id) WHERE status = 'pending';
CREATE INDEX incidents_running ON incidents (cluster, lease_expires_at) WHERE status = 'running';
CREATE INDEX incidents_finished ON incidents (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX incidents_unreported ON incidents (finished_at, id)
    WHERE status IN ('succeeded', 'failed', 'timed_out') AND reported_attempt < attempt;

-- Same bodies as in 0003_run_triggers.sql.
CREATE TRIGGER agent_run_opens_on_claim AFTER UPDATE OF attempt ON incidents
WHEN NEW.status = 'running' AND NEW.attempt > OLD.attempt
BEGIN
    INSERT INTO agent_runs (incident_id, attempt, worker, started_at)
    VALUES (NEW.id, NEW.attempt, NEW.lease_owner, NEW.started_at);
END;

CREATE TRIGGER incident_finishes_with_its_run AFTER UPDATE OF finished_at ON agent_runs
WHEN OLD.finished_at IS NULL AND NEW.finished_at IS NOT NULL
BEGIN
    UPDATE incidents SET status = NEW.outcome, failure_reason = NEW.reason,
        finished_at = NEW.finished_at, lease_owner = NULL, lease_expires_at = NULL
    WHERE id = NEW.incident_id AND attempt = NEW.attempt AND status = 'running';
END;
