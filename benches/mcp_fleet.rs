//! MCP fleet benchmark: many cluster supervisors in one process against simulated servers over
//! loopback HTTP.
//!
//! Measures the time until every cluster is subscribed, TCP connections per session (the shared
//! pool must not open one per request), memory per session (process RSS, simulators included),
//! fault throughput through the supervisors to a counting sink, single-fault latency from the
//! server's write to the hand-off (p50/p99), and how long the whole fleet takes to re-subscribe
//! after every server restarted at once (default reconnect settings: 1s initial backoff).
//!
//! `cargo bench --bench mcp_fleet`. `NIGHTCRIER_BENCH_CLUSTERS` (default 1000),
//! `NIGHTCRIER_BENCH_FAULTS` distinct faults per server for throughput (default 50),
//! `NIGHTCRIER_BENCH_SAMPLES` latency samples (default 300).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nightcrier::config::{ClusterConfig, McpConfig, ReconnectConfig, TriageConfig};
use nightcrier::fault::ReceivedFault;
use nightcrier::incident::ConnectionState;
use nightcrier::mcp::{http_client, FaultSink, McpFleet};
use nightcrier::simulate::{FaultSpec, SimConfig, SimHandle, Simulator};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The server's subscription limit.
const PER_SERVER: usize = 100;

#[derive(Default)]
struct CountingSink {
    faults: AtomicU64,
    notify: Notify,
}

impl FaultSink for CountingSink {
    fn offer(&self, _fault: ReceivedFault) -> bool {
        self.faults.fetch_add(1, Ordering::Relaxed);
        self.notify.notify_waiters();
        true
    }
    fn report_state(&self, _state: ConnectionState) {}
}

impl CountingSink {
    async fn wait_for(&self, n: u64, deadline: Duration) -> bool {
        let end = tokio::time::Instant::now() + deadline;
        loop {
            let notified = self.notify.notified();
            if self.faults.load(Ordering::Relaxed) >= n {
                return true;
            }
            if tokio::time::timeout_at(end, notified).await.is_err() {
                return self.faults.load(Ordering::Relaxed) >= n;
            }
        }
    }
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| nightcrier::telemetry::vm_rss_kib(&s))
        .unwrap_or(0)
}

async fn wait_subscribed(sims: &[SimHandle], per_sim: &[usize], limit: Duration) -> Duration {
    let start = Instant::now();
    while sims
        .iter()
        .zip(per_sim)
        .any(|(s, n)| s.subscriptions() < *n || s.attached_streams() < *n)
    {
        assert!(
            start.elapsed() < limit,
            "clusters not all subscribed within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run());
}

async fn run() {
    let clusters = env("NIGHTCRIER_BENCH_CLUSTERS", 1000);
    let faults = env("NIGHTCRIER_BENCH_FAULTS", 50);
    let samples = env("NIGHTCRIER_BENCH_SAMPLES", 300);
    let servers = clusters.div_ceil(PER_SERVER);

    let mut sims = Vec::new();
    for i in 0..servers {
        sims.push(
            Simulator::start(SimConfig {
                context: format!("bench-{i}"),
                faults: faults.max(1),
                ..SimConfig::default()
            })
            .await
            .expect("simulator starts"),
        );
    }
    let per_sim: Vec<usize> = (0..servers)
        .map(|i| clusters / servers + usize::from(i < clusters % servers))
        .collect();
    let configs: Vec<ClusterConfig> = (0..clusters)
        .map(|i| ClusterConfig {
            name: format!("c{i:05}"),
            mcp: McpConfig::new(sims[i % servers].endpoint()),
            triage: TriageConfig::default(),
            agent: None,
            evidence: Default::default(),
            environment: None,
            labels: Default::default(),
        })
        .collect();

    let rss_before = rss_kib();
    let sink = Arc::new(CountingSink::default());
    let cancel = CancellationToken::new();
    let fleet = McpFleet::new(
        configs,
        ReconnectConfig::default(),
        http_client(Duration::from_secs(10)).expect("HTTP client"),
        sink.clone() as Arc<dyn FaultSink>,
    );
    let fleet_task = tokio::spawn(fleet.run(cancel.clone()));

    let subscribe_time = wait_subscribed(&sims, &per_sim, Duration::from_secs(120)).await;
    let rss_after = rss_kib();
    let connections: u64 = sims.iter().map(|s| s.accepted_connections()).sum();
    println!("clusters: {clusters} on {servers} simulated servers");
    println!("all subscribed after: {subscribe_time:?}");
    println!(
        "TCP connections accepted: {connections} ({:.2} per session)",
        connections as f64 / clusters as f64
    );
    println!(
        "RSS growth: {} KiB ({:.1} KiB per session, client and simulator together)",
        rss_after.saturating_sub(rss_before),
        rss_after.saturating_sub(rss_before) as f64 / clusters as f64
    );

    // Throughput: every server sends `faults` distinct faults to all its sessions at once.
    let expected = (faults * clusters) as u64;
    let start = Instant::now();
    let emitters: Vec<_> = sims
        .iter()
        .map(|sim| async move {
            for i in 0..faults {
                sim.emit_fault(&FaultSpec::generate(i, 99)).await;
            }
        })
        .collect();
    futures::future::join_all(emitters).await;
    let all = sink.wait_for(expected, Duration::from_secs(300)).await;
    let elapsed = start.elapsed();
    println!(
        "throughput: {expected} faults in {elapsed:?} = {:.0} faults/s{}",
        expected as f64 / elapsed.as_secs_f64(),
        if all { "" } else { " (NOT ALL ARRIVED)" }
    );

    // Latency: one fault to one server's sessions, then wait for all of them, one at a time.
    let base = sink.faults.load(Ordering::Relaxed);
    let fanout = per_sim[0] as u64;
    let mut lat = Vec::with_capacity(samples);
    for i in 0..samples {
        let t = Instant::now();
        sims[0]
            .emit_fault(&FaultSpec::generate(100_000 + i, 99))
            .await;
        let target = base + fanout * (i as u64 + 1);
        assert!(sink.wait_for(target, Duration::from_secs(10)).await);
        lat.push(t.elapsed());
    }
    lat.sort();
    println!(
        "latency to hand-off of one fault to {fanout} sessions: p50 {:?}, p99 {:?}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );

    // Reconnect storm: every server restarts at once.
    let before: u64 = sims.iter().map(|s| s.sessions_created()).sum();
    let start = Instant::now();
    for s in &sims {
        s.restart().await.expect("restart");
    }
    while sims.iter().map(|s| s.sessions_created()).sum::<u64>() < before + clusters as u64 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "fleet did not reconnect"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    wait_subscribed(&sims, &per_sim, Duration::from_secs(120)).await;
    println!(
        "after all servers restarted at once: all re-subscribed in {:?}",
        start.elapsed()
    );

    cancel.cancel();
    let _ = fleet_task.await;
    for s in sims {
        s.shutdown().await;
    }
}
