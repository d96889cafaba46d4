//! Claim order and limits, leases, fencing, rescue, retry, cancel and requeue on both backends.

use std::time::Duration;

use chrono::Utc;
use nightcrier::incident::IncidentStatus;
use nightcrier::store::{ClaimLimits, StoreError};

use super::{outcome, WIDE};
use crate::support::common::{fault, TestDb};

crate::store_conformance!(
    claim_takes_the_oldest_eligible_incident_within_both_limits,
    claim_leases_and_opens_an_agent_run,
    heartbeat_and_complete_are_fenced_by_attempt,
    an_expired_lease_is_rescued_and_its_attempt_fenced,
    rescue_fails_the_incident_after_max_attempts,
    retry_gives_a_fresh_budget_and_refuses_open_incidents,
    cancel_stops_pending_and_running_incidents,
    requeue_returns_an_interrupted_run_or_fails_it,
    running_owned_by_finds_a_previous_boot,
    bad_queue_input_is_rejected,
);

async fn claim_takes_the_oldest_eligible_incident_within_both_limits(db: &TestDb) {
    let store = db.store().await;
    let mut ids = Vec::new();
    for (cluster, f) in [("a", "1"), ("a", "2"), ("b", "3"), ("c", "4")] {
        ids.push(store.record_faults(&[fault(cluster, f)]).await.unwrap()[0].incident_id);
    }
    let limits = ClaimLimits {
        max_concurrent_agents: 2,
        max_agents_per_cluster: 1,
        lease: Duration::from_secs(60),
    };
    let first = store.claim("w", limits).await.unwrap().unwrap();
    assert_eq!(first.incident.id, ids[0], "oldest first");
    let second = store.claim("w", limits).await.unwrap().unwrap();
    assert_eq!(
        second.incident.id, ids[2],
        "cluster a is full: its second incident waits"
    );
    assert!(
        store.claim("w", limits).await.unwrap().is_none(),
        "two run in total"
    );

    store
        .complete(
            first.incident.id,
            first.attempt,
            &outcome(IncidentStatus::Succeeded),
        )
        .await
        .unwrap();
    let third = store.claim("w", limits).await.unwrap().unwrap();
    assert_eq!(third.incident.id, ids[1], "cluster a has room again");
    let none = ClaimLimits {
        max_concurrent_agents: 0,
        ..limits
    };
    store
        .complete(
            third.incident.id,
            third.attempt,
            &outcome(IncidentStatus::Succeeded),
        )
        .await
        .unwrap();
    assert!(
        store.claim("w", none).await.unwrap().is_none(),
        "a zero limit claims nothing"
    );
    let per_cluster_two = ClaimLimits {
        max_concurrent_agents: 10,
        max_agents_per_cluster: 2,
        ..limits
    };
    assert_eq!(
        store
            .claim("w", per_cluster_two)
            .await
            .unwrap()
            .unwrap()
            .incident
            .id,
        ids[3]
    );
    assert!(
        store.claim("w", per_cluster_two).await.unwrap().is_none(),
        "queue empty"
    );
}

async fn claim_leases_and_opens_an_agent_run(db: &TestDb) {
    let store = db.store().await;
    let id = store.record_faults(&[fault("prod", "f1")]).await.unwrap()[0].incident_id;
    let before = Utc::now() - chrono::Duration::milliseconds(1);
    let c = store.claim("host/boot-1", WIDE).await.unwrap().unwrap();
    assert_eq!(c.incident.id, id);
    assert_eq!(c.attempt, 1);
    assert_eq!(c.incident.attempt, 1);
    assert_eq!(c.incident.status, IncidentStatus::Running);
    assert_eq!(c.incident.lease_owner.as_deref(), Some("host/boot-1"));
    let started = c.incident.started_at.unwrap();
    assert!(started >= before);
    let expires = c.incident.lease_expires_at.unwrap();
    assert_eq!((expires - started).num_seconds(), 60);

    store.set_run_pid(id, 1, 4242).await.unwrap();
    store
        .set_run_log_path(id, 1, "/w/logs/agent.log")
        .await
        .unwrap();
    let missing = store.set_run_pid(id, 2, 1).await.unwrap_err();
    assert!(matches!(missing, StoreError::NotFound(_)), "{missing:?}");
    let runs = store.agent_runs(id).await.unwrap();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!((run.attempt, run.worker.as_str()), (1, "host/boot-1"));
    assert_eq!(run.started_at, started);
    assert_eq!(run.pid, Some(4242));
    assert_eq!(run.log_path.as_deref(), Some("/w/logs/agent.log"));
    assert!(run.finished_at.is_none() && run.outcome.is_none());

    let mut failed = outcome(IncidentStatus::Failed);
    failed.exit_code = Some(3);
    assert!(store.complete(id, 1, &failed).await.unwrap());
    let run = &store.agent_runs(id).await.unwrap()[0];
    assert_eq!(run.outcome, Some(IncidentStatus::Failed));
    assert_eq!(run.exit_code, Some(3));
    assert_eq!(run.reason.as_deref(), Some("agent failed"));
    assert!(run.finished_at.is_some());
    let inc = store.get(&id.to_string()).await.unwrap();
    assert_eq!(inc.status, IncidentStatus::Failed);
    assert_eq!(inc.failure_reason.as_deref(), Some("agent failed"));
    assert_eq!(inc.finished_at, run.finished_at);
    assert!(inc.lease_owner.is_none() && inc.lease_expires_at.is_none());
}

