//! JSON-RPC messages of the MCP subset nightcrier speaks, and the classification of what arrives
//! on the standalone GET stream.
//!
//! Classification never fails: every message is a fault, a subscription error, something to
//! ignore, or malformed with a reason that becomes a metric label. One bad message must never
//! stop the stream.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::fault::Fault;

pub const LOGGER_FAULTS: &str = "kubernetes/faults";
pub const LOGGER_SUBSCRIPTION_ERROR: &str = "kubernetes/subscription_error";

/// A JSON-RPC request with an id.
pub fn request(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// A JSON-RPC notification (no id, no reply expected).
pub fn notification(method: &str, params: Option<Value>) -> Value {
    match params {
        Some(p) => json!({"jsonrpc": "2.0", "method": method, "params": p}),
        None => json!({"jsonrpc": "2.0", "method": method}),
    }
}

/// The outcome of a request, once its response arrived.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    Result(Value),
    Error { code: i64, message: String },
}

/// If `msg` is the response to request `id`, returns it.
pub fn response_for(msg: &Value, id: u64) -> Option<Response> {
    let obj = msg.as_object()?;
    if obj.get("id")?.as_u64()? != id || obj.contains_key("method") {
        return None;
    }
    if let Some(err) = obj.get("error") {
        return Some(Response::Error {
            code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        });
    }
    Some(Response::Result(
        obj.get("result").cloned().unwrap_or(Value::Null),
    ))
}

/// A `tools/call` result: the concatenated text content and the `isError` flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolResult {
    pub is_error: bool,
    pub text: String,
}

impl ToolResult {
    pub fn from_result(result: &Value) -> Self {
        let text = result
            .get("content")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|c| c.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default();
        Self {
            is_error: result
                .get("isError")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            text,
        }
    }

    /// The first JSON value starting at the first `{` of the text (after the Markdown heading).
    pub fn json(&self) -> Option<Value> {
        let start = self.text.find('{')?;
        serde_json::Deserializer::from_str(&self.text[start..])
            .into_iter::<Value>()
            .next()?
            .ok()
    }
}

/// Why a message was counted as malformed. The string form is the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MalformedReason {
    InvalidJson,
    NotAnObject,
    MissingField,
    WrongType,
    Oversized,
    InvalidUtf8,
}

impl MalformedReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::NotAnObject => "not_an_object",
            Self::MissingField => "missing_field",
            Self::WrongType => "wrong_type",
            Self::Oversized => "oversized",
            Self::InvalidUtf8 => "invalid_utf8",
        }
    }
}

/// What one message on the GET stream means to nightcrier.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A valid fault; `raw` is the notification's `data` as received.
    Fault { fault: Box<Fault>, raw: Value },
    SubscriptionError {
        subscription_id: String,
        error: String,
    },
    /// Another method or logger: not ours to handle.
    Ignored,
    Malformed {
        reason: MalformedReason,
        detail: String,
    },
}

fn malformed(reason: MalformedReason, detail: impl Into<String>) -> Incoming {
    Incoming::Malformed {
        reason,
        detail: detail.into(),
    }
}

/// Classifies the `data` of one SSE event from the GET stream.
pub fn classify(data: &str) -> Incoming {
    let mut msg: Value = match serde_json::from_str(data) {
        Ok(v) => v,
        Err(e) => return malformed(MalformedReason::InvalidJson, e.to_string()),
    };
    let Some(obj) = msg.as_object_mut() else {
        return malformed(MalformedReason::NotAnObject, "message is not a JSON object");
    };
    if obj.get("method").and_then(Value::as_str) != Some("notifications/message") {
        return Incoming::Ignored;
    }
    let Some(params) = obj.get_mut("params").and_then(Value::as_object_mut) else {
        return malformed(MalformedReason::WrongType, "params is not an object");
    };
    match params.get("logger").and_then(Value::as_str) {
        // The fault's data is moved out (it becomes `raw`), not copied: this runs per event.
        Some(LOGGER_FAULTS) => classify_fault(params.remove("data")),
        Some(LOGGER_SUBSCRIPTION_ERROR) => classify_subscription_error(params.get("data")),
        Some(super::events::LOGGER_EVENTS) => super::events::classify_event(params.get("data")),
        _ => Incoming::Ignored,
    }
}

