//! The SQLite queue: claim, lease, fencing and the operator's transitions.
//!
//! Every writing transaction holds SQLite's single write lock from its first statement
//! (`BEGIN IMMEDIATE`), so the counts a claim reads cannot change before it commits: the limits
//! hold for any number of pools and processes on one file.

use chrono::Duration;
use sqlx::{Row, SqlitePool};
use uuid::Uuid;

use super::begin;
use super::rows::{self, INCIDENT_COLUMNS, RUN_COLUMNS};
use crate::incident::{AgentRun, Incident, IncidentStatus, RunOutcome};
use crate::store::{time, ClaimLimits, Claimed, RescueCounts, Result, StoreError};

pub(in crate::store) async fn claim(
    pool: &SqlitePool,
    owner: &str,
    limits: ClaimLimits,
    lease: Duration,
) -> Result<Option<Claimed>> {
    const CTX: &str = "claiming an incident";
    let mut tx = begin(pool, CTX).await?;
    let now = time::now();
    let row = sqlx::query(&format!(
        "UPDATE incidents SET status = 'running', attempt = attempt + 1, started_at = ?1, \
         lease_owner = ?2, lease_expires_at = ?3, finished_at = NULL, failure_reason = NULL \
         WHERE id = (SELECT id FROM incidents WHERE status = 'pending' AND cluster NOT IN \
             (SELECT cluster FROM incidents WHERE status = 'running' \
              GROUP BY cluster HAVING count(*) >= ?4) \
           AND (SELECT count(*) FROM incidents WHERE status = 'running') < ?5 \
           ORDER BY created_at, id LIMIT 1) \
         RETURNING {INCIDENT_COLUMNS}"
    ))
    .bind(time::to_micros(now))
    .bind(owner)
    .bind(time::to_micros(now + lease))
    .bind(i64::from(limits.max_agents_per_cluster))
    .bind(i64::from(limits.max_concurrent_agents))
    .fetch_optional(&mut *tx)
    .await
    .map_err(StoreError::db(CTX))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let incident = rows::incident(&row)?;
    sqlx::query(
        "INSERT INTO agent_runs (incident_id, attempt, worker, started_at) VALUES (?, ?, ?, ?)",
    )
    .bind(incident.id.to_string())
    .bind(incident.attempt)
    .bind(owner)
    .bind(time::to_micros(now))
    .execute(&mut *tx)
    .await
    .map_err(StoreError::db(CTX))?;
    tx.commit().await.map_err(StoreError::db(CTX))?;
    Ok(Some(Claimed {
        attempt: incident.attempt,
        incident,
    }))
}

pub(in crate::store) async fn heartbeat(
    pool: &SqlitePool,
    id: Uuid,
    attempt: i32,
    lease: Duration,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE incidents SET lease_expires_at = ? \
         WHERE id = ? AND attempt = ? AND status = 'running'",
    )
    .bind(time::to_micros(time::now() + lease))
    .bind(id.to_string())
    .bind(attempt)
    .execute(pool)
    .await
    .map_err(StoreError::db("extending a lease"))?;
    Ok(done.rows_affected() == 1)
}

pub(in crate::store) async fn set_run_pid(
    pool: &SqlitePool,
    id: Uuid,
    attempt: i32,
    pid: i32,
) -> Result<()> {
    let done = sqlx::query("UPDATE agent_runs SET pid = ? WHERE incident_id = ? AND attempt = ?")
        .bind(pid)
        .bind(id.to_string())
        .bind(attempt)
        .execute(pool)
        .await
        .map_err(StoreError::db("recording an agent's pid"))?;
    found(done.rows_affected(), id, attempt)
}

pub(in crate::store) async fn set_run_log_path(
    pool: &SqlitePool,
    id: Uuid,
    attempt: i32,
    path: &str,
) -> Result<()> {
    let done =
        sqlx::query("UPDATE agent_runs SET log_path = ? WHERE incident_id = ? AND attempt = ?")
            .bind(path)
            .bind(id.to_string())
            .bind(attempt)
            .execute(pool)
            .await
            .map_err(StoreError::db("recording an agent's log path"))?;
    found(done.rows_affected(), id, attempt)
}

fn found(rows: u64, id: Uuid, attempt: i32) -> Result<()> {
    if rows == 0 {
        return Err(StoreError::NotFound(format!("{id} (attempt {attempt})")));
    }
    Ok(())
}

/// How an attempt's agent-run row ends.
struct RunEnd<'a> {
    outcome: IncidentStatus,
    reason: Option<&'a str>,
    exit_code: Option<i32>,
    at: i64,
}

