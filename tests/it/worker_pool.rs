//! The pool with runners the tests control, on a real SQLite file and a real PostgreSQL server
//! (each test runs as `sqlite::name` and `postgres::name`).

use crate::support::common;
use crate::support::worker as worker_support;

use std::collections::HashSet;
use std::time::Duration;

use common::TestDb;
use nightcrier::incident::IncidentStatus;
use nightcrier::store::ClaimLimits;
use nightcrier::worker::{Rescuer, WorkerPool, RESTART_REASON, SHUTDOWN_REASON};
use tokio_util::sync::CancellationToken;
use worker_support::*;

const LONG: Duration = Duration::from_secs(20);

async fn dispatch_claims_oldest_first_one_per_cluster(db: &TestDb) {
    let store = db.store().await;
    let ids = record(
        &store,
        vec![
            fault("a", "a1"),
            fault("b", "b1"),
            fault("a", "a2"),
            fault("b", "b2"),
            fault("c", "c1"),
        ],
    )
    .await;
    let runner = FakeRunner::new(|_| Act::UntilReleased);
    let mut s = settings("t");
    s.max_concurrent_agents = 2;
    let mut pool = WorkerPool::new(store.clone(), runner.clone(), s);

    assert_eq!(pool.dispatch_once().await.unwrap(), 2);
    assert_eq!(
        pool.dispatch_once().await.unwrap(),
        0,
        "both slots are busy"
    );
    runner.wait_started(2, LONG).await;
    let started: HashSet<_> = runner.spans().iter().map(|s| s.incident_id).collect();
    assert_eq!(
        started,
        HashSet::from([ids[0], ids[1]]),
        "oldest of each cluster"
    );
    for id in [ids[0], ids[1]] {
        let inc = get(&store, id).await;
        assert_eq!(inc.status, IncidentStatus::Running);
        assert_eq!(inc.attempt, 1);
        assert_eq!(inc.lease_owner.as_deref(), Some(pool.owner()));
    }

    runner.release();
    pool.join_next().await.unwrap();
    pool.join_next().await.unwrap();
    assert!(pool.join_next().await.is_none());
    // a1 and b1 are done: the next oldest of a and b are claimable, c1 waits for a slot.
    assert_eq!(pool.dispatch_once().await.unwrap(), 2);
    runner.wait_started(4, LONG).await;
    let second: HashSet<_> = runner.spans()[2..].iter().map(|s| s.incident_id).collect();
    assert_eq!(second, HashSet::from([ids[2], ids[3]]));
    pool.join_next().await.unwrap();
    pool.join_next().await.unwrap();
    for id in &ids[..4] {
        assert_eq!(get(&store, *id).await.status, IncidentStatus::Succeeded);
    }
    assert_eq!(get(&store, ids[4]).await.status, IncidentStatus::Pending);
}

async fn a_panic_fails_only_its_incident_and_ingestion_goes_on(db: &TestDb) {
    let store = db.store().await;
    let runner = FakeRunner::new(|inc| {
        if inc.resource_name.starts_with("boom") {
            Act::Panic("injected failure in the run path")
        } else {
            Act::Succeed(Duration::from_millis(20))
        }
    });
    let mut ids = record(
        &store,
        vec![
            fault("a", "boom-1"),
            fault("b", "ok-1"),
            fault("c", "boom-2"),
        ],
    )
    .await;
    let (soft, hard) = (CancellationToken::new(), CancellationToken::new());
    let pool = WorkerPool::new(store.clone(), runner.clone(), settings("t"));
    let task = tokio::spawn(pool.run(soft.clone(), hard.clone()));

    runner.wait_started(3, LONG).await;
    // Recording goes on while runs panic, and the pool picks the new incidents up.
    ids.extend(record(&store, vec![fault("a", "ok-2"), fault("d", "ok-3")]).await);
    let done = all_terminal(&store, &ids, LONG).await;
    for inc in &done {
        if inc.resource_name.starts_with("boom") {
            assert_eq!(inc.status, IncidentStatus::Failed, "{}", inc.resource_name);
            let reason = inc.failure_reason.as_deref().unwrap_or_default();
            assert!(
                reason.starts_with("panic:") && reason.contains("injected failure"),
                "reason was {reason:?}"
            );
        } else {
            assert_eq!(
                inc.status,
                IncidentStatus::Succeeded,
                "{}",
                inc.resource_name
            );
        }
    }
    soft.cancel();
    task.await.unwrap();
    let runs = store.agent_runs(ids[0]).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].outcome, Some(IncidentStatus::Failed));
}

