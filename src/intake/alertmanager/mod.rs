//! `POST /api/v1/alertmanager`: Alertmanager's webhook (and Grafana's variant), authenticated,
//! bounded, recorded before the answer.
//!
//! Answers: 200 when every alert was taken; 401 without the credentials; 413 over
//! `max_body_bytes`; 400 for a body that is not the webhook payload (the reason names the field);
//! 422 when some alerts named unknown clusters (the others were recorded; Alertmanager does not
//! retry a 4xx); 503 when the database is unavailable, so that Alertmanager retries (it does on
//! 5xx) instead of nightcrier buffering without bound.

mod mapping;
pub mod payload;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use serde_json::json;

use super::{Credentials, IntakeError};
use crate::config::{AlertMappingConfig, AlertmanagerIntakeConfig, Config};
use crate::store::{Resolution, Store, StoreError};
use crate::telemetry::names;

pub use mapping::{Clusters, Mapped, Rejection, MAX_CONTEXT_BYTES};

pub const ALERTMANAGER_PATH: &str = "/api/v1/alertmanager";
/// The `source` label of the intake metrics.
const SOURCE: &str = "alertmanager";

/// The receiver's state; cheap to clone.
#[derive(Clone)]
pub struct AlertmanagerIntake {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    credentials: Credentials,
    mapping: AlertMappingConfig,
    clusters: Clusters,
    max_body_bytes: usize,
    cancel_running_on_resolve: bool,
}

impl AlertmanagerIntake {
    /// `None` when `intake.alertmanager` is absent. Reads credential files now, so a missing one
    /// fails the start.
    pub fn from_config(config: &Config, store: Store) -> Result<Option<Self>, IntakeError> {
        let Some(am) = &config.intake.alertmanager else {
            return Ok(None);
        };
        let clusters = Clusters::new(
            config
                .clusters
                .iter()
                .map(|c| (c.name.clone(), c.triage.enabled)),
            am.mapping.default_cluster.clone(),
        );
        let credentials = Credentials::from_config(&am.auth)?;
        Ok(Some(Self::new(store, credentials, clusters, am)))
    }

    pub fn new(
        store: Store,
        credentials: Credentials,
        clusters: Clusters,
        cfg: &AlertmanagerIntakeConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                credentials,
                mapping: cfg.mapping.clone(),
                clusters,
                max_body_bytes: cfg.max_body_bytes,
                cancel_running_on_resolve: cfg.cancel_running_on_resolve,
            }),
        }
    }

    /// The receiver's route, to serve on `http.listen` or `intake.listen`.
    pub fn router(self) -> Router {
        Router::new()
            .route(ALERTMANAGER_PATH, post(receive))
            .with_state(self)
    }
}

/// Counts per request, for the answer and the metrics.
#[derive(Debug, Default, serde::Serialize)]
struct Summary {
    /// Firing alerts recorded (new incidents plus repeats).
    recorded: usize,
    created: usize,
    /// Resolved alerts that ended or marked an open incident.
    resolved: usize,
    /// Resolved alerts with no open incident (never recorded, or already finished).
    resolved_unmatched: usize,
    rejected: Vec<RejectedAlert>,
}

#[derive(Debug, serde::Serialize)]
struct RejectedAlert {
    index: usize,
    reason: String,
}

