//! Related faults coalesced into one incident (pods of one workload, fault types of one object):
//! the same expectations on both backends. Times are injected through `received_at`.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use nightcrier::fault::ReceivedFault;
use nightcrier::incident::IncidentStatus;
use nightcrier::store::{ListFilter, Store};

use super::{outcome, WIDE};
use crate::support::common::{fault_at, TestDb};

crate::store_conformance!(
    two_hundred_pods_of_one_deployment_are_one_investigation,
    fault_types_of_one_object_share_an_incident,
    the_window_bounds_what_attaches_to_an_open_incident,
    a_related_fault_after_the_run_ends_within_the_cooldown_opens_nothing,
    coalescing_off_keeps_one_incident_per_fault,
);

const WINDOW: Duration = Duration::from_secs(600);

/// A crash of pod `<deployment>-7d9f8b6c5-<suffix>` in namespace `ns`.
fn pod_fault(ns: &str, deployment: &str, pod: usize, at: DateTime<Utc>) -> ReceivedFault {
    // Suffixes from the controllers' alphabet, distinct per pod.
    const A: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let suffix: String = (0..5)
        .map(|i| A[(pod / A.len().pow(i)) % A.len()] as char)
        .collect();
    let name = format!("{deployment}-7d9f8b6c5-{suffix}");
    let mut f = fault_at("prod", &format!("{ns}-{name}"), at);
    f.fault.resource.name = name.clone();
    f.fault.resource.namespace = Some(ns.into());
    f.fault.resource.uid = format!("uid-{ns}-{name}");
    f
}

async fn coalescing(db: &TestDb) -> Store {
    let store = db.store().await;
    store.set_related_window(Some(WINDOW));
    store
}

async fn open_incidents(store: &Store) -> Vec<nightcrier::incident::Incident> {
    let mut all = store
        .list(&ListFilter {
            limit: Some(10_000),
            ..ListFilter::default()
        })
        .await
        .unwrap();
    all.retain(|i| i.status.is_open());
    all
}

async fn two_hundred_pods_of_one_deployment_are_one_investigation(db: &TestDb) {
    let store = coalescing(db).await;
    let t0 = Utc::now();
    // 200 pods of `checkout` arrive over four batches, interleaved with 10 pods of `payments`
    // and one pod of a `checkout` in another namespace (a different workload).
    let mut first = vec![pod_fault("shop", "checkout", 0, t0)];
    first.extend((0..10).map(|p| pod_fault("shop", "payments", p, t0)));
    first.push(pod_fault("staging", "checkout", 0, t0));
    let recorded = store.record_faults(&first).await.unwrap();
    assert_eq!(
        recorded.iter().filter(|r| r.created).count(),
        3,
        "checkout, payments and staging/checkout each open one incident: {recorded:?}"
    );
    let checkout = recorded[0].incident_id;
    for batch in 0..4 {
        let faults: Vec<ReceivedFault> = (1 + batch * 50..1 + (batch + 1) * 50)
            .filter(|&p| p < 200)
            .map(|p| pod_fault("shop", "checkout", p, t0 + TimeDelta::seconds(batch as i64)))
            .collect();
        let recorded = store.record_faults(&faults).await.unwrap();
        assert!(recorded
            .iter()
            .all(|r| r.incident_id == checkout && !r.created));
    }
    // Repeats of a related pod keep landing on the same incident.
    let again = store
        .record_faults(&[pod_fault("shop", "checkout", 7, t0 + TimeDelta::seconds(9))])
        .await
        .unwrap();
    assert_eq!(again[0].incident_id, checkout);

    let open = open_incidents(&store).await;
    assert_eq!(open.len(), 3, "{open:?}");
    let inc = store.get(&checkout.to_string()).await.unwrap();
    assert_eq!(inc.occurrences, 201);
    let related = store.related_occurrences(checkout, 500).await.unwrap();
    assert_eq!(related.len(), 199, "one entry per other pod");
    assert!(related.iter().all(|o| o.fault_id != inc.fault_id));
    let capped = store.related_occurrences(checkout, 20).await.unwrap();
    assert_eq!(capped.len(), 20);
    let triage = store.occurrences_for_triage(checkout, 5, 30).await.unwrap();
    assert!(triage.len() >= 30 && triage.windows(2).all(|w| w[0].id < w[1].id));

    // One claim for the whole storm.
    let c = store.claim("w1", WIDE).await.unwrap().unwrap();
    let mut claimed = vec![c.incident.id];
    while let Some(c) = store.claim("w1", WIDE).await.unwrap() {
        claimed.push(c.incident.id);
    }
    assert_eq!(claimed.len(), 3);
}

