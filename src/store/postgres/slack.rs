//! Slack threads on PostgreSQL (see `store::slack`).

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::rows::{self, INCIDENT_COLUMNS};
use crate::incident::Incident;
use crate::store::slack::{placeholders, SlackProgress, SlackThread};
use crate::store::sql;
use crate::store::{Result, StoreError};

const CTX: &str = "reading a Slack thread";

fn thread(row: &PgRow) -> Result<SlackThread> {
    Ok(SlackThread {
        incident_id: row.try_get("incident_id").map_err(StoreError::db(CTX))?,
        channel: row.try_get("channel").map_err(StoreError::db(CTX))?,
        claim_owner: row.try_get("claim_owner").map_err(StoreError::db(CTX))?,
        claimed_at: row.try_get("claimed_at").map_err(StoreError::db(CTX))?,
        ts: row.try_get("ts").map_err(StoreError::db(CTX))?,
        posted_occurrences: row
            .try_get("posted_occurrences")
            .map_err(StoreError::db(CTX))?,
        posted_attempt: row.try_get("posted_attempt").map_err(StoreError::db(CTX))?,
        resolved_posted: row
            .try_get::<i32, _>("resolved_posted")
            .map_err(StoreError::db(CTX))?
            != 0,
        posted_status: row.try_get("posted_status").map_err(StoreError::db(CTX))?,
    })
}

pub(in crate::store) async fn slack_thread(pool: &PgPool, id: Uuid) -> Result<Option<SlackThread>> {
    let row = sqlx::query(sql::SLACK_THREAD)
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(StoreError::db(CTX))?;
    row.as_ref().map(thread).transpose()
}

pub(in crate::store) async fn record_slack_progress(
    pool: &PgPool,
    id: Uuid,
    p: SlackProgress,
) -> Result<()> {
    sqlx::query(
        "UPDATE slack_threads SET \
         posted_occurrences = CASE WHEN posted_occurrences < $1 THEN $1 ELSE posted_occurrences END, \
         posted_attempt = CASE WHEN posted_attempt < $2 THEN $2 ELSE posted_attempt END, \
         resolved_posted = CASE WHEN $3 = 1 THEN 1 ELSE resolved_posted END, \
         posted_status = COALESCE($4::text, posted_status) \
         WHERE incident_id = $5",
    )
    .bind(p.occurrences)
    .bind(p.attempt)
    .bind(i32::from(p.resolved))
    .bind(p.status.map(|s| s.as_str()))
    .bind(id)
    .execute(pool)
    .await
    .map_err(StoreError::db("recording Slack progress"))?;
    Ok(())
}

pub(in crate::store) async fn slack_followups(pool: &PgPool, limit: i64) -> Result<Vec<Incident>> {
    let rows = sqlx::query(&format!(
        // Driven by the thread rows (joined to incidents by key), not by a scan of every
        // incident: no column name is shared by the two tables.
        "SELECT {INCIDENT_COLUMNS} FROM slack_threads t JOIN incidents i ON i.id = t.incident_id \
         WHERE t.ts IS NOT NULL AND (i.occurrences > t.posted_occurrences OR \
            ((i.resolved_at IS NOT NULL OR i.status = 'resolved') AND t.resolved_posted = 0) OR \
            t.posted_status IS NULL OR t.posted_status <> i.status) \
         ORDER BY i.last_seen, i.id LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(StoreError::db("reading Slack follow-ups"))?;
    rows.iter().map(rows::incident).collect()
}

pub(in crate::store) async fn slack_unopened(
    pool: &PgPool,
    severities: &[String],
    stale_before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Incident>> {
    let n = severities.len();
    let sql = format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents i \
         WHERE i.status IN ('pending', 'running') AND i.severity IN ({}) AND NOT EXISTS (\
           SELECT 1 FROM slack_threads t WHERE t.incident_id = i.id AND \
           (t.ts IS NOT NULL OR t.claimed_at >= ${})) \
         ORDER BY i.created_at, i.id LIMIT ${}",
        placeholders(n, Some(1)),
        n + 1,
        n + 2
    );
    let mut q = sqlx::query(&sql);
    for s in severities {
        q = q.bind(s);
    }
    let rows = q
        .bind(stale_before)
        .bind(limit)
        .fetch_all(pool)
        .await
        .map_err(StoreError::db("reading incidents without a Slack thread"))?;
    rows.iter().map(rows::incident).collect()
}
