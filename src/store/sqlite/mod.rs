//! The SQLite backend: one file in WAL mode; writers serialise on `BEGIN IMMEDIATE`.

mod queue;
mod reporting;
mod rows;

use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool, Transaction};
use uuid::Uuid;

pub(super) use queue::*;
pub(super) use reporting::*;

use super::batch::Group;
use super::{time, ListFilter, Recorded, Result, StatusCount, StoreError, StoreOptions};
use crate::config::DatabaseUrl;
use crate::fault::ReceivedFault;
use crate::incident::{AgentRun, ConnectionState, FaultOccurrence, Incident, IncidentStatus};
use rows::{INCIDENT_COLUMNS, RUN_COLUMNS};

/// Occurrence rows per INSERT statement (14 parameters each, well under SQLite's limit).
const OCCURRENCE_CHUNK: usize = 500;

pub(super) async fn connect(url: &DatabaseUrl, opts: &StoreOptions) -> Result<SqlitePool> {
    let options = SqliteConnectOptions::from_str(url.expose())
        .map_err(|e| StoreError::InvalidInput(format!("bad SQLite URL {}: {e}", url.redacted())))?;
    let path = options.get_filename().to_owned();
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| StoreError::Database {
            context: "creating the SQLite file's directory",
            source: sqlx::Error::Io(e),
        })?;
    }
    let options = options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(opts.acquire_timeout)
        .foreign_keys(true);
    SqlitePoolOptions::new()
        .max_connections(opts.max_connections.max(1))
        .acquire_timeout(opts.acquire_timeout)
        .connect_with(options)
        .await
        .map_err(StoreError::db("opening the SQLite database"))
}

/// A writing transaction. `BEGIN IMMEDIATE` takes the write lock up front (waiting on the busy
/// timeout); a deferred transaction that later upgrades fails with SQLITE_BUSY without waiting.
/// Dropping the transaction without commit rolls it back before the connection is reused.
async fn begin(pool: &SqlitePool, context: &'static str) -> Result<Transaction<'static, Sqlite>> {
    pool.begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(StoreError::db(context))
}

pub(super) async fn ping(pool: &SqlitePool) -> Result<()> {
    sqlx::query("SELECT 1")
        .execute(pool)
        .await
        .map_err(StoreError::db("pinging the database"))?;
    Ok(())
}

pub(super) async fn record_faults(
    pool: &SqlitePool,
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

    let mut tx = begin(pool, CTX).await?;
    let now = time::now();
    let mut results: Vec<Option<Recorded>> = vec![None; faults.len()];
    let mut incident_of = vec![String::new(); faults.len()];
    for (g, new_id) in groups.iter().zip(new_ids) {
        let f = &faults[g.first];
        let since = g
            .first_seen
            .checked_sub_signed(cooldown)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let existing = sqlx::query(
            "SELECT id, status FROM incidents \
             WHERE cluster = ? AND fault_id = ? \
               AND (status IN ('pending', 'running') OR finished_at > ?) \
             ORDER BY status IN ('pending', 'running') DESC, finished_at DESC LIMIT 1",
        )
        .bind(&f.cluster)
        .bind(&f.fault.fault_id)
        .bind(time::to_micros(since))
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::db(CTX))?;
        let (id, status, created) = match existing {
            Some(row) => {
                let id: String = row.get("id");
                let status = rows::status(row.get("status"))?;
                sqlx::query(
                    "UPDATE incidents SET occurrences = occurrences + ?, \
                     last_seen = max(last_seen, ?) WHERE id = ?",
                )
                .bind(g.count())
                .bind(time::to_micros(g.last_seen))
                .bind(&id)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db(CTX))?;
                (id, status, false)
            }
            None => {
                let status = if f.triage_enabled {
                    IncidentStatus::Pending
                } else {
                    IncidentStatus::Skipped
                };
                let finished = (status == IncidentStatus::Skipped).then(|| time::to_micros(now));
                let r = &f.fault.resource;
                sqlx::query(
                    "INSERT INTO incidents (id, cluster, fault_id, fault_type, severity, namespace, \
                     resource_kind, resource_name, resource_uid, context, status, occurrences, \
                     first_seen, last_seen, created_at, finished_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(new_id.to_string())
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
                .bind(time::to_micros(g.first_seen))
                .bind(time::to_micros(g.last_seen))
                .bind(time::to_micros(now))
                .bind(finished)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db(CTX))?;
                (new_id.to_string(), status, true)
            }
        };
        let incident_id = Uuid::try_parse(&id)
            .map_err(|e| StoreError::decode(CTX, format!("incident id {id:?}: {e}")))?;
        for &m in &g.members {
            results[m] = Some(Recorded {
                incident_id,
                created: created && m == g.first,
                status,
            });
            incident_of[m] = id.clone();
        }
    }

    let raws: Vec<String> = faults.iter().map(|f| f.raw.to_string()).collect();
    let indices: Vec<usize> = (0..faults.len()).collect();
    for chunk in indices.chunks(OCCURRENCE_CHUNK) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO fault_occurrences (incident_id, cluster, fault_id, fault_type, severity, \
             namespace, resource_kind, resource_name, resource_uid, context, server_timestamp, \
             received_at, raw) ",
        );
        qb.push_values(chunk, |mut b, &i| {
            let f = &faults[i];
            let r = &f.fault.resource;
            b.push_bind(&incident_of[i])
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
                .push_bind(time::to_micros(time::truncate(f.received_at)))
                .push_bind(&raws[i]);
        });
        qb.build()
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db(CTX))?;
    }
    tx.commit().await.map_err(StoreError::db(CTX))?;
    results
        .into_iter()
        .map(|r| r.ok_or_else(|| StoreError::decode(CTX, "a fault was left unrecorded".into())))
        .collect()
}

