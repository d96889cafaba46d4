//! Many claimers on several pools (as several processes would have) never exceed either limit;
//! concurrent writers never open two incidents for one fault. Checked from in-memory counters
//! while running and from the agent-run intervals in the database afterwards.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use nightcrier::incident::IncidentStatus;
use nightcrier::store::{ClaimLimits, ListFilter, Store};
use rand::{Rng, SeedableRng};

use super::outcome;
use crate::support::common::{fault, TestDb};

crate::store_conformance!(
    claimers_on_four_pools_respect_one_per_cluster_and_four_in_total,
    claimers_on_four_pools_respect_two_per_cluster_and_five_in_total,
    concurrent_writers_open_one_incident_per_fault,
);

const POOLS: usize = 4;
const CLAIMERS_PER_POOL: usize = 3;

async fn claimers_on_four_pools_respect_one_per_cluster_and_four_in_total(db: &TestDb) {
    let limits = ClaimLimits {
        max_concurrent_agents: 4,
        max_agents_per_cluster: 1,
        lease: Duration::from_secs(120),
    };
    hammer(db, limits, 6, 2000).await;
}

async fn claimers_on_four_pools_respect_two_per_cluster_and_five_in_total(db: &TestDb) {
    let limits = ClaimLimits {
        max_concurrent_agents: 5,
        max_agents_per_cluster: 2,
        lease: Duration::from_secs(120),
    };
    hammer(db, limits, 4, 1500).await;
}

/// What the claimers saw while they ran.
#[derive(Default)]
struct Tracker {
    running: AtomicI64,
    per_cluster: Mutex<HashMap<String, i64>>,
    max_running: AtomicI64,
    max_per_cluster: AtomicI64,
    completed: AtomicUsize,
}

