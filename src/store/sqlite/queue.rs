//! The SQLite queue: claim, lease, fencing and the operator's transitions.
//!
//! Every writing transaction holds SQLite's single write lock from its first statement
//! (`BEGIN IMMEDIATE`, or a single writing statement), so the counts a claim reads cannot change
//! before it commits: the limits hold for any number of pools and processes on one file.

use chrono::{DateTime, Duration, Utc};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use uuid::Uuid;

use super::begin;
use super::rows::{self, INCIDENT_COLUMNS};
use crate::incident::{AgentRun, Incident, IncidentStatus, RunOutcome};
use crate::store::rules::{self, RunEnd};
use crate::store::sql;
use crate::store::{time, ClaimLimits, Claimed, RescueCounts, Result, StoreError};

/// One autocommit statement. For a writing statement SQLite takes the write lock before it
/// reads, so the running counts cannot change before it commits (as with `BEGIN IMMEDIATE`), and
/// the `agent_run_opens_on_claim` trigger (migration 0003) opens the run row in the same
/// statement. The clock is read before the lock is granted, so `started_at` is raised to the
/// latest end already recorded: a claim that waited for the lock while another run finished
/// must not appear to start before that run ended (the limits are checked from these times).
pub(in crate::store) async fn claim(
    pool: &SqlitePool,
    owner: &str,
    limits: ClaimLimits,
    lease: Duration,
) -> Result<Option<Claimed>> {
    let now = time::now();
    let row = claim_statement(now, owner, limits, lease, &[])
        .build()
        .fetch_optional(pool)
        .await
        .map_err(StoreError::db("claiming an incident"))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let incident = rows::incident(&row)?;
    Ok(Some(Claimed {
        attempt: incident.attempt,
        incident,
    }))
}

/// The claim: the most severe, then oldest, pending incident of a cluster not in `held` whose
/// cluster runs fewer than the per-cluster limit, while fewer than the global limit run.
pub(super) fn claim_statement<'a>(
    now: DateTime<Utc>,
    owner: &'a str,
    limits: ClaimLimits,
    lease: Duration,
    held: &'a [String],
) -> QueryBuilder<'a, Sqlite> {
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
        "UPDATE incidents SET status = 'running', attempt = attempt + 1, started_at = max(",
    );
    qb.push_bind(time::to_micros(now))
        .push(
            ", coalesce((SELECT max(finished_at) FROM incidents WHERE finished_at IS NOT NULL), \
             0)), lease_owner = ",
        )
        .push_bind(owner)
        .push(", lease_expires_at = ")
        .push_bind(time::to_micros(now + lease))
        .push(
            ", finished_at = NULL, failure_reason = NULL \
             WHERE id = (SELECT id FROM incidents WHERE status = 'pending' AND cluster NOT IN \
             (SELECT cluster FROM incidents WHERE status = 'running' \
              GROUP BY cluster HAVING count(*) >= ",
        )
        .push_bind(i64::from(limits.max_agents_per_cluster))
        .push(")");
    if !held.is_empty() {
        qb.push(" AND cluster NOT IN (");
        let mut list = qb.separated(", ");
        for cluster in held {
            list.push_bind(cluster.as_str());
        }
        qb.push(")");
    }
    qb.push(" AND (SELECT count(*) FROM incidents WHERE status = 'running') < ")
        .push_bind(i64::from(limits.max_concurrent_agents))
        .push(" ORDER BY severity_rank, created_at, id LIMIT 1) RETURNING ")
        .push(INCIDENT_COLUMNS);
    qb
}

/// Ends the attempt's agent-run row.
pub(super) async fn finish_run(
    tx: &mut sqlx::SqliteConnection,
    id: &str,
    attempt: i32,
    end: RunEnd<'_>,
    context: &'static str,
) -> Result<()> {
    sqlx::query(sql::FINISH_RUN)
        .bind(time::to_micros(end.at))
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

/// One autocommit statement: it finishes the attempt's run row, fenced on the incident still
/// running that attempt, and the `incident_finishes_with_its_run` trigger (migration 0003)
/// finishes the incident in the same statement. The end time is read before the write lock is
/// granted, which is still after the agent ended: it cannot overlap a later run.
pub(in crate::store) async fn complete(
    pool: &SqlitePool,
    id: Uuid,
    attempt: i32,
    outcome: &RunOutcome,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE agent_runs SET finished_at = ?1, outcome = ?2, reason = ?3, exit_code = ?4 \
         WHERE incident_id = ?5 AND attempt = ?6 AND finished_at IS NULL \
           AND EXISTS (SELECT 1 FROM incidents \
                       WHERE id = ?5 AND attempt = ?6 AND status = 'running')",
    )
    .bind(time::to_micros(time::now()))
    .bind(outcome.status.as_str())
    .bind(&outcome.reason)
    .bind(outcome.exit_code)
    .bind(id.to_string())
    .bind(attempt)
    .execute(pool)
    .await
    .map_err(StoreError::db("completing an agent run"))?;
    Ok(done.rows_affected() == 1)
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
    let at = time::now();
    let now = time::to_micros(at);
    let id_text = id.to_string();
    let row = sqlx::query(sql::REQUEUE)
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
    let end = RunEnd::interrupted(reason, at);
    finish_run(&mut tx, &id_text, attempt, end, CTX).await?;
    tx.commit().await.map_err(StoreError::db(CTX))?;
    Ok(Some(status))
}

pub(in crate::store) async fn rescue_expired(
    pool: &SqlitePool,
    max_attempts: i32,
) -> Result<RescueCounts> {
    const CTX: &str = "rescuing expired leases";
    const REASON: &str = rules::LEASE_EXPIRED;
    let mut tx = begin(pool, CTX).await?;
    let at = time::now();
    let now = time::to_micros(at);
    let rescued = sqlx::query(sql::RESCUE_EXPIRED)
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
        let end = RunEnd::interrupted(REASON, at);
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
        let run = sqlx::query(sql::RUN_OF_ATTEMPT)
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
    let row = sqlx::query(sql::INCIDENT_BY_ID)
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
    rules::check_retryable(&current)?;
    let other: Option<String> = sqlx::query_scalar(sql::OTHER_OPEN)
        .bind(&current.cluster)
        .bind(&current.fault_id)
        .bind(&id_text)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::db(CTX))?;
    if let Some(other) = other {
        return Err(rules::open_elsewhere(id, &other));
    }
    sqlx::query(
        "UPDATE incidents SET status = 'pending', attempt_base = attempt, failure_reason = NULL, \
         pending_since = ?, \
         finished_at = NULL, lease_owner = NULL, lease_expires_at = NULL WHERE id = ?",
    )
    .bind(time::to_micros(time::now()))
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
    rules::check_cancellable(&current)?;
    let at = time::now();
    let now = time::to_micros(at);
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
        let end = RunEnd::stopped(rules::CANCELLED, at);
        finish_run(&mut tx, &id_text, current.attempt, end, CTX).await?;
    }
    let incident = load(&mut tx, &id_text, CTX).await?;
    tx.commit().await.map_err(StoreError::db(CTX))?;
    Ok(incident)
}
