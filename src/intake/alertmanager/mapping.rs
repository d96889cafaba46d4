//! One alert onto nightcrier's fault shape, by the configured label names
//! (`intake.alertmanager.mapping`).
//!
//! The fault id is `am-` and the alert's fingerprint (a hash of its labels; computed the same way
//! from the labels when a sender leaves it out), so repeats and the later `resolved` notification
//! of one alert find the same incident. The context text carries what the agent needs beyond the
//! fault fields — summary, description, runbook and source links, labels and annotations — so
//! the prompt shows it without knowing about alerts.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::payload::{Alert, AlertStatus};
use crate::config::AlertMappingConfig;
use crate::fault::{Fault, ReceivedFault, ResourceRef};

/// Longest context text stored per alert.
pub const MAX_CONTEXT_BYTES: usize = 8 * 1024;
/// Longest single label or annotation value kept (a fault field or a context line).
const MAX_VALUE_BYTES: usize = 1024;
/// Longest fingerprint accepted as a fault id.
const MAX_FINGERPRINT_BYTES: usize = 64;
/// Annotations shown on their own lines, in this order, before the rest.
const NAMED_ANNOTATIONS: [(&str, &str); 3] = [
    ("summary", "Summary"),
    ("description", "Description"),
    ("runbook_url", "Runbook"),
];

/// What the cluster label resolves to.
#[derive(Debug, Clone)]
pub struct Clusters {
    /// Configured cluster name → whether triage is enabled for it.
    known: HashMap<String, bool>,
    default: Option<String>,
}

impl Clusters {
    pub fn new(known: impl IntoIterator<Item = (String, bool)>, default: Option<String>) -> Self {
        Self {
            known: known.into_iter().collect(),
            default,
        }
    }

    fn resolve(&self, label: Option<&str>) -> Option<(&str, bool)> {
        let pick = |name: &str| {
            self.known
                .get_key_value(name)
                .map(|(k, t)| (k.as_str(), *t))
        };
        label
            .and_then(pick)
            .or_else(|| self.default.as_deref().and_then(pick))
    }
}

/// One alert, ready for the store.
#[derive(Debug)]
pub enum Mapped {
    Firing(Box<ReceivedFault>),
    Resolved {
        cluster: String,
        fault_id: String,
        at: DateTime<Utc>,
    },
}

/// Why an alert was not taken (the rest of its request still is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The cluster label names no configured cluster and there is no default.
    UnknownCluster(Option<String>),
}

impl Rejection {
    /// The `reason` label of the rejection counter.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::UnknownCluster(_) => "unknown_cluster",
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::UnknownCluster(Some(c)) => {
                write!(f, "cluster {c:?} is not configured (clusters[].name)")
            }
            Rejection::UnknownCluster(None) => {
                write!(
                    f,
                    "the alert has no cluster label and no default_cluster is set"
                )
            }
        }
    }
}

pub fn map(
    alert: &Alert,
    raw: &serde_json::Value,
    m: &AlertMappingConfig,
    clusters: &Clusters,
    receiver: &str,
    now: DateTime<Utc>,
) -> Result<Mapped, Rejection> {
    let label = |name: &str| alert.labels.get(name).map(|v| clean(v, MAX_VALUE_BYTES));
    let cluster_label = label(&m.cluster_label).filter(|c| !c.is_empty());
    let (cluster, triage_enabled) = clusters
        .resolve(cluster_label.as_deref())
        .ok_or(Rejection::UnknownCluster(cluster_label))?;
    let fault_id = fault_id(alert);
    if alert.status == AlertStatus::Resolved {
        let at = timestamp(&alert.ends_at)
            .filter(|t| *t <= now)
            .unwrap_or(now);
        return Ok(Mapped::Resolved {
            cluster: cluster.to_string(),
            fault_id,
            at,
        });
    }
    let fault_type = label(&m.fault_type_label)
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "Alert".to_string());
    let (kind, name) = m
        .resource_labels
        .iter()
        .find_map(|l| label(l).filter(|v| !v.is_empty()).map(|v| (kind_of(l), v)))
        .unwrap_or_else(|| ("Alert".to_string(), fault_type.clone()));
    let fault = Fault {
        subscription_id: clean(&format!("alertmanager:{receiver}"), MAX_VALUE_BYTES),
        cluster: cluster.to_string(),
        fault_id,
        severity: label(&m.severity_label)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| m.default_severity.clone()),
        resource: ResourceRef {
            api_version: String::new(),
            kind,
            name,
            namespace: label(&m.namespace_label).filter(|n| !n.is_empty()),
            uid: String::new(),
        },
        context: context(alert, &fault_type),
        fault_type,
        timestamp: clean(&alert.starts_at, MAX_VALUE_BYTES),
    };
    Ok(Mapped::Firing(Box::new(ReceivedFault {
        cluster: cluster.to_string(),
        fault,
        received_at: now,
        raw: raw.clone(),
        triage_enabled,
    })))
}

