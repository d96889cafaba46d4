//! The Go nightcrier's database: recognising it (so nightcrier refuses to start on it with a
//! message instead of an SQL error) and copying its incidents into nightcrier's tables.
//!
//! Both programs default to `./data/nightcrier.db` and both have a table named `incidents`, so
//! running the migrations on a Go file would fail halfway through. The Go file is only ever read:
//! it is opened read-only, and the copy goes into the database nightcrier is configured with.

use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDateTime, Utc};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _, PgPool, Row, SqlitePool};
use uuid::Uuid;

use super::{time, Backend, Result, Store, StoreError};
use crate::incident::IncidentStatus;

/// Stored texts are bounded: a Go database is input like any other.
const MAX_CONTEXT_BYTES: usize = 64 * 1024;
const MAX_FIELD_BYTES: usize = 4 * 1024;
/// The worker name recorded on imported runs.
pub const IMPORT_WORKER: &str = "go-import";

/// One incident of the Go database, with what nightcrier keeps of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoIncident {
    pub id: Uuid,
    /// The Go status, as written there (`resolved`, `agent_failed`...).
    pub go_status: String,
    pub status: IncidentStatus,
    pub fault_id: String,
    pub cluster: String,
    pub namespace: Option<String>,
    pub fault_type: String,
    pub severity: String,
    pub context: String,
    pub server_timestamp: String,
    pub resource_kind: String,
    pub resource_name: String,
    pub resource_uid: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub exit_code: Option<i32>,
    pub failure_reason: Option<String>,
    /// The agent's log of the latest execution (`agent_executions.log_paths`).
    pub log_path: Option<String>,
}

/// What `import_go` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GoImportSummary {
    pub imported: u64,
    /// Already in nightcrier's database (an earlier import): left as they are.
    pub already_present: u64,
    /// Rows that could not be read, with the reason (bounded list).
    pub skipped: Vec<String>,
    pub skipped_total: u64,
}

const MAX_SKIP_REASONS: usize = 20;

/// Whether the database holds the Go program's tables and not nightcrier's.
pub(super) async fn sqlite_is_go(pool: &SqlitePool) -> Result<bool> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name IN ('fault_events', 'agent_executions', '_sqlx_migrations')",
    )
    .fetch_all(pool)
    .await
    .map_err(StoreError::db("looking for the Go nightcrier's tables"))?;
    Ok(is_go(&names))
}

pub(super) async fn postgres_is_go(pool: &PgPool) -> Result<bool> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() \
         AND table_name IN ('fault_events', 'agent_executions', '_sqlx_migrations')",
    )
    .fetch_all(pool)
    .await
    .map_err(StoreError::db("looking for the Go nightcrier's tables"))?;
    Ok(is_go(&names))
}

fn is_go(names: &[String]) -> bool {
    let has = |n: &str| names.iter().any(|x| x == n);
    has("fault_events") && has("agent_executions") && !has("_sqlx_migrations")
}

/// Refuses an existing Go nightcrier SQLite file, looked at read-only so it stays untouched.
pub(super) async fn refuse_go_file(path: &Path) -> Result<()> {
    if !path.is_file() {
        return Ok(());
    }
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .create_if_missing(false)
        .connect()
        .await
        .map_err(StoreError::db(
            "opening the SQLite file to look at its schema",
        ))?;
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name IN ('fault_events', 'agent_executions', '_sqlx_migrations')",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(StoreError::db("looking for the Go nightcrier's tables"))?;
    let _ = conn.close().await;
    if is_go(&names) {
        return Err(StoreError::GoSchema);
    }
    Ok(())
}

impl Store {
    /// Fails with [`StoreError::GoSchema`] when this database is the Go nightcrier's.
    pub(super) async fn refuse_go_schema(&self) -> Result<()> {
        let go = match &self.inner.backend {
            Backend::Sqlite(d) => sqlite_is_go(&d.pool).await?,
            Backend::Postgres(d) => postgres_is_go(&d.pool).await?,
        };
        if go {
            return Err(StoreError::GoSchema);
        }
        Ok(())
    }

