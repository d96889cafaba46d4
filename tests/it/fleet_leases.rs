//! The fleet's tables through the store, on a real PostgreSQL: leases are taken once, renewed by
//! the heartbeat, taken over with a new epoch after they expire, released on hand-over; a fault
//! write fenced with a stale epoch fails; SQLite refuses fleet calls and records as before.

use crate::support::common;

use std::time::{Duration, Instant};

use common::{fault, TestDb};
use nightcrier::store::{InstanceRecord, LeaseFence, StoreError};

fn instance(id: &str) -> InstanceRecord {
    InstanceRecord {
        id: id.into(),
        host: "test-host".into(),
        pid: 1,
        http_addr: Some("127.0.0.1:9".into()),
        version: "test".into(),
        config_hash: "hash-1".into(),
    }
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn fence(owner: &str, epochs: &[(&str, i64)]) -> LeaseFence {
    LeaseFence {
        owner: owner.into(),
        epochs: epochs.iter().map(|(c, e)| (c.to_string(), *e)).collect(),
    }
}

#[tokio::test]
async fn leases_are_taken_once_renewed_taken_over_after_expiry_and_fence_late_writes() {
    let db = TestDb::postgres().await;
    let (one, two) = (db.store().await, db.store().await);
    let clusters = names(&["x", "y", "z"]);
    let ttl = Duration::from_millis(400);
    one.fleet_register(&instance("p1/boot"), &clusters)
        .await
        .unwrap();
    two.fleet_register(&instance("p2/boot"), &clusters)
        .await
        .unwrap();

    let beat = one.fleet_beat("p1/boot", &clusters, ttl).await.unwrap();
    assert_eq!(beat.free, 3);
    assert!(beat.leases.is_empty());
    assert_eq!(beat.peers.len(), 1);
    assert_eq!(beat.peers[0].id, "p2/boot");
    assert!(!beat.drain_requested);

    let taken = one
        .fleet_acquire("p1/boot", &clusters, 2, ttl)
        .await
        .unwrap();
    let got: Vec<(&str, i64)> = taken
        .iter()
        .map(|a| (a.cluster.as_str(), a.epoch))
        .collect();
    assert_eq!(got, [("x", 1), ("y", 1)]);
    assert!(taken.iter().all(|a| a.previous.is_none()));
    // Only z is left for the second process, however many it asks for.
    let taken = two
        .fleet_acquire("p2/boot", &clusters, 3, ttl)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].cluster, "z");

    // Fenced writes: the held cluster under its epoch is written; another cluster is refused.
    one.set_fence(Some(fence("p1/boot", &[("x", 1), ("y", 1)])));
    let written = one.record_faults_fenced(&[fault("x", "f1")]).await.unwrap();
    assert!(written[0].created);
    match one
        .record_faults_fenced(&[fault("x", "f2"), fault("z", "f3")])
        .await
    {
        Err(StoreError::InvalidFault { index, reason }) => {
            assert_eq!(index, 1);
            assert!(reason.contains("\"z\""), "{reason}");
        }
        other => panic!("a write for z was not fenced: {other:?}"),
    }

    // p1 stops beating: once its leases expire, p2 takes them over with a new epoch.
    let started = Instant::now();
    let over = loop {
        two.fleet_beat("p2/boot", &clusters, ttl).await.unwrap();
        let got = two
            .fleet_acquire("p2/boot", &clusters, 3, ttl)
            .await
            .unwrap();
        if got.len() == 2 {
            break got;
        }
        assert!(got.is_empty(), "taken one by one: {got:?}");
        assert!(started.elapsed() < Duration::from_secs(20), "never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for a in &over {
        assert_eq!(a.epoch, 2);
        assert_eq!(a.previous.as_deref(), Some("p1/boot"));
        assert!(!a.handed_over, "taken over after expiry");
    }
    match one.record_faults_fenced(&[fault("x", "f4")]).await {
        Err(StoreError::InvalidFault { index: 0, .. }) => {}
        other => panic!("a late write of p1 was not fenced: {other:?}"),
    }
    // The late heartbeat renews nothing: those leases are lost.
    let beat = one.fleet_beat("p1/boot", &clusters, ttl).await.unwrap();
    assert!(beat.leases.is_empty());
    assert_eq!(beat.free, 0);
    let beat = two.fleet_beat("p2/boot", &clusters, ttl).await.unwrap();
    assert_eq!(beat.leases.len(), 3);

    // Hand-over: released leases are free at once.
    assert_eq!(
        two.fleet_release("p2/boot", Some(&names(&["x"])))
            .await
            .unwrap(),
        1
    );
    let beat = one.fleet_beat("p1/boot", &clusters, ttl).await.unwrap();
    assert_eq!(beat.free, 1);
    let handed = one
        .fleet_acquire("p1/boot", &clusters, 1, ttl)
        .await
        .unwrap();
    assert_eq!(handed.len(), 1);
    assert_eq!(handed[0].cluster, "x");
    assert_eq!(handed[0].epoch, 3);
    assert_eq!(handed[0].previous.as_deref(), Some("p2/boot"));
    assert!(handed[0].handed_over);
    assert_eq!(
        one.fleet_release("p1/boot", Some(&names(&["x"])))
            .await
            .unwrap(),
        1
    );

    // Drain requests reach the process at its next beat; a drained process is no peer.
    assert_eq!(
        one.fleet_request_drain("p1/").await.unwrap(),
        ["p1/boot".to_string()]
    );
    assert!(
        one.fleet_beat("p1/boot", &clusters, ttl)
            .await
            .unwrap()
            .drain_requested
    );
    assert!(two
        .fleet_beat("p2/boot", &clusters, ttl)
        .await
        .unwrap()
        .peers
        .is_empty());
    assert!(one.fleet_request_drain("p1%").await.unwrap().is_empty());

    // A clean exit releases everything and leaves the row for `status`.
    assert_eq!(two.fleet_stop("p2/boot").await.unwrap(), 2);
    let (instances, leases) = one.fleet_status(Duration::from_secs(60)).await.unwrap();
    let p2 = instances.iter().find(|i| i.id == "p2/boot").unwrap();
    assert!(!p2.alive && p2.stopped_at.is_some());
    assert_eq!(p2.clusters_owned, 0);
    let p1 = instances.iter().find(|i| i.id == "p1/boot").unwrap();
    assert!(p1.alive && p1.draining);
    assert_eq!(leases.len(), 3);
    assert!(leases.iter().all(|l| !l.held));
}

#[tokio::test]
async fn sqlite_has_no_fleet_and_records_as_before() {
    let db = TestDb::sqlite();
    let store = db.store().await;
    match store
        .fleet_register(&instance("p1/boot"), &names(&["x"]))
        .await
    {
        Err(StoreError::InvalidInput(msg)) => assert!(msg.contains("PostgreSQL"), "{msg}"),
        other => panic!("expected a clear refusal: {other:?}"),
    }
    // No fence is ever installed on SQLite: the fenced write is the plain one.
    let written = store
        .record_faults_fenced(&[fault("x", "f1")])
        .await
        .unwrap();
    assert!(written[0].created);
}
