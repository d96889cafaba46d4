//! A Go nightcrier SQLite database, made with the Go migration's own SQL
//! (`tests/fixtures/go/000001_initial_schema.up.sql`) and rows as its SQLite driver (modernc)
//! writes them: text timestamps, `agent_executions.log_paths` as JSON.

use std::path::{Path, PathBuf};

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/go")
        .join(name)
}

pub const GO_INCIDENTS: &[(&str, &str)] = &[
    ("0193f0a0-0000-4000-8000-000000000001", "resolved"),
    ("0193f0a0-0000-4000-8000-000000000002", "agent_failed"),
    ("0193f0a0-0000-4000-8000-000000000003", "investigating"),
];

pub async fn go_database(path: &Path) {
    use sqlx::{ConnectOptions, Connection};
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    let schema = std::fs::read_to_string(fixture("000001_initial_schema.up.sql")).unwrap();
    sqlx::raw_sql(&schema).execute(&mut conn).await.unwrap();
    // golang-migrate's bookkeeping table.
    sqlx::raw_sql("CREATE TABLE schema_migrations (version uint64, dirty bool); INSERT INTO schema_migrations VALUES (1, 0);")
        .execute(&mut conn)
        .await
        .unwrap();
    for (i, (id, status)) in GO_INCIDENTS.iter().enumerate() {
        let fault = format!("fault-{i}");
        sqlx::query("INSERT INTO fault_events VALUES (?, 'sub-1', 'prod-us-east-1', '2025-12-20 10:00:00+00:00', 'v1', 'Pod', ?, 'default', ?, 'CrashLoop', 'critical', 'Back-off restarting failed container', '2025-12-20T10:00:00Z')")
            .bind(&fault).bind(format!("web-{i}")).bind(format!("uid-{i}"))
            .execute(&mut conn).await.unwrap();
        let (started, completed, exit, reason): (
            Option<&str>,
            Option<&str>,
            Option<i64>,
            Option<&str>,
        ) = match *status {
            "resolved" => (
                Some("2025-12-20 10:00:05.5+00:00"),
                Some("2025-12-20 10:03:05.5+00:00"),
                Some(0),
                None,
            ),
            "agent_failed" => (
                Some("2025-12-20 10:00:05+00:00"),
                Some("2025-12-20 10:01:00+00:00"),
                Some(2),
                Some("agent exited with code 2"),
            ),
            _ => (Some("2025-12-20 10:00:05+00:00"), None, None, None),
        };
        sqlx::query("INSERT INTO incidents (incident_id, fault_id, status, created_at, started_at, completed_at, exit_code, failure_reason, cluster, namespace, fault_type, severity, context, timestamp, resource_api_version, resource_kind, resource_name, resource_namespace, resource_uid) VALUES (?, ?, ?, '2025-12-20 10:00:01+00:00', ?, ?, ?, ?, 'prod-us-east-1', 'default', 'CrashLoop', 'critical', 'Back-off restarting failed container', '2025-12-20T10:00:00Z', 'v1', 'Pod', ?, 'default', ?)")
            .bind(id).bind(&fault).bind(status).bind(started).bind(completed).bind(exit).bind(reason)
            .bind(format!("web-{i}")).bind(format!("uid-{i}"))
            .execute(&mut conn).await.unwrap();
        sqlx::query("INSERT INTO agent_executions VALUES (?, ?, '2025-12-20 10:00:05+00:00', NULL, NULL, NULL, ?)")
            .bind(format!("exec-{i}")).bind(id)
            .bind(format!(r#"{{"stdout": "/srv/incidents/{id}/logs/agent-stdout.log"}}"#))
            .execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();
}
