//! Nightcrier's per-run MCP endpoint for the agent, over real HTTP on loopback, in front of an
//! upstream that speaks Streamable HTTP as kubernetes-mcp-server does (session header, SSE
//! answers) and misbehaves on demand (a tool that hangs, one that answers 1 MB, a server that is
//! down). Checks the filter, the refusals, the bounds, the record and the token.

use crate::support::agent as agent_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use nightcrier::agent::mcp_proxy::{McpProxy, ProxyLimits};
use nightcrier::config::{McpConfig, Secret};
use serde_json::{json, Value};

const CLUSTER_SECRET: &str = "Bearer cluster-secret-7f3a";
const PANIC_LINE: &str = "panic: required environment variable CONFIG_URL is not set";

#[derive(Clone, Default)]
struct Upstream {
    /// (authorization header, method, tool name) of every request.
    seen: Arc<Mutex<Vec<(String, String, String)>>>,
}

fn ro(name: &str) -> Value {
    json!({"name": name, "description": name, "inputSchema": {"type": "object"},
           "annotations": {"readOnlyHint": true, "destructiveHint": false}})
}

fn tools() -> Value {
    json!([
        ro("pods_log"),
        ro("pods_get"),
        ro("slow_tool"),
        ro("huge_tool"),
        // Mislabelled by the server: still never offered.
        ro("pods_exec"),
        {"name": "pods_delete", "inputSchema": {"type": "object"},
         "annotations": {"readOnlyHint": false, "destructiveHint": true}},
        {"name": "resources_scale", "inputSchema": {"type": "object"}},
    ])
}

fn sse(msgs: &[Value]) -> Response {
    let body: String = msgs
        .iter()
        .map(|m| format!("event: message\ndata: {m}\n\n"))
        .collect();
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header("mcp-session-id", "up-1")
        .body(Body::from(body))
        .unwrap()
}

