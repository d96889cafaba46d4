//! One HTTP exchange of a session: bounding it in time, turning a status into the error the
//! supervisor acts on, and reading a POST reply that may be plain JSON or an SSE body.

use std::future::Future;
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use reqwest::{Response, StatusCode};
use serde_json::Value;

use super::error::McpError;
use super::jsonrpc;
use super::sse::{SseItem, SseParser};

/// After a POST's reply arrived, how long we keep reading to the end of its body so the
/// connection goes back to the pool instead of being closed.
const DRAIN_GRACE: Duration = Duration::from_millis(500);
/// Bytes of an error body kept for the message.
const ERROR_BODY_BYTES: usize = 200;

pub(crate) async fn within<T>(
    what: &'static str,
    after: Duration,
    fut: impl Future<Output = Result<T, McpError>>,
) -> Result<T, McpError> {
    match tokio::time::timeout(after, fut).await {
        Ok(r) => r,
        Err(_) => Err(McpError::Timeout { what, after }),
    }
}

/// Turns a non-success status into the error the supervisor acts on.
pub(crate) async fn check_status(what: &'static str, resp: Response) -> Result<Response, McpError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    if status == StatusCode::NOT_FOUND {
        return Err(McpError::SessionLost { what });
    }
    Err(McpError::Http {
        what,
        status: status.as_u16(),
        body: error_body_head(resp).await,
    })
}

/// The first [`ERROR_BODY_BYTES`] of an error body. Only that much is read: a hostile server's
/// body may be gigabytes long, and dropping the response closes the connection instead of
/// draining it.
async fn error_body_head(mut resp: Response) -> String {
    let mut head = Vec::with_capacity(ERROR_BODY_BYTES);
    while head.len() < ERROR_BODY_BYTES {
        match resp.chunk().await {
            Ok(Some(bytes)) => {
                let take = bytes.len().min(ERROR_BODY_BYTES - head.len());
                head.extend_from_slice(&bytes[..take]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    // A cut through a multi-byte character leaves a partial sequence: drop it, not the text.
    let text = String::from_utf8_lossy(&head);
    text.trim_end_matches('\u{FFFD}').trim().to_string()
}

pub(crate) fn is_sse(resp: &Response) -> bool {
    resp.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// Reads a POST reply (plain JSON or an SSE body) until the response to `id`, bounded by
/// `max_bytes` per message.
pub(crate) async fn read_reply(
    what: &'static str,
    mut resp: Response,
    id: u64,
    max_bytes: usize,
) -> Result<Value, McpError> {
    if resp.status() == StatusCode::ACCEPTED {
        return Err(McpError::protocol(
            what,
            "202 Accepted where a reply was due",
        ));
    }
    let chunk =
        |r: reqwest::Result<Option<bytes::Bytes>>| r.map_err(|e| McpError::transport(what, e));
    let found = if is_sse(&resp) {
        let mut parser = SseParser::new(max_bytes);
        let mut found = None;
        while found.is_none() {
            let Some(bytes) = chunk(resp.chunk().await)? else {
                break;
            };
            let mut items = Vec::new();
            parser.feed(&bytes, &mut |i| items.push(i));
            for item in items {
                if let SseItem::Event(ev) = item {
                    let msg: Value = serde_json::from_str(&ev.data)
                        .map_err(|e| McpError::protocol(what, format!("reply is not JSON: {e}")))?;
                    if let Some(r) = jsonrpc::response_for(&msg, id) {
                        found = Some(r);
                    }
                }
            }
        }
        found
    } else {
        let mut body = Vec::new();
        while let Some(bytes) = chunk(resp.chunk().await)? {
            if body.len() + bytes.len() > max_bytes {
                return Err(McpError::protocol(
                    what,
                    "reply larger than max_event_bytes",
                ));
            }
            body.extend_from_slice(&bytes);
        }
        let msg: Value = serde_json::from_slice(&body)
            .map_err(|e| McpError::protocol(what, format!("reply is not JSON: {e}")))?;
        jsonrpc::response_for(&msg, id)
    };
    // Finish the body so the connection can be reused; give up after a moment.
    let _ = tokio::time::timeout(DRAIN_GRACE, async {
        while let Ok(Some(_)) = resp.chunk().await {}
    })
    .await;
    match found {
        Some(jsonrpc::Response::Result(v)) => Ok(v),
        Some(jsonrpc::Response::Error { code, message }) => Err(McpError::Rpc {
            what,
            code,
            message,
        }),
        None => Err(McpError::protocol(what, "reply ended without a response")),
    }
}
