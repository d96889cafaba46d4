//! The `claude` preset with the real Claude Code CLI, offline: a fake Anthropic Messages API on
//! loopback (the real protocol: SSE `message_start` … `message_stop`, JSON when not streaming)
//! scripts the model's replies. First turn: a `Write` tool call creating
//! `output/investigation.md`; once the tool result comes back: a final text. The run must end
//! `succeeded` with the CLI's own write.
//!
//! The CLI is not vendored: `scripts/install-test-tools.sh` installs it into
//! `target/test-tools` (the test runs it when the CLI is missing), or point
//! `NIGHTCRIER_TEST_CLAUDE_BIN` at a `claude` binary.

use crate::support::agent as agent_support;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_support::*;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use nightcrier::accounting::Accounting;
use nightcrier::agent::{AgentRunner, RunReport};
use nightcrier::config::{AgentPreset, Secret};
use nightcrier::incident::IncidentStatus;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const REPORT: &str = "# Investigation: cart-7d9f crash loop\n\n## Summary\nThe cart pod \
crash-loops since its ConfigMap was deleted.\n\n## Root Cause\nMissing ConfigMap `cart-config`.\n\n\
## Evidence\n`kubectl describe pod cart-7d9f`: configmap \"cart-config\" not found.\n\n\
## Recommended Actions\n1. Restore the ConfigMap.\n\n## Confidence\nhigh\n";
const FINAL_TEXT: &str = "I wrote the report to output/investigation.md.";

/// The CLI from `NIGHTCRIER_TEST_CLAUDE_BIN`, or from `target/test-tools`, installing it there
/// first when missing (so `cargo nextest run` alone suffices on a fresh machine).
fn claude_binary() -> PathBuf {
    if let Ok(path) = std::env::var("NIGHTCRIER_TEST_CLAUDE_BIN") {
        return PathBuf::from(path);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let default = root.join("target/test-tools/node_modules/.bin/claude");
    if default.exists() {
        return default;
    }
    let script = root.join("scripts/install-test-tools.sh");
    let status = std::process::Command::new("bash").arg(&script).status();
    match status {
        Ok(s) if s.success() && default.exists() => default,
        other => panic!(
            "the Claude Code CLI is not installed and {} failed ({other:?}): it needs npm and the \
             npm registry; or set NIGHTCRIER_TEST_CLAUDE_BIN to a `claude` binary",
            script.display()
        ),
    }
}

#[derive(Debug, Clone)]
struct Recorded {
    method: Method,
    uri: Uri,
    body: Value,
}

#[derive(Clone)]
struct FakeApi {
    report_path: PathBuf,
    requests: Arc<Mutex<Vec<Recorded>>>,
    /// Input tokens the fake reports per request (the CLI prices them itself).
    input_tokens: u64,
}

impl FakeApi {
    fn record(&self, method: Method, uri: Uri, body: Value) {
        self.requests
            .lock()
            .unwrap()
            .push(Recorded { method, uri, body });
    }
    fn messages(&self) -> Vec<Recorded> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.method == Method::POST && r.uri.path() == "/v1/messages")
            .cloned()
            .collect()
    }
}

fn offers_write_tool(body: &Value) -> bool {
    body["tools"]
        .as_array()
        .is_some_and(|tools| tools.iter().any(|t| t["name"] == "Write"))
}

fn has_tool_result(body: &Value) -> bool {
    body["messages"].as_array().is_some_and(|msgs| {
        msgs.iter().any(|m| {
            m["content"]
                .as_array()
                .is_some_and(|c| c.iter().any(|b| b["type"] == "tool_result"))
        })
    })
}

/// The scripted assistant message for a request: content blocks and stop reason.
fn reply_for(api: &FakeApi, body: &Value) -> (Vec<Value>, &'static str) {
    if !offers_write_tool(body) {
        // Side requests (titles, summaries): any short text will do.
        return (
            vec![json!({"type": "text", "text": "Cart crash loop"})],
            "end_turn",
        );
    }
    if has_tool_result(body) {
        return (
            vec![json!({"type": "text", "text": FINAL_TEXT})],
            "end_turn",
        );
    }
    let input = json!({
        "file_path": api.report_path.display().to_string(),
        "content": REPORT,
    });
    (
        vec![json!({"type": "tool_use", "id": "toolu_01", "name": "Write", "input": input})],
        "tool_use",
    )
}

