//! The writer: drains the channel in batches and commits each batch with one
//! `Store::record_faults` transaction, holding the batch and retrying while the database is
//! unavailable so that nothing is reordered or lost.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

mod commit;

use commit::Stop;

use super::{InboxLease, IngestReceiver, Shared};
use crate::config::IngestConfig;
#[cfg(test)]
use crate::fault::ReceivedFault;
use crate::health::Health;
use crate::store::Store;
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
    /// Where faults go once the database is found corrupt; without one they are dropped then.
    pub spill: Option<super::spill::SpillFile>,
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
            spill: None,
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
            if self.is_corrupt() {
                self.spill_held(&mut inbox);
            } else if !inbox.held.is_empty()
                && !self.commit_held(&mut inbox, Stop::Cancel(&token)).await
            {
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
        self.finish(inbox, &lost);
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
            if inbox.held.is_empty() {
                break;
            }
            if self.is_corrupt() {
                self.spill_held(inbox);
            } else if !self.commit_held(inbox, Stop::Deadline(deadline)).await {
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

impl IngestWriter {
    fn is_corrupt(&self) -> bool {
        self.shared()
            .corrupt
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// The database said it is corrupt: stop writing to it for the rest of this process, say
    /// so once, and mark ingest degraded (so `/readyz` fails with the reason).
    pub(super) fn on_corrupt(&self, e: &crate::store::StoreError) {
        let first = !self
            .shared()
            .corrupt
            .swap(true, std::sync::atomic::Ordering::AcqRel);
        if first {
            self.health
                .set_ingest_degraded(&format!("database corrupt: {e}"));
            metrics::gauge!(names::INGEST_DEGRADED).set(1.0);
            tracing::error!(
                error = %e,
                spill = %self.opts.spill.as_ref().map_or_else(|| "none".to_string(), |s| s.path().display().to_string()),
                "database corrupt: ingest stops writing to it; received faults go to the spill file, which the next start re-ingests"
            );
        }
    }

    /// Moves the held batch to the spill file (what does not fit is dropped and counted).
    pub(super) fn spill_held(&self, inbox: &mut InboxLease) {
        let batch = std::mem::take(&mut inbox.held);
        if batch.is_empty() {
            return;
        }
        let written = match &self.opts.spill {
            Some(spill) => match spill.append(&batch) {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(error = %e, faults = batch.len(), "cannot spill faults");
                    0
                }
            },
            None => 0,
        };
        for f in &batch[written..] {
            self.shared()
                .drops
                .record(&f.cluster, "database corrupt, spill file full");
        }
        if written > 0 {
            tracing::info!(faults = written, "faults spilled (database corrupt)");
        }
        self.finish(inbox, &batch);
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
