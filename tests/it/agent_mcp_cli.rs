//! Every preset whose CLI installs here, end to end with the real CLI: Claude Code, Codex and
//! Gemini CLI each run against a scripted model API of its own wire format on loopback
//! (Anthropic Messages over SSE, OpenAI Responses over SSE, Gemini `streamGenerateContent`),
//! with `nightcrier simulate`'s cluster as the MCP server behind nightcrier's per-run endpoint.
//!
//! The scripted model first calls the cluster's `pods_log` with `previous: true` through the
//! MCP configuration nightcrier generated; the next API request must carry the tool result with
//! the scenario's panic line; then the model writes the report with the CLI's own tool and the
//! run ends `succeeded`. The tools offered to the model must not include a mutating one, though
//! the simulator lists them. The cluster's credentials (the simulator requires a bearer token)
//! never reach the CLI.
//!
//! Each CLI's final stdout is kept in `tests/fixtures/agent-output/` when
//! `NIGHTCRIER_UPDATE_FIXTURES=1` (other tests parse token accounting from it).
//!
//! The CLIs are not vendored: `scripts/install-test-tools.sh` installs them into
//! `target/test-tools` (a test runs it when its CLI is missing), or point
//! `NIGHTCRIER_TEST_{CLAUDE,CODEX,GEMINI}_BIN` at a binary.

use crate::support::agent as agent_support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_support::*;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, Uri};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use nightcrier::agent::{AgentRunner, RunReport};
use nightcrier::config::{AgentConfig, AgentPreset, Config, McpConfig, Secret};
use nightcrier::incident::{Incident, IncidentStatus};
use nightcrier::simulate::{FaultSpec, Scenario, SimConfig, SimHandle, Simulator};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const SIM_TOKEN: &str = "sim-cluster-secret-91c2";
const PANIC_LINE: &str = "panic: required environment variable DATABASE_URL is not set";
const MUTATING: [&str; 6] = [
    "pods_exec",
    "pods_run",
    "pods_delete",
    "resources_create_or_update",
    "resources_delete",
    "resources_scale",
];
const FINAL_TEXT: &str = "The report is in output/investigation.md.";

fn report_text() -> String {
    format!(
        "# Investigation: crash loop\n\n## Summary\nThe pod crash-loops at start.\n\n\
         ## Root Cause\nDATABASE_URL is not set in the container's environment.\n\n\
         ## Evidence\nTool call 1 (pods_log, previous): `{PANIC_LINE}`.\n\n\
         ## Recommended Actions\n1. Set DATABASE_URL in the Deployment.\n\n## Confidence\nhigh\n"
    )
}

/// The CLI from `NIGHTCRIER_TEST_<NAME>_BIN`, or from `target/test-tools`, installing it there
/// first when missing.
fn cli_binary(name: &str) -> PathBuf {
    let var = format!("NIGHTCRIER_TEST_{}_BIN", name.to_uppercase());
    if let Ok(path) = std::env::var(&var) {
        return PathBuf::from(path);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let default = root.join("target/test-tools/node_modules/.bin").join(name);
    if default.exists() {
        return default;
    }
    let script = root.join("scripts/install-test-tools.sh");
    let status = std::process::Command::new("bash").arg(&script).status();
    match status {
        Ok(s) if s.success() && default.exists() => default,
        other => panic!(
            "the {name} CLI is not installed and {} failed ({other:?}): it needs npm and the npm \
             registry; or set {var} to a `{name}` binary",
            script.display()
        ),
    }
}

/// The simulated cluster with the crash-loop scenario, behind a bearer token.
struct Cluster {
    sim: SimHandle,
    spec: FaultSpec,
}

async fn cluster_with_crash_loop() -> Cluster {
    let sim = Simulator::start(SimConfig {
        bearer_token: Some(SIM_TOKEN.into()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let spec = Scenario::MissingEnv.example(1);
    assert_eq!(spec.kind, "Pod", "{spec:?}");
    sim.add_to_cluster(&spec);
    Cluster { sim, spec }
}

impl Cluster {
    fn incident(&self) -> Incident {
        let mut incident = incident("prod");
        incident.fault_type = self.spec.fault_type.clone();
        incident.namespace = self.spec.namespace.clone();
        incident.resource_kind = self.spec.kind.clone();
        incident.resource_name = self.spec.name.clone();
        incident.resource_uid = self.spec.uid.clone();
        incident.context = self.spec.context.clone();
        incident
    }

    fn pods_log_args(&self) -> Value {
        json!({"name": self.spec.name, "namespace": self.spec.namespace, "previous": true})
    }

    fn config(&self, root: &Path, agent: AgentConfig) -> Config {
        let mut config = config(root, agent);
        let mut mcp = McpConfig::new(self.sim.endpoint());
        mcp.headers.insert(
            "Authorization".into(),
            Secret::new(format!("Bearer {SIM_TOKEN}")),
        );
        config.clusters[0].mcp = mcp;
        config
    }
}

/// Requests a fake API received, for assertions after the run.
#[derive(Clone, Default)]
struct Recorder {
    bodies: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Recorder {
    fn push(&self, uri: &Uri, body: &Value) {
        self.bodies
            .lock()
            .unwrap()
            .push((uri.to_string(), body.clone()));
    }
    fn all(&self) -> Vec<(String, Value)> {
        self.bodies.lock().unwrap().clone()
    }
}

fn sse_response(body: String) -> Response {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from(body))
        .unwrap()
}

fn json_response(v: &Value) -> Response {
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(v.to_string()))
        .unwrap()
}

async fn serve(app: Router) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), task)
}

