//! The contract between [`super::Store`] and a database backend.
//!
//! `Store` owns everything that does not depend on the SQL dialect: validating its arguments,
//! the `record_faults` plan ([`super::batch`]), the conflict rules and run endings
//! ([`super::rules`]), waking the dispatcher, and running writes to their end
//! ([`super::detached`]). A [`Driver`] owns what does: transactions, locking, the statements (the
//! ones identical in both dialects are in [`super::sql`], the operations identical in both in
//! [`super::portable`]) and reading rows into the shared records. This module must not hold SQL
//! or rules; it says what each backend must do.
//!
//! Guarantees every driver gives (the conformance suite in `tests/store/` checks them on both):
//! - Every method is atomic: one transaction or one statement; on error nothing was written.
//! - Transitions out of `running` are fenced on `attempt`: a method that takes `(id, attempt)`
//!   changes nothing unless the incident is still running that attempt.
//! - A claim, and the agent-run row of its attempt, become visible together; so do the end of a
//!   run and the end of its incident. SQLite does this with triggers (migration 0003, rebuilt in
//!   0004: `agent_run_opens_on_claim` inserts the run row when a claim raises `attempt`,
//!   `incident_finishes_with_its_run` ends a still-running incident when its run row ends), so
//!   the hot pair claim/complete is one autocommit statement each. PostgreSQL does it in code: the
//!   claim inserts the run row in its transaction, and `complete` is one statement of
//!   data-modifying CTEs.
//! - Limits hold across processes: SQLite writers hold the file's single write lock from their
//!   first statement (`BEGIN IMMEDIATE`, or one writing statement); PostgreSQL claims serialise
//!   on a transaction-scoped advisory lock, and a partial unique index keeps one open incident
//!   per (cluster, faultId).
//! - Other processes learn that something became pending: PostgreSQL sends a NOTIFY in the same
//!   transaction; SQLite has no other process to tell (the `Store` wakes its own dispatcher).
//!
//! Dispatch is static: [`super::Backend`] is an enum of the two drivers and each call is a
//! `match` on it. `async fn` in a trait is not object-safe, and boxing every future for a `dyn`
//! driver would add an allocation to each claim, heartbeat and `record_faults` (the hot paths
//! measured by `cargo bench --bench store`) for no gain: there are exactly two backends, both
//! known at compile time.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::batch::Group;
use super::budgets::{BudgetPolicy, ExpiryScope};
use super::page::Scan;
use super::portable::Arg;
use super::{
    ClaimLimits, Claimed, CostGroup, CostKey, ListFilter, Recorded, RescueCounts, Resolved, Result,
    SlackProgress, SlackThread, StatusCount,
};
use crate::fault::ReceivedFault;
use crate::incident::{
    AgentRun, ConnectionState, FaultOccurrence, Incident, IncidentStatus, RunOutcome,
};

