//! The simulator's `events_subscribe` `mode: events`: each fault occurrence is also what the
//! real server would forward in events mode, a Kubernetes Warning event under the logger
//! `kubernetes/events` at level `info` (shape from the server's `pkg/events/notification.go`).

use chrono::{SecondsFormat, Utc};
use serde_json::{json, Value};

use super::world::FaultSpec;

pub const LOGGER: &str = "kubernetes/events";

/// The Kubernetes event reason the kubelet or controller emits for each simulated fault type.
fn reason(fault_type: &str) -> &str {
    match fault_type {
        "CrashLoop" => "BackOff",
        "PodCrash" => "Failed",
        "NodeUnhealthy" => "NodeNotReady",
        "DeploymentFailure" => "ProgressDeadlineExceeded",
        "JobFailure" => "BackoffLimitExceeded",
        other => other,
    }
}

/// Whether a subscription's filters let this event through (`type`, `reason`, `involvedKind`,
/// `namespaces`), as the server applies them in events mode.
pub fn wanted(filters: &Value, spec: &FaultSpec) -> bool {
    let get = |k: &str| {
        filters
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    if get("type").is_some_and(|t| t != "Warning") {
        return false;
    }
    if get("reason").is_some_and(|r| r != reason(&spec.fault_type)) {
        return false;
    }
    if get("involvedKind").is_some_and(|k| k != spec.kind) {
        return false;
    }
    if let Some(ns) = filters.get("namespaces").and_then(Value::as_array) {
        let ours = spec.namespace.as_deref().unwrap_or("");
        if !ns.is_empty() && !ns.iter().any(|n| n.as_str() == Some(ours)) {
            return false;
        }
    }
    true
}

/// The notification's `data`: `{subscriptionId, cluster, event: {...}}`.
pub fn event_data(spec: &FaultSpec, cluster: &str, subscription_id: &str) -> Value {
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    let mut object = json!({
        "apiVersion": spec.api_version,
        "kind": spec.kind,
        "name": spec.name,
        "uid": spec.uid,
    });
    if let Some(ns) = &spec.namespace {
        object["namespace"] = json!(ns);
    }
    json!({
        "subscriptionId": subscription_id,
        "cluster": cluster,
        "event": {
            "namespace": spec.namespace.clone().unwrap_or_default(),
            "timestamp": now,
            "type": "Warning",
            "reason": reason(&spec.fault_type),
            "message": spec.context,
            "labels": {},
            "involvedObject": object,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
        }
    })
}