async fn shutdown_lets_a_run_finish_within_the_grace(db: &TestDb) {
    let store = db.store().await;
    let ids = record(&store, vec![fault("a", "p")]).await;
    let runner = FakeRunner::new(|_| Act::UntilReleased);
    // One slot, held by the run: the pool cannot be in the middle of a claim when the stop comes
    // (a claim already in flight at the signal may still start its run).
    let mut s = settings("t");
    s.max_concurrent_agents = 1;
    let (soft, hard) = (CancellationToken::new(), CancellationToken::new());
    let pool = WorkerPool::new(store.clone(), runner.clone(), s);
    let task = tokio::spawn(pool.run(soft.clone(), hard.clone()));
    runner.wait_started(1, LONG).await;

    soft.cancel();
    // New work arriving during the stop is left for the next start.
    let late = record(&store, vec![fault("b", "late")]).await;
    runner.release();
    tokio::time::timeout(LONG, task).await.unwrap().unwrap();

    assert_eq!(get(&store, ids[0]).await.status, IncidentStatus::Succeeded);
    let late = get(&store, late[0]).await;
    assert_eq!(late.status, IncidentStatus::Pending);
    assert_eq!(late.attempt, 0);
    assert_eq!(runner.spans().len(), 1);
}

async fn shutdown_past_the_grace_terminates_and_requeues(db: &TestDb) {
    let store = db.store().await;
    let ids = record(&store, vec![fault("a", "p"), fault("b", "q")]).await;
    let runner = FakeRunner::new(|_| Act::UntilCancelled);
    let mut s = settings("t");
    s.shutdown_grace = Duration::from_millis(200);
    let (soft, hard) = (CancellationToken::new(), CancellationToken::new());
    let pool = WorkerPool::new(store.clone(), runner.clone(), s);
    let task = tokio::spawn(pool.run(soft.clone(), hard.clone()));
    runner.wait_started(2, LONG).await;

    soft.cancel();
    tokio::time::timeout(LONG, task).await.unwrap().unwrap();

    assert!(runner
        .spans()
        .iter()
        .all(|s| s.cancelled && s.end.is_some()));
    for id in ids {
        let inc = get(&store, id).await;
        assert_eq!(inc.status, IncidentStatus::Pending);
        assert_eq!(inc.attempt, 1, "the interrupted attempt counts");
        let runs = store.agent_runs(id).await.unwrap();
        assert_eq!(runs.len(), 1);
        assert!(runs[0].finished_at.is_some());
        assert_eq!(runs[0].reason.as_deref(), Some(SHUTDOWN_REASON));
    }
}

async fn a_second_signal_skips_the_grace(db: &TestDb) {
    let store = db.store().await;
    let ids = record(&store, vec![fault("a", "p")]).await;
    let runner = FakeRunner::new(|_| Act::UntilCancelled);
    let mut s = settings("t");
    s.shutdown_grace = Duration::from_secs(3600);
    let (soft, hard) = (CancellationToken::new(), CancellationToken::new());
    let pool = WorkerPool::new(store.clone(), runner.clone(), s);
    let task = tokio::spawn(pool.run(soft.clone(), hard.clone()));
    runner.wait_started(1, LONG).await;

    soft.cancel();
    // The pool is now waiting out an hour of grace; the second signal ends that.
    hard.cancel();
    tokio::time::timeout(LONG, task).await.unwrap().unwrap();
    let inc = get(&store, ids[0]).await;
    assert_eq!(inc.status, IncidentStatus::Pending);
    assert_eq!(inc.attempt, 1);
}

async fn restart_requeues_what_a_crashed_pool_left_running_and_runs_it_again(db: &TestDb) {
    let store = db.store().await;
    let ids = record(&store, vec![fault("a", "p"), fault("b", "q")]).await;

    // A pool claims both, then "crashes": dropped without any bookkeeping.
    let blocked = FakeRunner::new(|_| Act::UntilReleased);
    let mut crashed = WorkerPool::new(store.clone(), blocked.clone(), settings("host-1"));
    assert_eq!(crashed.dispatch_once().await.unwrap(), 2);
    blocked.wait_started(2, LONG).await;
    for id in &ids {
        eventually("the agent's pid to be recorded", LONG, || async {
            store.agent_runs(*id).await.unwrap()[0].pid
        })
        .await;
    }
    drop(crashed);
    for id in &ids {
        assert_eq!(get(&store, *id).await.status, IncidentStatus::Running);
    }
    // Pending work left behind is picked up too.
    let more = record(&store, vec![fault("c", "r")]).await;

    let runner = FakeRunner::new(|_| Act::Succeed(Duration::ZERO));
    let (soft, hard) = (CancellationToken::new(), CancellationToken::new());
    let pool = WorkerPool::new(store.clone(), runner.clone(), settings("host-1"));
    let task = tokio::spawn(pool.run(soft.clone(), hard.clone()));
    let all: Vec<_> = ids.iter().chain(&more).copied().collect();
    let done = all_terminal(&store, &all, LONG).await;
    soft.cancel();
    task.await.unwrap();

    assert!(done.iter().all(|i| i.status == IncidentStatus::Succeeded));
    let killed = runner.killed.lock().unwrap().clone();
    let killed_ids: HashSet<_> = killed.iter().map(|k| k.0).collect();
    assert_eq!(killed_ids, HashSet::from([ids[0], ids[1]]));
    assert!(
        killed
            .iter()
            .all(|k| k.1 == 1 && k.2 == Some(std::process::id() as i32)),
        "the leftover's recorded pid is handed to the kill: {killed:?}"
    );
    for id in &ids {
        let runs = store.agent_runs(*id).await.unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].reason.as_deref(), Some(RESTART_REASON));
        assert_eq!(runs[1].attempt, 2);
        assert_eq!(runs[1].outcome, Some(IncidentStatus::Succeeded));
    }
}

