//! The durable incident store and queue: SQL for SQLite and PostgreSQL behind one type.
//!
//! This module owns every SQL statement, the migrations of both backends, claim/lease/fencing and
//! the connection-state table. It must not hold business rules that belong elsewhere (how to run
//! an agent, how to parse MCP); the rules it does hold (dedup, limits, fencing) are the ones that
//! must be atomic, and so must live in the database.
//!
//! Layers: `Store` (this file and its topic files: validation, wake-ups, running writes to their
//! end) over the dialect-free rules ([`batch`], [`rules`], [`error`], [`records`]) and operations
//! ([`portable`], SQL in [`sql`]), over the contract [`driver::Driver`] that `sqlite` and
//! `postgres` implement.
//!
//! Design notes shared by both backends:
//! - Every operation is one transaction. On SQLite, writing transactions start with
//!   `BEGIN IMMEDIATE`, so writers queue on the busy timeout instead of failing when a read lock
//!   would have to be upgraded. On PostgreSQL, `claim` serialises on a transaction-scoped advisory
//!   lock, which is what makes the limits hold across processes; a partial unique index allows one
//!   open (pending/running) incident per (cluster, faultId).
//! - Times are taken from this process's clock, truncated to microseconds (PostgreSQL's
//!   precision). SQLite stores them as INTEGER unix microseconds, PostgreSQL as `timestamptz`.
//! - Dedup compares a fault's `received_at` with the cooldown, so a fault that waited in the
//!   outage buffer is judged by when it was seen, not when the database came back.
//! - `attempt` only ever grows (it fences every transition out of `running`); `retry` gives a
//!   fresh budget by moving `attempt_base` up to it.
//! - Leases are compared with the clock of the process that rescues them: processes sharing one
//!   PostgreSQL must have synchronised clocks (NTP); skew shortens or lengthens leases.
//! - The store records no metrics and logs almost nothing: its callers know what a result means
//!   (`Recorded::created` for `nightcrier_incidents_created_total`, for example).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::config::DatabaseUrl;
use crate::fault::ReceivedFault;
use crate::incident::{
    AgentRun, ConnectionState, FaultOccurrence, Incident, IncidentStatus, RunOutcome,
};

mod batch;
mod driver;
mod error;
mod goschema;
mod ids;
mod portable;
mod postgres;
mod records;
mod rules;
mod sql;
mod sqlite;
mod time;

pub use error::StoreError;
pub use goschema::{parse_go_time, read_go_sqlite, GoImportSummary, GoIncident};

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

/// What [`Store::resolve_open`] did to the open incident of a fault its source reported over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// A pending incident ended as `resolved`: no agent will run.
    Ended,
    /// A running incident ended as `resolved` (its agent run as cancelled, "alert resolved"):
    /// the agent loses its lease at its next heartbeat and is stopped, as by `incidents cancel`.
    Stopped,
    /// A running incident was marked resolved (`resolved_at`) and left to finish.
    Noted,
}

/// The incident [`Store::resolve_open`] acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    pub incident_id: Uuid,
    pub resolution: Resolution,
}

/// The reason recorded on an agent run stopped by [`Resolution::Stopped`].
pub const RESOLVED_RUN_REASON: &str = "alert resolved";

/// Default and largest page of [`Store::list`].
pub const DEFAULT_LIST_LIMIT: u32 = 50;
pub const MAX_LIST_LIMIT: u32 = 10_000;

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
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    cooldown: Duration,
    /// Woken after commits that may have made something pending (and, on PostgreSQL, by the
    /// listener on NOTIFYs from other processes).
    pending: Arc<Notify>,
    /// The PostgreSQL LISTEN task; aborted when the last handle drops.
    listener: Option<tokio::task::JoinHandle<()>>,
    /// Budgets and pending TTLs the claim and the expiry enforce. A std lock: read briefly, never
    /// held across an await.
    budgets: std::sync::RwLock<Arc<budgets::BudgetPolicy>>,
    /// Coalescing of related faults ([`Store::set_related_window`]); `None`: off.
    related_window: std::sync::RwLock<Option<Duration>>,
    /// The leases this process holds, checked by `record_faults_fenced` (fleet on PostgreSQL).
    fence: std::sync::RwLock<Option<Arc<fleet::LeaseFence>>>,
    /// PostgreSQL: `record_faults` transactions wait for their WAL flush (the default).
    ingest_sync_commit: std::sync::atomic::AtomicBool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.listener.take() {
            task.abort();
        }
    }
}

