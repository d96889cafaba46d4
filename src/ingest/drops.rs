//! Counting and rate-limited logging of faults dropped because the buffer was full.
//!
//! Drops happen in bursts of thousands when the database is down for long; one warning per
//! interval with the count keeps stdout readable while the metric keeps the exact figure.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::telemetry::names;

/// At most one "events dropped" line per this interval.
pub(crate) const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);

const NEVER: u64 = u64::MAX;

#[derive(Debug)]
pub(crate) struct DropLog {
    capacity: usize,
    /// Origin of the millisecond clock below (atomics cannot hold an `Instant`).
    base: Instant,
    last_log_ms: AtomicU64,
    /// Drops not yet reported in a log line.
    unlogged: AtomicU64,
    total: AtomicU64,
}

impl DropLog {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            base: Instant::now(),
            last_log_ms: AtomicU64::new(NEVER),
            unlogged: AtomicU64::new(0),
            total: AtomicU64::new(0),
        }
    }

    /// Counts one dropped fault of `cluster` and logs if the interval allows.
    /// Returns how many drops it logged (0 when the interval held the line back).
    pub(crate) fn record(&self, cluster: &str, reason: &'static str) -> u64 {
        metrics::counter!(names::EVENTS_DROPPED, "cluster" => cluster.to_string()).increment(1);
        self.total.fetch_add(1, Ordering::AcqRel);
        self.unlogged.fetch_add(1, Ordering::AcqRel);
        self.log(Some(cluster), reason, false)
    }

    pub(crate) fn total(&self) -> u64 {
        self.total.load(Ordering::Acquire)
    }

    /// Logs drops not yet reported: when `force`, regardless of the interval (shutdown, or the
    /// writer caught up so the burst is over).
    pub(crate) fn flush(&self, force: bool) -> u64 {
        self.log(None, "ingest buffer full", force)
    }

    fn log(&self, cluster: Option<&str>, reason: &'static str, force: bool) -> u64 {
        if self.unlogged.load(Ordering::Acquire) == 0 {
            return 0;
        }
        let now = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(NEVER - 1);
        let last = self.last_log_ms.load(Ordering::Acquire);
        let due = last == NEVER || now.saturating_sub(last) >= DROP_LOG_INTERVAL.as_millis() as u64;
        if !(force || due) {
            return 0;
        }
        // One caller wins the right to log this interval; the others just counted.
        if self
            .last_log_ms
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return 0;
        }
        let dropped = self.unlogged.swap(0, Ordering::AcqRel);
        if dropped == 0 {
            return 0;
        }
        tracing::warn!(
            cluster = cluster.unwrap_or(""),
            dropped,
            dropped_total = self.total(),
            capacity = self.capacity,
            reason,
            "events dropped"
        );
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_drops_gives_one_line_per_interval_with_the_count() {
        let log = DropLog::new(10);
        assert_eq!(
            log.record("a", "full"),
            1,
            "the first drop is logged at once"
        );
        let held_back: u64 = (0..999).map(|_| log.record("a", "full")).sum();
        assert_eq!(held_back, 0, "the rest of the burst waits for the interval");
        assert_eq!(log.flush(false), 0);

        tokio::time::advance(DROP_LOG_INTERVAL).await;
        assert_eq!(log.record("b", "full"), 1_000, "999 held back + this one");
        assert_eq!(log.record("b", "full"), 0);
        assert_eq!(log.flush(true), 1, "a forced flush reports the remainder");
        assert_eq!(log.flush(true), 0, "nothing left");
        assert_eq!(log.total(), 1_002);
    }
}
