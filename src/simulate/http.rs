//! The simulator's `/mcp` endpoint: Streamable HTTP as kubernetes-mcp-server (Go SDK) serves it.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::state::{frame, level_rank, SimState, STREAM_BUFFER};

pub(crate) const SESSION_HEADER: &str = "mcp-session-id";
pub(crate) const VERSION_HEADER: &str = "mcp-protocol-version";
const VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
const FALLBACK_VERSION: &str = "2025-06-18";

/// False unless the configured bearer token (if any) is presented.
fn authorized(st: &SimState, headers: &HeaderMap) -> bool {
    let Some(token) = &st.cfg.bearer_token else {
        return true;
    };
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    sent == Some(format!("Bearer {token}").as_str())
}

pub(crate) fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route("/mcp", post(post_mcp).get(get_mcp).delete(delete_mcp))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

fn text(status: StatusCode, body: &str) -> Response {
    (status, body.to_string()).into_response()
}

fn accepts(headers: &HeaderMap, what: &str) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains(what))
}

/// Checks the session and protocol-version headers; `Err` is the reply to send.
fn session_of(
    st: &SimState,
    headers: &HeaderMap,
) -> Result<Option<String>, (StatusCode, &'static str)> {
    if let Some(v) = headers.get(VERSION_HEADER) {
        let ok = v.to_str().is_ok_and(|v| VERSIONS.contains(&v));
        if !ok {
            return Err((
                StatusCode::BAD_REQUEST,
                "Bad Request: Unsupported protocol version",
            ));
        }
    }
    let Some(id) = headers.get(SESSION_HEADER) else {
        return Ok(None);
    };
    let id = id.to_str().unwrap_or_default().to_string();
    if !st.lock().sessions.contains_key(&id) {
        return Err((StatusCode::NOT_FOUND, "session not found"));
    }
    Ok(Some(id))
}

fn record(st: &SimState, session: &str, what: String) {
    if let Some(s) = st.lock().sessions.get_mut(session) {
        s.record(what);
    }
}

async fn post_mcp(State(st): State<Arc<SimState>>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&st, &headers) {
        return text(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    if !(accepts(&headers, "application/json") && accepts(&headers, "text/event-stream")) {
        return text(
            StatusCode::BAD_REQUEST,
            "Accept must contain both 'application/json' and 'text/event-stream'",
        );
    }
    let json_ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_ct {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be 'application/json'",
        );
    }
    let session = match session_of(&st, &headers) {
        Ok(s) => s,
        Err((code, why)) => return text(code, why),
    };
    let msg: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return text(StatusCode::BAD_REQUEST, &format!("invalid JSON: {e}")),
    };
    let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
    let id = msg.get("id").cloned();
    let params = msg.get("params").cloned().unwrap_or(json!({}));

    let (session, new_session) = match (session, method) {
        (None, "initialize") => (st.create_session(), true),
        (Some(_), "initialize") => {
            return text(StatusCode::BAD_REQUEST, "session already initialized")
        }
        (Some(s), _) => (s, false),
        (None, _) => return text(StatusCode::BAD_REQUEST, "Bad Request: missing session ID"),
    };
    let Some(id) = id else {
        // A notification (or a response from the client): accepted, nothing to answer.
        record(&st, &session, method.to_string());
        return StatusCode::ACCEPTED.into_response();
    };
    if !new_session {
        let what = match (method, params.get("name").and_then(Value::as_str)) {
            ("tools/call", Some(name)) => format!("tools/call:{name}"),
            _ => method.to_string(),
        };
        record(&st, &session, what);
    }
    let outcome = handle(&st, &session, method, &params).await;
    let reply = match outcome {
        Ok(result) => json!({"jsonrpc":"2.0","id":id,"result":result}),
        Err((code, message)) => {
            json!({"jsonrpc":"2.0","id":id,"error":{"code":code,"message":message}})
        }
    };
    let mut resp = if st.cfg.json_responses {
        (
            [(header::CONTENT_TYPE, "application/json")],
            reply.to_string(),
        )
            .into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "text/event-stream")],
            Body::from(frame(&reply)),
        )
            .into_response()
    };
    if new_session {
        if let Ok(v) = HeaderValue::from_str(&session) {
            resp.headers_mut().insert(SESSION_HEADER, v);
        }
    }
    resp
}

type RpcResult = Result<Value, (i64, String)>;

async fn handle(st: &SimState, session: &str, method: &str, params: &Value) -> RpcResult {
    match method {
        "initialize" => {
            let asked = params.get("protocolVersion").and_then(Value::as_str);
            let version = asked
                .filter(|v| VERSIONS.contains(v))
                .unwrap_or(FALLBACK_VERSION);
            Ok(json!({
                "protocolVersion": version,
                "capabilities": {"logging": {}, "tools": {"listChanged": true},
                                 "prompts": {"listChanged": true}},
                "serverInfo": {"name": "kubernetes-mcp-server", "version": "simulated"}
            }))
        }
        "ping" => {
            if st.pings_hang.load(Ordering::Relaxed) {
                st.generation().cancelled().await;
            }
            Ok(json!({}))
        }
        "logging/setLevel" => {
            let level = params.get("level").and_then(Value::as_str).unwrap_or("");
            let rank = level_rank(level).ok_or((-32602, format!("invalid level {level:?}")))?;
            if let Some(s) = st.lock().sessions.get_mut(session) {
                s.level = Some(rank);
            }
            Ok(json!({}))
        }
        "tools/list" => Ok(super::tools::list(st.cfg.read_only)),
        "tools/call" => {
            let name = params.get("name").and_then(Value::as_str).unwrap_or("");
            if super::tools::handles(name) {
                let args = params.get("arguments").cloned().unwrap_or(json!({}));
                st.cluster.call(name, &args, st.generation()).await
            } else {
                Ok(call_tool(st, session, params).await)
            }
        }
        other => Err((-32601, format!("method not found: {other}"))),
    }
}

