//! The dashboard list's keyset pages and short ids, on both backends.

use std::collections::HashSet;

use chrono::{Duration as Age, Utc};
use nightcrier::incident::{short_id, IncidentStatus};
use nightcrier::store::{Cursor, PageOrder, PageQuery, StoreError};
use uuid::Uuid;

use super::{outcome, WIDE};
use crate::support::common::{fault, fault_at, TestDb};

crate::store_conformance!(
    short_ids_resolve_and_ambiguity_is_named,
    pages_walk_every_incident_once_in_both_directions,
    page_filters_combine,
    page_queries_reject_bad_input,
);

async fn short_ids_resolve_and_ambiguity_is_named(db: &TestDb) {
    let store = db.store().await;
    let rec = store
        .record_faults(&[fault("prod", "a"), fault("prod", "b")])
        .await
        .unwrap();
    for r in &rec {
        let short = short_id(r.incident_id);
        assert_eq!(short.len(), 10);
        assert_eq!(store.get(&short).await.unwrap().id, r.incident_id);
        assert_eq!(
            store.get(&short.to_uppercase()).await.unwrap().id,
            r.incident_id
        );
    }
    // No incident has this tail.
    let missing = store.get("0000000000").await.unwrap_err();
    assert!(matches!(missing, StoreError::NotFound(_)), "{missing:?}");

    // Two incidents whose random tails collide: imported ids can be made to.
    let first = rec[0].incident_id;
    let twin_text = format!("{}{}", &Uuid::now_v7().to_string()[..26], short_id(first));
    let twin = Uuid::parse_str(&twin_text).unwrap();
    let url = db.url();
    match db.backend() {
        "sqlite" => {
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            sqlx::query("INSERT INTO incidents (id, cluster, fault_id, fault_type, severity, namespace, resource_kind, resource_name, resource_uid, context, status, occurrences, first_seen, last_seen, created_at) SELECT ?, cluster, 'twin', fault_type, severity, namespace, resource_kind, resource_name, resource_uid, context, 'failed', occurrences, first_seen, last_seen, created_at FROM incidents WHERE id = ?")
                .bind(twin.to_string())
                .bind(first.to_string())
                .execute(&pool)
                .await
                .unwrap();
        }
        _ => {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            sqlx::query("INSERT INTO incidents (id, cluster, fault_id, fault_type, severity, namespace, resource_kind, resource_name, resource_uid, context, status, occurrences, first_seen, last_seen, created_at) SELECT $1, cluster, 'twin', fault_type, severity, namespace, resource_kind, resource_name, resource_uid, context, 'failed', occurrences, first_seen, last_seen, created_at FROM incidents WHERE id = $2")
                .bind(twin)
                .bind(first)
                .execute(&pool)
                .await
                .unwrap();
        }
    }
    match store.get(&short_id(first)).await.unwrap_err() {
        StoreError::Ambiguous { prefix, matches } => {
            assert_eq!(prefix, short_id(first));
            assert_eq!(matches, 2);
            let msg = StoreError::Ambiguous { prefix, matches }.to_string();
            assert!(
                msg.contains("ambiguous") && msg.contains("more of the full id"),
                "{msg}"
            );
        }
        e => panic!("expected Ambiguous, got {e:?}"),
    }
    // The full id still resolves each.
    assert_eq!(store.get(&twin_text).await.unwrap().id, twin);
}

fn q(size: u32) -> PageQuery {
    PageQuery {
        size,
        ..PageQuery::default()
    }
}

