//! The reporter's queue (`unreported_finished`, `mark_reported`, `record_report_failure`): the
//! same expectations on both backends.

use nightcrier::incident::IncidentStatus;
use nightcrier::store::{Store, StoreError};
use uuid::Uuid;

use super::{outcome, WIDE};
use crate::support::common::{fault, TestDb};

crate::store_conformance!(
    finished_runs_are_unreported_in_finish_order_until_marked,
    a_retried_incident_is_reported_again_after_its_new_run,
    report_failures_count_per_attempt_and_reset_when_reported,
    unreported_limit_is_bounded,
);

/// Records one fault, claims it and completes it with `status`; returns (id, attempt).
async fn finish(store: &Store, fault_id: &str, status: IncidentStatus) -> (Uuid, i32) {
    store
        .record_faults(&[fault("prod", fault_id)])
        .await
        .unwrap();
    let claimed = store
        .claim("w1", WIDE)
        .await
        .unwrap()
        .expect("a pending incident");
    assert_eq!(claimed.incident.fault_id, fault_id);
    assert!(store
        .complete(claimed.incident.id, claimed.attempt, &outcome(status))
        .await
        .unwrap());
    (claimed.incident.id, claimed.attempt)
}

async fn finished_runs_are_unreported_in_finish_order_until_marked(db: &TestDb) {
    let store = db.store().await;
    let a = finish(&store, "a", IncidentStatus::Failed).await;
    let b = finish(&store, "b", IncidentStatus::Succeeded).await;
    let c = finish(&store, "c", IncidentStatus::TimedOut).await;
    // Neither a cancelled nor a still-pending incident has a run result to report.
    let rec = store.record_faults(&[fault("prod", "d")]).await.unwrap();
    store.cancel(rec[0].incident_id).await.unwrap();
    store.record_faults(&[fault("prod", "e")]).await.unwrap();

    let ids: Vec<Uuid> = store
        .unreported_finished(10)
        .await
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(ids, [a.0, b.0, c.0], "finish order, finished runs only");
    assert_eq!(store.unreported_finished(2).await.unwrap().len(), 2);

    assert!(store.mark_reported(b.0, b.1).await.unwrap());
    let left: Vec<Uuid> = store
        .unreported_finished(10)
        .await
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(left, [a.0, c.0]);
    assert!(
        !store.mark_reported(Uuid::now_v7(), 1).await.unwrap(),
        "unknown incident"
    );
    // Reporting never changes the incident itself.
    let b_now = store.get(&b.0.to_string()).await.unwrap();
    assert_eq!(b_now.status, IncidentStatus::Succeeded);
}

async fn a_retried_incident_is_reported_again_after_its_new_run(db: &TestDb) {
    let store = db.store().await;
    let (id, first) = finish(&store, "a", IncidentStatus::Failed).await;
    assert!(store.mark_reported(id, first).await.unwrap());
    assert!(store.unreported_finished(10).await.unwrap().is_empty());

    store.retry(id).await.unwrap();
    assert!(
        store.unreported_finished(10).await.unwrap().is_empty(),
        "pending again: nothing to report until the new run ends"
    );
    let claimed = store.claim("w1", WIDE).await.unwrap().unwrap();
    assert!(claimed.attempt > first);
    assert!(
        !store.mark_reported(id, first).await.unwrap(),
        "the old attempt cannot mark the running one"
    );
    store
        .complete(id, claimed.attempt, &outcome(IncidentStatus::Succeeded))
        .await
        .unwrap();
    let again = store.unreported_finished(10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].attempt), (id, claimed.attempt));
    assert!(
        !store.mark_reported(id, first).await.unwrap(),
        "a stale attempt is fenced"
    );
    assert!(store.mark_reported(id, claimed.attempt).await.unwrap());
    assert!(store.unreported_finished(10).await.unwrap().is_empty());
}

async fn report_failures_count_per_attempt_and_reset_when_reported(db: &TestDb) {
    let store = db.store().await;
    let (id, attempt) = finish(&store, "a", IncidentStatus::Succeeded).await;
    assert_eq!(store.record_report_failure(id, attempt).await.unwrap(), 1);
    assert_eq!(store.record_report_failure(id, attempt).await.unwrap(), 2);
    assert_eq!(
        store.record_report_failure(id, attempt + 1).await.unwrap(),
        0,
        "another attempt is not counted"
    );
    assert_eq!(
        store.unreported_finished(10).await.unwrap().len(),
        1,
        "failures alone do not report it"
    );
    assert!(store.mark_reported(id, attempt).await.unwrap());
    assert_eq!(
        store.record_report_failure(id, attempt).await.unwrap(),
        0,
        "a reported run counts no more failures"
    );
}

async fn unreported_limit_is_bounded(db: &TestDb) {
    let store = db.store().await;
    for bad in [0, nightcrier::store::MAX_UNREPORTED_LIMIT + 1] {
        match store.unreported_finished(bad).await {
            Err(StoreError::InvalidInput(msg)) => {
                assert!(msg.contains("unreported limit"), "{msg}")
            }
            other => panic!("limit {bad}: expected InvalidInput, got {other:?}"),
        }
    }
}