async fn run(config: &Config, incident: &Incident) -> (RunReport, String) {
    let runner = AgentRunner::new(config).with_inherited_env(Default::default());
    let report = runner
        .run(
            incident,
            &occurrences(incident, 1),
            1,
            CancellationToken::new(),
            &|_| {},
        )
        .await;
    let log = std::fs::read_to_string(&report.log_path).unwrap_or_default();
    (report, log)
}

fn cli_agent(preset: AgentPreset, binary: PathBuf, env: &[(&str, String)]) -> AgentConfig {
    let mut agent = script_agent("unused");
    agent.preset = preset;
    agent.command.clear();
    agent.binary = Some(binary);
    agent.timeout = Duration::from_secs(240);
    agent.kill_grace = Duration::from_secs(2);
    for (k, v) in env {
        agent.env.insert((*k).into(), Secret::new(v.clone()));
    }
    agent
}

/// What every CLI run must show besides its own wire details.
fn assert_common(report: &RunReport, log: &str, cluster: &Cluster) {
    assert_eq!(
        report.outcome.status,
        IncidentStatus::Succeeded,
        "{report:?}\n--- agent.log ---\n{log}"
    );
    assert_eq!(
        std::fs::read_to_string(
            nightcrier::agent::Workspace::from_dir(&report.workspace).report_file()
        )
        .unwrap(),
        report_text()
    );
    // The call went through nightcrier's endpoint and is recorded.
    let calls = std::fs::read_to_string(report.workspace.join("evidence/tool-calls.jsonl"))
        .unwrap_or_else(|e| panic!("no call record: {e}\n{log}"));
    let first: Value = serde_json::from_str(calls.lines().next().unwrap()).unwrap();
    assert_eq!(first["tool"], "pods_log", "{calls}");
    assert_eq!(first["arguments"]["previous"], true);
    assert!(first["error"].is_null(), "{calls}");
    // (The proxy DELETEs its session at the end of the run, so the simulator counts sessions.)
    assert!(cluster.sim.sessions_created() >= 1);
    // The cluster's credentials stayed with nightcrier.
    let state = report.workspace.join("agent-state");
    for entry in walk(&state) {
        let text = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&text).contains(SIM_TOKEN),
            "{} holds the cluster's token",
            entry.display()
        );
    }
    assert!(!log.contains(SIM_TOKEN));
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => out.extend(walk(&p)),
            Ok(t) if t.is_file() => out.push(p),
            _ => {}
        }
    }
    out
}

fn assert_no_mutating_tool(names: &[String]) {
    for name in names {
        assert!(
            !MUTATING.iter().any(|m| name.ends_with(m)),
            "mutating tool {name} offered to the model: {names:?}"
        );
    }
}

