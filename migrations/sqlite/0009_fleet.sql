-- A fleet of processes on one database (issue 16). On SQLite one process owns every cluster:
-- these tables exist so both schemas match, and stay empty.
CREATE TABLE fleet_instances (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    http_addr TEXT,
    version TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    draining INTEGER NOT NULL DEFAULT 0,
    stopped_at INTEGER
);

CREATE TABLE cluster_leases (
    cluster TEXT PRIMARY KEY,
    owner TEXT,
    epoch INTEGER NOT NULL DEFAULT 0,
    expires_at INTEGER NOT NULL,
    previous_owner TEXT
);
CREATE INDEX cluster_leases_owner ON cluster_leases (owner);
