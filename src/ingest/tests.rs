//! Writer behaviour that needs fault injection (a panic inside the writer), on a real SQLite
//! file. Everything reachable through the public API is tested in `tests/ingest_*.rs`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::fault::{Fault, ResourceRef};
use crate::health::Health;
use crate::store::{ListFilter, Store, StoreOptions};
use crate::supervise::supervise;

async fn sqlite_store(dir: &std::path::Path) -> Store {
    Store::connect(StoreOptions {
        url: format!("sqlite://{}", dir.join("nc.db").display()),
        max_connections: 4,
        acquire_timeout: Duration::from_secs(10),
        dedup_cooldown: Duration::from_secs(1800),
    })
    .await
    .unwrap()
}

fn fault(fault_id: &str) -> ReceivedFault {
    let data = Fault {
        subscription_id: "sub-1".into(),
        cluster: "kind-kind".into(),
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
        context: "restart count: 3".into(),
        timestamp: "2025-12-19T22:11:10+01:00".into(),
    };
    ReceivedFault {
        cluster: "kind-kind".into(),
        raw: serde_json::to_value(&data).unwrap(),
        fault: data,
        received_at: Utc::now(),
        triage_enabled: true,
    }
}

fn opts() -> WriterOptions {
    WriterOptions {
        batch_linger: Duration::from_millis(20),
        ..WriterOptions::default()
    }
}

async fn fault_ids_in_store(store: &Store) -> Vec<String> {
    let mut ids: Vec<String> = store
        .list(&ListFilter {
            limit: Some(1000),
            ..ListFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.fault_id)
        .collect();
    ids.sort();
    ids
}

async fn wait_for(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_panics_mid_commit_is_restarted_and_its_batch_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let (tx, rx) = channel(100);
    let mut writer = IngestWriter::new(rx, store.clone(), Health::new(), opts());
    let panics_left = Arc::new(AtomicU32::new(1));
    let p = panics_left.clone();
    writer.before_commit = Some(Arc::new(move |faults: &[ReceivedFault]| {
        if faults.iter().any(|f| f.fault.fault_id == "b")
            && p.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            panic!("injected writer panic");
        }
    }));

    for id in ["a", "b", "c"] {
        assert!(tx.offer(fault(id)));
    }
    let token = CancellationToken::new();
    let sup = tokio::spawn(supervise(
        "ingest-writer",
        Duration::from_millis(50),
        token.clone(),
        move |t| writer.clone().run(t),
    ));

    wait_for("all three faults", async || {
        fault_ids_in_store(&store).await == ["a", "b", "c"]
    })
    .await;
    assert_eq!(panics_left.load(Ordering::SeqCst), 0, "the hook did panic");
    assert!(tx.offer(fault("d")), "the restarted writer keeps consuming");
    wait_for("the fault sent after the restart", async || {
        fault_ids_in_store(&store).await.len() == 4
    })
    .await;
    token.cancel();
    let report = sup.await.unwrap();
    assert_eq!(report.panics, 1);
    assert_eq!(tx.dropped(), 0);
    assert_eq!(tx.depth(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_panics_two_writers_is_dropped_and_counted_not_retried_forever() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let (tx, rx) = channel(100);
    let mut writer = IngestWriter::new(rx, store.clone(), Health::new(), opts());
    writer.before_commit = Some(Arc::new(|faults: &[ReceivedFault]| {
        if faults.iter().any(|f| f.fault.fault_id == "poison") {
            panic!("poison fault");
        }
    }));
    assert!(tx.offer(fault("poison")));
    let token = CancellationToken::new();
    let sup = tokio::spawn(supervise(
        "ingest-writer",
        Duration::from_millis(10),
        token.clone(),
        move |t| writer.clone().run(t),
    ));
    wait_for("the poison batch to be dropped", async || tx.dropped() == 1).await;
    assert!(tx.offer(fault("good")));
    wait_for("the next fault", async || {
        fault_ids_in_store(&store).await == ["good"]
    })
    .await;
    token.cancel();
    let report = sup.await.unwrap();
    assert_eq!(
        report.panics, 2,
        "first run and one retry panicked, no more"
    );
    assert_eq!(tx.depth(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_writer_holds_the_channel_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let (tx, rx) = channel(10);
    let probe = rx.clone();
    let writer = IngestWriter::new(rx, store.clone(), Health::new(), opts());
    let token = CancellationToken::new();
    let first = tokio::spawn(writer.clone().run(token.clone()));
    wait_for("the first writer to take the inbox", async || {
        probe.slot.lock().unwrap().is_none()
    })
    .await;
    // A second run finds the inbox taken and returns at once instead of competing.
    tokio::time::timeout(Duration::from_secs(5), writer.clone().run(token.clone()))
        .await
        .expect("the second writer returns at once");
    assert!(tx.offer(fault("x")));
    wait_for("the first writer to write", async || {
        fault_ids_in_store(&store).await == ["x"]
    })
    .await;
    token.cancel();
    first.await.unwrap();
    assert!(
        probe.slot.lock().unwrap().is_some(),
        "the inbox is given back when the writer stops"
    );
}
