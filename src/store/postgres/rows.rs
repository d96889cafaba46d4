//! Reading PostgreSQL rows into the shared records.

use std::str::FromStr;

use sqlx::postgres::PgRow;
use sqlx::Row;

use crate::accounting::{Accounting, RunUsage};
use crate::incident::{AgentRun, ConnectionState, FaultOccurrence, Incident, IncidentStatus};
use crate::store::{Result, StoreError};

pub(super) const INCIDENT_COLUMNS: &str =
    "id, cluster, fault_id, fault_type, severity, namespace, \
    resource_kind, resource_name, resource_uid, context, status, failure_reason, occurrences, \
    first_seen, last_seen, created_at, started_at, finished_at, attempt, lease_owner, \
    lease_expires_at, resolved_at";

pub(super) const RUN_COLUMNS: &str = "incident_id, attempt, worker, started_at, finished_at, pid, \
    exit_code, outcome, reason, log_path, model, input_tokens, output_tokens, cache_read_tokens, \
    cache_write_tokens, turns, cost_usd, accounting, agent_error";

const CTX: &str = "reading a row";

fn get<'r, T>(row: &'r PgRow, col: &str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(col).map_err(StoreError::db(CTX))
}

pub(super) fn status(text: &str) -> Result<IncidentStatus> {
    IncidentStatus::from_str(text).map_err(|e| StoreError::decode(CTX, e.to_string()))
}

pub(super) fn incident(row: &PgRow) -> Result<Incident> {
    Ok(Incident {
        id: get(row, "id")?,
        cluster: get(row, "cluster")?,
        fault_id: get(row, "fault_id")?,
        fault_type: get(row, "fault_type")?,
        severity: get(row, "severity")?,
        namespace: get(row, "namespace")?,
        resource_kind: get(row, "resource_kind")?,
        resource_name: get(row, "resource_name")?,
        resource_uid: get(row, "resource_uid")?,
        context: get(row, "context")?,
        status: status(get(row, "status")?)?,
        failure_reason: get(row, "failure_reason")?,
        occurrences: get(row, "occurrences")?,
        first_seen: get(row, "first_seen")?,
        last_seen: get(row, "last_seen")?,
        created_at: get(row, "created_at")?,
        started_at: get(row, "started_at")?,
        finished_at: get(row, "finished_at")?,
        attempt: get(row, "attempt")?,
        lease_owner: get(row, "lease_owner")?,
        lease_expires_at: get(row, "lease_expires_at")?,
        resolved_at: get(row, "resolved_at")?,
    })
}

pub(super) fn agent_run(row: &PgRow) -> Result<AgentRun> {
    Ok(AgentRun {
        incident_id: get(row, "incident_id")?,
        attempt: get(row, "attempt")?,
        worker: get(row, "worker")?,
        started_at: get(row, "started_at")?,
        finished_at: get(row, "finished_at")?,
        pid: get(row, "pid")?,
        exit_code: get(row, "exit_code")?,
        outcome: get::<Option<&str>>(row, "outcome")?
            .map(status)
            .transpose()?,
        reason: get(row, "reason")?,
        log_path: get(row, "log_path")?,
        usage: usage(row)?,
    })
}

/// The accounting columns of an agent-run row (migration 0005); `None` before accounting.
fn usage(row: &PgRow) -> Result<Option<RunUsage>> {
    let Some(accounting) = get::<Option<&str>>(row, "accounting")? else {
        return Ok(None);
    };
    let accounting = Accounting::parse(accounting)
        .ok_or_else(|| StoreError::decode(CTX, format!("unknown accounting {accounting:?}")))?;
    Ok(Some(RunUsage {
        accounting,
        model: get(row, "model")?,
        input_tokens: get(row, "input_tokens")?,
        output_tokens: get(row, "output_tokens")?,
        cache_read_tokens: get(row, "cache_read_tokens")?,
        cache_write_tokens: get(row, "cache_write_tokens")?,
        turns: get(row, "turns")?,
        cost_usd: get(row, "cost_usd")?,
        agent_error: get(row, "agent_error")?,
    }))
}

/// Expects `raw` selected as text (`raw::text AS raw`).
pub(super) fn occurrence(row: &PgRow) -> Result<FaultOccurrence> {
    let raw: &str = get(row, "raw")?;
    Ok(FaultOccurrence {
        id: get(row, "id")?,
        incident_id: get(row, "incident_id")?,
        cluster: get(row, "cluster")?,
        fault_id: get(row, "fault_id")?,
        fault_type: get(row, "fault_type")?,
        severity: get(row, "severity")?,
        namespace: get(row, "namespace")?,
        resource_kind: get(row, "resource_kind")?,
        resource_name: get(row, "resource_name")?,
        resource_uid: get(row, "resource_uid")?,
        context: get(row, "context")?,
        server_timestamp: get(row, "server_timestamp")?,
        received_at: get(row, "received_at")?,
        raw: serde_json::from_str(raw)
            .map_err(|e| StoreError::decode(CTX, format!("raw fault JSON: {e}")))?,
    })
}

pub(super) fn connection_state(row: &PgRow) -> Result<ConnectionState> {
    Ok(ConnectionState {
        cluster: get(row, "cluster")?,
        state: get::<String>(row, "state")?.parse().map_err(
            |e: crate::incident::UnknownConnectionPhase| StoreError::decode(CTX, e.to_string()),
        )?,
        subscription_id: get(row, "subscription_id")?,
        last_error: get(row, "last_error")?,
        last_event_at: get(row, "last_event_at")?,
        events_received: get(row, "events_received")?,
        events_malformed: get(row, "events_malformed")?,
        reconnects: get(row, "reconnects")?,
        updated_at: get(row, "updated_at")?,
    })
}
