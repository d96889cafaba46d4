//! The seam between the pool and whatever runs an agent.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::agent::{self, AgentRunner, RunReport};
use crate::incident::{AgentRun, FaultOccurrence, Incident};

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

/// How long restart recovery waits for a killed leftover group to be gone, so its next run
/// never overlaps it.
const LEFTOVER_GONE_WITHIN: Duration = Duration::from_secs(5);

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

    async fn kill_leftover(&self, incident: &Incident, run: &AgentRun) {
        let (id, attempt) = (incident.id, run.attempt);
        // The recorded pid, and any group carrying this run's marker: a crash can come between
        // the agent's start and the recording of its pid.
        let mut groups: Vec<i32> = run.pid.into_iter().collect();
        for g in agent::find_agent_groups() {
            if g.incident_id == id && g.attempt == attempt && !groups.contains(&g.pgid) {
                groups.push(g.pgid);
            }
        }
        for pgid in groups {
            match agent::kill_leftover_group(pgid, id, attempt) {
                Ok(true) => {
                    let left = agent::wait_group_gone(pgid, LEFTOVER_GONE_WITHIN).await;
                    if !left.is_empty() {
                        warn!(incident_id = %id, pgid, ?left, "leftover agent group still alive after SIGKILL");
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    warn!(incident_id = %id, pgid, error = %e, "cannot kill a leftover agent group")
                }
            }
        }
    }
}
