//! One run: the task that owns a claimed incident from claim to bookkeeping.
//!
//! The heartbeat and the pid recording are polled inside the run's own task, next to the agent,
//! so they cannot outlive it whatever path the task takes (return, panic, abort).

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use uuid::Uuid;

use super::runner::IncidentRunner;
use super::settings::PoolSettings;
use crate::agent::phases::PHASES_TARGET;
use crate::incident::RunOutcome;
use crate::store::{Claimed, Store, StoreError};

/// Reason recorded when a shutdown interrupts a run.
pub const SHUTDOWN_REASON: &str = "interrupted by shutdown";

/// Occurrences handed to the agent; an incident can gather thousands of repeats, and the first
/// ones say as much as all of them.
const OCCURRENCES_FOR_AGENT: u32 = 50;
/// Related faults (other pods of the workload) given to the agent, one occurrence each; together
/// with the occurrences this stays under `agent::MAX_OCCURRENCES_IN_FILE`.
const RELATED_FOR_AGENT: u32 = 100;

/// Bookkeeping writes are retried this often while the database is unavailable; after that the
/// lease runs out and the rescuer returns the incident.
const STORE_RETRIES: u32 = 5;
const STORE_RETRY_FIRST_DELAY: Duration = Duration::from_millis(100);

/// How a run task ended, for the pool's log line and metrics.
#[derive(Debug)]
pub(crate) enum RunEnd {
    /// The agent ended and its outcome was offered to the store (`recorded` false: fenced out).
    Finished { outcome: RunOutcome, recorded: bool },
    /// Shutdown terminated the agent; the incident was given back.
    Interrupted { recorded: bool },
    /// The lease was lost (incident cancelled or rescued): someone else owns it now.
    LeaseLost,
    /// The bookkeeping could not be written; the lease will expire and the rescuer takes over.
    StoreFailed(StoreError),
}

impl RunEnd {
    /// The `outcome` label of the run metrics.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            RunEnd::Finished { outcome, .. } => outcome.status.as_str(),
            RunEnd::Interrupted { .. } => "interrupted",
            RunEnd::LeaseLost => "lease_lost",
            RunEnd::StoreFailed(_) => "store_failed",
        }
    }
}

/// What a run task needs besides its claim; cheap to clone.
pub(crate) struct RunDeps<R> {
    pub store: Store,
    pub runner: Arc<R>,
    pub settings: Arc<PoolSettings>,
    /// Fired by the pool when shutdown terminates the runs.
    pub terminate: CancellationToken,
}

impl<R> Clone for RunDeps<R> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            runner: self.runner.clone(),
            settings: self.settings.clone(),
            terminate: self.terminate.clone(),
        }
    }
}

pub(crate) async fn execute<R: IncidentRunner>(deps: RunDeps<R>, claimed: Claimed) -> RunEnd {
    let Claimed { incident, attempt } = claimed;
    let id = incident.id;
    let store = &deps.store;
    let max_attempts = deps.settings.max_attempts;
    let started = Instant::now();

    let occurrences = match with_retry(|| {
        store.occurrences_for_triage(id, OCCURRENCES_FOR_AGENT, RELATED_FOR_AGENT)
    })
    .await
    {
        Ok(o) => o,
        Err(e) => {
            warn!(incident_id = %id, error = %e, "cannot read the incident's occurrences; giving it back");
            let reason = format!("store unavailable: {e}");
            return match with_retry(|| store.requeue(id, attempt, &reason, max_attempts)).await {
                Ok(_) => RunEnd::StoreFailed(e),
                Err(e2) => RunEnd::StoreFailed(e2),
            };
        }
    };

    let read = started.elapsed();
    let lease_lost = CancellationToken::new();
    let cancel = deps.terminate.child_token();
    let (pid_tx, mut pid_rx) = watch::channel(None::<u32>);
    let on_started = move |pid: u32| {
        pid_tx.send_replace(Some(pid));
    };
    let agent = deps.runner.run(
        &incident,
        &occurrences,
        attempt,
        cancel.clone(),
        &on_started,
    );
    let heartbeat = heartbeat(
        store,
        id,
        attempt,
        &deps.settings,
        lease_lost.clone(),
        cancel.clone(),
    );
    // The pid is written while the agent runs, polled beside it: awaited in a `select!` arm it
    // would stop the agent's future from being polled (its exit seen late) for the write's
    // duration.
    let writing_pid = AtomicBool::new(false);
    let pid_write = async {
        if pid_rx.changed().await.is_ok() {
            let pid = *pid_rx.borrow_and_update();
            if let Some(pid) = pid {
                writing_pid.store(true, Ordering::Relaxed);
                record_pid(store, id, attempt, pid).await;
            }
        }
    };
    tokio::pin!(agent, heartbeat, pid_write);
    let mut pid_pending = true;
    let report = loop {
        tokio::select! {
            report = &mut agent => break report,
            never = &mut heartbeat => match never {},
            () = &mut pid_write, if pid_pending => pid_pending = false,
        }
    };
    // The agent ended first: a pid sent but not yet seen starts its write on this poll; a write
    // in flight is finished (the run's row keeps its pid). Without a pid there is nothing to wait
    // for (the sender lives as long as this function).
    if pid_pending
        && futures::poll!(&mut pid_write).is_pending()
        && writing_pid.load(Ordering::Relaxed)
    {
        pid_write.await;
    }

    let ran = started.elapsed();
    // Before the lease checks: a run that lost its lease or was interrupted still spent.
    // Where its output is, for `incidents show` and for another process of a fleet (the log
    // lives on this host). Two independent writes, sent together.
    let log_path = report.log_path.display().to_string();
    let log_path_write = async {
        if let Err(e) = with_retry(|| store.set_run_log_path(id, attempt, &log_path)).await {
            warn!(incident_id = %id, error = %e, "cannot record the agent run's log path");
        }
    };
    tokio::join!(
        record_usage(store, &incident, attempt, &report.usage),
        log_path_write
    );
    if lease_lost.is_cancelled() {
        return RunEnd::LeaseLost;
    }
    if report.interrupted && deps.terminate.is_cancelled() {
        return match with_retry(|| store.requeue(id, attempt, SHUTDOWN_REASON, max_attempts)).await
        {
            Ok(recorded) => RunEnd::Interrupted { recorded },
            Err(e) => RunEnd::StoreFailed(e),
        };
    }
    // The agent could not be started for lack of a resource (EMFILE, ENOSPC...): give the
    // incident back rather than fail it for good.
    if report.retry_later {
        let reason = report.outcome.reason.clone().unwrap_or_default();
        warn!(incident_id = %id, reason = %reason, "agent not started; incident given back");
        return match with_retry(|| store.requeue(id, attempt, &reason, max_attempts)).await {
            Ok(recorded) => RunEnd::Interrupted { recorded },
            Err(e) => RunEnd::StoreFailed(e),
        };
    }
    let booked = started.elapsed();
    let completed = with_retry(|| store.complete(id, attempt, &report.outcome)).await;
    let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    debug!(
        target: PHASES_TARGET,
        incident_id = %id,
        attempt,
        side = "worker",
        total_us = us(started.elapsed()),
        occurrences_us = us(read),
        runner_us = us(ran - read),
        bookkeeping_us = us(booked - ran),
        complete_us = us(started.elapsed() - booked),
        "worker run phases"
    );
    match completed {
        Ok(recorded) => RunEnd::Finished {
            outcome: report.outcome,
            recorded,
        },
        Err(e) => RunEnd::StoreFailed(e),
    }
}

