//! The pool with the real agent runner: stub agents are small shell scripts run as real child
//! processes in their own process groups, against a real SQLite file.

use crate::support::stub;
use crate::support::worker as worker_support;

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nightcrier::agent::{live_processes_with_marker, marker_value, AgentRunner, MARKER_VAR};
use nightcrier::incident::IncidentStatus;
use nightcrier::store::ClaimLimits;
use nightcrier::worker::{PoolSettings, WorkerPool, RESTART_REASON, SHUTDOWN_REASON};
use stub::*;
use tokio_util::sync::CancellationToken;
use worker_support::*;

#[tokio::test]
async fn every_outcome_of_a_stub_agent_is_recorded() {
    let rig = Rig::new().await;
    let clusters = ["ok", "exit2", "missing", "tiny", "slow"];
    let ids = record(&rig.store, clusters.iter().map(|c| fault(c, "p")).collect()).await;
    let done = run_until_done(&rig, rig.settings(), &ids).await;

    let by_cluster = |c: &str| done.iter().find(|i| i.cluster == c).unwrap().clone();
    let ok = by_cluster("ok");
    assert_eq!(ok.status, IncidentStatus::Succeeded, "{ok:?}");
    let exit2 = by_cluster("exit2");
    assert_eq!(exit2.status, IncidentStatus::Failed);
    assert!(
        exit2
            .failure_reason
            .as_deref()
            .unwrap()
            .contains("exit code 2"),
        "{exit2:?}"
    );
    let missing = by_cluster("missing");
    assert_eq!(missing.status, IncidentStatus::Failed);
    assert!(
        missing
            .failure_reason
            .as_deref()
            .unwrap()
            .contains("missing"),
        "{missing:?}"
    );
    let tiny = by_cluster("tiny");
    assert_eq!(tiny.status, IncidentStatus::Failed);
    assert!(
        tiny.failure_reason
            .as_deref()
            .unwrap()
            .contains("too small"),
        "{tiny:?}"
    );
    let slow = by_cluster("slow");
    assert_eq!(slow.status, IncidentStatus::TimedOut, "{slow:?}");

    for inc in &done {
        let runs = rig.store.agent_runs(inc.id).await.unwrap();
        assert_eq!(runs.len(), 1, "{}", inc.cluster);
        assert!(
            runs[0].pid.is_some(),
            "the agent's pid is recorded for {}",
            inc.cluster
        );
        assert_eq!(runs[0].outcome, Some(inc.status));
        assert!(
            live_processes_with_marker(inc.id, 1).is_empty(),
            "nothing of {}'s agent survives",
            inc.cluster
        );
    }
    let exit_codes: Vec<_> = done
        .iter()
        .map(|i| (i.cluster.clone(), i.attempt))
        .collect();
    assert!(exit_codes.iter().all(|(_, a)| *a == 1), "{exit_codes:?}");
}

#[tokio::test]
async fn shutdown_mid_run_terminates_the_agent_and_requeues_it() {
    let rig = Rig::new().await;
    let ids = record(&rig.store, vec![fault("slow-1", "p")]).await;
    let mut s = rig.settings();
    s.shutdown_grace = Duration::from_millis(100);
    let mut config = rig.config.clone();
    config.agent.timeout = Duration::from_secs(600);
    let pool = WorkerPool::new(rig.store.clone(), Arc::new(AgentRunner::new(&config)), s);
    let (soft, hard) = (CancellationToken::new(), CancellationToken::new());
    let task = tokio::spawn(pool.run(soft.clone(), hard.clone()));
    let pid = eventually("the agent to start", LONG, || async {
        let runs = rig.store.agent_runs(ids[0]).await.unwrap();
        runs.first().and_then(|r| r.pid)
    })
    .await;
    assert!(!live_processes_with_marker(ids[0], 1).is_empty());

    soft.cancel();
    tokio::time::timeout(LONG, task).await.unwrap().unwrap();

    assert!(
        live_processes_with_marker(ids[0], 1).is_empty(),
        "agent {pid} terminated"
    );
    let inc = get(&rig.store, ids[0]).await;
    assert_eq!(inc.status, IncidentStatus::Pending);
    assert_eq!(inc.attempt, 1);
    let runs = rig.store.agent_runs(ids[0]).await.unwrap();
    assert_eq!(runs[0].reason.as_deref(), Some(SHUTDOWN_REASON));
}

#[tokio::test]
async fn a_second_signal_kills_agents_that_ignore_sigterm_at_once() {
    let rig = Rig::new().await;
    let ids = record(&rig.store, vec![fault("stubborn-1", "p")]).await;
    let mut config = rig.config.clone();
    config.agent.timeout = Duration::from_secs(600);
    // Far longer than the test may take: only the second signal can end this run in time.
    config.agent.kill_grace = Duration::from_secs(120);
    let mut s = PoolSettings::from_config(&config);
    s.shutdown_grace = Duration::from_secs(3600);
    let pool = WorkerPool::new(rig.store.clone(), Arc::new(AgentRunner::new(&config)), s);
    let (soft, hard) = (CancellationToken::new(), CancellationToken::new());
    let task = tokio::spawn(pool.run(soft.clone(), hard.clone()));
    eventually("the agent's pid to be recorded", LONG, || async {
        rig.store
            .agent_runs(ids[0])
            .await
            .unwrap()
            .first()
            .and_then(|r| r.pid)
    })
    .await;

    soft.cancel();
    hard.cancel();
    tokio::time::timeout(LONG, task)
        .await
        .expect("the pool stops without waiting out the kill grace")
        .unwrap();
    eventually("the agent's group to be gone", LONG, || async {
        live_processes_with_marker(ids[0], 1)
            .is_empty()
            .then_some(())
    })
    .await;
    let inc = get(&rig.store, ids[0]).await;
    assert_eq!(inc.status, IncidentStatus::Pending);
    assert_eq!(inc.attempt, 1);
    let runs = rig.store.agent_runs(ids[0]).await.unwrap();
    assert_eq!(runs[0].reason.as_deref(), Some(SHUTDOWN_REASON));
}

