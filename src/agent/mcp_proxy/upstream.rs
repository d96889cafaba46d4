//! The proxy's client to the cluster's MCP server (Streamable HTTP): a session opened on first
//! use, JSON or SSE answers read up to a byte bound, a lost session (404) reopened once.
//!
//! Deliberately small and separate from the producer's subscription client: it serves one run,
//! needs no GET stream, and its failures must only ever become a tool error for the agent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::{Client, StatusCode, Url};
use serde_json::{json, Value};

use crate::config::McpConfig;

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";
const PROTOCOL_VERSION: &str = "2025-06-18";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DELETE_TIMEOUT: Duration = Duration::from_secs(2);
/// Room for the JSON-RPC envelope and SSE framing around a result of the allowed size.
const ENVELOPE_BYTES: usize = 16 * 1024;

/// Why an upstream request failed. Messages never carry the endpoint's credentials.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("the cluster's MCP server is unreachable: {0}")]
    Unreachable(String),
    #[error("the cluster's MCP server answered HTTP {0}")]
    Status(u16),
    #[error("the cluster's MCP server ended the session")]
    SessionLost,
    #[error(
        "the answer is larger than {0} bytes: narrow the request (e.g. fewer lines, one namespace)"
    )]
    TooLarge(usize),
    #[error("the cluster's MCP server sent no valid answer: {0}")]
    Malformed(String),
    #[error("the cluster's MCP server returned error {code}: {message}")]
    Rpc { code: i64, message: String },
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamConfigError {
    #[error("mcp.endpoint {0:?} is not a valid http(s) URL")]
    Endpoint(String),
    #[error("mcp.headers.{0}: not a valid header")]
    Header(String),
    #[error("building the HTTP client: {0}")]
    Client(String),
}

#[derive(Debug, Clone)]
struct SessionState {
    id: Option<String>,
    version: String,
}

pub struct Upstream {
    client: Client,
    endpoint: Url,
    /// The cluster's credentials: sent upstream, never shown to the agent.
    headers: HeaderMap,
    /// Opened on first use; `None` again after the server drops it. A tokio lock: it is held
    /// across the handshake so that concurrent first calls open one session.
    session: tokio::sync::Mutex<Option<SessionState>>,
    next_id: AtomicU64,
}

