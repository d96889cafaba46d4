//! After a run finishes: the rendered report, a short summary, Slack messages and (with the
//! `object-storage` feature) an archive of the incident's files.
//!
//! This module owns what happens to a finished run's result. It learns about finished runs only
//! through the store (durably: `reported_attempt` < `attempt`), so nothing is lost on restart
//! and the worker pool is never blocked by a slow webhook or bucket. It must not change an
//! incident's status, and it never writes outside `output/investigation.html` of a workspace.
//!
//! Delivery is at least once: a message sent just before a crash may be sent again.

mod breaker;
mod cost;
mod facts;
mod message;
mod render;
mod reporter;
mod slack;
mod summary;
pub mod verdict;

#[cfg(feature = "object-storage")]
mod artifacts;

pub use breaker::{Breaker, FailedRun, Transition, MAX_REASONS};
pub use cost::{add_to_message as add_usage_to_message, usage_rows};
pub use facts::page_facts;
pub use message::{run_duration, Links};
pub use render::{escape as escape_html, markdown_to_html, render_page, render_page_with};
pub use reporter::{html_report_file, ReportCounts, ReportError, Reporter, ReporterSettings};
pub use slack::{NotifyError, RetryPolicy, SlackNotifier};
pub use summary::{summarize, truncate, Summary, MAX_SUMMARY_CHARS};

#[cfg(feature = "object-storage")]
pub use artifacts::{ArtifactError, ArtifactStore, Uploaded, PUT_ATTEMPTS};

/// Slack payloads, exposed for tests and previews.
pub mod messages {
    pub use super::message::{degraded, escape, recovered, success};
}

use crate::config::Config;

/// The public address used in links: `reporting.base_url`, else `http://<http.listen>`, else
/// none (the endpoint is off).
pub fn base_url(config: &Config) -> Option<String> {
    if let Some(b) = &config.reporting.base_url {
        return Some(b.trim_end_matches('/').to_string());
    }
    let listen = config.http.listen.trim();
    (!listen.is_empty()).then(|| format!("http://{listen}"))
}
