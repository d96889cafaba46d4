//! The queue's rules that do not depend on the SQL dialect, written once for both drivers:
//! which transitions an operator may ask for (and the conflict each refusal is), how an agent
//! run ends when it does not end by itself, and what a fenced write that found no row means.
//!
//! The drivers call these inside their transactions, so the check and the write stay atomic.
//! This module must not hold SQL: the statements that carry out a rule (the fenced `UPDATE`s,
//! the attempt budget's `CASE`) are in [`super::sql`].

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Result, StoreError};
use crate::incident::{Incident, IncidentStatus};

/// The reason recorded when the rescuer takes back an attempt whose lease ran out.
pub(super) const LEASE_EXPIRED: &str = "lease expired";

/// The reason recorded on the run of an incident the operator cancelled while it ran.
pub(super) const CANCELLED: &str = "cancelled";

/// How an attempt's agent-run row ends when the incident leaves `running` other than by
/// [`super::Store::complete`] (requeue, rescue, cancel, a resolved alert).
#[derive(Debug, Clone, Copy)]
pub(super) struct RunEnd<'a> {
    pub outcome: IncidentStatus,
    pub reason: Option<&'a str>,
    pub exit_code: Option<i32>,
    pub at: DateTime<Utc>,
}

impl<'a> RunEnd<'a> {
    /// The run was taken away from its agent (shutdown, lost lease): it failed with `reason`,
    /// whether or not the incident gets another attempt.
    pub fn interrupted(reason: &'a str, at: DateTime<Utc>) -> Self {
        RunEnd {
            outcome: IncidentStatus::Failed,
            reason: Some(reason),
            exit_code: None,
            at,
        }
    }

    /// The run was stopped on purpose (`incidents cancel`, a resolved alert) with `reason`.
    pub fn stopped(reason: &'a str, at: DateTime<Utc>) -> Self {
        RunEnd {
            outcome: IncidentStatus::Cancelled,
            reason: Some(reason),
            exit_code: None,
            at,
        }
    }
}

/// Only finished incidents can be retried.
pub(super) fn check_retryable(current: &Incident) -> Result<()> {
    if current.status.is_open() {
        return Err(StoreError::Conflict(format!(
            "incident {} is {}: only finished incidents can be retried",
            current.id, current.status
        )));
    }
    Ok(())
}

/// A retry would open a second incident of the same fault: `other` (an id, or "(new)" when the
/// database's unique index caught one opened meanwhile) is open already.
pub(super) fn open_elsewhere(id: Uuid, other: &str) -> StoreError {
    StoreError::Conflict(format!(
        "incident {id} cannot be retried: incident {other} for the same fault is already open"
    ))
}

/// Only pending or running incidents can be cancelled.
pub(super) fn check_cancellable(current: &Incident) -> Result<()> {
    if current.status.is_terminal() {
        return Err(StoreError::Conflict(format!(
            "incident {} is already {}: only pending or running incidents can be cancelled",
            current.id, current.status
        )));
    }
    Ok(())
}

/// A write to an attempt's agent-run row that found no row: the attempt never started.
pub(super) fn run_row_found(rows: u64, id: Uuid, attempt: i32) -> Result<()> {
    if rows == 0 {
        return Err(StoreError::NotFound(format!("{id} (attempt {attempt})")));
    }
    Ok(())
}
