//! A short-lived MCP client for request/response work: `initialize`, `tools/list`, `tools/call`
//! and the closing `DELETE`, over Streamable HTTP, each request bounded in time and bytes.
//!
//! Who uses it: consumer-side code that needs a cluster's tools for a moment (evidence gathering
//! before a run). It exists so that such code does not depend on `mcp`, the producer's long-lived
//! subscription sessions (GET stream, pings, supervisor): both sides depend on this module
//! instead (`mcp` takes its SSE parser, [`sse`], from here), never on each other.
//!
//! What it must not do: keep anything open after [`CallSession::close`], open a GET stream, or
//! put the configured header values (credentials) in an error message.

pub mod sse;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};

use crate::config::Secret;
use sse::{SseItem, SseParser};

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";
const PROTOCOL_VERSION: &str = "2025-06-18";
/// Bound on the closing DELETE: best effort.
const DELETE_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on replies that are not tool results (initialize, errors).
const SMALL_REPLY_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid MCP endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },
    #[error("invalid MCP header {name:?}: {reason}")]
    InvalidHeader { name: String, reason: String },
    #[error("{what}: cannot reach the server: {detail}")]
    Transport { what: &'static str, detail: String },
    #[error("{what}: HTTP {status}")]
    Http { what: &'static str, status: u16 },
    #[error("{what}: no reply within {}ms", after.as_millis())]
    Timeout { what: &'static str, after: Duration },
    #[error("{what}: reply larger than {limit} bytes")]
    TooLarge { what: &'static str, limit: usize },
    #[error("{what}: {detail}")]
    Protocol { what: &'static str, detail: String },
    #[error("{what}: error {code}: {message}")]
    Rpc {
        what: &'static str,
        code: i64,
        message: String,
    },
}

impl ClientError {
    fn transport(what: &'static str, e: &reqwest::Error) -> Self {
        // reqwest's message names the URL but never the headers.
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            detail.push_str(": ");
            detail.push_str(&s.to_string());
            source = s.source();
        }
        ClientError::Transport { what, detail }
    }
}

/// Where a cluster's MCP server is and what to send it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    url: reqwest::Url,
    /// Values are marked sensitive (never printed by `Debug`).
    headers: HeaderMap,
}

impl Endpoint {
    pub fn new(endpoint: &str, headers: &BTreeMap<String, Secret>) -> Result<Self, ClientError> {
        let invalid = |reason: String| ClientError::InvalidEndpoint {
            endpoint: endpoint.to_string(),
            reason,
        };
        let url = reqwest::Url::parse(endpoint).map_err(|e| invalid(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("scheme must be http or https".into()));
        }
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            let bad = |reason: String| ClientError::InvalidHeader {
                name: name.clone(),
                reason,
            };
            let n = HeaderName::from_bytes(name.as_bytes()).map_err(|e| bad(e.to_string()))?;
            let mut v = HeaderValue::from_str(value.expose())
                .map_err(|_| bad("not a valid header value".into()))?;
            v.set_sensitive(true);
            map.insert(n, v);
        }
        Ok(Self { url, headers: map })
    }

    pub fn url(&self) -> &reqwest::Url {
        &self.url
    }
}

/// A tool's answer: its text content joined, and whether the server flagged it as an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolReply {
    pub is_error: bool,
    pub text: String,
}

impl ToolReply {
    fn from_result(result: &Value) -> Self {
        let text = result
            .get("content")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|c| c.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default();
        Self {
            is_error: result
                .get("isError")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            text,
        }
    }
}

/// One initialized session, used for a few calls and then closed.
pub struct CallSession {
    client: Client,
    endpoint: Endpoint,
    session: Option<HeaderValue>,
    version: HeaderValue,
    next_id: AtomicU64,
}

