//! Budgets and pending expiry on SQLite (see `store::budgets`). The budgeted claim is one
//! `BEGIN IMMEDIATE` transaction: the windows it reads cannot change before it commits.

use chrono::{DateTime, Duration, Utc};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection, SqlitePool};

use super::begin;
use super::queue::claim_statement;
use super::rows;
use crate::accounting::{day_start, hour_start};
use crate::store::budgets::{evaluate, BudgetPolicy, ExpiryScope, Hold, WindowUsage};
use crate::store::{time, ClaimLimits, Claimed, Result, StoreError};

const CTX: &str = "claiming an incident within budgets";

pub(in crate::store) async fn claim_budgeted(
    pool: &SqlitePool,
    owner: &str,
    limits: ClaimLimits,
    lease: Duration,
    policy: &BudgetPolicy,
    now: DateTime<Utc>,
) -> Result<Option<Claimed>> {
    let mut tx = begin(pool, CTX).await?;
    let usage = window_usage(&mut tx, now).await?;
    let holds = evaluate(policy, &usage, now);
    if let Some(hold) = &holds.global {
        hold_pending(&mut tx, None, hold).await?;
        tx.commit().await.map_err(StoreError::db(CTX))?;
        return Ok(None);
    }
    for (cluster, hold) in &holds.clusters {
        hold_pending(&mut tx, Some(cluster), hold).await?;
    }
    let held: Vec<String> = holds.clusters.into_iter().map(|(c, _)| c).collect();
    release_pending(&mut tx, &held).await?;
    let row = claim_statement(time::now(), owner, limits, lease, &held)
        .build()
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::db(CTX))?;
    tx.commit().await.map_err(StoreError::db(CTX))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let incident = rows::incident(&row)?;
    Ok(Some(Claimed {
        attempt: incident.attempt,
        incident,
    }))
}

/// Runs started this hour and spend of runs started today, per cluster.
async fn window_usage(tx: &mut SqliteConnection, now: DateTime<Utc>) -> Result<Vec<WindowUsage>> {
    let rows = sqlx::query(
        "SELECT i.cluster AS cluster, \
           sum(CASE WHEN r.started_at >= ?1 THEN 1 ELSE 0 END) AS runs, \
           coalesce(sum(r.cost_usd), 0.0) AS spend \
         FROM agent_runs r JOIN incidents i ON i.id = r.incident_id \
         WHERE r.started_at >= ?2 GROUP BY i.cluster",
    )
    .bind(time::to_micros(hour_start(now)))
    .bind(time::to_micros(day_start(now)))
    .fetch_all(&mut *tx)
    .await
    .map_err(StoreError::db(CTX))?;
    rows.iter()
        .map(|row| {
            Ok(WindowUsage {
                cluster: row.try_get("cluster")?,
                runs_this_hour: row.try_get("runs")?,
                spend_today: row.try_get("spend")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(StoreError::db(CTX))
}

/// Marks the pending incidents of `cluster` (all clusters when `None`) with the hold's reason,
/// or ends them `skipped`. Writes only rows whose reason changes.
async fn hold_pending(tx: &mut SqliteConnection, cluster: Option<&str>, hold: &Hold) -> Result<()> {
    let mut qb: QueryBuilder<Sqlite> = if hold.skip {
        let mut qb =
            QueryBuilder::new("UPDATE incidents SET status = 'skipped', failure_reason = ");
        qb.push_bind(&hold.reason)
            .push(", finished_at = ")
            .push_bind(time::to_micros(time::now()))
            .push(" WHERE status = 'pending'");
        qb
    } else {
        let mut qb = QueryBuilder::new("UPDATE incidents SET failure_reason = ");
        qb.push_bind(&hold.reason)
            .push(" WHERE status = 'pending' AND failure_reason IS NOT ")
            .push_bind(&hold.reason);
        qb
    };
    if let Some(cluster) = cluster {
        qb.push(" AND cluster = ").push_bind(cluster);
    }
    qb.build()
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db(CTX))?;
    Ok(())
}

/// Clears the budget reason of pending incidents whose cluster is no longer held.
async fn release_pending(tx: &mut SqliteConnection, held: &[String]) -> Result<()> {
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
        "UPDATE incidents SET failure_reason = NULL \
         WHERE status = 'pending' AND failure_reason IS NOT NULL",
    );
    if !held.is_empty() {
        qb.push(" AND cluster NOT IN (");
        let mut list = qb.separated(", ");
        for c in held {
            list.push_bind(c.as_str());
        }
        qb.push(")");
    }
    qb.build()
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db(CTX))?;
    Ok(())
}

pub(in crate::store) async fn expire_pending(
    pool: &SqlitePool,
    scope: &ExpiryScope<'_>,
) -> Result<u64> {
    let mut qb: QueryBuilder<Sqlite> =
        QueryBuilder::new("UPDATE incidents SET status = 'expired', failure_reason = ");
    qb.push_bind(scope.reason)
        .push(", finished_at = ")
        .push_bind(time::to_micros(time::now()))
        .push(" WHERE status = 'pending' AND coalesce(pending_since, created_at) < ")
        .push_bind(time::to_micros(scope.cutoff));
    match scope.cluster {
        Some(cluster) => {
            qb.push(" AND cluster = ").push_bind(cluster);
        }
        None if !scope.except.is_empty() => {
            qb.push(" AND cluster NOT IN (");
            let mut list = qb.separated(", ");
            for c in scope.except {
                list.push_bind(c.as_str());
            }
            qb.push(")");
        }
        None => {}
    }
    let done = qb
        .build()
        .execute(pool)
        .await
        .map_err(StoreError::db("expiring pending incidents"))?;
    Ok(done.rows_affected())
}
