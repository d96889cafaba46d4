//! The store's conformance suite: every scenario runs against SQLite and PostgreSQL
//! (`sqlite::<name>` and `postgres::<name>`), plus backend-specific checks.

mod budgets;
mod concurrency;
mod conformance;
mod costs;
mod gocompat;
mod paging;
mod queue;
mod related;
mod reporting;
mod resolve;
mod slack;
mod specific;

use std::time::Duration;

use nightcrier::incident::{IncidentStatus, RunOutcome};
use nightcrier::store::ClaimLimits;

/// Generous limits: the claim is decided by the queue order alone.
pub const WIDE: ClaimLimits = ClaimLimits {
    max_concurrent_agents: 100,
    max_agents_per_cluster: 100,
    lease: Duration::from_secs(60),
};

pub fn outcome(status: IncidentStatus) -> RunOutcome {
    RunOutcome {
        status: status.try_into().expect("a status a run can end with"),
        reason: (status != IncidentStatus::Succeeded).then(|| format!("agent {status}")),
        exit_code: Some(if status == IncidentStatus::Succeeded {
            0
        } else {
            1
        }),
    }
}
