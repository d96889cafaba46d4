//! The writer: drains the channel in batches and commits each batch with one
//! `Store::record_faults` transaction, holding the batch and retrying while the database is
//! unavailable so that nothing is reordered or lost.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{InboxLease, IngestReceiver, Shared};
use crate::config::IngestConfig;
use crate::fault::ReceivedFault;
use crate::health::Health;
use crate::store::{Recorded, Store, StoreError};
use crate::telemetry::names;

/// Tunables of [`IngestWriter`]; [`WriterOptions::from_config`] takes them from `ingest.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterOptions {
    /// Most faults in one transaction.
    pub batch_max: usize,
    /// How long a batch may wait for more faults after its first one.
    pub batch_linger: Duration,
    /// First pause after a failed write; doubled per failure up to `retry_max`.
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// Connection states are saved at most this often (and at least this often when dirty).
    pub state_flush_interval: Duration,
    /// On shutdown, how long the writer keeps writing what was received before it gives up.
    pub drain_timeout: Duration,
    /// Attempts at one fault the database rejects as bad data (a constraint may be a race with
    /// another process, so it gets a second chance) before that fault is dropped.
    pub reject_after: u32,
}

impl WriterOptions {
    pub const DEFAULT_RETRY_INITIAL: Duration = Duration::from_millis(100);
    pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(5);
    pub const DEFAULT_STATE_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

    pub fn from_config(cfg: &IngestConfig) -> Self {
        Self {
            batch_max: cfg.batch_max.max(1),
            batch_linger: cfg.batch_linger,
            retry_initial: Self::DEFAULT_RETRY_INITIAL,
            retry_max: Self::DEFAULT_RETRY_MAX,
            state_flush_interval: Self::DEFAULT_STATE_FLUSH_INTERVAL,
            drain_timeout: cfg.drain_timeout,
            reject_after: 2,
        }
    }
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self::from_config(&IngestConfig::default())
    }
}

/// What one batch (or one [`IngestWriter::run_once`]) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepReport {
    /// Faults written (each an occurrence row).
    pub written: usize,
    /// Of those, how many opened an incident.
    pub created: usize,
    /// Faults the database rejected as invalid, dropped.
    pub rejected: usize,
    /// Connection states saved.
    pub states_saved: usize,
}

impl StepReport {
    fn add(&mut self, other: StepReport) {
        self.written += other.written;
        self.created += other.created;
        self.rejected += other.rejected;
        self.states_saved += other.states_saved;
    }
}

/// When a retry loop must give up: on cancellation (normal running; the drain follows) or at a
/// deadline (the drain itself).
#[derive(Clone, Copy)]
enum Stop<'a> {
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
    Stopped,
}

/// Test-only fault injection: runs before every commit attempt (it may panic).
#[cfg(test)]
pub(super) type CommitHook = Arc<dyn Fn(&[ReceivedFault]) + Send + Sync>;

/// The single consumer of the ingest channel. Clone it to restart after a panic (see
/// [`crate::supervise::supervise`]); only one clone runs at a time.
#[derive(Clone)]
pub struct IngestWriter {
    receiver: IngestReceiver,
    store: Store,
    health: Health,
    opts: WriterOptions,
    #[cfg(test)]
    pub(super) before_commit: Option<CommitHook>,
}

impl IngestWriter {
    pub fn new(
        receiver: IngestReceiver,
        store: Store,
        health: Health,
        opts: WriterOptions,
    ) -> Self {
        Self {
            receiver,
            store,
            health,
            opts,
            #[cfg(test)]
            before_commit: None,
        }
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.receiver.shared
    }

