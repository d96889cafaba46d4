//! Dispatch benchmark: how soon a pending incident becomes a running agent process when a slot
//! is free (p50/p99), and incidents per second end to end with a trivial agent.
//!
//! Real parts throughout: a SQLite file (or a PostgreSQL server), the worker pool,
//! and the real agent runner starting a `/bin/sh` command agent that writes its report.
//!
//! `cargo bench --bench dispatch` (release). `NIGHTCRIER_BENCH_SAMPLES` sets the latency sample
//! count (default 300), `NIGHTCRIER_BENCH_INCIDENTS` the throughput batch (default 500);
//! `NIGHTCRIER_BENCH_BACKEND=postgres` runs it on a throwaway PostgreSQL server instead.
//! `NIGHTCRIER_BENCH_EVIDENCE=1` gives the latency clusters a simulated kubernetes-mcp-server
//! and evidence gathering (on by default in real configurations): the figure then includes the
//! whole evidence bundle (three stages of tool calls) and the prompt sizes are printed.

#[path = "../tests/it/support/common/pg.rs"]
mod pg;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use nightcrier::agent::{AgentRunner, RunReport};
use nightcrier::config::{AgentPreset, ClusterConfig, Config, McpConfig};
use nightcrier::fault::{fault_id, Fault, ReceivedFault, ResourceRef};
use nightcrier::incident::{AgentRun, FaultOccurrence, Incident, IncidentStatus};
use nightcrier::simulate::{FaultSpec, SimConfig, Simulator};
use nightcrier::store::{Store, StoreOptions};
use nightcrier::worker::{IncidentRunner, PoolSettings, WorkerPool};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The real runner, plus a timestamp sent when the agent process exists.
struct Timed {
    inner: AgentRunner,
    started: mpsc::Sender<(Uuid, Instant)>,
}

impl IncidentRunner for Timed {
    async fn run(
        &self,
        incident: &Incident,
        occurrences: &[FaultOccurrence],
        attempt: i32,
        cancel: CancellationToken,
        on_started: &(dyn Fn(u32) + Send + Sync),
    ) -> RunReport {
        let id = incident.id;
        let tx = self.started.clone();
        let hook = move |pid: u32| {
            let _ = tx.try_send((id, Instant::now()));
            on_started(pid);
        };
        self.inner
            .run(incident, occurrences, attempt, cancel, &hook)
            .await
    }

    async fn kill_leftover(&self, incident: &Incident, run: &AgentRun) {
        self.inner.kill_leftover(incident, run).await
    }
}

