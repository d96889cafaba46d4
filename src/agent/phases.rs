//! Where one run's time goes, phase by phase, as one debug event on the target
//! [`PHASES_TARGET`] (off unless asked for: `--log-level info,nightcrier::run_phases=debug`).
//! The runs benchmark (`benches/runs.rs`) reads these events from the binary's JSON log to
//! split each run's claim → completion time into the agent's own process time and nightcrier's
//! overhead. The worker emits its own event on the same target for the database steps.

use std::time::{Duration, Instant};

use uuid::Uuid;

/// The tracing target of the per-run phase events (agent runner and worker).
pub const PHASES_TARGET: &str = "nightcrier::run_phases";

/// The agent runner's phases of one run.
#[derive(Debug, Default, Clone, Copy)]
pub struct Phases {
    /// Starting and stopping the run's MCP endpoint (`agent.mcp_tools`).
    pub proxy: Duration,
    /// Evidence gathering (MCP calls to the cluster), before anything is written.
    pub evidence: Duration,
    /// Workspace, `incident.json`, prompt, permissions, preset files, log, capture task.
    pub prepare: Duration,
    /// `fork`/`exec` until the spawn call returned (part of the agent's own time).
    pub spawn: Duration,
    /// The agent's own time: from just before the spawn until its leader was seen to exit.
    pub process: Duration,
    /// After the leader ended: the group kill, waiting for the group to be gone, strays.
    pub reap: Duration,
    /// Reading the report and judging the outcome.
    pub evaluate: Duration,
    /// Waiting for the log capture to drain and end.
    pub log: Duration,
    /// Reading the log's tail for the accounting.
    pub usage: Duration,
}

impl Phases {
    /// Adds the time since `since` to the phase `field` picks; returns now, the next phase's
    /// start.
    pub fn lap(
        &mut self,
        field: impl FnOnce(&mut Self) -> &mut Duration,
        since: Instant,
    ) -> Instant {
        let now = Instant::now();
        *field(self) += now.saturating_duration_since(since);
        now
    }

    /// One debug event with every phase in microseconds.
    pub fn emit(&self, incident_id: Uuid, attempt: i32, total: Duration) {
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        tracing::debug!(
            target: PHASES_TARGET,
            %incident_id,
            attempt,
            side = "agent",
            total_us = us(total),
            proxy_us = us(self.proxy),
            evidence_us = us(self.evidence),
            prepare_us = us(self.prepare),
            spawn_us = us(self.spawn),
            process_us = us(self.process),
            reap_us = us(self.reap),
            evaluate_us = us(self.evaluate),
            log_us = us(self.log),
            usage_us = us(self.usage),
            "agent run phases"
        );
    }
}
