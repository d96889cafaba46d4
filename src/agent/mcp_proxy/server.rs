//! The endpoint: `POST /mcp` (JSON-RPC, answered as plain JSON, no server-initiated stream) on
//! `127.0.0.1:<random>`, behind a per-run bearer token.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use rand::Rng;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::record::{CallLog, CallRecord};
use super::upstream::Upstream;
use super::{is_offered, SERVER_NAME};
use crate::config::{AgentConfig, McpConfig};
use crate::mcp_client::ClientError;

/// Largest JSON-RPC message accepted from the agent.
const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// Bound on the upstream `tools/list`.
const LIST_MAX_BYTES: usize = 1024 * 1024;
const FALLBACK_VERSION: &str = "2025-06-18";

#[derive(Debug, Clone, Copy)]
pub struct ProxyLimits {
    pub call_timeout: Duration,
    pub max_result_bytes: usize,
    pub max_calls: u32,
}

impl ProxyLimits {
    pub fn from_agent(agent: &AgentConfig) -> Self {
        Self {
            call_timeout: agent.mcp_call_timeout,
            max_result_bytes: agent.mcp_max_result_bytes,
            max_calls: agent.mcp_max_calls,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("the cluster's MCP settings: {0}")]
    Config(#[from] ClientError),
    #[error("binding the agent's MCP endpoint on 127.0.0.1: {0}")]
    Bind(std::io::Error),
}

struct ProxyState {
    /// Compared in constant time; lives only as long as the run.
    token: String,
    cluster: String,
    upstream: Upstream,
    limits: ProxyLimits,
    /// The filtered list, fetched once per run.
    offered: tokio::sync::Mutex<Option<Vec<Value>>>,
    calls: AtomicU32,
    log: CallLog,
}

/// Starts per-run endpoints.
pub struct McpProxy;

impl McpProxy {
    /// Binds `127.0.0.1:0` and serves until the handle is dropped or shut down. Does not contact
    /// the cluster: the upstream session opens on the agent's first request.
    pub async fn start(
        cluster: &str,
        mcp: &McpConfig,
        evidence_dir: PathBuf,
        limits: ProxyLimits,
    ) -> Result<ProxyHandle, ProxyError> {
        Self::start_with(Upstream::new(mcp)?, cluster, evidence_dir, limits).await
    }

    /// [`McpProxy::start`] with the runner's shared HTTP client (its connection pool) instead of
    /// a client built for this run: building one costs more than the rest of the start.
    pub async fn start_with_client(
        client: &reqwest::Client,
        cluster: &str,
        mcp: &McpConfig,
        evidence_dir: PathBuf,
        limits: ProxyLimits,
    ) -> Result<ProxyHandle, ProxyError> {
        let upstream = Upstream::with_client(client.clone(), mcp)?;
        Self::start_with(upstream, cluster, evidence_dir, limits).await
    }

    async fn start_with(
        upstream: Upstream,
        cluster: &str,
        evidence_dir: PathBuf,
        limits: ProxyLimits,
    ) -> Result<ProxyHandle, ProxyError> {
        let token = hex::encode(rand::rng().random::<[u8; 32]>());
        let state = Arc::new(ProxyState {
            token: token.clone(),
            cluster: cluster.to_string(),
            upstream,
            limits,
            offered: tokio::sync::Mutex::new(None),
            calls: AtomicU32::new(0),
            log: CallLog::new(evidence_dir),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(ProxyError::Bind)?;
        let addr = listener.local_addr().map_err(ProxyError::Bind)?;
        let app = Router::new()
            .route("/mcp", post(post_mcp).get(no_stream).delete(end_session))
            .route(
                "/mcp/{token}",
                post(post_mcp_path).get(no_stream).delete(end_session),
            )
            .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
            .with_state(state.clone());
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "the agent's MCP endpoint stopped");
            }
        });
        Ok(ProxyHandle {
            addr,
            token,
            cancel,
            _task: AbortOnDropHandle::new(task),
            state,
        })
    }
}

