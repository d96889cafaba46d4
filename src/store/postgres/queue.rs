//! The PostgreSQL queue: claim, lease, fencing and the operator's transitions.
//!
//! Only `claim` makes an incident running, and every claim first takes one transaction-scoped
//! advisory lock: claims from all processes run one at a time and each sees the previous one's
//! commit (READ COMMITTED takes a new snapshot per statement), so the counts it checks are exact.
//! Everything else only lowers the running counts, so it needs no lock.

use chrono::{DateTime, Duration, Utc};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::rows::{self, INCIDENT_COLUMNS};
use super::{notify_pending, with_retry};
use crate::incident::{AgentRun, Incident, IncidentStatus, RunOutcome};
use crate::store::budgets::BudgetPolicy;
use crate::store::rules::{self, RunEnd};
use crate::store::sql;
use crate::store::{time, ClaimLimits, Claimed, RescueCounts, Result, StoreError};

// The advisory lock key of claims ("nightcrier claim"), written out in `CLAIM_BEGIN`:
// 0x6e63_636c_6169_6d00 = 7954310684008344832.

pub(in crate::store) async fn claim(
    pool: &PgPool,
    owner: &str,
    limits: ClaimLimits,
    lease: Duration,
) -> Result<Option<Claimed>> {
    let claimed = with_retry(|| claim_once(pool, owner, limits, lease, None)).await?;
    make_durable(pool, claimed).await
}

/// Returns a claim only once it is durable. The claim committed asynchronously, so a crash of
/// the database host could still lose it; a synchronous commit of a transaction that writes WAL
/// (`txid_current()` gives it an id, hence a commit record) flushes the WAL up to itself, which
/// includes the claim's commit. WAL is one sequence, so this is exact across processes too: a
/// claim decided after seeing another, lost one is itself later in the WAL and lost with it,
/// and its own flush fails, so no agent is started on a decision the crash undid.
async fn make_durable(pool: &PgPool, claimed: Option<Claimed>) -> Result<Option<Claimed>> {
    if claimed.is_some() {
        sqlx::query("SELECT txid_current()")
            .execute(pool)
            .await
            .map_err(StoreError::db("making a claim durable"))?;
    }
    Ok(claimed)
}

/// [`claim`] within the budgets of `policy`, their windows judged as at `now`.
pub(in crate::store) async fn claim_budgeted(
    pool: &PgPool,
    owner: &str,
    limits: ClaimLimits,
    lease: Duration,
    policy: &BudgetPolicy,
    now: DateTime<Utc>,
) -> Result<Option<Claimed>> {
    let claimed =
        with_retry(|| claim_once(pool, owner, limits, lease, Some((policy, now)))).await?;
    make_durable(pool, claimed).await
}

/// Begins the claim transaction and takes the claim lock in one round trip (a
/// simple query of three statements): claims run one at a time across processes, so every
/// round trip inside the lock is paid by every claim of every process.
///
/// The claim commits without waiting for its WAL flush, so the lock is not held through an
/// `fsync` (which made claims as slow as the disk: about one per flush). [`claim`] then waits
/// for durability outside the lock, before the claim is acted upon: see [`make_durable`].
const CLAIM_BEGIN: &str =
    "BEGIN; SET LOCAL synchronous_commit = off; SELECT pg_advisory_xact_lock(7954310684008344832)";