async fn upstream_mcp(State(up): State<Upstream>, headers: HeaderMap, body: String) -> Response {
    let msg: Value = serde_json::from_str(&body).unwrap();
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let method = msg["method"].as_str().unwrap_or("").to_string();
    let tool = msg["params"]["name"].as_str().unwrap_or("").to_string();
    up.seen
        .lock()
        .unwrap()
        .push((auth.clone(), method.clone(), tool.clone()));
    if auth != CLUSTER_SECRET {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let id = msg["id"].clone();
    if id.is_null() {
        return StatusCode::ACCEPTED.into_response();
    }
    let reply = |result: Value| json!({"jsonrpc": "2.0", "id": id, "result": result});
    match method.as_str() {
        "initialize" => sse(&[reply(json!({
            "protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
            "serverInfo": {"name": "fake-kubernetes-mcp-server", "version": "0"}}))]),
        "tools/list" => sse(&[reply(json!({"tools": tools()}))]),
        "tools/call" => match tool.as_str() {
            "slow_tool" => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                StatusCode::GATEWAY_TIMEOUT.into_response()
            }
            "huge_tool" => sse(&[reply(
                json!({"content": [{"type": "text", "text": "x".repeat(1024 * 1024)}]}),
            )]),
            _ => sse(&[
                json!({"jsonrpc": "2.0", "method": "notifications/message",
                       "params": {"level": "info", "data": "working"}}),
                reply(json!({"content": [{"type": "text", "text":
                    format!("2026-12-02T01:00:00Z starting\n{PANIC_LINE}\n")}]})),
            ]),
        },
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn start_upstream() -> (Upstream, String, tokio::task::JoinHandle<()>) {
    let up = Upstream::default();
    let app = Router::new()
        .route(
            "/mcp",
            post(upstream_mcp).delete(|| async { StatusCode::OK }),
        )
        .with_state(up.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (up, format!("http://{addr}/mcp"), task)
}

fn mcp_config(endpoint: &str) -> McpConfig {
    let mut cfg = McpConfig::new(endpoint);
    cfg.headers
        .insert("Authorization".into(), Secret::new(CLUSTER_SECRET));
    cfg
}

struct Client {
    http: reqwest::Client,
    url: String,
    token: String,
    next: u64,
}

impl Client {
    async fn post(&self, token: Option<&str>, msg: &Value) -> reqwest::Response {
        let mut req = self.http.post(&self.url).json(msg);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }
    async fn rpc(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let msg = json!({"jsonrpc": "2.0", "id": self.next, "method": method, "params": params});
        let resp = self.post(Some(&self.token.clone()), &msg).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let text = resp.text().await.unwrap();
        assert!(
            !text.contains("cluster-secret"),
            "credentials leaked: {text}"
        );
        serde_json::from_str(&text).unwrap()
    }
    async fn call(&mut self, tool: &str, args: Value) -> Value {
        let answer = self
            .rpc("tools/call", json!({"name": tool, "arguments": args}))
            .await;
        answer["result"].clone()
    }
}

fn text_of(result: &Value) -> String {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_offers_only_read_only_tools_and_records_every_call() {
    let (up, endpoint, _server) = start_upstream().await;
    let ws = tempfile::tempdir().unwrap();
    let evidence = ws.path().join("evidence");
    let limits = ProxyLimits {
        call_timeout: Duration::from_secs(1),
        max_result_bytes: 64 * 1024,
        max_calls: 5,
    };
    let proxy = McpProxy::start("prod", &mcp_config(&endpoint), evidence.clone(), limits)
        .await
        .unwrap();
    assert!(proxy.addr().ip().is_loopback());
    assert!(!format!("{proxy:?}").contains(proxy.token()));
    let mut c = Client {
        http: reqwest::Client::new(),
        url: proxy.url(),
        token: proxy.token().to_string(),
        next: 0,
    };

    // No token, a wrong one: refused before anything reaches the cluster.
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}});
    assert_eq!(c.post(None, &init).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        c.post(Some("wrong"), &init).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        c.post(Some(CLUSTER_SECRET.trim_start_matches("Bearer ")), &init)
            .await
            .status(),
        StatusCode::UNAUTHORIZED,
        "the cluster's credentials are not the agent's"
    );
    assert!(up.seen.lock().unwrap().is_empty());

    let answer = c
        .rpc(
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {}}),
        )
        .await;
    assert_eq!(answer["result"]["protocolVersion"], "2025-11-25");
    assert!(answer["result"]["capabilities"]["tools"].is_object());

    let listed = c.rpc("tools/list", json!({})).await;
    let mut names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["huge_tool", "pods_get", "pods_log", "slow_tool"]);

    // 1: forwarded; the SSE answer (after a notification) comes back as the tool result.
    let result = c
        .call(
            "pods_log",
            json!({"name": "cart-7d9f", "namespace": "shop", "previous": true}),
        )
        .await;
    assert!(text_of(&result).contains(PANIC_LINE), "{result}");
    assert_ne!(result["isError"], true);
    // 2: refused without reaching the cluster.
    let result = c.call("pods_delete", json!({"name": "cart-7d9f"})).await;
    assert_eq!(result["isError"], true);
    assert!(text_of(&result).contains("refused"), "{result}");
    // 3: a hanging tool ends at the call timeout.
    let result = c.call("slow_tool", json!({})).await;
    assert_eq!(result["isError"], true);
    assert!(text_of(&result).contains("timed out after 1s"), "{result}");
    // 4: a 1 MB answer is cut off at the bound.
    let result = c.call("huge_tool", json!({})).await;
    assert_eq!(result["isError"], true);
    assert!(
        text_of(&result).contains("larger than 65536 bytes"),
        "{result}"
    );
    // 5: fine; 6: over the budget of 5.
    assert_ne!(
        c.call("pods_get", json!({"name": "x"})).await["isError"],
        true
    );
    let result = c.call("pods_get", json!({"name": "y"})).await;
    assert!(text_of(&result).contains("budget of 5"), "{result}");
    assert_eq!(proxy.calls(), 6);

    // Unknown methods are JSON-RPC errors; notifications are accepted.
    let answer = c.rpc("sampling/createMessage", json!({})).await;
    assert_eq!(answer["error"]["code"], -32601);
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(
        c.post(Some(&c.token.clone()), &note).await.status(),
        StatusCode::ACCEPTED
    );

    // The cluster saw its own credentials on every request, and never a refused tool.
    let seen = up.seen.lock().unwrap().clone();
    assert!(seen.iter().all(|(auth, _, _)| auth == CLUSTER_SECRET));
    let called: Vec<&str> = seen
        .iter()
        .filter(|(_, m, _)| m == "tools/call")
        .map(|(_, _, t)| t.as_str())
        .collect();
    assert_eq!(called, ["pods_log", "slow_tool", "huge_tool", "pods_get"]);
    assert_eq!(
        seen.iter().filter(|(_, m, _)| m == "tools/list").count(),
        1,
        "the list is fetched once per run"
    );

    // Every call is in the record, in order, with its outcome.
    let log = std::fs::read_to_string(evidence.join("tool-calls.jsonl")).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let tools: Vec<&str> = lines.iter().map(|l| l["tool"].as_str().unwrap()).collect();
    assert_eq!(
        tools,
        [
            "pods_log",
            "pods_delete",
            "slow_tool",
            "huge_tool",
            "pods_get",
            "pods_get"
        ]
    );
    assert_eq!(lines[0]["n"], 1);
    assert_eq!(lines[0]["arguments"]["previous"], true);
    assert!(lines[0]["result_bytes"].as_u64().unwrap() > PANIC_LINE.len() as u64);
    assert!(lines[0]["error"].is_null());
    assert!(lines[1]["error"].as_str().unwrap().contains("refused"));
    assert!(lines[2]["error"].as_str().unwrap().contains("timed out"));
    assert!(lines[3]["error"].as_str().unwrap().contains("larger than"));
    let result_file = ws.path().join(lines[0]["result_file"].as_str().unwrap());
    assert!(std::fs::read_to_string(result_file)
        .unwrap()
        .contains(PANIC_LINE));
    assert!(!log.contains("cluster-secret"));

    // The port dies with the run.
    let url = proxy.url();
    proxy.shutdown().await;
    let after = reqwest::Client::new()
        .post(&url)
        .timeout(Duration::from_secs(5))
        .json(&init)
        .send()
        .await;
    assert!(after.is_err(), "the endpoint still answers after the run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_server_that_is_down_is_a_bounded_error_for_the_agent() {
    // A port that was just free: nothing listens there.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}/mcp", free.local_addr().unwrap());
    drop(free);
    let ws = tempfile::tempdir().unwrap();
    let limits = ProxyLimits {
        call_timeout: Duration::from_secs(5),
        max_result_bytes: 64 * 1024,
        max_calls: 10,
    };
    let proxy = McpProxy::start(
        "prod",
        &mcp_config(&endpoint),
        ws.path().join("evidence"),
        limits,
    )
    .await
    .unwrap();
    let mut c = Client {
        http: reqwest::Client::new(),
        url: proxy.url(),
        token: proxy.token().to_string(),
        next: 0,
    };
    let listed = c.rpc("tools/list", json!({})).await;
    let message = listed["error"]["message"].as_str().unwrap();
    assert!(message.contains("unreachable"), "{listed}");
    let result = c.call("pods_log", json!({})).await;
    assert_eq!(result["isError"], true);
    assert!(text_of(&result).contains("unreachable"), "{result}");
    let log = std::fs::read_to_string(ws.path().join("evidence/tool-calls.jsonl")).unwrap();
    assert!(log.contains("unreachable"));
}

