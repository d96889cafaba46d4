//! The per-run MCP endpoint nightcrier serves the agent: the cluster's read-only tools, and only
//! those, forwarded to the cluster's MCP server.
//!
//! An allow list in the agent CLI is not enough (Claude Code, for one, still shows the model
//! every tool of a server), so the filter sits between the agent and the cluster: `tools/list`
//! returns only tools the server marks `readOnlyHint: true` and that are not in
//! [`DENIED_TOOLS`], and `tools/call` of anything else is refused without reaching the cluster.
//! Each run gets its own loopback listener on a random port and its own bearer token; both die
//! with the run. The cluster's MCP credentials (`mcp.headers`) stay in this process: the agent
//! only ever holds the per-run token. Every call is recorded in the workspace
//! (`evidence/tool-calls.jsonl`, one result file per call) for the report's evidence references.
//!
//! This module owns the agent-facing endpoint. Upstream it opens its own short-lived session
//! with the shared client (`mcp_client`); it must not use the `mcp` producer module (the
//! subscription sessions): the consumer never shares a session with the producer.
//!
//! Files: `server` (the endpoint, the filter, the bounds), `upstream` (the run's session to the
//! cluster's server), `record` (the call log).

mod record;
mod server;
mod upstream;

pub use server::{McpProxy, ProxyError, ProxyHandle, ProxyLimits};

/// The name every preset gives the endpoint; tool names become e.g. `mcp__kubernetes__pods_log`
/// in Claude Code.
pub const SERVER_NAME: &str = "kubernetes";

/// Never offered, whatever the server's annotations say: the mutating tools of
/// kubernetes-mcp-server.
pub const DENIED_TOOLS: &[&str] = &[
    "pods_exec",
    "pods_run",
    "pods_delete",
    "resources_create_or_update",
    "resources_delete",
    "resources_scale",
];

/// Whether a tool (one entry of the server's `tools/list`) may be offered to the agent.
pub fn is_offered(tool: &serde_json::Value) -> bool {
    let Some(name) = tool.get("name").and_then(|n| n.as_str()) else {
        return false;
    };
    let read_only = tool
        .get("annotations")
        .and_then(|a| a.get("readOnlyHint"))
        .and_then(|v| v.as_bool())
        == Some(true);
    read_only && !DENIED_TOOLS.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_tools_marked_read_only_and_not_denied_are_offered() {
        let ro = json!({"readOnlyHint": true, "destructiveHint": false});
        assert!(is_offered(&json!({"name": "pods_log", "annotations": ro})));
        assert!(!is_offered(&json!({"name": "pods_log"})));
        assert!(!is_offered(
            &json!({"name": "pods_log", "annotations": {"readOnlyHint": "true"}})
        ));
        assert!(!is_offered(
            &json!({"name": "resources_scale", "annotations": {"readOnlyHint": false}})
        ));
        // A server that mislabels a mutating tool still does not get it through.
        assert!(!is_offered(
            &json!({"name": "pods_exec", "annotations": ro})
        ));
        assert!(!is_offered(&json!({"annotations": ro})));
    }
}