async fn claim_once(
    pool: &PgPool,
    owner: &str,
    limits: ClaimLimits,
    lease: Duration,
    budgets: Option<(&BudgetPolicy, DateTime<Utc>)>,
) -> Result<Option<Claimed>> {
    const CTX: &str = "claiming an incident";
    let mut tx = pool
        .begin_with(CLAIM_BEGIN)
        .await
        .map_err(StoreError::db(CTX))?;
    // Budgets first, under the lock: the holds they write are committed even when nothing is
    // claimed, so a held incident shows why it waits.
    let mut held: Vec<String> = Vec::new();
    if let Some((policy, at)) = budgets {
        let holds = super::budgets::evaluate_and_hold(&mut tx, policy, at).await?;
        if holds.global.is_some() {
            tx.commit().await.map_err(StoreError::db(CTX))?;
            return Ok(None);
        }
        held = holds.clusters.into_iter().map(|(c, _)| c).collect();
    }
    // One statement, taken after the lock (READ COMMITTED: a new snapshot per statement), so
    // the running counts it checks include every claim and completion committed before it.
    let candidate: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM incidents WHERE status = 'pending' \
           AND (SELECT count(*) FROM incidents WHERE status = 'running') < $3 \
           AND cluster NOT IN \
           (SELECT cluster FROM incidents WHERE status = 'running' \
            GROUP BY cluster HAVING count(*) >= $1) \
           AND NOT (cluster = ANY($2)) \
         ORDER BY severity_rank, created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED",
    )
    .bind(i64::from(limits.max_agents_per_cluster))
    .bind(&held)
    .bind(i64::from(limits.max_concurrent_agents))
    .fetch_optional(&mut *tx)
    .await
    .map_err(StoreError::db(CTX))?;
    let Some(candidate) = candidate else {
        tx.commit().await.map_err(StoreError::db(CTX))?;
        return Ok(None);
    };
    // Read the clock only now: every completion this claim saw as committed took its finish time
    // before that, so a run's start never precedes the end of the run it replaced.
    let now = time::now();
    // The lease and the attempt's agent-run row in one statement.
    let row = sqlx::query(&format!(
        "WITH claimed AS (UPDATE incidents SET status = 'running', attempt = attempt + 1, \
           started_at = $1, lease_owner = $2, lease_expires_at = $3, finished_at = NULL, \
           failure_reason = NULL \
           WHERE id = $4 AND status = 'pending' RETURNING {INCIDENT_COLUMNS}), \
         run AS (INSERT INTO agent_runs (incident_id, attempt, worker, started_at) \
           SELECT id, attempt, $2, $1 FROM claimed) \
         SELECT * FROM claimed"
    ))
    .bind(now)
    .bind(owner)
    .bind(now + lease)
    .bind(candidate)
    .fetch_optional(&mut *tx)
    .await
    .map_err(StoreError::db(CTX))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let incident = rows::incident(&row)?;
    tx.commit().await.map_err(StoreError::db(CTX))?;
    Ok(Some(Claimed {
        attempt: incident.attempt,
        incident,
    }))
}

pub(super) async fn finish_run(
    tx: &mut sqlx::PgConnection,
    id: Uuid,
    attempt: i32,
    end: RunEnd<'_>,
    context: &'static str,
) -> Result<()> {
    sqlx::query(sql::FINISH_RUN)
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
    pool: &PgPool,
    id: Uuid,
    attempt: i32,
    outcome: &RunOutcome,
) -> Result<bool> {
    const CTX: &str = "completing an agent run";
    let now = time::now();
    // One statement (atomic on its own, so no BEGIN/COMMIT round trips): the fenced update, the
    // attempt's agent-run row as `finish_run` ends it, and a NOTIFY (a slot is free again:
    // consumers in other processes may claim now, not at their next tick), the last two only
    // when the fence let the update through.
    let (completed, _notified): (i64, i64) = sqlx::query_as(
        "WITH done AS (UPDATE incidents SET status = $1, failure_reason = $2, finished_at = $3, \
           lease_owner = NULL, lease_expires_at = NULL \
           WHERE id = $4 AND attempt = $5 AND status = 'running' RETURNING id), \
         run AS (UPDATE agent_runs SET finished_at = $3, outcome = $1, reason = $2, \
           exit_code = $6 \
           WHERE incident_id IN (SELECT id FROM done) AND attempt = $5 \
           AND finished_at IS NULL), \
         woken AS (SELECT pg_notify($7, '') FROM done) \
         SELECT (SELECT count(*) FROM done), (SELECT count(*) FROM woken)",
    )
    .bind(outcome.status.as_str())
    .bind(&outcome.reason)
    .bind(now)
    .bind(id)
    .bind(attempt)
    .bind(outcome.exit_code)
    .bind(super::listener::CHANNEL)
    .fetch_one(pool)
    .await
    .map_err(StoreError::db(CTX))?;
    Ok(completed > 0)
}

/// Returns the new status, or `None` when the lease was already lost.
pub(in crate::store) async fn requeue(
    pool: &PgPool,
    id: Uuid,
    attempt: i32,
    reason: &str,
    max_attempts: i32,
) -> Result<Option<IncidentStatus>> {
    const CTX: &str = "requeueing an interrupted run";
    let mut tx = pool.begin().await.map_err(StoreError::db(CTX))?;
    let now = time::now();
    let row = sqlx::query(sql::REQUEUE)
        .bind(max_attempts)
        .bind(reason)
        .bind(now)
        .bind(id)
        .bind(attempt)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::db(CTX))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let status = rows::status(row.get("status"))?;
    let end = RunEnd::interrupted(reason, now);
    finish_run(&mut tx, id, attempt, end, CTX).await?;
    if status == IncidentStatus::Pending {
        notify_pending(&mut tx, CTX).await?;
    }
    tx.commit().await.map_err(StoreError::db(CTX))?;
    Ok(Some(status))
}

