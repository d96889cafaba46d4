//! Shared health state: what the producer knows about itself, for `/readyz` and `status`.
//!
//! This module owns the few facts other parts publish about their health (today: whether the
//! ingest writer can write) and the readiness verdict built from them and a database ping. It
//! must not decide when something is degraded — the owner of each fact sets it — and reading it
//! never waits on a lock held across I/O.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;

use crate::store::Store;

/// How long `/readyz` waits for the database to answer before calling it unreachable.
pub const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Cheap to clone; every clone sees the same state.
#[derive(Clone, Debug, Default)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    ingest_degraded: AtomicBool,
    /// How many times ingest went degraded since start: lets a reader notice an episode that
    /// ended before it looked.
    degraded_episodes: AtomicU64,
    /// Milliseconds since the Unix epoch; 0 = never.
    degraded_since_ms: AtomicI64,
    last_write_ok_ms: AtomicI64,
    /// The error that started the current episode. A std mutex: held only to copy a string.
    last_error: Mutex<Option<String>>,
}

/// A snapshot of the ingest writer's health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IngestHealth {
    pub degraded: bool,
    pub degraded_since: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_successful_write: Option<DateTime<Utc>>,
    pub degraded_episodes: u64,
}

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks ingest degraded because of `error`. Returns true only on the transition, so the
    /// caller logs once per episode.
    pub fn set_ingest_degraded(&self, error: &str) -> bool {
        if self.inner.ingest_degraded.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.inner
            .degraded_since_ms
            .store(Utc::now().timestamp_millis(), Ordering::Release);
        *self
            .inner
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(error.to_string());
        self.inner.degraded_episodes.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// Records a successful write and clears a degraded state. Returns true when ingest was
    /// degraded until now.
    pub fn record_write_ok(&self) -> bool {
        self.inner
            .last_write_ok_ms
            .store(Utc::now().timestamp_millis(), Ordering::Release);
        if !self.inner.ingest_degraded.swap(false, Ordering::AcqRel) {
            return false;
        }
        self.inner.degraded_since_ms.store(0, Ordering::Release);
        *self
            .inner
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        true
    }

    pub fn is_ingest_degraded(&self) -> bool {
        self.inner.ingest_degraded.load(Ordering::Acquire)
    }

    pub fn ingest(&self) -> IngestHealth {
        IngestHealth {
            degraded: self.is_ingest_degraded(),
            degraded_since: millis_to_time(self.inner.degraded_since_ms.load(Ordering::Acquire)),
            last_error: self
                .inner
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            last_successful_write: millis_to_time(
                self.inner.last_write_ok_ms.load(Ordering::Acquire),
            ),
            degraded_episodes: self.inner.degraded_episodes.load(Ordering::Acquire),
        }
    }
}

fn millis_to_time(ms: i64) -> Option<DateTime<Utc>> {
    if ms == 0 {
        return None;
    }
    Utc.timestamp_millis_opt(ms).single()
}

/// The readiness verdict: ready only when the database answers and ingest is not degraded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    pub ready: bool,
    /// Why not ready, one short sentence each; empty when ready.
    pub reasons: Vec<String>,
}

/// Pings the database (bounded by `ping_timeout`) and reads the ingest state.
pub async fn readiness(health: &Health, store: &Store, ping_timeout: Duration) -> Readiness {
    let mut reasons = Vec::new();
    match tokio::time::timeout(ping_timeout, store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => reasons.push(format!("database unreachable: {e}")),
        Err(_) => reasons.push(format!(
            "database unreachable: no answer within {}",
            humantime::format_duration(ping_timeout)
        )),
    }
    let ingest = health.ingest();
    if ingest.degraded {
        let since = ingest
            .degraded_since
            .map(|t| format!(" since {}", t.to_rfc3339()))
            .unwrap_or_default();
        let error = ingest
            .last_error
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        reasons.push(format!("ingest degraded{since}{error}"));
    }
    Readiness {
        ready: reasons.is_empty(),
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degraded_transitions_are_reported_once_and_counted() {
        let h = Health::new();
        assert!(!h.is_ingest_degraded());
        assert_eq!(h.ingest().last_successful_write, None);

        assert!(h.set_ingest_degraded("connection refused"));
        assert!(!h.set_ingest_degraded("connection refused again"));
        let s = h.ingest();
        assert!(s.degraded);
        assert_eq!(s.last_error.as_deref(), Some("connection refused"));
        assert!(s.degraded_since.is_some());

        assert!(h.clone().record_write_ok());
        assert!(!h.record_write_ok());
        let s = h.ingest();
        assert!(!s.degraded);
        assert_eq!(s.degraded_since, None);
        assert_eq!(s.last_error, None);
        assert_eq!(s.degraded_episodes, 1);
        assert!(s.last_successful_write.is_some());
    }
}
