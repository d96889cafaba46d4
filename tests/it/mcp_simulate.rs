//! The simulator as a fault source on its own: the generator's rate, its distinct faults and
//! their periodic re-emission with the same faultId, received through the real supervisor.

use crate::support::mcp as mcp_support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use nightcrier::mcp::{ClusterStats, FaultSink, Supervisor};
use nightcrier::simulate::{run_cli, FaultSpec, SimConfig, SimulateArgs, Simulator};
use tokio_util::sync::CancellationToken;

use mcp_support::{client, cluster, fast_reconnect, CollectingSink};

#[tokio::test]
async fn generated_faults_are_distinct_and_re_emitted_with_the_same_fault_id() {
    let sim = Simulator::start(SimConfig {
        rate: Some("200/s".parse().unwrap()),
        faults: 3,
        reemit_every: Duration::from_millis(400),
        seed: 11,
        diagnostic_every: Some(Duration::from_millis(20)),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let sink = CollectingSink::new();
    let cancel = CancellationToken::new();
    let sup = Supervisor::new(
        cluster("prod", &sim.endpoint()),
        fast_reconnect(Duration::from_secs(3600)),
        client(),
        sink.clone() as Arc<dyn FaultSink>,
        Arc::new(ClusterStats::new("prod")),
    );
    let task = tokio::spawn(sup.run(cancel.clone()));
    sink.wait_for("each fault twice", 20, |s| s.faults().len() >= 6)
        .await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for id in sink.fault_ids() {
        *counts.entry(id).or_default() += 1;
    }
    let expected: Vec<String> = (0..3)
        .map(|i| FaultSpec::generate(i, 11).fault_id("sim-1"))
        .collect();
    assert_eq!(counts.len(), 3, "{counts:?}");
    for id in &expected {
        assert!(counts[id] >= 2, "{id} re-emitted: {counts:?}");
    }
    // Occurrences every 5ms, but the dedup holds each fault back for 400ms.
    assert!(sink.faults().len() < 30, "{}", sink.faults().len());
    cancel.cancel();
    task.await.unwrap();
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    sim: SimulateArgs,
}

#[test]
fn simulate_arguments_give_one_server_per_cluster_on_consecutive_ports() {
    let cli = Cli::parse_from([
        "x",
        "--listen",
        "127.0.0.1:8080",
        "--clusters",
        "3",
        "--rate",
        "100/m",
        "--faults",
        "7",
        "--reemit-every",
        "2m",
    ]);
    let third = cli.sim.sim_config(2).unwrap();
    assert_eq!(third.listen.port(), 8082);
    assert_eq!(third.context, "sim-3");
    assert_eq!(third.faults, 7);
    assert_eq!(third.reemit_every, Duration::from_secs(120));
    assert_eq!(third.rate.unwrap().interval(), Duration::from_millis(600));

    let e = Cli::try_parse_from(["x", "--rate", "fast"]).err().unwrap();
    assert!(e.to_string().contains("invalid rate"), "{e}");
    let high = Cli::parse_from(["x", "--listen", "127.0.0.1:65535", "--clusters", "2"]);
    assert!(high.sim.sim_config(1).is_err());
}

#[tokio::test]
async fn run_cli_serves_until_cancelled() {
    let cli = Cli::parse_from(["x", "--listen", "127.0.0.1:0", "--clusters", "2"]);
    let cancel = CancellationToken::new();
    let run = tokio::spawn(run_cli(cli.sim, cancel.clone()));
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let none = Cli::parse_from(["x", "--clusters", "0"]);
    assert!(run_cli(none.sim, CancellationToken::new()).await.is_err());
}
