//! Restart reconciliation: what a previous boot of this instance left `running` is killed (if
//! its agent still lives) and given back, before this boot claims anything; and agent
//! processes that outlived a run that is over (they left their process group with `setsid`)
//! are killed, found by the run marker in their environment.

use std::time::Duration;

use tracing::{info, warn};

use crate::agent;
use crate::incident::IncidentStatus;

use super::run::with_retry;
use super::runner::IncidentRunner;
use super::settings::owner_is_another_live_process;
use crate::store::{Store, StoreError};

/// Reason recorded on incidents a restart found running.
pub const RESTART_REASON: &str = "interrupted: nightcrier restarted";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReconcileCounts {
    /// Running incidents of previous boots given back (pending, or failed when out of attempts).
    pub requeued: u64,
    /// Expired leases of any owner returned by the rescue pass.
    pub rescued: u64,
    /// Of those, failed for good.
    pub failed: u64,
    /// Process groups of runs that are over (strays that left their group) killed.
    pub strays_killed: u64,
}

/// How long the start-up sweep waits for a killed stray group to be gone.
const STRAY_GONE_WITHIN: Duration = Duration::from_secs(5);

/// Finds incidents leased by earlier boots of this instance (`owner_prefix`, but not `owner`,
/// this boot), kills their leftover agents, requeues them, then runs one rescue pass.
pub async fn reconcile_restart<R: IncidentRunner>(
    store: &Store,
    runner: &R,
    owner_prefix: &str,
    owner: &str,
    max_attempts: u32,
) -> Result<ReconcileCounts, StoreError> {
    let mut counts = ReconcileCounts::default();
    let leftovers = store.running_owned_by(owner_prefix).await?;
    for (incident, run) in leftovers {
        if incident.lease_owner.as_deref() == Some(owner) {
            continue;
        }
        // Another live process with the same instance name: its runs are not ours to kill. The
        // rescuer takes them over if that process dies and its leases expire.
        if let Some(other) = incident
            .lease_owner
            .as_deref()
            .filter(|o| owner_is_another_live_process(o))
        {
            warn!(
                incident_id = %incident.id,
                other_owner = other,
                "another live nightcrier process uses this instance name; give each process its own worker.instance_name"
            );
            continue;
        }
        runner.kill_leftover(&incident, &run).await;
        match with_retry(|| store.requeue(incident.id, run.attempt, RESTART_REASON, max_attempts))
            .await
        {
            Ok(true) => {
                counts.requeued += 1;
                info!(
                    incident_id = %incident.id,
                    cluster = %incident.cluster,
                    attempt = run.attempt,
                    previous_owner = incident.lease_owner.as_deref().unwrap_or(""),
                    "requeued an incident a previous run left running"
                );
            }
            // Someone else (a rescuer elsewhere) got to it first.
            Ok(false) => {}
            Err(e) => {
                warn!(incident_id = %incident.id, error = %e, "cannot requeue a leftover incident");
                return Err(e);
            }
        }
    }
    counts.strays_killed = kill_strays(store).await?;
    let rescued = store.rescue_expired(max_attempts).await?;
    counts.rescued = rescued.requeued + rescued.failed;
    counts.failed = rescued.failed;
    if counts.rescued > 0 {
        info!(
            requeued = rescued.requeued,
            failed = rescued.failed,
            "rescued incidents with expired leases at start"
        );
    }
    Ok(counts)
}

/// Kills every process group on this host that carries the marker of a run of *this store*
/// that is over (the incident is no longer running that attempt). Markers of incidents this
/// store does not know belong to another nightcrier and are left alone, as are runs in progress
/// (another process sharing the database may own them).
async fn kill_strays(store: &Store) -> Result<u64, StoreError> {
    let mut killed = 0;
    for group in agent::find_agent_groups() {
        let current = match store.get(&group.incident_id.to_string()).await {
            Ok(i) => i,
            Err(StoreError::NotFound(_)) => continue,
            Err(e) => return Err(e),
        };
        if current.status == IncidentStatus::Running && current.attempt == group.attempt {
            continue;
        }
        match agent::kill_leftover_group(group.pgid, group.incident_id, group.attempt) {
            Ok(true) => {
                killed += 1;
                let left = agent::wait_group_gone(group.pgid, STRAY_GONE_WITHIN).await;
                warn!(
                    incident_id = %group.incident_id, attempt = group.attempt, pgid = group.pgid,
                    still_alive = ?left, "killed agent processes that outlived their run"
                );
            }
            Ok(false) => {}
            Err(e) => warn!(
                incident_id = %group.incident_id, pgid = group.pgid, error = %e,
                "cannot kill agent processes that outlived their run"
            ),
        }
    }
    Ok(killed)
}
