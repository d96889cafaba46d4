//! Slack threads (`claim_slack_thread`, `take_over_slack_claim`, `set_slack_ts`,
//! `record_slack_progress`, `slack_followups`, `slack_unopened`): the same expectations on both
//! backends.

use chrono::Utc;
use nightcrier::incident::IncidentStatus;
use nightcrier::store::{SlackProgress, StoreError};

use crate::support::common::{fault, TestDb};

crate::store_conformance!(
    one_claim_per_incident_and_the_ts_is_set_once_by_its_owner,
    a_stale_claim_is_taken_over_a_fresh_one_is_not,
    progress_only_moves_forward_and_drives_followups,
    unopened_incidents_by_severity_and_stale_claims,
);

async fn one_claim_per_incident_and_the_ts_is_set_once_by_its_owner(db: &TestDb) {
    let (s1, s2) = (db.store().await, db.store().await);
    let id = s1.record_faults(&[fault("prod", "a")]).await.unwrap()[0].incident_id;
    assert!(s1.slack_thread(id).await.unwrap().is_none());
    assert!(s1.claim_slack_thread(id, "#ops", "p1").await.unwrap());
    assert!(!s2.claim_slack_thread(id, "#ops", "p2").await.unwrap());
    let t = s2.slack_thread(id).await.unwrap().unwrap();
    assert_eq!(
        (t.claim_owner.as_str(), t.ts, t.channel.as_str()),
        ("p1", None, "#ops")
    );
    assert!(
        !s2.set_slack_ts(id, "p2", "C1", "1.1").await.unwrap(),
        "not the owner"
    );
    assert!(s1.set_slack_ts(id, "p1", "C1", "1.2").await.unwrap());
    assert!(
        !s1.set_slack_ts(id, "p1", "C1", "1.3").await.unwrap(),
        "set once"
    );
    let t = s2.slack_thread(id).await.unwrap().unwrap();
    assert_eq!((t.ts.as_deref(), t.channel.as_str()), (Some("1.2"), "C1"));
    assert!(matches!(
        s1.claim_slack_thread(id, "", "p1").await,
        Err(StoreError::InvalidInput(_))
    ));
}

async fn a_stale_claim_is_taken_over_a_fresh_one_is_not(db: &TestDb) {
    let store = db.store().await;
    let id = store.record_faults(&[fault("prod", "a")]).await.unwrap()[0].incident_id;
    assert!(store.claim_slack_thread(id, "C1", "dead").await.unwrap());
    let claimed_at = store.slack_thread(id).await.unwrap().unwrap().claimed_at;
    // Made before the cutoff: taken over, once.
    let long_ago = claimed_at - chrono::Duration::seconds(1);
    assert!(!store
        .take_over_slack_claim(id, "p2", long_ago)
        .await
        .unwrap());
    let cutoff = claimed_at + chrono::Duration::microseconds(1);
    assert!(store.take_over_slack_claim(id, "p2", cutoff).await.unwrap());
    assert!(
        !store.take_over_slack_claim(id, "p3", cutoff).await.unwrap(),
        "fresh again"
    );
    assert_eq!(
        store.slack_thread(id).await.unwrap().unwrap().claim_owner,
        "p2"
    );
    // A posted parent is never taken over.
    assert!(store.set_slack_ts(id, "p2", "C1", "9.9").await.unwrap());
    let later = Utc::now() + chrono::Duration::hours(1);
    assert!(!store.take_over_slack_claim(id, "p4", later).await.unwrap());
}