/// `am-` + the fingerprint when it is a plain token, else a hash of the sorted labels.
fn fault_id(alert: &Alert) -> String {
    let fp = alert.fingerprint.trim();
    if !fp.is_empty()
        && fp.len() <= MAX_FINGERPRINT_BYTES
        && fp
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return format!("am-{fp}");
    }
    let mut h = Sha256::new();
    for (k, v) in &alert.labels {
        h.update(k.as_bytes());
        h.update([0xff]);
        h.update(v.as_bytes());
        h.update([0xfe]);
    }
    format!("am-{}", hex::encode(&h.finalize()[..8]))
}

/// `statefulset` → `StatefulSet`: the Kubernetes kind a resource label stands for.
fn kind_of(label: &str) -> String {
    match label {
        "pod" => "Pod".into(),
        "deployment" => "Deployment".into(),
        "statefulset" => "StatefulSet".into(),
        "daemonset" => "DaemonSet".into(),
        "replicaset" => "ReplicaSet".into(),
        "job" | "job_name" => "Job".into(),
        "cronjob" => "CronJob".into(),
        "node" => "Node".into(),
        "service" => "Service".into(),
        "persistentvolumeclaim" => "PersistentVolumeClaim".into(),
        other => {
            let mut c = other.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect())
                .unwrap_or_default()
        }
    }
}

fn context(a: &Alert, fault_type: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Alert {fault_type} firing since {}",
        clean(&a.starts_at, 64)
    );
    for (key, title) in NAMED_ANNOTATIONS {
        if let Some(v) = a.annotations.get(key).filter(|v| !v.trim().is_empty()) {
            let _ = writeln!(s, "{title}: {}", clean(v, MAX_VALUE_BYTES));
        }
    }
    for (title, url) in [
        ("Source (generatorURL)", &a.generator_url),
        ("Dashboard", &a.dashboard_url),
        ("Panel", &a.panel_url),
        ("Silence", &a.silence_url),
    ] {
        if !url.trim().is_empty() {
            let _ = writeln!(s, "{title}: {}", clean(url, MAX_VALUE_BYTES));
        }
    }
    if !a.value_string.trim().is_empty() {
        let _ = writeln!(s, "Values: {}", clean(&a.value_string, MAX_VALUE_BYTES));
    }
    let _ = writeln!(s, "Labels: {}", pairs(&a.labels, |_| true));
    let others = pairs(&a.annotations, |k| {
        !NAMED_ANNOTATIONS.iter().any(|(n, _)| *n == k)
    });
    if !others.is_empty() {
        let _ = writeln!(s, "Annotations: {others}");
    }
    clean(s.trim_end(), MAX_CONTEXT_BYTES)
}

