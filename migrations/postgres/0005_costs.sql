-- What each agent run consumed, as its CLI reported it (or as priced from its tokens).
-- NULL means "not reported"; `accounting` says where the cost comes from: reported, computed,
-- tokens_only, unknown (NULL while the run has not been accounted).
ALTER TABLE agent_runs
    ADD COLUMN model TEXT,
    ADD COLUMN input_tokens BIGINT,
    ADD COLUMN output_tokens BIGINT,
    ADD COLUMN cache_read_tokens BIGINT,
    ADD COLUMN cache_write_tokens BIGINT,
    ADD COLUMN turns BIGINT,
    ADD COLUMN cost_usd DOUBLE PRECISION,
    ADD COLUMN accounting TEXT
        CHECK (accounting IN ('reported', 'computed', 'tokens_only', 'unknown')),
    ADD COLUMN agent_error BOOLEAN;

-- Spend and run counts over time windows (`nightcrier costs`, `status`, budgets).
CREATE INDEX agent_runs_started ON agent_runs (started_at);

-- The queue serves the most severe first (critical, then warning, then anything else), then the
-- oldest: a flood of warnings must not starve a critical fault.
ALTER TABLE incidents ADD COLUMN severity_rank SMALLINT GENERATED ALWAYS AS
    (CASE lower(severity) WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END) STORED;
DROP INDEX incidents_pending;
CREATE INDEX incidents_pending ON incidents (severity_rank, created_at, id) WHERE status = 'pending';

-- When the incident last became pending through `retry` (NULL: since it was created): a pending
-- incident expires `dedup.pending_ttl` after this.
ALTER TABLE incidents ADD COLUMN pending_since TIMESTAMPTZ;
