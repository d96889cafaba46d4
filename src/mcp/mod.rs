//! The MCP client side: one Streamable HTTP session per cluster, the parsing of fault
//! notifications, and the per-cluster supervisor that replaces a session on any failure.
//!
//! This module owns everything between the MCP server's socket and the ingest hand-off. It must
//! not write to the database: faults and connection states leave through a [`FaultSink`].

pub mod jsonrpc;
pub mod sse;
