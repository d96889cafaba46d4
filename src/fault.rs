//! A fault as the MCP server reports it (`kubernetes/faults` notifications).
//!
//! This module owns the fault's shape and the faultId rule, shared by the MCP client (which parses
//! faults), the simulator (which emits them) and the store (which records them). It must not do
//! I/O.

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The object a fault is about. `namespace` is absent for cluster-scoped kinds such as Node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRef {
    #[serde(default)]
    pub api_version: String,
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default)]
    pub uid: String,
}

/// The `data` of a `kubernetes/faults` notification, field for field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    pub subscription_id: String,
    /// The server's kubeconfig context name; may be empty.
    #[serde(default)]
    pub cluster: String,
    pub fault_id: String,
    pub fault_type: String,
    pub severity: String,
    pub resource: ResourceRef,
    #[serde(default)]
    pub context: String,
    /// RFC 3339 with the server's local offset, kept as sent.
    pub timestamp: String,
}

impl Fault {
    /// The server's detection time, when `timestamp` parses as RFC 3339.
    pub fn detected_at(&self) -> Option<DateTime<FixedOffset>> {
        DateTime::parse_from_rfc3339(&self.timestamp).ok()
    }
}

/// First 16 hex characters of `sha256("{cluster}:{faultType}:{resourceUID}:{containerName}")`,
/// exactly as the server computes it (so ids are stable across sessions and restarts).
pub fn fault_id(cluster: &str, fault_type: &str, resource_uid: &str, container: &str) -> String {
    let digest = Sha256::digest(format!("{cluster}:{fault_type}:{resource_uid}:{container}"));
    hex::encode(&digest[..8])
}

/// One fault as nightcrier received it, ready to be recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedFault {
    /// The configured cluster name (not the server's context name, which may be empty).
    pub cluster: String,
    pub fault: Fault,
    pub received_at: DateTime<Utc>,
    /// The notification's `data` object exactly as received.
    pub raw: serde_json::Value,
    /// False when triage is disabled for the cluster: the incident is recorded as `skipped`.
    pub triage_enabled: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_id_matches_the_protocol_test_vectors() {
        assert_eq!(
            fault_id(
                "kind-kind",
                "CrashLoop",
                "3f0c1a52-6d7e-4b8a-9c1d-2e5f7a9b0c11",
                "app"
            ),
            "670b5093e8ce7fc6"
        );
        assert_eq!(
            fault_id(
                "kind-kind",
                "NodeUnhealthy",
                "b7e2d4c0-1111-4a2b-8c3d-000000000001",
                ""
            ),
            "aa6195597909df08"
        );
    }

    #[test]
    fn parses_the_reference_example() {
        let data = r#"{"subscriptionId":"sub-5f1c2e9a","cluster":"kind-kind","faultId":"670b5093e8ce7fc6","faultType":"CrashLoop","severity":"critical","resource":{"apiVersion":"v1","kind":"Pod","name":"crash-test-pod","namespace":"default","uid":"3f0c1a52-6d7e-4b8a-9c1d-2e5f7a9b0c11"},"context":"Container entered CrashLoopBackOff state, restart count: 3, last exit code: 1, last reason: Error","timestamp":"2025-12-19T22:11:10+01:00"}"#;
        let f: Fault = serde_json::from_str(data).expect("reference example parses");
        assert_eq!(f.resource.namespace.as_deref(), Some("default"));
        assert_eq!(
            f.detected_at().map(|t| t.with_timezone(&Utc).to_rfc3339()),
            Some("2025-12-19T21:11:10+00:00".to_string())
        );
    }
}