#[tokio::test]
async fn a_cancelled_incident_loses_its_lease_and_its_agent() {
    let rig = Rig::new().await;
    let ids = record(&rig.store, vec![fault("slow-1", "p")]).await;
    let mut config = rig.config.clone();
    config.agent.timeout = Duration::from_secs(600);
    let mut s = rig.settings();
    s.heartbeat_interval = Duration::from_millis(50);
    let mut pool = WorkerPool::new(rig.store.clone(), Arc::new(AgentRunner::new(&config)), s);
    assert_eq!(pool.dispatch_once().await.unwrap(), 1);
    eventually("the agent to start", LONG, || async {
        (!live_processes_with_marker(ids[0], 1).is_empty()).then_some(())
    })
    .await;

    rig.store.cancel(ids[0]).await.unwrap();
    tokio::time::timeout(LONG, pool.join_next())
        .await
        .unwrap()
        .unwrap();
    assert!(live_processes_with_marker(ids[0], 1).is_empty());
    assert_eq!(
        get(&rig.store, ids[0]).await.status,
        IncidentStatus::Cancelled
    );
}

#[tokio::test]
async fn restart_kills_a_leftover_agent_group_then_runs_its_incident_again() {
    let rig = Rig::new().await;
    let ids = record(&rig.store, vec![fault("ok-1", "p"), fault("ok-2", "q")]).await;
    // A previous boot of this instance claimed both, started their agents, and crashed.
    let limits = ClaimLimits {
        max_concurrent_agents: 5,
        max_agents_per_cluster: 1,
        lease: Duration::from_secs(600),
    };
    let old_boot = "host-1/0190c0de-dead-7000-8000-000000000000";
    let first = rig.store.claim(old_boot, limits).await.unwrap().unwrap();
    let second = rig.store.claim(old_boot, limits).await.unwrap().unwrap();
    assert_eq!((first.incident.id, second.incident.id), (ids[0], ids[1]));
    let mut leftover = std::process::Command::new("/bin/sh")
        .args(["-c", "sleep 300 & wait"])
        .env(MARKER_VAR, marker_value(ids[0], first.attempt))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    rig.store
        .set_run_pid(ids[0], first.attempt, leftover.id() as i32)
        .await
        .unwrap();
    // The second agent's pid now belongs to an unrelated process group: it must be left alone.
    let mut bystander = std::process::Command::new("sleep")
        .arg("300")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    rig.store
        .set_run_pid(ids[1], second.attempt, bystander.id() as i32)
        .await
        .unwrap();

    let done = run_until_done(&rig, rig.settings(), &ids).await;

    let status = leftover.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "the leftover group was killed");
    assert!(
        live_processes_with_marker(ids[0], 1).is_empty(),
        "its children too"
    );
    assert_eq!(bystander.try_wait().unwrap(), None, "the bystander lives");
    bystander.kill().unwrap();
    bystander.wait().unwrap();

    for id in &ids {
        assert_eq!(get(&rig.store, *id).await.status, IncidentStatus::Succeeded);
        let runs = rig.store.agent_runs(*id).await.unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].reason.as_deref(), Some(RESTART_REASON));
        assert_eq!(runs[1].attempt, 2);
        assert_eq!(runs[1].outcome, Some(IncidentStatus::Succeeded));
    }
    assert_eq!(done.len(), 2);
}

#[tokio::test]
async fn restart_picks_up_every_pending_incident() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nightcrier.db");
    let url = format!("sqlite://{}", db.display());
    let ids = {
        // The first process records and stops before running anything.
        let store = store_at(&url).await;
        let ids = record(
            &store,
            (0..8).map(|i| fault(&format!("ok-{i}"), "p")).collect(),
        )
        .await;
        store.close().await;
        ids
    };
    let store = store_at(&url).await;
    let rig = Rig::with_store(dir, store);
    let done = run_until_done(&rig, rig.settings(), &ids).await;
    assert!(done.iter().all(|i| i.status == IncidentStatus::Succeeded));
}

#[tokio::test]
async fn limits_hold_for_real_agents_thirty_incidents_four_clusters() {
    let rig = Rig::new().await;
    let mut s = rig.settings();
    s.max_concurrent_agents = 2;
    s.max_agents_per_cluster = 1;
    let ids = record(
        &rig.store,
        (0..30)
            .map(|i| fault(&format!("brief-{}", i % 4), &format!("p{i}")))
            .collect(),
    )
    .await;
    let done = run_until_done(&rig, s, &ids).await;
    assert!(done.iter().all(|i| i.status == IncidentStatus::Succeeded));
    check_timeline(&rig.timeline(), 30, 2, 1);
}
