//! The MCP client side: one Streamable HTTP session per cluster, the parsing of fault
//! notifications, and the per-cluster supervisor that replaces a session on any failure.
//!
//! This module owns everything between the MCP server's socket and the ingest hand-off. It must
//! not write to the database: faults and connection states leave through a [`FaultSink`].
//!
//! The client is our own on `reqwest` rather than the `rmcp` SDK: the subset needed is small
//! (initialize, initialized, setLevel, tools/call, ping, DELETE, the GET stream), and we need
//! control over what the SDK decides for us: a bounded event size, 404 as an immediate
//! session-lost signal, no idle timeout on the GET stream, one shared connection pool.
//!
//! Wiring (what the application does):
//!
//! ```text
//! let client = mcp::http_client(Duration::from_secs(10))?;      // one pool for every cluster
//! let fleet = McpFleet::new(config.clusters, config.reconnect, client, Arc::new(ingest_sender));
//! fleet.run(shutdown_token).await;                               // returns once all sessions are DELETEd
//! ```
//!
//! Files: `sse` (bounded SSE parser), `jsonrpc` (messages and classification of what arrives on
//! the stream), `session` (one session: handshake, requests, GET stream, DELETE), `supervisor`
//! (one cluster's state machine, backoff, watchdog), `fleet` (one supervisor per cluster, panic
//! restarts), `sink` (the hand-off trait and the connection figures), `admission` (pausing a
//! stream while the sink is full, then dropping fault notifications unparsed).

mod admission;
pub mod error;
pub mod events;
mod exchange;
pub mod fleet;
pub mod jsonrpc;
pub mod session;
pub mod sink;
/// The SSE parser lives in the shared client module; re-exported for the existing paths.
pub use crate::mcp_client::sse;
pub mod supervisor;

pub use error::McpError;
pub use fleet::McpFleet;
pub use session::{http_client, EventStream, Session, SessionOptions};
pub use sink::{ClusterStats, FaultSink, Phase};
pub use supervisor::{Backoff, SessionEnd, Supervisor};