async fn progress_only_moves_forward_and_drives_followups(db: &TestDb) {
    let store = db.store().await;
    let id = store.record_faults(&[fault("prod", "a")]).await.unwrap()[0].incident_id;
    assert!(store.claim_slack_thread(id, "C1", "p").await.unwrap());
    // Unposted: no follow-ups.
    assert!(store.slack_followups(10).await.unwrap().is_empty());
    assert!(store.set_slack_ts(id, "p", "C1", "1.1").await.unwrap());
    // The parent tells the occurrences of its claim; its status is not recorded yet.
    let f = store.slack_followups(10).await.unwrap();
    assert_eq!((f.len(), f[0].occurrences), (1, 1));
    assert!(
        !store
            .claim_slack_thread(uuid::Uuid::new_v4(), "C1", "p")
            .await
            .unwrap(),
        "no such incident"
    );
    let told = SlackProgress {
        occurrences: 1,
        attempt: 2,
        resolved: false,
        status: Some(IncidentStatus::Pending),
    };
    store.record_slack_progress(id, told).await.unwrap();
    assert!(store.slack_followups(10).await.unwrap().is_empty());
    store
        .record_slack_progress(id, SlackProgress::default())
        .await
        .unwrap();
    let t = store.slack_thread(id).await.unwrap().unwrap();
    assert_eq!(
        (t.posted_occurrences, t.posted_attempt, t.resolved_posted),
        (1, 2, false)
    );
    assert_eq!(t.posted_status.as_deref(), Some("pending"));
    // The run starts: the parent's status is behind.
    store
        .claim("w", super::WIDE)
        .await
        .unwrap()
        .expect("pending");
    assert_eq!(store.slack_followups(10).await.unwrap().len(), 1);
    let running = SlackProgress {
        status: Some(IncidentStatus::Running),
        ..SlackProgress::default()
    };
    store.record_slack_progress(id, running).await.unwrap();
    assert!(store.slack_followups(10).await.unwrap().is_empty());
    store.record_faults(&[fault("prod", "a")]).await.unwrap();
    let f = store.slack_followups(10).await.unwrap();
    assert_eq!((f.len(), f[0].occurrences), (1, 2));
    store
        .record_slack_progress(
            id,
            SlackProgress {
                occurrences: 2,
                attempt: 0,
                resolved: false,
                status: None,
            },
        )
        .await
        .unwrap();
    assert!(store.slack_followups(10).await.unwrap().is_empty());
    store
        .resolve_open("prod", "a", Utc::now(), false)
        .await
        .unwrap()
        .expect("open");
    assert_eq!(
        store.slack_followups(10).await.unwrap().len(),
        1,
        "resolution is news"
    );
    store
        .record_slack_progress(
            id,
            SlackProgress {
                occurrences: 0,
                attempt: 0,
                resolved: true,
                status: None,
            },
        )
        .await
        .unwrap();
    assert!(store.slack_followups(10).await.unwrap().is_empty());
    assert!(matches!(
        store.slack_followups(0).await,
        Err(StoreError::InvalidInput(_))
    ));
}

async fn unopened_incidents_by_severity_and_stale_claims(db: &TestDb) {
    let store = db.store().await;
    let sev = |s: &str| vec![s.to_string()];
    let id = store.record_faults(&[fault("prod", "a")]).await.unwrap()[0].incident_id;
    let now = Utc::now();
    let old = now - chrono::Duration::hours(1);
    assert!(store
        .slack_unopened(&sev("warning"), old, 10)
        .await
        .unwrap()
        .is_empty());
    let got = store
        .slack_unopened(&sev("critical"), old, 10)
        .await
        .unwrap();
    assert_eq!(got.iter().map(|i| i.id).collect::<Vec<_>>(), [id]);
    assert!(store.slack_unopened(&[], old, 10).await.unwrap().is_empty());
    assert!(store.claim_slack_thread(id, "C1", "p").await.unwrap());
    // Freshly claimed: not offered again; stale (claimed before the cutoff): offered again.
    assert!(store
        .slack_unopened(&sev("critical"), old, 10)
        .await
        .unwrap()
        .is_empty());
    let later = Utc::now() + chrono::Duration::seconds(1);
    assert_eq!(
        store
            .slack_unopened(&sev("critical"), later, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(store.set_slack_ts(id, "p", "C1", "1.1").await.unwrap());
    assert!(store
        .slack_unopened(&sev("critical"), later, 10)
        .await
        .unwrap()
        .is_empty());
    let many: Vec<String> = (0..100).map(|n| n.to_string()).collect();
    assert!(matches!(
        store.slack_unopened(&many, old, 10).await,
        Err(StoreError::InvalidInput(_))
    ));
}
