//! The PostgreSQL backend. Claims serialise on a transaction-scoped advisory lock (so limits hold
//! across processes); a partial unique index keeps one open incident per fault for any number of
//! writers; NOTIFY tells other processes that something became pending.

mod listener;
mod queue;
mod reporting;
mod rows;

use std::future::Future;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, QueryBuilder, Row};
use uuid::Uuid;

pub(super) use listener::spawn_listener;
pub(super) use queue::*;
pub(super) use reporting::*;

use super::batch::Group;
use super::{time, ListFilter, Recorded, Result, StatusCount, StoreError, StoreOptions};
use crate::config::DatabaseUrl;
use crate::fault::ReceivedFault;
use crate::incident::{AgentRun, ConnectionState, FaultOccurrence, Incident, IncidentStatus};
use rows::{INCIDENT_COLUMNS, RUN_COLUMNS};

/// Occurrence rows per INSERT statement (13 parameters each, under the 65535 limit).
const OCCURRENCE_CHUNK: usize = 500;
/// Attempts of a transaction that failed on a deadlock or serialization conflict.
const TX_ATTEMPTS: usize = 5;

pub(super) async fn connect(url: &DatabaseUrl, opts: &StoreOptions) -> Result<PgPool> {
    let options = PgConnectOptions::from_str(url.expose()).map_err(|e| {
        StoreError::InvalidInput(format!("bad PostgreSQL URL {}: {e}", url.redacted()))
    })?;
    PgPoolOptions::new()
        .max_connections(opts.max_connections.max(1))
        .acquire_timeout(opts.acquire_timeout)
        .connect_with(options)
        .await
        .map_err(StoreError::db("connecting to PostgreSQL"))
}

/// Runs a transaction body again when PostgreSQL aborted it to break a deadlock or a
/// serialization conflict (nothing was written then).
async fn with_retry<T, F, Fut>(mut body: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut tries = 1;
    loop {
        match body().await {
            Err(StoreError::Database {
                source: sqlx::Error::Database(e),
                ..
            }) if tries < TX_ATTEMPTS
                && matches!(e.code().as_deref(), Some("40P01") | Some("40001")) =>
            {
                tries += 1;
            }
            other => return other,
        }
    }
}

async fn notify_pending(tx: &mut sqlx::PgConnection, context: &'static str) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(listener::CHANNEL)
        .execute(tx)
        .await
        .map_err(StoreError::db(context))?;
    Ok(())
}

pub(super) async fn ping(pool: &PgPool) -> Result<()> {
    sqlx::query("SELECT 1")
        .execute(pool)
        .await
        .map_err(StoreError::db("pinging the database"))?;
    Ok(())
}

pub(super) async fn record_faults(
    pool: &PgPool,
    faults: &[ReceivedFault],
    groups: &[Group],
    cooldown: chrono::Duration,
) -> Result<Vec<Recorded>> {
    with_retry(|| record_once(pool, faults, groups, cooldown)).await
}

