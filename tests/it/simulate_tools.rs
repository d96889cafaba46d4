//! The simulator's Kubernetes tools over real Streamable HTTP, through nightcrier's short-lived
//! MCP client: what `tools/list` declares, what each scenario's tools answer, how mutating tools
//! and misbehaving tools answer.

use std::collections::BTreeMap;
use std::time::Duration;

use nightcrier::mcp_client::{CallSession, ClientError, Endpoint};
use nightcrier::simulate::{Scenario, SimConfig, SimHandle, Simulator, ToolFault, MUTATING_TOOLS};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(5);
const MAX: usize = 1024 * 1024;

async fn sim(read_only: bool) -> SimHandle {
    Simulator::start(SimConfig {
        read_only,
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts")
}

async fn session(sim: &SimHandle) -> CallSession {
    let endpoint = Endpoint::new(&sim.endpoint(), &BTreeMap::new()).expect("endpoint");
    CallSession::open(&reqwest::Client::new(), &endpoint, T)
        .await
        .expect("session opens")
}

async fn call(s: &CallSession, tool: &str, args: Value) -> (bool, String) {
    let r = s.call_tool(tool, args, T, MAX).await.expect("tool answers");
    (r.is_error, r.text)
}

#[tokio::test]
async fn tools_list_declares_the_servers_annotations_and_hides_mutating_tools_when_read_only() {
    let full = sim(false).await;
    let tools = session(&full).await.list_tools(T, MAX).await.unwrap();
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    for t in [
        "pods_get",
        "pods_log",
        "events_list",
        "resources_get",
        "nodes_top",
    ] {
        assert!(names.contains(&t), "{t} listed");
    }
    for t in MUTATING_TOOLS {
        let tool = tools
            .iter()
            .find(|x| x["name"] == t)
            .expect("mutating tool listed");
        assert_ne!(tool["annotations"]["readOnlyHint"], true, "{t}");
    }
    let log = tools.iter().find(|x| x["name"] == "pods_log").unwrap();
    assert_eq!(log["annotations"]["readOnlyHint"], true);
    assert_eq!(log["annotations"]["destructiveHint"], false);
    assert_eq!(log["inputSchema"]["required"], json!(["name"]));

    let ro = sim(true).await;
    let tools = session(&ro).await.list_tools(T, MAX).await.unwrap();
    assert!(tools.len() >= 10);
    assert!(tools
        .iter()
        .all(|t| t["annotations"]["readOnlyHint"] == true));
}

#[tokio::test]
async fn mutating_tools_get_the_read_only_servers_error() {
    let sim = sim(false).await;
    let s = session(&sim).await;
    for t in MUTATING_TOOLS {
        match s.call_tool(t, json!({"name": "x"}), T, MAX).await {
            Err(ClientError::Rpc { code, message, .. }) => {
                assert_eq!(code, -32602);
                assert_eq!(message, format!("unknown tool \"{t}\""));
            }
            other => panic!("{t}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn every_scenario_is_visible_through_the_tools() {
    let sim = sim(true).await;
    for scenario in Scenario::ALL {
        let spec = scenario.example(5);
        sim.emit_fault(&spec).await;
    }
    let s = session(&sim).await;
    for scenario in Scenario::ALL {
        let spec = scenario.example(5);
        let ns = spec.namespace.clone().unwrap_or_default();
        match scenario {
            Scenario::MissingEnv | Scenario::OomKilled if spec.kind == "Pod" => {
                let (err, prev) = call(
                    &s,
                    "pods_log",
                    json!({"name": spec.name, "namespace": ns, "previous": true}),
                )
                .await;
                assert!(!err, "{prev}");
                let (_, pod) =
                    call(&s, "pods_get", json!({"name": spec.name, "namespace": ns})).await;
                if scenario == Scenario::MissingEnv {
                    assert!(prev
                        .contains("panic: required environment variable DATABASE_URL is not set"));
                } else {
                    assert!(
                        pod.contains("OOMKilled") && pod.contains("memory: 256Mi"),
                        "{pod}"
                    );
                }
            }
            Scenario::NodeNotReady => {
                let (_, node) = call(
                    &s,
                    "resources_get",
                    json!({"apiVersion": "v1", "kind": "Node", "name": spec.name}),
                )
                .await;
                assert!(
                    node.contains("Kubelet stopped posting node status"),
                    "{node}"
                );
                let (_, events) = call(&s, "events_list", json!({"namespace": "default"})).await;
                assert!(events.starts_with("# The following events (YAML format) were found:\n"));
                assert!(events.contains("FreeDiskSpaceFailed"));
                let (err, top) = call(&s, "nodes_top", json!({"name": spec.name})).await;
                assert!(err, "no metrics for a NotReady node: {top}");
            }
            _ => {
                let (_, dep) = call(
                    &s,
                    "resources_get",
                    json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.name, "namespace": ns}),
                )
                .await;
                assert!(dep.contains("ProgressDeadlineExceeded"), "{dep}");
                let (_, pods) = call(
                    &s,
                    "pods_list_in_namespace",
                    json!({"namespace": ns, "labelSelector": format!("app={}", spec.name)}),
                )
                .await;
                assert_eq!(pods.lines().count(), 2, "header and one pod: {pods}");
                let (_, events) = call(&s, "events_list", json!({"namespace": ns})).await;
                let telling = match scenario {
                    Scenario::BadImageTag => "v2.4.1-rcl: not found",
                    Scenario::ReadinessWrongPort => ":8081/healthz",
                    _ => "Insufficient memory",
                };
                assert!(events.contains(telling), "{scenario:?}: {events}");
            }
        }
    }
    let (err, text) = call(
        &s,
        "pods_get",
        json!({"name": "ghost", "namespace": "default"}),
    )
    .await;
    assert!(err);
    assert_eq!(
        text,
        "failed to get pod ghost in namespace default: pods \"ghost\" not found"
    );
}

#[tokio::test]
async fn tool_faults_error_hang_and_oversize() {
    let sim = sim(true).await;
    let spec = Scenario::MissingEnv.example(5);
    sim.add_to_cluster(&spec);
    let s = session(&sim).await;
    sim.set_tool_fault("pods_get", Some(ToolFault::Error("forbidden: RBAC".into())));
    let (err, text) = call(&s, "pods_get", json!({"name": spec.name})).await;
    assert!(err && text == "forbidden: RBAC");
    sim.set_tool_fault("pods_log", Some(ToolFault::Hang));
    let r = s
        .call_tool(
            "pods_log",
            json!({"name": spec.name}),
            Duration::from_millis(200),
            MAX,
        )
        .await;
    assert!(matches!(r, Err(ClientError::Timeout { .. })), "{r:?}");
    sim.set_tool_fault("events_list", Some(ToolFault::Huge(3 * MAX)));
    let r = s.call_tool("events_list", json!({}), T, MAX).await;
    assert!(matches!(r, Err(ClientError::TooLarge { .. })), "{r:?}");
    sim.set_tool_fault("pods_get", None);
    let (err, _) = call(
        &s,
        "pods_get",
        json!({"name": spec.name, "namespace": spec.namespace}),
    )
    .await;
    assert!(!err);
    s.close().await;
}
