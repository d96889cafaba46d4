//! The consumer: the dispatcher that claims pending incidents, the pool that runs one agent per
//! claim (with a heartbeat renewing its lease), the rescuer of expired leases, restart
//! reconciliation and the two-phase shutdown.
//!
//! This module owns *when* an agent runs and what is recorded when it ends. It must not parse MCP
//! or know how an agent is started: that is [`crate::agent`], reached through [`IncidentRunner`]
//! so tests (and the benchmark) can put their own runner in. The database stays the authority
//! for both concurrency limits (several processes may share it); the pool's local slots are only
//! a fast path that spares a claim query when this process is already full.
//!
//! Wiring: `WorkerPool::new(store, Arc::new(AgentRunner::new(&config)),
//! PoolSettings::from_config(&config)).run(soft, hard)`. The first SIGINT/SIGTERM cancels `soft`
//! (stop claiming, let runs finish for `worker.shutdown_grace`, then terminate and requeue them),
//! the second cancels `hard` (terminate and requeue at once). `run` reconciles a previous boot's
//! leftovers before its first claim, runs the [`Rescuer`] alongside, and returns once every run
//! is accounted for.
//!
//! Leases are owned by `<instance>/<boot uuid>`; at start, running incidents of *other boots of
//! the same instance* are taken for crash leftovers. So `worker.instance_name` (default: the host
//! name) must differ between processes that share a database.

mod pool;
mod reconcile;
mod rescuer;
mod run;
mod runner;
mod settings;
mod wakeup;

pub use pool::WorkerPool;
pub use reconcile::{reconcile_restart, ReconcileCounts, RESTART_REASON};
pub use rescuer::Rescuer;
pub use run::{format_duration, SHUTDOWN_REASON};
pub use runner::IncidentRunner;
pub use settings::PoolSettings;