async fn heartbeat_and_complete_are_fenced_by_attempt(db: &TestDb) {
    let store = db.store().await;
    let id = store.record_faults(&[fault("prod", "f1")]).await.unwrap()[0].incident_id;
    let c = store.claim("w1", WIDE).await.unwrap().unwrap();
    let old_expiry = c.incident.lease_expires_at.unwrap();
    assert!(store
        .heartbeat(id, 1, Duration::from_secs(600))
        .await
        .unwrap());
    let extended = store
        .get(&id.to_string())
        .await
        .unwrap()
        .lease_expires_at
        .unwrap();
    assert!(extended > old_expiry);

    assert!(!store
        .heartbeat(id, 2, Duration::from_secs(60))
        .await
        .unwrap());
    let ok = outcome(IncidentStatus::Succeeded);
    assert!(
        !store.complete(id, 2, &ok).await.unwrap(),
        "wrong attempt changes nothing"
    );
    assert_eq!(
        store.get(&id.to_string()).await.unwrap().status,
        IncidentStatus::Running
    );
    assert!(store.complete(id, 1, &ok).await.unwrap());
    assert!(!store
        .complete(id, 1, &outcome(IncidentStatus::Failed))
        .await
        .unwrap());
    assert!(!store
        .heartbeat(id, 1, Duration::from_secs(60))
        .await
        .unwrap());
    let inc = store.get(&id.to_string()).await.unwrap();
    assert_eq!(
        inc.status,
        IncidentStatus::Succeeded,
        "a late completion changes nothing"
    );
    assert!(!store
        .heartbeat(uuid::Uuid::now_v7(), 1, Duration::from_secs(1))
        .await
        .unwrap());
}

async fn an_expired_lease_is_rescued_and_its_attempt_fenced(db: &TestDb) {
    let store = db.store().await;
    let id = store.record_faults(&[fault("prod", "f1")]).await.unwrap()[0].incident_id;
    let long = store.record_faults(&[fault("prod", "f2")]).await.unwrap()[0].incident_id;
    let expired = ClaimLimits {
        lease: Duration::ZERO,
        ..WIDE
    };
    assert_eq!(
        store
            .claim("w1", expired)
            .await
            .unwrap()
            .unwrap()
            .incident
            .id,
        id
    );
    assert_eq!(
        store.claim("w2", WIDE).await.unwrap().unwrap().incident.id,
        long
    );

    let counts = store.rescue_expired(3).await.unwrap();
    assert_eq!(
        (counts.requeued, counts.failed),
        (1, 0),
        "only the expired lease"
    );
    assert_eq!(
        store.get(&long.to_string()).await.unwrap().status,
        IncidentStatus::Running
    );
    let inc = store.get(&id.to_string()).await.unwrap();
    assert_eq!(inc.status, IncidentStatus::Pending);
    assert!(inc.lease_owner.is_none());

    // The lost attempt can neither extend nor complete.
    assert!(!store
        .heartbeat(id, 1, Duration::from_secs(60))
        .await
        .unwrap());
    assert!(!store
        .complete(id, 1, &outcome(IncidentStatus::Succeeded))
        .await
        .unwrap());
    let again = store.claim("w3", WIDE).await.unwrap().unwrap();
    assert_eq!((again.incident.id, again.attempt), (id, 2));
    assert!(!store
        .complete(id, 1, &outcome(IncidentStatus::Succeeded))
        .await
        .unwrap());
    assert!(store
        .complete(id, 2, &outcome(IncidentStatus::Succeeded))
        .await
        .unwrap());

    let runs = store.agent_runs(id).await.unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].outcome, Some(IncidentStatus::Failed));
    assert_eq!(runs[0].reason.as_deref(), Some("lease expired"));
    assert_eq!(runs[1].outcome, Some(IncidentStatus::Succeeded));
    assert_eq!(runs[1].worker, "w3");
    assert_eq!(store.rescue_expired(3).await.unwrap(), Default::default());
}

