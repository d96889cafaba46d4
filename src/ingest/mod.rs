//! Ingest: the bounded channel between the MCP readers and the database, the group-committing
//! writer, and the outage buffer.
//!
//! This module owns the hand-off of received faults and connection states to the store. It must
//! not know about agents, and [`IngestSender::offer`] never waits. While the buffer is full a
//! reader waits *before reading on* ([`IngestSender::wait_for_room`]): TCP flow control then
//! slows the server to the writer's pace instead of nightcrier parsing events only to drop
//! them. The wait is bounded because the server sends synchronously (a paused stream holds its
//! fault detection for every client): once the writer has freed no room for
//! `ingest.backpressure_timeout` (the database is down), readers read on and drop fault
//! notifications unparsed ([`IngestSender::shed`]), counted per cluster.
//!
//! The buffer is bounded in faults (`buffer_capacity`) and in bytes (`buffer_bytes`, each fault
//! counted by [`ReceivedFault::size_bytes`] after [`ReceivedFault::bounded`] cut its texts).
//! The count bound covers every fault received and not yet written — those in the channel and
//! the batch the writer holds while the database is down — so `buffer_capacity` is exact: the
//! fault that would make it `capacity + 1` is the one dropped. The writer is a single task, so
//! faults reach the database in arrival order, per cluster and overall, across outages.
//!
//! Wiring (install the metrics recorder first, so the depth gauge is registered with it):
//! ```ignore
//! let (sender, writer) = ingest::build(&config.ingest, store.clone(), health.clone(), None);
//! // Give `sender` clones to the MCP supervisors, then:
//! supervise("ingest-writer", Duration::from_secs(1), token, move |t| writer.clone().run(t)).await;
//! ```

mod drops;
pub mod spill;
mod writer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};

use crate::config::IngestConfig;
use crate::fault::ReceivedFault;
use crate::health::Health;
use crate::incident::ConnectionState;
use crate::store::Store;
use crate::telemetry::names;

pub use writer::{IngestWriter, StepReport, WriterOptions};

/// The channel sized by `ingest.buffer_capacity` and `ingest.buffer_bytes`, and a writer
/// configured by `ingest.*`. With `spill`, what that file holds from an earlier run is offered
/// first (before any session starts, so spilled faults keep their place ahead of new ones), and
/// the writer spills there when the database is corrupt.
pub fn build(
    cfg: &IngestConfig,
    store: Store,
    health: Health,
    spill: Option<spill::SpillFile>,
) -> (IngestSender, IngestWriter) {
    let (sender, receiver) = channel_bounded(cfg.buffer_capacity, cfg.buffer_bytes);
    let sender = sender.with_backpressure_timeout(cfg.backpressure_timeout);
    if let Some(file) = &spill {
        spill::reingest(file, &sender);
    }
    let options = WriterOptions {
        spill,
        ..WriterOptions::from_config(cfg)
    };
    let writer = IngestWriter::new(receiver, store, health, options);
    (sender, writer)
}

/// The channel's two ends: readers offer, one [`IngestWriter`] at a time consumes.
/// `capacity` (`ingest.buffer_capacity`) is at least 1.
pub fn channel(capacity: usize) -> (IngestSender, IngestReceiver) {
    channel_bounded(capacity, IngestConfig::default().buffer_bytes)
}

/// [`channel`] that also holds at most `max_bytes` of faults (`ingest.buffer_bytes`).
pub fn channel_bounded(capacity: usize, max_bytes: usize) -> (IngestSender, IngestReceiver) {
    let capacity = capacity.max(1);
    let (tx, rx) = mpsc::channel(capacity);
    let shared = Arc::new(Shared {
        capacity,
        depth: AtomicUsize::new(0),
        max_bytes: max_bytes.max(1),
        bytes: AtomicUsize::new(0),
        corrupt: AtomicBool::new(false),
        depth_gauge: metrics::gauge!(names::INGEST_BUFFER_DEPTH),
        states: Mutex::new(HashMap::new()),
        drops: drops::DropLog::new(capacity),
        room: Notify::new(),
    });
    let inbox = Inbox {
        rx,
        held: Vec::new(),
        resumed_after_panic: 0,
    };
    (
        IngestSender {
            tx,
            shared: shared.clone(),
            backpressure_timeout: IngestConfig::default().backpressure_timeout,
        },
        IngestReceiver {
            shared,
            slot: Arc::new(Mutex::new(Some(inbox))),
        },
    )
}

