//! A full ingest buffer, seen from the MCP stream: the reader stops reading (TCP pushes back on
//! the simulated server) and loses nothing once the writer frees room; with no wait allowed it
//! drops fault notifications unparsed, counted per cluster, and still acts on a subscription
//! error. Real HTTP/SSE on loopback, a real SQLite file.

use crate::support::common;
use crate::support::ingest as ingest_support;
use crate::support::mcp as mcp_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use nightcrier::health::Health;
use nightcrier::ingest::{channel, IngestWriter, WriterOptions};
use nightcrier::mcp::{FaultSink, McpFleet};
use nightcrier::simulate::{FaultSpec, SimConfig, Simulator};
use nightcrier::store::{ListFilter, Store};
use nightcrier::telemetry::install_metrics_recorder;
use tokio_util::sync::CancellationToken;

use ingest_support::{prom, wait_until};
use mcp_support::{client, cluster, eventually, fast_reconnect};

const DEADLINE: Duration = Duration::from_secs(30);

/// Occurrences stored per cluster.
async fn occurrences(store: &Store) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    let all = store
        .list(&ListFilter {
            limit: Some(10_000),
            ..ListFilter::default()
        })
        .await
        .unwrap();
    for i in all {
        *out.entry(i.cluster).or_default() += i.occurrences;
    }
    out
}

fn writer(rx: nightcrier::ingest::IngestReceiver, store: &Store) -> IngestWriter {
    IngestWriter::new(rx, store.clone(), Health::new(), WriterOptions::default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_pauses_the_stream_and_nothing_is_lost_once_room_returns() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = common::sqlite_store(dir.path()).await;
    // Room for 10; the wait for room never runs out in this test.
    let (tx, rx) = channel(10);
    let tx = tx.with_backpressure_timeout(Duration::from_secs(3600));
    let cancel = CancellationToken::new();
    let fleet = McpFleet::new(
        vec![cluster("paused", &sim.endpoint())],
        fast_reconnect(Duration::from_secs(30)),
        client(),
        Arc::new(tx.clone()) as Arc<dyn FaultSink>,
    );
    let fleet_task = tokio::spawn(fleet.run(cancel.clone()));
    eventually("subscribed", 30, || sim.subscriptions() == 1).await;

    for i in 0..40 {
        assert_eq!(sim.emit_fault(&FaultSpec::generate(i, 11)).await, 1);
    }
    eventually("the buffer full", 30, || tx.depth() == 10).await;
    // No writer yet: the other 30 wait in the stream (socket buffers, the server's queue)
    // instead of being read, parsed and dropped.
    assert_eq!(tx.dropped(), 0);

    let writer_task = tokio::spawn(writer(rx, &store).run(cancel.clone()));
    wait_until("all 40 stored", DEADLINE, || async {
        occurrences(&store).await.get("paused") == Some(&40)
    })
    .await;
    assert_eq!(
        tx.dropped(),
        0,
        "nothing that fits once room returns is lost"
    );
    cancel.cancel();
    fleet_task.await.unwrap();
    writer_task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_wait_a_full_buffer_drops_unparsed_counted_per_cluster() {
    let metrics = install_metrics_recorder().unwrap();
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = common::sqlite_store(dir.path()).await;
    let (tx, rx) = channel(4);
    let tx = tx.with_backpressure_timeout(Duration::ZERO);
    let cancel = CancellationToken::new();
    let names = ["shed-east", "shed-west"];
    let fleet = McpFleet::new(
        names.iter().map(|n| cluster(n, &sim.endpoint())).collect(),
        fast_reconnect(Duration::from_secs(30)),
        client(),
        Arc::new(tx.clone()) as Arc<dyn FaultSink>,
    );
    let fleet_task = tokio::spawn(fleet.run(cancel.clone()));
    eventually("both subscribed", 30, || sim.subscriptions() == 2).await;

    for i in 0..10 {
        assert_eq!(sim.emit_fault(&FaultSpec::generate(i, 12)).await, 2);
    }
    eventually("every delivery kept or dropped", 30, || {
        tx.depth() as u64 + tx.dropped() == 20
    })
    .await;
    assert_eq!(tx.depth(), 4);

    // While dropping fault notifications unread, the reader still parses the rest: a
    // subscription error ends the session and a new one subscribes.
    let sessions = sim.sessions_created();
    assert_eq!(sim.fail_subscriptions("informer stopped").await, 2);
    eventually("both sessions replaced", 30, || {
        sim.sessions_created() >= sessions + 2 && sim.subscriptions() == 2
    })
    .await;

    let writer_task = tokio::spawn(writer(rx, &store).run(cancel.clone()));
    wait_until("the 4 kept stored", DEADLINE, || async {
        occurrences(&store).await.values().sum::<i64>() == 4
    })
    .await;
    let stored = occurrences(&store).await;
    let exp = prom::parse(&metrics.render()).unwrap();
    for name in names {
        let dropped = exp
            .value("nightcrier_events_dropped_total", &[("cluster", name)])
            .unwrap_or(0.0);
        let kept = stored.get(name).copied().unwrap_or(0) as f64;
        assert_eq!(
            kept + dropped,
            10.0,
            "{name}: kept {kept}, dropped {dropped}"
        );
        assert_eq!(
            exp.value("nightcrier_events_received_total", &[("cluster", name)]),
            Some(10.0),
            "{name}: every notification counts as received"
        );
    }
    cancel.cancel();
    fleet_task.await.unwrap();
    writer_task.await.unwrap();
}