/// Ends the attempt's agent-run row.
async fn finish_run(
    tx: &mut sqlx::SqliteConnection,
    id: &str,
    attempt: i32,
    end: RunEnd<'_>,
    context: &'static str,
) -> Result<()> {
    sqlx::query(
        "UPDATE agent_runs SET finished_at = ?, outcome = ?, reason = ?, exit_code = ? \
         WHERE incident_id = ? AND attempt = ? AND finished_at IS NULL",
    )
    .bind(end.at)
    .bind(end.outcome.as_str())
    .bind(end.reason)
    .bind(end.exit_code)
    .bind(id)
    .bind(attempt)
    .execute(tx)
    .await
    .map_err(StoreError::db(context))?;
    Ok(())
}

pub(in crate::store) async fn complete(
    pool: &SqlitePool,
    id: Uuid,
    attempt: i32,
    outcome: &RunOutcome,
) -> Result<bool> {
    const CTX: &str = "completing an agent run";
    let mut tx = begin(pool, CTX).await?;
    let now = time::to_micros(time::now());
    let id_text = id.to_string();
    let done = sqlx::query(
        "UPDATE incidents SET status = ?, failure_reason = ?, finished_at = ?, \
         lease_owner = NULL, lease_expires_at = NULL \
         WHERE id = ? AND attempt = ? AND status = 'running'",
    )
    .bind(outcome.status.as_str())
    .bind(&outcome.reason)
    .bind(now)
    .bind(&id_text)
    .bind(attempt)
    .execute(&mut *tx)
    .await
    .map_err(StoreError::db(CTX))?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    let end = RunEnd {
        outcome: outcome.status,
        reason: outcome.reason.as_deref(),
        exit_code: outcome.exit_code,
        at: now,
    };
    finish_run(&mut tx, &id_text, attempt, end, CTX).await?;
    tx.commit().await.map_err(StoreError::db(CTX))?;
    Ok(true)
}

/// Returns the new status, or `None` when the lease was already lost.
pub(in crate::store) async fn requeue(
    pool: &SqlitePool,
    id: Uuid,
    attempt: i32,
    reason: &str,
    max_attempts: i32,
) -> Result<Option<IncidentStatus>> {
    const CTX: &str = "requeueing an interrupted run";
    let mut tx = begin(pool, CTX).await?;
    let now = time::to_micros(time::now());
    let id_text = id.to_string();
    let row = sqlx::query(
        "UPDATE incidents SET \
           status = CASE WHEN attempt - attempt_base >= ?1 THEN 'failed' ELSE 'pending' END, \
           failure_reason = CASE WHEN attempt - attempt_base >= ?1 THEN ?2 ELSE NULL END, \
           finished_at = CASE WHEN attempt - attempt_base >= ?1 THEN ?3 ELSE NULL END, \
           lease_owner = NULL, lease_expires_at = NULL \
         WHERE id = ?4 AND attempt = ?5 AND status = 'running' RETURNING status",
    )
    .bind(max_attempts)
    .bind(reason)
    .bind(now)
    .bind(&id_text)
    .bind(attempt)
    .fetch_optional(&mut *tx)
    .await
    .map_err(StoreError::db(CTX))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let status = rows::status(row.get("status"))?;
    let end = RunEnd {
        outcome: IncidentStatus::Failed,
        reason: Some(reason),
        exit_code: None,
        at: now,
    };
    finish_run(&mut tx, &id_text, attempt, end, CTX).await?;
    tx.commit().await.map_err(StoreError::db(CTX))?;
    Ok(Some(status))
}

pub(in crate::store) async fn rescue_expired(
    pool: &SqlitePool,
    max_attempts: i32,
) -> Result<RescueCounts> {
    const CTX: &str = "rescuing expired leases";
    const REASON: &str = "lease expired";
    let mut tx = begin(pool, CTX).await?;
    let now = time::to_micros(time::now());
    let rescued = sqlx::query(
        "UPDATE incidents SET \
           status = CASE WHEN attempt - attempt_base >= ?1 THEN 'failed' ELSE 'pending' END, \
           failure_reason = CASE WHEN attempt - attempt_base >= ?1 THEN ?2 ELSE NULL END, \
           finished_at = CASE WHEN attempt - attempt_base >= ?1 THEN ?3 ELSE NULL END, \
           lease_owner = NULL, lease_expires_at = NULL \
         WHERE status = 'running' AND lease_expires_at <= ?3 RETURNING id, attempt, status",
    )
    .bind(max_attempts)
    .bind(REASON)
    .bind(now)
    .fetch_all(&mut *tx)
    .await
    .map_err(StoreError::db(CTX))?;
    let mut counts = RescueCounts::default();
    for row in &rescued {
        let id: String = row.get("id");
        match rows::status(row.get("status"))? {
            IncidentStatus::Pending => counts.requeued += 1,
            _ => counts.failed += 1,
        }
        let end = RunEnd {
            outcome: IncidentStatus::Failed,
            reason: Some(REASON),
            exit_code: None,
            at: now,
        };
        finish_run(&mut tx, &id, row.get("attempt"), end, CTX).await?;
    }
    tx.commit().await.map_err(StoreError::db(CTX))?;
    Ok(counts)
}

