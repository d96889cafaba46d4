//! Several nightcrier consumers sharing one PostgreSQL database: each pool has its own
//! connection pool (its own `Store`), as separate processes would.

use crate::support::common;
use crate::support::stub;
use crate::support::worker as worker_support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::TestDb;
use nightcrier::agent::AgentRunner;
use nightcrier::incident::IncidentStatus;
use nightcrier::worker::WorkerPool;
use stub::*;
use tokio_util::sync::CancellationToken;
use worker_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_on_one_postgres_share_the_limits() {
    let db = TestDb::postgres().await;
    let rig = Rig::with_store(tempfile::tempdir().unwrap(), db.store().await);
    let other_store = db.store().await;
    let ids = record(
        &rig.store,
        (0..30)
            .map(|i| fault(&format!("brief-{}", i % 4), &format!("p{i}")))
            .collect(),
    )
    .await;

    let mut s = rig.settings();
    s.max_concurrent_agents = 2;
    s.max_agents_per_cluster = 1;
    // Completions elsewhere send no wake-up: the tick is what lets the other consumer in.
    s.poll_interval = Duration::from_millis(20);
    let mut s_a = s.clone();
    s_a.instance = "host-a".into();
    let mut s_b = s;
    s_b.instance = "host-b".into();
    let runner = Arc::new(AgentRunner::new(&rig.config));
    let a = WorkerPool::new(rig.store.clone(), runner.clone(), s_a);
    let b = WorkerPool::new(other_store.clone(), runner, s_b);
    let (soft, hard) = (CancellationToken::new(), CancellationToken::new());
    let ta = tokio::spawn(a.run(soft.clone(), hard.clone()));
    let tb = tokio::spawn(b.run(soft.clone(), hard.clone()));
    let done = all_terminal(&rig.store, &ids, Duration::from_secs(60)).await;
    soft.cancel();
    ta.await.unwrap();
    tb.await.unwrap();

    assert!(done.iter().all(|i| i.status == IncidentStatus::Succeeded));
    assert!(done.iter().all(|i| i.attempt == 1), "each ran exactly once");
    check_timeline(&rig.timeline(), 30, 2, 1);
    let mut owners = HashSet::new();
    for id in &ids {
        for run in rig.store.agent_runs(*id).await.unwrap() {
            owners.insert(run.worker.split('/').next().unwrap().to_string());
        }
    }
    assert_eq!(
        owners,
        HashSet::from(["host-a".to_string(), "host-b".to_string()]),
        "both consumers ran agents"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_recorded_by_another_process_wakes_the_dispatcher() {
    let db = TestDb::postgres().await;
    let consumer_store = db.store().await;
    let producer_store = db.store().await;
    let runner = FakeRunner::new(|_| Act::Succeed(Duration::ZERO));
    let mut s = settings("consumer");
    // An hour-long tick: only LISTEN/NOTIFY can start these runs in time.
    s.poll_interval = Duration::from_secs(3600);
    let pool = WorkerPool::new(consumer_store.clone(), runner.clone(), s);
    let (soft, hard) = (CancellationToken::new(), CancellationToken::new());
    let task = tokio::spawn(pool.run(soft.clone(), hard.clone()));
    for round in 1..=3 {
        let ids = record(&producer_store, vec![fault("a", &format!("p{round}"))]).await;
        runner.wait_started(round, LONG).await;
        all_terminal(&consumer_store, &ids, LONG).await;
    }
    soft.cancel();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stub_agent_outcomes_on_postgres() {
    let db = TestDb::postgres().await;
    let rig = Rig::with_store(tempfile::tempdir().unwrap(), db.store().await);
    let clusters = ["ok", "exit2", "missing", "tiny", "slow"];
    let ids = record(&rig.store, clusters.iter().map(|c| fault(c, "p")).collect()).await;
    let done = run_until_done(&rig, rig.settings(), &ids).await;
    let status = |c: &str| done.iter().find(|i| i.cluster == c).unwrap().status;
    assert_eq!(status("ok"), IncidentStatus::Succeeded);
    assert_eq!(status("exit2"), IncidentStatus::Failed);
    assert_eq!(status("missing"), IncidentStatus::Failed);
    assert_eq!(status("tiny"), IncidentStatus::Failed);
    assert_eq!(status("slow"), IncidentStatus::TimedOut);
}