fn classify_fault(data: Option<Value>) -> Incoming {
    let Some(data) = data else {
        return malformed(MalformedReason::MissingField, "fault has no data");
    };
    let Some(obj) = data.as_object() else {
        return malformed(MalformedReason::NotAnObject, "fault data is not an object");
    };
    for field in [
        "faultId",
        "subscriptionId",
        "faultType",
        "severity",
        "timestamp",
    ] {
        if let Err(bad) = require_str(obj, field, true) {
            return bad;
        }
    }
    for field in ["cluster", "context"] {
        if let Err(bad) = require_str(obj, field, false) {
            return bad;
        }
    }
    let Some(resource) = obj.get("resource") else {
        return malformed(MalformedReason::MissingField, "resource is missing");
    };
    let Some(resource) = resource.as_object() else {
        return malformed(MalformedReason::WrongType, "resource is not an object");
    };
    for field in ["kind", "name"] {
        if let Err(bad) = require_str(resource, field, true) {
            return bad;
        }
    }
    // Deserialized from the borrowed tree, so that `data` itself can become `raw`.
    match Fault::deserialize(&data) {
        Ok(fault) => Incoming::Fault {
            fault: Box::new(fault),
            raw: data,
        },
        Err(e) => malformed(MalformedReason::WrongType, e.to_string()),
    }
}

/// A field must be a string; `required` ones must be present and non-empty.
fn require_str(obj: &Map<String, Value>, field: &str, required: bool) -> Result<(), Incoming> {
    match obj.get(field) {
        None if required => Err(malformed(
            MalformedReason::MissingField,
            format!("{field} is missing"),
        )),
        None => Ok(()),
        Some(Value::String(s)) if required && s.is_empty() => Err(malformed(
            MalformedReason::MissingField,
            format!("{field} is empty"),
        )),
        Some(Value::String(_)) => Ok(()),
        Some(_) => Err(malformed(
            MalformedReason::WrongType,
            format!("{field} is not a string"),
        )),
    }
}

