//! Incidents, agent runs and connection state: the records the producer and the consumer share
//! through the store.
//!
//! This module owns the vocabulary (statuses, outcomes) and its string forms, which are part of
//! the database schema and of the JSON the CLI prints. It must not do I/O.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where an incident is in its life. See ARCHITECTURE.md for the transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
    Skipped,
    /// The source reported the fault over (a resolved alert) before an agent ran.
    Resolved,
    /// Pending longer than the configured TTL: old news, never investigated.
    Expired,
}

impl IncidentStatus {
    pub const ALL: [IncidentStatus; 9] = [
        Self::Pending,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::TimedOut,
        Self::Cancelled,
        Self::Skipped,
        Self::Resolved,
        Self::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Cancelled => "cancelled",
            Self::Skipped => "skipped",
            Self::Resolved => "resolved",
            Self::Expired => "expired",
        }
    }

    /// Pending or running: new occurrences of the same fault attach to it.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Pending | Self::Running)
    }

    pub fn is_terminal(self) -> bool {
        !self.is_open()
    }
}

impl fmt::Display for IncidentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown incident status {0:?} (expected one of pending, running, succeeded, failed, timed_out, cancelled, skipped, resolved, expired)")]
pub struct UnknownStatus(pub String);

impl FromStr for IncidentStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_string()))
    }
}

/// One incident: a fault (cluster + faultId) that nightcrier decided to triage once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: Uuid,
    pub cluster: String,
    pub fault_id: String,
    pub fault_type: String,
    pub severity: String,
    pub namespace: Option<String>,
    pub resource_kind: String,
    pub resource_name: String,
    pub resource_uid: String,
    /// The `context` text of the fault that opened the incident.
    pub context: String,
    pub status: IncidentStatus,
    pub failure_reason: Option<String>,
    /// Fault notifications attached so far (at least 1).
    pub occurrences: i64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Number of the latest claim (0 before the first). Fences every transition out of running.
    pub attempt: i32,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// When the source reported the fault over (a resolved alert), if it did.
    #[serde(default)]
    pub resolved_at: Option<DateTime<Utc>>,
}

/// One stored fault notification, as received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultOccurrence {
    pub id: i64,
    pub incident_id: Uuid,
    pub cluster: String,
    pub fault_id: String,
    pub fault_type: String,
    pub severity: String,
    pub namespace: Option<String>,
    pub resource_kind: String,
    pub resource_name: String,
    pub resource_uid: String,
    pub context: String,
    /// The server's timestamp as sent.
    pub server_timestamp: String,
    pub received_at: DateTime<Utc>,
    pub raw: serde_json::Value,
}

/// How one agent run ended, as the consumer reports it to the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOutcome {
    pub status: RunStatus,
    pub reason: Option<String>,
    pub exit_code: Option<i32>,
}

/// How an agent run can end by itself, and so the statuses [`crate::store::Store::complete`]
/// can give its incident. (A run taken away from its agent ends through
/// [`crate::store::Store::requeue`], the rescuer or a cancel instead.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Succeeded,
    Failed,
    TimedOut,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        IncidentStatus::from(self).as_str()
    }
}

impl From<RunStatus> for IncidentStatus {
    fn from(status: RunStatus) -> Self {
        match status {
            RunStatus::Succeeded => IncidentStatus::Succeeded,
            RunStatus::Failed => IncidentStatus::Failed,
            RunStatus::TimedOut => IncidentStatus::TimedOut,
        }
    }
}

/// A run's status compares equal to the incident status it ends in.
impl PartialEq<IncidentStatus> for RunStatus {
    fn eq(&self, other: &IncidentStatus) -> bool {
        IncidentStatus::from(*self) == *other
    }
}

/// An incident status no agent run can end with (pending, running, cancelled...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an agent run cannot end as {0}: expected succeeded, failed or timed_out")]
pub struct NotARunStatus(pub IncidentStatus);

impl TryFrom<IncidentStatus> for RunStatus {
    type Error = NotARunStatus;

