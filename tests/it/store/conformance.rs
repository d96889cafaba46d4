//! Recording, dedup, cooldown, lookups and bad input: the same expectations on both backends.

use std::time::Duration;

use chrono::{Duration as Age, Utc};
use nightcrier::incident::{ConnectionState, IncidentStatus};
use nightcrier::store::{ListFilter, StoreError};

use super::{outcome, WIDE};
use crate::support::common::{fault, fault_at, TestDb};

crate::store_conformance!(
    a_new_fault_opens_a_pending_incident_with_its_occurrence,
    repeats_attach_to_the_open_incident_even_while_running,
    repeats_within_one_batch_share_one_new_incident,
    a_repeat_within_the_cooldown_attaches_to_the_finished_incident,
    a_repeat_after_the_cooldown_opens_a_new_incident,
    triage_disabled_records_skipped_incidents_that_absorb_repeats,
    a_bad_fault_rejects_the_batch_naming_its_index_and_writes_nothing,
    get_accepts_full_ids_and_unique_prefixes_only,
    list_filters_and_orders_newest_first,
    unknown_statuses_are_rejected_by_parser_and_schema,
    migrations_apply_twice_and_keep_data,
    simultaneous_first_starts_all_succeed,
    connection_states_are_replaced_per_cluster,
    status_counts_and_recent_failures,
    pending_notified_wakes_after_record,
);

async fn a_new_fault_opens_a_pending_incident_with_its_occurrence(db: &TestDb) {
    let store = db.store().await;
    assert_eq!(store.backend(), db.backend());
    store.ping().await.unwrap();
    let f = fault("prod", "670b5093e8ce7fc6");
    let rec = store.record_faults(std::slice::from_ref(&f)).await.unwrap();
    assert_eq!(rec.len(), 1);
    assert!(rec[0].created);
    assert_eq!(rec[0].status, IncidentStatus::Pending);
    assert_eq!(rec[0].incident_id.get_version_num(), 7, "ids are UUID v7");

    let inc = store.get(&rec[0].incident_id.to_string()).await.unwrap();
    assert_eq!(inc.cluster, "prod");
    assert_eq!(inc.fault_id, "670b5093e8ce7fc6");
    assert_eq!(inc.fault_type, "CrashLoop");
    assert_eq!(inc.severity, "critical");
    assert_eq!(inc.namespace.as_deref(), Some("default"));
    assert_eq!(inc.resource_kind, "Pod");
    assert_eq!(inc.resource_name, "pod-670b5093e8ce7fc6");
    assert_eq!(inc.resource_uid, "uid-670b5093e8ce7fc6");
    assert_eq!(inc.context, f.fault.context);
    assert_eq!(inc.status, IncidentStatus::Pending);
    assert_eq!(inc.occurrences, 1);
    assert_eq!(inc.attempt, 0);
    assert_eq!(
        inc.first_seen.timestamp_micros(),
        f.received_at.timestamp_micros()
    );
    assert_eq!(inc.first_seen, inc.last_seen);
    assert!(inc.started_at.is_none() && inc.finished_at.is_none() && inc.lease_owner.is_none());

    let occ = store.occurrences(inc.id, 10).await.unwrap();
    assert_eq!(occ.len(), 1);
    assert_eq!(occ[0].incident_id, inc.id);
    assert_eq!(occ[0].server_timestamp, "2025-12-19T22:11:10+01:00");
    assert_eq!(
        occ[0].raw, f.raw,
        "the raw notification is kept as received"
    );
    assert_eq!(occ[0].received_at, inc.first_seen);
}

async fn repeats_attach_to_the_open_incident_even_while_running(db: &TestDb) {
    let store = db.store().await;
    let t0 = Utc::now();
    let first = store
        .record_faults(&[fault_at("prod", "f1", t0)])
        .await
        .unwrap()[0]
        .clone();
    let again = store
        .record_faults(&[fault_at("prod", "f1", t0 + Age::seconds(5))])
        .await
        .unwrap();
    assert_eq!(again[0].incident_id, first.incident_id);
    assert!(!again[0].created);
    // The same faultId on another cluster is another fault.
    let other = store
        .record_faults(&[fault("staging", "f1")])
        .await
        .unwrap();
    assert_ne!(other[0].incident_id, first.incident_id);
    assert!(other[0].created);

    let claimed = store.claim("w1", WIDE).await.unwrap().unwrap();
    assert_eq!(claimed.incident.id, first.incident_id);
    let late = store
        .record_faults(&[fault_at("prod", "f1", t0 + Age::seconds(9))])
        .await
        .unwrap();
    assert_eq!(late[0].incident_id, first.incident_id);
    assert_eq!(late[0].status, IncidentStatus::Running);

    let inc = store.get(&first.incident_id.to_string()).await.unwrap();
    assert_eq!(inc.occurrences, 3);
    assert_eq!(inc.first_seen.timestamp_micros(), t0.timestamp_micros());
    assert_eq!(
        inc.last_seen.timestamp_micros(),
        (t0 + Age::seconds(9)).timestamp_micros()
    );
    assert_eq!(store.occurrences(inc.id, 100).await.unwrap().len(), 3);
    assert_eq!(
        store.occurrences(inc.id, 2).await.unwrap().len(),
        2,
        "limit applies"
    );
}

