//! A real PostgreSQL outage: the server is stopped while faults keep arriving and started again.
//! Below the buffer bound nothing is lost and everything lands in arrival order; above it
//! exactly the overflow (the newest faults) is dropped. Health goes degraded and back.

use crate::support::common;
use crate::support::ingest as ingest_support;

use std::sync::Arc;
use std::time::Duration;

use nightcrier::health::{readiness, Health};
use nightcrier::incident::ConnectionState;
use nightcrier::ingest::{channel, IngestSender, IngestWriter, WriterOptions};
use nightcrier::store::Store;
use tokio_util::sync::CancellationToken;

use common::TestDb;
use ingest_support::{count, expected, interleaved, stored, wait_until};

struct Running {
    db: Arc<TestDb>,
    store: Store,
    tx: IngestSender,
    health: Health,
    token: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn start(capacity: usize) -> Running {
    // The system log is shown when a test fails (another test may have installed it first).
    let _ = nightcrier::telemetry::init_tracing(nightcrier::telemetry::LogFormat::Text, None);
    let db = Arc::new(TestDb::postgres().await);
    let mut opts = db.options();
    // Fail fast while the server is down, so the writer's own backoff paces the retries.
    opts.acquire_timeout = Duration::from_secs(1);
    let store = db.store_with(opts).await;
    let (tx, rx) = channel(capacity);
    let health = Health::new();
    let writer_opts = WriterOptions {
        batch_max: 50,
        retry_max: Duration::from_millis(500),
        ..WriterOptions::default()
    };
    let writer = IngestWriter::new(rx, store.clone(), health.clone(), writer_opts);
    let token = CancellationToken::new();
    let task = tokio::spawn(writer.run(token.clone()));
    Running {
        db,
        store,
        tx,
        health,
        token,
        task,
    }
}

async fn stop_server(db: &Arc<TestDb>) {
    let db = db.clone();
    tokio::task::spawn_blocking(move || db.pg_server().expect("a PostgreSQL database").stop())
        .await
        .unwrap();
}

async fn start_server(db: &Arc<TestDb>) {
    let db = db.clone();
    tokio::task::spawn_blocking(move || {
        db.pg_server().expect("a PostgreSQL database").start_again()
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_loses_nothing_below_the_buffer_bound() {
    let r = start(1_000).await;
    let offered = interleaved(900, &["north", "south"], 6);
    let (before, during) = offered.split_at(300);

    for f in before {
        assert!(r.tx.offer(f.clone()));
    }
    wait_until(
        "the first faults written",
        Duration::from_secs(30),
        async || r.tx.depth() == 0,
    )
    .await;
    assert_eq!(count(&stored(&r.store).await), 300);

    stop_server(&r.db).await;
    for f in during {
        assert!(r.tx.offer(f.clone()), "below the bound, nothing is dropped");
    }
    r.tx.report_state(ConnectionState {
        cluster: "north".into(),
        state: nightcrier::incident::ConnectionPhase::Subscribed,
        subscription_id: Some("sub-outage".into()),
        last_error: None,
        last_event_at: None,
        events_received: 450,
        events_malformed: 0,
        reconnects: 0,
        updated_at: chrono::Utc::now(),
    });
    wait_until("ingest degraded", Duration::from_secs(30), async || {
        r.health.is_ingest_degraded()
    })
    .await;
    assert_eq!(r.tx.depth(), 600, "every fault of the outage is held");
    let ready = readiness(&r.health, &r.store, Duration::from_secs(2)).await;
    assert!(!ready.ready);
    assert!(
        ready
            .reasons
            .iter()
            .any(|r| r.starts_with("ingest degraded")),
        "{ready:?}"
    );
    assert!(
        ready
            .reasons
            .iter()
            .any(|r| r.starts_with("database unreachable")),
        "{ready:?}"
    );

    start_server(&r.db).await;
    wait_until("the buffer written", Duration::from_secs(60), async || {
        r.tx.depth() == 0
    })
    .await;
    let ingest = r.health.ingest();
    assert!(!ingest.degraded, "{ingest:?}");
    assert_eq!(ingest.degraded_episodes, 1);
    assert_eq!(r.tx.dropped(), 0);
    // Exactly once each, in arrival order per (cluster, faultId), across the outage.
    assert_eq!(stored(&r.store).await, expected(&offered));
    wait_until(
        "the state reported during the outage",
        Duration::from_secs(10),
        async || {
            r.store
                .connection_states()
                .await
                .unwrap()
                .iter()
                .any(|s| s.cluster == "north" && s.events_received == 450)
        },
    )
    .await;
    assert!(
        readiness(&r.health, &r.store, Duration::from_secs(2))
            .await
            .ready
    );

    r.token.cancel();
    r.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_beyond_the_bound_drops_exactly_the_newest_overflow() {
    let r = start(100).await;
    let offered = interleaved(130, &["solo"], 3);

    stop_server(&r.db).await;
    let accepted: Vec<bool> = offered.iter().map(|f| r.tx.offer(f.clone())).collect();
    assert!(accepted[..100].iter().all(|a| *a));
    assert!(accepted[100..].iter().all(|a| !*a));
    assert_eq!(r.tx.dropped(), 30);
    wait_until("ingest degraded", Duration::from_secs(30), async || {
        r.health.is_ingest_degraded()
    })
    .await;
    // The writer holding a batch does not make room: the bound covers it too.
    assert!(!r.tx.offer(offered[0].clone()));
    assert_eq!(r.tx.dropped(), 31);

    start_server(&r.db).await;
    wait_until("the buffer written", Duration::from_secs(60), async || {
        r.tx.depth() == 0
    })
    .await;
    assert_eq!(stored(&r.store).await, expected(&offered[..100]));
    assert!(!r.health.is_ingest_degraded());

    r.token.cancel();
    r.task.await.unwrap();
}
