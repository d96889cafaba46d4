//! Evidence sessions kept between runs (`evidence::Sessions`): a cluster's next gathering reuses
//! the session of the previous one instead of a new MCP handshake, a session the server has
//! forgotten is replaced without losing the evidence, and a session on which a call failed is
//! not kept. Against the simulated kubernetes-mcp-server over loopback HTTP.

use nightcrier::config::{EvidenceConfig, McpConfig};
use nightcrier::evidence::{self, Bundle, Sessions, Target, EVIDENCE_DIR};
use nightcrier::simulate::{Scenario, SimConfig, SimHandle, Simulator, ToolFault};
use tokio_util::sync::CancellationToken;

async fn sim() -> SimHandle {
    Simulator::start(SimConfig {
        read_only: true,
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts")
}

async fn gather(sim: &SimHandle, sessions: &Sessions, cluster: &str, n: u64) -> Bundle {
    let spec = Scenario::MissingEnv.example(n);
    sim.add_to_cluster(&spec);
    let ws = tempfile::tempdir().unwrap();
    evidence::gather_with(
        &reqwest::Client::new(),
        Some(sessions),
        &McpConfig::new(sim.endpoint()),
        &EvidenceConfig::default(),
        Target {
            cluster,
            fault_type: &spec.fault_type,
            kind: &spec.kind,
            namespace: spec.namespace.as_deref(),
            name: &spec.name,
        },
        &ws.path().join(EVIDENCE_DIR),
        &CancellationToken::new(),
    )
    .await
}

fn answered(b: &Bundle) -> Vec<&str> {
    b.index
        .calls
        .iter()
        .filter(|c| c.answered())
        .map(|c| c.label.as_str())
        .collect()
}

#[tokio::test]
async fn a_clusters_next_gathering_reuses_its_session() {
    let sim = sim().await;
    let sessions = Sessions::new();
    let first = gather(&sim, &sessions, "sim-1", 1).await;
    assert_eq!(first.index.session_error, None);
    assert!(answered(&first).contains(&"pod"), "{:?}", first.index);
    assert_eq!(
        sessions.idle(),
        1,
        "the session is kept after a clean gathering"
    );
    assert_eq!(sim.sessions_created(), 1);

    let second = gather(&sim, &sessions, "sim-1", 2).await;
    assert_eq!(answered(&second), answered(&first), "{:?}", second.index);
    assert_eq!(
        sim.sessions_created(),
        1,
        "no new handshake for the same cluster"
    );

    // Another cluster (here on the same server) has sessions of its own.
    gather(&sim, &sessions, "sim-2", 3).await;
    assert_eq!(sim.sessions_created(), 2);
    assert_eq!(sessions.idle(), 2);
}

#[tokio::test]
async fn a_session_the_server_forgot_is_replaced_without_losing_evidence() {
    let sim = sim().await;
    let sessions = Sessions::new();
    let first = gather(&sim, &sessions, "sim-1", 1).await;
    sim.expire_sessions();

    let after = gather(&sim, &sessions, "sim-1", 2).await;
    assert_eq!(after.index.session_error, None);
    assert_eq!(
        answered(&after),
        answered(&first),
        "every call answered on the new session: {:?}",
        after.index
    );
    assert!(
        after
            .index
            .gaps()
            .all(|c| !c.error.as_deref().unwrap_or("").contains("404")),
        "the lost session left no gap: {:?}",
        after.index
    );
    assert_eq!(sim.sessions_created(), 2, "one new session, once");
    assert_eq!(sessions.idle(), 1);
}

#[tokio::test]
async fn a_session_with_a_failed_call_is_not_kept() {
    let sim = sim().await;
    let sessions = Sessions::new();
    // A reply over `max_call_bytes` (256 KiB) fails the call at the protocol level.
    sim.set_tool_fault("pods_log", Some(ToolFault::Huge(300 * 1024)));
    let b = gather(&sim, &sessions, "sim-1", 1).await;
    assert!(
        b.index.gaps().any(|c| c.tool == "pods_log"),
        "the failed call is a gap: {:?}",
        b.index
    );
    assert_eq!(sessions.idle(), 0, "not kept for the next run");

    sim.set_tool_fault("pods_log", None);
    gather(&sim, &sessions, "sim-1", 2).await;
    assert_eq!(sim.sessions_created(), 2, "the next run opened its own");
    assert_eq!(sessions.idle(), 1);
}
