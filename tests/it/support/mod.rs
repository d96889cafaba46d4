//! What the integration tests share. One owner per piece:
//!
//! - [`common`]: stores on a real SQLite file or a real PostgreSQL server ([`common::TestDb`],
//!   [`common::PgServer`], which the benchmarks include too), the builders of faults,
//!   incidents, cluster configurations and store options, the conformance macro.
//! - [`eventually`]: the one way a test waits: polling a condition with a deadline. The area
//!   modules' `eventually`, `wait_for` and `wait_until` are this one, under the names and
//!   closure shapes (plain `bool`, seconds) their tests were written with.
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

use std::time::Duration;

/// Polls `check` until it returns `Some`, and returns that value; fails the test naming `what`
/// once `limit` has passed. This is how every test waits for something to happen (no sleeps
/// that hope it has). Checks start 5 ms apart and back off to 50 ms: a cheap condition is seen
/// at once, an expensive one (a query, a child process) does not load the shared machine.
/// The deadline is on tokio's clock, so it follows a test that pauses time.
pub async fn eventually<T>(
    what: &str,
    limit: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + limit;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}
