//! The raw limit: the same occurrence rows the writer commits, inserted by a minimal loop (one
//! multi-row INSERT of 500 rows per transaction, the writer's default batch) on a connection
//! with the store's durability settings (SQLite: WAL, synchronous=NORMAL; PostgreSQL: the
//! server's defaults), into the migrated schema with its indexes. No incident lookup or dedup.

use std::time::Instant;

use sqlx::{Connection, QueryBuilder};

use crate::support::Db;

const BATCH: usize = 500;
const INCIDENT: &str = "0192f0a0-0000-7000-8000-000000000001";

struct Row {
    cluster: String,
    fault_id: String,
    raw: String,
}

fn rows(n: u64) -> Vec<Row> {
    (0..n)
        .map(|i| Row {
            cluster: format!("c{:05}", i % 100),
            fault_id: format!("{:064x}", i % 500),
            // A notification of the size the simulator sends.
            raw: format!(
                r#"{{"jsonrpc":"2.0","method":"notifications/message","params":{{"level":"warning","logger":"kubernetes/faults","data":{{"subscriptionId":"sub-{i}","cluster":"bench-0","faultId":"{:064x}","faultType":"CrashLoop","severity":"critical","resource":{{"apiVersion":"v1","kind":"Pod","name":"api-{i}-7d9f8b6c5-x2k4q","namespace":"payments","uid":"5f0c2d3e-1a2b-4c3d-8e9f-0a1b2c3d4e5f"}},"context":"Container entered CrashLoopBackOff state, restart count: 3, last exit code: 1, last reason: Error","timestamp":"2026-11-30T01:00:00Z"}}}}}}"#,
                i % 500
            ),
        })
        .collect()
}

/// Rows per second.
pub async fn insert_rows(db: &Db, n: u64) -> f64 {
    // The store creates the schema (and its indexes), as for the pipeline.
    db.store().await.close().await;
    let rows = rows(n);
    let micros = chrono::Utc::now().timestamp_micros();
    match db {
        Db::Sqlite(_) => {
            use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
            let opts: SqliteConnectOptions = db.url().parse().expect("sqlite URL");
            let mut c = sqlx::SqliteConnection::connect_with(
                &opts
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal),
            )
            .await
            .expect("sqlite connection");
            sqlx::query(
                "INSERT INTO incidents (id, cluster, fault_id, fault_type, severity, resource_kind, \
                 resource_name, resource_uid, context, status, occurrences, first_seen, last_seen, \
                 created_at) VALUES (?, 'c00000', 'f', 'CrashLoop', 'critical', 'Pod', 'p', 'u', \
                 'c', 'succeeded', 1, ?, ?, ?)",
            )
            .bind(INCIDENT)
            .bind(micros)
            .bind(micros)
            .bind(micros)
            .execute(&mut c)
            .await
            .expect("incident row");
            let start = Instant::now();
            for chunk in rows.chunks(BATCH) {
                let mut tx = c.begin().await.expect("begin");
                let mut qb: QueryBuilder<sqlx::Sqlite> = QueryBuilder::new(INSERT);
                qb.push_values(chunk, |mut b, r| {
                    b.push_bind(INCIDENT)
                        .push_bind(&r.cluster)
                        .push_bind(&r.fault_id)
                        .push_bind("CrashLoop")
                        .push_bind("critical")
                        .push_bind("payments")
                        .push_bind("Pod")
                        .push_bind("api-0-7d9f8b6c5-x2k4q")
                        .push_bind("5f0c2d3e-1a2b-4c3d-8e9f-0a1b2c3d4e5f")
                        .push_bind("Container entered CrashLoopBackOff state")
                        .push_bind("2026-11-30T01:00:00Z")
                        .push_bind(micros)
                        .push_bind(&r.raw);
                });
                qb.build().execute(&mut *tx).await.expect("insert");
                tx.commit().await.expect("commit");
            }
            n as f64 / start.elapsed().as_secs_f64()
        }
        Db::Postgres(url) => {
            let mut c = sqlx::PgConnection::connect(url)
                .await
                .expect("postgres connection");
            let now = chrono::Utc::now();
            let id: uuid::Uuid = INCIDENT.parse().expect("uuid");
            sqlx::query(
                "INSERT INTO incidents (id, cluster, fault_id, fault_type, severity, resource_kind, \
                 resource_name, resource_uid, context, status, occurrences, first_seen, last_seen, \
                 created_at) VALUES ($1, 'c00000', 'f', 'CrashLoop', 'critical', 'Pod', 'p', 'u', \
                 'c', 'succeeded', 1, $2, $2, $2)",
            )
            .bind(id)
            .bind(now)
            .execute(&mut c)
            .await
            .expect("incident row");
            let start = Instant::now();
            for chunk in rows.chunks(BATCH) {
                let mut tx = c.begin().await.expect("begin");
                let mut qb: QueryBuilder<sqlx::Postgres> = QueryBuilder::new(INSERT);
                qb.push_values(chunk, |mut b, r| {
                    b.push_bind(id)
                        .push_bind(&r.cluster)
                        .push_bind(&r.fault_id)
                        .push_bind("CrashLoop")
                        .push_bind("critical")
                        .push_bind("payments")
                        .push_bind("Pod")
                        .push_bind("api-0-7d9f8b6c5-x2k4q")
                        .push_bind("5f0c2d3e-1a2b-4c3d-8e9f-0a1b2c3d4e5f")
                        .push_bind("Container entered CrashLoopBackOff state")
                        .push_bind("2026-11-30T01:00:00Z")
                        .push_bind(now)
                        .push_bind(&r.raw)
                        .push_unseparated("::json");
                });
                qb.build().execute(&mut *tx).await.expect("insert");
                tx.commit().await.expect("commit");
            }
            n as f64 / start.elapsed().as_secs_f64()
        }
    }
}

const INSERT: &str = "INSERT INTO fault_occurrences (incident_id, cluster, fault_id, fault_type, \
     severity, namespace, resource_kind, resource_name, resource_uid, context, server_timestamp, \
     received_at, raw) ";
