-- A fleet of processes on one database (issue 16): the process registry and one lease per
-- configured cluster. Times are the database's clock (`now()`), so processes need no
-- synchronised clocks for ownership.
CREATE TABLE fleet_instances (
    id text PRIMARY KEY,           -- the boot's owner string (<instance>/<boot uuid>/<pid.start>)
    host text NOT NULL,
    pid bigint NOT NULL,
    http_addr text,
    version text NOT NULL,
    config_hash text NOT NULL,     -- fingerprint of the clusters and agent configuration
    started_at timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL,
    draining boolean NOT NULL DEFAULT false,
    stopped_at timestamptz         -- set by a clean exit; a dead process keeps its row
);

CREATE TABLE cluster_leases (
    cluster text PRIMARY KEY,
    owner text,                    -- fleet_instances.id, NULL when free
    epoch bigint NOT NULL DEFAULT 0,  -- fencing token: grows on every change of owner
    expires_at timestamptz NOT NULL,
    previous_owner text            -- who released it last (for the taker's log)
);
CREATE INDEX cluster_leases_owner ON cluster_leases (owner);
