//! The proxy's side of the cluster's MCP server: one [`CallSession`] of the shared short-lived
//! client (`mcp_client`), opened on the agent's first request, reopened once when the server
//! has lost it (404 after a restart), and closed with the run.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::config::McpConfig;
use crate::mcp_client::{CallSession, ClientError, Endpoint, ToolReply};

/// Bound on opening the session (initialize + initialized).
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Upstream {
    client: reqwest::Client,
    endpoint: Endpoint,
    /// Opened on first use. A tokio lock: held across the handshake so that concurrent first
    /// calls open one session.
    session: tokio::sync::Mutex<Option<Arc<CallSession>>>,
}

impl Upstream {
    pub fn new(cfg: &McpConfig) -> Result<Self, ClientError> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| ClientError::Protocol {
                what: "building the HTTP client",
                detail: e.to_string(),
            })?;
        Self::with_client(client, cfg)
    }

    /// On a client shared with other runs (it has a connect timeout of its own).
    pub fn with_client(client: reqwest::Client, cfg: &McpConfig) -> Result<Self, ClientError> {
        let endpoint = Endpoint::new(&cfg.endpoint, &cfg.headers)?;
        Ok(Self {
            client,
            endpoint,
            session: tokio::sync::Mutex::new(None),
        })
    }

    async fn session(&self, timeout: Duration) -> Result<Arc<CallSession>, ClientError> {
        let mut guard = self.session.lock().await;
        if let Some(s) = guard.as_ref() {
            return Ok(s.clone());
        }
        let opened = Arc::new(
            CallSession::open(&self.client, &self.endpoint, timeout.min(OPEN_TIMEOUT)).await?,
        );
        *guard = Some(opened.clone());
        Ok(opened)
    }

    pub async fn list_tools(
        &self,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<Vec<Value>, ClientError> {
        let session = self.session(timeout).await?;
        match session.list_tools(timeout, max_bytes).await {
            Err(e) if session_lost(&e) => {
                let session = self.reopen(&session, timeout).await?;
                session.list_tools(timeout, max_bytes).await
            }
            other => other,
        }
    }

    pub async fn call_tool(
        &self,
        name: &str,
        arguments: Value,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<ToolReply, ClientError> {
        let session = self.session(timeout).await?;
        match session
            .call_tool(name, arguments.clone(), timeout, max_bytes)
            .await
        {
            Err(e) if session_lost(&e) => {
                let session = self.reopen(&session, timeout).await?;
                session.call_tool(name, arguments, timeout, max_bytes).await
            }
            other => other,
        }
    }

    /// The server forgot the session (it restarted): forget it too and open a new one, unless
    /// a concurrent call already did.
    async fn reopen(
        &self,
        lost: &Arc<CallSession>,
        timeout: Duration,
    ) -> Result<Arc<CallSession>, ClientError> {
        {
            let mut guard = self.session.lock().await;
            if guard.as_ref().is_some_and(|s| Arc::ptr_eq(s, lost)) {
                *guard = None;
            }
        }
        self.session(timeout).await
    }

    /// Ends the session, best effort (skipped if a call is still in flight).
    pub async fn close(&self) {
        let Some(session) = self.session.lock().await.take() else {
            return;
        };
        if let Ok(session) = Arc::try_unwrap(session) {
            session.close().await;
        }
    }
}

/// A 404 on a request carrying the session id: the server no longer knows the session.
fn session_lost(e: &ClientError) -> bool {
    matches!(e, ClientError::Http { status: 404, .. })
}