fn tool_text(heading: &str, body: &Value) -> Value {
    let pretty = serde_json::to_string_pretty(body).unwrap_or_default();
    json!({"content": [{"type": "text", "text": format!("# {heading}\n\n{pretty}")}]})
}

fn tool_error(message: &str) -> Value {
    json!({"content": [{"type": "text", "text": message}], "isError": true})
}

async fn call_tool(st: &SimState, session: &str, params: &Value) -> Value {
    let name = params.get("name").and_then(Value::as_str).unwrap_or("");
    let args = params.get("arguments").cloned().unwrap_or(json!({}));
    match name {
        "events_subscribe" => {
            let mode = args.get("mode").and_then(Value::as_str).unwrap_or("events");
            if mode != "events" && mode != "faults" {
                return tool_error(&format!(
                    "invalid mode {mode:?}: must be \"events\" or \"faults\""
                ));
            }
            if mode == "faults" {
                // Faults mode waits for the informer caches to sync.
                let gen = st.generation();
                if st.subscribe_hangs.load(Ordering::Relaxed) {
                    gen.cancelled().await;
                    return tool_error("server shutting down");
                }
                tokio::select! {
                    _ = tokio::time::sleep(st.cfg.subscribe_delay) => {}
                    _ = gen.cancelled() => return tool_error("server shutting down"),
                }
            }
            // Filters are echoed back; in faults mode the server ignores them.
            let mut filters = args.as_object().cloned().unwrap_or_default();
            filters.remove("mode");
            let filters = Value::Object(filters);
            match st.subscribe(session, mode, filters) {
                Ok(v) => tool_text("Event Subscription Created", &v),
                Err(e) => tool_error(&e),
            }
        }
        "events_unsubscribe" => {
            let id = args
                .get("subscriptionId")
                .and_then(Value::as_str)
                .unwrap_or("");
            match st.unsubscribe(session, id) {
                Ok(v) => tool_text("Subscription Cancelled", &v),
                Err(e) => tool_error(&e),
            }
        }
        "events_list_subscriptions" => {
            tool_text("Active Subscriptions", &st.list_subscriptions(session))
        }
        other => tool_error(&format!("tool {other:?} not found")),
    }
}

async fn get_mcp(State(st): State<Arc<SimState>>, headers: HeaderMap) -> Response {
    if !authorized(&st, &headers) {
        return text(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    if !accepts(&headers, "text/event-stream") {
        return text(
            StatusCode::BAD_REQUEST,
            "Accept must contain 'text/event-stream'",
        );
    }
    if headers.contains_key("last-event-id") {
        return text(
            StatusCode::BAD_REQUEST,
            "Last-Event-ID is not supported: no event store",
        );
    }
    let session = match session_of(&st, &headers) {
        Ok(Some(s)) => s,
        Ok(None) => return text(StatusCode::BAD_REQUEST, "Bad Request: missing session ID"),
        Err((code, why)) => return text(code, why),
    };
    let (tx, mut rx) = mpsc::channel::<Bytes>(STREAM_BUFFER);
    {
        let mut inner = st.lock();
        let Some(s) = inner.sessions.get_mut(&session) else {
            return text(StatusCode::NOT_FOUND, "session not found");
        };
        if s.stream.as_ref().is_some_and(|t| !t.is_closed()) {
            s.record("GET (conflict)".into());
            return text(
                StatusCode::CONFLICT,
                "stream already exists for this session",
            );
        }
        s.stream = Some(tx);
        if !s.counts.contains_key("GET") {
            st.counters.stream_sessions.fetch_add(1, Ordering::Relaxed);
        }
        s.record("GET".into());
    }
    let gen = st.generation();
    let first = if st.cfg.late_stream_headers {
        tokio::select! {
            f = rx.recv() => f,
            _ = gen.cancelled() => None,
        }
    } else {
        None
    };
    let body = futures::stream::iter(first)
        .chain(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
        .map(Ok::<_, Infallible>)
        .take_until(gen.cancelled_owned());
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

async fn delete_mcp(State(st): State<Arc<SimState>>, headers: HeaderMap) -> Response {
    if !authorized(&st, &headers) {
        return text(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    match session_of(&st, &headers) {
        Ok(Some(s)) => {
            st.delete_session(&s);
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(None) => text(StatusCode::BAD_REQUEST, "Bad Request: missing session ID"),
        Err((code, why)) => text(code, why),
    }
}