async fn repeats_within_one_batch_share_one_new_incident(db: &TestDb) {
    let store = db.store().await;
    let batch = [
        fault("prod", "aaa"),
        fault("prod", "bbb"),
        fault("prod", "aaa"),
        fault("staging", "aaa"),
        fault("prod", "aaa"),
    ];
    let rec = store.record_faults(&batch).await.unwrap();
    assert_eq!(rec.len(), 5, "one result per fault, in input order");
    let a = rec[0].incident_id;
    assert!(rec[0].created);
    assert!(rec[1].created && rec[1].incident_id != a);
    assert_eq!((rec[2].incident_id, rec[2].created), (a, false));
    assert!(rec[3].created && rec[3].incident_id != a);
    assert_eq!((rec[4].incident_id, rec[4].created), (a, false));
    assert_eq!(store.get(&a.to_string()).await.unwrap().occurrences, 3);
    assert_eq!(store.list(&ListFilter::default()).await.unwrap().len(), 3);
    // Incidents of one batch are queued in arrival order.
    let order: Vec<_> = [
        store.claim("w", WIDE).await.unwrap().unwrap(),
        store.claim("w", WIDE).await.unwrap().unwrap(),
        store.claim("w", WIDE).await.unwrap().unwrap(),
    ]
    .iter()
    .map(|c| c.incident.id)
    .collect();
    assert_eq!(order, vec![a, rec[1].incident_id, rec[3].incident_id]);
}

async fn a_repeat_within_the_cooldown_attaches_to_the_finished_incident(db: &TestDb) {
    let store = db.store().await; // cooldown 30 min
    let rec = store.record_faults(&[fault("prod", "f1")]).await.unwrap();
    let c = store.claim("w1", WIDE).await.unwrap().unwrap();
    assert!(store
        .complete(
            c.incident.id,
            c.attempt,
            &outcome(IncidentStatus::Succeeded)
        )
        .await
        .unwrap());
    let finished = store.get(&c.incident.id.to_string()).await.unwrap();
    let finished_at = finished.finished_at.unwrap();

    let again = store
        .record_faults(&[fault_at("prod", "f1", finished_at + Age::minutes(29))])
        .await
        .unwrap();
    assert_eq!(again[0].incident_id, rec[0].incident_id);
    assert!(!again[0].created);
    assert_eq!(again[0].status, IncidentStatus::Succeeded);
    let inc = store.get(&rec[0].incident_id.to_string()).await.unwrap();
    assert_eq!(inc.occurrences, 2);
    assert_eq!(
        inc.status,
        IncidentStatus::Succeeded,
        "attaching does not reopen"
    );
    assert!(
        store.claim("w1", WIDE).await.unwrap().is_none(),
        "nothing new is pending"
    );
}

