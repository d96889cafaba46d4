-- The agent-run row follows the incident inside the same statement, so each of the hot pair of
-- the queue (claim, complete) is one autocommit statement instead of BEGIN, two statements and
-- COMMIT. Each statement is a hand-off to the connection's thread; those hand-offs and the
-- commits, not the statements' own work, dominated claim+complete (measured with perf; see
-- docs/benchmarks.md, store).

-- A claim (the only statement that raises `attempt`) opens the attempt's run row.
CREATE TRIGGER agent_run_opens_on_claim AFTER UPDATE OF attempt ON incidents
WHEN NEW.status = 'running' AND NEW.attempt > OLD.attempt
BEGIN
    INSERT INTO agent_runs (incident_id, attempt, worker, started_at)
    VALUES (NEW.id, NEW.attempt, NEW.lease_owner, NEW.started_at);
END;

-- Finishing the run of a still-running attempt finishes the incident with the run's outcome.
-- Requeue, rescue and cancel move the incident out of `running` first and then finish the run
-- row, so for them this changes nothing.
CREATE TRIGGER incident_finishes_with_its_run AFTER UPDATE OF finished_at ON agent_runs
WHEN OLD.finished_at IS NULL AND NEW.finished_at IS NOT NULL
BEGIN
    UPDATE incidents SET status = NEW.outcome, failure_reason = NEW.reason,
        finished_at = NEW.finished_at, lease_owner = NULL, lease_expires_at = NULL
    WHERE id = NEW.incident_id AND attempt = NEW.attempt AND status = 'running';
END;