/// What a backend must provide: a statement runner for the operations written once in
/// [`super::portable`], and the operations whose SQL or locking differ. Arguments arrive
/// validated by `Store` (non-empty owners and keys, limits in range, a batch grouped by
/// [`super::batch::group`]).
pub(super) trait Driver: Send + Sync {
    /// Runs one writing statement of [`super::sql`] with `args` bound in this backend's
    /// representation; the rows it changed. The statement is its own transaction.
    async fn execute(
        &self,
        sql: &'static str,
        args: &[Arg<'_>],
        context: &'static str,
    ) -> Result<u64>;

    /// Runs one statement returning incident rows (the columns of
    /// [`super::sql::INCIDENT_COLUMNS`]).
    async fn fetch_incidents(
        &self,
        sql: &'static str,
        args: &[Arg<'_>],
        context: &'static str,
    ) -> Result<Vec<Incident>>;

    /// Runs one statement returning agent-run rows (the columns of [`super::sql::AGENT_RUNS`]).
    async fn fetch_runs(
        &self,
        sql: &'static str,
        args: &[Arg<'_>],
        context: &'static str,
    ) -> Result<Vec<AgentRun>>;

    /// Runs one statement and reads the first column of its first row, if any, as an integer.
    async fn fetch_i32(
        &self,
        sql: &'static str,
        args: &[Arg<'_>],
        context: &'static str,
    ) -> Result<Option<i32>>;

    /// Applies this backend's pending migrations; idempotent.
    async fn migrate(&self) -> Result<()>;

    /// A trivial query: is the database reachable now?
    async fn ping(&self) -> Result<()>;

    /// [`super::StoreError::ReadOnly`] when the database can be read but not written.
    async fn check_writable(&self) -> Result<()>;

    /// Records a batch in one transaction, attaching each group as [`super::batch::plan`]
    /// decides from the candidates the driver looked up; results in input order.
    /// `synchronous_commit: false` lets PostgreSQL commit without waiting for its WAL flush;
    /// SQLite ignores it.
    async fn record_faults(
        &self,
        faults: &[ReceivedFault],
        groups: &[Group],
        cooldown: Duration,
        related_window: Option<Duration>,
        synchronous_commit: bool,
    ) -> Result<Vec<Recorded>>;

    /// Leases the most severe, then oldest, pending incident within `limits`, raising `attempt`
    /// and opening the attempt's agent-run row in the same commit. `None`: nothing claimable.
    async fn claim(
        &self,
        owner: &str,
        limits: ClaimLimits,
        lease: Duration,
    ) -> Result<Option<Claimed>>;

    /// [`Driver::claim`] skipping clusters a budget of `policy` holds back, windows judged at
    /// `now`.
    async fn claim_budgeted(
        &self,
        owner: &str,
        limits: ClaimLimits,
        lease: Duration,
        policy: &BudgetPolicy,
        now: DateTime<Utc>,
    ) -> Result<Option<Claimed>>;

    /// Ends pending incidents of `scope` older than its cutoff as `expired`; how many.
    async fn expire_pending(&self, scope: &ExpiryScope<'_>) -> Result<u64>;

    /// Ends the attempt's run row and its incident with `outcome` in one commit. Fenced;
    /// `false`: no change.
    async fn complete(&self, id: Uuid, attempt: i32, outcome: &RunOutcome) -> Result<bool>;

    /// Gives a running attempt back: the incident becomes `pending`, or `failed` with `reason`
    /// once `attempt - attempt_base` reaches `max_attempts`; the run row ends failed with
    /// `reason`. Fenced; returns the incident's new status, `None` when the lease was lost.
    async fn requeue(
        &self,
        id: Uuid,
        attempt: i32,
        reason: &str,
        max_attempts: i32,
    ) -> Result<Option<IncidentStatus>>;

    /// [`Driver::requeue`] for every running incident whose lease expired, with the reason
    /// [`super::rules::LEASE_EXPIRED`].
    async fn rescue_expired(&self, max_attempts: i32) -> Result<RescueCounts>;

    /// Running incidents whose lease owner starts with `owner_prefix`, with their run row.
    async fn running_owned_by(&self, owner_prefix: &str) -> Result<Vec<(Incident, AgentRun)>>;

    /// Finished → `pending` with a fresh attempt budget; conflicts as
    /// [`super::rules::check_retryable`] and [`super::rules::open_elsewhere`] say.
    async fn retry(&self, id: Uuid) -> Result<Incident>;

    /// Open → `cancelled` (a running attempt's run row ends cancelled); conflicts as
    /// [`super::rules::check_cancellable`] says.
    async fn cancel(&self, id: Uuid) -> Result<Incident>;

    /// See [`super::Store::resolve_open`].
    async fn resolve_open(
        &self,
        cluster: &str,
        fault_id: &str,
        at: DateTime<Utc>,
        stop_running: bool,
    ) -> Result<Option<Resolved>>;

    /// Newest first, at most `limit`.
    async fn list(&self, filter: &ListFilter, limit: i64) -> Result<Vec<Incident>>;
    /// At most two matches, or `Ambiguous` with the full count.
    async fn get_by_prefix(&self, prefix: &str) -> Result<Vec<Incident>>;
    /// Every incident whose id ends in `short`, at most 100.
    async fn get_by_short_id(&self, short: &str) -> Result<Vec<Incident>>;
    /// Oldest first, at most `limit`.
    async fn occurrences(&self, id: Uuid, limit: i64) -> Result<Vec<FaultOccurrence>>;
    /// See [`super::Store::related_occurrences`].
    async fn related_occurrences(&self, id: Uuid, limit: i64) -> Result<Vec<FaultOccurrence>>;
    /// Ordered by cluster, then status.
    async fn status_counts(&self) -> Result<Vec<StatusCount>>;
    /// Ordered by cluster.
    async fn connection_states(&self) -> Result<Vec<ConnectionState>>;
    /// One page of the incidents list (one row more than the page, to tell whether more follow).
    async fn incident_page(&self, scan: &Scan<'_>) -> Result<Vec<Incident>>;

    async fn cost_groups(&self, since: DateTime<Utc>, key: CostKey) -> Result<Vec<CostGroup>>;
    async fn incident_costs(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Option<f64>>>;

    /// See [`super::Store::slack_thread`] and its neighbours: progress only ever grows.
    async fn slack_thread(&self, id: Uuid) -> Result<Option<SlackThread>>;
    async fn record_slack_progress(&self, id: Uuid, progress: SlackProgress) -> Result<()>;
    async fn slack_followups(&self, limit: i64) -> Result<Vec<Incident>>;
    async fn slack_unopened(
        &self,
        severities: &[String],
        stale_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Incident>>;

    /// Closes the pool.
    async fn close(&self);
}