pub(in crate::store) async fn running_owned_by(
    pool: &SqlitePool,
    owner_prefix: &str,
) -> Result<Vec<(Incident, AgentRun)>> {
    // One query per incident: restart reconciliation reads a handful of rows, and this reads
    // more clearly than aliasing every column of a join.
    let rows = sqlx::query(&format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents \
         WHERE status = 'running' AND substr(lease_owner, 1, length(?1)) = ?1 \
         ORDER BY created_at, id"
    ))
    .bind(owner_prefix)
    .fetch_all(pool)
    .await
    .map_err(StoreError::db("reading running incidents"))?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let incident = rows::incident(row)?;
        let run = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM agent_runs WHERE incident_id = ? AND attempt = ?"
        ))
        .bind(incident.id.to_string())
        .bind(incident.attempt)
        .fetch_optional(pool)
        .await
        .map_err(StoreError::db("reading running incidents"))?;
        if let Some(run) = run {
            out.push((incident, rows::agent_run(&run)?));
        }
    }
    Ok(out)
}

async fn load(
    tx: &mut sqlx::SqliteConnection,
    id: &str,
    context: &'static str,
) -> Result<Incident> {
    let row = sqlx::query(&format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?"
    ))
    .bind(id)
    .fetch_optional(tx)
    .await
    .map_err(StoreError::db(context))?;
    match row {
        Some(row) => rows::incident(&row),
        None => Err(StoreError::NotFound(id.to_string())),
    }
}

pub(in crate::store) async fn retry(pool: &SqlitePool, id: Uuid) -> Result<Incident> {
    const CTX: &str = "retrying an incident";
    let mut tx = begin(pool, CTX).await?;
    let id_text = id.to_string();
    let current = load(&mut tx, &id_text, CTX).await?;
    if current.status.is_open() {
        return Err(StoreError::Conflict(format!(
            "incident {id} is {}: only finished incidents can be retried",
            current.status
        )));
    }
    let other: Option<String> = sqlx::query_scalar(
        "SELECT id FROM incidents WHERE cluster = ? AND fault_id = ? \
         AND status IN ('pending', 'running') AND id <> ?",
    )
    .bind(&current.cluster)
    .bind(&current.fault_id)
    .bind(&id_text)
    .fetch_optional(&mut *tx)
    .await
    .map_err(StoreError::db(CTX))?;
    if let Some(other) = other {
        return Err(StoreError::Conflict(format!(
            "incident {id} cannot be retried: incident {other} for the same fault is already open"
        )));
    }
    sqlx::query(
        "UPDATE incidents SET status = 'pending', attempt_base = attempt, failure_reason = NULL, \
         finished_at = NULL, lease_owner = NULL, lease_expires_at = NULL WHERE id = ?",
    )
    .bind(&id_text)
    .execute(&mut *tx)
    .await
    .map_err(StoreError::db(CTX))?;
    let incident = load(&mut tx, &id_text, CTX).await?;
    tx.commit().await.map_err(StoreError::db(CTX))?;
    Ok(incident)
}

pub(in crate::store) async fn cancel(pool: &SqlitePool, id: Uuid) -> Result<Incident> {
    const CTX: &str = "cancelling an incident";
    let mut tx = begin(pool, CTX).await?;
    let id_text = id.to_string();
    let current = load(&mut tx, &id_text, CTX).await?;
    if current.status.is_terminal() {
        return Err(StoreError::Conflict(format!(
            "incident {id} is already {}: only pending or running incidents can be cancelled",
            current.status
        )));
    }
    let now = time::to_micros(time::now());
    sqlx::query(
        "UPDATE incidents SET status = 'cancelled', finished_at = ?, \
         lease_owner = NULL, lease_expires_at = NULL WHERE id = ?",
    )
    .bind(now)
    .bind(&id_text)
    .execute(&mut *tx)
    .await
    .map_err(StoreError::db(CTX))?;
    if current.status == IncidentStatus::Running {
        let end = RunEnd {
            outcome: IncidentStatus::Cancelled,
            reason: Some("cancelled"),
            exit_code: None,
            at: now,
        };
        finish_run(&mut tx, &id_text, current.attempt, end, CTX).await?;
    }
    let incident = load(&mut tx, &id_text, CTX).await?;
    tx.commit().await.map_err(StoreError::db(CTX))?;
    Ok(incident)
}
