//! The statements that read the same in both dialects, written once. sqlx's SQLite driver binds
//! `$N` placeholders by number as PostgreSQL does (and a repeated `$N` is one parameter in
//! both), so a driver passes these to `sqlx::query` and binds its own representation of each
//! value: SQLite stores ids as text and times as unix microseconds, PostgreSQL as `uuid` and
//! `timestamptz`.
//!
//! This module owns only SQL text: no binding, no rules. A statement whose dialects differ (the
//! claim, `record_faults`, anything with `FOR UPDATE`, `RETURNING` into a locked row, a
//! collation, a cast or date arithmetic) stays in its driver.

/// Column lists as macros, so the statements below are `const` (built by `concat!` at compile
/// time) instead of a `format!` on every call.
macro_rules! incident_columns {
    () => {
        "id, cluster, fault_id, fault_type, severity, namespace, \
         resource_kind, resource_name, resource_uid, context, status, failure_reason, occurrences, \
         first_seen, last_seen, created_at, started_at, finished_at, attempt, lease_owner, \
         lease_expires_at, resolved_at"
    };
}

macro_rules! run_columns {
    () => {
        "incident_id, attempt, worker, started_at, finished_at, pid, \
         exit_code, outcome, reason, log_path, model, input_tokens, output_tokens, \
         cache_read_tokens, cache_write_tokens, turns, cost_usd, accounting, agent_error"
    };
}

/// The columns [`super::records::incident`] reads, for the statements a driver builds itself.
pub(super) const INCIDENT_COLUMNS: &str = incident_columns!();

/// The attempt budget, in the form every transition out of `running` that is not the run's own
/// end uses: once `attempt - attempt_base` reaches `$1` (max attempts) the incident ends `failed`
/// with reason `$2` at `$3`, otherwise it is `pending` again. The lease is released either way.
macro_rules! release_or_fail {
    () => {
        "UPDATE incidents SET \
           status = CASE WHEN attempt - attempt_base >= $1 THEN 'failed' ELSE 'pending' END, \
           failure_reason = CASE WHEN attempt - attempt_base >= $1 THEN $2 ELSE NULL END, \
           finished_at = CASE WHEN attempt - attempt_base >= $1 THEN $3 ELSE NULL END, \
           lease_owner = NULL, lease_expires_at = NULL "
    };
}

// --- The queue ---------------------------------------------------------------------------------

/// Fenced: `$1` new expiry, `$2` id, `$3` attempt.
pub(super) const HEARTBEAT: &str = "UPDATE incidents SET lease_expires_at = $1 \
     WHERE id = $2 AND attempt = $3 AND status = 'running'";

/// `$1` pid, `$2` id, `$3` attempt.
pub(super) const SET_RUN_PID: &str =
    "UPDATE agent_runs SET pid = $1 WHERE incident_id = $2 AND attempt = $3";

/// `$1` path, `$2` id, `$3` attempt.
pub(super) const SET_RUN_LOG_PATH: &str =
    "UPDATE agent_runs SET log_path = $1 WHERE incident_id = $2 AND attempt = $3";

/// Ends an attempt's run row once: `$1` at, `$2` outcome, `$3` reason, `$4` exit code, `$5` id,
/// `$6` attempt.
pub(super) const FINISH_RUN: &str =
    "UPDATE agent_runs SET finished_at = $1, outcome = $2, reason = $3, exit_code = $4 \
     WHERE incident_id = $5 AND attempt = $6 AND finished_at IS NULL";

/// [`release_or_fail!`] for one fenced attempt: `$4` id, `$5` attempt.
pub(super) const REQUEUE: &str = concat!(
    release_or_fail!(),
    "WHERE id = $4 AND attempt = $5 AND status = 'running' RETURNING status"
);

/// [`release_or_fail!`] for every lease expired at `$3`.
pub(super) const RESCUE_EXPIRED: &str = concat!(
    release_or_fail!(),
    "WHERE status = 'running' AND lease_expires_at <= $3 RETURNING id, attempt, status"
);

/// Another open incident of the same fault as the one being retried: `$1` cluster, `$2` fault
/// id, `$3` the retried incident's id.
pub(super) const OTHER_OPEN: &str =
    "SELECT id FROM incidents WHERE cluster = $1 AND fault_id = $2 \
     AND status IN ('pending', 'running') AND id <> $3";