pub(in crate::store) async fn rescue_expired(
    pool: &PgPool,
    max_attempts: i32,
) -> Result<RescueCounts> {
    const CTX: &str = "rescuing expired leases";
    const REASON: &str = rules::LEASE_EXPIRED;
    let mut tx = pool.begin().await.map_err(StoreError::db(CTX))?;
    let now = time::now();
    let rescued = sqlx::query(sql::RESCUE_EXPIRED)
        .bind(max_attempts)
        .bind(REASON)
        .bind(now)
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::db(CTX))?;
    let mut counts = RescueCounts::default();
    for row in &rescued {
        match rows::status(row.get("status"))? {
            IncidentStatus::Pending => counts.requeued += 1,
            _ => counts.failed += 1,
        }
        let end = RunEnd::interrupted(REASON, now);
        finish_run(&mut tx, row.get("id"), row.get("attempt"), end, CTX).await?;
    }
    if counts.requeued > 0 {
        notify_pending(&mut tx, CTX).await?;
    }
    tx.commit().await.map_err(StoreError::db(CTX))?;
    Ok(counts)
}

pub(in crate::store) async fn running_owned_by(
    pool: &PgPool,
    owner_prefix: &str,
) -> Result<Vec<(Incident, AgentRun)>> {
    // One query per incident: restart reconciliation reads a handful of rows, and this reads
    // more clearly than aliasing every column of a join.
    let rows = sqlx::query(&format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents \
         WHERE status = 'running' AND starts_with(lease_owner, $1) ORDER BY created_at, id"
    ))
    .bind(owner_prefix)
    .fetch_all(pool)
    .await
    .map_err(StoreError::db("reading running incidents"))?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let incident = rows::incident(row)?;
        let run = sqlx::query(sql::RUN_OF_ATTEMPT)
            .bind(incident.id)
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

/// Reads and locks the incident for the rest of the transaction.
/// Rolls `tx` back before its error is returned. A dropped transaction is rolled back only when
/// its connection is next used, so its row locks (`load` takes `FOR UPDATE`) would outlive the
/// call: a claim right after a refused retry skipped the still-locked incident (`SKIP LOCKED`).
async fn release(tx: sqlx::Transaction<'_, sqlx::Postgres>, err: StoreError) -> StoreError {
    // The rollback's own failure changes nothing for the caller: the connection is discarded.
    let _ = tx.rollback().await;
    err
}

async fn load(tx: &mut sqlx::PgConnection, id: Uuid, context: &'static str) -> Result<Incident> {
    let row = sqlx::query(&format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1 FOR UPDATE"
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

pub(in crate::store) async fn retry(pool: &PgPool, id: Uuid) -> Result<Incident> {
    const CTX: &str = "retrying an incident";
    let mut tx = pool.begin().await.map_err(StoreError::db(CTX))?;
    let current = load(&mut tx, id, CTX).await?;
    if let Err(err) = rules::check_retryable(&current) {
        return Err(release(tx, err).await);
    }
    let other: Option<Uuid> = sqlx::query_scalar(sql::OTHER_OPEN)
        .bind(&current.cluster)
        .bind(&current.fault_id)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::db(CTX))?;
    if let Some(other) = other {
        return Err(release(tx, rules::open_elsewhere(id, &other.to_string())).await);
    }
    let row = sqlx::query(&format!(
        "UPDATE incidents SET status = 'pending', attempt_base = attempt, failure_reason = NULL, \
         pending_since = $2, \
         finished_at = NULL, lease_owner = NULL, lease_expires_at = NULL WHERE id = $1 \
         RETURNING {INCIDENT_COLUMNS}"
    ))
    .bind(id)
    .bind(time::now())
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| match &e {
        // Another process opened an incident for this fault since the check above.
        sqlx::Error::Database(d) if d.code().as_deref() == Some("23505") => {
            rules::open_elsewhere(id, "(new)")
        }
        _ => StoreError::db(CTX)(e),
    })?;
    let incident = rows::incident(&row)?;
    notify_pending(&mut tx, CTX).await?;
    tx.commit().await.map_err(StoreError::db(CTX))?;
    Ok(incident)
}

pub(in crate::store) async fn cancel(pool: &PgPool, id: Uuid) -> Result<Incident> {
    const CTX: &str = "cancelling an incident";
    let mut tx = pool.begin().await.map_err(StoreError::db(CTX))?;
    let current = load(&mut tx, id, CTX).await?;
    if let Err(err) = rules::check_cancellable(&current) {
        return Err(release(tx, err).await);
    }
    let now = time::now();
    let row = sqlx::query(&format!(
        "UPDATE incidents SET status = 'cancelled', finished_at = $1, \
         lease_owner = NULL, lease_expires_at = NULL WHERE id = $2 RETURNING {INCIDENT_COLUMNS}"
    ))
    .bind(now)
    .bind(id)
    .fetch_one(&mut *tx)
    .await
    .map_err(StoreError::db(CTX))?;
    if current.status == IncidentStatus::Running {
        let end = RunEnd::stopped(rules::CANCELLED, now);
        finish_run(&mut tx, id, current.attempt, end, CTX).await?;
    }
    let incident = rows::incident(&row)?;
    tx.commit().await.map_err(StoreError::db(CTX))?;
    Ok(incident)
}