fn sse(events: &[(&str, Value)]) -> String {
    events
        .iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect()
}

/// The streaming form: each block sent as start, one delta, stop.
fn stream_body(model: &str, blocks: &[Value], stop_reason: &str, input_tokens: u64) -> String {
    let mut events = vec![(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1,
                      "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 200}
        }}),
    )];
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
        events.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        events.push((
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": delta}),
        ));
        events.push((
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
    }
    events.push((
        "message_delta",
        json!({"type": "message_delta",
               "delta": {"stop_reason": stop_reason, "stop_sequence": null},
               "usage": {"output_tokens": 40}}),
    ));
    events.push(("message_stop", json!({"type": "message_stop"})));
    sse(&events)
}

async fn messages(State(api): State<FakeApi>, uri: Uri, body: String) -> Response {
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    api.record(Method::POST, uri, body.clone());
    let model = body["model"]
        .as_str()
        .unwrap_or("claude-sonnet-4-5")
        .to_string();
    let (blocks, stop_reason) = reply_for(&api, &body);
    if body["stream"].as_bool() == Some(true) {
        Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .header(header::CACHE_CONTROL, "no-cache")
            .body(Body::from(stream_body(
                &model,
                &blocks,
                stop_reason,
                api.input_tokens,
            )))
            .unwrap()
    } else {
        let message = json!({
            "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
            "content": blocks, "stop_reason": stop_reason, "stop_sequence": null,
            "usage": {"input_tokens": api.input_tokens, "output_tokens": 40,
                      "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 200}
        });
        Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(message.to_string()))
            .unwrap()
    }
}

async fn anything_else(State(api): State<FakeApi>, method: Method, uri: Uri) -> StatusCode {
    let found = method == Method::HEAD && uri.path() == "/";
    api.record(method, uri, Value::Null);
    if found {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    }
}