/// The run row of one attempt: `$1` id, `$2` attempt.
pub(super) const RUN_OF_ATTEMPT: &str = concat!(
    "SELECT ",
    run_columns!(),
    " FROM agent_runs WHERE incident_id = $1 AND attempt = $2"
);

// --- Reading -----------------------------------------------------------------------------------

pub(super) const INCIDENT_BY_ID: &str = concat!(
    "SELECT ",
    incident_columns!(),
    " FROM incidents WHERE id = $1"
);

/// Every attempt of `$1`, oldest first.
pub(super) const AGENT_RUNS: &str = concat!(
    "SELECT ",
    run_columns!(),
    " FROM agent_runs WHERE incident_id = $1 ORDER BY attempt"
);

/// Finished as failed, timed out or cancelled since `$1`, newest first, at most `$2`.
pub(super) const RECENT_FAILURES: &str = concat!(
    "SELECT ",
    incident_columns!(),
    " FROM incidents \
     WHERE finished_at >= $1 AND status IN ('failed', 'timed_out', 'cancelled') \
     ORDER BY finished_at DESC, id DESC LIMIT $2"
);

/// Insert or replace the row of cluster `$1`.
pub(super) const PUT_CONNECTION_STATE: &str =
    "INSERT INTO connection_states (cluster, state, subscription_id, last_error, \
     last_event_at, events_received, events_malformed, reconnects, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
     ON CONFLICT (cluster) DO UPDATE SET state = EXCLUDED.state, \
     subscription_id = EXCLUDED.subscription_id, last_error = EXCLUDED.last_error, \
     last_event_at = EXCLUDED.last_event_at, events_received = EXCLUDED.events_received, \
     events_malformed = EXCLUDED.events_malformed, reconnects = EXCLUDED.reconnects, \
     updated_at = EXCLUDED.updated_at";

// --- Reporting ---------------------------------------------------------------------------------

/// Finished runs not reported yet, in finish order, at most `$1`.
pub(super) const UNREPORTED_FINISHED: &str = concat!(
    "SELECT ",
    incident_columns!(),
    " FROM incidents \
     WHERE status IN ('succeeded', 'failed', 'timed_out') AND reported_attempt < attempt \
     ORDER BY finished_at, id LIMIT $1"
);

/// Fenced: `$1` id, `$2` attempt.
pub(super) const MARK_REPORTED: &str =
    "UPDATE incidents SET reported_attempt = attempt, report_failures = 0 \
     WHERE id = $1 AND attempt = $2 AND status IN ('succeeded', 'failed', 'timed_out')";

/// Fenced: `$1` id, `$2` attempt.
pub(super) const RECORD_REPORT_FAILURE: &str =
    "UPDATE incidents SET report_failures = report_failures + 1 \
     WHERE id = $1 AND attempt = $2 AND reported_attempt < attempt \
     RETURNING report_failures";

// --- Accounting --------------------------------------------------------------------------------

/// `$1`..`$9` the usage, `$10` id, `$11` attempt.
pub(super) const SET_RUN_USAGE: &str =
    "UPDATE agent_runs SET model = $1, input_tokens = $2, output_tokens = $3, \
       cache_read_tokens = $4, cache_write_tokens = $5, turns = $6, cost_usd = $7, \
       accounting = $8, agent_error = $9 \
     WHERE incident_id = $10 AND attempt = $11";

// --- Slack threads -----------------------------------------------------------------------------

pub(super) const SLACK_THREAD: &str = "SELECT * FROM slack_threads WHERE incident_id = $1";

/// `$1` channel, `$2` owner, `$3` now, `$4` id.
pub(super) const CLAIM_SLACK_THREAD: &str = "INSERT INTO slack_threads \
       (incident_id, channel, claim_owner, claimed_at, posted_occurrences) \
     SELECT id, $1, $2, $3, occurrences FROM incidents WHERE id = $4 \
     ON CONFLICT (incident_id) DO NOTHING";

/// `$1` owner, `$2` now, `$3` id, `$4` claimed before.
pub(super) const TAKE_OVER_SLACK_CLAIM: &str =
    "UPDATE slack_threads SET claim_owner = $1, claimed_at = $2 \
     WHERE incident_id = $3 AND ts IS NULL AND claimed_at < $4";

/// `$1` ts, `$2` channel, `$3` id, `$4` owner.
pub(super) const SET_SLACK_TS: &str = "UPDATE slack_threads SET ts = $1, channel = $2 \
     WHERE incident_id = $3 AND claim_owner = $4 AND ts IS NULL";
