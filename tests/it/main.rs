//! Nightcrier's integration tests: one test program (one link of sqlx, reqwest and axum instead
//! of one per file), one module per area. Each module keeps the name its file had as a separate
//! program, so a test is addressed as `module::test`, e.g.
//! `cargo nextest run -E 'test(/^e2e_pipeline::/)'`.
//!
//! - [`support`]: what the tests share (stores and the PostgreSQL harness, builders, waiting with
//!   a deadline, simulators and fake receivers).
//! - `store`: the store's conformance suite, every scenario on SQLite and PostgreSQL.
//! - The wall-clock fault-injection tests (`e2e_faults`, `ingest_outage`, `e2e_recovery`) run in
//!   their own nextest test group (`.config/nextest.toml`), one at a time.
//!
//! nextest runs every test in its own process, so tests that set process-global state
//! (environment, signal handlers) cannot disturb each other.
//!
//! A new test file goes beside this one, with a `mod` line below; a file directly in `tests/`
//! would be built as a separate program again (another link).

mod support;

mod accounting_fixtures;
mod agent_accounting;
mod agent_claude_cli;
mod agent_leftover;
mod agent_log_cap;
mod agent_mcp_cli;
mod agent_mcp_proxy;
mod agent_preflight;
mod agent_resources;
mod agent_run;
mod cli_config;
mod dashboard;
mod demo_reports;
mod e2e_alertmanager;
mod e2e_cli;
mod e2e_costs;
mod e2e_events_mode;
mod e2e_faults;
mod e2e_pipeline;
mod e2e_postgres;
mod e2e_recovery;
mod evidence_bundle;
mod evidence_sessions;
mod fleet_leases;
mod fleet_mcp;
mod fleet_processes;
mod fuzz_parsing;
mod gocompat;
mod hostile_inputs;
mod hostile_workspace;
mod http_endpoint;
mod ingest_backpressure;
mod ingest_outage;
mod ingest_writer;
mod intake_alertmanager;
mod mcp_fleet;
mod mcp_session;
mod mcp_simulate;
mod mcp_supervisor;
mod pg_harness;
mod report_config;
mod report_http;
mod report_presigned;
mod report_render;
mod report_slack;
mod report_slack_app;
mod report_upload;
mod run_phases;
mod simulate_tools;
mod store;
mod store_sync_commit;
mod systemd_unit;
mod worker_agent;
mod worker_coupling;
mod worker_pool;
mod worker_postgres;
mod worker_processes;
