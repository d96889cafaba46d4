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

/// Characters Kubernetes uses for generated name suffixes (`k8s.io/apimachinery` rand: no
/// vowels, no 0/1/3, so that no word and no ambiguous digit appears).
const GENERATED_ALPHABET: &str = "bcdfghjklmnpqrstvwxz2456789";

fn generated(segment: &str, len: std::ops::RangeInclusive<usize>) -> bool {
    len.contains(&segment.len()) && segment.chars().all(|c| GENERATED_ALPHABET.contains(c))
}

/// The workload a pod most likely belongs to, from its name as the controllers generate it:
/// `<deployment>-<pod-template-hash>-<5>` (Deployment), `<owner>-<5>` (ReplicaSet, DaemonSet,
/// Job), `<statefulset>-<ordinal>`. `None` for a name that carries no such suffix.
///
/// The name is the only owner information a fault carries (its event has no ownerReferences),
/// and evidence is gathered only when a run starts, after the fault was recorded. A false match
/// joins two pods of similarly named workloads in one namespace into one investigation, which
/// the report shows (related faults are listed): cheaper than 200 investigations.
pub fn pod_owner(pod_name: &str) -> Option<&str> {
    let (rest, last) = pod_name.rsplit_once('-')?;
    if rest.is_empty() {
        return None;
    }
    if !last.is_empty() && last.len() <= 5 && last.bytes().all(|b| b.is_ascii_digit()) {
        return Some(rest);
    }
    if !generated(last, 5..=5) {
        return None;
    }
    match rest.rsplit_once('-') {
        Some((owner, hash)) if !owner.is_empty() && generated(hash, 6..=10) => Some(owner),
        _ => Some(rest),
    }
}