    /// Writes until `token` is cancelled, then drains what was received (bounded by
    /// `drain_timeout`) and returns.
    pub async fn run(self, token: CancellationToken) {
        let Some(mut inbox) = self.receiver.lease() else {
            tracing::error!("ingest writer not started: another writer holds the channel");
            return;
        };
        self.resume_after_panic(&mut inbox);
        // Present from the start, so a dashboard sees 0 rather than no data.
        let degraded = if self.health.is_ingest_degraded() {
            1.0
        } else {
            0.0
        };
        metrics::gauge!(names::INGEST_DEGRADED).set(degraded);
        let mut last_state_flush = Instant::now();
        loop {
            // A batch left by a panicked writer is committed alone, before anything new joins it.
            let open = if inbox.held.is_empty() {
                tokio::select! {
                    _ = token.cancelled() => break,
                    open = self.fill(&mut inbox) => open,
                }
            } else {
                true
            };
            if !inbox.held.is_empty() && !self.commit_held(&mut inbox, Stop::Cancel(&token)).await {
                break;
            }
            if last_state_flush.elapsed() >= self.opts.state_flush_interval {
                self.flush_states().await;
                last_state_flush = Instant::now();
            }
            if !open {
                tracing::debug!("ingest channel closed: every sender is gone");
                break;
            }
        }
        self.drain(&mut inbox).await;
    }

    /// Writes what is in the channel now (at most `batch_max`, no lingering) and saves pending
    /// connection states: one step of [`IngestWriter::run`] for tests and tools. While the
    /// database is unavailable it retries until `token` is cancelled.
    pub async fn run_once(&self, token: &CancellationToken) -> StepReport {
        let Some(mut inbox) = self.receiver.lease() else {
            return StepReport::default();
        };
        let mut report = StepReport::default();
        take_available(&mut inbox, self.opts.batch_max);
        if !inbox.held.is_empty() {
            report = self.commit_batch(&mut inbox, Stop::Cancel(token)).await;
        }
        report.states_saved = self.flush_states().await;
        report
    }

    /// A batch left by a writer that panicked is retried once; if it is still there after a
    /// second panic it is what makes the writer panic, so it is dropped (counted, logged).
    fn resume_after_panic(&self, inbox: &mut InboxLease) {
        if inbox.held.is_empty() {
            return;
        }
        inbox.resumed_after_panic += 1;
        if inbox.resumed_after_panic == 1 {
            tracing::warn!(
                faults = inbox.held.len(),
                "ingest writer restarted after a panic; retrying its batch"
            );
            return;
        }
        let lost = std::mem::take(&mut inbox.held);
        tracing::error!(
            faults = lost.len(),
            "ingest writer panicked twice on the same batch; dropping it"
        );
        for f in &lost {
            self.shared()
                .drops
                .record(&f.cluster, "writer panicked on it");
        }
        self.finish(inbox, lost.len());
    }

    /// Moves faults from the channel into the (empty) held batch: waits for the first one (at
    /// most one state-flush interval, so states are saved on an idle channel), then lingers for
    /// more. Returns false when the channel is closed.
    async fn fill(&self, inbox: &mut InboxLease) -> bool {
        let max = self.opts.batch_max;
        let super::Inbox { rx, held, .. } = &mut **inbox;
        let wait = self.opts.state_flush_interval;
        match tokio::time::timeout(wait, rx.recv_many(held, max - held.len())).await {
            Err(_) => return true,
            Ok(0) => return false,
            Ok(_) => {}
        }
        let deadline = Instant::now() + self.opts.batch_linger;
        while held.len() < max {
            match tokio::time::timeout_at(deadline, rx.recv_many(held, max - held.len())).await {
                Err(_) => break,
                Ok(0) => return false,
                Ok(_) => {}
            }
        }
        true
    }

    /// Commits the held batch; false when stopped before it was done (what is left stays held).
    async fn commit_held(&self, inbox: &mut InboxLease, stop: Stop<'_>) -> bool {
        self.commit_batch(inbox, stop).await;
        inbox.held.is_empty()
    }