async fn a_repeat_after_the_cooldown_opens_a_new_incident(db: &TestDb) {
    let store = db.store().await; // cooldown 30 min
    let rec = store.record_faults(&[fault("prod", "f1")]).await.unwrap();
    let c = store.claim("w1", WIDE).await.unwrap().unwrap();
    store
        .complete(c.incident.id, c.attempt, &outcome(IncidentStatus::Failed))
        .await
        .unwrap();
    let finished_at = store
        .get(&c.incident.id.to_string())
        .await
        .unwrap()
        .finished_at
        .unwrap();

    let later = store
        .record_faults(&[fault_at("prod", "f1", finished_at + Age::minutes(31))])
        .await
        .unwrap();
    assert!(later[0].created);
    assert_ne!(later[0].incident_id, rec[0].incident_id);
    assert_eq!(later[0].status, IncidentStatus::Pending);

    // With no cooldown, any fault received after the end opens a new incident.
    let mut opts = db.options();
    opts.dedup_cooldown = Duration::ZERO;
    let eager = db.store_with(opts).await;
    let c2 = eager.claim("w1", WIDE).await.unwrap().unwrap();
    eager
        .complete(
            c2.incident.id,
            c2.attempt,
            &outcome(IncidentStatus::Succeeded),
        )
        .await
        .unwrap();
    let third = eager.record_faults(&[fault("prod", "f1")]).await.unwrap();
    assert!(third[0].created);
    assert_ne!(third[0].incident_id, later[0].incident_id);
    let all = eager
        .list(&ListFilter {
            cluster: Some("prod".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
}

async fn triage_disabled_records_skipped_incidents_that_absorb_repeats(db: &TestDb) {
    let store = db.store().await;
    let mut f = fault("quiet", "f1");
    f.triage_enabled = false;
    let rec = store.record_faults(std::slice::from_ref(&f)).await.unwrap();
    assert!(rec[0].created);
    assert_eq!(rec[0].status, IncidentStatus::Skipped);
    let inc = store.get(&rec[0].incident_id.to_string()).await.unwrap();
    assert_eq!(inc.status, IncidentStatus::Skipped);
    assert!(
        inc.finished_at.is_some(),
        "skipped counts as finished at creation"
    );
    let again = store.record_faults(&[f.clone(), f]).await.unwrap();
    assert!(again.iter().all(|r| r.incident_id == inc.id && !r.created));
    assert_eq!(store.get(&inc.id.to_string()).await.unwrap().occurrences, 3);
    assert!(store.claim("w1", WIDE).await.unwrap().is_none());
}

async fn a_bad_fault_rejects_the_batch_naming_its_index_and_writes_nothing(db: &TestDb) {
    let store = db.store().await;
    let mut no_cluster = fault("", "f2");
    no_cluster.cluster = String::new();
    let err = store
        .record_faults(&[fault("prod", "f1"), no_cluster, fault("prod", "f3")])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::InvalidFault { index: 1, reason } if reason.contains("cluster")),
        "{err:?}"
    );
    assert!(err.to_string().contains("index 1"), "{err}");
    assert!(!err.is_unavailable());

    let err = store
        .record_faults(&[fault("prod", "f1"), fault("prod", " ")])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::InvalidFault { index: 1, reason } if reason.contains("faultId")),
        "{err:?}"
    );
    let mut nul = fault("prod", "f4");
    nul.fault.context = "bad\0byte".into();
    let err = store.record_faults(&[nul]).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::InvalidFault { index: 0, reason } if reason.contains("context")),
        "{err:?}"
    );
    assert!(
        store.list(&ListFilter::default()).await.unwrap().is_empty(),
        "nothing written"
    );
    assert!(store.record_faults(&[]).await.unwrap().is_empty());

    // Dropping the bad fault and retrying records the rest.
    let ok = store
        .record_faults(&[fault("prod", "f1"), fault("prod", "f3")])
        .await
        .unwrap();
    assert_eq!(ok.len(), 2);
}

async fn get_accepts_full_ids_and_unique_prefixes_only(db: &TestDb) {
    let store = db.store().await;
    let rec = store
        .record_faults(&[fault("prod", "a"), fault("prod", "b"), fault("prod", "c")])
        .await
        .unwrap();
    let id = rec[1].incident_id;
    let text = id.to_string();
    assert_eq!(store.get(&text).await.unwrap().id, id);
    assert_eq!(store.get(&text.to_uppercase()).await.unwrap().id, id);
    // The random tail makes a long prefix unique.
    assert_eq!(store.get(&text[..30]).await.unwrap().id, id);
    assert_eq!(store.get(&text[..30].to_uppercase()).await.unwrap().id, id);
    // v7 ids made in the same millisecond share their first 12 hex digits.
    let shared = &text[..8];
    let same: usize = rec
        .iter()
        .filter(|r| r.incident_id.to_string().starts_with(shared))
        .count();
    if same > 1 {
        match store.get(shared).await.unwrap_err() {
            StoreError::Ambiguous { prefix, matches } => {
                assert_eq!(prefix, shared);
                assert_eq!(matches, same);
            }
            e => panic!("expected Ambiguous, got {e:?}"),
        }
    }
    let short = store.get(&text[..7]).await.unwrap_err();
    assert!(
        matches!(&short, StoreError::InvalidInput(m) if m.contains("at least 8 characters")),
        "{short:?}"
    );
    let wild = store.get("0%%%%%%%%").await.unwrap_err();
    assert!(matches!(wild, StoreError::InvalidInput(_)), "{wild:?}");
    let under = store.get("________").await.unwrap_err();
    assert!(matches!(under, StoreError::InvalidInput(_)), "{under:?}");
    let missing = store.get("ffffffff-ffff").await.unwrap_err();
    assert!(matches!(missing, StoreError::NotFound(_)), "{missing:?}");
    let nil = store.get(&uuid::Uuid::nil().to_string()).await.unwrap_err();
    assert!(matches!(nil, StoreError::NotFound(_)), "{nil:?}");
}