#[tokio::test]
async fn a_bad_endpoint_is_a_clear_error_at_start() {
    let ws = tempfile::tempdir().unwrap();
    let limits = ProxyLimits {
        call_timeout: Duration::from_secs(5),
        max_result_bytes: 64 * 1024,
        max_calls: 10,
    };
    let err = McpProxy::start(
        "prod",
        &McpConfig::new("ftp://example/mcp"),
        ws.path().join("evidence"),
        limits,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("ftp://example/mcp"), "{err}");
}

/// Through the runner: a `command` agent sees the endpoint's variables (not its cluster's
/// credentials, not nightcrier's API keys), the prompt says what it has, and the endpoint is
/// gone when the run ends; with `mcp_tools` and `kubectl` off it gets neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_gets_its_own_endpoint_and_loses_it_when_it_ends() {
    use nightcrier::agent::AgentRunner;
    use nightcrier::incident::IncidentStatus;
    use tokio_util::sync::CancellationToken;

    let root = tempfile::tempdir().unwrap();
    let kubeconfig = root.path().join("prod.kubeconfig");
    std::fs::write(&kubeconfig, "apiVersion: v1\n").unwrap();
    let mut agent = agent_support::script_agent("success.sh");
    agent.additional_prompt = Some("Mention the on-call rota.".into());
    let mut config = agent_support::config(root.path(), agent);
    config.clusters[0] = agent_support::cluster("prod", Some(kubeconfig));
    config.clusters[0].mcp = mcp_config("http://127.0.0.1:1/mcp");
    let keys = [("ANTHROPIC_API_KEY".to_string(), Secret::new("sk-ant-host"))]
        .into_iter()
        .collect();
    let runner = AgentRunner::new(&config).with_inherited_env(keys);
    let run = |incident: nightcrier::incident::Incident| {
        let runner = runner.clone();
        async move {
            let occ = agent_support::occurrences(&incident, 1);
            runner
                .run(&incident, &occ, 1, CancellationToken::new(), &|_| {})
                .await
        }
    };

    let report = run(agent_support::incident("prod")).await;
    assert_eq!(
        report.outcome.status,
        IncidentStatus::Succeeded,
        "{report:?}"
    );
    let env = std::fs::read_to_string(report.workspace.join("output/env.txt")).unwrap();
    let var = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(str::to_string)
    };
    let url = var("NIGHTCRIER_MCP_URL").expect("no endpoint for the agent");
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/mcp"),
        "{url}"
    );
    assert_eq!(var("NIGHTCRIER_MCP_TOKEN").map(|t| t.len()), Some(64));
    assert!(var("KUBECONFIG").is_some());
    assert!(
        !env.contains("cluster-secret") && !env.contains("sk-ant-host"),
        "{env}"
    );
    let prompt = std::fs::read_to_string(report.workspace.join("prompt.md")).unwrap();
    assert!(prompt.contains("The MCP server `kubernetes`"), "{prompt}");
    assert!(prompt.contains("Mention the on-call rota."));
    let after = reqwest::Client::new()
        .post(&url)
        .timeout(Duration::from_secs(5))
        .body("{}")
        .send()
        .await;
    assert!(after.is_err(), "the endpoint outlived its run");

    let mut off = config.clone();
    off.agent.mcp_tools = false;
    off.agent.kubectl = false;
    let runner = AgentRunner::new(&off);
    let incident = agent_support::incident("prod");
    let occ = agent_support::occurrences(&incident, 1);
    let report = runner
        .run(&incident, &occ, 1, CancellationToken::new(), &|_| {})
        .await;
    assert_eq!(
        report.outcome.status,
        IncidentStatus::Succeeded,
        "{report:?}"
    );
    let env = std::fs::read_to_string(report.workspace.join("output/env.txt")).unwrap();
    assert!(
        !env.contains("NIGHTCRIER_MCP_") && !env.contains("KUBECONFIG="),
        "{env}"
    );
    let prompt = std::fs::read_to_string(report.workspace.join("prompt.md")).unwrap();
    assert!(!prompt.contains("The MCP server `kubernetes`"));
    assert!(prompt.contains("No kubeconfig is provided"));
}

