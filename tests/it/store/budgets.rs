//! Budgets, severity order and pending expiry in the claim: the same expectations on both
//! backends. Time is injected (`claim_at`, `expire_pending_at`): window boundaries are crossed by
//! stepping the clock the budget is judged by, never by sleeping.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use nightcrier::accounting::{hour_start, RunUsage};
use nightcrier::fault::ReceivedFault;
use nightcrier::incident::IncidentStatus;
use nightcrier::store::{Budget, BudgetPolicy, Store};
use uuid::Uuid;

use super::{outcome, WIDE};
use crate::support::common::{fault, TestDb};

crate::store_conformance!(
    critical_faults_are_claimed_before_older_warnings,
    an_hourly_cluster_budget_holds_with_a_reason_until_the_next_hour,
    a_daily_spend_budget_holds_until_the_next_day,
    on_budget_skip_ends_held_incidents_skipped,
    a_global_budget_holds_across_two_processes_and_a_restart,
    pending_incidents_expire_after_their_ttl_and_retry_still_works,
);

fn warning(cluster: &str, fault_id: &str) -> ReceivedFault {
    let mut f = fault(cluster, fault_id);
    f.fault.severity = "warning".into();
    f
}

fn per_cluster(cluster: &str, budget: Budget) -> BudgetPolicy {
    BudgetPolicy {
        clusters: [(cluster.to_string(), budget)].into(),
        ..BudgetPolicy::default()
    }
}

fn hourly(max: u32) -> Budget {
    Budget {
        max_per_hour: Some(max),
        ..Budget::default()
    }
}

/// Claims at `now` and completes the run; the incident's id, or `None` when nothing was claimed.
async fn claim_and_finish(store: &Store, now: DateTime<Utc>) -> Option<Uuid> {
    let c = store.claim_at("w1", WIDE, now).await.unwrap()?;
    let id = c.incident.id;
    assert!(store
        .complete(id, c.attempt, &outcome(IncidentStatus::Succeeded))
        .await
        .unwrap());
    Some(id)
}

async fn critical_faults_are_claimed_before_older_warnings(db: &TestDb) {
    let store = db.store().await;
    store
        .record_faults(&[warning("prod", "w1"), warning("prod", "w2")])
        .await
        .unwrap();
    store.record_faults(&[fault("prod", "c1")]).await.unwrap();
    let mut odd = fault("prod", "o1");
    odd.fault.severity = "info".into();
    store.record_faults(&[odd]).await.unwrap();
    store.record_faults(&[warning("prod", "w3")]).await.unwrap();
    let mut order = Vec::new();
    while let Some(c) = store.claim("w1", WIDE).await.unwrap() {
        order.push(c.incident.fault_id);
    }
    assert_eq!(order, ["c1", "w1", "w2", "w3", "o1"]);
}

async fn an_hourly_cluster_budget_holds_with_a_reason_until_the_next_hour(db: &TestDb) {
    let store = db.store().await;
    store.set_budgets(per_cluster("prod", hourly(2)));
    for id in ["a", "b", "c", "d"] {
        store.record_faults(&[fault("prod", id)]).await.unwrap();
    }
    store.record_faults(&[fault("stage", "s")]).await.unwrap();
    let now = Utc::now();
    let first = claim_and_finish(&store, now).await.unwrap();
    claim_and_finish(&store, now).await.unwrap();
    // The runs' own start time decides their window.
    let started = store.agent_runs(first).await.unwrap()[0].started_at;
    let next_hour = hour_start(started) + TimeDelta::hours(1);

    // prod is held; stage has no budget of its own and is still served.
    let c = store.claim_at("w1", WIDE, started).await.unwrap().unwrap();
    assert_eq!(c.incident.cluster, "stage");
    assert!(store.claim_at("w1", WIDE, started).await.unwrap().is_none());
    let held = store.get(&db_id(&store, "c").await).await.unwrap();
    assert_eq!(held.status, IncidentStatus::Pending);
    let reason = held.failure_reason.unwrap();
    assert!(
        reason.starts_with("hourly budget of cluster prod reached (2 of 2 investigations)")
            && reason.ends_with(&format!("next slot at {}", next_hour.format("%H:%M UTC"))),
        "{reason}"
    );

    // The last microsecond of the hour is still inside it; the next hour opens a slot.
    let last = next_hour - TimeDelta::microseconds(1);
    assert!(store.claim_at("w1", WIDE, last).await.unwrap().is_none());
    let c = store
        .claim_at("w1", WIDE, next_hour)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.incident.fault_id, "c", "oldest first within the cluster");
    assert_eq!(
        c.incident.failure_reason, None,
        "the claim clears the reason"
    );
    let d = store.get(&db_id(&store, "d").await).await.unwrap();
    assert_eq!(
        d.failure_reason, None,
        "a released cluster's reasons are cleared"
    );
}

async fn db_id(store: &Store, fault_id: &str) -> String {
    let all = store
        .list(&nightcrier::store::ListFilter::default())
        .await
        .unwrap();
    all.iter()
        .find(|i| i.fault_id == fault_id)
        .map(|i| i.id.to_string())
        .unwrap()
}

