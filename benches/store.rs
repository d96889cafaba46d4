//! Store throughput: `record_faults` faults/s at batch sizes 1, 100 and 1000, and claim+complete
//! per second, on SQLite (a file in a temporary directory) and PostgreSQL (a throwaway server,
//! or `NIGHTCRIER_TEST_POSTGRES_URL`). Run with `cargo bench --bench store`; prints a table.
//!
//! Workloads: "new" = every fault opens an incident (the costliest path); "repeats" = faults
//! cycle over 50 fault ids, as in an event storm (mostly attaching to open incidents).
//!
//! Besides wall-clock rates, the table shows the rate per CPU-second of this process (all its
//! threads, from /proc/self/stat): on a shared, loaded machine that is the steadier figure for
//! SQLite, which runs in-process. (PostgreSQL's own CPU is not in it.)

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
            "{:<9} {:<8} {:>6} {:>9} {:>12} {:>14}",
            "backend", "workload", "batch", "faults", "faults/s", "faults/cpu-s"
        );
        let sqlite = TestDb::sqlite();
        record_rows(&sqlite).await;
        let postgres = TestDb::postgres().await;
        record_rows(&postgres).await;
        println!();
        println!(
            "{:<9} {:>8} {:>9} {:>18} {:>20}",
            "backend", "workers", "claims", "claim+complete/s", "claim+complete/cpu-s"
        );
        claim_rows(&sqlite).await;
        claim_rows(&postgres).await;
    });
}

async fn record_rows(db: &TestDb) {
    let mut run = 0;
    for (batch, total) in [(1, 3_000), (100, 30_000), (1000, 60_000)] {
        for workload in ["new", "repeats"] {
            // A fresh database per row: each row starts from an empty one.
            let store = Store::connect(common::store_options(&db.another_database().await))
                .await
                .expect("opening the store");
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
            let cpu = cpu_seconds();
            for chunk in faults.chunks(batch) {
                store.record_faults(chunk).await.expect("recording faults");
            }
            let rate = total as f64 / start.elapsed().as_secs_f64();
            let cpu_rate = total as f64 / (cpu_seconds() - cpu).max(0.01);
            println!(
                "{:<9} {:<8} {:>6} {:>9} {:>12.0} {:>14.0}",
                db.backend(),
                workload,
                batch,
                total,
                rate,
                cpu_rate
            );
            store.close().await;
        }
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
        let store = Store::connect(common::store_options(&db.another_database().await))
            .await
            .expect("opening the store");
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
        let cpu = cpu_seconds();
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
        let cpu_rate = claimed as f64 / (cpu_seconds() - cpu).max(0.01);
        println!(
            "{:<9} {:>8} {:>9} {:>18.0} {:>20.0}",
            db.backend(),
            workers,
            claimed,
            rate,
            cpu_rate
        );
        store.close().await;
    }
}

/// User + system CPU seconds of this process so far (Linux clock ticks of 1/100 s).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}