async fn restart_leaves_other_instances_leases_alone(db: &TestDb) {
    let store = db.store().await;
    let ids = record(&store, vec![fault("a", "p")]).await;
    let blocked = FakeRunner::new(|_| Act::UntilReleased);
    let mut other = WorkerPool::new(store.clone(), blocked.clone(), settings("host-2"));
    assert_eq!(other.dispatch_once().await.unwrap(), 1);

    let runner = FakeRunner::new(|_| Act::Succeed(Duration::ZERO));
    let mut pool = WorkerPool::new(store.clone(), runner.clone(), settings("host-1"));
    let counts = pool.reconcile().await.unwrap();
    assert_eq!(counts.requeued, 0);
    assert!(runner.killed.lock().unwrap().is_empty());
    let inc = get(&store, ids[0]).await;
    assert_eq!(inc.status, IncidentStatus::Running);
    assert_eq!(inc.lease_owner.as_deref(), Some(other.owner()));
    blocked.release();
    other.join_next().await.unwrap();
    assert_eq!(get(&store, ids[0]).await.status, IncidentStatus::Succeeded);
}

async fn a_lost_lease_stops_the_run_and_the_incident_stays_cancelled(db: &TestDb) {
    let store = db.store().await;
    let ids = record(&store, vec![fault("a", "p")]).await;
    let runner = FakeRunner::new(|_| Act::UntilCancelled);
    let mut s = settings("t");
    s.heartbeat_interval = Duration::from_millis(50);
    let mut pool = WorkerPool::new(store.clone(), runner.clone(), s);
    assert_eq!(pool.dispatch_once().await.unwrap(), 1);
    runner.wait_started(1, LONG).await;

    store.cancel(ids[0]).await.unwrap();
    tokio::time::timeout(LONG, pool.join_next())
        .await
        .expect("the heartbeat notices the lost lease and stops the run")
        .unwrap();
    assert!(runner.spans()[0].cancelled);
    assert_eq!(pool.running(), 0);
    assert_eq!(get(&store, ids[0]).await.status, IncidentStatus::Cancelled);
}

async fn heartbeats_keep_a_long_run_leased(db: &TestDb) {
    let store = db.store().await;
    let ids = record(&store, vec![fault("a", "p")]).await;
    let runner = FakeRunner::new(|_| Act::Succeed(Duration::from_millis(1500)));
    let mut s = settings("t");
    s.lease_duration = Duration::from_millis(400);
    s.heartbeat_interval = Duration::from_millis(50);
    s.rescue_interval = Duration::from_millis(50);
    let (soft, hard) = (CancellationToken::new(), CancellationToken::new());
    let pool = WorkerPool::new(store.clone(), runner.clone(), s);
    let task = tokio::spawn(pool.run(soft.clone(), hard.clone()));
    let done = all_terminal(&store, &ids, LONG).await;
    soft.cancel();
    task.await.unwrap();
    assert_eq!(done[0].status, IncidentStatus::Succeeded);
    assert_eq!(
        done[0].attempt, 1,
        "never rescued although the run outlived its lease 3 times"
    );
    assert_eq!(runner.spans().len(), 1);
}

