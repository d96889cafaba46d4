//! Many clusters in one process: one supervisor each, one shared connection pool, and a panic in
//! one supervisor that touches no other.

use crate::support::mcp as mcp_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nightcrier::fault::ReceivedFault;
use nightcrier::incident::ConnectionState;
use nightcrier::mcp::{FaultSink, McpFleet};
use nightcrier::simulate::{FaultSpec, SimConfig, Simulator};
use tokio_util::sync::CancellationToken;

use mcp_support::{client, cluster, eventually, fast_reconnect, CollectingSink};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clusters_are_subscribed_and_receive_faults() {
    // The server allows 100 subscriptions: 4 simulated servers with 50 clusters each.
    let mut sims = Vec::new();
    for i in 0..4 {
        sims.push(
            Simulator::start(SimConfig {
                context: format!("sim-{i}"),
                ..SimConfig::default()
            })
            .await
            .unwrap(),
        );
    }
    let clusters: Vec<_> = (0..200)
        .map(|i| cluster(&format!("c{i:03}"), &sims[i % 4].endpoint()))
        .collect();
    let sink = CollectingSink::new();
    let cancel = CancellationToken::new();
    let fleet = McpFleet::new(
        clusters,
        fast_reconnect(Duration::from_millis(200)),
        client(),
        sink.clone() as Arc<dyn FaultSink>,
    );
    let run = tokio::spawn(fleet.run(cancel.clone()));

    for sim in &sims {
        eventually("50 subscriptions per server", 60, || {
            sim.subscriptions() == 50
        })
        .await;
    }
    // Pings go over pooled connections: a thousand pings open next to no new connection.
    let before: Vec<u64> = sims.iter().map(|s| s.accepted_connections()).collect();
    for sim in &sims {
        eventually("250 pings per server", 60, || {
            sim.method_count("ping") >= 250
        })
        .await;
    }
    for (sim, before) in sims.iter().zip(before) {
        let opened = sim.accepted_connections() - before;
        assert!(opened <= 25, "{opened} new connections for 250 pings");
        // One GET stream per session plus a pool for the POSTs.
        assert!(
            sim.accepted_connections() <= 3 * 50,
            "{} connections for 50 sessions",
            sim.accepted_connections()
        );
    }
    for (i, sim) in sims.iter().enumerate() {
        assert_eq!(sim.emit_fault(&FaultSpec::generate(i, 3)).await, 50);
    }
    sink.wait_for("200 faults", 30, |s| s.faults().len() >= 200)
        .await;
    let mut per_cluster = std::collections::HashMap::new();
    for f in sink.faults() {
        *per_cluster.entry(f.cluster.clone()).or_insert(0) += 1;
        let sim = (f.cluster[1..].parse::<usize>().unwrap()) % 4;
        assert_eq!(
            f.fault.fault_id,
            FaultSpec::generate(sim, 3).fault_id(&format!("sim-{sim}"))
        );
    }
    assert_eq!(per_cluster.len(), 200);
    assert!(per_cluster.values().all(|n| *n == 1));
    for sim in &sims {
        assert_eq!(sim.sessions_created(), 50, "no session was replaced");
    }

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the fleet stops")
        .unwrap();
    for sim in &sims {
        assert_eq!(sim.sessions(), 0, "every session was deleted on shutdown");
    }
}

/// Panics in `offer` the first time a fault of `cluster` arrives.
struct PanicOnce {
    inner: Arc<CollectingSink>,
    cluster: String,
    armed: AtomicBool,
}

impl FaultSink for PanicOnce {
    fn offer(&self, fault: ReceivedFault) -> bool {
        if fault.cluster == self.cluster && self.armed.swap(false, Ordering::SeqCst) {
            panic!("injected panic for {}", fault.cluster);
        }
        self.inner.offer(fault)
    }
    fn report_state(&self, state: ConnectionState) {
        self.inner.report_state(state)
    }
}

#[tokio::test]
async fn a_panicking_supervisor_is_restarted_and_the_others_are_untouched() {
    let sim_a = Simulator::start(SimConfig::default()).await.unwrap();
    let sim_b = Simulator::start(SimConfig::default()).await.unwrap();
    let collected = CollectingSink::new();
    let sink = Arc::new(PanicOnce {
        inner: collected.clone(),
        cluster: "a".into(),
        armed: AtomicBool::new(true),
    });
    let cancel = CancellationToken::new();
    let fleet = McpFleet::new(
        vec![
            cluster("a", &sim_a.endpoint()),
            cluster("b", &sim_b.endpoint()),
        ],
        fast_reconnect(Duration::from_secs(30)),
        client(),
        sink as Arc<dyn FaultSink>,
    );
    let run = tokio::spawn(fleet.run(cancel.clone()));
    collected
        .wait_for("both subscribed", 10, |s| {
            !s.subscriptions("a").is_empty() && !s.subscriptions("b").is_empty()
        })
        .await;

    sim_a.emit_fault(&FaultSpec::generate(0, 1)).await; // panics the supervisor of a
    collected
        .wait_for("a re-subscribed", 10, |s| s.subscriptions("a").len() == 2)
        .await;
    let panic_state = collected
        .states()
        .into_iter()
        .find(|s| s.cluster == "a" && s.state == "backing_off")
        .unwrap();
    assert!(panic_state
        .last_error
        .unwrap()
        .contains("injected panic for a"),);

    sim_a.emit_fault(&FaultSpec::generate(1, 1)).await;
    sim_b.emit_fault(&FaultSpec::generate(2, 1)).await;
    collected
        .wait_for("faults of both", 10, |s| s.faults().len() == 2)
        .await;
    assert_eq!(collected.subscriptions("b").len(), 1, "b kept its session");
    assert_eq!(sim_b.sessions_created(), 1);

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sim_b.sessions(), 0);
    assert_eq!(collected.last_state("a").unwrap().state, "stopped");
}
