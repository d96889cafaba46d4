//! Event storm: a burst of notifications (default 100,000) across 100 clusters and 500 distinct
//! faults, from simulated servers through the real MCP sessions, ingest channel (default buffer)
//! and writer into SQLite or PostgreSQL. Reports time to absorb, peak resident memory, incidents
//! created (must equal the distinct faults), occurrences recorded (must equal what the servers
//! delivered) and dropped events (must be zero).
//!
//! `cargo bench --bench storm -- [sqlite] [postgres] [--quick] [--notifications=N]
//!  [--buffer=N]` (no mode: both backends).
//!
//! `cargo bench --bench storm -- workloads [sqlite] [postgres] [--repeats=N]`: a crash-looping
//! rollout instead: 20 clusters each running the same 10 Deployments of 20 pods, every pod
//! reporting CrashLoop and PodCrash `repeats` times (8,000 distinct faults). Run with related-
//! fault coalescing off and on (`dedup.related_window`), it reports the investigations opened,
//! then drains them through the claim under a budget (100 runs/hour, $50/day, each run costing
//! $0.75) and reports the runs and the spend the budget let through.
//!
//! Layout: 10 servers × 10 clusters; each server knows 5 faults and emits each one
//! notifications/500 times with no pause (its re-emission rule off, as during a storm every
//! occurrence is sent); one emit reaches the 10 clusters subscribed to that server, so the
//! distinct faults are 100 clusters × 5 = 500 (cluster, faultId) pairs.

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use chrono::Utc;
use nightcrier::accounting::RunUsage;
use nightcrier::incident::{RunOutcome, RunStatus};
use nightcrier::simulate::FaultSpec;
use nightcrier::store::{Budget, BudgetPolicy, ClaimLimits, Store};
use support::{hwm_kib, pg::PgServer, rss_kib, Args, Db, Pipeline, PipelineSpec};

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
        if args.modes.iter().any(|m| m == "workloads") {
            let backends: Vec<&str> = ["sqlite", "postgres"]
                .into_iter()
                .filter(|b| args.modes.iter().any(|m| m == b))
                .collect();
            let repeats = args.num("repeats", 3, 1);
            workloads_header(repeats);
            for backend in if backends.is_empty() {
                vec!["sqlite"]
            } else {
                backends
            } {
                let pg = (backend == "postgres").then(PgServer::start_durable);
                for coalesce in [false, true] {
                    let db = match &pg {
                        Some(pg) => Db::postgres(pg).await,
                        None => Db::sqlite(),
                    };
                    workloads(&db, coalesce, repeats).await;
                }
            }
            return;
        }
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
            let pg = PgServer::start_durable();
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

const W_CLUSTERS: usize = 20;
const W_DEPLOYMENTS: usize = 10;
const W_PODS: usize = 20;
const W_WINDOW: Duration = Duration::from_secs(600);
const W_RUN_COST_USD: f64 = 0.75;
const W_PER_HOUR: u32 = 100;
const W_PER_DAY_USD: f64 = 50.0;

fn workloads_header(repeats: usize) {
    println!(
        "workload storm: {W_CLUSTERS} clusters x {W_DEPLOYMENTS} Deployments x {W_PODS} pods, \
         CrashLoop + PodCrash each, {repeats} repeats; budget {W_PER_HOUR} runs/hour and \
         ${W_PER_DAY_USD:.0}/day, ${W_RUN_COST_USD:.2} a run"
    );
    println!(
        "{:<9} {:<10} {:>10} {:>10} {:>13} {:>9} {:>10} {:>9}",
        "backend", "coalesce", "delivered", "faults", "investigations", "runs", "spend", "held"
    );
}

/// Pod `pod` of Deployment `d`: a name as the controllers generate it.
fn pod_specs(d: usize, pod: usize) -> [FaultSpec; 2] {
    const A: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let suffix: String = (0..5u32)
        .map(|i| A[(pod / A.len().pow(i)) % A.len()] as char)
        .collect();
    let name = format!("svc-{d}-7d9f8b6c5-{suffix}");
    let crash = FaultSpec {
        fault_type: "CrashLoop".into(),
        severity: "critical".into(),
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: name.clone(),
        namespace: Some("shop".into()),
        uid: format!("uid-{d}-{pod}"),
        container: "app".into(),
        context: "Container entered CrashLoopBackOff state, restart count: 3, last exit code: 1"
            .into(),
    };
    let mut terminated = crash.clone();
    terminated.fault_type = "PodCrash".into();
    terminated.severity = "warning".into();
    terminated.context = "Container app terminated: exit code 1, reason Error".into();
    [crash, terminated]
}

async fn workloads(db: &Db, coalesce: bool, repeats: usize) {
    let store = db.store().await;
    store.set_related_window(coalesce.then_some(W_WINDOW));
    let p = Pipeline::start(
        &PipelineSpec {
            servers: W_CLUSTERS,
            clusters: W_CLUSTERS,
            faults: 1,
            buffer_capacity: nightcrier::config::IngestConfig::default().buffer_capacity,
            linger: None,
        },
        store.clone(),
    )
    .await;
    let specs: Vec<FaultSpec> = (0..W_DEPLOYMENTS)
        .flat_map(|d| (0..W_PODS).flat_map(move |pod| pod_specs(d, pod)))
        .collect();
    let mut tasks = Vec::new();
    for sim in &p.sims {
        let (sim, specs) = (sim.clone(), specs.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..repeats {
                for spec in &specs {
                    sim.emit_fault(spec).await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("emitter");
    }
    let delivered = p.delivered();
    assert!(
        p.wait_committed(delivered, Duration::from_secs(600)).await,
        "every delivered fault is written"
    );
    p.stop().await;
    let incidents = db.count("incidents").await;

    // Drain under the budget: each claimed run "costs" W_RUN_COST_USD. (Stopping the pipeline
    // closed its store.)
    let store = db.store().await;
    store.set_budgets(BudgetPolicy {
        global: Budget {
            max_per_hour: Some(W_PER_HOUR),
            max_spend_per_day_usd: Some(W_PER_DAY_USD),
            skip: false,
        },
        ..BudgetPolicy::default()
    });
    let (runs, spend) = drain(&store).await;
    println!(
        "{:<9} {:<10} {:>10} {:>10} {:>13} {:>9} {:>9.2}$ {:>9}",
        db.backend(),
        if coalesce { "on (10m)" } else { "off" },
        delivered,
        W_CLUSTERS * specs.len(),
        incidents,
        runs,
        spend,
        incidents - runs as i64
    );
}

async fn drain(store: &Store) -> (usize, f64) {
    let limits = ClaimLimits {
        max_concurrent_agents: 1000,
        max_agents_per_cluster: 1000,
        lease: Duration::from_secs(60),
    };
    let now = Utc::now();
    let (mut runs, mut spend) = (0, 0.0);
    while let Some(c) = store.claim_at("bench", limits, now).await.expect("claim") {
        let usage = RunUsage {
            cost_usd: Some(W_RUN_COST_USD),
            ..RunUsage::default()
        };
        store
            .set_run_usage(c.incident.id, c.attempt, &usage)
            .await
            .expect("usage");
        let done = RunOutcome {
            status: RunStatus::Succeeded,
            reason: None,
            exit_code: Some(0),
        };
        store
            .complete(c.incident.id, c.attempt, &done)
            .await
            .expect("complete");
        runs += 1;
        spend += W_RUN_COST_USD;
    }
    (runs, spend)
}
