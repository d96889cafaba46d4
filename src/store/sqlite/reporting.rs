//! The reporter's queue on SQLite (see `store::reporting`).

use sqlx::{Row, SqlitePool};
use uuid::Uuid;

use super::rows::{self, INCIDENT_COLUMNS};
use crate::incident::Incident;
use crate::store::{Result, StoreError};

pub(in crate::store) async fn unreported_finished(
    pool: &SqlitePool,
    limit: i64,
) -> Result<Vec<Incident>> {
    let rows = sqlx::query(&format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents \
         WHERE status IN ('succeeded', 'failed', 'timed_out') AND reported_attempt < attempt \
         ORDER BY finished_at, id LIMIT ?"
    ))
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(StoreError::db("reading unreported incidents"))?;
    rows.iter().map(rows::incident).collect()
}

pub(in crate::store) async fn mark_reported(
    pool: &SqlitePool,
    id: Uuid,
    attempt: i32,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE incidents SET reported_attempt = attempt, report_failures = 0 \
         WHERE id = ? AND attempt = ? AND status IN ('succeeded', 'failed', 'timed_out')",
    )
    .bind(id.to_string())
    .bind(attempt)
    .execute(pool)
    .await
    .map_err(StoreError::db("marking an incident reported"))?;
    Ok(done.rows_affected() == 1)
}

pub(in crate::store) async fn record_report_failure(
    pool: &SqlitePool,
    id: Uuid,
    attempt: i32,
) -> Result<i32> {
    let row = sqlx::query(
        "UPDATE incidents SET report_failures = report_failures + 1 \
         WHERE id = ? AND attempt = ? AND reported_attempt < attempt \
         RETURNING report_failures",
    )
    .bind(id.to_string())
    .bind(attempt)
    .fetch_optional(pool)
    .await
    .map_err(StoreError::db("counting a reporting failure"))?;
    match row {
        Some(row) => row
            .try_get("report_failures")
            .map_err(StoreError::db("counting a reporting failure")),
        None => Ok(0),
    }
}
