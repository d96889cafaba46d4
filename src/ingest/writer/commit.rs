//! Committing the held batch: one transaction per batch, retried while the database cannot
//! write, split only when the database refuses some fault's data.

use std::collections::HashMap;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{IngestWriter, StepReport};
use crate::fault::ReceivedFault;
use crate::ingest::InboxLease;
use crate::store::{Recorded, StoreError};
use crate::telemetry::names;

/// When a retry loop must give up: on cancellation (normal running; the drain follows) or at a
/// deadline (the drain itself).
#[derive(Clone, Copy)]
pub(super) enum Stop<'a> {
    Cancel(&'a CancellationToken),
    Deadline(Instant),
}

impl Stop<'_> {
    async fn reached(self) {
        match self {
            Stop::Cancel(t) => t.cancelled().await,
            Stop::Deadline(d) => tokio::time::sleep_until(d).await,
        }
    }
}

/// Outcome of writing one slice of faults.
enum Attempt {
    Recorded(Vec<Recorded>),
    /// The database refused the data itself; retrying the same slice cannot help.
    Rejected(StoreError),
    /// The database is corrupt: nothing more is written to it.
    Corrupt(StoreError),
    Stopped,
}

impl IngestWriter {
    /// Commits the held batch; false when stopped before it was done (what is left stays held).
    pub(super) async fn commit_held(&self, inbox: &mut InboxLease, stop: Stop<'_>) -> bool {
        self.commit_batch(inbox, stop).await;
        inbox.held.is_empty()
    }

    /// The batch stays in `inbox.held` until it is written, so a panic anywhere in here leaves
    /// it to the next writer; written faults leave it before anything else happens to them.
    pub(super) async fn commit_batch(&self, inbox: &mut InboxLease, stop: Stop<'_>) -> StepReport {
        let mut report = StepReport::default();
        loop {
            match self.attempt(&inbox.held, stop).await {
                Attempt::Recorded(recorded) => {
                    let batch = std::mem::take(&mut inbox.held);
                    self.finish(inbox, &batch);
                    report.add(self.report_recorded(&batch, &recorded));
                    return report;
                }
                Attempt::Stopped => return report,
                Attempt::Corrupt(e) => {
                    self.on_corrupt(&e);
                    self.spill_held(inbox);
                    return report;
                }
                // The store named the bad fault and wrote nothing: drop it, write the rest.
                Attempt::Rejected(e @ StoreError::InvalidFault { index, .. })
                    if index < inbox.held.len() =>
                {
                    let fault = inbox.held.remove(index);
                    self.finish(inbox, std::slice::from_ref(&fault));
                    self.reject(&fault, &e);
                    report.rejected += 1;
                    if inbox.held.is_empty() {
                        return report;
                    }
                }
                // Some fault in the batch is bad: write them one by one to lose only that one.
                Attempt::Rejected(e) if inbox.held.len() > 1 => {
                    tracing::debug!(error = %e, faults = inbox.held.len(), "batch rejected; writing its faults one by one");
                    report.add(self.commit_one_by_one(inbox, stop).await);
                    return report;
                }
                Attempt::Rejected(e) => {
                    let batch = std::mem::take(&mut inbox.held);
                    self.finish(inbox, &batch);
                    for fault in &batch {
                        self.reject(fault, &e);
                    }
                    report.rejected += batch.len();
                    return report;
                }
            }
        }
    }

    async fn commit_one_by_one(&self, inbox: &mut InboxLease, stop: Stop<'_>) -> StepReport {
        let mut report = StepReport::default();
        while !inbox.held.is_empty() {
            let outcome = self.attempt(&inbox.held[..1], stop).await;
            if matches!(outcome, Attempt::Stopped) {
                break;
            }
            if let Attempt::Corrupt(e) = &outcome {
                self.on_corrupt(e);
                self.spill_held(inbox);
                break;
            }
            let fault = inbox.held.remove(0);
            self.finish(inbox, std::slice::from_ref(&fault));
            match outcome {
                Attempt::Recorded(r) => {
                    report.add(self.report_recorded(std::slice::from_ref(&fault), &r))
                }
                Attempt::Rejected(e) => {
                    self.reject(&fault, &e);
                    report.rejected += 1;
                }
                Attempt::Stopped | Attempt::Corrupt(_) => {}
            }
        }
        report
    }