async fn pages_walk_every_incident_once_in_both_directions(db: &TestDb) {
    let store = db.store().await;
    let faults: Vec<_> = (0..23).map(|n| fault("prod", &format!("f{n}"))).collect();
    let rec = store.record_faults(&faults).await.unwrap();
    let mut all: Vec<Uuid> = rec.iter().map(|r| r.incident_id).collect();
    all.sort();
    all.reverse(); // newest first

    // Forward through every page.
    let mut seen = Vec::new();
    let mut query = q(5);
    let mut pages = Vec::new();
    loop {
        let page = store.incident_page(&query).await.unwrap();
        assert!(page.incidents.len() <= 5);
        seen.extend(page.incidents.iter().map(|i| i.id));
        pages.push(page.clone());
        match page.next {
            Some(c) => query.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, all, "every incident once, newest first");
    assert_eq!(pages.len(), 5);
    assert!(
        pages[0].prev.is_none(),
        "the first page has no previous page"
    );
    assert_eq!(pages[4].incidents.len(), 3);

    // And back from the last page to the first, through `prev`.
    let mut back = Vec::new();
    let mut page = pages[4].clone();
    while let Some(c) = page.prev {
        assert!(matches!(c, Cursor::Before(_)));
        page = store
            .incident_page(&PageQuery {
                cursor: Some(c),
                ..q(5)
            })
            .await
            .unwrap();
        back.push(page.incidents.iter().map(|i| i.id).collect::<Vec<_>>());
    }
    let expected: Vec<Vec<Uuid>> = pages[..4]
        .iter()
        .rev()
        .map(|p| p.incidents.iter().map(|i| i.id).collect())
        .collect();
    assert_eq!(back, expected, "going back shows the same pages");

    // Oldest first is the reverse order.
    let oldest = store
        .incident_page(&PageQuery {
            order: PageOrder::OldestFirst,
            ..q(100)
        })
        .await
        .unwrap();
    let ids: Vec<Uuid> = oldest.incidents.iter().map(|i| i.id).collect();
    let mut rev = all.clone();
    rev.reverse();
    assert_eq!(ids, rev);
    assert!(oldest.next.is_none() && oldest.prev.is_none());
}

async fn page_filters_combine(db: &TestDb) {
    let store = db.store().await;
    let old = Utc::now() - Age::hours(30);
    let mut faults = vec![
        fault("prod", "p1"),
        fault("prod", "p2"),
        fault("stage", "s1"),
        fault_at("prod", "p-old", old),
    ];
    faults[1].fault.severity = "warning".into();
    faults[2].fault.fault_type = "OOMKilled".into();
    let rec = store.record_faults(&faults).await.unwrap();
    // p1 runs and fails.
    let claimed = store.claim("w", WIDE).await.unwrap().unwrap();
    store
        .complete(
            claimed.incident.id,
            claimed.attempt,
            &outcome(IncidentStatus::Failed),
        )
        .await
        .unwrap();

    let ids = |page: nightcrier::store::Page| -> HashSet<Uuid> {
        page.incidents.iter().map(|i| i.id).collect()
    };
    let page = |p: PageQuery| {
        let store = store.clone();
        async move { store.incident_page(&p).await.unwrap() }
    };
    let cluster = ids(page(PageQuery {
        cluster: Some("stage".into()),
        ..q(50)
    })
    .await);
    assert_eq!(cluster, HashSet::from([rec[2].incident_id]));
    let severity = ids(page(PageQuery {
        severity: Some("warning".into()),
        ..q(50)
    })
    .await);
    assert_eq!(severity, HashSet::from([rec[1].incident_id]));
    let fault_type = ids(page(PageQuery {
        fault_type: Some("OOMKilled".into()),
        ..q(50)
    })
    .await);
    assert_eq!(fault_type, HashSet::from([rec[2].incident_id]));
    let failed = ids(page(PageQuery {
        status: Some(IncidentStatus::Failed),
        ..q(50)
    })
    .await);
    assert_eq!(failed, HashSet::from([claimed.incident.id]));
    let recent = ids(page(PageQuery {
        since: Some(Utc::now() - Age::hours(1)),
        cluster: Some("prod".into()),
        ..q(50)
    })
    .await);
    // p-old was created now too (created_at is when it was recorded): the time filter is on
    // created_at, so all three prod incidents are recent.
    assert_eq!(recent.len(), 3);
    let none = ids(page(PageQuery {
        until: Some(Utc::now() - Age::hours(1)),
        ..q(50)
    })
    .await);
    assert!(none.is_empty());
    let both = ids(page(PageQuery {
        cluster: Some("prod".into()),
        severity: Some("critical".into()),
        ..q(50)
    })
    .await);
    assert_eq!(both.len(), 2);
}

async fn page_queries_reject_bad_input(db: &TestDb) {
    let store = db.store().await;
    for bad in [
        q(0),
        q(501),
        PageQuery {
            cluster: Some(String::new()),
            ..q(5)
        },
        PageQuery {
            severity: Some("x".repeat(300)),
            ..q(5)
        },
        PageQuery {
            fault_type: Some("a\0b".into()),
            ..q(5)
        },
    ] {
        let e = store.incident_page(&bad).await.unwrap_err();
        assert!(matches!(e, StoreError::InvalidInput(_)), "{bad:?}: {e:?}");
    }
}