async fn rescue_fails_the_incident_after_max_attempts(db: &TestDb) {
    let store = db.store().await;
    let id = store.record_faults(&[fault("prod", "f1")]).await.unwrap()[0].incident_id;
    let expired = ClaimLimits {
        lease: Duration::ZERO,
        ..WIDE
    };
    store.claim("w", expired).await.unwrap().unwrap();
    assert_eq!(store.rescue_expired(2).await.unwrap().requeued, 1);
    store.claim("w", expired).await.unwrap().unwrap();
    let counts = store.rescue_expired(2).await.unwrap();
    assert_eq!((counts.requeued, counts.failed), (0, 1));
    let inc = store.get(&id.to_string()).await.unwrap();
    assert_eq!(inc.status, IncidentStatus::Failed);
    assert_eq!(inc.failure_reason.as_deref(), Some("lease expired"));
    assert!(inc.finished_at.is_some());
    assert_eq!(inc.attempt, 2);
    assert!(store.claim("w", WIDE).await.unwrap().is_none());
}

async fn retry_gives_a_fresh_budget_and_refuses_open_incidents(db: &TestDb) {
    let store = db.store().await;
    let id = store.record_faults(&[fault("prod", "f1")]).await.unwrap()[0].incident_id;
    let err = store.retry(id).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict(m) if m.contains("pending")),
        "{err:?}"
    );
    let expired = ClaimLimits {
        lease: Duration::ZERO,
        ..WIDE
    };
    store.claim("w", expired).await.unwrap().unwrap();
    let err = store.retry(id).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict(m) if m.contains("running")),
        "{err:?}"
    );
    assert_eq!(store.rescue_expired(2).await.unwrap().requeued, 1);
    store.claim("w", expired).await.unwrap().unwrap();
    assert_eq!(
        store.rescue_expired(2).await.unwrap().failed,
        1,
        "budget of 2 used up"
    );

    let retried = store.retry(id).await.unwrap();
    assert_eq!(retried.status, IncidentStatus::Pending);
    assert_eq!(
        retried.attempt, 2,
        "the attempt number keeps growing (fencing)"
    );
    assert!(retried.failure_reason.is_none() && retried.finished_at.is_none());
    let c = store.claim("w", expired).await.unwrap().unwrap();
    assert_eq!(c.attempt, 3);
    assert_eq!(
        store.rescue_expired(2).await.unwrap().requeued,
        1,
        "a retry gives a fresh budget"
    );

    // A finished incident cannot be retried while a newer one for its fault is open.
    let mut opts = db.options();
    opts.dedup_cooldown = Duration::ZERO;
    let eager = db.store_with(opts).await;
    let c = eager.claim("w", WIDE).await.unwrap().unwrap();
    eager
        .complete(c.incident.id, c.attempt, &outcome(IncidentStatus::Failed))
        .await
        .unwrap();
    let newer = eager.record_faults(&[fault("prod", "f1")]).await.unwrap()[0].clone();
    assert!(newer.created);
    let err = eager.retry(id).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict(m) if m.contains(&newer.incident_id.to_string())),
        "{err:?}"
    );
    let missing = store.retry(uuid::Uuid::now_v7()).await.unwrap_err();
    assert!(matches!(missing, StoreError::NotFound(_)), "{missing:?}");
}

