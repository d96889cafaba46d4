//! Accounting on SQLite (see `store::costs`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use uuid::Uuid;

use crate::store::costs::key_column;
use crate::store::{time, CostGroup, CostKey, Result, StoreError};

pub(in crate::store) async fn cost_groups(
    pool: &SqlitePool,
    since: DateTime<Utc>,
    key: CostKey,
) -> Result<Vec<CostGroup>> {
    let key = key_column(
        key,
        "strftime('%Y-%m-%d', r.started_at / 1000000, 'unixepoch')",
    );
    let rows = sqlx::query(&format!(
        "SELECT {key} AS key, count(*) AS runs, \
           sum(CASE WHEN r.cost_usd IS NULL THEN 1 ELSE 0 END) AS runs_without_cost, \
           coalesce(sum(r.input_tokens), 0) AS input_tokens, \
           coalesce(sum(r.output_tokens), 0) AS output_tokens, \
           coalesce(sum(r.cache_read_tokens), 0) AS cache_read_tokens, \
           coalesce(sum(r.cache_write_tokens), 0) AS cache_write_tokens, \
           coalesce(sum(r.turns), 0) AS turns, \
           coalesce(sum(r.cost_usd), 0.0) AS cost_usd \
         FROM agent_runs r JOIN incidents i ON i.id = r.incident_id \
         WHERE r.started_at >= ? GROUP BY 1 ORDER BY 1"
    ))
    .bind(time::to_micros(since))
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
    pool: &SqlitePool,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Option<f64>>> {
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
        "SELECT incident_id, sum(cost_usd) AS cost FROM agent_runs WHERE incident_id IN (",
    );
    let mut list = qb.separated(", ");
    for id in ids {
        list.push_bind(id.to_string());
    }
    qb.push(") GROUP BY incident_id");
    let rows = qb
        .build()
        .fetch_all(pool)
        .await
        .map_err(StoreError::db("reading incident costs"))?;
    let mut out = HashMap::with_capacity(rows.len());
    for row in &rows {
        let id: String = row
            .try_get("incident_id")
            .map_err(StoreError::db("reading incident costs"))?;
        let id = Uuid::try_parse(&id).map_err(|e| {
            StoreError::decode(
                "reading incident costs",
                format!("{id:?} is not a UUID: {e}"),
            )
        })?;
        let cost = row
            .try_get("cost")
            .map_err(StoreError::db("reading incident costs"))?;
        out.insert(id, cost);
    }
    Ok(out)
}