async fn hammer(db: &TestDb, limits: ClaimLimits, clusters: usize, incidents: usize) {
    let mut stores = Vec::new();
    for _ in 0..POOLS {
        let mut opts = db.options();
        opts.max_connections = 4;
        stores.push(db.store_with(opts).await);
    }
    let tracker = Arc::new(Tracker::default());

    // The producer fills the queue while the claimers drain it.
    let producer = {
        let store = stores[0].clone();
        tokio::spawn(async move {
            let faults: Vec<_> = (0..incidents)
                .map(|i| fault(&format!("c{}", i % clusters), &format!("f{i}")))
                .collect();
            for batch in faults.chunks(50) {
                let rec = store.record_faults(batch).await.unwrap();
                assert!(rec.iter().all(|r| r.created));
                tokio::task::yield_now().await;
            }
        })
    };

    let mut claimers = Vec::new();
    for (p, store) in stores.iter().enumerate() {
        for c in 0..CLAIMERS_PER_POOL {
            let store = store.clone();
            let tracker = tracker.clone();
            let owner = format!("pool{p}/claimer{c}");
            let seed = (p * 100 + c) as u64;
            claimers.push(tokio::spawn(claimer(
                store, owner, limits, tracker, incidents, seed,
            )));
        }
    }
    let all = async {
        producer.await.unwrap();
        for c in claimers {
            c.await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(120), all)
        .await
        .expect("claimers finished in time");

    let max_running = tracker.max_running.load(Ordering::SeqCst);
    let max_cluster = tracker.max_per_cluster.load(Ordering::SeqCst);
    assert!(
        max_running <= i64::from(limits.max_concurrent_agents),
        "{max_running}"
    );
    assert!(
        max_cluster <= i64::from(limits.max_agents_per_cluster),
        "{max_cluster}"
    );
    assert_eq!(tracker.completed.load(Ordering::SeqCst), incidents);

    // Every incident succeeded, each with exactly one run; the runs' intervals never overlap
    // beyond the limits.
    let store = &stores[1];
    let listed = store
        .list(&ListFilter {
            limit: Some(10_000),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), incidents);
    let mut events: Vec<(DateTime<Utc>, i64, String)> = Vec::new();
    for inc in &listed {
        assert_eq!(inc.status, IncidentStatus::Succeeded, "{inc:?}");
        let runs = store.agent_runs(inc.id).await.unwrap();
        assert_eq!(runs.len(), 1, "{inc:?}");
        let run = &runs[0];
        events.push((run.started_at, 1, inc.cluster.clone()));
        events.push((run.finished_at.unwrap(), -1, inc.cluster.clone()));
    }
    // Ends before starts at the same instant: a claim can follow a completion in the same µs.
    events.sort_by_key(|e| (e.0, e.1));
    let (mut total, mut peak_total, mut peak_cluster) = (0i64, 0i64, 0i64);
    let mut per: HashMap<&str, i64> = HashMap::new();
    for (_, delta, cluster) in &events {
        total += delta;
        let n = per.entry(cluster.as_str()).or_default();
        *n += delta;
        peak_total = peak_total.max(total);
        peak_cluster = peak_cluster.max(*n);
    }
    assert!(
        peak_total <= i64::from(limits.max_concurrent_agents),
        "the database shows {peak_total} runs at once"
    );
    assert!(
        peak_cluster <= i64::from(limits.max_agents_per_cluster),
        "the database shows {peak_cluster} runs at once on one cluster"
    );
    // The test did push against the limit (otherwise it proves nothing).
    assert_eq!(peak_total, i64::from(limits.max_concurrent_agents));
}

async fn claimer(
    store: Store,
    owner: String,
    limits: ClaimLimits,
    tracker: Arc<Tracker>,
    incidents: usize,
    seed: u64,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let ok = outcome(IncidentStatus::Succeeded);
    while tracker.completed.load(Ordering::SeqCst) < incidents {
        let Some(c) = store.claim(&owner, limits).await.unwrap() else {
            // Nothing claimable now: wait for a wake-up or a short poll, whichever is first.
            let _ = tokio::time::timeout(Duration::from_millis(2), store.pending_notified()).await;
            continue;
        };
        let cluster = c.incident.cluster.clone();
        let now = tracker.running.fetch_add(1, Ordering::SeqCst) + 1;
        tracker.max_running.fetch_max(now, Ordering::SeqCst);
        let on_cluster = {
            let mut per = tracker.per_cluster.lock().unwrap();
            let n = per.entry(cluster.clone()).or_default();
            *n += 1;
            *n
        };
        tracker
            .max_per_cluster
            .fetch_max(on_cluster, Ordering::SeqCst);

        let work = Duration::from_micros(rng.random_range(0..3000));
        tokio::time::sleep(work).await;

        // Leave the counters before completing: they never count more than the database has.
        *tracker
            .per_cluster
            .lock()
            .unwrap()
            .get_mut(&cluster)
            .unwrap() -= 1;
        tracker.running.fetch_sub(1, Ordering::SeqCst);
        assert!(store.complete(c.incident.id, c.attempt, &ok).await.unwrap());
        tracker.completed.fetch_add(1, Ordering::SeqCst);
    }
}

async fn concurrent_writers_open_one_incident_per_fault(db: &TestDb) {
    const FAULTS: usize = 200;
    const BATCHES: usize = 40;
    const BATCH: usize = 40;
    let mut writers = Vec::new();
    for w in 0..POOLS {
        let store = db.store().await;
        writers.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(w as u64);
            for _ in 0..BATCHES {
                let batch: Vec<_> = (0..BATCH)
                    .map(|_| {
                        let i = rng.random_range(0..FAULTS);
                        fault(&format!("c{}", i % 3), &format!("f{i}"))
                    })
                    .collect();
                let rec = store.record_faults(&batch).await.unwrap();
                assert_eq!(rec.len(), BATCH);
            }
        }));
    }
    for w in writers {
        tokio::time::timeout(Duration::from_secs(60), w)
            .await
            .expect("writers finished in time")
            .unwrap();
    }
    let store = db.store().await;
    let listed = store
        .list(&ListFilter {
            limit: Some(10_000),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut keys: Vec<_> = listed.iter().map(|i| (&i.cluster, &i.fault_id)).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), listed.len(), "one incident per fault");
    assert!(listed.iter().all(|i| i.status == IncidentStatus::Pending));
    let total: i64 = listed.iter().map(|i| i.occurrences).sum();
    assert_eq!(total, (POOLS * BATCHES * BATCH) as i64);
    for inc in &listed {
        let rows = store.occurrences(inc.id, 100_000).await.unwrap();
        assert_eq!(rows.len() as i64, inc.occurrences, "{inc:?}");
    }
}
