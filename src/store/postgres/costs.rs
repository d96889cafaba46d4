//! Accounting on PostgreSQL (see `store::costs`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::store::costs::key_column;
use crate::store::{CostGroup, CostKey, Result, StoreError};

pub(in crate::store) async fn cost_groups(
    pool: &PgPool,
    since: DateTime<Utc>,
    key: CostKey,
) -> Result<Vec<CostGroup>> {
    let key = key_column(
        key,
        "to_char(r.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    );
    let rows = sqlx::query(&format!(
        "SELECT {key} AS key, count(*) AS runs, \
           count(*) FILTER (WHERE r.cost_usd IS NULL) AS runs_without_cost, \
           coalesce(sum(r.input_tokens), 0)::BIGINT AS input_tokens, \
           coalesce(sum(r.output_tokens), 0)::BIGINT AS output_tokens, \
           coalesce(sum(r.cache_read_tokens), 0)::BIGINT AS cache_read_tokens, \
           coalesce(sum(r.cache_write_tokens), 0)::BIGINT AS cache_write_tokens, \
           coalesce(sum(r.turns), 0)::BIGINT AS turns, \
           coalesce(sum(r.cost_usd), 0.0)::DOUBLE PRECISION AS cost_usd \
         FROM agent_runs r JOIN incidents i ON i.id = r.incident_id \
         WHERE r.started_at >= $1 GROUP BY 1 ORDER BY 1"
    ))
    .bind(since)
    .fetch_all(pool)
    .await
    .map_err(StoreError::db("summing agent costs"))?;
    rows.iter()
        .map(|row| {
            let get = |col: &str| row.try_get::<i64, _>(col);
            Ok(CostGroup {
                key: row.try_get("key")?,
                runs: get("runs")?,
                runs_without_cost: get("runs_without_cost")?,
                input_tokens: get("input_tokens")?,
                output_tokens: get("output_tokens")?,
                cache_read_tokens: get("cache_read_tokens")?,
                cache_write_tokens: get("cache_write_tokens")?,
                turns: get("turns")?,
                cost_usd: row.try_get("cost_usd")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(StoreError::db("summing agent costs"))
}

pub(in crate::store) async fn incident_costs(
    pool: &PgPool,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Option<f64>>> {
    let rows = sqlx::query(
        "SELECT incident_id, sum(cost_usd) AS cost FROM agent_runs \
         WHERE incident_id = ANY($1) GROUP BY incident_id",
    )
    .bind(ids)
    .fetch_all(pool)
    .await
    .map_err(StoreError::db("reading incident costs"))?;
    rows.iter()
        .map(|row| Ok((row.try_get("incident_id")?, row.try_get("cost")?)))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(StoreError::db("reading incident costs"))
}
