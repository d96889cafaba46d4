//! The durable incident store and queue: SQL for SQLite and PostgreSQL behind one type.
//!
//! This module owns every SQL statement, the migrations of both backends, claim/lease/fencing and
//! the connection-state table. It must not hold business rules that belong elsewhere (how to run
//! an agent, how to parse MCP); the rules it does hold (dedup, limits, fencing) are the ones that
//! must be atomic, and so must live in the database.
//!
//! NOTE(skeleton): signatures are the contract other modules code against; bodies are filled in
//! by the store work.
#![allow(unused_variables)]

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::fault::ReceivedFault;
use crate::incident::{
    AgentRun, ConnectionState, FaultOccurrence, Incident, IncidentStatus, RunOutcome,
};

mod error;
pub use error::StoreError;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Options of [`Store::connect`], taken from `database.*` and `dedup.*`.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub url: String,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub dedup_cooldown: Duration,
}

/// What happened to one fault in [`Store::record_faults`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub incident_id: Uuid,
    /// True when this fault opened a new incident.
    pub created: bool,
    pub status: IncidentStatus,
}

/// The limits [`Store::claim`] enforces, and the lease it grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimLimits {
    pub max_concurrent_agents: u32,
    pub max_agents_per_cluster: u32,
    pub lease: Duration,
}

/// A claimed incident: run it, heartbeat with `attempt`, complete with `attempt`.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    pub incident: Incident,
    pub attempt: i32,
}

/// Counts returned by the rescuer so its loop logs only when it did something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RescueCounts {
    pub requeued: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    pub status: Option<IncidentStatus>,
    pub cluster: Option<String>,
    /// Newest first; `None` means a default of 50.
    pub limit: Option<u32>,
}

/// Counts per (cluster, status), for `nightcrier status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCount {
    pub cluster: String,
    pub status: IncidentStatus,
    pub count: i64,
}

/// Cheap to clone: a handle on one shared pool.
#[derive(Clone)]
pub struct Store {}

impl Store {
    /// Opens the pool (creating a SQLite file and its parent directory) and applies migrations.
    pub async fn connect(opts: StoreOptions) -> Result<Store> {
        todo!()
    }

    /// Applies pending migrations; idempotent.
    pub async fn migrate(&self) -> Result<()> {
        todo!()
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        todo!()
    }

    /// A trivial query: is the database reachable now?
    pub async fn ping(&self) -> Result<()> {
        todo!()
    }

    /// Records every fault (an occurrence row each) in one transaction, attaching it to an open
    /// incident of the same (cluster, faultId), or to one that finished within the cooldown, or
    /// opening a new `pending` (or `skipped` when `triage_enabled` is false) incident. Results are
    /// in input order. Wakes [`Store::pending_notified`] waiters when something new is pending.
    pub async fn record_faults(&self, faults: &[ReceivedFault]) -> Result<Vec<Recorded>> {
        todo!()
    }

    /// Atomically leases the oldest pending incident whose cluster runs fewer than
    /// `max_agents_per_cluster`, only while fewer than `max_concurrent_agents` run in total.
    /// Creates the agent-run row for the new attempt.
    pub async fn claim(&self, owner: &str, limits: ClaimLimits) -> Result<Option<Claimed>> {
        todo!()
    }

    /// Extends the lease. `Ok(false)` when the lease is lost (completed, cancelled, rescued, or a
    /// newer attempt): the caller must stop the run.
    pub async fn heartbeat(&self, id: Uuid, attempt: i32, lease: Duration) -> Result<bool> {
        todo!()
    }

    /// Records the agent's pid for the running attempt (for crash recovery).
    pub async fn set_run_pid(&self, id: Uuid, attempt: i32, pid: i32) -> Result<()> {
        todo!()
    }

    /// Ends a running attempt. Fenced: `Ok(false)` and no change unless the incident is running
    /// with this attempt.
    pub async fn complete(&self, id: Uuid, attempt: i32, outcome: &RunOutcome) -> Result<bool> {
        todo!()
    }

    /// Gives a running attempt back (shutdown interrupted it): `pending` again, or `failed` with
    /// `reason` when the attempts are used up. Fenced like [`Store::complete`].
    pub async fn requeue(
        &self,
        id: Uuid,
        attempt: i32,
        reason: &str,
        max_attempts: u32,
    ) -> Result<bool> {
        todo!()
    }

    /// Expired leases go back to `pending`, or to `failed` ("lease expired") after `max_attempts`.
    pub async fn rescue_expired(&self, max_attempts: u32) -> Result<RescueCounts> {
        todo!()
    }

    /// Running incidents whose lease owner starts with `owner_prefix` (a previous boot of this
    /// instance), with their running agent run, for restart reconciliation.
    pub async fn running_owned_by(&self, owner_prefix: &str) -> Result<Vec<(Incident, AgentRun)>> {
        todo!()
    }

    /// Terminal → pending (a new attempt budget). Errors for pending/running.
    pub async fn retry(&self, id: Uuid) -> Result<Incident> {
        todo!()
    }

    /// Pending or running → cancelled (a running agent loses its lease at the next heartbeat).
    pub async fn cancel(&self, id: Uuid) -> Result<Incident> {
        todo!()
    }

    pub async fn list(&self, filter: &ListFilter) -> Result<Vec<Incident>> {
        todo!()
    }

    /// By full id, or by a unique prefix of at least 8 characters of its text form.
    pub async fn get(&self, id_or_prefix: &str) -> Result<Incident> {
        todo!()
    }

    /// Oldest first, at most `limit`.
    pub async fn occurrences(&self, id: Uuid, limit: u32) -> Result<Vec<FaultOccurrence>> {
        todo!()
    }

    /// Every attempt, oldest first.
    pub async fn agent_runs(&self, id: Uuid) -> Result<Vec<AgentRun>> {
        todo!()
    }

    pub async fn status_counts(&self) -> Result<Vec<StatusCount>> {
        todo!()
    }

    /// Insert or replace the row of `state.cluster`.
    pub async fn put_connection_state(&self, state: &ConnectionState) -> Result<()> {
        todo!()
    }

    pub async fn connection_states(&self) -> Result<Vec<ConnectionState>> {
        todo!()
    }

    /// Incidents finished (not succeeded) since `since`, newest first, at most `limit`.
    pub async fn recent_failures(&self, since: DateTime<Utc>, limit: u32) -> Result<Vec<Incident>> {
        todo!()
    }

    /// Completes when something new may be pending: after a `record_faults`/`retry`/`requeue` in
    /// this process, or (PostgreSQL) a NOTIFY from another process. Spurious wake-ups are allowed.
    pub async fn pending_notified(&self) {
        todo!()
    }

    /// Closes the pool.
    pub async fn close(&self) {
        todo!()
    }
}