impl CallSession {
    /// `initialize` and `notifications/initialized`, each bounded by `timeout`.
    pub async fn open(
        client: &Client,
        endpoint: &Endpoint,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let mut s = Self {
            client: client.clone(),
            endpoint: endpoint.clone(),
            session: None,
            version: HeaderValue::from_static(PROTOCOL_VERSION),
            next_id: AtomicU64::new(1),
        };
        let params = json!({
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "nightcrier-evidence", "version": env!("CARGO_PKG_VERSION")}
        });
        let what = "initialize";
        let (result, session) = bounded(what, timeout, async {
            let resp = s.post(what, &request(0, "initialize", params)).await?;
            let session = resp.headers().get(SESSION_HEADER).cloned();
            let result = read_reply(what, resp, 0, SMALL_REPLY_BYTES).await?;
            Ok((result, session))
        })
        .await?;
        s.session = session;
        if let Some(v) = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            s.version = v;
        }
        let what = "notifications/initialized";
        bounded(what, timeout, async {
            let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
            let resp = s.post(what, &note).await?;
            drop(resp);
            Ok(())
        })
        .await?;
        Ok(s)
    }

    /// `tools/list`: the server's tools as it describes them.
    pub async fn list_tools(
        &self,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<Vec<Value>, ClientError> {
        let result = self
            .request("tools/list", json!({}), timeout, max_bytes)
            .await?;
        Ok(result
            .get("tools")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }

    /// `tools/call`; the reply (raw JSON) may be at most `max_bytes`.
    pub async fn call_tool(
        &self,
        name: &str,
        arguments: Value,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<ToolReply, ClientError> {
        let params = json!({"name": name, "arguments": arguments});
        let result = self
            .request("tools/call", params, timeout, max_bytes)
            .await?;
        Ok(ToolReply::from_result(&result))
    }

    async fn request(
        &self,
        what: &'static str,
        params: Value,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<Value, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        bounded(what, timeout, async {
            let resp = self.post(what, &request(id, what, params)).await?;
            read_reply(what, resp, id, max_bytes).await
        })
        .await
    }

    /// Ends the session on the server (best effort, bounded).
    pub async fn close(self) {
        let Some(session) = self.session.clone() else {
            return;
        };
        let req = self
            .client
            .delete(self.endpoint.url.clone())
            .headers(self.endpoint.headers.clone())
            .header(SESSION_HEADER, session)
            .header(VERSION_HEADER, self.version.clone());
        let _ = tokio::time::timeout(DELETE_TIMEOUT, req.send()).await;
    }

    async fn post(&self, what: &'static str, body: &Value) -> Result<Response, ClientError> {
        let mut req = self
            .client
            .post(self.endpoint.url.clone())
            .headers(self.endpoint.headers.clone())
            .header(ACCEPT, "application/json, text/event-stream")
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string());
        if let Some(s) = &self.session {
            req = req
                .header(SESSION_HEADER, s.clone())
                .header(VERSION_HEADER, self.version.clone());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| ClientError::transport(what, &e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(ClientError::Http {
                what,
                status: status.as_u16(),
            });
        }
        Ok(resp)
    }
}

fn request(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

async fn bounded<T>(
    what: &'static str,
    after: Duration,
    fut: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    tokio::time::timeout(after, fut)
        .await
        .unwrap_or(Err(ClientError::Timeout { what, after }))
}

/// The `result` of the response to `id`, from a plain JSON or an SSE reply of at most
/// `max_bytes`.
async fn read_reply(
    what: &'static str,
    mut resp: Response,
    id: u64,
    max_bytes: usize,
) -> Result<Value, ClientError> {
    if resp.status() == StatusCode::ACCEPTED {
        return Err(ClientError::Protocol {
            what,
            detail: "202 Accepted where a reply was due".into(),
        });
    }
    let sse = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let too_large = || ClientError::TooLarge {
        what,
        limit: max_bytes,
    };
    let mut seen = 0usize;
    let mut body = Vec::new();
    let mut parser = SseParser::new(max_bytes);
    loop {
        let chunk = resp
            .chunk()
            .await
            .map_err(|e| ClientError::transport(what, &e))?;
        let Some(chunk) = chunk else { break };
        seen += chunk.len();
        if seen > max_bytes {
            return Err(too_large());
        }
        if !sse {
            body.extend_from_slice(&chunk);
            continue;
        }
        let mut items = Vec::new();
        parser.feed(&chunk, &mut |i| items.push(i));
        for item in items {
            match item {
                SseItem::Event(ev) => {
                    let Ok(msg) = serde_json::from_str::<Value>(&ev.data) else {
                        continue;
                    };
                    if let Some(r) = response_for(what, &msg, id) {
                        return r;
                    }
                }
                SseItem::Oversized { .. } => return Err(too_large()),
                SseItem::InvalidUtf8 => {}
            }
        }
    }
    if sse {
        return Err(ClientError::Protocol {
            what,
            detail: "reply ended without a response".into(),
        });
    }
    let msg: Value = serde_json::from_slice(&body).map_err(|e| ClientError::Protocol {
        what,
        detail: format!("reply is not JSON: {e}"),
    })?;
    response_for(what, &msg, id).unwrap_or(Err(ClientError::Protocol {
        what,
        detail: "reply is not the response to the request".into(),
    }))
}

fn response_for(what: &'static str, msg: &Value, id: u64) -> Option<Result<Value, ClientError>> {
    if msg.get("id").and_then(Value::as_u64) != Some(id) {
        return None;
    }
    if let Some(e) = msg.get("error") {
        return Some(Err(ClientError::Rpc {
            what,
            code: e.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .chars()
                .take(500)
                .collect(),
        }));
    }
    Some(Ok(msg.get("result").cloned().unwrap_or(Value::Null)))
}