/// State shared by the senders and the writer.
#[derive(Debug)]
struct Shared {
    capacity: usize,
    /// Faults received and not yet written or rejected: the channel plus the writer's batch.
    depth: AtomicUsize,
    /// `ingest.buffer_bytes`.
    max_bytes: usize,
    /// Bytes of the faults counted in `depth` ([`ReceivedFault::size_bytes`]).
    bytes: AtomicUsize,
    /// Set once the database was found corrupt: from then on the writer spills instead of
    /// writing (here, not in the writer, so a restarted writer keeps spilling).
    corrupt: AtomicBool,
    /// Registered once so that updating it per offer is one atomic store, not a registry lookup.
    /// (It is a no-op handle when no recorder was installed before [`channel`].)
    depth_gauge: metrics::Gauge,
    /// Newest unsaved connection state per cluster. A std mutex: held for a map insert or swap,
    /// never across an await, and readers must not wait on the writer.
    states: Mutex<HashMap<String, ConnectionState>>,
    drops: drops::DropLog,
    /// Woken whenever faults leave the buffer, for readers waiting for room.
    room: Notify,
}

impl Shared {
    fn depth(&self) -> usize {
        self.depth.load(Ordering::Acquire)
    }

    /// `faults` left the buffer (written, or rejected by the database).
    fn release(&self, faults: &[ReceivedFault]) {
        let n = faults.len();
        let bytes: usize = faults.iter().map(ReceivedFault::size_bytes).sum();
        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
        let before = self.depth.fetch_sub(n, Ordering::AcqRel);
        self.depth_gauge.set(before.saturating_sub(n) as f64);
        self.room.notify_waiters();
    }

    /// Whether one more fault would be taken now (by count; by bytes, unless it is large).
    fn has_room(&self) -> bool {
        self.depth.load(Ordering::Acquire) < self.capacity
            && self.bytes.load(Ordering::Acquire) < self.max_bytes
    }

    fn take_states(&self) -> Vec<ConnectionState> {
        let mut map = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut *map).into_values().collect()
    }

    /// Puts back states that could not be saved, unless a newer one arrived meanwhile.
    fn restore_states(&self, states: Vec<ConnectionState>) {
        let mut map = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        for s in states {
            map.entry(s.cluster.clone()).or_insert(s);
        }
    }
}

/// A fault [`IngestSender::try_offer`] did not take (not counted as dropped yet), and why.
#[derive(Debug)]
pub struct Refused {
    pub fault: ReceivedFault,
    pub reason: &'static str,
}

impl Refused {
    /// Boxed: a fault is large, and this is the rare path.
    fn new(fault: ReceivedFault, reason: &'static str) -> Box<Self> {
        Box::new(Self { fault, reason })
    }
}

/// The readers' side of the channel. Cheap to clone: one per cluster supervisor.
#[derive(Clone, Debug)]
pub struct IngestSender {
    tx: mpsc::Sender<ReceivedFault>,
    shared: Arc<Shared>,
    /// `ingest.backpressure_timeout`: the longest [`IngestSender::wait_for_room`] waits.
    backpressure_timeout: Duration,
}

impl IngestSender {
    /// Queues a fault without waiting. When the buffer is full the fault is dropped, counted in
    /// `nightcrier_events_dropped_total{cluster}` and logged (rate-limited); returns false then.
    ///
    /// Texts over their bounds are cut first ([`ReceivedFault::bounded`]); a fault that would
    /// take the buffer over `ingest.buffer_bytes` is dropped the same way (a fault alone in the
    /// buffer is always taken, so a small setting cannot stop ingestion).
    pub fn offer(&self, fault: ReceivedFault) -> bool {
        match self.try_offer(fault) {
            Ok(()) => true,
            Err(refused) => {
                self.shared
                    .drops
                    .record(&refused.fault.cluster, refused.reason);
                false
            }
        }
    }