fn pairs(map: &BTreeMap<String, String>, keep: impl Fn(&str) -> bool) -> String {
    map.iter()
        .filter(|(k, _)| keep(k))
        .map(|(k, v)| format!("{}={}", clean(k, 128), clean(v, MAX_VALUE_BYTES)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Without NUL characters (the store refuses them) and at most `max` bytes, cut on a character
/// boundary.
fn clean(s: &str, max: usize) -> String {
    let mut out: String = s.chars().filter(|&c| c != '\0').collect();
    if out.len() > max {
        let mut end = max;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

/// RFC 3339, and not Go's zero time (`0001-01-01T00:00:00Z`), which means "unknown".
fn timestamp(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
        .filter(|t| t.timestamp() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::alertmanager::payload;

    fn clusters() -> Clusters {
        Clusters::new(
            [("prod".to_string(), true), ("lab".to_string(), false)],
            None,
        )
    }

    fn one(json: &str) -> (Alert, serde_json::Value) {
        let body = format!(r#"{{"alerts":[{json}]}}"#);
        let (hook, mut alerts) = payload::parse(body.as_bytes()).expect("parses");
        (alerts.remove(0), hook.alerts[0].clone())
    }

    #[test]
    fn a_firing_alert_maps_labels_annotations_and_links() {
        let (a, raw) = one(
            r#"{"status":"firing","labels":{"alertname":"KubePodCrashLooping","cluster":"prod",
            "namespace":"shop","pod":"cart-7d9","container":"app","severity":"critical"},
            "annotations":{"summary":"Pod is crash looping","description":"restarts 5 times",
            "runbook_url":"https://runbooks.example/KubePodCrashLooping","team":"payments"},
            "startsAt":"2026-12-01T10:00:00Z","endsAt":"0001-01-01T00:00:00Z",
            "generatorURL":"http://prometheus:9090/graph?g0.expr=x","fingerprint":"c0ffee1234abcd99"}"#,
        );
        let m = map(
            &a,
            &raw,
            &AlertMappingConfig::default(),
            &clusters(),
            "nc",
            Utc::now(),
        );
        let Ok(Mapped::Firing(f)) = m else {
            panic!("firing expected, got {m:?}")
        };
        assert_eq!(f.cluster, "prod");
        assert!(f.triage_enabled);
        assert_eq!(f.fault.fault_id, "am-c0ffee1234abcd99");
        assert_eq!(f.fault.fault_type, "KubePodCrashLooping");
        assert_eq!(f.fault.severity, "critical");
        assert_eq!(f.fault.resource.kind, "Pod");
        assert_eq!(f.fault.resource.name, "cart-7d9");
        assert_eq!(f.fault.resource.namespace.as_deref(), Some("shop"));
        assert_eq!(f.fault.timestamp, "2026-12-01T10:00:00Z");
        assert_eq!(f.fault.subscription_id, "alertmanager:nc");
        let ctx = &f.fault.context;
        assert!(ctx.contains("Summary: Pod is crash looping"), "{ctx}");
        assert!(ctx.contains("Description: restarts 5 times"), "{ctx}");
        assert!(
            ctx.contains("Runbook: https://runbooks.example/KubePodCrashLooping"),
            "{ctx}"
        );
        assert!(
            ctx.contains("Source (generatorURL): http://prometheus:9090/graph?g0.expr=x"),
            "{ctx}"
        );
        assert!(ctx.contains("container=app"), "{ctx}");
        assert!(ctx.contains("Annotations: team=payments"), "{ctx}");
        assert_eq!(f.raw, raw, "the alert is stored as received");
    }

    #[test]
    fn defaults_when_labels_are_missing_and_other_label_names() {
        let (a, raw) = one(
            r#"{"status":"firing","labels":{"name":"DiskFull","where":"lab","kube_node":"n1"}}"#,
        );
        let cfg = AlertMappingConfig {
            cluster_label: "where".into(),
            fault_type_label: "name".into(),
            resource_labels: vec!["kube_node".into()],
            ..Default::default()
        };
        let Ok(Mapped::Firing(f)) = map(&a, &raw, &cfg, &clusters(), "r", Utc::now()) else {
            panic!("firing expected")
        };
        assert_eq!(f.cluster, "lab");
        assert!(!f.triage_enabled, "triage follows the cluster's setting");
        assert_eq!(f.fault.fault_type, "DiskFull");
        assert_eq!(f.fault.severity, "warning");
        assert_eq!(
            (
                f.fault.resource.kind.as_str(),
                f.fault.resource.name.as_str()
            ),
            ("Kube_node", "n1")
        );
        assert!(f.fault.resource.namespace.is_none());
        assert!(f.fault.fault_id.starts_with("am-") && f.fault.fault_id.len() == 19);
        // No resource label at all: the alert itself is the resource.
        let (a, raw) =
            one(r#"{"status":"firing","labels":{"alertname":"Watchdog","cluster":"prod"}}"#);
        let Ok(Mapped::Firing(f)) = map(
            &a,
            &raw,
            &AlertMappingConfig::default(),
            &clusters(),
            "r",
            Utc::now(),
        ) else {
            panic!("firing expected")
        };
        assert_eq!(
            (
                f.fault.resource.kind.as_str(),
                f.fault.resource.name.as_str()
            ),
            ("Alert", "Watchdog")
        );
    }

    #[test]
    fn unknown_clusters_are_rejected_unless_a_default_is_set() {
        let (a, raw) =
            one(r#"{"status":"firing","labels":{"alertname":"X","cluster":"elsewhere"}}"#);
        let cfg = AlertMappingConfig::default();
        let err = map(&a, &raw, &cfg, &clusters(), "r", Utc::now()).expect_err("unknown");
        assert_eq!(err, Rejection::UnknownCluster(Some("elsewhere".into())));
        assert!(err.to_string().contains("\"elsewhere\""));
        let with_default = Clusters::new([("prod".to_string(), true)], Some("prod".into()));
        let Ok(Mapped::Firing(f)) = map(&a, &raw, &cfg, &with_default, "r", Utc::now()) else {
            panic!("mapped to the default")
        };
        assert_eq!(f.cluster, "prod");
    }

    #[test]
    fn a_resolved_alert_carries_its_end_time_and_the_same_fault_id() {
        let now = Utc::now();
        let (a, raw) = one(
            r#"{"status":"resolved","labels":{"alertname":"X","cluster":"prod"},
            "endsAt":"2026-01-01T00:00:00Z","fingerprint":"abc"}"#,
        );
        let Ok(Mapped::Resolved {
            cluster,
            fault_id,
            at,
        }) = map(
            &a,
            &raw,
            &AlertMappingConfig::default(),
            &clusters(),
            "r",
            now,
        )
        else {
            panic!("resolved expected")
        };
        assert_eq!((cluster.as_str(), fault_id.as_str()), ("prod", "am-abc"));
        assert_eq!(at.to_rfc3339(), "2026-01-01T00:00:00+00:00");
        // An end in the future (a sender's clock ahead) is taken as now.
        let (a, raw) = one(
            r#"{"status":"resolved","labels":{"cluster":"prod"},"endsAt":"2999-01-01T00:00:00Z"}"#,
        );
        let Ok(Mapped::Resolved { at, .. }) = map(
            &a,
            &raw,
            &AlertMappingConfig::default(),
            &clusters(),
            "r",
            now,
        ) else {
            panic!("resolved expected")
        };
        assert_eq!(at, now);
    }

    #[test]
    fn text_is_bounded_and_loses_nul_characters() {
        let long = "é".repeat(10_000);
        let json = serde_json::json!({"status":"firing","labels":{"cluster":"prod","alertname":"A\u{0}B"},
            "annotations":{"description": long, "x": long, "y": long, "z": long, "w": long, "v": long, "u": long, "t": long, "s": long}});
        let (a, raw) = one(&json.to_string());
        let Ok(Mapped::Firing(f)) = map(
            &a,
            &raw,
            &AlertMappingConfig::default(),
            &clusters(),
            "r",
            Utc::now(),
        ) else {
            panic!("firing expected")
        };
        assert_eq!(f.fault.fault_type, "AB");
        assert!(f.fault.context.len() <= MAX_CONTEXT_BYTES);
        assert!(!f.fault.context.contains('\0'));
    }
}
