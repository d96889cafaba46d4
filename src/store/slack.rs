//! The Slack threads of incidents (Slack app mode): one parent message per incident, claimed in
//! the database before it is posted so that restarts and other processes continue the same
//! thread instead of posting a second parent.
//!
//! The store only records; what to post, and when a stale claim may be taken over, is decided
//! by `report::slack_app`.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{time, Result, Store, StoreError};
use crate::incident::{Incident, IncidentStatus};

/// Largest page of [`Store::slack_followups`] and [`Store::slack_unopened`].
pub const MAX_SLACK_PAGE: u32 = 500;
/// Most severities [`Store::slack_unopened`] takes.
pub const MAX_SLACK_SEVERITIES: usize = 32;

/// One incident's thread row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlackThread {
    pub incident_id: Uuid,
    pub channel: String,
    /// The process that claimed the right to post the parent.
    pub claim_owner: String,
    pub claimed_at: DateTime<Utc>,
    /// The parent message's `ts`; `None` while its post is claimed but not confirmed.
    pub ts: Option<String>,
    /// The incident's `occurrences` the thread has told about.
    pub posted_occurrences: i64,
    /// The run (attempt) whose result the thread has told about.
    pub posted_attempt: i32,
    /// The thread has said that the incident resolved.
    pub resolved_posted: bool,
    /// The status the parent shows (as stored; `None` before it was recorded).
    pub posted_status: Option<String>,
}

/// What the thread has told so far; [`Store::record_slack_progress`] only moves it forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SlackProgress {
    pub occurrences: i64,
    pub attempt: i32,
    pub resolved: bool,
    /// The status the parent shows now; `None` leaves the recorded one.
    pub status: Option<IncidentStatus>,
}

fn page(limit: u32) -> Result<i64> {
    if limit == 0 || limit > MAX_SLACK_PAGE {
        return Err(StoreError::InvalidInput(format!(
            "Slack page {limit} must be between 1 and {MAX_SLACK_PAGE}"
        )));
    }
    Ok(i64::from(limit))
}

impl Store {
    pub async fn slack_thread(&self, id: Uuid) -> Result<Option<SlackThread>> {
        on_driver!(self.slack_thread(id))
    }

    /// Claims the parent post of `id` for `owner` in `channel`: `true` when this call created
    /// the thread row (the caller posts), `false` when a row existed (read it) or the incident
    /// does not exist. The parent shows the occurrences of this moment: they count as told.
    pub async fn claim_slack_thread(&self, id: Uuid, channel: &str, owner: &str) -> Result<bool> {
        if channel.is_empty() {
            return Err(StoreError::InvalidInput("empty Slack channel".into()));
        }
        let now = time::now();
        on_portable!(self.claim_slack_thread(id, channel, owner, now))
    }

    /// Takes over a claim whose parent is still unposted and that was made before
    /// `claimed_before`; `true` when `owner` holds it now.
    pub async fn take_over_slack_claim(
        &self,
        id: Uuid,
        owner: &str,
        claimed_before: DateTime<Utc>,
    ) -> Result<bool> {
        let now = time::now();
        on_portable!(self.take_over_slack_claim(id, owner, claimed_before, now))
    }

    /// Records the posted parent's `ts` and the channel ID Slack answered (`chat.update` and
    /// `conversations.history` need the ID, not a name); `false` when `owner` no longer holds
    /// the claim or a `ts` is recorded already (the caller then keeps the recorded one).
    pub async fn set_slack_ts(
        &self,
        id: Uuid,
        owner: &str,
        channel: &str,
        ts: &str,
    ) -> Result<bool> {
        if channel.is_empty() || ts.is_empty() {
            return Err(StoreError::InvalidInput("empty Slack channel or ts".into()));
        }
        on_portable!(self.set_slack_ts(id, owner, channel, ts))
    }

    /// Moves the thread's progress forward (never back).
    pub async fn record_slack_progress(&self, id: Uuid, p: SlackProgress) -> Result<()> {
        on_driver!(self.record_slack_progress(id, p))
    }

    /// Incidents whose posted thread is behind: more occurrences than it told, a resolution it
    /// has not told, or a status its parent does not show; oldest `last_seen` first.
    pub async fn slack_followups(&self, limit: u32) -> Result<Vec<Incident>> {
        let limit = page(limit)?;
        on_driver!(self.slack_followups(limit))
    }

    /// Open (pending or running) incidents of these severities without a thread, or whose
    /// unposted claim was made before `stale_before`; oldest first.
    pub async fn slack_unopened(
        &self,
        severities: &[String],
        stale_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Incident>> {
        let limit = page(limit)?;
        if severities.is_empty() {
            return Ok(Vec::new());
        }
        if severities.len() > MAX_SLACK_SEVERITIES {
            return Err(StoreError::InvalidInput(format!(
                "at most {MAX_SLACK_SEVERITIES} severities"
            )));
        }
        on_driver!(self.slack_unopened(severities, stale_before, limit))
    }
}

/// The `IN (...)` placeholders of `n` values starting at `$first` (PostgreSQL) or `?` (SQLite).
pub(super) fn placeholders(n: usize, first: Option<usize>) -> String {
    (0..n)
        .map(|i| first.map_or_else(|| "?".to_string(), |f| format!("${}", f + i)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_per_backend() {
        assert_eq!(super::placeholders(3, None), "?, ?, ?");
        assert_eq!(super::placeholders(2, Some(3)), "$3, $4");
    }
}