async fn receive(State(intake): State<AlertmanagerIntake>, req: Request) -> Response {
    let me = &intake.inner;
    let (parts, body) = req.into_parts();
    if !me.credentials.allows(&parts.headers) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong credentials",
        );
    }
    let body = match axum::body::to_bytes(body, me.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            return if too_large {
                refuse(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    &format!(
                        "request body is larger than {} bytes (intake.alertmanager.max_body_bytes)",
                        me.max_body_bytes
                    ),
                )
            } else {
                refuse(
                    StatusCode::BAD_REQUEST,
                    "malformed",
                    &format!("cannot read the request body: {e}"),
                )
            };
        }
    };
    let (hook, alerts) = match payload::parse(&body) {
        Ok(p) => p,
        Err(reason) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "malformed",
                &format!("not an Alertmanager webhook payload: {reason}"),
            )
        }
    };
    if hook.truncated_alerts > 0 {
        tracing::warn!(
            receiver = %hook.receiver,
            truncated = hook.truncated_alerts,
            "Alertmanager left alerts out of a notification (max_alerts); they were not received"
        );
    }

    let now = Utc::now();
    let mut summary = Summary::default();
    let mut firing = Vec::new();
    let mut resolved = Vec::new();
    for (index, (alert, raw)) in alerts.iter().zip(&hook.alerts).enumerate() {
        let status = match alert.status {
            payload::AlertStatus::Firing => "firing",
            payload::AlertStatus::Resolved => "resolved",
        };
        metrics::counter!(names::ALERTS_RECEIVED, "source" => SOURCE, "status" => status)
            .increment(1);
        match mapping::map(alert, raw, &me.mapping, &me.clusters, &hook.receiver, now) {
            Ok(Mapped::Firing(f)) => firing.push(*f),
            Ok(Mapped::Resolved {
                cluster,
                fault_id,
                at,
            }) => resolved.push((cluster, fault_id, at)),
            Err(rejection) => {
                metrics::counter!(names::ALERTS_REJECTED, "source" => SOURCE, "reason" => rejection.reason())
                    .increment(1);
                summary.rejected.push(RejectedAlert {
                    index,
                    reason: rejection.to_string(),
                });
            }
        }
    }

    // The writes run in their own task: a sender that hangs up mid-request must not leave a
    // transaction half done, and the answer waits for the commit either way.
    let store = me.store.clone();
    let stop_running = me.cancel_running_on_resolve;
    let written = tokio::spawn(async move {
        let mut summary = summary;
        let recorded = store.record_faults(&firing).await?;
        for (r, f) in recorded.iter().zip(&firing) {
            summary.recorded += 1;
            if r.created {
                summary.created += 1;
                metrics::counter!(names::INCIDENTS_CREATED, "cluster" => f.cluster.clone())
                    .increment(1);
            } else {
                metrics::counter!(names::EVENTS_DEDUPLICATED, "cluster" => f.cluster.clone())
                    .increment(1);
            }
        }
        for (cluster, fault_id, at) in resolved {
            match store.resolve_open(&cluster, &fault_id, at, stop_running).await? {
                Some(r) => {
                    summary.resolved += 1;
                    let resolution = match r.resolution {
                        Resolution::Ended => "ended",
                        Resolution::Stopped => "stopped",
                        Resolution::Noted => "noted",
                    };
                    tracing::info!(
                        cluster = %cluster,
                        incident_id = %r.incident_id,
                        resolution,
                        "alert resolved"
                    );
                    metrics::counter!(names::INCIDENTS_RESOLVED, "cluster" => cluster, "resolution" => resolution)
                        .increment(1);
                }
                None => summary.resolved_unmatched += 1,
            }
        }
        Ok::<_, StoreError>(summary)
    })
    .await;

    match written {
        Ok(Ok(summary)) if summary.rejected.is_empty() => (
            StatusCode::OK,
            Json(json!({ "status": "ok", "summary": summary })),
        )
            .into_response(),
        Ok(Ok(summary)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({
                "status": "partly rejected",
                "error": "some alerts were not recorded (see summary.rejected); the others were",
                "summary": summary,
            })),
        )
            .into_response(),
        Ok(Err(e @ StoreError::Database { .. })) => {
            tracing::warn!(error = %e, "alerts not recorded: database unavailable; answering 503 so the sender retries");
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the database is unavailable; retry later",
            )
        }
        Ok(Err(e @ (StoreError::InvalidFault { .. } | StoreError::InvalidInput(_)))) => {
            refuse(StatusCode::BAD_REQUEST, "malformed", &e.to_string())
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "alerts not recorded");
            refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "error",
                "alerts not recorded",
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "the alert write task failed");
            refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "error",
                "alerts not recorded",
            )
        }
    }
}

/// Counts the refusal and answers with its reason.
fn refuse(code: StatusCode, reason: &'static str, message: &str) -> Response {
    metrics::counter!(names::ALERTS_REJECTED, "source" => SOURCE, "reason" => reason).increment(1);
    (code, Json(json!({ "status": "error", "error": message }))).into_response()
}