async fn record_once(
    pool: &PgPool,
    faults: &[ReceivedFault],
    groups: &[Group],
    cooldown: chrono::Duration,
) -> Result<Vec<Recorded>> {
    const CTX: &str = "recording faults";
    // Ids in arrival order, so that incidents opened by one batch are claimed in that order.
    let mut by_arrival: Vec<usize> = (0..groups.len()).collect();
    by_arrival.sort_by_key(|&g| groups[g].first);
    let mut new_ids = vec![Uuid::nil(); groups.len()];
    for g in by_arrival {
        new_ids[g] = Uuid::now_v7();
    }

    let mut tx = pool.begin().await.map_err(StoreError::db(CTX))?;
    let now = time::now();
    let mut results: Vec<Option<Recorded>> = vec![None; faults.len()];
    let mut incident_of = vec![Uuid::nil(); faults.len()];
    let mut any_pending = false;
    for (g, new_id) in groups.iter().zip(new_ids) {
        let f = &faults[g.first];
        let since = g
            .first_seen
            .checked_sub_signed(cooldown)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let existing = sqlx::query(
            "SELECT id FROM incidents \
             WHERE cluster = $1 AND fault_id = $2 \
               AND (status IN ('pending', 'running') OR finished_at > $3) \
             ORDER BY status IN ('pending', 'running') DESC, finished_at DESC NULLS LAST LIMIT 1",
        )
        .bind(&f.cluster)
        .bind(&f.fault.fault_id)
        .bind(since)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::db(CTX))?;
        let row = match existing {
            Some(row) => {
                let id: Uuid = row.get("id");
                sqlx::query(
                    "UPDATE incidents SET occurrences = occurrences + $1, \
                     last_seen = GREATEST(last_seen, $2) WHERE id = $3 RETURNING id, status",
                )
                .bind(g.count())
                .bind(g.last_seen)
                .bind(id)
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::db(CTX))?
            }
            None => {
                let status = if f.triage_enabled {
                    IncidentStatus::Pending
                } else {
                    IncidentStatus::Skipped
                };
                let finished = (status == IncidentStatus::Skipped).then_some(now);
                let r = &f.fault.resource;
                // Another process may have opened the incident since the lookup: attach to it.
                sqlx::query(
                    "INSERT INTO incidents (id, cluster, fault_id, fault_type, severity, namespace, \
                     resource_kind, resource_name, resource_uid, context, status, occurrences, \
                     first_seen, last_seen, created_at, finished_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
                     ON CONFLICT (cluster, fault_id) WHERE status IN ('pending', 'running') \
                     DO UPDATE SET occurrences = incidents.occurrences + EXCLUDED.occurrences, \
                       last_seen = GREATEST(incidents.last_seen, EXCLUDED.last_seen) \
                     RETURNING id, status",
                )
                .bind(new_id)
                .bind(&f.cluster)
                .bind(&f.fault.fault_id)
                .bind(&f.fault.fault_type)
                .bind(&f.fault.severity)
                .bind(&r.namespace)
                .bind(&r.kind)
                .bind(&r.name)
                .bind(&r.uid)
                .bind(&f.fault.context)
                .bind(status.as_str())
                .bind(g.count())
                .bind(g.first_seen)
                .bind(g.last_seen)
                .bind(now)
                .bind(finished)
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::db(CTX))?
            }
        };
        let incident_id: Uuid = row.get("id");
        let status = rows::status(row.get("status"))?;
        let created = incident_id == new_id;
        any_pending |= created && status == IncidentStatus::Pending;
        for &m in &g.members {
            results[m] = Some(Recorded {
                incident_id,
                created: created && m == g.first,
                status,
            });
            incident_of[m] = incident_id;
        }
    }

    let raws: Vec<String> = faults.iter().map(|f| f.raw.to_string()).collect();
    let indices: Vec<usize> = (0..faults.len()).collect();
    for chunk in indices.chunks(OCCURRENCE_CHUNK) {
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(
            "INSERT INTO fault_occurrences (incident_id, cluster, fault_id, fault_type, severity, \
             namespace, resource_kind, resource_name, resource_uid, context, server_timestamp, \
             received_at, raw) ",
        );
        qb.push_values(chunk, |mut b, &i| {
            let f = &faults[i];
            let r = &f.fault.resource;
            b.push_bind(incident_of[i])
                .push_bind(&f.cluster)
                .push_bind(&f.fault.fault_id)
                .push_bind(&f.fault.fault_type)
                .push_bind(&f.fault.severity)
                .push_bind(&r.namespace)
                .push_bind(&r.kind)
                .push_bind(&r.name)
                .push_bind(&r.uid)
                .push_bind(&f.fault.context)
                .push_bind(&f.fault.timestamp)
                .push_bind(time::truncate(f.received_at))
                .push_bind(&raws[i])
                .push_unseparated("::json");
        });
        qb.build()
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db(CTX))?;
    }
    if any_pending {
        notify_pending(&mut tx, CTX).await?;
    }
    tx.commit().await.map_err(StoreError::db(CTX))?;
    results
        .into_iter()
        .map(|r| r.ok_or_else(|| StoreError::decode(CTX, "a fault was left unrecorded".into())))
        .collect()
}

pub(super) async fn list(pool: &PgPool, filter: &ListFilter, limit: i64) -> Result<Vec<Incident>> {
    let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE TRUE"
    ));
    if let Some(status) = filter.status {
        qb.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(cluster) = &filter.cluster {
        qb.push(" AND cluster = ").push_bind(cluster);
    }
    qb.push(" ORDER BY created_at DESC, id DESC LIMIT ")
        .push_bind(limit);
    let rows = qb
        .build()
        .fetch_all(pool)
        .await
        .map_err(StoreError::db("listing incidents"))?;
    rows.iter().map(rows::incident).collect()
}