    /// The batch stays in `inbox.held` until it is written, so a panic anywhere in here leaves
    /// it to the next writer; written faults leave it before anything else happens to them.
    async fn commit_batch(&self, inbox: &mut InboxLease, stop: Stop<'_>) -> StepReport {
        let mut report = StepReport::default();
        loop {
            match self.attempt(&inbox.held, stop).await {
                Attempt::Recorded(recorded) => {
                    let batch = std::mem::take(&mut inbox.held);
                    self.finish(inbox, batch.len());
                    report.add(self.report_recorded(&batch, &recorded));
                    return report;
                }
                Attempt::Stopped => return report,
                // The store named the bad fault and wrote nothing: drop it, write the rest.
                Attempt::Rejected(e @ StoreError::InvalidFault { index, .. })
                    if index < inbox.held.len() =>
                {
                    let fault = inbox.held.remove(index);
                    self.finish(inbox, 1);
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
                    self.finish(inbox, batch.len());
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
            let fault = inbox.held.remove(0);
            self.finish(inbox, 1);
            match outcome {
                Attempt::Recorded(r) => {
                    report.add(self.report_recorded(std::slice::from_ref(&fault), &r))
                }
                Attempt::Rejected(e) => {
                    self.reject(&fault, &e);
                    report.rejected += 1;
                }
                Attempt::Stopped => {}
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
                Stop::Cancel(_) => self.store.record_faults(faults).await,
                Stop::Deadline(_) => tokio::select! {
                    r = self.store.record_faults(faults) => r,
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
                Err(e) if rejects_data(&e) => {
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

    /// `n` faults of the held batch are done with (written or rejected).
    fn finish(&self, inbox: &mut InboxLease, n: usize) {
        inbox.resumed_after_panic = 0;
        self.shared().release(n);
        // The burst is over once the writer keeps up again.
        self.shared().drops.flush(false);
    }

    /// Saves the newest unsaved connection state of each cluster; returns how many were saved.
    async fn flush_states(&self) -> usize {
        let mut states = self.shared().take_states();
        let mut saved = 0;
        while let Some(state) = states.pop() {
            if let Err(e) = self.store.put_connection_state(&state).await {
                tracing::debug!(cluster = %state.cluster, error = %e, "connection state not saved; will retry");
                states.push(state);
                self.shared().restore_states(states);
                break;
            }
            saved += 1;
        }
        saved
    }

    /// Shutdown: writes what is held and what is in the channel now, until done or
    /// `drain_timeout`, then saves connection states.
    async fn drain(&self, inbox: &mut InboxLease) {
        let deadline = Instant::now() + self.opts.drain_timeout;
        loop {
            take_available(inbox, self.opts.batch_max);
            if inbox.held.is_empty() || !self.commit_held(inbox, Stop::Deadline(deadline)).await {
                break;
            }
        }
        let _ = tokio::time::timeout_at(deadline, self.flush_states()).await;
        let left = inbox.held.len() + inbox.rx.len();
        if left > 0 {
            tracing::warn!(
                lost = left,
                drain_timeout = %humantime::format_duration(self.opts.drain_timeout),
                "shutdown: faults not written before the drain deadline"
            );
        }
        self.shared().drops.flush(true);
    }
}

/// Moves what is in the channel now into the held batch, up to `max` in all.
fn take_available(inbox: &mut InboxLease, max: usize) {
    let super::Inbox { rx, held, .. } = &mut **inbox;
    while held.len() < max {
        match rx.try_recv() {
            Ok(f) => held.push(f),
            Err(_) => break,
        }
    }
}

/// True when the database refused the data itself (validation, a constraint, a value it cannot
/// store), as opposed to being unreachable, busy or broken: only then may a fault be dropped.
fn rejects_data(e: &StoreError) -> bool {
    match e {
        StoreError::InvalidInput(_) | StoreError::InvalidFault { .. } => true,
        StoreError::Database { source, .. } => source.as_database_error().is_some_and(|db| {
            db.kind() != sqlx::error::ErrorKind::Other
                // PostgreSQL class 22: data exception (a NUL byte in text, a value out of range).
                || db.code().is_some_and(|c| c.len() == 5 && c.starts_with("22"))
        }),
        _ => false,
    }
}