async fn cancel_stops_pending_and_running_incidents(db: &TestDb) {
    let store = db.store().await;
    let rec = store
        .record_faults(&[fault("prod", "f1"), fault("prod", "f2")])
        .await
        .unwrap();
    let (pending, running) = (rec[1].incident_id, rec[0].incident_id);
    let c = store.claim("w", WIDE).await.unwrap().unwrap();
    assert_eq!(c.incident.id, running);

    let cancelled = store.cancel(pending).await.unwrap();
    assert_eq!(cancelled.status, IncidentStatus::Cancelled);
    assert!(cancelled.finished_at.is_some());
    assert!(
        store.claim("w", WIDE).await.unwrap().is_none(),
        "cancelled is not claimable"
    );

    let cancelled = store.cancel(running).await.unwrap();
    assert_eq!(cancelled.status, IncidentStatus::Cancelled);
    assert!(!store
        .heartbeat(running, c.attempt, Duration::from_secs(60))
        .await
        .unwrap());
    assert!(!store
        .complete(running, c.attempt, &outcome(IncidentStatus::Succeeded))
        .await
        .unwrap());
    assert_eq!(
        store.get(&running.to_string()).await.unwrap().status,
        IncidentStatus::Cancelled
    );
    let run = &store.agent_runs(running).await.unwrap()[0];
    assert_eq!(run.outcome, Some(IncidentStatus::Cancelled));
    assert!(run.finished_at.is_some());

    let err = store.cancel(running).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict(m) if m.contains("cancelled")),
        "{err:?}"
    );
    let missing = store.cancel(uuid::Uuid::now_v7()).await.unwrap_err();
    assert!(matches!(missing, StoreError::NotFound(_)), "{missing:?}");
    // Cancelled is terminal: it can be retried.
    assert_eq!(
        store.retry(pending).await.unwrap().status,
        IncidentStatus::Pending
    );
}

async fn requeue_returns_an_interrupted_run_or_fails_it(db: &TestDb) {
    let store = db.store().await;
    let id = store.record_faults(&[fault("prod", "f1")]).await.unwrap()[0].incident_id;
    store.claim("w", WIDE).await.unwrap().unwrap();
    assert!(
        !store.requeue(id, 7, "shutdown", 3).await.unwrap(),
        "fenced"
    );
    assert!(store.requeue(id, 1, "shutdown", 3).await.unwrap());
    let inc = store.get(&id.to_string()).await.unwrap();
    assert_eq!(inc.status, IncidentStatus::Pending);
    assert!(inc.lease_owner.is_none());
    let run = &store.agent_runs(id).await.unwrap()[0];
    assert_eq!(run.reason.as_deref(), Some("shutdown"));
    assert!(run.finished_at.is_some());

    let c = store.claim("w", WIDE).await.unwrap().unwrap();
    assert_eq!(c.attempt, 2);
    assert!(store.requeue(id, 2, "shutdown", 2).await.unwrap());
    let inc = store.get(&id.to_string()).await.unwrap();
    assert_eq!(inc.status, IncidentStatus::Failed);
    assert_eq!(inc.failure_reason.as_deref(), Some("shutdown"));
    assert!(!store.requeue(id, 2, "shutdown", 2).await.unwrap());
}

async fn running_owned_by_finds_a_previous_boot(db: &TestDb) {
    let store = db.store().await;
    store
        .record_faults(&[fault("a", "1"), fault("b", "2"), fault("c", "3")])
        .await
        .unwrap();
    let mine = store.claim("host-1/boot-a", WIDE).await.unwrap().unwrap();
    store
        .set_run_pid(mine.incident.id, mine.attempt, 99)
        .await
        .unwrap();
    store.claim("host-10/boot-z", WIDE).await.unwrap().unwrap();
    let done = store.claim("host-1/boot-a", WIDE).await.unwrap().unwrap();
    store
        .complete(
            done.incident.id,
            done.attempt,
            &outcome(IncidentStatus::Succeeded),
        )
        .await
        .unwrap();

    let found = store.running_owned_by("host-1/").await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0.id, mine.incident.id);
    assert_eq!(found[0].1.attempt, mine.attempt);
    assert_eq!(found[0].1.pid, Some(99));
    assert!(
        store.running_owned_by("host-1%").await.unwrap().is_empty(),
        "no wildcards"
    );
    assert!(store.running_owned_by("").await.is_err());
}

async fn bad_queue_input_is_rejected(db: &TestDb) {
    let store = db.store().await;
    let err = store.claim(" ", WIDE).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::InvalidInput(m) if m.contains("owner")),
        "{err:?}"
    );
    let id = uuid::Uuid::now_v7();
    // A run completing as `pending` is no longer representable: `RunOutcome` carries a
    // `RunStatus` (see `run_status_refuses_incident_only_statuses` in `incident`).
    let err = store.rescue_expired(0).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::InvalidInput(m) if m.contains("max_attempts")),
        "{err:?}"
    );
    let err = store
        .heartbeat(id, 1, Duration::from_secs(u64::MAX))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::InvalidInput(m) if m.contains("lease")),
        "{err:?}"
    );
}