/// Writes `tests/fixtures/agent-output/<name>` when asked to, and checks what is kept.
fn keep_fixture(name: &str, content: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/agent-output")
        .join(name);
    if std::env::var("NIGHTCRIER_UPDATE_FIXTURES").as_deref() == Ok("1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Claude Code: Anthropic Messages API.

#[derive(Clone)]
struct ClaudeApi {
    rec: Recorder,
    report_path: PathBuf,
    log_args: Value,
}

fn claude_tool_names(body: &Value) -> Vec<String> {
    body["tools"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|t| t["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn claude_tool_results(body: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for m in body["messages"].as_array().into_iter().flatten() {
        for b in m["content"].as_array().into_iter().flatten() {
            if b["type"] == "tool_result" {
                out.push(b["content"].to_string());
            }
        }
    }
    out
}

fn claude_reply(api: &ClaudeApi, body: &Value) -> (Vec<Value>, &'static str) {
    let tools = claude_tool_names(body);
    if !tools.iter().any(|t| t == "Write") {
        return (
            vec![json!({"type": "text", "text": "Crash loop"})],
            "end_turn",
        );
    }
    match claude_tool_results(body).len() {
        0 => (
            vec![
                json!({"type": "tool_use", "id": "toolu_01", "name": "mcp__kubernetes__pods_log",
                        "input": api.log_args}),
            ],
            "tool_use",
        ),
        1 => (
            vec![
                json!({"type": "tool_use", "id": "toolu_02", "name": "Write", "input": {
                "file_path": api.report_path.display().to_string(), "content": report_text()}}),
            ],
            "tool_use",
        ),
        _ => (
            vec![json!({"type": "text", "text": FINAL_TEXT})],
            "end_turn",
        ),
    }
}

/// Realistic usage: a long prompt with a cached system part.
fn claude_usage() -> Value {
    json!({"input_tokens": 2450, "cache_creation_input_tokens": 0,
           "cache_read_input_tokens": 11800, "output_tokens": 1})
}

fn claude_stream(model: &str, blocks: &[Value], stop_reason: &str) -> String {
    let mut events = vec![json!({"type": "message_start", "message": {
        "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
        "content": [], "stop_reason": null, "stop_sequence": null, "usage": claude_usage()}})];
    for (index, block) in blocks.iter().enumerate() {
        let (start, delta) = if block["type"] == "tool_use" {
            (
                json!({"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}),
                json!({"type": "input_json_delta", "partial_json": block["input"].to_string()}),
            )
        } else {
            (
                json!({"type": "text", "text": ""}),
                json!({"type": "text_delta", "text": block["text"]}),
            )
        };
        events.push(json!({"type": "content_block_start", "index": index, "content_block": start}));
        events.push(json!({"type": "content_block_delta", "index": index, "delta": delta}));
        events.push(json!({"type": "content_block_stop", "index": index}));
    }
    events.push(json!({"type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": null},
        "usage": {"output_tokens": 212}}));
    events.push(json!({"type": "message_stop"}));
    events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
        .collect()
}

async fn claude_messages(State(api): State<ClaudeApi>, uri: Uri, body: String) -> Response {
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    api.rec.push(&uri, &body);
    let model = body["model"]
        .as_str()
        .unwrap_or("claude-sonnet-4-5")
        .to_string();
    let (blocks, stop) = claude_reply(&api, &body);
    if body["stream"].as_bool() == Some(true) {
        sse_response(claude_stream(&model, &blocks, stop))
    } else {
        let mut usage = claude_usage();
        usage["output_tokens"] = json!(212);
        json_response(
            &json!({"id": "msg_fake", "type": "message", "role": "assistant",
            "model": model, "content": blocks, "stop_reason": stop, "stop_sequence": null,
            "usage": usage}),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_calls_the_clusters_read_only_tools_through_nightcrier() {
    let claude = cli_binary("claude");
    let cluster = cluster_with_crash_loop().await;
    let root = tempfile::tempdir().unwrap();
    let incident = cluster.incident();
    let api = ClaudeApi {
        rec: Recorder::default(),
        report_path: root
            .path()
            .join(incident.id.to_string())
            .join("output/investigation.md"),
        log_args: cluster.pods_log_args(),
    };
    let app = Router::new()
        .route("/v1/messages", post(claude_messages))
        .fallback(|| async { "" })
        .with_state(api.clone());
    let (base, server) = serve(app).await;
    let mut agent = cli_agent(
        AgentPreset::Claude,
        claude,
        &[
            ("ANTHROPIC_API_KEY", "test".into()),
            ("ANTHROPIC_BASE_URL", base),
            ("CLAUDE_CODE_MAX_RETRIES", "1".into()),
        ],
    );
    agent.model = Some("sonnet".into());
    let (report, log) = run(&cluster.config(root.path(), agent), &incident).await;
    server.abort();

    assert_common(&report, &log, &cluster);
    let requests: Vec<Value> = api
        .rec
        .all()
        .into_iter()
        .map(|(_, b)| b)
        .filter(|b| claude_tool_names(b).iter().any(|t| t == "Write"))
        .collect();
    let tools = claude_tool_names(&requests[0]);
    assert!(
        tools.iter().any(|t| t == "mcp__kubernetes__pods_log"),
        "{tools:?}"
    );
    assert_no_mutating_tool(&tools);
    let second = requests
        .iter()
        .find(|b| claude_tool_results(b).len() == 1)
        .expect("no request carried the tool result");
    let result = &claude_tool_results(second)[0];
    assert!(result.contains(PANIC_LINE), "{result}");

    let stdout = log
        .lines()
        .find(|l| l.starts_with('{') && l.contains("\"result\""))
        .expect("no JSON result in agent.log");
    let parsed: Value = serde_json::from_str(stdout).unwrap();
    assert_eq!(parsed["is_error"], false, "{parsed}");
    assert!(parsed["usage"]["input_tokens"].as_u64().unwrap() > 0);
    keep_fixture("claude.json", &format!("{stdout}\n"));
}

// ---------------------------------------------------------------------------------------------
// Codex: OpenAI Responses API over SSE.

#[derive(Clone)]
struct CodexApi {
    rec: Recorder,
    log_args: Value,
}

fn codex_outputs(body: &Value) -> Vec<Value> {
    body["input"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["type"] == "function_call_output")
        .cloned()
        .collect()
}

/// Tool names as the model sees them: namespaces flattened to `<namespace>.<tool>`.
fn codex_tool_names(body: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for t in body["tools"].as_array().into_iter().flatten() {
        let name = t["name"].as_str().unwrap_or("");
        match t["tools"].as_array() {
            Some(inner) => out.extend(
                inner
                    .iter()
                    .map(|i| format!("{name}.{}", i["name"].as_str().unwrap_or(""))),
            ),
            None => out.push(name.to_string()),
        }
    }
    out
}

async fn codex_responses(State(api): State<CodexApi>, uri: Uri, body: String) -> Response {
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    api.rec.push(&uri, &body);
    let n = codex_outputs(&body).len();
    let command = format!(
        "printf '%s' {} > output/investigation.md",
        shell_quote(&report_text())
    );
    let item = match n {
        0 => json!({"type": "function_call", "id": "fc_1", "call_id": "call_1",
                    "namespace": "mcp__kubernetes", "name": "pods_log",
                    "arguments": api.log_args.to_string()}),
        1 => json!({"type": "function_call", "id": "fc_2", "call_id": "call_2",
                    "name": "exec_command", "arguments": json!({"cmd": command}).to_string()}),
        _ => json!({"type": "message", "role": "assistant", "id": "msg_1",
                    "content": [{"type": "output_text", "text": FINAL_TEXT, "annotations": []}]}),
    };
    let usage = json!({"input_tokens": 5230 + 600 * n, "input_tokens_details": {"cached_tokens": 4096},
                       "output_tokens": 180, "output_tokens_details": {"reasoning_tokens": 64},
                       "total_tokens": 5410 + 600 * n});
    let events = [
        json!({"type": "response.created", "response": {"id": format!("resp_{n}")}}),
        json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
        json!({"type": "response.completed", "response": {"id": format!("resp_{n}"), "usage": usage}}),
    ];
    sse_response(
        events
            .iter()
            .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
            .collect(),
    )
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_calls_the_clusters_read_only_tools_through_nightcrier() {
    let codex = cli_binary("codex");
    let cluster = cluster_with_crash_loop().await;
    let root = tempfile::tempdir().unwrap();
    let incident = cluster.incident();
    let api = CodexApi {
        rec: Recorder::default(),
        log_args: cluster.pods_log_args(),
    };
    let app = Router::new()
        .route("/v1/responses", post(codex_responses))
        .fallback(|| async { "" })
        .with_state(api.clone());
    let (base, server) = serve(app).await;
    // OPENAI_API_KEY stands in for CODEX_API_KEY; OPENAI_BASE_URL becomes the provider.
    let mut agent = cli_agent(
        AgentPreset::Codex,
        codex,
        &[
            ("OPENAI_API_KEY", "test".into()),
            ("OPENAI_BASE_URL", format!("{base}/v1")),
        ],
    );
    agent.model = Some("gpt-5".into());
    let (report, log) = run(&cluster.config(root.path(), agent), &incident).await;
    server.abort();

    assert_common(&report, &log, &cluster);
    let requests: Vec<Value> = api.rec.all().into_iter().map(|(_, b)| b).collect();
    let tools = codex_tool_names(&requests[0]);
    assert!(
        tools.iter().any(|t| t == "mcp__kubernetes.pods_log"),
        "{tools:?}"
    );
    assert_no_mutating_tool(&tools);
    let second = requests
        .iter()
        .find(|b| codex_outputs(b).len() == 1)
        .expect("no request carried the tool result");
    let output = codex_outputs(second)[0]["output"].to_string();
    assert!(output.contains(PANIC_LINE), "{output}");

    let stdout: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("{\"type\":"))
        .collect();
    let last: Value = serde_json::from_str(stdout.last().expect("no JSON events")).unwrap();
    assert_eq!(last["type"], "turn.completed", "{last}");
    assert!(last["usage"]["input_tokens"].as_u64().unwrap() > 0);
    keep_fixture("codex.jsonl", &(stdout.join("\n") + "\n"));
}

// ---------------------------------------------------------------------------------------------
// Gemini CLI: Gemini API streamGenerateContent (SSE).

#[derive(Clone)]
struct GeminiApi {
    rec: Recorder,
    report_path: PathBuf,
    log_args: Value,
}

fn gemini_tool_names(body: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for t in body["tools"].as_array().into_iter().flatten() {
        for f in t["functionDeclarations"].as_array().into_iter().flatten() {
            out.extend(f["name"].as_str().map(String::from));
        }
    }
    out
}

fn gemini_responses(body: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for c in body["contents"].as_array().into_iter().flatten() {
        for p in c["parts"].as_array().into_iter().flatten() {
            if p.get("functionResponse").is_some() {
                out.push(p["functionResponse"].clone());
            }
        }
    }
    out
}

async fn gemini_generate(State(api): State<GeminiApi>, uri: Uri, body: String) -> Response {
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    api.rec.push(&uri, &body);
    let main = gemini_tool_names(&body).iter().any(|t| t == "write_file");
    let part = if !main {
        json!({"text": "{\"complexity_reasoning\": \"debugging\", \"complexity_score\": 60}"})
    } else {
        match gemini_responses(&body).len() {
            0 => json!({"functionCall": {"name": "mcp_kubernetes_pods_log", "args": api.log_args}}),
            1 => json!({"functionCall": {"name": "write_file", "args": {
                "file_path": api.report_path.display().to_string(), "content": report_text()}}}),
            _ => json!({"text": FINAL_TEXT}),
        }
    };
    let n = gemini_responses(&body).len() as u64;
    let chunk = json!({
        "candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 4120 + 700 * n, "candidatesTokenCount": 190,
                          "cachedContentTokenCount": 2048, "thoughtsTokenCount": 96,
                          "totalTokenCount": 4406 + 700 * n},
        "modelVersion": "gemini-2.5-pro", "responseId": format!("resp-{n}"),
    });
    if uri.path().ends_with(":streamGenerateContent") {
        sse_response(format!("data: {chunk}\n\n"))
    } else {
        json_response(&chunk)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_cli_calls_the_clusters_read_only_tools_through_nightcrier() {
    let gemini = cli_binary("gemini");
    let cluster = cluster_with_crash_loop().await;
    let root = tempfile::tempdir().unwrap();
    let incident = cluster.incident();
    let api = GeminiApi {
        rec: Recorder::default(),
        report_path: root
            .path()
            .join(incident.id.to_string())
            .join("output/investigation.md"),
        log_args: cluster.pods_log_args(),
    };
    let app = Router::new()
        .fallback(gemini_generate)
        .with_state(api.clone());
    let (base, server) = serve(app).await;
    let mut agent = cli_agent(
        AgentPreset::Gemini,
        gemini,
        &[
            ("GEMINI_API_KEY", "test".into()),
            ("GOOGLE_GEMINI_BASE_URL", base),
        ],
    );
    agent.model = Some("gemini-2.5-pro".into());
    let (report, log) = run(&cluster.config(root.path(), agent), &incident).await;
    server.abort();

    assert_common(&report, &log, &cluster);
    let requests: Vec<Value> = api
        .rec
        .all()
        .into_iter()
        .map(|(_, b)| b)
        .filter(|b| gemini_tool_names(b).iter().any(|t| t == "write_file"))
        .collect();
    let tools = gemini_tool_names(&requests[0]);
    assert!(
        tools.iter().any(|t| t == "mcp_kubernetes_pods_log"),
        "{tools:?}"
    );
    assert_no_mutating_tool(&tools);
    let second = requests
        .iter()
        .find(|b| gemini_responses(b).len() == 1)
        .expect("no request carried the tool result");
    let response = gemini_responses(second)[0].to_string();
    assert!(response.contains(PANIC_LINE), "{response}");

    // `-o json` prints one pretty-printed object.
    let start = log.find("{\n").expect("no JSON output in agent.log");
    let mut stream = serde_json::Deserializer::from_str(&log[start..]).into_iter::<Value>();
    let parsed = stream.next().unwrap().unwrap();
    assert_eq!(parsed["response"], FINAL_TEXT, "{parsed}");
    assert!(parsed["stats"]["models"].is_object());
    keep_fixture(
        "gemini.json",
        &(serde_json::to_string_pretty(&parsed).unwrap() + "\n"),
    );
}