pub(super) async fn list(
    pool: &SqlitePool,
    filter: &ListFilter,
    limit: i64,
) -> Result<Vec<Incident>> {
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE 1 = 1"
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

pub(super) async fn get_by_id(pool: &SqlitePool, id: Uuid) -> Result<Option<Incident>> {
    let row = sqlx::query(&format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?"
    ))
    .bind(id.to_string())
    .fetch_optional(pool)
    .await
    .map_err(StoreError::db("reading an incident"))?;
    row.as_ref().map(rows::incident).transpose()
}

/// At most two matches: enough to tell unique from ambiguous. `prefix` holds only hex digits and
/// dashes (checked by the caller), so it cannot carry LIKE wildcards.
pub(super) async fn get_by_prefix(pool: &SqlitePool, prefix: &str) -> Result<Vec<Incident>> {
    let pattern = format!("{prefix}%");
    let rows = sqlx::query(&format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id LIKE ? ORDER BY id LIMIT 2"
    ))
    .bind(&pattern)
    .fetch_all(pool)
    .await
    .map_err(StoreError::db("looking up an incident by id prefix"))?;
    if rows.len() > 1 {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM incidents WHERE id LIKE ?")
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
    pool: &SqlitePool,
    id: Uuid,
    limit: i64,
) -> Result<Vec<FaultOccurrence>> {
    let rows = sqlx::query(
        "SELECT id, incident_id, cluster, fault_id, fault_type, severity, namespace, \
         resource_kind, resource_name, resource_uid, context, server_timestamp, received_at, raw \
         FROM fault_occurrences WHERE incident_id = ? ORDER BY id LIMIT ?",
    )
    .bind(id.to_string())
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(StoreError::db("reading fault occurrences"))?;
    rows.iter().map(rows::occurrence).collect()
}

pub(super) async fn agent_runs(pool: &SqlitePool, id: Uuid) -> Result<Vec<AgentRun>> {
    let rows = sqlx::query(&format!(
        "SELECT {RUN_COLUMNS} FROM agent_runs WHERE incident_id = ? ORDER BY attempt"
    ))
    .bind(id.to_string())
    .fetch_all(pool)
    .await
    .map_err(StoreError::db("reading agent runs"))?;
    rows.iter().map(rows::agent_run).collect()
}

pub(super) async fn status_counts(pool: &SqlitePool) -> Result<Vec<StatusCount>> {
    let rows = sqlx::query(
        "SELECT cluster, status, count(*) AS n FROM incidents \
         GROUP BY cluster, status ORDER BY cluster, status",
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

pub(super) async fn put_connection_state(pool: &SqlitePool, s: &ConnectionState) -> Result<()> {
    sqlx::query(
        "INSERT INTO connection_states (cluster, state, subscription_id, last_error, \
         last_event_at, events_received, events_malformed, reconnects, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (cluster) DO UPDATE SET state = excluded.state, \
         subscription_id = excluded.subscription_id, last_error = excluded.last_error, \
         last_event_at = excluded.last_event_at, events_received = excluded.events_received, \
         events_malformed = excluded.events_malformed, reconnects = excluded.reconnects, \
         updated_at = excluded.updated_at",
    )
    .bind(&s.cluster)
    .bind(&s.state)
    .bind(&s.subscription_id)
    .bind(&s.last_error)
    .bind(s.last_event_at.map(time::to_micros))
    .bind(s.events_received)
    .bind(s.events_malformed)
    .bind(s.reconnects)
    .bind(time::to_micros(s.updated_at))
    .execute(pool)
    .await
    .map_err(StoreError::db("saving a connection state"))?;
    Ok(())
}

pub(super) async fn connection_states(pool: &SqlitePool) -> Result<Vec<ConnectionState>> {
    let rows = sqlx::query(
        "SELECT cluster, state, subscription_id, last_error, last_event_at, events_received, \
         events_malformed, reconnects, updated_at FROM connection_states ORDER BY cluster",
    )
    .fetch_all(pool)
    .await
    .map_err(StoreError::db("reading connection states"))?;
    rows.iter().map(rows::connection_state).collect()
}

pub(super) async fn recent_failures(
    pool: &SqlitePool,
    since: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Incident>> {
    let rows = sqlx::query(&format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents \
         WHERE finished_at >= ? AND status IN ('failed', 'timed_out', 'cancelled') \
         ORDER BY finished_at DESC, id DESC LIMIT ?"
    ))
    .bind(time::to_micros(since))
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(StoreError::db("reading recent failures"))?;
    rows.iter().map(rows::incident).collect()
}
