//! Accounting in the store (`set_run_usage`, `cost_groups`, `incident_costs`): the same
//! expectations on both backends.

use chrono::{TimeDelta, Utc};
use nightcrier::accounting::{Accounting, RunUsage};
use nightcrier::incident::IncidentStatus;
use nightcrier::store::{CostGroup, CostKey, Store, StoreError};
use uuid::Uuid;

use super::{outcome, WIDE};
use crate::support::common::{fault, TestDb};

crate::store_conformance!(
    usage_is_recorded_per_attempt_and_read_back,
    costs_group_by_cluster_model_fault_type_and_day,
    usage_of_an_unknown_attempt_is_not_found,
);

/// Records one fault on `cluster`, claims it and completes it; returns (id, attempt).
async fn run_once(store: &Store, cluster: &str, fault_id: &str) -> (Uuid, i32) {
    store
        .record_faults(&[fault(cluster, fault_id)])
        .await
        .unwrap();
    let claimed = store.claim("w1", WIDE).await.unwrap().expect("pending");
    assert_eq!(claimed.incident.fault_id, fault_id);
    assert!(store
        .complete(
            claimed.incident.id,
            claimed.attempt,
            &outcome(IncidentStatus::Succeeded)
        )
        .await
        .unwrap());
    (claimed.incident.id, claimed.attempt)
}

fn usage(model: &str, input: i64, cost: Option<f64>) -> RunUsage {
    RunUsage {
        accounting: if cost.is_some() {
            Accounting::Reported
        } else {
            Accounting::TokensOnly
        },
        model: Some(model.into()),
        input_tokens: Some(input),
        output_tokens: Some(input / 10),
        cache_read_tokens: Some(7),
        cache_write_tokens: None,
        turns: Some(2),
        cost_usd: cost,
        agent_error: Some(false),
    }
}

async fn usage_is_recorded_per_attempt_and_read_back(db: &TestDb) {
    let store = db.store().await;
    let (id, attempt) = run_once(&store, "prod", "a").await;
    let runs = store.agent_runs(id).await.unwrap();
    assert_eq!(
        runs[0].usage, None,
        "not accounted before the worker records it"
    );

    let u = usage("claude-sonnet-4-5", 1000, Some(0.125));
    store.set_run_usage(id, attempt, &u).await.unwrap();
    let runs = store.agent_runs(id).await.unwrap();
    assert_eq!(runs[0].usage.as_ref(), Some(&u));

    // A second attempt after a retry is accounted on its own row.
    store.retry(id).await.unwrap();
    let again = store.claim("w1", WIDE).await.unwrap().unwrap();
    let unknown = RunUsage::default();
    store
        .set_run_usage(id, again.attempt, &unknown)
        .await
        .unwrap();
    let runs = store.agent_runs(id).await.unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1].usage.as_ref(), Some(&unknown));
    assert_eq!(
        runs[1].usage.as_ref().unwrap().accounting,
        Accounting::Unknown
    );

    let costs = store.incident_costs(&[id, Uuid::now_v7()]).await.unwrap();
    assert_eq!(
        costs.get(&id),
        Some(&Some(0.125)),
        "the unknown run adds nothing"
    );
    assert_eq!(costs.len(), 1, "an incident without runs is absent");

    let bad = RunUsage {
        cost_usd: Some(f64::NAN),
        ..RunUsage::default()
    };
    assert!(matches!(
        store.set_run_usage(id, again.attempt, &bad).await,
        Err(StoreError::InvalidInput(_))
    ));
}

async fn costs_group_by_cluster_model_fault_type_and_day(db: &TestDb) {
    let store = db.store().await;
    let before = Utc::now() - TimeDelta::seconds(5);
    let (a, aa) = run_once(&store, "prod", "a").await;
    let (b, ba) = run_once(&store, "prod", "b").await;
    let (c, ca) = run_once(&store, "stage", "c").await;
    store
        .set_run_usage(a, aa, &usage("m1", 1000, Some(1.5)))
        .await
        .unwrap();
    store
        .set_run_usage(b, ba, &usage("m2", 500, None))
        .await
        .unwrap();
    store
        .set_run_usage(c, ca, &usage("m1", 100, Some(0.25)))
        .await
        .unwrap();

    let by_cluster = store.cost_groups(before, CostKey::Cluster).await.unwrap();
    let prod = CostGroup {
        key: "prod".into(),
        runs: 2,
        runs_without_cost: 1,
        input_tokens: 1500,
        output_tokens: 150,
        cache_read_tokens: 14,
        cache_write_tokens: 0,
        turns: 4,
        cost_usd: 1.5,
    };
    assert_eq!(by_cluster[0], prod);
    assert_eq!(by_cluster[1].key, "stage");
    assert_eq!(by_cluster[1].cost_usd, 0.25);
    let total = CostGroup::total("total", &by_cluster);
    assert_eq!((total.runs, total.cost_usd), (3, 1.75));

    let by_model = store.cost_groups(before, CostKey::Model).await.unwrap();
    let keys: Vec<(&str, i64)> = by_model.iter().map(|g| (g.key.as_str(), g.runs)).collect();
    assert_eq!(keys, [("m1", 2), ("m2", 1)]);

    let by_type = store.cost_groups(before, CostKey::FaultType).await.unwrap();
    assert_eq!(by_type.len(), 1);
    assert_eq!(by_type[0].key, "CrashLoop");

    let by_day = store.cost_groups(before, CostKey::Day).await.unwrap();
    let today = Utc::now().format("%Y-%m-%d").to_string();
    // A run started just before midnight UTC lands on the previous day.
    assert!(
        by_day.iter().any(|g| g.key == today) || by_day.len() == 2,
        "{by_day:?}"
    );
    assert_eq!(by_day.iter().map(|g| g.runs).sum::<i64>(), 3);

    let later = store
        .cost_groups(Utc::now() + TimeDelta::seconds(5), CostKey::Cluster)
        .await
        .unwrap();
    assert!(later.is_empty(), "the window excludes earlier runs");
}

async fn usage_of_an_unknown_attempt_is_not_found(db: &TestDb) {
    let store = db.store().await;
    let (id, attempt) = run_once(&store, "prod", "a").await;
    assert!(matches!(
        store
            .set_run_usage(id, attempt + 1, &RunUsage::default())
            .await,
        Err(StoreError::NotFound(_))
    ));
    let too_many: Vec<Uuid> = (0..=nightcrier::store::MAX_COST_IDS)
        .map(|_| Uuid::now_v7())
        .collect();
    assert!(matches!(
        store.incident_costs(&too_many).await,
        Err(StoreError::InvalidInput(_))
    ));
}
