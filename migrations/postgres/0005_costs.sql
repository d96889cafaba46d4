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