/// A running endpoint. Dropping it stops the listener at once (the port and token die with it).
pub struct ProxyHandle {
    addr: SocketAddr,
    token: String,
    cancel: CancellationToken,
    _task: AbortOnDropHandle<()>,
    state: Arc<ProxyState>,
}

impl std::fmt::Debug for ProxyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyHandle")
            .field("addr", &self.addr)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl ProxyHandle {
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }
    /// The URL with the token in its path, for clients that cannot send headers.
    pub fn url_with_token(&self) -> String {
        format!("http://{}/mcp/{}", self.addr, self.token)
    }
    pub fn token(&self) -> &str {
        &self.token
    }
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// Tool calls the agent has made (refused ones included).
    pub fn calls(&self) -> u32 {
        self.state.calls.load(Ordering::Relaxed)
    }
    /// Stops the listener and ends the upstream session (best effort, bounded).
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.state.upstream.close().await;
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(st: &ProxyState, headers: &HeaderMap, path_token: Option<&str>) -> bool {
    let sent = path_token.or_else(|| {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
    });
    sent.is_some_and(|t| constant_time_eq(t.trim().as_bytes(), st.token.as_bytes()))
}

async fn no_stream() -> StatusCode {
    StatusCode::METHOD_NOT_ALLOWED
}

async fn end_session() -> StatusCode {
    StatusCode::OK
}

async fn post_mcp_path(
    State(st): State<Arc<ProxyState>>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(st, headers, Some(&token), body).await
}

async fn post_mcp(State(st): State<Arc<ProxyState>>, headers: HeaderMap, body: Bytes) -> Response {
    handle(st, headers, None, body).await
}

fn json_response(msg: Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        msg.to_string(),
    )
        .into_response()
}

fn rpc_error(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

async fn handle(
    st: Arc<ProxyState>,
    headers: HeaderMap,
    path_token: Option<&str>,
    body: Bytes,
) -> Response {
    if !authorized(&st, &headers, path_token) {
        return (StatusCode::UNAUTHORIZED, "missing or wrong bearer token").into_response();
    }
    let msg: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            return (
                StatusCode::BAD_REQUEST,
                json_response(rpc_error(&Value::Null, -32700, "parse error")),
            )
                .into_response()
        }
    };
    if !msg.is_object() {
        return (
            StatusCode::BAD_REQUEST,
            json_response(rpc_error(&Value::Null, -32600, "batches are not supported")),
        )
            .into_response();
    }
    let Some(id) = msg.get("id").cloned() else {
        // A notification (initialized, cancelled...) or a response: nothing to answer.
        return StatusCode::ACCEPTED.into_response();
    };
    let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
    let params = msg.get("params").cloned().unwrap_or(Value::Null);
    let result = match method {
        "initialize" => Ok(initialize(&st, &params)),
        "ping" => Ok(json!({})),
        "tools/list" => match offered(&st).await {
            Ok(tools) => Ok(json!({"tools": tools})),
            Err(e) => Err((-32603, e)),
        },
        "tools/call" => Ok(call(&st, &params).await),
        "resources/list" => Ok(json!({"resources": []})),
        "resources/templates/list" => Ok(json!({"resourceTemplates": []})),
        "prompts/list" => Ok(json!({"prompts": []})),
        _ => Err((-32601, format!("method not found: {method}"))),
    };
    json_response(match result {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err((code, message)) => rpc_error(&id, code, &message),
    })
}

fn initialize(st: &ProxyState, params: &Value) -> Value {
    // Echo the client's version: this endpoint uses nothing that differs between versions.
    let version = params
        .get("protocolVersion")
        .and_then(Value::as_str)
        .filter(|v| v.len() <= 32)
        .unwrap_or(FALLBACK_VERSION);
    json!({
        "protocolVersion": version,
        "capabilities": {"tools": {"listChanged": false}},
        "serverInfo": {"name": format!("nightcrier-{SERVER_NAME}"), "version": env!("CARGO_PKG_VERSION")},
        "instructions": format!(
            "Read-only Kubernetes tools for cluster {}, forwarded by nightcrier. \
             Mutating tools are not available.", st.cluster),
    })
}

