//! `resolve_open` on SQLite: a source (a resolved alert) reports an open incident's fault over.

use chrono::{DateTime, Utc};
use sqlx::SqlitePool;

use super::begin;
use super::queue::finish_run;
use super::rows::{self, INCIDENT_COLUMNS};
use crate::incident::IncidentStatus;
use crate::store::rules::RunEnd;
use crate::store::{time, Resolution, Resolved, Result, StoreError, RESOLVED_RUN_REASON};

pub(in crate::store) async fn resolve_open(
    pool: &SqlitePool,
    cluster: &str,
    fault_id: &str,
    at: DateTime<Utc>,
    stop_running: bool,
) -> Result<Option<Resolved>> {
    const CTX: &str = "resolving an incident";
    let mut tx = begin(pool, CTX).await?;
    let row = sqlx::query(&format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents \
         WHERE cluster = ? AND fault_id = ? AND status IN ('pending', 'running')"
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
    let id = current.id.to_string();
    let stamp = time::now();
    let (now, at) = (time::to_micros(stamp), time::to_micros(at));
    let resolution = if current.status == IncidentStatus::Running && !stop_running {
        sqlx::query("UPDATE incidents SET resolved_at = COALESCE(resolved_at, ?) WHERE id = ?")
            .bind(at)
            .bind(&id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db(CTX))?;
        Resolution::Noted
    } else {
        sqlx::query(
            "UPDATE incidents SET status = 'resolved', finished_at = ?, \
             resolved_at = COALESCE(resolved_at, ?), failure_reason = NULL, \
             lease_owner = NULL, lease_expires_at = NULL WHERE id = ?",
        )
        .bind(now)
        .bind(at)
        .bind(&id)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db(CTX))?;
        if current.status == IncidentStatus::Running {
            let end = RunEnd::stopped(RESOLVED_RUN_REASON, stamp);
            finish_run(&mut tx, &id, current.attempt, end, CTX).await?;
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
