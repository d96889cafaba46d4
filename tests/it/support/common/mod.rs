//! Test support shared by every integration test: stores on a real SQLite file or a real
//! PostgreSQL server, and fault builders.
//!
//! - [`TestDb::sqlite()`] / [`TestDb::postgres()`]: a fresh, empty database of that backend;
//!   `db.store().await` (or `db.store_with(opts)`) opens a new pool on it (call it again for a
//!   second, independent pool: a second "process").
//! - [`PgServer`] (in `pg.rs`): a throwaway PostgreSQL server that tests may `stop()` and
//!   `start_again()`, or the server of `NIGHTCRIER_TEST_POSTGRES_URL`.
//! - [`fault`] / [`fault_at`]: a `ReceivedFault` shaped like the protocol's reference example;
//!   [`pod_fault`]: one whose faultId is derived like the server's, one incident per pod.
//! - [`incident`]: a running incident as the store would hand it out; [`cluster`]: a cluster's
//!   configuration with the defaults.
//!
//! There is no silent skip anywhere: without PostgreSQL, PostgreSQL tests panic with the reason.
#![allow(dead_code)]

pub mod gosqlite;
pub mod pg;

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use nightcrier::config::{ClusterConfig, McpConfig, TriageConfig};
use nightcrier::fault::{fault_id, Fault, ReceivedFault, ResourceRef};
use nightcrier::incident::{Incident, IncidentStatus};
use nightcrier::store::{Store, StoreOptions};

pub use pg::PgServer;

/// Options as the defaults of `database.*` and `dedup.*` would give them.
pub fn store_options(url: &str) -> StoreOptions {
    StoreOptions {
        url: url.to_string(),
        max_connections: 10,
        acquire_timeout: Duration::from_secs(10),
        dedup_cooldown: Duration::from_secs(30 * 60),
    }
}

/// The URL of `dir/nightcrier.db`.
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("nightcrier.db").display())
}

/// A store on a new SQLite file in `dir`, migrations applied.
pub async fn sqlite_store(dir: &Path) -> Store {
    Store::connect(store_options(&sqlite_url(dir)))
        .await
        .expect("opening the SQLite store")
}

static OTHER_DATABASES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A fresh database of one backend. Keep it alive for the whole test (it owns the SQLite
/// directory or the PostgreSQL server).
pub enum TestDb {
    Sqlite(tempfile::TempDir),
    Postgres { server: PgServer, url: String },
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        TestDb::Sqlite(tempfile::tempdir().expect("creating a temporary directory"))
    }

    /// A fresh database on a throwaway (or `NIGHTCRIER_TEST_POSTGRES_URL`) server.
    pub async fn postgres() -> TestDb {
        let server = tokio::task::spawn_blocking(PgServer::start)
            .await
            .expect("starting PostgreSQL");
        let url = server.fresh_database().await;
        TestDb::Postgres { server, url }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            TestDb::Sqlite(_) => "sqlite",
            TestDb::Postgres { .. } => "postgres",
        }
    }

    pub fn url(&self) -> String {
        match self {
            TestDb::Sqlite(dir) => sqlite_url(dir.path()),
            TestDb::Postgres { url, .. } => url.clone(),
        }
    }

    pub fn options(&self) -> StoreOptions {
        store_options(&self.url())
    }

    /// A new store (its own pool) with the default options.
    pub async fn store(&self) -> Store {
        self.store_with(self.options()).await
    }

    pub async fn store_with(&self, opts: StoreOptions) -> Store {
        Store::connect(opts).await.expect("opening the store")
    }

    /// The URL of another fresh, empty database of the same backend (a new file in the same
    /// directory, or a new database on the same server).
    pub async fn another_database(&self) -> String {
        match self {
            TestDb::Sqlite(dir) => {
                let n = OTHER_DATABASES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                format!(
                    "sqlite://{}",
                    dir.path().join(format!("other-{n}.db")).display()
                )
            }
            TestDb::Postgres { server, .. } => server.fresh_database().await,
        }
    }

    /// The PostgreSQL server, for tests that stop and start it.
    pub fn pg_server(&self) -> Option<&PgServer> {
        match self {
            TestDb::Postgres { server, .. } => Some(server),
            TestDb::Sqlite(_) => None,
        }
    }
}