    /// Records `faults` in one transaction, retrying (with capped exponential backoff) every
    /// failure except the database refusing the data itself.
    async fn attempt(&self, faults: &[ReceivedFault], stop: Stop<'_>) -> Attempt {
        let mut backoff = self.opts.retry_initial;
        let mut data_errors = 0u32;
        loop {
            #[cfg(test)]
            if let Some(hook) = &self.before_commit {
                hook(faults);
            }
            let started = Instant::now();
            let result = match stop {
                // While running, an attempt in flight is let finish: cutting it could leave its
                // outcome unknown.
                Stop::Cancel(_) => self.store.record_faults_fenced(faults).await,
                Stop::Deadline(_) => tokio::select! {
                    r = self.store.record_faults_fenced(faults) => r,
                    _ = stop.reached() => return Attempt::Stopped,
                },
            };
            match result {
                Ok(recorded) => {
                    metrics::histogram!(names::DB_WRITE_DURATION)
                        .record(started.elapsed().as_secs_f64());
                    self.on_write_ok();
                    return Attempt::Recorded(recorded);
                }
                Err(e) if e.is_corrupt() => return Attempt::Corrupt(e),
                Err(e) if e.is_refused_data() => {
                    data_errors += 1;
                    let deterministic = matches!(
                        e,
                        StoreError::InvalidInput(_) | StoreError::InvalidFault { .. }
                    );
                    if deterministic || faults.len() > 1 || data_errors >= self.opts.reject_after {
                        return Attempt::Rejected(e);
                    }
                }
                Err(e) => self.on_write_failed(&e),
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.reached() => return Attempt::Stopped,
            }
            backoff = (backoff * 2).min(self.opts.retry_max);
        }
    }

    fn on_write_failed(&self, e: &StoreError) {
        if self.health.set_ingest_degraded(&e.to_string()) {
            metrics::gauge!(names::INGEST_DEGRADED).set(1.0);
            tracing::warn!(
                error = %e,
                buffered = self.shared().depth(),
                capacity = self.shared().capacity,
                "database degraded: ingest is buffering faults in memory"
            );
        }
    }

    fn on_write_ok(&self) {
        if self.health.record_write_ok() {
            metrics::gauge!(names::INGEST_DEGRADED).set(0.0);
            tracing::info!(
                waited = self.shared().depth(),
                dropped_total = self.shared().drops.total(),
                "database recovered: writing buffered faults"
            );
        }
    }

    fn report_recorded(&self, faults: &[ReceivedFault], recorded: &[Recorded]) -> StepReport {
        if faults.len() != recorded.len() {
            tracing::error!(
                sent = faults.len(),
                results = recorded.len(),
                "store returned a result count that does not match the batch"
            );
        }
        let mut created = 0;
        let mut per_cluster: HashMap<&str, (u64, u64)> = HashMap::new();
        for (fault, rec) in faults.iter().zip(recorded) {
            let counts = per_cluster.entry(fault.cluster.as_str()).or_default();
            if rec.created {
                counts.0 += 1;
                created += 1;
                let res = &fault.fault.resource;
                tracing::info!(
                    incident_id = %rec.incident_id,
                    cluster = %fault.cluster,
                    fault_type = %fault.fault.fault_type,
                    resource = %format_args!(
                        "{}/{}/{}",
                        res.kind,
                        res.namespace.as_deref().unwrap_or("-"),
                        res.name
                    ),
                    status = %rec.status,
                    "incident {} created",
                    rec.incident_id
                );
            } else {
                counts.1 += 1;
            }
        }
        for (cluster, (new, dedup)) in per_cluster {
            if new > 0 {
                metrics::counter!(names::INCIDENTS_CREATED, "cluster" => cluster.to_string())
                    .increment(new);
            }
            if dedup > 0 {
                metrics::counter!(names::EVENTS_DEDUPLICATED, "cluster" => cluster.to_string())
                    .increment(dedup);
            }
        }
        StepReport {
            written: faults.len(),
            created,
            ..StepReport::default()
        }
    }

    fn reject(&self, fault: &ReceivedFault, e: &StoreError) {
        metrics::counter!(
            names::EVENTS_MALFORMED,
            "cluster" => fault.cluster.clone(),
            "reason" => "rejected_by_database"
        )
        .increment(1);
        tracing::warn!(
            cluster = %fault.cluster,
            fault_id = %fault.fault.fault_id,
            fault_type = %fault.fault.fault_type,
            error = %e,
            "fault rejected by the database; dropped"
        );
    }

    /// `faults` of the held batch are done with (written or rejected).
    pub(super) fn finish(&self, inbox: &mut InboxLease, faults: &[ReceivedFault]) {
        inbox.resumed_after_panic = 0;
        self.shared().release(faults);
        // The burst is over once the writer keeps up again.
        self.shared().drops.flush(false);
    }
}
