//! Where the supervisor hands things off: faults and connection states leave the `mcp` module
//! only through a [`FaultSink`] (the ingest channel in production, a collector in tests).

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::fault::ReceivedFault;
use crate::incident::ConnectionState;
use crate::ingest::IngestSender;

/// Must never wait: a slow sink would stall the server's fault detection for every client.
pub trait FaultSink: Send + Sync + 'static {
    /// Queues a fault; false when it was dropped (the sink counts and logs that).
    fn offer(&self, fault: ReceivedFault) -> bool;
    /// Publishes the newest connection state of a cluster.
    fn report_state(&self, state: ConnectionState);
}

impl FaultSink for IngestSender {
    fn offer(&self, fault: ReceivedFault) -> bool {
        IngestSender::offer(self, fault)
    }
    fn report_state(&self, state: ConnectionState) {
        IngestSender::report_state(self, state)
    }
}

/// The connection states, defined with the record they go into.
pub use crate::incident::ConnectionPhase as Phase;

/// One cluster's connection figures. Shared between a supervisor and the task that restarts it
/// after a panic, so counts survive the restart.
#[derive(Debug)]
pub struct ClusterStats {
    cluster: String,
    inner: Mutex<StatsInner>,
}

#[derive(Debug)]
struct StatsInner {
    phase: Phase,
    subscription_id: Option<String>,
    last_error: Option<String>,
    last_event_at: Option<DateTime<Utc>>,
    events_received: i64,
    events_malformed: i64,
    reconnects: i64,
    /// Counts changed since the last report.
    dirty: bool,
    last_report: Option<Instant>,
}

/// Event counts are reported at most this often (state changes at once).
const REPORT_EVERY: Duration = Duration::from_secs(1);

impl ClusterStats {
    pub fn new(cluster: impl Into<String>) -> Self {
        Self {
            cluster: cluster.into(),
            inner: Mutex::new(StatsInner {
                phase: Phase::Connecting,
                subscription_id: None,
                last_error: None,
                last_event_at: None,
                events_received: 0,
                events_malformed: 0,
                reconnects: 0,
                dirty: false,
                last_report: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StatsInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state to report now; marks it reported.
    fn report(&self, s: &mut StatsInner) -> ConnectionState {
        s.dirty = false;
        s.last_report = Some(Instant::now());
        self.state_of(s)
    }

    fn state_of(&self, s: &StatsInner) -> ConnectionState {
        ConnectionState {
            cluster: self.cluster.clone(),
            state: s.phase,
            subscription_id: s.subscription_id.clone(),
            last_error: s.last_error.clone(),
            last_event_at: s.last_event_at,
            events_received: s.events_received,
            events_malformed: s.events_malformed,
            reconnects: s.reconnects,
            updated_at: Utc::now(),
        }
    }

    /// Moves to `phase` and returns the state to report.
    pub fn set_phase(
        &self,
        phase: Phase,
        subscription_id: Option<String>,
        error: Option<String>,
    ) -> ConnectionState {
        let mut s = self.lock();
        s.phase = phase;
        s.subscription_id = subscription_id;
        if error.is_some() {
            s.last_error = error;
        }
        if phase == Phase::BackingOff {
            s.reconnects += 1;
        }
        self.report(&mut s)
    }

    /// Counts one event; returns a state to report when the last report is old enough.
    pub fn event(&self, malformed: bool) -> Option<ConnectionState> {
        let mut s = self.lock();
        if malformed {
            s.events_malformed += 1;
        } else {
            s.events_received += 1;
            s.last_event_at = Some(Utc::now());
        }
        s.dirty = true;
        let due = s.last_report.is_none_or(|t| t.elapsed() >= REPORT_EVERY);
        due.then(|| self.report(&mut s))
    }

    /// The state, if counts changed since it was last reported.
    pub fn flush(&self) -> Option<ConnectionState> {
        let mut s = self.lock();
        s.dirty.then(|| self.report(&mut s))
    }

    /// The state as it is, without marking it reported.
    pub fn current(&self) -> ConnectionState {
        self.state_of(&self.lock())
    }
}