async fn list_filters_and_orders_newest_first(db: &TestDb) {
    let store = db.store().await;
    let mut ids = Vec::new();
    for (cluster, f) in [("a", "1"), ("b", "2"), ("a", "3"), ("b", "4")] {
        ids.push(store.record_faults(&[fault(cluster, f)]).await.unwrap()[0].incident_id);
    }
    let c = store.claim("w", WIDE).await.unwrap().unwrap();
    assert_eq!(c.incident.id, ids[0]);

    let all = store.list(&ListFilter::default()).await.unwrap();
    let listed: Vec<_> = all.iter().map(|i| i.id).collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(listed, newest_first);

    let pending_a = store
        .list(&ListFilter {
            status: Some(IncidentStatus::Pending),
            cluster: Some("a".into()),
            limit: None,
        })
        .await
        .unwrap();
    assert_eq!(
        pending_a.iter().map(|i| i.id).collect::<Vec<_>>(),
        vec![ids[2]]
    );
    let running = store
        .list(&ListFilter {
            status: Some(IncidentStatus::Running),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(running.len(), 1);
    let two = store
        .list(&ListFilter {
            limit: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        two.iter().map(|i| i.id).collect::<Vec<_>>(),
        newest_first[..2]
    );
    let err = store
        .list(&ListFilter {
            limit: Some(1_000_000),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::InvalidInput(m) if m.contains("limit")),
        "{err:?}"
    );
    let err = store
        .list(&ListFilter {
            cluster: Some(String::new()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::InvalidInput(m) if m.contains("cluster")),
        "{err:?}"
    );
}

async fn unknown_statuses_are_rejected_by_parser_and_schema(db: &TestDb) {
    let err = "done".parse::<IncidentStatus>().unwrap_err();
    assert!(err.to_string().contains("\"done\"") && err.to_string().contains("pending"));

    let store = db.store().await;
    let id = store.record_faults(&[fault("prod", "f1")]).await.unwrap()[0].incident_id;
    // Even SQL that bypasses the store cannot write a status outside the vocabulary.
    let rejected = match db {
        TestDb::Sqlite(_) => {
            let pool = sqlx::SqlitePool::connect(&db.url()).await.unwrap();
            sqlx::query("UPDATE incidents SET status = 'done' WHERE id = ?")
                .bind(id.to_string())
                .execute(&pool)
                .await
                .map(|_| ())
        }
        TestDb::Postgres { .. } => {
            let pool = sqlx::PgPool::connect(&db.url()).await.unwrap();
            sqlx::query("UPDATE incidents SET status = 'done' WHERE id = $1")
                .bind(id)
                .execute(&pool)
                .await
                .map(|_| ())
        }
    };
    let err = rejected.unwrap_err().to_string().to_lowercase();
    assert!(err.contains("check"), "{err}");
    assert_eq!(
        store.get(&id.to_string()).await.unwrap().status,
        IncidentStatus::Pending
    );
}

async fn migrations_apply_twice_and_keep_data(db: &TestDb) {
    let store = db.store().await;
    let id = store.record_faults(&[fault("prod", "f1")]).await.unwrap()[0].incident_id;
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    let second = db.store().await; // connect applies migrations again
    second.migrate().await.unwrap();
    assert_eq!(second.get(&id.to_string()).await.unwrap().occurrences, 1);
    store.close().await;
    second.close().await;
}

async fn simultaneous_first_starts_all_succeed(db: &TestDb) {
    // Several processes starting at once on an empty database all migrate it without error.
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let opts = db.options();
            tokio::spawn(async move { nightcrier::store::Store::connect(opts).await })
        })
        .collect();
    for s in starts {
        let store = s.await.unwrap().expect("a simultaneous start");
        store.ping().await.unwrap();
    }
    let store = db.store().await;
    assert!(store.record_faults(&[fault("prod", "f1")]).await.unwrap()[0].created);
}

async fn connection_states_are_replaced_per_cluster(db: &TestDb) {
    let store = db.store().await;
    let t = Utc::now();
    let mut s = ConnectionState {
        cluster: "prod".into(),
        state: nightcrier::incident::ConnectionPhase::Connecting,
        subscription_id: None,
        last_error: Some("connection refused".into()),
        last_event_at: None,
        events_received: 0,
        events_malformed: 0,
        reconnects: 1,
        updated_at: t,
    };
    store.put_connection_state(&s).await.unwrap();
    s.state = nightcrier::incident::ConnectionPhase::Subscribed;
    s.subscription_id = Some("sub-1".into());
    s.last_error = None;
    s.last_event_at = Some(t);
    s.events_received = 42;
    s.events_malformed = 2;
    store.put_connection_state(&s).await.unwrap();
    let other = ConnectionState {
        cluster: "dev".into(),
        ..s.clone()
    };
    store.put_connection_state(&other).await.unwrap();

    // A second handle (as `nightcrier status` would open) reads the same rows.
    let reader = db.store().await;
    let states = reader.connection_states().await.unwrap();
    assert_eq!(states.len(), 2);
    assert_eq!(states[0].cluster, "dev");
    let prod = &states[1];
    assert_eq!(prod.state, "subscribed");
    assert_eq!(prod.subscription_id.as_deref(), Some("sub-1"));
    assert_eq!(prod.last_error, None);
    assert_eq!(prod.events_received, 42);
    assert_eq!(prod.events_malformed, 2);
    assert_eq!(prod.reconnects, 1);
    assert_eq!(prod.updated_at.timestamp_micros(), t.timestamp_micros());

    let err = store
        .put_connection_state(&ConnectionState {
            cluster: String::new(),
            ..s
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::InvalidInput(m) if m.contains("cluster")),
        "{err:?}"
    );
}

async fn status_counts_and_recent_failures(db: &TestDb) {
    let store = db.store().await;
    let before = Utc::now() - Age::seconds(1);
    store
        .record_faults(&[
            fault("a", "1"),
            fault("a", "2"),
            fault("b", "3"),
            fault("b", "4"),
        ])
        .await
        .unwrap();
    let c1 = store.claim("w", WIDE).await.unwrap().unwrap();
    store
        .complete(c1.incident.id, c1.attempt, &outcome(IncidentStatus::Failed))
        .await
        .unwrap();
    let c2 = store.claim("w", WIDE).await.unwrap().unwrap();
    store
        .complete(
            c2.incident.id,
            c2.attempt,
            &outcome(IncidentStatus::Succeeded),
        )
        .await
        .unwrap();
    let c3 = store.claim("w", WIDE).await.unwrap().unwrap();
    store
        .complete(
            c3.incident.id,
            c3.attempt,
            &outcome(IncidentStatus::TimedOut),
        )
        .await
        .unwrap();

    let counts: Vec<_> = store
        .status_counts()
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.cluster, c.status, c.count))
        .collect();
    assert_eq!(
        counts,
        vec![
            ("a".to_string(), IncidentStatus::Failed, 1),
            ("a".to_string(), IncidentStatus::Succeeded, 1),
            ("b".to_string(), IncidentStatus::Pending, 1),
            ("b".to_string(), IncidentStatus::TimedOut, 1),
        ]
    );
    let failures = store.recent_failures(before, 10).await.unwrap();
    assert_eq!(
        failures.iter().map(|i| i.id).collect::<Vec<_>>(),
        vec![c3.incident.id, c1.incident.id],
        "failed and timed out, newest first"
    );
    assert_eq!(store.recent_failures(before, 1).await.unwrap().len(), 1);
    assert!(store
        .recent_failures(Utc::now() + Age::seconds(5), 10)
        .await
        .unwrap()
        .is_empty());
}

async fn pending_notified_wakes_after_record(db: &TestDb) {
    let store = db.store().await;
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.pending_notified().await })
    };
    // The waiter may not be registered yet when the first record commits; the permit left by
    // the wake-up covers that gap, so one record is enough.
    tokio::task::yield_now().await;
    store.record_faults(&[fault("prod", "f1")]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the waiter wakes after a new pending incident")
        .unwrap();
}
