//! The seam between the pool and whatever runs an agent.

use std::future::Future;

use crate::agent::{AgentRunner, RunReport};
use crate::incident::{AgentRun, FaultOccurrence, Incident};
use tokio_util::sync::CancellationToken;

/// Runs the agent of one claimed incident. Implemented by [`crate::agent::AgentRunner`]; tests
/// and the benchmark wrap or replace it.
pub trait IncidentRunner: Send + Sync + 'static {
    /// Runs until the agent ends or `cancel` fires (the agent is then terminated and the outcome
    /// is not `succeeded`). `on_started(pid)` is called once the agent process exists.
    fn run(
        &self,
        incident: &Incident,
        occurrences: &[FaultOccurrence],
        attempt: i32,
        cancel: CancellationToken,
        on_started: &(dyn Fn(u32) + Send + Sync),
    ) -> impl Future<Output = RunReport> + Send;

    /// At start, before a previous boot's running incident is requeued: terminates what is left
    /// of its agent (`run.pid`'s process group), but only after verifying it is that agent.
    fn kill_leftover(&self, incident: &Incident, run: &AgentRun)
        -> impl Future<Output = ()> + Send;
}

impl IncidentRunner for AgentRunner {
    fn run(
        &self,
        incident: &Incident,
        occurrences: &[FaultOccurrence],
        attempt: i32,
        cancel: CancellationToken,
        on_started: &(dyn Fn(u32) + Send + Sync),
    ) -> impl Future<Output = RunReport> + Send {
        AgentRunner::run(self, incident, occurrences, attempt, cancel, on_started)
    }

    fn kill_leftover(
        &self,
        incident: &Incident,
        run: &AgentRun,
    ) -> impl Future<Output = ()> + Send {
        AgentRunner::kill_leftover(self, incident, run)
    }
}
