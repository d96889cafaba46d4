//! Event storm: a burst of notifications (default 100,000) across 100 clusters and 500 distinct
//! faults, from simulated servers through the real MCP sessions, ingest channel (default buffer)
//! and writer into SQLite or PostgreSQL. Reports time to absorb, peak resident memory, incidents
//! created (must equal the distinct faults), occurrences recorded (must equal what the servers
//! delivered) and dropped events (must be zero).
//!
//! `cargo bench --bench storm -- [sqlite] [postgres] [--quick] [--notifications=N]
//!  [--buffer=N]` (no mode: both backends).
//!
//! Layout: 10 servers × 10 clusters; each server knows 5 faults and emits each one
//! notifications/500 times with no pause (its re-emission rule off, as during a storm every
//! occurrence is sent); one emit reaches the 10 clusters subscribed to that server, so the
//! distinct faults are 100 clusters × 5 = 500 (cluster, faultId) pairs.

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use nightcrier::simulate::FaultSpec;
use support::{hwm_kib, pg::Postgres, rss_kib, Args, Db, Pipeline, PipelineSpec};

const SERVERS: usize = 10;
const CLUSTERS: usize = 100;
const FAULTS_PER_SERVER: usize = 5;

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async {
        let notifications = args.num("notifications", 100_000, 10_000);
        let buffer = args.num(
            "buffer",
            nightcrier::config::IngestConfig::default().buffer_capacity,
            nightcrier::config::IngestConfig::default().buffer_capacity,
        );
        println!(
            "storm: {notifications} notifications, {CLUSTERS} clusters on {SERVERS} simulated \
             servers, {} distinct faults, buffer {buffer}",
            CLUSTERS * FAULTS_PER_SERVER
        );
        println!(
            "{:<9} {:>10} {:>10} {:>11} {:>11} {:>10} {:>10} {:>12} {:>8}",
            "backend",
            "delivered",
            "absorb s",
            "events/s",
            "peak RSS",
            "RSS before",
            "incidents",
            "occurrences",
            "dropped"
        );
        if args.wants("sqlite") {
            storm(&Db::sqlite(), notifications, buffer).await;
        }
        if args.wants("postgres") {
            let pg = Postgres::start();
            storm(&Db::postgres(&pg).await, notifications, buffer).await;
        }
    });
}

/// Resets this process's VmHWM to its current RSS, so each storm reports its own peak.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

async fn storm(db: &Db, notifications: usize, buffer: usize) {
    let p = Pipeline::start(
        &PipelineSpec {
            servers: SERVERS,
            clusters: CLUSTERS,
            faults: FAULTS_PER_SERVER,
            buffer_capacity: buffer,
            linger: None,
        },
        db.store().await,
    )
    .await;
    let emits_per_server = notifications / CLUSTERS;
    reset_peak();
    let rss_before = rss_kib("self");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (s, sim) in p.sims.iter().enumerate() {
        let sim = sim.clone();
        let specs: Vec<FaultSpec> = (0..FAULTS_PER_SERVER)
            .map(|i| FaultSpec::generate(i, s as u64))
            .collect();
        tasks.push(tokio::spawn(async move {
            for n in 0..emits_per_server {
                sim.emit_fault(&specs[n % specs.len()]).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("emitter");
    }
    let burst = start.elapsed();
    let delivered = p.delivered();
    let drained = p.wait_committed(delivered, Duration::from_secs(600)).await;
    let absorb = start.elapsed();
    let peak = hwm_kib("self");
    let dropped = p.tap.sender.dropped();
    let incidents = db.count("incidents").await;
    let occurrences = db.count("fault_occurrences").await;
    p.stop().await;
    println!(
        "{:<9} {:>10} {:>10.2} {:>11.0} {:>8.1}MiB {:>7.1}MiB {:>10} {:>12} {:>8}",
        db.backend(),
        delivered,
        absorb.as_secs_f64(),
        delivered as f64 / absorb.as_secs_f64(),
        peak as f64 / 1024.0,
        rss_before as f64 / 1024.0,
        incidents,
        occurrences,
        dropped
    );
    println!(
        "          burst sent by the servers in {:.2}s; all written: {drained}; \
         incidents = distinct faults: {}; occurrences = delivered: {}",
        burst.as_secs_f64(),
        incidents as usize == CLUSTERS * FAULTS_PER_SERVER,
        occurrences as u64 == delivered
    );
}