    /// Copies the incidents of a Go nightcrier SQLite file into this (migrated) database.
    /// Idempotent: incidents already present (same id) are left alone.
    pub async fn import_go(&self, go_db: &Path) -> Result<GoImportSummary> {
        let (incidents, mut summary) = read_go_sqlite(go_db).await?;
        for inc in &incidents {
            let inserted = match &self.inner.backend {
                Backend::Sqlite(d) => insert_sqlite(&d.pool, inc).await?,
                Backend::Postgres(d) => insert_postgres(&d.pool, inc).await?,
            };
            if inserted {
                summary.imported += 1;
            } else {
                summary.already_present += 1;
            }
        }
        Ok(summary)
    }
}

/// Reads every incident of a Go database, opened read-only.
pub async fn read_go_sqlite(path: &Path) -> Result<(Vec<GoIncident>, GoImportSummary)> {
    if !path.is_file() {
        return Err(StoreError::InvalidInput(format!(
            "{}: no such file (the Go nightcrier's state_storage.sqlite_path)",
            path.display()
        )));
    }
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .create_if_missing(false)
        .connect()
        .await
        .map_err(StoreError::db("opening the Go database read-only"))?;
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name IN ('fault_events', 'agent_executions', '_sqlx_migrations')",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(StoreError::db("reading the Go database's tables"))?;
    if !is_go(&names) {
        return Err(StoreError::InvalidInput(format!(
            "{} is not a Go nightcrier database (no fault_events/agent_executions tables, or it is nightcrier's own)",
            display(path)
        )));
    }
    // Timestamps are read as text: the Go SQLite driver wrote time.Time as text.
    let rows = sqlx::query(
        "SELECT i.incident_id, i.fault_id, i.status, CAST(i.created_at AS TEXT) AS created_at, \
         CAST(i.started_at AS TEXT) AS started_at, CAST(i.completed_at AS TEXT) AS completed_at, \
         i.exit_code, i.failure_reason, i.cluster, i.namespace, i.fault_type, i.severity, \
         i.context, i.timestamp, i.resource_kind, i.resource_name, i.resource_namespace, \
         i.resource_uid, \
         (SELECT e.log_paths FROM agent_executions e WHERE e.incident_id = i.incident_id \
          ORDER BY e.started_at DESC LIMIT 1) AS log_paths \
         FROM incidents i ORDER BY i.created_at",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(StoreError::db("reading the Go incidents"))?;
    let _ = conn.close().await;
    let mut out = Vec::with_capacity(rows.len());
    let mut summary = GoImportSummary::default();
    for r in &rows {
        let id: String = r.try_get("incident_id").unwrap_or_default();
        match go_row(r) {
            Ok(inc) => out.push(inc),
            Err(reason) => {
                summary.skipped_total += 1;
                if summary.skipped.len() < MAX_SKIP_REASONS {
                    summary
                        .skipped
                        .push(format!("{}: {reason}", bounded(&id, 80)));
                }
            }
        }
    }
    Ok((out, summary))
}

fn display(path: &Path) -> String {
    PathBuf::from(path).display().to_string()
}

fn text(r: &sqlx::sqlite::SqliteRow, col: &str) -> Option<String> {
    r.try_get::<Option<String>, _>(col)
        .ok()
        .flatten()
        .filter(|s| !s.is_empty())
}

fn go_row(r: &sqlx::sqlite::SqliteRow) -> std::result::Result<GoIncident, String> {
    let raw_id = text(r, "incident_id").ok_or("no incident_id")?;
    let id = Uuid::parse_str(&raw_id).map_err(|_| "incident_id is not a UUID".to_string())?;
    let go_status = text(r, "status").ok_or("no status")?;
    let status = crate::gocompat::status_from_go(&go_status)
        .ok_or_else(|| format!("unknown Go status {:?}", bounded(&go_status, 40)))?;
    let created_at = text(r, "created_at")
        .as_deref()
        .and_then(parse_go_time)
        .ok_or("created_at is missing or unreadable")?;
    let when = |col: &str| text(r, col).as_deref().and_then(parse_go_time);
    let cluster = text(r, "cluster").ok_or("no cluster")?;
    let log_path = text(r, "log_paths").and_then(|j| first_log_path(&j));
    Ok(GoIncident {
        id,
        go_status,
        status,
        fault_id: bounded(&text(r, "fault_id").ok_or("no fault_id")?, MAX_FIELD_BYTES),
        cluster: bounded(&cluster, MAX_FIELD_BYTES),
        namespace: text(r, "namespace")
            .or_else(|| text(r, "resource_namespace"))
            .map(|s| bounded(&s, MAX_FIELD_BYTES)),
        fault_type: bounded(&text(r, "fault_type").unwrap_or_default(), MAX_FIELD_BYTES),
        severity: bounded(&text(r, "severity").unwrap_or_default(), MAX_FIELD_BYTES),
        context: bounded(&text(r, "context").unwrap_or_default(), MAX_CONTEXT_BYTES),
        server_timestamp: bounded(&text(r, "timestamp").unwrap_or_default(), MAX_FIELD_BYTES),
        resource_kind: bounded(
            &text(r, "resource_kind").unwrap_or_default(),
            MAX_FIELD_BYTES,
        ),
        resource_name: bounded(
            &text(r, "resource_name").unwrap_or_default(),
            MAX_FIELD_BYTES,
        ),
        resource_uid: bounded(
            &text(r, "resource_uid").unwrap_or_default(),
            MAX_FIELD_BYTES,
        ),
        created_at,
        started_at: when("started_at"),
        completed_at: when("completed_at"),
        exit_code: r
            .try_get::<Option<i64>, _>("exit_code")
            .ok()
            .flatten()
            .and_then(|c| i32::try_from(c).ok()),
        failure_reason: text(r, "failure_reason").map(|s| bounded(&s, MAX_FIELD_BYTES)),
        log_path: log_path.map(|s| bounded(&s, MAX_FIELD_BYTES)),
    })
}

/// `{"stdout": "/path/agent.log", ...}`: the stdout log, else any.
fn first_log_path(json: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let map = v.as_object()?;
    map.get("stdout")
        .or_else(|| map.values().next())
        .and_then(|p| p.as_str())
        .map(str::to_string)
}

/// The formats Go's SQLite drivers write a time.Time in (modernc: `2006-01-02
/// 15:04:05.999999999-07:00`; time.String(): `... -0700 MST`), RFC 3339, or unix seconds.
pub fn parse_go_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    // time.String() may carry the monotonic clock reading: "... m=+12.3".
    let s = s.split(" m=").next().unwrap_or(s);
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(time::truncate(t.with_timezone(&Utc)));
    }
    for f in [
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f %z",
        "%Y-%m-%dT%H:%M:%S%.f%:z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(s, f) {
            return Some(time::truncate(t.with_timezone(&Utc)));
        }
    }
    // "2006-01-02 15:04:05.999 -0700 MST": drop the zone abbreviation.
    if let Some((head, _abbr)) = s.rsplit_once(' ') {
        if let Ok(t) = DateTime::parse_from_str(head, "%Y-%m-%d %H:%M:%S%.f %z") {
            return Some(time::truncate(t.with_timezone(&Utc)));
        }
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(time::truncate(t.and_utc()));
        }
    }
    s.parse::<i64>()
        .ok()
        .and_then(|secs| DateTime::from_timestamp(secs, 0))
}

fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Values shared by both backends' inserts.
struct ImportRow {
    finished_at: DateTime<Utc>,
    attempt: i32,
    reason: Option<String>,
    raw: String,
}

fn prepare(inc: &GoIncident) -> ImportRow {
    let finished_at = inc
        .completed_at
        .or(inc.started_at)
        .unwrap_or(inc.created_at);
    // A run is recorded only for what actually ran to an end under Go.
    let attempt = i32::from(
        inc.started_at.is_some()
            && matches!(
                inc.status,
                IncidentStatus::Succeeded | IncidentStatus::Failed
            ),
    );
    let reason = match inc.status {
        IncidentStatus::Expired => Some(format!(
            "imported from the Go nightcrier, where it was left {}",
            inc.go_status
        )),
        _ => inc.failure_reason.clone(),
    };
    let raw = serde_json::json!({
        "source": "go-nightcrier",
        "incident_id": inc.id,
        "status": inc.go_status,
        "fault_id": inc.fault_id,
        "timestamp": inc.server_timestamp,
        "exit_code": inc.exit_code,
    })
    .to_string();
    ImportRow {
        finished_at,
        attempt,
        reason,
        raw,
    }
}

async fn insert_sqlite(pool: &SqlitePool, inc: &GoIncident) -> Result<bool> {
    let p = prepare(inc);
    let mut tx = pool
        .begin()
        .await
        .map_err(StoreError::db("importing a Go incident"))?;
    let done = sqlx::query(
        "INSERT INTO incidents (id, cluster, fault_id, fault_type, severity, namespace, \
         resource_kind, resource_name, resource_uid, context, status, failure_reason, occurrences, \
         first_seen, last_seen, created_at, started_at, finished_at, attempt, attempt_base, \
         reported_attempt) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, 0, ?) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(inc.id.to_string())
    .bind(&inc.cluster)
    .bind(&inc.fault_id)
    .bind(&inc.fault_type)
    .bind(&inc.severity)
    .bind(&inc.namespace)
    .bind(&inc.resource_kind)
    .bind(&inc.resource_name)
    .bind(&inc.resource_uid)
    .bind(&inc.context)
    .bind(inc.status.as_str())
    .bind(&p.reason)
    .bind(time::to_micros(inc.created_at))
    .bind(time::to_micros(inc.created_at))
    .bind(time::to_micros(inc.created_at))
    .bind(inc.started_at.map(time::to_micros))
    .bind(time::to_micros(p.finished_at))
    .bind(p.attempt)
    // Already reported by the Go program: nothing is sent again.
    .bind(p.attempt)
    .execute(&mut *tx)
    .await
    .map_err(StoreError::db("importing a Go incident"))?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO fault_occurrences (incident_id, cluster, fault_id, fault_type, severity, \
         namespace, resource_kind, resource_name, resource_uid, context, server_timestamp, \
         received_at, raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(inc.id.to_string())
    .bind(&inc.cluster)
    .bind(&inc.fault_id)
    .bind(&inc.fault_type)
    .bind(&inc.severity)
    .bind(&inc.namespace)
    .bind(&inc.resource_kind)
    .bind(&inc.resource_name)
    .bind(&inc.resource_uid)
    .bind(&inc.context)
    .bind(&inc.server_timestamp)
    .bind(time::to_micros(inc.created_at))
    .bind(&p.raw)
    .execute(&mut *tx)
    .await
    .map_err(StoreError::db("importing a Go fault"))?;
    if let (1, Some(started)) = (p.attempt, inc.started_at) {
        sqlx::query(
            "INSERT INTO agent_runs (incident_id, attempt, worker, started_at, finished_at, \
             exit_code, outcome, reason, log_path) VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(inc.id.to_string())
        .bind(IMPORT_WORKER)
        .bind(time::to_micros(started))
        .bind(time::to_micros(p.finished_at))
        .bind(inc.exit_code)
        .bind(inc.status.as_str())
        .bind(&p.reason)
        .bind(&inc.log_path)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db("importing a Go agent run"))?;
    }
    tx.commit()
        .await
        .map_err(StoreError::db("importing a Go incident"))?;
    Ok(true)
}

async fn insert_postgres(pool: &PgPool, inc: &GoIncident) -> Result<bool> {
    let p = prepare(inc);
    let mut tx = pool
        .begin()
        .await
        .map_err(StoreError::db("importing a Go incident"))?;
    let done = sqlx::query(
        "INSERT INTO incidents (id, cluster, fault_id, fault_type, severity, namespace, \
         resource_kind, resource_name, resource_uid, context, status, failure_reason, occurrences, \
         first_seen, last_seen, created_at, started_at, finished_at, attempt, attempt_base, \
         reported_attempt) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 1, $13, $13, $13, $14, $15, \
         $16, 0, $16) ON CONFLICT (id) DO NOTHING",
    )
    .bind(inc.id)
    .bind(&inc.cluster)
    .bind(&inc.fault_id)
    .bind(&inc.fault_type)
    .bind(&inc.severity)
    .bind(&inc.namespace)
    .bind(&inc.resource_kind)
    .bind(&inc.resource_name)
    .bind(&inc.resource_uid)
    .bind(&inc.context)
    .bind(inc.status.as_str())
    .bind(&p.reason)
    .bind(inc.created_at)
    .bind(inc.started_at)
    .bind(p.finished_at)
    .bind(p.attempt)
    .execute(&mut *tx)
    .await
    .map_err(StoreError::db("importing a Go incident"))?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO fault_occurrences (incident_id, cluster, fault_id, fault_type, severity, \
         namespace, resource_kind, resource_name, resource_uid, context, server_timestamp, \
         received_at, raw) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::json)",
    )
    .bind(inc.id)
    .bind(&inc.cluster)
    .bind(&inc.fault_id)
    .bind(&inc.fault_type)
    .bind(&inc.severity)
    .bind(&inc.namespace)
    .bind(&inc.resource_kind)
    .bind(&inc.resource_name)
    .bind(&inc.resource_uid)
    .bind(&inc.context)
    .bind(&inc.server_timestamp)
    .bind(inc.created_at)
    .bind(&p.raw)
    .execute(&mut *tx)
    .await
    .map_err(StoreError::db("importing a Go fault"))?;
    if let (1, Some(started)) = (p.attempt, inc.started_at) {
        sqlx::query(
            "INSERT INTO agent_runs (incident_id, attempt, worker, started_at, finished_at, \
             exit_code, outcome, reason, log_path) VALUES ($1, 1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(inc.id)
        .bind(IMPORT_WORKER)
        .bind(started)
        .bind(p.finished_at)
        .bind(inc.exit_code)
        .bind(inc.status.as_str())
        .bind(&p.reason)
        .bind(&inc.log_path)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db("importing a Go agent run"))?;
    }
    tx.commit()
        .await
        .map_err(StoreError::db("importing a Go incident"))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_time_formats() {
        let want = DateTime::parse_from_rfc3339("2025-12-20T10:11:12.5Z")
            .map(|t| t.with_timezone(&Utc))
            .ok();
        for s in [
            "2025-12-20 10:11:12.5+00:00",
            "2025-12-20T10:11:12.5Z",
            "2025-12-20 11:11:12.5 +0100 CET",
            "2025-12-20 10:11:12.5 +0000 UTC m=+3.2",
            "2025-12-20 10:11:12.5",
        ] {
            assert_eq!(parse_go_time(s), want, "{s}");
        }
        assert_eq!(parse_go_time("yesterday"), None);
    }

    #[test]
    fn log_path_prefers_stdout() {
        assert_eq!(
            first_log_path(r#"{"stderr":"/e","stdout":"/o"}"#).as_deref(),
            Some("/o")
        );
        assert_eq!(first_log_path("not json"), None);
    }
}