/// The two [`driver::Driver`]s, dispatched statically (see `driver` for why not `dyn`).
enum Backend {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

/// Calls a [`driver::Driver`] method on the store's backend and awaits it:
/// `on_driver!(self.ping())`. The call is written `Driver::method(driver, ..)`, so only the
/// trait's methods are reachable: the trait is the whole contract.
macro_rules! on_driver {
    ($store:ident . $method:ident ( $($arg:expr),* )) => {
        match &$store.inner.backend {
            $crate::store::Backend::Sqlite(d) => {
                $crate::store::driver::Driver::$method(d, $($arg),*).await
            }
            $crate::store::Backend::Postgres(d) => {
                $crate::store::driver::Driver::$method(d, $($arg),*).await
            }
        }
    };
}

/// Runs an operation of [`portable`] (written once for both drivers) on the store's backend
/// and awaits it: `on_portable!(self.heartbeat(id, attempt, lease))`.
macro_rules! on_portable {
    ($store:ident . $op:ident ( $($arg:expr),* )) => {
        match &$store.inner.backend {
            $crate::store::Backend::Sqlite(d) => $crate::store::portable::$op(d, $($arg),*).await,
            $crate::store::Backend::Postgres(d) => $crate::store::portable::$op(d, $($arg),*).await,
        }
    };
}

/// Runs a write to its end even when the caller stops waiting for it. A future dropped while
/// sqlx's `BEGIN` is in flight leaves its connection inside the transaction, back in the pool;
/// on SQLite that transaction holds the write lock, and every other writer then waits out its
/// busy timeout. Shutdown aborts agent tasks, possibly in the middle of their own bookkeeping,
/// so the queue's writes must not be cancellable halfway. (Seen as a rare 20 s hang of a
/// requeue after a second signal.)
async fn detached<T: Send + 'static>(
    write: impl std::future::Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    match tokio::spawn(write).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only when the runtime itself shuts down.
        Err(_) => Err(StoreError::Database {
            context: "finishing a write while the runtime shut down",
            source: sqlx::Error::PoolClosed,
        }),
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

mod reporting;
pub use reporting::MAX_UNREPORTED_LIMIT;

/// The database file of a `sqlite:` URL; `None` for PostgreSQL and in-memory databases.
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    if !url.starts_with("sqlite:") {
        return None;
    }
    sqlite::file_of(url).filter(|p| !p.as_os_str().is_empty() && p.as_os_str() != ":memory:")
}
mod costs;
pub use costs::{CostGroup, CostKey, MAX_COST_IDS};

mod budgets;
pub use budgets::{Budget, BudgetPolicy};

pub(crate) mod page;
pub use page::{Cursor, Page, PageOrder, PageQuery, MAX_PAGE_SIZE};
mod fleet;
pub use fleet::{
    Acquired, Beat, InstanceRecord, InstanceRow, LeaseFence, LeaseRow, Peer as FleetPeer,
};
mod slack;
pub use slack::{SlackProgress, SlackThread, MAX_SLACK_PAGE, MAX_SLACK_SEVERITIES};

