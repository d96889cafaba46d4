//! Nightcrier: watches Kubernetes clusters through their MCP servers, turns every fault into an
//! incident in a SQL database, and runs an AI triage agent on each incident.
//!
//! The producer (`mcp` + `ingest`) and the consumer (`worker` + `agent`) share nothing but the
//! database (`store`). See ARCHITECTURE.md for the flow.
#![deny(unsafe_code)]

pub mod accounting;
pub mod agent;
pub mod app;
pub mod cli;
pub mod config;
pub mod demo;
pub mod escape;
pub mod evidence;
pub mod fault;
pub mod fleet;
pub mod gocompat;
pub mod health;
pub mod http;
pub mod incident;
pub mod ingest;
pub mod intake;
pub mod mcp;
pub mod mcp_client;
pub mod procfs;
pub mod report;
pub mod sdnotify;
pub mod signals;
pub mod simulate;
pub mod store;
pub mod supervise;
pub mod telemetry;
pub mod worker;
