//! The rescuer: returns incidents whose lease expired (their worker died) to `pending`, or fails
//! them once their attempts are used up.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::store::{RescueCounts, Store, StoreError};
use crate::telemetry::RateLimited;

/// Database errors are logged at most this often; the loop keeps going regardless.
const WARN_EVERY: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct Rescuer {
    store: Store,
    interval: Duration,
    max_attempts: u32,
}

impl Rescuer {
    pub fn new(store: Store, interval: Duration, max_attempts: u32) -> Self {
        Self {
            store,
            // A zero interval would spin; a millisecond is already far below any sane setting.
            interval: interval.max(Duration::from_millis(1)),
            max_attempts,
        }
    }

    /// One pass; logs only when it moved something.
    pub async fn run_once(&self) -> Result<RescueCounts, StoreError> {
        let counts = self.store.rescue_expired(self.max_attempts).await?;
        // Pending incidents past their TTL (`dedup.pending_ttl`) are old news: expire them here,
        // with the other time-based maintenance.
        let expired = self.store.expire_pending_at(chrono::Utc::now()).await?;
        if expired > 0 {
            info!(
                expired,
                "expired pending incidents older than their pending TTL"
            );
        }
        if counts.requeued > 0 || counts.failed > 0 {
            info!(
                requeued = counts.requeued,
                failed = counts.failed,
                "rescued incidents with expired leases"
            );
        }
        Ok(counts)
    }

    /// A pass every `interval` until `stop` fires.
    pub async fn run(self, stop: CancellationToken) {
        let mut warn_limit = RateLimited::new(WARN_EVERY);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.interval) => {}
            }
            if let Err(e) = self.run_once().await {
                if let Some(suppressed) = warn_limit.check() {
                    warn!(error = %e, suppressed, "rescuer pass failed; will retry");
                }
            }
        }
    }
}
