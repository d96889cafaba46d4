CREATE TABLE incidents (
    id               uuid PRIMARY KEY,
    cluster          text NOT NULL CHECK (cluster <> ''),
    fault_id         text NOT NULL CHECK (fault_id <> ''),
    fault_type       text NOT NULL,
    severity         text NOT NULL,
    namespace        text,
    resource_kind    text NOT NULL,
    resource_name    text NOT NULL,
    resource_uid     text NOT NULL,
    context          text NOT NULL,
    status           text NOT NULL CHECK (status IN
                         ('pending', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled', 'skipped')),
    failure_reason   text,
    occurrences      bigint NOT NULL CHECK (occurrences >= 1),
    first_seen       timestamptz NOT NULL,
    last_seen        timestamptz NOT NULL,
    created_at       timestamptz NOT NULL,
    started_at       timestamptz,
    finished_at      timestamptz,
    -- Number of the latest claim; only ever grows, it fences transitions out of running.
    attempt          integer NOT NULL DEFAULT 0,
    -- `attempt` when the incident was last retried: attempts used = attempt - attempt_base.
    attempt_base     integer NOT NULL DEFAULT 0,
    lease_owner      text,
    lease_expires_at timestamptz
);

-- At most one open incident per fault, even with several writers: new occurrences attach to it.
CREATE UNIQUE INDEX incidents_open_fault ON incidents (cluster, fault_id)
    WHERE status IN ('pending', 'running');
-- Dedup lookups of finished incidents; partial, so opening an incident does not touch it.
CREATE INDEX incidents_finished_fault ON incidents (cluster, fault_id, finished_at)
    WHERE finished_at IS NOT NULL;
CREATE INDEX incidents_pending ON incidents (created_at, id) WHERE status = 'pending';
CREATE INDEX incidents_running ON incidents (cluster, lease_expires_at) WHERE status = 'running';
-- Recent failures. (Listing newest first uses the primary key: v7 ids sort by creation.)
CREATE INDEX incidents_finished ON incidents (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE fault_occurrences (
    id               bigserial PRIMARY KEY,
    incident_id      uuid NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    cluster          text NOT NULL,
    fault_id         text NOT NULL,
    fault_type       text NOT NULL,
    severity         text NOT NULL,
    namespace        text,
    resource_kind    text NOT NULL,
    resource_name    text NOT NULL,
    resource_uid     text NOT NULL,
    context          text NOT NULL,
    server_timestamp text NOT NULL,
    received_at      timestamptz NOT NULL,
    -- json, not jsonb: kept exactly as received (jsonb rejects \u0000 and reorders keys).
    raw              json NOT NULL
);

CREATE INDEX fault_occurrences_incident ON fault_occurrences (incident_id, id);

CREATE TABLE agent_runs (
    incident_id uuid NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    attempt     integer NOT NULL,
    worker      text NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    pid         integer,
    exit_code   integer,
    outcome     text CHECK (outcome IN
                    ('pending', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled', 'skipped')),
    reason      text,
    log_path    text,
    PRIMARY KEY (incident_id, attempt)
);

CREATE TABLE connection_states (
    cluster          text PRIMARY KEY CHECK (cluster <> ''),
    state            text NOT NULL,
    subscription_id  text,
    last_error       text,
    last_event_at    timestamptz,
    events_received  bigint NOT NULL,
    events_malformed bigint NOT NULL,
    reconnects       bigint NOT NULL,
    updated_at       timestamptz NOT NULL
);