    /// [`IngestSender::offer`] that gives a fault it cannot take back, uncounted, so that a
    /// reader can wait for room and offer it again instead of dropping it.
    pub fn try_offer(&self, fault: ReceivedFault) -> Result<(), Box<Refused>> {
        let fault = fault.bounded();
        let size = fault.size_bytes();
        let shared = &self.shared;
        let before = shared.depth.fetch_add(1, Ordering::AcqRel);
        if before >= shared.capacity {
            shared.depth.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::new(fault, "ingest buffer full"));
        }
        let bytes_before = shared.bytes.fetch_add(size, Ordering::AcqRel);
        if bytes_before > 0 && bytes_before + size > shared.max_bytes {
            shared.bytes.fetch_sub(size, Ordering::AcqRel);
            shared.depth.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::new(fault, "ingest buffer bytes full"));
        }
        match self.tx.try_send(fault) {
            Ok(()) => {
                shared.depth_gauge.set((before + 1) as f64);
                Ok(())
            }
            // Full cannot happen while `depth` bounds the channel; Closed means the writer's
            // inbox is gone (process shutting down). Either way the fault is not kept.
            Err(e) => {
                shared.bytes.fetch_sub(size, Ordering::AcqRel);
                shared.depth.fetch_sub(1, Ordering::AcqRel);
                let reason = match e {
                    mpsc::error::TrySendError::Full(_) => "ingest buffer full",
                    mpsc::error::TrySendError::Closed(_) => "ingest writer stopped",
                };
                Err(Refused::new(e.into_inner(), reason))
            }
        }
    }

    /// This sender with `ingest.backpressure_timeout` set to `timeout`.
    pub fn with_backpressure_timeout(mut self, timeout: Duration) -> Self {
        self.backpressure_timeout = timeout;
        self
    }

    /// Whether [`IngestSender::offer`] would take one more (not too large) fault now.
    pub fn has_room(&self) -> bool {
        self.shared.has_room()
    }

    /// Waits until the buffer has room; false when the writer freed none for
    /// `ingest.backpressure_timeout` (the database is down or stuck) or is gone. A reader calls
    /// it before reading its next event, so that while it waits the server's sending is slowed
    /// by TCP flow control. Each commit restarts the clock: a writer that is slow but writing
    /// keeps the readers waiting rather than dropping, even when other readers take the room.
    pub async fn wait_for_room(&self) -> bool {
        let mut deadline = tokio::time::Instant::now() + self.backpressure_timeout;
        loop {
            let notified = self.shared.room.notified();
            tokio::pin!(notified);
            // Registered before the check, so a release between the check and the wait wakes it.
            notified.as_mut().enable();
            if self.shared.has_room() {
                return true;
            }
            if self.tx.is_closed() {
                return false;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.shared.has_room();
            }
            deadline = tokio::time::Instant::now() + self.backpressure_timeout;
        }
    }

    /// Counts a fault notification of `cluster` that a reader dropped without parsing it
    /// because the buffer stayed full: the same counter and log line as a drop by `offer`.
    pub fn shed(&self, cluster: &str) {
        self.shared
            .drops
            .record(cluster, "ingest buffer full, dropped unparsed");
    }

    /// Publishes the latest connection state of a cluster; the writer persists the newest one
    /// per cluster (older unsaved ones are superseded, never queued).
    pub fn report_state(&self, state: ConnectionState) {
        let mut map = self
            .shared
            .states
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.insert(state.cluster.clone(), state);
    }

    /// Faults received and not yet written (the buffer depth).
    pub fn depth(&self) -> usize {
        self.shared.depth()
    }

    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// Bytes of the faults received and not yet written.
    pub fn buffered_bytes(&self) -> usize {
        self.shared.bytes.load(Ordering::Acquire)
    }

    /// Faults dropped since start because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.shared.drops.total()
    }
}

/// The writer's side. Cheap to clone so a supervisor can build a fresh [`IngestWriter`] after a
/// panic; the inbox itself (channel end and the batch in hand) survives the panic and is taken
/// by one writer at a time.
#[derive(Clone, Debug)]
pub struct IngestReceiver {
    shared: Arc<Shared>,
    /// The inbox while no writer holds it. A std mutex: only ever held to move it in or out.
    slot: Arc<Mutex<Option<Inbox>>>,
}

impl IngestReceiver {
    /// Takes the inbox for one writer run; `None` while another writer holds it.
    fn lease(&self) -> Option<InboxLease> {
        let inbox = self
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        Some(InboxLease {
            slot: self.slot.clone(),
            inbox: Some(inbox),
        })
    }

    pub fn depth(&self) -> usize {
        self.shared.depth()
    }
}

#[derive(Debug)]
struct Inbox {
    rx: mpsc::Receiver<ReceivedFault>,
    /// The batch being written. It stays here, not in the writer, so that a writer that panics
    /// mid-commit leaves it for its successor instead of losing it.
    held: Vec<ReceivedFault>,
    /// How many writers started with this `held` batch left by a panic; a batch that made two
    /// writers panic is dropped rather than crash-looping ingestion.
    resumed_after_panic: u32,
}

/// Exclusive use of the inbox; gives it back on drop, including while a panic unwinds.
struct InboxLease {
    slot: Arc<Mutex<Option<Inbox>>>,
    inbox: Option<Inbox>,
}

impl std::ops::Deref for InboxLease {
    type Target = Inbox;
    fn deref(&self) -> &Inbox {
        // Only `drop` empties it.
        self.inbox.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl std::ops::DerefMut for InboxLease {
    fn deref_mut(&mut self) -> &mut Inbox {
        self.inbox.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for InboxLease {
    fn drop(&mut self) {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        *slot = self.inbox.take();
    }
}

#[cfg(test)]
mod tests;