impl Upstream {
    pub fn new(cfg: &McpConfig) -> Result<Self, UpstreamConfigError> {
        let endpoint = Url::parse(&cfg.endpoint)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| UpstreamConfigError::Endpoint(cfg.endpoint.clone()))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &cfg.headers {
            let bad = || UpstreamConfigError::Header(name.clone());
            let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
            let mut v = HeaderValue::from_str(value.expose()).map_err(|_| bad())?;
            v.set_sensitive(true);
            headers.insert(n, v);
        }
        let client = Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| UpstreamConfigError::Client(e.to_string()))?;
        Ok(Self {
            client,
            endpoint,
            headers,
            session: tokio::sync::Mutex::new(None),
            next_id: AtomicU64::new(1),
        })
    }

    /// One request on the session (opened if needed); the `result` of the answer. The caller
    /// bounds the time.
    pub async fn request(
        &self,
        method: &str,
        params: Value,
        max_bytes: usize,
    ) -> Result<Value, UpstreamError> {
        for attempt in 0..2 {
            let session = self.session().await?;
            match self.call(&session, method, params.clone(), max_bytes).await {
                Err(UpstreamError::SessionLost) if attempt == 0 => {
                    *self.session.lock().await = None;
                }
                other => return other,
            }
        }
        Err(UpstreamError::SessionLost)
    }

    /// Ends the session, best effort.
    pub async fn close(&self) {
        let Some(session) = self.session.lock().await.take() else {
            return;
        };
        let Some(id) = session.id else { return };
        let _ = self
            .client
            .delete(self.endpoint.clone())
            .headers(self.headers.clone())
            .header(SESSION_HEADER, id)
            .timeout(DELETE_TIMEOUT)
            .send()
            .await;
    }

    async fn session(&self) -> Result<SessionState, UpstreamError> {
        let mut guard = self.session.lock().await;
        if let Some(s) = guard.as_ref() {
            return Ok(s.clone());
        }
        let init = SessionState {
            id: None,
            version: PROTOCOL_VERSION.to_string(),
        };
        let params = json!({
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "nightcrier-agent-proxy", "version": env!("CARGO_PKG_VERSION")},
        });
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": params});
        let (answer, session_id) = self.post(&init, &body, Some(id), ENVELOPE_BYTES).await?;
        let result = into_result(answer)?;
        let version = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or(PROTOCOL_VERSION)
            .to_string();
        let state = SessionState {
            id: session_id,
            version,
        };
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        self.post(&state, &note, None, ENVELOPE_BYTES).await?;
        *guard = Some(state.clone());
        Ok(state)
    }

    async fn call(
        &self,
        session: &SessionState,
        method: &str,
        params: Value,
        max_bytes: usize,
    ) -> Result<Value, UpstreamError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let (answer, _) = self
            .post(session, &body, Some(id), max_bytes + ENVELOPE_BYTES)
            .await?;
        into_result(answer)
    }

    /// POSTs one message. For a request (`id`), returns the matching answer from a JSON body or
    /// an SSE stream, reading at most `limit` bytes; for a notification, nothing.
    async fn post(
        &self,
        session: &SessionState,
        body: &Value,
        id: Option<u64>,
        limit: usize,
    ) -> Result<(Value, Option<String>), UpstreamError> {
        let mut req = self
            .client
            .post(self.endpoint.clone())
            .headers(self.headers.clone())
            .header(ACCEPT, "application/json, text/event-stream")
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string());
        if let Some(sid) = &session.id {
            req = req
                .header(SESSION_HEADER, sid)
                .header(VERSION_HEADER, &session.version);
        }
        let mut resp = req
            .send()
            .await
            .map_err(|e| UpstreamError::Unreachable(e.without_url().to_string()))?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND && session.id.is_some() {
            return Err(UpstreamError::SessionLost);
        }
        if !status.is_success() {
            return Err(UpstreamError::Status(status.as_u16()));
        }
        let session_id = resp
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let Some(id) = id else {
            return Ok((Value::Null, session_id));
        };
        let sse = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let mut buf: Vec<u8> = Vec::new();
        let mut scanned = 0;
        loop {
            let chunk = resp
                .chunk()
                .await
                .map_err(|e| UpstreamError::Unreachable(e.without_url().to_string()))?;
            let Some(chunk) = chunk else { break };
            if buf.len() + chunk.len() > limit {
                return Err(UpstreamError::TooLarge(
                    limit.saturating_sub(ENVELOPE_BYTES),
                ));
            }
            buf.extend_from_slice(&chunk);
            if sse {
                // The server may keep the stream open after the answer: stop at the answer.
                if let Some(answer) = find_in_sse(&buf, &mut scanned, id) {
                    return Ok((answer, session_id));
                }
            }
        }
        if sse {
            buf.extend_from_slice(b"\n\n");
            return find_in_sse(&buf, &mut scanned, id)
                .map(|a| (a, session_id))
                .ok_or_else(|| {
                    UpstreamError::Malformed("the stream ended without an answer".into())
                });
        }
        let answer: Value = serde_json::from_slice(&buf)
            .map_err(|e| UpstreamError::Malformed(format!("not JSON: {e}")))?;
        Ok((answer, session_id))
    }
}

/// Scans the complete SSE events in `buf[*scanned..]` for the answer with `id`.
fn find_in_sse(buf: &[u8], scanned: &mut usize, id: u64) -> Option<Value> {
    loop {
        let rest = &buf[*scanned..];
        let (end, sep) = [&b"\n\n"[..], b"\r\n\r\n"]
            .iter()
            .filter_map(|sep| {
                rest.windows(sep.len())
                    .position(|w| w == *sep)
                    .map(|p| (p, sep.len()))
            })
            .min()?;
        let event = String::from_utf8_lossy(&rest[..end]);
        *scanned += end + sep;
        let data: Vec<&str> = event
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        if data.is_empty() {
            continue;
        }
        if let Ok(msg) = serde_json::from_str::<Value>(&data.join("\n")) {
            if msg.get("id").and_then(Value::as_u64) == Some(id) {
                return Some(msg);
            }
        }
    }
}

fn into_result(answer: Value) -> Result<Value, UpstreamError> {
    if let Some(err) = answer.get("error") {
        return Err(UpstreamError::Rpc {
            code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .chars()
                .take(500)
                .collect(),
        });
    }
    answer
        .get("result")
        .cloned()
        .ok_or_else(|| UpstreamError::Malformed("an answer without result or error".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_answer_among_sse_events_split_anywhere() {
        let stream =
            b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}\n\n\
id: 1\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\r\ndata: \"result\":{\"ok\":true}}\r\n\r\n";
        let mut scanned = 0;
        assert_eq!(find_in_sse(&stream[..40], &mut scanned, 7), None);
        let mut scanned = 0;
        let msg = find_in_sse(stream, &mut scanned, 7).unwrap();
        assert_eq!(into_result(msg).unwrap(), json!({"ok": true}));
        let mut scanned = 0;
        assert_eq!(find_in_sse(stream, &mut scanned, 8), None);
    }

    #[test]
    fn an_error_answer_is_an_rpc_error() {
        let err =
            into_result(json!({"id": 1, "error": {"code": -32602, "message": "bad"}})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the cluster's MCP server returned error -32602: bad"
        );
    }
}
