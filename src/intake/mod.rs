//! Intake: receivers of alerts pushed by other systems (Prometheus Alertmanager and Grafana's
//! variant of its webhook), a producer beside `mcp` + `ingest`.
//!
//! This module owns the webhook endpoints, their authentication, and the mapping of an alert
//! onto the shared fault shape ([`crate::fault::ReceivedFault`]). It writes through the store
//! only (the same `record_faults` as MCP faults, so dedup, cooldown and claim limits are the
//! same) and answers after the write committed: the sender retries on failure, so nothing is
//! buffered here. It must not import the consumer (`worker`, `agent`).

pub mod alertmanager;
mod auth;

use thiserror::Error;

pub use alertmanager::{AlertmanagerIntake, ALERTMANAGER_PATH};
pub use auth::Credentials;

#[derive(Debug, Error)]
pub enum IntakeError {
    #[error("cannot read {key} from {path}: {source}")]
    ReadSecret {
        key: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{key} in {path} is empty")]
    EmptySecret { key: &'static str, path: String },
    #[error("intake.alertmanager.auth: {0}")]
    Auth(String),
    #[error("intake.listen: {0}")]
    Listen(#[source] crate::http::HttpError),
}
