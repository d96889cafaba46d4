-- What each agent run consumed, as its CLI reported it (or as priced from its tokens).
-- NULL means "not reported"; `accounting` says where the cost comes from: reported, computed,
-- tokens_only, unknown (NULL while the run has not been accounted).
ALTER TABLE agent_runs ADD COLUMN model TEXT;
ALTER TABLE agent_runs ADD COLUMN input_tokens INTEGER;
ALTER TABLE agent_runs ADD COLUMN output_tokens INTEGER;
ALTER TABLE agent_runs ADD COLUMN cache_read_tokens INTEGER;
ALTER TABLE agent_runs ADD COLUMN cache_write_tokens INTEGER;
ALTER TABLE agent_runs ADD COLUMN turns INTEGER;
ALTER TABLE agent_runs ADD COLUMN cost_usd REAL;
ALTER TABLE agent_runs ADD COLUMN accounting TEXT
    CHECK (accounting IN ('reported', 'computed', 'tokens_only', 'unknown'));
ALTER TABLE agent_runs ADD COLUMN agent_error INTEGER;

-- Spend and run counts over time windows (`nightcrier costs`, `status`, budgets).
CREATE INDEX agent_runs_started ON agent_runs (started_at);
