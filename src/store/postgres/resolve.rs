//! `resolve_open` on PostgreSQL: a source (a resolved alert) reports an open incident's fault
//! over. The row lock orders it with a concurrent claim: whichever commits first, the other sees
//! the result (a claim finds nothing pending; this finds the incident running).

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::queue::finish_run;
use super::rows::{self, INCIDENT_COLUMNS};
use crate::incident::IncidentStatus;
use crate::store::rules::RunEnd;
use crate::store::{time, Resolution, Resolved, Result, StoreError, RESOLVED_RUN_REASON};

pub(in crate::store) async fn resolve_open(
    pool: &PgPool,
    cluster: &str,
    fault_id: &str,
    at: DateTime<Utc>,
    stop_running: bool,
) -> Result<Option<Resolved>> {
    const CTX: &str = "resolving an incident";
    let mut tx = pool.begin().await.map_err(StoreError::db(CTX))?;
    let row = sqlx::query(&format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents \
         WHERE cluster = $1 AND fault_id = $2 AND status IN ('pending', 'running') FOR UPDATE"
    ))
    .bind(cluster)
    .bind(fault_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(StoreError::db(CTX))?;
    let Some(row) = row else {
        tx.commit().await.map_err(StoreError::db(CTX))?;
        return Ok(None);
    };
    let current = rows::incident(&row)?;
    let (now, at) = (time::now(), time::truncate(at));
    let resolution = if current.status == IncidentStatus::Running && !stop_running {
        sqlx::query("UPDATE incidents SET resolved_at = COALESCE(resolved_at, $1) WHERE id = $2")
            .bind(at)
            .bind(current.id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db(CTX))?;
        Resolution::Noted
    } else {
        sqlx::query(
            "UPDATE incidents SET status = 'resolved', finished_at = $1, \
             resolved_at = COALESCE(resolved_at, $2), failure_reason = NULL, \
             lease_owner = NULL, lease_expires_at = NULL WHERE id = $3",
        )
        .bind(now)
        .bind(at)
        .bind(current.id)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db(CTX))?;
        if current.status == IncidentStatus::Running {
            let end = RunEnd::stopped(RESOLVED_RUN_REASON, now);
            finish_run(&mut tx, current.id, current.attempt, end, CTX).await?;
            Resolution::Stopped
        } else {
            Resolution::Ended
        }
    };
    tx.commit().await.map_err(StoreError::db(CTX))?;
    Ok(Some(Resolved {
        incident_id: current.id,
        resolution,
    }))
}