/// Runs the claude preset against the fake API (reporting `input_tokens` per request) with the
/// given spend ceiling; the run's report, the model requests and the report's path.
async fn run_claude(
    input_tokens: u64,
    max_cost_usd: Option<f64>,
) -> (RunReport, Vec<Recorded>, PathBuf, tempfile::TempDir) {
    let claude = claude_binary();
    let root = tempfile::tempdir().unwrap();
    let incident = incident("prod");
    let report_path = root
        .path()
        .join(incident.id.to_string())
        .join("output/investigation.md");

    let api = FakeApi {
        report_path: report_path.clone(),
        requests: Arc::default(),
        input_tokens,
    };
    let app = Router::new()
        .route("/v1/messages", post(messages))
        .fallback(anything_else)
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let mut agent = script_agent("unused");
    agent.preset = AgentPreset::Claude;
    agent.binary = Some(claude.clone());
    agent.model = Some("sonnet".into());
    agent.timeout = Duration::from_secs(180);
    agent.kill_grace = Duration::from_secs(2);
    agent.max_cost_usd = max_cost_usd;
    for (k, v) in [
        ("ANTHROPIC_API_KEY", "test".to_string()),
        ("ANTHROPIC_BASE_URL", format!("http://{addr}")),
        ("CLAUDE_CODE_MAX_RETRIES", "1".to_string()),
    ] {
        agent.env.insert(k.into(), Secret::new(v));
    }
    let config = config(root.path(), agent);
    let runner = AgentRunner::new(&config);
    let report = runner
        .run(
            &incident,
            &occurrences(&incident, 1),
            1,
            CancellationToken::new(),
            &|_| {},
        )
        .await;
    server.abort();

    let requests = api.messages();
    (report, requests, report_path, root)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_claude_preset_runs_the_real_cli_to_a_written_report() {
    let (report, requests, report_path, _root) = run_claude(50, None).await;
    let log = std::fs::read_to_string(&report.log_path).unwrap_or_default();
    assert_eq!(
        report.outcome.status,
        IncidentStatus::Succeeded,
        "{report:?}\n--- agent.log ---\n{log}\n--- requests: {}",
        requests.len()
    );
    assert_eq!(std::fs::read_to_string(&report_path).unwrap(), REPORT);

    // The CLI really talked to the fake: it was offered the Write tool with the field names the
    // script used, it got the tool result back, and it printed its JSON result.
    let main = requests
        .iter()
        .find(|r| offers_write_tool(&r.body))
        .expect("no request offered the Write tool");
    let write = main.body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "Write")
        .unwrap();
    let props = &write["input_schema"]["properties"];
    assert!(
        props.get("file_path").is_some() && props.get("content").is_some(),
        "{write}"
    );
    assert!(requests.iter().any(|r| has_tool_result(&r.body)));
    let first_user_text = main.body["messages"][0]["content"].to_string();
    assert!(
        first_user_text.contains("Root Cause"),
        "the prompt reached the model"
    );
    assert!(log.contains(FINAL_TEXT), "{log}");
    let result_line = log
        .lines()
        .find(|l| l.starts_with('{') && l.contains("\"result\""))
        .expect("no JSON result in agent.log");
    let result: Value = serde_json::from_str(result_line).unwrap();
    assert_eq!(result["is_error"], false, "{result}");
    assert_eq!(result["result"], FINAL_TEXT);
    if let Ok(dir) = std::env::var("NIGHTCRIER_CAPTURE_AGENT_OUTPUT") {
        std::fs::write(
            PathBuf::from(dir).join("claude-cache-tokens.json"),
            format!("{result_line}\n"),
        )
        .unwrap();
    }

    // Accounting: the run's usage is what the CLI reported, and the fake's token counts (50
    // input, 1000 cache reads, 200 cache writes per request) flowed through it.
    let usage = &report.usage;
    assert_eq!(usage.accounting, Accounting::Reported, "{usage:?}");
    assert_eq!(usage.cost_usd, result["total_cost_usd"].as_f64());
    assert!(usage.cost_usd.unwrap() > 0.0, "{usage:?}");
    assert_eq!(usage.turns, result["num_turns"].as_i64());
    assert_eq!(usage.agent_error, Some(false));
    let input = usage.input_tokens.unwrap();
    let cache_read = usage.cache_read_tokens.unwrap();
    let cache_write = usage.cache_write_tokens.unwrap();
    assert!(input >= 100 && input % 50 == 0, "{usage:?}");
    assert_eq!(cache_read, input / 50 * 1000, "{usage:?}");
    assert_eq!(cache_write, input / 50 * 200, "{usage:?}");
    assert!(usage.output_tokens.unwrap() >= 80, "{usage:?}");
    assert!(
        usage.model.as_deref().unwrap().starts_with("claude"),
        "{usage:?}"
    );
    // The CLI's state stayed in the workspace.
    assert!(report.workspace.join("agent-state/claude").is_dir());
}

/// `agent.max_cost_usd` reaches the real CLI as its spend ceiling: with each request reported at
/// 2M input tokens (several dollars at any Claude price), the CLI stops after the first turn
/// instead of sending the tool result back, and says why in its result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spend_ceiling_stops_the_real_cli_after_the_turn_that_passed_it() {
    let (report, requests, _report_path, _root) = run_claude(2_000_000, Some(1.0)).await;
    let log = std::fs::read_to_string(&report.log_path).unwrap_or_default();
    assert!(
        requests.iter().any(|r| offers_write_tool(&r.body)),
        "the CLI never asked the model: {log}"
    );
    assert!(
        !requests.iter().any(|r| has_tool_result(&r.body)),
        "the CLI went on past its budget: {} requests\n{log}",
        requests.len()
    );
    let result_line = log
        .lines()
        .find(|l| l.starts_with('{') && l.contains("\"total_cost_usd\""))
        .expect("no JSON result in agent.log");
    let result: Value = serde_json::from_str(result_line).unwrap();
    assert!(
        result["subtype"].as_str().unwrap_or("").contains("budget"),
        "{result}"
    );
    let usage = &report.usage;
    assert!(usage.cost_usd.unwrap() > 1.0, "{usage:?}");
}
