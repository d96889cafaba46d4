//! The SQLite backend: one file in WAL mode; writers serialise on `BEGIN IMMEDIATE`.

mod budgets;
mod costs;
mod driver;
mod page;
mod queue;
mod record;
mod resolve;
mod rows;
mod slack;

use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool, Transaction};
use uuid::Uuid;

pub(super) use budgets::{claim_budgeted, expire_pending};
pub(super) use costs::*;
pub(super) use page::incident_page;
pub(super) use queue::*;
pub(super) use record::record_faults;
pub(super) use resolve::resolve_open;
pub(super) use slack::*;

use super::{time, ListFilter, Result, StatusCount, StoreError, StoreOptions};
use crate::config::DatabaseUrl;
use crate::incident::{ConnectionState, FaultOccurrence, Incident};
use rows::INCIDENT_COLUMNS;

/// The SQLite [`super::driver::Driver`]: a pool on one file in WAL mode.
pub(in crate::store) struct SqliteStore {
    pub(in crate::store) pool: SqlitePool,
}

/// See [`super::sqlite_file`].
pub(super) fn file_of(url: &str) -> Option<std::path::PathBuf> {
    SqliteConnectOptions::from_str(url)
        .ok()
        .map(|o| o.get_filename().to_owned())
}

pub(super) async fn connect(url: &DatabaseUrl, opts: &StoreOptions) -> Result<SqlitePool> {
    let options = SqliteConnectOptions::from_str(url.expose())
        .map_err(|e| StoreError::InvalidInput(format!("bad SQLite URL {}: {e}", url.redacted())))?;
    let path = options.get_filename().to_owned();
    // Before WAL mode is set, which would already change a Go nightcrier's file.
    super::goschema::refuse_go_file(&path).await?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| StoreError::Database {
            context: "creating the SQLite file's directory",
            source: sqlx::Error::Io(e),
        })?;
    }
    create_owner_only(&path)?;
    let options = options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(opts.acquire_timeout)
        .foreign_keys(true)
        // Measured on record_faults (docs/benchmarks.md, store), batches of 100 new faults:
        // the statement journal of a multi-row INSERT kept in memory instead of a temporary
        // file, and a page cache of up to 16 MiB per connection (default 2 MiB) so the
        // incident indexes stay cached: ~26,000 -> ~30,000/s. The cache fills only as pages are
        // read, so an idle or small database costs nothing extra. Checkpointing the WAL every
        // 10,000 pages (~40 MiB) instead of 1,000 copies a page that many commits touch (index
        // pages, the table's last pages) once instead of ten times, and halved the commit time:
        // ~30,000 -> ~34,000/s. The WAL file stays that size once grown.
        .pragma("temp_store", "memory")
        .pragma("cache_size", "-16384")
        .pragma("wal_autocheckpoint", "10000");
    SqlitePoolOptions::new()
        .max_connections(opts.max_connections.max(1))
        .acquire_timeout(opts.acquire_timeout)
        .connect_with(options)
        .await
        .map_err(StoreError::db("opening the SQLite database"))
}

/// Creates a missing database file empty with mode 0600 before SQLite opens it: SQLite would
/// create it with the umask's mode (often world-readable), and it creates `-wal` and `-shm`
/// with the main file's mode. An existing file keeps its mode (the operator chose it).
fn create_owner_only(path: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if path.as_os_str().is_empty() || path.as_os_str() == ":memory:" {
        return Ok(());
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Database {
            context: "creating the SQLite file",
            source: sqlx::Error::Io(e),
        }),
    }
}

