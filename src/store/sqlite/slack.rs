//! Slack threads on SQLite (see `store::slack`).

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};
use uuid::Uuid;

use super::rows::{self, INCIDENT_COLUMNS};
use crate::incident::Incident;
use crate::store::slack::{placeholders, SlackProgress, SlackThread};
use crate::store::sql;
use crate::store::{time, Result, StoreError};

const CTX: &str = "reading a Slack thread";

fn thread(row: &SqliteRow) -> Result<SlackThread> {
    let id: String = row.try_get("incident_id").map_err(StoreError::db(CTX))?;
    Ok(SlackThread {
        incident_id: Uuid::try_parse(&id)
            .map_err(|e| StoreError::decode(CTX, format!("incident_id {id:?}: {e}")))?,
        channel: row.try_get("channel").map_err(StoreError::db(CTX))?,
        claim_owner: row.try_get("claim_owner").map_err(StoreError::db(CTX))?,
        claimed_at: time::from_micros(row.try_get("claimed_at").map_err(StoreError::db(CTX))?)?,
        ts: row.try_get("ts").map_err(StoreError::db(CTX))?,
        posted_occurrences: row
            .try_get("posted_occurrences")
            .map_err(StoreError::db(CTX))?,
        posted_attempt: row.try_get("posted_attempt").map_err(StoreError::db(CTX))?,
        resolved_posted: row
            .try_get::<i64, _>("resolved_posted")
            .map_err(StoreError::db(CTX))?
            != 0,
        posted_status: row.try_get("posted_status").map_err(StoreError::db(CTX))?,
    })
}

pub(in crate::store) async fn slack_thread(
    pool: &SqlitePool,
    id: Uuid,
) -> Result<Option<SlackThread>> {
    let row = sqlx::query(sql::SLACK_THREAD)
        .bind(id.to_string())
        .fetch_optional(pool)
        .await
        .map_err(StoreError::db(CTX))?;
    row.as_ref().map(thread).transpose()
}

pub(in crate::store) async fn record_slack_progress(
    pool: &SqlitePool,
    id: Uuid,
    p: SlackProgress,
) -> Result<()> {
    sqlx::query(
        "UPDATE slack_threads SET \
         posted_occurrences = CASE WHEN posted_occurrences < ? THEN ? ELSE posted_occurrences END, \
         posted_attempt = CASE WHEN posted_attempt < ? THEN ? ELSE posted_attempt END, \
         resolved_posted = CASE WHEN ? = 1 THEN 1 ELSE resolved_posted END, \
         posted_status = COALESCE(?, posted_status) \
         WHERE incident_id = ?",
    )
    .bind(p.occurrences)
    .bind(p.occurrences)
    .bind(p.attempt)
    .bind(p.attempt)
    .bind(i64::from(p.resolved))
    .bind(p.status.map(|s| s.as_str()))
    .bind(id.to_string())
    .execute(pool)
    .await
    .map_err(StoreError::db("recording Slack progress"))?;
    Ok(())
}

pub(in crate::store) async fn slack_followups(
    pool: &SqlitePool,
    limit: i64,
) -> Result<Vec<Incident>> {
    let rows = sqlx::query(&format!(
        // Driven by the thread rows (joined to incidents by key), not by a scan of every
        // incident: no column name is shared by the two tables.
        "SELECT {INCIDENT_COLUMNS} FROM slack_threads t JOIN incidents i ON i.id = t.incident_id \
         WHERE t.ts IS NOT NULL AND (i.occurrences > t.posted_occurrences OR \
            ((i.resolved_at IS NOT NULL OR i.status = 'resolved') AND t.resolved_posted = 0) OR \
            t.posted_status IS NULL OR t.posted_status <> i.status) \
         ORDER BY i.last_seen, i.id LIMIT ?"
    ))
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(StoreError::db("reading Slack follow-ups"))?;
    rows.iter().map(rows::incident).collect()
}

pub(in crate::store) async fn slack_unopened(
    pool: &SqlitePool,
    severities: &[String],
    stale_before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Incident>> {
    let sql = format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents i \
         WHERE i.status IN ('pending', 'running') AND i.severity IN ({}) AND NOT EXISTS (\
           SELECT 1 FROM slack_threads t WHERE t.incident_id = i.id AND \
           (t.ts IS NOT NULL OR t.claimed_at >= ?)) \
         ORDER BY i.created_at, i.id LIMIT ?",
        placeholders(severities.len(), None)
    );
    let mut q = sqlx::query(&sql);
    for s in severities {
        q = q.bind(s);
    }
    let rows = q
        .bind(time::to_micros(stale_before))
        .bind(limit)
        .fetch_all(pool)
        .await
        .map_err(StoreError::db("reading incidents without a Slack thread"))?;
    rows.iter().map(rows::incident).collect()
}
