//! The agent runtime: one incident's workspace, the agent's argv (presets, command, container),
//! its process group, timeout and outcome.
//!
//! This module owns everything about running one agent process. It must not know the database
//! schema: it gets an [`Incident`] and its occurrences, and returns a [`RunReport`]; the worker
//! records it.
//!
//! NOTE(skeleton): signatures are the contract the worker codes against.
#![allow(unused_variables)]

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::incident::{FaultOccurrence, Incident, RunOutcome};

/// Everything one run needs besides the incident; built once from the configuration.
#[derive(Clone)]
pub struct AgentRunner {}

/// What one run produced.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    /// succeeded / failed / timed_out with a reason (`exit code 2`, `report missing`,
    /// `report too small (12 bytes)`, `timed out after 15m`, `cancelled`).
    pub outcome: RunOutcome,
    pub workspace: PathBuf,
    pub log_path: PathBuf,
    pub report_path: PathBuf,
    pub duration: Duration,
}

impl AgentRunner {
    pub fn new(config: &Config) -> Self {
        todo!()
    }

    /// Prepares `<workspace_root>/<incident-id>/`, starts the agent in its own process group and
    /// waits for it, bounded by the agent timeout. `on_started(pid)` is called once the process
    /// exists (the worker records the pid for crash recovery). When `cancel` fires the process
    /// group is terminated (SIGTERM, then SIGKILL after `kill_grace`) and the outcome says so.
    /// Never leaves a process of the agent behind.
    pub async fn run(
        &self,
        incident: &Incident,
        occurrences: &[FaultOccurrence],
        attempt: i32,
        cancel: CancellationToken,
        on_started: &(dyn Fn(u32) + Send + Sync),
    ) -> RunReport {
        todo!()
    }
}
