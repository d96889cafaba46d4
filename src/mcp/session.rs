//! One MCP session over Streamable HTTP: the handshake, requests, the standalone GET stream and
//! the final DELETE.
//!
//! A session is never repaired: any error is returned to the supervisor, which drops the session
//! and opens a new one. POSTs each carry their own timeout; the GET stream has none (it can be
//! silent for hours), so liveness is the supervisor's ping.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT};
use reqwest::{Client, Response};
use serde_json::{json, Value};
use tokio_util::task::AbortOnDropHandle;

use super::error::McpError;
use super::exchange::{check_status, is_sse, read_reply, within};
use super::jsonrpc::{self, ToolResult};
use super::sse::{SseItem, SseParser};
use crate::config::McpConfig;

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";
/// What we ask for; the server may answer with another version, which we then use.
pub const PROTOCOL_VERSION: &str = "2025-06-18";
/// Bound on DELETE: it is best effort.
const DELETE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the handshake waits for the GET stream's response headers before it goes on.
const GET_HEADERS_WAIT: Duration = Duration::from_secs(1);

/// The HTTP client all sessions share: one connection pool, so pings and tool calls reuse
/// connections instead of opening one each (a thousand sessions would exhaust the port range).
pub fn http_client(connect_timeout: Duration) -> Result<Client, McpError> {
    Client::builder()
        .connect_timeout(connect_timeout)
        // A half-open GET stream is otherwise only found by the next ping.
        .tcp_keepalive(Duration::from_secs(30))
        .pool_idle_timeout(Duration::from_secs(90))
        .build()
        .map_err(|e| McpError::transport("building the HTTP client", e))
}

/// What a session needs from the cluster's `mcp` settings, validated.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    pub endpoint: reqwest::Url,
    /// Sent with every request; values are marked sensitive.
    pub headers: HeaderMap,
    pub request_timeout: Duration,
    pub subscribe_timeout: Duration,
    pub max_event_bytes: usize,
    /// How long one SSE event may stay unfinished (`mcp.event_timeout`).
    pub event_timeout: Duration,
    /// `mcp.subscribe_mode`.
    pub subscribe_mode: crate::config::SubscribeMode,
}

