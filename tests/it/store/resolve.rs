//! A source reporting a fault over (a resolved alert): `resolve_open` on both backends.

use std::time::Duration;

use chrono::{Duration as Age, Utc};
use nightcrier::incident::IncidentStatus;
use nightcrier::store::{Resolution, RESOLVED_RUN_REASON};

use super::{outcome, WIDE};
use crate::support::common::{fault, TestDb};

crate::store_conformance!(
    resolving_a_pending_incident_ends_it_without_a_run,
    resolving_a_running_incident_stops_its_run_when_asked,
    resolving_a_running_incident_can_leave_it_to_finish,
    resolving_without_an_open_incident_changes_nothing,
);

async fn resolving_a_pending_incident_ends_it_without_a_run(db: &TestDb) {
    let store = db.store().await;
    let rec = store.record_faults(&[fault("prod", "am-1")]).await.unwrap();
    let id = rec[0].incident_id;
    let at = Utc::now() - Age::seconds(30);

    let r = store
        .resolve_open("prod", "am-1", at, true)
        .await
        .unwrap()
        .expect("the pending incident is resolved");
    assert_eq!((r.incident_id, r.resolution), (id, Resolution::Ended));

    let inc = store.get(&id.to_string()).await.unwrap();
    assert_eq!(inc.status, IncidentStatus::Resolved);
    assert!(inc.finished_at.is_some());
    assert_eq!(
        inc.resolved_at.map(|t| t.timestamp_micros()),
        Some(at.timestamp_micros()),
        "the source's time is kept"
    );
    assert!(inc.failure_reason.is_none());
    assert!(
        store.claim("w", WIDE).await.unwrap().is_none(),
        "never claimed"
    );
    assert!(store.agent_runs(id).await.unwrap().is_empty());

    // The same fault again within the cooldown attaches to the resolved incident, like any
    // finished one: a flapping alert does not start an agent per flap.
    let again = store.record_faults(&[fault("prod", "am-1")]).await.unwrap();
    assert_eq!(again[0].incident_id, id);
    assert!(!again[0].created);
}

async fn resolving_a_running_incident_stops_its_run_when_asked(db: &TestDb) {
    let store = db.store().await;
    let id = store.record_faults(&[fault("prod", "am-2")]).await.unwrap()[0].incident_id;
    let c = store.claim("w", WIDE).await.unwrap().expect("claimed");

    let r = store
        .resolve_open("prod", "am-2", Utc::now(), true)
        .await
        .unwrap()
        .expect("resolved");
    assert_eq!(r.resolution, Resolution::Stopped);
    let inc = store.get(&id.to_string()).await.unwrap();
    assert_eq!(inc.status, IncidentStatus::Resolved);
    assert!(inc.lease_owner.is_none() && inc.resolved_at.is_some());
    // The worker learns it at its next heartbeat, and its completion is fenced off.
    assert!(!store
        .heartbeat(id, c.attempt, Duration::from_secs(60))
        .await
        .unwrap());
    assert!(!store
        .complete(id, c.attempt, &outcome(IncidentStatus::Succeeded))
        .await
        .unwrap());
    let run = &store.agent_runs(id).await.unwrap()[0];
    assert_eq!(run.outcome, Some(IncidentStatus::Cancelled));
    assert_eq!(run.reason.as_deref(), Some(RESOLVED_RUN_REASON));
    assert!(run.finished_at.is_some());
    assert_eq!(
        store.get(&id.to_string()).await.unwrap().status,
        IncidentStatus::Resolved
    );
}

async fn resolving_a_running_incident_can_leave_it_to_finish(db: &TestDb) {
    let store = db.store().await;
    let id = store.record_faults(&[fault("prod", "am-3")]).await.unwrap()[0].incident_id;
    let c = store.claim("w", WIDE).await.unwrap().expect("claimed");
    let first = Utc::now() - Age::seconds(10);

    let r = store
        .resolve_open("prod", "am-3", first, false)
        .await
        .unwrap()
        .expect("noted");
    assert_eq!(r.resolution, Resolution::Noted);
    // A repeated resolved notification keeps the first time.
    store
        .resolve_open("prod", "am-3", Utc::now(), false)
        .await
        .unwrap();
    let inc = store.get(&id.to_string()).await.unwrap();
    assert_eq!(inc.status, IncidentStatus::Running);
    assert_eq!(
        inc.resolved_at.map(|t| t.timestamp_micros()),
        Some(first.timestamp_micros())
    );
    assert!(store
        .heartbeat(id, c.attempt, Duration::from_secs(60))
        .await
        .unwrap());
    assert!(store
        .complete(id, c.attempt, &outcome(IncidentStatus::Succeeded))
        .await
        .unwrap());
    let done = store.get(&id.to_string()).await.unwrap();
    assert_eq!(done.status, IncidentStatus::Succeeded);
    assert!(done.resolved_at.is_some(), "the report can say it resolved");
}

async fn resolving_without_an_open_incident_changes_nothing(db: &TestDb) {
    let store = db.store().await;
    assert_eq!(
        store
            .resolve_open("prod", "never-seen", Utc::now(), true)
            .await
            .unwrap(),
        None
    );
    let id = store.record_faults(&[fault("prod", "am-4")]).await.unwrap()[0].incident_id;
    store.cancel(id).await.unwrap();
    assert_eq!(
        store
            .resolve_open("prod", "am-4", Utc::now(), true)
            .await
            .unwrap(),
        None,
        "a finished incident is left as it is"
    );
    assert_eq!(
        store.get(&id.to_string()).await.unwrap().status,
        IncidentStatus::Cancelled
    );
    assert!(store
        .resolve_open("", "am-4", Utc::now(), true)
        .await
        .is_err());
}
