//! The reporter's queue: finished runs whose result has not been reported yet.
//!
//! Kept apart from the agent queue: reporting never changes an incident's status, only the two
//! reporting columns (`reported_attempt`, `report_failures`), fenced by `attempt` so that a retry
//! that started meanwhile is not marked reported by the previous attempt's reporter.

use uuid::Uuid;

use super::{Result, Store, StoreError};
use crate::incident::Incident;

/// Largest page of [`Store::unreported_finished`].
pub const MAX_UNREPORTED_LIMIT: u32 = 1_000;

impl Store {
    /// Incidents whose latest run finished (succeeded, failed, timed_out) and is not reported,
    /// in finish order (oldest first), at most `limit`. Cancelled and skipped incidents had no
    /// result to report and never appear.
    pub async fn unreported_finished(&self, limit: u32) -> Result<Vec<Incident>> {
        if limit == 0 || limit > MAX_UNREPORTED_LIMIT {
            return Err(StoreError::InvalidInput(format!(
                "unreported limit {limit} must be between 1 and {MAX_UNREPORTED_LIMIT}"
            )));
        }
        on_portable!(self.unreported_finished(i64::from(limit)))
    }

    /// Marks the run `attempt` of `id` reported. `Ok(false)` when the incident has moved on (a
    /// newer attempt) or does not exist; marking twice is harmless.
    pub async fn mark_reported(&self, id: Uuid, attempt: i32) -> Result<bool> {
        on_portable!(self.mark_reported(id, attempt))
    }

    /// Counts one failed reporting try of run `attempt` and returns the failures so far (0 when
    /// the incident has moved on to another attempt).
    pub async fn record_report_failure(&self, id: Uuid, attempt: i32) -> Result<i32> {
        on_portable!(self.record_report_failure(id, attempt))
    }
}
