//! Errors of one MCP session. Every one of them is fatal to the session (the supervisor replaces
//! it); the variants exist so logs and `nightcrier status` say what went wrong, and so tests can
//! tell a lost session from a refused connection.

use std::error::Error as _;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },
    /// Names the header, never its value (values are secrets).
    #[error("invalid value for header {name:?}: {reason}")]
    InvalidHeader { name: String, reason: String },
    #[error("{what}: {detail}")]
    Transport { what: &'static str, detail: String },
    #[error("{what}: no answer within {after:?}")]
    Timeout { what: &'static str, after: Duration },
    /// HTTP 404: the server no longer knows the session (it restarted).
    #[error("{what}: session lost (HTTP 404 session not found)")]
    SessionLost { what: &'static str },
    #[error("{what}: HTTP {status}: {body}")]
    Http {
        what: &'static str,
        status: u16,
        body: String,
    },
    #[error("{what}: {detail}")]
    Protocol { what: &'static str, detail: String },
    #[error("{what}: JSON-RPC error {code}: {message}")]
    Rpc {
        what: &'static str,
        code: i64,
        message: String,
    },
    #[error("tool {tool} failed: {message}")]
    Tool { tool: &'static str, message: String },
    #[error("GET stream ended by the server")]
    StreamEnded,
    #[error("subscription {id} failed on the server: {error}")]
    SubscriptionFailed { id: String, error: String },
    #[error("subscription {id} is missing from events_list_subscriptions")]
    SubscriptionMissing { id: String },
}

impl McpError {
    /// A transport error with its whole cause chain (reqwest's own message alone says little),
    /// without the URL.
    pub(crate) fn transport(what: &'static str, e: reqwest::Error) -> Self {
        let e = e.without_url();
        let mut detail = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            detail.push_str(": ");
            detail.push_str(&s.to_string());
            source = s.source();
        }
        Self::Transport { what, detail }
    }

    pub(crate) fn protocol(what: &'static str, detail: impl Into<String>) -> Self {
        Self::Protocol {
            what,
            detail: detail.into(),
        }
    }

    /// True when the server said it no longer knows the session.
    pub fn is_session_lost(&self) -> bool {
        matches!(self, Self::SessionLost { .. })
    }
}