/// Fails with [`StoreError::ReadOnly`] when SQLite can only read the file (its mode, a
/// read-only mount, `?mode=ro`): otherwise that shows only at the first write, after
/// `/readyz` said ready. `BEGIN IMMEDIATE` takes the write lock, which a read-only database
/// refuses; the rollback leaves nothing behind.
pub(super) async fn check_writable(pool: &SqlitePool) -> Result<()> {
    let mut tx = match begin(pool, "checking that the database is writable").await {
        Ok(tx) => tx,
        Err(e) if e.is_read_only() => return Err(StoreError::ReadOnly(e.to_string())),
        Err(e) => return Err(e),
    };
    let probe = sqlx::query("CREATE TABLE nightcrier_write_check (x INTEGER)")
        .execute(&mut *tx)
        .await;
    let _ = tx.rollback().await;
    match probe {
        Ok(_) => Ok(()),
        Err(e) => {
            let e = StoreError::db("checking that the database is writable")(e);
            if e.is_read_only() {
                Err(StoreError::ReadOnly(e.to_string()))
            } else {
                Err(e)
            }
        }
    }
}

/// A writing transaction. `BEGIN IMMEDIATE` takes the write lock up front (waiting on the busy
/// timeout); a deferred transaction that later upgrades fails with SQLITE_BUSY without waiting.
/// Dropping the transaction without commit rolls it back before the connection is reused.
async fn begin(pool: &SqlitePool, context: &'static str) -> Result<Transaction<'static, Sqlite>> {
    pool.begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(StoreError::db(context))
}

async fn migrate(pool: &SqlitePool) -> Result<()> {
    // sqlx takes no lock around SQLite migrations: when two processes migrate a new file at
    // once, the loser fails on "table already exists" after the winner's commit. Running again
    // then finds the migration applied.
    let migrator = sqlx::migrate!("./migrations/sqlite");
    let mut tries = 0;
    loop {
        tries += 1;
        match migrator.run(pool).await {
            // Or on recording the version the winner recorded first
            // (`Execute`: UNIQUE constraint on _sqlx_migrations.version).
            Err(
                sqlx::migrate::MigrateError::ExecuteMigration(..)
                | sqlx::migrate::MigrateError::Execute(..),
            ) if tries < 5 => {}
            other => break Ok(other?),
        }
    }
}

pub(super) async fn ping(pool: &SqlitePool) -> Result<()> {
    sqlx::query("SELECT 1")
        .execute(pool)
        .await
        .map_err(StoreError::db("pinging the database"))?;
    Ok(())
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

/// Every incident whose id ends in `short` (10 hex digits, checked by the caller), through the
/// expression index of migration 0010: `substr(id, 27)` is the last 10 characters of the
/// 36-character text form. Ambiguity is rare, so all matches are returned (at most 100).
pub(super) async fn get_by_short_id(pool: &SqlitePool, short: &str) -> Result<Vec<Incident>> {
    let rows = sqlx::query(&format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE substr(id, 27) = ? ORDER BY id LIMIT 100"
    ))
    .bind(short)
    .fetch_all(pool)
    .await
    .map_err(StoreError::db("looking up an incident by short id"))?;
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

/// The latest occurrence of each related fault attached to incident `id` (a faultId other than
/// the incident's own), in the order they first attached, at most `limit`.
pub(super) async fn related_occurrences(
    pool: &SqlitePool,
    id: Uuid,
    limit: i64,
) -> Result<Vec<FaultOccurrence>> {
    let rows = sqlx::query(
        "SELECT id, incident_id, cluster, fault_id, fault_type, severity, namespace, \
         resource_kind, resource_name, resource_uid, context, server_timestamp, received_at, \
         raw FROM fault_occurrences WHERE id IN ( \
           SELECT max(o.id) FROM fault_occurrences o JOIN incidents i ON i.id = o.incident_id \
           WHERE o.incident_id = ? AND o.fault_id <> i.fault_id \
           GROUP BY o.fault_id ORDER BY min(o.id) LIMIT ?) \
         ORDER BY id",
    )
    .bind(id.to_string())
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(StoreError::db("reading related faults"))?;
    rows.iter().map(rows::occurrence).collect()
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
