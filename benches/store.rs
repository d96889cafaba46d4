//! Store throughput: `record_faults` faults/s at batch sizes 1, 100 and 1000, and claim+complete
//! per second, on SQLite (a file in a temporary directory) and PostgreSQL (a throwaway server,
//! or `NIGHTCRIER_TEST_POSTGRES_URL`). Run with `cargo bench --bench store`; prints a table.
//! `cargo bench --bench store -- sqlite claim` runs one backend and one part.
//!
//! Workloads: "new" = every fault opens an incident (the costliest path); "repeats" = faults
//! cycle over 50 fault ids, as in an event storm (mostly attaching to open incidents).
//!
//! Besides wall-clock rates, the table shows the rate per CPU-second of this process (all its
//! threads, from /proc/self/stat): on a shared, loaded machine that is the steadier figure for
//! SQLite, which runs in-process. (PostgreSQL's own CPU is not in it.)

#[path = "../tests/it/support/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use nightcrier::incident::{RunOutcome, RunStatus};
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
    // Optional filters: `sqlite` / `postgres` pick a backend, `record` / `claim` a part.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let wants = |a: &str, b: &str| {
        let named = args.iter().any(|x| x == a || x == b);
        !named || args.iter().any(|x| x == a)
    };
    let (sqlite_on, postgres_on) = (wants("sqlite", "postgres"), wants("postgres", "sqlite"));
    let (record_on, claim_on) = (wants("record", "claim"), wants("claim", "record"));
    rt.block_on(async {
        let sqlite = TestDb::sqlite();
        let postgres = match postgres_on {
            true => Some(TestDb::postgres().await),
            false => None,
        };
        let dbs: Vec<&TestDb> = sqlite_on
            .then_some(&sqlite)
            .into_iter()
            .chain(postgres.as_ref())
            .collect();
        if record_on {
            println!(
                "{:<9} {:<8} {:>6} {:>9} {:>12} {:>14}",
                "backend", "workload", "batch", "faults", "faults/s", "faults/cpu-s"
            );
            for db in &dbs {
                record_rows(db).await;
            }
            println!();
        }
        if !claim_on {
            return;
        }
        println!(
            "{:<9} {:>8} {:>9} {:>18} {:>20} {:>10} {:>13}",
            "backend",
            "workers",
            "claims",
            "claim+complete/s",
            "claim+complete/cpu-s",
            "claim µs",
            "complete µs"
        );
        for db in &dbs {
            claim_rows(db).await;
        }
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
        status: RunStatus::Succeeded,
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
                let (mut n, mut claiming, mut completing) = (0u64, Duration::ZERO, Duration::ZERO);
                loop {
                    let t = Instant::now();
                    let claim = store
                        .claim(&format!("w{w}"), LIMITS)
                        .await
                        .expect("claiming");
                    claiming += t.elapsed();
                    let Some(c) = claim else { break };
                    let t = Instant::now();
                    let ok = store
                        .complete(c.incident.id, c.attempt, &done)
                        .await
                        .expect("completing");
                    completing += t.elapsed();
                    assert!(ok);
                    n += 1;
                }
                (n, claiming, completing)
            }));
        }
        let (mut claimed, mut claiming, mut completing) = (0, Duration::ZERO, Duration::ZERO);
        for t in tasks {
            let (n, a, b) = t.await.expect("a worker");
            claimed += n;
            claiming += a;
            completing += b;
        }
        let rate = claimed as f64 / start.elapsed().as_secs_f64();
        let cpu_rate = claimed as f64 / (cpu_seconds() - cpu).max(0.01);
        // Mean latency of one call, as each worker saw it (waiting for the lock included).
        let mean_us = |d: Duration| d.as_secs_f64() * 1e6 / claimed.max(1) as f64;
        println!(
            "{:<9} {:>8} {:>9} {:>18.0} {:>20.0} {:>10.0} {:>13.0}",
            db.backend(),
            workers,
            claimed,
            rate,
            cpu_rate,
            mean_us(claiming),
            mean_us(completing)
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
