//! Route handlers. New pages join [`router`].

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::HttpState;
use crate::health::readiness;

/// The content type of the Prometheus text exposition format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(super::access::pages(&state))
        .merge(super::go_health::routes())
        .with_state(state)
}

/// Alive: the process answers. Deliberately checks nothing else, so a database outage does not
/// get the process restarted by an orchestrator (the buffer would be lost).
async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<HttpState>) -> Response {
    let r = readiness(&state.health, &state.store, state.ping_timeout).await;
    if r.ready {
        (StatusCode::OK, Json(json!({ "status": "ready" }))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not ready", "reasons": r.reasons })),
        )
            .into_response()
    }
}

async fn metrics(State(state): State<HttpState>) -> Response {
    crate::telemetry::record_process_gauges();
    (
        [(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}
