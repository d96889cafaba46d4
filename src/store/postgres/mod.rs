//! The PostgreSQL backend. Claims serialise on a transaction-scoped advisory lock (so limits hold
//! across processes); a partial unique index keeps one open incident per fault for any number of
//! writers; NOTIFY tells other processes that something became pending.

mod budgets;
mod costs;
mod driver;
mod listener;
mod page;
mod queue;
mod record;
mod resolve;
mod rows;
mod slack;

use std::future::Future;
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, QueryBuilder, Row};
use uuid::Uuid;

pub(super) use budgets::expire_pending;
pub(super) use costs::*;
pub(super) use listener::spawn_listener;
pub(super) use page::incident_page;
pub(super) use queue::*;
pub(super) use record::{record_faults, record_faults_fenced};
pub(super) use resolve::resolve_open;
pub(super) use slack::*;

use super::{ListFilter, Result, StatusCount, StoreError, StoreOptions};
use crate::config::DatabaseUrl;
use crate::incident::{ConnectionState, FaultOccurrence, Incident};
use rows::INCIDENT_COLUMNS;

/// The PostgreSQL [`super::driver::Driver`]: a pool shared with other processes.
pub(in crate::store) struct PgStore {
    pub(in crate::store) pool: PgPool,
}

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

/// Runs under sqlx's advisory lock, so concurrent processes migrate one after the other.
async fn migrate(pool: &PgPool) -> Result<()> {
    sqlx::migrate!("./migrations/postgres").run(pool).await?;
    Ok(())
}

pub(super) async fn ping(pool: &PgPool) -> Result<()> {
    sqlx::query("SELECT 1")
        .execute(pool)
        .await
        .map_err(StoreError::db("pinging the database"))?;
    Ok(())
}

/// See [`super::Store::check_writable`]: a standby or a read-only default refuses writes.
pub(super) async fn check_writable(pool: &PgPool) -> Result<()> {
    let read_only: String = sqlx::query_scalar("SELECT current_setting('transaction_read_only')")
        .fetch_one(pool)
        .await
        .map_err(StoreError::db("checking that the database is writable"))?;
    if read_only == "on" {
        return Err(StoreError::ReadOnly("transaction_read_only is on".into()));
    }
    Ok(())
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
    // v7 ids sort by creation time, and the primary key index serves this order.
    qb.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
    let rows = qb
        .build()
        .fetch_all(pool)
        .await
        .map_err(StoreError::db("listing incidents"))?;
    rows.iter().map(rows::incident).collect()
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

/// Every incident whose id ends in `short` (10 hex digits, checked by the caller), through the
/// expression index of migration 0010. Ambiguity is rare, so all matches are returned (at most
/// 100).
pub(super) async fn get_by_short_id(pool: &PgPool, short: &str) -> Result<Vec<Incident>> {
    let rows = sqlx::query(&format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE right(id::text, 10) = $1 ORDER BY id LIMIT 100"
    ))
    .bind(short)
    .fetch_all(pool)
    .await
    .map_err(StoreError::db("looking up an incident by short id"))?;
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

/// The latest occurrence of each related fault attached to incident `id` (a faultId other than
/// the incident's own), in the order they first attached, at most `limit`.
pub(super) async fn related_occurrences(
    pool: &PgPool,
    id: Uuid,
    limit: i64,
) -> Result<Vec<FaultOccurrence>> {
    let rows = sqlx::query(
        "SELECT id, incident_id, cluster, fault_id, fault_type, severity, namespace, \
         resource_kind, resource_name, resource_uid, context, server_timestamp, received_at, \
         raw::text AS raw FROM fault_occurrences WHERE id IN ( \
           SELECT max(o.id) FROM fault_occurrences o JOIN incidents i ON i.id = o.incident_id \
           WHERE o.incident_id = $1 AND o.fault_id <> i.fault_id \
           GROUP BY o.fault_id ORDER BY min(o.id) LIMIT $2) \
         ORDER BY id",
    )
    .bind(id)
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(StoreError::db("reading related faults"))?;
    rows.iter().map(rows::occurrence).collect()
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