async fn the_rescuer_returns_expired_leases_then_fails_them(db: &TestDb) {
    let store = db.store().await;
    let ids = record(&store, vec![fault("a", "p")]).await;
    let limits = ClaimLimits {
        max_concurrent_agents: 5,
        max_agents_per_cluster: 1,
        lease: Duration::from_millis(1),
    };
    let rescuer = Rescuer::new(store.clone(), Duration::from_millis(10), 2);

    // Nothing expired: nothing to do.
    assert_eq!(rescuer.run_once().await.unwrap().requeued, 0);

    // Two workers claim and die; the first expiry requeues, the second fails for good.
    for (round, want) in [(1, IncidentStatus::Pending), (2, IncidentStatus::Failed)] {
        let c = store.claim("dead/boot", limits).await.unwrap().unwrap();
        assert_eq!((c.incident.id, c.attempt), (ids[0], round));
        let counts = eventually("the lease to expire", LONG, || async {
            let c = rescuer.run_once().await.unwrap();
            (c.requeued + c.failed > 0).then_some(c)
        })
        .await;
        let inc = get(&store, ids[0]).await;
        assert_eq!(inc.status, want);
        if want == IncidentStatus::Failed {
            assert_eq!(counts.failed, 1);
            assert!(inc.failure_reason.unwrap().contains("lease expired"));
        } else {
            assert_eq!(counts.requeued, 1);
        }
    }

    // The loop form stops when told.
    let stop = CancellationToken::new();
    let task = tokio::spawn(rescuer.run(stop.clone()));
    stop.cancel();
    tokio::time::timeout(LONG, task).await.unwrap().unwrap();
}

async fn a_new_incident_wakes_the_dispatcher_without_waiting_for_the_tick(db: &TestDb) {
    let store = db.store().await;
    let runner = FakeRunner::new(|_| Act::Succeed(Duration::ZERO));
    let mut s = settings("t");
    // The tick would take an hour: only the wake-up can start the run in time.
    s.poll_interval = Duration::from_secs(3600);
    let (soft, hard) = (CancellationToken::new(), CancellationToken::new());
    let pool = WorkerPool::new(store.clone(), runner.clone(), s);
    let task = tokio::spawn(pool.run(soft.clone(), hard.clone()));
    // Let the pool reach its idle wait (its first, immediate tick has passed).
    for round in 1..=3 {
        let ids = record(&store, vec![fault("a", &format!("p{round}"))]).await;
        runner.wait_started(round, LONG).await;
        all_terminal(&store, &ids, LONG).await;
    }
    soft.cancel();
    task.await.unwrap();
}

async fn limits_hold_with_thirty_incidents_over_four_clusters(db: &TestDb) {
    let store = db.store().await;
    let runner = FakeRunner::new(|_| Act::Succeed(Duration::from_millis(30)));
    let mut s = settings("t");
    s.max_concurrent_agents = 2;
    s.max_agents_per_cluster = 1;
    let faults = (0..30)
        .map(|i| fault(&format!("c{}", i % 4), &format!("p{i}")))
        .collect();
    let ids = record(&store, faults).await;
    let (soft, hard) = (CancellationToken::new(), CancellationToken::new());
    let pool = WorkerPool::new(store.clone(), runner.clone(), s);
    let task = tokio::spawn(pool.run(soft.clone(), hard.clone()));
    let done = all_terminal(&store, &ids, Duration::from_secs(60)).await;
    soft.cancel();
    task.await.unwrap();

    assert!(done.iter().all(|i| i.status == IncidentStatus::Succeeded));
    let spans = runner.spans();
    assert_eq!(spans.len(), 30);
    check_limits(
        &spans
            .iter()
            .map(|s| (s.cluster.clone(), s.start, s.end.unwrap()))
            .collect::<Vec<_>>(),
        2,
        1,
    );
}

/// At every start, counts the runs in progress (started before, not yet ended).
fn check_limits<T: PartialOrd + Copy>(spans: &[(String, T, T)], total: usize, per_cluster: usize) {
    let mut max_seen = 0;
    for (cluster, start, _) in spans {
        let live: Vec<_> = spans
            .iter()
            .filter(|(_, s, e)| s <= start && e > start)
            .collect();
        let same = live.iter().filter(|(c, _, _)| c == cluster).count();
        assert!(live.len() <= total, "{} runs at once", live.len());
        assert!(same <= per_cluster, "{same} runs at once on {cluster}");
        max_seen = max_seen.max(live.len());
    }
    assert_eq!(max_seen, total, "the pool should use both slots");
}

crate::store_conformance!(
    dispatch_claims_oldest_first_one_per_cluster,
    a_panic_fails_only_its_incident_and_ingestion_goes_on,
    shutdown_lets_a_run_finish_within_the_grace,
    shutdown_past_the_grace_terminates_and_requeues,
    a_second_signal_skips_the_grace,
    restart_requeues_what_a_crashed_pool_left_running_and_runs_it_again,
    restart_leaves_other_instances_leases_alone,
    a_lost_lease_stops_the_run_and_the_incident_stays_cancelled,
    heartbeats_keep_a_long_run_leased,
    the_rescuer_returns_expired_leases_then_fails_them,
    a_new_incident_wakes_the_dispatcher_without_waiting_for_the_tick,
    limits_hold_with_thirty_incidents_over_four_clusters,
);
