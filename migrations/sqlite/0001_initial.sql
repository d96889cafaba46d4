-- Times are INTEGER unix microseconds (UTC); ids are UUID text (lower-case, hyphenated).

CREATE TABLE incidents (
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
                         ('pending', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled', 'skipped')),
    failure_reason   TEXT,
    occurrences      INTEGER NOT NULL CHECK (occurrences >= 1),
    first_seen       INTEGER NOT NULL,
    last_seen        INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    -- Number of the latest claim; only ever grows, it fences transitions out of running.
    attempt          INTEGER NOT NULL DEFAULT 0,
    -- `attempt` when the incident was last retried: attempts used = attempt - attempt_base.
    attempt_base     INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_at INTEGER
) STRICT;

-- At most one open incident per fault: new occurrences attach to it.
CREATE UNIQUE INDEX incidents_open_fault ON incidents (cluster, fault_id)
    WHERE status IN ('pending', 'running');
-- Dedup lookups of finished incidents by fault (open ones use the index above). Partial, so
-- opening an incident does not touch it.
CREATE INDEX incidents_finished_fault ON incidents (cluster, fault_id, finished_at)
    WHERE finished_at IS NOT NULL;
-- The queue: oldest pending first.
CREATE INDEX incidents_pending ON incidents (created_at, id) WHERE status = 'pending';
-- Running counts (limits) and lease expiry.
CREATE INDEX incidents_running ON incidents (cluster, lease_expires_at) WHERE status = 'running';
-- Recent failures. (Listing newest first uses the primary key: v7 ids sort by creation.)
CREATE INDEX incidents_finished ON incidents (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE fault_occurrences (
    id               INTEGER PRIMARY KEY,
    incident_id      TEXT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
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

CREATE INDEX fault_occurrences_incident ON fault_occurrences (incident_id, id);

CREATE TABLE agent_runs (
    incident_id TEXT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
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

CREATE TABLE connection_states (
    cluster          TEXT PRIMARY KEY NOT NULL CHECK (cluster <> ''),
    state            TEXT NOT NULL,
    subscription_id  TEXT,
    last_error       TEXT,
    last_event_at    INTEGER,
    events_received  INTEGER NOT NULL,
    events_malformed INTEGER NOT NULL,
    reconnects       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
) STRICT;
