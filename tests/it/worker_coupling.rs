//! Loose coupling between the halves: the producer's real ingest writer keeps recording while
//! the consumer's runs panic, and the pool keeps running what the writer records.

use crate::support::worker as worker_support;

use std::time::Duration;

use nightcrier::config::IngestConfig;
use nightcrier::health::Health;
use nightcrier::incident::{Incident, IncidentStatus};
use nightcrier::ingest;
use nightcrier::store::{ListFilter, Store};
use nightcrier::worker::WorkerPool;
use tokio_util::sync::CancellationToken;
use worker_support::*;

const LONG: Duration = Duration::from_secs(30);

async fn incidents(store: &Store, cluster: &str) -> Vec<Incident> {
    store
        .list(&ListFilter {
            cluster: Some(cluster.into()),
            limit: Some(1000),
            ..ListFilter::default()
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_runs_do_not_stop_ingestion() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    let (sender, writer) =
        ingest::build(&IngestConfig::default(), store.clone(), Health::new(), None);
    let writer_stop = CancellationToken::new();
    let writer_task = tokio::spawn(writer.run(writer_stop.clone()));

    let runner = FakeRunner::new(|inc| {
        if inc.cluster == "boom" {
            Act::Panic("every boom run panics")
        } else {
            Act::Succeed(Duration::from_millis(5))
        }
    });
    let mut s = settings("t");
    s.max_agents_per_cluster = 3;
    let (soft, hard) = (CancellationToken::new(), CancellationToken::new());
    let pool = WorkerPool::new(store.clone(), runner.clone(), s);
    let pool_task = tokio::spawn(pool.run(soft.clone(), hard.clone()));

    // Waves of faults: each wave's panics happen while the next wave is being ingested.
    for wave in 0..5 {
        for i in 0..10 {
            assert!(sender.offer(fault("boom", &format!("b{wave}-{i}"))));
            assert!(sender.offer(fault("fine", &format!("f{wave}-{i}"))));
        }
        runner.wait_started((wave + 1) * 20, LONG).await;
    }

    let boom = eventually("50 boom incidents, all failed", LONG, || async {
        let v = incidents(&store, "boom").await;
        (v.len() == 50 && v.iter().all(|i| i.status.is_terminal())).then_some(v)
    })
    .await;
    let fine = eventually("50 fine incidents, all done", LONG, || async {
        let v = incidents(&store, "fine").await;
        (v.len() == 50 && v.iter().all(|i| i.status.is_terminal())).then_some(v)
    })
    .await;
    assert!(boom.iter().all(|i| i.status == IncidentStatus::Failed
        && i.failure_reason
            .as_deref()
            .is_some_and(|r| r.starts_with("panic:"))));
    assert!(fine.iter().all(|i| i.status == IncidentStatus::Succeeded));
    assert_eq!(sender.dropped(), 0);
    assert!(!writer_task.is_finished(), "the writer is still running");

    soft.cancel();
    pool_task.await.unwrap();
    writer_stop.cancel();
    writer_task.await.unwrap();
}