pub(super) async fn get_by_id(pool: &PgPool, id: Uuid) -> Result<Option<Incident>> {
    let row = sqlx::query(&format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
    .map_err(StoreError::db("reading an incident"))?;
    row.as_ref().map(rows::incident).transpose()
}

/// At most two matches: enough to tell unique from ambiguous. `prefix` holds only hex digits and
/// dashes (checked by the caller), so it cannot carry LIKE wildcards.
pub(super) async fn get_by_prefix(pool: &PgPool, prefix: &str) -> Result<Vec<Incident>> {
    let pattern = format!("{prefix}%");
    let rows = sqlx::query(&format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id::text LIKE $1 ORDER BY id LIMIT 2"
    ))
    .bind(&pattern)
    .fetch_all(pool)
    .await
    .map_err(StoreError::db("looking up an incident by id prefix"))?;
    if rows.len() > 1 {
        let count: i64 =
            sqlx::query_scalar("SELECT count(*) FROM incidents WHERE id::text LIKE $1")
                .bind(&pattern)
                .fetch_one(pool)
                .await
                .map_err(StoreError::db("looking up an incident by id prefix"))?;
        return Err(StoreError::Ambiguous {
            prefix: prefix.to_string(),
            matches: usize::try_from(count).unwrap_or(usize::MAX),
        });
    }
    rows.iter().map(rows::incident).collect()
}

pub(super) async fn occurrences(
    pool: &PgPool,
    id: Uuid,
    limit: i64,
) -> Result<Vec<FaultOccurrence>> {
    let rows = sqlx::query(
        "SELECT id, incident_id, cluster, fault_id, fault_type, severity, namespace, \
         resource_kind, resource_name, resource_uid, context, server_timestamp, received_at, \
         raw::text AS raw FROM fault_occurrences WHERE incident_id = $1 ORDER BY id LIMIT $2",
    )
    .bind(id)
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(StoreError::db("reading fault occurrences"))?;
    rows.iter().map(rows::occurrence).collect()
}

pub(super) async fn agent_runs(pool: &PgPool, id: Uuid) -> Result<Vec<AgentRun>> {
    let rows = sqlx::query(&format!(
        "SELECT {RUN_COLUMNS} FROM agent_runs WHERE incident_id = $1 ORDER BY attempt"
    ))
    .bind(id)
    .fetch_all(pool)
    .await
    .map_err(StoreError::db("reading agent runs"))?;
    rows.iter().map(rows::agent_run).collect()
}

pub(super) async fn status_counts(pool: &PgPool) -> Result<Vec<StatusCount>> {
    let rows = sqlx::query(
        "SELECT cluster, status, count(*) AS n FROM incidents \
         GROUP BY cluster, status ORDER BY cluster COLLATE \"C\", status COLLATE \"C\"",
    )
    .fetch_all(pool)
    .await
    .map_err(StoreError::db("counting incidents"))?;
    rows.iter()
        .map(|r| {
            Ok(StatusCount {
                cluster: r.get("cluster"),
                status: rows::status(r.get("status"))?,
                count: r.get("n"),
            })
        })
        .collect()
}

pub(super) async fn put_connection_state(pool: &PgPool, s: &ConnectionState) -> Result<()> {
    sqlx::query(
        "INSERT INTO connection_states (cluster, state, subscription_id, last_error, \
         last_event_at, events_received, events_malformed, reconnects, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (cluster) DO UPDATE SET state = EXCLUDED.state, \
         subscription_id = EXCLUDED.subscription_id, last_error = EXCLUDED.last_error, \
         last_event_at = EXCLUDED.last_event_at, events_received = EXCLUDED.events_received, \
         events_malformed = EXCLUDED.events_malformed, reconnects = EXCLUDED.reconnects, \
         updated_at = EXCLUDED.updated_at",
    )
    .bind(&s.cluster)
    .bind(&s.state)
    .bind(&s.subscription_id)
    .bind(&s.last_error)
    .bind(s.last_event_at.map(time::truncate))
    .bind(s.events_received)
    .bind(s.events_malformed)
    .bind(s.reconnects)
    .bind(time::truncate(s.updated_at))
    .execute(pool)
    .await
    .map_err(StoreError::db("saving a connection state"))?;
    Ok(())
}

pub(super) async fn connection_states(pool: &PgPool) -> Result<Vec<ConnectionState>> {
    let rows = sqlx::query(
        "SELECT cluster, state, subscription_id, last_error, last_event_at, events_received, \
         events_malformed, reconnects, updated_at FROM connection_states ORDER BY cluster COLLATE \"C\"",
    )
    .fetch_all(pool)
    .await
    .map_err(StoreError::db("reading connection states"))?;
    rows.iter().map(rows::connection_state).collect()
}

pub(super) async fn recent_failures(
    pool: &PgPool,
    since: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Incident>> {
    let rows = sqlx::query(&format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents \
         WHERE finished_at >= $1 AND status IN ('failed', 'timed_out', 'cancelled') \
         ORDER BY finished_at DESC, id DESC LIMIT $2"
    ))
    .bind(since)
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(StoreError::db("reading recent failures"))?;
    rows.iter().map(rows::incident).collect()
}