impl Fault {
    /// The key that makes faults *related*: the same workload (pods of one owner, see
    /// [`pod_owner`]) or the same object (uid), in one namespace. Faults with equal keys in one
    /// cluster are investigated together. `None` when the fault names no object.
    pub fn related_key(&self) -> Option<String> {
        let r = &self.resource;
        let ns = r.namespace.as_deref().unwrap_or("");
        if r.kind == "Pod" {
            if let Some(owner) = pod_owner(&r.name) {
                return Some(format!("owner:{ns}/{owner}"));
            }
        }
        if r.uid.is_empty() {
            None
        } else {
            Some(format!("uid:{}", r.uid))
        }
    }
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

/// Bytes of a fault's `context` that are kept. The context is stored three times (incident,
/// occurrence, raw notification) and held in the ingest buffer, and a server may send megabytes
/// of it; what triage needs fits well within this.
pub const MAX_CONTEXT_BYTES: usize = 64 * 1024;
/// Bytes kept of every other text field (names, ids, types: a few dozen in practice).
pub const MAX_FIELD_BYTES: usize = 1024;
/// Bytes of the raw notification kept as received; a larger one is replaced by the fault's own
/// (bounded) fields.
pub const MAX_RAW_BYTES: usize = MAX_CONTEXT_BYTES + 16 * MAX_FIELD_BYTES;
/// Set in a raw notification that was replaced because it was over the bounds.
pub const RAW_TRUNCATED_KEY: &str = "nightcrierTruncated";

/// Cuts `s` to at most `max` bytes (at a character boundary) and appends a marker saying how
/// much was cut; returns whether it did. The marker is ASCII so it survives every output.
pub fn truncate_text(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let cut = s.len() - end;
    s.truncate(end);
    s.push_str(&format!(" [... {cut} bytes cut by nightcrier]"));
    // truncate keeps the allocation: without this the cut text would still hold its megabytes.
    s.shrink_to_fit();
    true
}

/// Length of `v` as compact JSON, without building the text.
fn json_len(v: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing to a counter cannot fail.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

impl ReceivedFault {
    /// The fault with every text field within its bound ([`MAX_CONTEXT_BYTES`],
    /// [`MAX_FIELD_BYTES`], [`MAX_RAW_BYTES`]), each cut one marked. The one place these bounds
    /// are applied: the ingest buffer calls it on every fault it takes.
    pub fn bounded(mut self) -> Self {
        let f = &mut self.fault;
        let mut cut = truncate_text(&mut f.context, MAX_CONTEXT_BYTES);
        for field in [
            &mut self.cluster,
            &mut f.subscription_id,
            &mut f.cluster,
            &mut f.fault_id,
            &mut f.fault_type,
            &mut f.severity,
            &mut f.timestamp,
            &mut f.resource.api_version,
            &mut f.resource.kind,
            &mut f.resource.name,
            &mut f.resource.uid,
        ] {
            cut |= truncate_text(field, MAX_FIELD_BYTES);
        }
        if let Some(ns) = &mut f.resource.namespace {
            cut |= truncate_text(ns, MAX_FIELD_BYTES);
        }
        if cut || json_len(&self.raw) > MAX_RAW_BYTES {
            let mut raw = serde_json::to_value(&self.fault).unwrap_or_default();
            if let Some(obj) = raw.as_object_mut() {
                obj.insert(RAW_TRUNCATED_KEY.into(), true.into());
            }
            self.raw = raw;
        }
        self
    }

    /// About how many bytes the fault holds in memory (its texts and raw notification), for
    /// the ingest buffer's byte bound.
    pub fn size_bytes(&self) -> usize {
        let f = &self.fault;
        let r = &f.resource;
        self.cluster.len()
            + f.subscription_id.len()
            + f.cluster.len()
            + f.fault_id.len()
            + f.fault_type.len()
            + f.severity.len()
            + f.context.len()
            + f.timestamp.len()
            + r.api_version.len()
            + r.kind.len()
            + r.name.len()
            + r.namespace.as_ref().map_or(0, String::len)
            + r.uid.len()
            + json_len(&self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_texts_are_cut_with_a_marker_and_raw_is_replaced() {
        let data = r#"{"subscriptionId":"s","cluster":"c","faultId":"f","faultType":"CrashLoop","severity":"critical","resource":{"kind":"Pod","name":"p","uid":"u"},"context":"x","timestamp":"t"}"#;
        let mut fault: Fault = serde_json::from_str(data).expect("parses");
        fault.context = "é".repeat(MAX_CONTEXT_BYTES);
        let raw = serde_json::to_value(&fault).expect("json");
        let r = ReceivedFault {
            cluster: "c".into(),
            fault,
            received_at: Utc::now(),
            raw,
            triage_enabled: true,
        }
        .bounded();
        assert!(r.fault.context.len() < MAX_CONTEXT_BYTES + 64);
        assert!(r.fault.context.ends_with(&format!(
            " [... {} bytes cut by nightcrier]",
            MAX_CONTEXT_BYTES
        )));
        assert_eq!(r.raw[RAW_TRUNCATED_KEY], true);
        assert_eq!(r.raw["context"], r.fault.context.as_str());
        assert!(r.size_bytes() < 3 * MAX_CONTEXT_BYTES);
    }

    #[test]
    fn pod_owner_strips_generated_suffixes_only() {
        assert_eq!(pod_owner("checkout-7d9c8b6f5d-x2x4q"), Some("checkout"));
        assert_eq!(
            pod_owner("checkout-api-5f6b7c8d9-kq2zt"),
            Some("checkout-api")
        );
        assert_eq!(pod_owner("node-exporter-4xk2p"), Some("node-exporter"));
        assert_eq!(pod_owner("postgres-0"), Some("postgres"));
        assert_eq!(pod_owner("kafka-12"), Some("kafka"));
        // A word suffix (vowels), a bare name, a leading dash: no owner.
        assert_eq!(pod_owner("my-debug"), None);
        assert_eq!(pod_owner("standalone"), None);
        assert_eq!(pod_owner("-x2x4q"), None);
        assert_eq!(pod_owner("api-abcde"), None);
    }

    #[test]
    fn related_key_is_the_owner_for_pods_and_the_uid_otherwise() {
        let mut f: Fault = serde_json::from_value(serde_json::json!({
            "subscriptionId": "s", "faultId": "f", "faultType": "CrashLoop", "severity": "critical",
            "resource": {"kind": "Pod", "name": "web-6c9f8d7b4-zq2xw", "namespace": "shop", "uid": "u1"},
            "timestamp": ""
        }))
        .unwrap();
        assert_eq!(f.related_key().as_deref(), Some("owner:shop/web"));
        f.resource.name = "web".into();
        assert_eq!(f.related_key().as_deref(), Some("uid:u1"));
        f.resource.kind = "Node".into();
        f.resource.uid.clear();
        assert_eq!(f.related_key(), None);
    }

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
