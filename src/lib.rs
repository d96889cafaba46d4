//! Nightcrier: watches Kubernetes clusters through their MCP servers, turns every fault into an
//! incident in a SQL database, and runs an AI triage agent on each incident.
//!
//! The producer (`mcp` + `ingest`) and the consumer (`worker` + `agent`) share nothing but the
//! database (`store`). See ARCHITECTURE.md for the flow.
#![deny(unsafe_code)]

pub mod agent;
pub mod app;
pub mod cli;
pub mod config;
pub mod demo;
pub mod fault;
pub mod health;
pub mod http;
pub mod incident;
pub mod ingest;
pub mod intake;
pub mod mcp;
pub mod report;
pub mod signals;
pub mod simulate;
pub mod store;
pub mod supervise;
pub mod telemetry;
pub mod worker;