/// The filtered tool list (fetched once; a failure is not cached).
async fn offered(st: &ProxyState) -> Result<Vec<Value>, String> {
    let mut guard = st.offered.lock().await;
    if let Some(tools) = guard.as_ref() {
        return Ok(tools.clone());
    }
    let tools = st
        .upstream
        .list_tools(st.limits.call_timeout, LIST_MAX_BYTES)
        .await
        .map_err(|e| describe(&e))?;
    let tools: Vec<Value> = tools.into_iter().filter(is_offered).collect();
    *guard = Some(tools.clone());
    Ok(tools)
}

fn tool_error(text: &str) -> Value {
    json!({"content": [{"type": "text", "text": text}], "isError": true})
}

/// One `tools/call`: refused unless offered and within budget, else forwarded within the time
/// and size bounds. Every outcome is a tool result (`isError` for failures), so the agent reads
/// why and goes on, and every call is recorded.
async fn call(st: &ProxyState, params: &Value) -> Value {
    let started = Instant::now();
    let n = st.calls.fetch_add(1, Ordering::Relaxed) + 1;
    let tool = params
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .chars()
        .take(128)
        .collect::<String>();
    let arguments = params.get("arguments").cloned().unwrap_or(json!({}));
    let mut rec = CallRecord {
        n,
        at: chrono::Utc::now(),
        tool: tool.clone(),
        arguments: arguments.clone(),
        duration_ms: 0,
        result_bytes: 0,
        is_error: true,
        error: None,
        result_file: None,
    };
    let refusal = if n > st.limits.max_calls {
        Some(format!(
            "refused: the budget of {} tool calls for this investigation is used up",
            st.limits.max_calls
        ))
    } else {
        match offered(st).await {
            Ok(tools) if tools.iter().any(|t| t["name"] == tool.as_str()) => None,
            Ok(_) => Some(format!(
                "refused: tool {tool:?} is not available; nightcrier offers only the cluster's \
                 read-only tools (see tools/list)"
            )),
            Err(e) => Some(format!("cannot check the available tools: {e}")),
        }
    };
    if let Some(reason) = refusal {
        rec.duration_ms = started.elapsed().as_millis() as u64;
        rec.error = Some(reason.clone());
        st.log.record(rec, None);
        return tool_error(&reason);
    }
    let outcome = tokio::time::timeout(
        st.limits.call_timeout,
        st.upstream.call_tool(
            &tool,
            arguments,
            st.limits.call_timeout,
            st.limits.max_result_bytes,
        ),
    )
    .await;
    rec.duration_ms = started.elapsed().as_millis() as u64;
    let timed_out = || {
        format!(
            "the call timed out after {}",
            humantime::format_duration(st.limits.call_timeout)
        )
    };
    let result = match outcome {
        Err(_) | Ok(Err(ClientError::Timeout { .. })) => Err(timed_out()),
        Ok(Err(e)) => Err(describe(&e)),
        Ok(Ok(reply)) if reply.text.len() > st.limits.max_result_bytes => {
            Err(describe(&ClientError::TooLarge {
                what: "tools/call",
                limit: st.limits.max_result_bytes,
            }))
        }
        Ok(Ok(reply)) => Ok(reply),
    };
    match result {
        Err(reason) => {
            tracing::debug!(cluster = %st.cluster, tool = %tool, error = %reason, "agent MCP call failed");
            rec.error = Some(reason.clone());
            st.log.record(rec, None);
            tool_error(&reason)
        }
        Ok(reply) => {
            rec.result_bytes = reply.text.len();
            rec.is_error = reply.is_error;
            st.log.record(rec, Some(&reply.text));
            json!({"content": [{"type": "text", "text": reply.text}], "isError": reply.is_error})
        }
    }
}

/// An upstream failure as the agent reads it.
fn describe(e: &ClientError) -> String {
    match e {
        ClientError::TooLarge { limit, .. } => format!(
            "the answer is larger than {limit} bytes: narrow the request (e.g. fewer lines, one \
             namespace)"
        ),
        ClientError::Transport { .. } => format!("the cluster's MCP server is unreachable ({e})"),
        _ => format!("the cluster's MCP server: {e}"),
    }
}