/// Against the simulator: the cluster's server restarts mid-run (its sessions are gone, 404):
/// the endpoint opens a new session and the agent's call still gets the scenario's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_upstream_session_is_reopened_once() {
    use nightcrier::simulate::{Scenario, SimConfig, Simulator};

    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let spec = Scenario::MissingEnv.example(1);
    sim.add_to_cluster(&spec);
    let ws = tempfile::tempdir().unwrap();
    let limits = ProxyLimits {
        call_timeout: Duration::from_secs(10),
        max_result_bytes: 64 * 1024,
        max_calls: 10,
    };
    let proxy = McpProxy::start(
        "prod",
        &McpConfig::new(sim.endpoint()),
        ws.path().join("evidence"),
        limits,
    )
    .await
    .unwrap();
    let mut c = Client {
        http: reqwest::Client::new(),
        url: proxy.url(),
        token: proxy.token().to_string(),
        next: 0,
    };
    let args = json!({"name": spec.name, "namespace": spec.namespace, "previous": true});
    let first = c.call("pods_log", args.clone()).await;
    assert!(
        text_of(&first).contains("DATABASE_URL is not set"),
        "{first}"
    );
    assert_eq!(sim.sessions_created(), 1);
    sim.expire_sessions();
    let again = c.call("pods_log", args).await;
    assert!(
        text_of(&again).contains("DATABASE_URL is not set"),
        "{again}"
    );
    assert_eq!(sim.sessions_created(), 2);
    proxy.shutdown().await;
}
