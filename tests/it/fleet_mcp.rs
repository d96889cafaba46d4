//! The MCP side of a fleet: `McpFleet::with_ownership` supervises exactly the held clusters, and
//! a cluster that leaves the held set has its session stopped (and DELETEd) at once while the
//! others keep theirs.

use crate::support::mcp as mcp_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use nightcrier::mcp::{FaultSink, McpFleet};
use nightcrier::simulate::{SimConfig, Simulator};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use mcp_support::{client, cluster, fast_reconnect, CollectingSink};

async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !check() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_held_clusters_are_subscribed_and_a_lost_one_is_dropped_at_once() {
    let a = Simulator::start(SimConfig::default()).await.unwrap();
    let b = Simulator::start(SimConfig::default()).await.unwrap();
    let c = Simulator::start(SimConfig::default()).await.unwrap();
    let (held, owned) = watch::channel(BTreeMap::<String, i64>::new());
    let sink = CollectingSink::new();
    let cancel = CancellationToken::new();
    let fleet = McpFleet::new(
        vec![
            cluster("a", &a.endpoint()),
            cluster("b", &b.endpoint()),
            cluster("c", &c.endpoint()),
        ],
        fast_reconnect(Duration::from_secs(30)),
        client(),
        sink.clone() as Arc<dyn FaultSink>,
    )
    .with_ownership(owned);
    let run = tokio::spawn(fleet.run(cancel.clone()));

    // Nothing held: nothing subscribed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        a.sessions_created() + b.sessions_created() + c.sessions_created(),
        0
    );

    // a and b held (and a cluster this process has no configuration for: ignored).
    held.send_replace(BTreeMap::from([
        ("a".into(), 1),
        ("b".into(), 1),
        ("unknown".into(), 1),
    ]));
    until("a and b subscribed", || {
        a.subscriptions() == 1 && b.subscriptions() == 1
    })
    .await;
    assert_eq!(c.sessions_created(), 0);
    let a_session = a.session_ids()[0].clone();

    // a lost, c gained: a's session is deleted, b keeps its own, c is subscribed.
    held.send_replace(BTreeMap::from([("b".into(), 1), ("c".into(), 1)]));
    until("a dropped and c subscribed", || {
        a.sessions() == 0 && c.subscriptions() == 1
    })
    .await;
    assert_eq!(b.sessions_created(), 1, "b kept its session");
    assert_eq!(
        a.method_log(&a_session).unwrap().last().map(String::as_str),
        Some("DELETE")
    );

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the fleet stops")
        .unwrap();
    assert_eq!(
        b.sessions() + c.sessions(),
        0,
        "sessions deleted on shutdown"
    );
}
