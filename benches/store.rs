//! Store throughput: `record_faults` faults/s at batch sizes 1, 100 and 1000, and claim+complete
//! per second, on SQLite (a file in a temporary directory) and PostgreSQL (a throwaway server,
//! or `NIGHTCRIER_TEST_POSTGRES_URL`). Run with `cargo bench --bench store`; prints a table.
//!
//! Workloads: "new" = every fault opens an incident (the costliest path); "repeats" = faults
//! cycle over 50 fault ids, as in an event storm (mostly attaching to open incidents).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use nightcrier::incident::{IncidentStatus, RunOutcome};
use nightcrier::store::{ClaimLimits, Store};

use common::{fault, TestDb};

const LIMITS: ClaimLimits = ClaimLimits {
    max_concurrent_agents: 1000,
    max_agents_per_cluster: 1000,
    lease: Duration::from_secs(300),
};

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async {
        println!(
            "{:<9} {:<8} {:>6} {:>9} {:>12}",
            "backend", "workload", "batch", "faults", "faults/s"
        );
        let sqlite = TestDb::sqlite();
        record_rows(&sqlite).await;
        let postgres = TestDb::postgres().await;
        record_rows(&postgres).await;
        println!();
        println!(
            "{:<9} {:>8} {:>9} {:>18}",
            "backend", "workers", "claims", "claim+complete/s"
        );
        claim_rows(&sqlite).await;
        claim_rows(&postgres).await;
    });
}

async fn record_rows(db: &TestDb) {
    let mut run = 0;
    for (batch, total) in [(1, 3_000), (100, 30_000), (1000, 60_000)] {
        for workload in ["new", "repeats"] {
            // A fresh store per row: each row starts from the same database size.
            let store = db.store().await;
            run += 1;
            let faults: Vec<_> = (0..total)
                .map(|i| {
                    let id = match workload {
                        "new" => format!("r{run}-f{i}"),
                        _ => format!("r{run}-f{}", i % 50),
                    };
                    fault(&format!("cluster-{}", i % 10), &id)
                })
                .collect();
            let start = Instant::now();
            for chunk in faults.chunks(batch) {
                store.record_faults(chunk).await.expect("recording faults");
            }
            let rate = total as f64 / start.elapsed().as_secs_f64();
            println!(
                "{:<9} {:<8} {:>6} {:>9} {:>12.0}",
                db.backend(),
                workload,
                batch,
                total,
                rate
            );
            drain(&store).await;
            store.close().await;
        }
    }
}

/// Leaves nothing pending, so the claim benchmark sees only its own incidents.
async fn drain(store: &Store) {
    let done = outcome();
    while let Some(c) = store.claim("drain", LIMITS).await.expect("claiming") {
        store
            .complete(c.incident.id, c.attempt, &done)
            .await
            .expect("completing");
    }
}

fn outcome() -> RunOutcome {
    RunOutcome {
        status: IncidentStatus::Succeeded,
        reason: None,
        exit_code: Some(0),
    }
}

async fn claim_rows(db: &TestDb) {
    for workers in [1usize, 4] {
        let store = db.store().await;
        let total = 4_000;
        let faults: Vec<_> = (0..total)
            .map(|i| {
                fault(
                    &format!("cluster-{}", i % 10),
                    &format!("claim-{workers}-{i}"),
                )
            })
            .collect();
        for chunk in faults.chunks(500) {
            store.record_faults(chunk).await.expect("recording faults");
        }
        let start = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..workers {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let done = outcome();
                let mut n = 0u64;
                while let Some(c) = store
                    .claim(&format!("w{w}"), LIMITS)
                    .await
                    .expect("claiming")
                {
                    let ok = store
                        .complete(c.incident.id, c.attempt, &done)
                        .await
                        .expect("completing");
                    assert!(ok);
                    n += 1;
                }
                n
            }));
        }
        let mut claimed = 0;
        for t in tasks {
            claimed += t.await.expect("a worker");
        }
        let rate = claimed as f64 / start.elapsed().as_secs_f64();
        println!(
            "{:<9} {:>8} {:>9} {:>18.0}",
            db.backend(),
            workers,
            claimed,
            rate
        );
        store.close().await;
    }
}