    fn try_from(status: IncidentStatus) -> Result<Self, NotARunStatus> {
        match status {
            IncidentStatus::Succeeded => Ok(RunStatus::Succeeded),
            IncidentStatus::Failed => Ok(RunStatus::Failed),
            IncidentStatus::TimedOut => Ok(RunStatus::TimedOut),
            other => Err(NotARunStatus(other)),
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One attempt at running the agent for an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRun {
    pub incident_id: Uuid,
    pub attempt: i32,
    pub worker: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Process id of the agent (its process-group id too), once started.
    pub pid: Option<i32>,
    pub exit_code: Option<i32>,
    /// Final status of this attempt, `None` while it runs.
    pub outcome: Option<IncidentStatus>,
    pub reason: Option<String>,
    pub log_path: Option<String>,
    /// Tokens, turns and cost as the agent reported them; `None` until the run is accounted.
    #[serde(default)]
    pub usage: Option<crate::accounting::RunUsage>,
}

/// The producer's view of one cluster's MCP connection, for `nightcrier status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionState {
    pub cluster: String,
    pub state: ConnectionPhase,
    pub subscription_id: Option<String>,
    pub last_error: Option<String>,
    pub last_event_at: Option<DateTime<Utc>>,
    pub events_received: i64,
    pub events_malformed: i64,
    pub reconnects: i64,
    pub updated_at: DateTime<Utc>,
}

/// Where one cluster's MCP session is. The stored and printed spelling (`as_str`, serde) is
/// snake_case and part of the schema (`connection_states.state`) and of `status --json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionPhase {
    /// Opening a session and subscribing (also before the first attempt).
    Connecting,
    /// Subscribed: faults arrive.
    Subscribed,
    /// The session failed; waiting before a fresh one.
    BackingOff,
    /// Stopped on purpose (shutdown, or the cluster's lease went to another instance).
    Stopped,
}

impl ConnectionPhase {
    pub const ALL: [ConnectionPhase; 4] = [
        Self::Connecting,
        Self::Subscribed,
        Self::BackingOff,
        Self::Stopped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Subscribed => "subscribed",
            Self::BackingOff => "backing_off",
            Self::Stopped => "stopped",
        }
    }
}

impl fmt::Display for ConnectionPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with the stored spelling (`"subscribed"`), so checks read like the schema.
impl PartialEq<&str> for ConnectionPhase {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown connection state {0:?} (expected one of connecting, subscribed, backing_off, stopped)"
)]
pub struct UnknownConnectionPhase(pub String);

impl FromStr for ConnectionPhase {
    type Err = UnknownConnectionPhase;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownConnectionPhase(s.to_string()))
    }
}

/// Hex digits in an incident's short id ([`short_id`]).
pub const SHORT_ID_LEN: usize = 10;

/// The short form of an incident id that people read and type: its last 10 hex digits.
///
/// UUID v7 ids begin with their creation time, so incidents of the same minute share their
/// first characters; the tail is random (`rand_b`). 40 random bits are unique in practice: two
/// of 100,000 incidents share a tail with a chance of about 0.5%, and the store then reports
/// the short id as ambiguous. The one place that formats it: pages, CLI, logs and Slack call
/// this; the store resolves it ([`crate::store::Store::get`]).
pub fn short_id(id: Uuid) -> String {
    let hex = id.simple().to_string();
    hex[hex.len() - SHORT_ID_LEN..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_strings_round_trip() {
        for st in IncidentStatus::ALL {
            assert_eq!(st.as_str().parse::<IncidentStatus>(), Ok(st));
            assert_eq!(
                serde_json::to_value(st).ok(),
                Some(serde_json::Value::String(st.as_str().into()))
            );
        }
        let err = "done".parse::<IncidentStatus>().unwrap_err();
        assert!(err.to_string().contains("\"done\""));
    }

    #[test]
    fn short_id_is_the_random_tail() {
        let id = Uuid::parse_str("0192f0c4-6a4e-7c3e-8b1a-2f4d5e6a7b8c").unwrap();
        assert_eq!(short_id(id), "4d5e6a7b8c");
        assert!(id.to_string().ends_with(&short_id(id)));
    }

    #[test]
    fn connection_phases_round_trip_through_their_stored_spelling() {
        for p in ConnectionPhase::ALL {
            assert_eq!(p.as_str().parse::<ConnectionPhase>(), Ok(p));
            assert_eq!(
                serde_json::to_value(p).unwrap(),
                serde_json::Value::String(p.to_string())
            );
        }
        assert_eq!(ConnectionPhase::BackingOff.as_str(), "backing_off");
        assert!("backing off".parse::<ConnectionPhase>().is_err());
    }

    #[test]
    fn run_status_refuses_incident_only_statuses() {
        for status in [
            IncidentStatus::Succeeded,
            IncidentStatus::Failed,
            IncidentStatus::TimedOut,
        ] {
            let run = RunStatus::try_from(status).unwrap();
            assert_eq!(IncidentStatus::from(run), status);
            assert_eq!(run.as_str(), status.as_str());
        }
        let err = RunStatus::try_from(IncidentStatus::Pending).unwrap_err();
        assert!(err.to_string().contains("pending"), "{err}");
        assert!(RunStatus::try_from(IncidentStatus::Cancelled).is_err());
    }
}