impl SessionOptions {
    pub fn from_config(cfg: &McpConfig) -> Result<Self, McpError> {
        let endpoint =
            reqwest::Url::parse(&cfg.endpoint).map_err(|e| McpError::InvalidEndpoint {
                endpoint: crate::config::redact_url(&cfg.endpoint),
                reason: e.to_string(),
            })?;
        if !matches!(endpoint.scheme(), "http" | "https") {
            return Err(McpError::InvalidEndpoint {
                endpoint: crate::config::redact_url(&cfg.endpoint),
                reason: "scheme must be http or https".into(),
            });
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &cfg.headers {
            let bad = |reason: String| McpError::InvalidHeader {
                name: name.clone(),
                reason,
            };
            let n = HeaderName::from_bytes(name.as_bytes()).map_err(|e| bad(e.to_string()))?;
            let mut v = HeaderValue::from_str(value.expose())
                .map_err(|_| bad("not a valid header value".into()))?;
            v.set_sensitive(true);
            headers.insert(n, v);
        }
        Ok(Self {
            endpoint,
            headers,
            request_timeout: cfg.request_timeout,
            subscribe_timeout: cfg.subscribe_timeout,
            event_timeout: cfg.event_timeout,
            max_event_bytes: cfg.max_event_bytes,
            subscribe_mode: cfg.subscribe_mode,
        })
    }
}

/// An initialized session with its GET stream attached and `logging/setLevel info` done.
pub struct Session {
    client: Client,
    opts: SessionOptions,
    id: HeaderValue,
    version: HeaderValue,
    next_id: AtomicU64,
}

/// The standalone GET stream: every notification of the session arrives here, in order.
pub struct EventStream {
    state: StreamState,
    parser: SseParser,
    /// Items parsed from the last chunk and not yet handed out (at most one chunk's worth).
    queue: VecDeque<SseItem>,
    /// When the unfinished event the parser holds began (by the chunk that began it).
    event_began: Option<tokio::time::Instant>,
    event_timeout: Duration,
}

enum StreamState {
    /// The GET was sent but its response headers have not arrived: some servers send them only
    /// with the first event, and the stream can be silent for hours.
    Pending(AbortOnDropHandle<Result<Response, McpError>>),
    Open(Response),
}

impl EventStream {
    /// The next item; `Err(StreamEnded)` or a transport error when the stream is gone.
    pub async fn next(&mut self) -> Result<SseItem, McpError> {
        loop {
            if let Some(item) = self.queue.pop_front() {
                return Ok(item);
            }
            let response = match &mut self.state {
                StreamState::Open(r) => r,
                StreamState::Pending(handle) => {
                    let resp = handle.await.map_err(|e| {
                        McpError::protocol("GET stream", format!("request task failed: {e}"))
                    })??;
                    self.state = StreamState::Open(resp);
                    continue;
                }
            };
            // No bound while the stream is idle between events (the server sends no
            // keepalives; silence is normal), only while an event is unfinished.
            let chunk = match self.event_began {
                None => response.chunk().await,
                Some(began) => {
                    match tokio::time::timeout_at(began + self.event_timeout, response.chunk())
                        .await
                    {
                        Ok(chunk) => chunk,
                        Err(_) => {
                            return Err(McpError::protocol(
                                "GET stream",
                                format!(
                                    "an event stayed unfinished for {:?} (mcp.event_timeout)",
                                    self.event_timeout
                                ),
                            ))
                        }
                    }
                }
            };
            match chunk {
                Ok(Some(bytes)) => {
                    let queue = &mut self.queue;
                    let before = queue.len();
                    self.parser.feed(&bytes, &mut |i| queue.push_back(i));
                    // An event that ended in this chunk restarts the clock for the next one.
                    self.event_began = match self.parser.in_event() {
                        false => None,
                        true if queue.len() > before => Some(tokio::time::Instant::now()),
                        true => Some(self.event_began.unwrap_or_else(tokio::time::Instant::now)),
                    };
                }
                Ok(None) => return Err(McpError::StreamEnded),
                Err(e) => return Err(McpError::transport("GET stream", e)),
            }
        }
    }
}

impl Session {
    /// The handshake, in the order the Go SDK client uses: initialize, GET stream,
    /// `notifications/initialized`, `logging/setLevel info` (without it the server drops
    /// every notification).
    pub async fn open(
        client: Client,
        opts: SessionOptions,
    ) -> Result<(Self, EventStream), McpError> {
        let t = opts.request_timeout;
        let init = jsonrpc::request(
            0,
            "initialize",
            json!({"protocolVersion": PROTOCOL_VERSION, "capabilities": {},
                   "clientInfo": {"name": "nightcrier", "version": env!("CARGO_PKG_VERSION")}}),
        );
        let (id, version) = within("initialize", t, async {
            let resp = client
                .post(opts.endpoint.clone())
                .headers(opts.headers.clone())
                .header(ACCEPT, "application/json, text/event-stream")
                .json(&init)
                .send()
                .await
                .map_err(|e| McpError::transport("initialize", e))?;
            let resp = check_status("initialize", resp).await?;
            let id = resp
                .headers()
                .get(SESSION_HEADER)
                .cloned()
                .ok_or_else(|| McpError::protocol("initialize", "no Mcp-Session-Id header"))?;
            let result = read_reply("initialize", resp, 0, opts.max_event_bytes).await?;
            let version = result
                .get("protocolVersion")
                .and_then(Value::as_str)
                .unwrap_or(PROTOCOL_VERSION);
            let version = HeaderValue::from_str(version)
                .map_err(|_| McpError::protocol("initialize", "unusable protocolVersion"))?;
            Ok((id, version))
        })
        .await?;
        let session = Self {
            client,
            opts,
            id,
            version,
            next_id: AtomicU64::new(1),
        };
        match session.finish_handshake().await {
            Ok(stream) => Ok((session, stream)),
            Err(e) => {
                session.delete().await;
                Err(e)
            }
        }
    }

    async fn finish_handshake(&self) -> Result<EventStream, McpError> {
        let t = self.opts.request_timeout;
        // The GET goes out before `initialized`, as the Go SDK client sends it; its response
        // headers are awaited only briefly (a server may hold them until the first event), and
        // a late failure (404, 409) surfaces from the stream's first read.
        let get = self
            .client
            .get(self.opts.endpoint.clone())
            .headers(self.headers())
            .header(ACCEPT, "text/event-stream")
            .send();
        let mut handle = AbortOnDropHandle::new(tokio::spawn(async move {
            let resp = get
                .await
                .map_err(|e| McpError::transport("GET stream", e))?;
            let resp = check_status("GET stream", resp).await?;
            if !is_sse(&resp) {
                return Err(McpError::protocol("GET stream", "not an event stream"));
            }
            Ok(resp)
        }));
        let state = match tokio::time::timeout(GET_HEADERS_WAIT.min(t), &mut handle).await {
            Ok(joined) => StreamState::Open(joined.map_err(|e| {
                McpError::protocol("GET stream", format!("request task failed: {e}"))
            })??),
            Err(_) => StreamState::Pending(handle),
        };
        let stream = EventStream {
            state,
            parser: SseParser::new(self.opts.max_event_bytes),
            queue: VecDeque::new(),
            event_began: None,
            event_timeout: self.opts.event_timeout,
        };
        within("notifications/initialized", t, async {
            let msg = jsonrpc::notification("notifications/initialized", None);
            let resp = self.post("notifications/initialized", &msg).await?;
            check_status("notifications/initialized", resp)
                .await
                .map(drop)
        })
        .await?;
        self.request("logging/setLevel", json!({"level": "info"}), t)
            .await?;
        Ok(stream)
    }