async fn fault_types_of_one_object_share_an_incident(db: &TestDb) {
    let store = coalescing(db).await;
    let t0 = Utc::now();
    let mut crash = fault_at("prod", "node-a-notready", t0);
    crash.fault.resource.kind = "Node".into();
    crash.fault.resource.name = "node-a".into();
    crash.fault.resource.namespace = None;
    crash.fault.resource.uid = "uid-node-a".into();
    let mut pressure = crash.clone();
    pressure.fault.fault_id = "node-a-diskpressure".into();
    pressure.fault.fault_type = "NodeDiskPressure".into();
    let mut other_node = crash.clone();
    other_node.fault.fault_id = "node-b-notready".into();
    other_node.fault.resource.uid = "uid-node-b".into();
    let r = store
        .record_faults(&[crash, pressure, other_node])
        .await
        .unwrap();
    assert_eq!(r[0].incident_id, r[1].incident_id);
    assert!(r[0].created && !r[1].created);
    assert_ne!(r[2].incident_id, r[0].incident_id);
    assert_eq!(
        store
            .get(&r[0].incident_id.to_string())
            .await
            .unwrap()
            .occurrences,
        2
    );
}

async fn the_window_bounds_what_attaches_to_an_open_incident(db: &TestDb) {
    let store = coalescing(db).await;
    let t0 = Utc::now() - TimeDelta::hours(1);
    let first = store
        .record_faults(&[pod_fault("shop", "api", 0, t0)])
        .await
        .unwrap()[0]
        .incident_id;
    // Within the window of the incident's last sighting: attaches, and moves last_seen on.
    let inside = store
        .record_faults(&[pod_fault("shop", "api", 1, t0 + TimeDelta::minutes(9))])
        .await
        .unwrap();
    assert_eq!(inside[0].incident_id, first);
    let chained = store
        .record_faults(&[pod_fault("shop", "api", 2, t0 + TimeDelta::minutes(18))])
        .await
        .unwrap();
    assert_eq!(
        chained[0].incident_id, first,
        "9 min after the last sighting"
    );
    // Past the window: a new incident, which later related faults then join.
    let late = store
        .record_faults(&[pod_fault("shop", "api", 3, t0 + TimeDelta::minutes(40))])
        .await
        .unwrap();
    assert!(late[0].created);
    assert_ne!(late[0].incident_id, first);
    assert_eq!(open_incidents(&store).await.len(), 2);
}

async fn a_related_fault_after_the_run_ends_within_the_cooldown_opens_nothing(db: &TestDb) {
    let store = coalescing(db).await;
    let t0 = Utc::now();
    let id = store
        .record_faults(&[pod_fault("shop", "web", 0, t0)])
        .await
        .unwrap()[0]
        .incident_id;
    let c = store.claim("w1", WIDE).await.unwrap().unwrap();
    assert_eq!(c.incident.id, id);
    assert!(store
        .complete(id, c.attempt, &outcome(IncidentStatus::Succeeded))
        .await
        .unwrap());
    let after = store
        .record_faults(&[pod_fault("shop", "web", 1, Utc::now())])
        .await
        .unwrap();
    assert_eq!(after[0].incident_id, id);
    assert_eq!(after[0].status, IncidentStatus::Succeeded);
    assert!(store.claim("w1", WIDE).await.unwrap().is_none());
}

async fn coalescing_off_keeps_one_incident_per_fault(db: &TestDb) {
    let store = db.store().await;
    let t0 = Utc::now();
    let faults: Vec<ReceivedFault> = (0..5).map(|p| pod_fault("shop", "web", p, t0)).collect();
    let r = store.record_faults(&faults).await.unwrap();
    assert_eq!(r.iter().filter(|r| r.created).count(), 5);
    store.set_related_window(Some(WINDOW));
    store.set_related_window(None);
    let r = store
        .record_faults(&[pod_fault("shop", "web", 9, t0)])
        .await
        .unwrap();
    assert!(r[0].created);
}
