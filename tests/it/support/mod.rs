//! What the integration tests share. One owner per piece:
//!
//! - [`common`]: stores on a real SQLite file or a real PostgreSQL server ([`common::TestDb`],
//!   [`common::PgServer`], which the benchmarks include too), fault builders, the conformance
//!   macro.
//! - Per area: `agent` (agent configurations and incidents), `worker` and `stub` (pool settings,
//!   a stub agent), `mcp` (a recording fault sink), `ingest` and `prom` (numbered faults, the
//!   Prometheus text checker), `e2e` (the real binary as a child process), `report` and `slack`
//!   (webhook and Slack API receivers), `dashboard` and `webdriver` (a served dashboard, a
//!   headless browser).
#![allow(dead_code)]

pub mod agent;
pub mod common;
pub mod dashboard;
pub mod e2e;
pub mod ingest;
pub mod mcp;
pub mod prom;
pub mod report;
pub mod slack;
pub mod stub;
pub mod webdriver;
pub mod worker;
