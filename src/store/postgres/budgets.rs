//! Budgets and pending expiry on PostgreSQL (see `store::budgets`). The budget check runs
//! inside the claim's transaction, after its advisory lock (see `queue::claim_budgeted`).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Row};

use crate::accounting::{day_start, hour_start};
use crate::store::budgets::{evaluate, BudgetPolicy, ExpiryScope, Hold, Holds, WindowUsage};
use crate::store::{time, Result, StoreError};

const CTX: &str = "claiming an incident within budgets";

/// Reads the windows, applies the holds (reasons, or `skipped`) and clears the reasons of
/// clusters no longer held. The caller claims outside the held clusters.
pub(super) async fn evaluate_and_hold(
    tx: &mut PgConnection,
    policy: &BudgetPolicy,
    now: DateTime<Utc>,
) -> Result<Holds> {
    let rows = sqlx::query(
        "SELECT i.cluster AS cluster, \
           count(*) FILTER (WHERE r.started_at >= $1) AS runs, \
           coalesce(sum(r.cost_usd), 0.0)::DOUBLE PRECISION AS spend \
         FROM agent_runs r JOIN incidents i ON i.id = r.incident_id \
         WHERE r.started_at >= $2 GROUP BY i.cluster",
    )
    .bind(hour_start(now))
    .bind(day_start(now))
    .fetch_all(&mut *tx)
    .await
    .map_err(StoreError::db(CTX))?;
    let usage = rows
        .iter()
        .map(|row| {
            Ok(WindowUsage {
                cluster: row.try_get("cluster")?,
                runs_this_hour: row.try_get("runs")?,
                spend_today: row.try_get("spend")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(StoreError::db(CTX))?;
    let holds = evaluate(policy, &usage, now);
    if let Some(hold) = &holds.global {
        hold_pending(tx, None, hold).await?;
        return Ok(holds);
    }
    for (cluster, hold) in &holds.clusters {
        hold_pending(tx, Some(cluster), hold).await?;
    }
    let held: Vec<&str> = holds.clusters.iter().map(|(c, _)| c.as_str()).collect();
    sqlx::query(
        "UPDATE incidents SET failure_reason = NULL \
         WHERE status = 'pending' AND failure_reason IS NOT NULL AND NOT (cluster = ANY($1))",
    )
    .bind(&held)
    .execute(&mut *tx)
    .await
    .map_err(StoreError::db(CTX))?;
    Ok(holds)
}

async fn hold_pending(tx: &mut PgConnection, cluster: Option<&str>, hold: &Hold) -> Result<()> {
    let done = if hold.skip {
        sqlx::query(
            "UPDATE incidents SET status = 'skipped', failure_reason = $1, finished_at = $3 \
             WHERE status = 'pending' AND ($2::TEXT IS NULL OR cluster = $2)",
        )
        .bind(&hold.reason)
        .bind(cluster)
        .bind(time::now())
        .execute(&mut *tx)
        .await
    } else {
        sqlx::query(
            "UPDATE incidents SET failure_reason = $1 \
             WHERE status = 'pending' AND failure_reason IS DISTINCT FROM $1 \
               AND ($2::TEXT IS NULL OR cluster = $2)",
        )
        .bind(&hold.reason)
        .bind(cluster)
        .execute(&mut *tx)
        .await
    };
    done.map_err(StoreError::db(CTX))?;
    Ok(())
}

pub(in crate::store) async fn expire_pending(
    pool: &PgPool,
    scope: &ExpiryScope<'_>,
) -> Result<u64> {
    let done = sqlx::query(
        "UPDATE incidents SET status = 'expired', failure_reason = $1, finished_at = $2 \
         WHERE status = 'pending' AND coalesce(pending_since, created_at) < $3 \
           AND ($4::TEXT IS NULL OR cluster = $4) AND NOT (cluster = ANY($5))",
    )
    .bind(scope.reason)
    .bind(time::now())
    .bind(scope.cutoff)
    .bind(scope.cluster)
    .bind(if scope.cluster.is_some() {
        &[][..]
    } else {
        scope.except
    })
    .execute(pool)
    .await
    .map_err(StoreError::db("expiring pending incidents"))?;
    Ok(done.rows_affected())
}