/// A CrashLoop fault on a pod, received now, triage enabled.
pub fn fault(cluster: &str, fault_id: &str) -> ReceivedFault {
    fault_at(cluster, fault_id, Utc::now())
}

/// Like [`fault`], received at `received_at`.
pub fn fault_at(cluster: &str, fault_id: &str, received_at: DateTime<Utc>) -> ReceivedFault {
    let data = Fault {
        subscription_id: "sub-5f1c2e9a".into(),
        cluster: cluster.into(),
        fault_id: fault_id.into(),
        fault_type: "CrashLoop".into(),
        severity: "critical".into(),
        resource: ResourceRef {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: format!("pod-{fault_id}"),
            namespace: Some("default".into()),
            uid: format!("uid-{fault_id}"),
        },
        context: "Container entered CrashLoopBackOff state, restart count: 3".into(),
        timestamp: "2025-12-19T22:11:10+01:00".into(),
    };
    let raw = serde_json::to_value(&data).expect("a fault serialises");
    ReceivedFault {
        cluster: cluster.into(),
        fault: data,
        received_at,
        raw,
        triage_enabled: true,
    }
}

/// A CrashLoop fault of `cluster` about pod `name`, its faultId derived from the pod's uid as
/// the server derives it: distinct names give distinct incidents.
pub fn pod_fault(cluster: &str, name: &str) -> ReceivedFault {
    let uid = format!("uid-{name}");
    let mut f = fault(cluster, &fault_id(cluster, "CrashLoop", &uid, "app"));
    f.fault.subscription_id = "sub-1".into();
    f.fault.resource.name = name.into();
    f.fault.resource.uid = uid;
    f.fault.context = format!("pod {name} restarted 5 times");
    f.fault.timestamp = Utc::now().to_rfc3339();
    f.raw = serde_json::to_value(&f.fault).expect("a fault serialises");
    f
}

/// An incident of `cluster` in its first run, as a claim hands it out.
pub fn incident(cluster: &str) -> Incident {
    let now = Utc::now();
    Incident {
        id: uuid::Uuid::now_v7(),
        cluster: cluster.into(),
        fault_id: "670b5093e8ce7fc6".into(),
        fault_type: "CrashLoop".into(),
        severity: "critical".into(),
        namespace: Some("shop".into()),
        resource_kind: "Pod".into(),
        resource_name: "cart-7d9f".into(),
        resource_uid: "3f0c1a52-6d7e-4b8a-9c1d-2e5f7a9b0c11".into(),
        context: "Container entered CrashLoopBackOff state, restart count: 3".into(),
        status: IncidentStatus::Running,
        failure_reason: None,
        occurrences: 2,
        first_seen: now,
        last_seen: now,
        created_at: now,
        started_at: Some(now),
        finished_at: None,
        attempt: 1,
        lease_owner: None,
        lease_expires_at: None,
        resolved_at: None,
    }
}

/// The configuration of cluster `name` served by the MCP server at `endpoint`, defaults elsewhere.
pub fn cluster(name: &str, endpoint: &str) -> ClusterConfig {
    ClusterConfig {
        name: name.into(),
        mcp: McpConfig::new(endpoint),
        triage: TriageConfig::default(),
        agent: None,
        evidence: Default::default(),
        environment: None,
        labels: Default::default(),
    }
}

/// Generates one `#[tokio::test]` per backend for each named `async fn(&TestDb)`:
/// `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! store_conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = $crate::support::common::TestDb::sqlite();
                    super::$name(&db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = $crate::support::common::TestDb::postgres().await;
                    super::$name(&db).await;
                }
            )*
        }
    };
}