    /// The session id the server gave us.
    pub fn id(&self) -> &str {
        self.id.to_str().unwrap_or_default()
    }

    fn headers(&self) -> HeaderMap {
        let mut h = self.opts.headers.clone();
        h.insert(SESSION_HEADER, self.id.clone());
        h.insert(VERSION_HEADER, self.version.clone());
        h
    }

    async fn post(&self, what: &'static str, body: &Value) -> Result<Response, McpError> {
        self.client
            .post(self.opts.endpoint.clone())
            .headers(self.headers())
            .header(ACCEPT, "application/json, text/event-stream")
            .json(body)
            .send()
            .await
            .map_err(|e| McpError::transport(what, e))
    }

    /// One request and its result, bounded by `timeout` from send to the end of the reply.
    pub async fn request(
        &self,
        method: &'static str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, McpError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let msg = jsonrpc::request(id, method, params);
        within(method, timeout, async {
            let resp = check_status(method, self.post(method, &msg).await?).await?;
            read_reply(method, resp, id, self.opts.max_event_bytes).await
        })
        .await
    }

    /// The liveness probe: the server answers `{}`.
    pub async fn ping(&self, timeout: Duration) -> Result<(), McpError> {
        self.request("ping", json!({}), timeout).await.map(drop)
    }

    /// `tools/call`; an `isError` result becomes [`McpError::Tool`].
    pub async fn call_tool(
        &self,
        tool: &'static str,
        arguments: Value,
        timeout: Duration,
    ) -> Result<ToolResult, McpError> {
        let result = self
            .request(
                "tools/call",
                json!({"name": tool, "arguments": arguments}),
                timeout,
            )
            .await?;
        let r = ToolResult::from_result(&result);
        if r.is_error {
            return Err(McpError::Tool {
                tool,
                message: r.text,
            });
        }
        Ok(r)
    }

    /// `events_subscribe {"mode":"faults"}` under the subscribe timeout (the server waits for
    /// its informers, possibly forever); returns the subscription id.
    pub async fn subscribe_faults(&self) -> Result<String, McpError> {
        let tool = "events_subscribe";
        let r = self
            .call_tool(
                tool,
                super::events::subscribe_args(self.opts.subscribe_mode),
                self.opts.subscribe_timeout,
            )
            .await
            .map_err(|e| match e {
                McpError::Timeout { after, .. } => McpError::Timeout { what: tool, after },
                e => e,
            })?;
        r.json()
            .as_ref()
            .and_then(|v| v.get("subscriptionId"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| McpError::protocol(tool, "result has no subscriptionId"))
    }

    /// Ids of the session's subscriptions that are not degraded.
    pub async fn list_subscriptions(&self) -> Result<Vec<String>, McpError> {
        let tool = "events_list_subscriptions";
        let r = self
            .call_tool(tool, json!({}), self.opts.request_timeout)
            .await?;
        let v = r
            .json()
            .ok_or_else(|| McpError::protocol(tool, "result has no JSON object"))?;
        let subs = v
            .get("subscriptions")
            .and_then(Value::as_array)
            .ok_or_else(|| McpError::protocol(tool, "result has no subscriptions list"))?;
        Ok(subs
            .iter()
            .filter(|s| s.get("degraded").and_then(Value::as_bool) != Some(true))
            .filter_map(|s| s.get("subscriptionId").and_then(Value::as_str))
            .map(str::to_string)
            .collect())
    }

    /// Best-effort `DELETE`: the server drops the session's subscriptions. Errors are ignored,
    /// the session is abandoned either way.
    pub async fn delete(&self) {
        let req = self
            .client
            .delete(self.opts.endpoint.clone())
            .headers(self.headers())
            .send();
        let _ = tokio::time::timeout(DELETE_TIMEOUT, req).await;
    }
}
