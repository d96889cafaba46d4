//! `/health/clusters`: the per-cluster health document the Go nightcrier served (its
//! `internal/health` and `ConnectionManager.GetHealth`), kept so existing probes and dashboards
//! work after the move. A compatibility page: `/readyz` and `/metrics` are nightcrier's own.
//!
//! Shape: `{"clusters": [{name, status, event_count, triage_enabled, last_event?, error?,
//! labels?}], "summary": {total, active, unhealthy, triage_enabled}}`; optional fields are left
//! out when empty, as Go's `omitempty` did. The Go `permissions` field is not served (nightcrier
//! writes its permission check into each workspace as `cluster_permissions.json`).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::HttpState;
use crate::config::ClusterConfig;
use crate::incident::{ConnectionPhase, ConnectionState};

pub fn routes() -> Router<HttpState> {
    Router::new().route("/health/clusters", get(clusters))
}

#[derive(Debug, Serialize)]
pub struct ClusterHealth {
    pub name: String,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_event: Option<DateTime<Utc>>,
    #[serde(rename = "error", skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub event_count: i64,
    pub triage_enabled: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Default)]
pub struct Summary {
    pub total: usize,
    pub active: usize,
    pub unhealthy: usize,
    pub triage_enabled: usize,
}

#[derive(Debug, Serialize)]
pub struct HealthSummary {
    pub clusters: Vec<ClusterHealth>,
    pub summary: Summary,
}

/// nightcrier's session states in the Go program's words: `subscribed` is Go's `active`; a
/// session waiting to reconnect is `failed` (Go's state between attempts); no state yet is
/// `connecting`, a stopped session `disconnected`.
pub fn go_status(state: Option<ConnectionPhase>) -> &'static str {
    match state {
        Some(ConnectionPhase::Subscribed) => "active",
        Some(ConnectionPhase::Connecting) | None => "connecting",
        Some(ConnectionPhase::BackingOff) => "failed",
        Some(ConnectionPhase::Stopped) => "disconnected",
    }
}

/// Builds the document from the configured clusters and their stored connection states.
pub fn build(clusters: &[ClusterConfig], states: &[ConnectionState]) -> HealthSummary {
    let mut summary = Summary::default();
    let out = clusters
        .iter()
        .map(|c| {
            let st = states.iter().find(|s| s.cluster == c.name);
            let status = go_status(st.map(|s| s.state));
            summary.total += 1;
            match status {
                "active" => summary.active += 1,
                "failed" | "disconnected" => summary.unhealthy += 1,
                _ => {}
            }
            if c.triage.enabled {
                summary.triage_enabled += 1;
            }
            ClusterHealth {
                name: c.name.clone(),
                status,
                last_event: st.and_then(|s| s.last_event_at),
                last_error: st.and_then(|s| s.last_error.clone()),
                event_count: st.map_or(0, |s| s.events_received),
                triage_enabled: c.triage.enabled,
                labels: c.labels.clone(),
            }
        })
        .collect();
    HealthSummary {
        clusters: out,
        summary,
    }
}

async fn clusters(State(state): State<HttpState>) -> Response {
    match state.store.connection_states().await {
        Ok(states) => Json(build(&state.clusters, &states)).into_response(),
        // Go answered 200 from memory; without the database nightcrier cannot know, and says so.
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "error": format!("cannot read connection states: {e}") })),
        )
            .into_response(),
    }
}
