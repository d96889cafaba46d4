//! `events_subscribe` with `mode: events` (`mcp.subscribe_mode: events`): Kubernetes Warning
//! events, logger `kubernetes/events`, turned into faults so the rest of nightcrier (dedup,
//! incidents, agents) works unchanged.
//!
//! The mapping, documented in the README: fault type = the event's `reason` (`BackOff`,
//! `FailedScheduling`...), severity `warning`, resource = `involvedObject`, context = `message`,
//! timestamp = `lastTimestamp` (else `timestamp`). The faultId (the dedup key) is the first 16 hex
//! characters of `sha256("event:{cluster}:{reason}:{kind}/{namespace}/{name}:{pattern}")`, where
//! the pattern is the message with every run of digits replaced by `#`: a pod that keeps
//! restarting ("restart count 3", "restart count 4") stays one incident, while a different
//! message about the same object is another one. Normal events are ignored (and not asked for:
//! the subscription filters on `type: Warning`).

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::jsonrpc::{Incoming, MalformedReason};
use crate::config::SubscribeMode;
use crate::fault::{Fault, ResourceRef};

pub const LOGGER_EVENTS: &str = "kubernetes/events";
/// Longest message kept as the incident's context (the whole SSE event is bounded already).
const MAX_MESSAGE_BYTES: usize = 4096;

/// The `events_subscribe` arguments for a mode.
pub fn subscribe_args(mode: SubscribeMode) -> Value {
    match mode {
        SubscribeMode::Faults => json!({"mode": "faults"}),
        SubscribeMode::Events => json!({"mode": "events", "type": "Warning"}),
    }
}

/// The message with every run of ASCII digits replaced by `#`.
pub fn message_pattern(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut in_digits = false;
    for c in message.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

pub fn event_fault_id(cluster: &str, reason: &str, object: &ResourceRef, message: &str) -> String {
    let key = format!(
        "event:{cluster}:{reason}:{}/{}/{}:{}",
        object.kind,
        object.namespace.as_deref().unwrap_or(""),
        object.name,
        message_pattern(message)
    );
    hex::encode(&Sha256::digest(key)[..8])
}

fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

fn bad(reason: MalformedReason, detail: &str) -> Incoming {
    Incoming::Malformed {
        reason,
        detail: detail.to_string(),
    }
}

/// Classifies the `data` of a `kubernetes/events` notification.
pub fn classify_event(data: Option<&Value>) -> Incoming {
    let Some(data) = data else {
        return bad(
            MalformedReason::MissingField,
            "event notification has no data",
        );
    };
    let Some(obj) = data.as_object() else {
        return bad(MalformedReason::NotAnObject, "event data is not an object");
    };
    let Some(event) = obj.get("event").and_then(Value::as_object) else {
        return bad(
            MalformedReason::MissingField,
            "event is missing or not an object",
        );
    };
    let text = |o: &serde_json::Map<String, Value>, k: &str| {
        o.get(k).and_then(Value::as_str).unwrap_or("").to_string()
    };
    if text(event, "type") != "Warning" {
        return Incoming::Ignored;
    }
    let subscription_id = text(obj, "subscriptionId");
    let reason = text(event, "reason");
    if subscription_id.is_empty() || reason.is_empty() {
        return bad(
            MalformedReason::MissingField,
            "subscriptionId or event.reason is missing",
        );
    }
    let Some(involved) = event.get("involvedObject").and_then(Value::as_object) else {
        return bad(
            MalformedReason::MissingField,
            "event.involvedObject is missing",
        );
    };
    let (kind, name) = (text(involved, "kind"), text(involved, "name"));
    if kind.is_empty() || name.is_empty() {
        return bad(
            MalformedReason::MissingField,
            "involvedObject.kind or name is missing",
        );
    }
    let namespace = Some(text(involved, "namespace"))
        .filter(|s| !s.is_empty())
        .or_else(|| Some(text(event, "namespace")).filter(|s| !s.is_empty()));
    let resource = ResourceRef {
        api_version: text(involved, "apiVersion"),
        kind,
        name,
        namespace,
        uid: text(involved, "uid"),
    };
    let cluster = text(obj, "cluster");
    let message = bounded(&text(event, "message"), MAX_MESSAGE_BYTES);
    let timestamp = [text(event, "lastTimestamp"), text(event, "timestamp")]
        .into_iter()
        .find(|t| !t.is_empty())
        .unwrap_or_default();
    let fault = Fault {
        subscription_id,
        fault_id: event_fault_id(&cluster, &reason, &resource, &message),
        cluster,
        fault_type: reason,
        severity: "warning".into(),
        resource,
        context: message,
        timestamp,
    };
    Incoming::Fault {
        fault: Box::new(fault),
        raw: data.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(kind: &str, ty: &str, message: &str) -> Value {
        json!({"subscriptionId": "sub-1", "cluster": "kind-kind", "event": {
            "namespace": "default", "timestamp": "2025-01-15T12:34:56Z", "type": ty,
            "reason": "BackOff", "message": message,
            "involvedObject": {"apiVersion": "v1", "kind": kind, "name": "nginx-123", "namespace": "default"}}})
    }

    #[test]
    fn warning_events_become_faults_with_a_stable_key() {
        let one = classify_event(Some(&data(
            "Pod",
            "Warning",
            "Back-off restarting failed container, restart 3",
        )));
        let two = classify_event(Some(&data(
            "Pod",
            "Warning",
            "Back-off restarting failed container, restart 14",
        )));
        let (Incoming::Fault { fault: a, .. }, Incoming::Fault { fault: b, .. }) = (one, two)
        else {
            panic!("not faults");
        };
        assert_eq!(a.fault_id, b.fault_id, "only the numbers differ");
        assert_eq!(a.fault_type, "BackOff");
        assert_eq!(a.resource.namespace.as_deref(), Some("default"));
        assert_eq!(a.timestamp, "2025-01-15T12:34:56Z");
        let Incoming::Fault { fault: c, .. } =
            classify_event(Some(&data("Pod", "Warning", "Readiness probe failed")))
        else {
            panic!()
        };
        assert_ne!(
            a.fault_id, c.fault_id,
            "another message pattern, another incident"
        );
        assert_eq!(
            classify_event(Some(&data("Pod", "Normal", "Pulled"))),
            Incoming::Ignored
        );
        assert!(matches!(
            classify_event(Some(&data("", "Warning", "x"))),
            Incoming::Malformed { .. }
        ));
        assert_eq!(message_pattern("a 12 b3c 4"), "a # b#c #");
    }
}