fn classify_subscription_error(data: Option<&Value>) -> Incoming {
    let Some(obj) = data.and_then(Value::as_object) else {
        return malformed(
            MalformedReason::NotAnObject,
            "subscription error data is not an object",
        );
    };
    let Some(id) = obj.get("subscriptionId").and_then(Value::as_str) else {
        return malformed(
            MalformedReason::MissingField,
            "subscription error without subscriptionId",
        );
    };
    Incoming::SubscriptionError {
        subscription_id: id.to_string(),
        error: obj
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown error")
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFERENCE: &str = r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"data":{"subscriptionId":"sub-5f1c2e9a","cluster":"kind-kind","faultId":"670b5093e8ce7fc6","faultType":"CrashLoop","severity":"critical","resource":{"apiVersion":"v1","kind":"Pod","name":"crash-test-pod","namespace":"default","uid":"3f0c1a52-6d7e-4b8a-9c1d-2e5f7a9b0c11"},"context":"Container entered CrashLoopBackOff state, restart count: 3, last exit code: 1, last reason: Error","timestamp":"2025-12-19T22:11:10+01:00"},"level":"warning","logger":"kubernetes/faults"}}"#;

    fn envelope(logger: &str, data: Value) -> String {
        json!({"jsonrpc":"2.0","method":"notifications/message",
               "params":{"level":"warning","logger":logger,"data":data}})
        .to_string()
    }

    fn reference_data() -> Value {
        serde_json::from_str::<Value>(REFERENCE).unwrap()["params"]["data"].clone()
    }

    fn reason(data: &str) -> MalformedReason {
        match classify(data) {
            Incoming::Malformed { reason, .. } => reason,
            other => panic!("expected malformed, got {other:?}"),
        }
    }

    #[test]
    fn the_reference_frame_is_a_fault() {
        match classify(REFERENCE) {
            Incoming::Fault { fault, raw } => {
                assert_eq!(fault.fault_id, "670b5093e8ce7fc6");
                assert_eq!(fault.resource.kind, "Pod");
                assert_eq!(raw, reference_data());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_methods_and_loggers_are_ignored() {
        let tools = json!({"jsonrpc":"2.0","method":"notifications/tools/list_changed"});
        assert_eq!(classify(&tools.to_string()), Incoming::Ignored);
        assert_eq!(
            classify(&envelope("kubernetes-mcp-server", json!("informer synced"))),
            Incoming::Ignored
        );
        assert_eq!(
            classify(&envelope("kubernetes/events", json!({"event": {}}))),
            Incoming::Ignored
        );
        let server_request = json!({"jsonrpc":"2.0","id":1,"method":"ping"});
        assert_eq!(classify(&server_request.to_string()), Incoming::Ignored);
    }

    #[test]
    fn malformed_faults_are_classified_by_reason() {
        assert_eq!(reason("{not json"), MalformedReason::InvalidJson);
        assert_eq!(reason("[1,2]"), MalformedReason::NotAnObject);
        assert_eq!(
            reason(&envelope(LOGGER_FAULTS, json!("a string"))),
            MalformedReason::NotAnObject
        );
        let mut d = reference_data();
        d.as_object_mut().unwrap().remove("faultId");
        assert_eq!(
            reason(&envelope(LOGGER_FAULTS, d)),
            MalformedReason::MissingField
        );
        let mut d = reference_data();
        d["faultId"] = json!("");
        assert_eq!(
            reason(&envelope(LOGGER_FAULTS, d)),
            MalformedReason::MissingField
        );
        let mut d = reference_data();
        d["faultId"] = json!(42);
        assert_eq!(
            reason(&envelope(LOGGER_FAULTS, d)),
            MalformedReason::WrongType
        );
        let mut d = reference_data();
        d["resource"] = json!("pod/x");
        assert_eq!(
            reason(&envelope(LOGGER_FAULTS, d)),
            MalformedReason::WrongType
        );
        let mut d = reference_data();
        d["resource"]["namespace"] = json!(7);
        assert_eq!(
            reason(&envelope(LOGGER_FAULTS, d)),
            MalformedReason::WrongType
        );
        let mut d = reference_data();
        d["cluster"] = json!(null);
        assert_eq!(
            reason(&envelope(LOGGER_FAULTS, d)),
            MalformedReason::WrongType
        );
    }

    #[test]
    fn empty_cluster_and_unknown_fault_types_are_accepted() {
        let mut d = reference_data();
        d["cluster"] = json!("");
        d["faultType"] = json!("ImagePullStorm");
        d["severity"] = json!("info");
        assert!(matches!(
            classify(&envelope(LOGGER_FAULTS, d)),
            Incoming::Fault { .. }
        ));
    }

    #[test]
    fn subscription_errors_carry_their_id() {
        let d =
            json!({"subscriptionId":"sub-1","cluster":"c","error":"watch failed","degraded":true});
        assert_eq!(
            classify(&envelope(LOGGER_SUBSCRIPTION_ERROR, d)),
            Incoming::SubscriptionError {
                subscription_id: "sub-1".into(),
                error: "watch failed".into()
            }
        );
    }

    #[test]
    fn tool_result_json_starts_at_the_first_brace() {
        let r = ToolResult::from_result(&json!({"content":[{"type":"text",
            "text":"# Event Subscription Created\n\n{\n  \"subscriptionId\": \"sub-5f1c2e9a\"\n}\nSubscribed {ok}."}]}));
        assert!(!r.is_error);
        assert_eq!(r.json().unwrap()["subscriptionId"], "sub-5f1c2e9a");
        let e = ToolResult::from_result(
            &json!({"isError":true,"content":[{"type":"text","text":"subscription not found"}]}),
        );
        assert!(e.is_error);
        assert_eq!(e.json(), None);
    }

    #[test]
    fn responses_match_by_id() {
        let m = json!({"jsonrpc":"2.0","id":3,"result":{}});
        assert_eq!(response_for(&m, 3), Some(Response::Result(json!({}))));
        assert_eq!(response_for(&m, 4), None);
        let e =
            json!({"jsonrpc":"2.0","id":5,"error":{"code":-32601,"message":"method not found"}});
        assert_eq!(
            response_for(&e, 5),
            Some(Response::Error {
                code: -32601,
                message: "method not found".into()
            })
        );
    }
}
