//! Reading rows into the shared records ([`Incident`], [`AgentRun`], ...), written once for both
//! drivers. A driver's row type implements [`Columns`]: how it reads each kind of value (SQLite
//! stores ids as text and times as unix microseconds, PostgreSQL has a type for each). This
//! module must not know a dialect; the column lists these functions expect are in
//! [`super::sql`].

use std::str::FromStr;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Result, StoreError};
use crate::accounting::{Accounting, RunUsage};
use crate::incident::{AgentRun, ConnectionState, FaultOccurrence, Incident, IncidentStatus};

pub(super) const CTX: &str = "reading a row";

/// One row of a backend, read column by column into the store's types.
pub(super) trait Columns {
    fn text(&self, col: &str) -> Result<String>;
    fn opt_text(&self, col: &str) -> Result<Option<String>>;
    fn int(&self, col: &str) -> Result<i32>;
    fn opt_int(&self, col: &str) -> Result<Option<i32>>;
    fn big(&self, col: &str) -> Result<i64>;
    fn opt_big(&self, col: &str) -> Result<Option<i64>>;
    fn opt_real(&self, col: &str) -> Result<Option<f64>>;
    fn opt_bool(&self, col: &str) -> Result<Option<bool>>;
    fn id(&self, col: &str) -> Result<Uuid>;
    fn time(&self, col: &str) -> Result<DateTime<Utc>>;
    fn opt_time(&self, col: &str) -> Result<Option<DateTime<Utc>>>;
}

/// A status this version knows (a newer version may have written one it does not).
pub(super) fn status(text: &str) -> Result<IncidentStatus> {
    IncidentStatus::from_str(text).map_err(|e| StoreError::decode(CTX, e.to_string()))
}

/// The columns of [`super::sql::INCIDENT_COLUMNS`].
pub(super) fn incident(row: &impl Columns) -> Result<Incident> {
    Ok(Incident {
        id: row.id("id")?,
        cluster: row.text("cluster")?,
        fault_id: row.text("fault_id")?,
        fault_type: row.text("fault_type")?,
        severity: row.text("severity")?,
        namespace: row.opt_text("namespace")?,
        resource_kind: row.text("resource_kind")?,
        resource_name: row.text("resource_name")?,
        resource_uid: row.text("resource_uid")?,
        context: row.text("context")?,
        status: status(&row.text("status")?)?,
        failure_reason: row.opt_text("failure_reason")?,
        occurrences: row.big("occurrences")?,
        first_seen: row.time("first_seen")?,
        last_seen: row.time("last_seen")?,
        created_at: row.time("created_at")?,
        started_at: row.opt_time("started_at")?,
        finished_at: row.opt_time("finished_at")?,
        attempt: row.int("attempt")?,
        lease_owner: row.opt_text("lease_owner")?,
        lease_expires_at: row.opt_time("lease_expires_at")?,
        resolved_at: row.opt_time("resolved_at")?,
    })
}

/// The columns [`super::sql::AGENT_RUNS`] selects.
pub(super) fn agent_run(row: &impl Columns) -> Result<AgentRun> {
    Ok(AgentRun {
        incident_id: row.id("incident_id")?,
        attempt: row.int("attempt")?,
        worker: row.text("worker")?,
        started_at: row.time("started_at")?,
        finished_at: row.opt_time("finished_at")?,
        pid: row.opt_int("pid")?,
        exit_code: row.opt_int("exit_code")?,
        outcome: row.opt_text("outcome")?.map(|s| status(&s)).transpose()?,
        reason: row.opt_text("reason")?,
        log_path: row.opt_text("log_path")?,
        usage: usage(row)?,
    })
}

/// The accounting columns of an agent-run row (migration 0005); `None` before accounting.
fn usage(row: &impl Columns) -> Result<Option<RunUsage>> {
    let Some(accounting) = row.opt_text("accounting")? else {
        return Ok(None);
    };
    let accounting = Accounting::parse(&accounting)
        .ok_or_else(|| StoreError::decode(CTX, format!("unknown accounting {accounting:?}")))?;
    Ok(Some(RunUsage {
        accounting,
        model: row.opt_text("model")?,
        input_tokens: row.opt_big("input_tokens")?,
        output_tokens: row.opt_big("output_tokens")?,
        cache_read_tokens: row.opt_big("cache_read_tokens")?,
        cache_write_tokens: row.opt_big("cache_write_tokens")?,
        turns: row.opt_big("turns")?,
        cost_usd: row.opt_real("cost_usd")?,
        agent_error: row.opt_bool("agent_error")?,
    }))
}

/// A fault occurrence, `raw` read as text (PostgreSQL selects `raw::text AS raw`).
pub(super) fn occurrence(row: &impl Columns) -> Result<FaultOccurrence> {
    let raw = row.text("raw")?;
    Ok(FaultOccurrence {
        id: row.big("id")?,
        incident_id: row.id("incident_id")?,
        cluster: row.text("cluster")?,
        fault_id: row.text("fault_id")?,
        fault_type: row.text("fault_type")?,
        severity: row.text("severity")?,
        namespace: row.opt_text("namespace")?,
        resource_kind: row.text("resource_kind")?,
        resource_name: row.text("resource_name")?,
        resource_uid: row.text("resource_uid")?,
        context: row.text("context")?,
        server_timestamp: row.text("server_timestamp")?,
        received_at: row.time("received_at")?,
        raw: serde_json::from_str(&raw)
            .map_err(|e| StoreError::decode(CTX, format!("raw fault JSON: {e}")))?,
    })
}

pub(super) fn connection_state(row: &impl Columns) -> Result<ConnectionState> {
    Ok(ConnectionState {
        cluster: row.text("cluster")?,
        state: row.text("state")?.parse().map_err(
            |e: crate::incident::UnknownConnectionPhase| StoreError::decode(CTX, e.to_string()),
        )?,
        subscription_id: row.opt_text("subscription_id")?,
        last_error: row.opt_text("last_error")?,
        last_event_at: row.opt_time("last_event_at")?,
        events_received: row.big("events_received")?,
        events_malformed: row.big("events_malformed")?,
        reconnects: row.big("reconnects")?,
        updated_at: row.time("updated_at")?,
    })
}