async fn a_daily_spend_budget_holds_until_the_next_day(db: &TestDb) {
    let store = db.store().await;
    store.set_budgets(BudgetPolicy {
        global: Budget {
            max_spend_per_day_usd: Some(5.0),
            ..Budget::default()
        },
        ..BudgetPolicy::default()
    });
    for id in ["a", "b"] {
        store.record_faults(&[fault("prod", id)]).await.unwrap();
    }
    let now = Utc::now();
    let c = store.claim_at("w1", WIDE, now).await.unwrap().unwrap();
    let spent = RunUsage {
        cost_usd: Some(6.0),
        ..RunUsage::default()
    };
    store
        .set_run_usage(c.incident.id, c.attempt, &spent)
        .await
        .unwrap();
    store
        .complete(
            c.incident.id,
            c.attempt,
            &outcome(IncidentStatus::Succeeded),
        )
        .await
        .unwrap();
    let started = store.agent_runs(c.incident.id).await.unwrap()[0].started_at;
    assert!(store.claim_at("w1", WIDE, started).await.unwrap().is_none());
    let b = store.get(&db_id(&store, "b").await).await.unwrap();
    assert!(
        b.failure_reason
            .as_deref()
            .unwrap()
            .starts_with("daily spend budget of all clusters reached ($6.00 of $5.00)"),
        "{b:?}"
    );
    let tomorrow = nightcrier::accounting::day_start(started) + TimeDelta::days(1);
    assert!(store
        .claim_at("w1", WIDE, tomorrow)
        .await
        .unwrap()
        .is_some());
}

async fn on_budget_skip_ends_held_incidents_skipped(db: &TestDb) {
    let store = db.store().await;
    store.set_budgets(per_cluster(
        "prod",
        Budget {
            skip: true,
            ..hourly(1)
        },
    ));
    for id in ["a", "b", "c"] {
        store.record_faults(&[fault("prod", id)]).await.unwrap();
    }
    let a = claim_and_finish(&store, Utc::now()).await.unwrap();
    let started = store.agent_runs(a).await.unwrap()[0].started_at;
    assert!(store.claim_at("w1", WIDE, started).await.unwrap().is_none());
    for id in ["b", "c"] {
        let i = store.get(&db_id(&store, id).await).await.unwrap();
        assert_eq!(i.status, IncidentStatus::Skipped);
        assert!(i
            .failure_reason
            .unwrap()
            .starts_with("hourly budget of cluster prod reached"));
    }
}

async fn a_global_budget_holds_across_two_processes_and_a_restart(db: &TestDb) {
    let policy = BudgetPolicy {
        global: hourly(3),
        ..BudgetPolicy::default()
    };
    // Two handles with their own pools: two processes sharing one database.
    let (one, two) = (db.store().await, db.store().await);
    one.set_budgets(policy.clone());
    two.set_budgets(policy.clone());
    let faults: Vec<ReceivedFault> = (0..12).map(|i| fault("prod", &format!("f{i}"))).collect();
    one.record_faults(&faults).await.unwrap();
    let now = Utc::now();
    let worker = |store: Store| async move {
        let mut claimed = Vec::new();
        while let Some(id) = claim_and_finish(&store, now).await {
            claimed.push(id);
        }
        claimed
    };
    let (a, b) = tokio::join!(
        tokio::spawn(worker(one.clone())),
        tokio::spawn(worker(two.clone()))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 3, "one budget for both: {a:?} {b:?}");
    let started = one
        .agent_runs(a.first().or(b.first()).copied().unwrap())
        .await
        .unwrap()[0]
        .started_at;

    // A restart: fresh handles, the same rows, the same answer.
    one.close().await;
    two.close().await;
    let again = db.store().await;
    again.set_budgets(policy);
    assert!(again.claim_at("w1", WIDE, started).await.unwrap().is_none());
    let next_hour = hour_start(started) + TimeDelta::hours(1);
    assert!(again
        .claim_at("w1", WIDE, next_hour)
        .await
        .unwrap()
        .is_some());
}

async fn pending_incidents_expire_after_their_ttl_and_retry_still_works(db: &TestDb) {
    let store = db.store().await;
    store.set_budgets(BudgetPolicy {
        pending_ttl: Some(Duration::from_secs(6 * 3600)),
        cluster_pending_ttl: [("stage".to_string(), Duration::from_secs(600))].into(),
        ..BudgetPolicy::default()
    });
    store.record_faults(&[fault("prod", "p")]).await.unwrap();
    store.record_faults(&[fault("stage", "s")]).await.unwrap();
    let now = Utc::now();
    assert_eq!(store.expire_pending_at(now).await.unwrap(), 0);
    // Past stage's own TTL, within the global one.
    assert_eq!(
        store
            .expire_pending_at(now + TimeDelta::minutes(20))
            .await
            .unwrap(),
        1
    );
    let s = store.get(&db_id(&store, "s").await).await.unwrap();
    assert_eq!(s.status, IncidentStatus::Expired);
    assert_eq!(
        s.failure_reason.as_deref(),
        Some("expired: pending longer than 10m without an investigation")
    );
    let p_id = db_id(&store, "p").await;
    assert_eq!(
        store.get(&p_id).await.unwrap().status,
        IncidentStatus::Pending
    );
    assert_eq!(
        store
            .expire_pending_at(now + TimeDelta::hours(7))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store.get(&p_id).await.unwrap().status,
        IncidentStatus::Expired
    );

    // Retry starts the TTL again.
    let retried = store.retry(s.id).await.unwrap();
    assert_eq!(retried.status, IncidentStatus::Pending);
    assert_eq!(
        store
            .expire_pending_at(Utc::now() + TimeDelta::minutes(5))
            .await
            .unwrap(),
        0
    );
    let c = store.claim("w1", WIDE).await.unwrap().unwrap();
    assert_eq!(c.incident.id, s.id);
}