impl Store {
    /// Opens the pool (creating a SQLite file and its parent directory) and applies migrations.
    pub async fn connect(opts: StoreOptions) -> Result<Store> {
        let url = DatabaseUrl::new(opts.url.clone());
        let scheme = opts.url.split(':').next().unwrap_or_default();
        let pending = Arc::new(Notify::new());
        let (backend, listener) = match scheme {
            "sqlite" => {
                let pool = sqlite::connect(&url, &opts).await?;
                (Backend::Sqlite(sqlite::SqliteStore { pool }), None)
            }
            "postgres" | "postgresql" => {
                let pool = postgres::connect(&url, &opts).await?;
                let listener = postgres::spawn_listener(pool.clone(), pending.clone());
                (Backend::Postgres(postgres::PgStore { pool }), Some(listener))
            }
            _ => {
                return Err(StoreError::InvalidInput(format!(
                    "unsupported database URL scheme {scheme:?} in {}: expected sqlite:// or postgres://",
                    url.redacted()
                )))
            }
        };
        let store = Store {
            inner: Arc::new(Inner {
                backend,
                cooldown: opts.dedup_cooldown,
                pending,
                listener,
                budgets: std::sync::RwLock::default(),
                related_window: std::sync::RwLock::default(),
                fence: std::sync::RwLock::default(),
                ingest_sync_commit: std::sync::atomic::AtomicBool::new(true),
            }),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies pending migrations; idempotent.
    pub async fn migrate(&self) -> Result<()> {
        self.refuse_go_schema().await?;
        on_driver!(self.migrate())
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match &self.inner.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// A trivial query: is the database reachable now?
    pub async fn ping(&self) -> Result<()> {
        on_driver!(self.ping())
    }

    /// Turns coalescing of related faults on (`Some(window)`) or off (`None`, the default of a
    /// bare store; the application turns it on from `dedup.related_window`).
    pub fn set_related_window(&self, window: Option<Duration>) {
        if let Ok(mut w) = self.inner.related_window.write() {
            *w = window;
        }
    }

    fn related_window(&self) -> Option<Duration> {
        self.inner.related_window.read().map(|w| *w).unwrap_or(None)
    }

    /// Fails with [`StoreError::ReadOnly`] when the database can be read but not written (a
    /// read-only file or mount, a PostgreSQL standby): checked at start, so the process does
    /// not report ready and fail at the first write.
    pub async fn check_writable(&self) -> Result<()> {
        on_driver!(self.check_writable())
    }

    /// Records every fault (an occurrence row each) in one transaction, attaching it to an open
    /// incident of the same (cluster, faultId), or to one that finished within the cooldown, or
    /// opening a new `pending` (or `skipped` when `triage_enabled` is false) incident. Results are
    /// in input order. Wakes [`Store::pending_notified`] waiters when something new is pending.
    ///
    /// The batch is validated first: a fault with an empty cluster or faultId (or a NUL character
    /// in a text field) fails the whole call with [`StoreError::InvalidFault`] naming its index
    /// and nothing is written, so the caller can drop that fault and record the rest again.
    ///
    /// With coalescing on ([`Store::set_related_window`]), a fault no incident of its own takes
    /// attaches to an incident of a *related* fault (same workload or object in the cluster,
    /// [`crate::fault::Fault::related_key`]) that is open and was last seen within the window, or
    /// that finished within the cooldown; related faults of one batch share the incident the
    /// first of them opens. On PostgreSQL two processes recording related faults of one workload
    /// at the same instant may still open one incident each (only identical faults meet in the
    /// unique index); with cluster ownership (one process records a cluster) that cannot happen.
    pub async fn record_faults(&self, faults: &[ReceivedFault]) -> Result<Vec<Recorded>> {
        if faults.is_empty() {
            return Ok(Vec::new());
        }
        let groups = batch::group(faults)?;
        let cooldown = chrono::Duration::from_std(self.inner.cooldown)
            .map_err(|_| StoreError::InvalidInput("dedup cooldown is too large".into()))?;
        let window = self
            .related_window()
            .map(chrono::Duration::from_std)
            .transpose()
            .map_err(|_| StoreError::InvalidInput("dedup related window is too large".into()))?;
        let sync = self.ingest_synchronous_commit();
        let recorded = on_driver!(self.record_faults(faults, &groups, cooldown, window, sync))?;
        if recorded
            .iter()
            .any(|r| r.created && r.status == IncidentStatus::Pending)
        {
            self.wake();
        }
        Ok(recorded)
    }

    /// [`Store::record_faults`] for the faults of this process's own MCP sessions: with a fence
    /// installed ([`Store::set_fence`], a fleet on PostgreSQL), the transaction first checks
    /// (and holds) the leases of the batch's clusters, and fails with
    /// [`StoreError::InvalidFault`] naming the first fault whose cluster this process no longer
    /// holds under the fenced epoch; nothing is written then. Without a fence it is
    /// `record_faults`.
    pub async fn record_faults_fenced(&self, faults: &[ReceivedFault]) -> Result<Vec<Recorded>> {
        let Some(fence) = self.fence() else {
            return self.record_faults(faults).await;
        };
        if faults.is_empty() {
            return Ok(Vec::new());
        }
        let Backend::Postgres(pg) = &self.inner.backend else {
            return self.record_faults(faults).await;
        };
        let groups = batch::group(faults)?;
        let cooldown = chrono::Duration::from_std(self.inner.cooldown)
            .map_err(|_| StoreError::InvalidInput("dedup cooldown is too large".into()))?;
        let window = self
            .related_window()
            .map(chrono::Duration::from_std)
            .transpose()
            .map_err(|_| StoreError::InvalidInput("dedup related window is too large".into()))?;
        let sync = self.ingest_synchronous_commit();
        let recorded = postgres::record_faults_fenced(
            &pg.pool, faults, &groups, cooldown, window, sync, &fence,
        )
        .await?;
        if recorded
            .iter()
            .any(|r| r.created && r.status == IncidentStatus::Pending)
        {
            self.wake();
        }
        Ok(recorded)
    }

    /// `database.ingest_synchronous_commit`: with `false`, PostgreSQL's `record_faults`
    /// transactions do not wait for their WAL flush (`SET LOCAL synchronous_commit = off`). A
    /// crash of the database host can then lose faults committed in its last moments (never
    /// half a batch: the transaction stays atomic). No effect on SQLite.
    pub fn set_ingest_synchronous_commit(&self, on: bool) {
        self.inner
            .ingest_sync_commit
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// See [`Store::set_ingest_synchronous_commit`].
    pub fn ingest_synchronous_commit(&self) -> bool {
        self.inner
            .ingest_sync_commit
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Atomically leases the most severe (critical, warning, other), then oldest, pending
    /// incident whose cluster runs fewer than
    /// `max_agents_per_cluster`, only while fewer than `max_concurrent_agents` run in total.
    /// Creates the agent-run row for the new attempt.
    ///
    /// With budgets in force ([`Store::set_budgets`]), the most severe then oldest incident of a
    /// cluster no budget holds back (see [`Store::claim_at`]).
    pub async fn claim(&self, owner: &str, limits: ClaimLimits) -> Result<Option<Claimed>> {
        if self.budgets().limits_claims() {
            return self.claim_at(owner, limits, time::now()).await;
        }
        self.claim_unbudgeted(owner, limits).await
    }

    async fn claim_unbudgeted(&self, owner: &str, limits: ClaimLimits) -> Result<Option<Claimed>> {
        if owner.trim().is_empty() {
            return Err(StoreError::InvalidInput("lease owner is empty".into()));
        }
        let lease = time::duration(limits.lease, "lease")?;
        let (store, owner) = (self.clone(), owner.to_owned());
        detached(async move { on_driver!(store.claim(&owner, limits, lease)) }).await
    }

    /// Extends the lease. `Ok(false)` when the lease is lost (completed, cancelled, rescued, or a
    /// newer attempt): the caller must stop the run.
    pub async fn heartbeat(&self, id: Uuid, attempt: i32, lease: Duration) -> Result<bool> {
        let lease = time::duration(lease, "lease")?;
        let store = self.clone();
        detached(async move { on_portable!(store.heartbeat(id, attempt, lease)) }).await
    }

    /// Records the agent's pid for the running attempt (for crash recovery). `NotFound` when the
    /// attempt has no agent-run row.
    pub async fn set_run_pid(&self, id: Uuid, attempt: i32, pid: i32) -> Result<()> {
        on_portable!(self.set_run_pid(id, attempt, pid))
    }

    /// Records where the attempt's agent log is written. `NotFound` when the attempt has no
    /// agent-run row.
    pub async fn set_run_log_path(&self, id: Uuid, attempt: i32, path: &str) -> Result<()> {
        on_portable!(self.set_run_log_path(id, attempt, path))
    }

    /// Ends a running attempt; its incident ends with the run's status. Fenced: `Ok(false)` and
    /// no change unless the incident is running with this attempt.
    pub async fn complete(&self, id: Uuid, attempt: i32, outcome: &RunOutcome) -> Result<bool> {
        let (store, outcome) = (self.clone(), outcome.clone());
        detached(async move { on_driver!(store.complete(id, attempt, &outcome)) }).await
    }

    /// Gives a running attempt back (shutdown interrupted it): `pending` again, or `failed` with
    /// `reason` when the attempts are used up. Fenced like [`Store::complete`]. The attempt's
    /// agent-run row ends as failed with `reason` either way.
    pub async fn requeue(
        &self,
        id: Uuid,
        attempt: i32,
        reason: &str,
        max_attempts: u32,
    ) -> Result<bool> {
        let max = max_attempts_i32(max_attempts)?;
        let (store, reason) = (self.clone(), reason.to_owned());
        let requeued =
            detached(async move { on_driver!(store.requeue(id, attempt, &reason, max)) }).await?;
        if requeued == Some(IncidentStatus::Pending) {
            self.wake();
        }
        Ok(requeued.is_some())
    }

    /// Expired leases go back to `pending`, or to `failed` ("lease expired") after `max_attempts`.
    pub async fn rescue_expired(&self, max_attempts: u32) -> Result<RescueCounts> {
        let max = max_attempts_i32(max_attempts)?;
        let store = self.clone();
        let counts = detached(async move { on_driver!(store.rescue_expired(max)) }).await?;
        if counts.requeued > 0 {
            self.wake();
        }
        Ok(counts)
    }

    /// Running incidents whose lease owner starts with `owner_prefix` (a previous boot of this
    /// instance), with their running agent run, for restart reconciliation.
    pub async fn running_owned_by(&self, owner_prefix: &str) -> Result<Vec<(Incident, AgentRun)>> {
        if owner_prefix.is_empty() {
            return Err(StoreError::InvalidInput(
                "lease owner prefix is empty".into(),
            ));
        }
        on_driver!(self.running_owned_by(owner_prefix))
    }

    /// Terminal → pending (a new attempt budget). `Conflict` for pending/running, and when
    /// another incident of the same fault is open.
    pub async fn retry(&self, id: Uuid) -> Result<Incident> {
        let incident = on_driver!(self.retry(id))?;
        self.wake();
        Ok(incident)
    }

    /// Pending or running → cancelled (a running agent loses its lease at the next heartbeat).
    /// `Conflict` when the incident has already finished.
    pub async fn cancel(&self, id: Uuid) -> Result<Incident> {
        on_driver!(self.cancel(id))
    }

    /// The source of a fault (a resolved alert) reports it over at `at`: the open incident of
    /// (cluster, fault_id) ends as `resolved` when pending; when running, it ends as `resolved`
    /// with `stop_running`, or is only marked resolved and left to finish. `Ok(None)` when the
    /// fault has no open incident (never recorded, or already finished).
    pub async fn resolve_open(
        &self,
        cluster: &str,
        fault_id: &str,
        at: DateTime<Utc>,
        stop_running: bool,
    ) -> Result<Option<Resolved>> {
        if cluster.is_empty() || fault_id.is_empty() {
            return Err(StoreError::InvalidInput(
                "resolving needs a cluster and a fault id".into(),
            ));
        }
        let (store, cluster, fault_id) = (self.clone(), cluster.to_owned(), fault_id.to_owned());
        detached(
            async move { on_driver!(store.resolve_open(&cluster, &fault_id, at, stop_running)) },
        )
        .await
    }

    /// Newest first.
    pub async fn list(&self, filter: &ListFilter) -> Result<Vec<Incident>> {
        let limit = filter.limit.unwrap_or(DEFAULT_LIST_LIMIT);
        if limit > MAX_LIST_LIMIT {
            return Err(StoreError::InvalidInput(format!(
                "list limit {limit} is above the maximum of {MAX_LIST_LIMIT}"
            )));
        }
        if filter.cluster.as_deref() == Some("") {
            return Err(StoreError::InvalidInput("cluster filter is empty".into()));
        }
        on_driver!(self.list(filter, i64::from(limit)))
    }

    /// By full id, by a unique prefix of at least 8 characters of its text form, or by its short
    /// id ([`crate::incident::short_id`]).
    pub async fn get(&self, id_or_prefix: &str) -> Result<Incident> {
        match ids::parse(id_or_prefix)? {
            ids::IdQuery::Full(id) => {
                let found = on_portable!(self.get_by_id(id))?;
                found.ok_or_else(|| StoreError::NotFound(id.to_string()))
            }
            ids::IdQuery::Prefix(prefix) => {
                let mut found = on_driver!(self.get_by_prefix(&prefix))?;
                match found.len() {
                    0 => Err(StoreError::NotFound(prefix)),
                    1 => Ok(found.remove(0)),
                    matches => Err(StoreError::Ambiguous { prefix, matches }),
                }
            }
            ids::IdQuery::Short(short) => {
                let mut found = on_driver!(self.get_by_short_id(&short))?;
                match found.len() {
                    0 => Err(StoreError::NotFound(short)),
                    1 => Ok(found.remove(0)),
                    matches => Err(StoreError::Ambiguous {
                        prefix: short,
                        matches,
                    }),
                }
            }
        }
    }

    /// Oldest first, at most `limit`.
    pub async fn occurrences(&self, id: Uuid, limit: u32) -> Result<Vec<FaultOccurrence>> {
        on_driver!(self.occurrences(id, i64::from(limit)))
    }

    /// What a triage run is given: the first `limit` occurrences, plus the latest occurrence of
    /// every related fault attached to the incident (at most `related_limit` of them), in
    /// recording order.
    pub async fn occurrences_for_triage(
        &self,
        id: Uuid,
        limit: u32,
        related_limit: u32,
    ) -> Result<Vec<FaultOccurrence>> {
        let mut all = self.occurrences(id, limit).await?;
        let related = self.related_occurrences(id, related_limit).await?;
        all.extend(related);
        all.sort_by_key(|o| o.id);
        all.dedup_by_key(|o| o.id);
        Ok(all)
    }

    /// The latest occurrence of each related fault attached to the incident (a faultId other
    /// than its own), in the order they first attached, at most `limit`.
    pub async fn related_occurrences(&self, id: Uuid, limit: u32) -> Result<Vec<FaultOccurrence>> {
        on_driver!(self.related_occurrences(id, i64::from(limit)))
    }

    /// Every attempt, oldest first.
    pub async fn agent_runs(&self, id: Uuid) -> Result<Vec<AgentRun>> {
        on_portable!(self.agent_runs(id))
    }

    /// Ordered by cluster, then status.
    pub async fn status_counts(&self) -> Result<Vec<StatusCount>> {
        on_driver!(self.status_counts())
    }

    /// Insert or replace the row of `state.cluster`.
    pub async fn put_connection_state(&self, state: &ConnectionState) -> Result<()> {
        if state.cluster.is_empty() {
            return Err(StoreError::InvalidInput(
                "connection state has an empty cluster".into(),
            ));
        }
        on_portable!(self.put_connection_state(state))
    }

    /// Ordered by cluster.
    pub async fn connection_states(&self) -> Result<Vec<ConnectionState>> {
        on_driver!(self.connection_states())
    }

    /// Incidents finished as failed, timed_out or cancelled since `since`, newest first, at most
    /// `limit`. (Skipped incidents are not failures.)
    pub async fn recent_failures(&self, since: DateTime<Utc>, limit: u32) -> Result<Vec<Incident>> {
        on_portable!(self.recent_failures(since, i64::from(limit)))
    }

    /// Completes when something new may be pending: after a `record_faults`/`retry`/`requeue` in
    /// this process, or (PostgreSQL) a NOTIFY from another process. Spurious wake-ups are allowed.
    pub async fn pending_notified(&self) {
        self.inner.pending.notified().await
    }

    /// Closes the pool and stops the PostgreSQL listener.
    pub async fn close(&self) {
        if let Some(task) = &self.inner.listener {
            task.abort();
        }
        on_driver!(self.close())
    }

    fn wake(&self) {
        // Wake everyone waiting now, and leave a permit for a waiter that is between its last
        // empty claim and its next wait, so the wake-up cannot fall into that gap.
        self.inner.pending.notify_waiters();
        self.inner.pending.notify_one();
    }
}

fn max_attempts_i32(max_attempts: u32) -> Result<i32> {
    if max_attempts == 0 {
        return Err(StoreError::InvalidInput(
            "max_attempts must be at least 1".into(),
        ));
    }
    Ok(i32::try_from(max_attempts).unwrap_or(i32::MAX))
}