/// Stores the run's usage and counts it in the token and cost metrics.
async fn record_usage(
    store: &Store,
    incident: &crate::incident::Incident,
    attempt: i32,
    usage: &crate::accounting::RunUsage,
) {
    use crate::telemetry::names;
    let id = incident.id;
    if let Err(e) = with_retry(|| store.set_run_usage(id, attempt, usage)).await {
        warn!(incident_id = %id, error = %e, "cannot record the agent run's usage");
    }
    for (kind, count) in usage.tokens() {
        if let Some(n) = count.and_then(|n| u64::try_from(n).ok()) {
            metrics::counter!(names::AGENT_TOKENS, "cluster" => incident.cluster.clone(), "kind" => kind)
                .increment(n);
        }
    }
    if let Some(cost) = usage.cost_usd {
        // The metrics crate's counters are integers: a gauge that only ever grows.
        metrics::gauge!(names::AGENT_COST_USD, "cluster" => incident.cluster.clone())
            .increment(cost);
    }
}

async fn record_pid(store: &Store, id: Uuid, attempt: i32, pid: u32) {
    let Ok(pid) = i32::try_from(pid) else {
        warn!(incident_id = %id, pid, "agent pid out of range; not recorded");
        return;
    };
    if let Err(e) = with_retry(|| store.set_run_pid(id, attempt, pid)).await {
        warn!(incident_id = %id, error = %e, "cannot record the agent's pid; a crash would leave it behind");
    }
}

/// Renews the lease every `heartbeat_interval` for as long as it is polled. When the store says
/// the lease is gone it cancels the run, then waits to be dropped with the run.
async fn heartbeat(
    store: &Store,
    id: Uuid,
    attempt: i32,
    settings: &PoolSettings,
    lease_lost: CancellationToken,
    cancel: CancellationToken,
) -> Infallible {
    let every = settings.heartbeat_interval.max(Duration::from_millis(1));
    let mut failures = 0u32;
    loop {
        tokio::time::sleep(every).await;
        match store.heartbeat(id, attempt, settings.lease_duration).await {
            Ok(true) => failures = 0,
            Ok(false) => {
                warn!(incident_id = %id, attempt, "lease lost (cancelled or rescued); stopping the agent");
                lease_lost.cancel();
                cancel.cancel();
                return std::future::pending().await;
            }
            Err(e) => {
                failures += 1;
                // One warning per outage; the lease outlives several missed beats.
                if failures == 1 {
                    warn!(incident_id = %id, error = %e, "heartbeat failed; retrying");
                } else {
                    debug!(incident_id = %id, error = %e, failures, "heartbeat failed again");
                }
            }
        }
    }
}

/// Retries `op` while the database is unavailable, a bounded number of times.
pub(crate) async fn with_retry<T, F, Fut>(mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut delay = STORE_RETRY_FIRST_DELAY;
    let mut tries = 0;
    loop {
        match op().await {
            Err(e) if e.is_unavailable() && tries < STORE_RETRIES => {
                tries += 1;
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            other => return other,
        }
    }
}

/// `850ms`, `4.2s`, `3m12s`, `1h2m3s`: short enough for a log line.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}.{}s", (ms % 1000) / 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well_in_logs() {
        assert_eq!(format_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(format_duration(Duration::from_millis(4_250)), "4.2s");
        assert_eq!(format_duration(Duration::from_secs(192)), "3m12s");
        assert_eq!(format_duration(Duration::from_secs(3723)), "1h2m3s");
    }
}