fn fault(cluster: &str, name: &str) -> ReceivedFault {
    let uid = format!("uid-{name}");
    let fault = Fault {
        subscription_id: "bench".into(),
        cluster: cluster.into(),
        fault_id: fault_id(cluster, "CrashLoop", &uid, "app"),
        fault_type: "CrashLoop".into(),
        severity: "critical".into(),
        resource: ResourceRef {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: name.into(),
            namespace: Some("default".into()),
            uid,
        },
        context: "bench".into(),
        timestamp: Utc::now().to_rfc3339(),
    };
    let raw = serde_json::to_value(&fault).expect("fault serializes");
    ReceivedFault {
        cluster: cluster.into(),
        fault,
        received_at: Utc::now(),
        raw,
        triage_enabled: true,
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn terminal_count(store: &Store) -> i64 {
    store
        .status_counts()
        .await
        .expect("status counts")
        .iter()
        .filter(|c| c.status.is_terminal() && c.status != IncidentStatus::Skipped)
        .map(|c| c.count)
        .sum()
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut _server = None;
    let url = if std::env::var("NIGHTCRIER_BENCH_BACKEND").is_ok_and(|b| b == "postgres") {
        let server = tokio::task::spawn_blocking(pg::PgServer::start)
            .await
            .expect("starting PostgreSQL");
        let url = server.fresh_database().await;
        _server = Some(server);
        url
    } else {
        format!("sqlite://{}", dir.path().join("bench.db").display())
    };
    let store = Store::connect(StoreOptions {
        url,
        max_connections: 10,
        acquire_timeout: Duration::from_secs(10),
        dedup_cooldown: Duration::from_secs(1800),
    })
    .await
    .expect("store connects");

    let mut config = Config {
        workspace_root: dir.path().join("incidents"),
        ..Config::default()
    };
    config.agent.preset = AgentPreset::Command;
    config.agent.command = vec![
        "/bin/sh".into(),
        "-c".into(),
        "printf '%0200d\\n' 0 > \"$1\"".into(),
        "agent".into(),
        "{report_file}".into(),
    ];
    let evidence = std::env::var("NIGHTCRIER_BENCH_EVIDENCE").is_ok_and(|v| v == "1");
    let sim = if evidence {
        Some(
            Simulator::start(SimConfig::default())
                .await
                .expect("simulator"),
        )
    } else {
        None
    };
    if let Some(sim) = &sim {
        config.clusters = (0..20)
            .map(|c| ClusterConfig {
                name: format!("lat-{c}"),
                mcp: McpConfig::new(sim.endpoint()),
                triage: Default::default(),
                agent: None,
                evidence: Default::default(),
                environment: None,
                labels: Default::default(),
            })
            .collect();
    }
    let (tx, mut started) = mpsc::channel(4096);
    let runner = Arc::new(Timed {
        inner: AgentRunner::new(&config),
        started: tx,
    });
    let mut settings = PoolSettings::from_config(&config);
    settings.instance = "bench".into();
    settings.max_concurrent_agents = 5;
    settings.max_agents_per_cluster = 1;
    let soft = CancellationToken::new();
    let hard = CancellationToken::new();
    let pool = WorkerPool::new(store.clone(), runner.clone(), settings);
    let pool_task = tokio::spawn(pool.run(soft.clone(), hard.clone()));

    // Latency: one incident at a time, each on a cluster with nothing running, so a slot is
    // always free; measured from just before the write to the agent's process start.
    let samples = env_usize("NIGHTCRIER_BENCH_SAMPLES", 300);
    let warmup = 10;
    let mut latencies = Vec::with_capacity(samples);
    let mut writes = Vec::with_capacity(samples);
    for i in 0..samples + warmup {
        let f = fault(&format!("lat-{}", i % 20), &format!("lat-{i}"));
        if let Some(sim) = &sim {
            // The pod exists in the simulated cluster, crash-looping with a known cause.
            sim.add_to_cluster(&FaultSpec {
                fault_type: "CrashLoop".into(),
                severity: "critical".into(),
                api_version: "v1".into(),
                kind: "Pod".into(),
                name: format!("lat-{i}-7d9f8b6c5-x2k4q"),
                namespace: Some("default".into()),
                uid: format!("uid-lat-{i}"),
                container: "app".into(),
                context: String::new(),
            });
        }
        let f = if sim.is_some() {
            fault(
                &format!("lat-{}", i % 20),
                &format!("lat-{i}-7d9f8b6c5-x2k4q"),
            )
        } else {
            f
        };
        let t0 = Instant::now();
        let rec = store.record_faults(&[f]).await.expect("record");
        let wrote = t0.elapsed();
        let id = rec[0].incident_id;
        let (sid, t1) = tokio::time::timeout(Duration::from_secs(30), started.recv())
            .await
            .expect("agent started within 30s")
            .expect("channel open");
        assert_eq!(sid, id, "the started agent is the incident just recorded");
        if i >= warmup {
            latencies.push(t1 - t0);
            writes.push(wrote);
        }
        // Let it finish so the next sample finds the same free slots.
        while terminal_count(&store).await < (i + 1) as i64 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    latencies.sort();
    writes.sort();
    println!(
        "pending -> agent started ({} samples, {}): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms \
         (of which the write: p50 {:.2} ms, p99 {:.2} ms)",
        latencies.len(),
        store.backend(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(*latencies.last().expect("samples")),
        ms(percentile(&writes, 0.5)),
        ms(percentile(&writes, 0.99)),
    );

    // Prompt sizes of the latency samples (with evidence: the bundle's summary is in them).
    let mut prompt_bytes: Vec<u64> = std::fs::read_dir(dir.path().join("incidents"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::metadata(e.path().join("prompt.md")).ok())
                .map(|m| m.len())
                .collect()
        })
        .unwrap_or_default();
    prompt_bytes.sort_unstable();
    if !prompt_bytes.is_empty() {
        println!(
            "prompt.md (evidence {}): median {} bytes, max {} bytes over {} prompts",
            if sim.is_some() { "on" } else { "off" },
            prompt_bytes[prompt_bytes.len() / 2],
            prompt_bytes[prompt_bytes.len() - 1],
            prompt_bytes.len()
        );
    }

    // Throughput: a batch spread over 50 clusters, five agents at a time.
    let n = env_usize("NIGHTCRIER_BENCH_INCIDENTS", 500);
    let before = terminal_count(&store).await;
    let batch: Vec<_> = (0..n)
        .map(|i| fault(&format!("tp-{}", i % 50), &format!("tp-{i}")))
        .collect();
    let t0 = Instant::now();
    store.record_faults(&batch).await.expect("record batch");
    while terminal_count(&store).await < before + n as i64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = t0.elapsed();
    let mut by_status: HashMap<String, i64> = HashMap::new();
    for c in store.status_counts().await.expect("counts") {
        *by_status.entry(c.status.to_string()).or_default() += c.count;
    }
    println!(
        "end to end: {n} incidents in {:.2} s = {:.0} incidents/s with 5 agents at a time (statuses: {:?})",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        by_status
    );
    while started.try_recv().is_ok() {}
    soft.cancel();
    pool_task.await.expect("pool stops");
}
