//! Which tool calls make the evidence for a fault, by the faulted object's kind, in stages: the
//! first stage needs only the fault; later stages follow what earlier answers showed (a pod's
//! owner, a workload's pods).

use std::collections::HashMap;

use serde_json::{json, Value};

use super::Target;

/// One tool call to make.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Call {
    pub label: String,
    pub tool: &'static str,
    pub args: Value,
}

fn call(label: &str, tool: &'static str, args: Value) -> Call {
    Call {
        label: label.to_string(),
        tool,
        args,
    }
}

/// The apiVersion of the kinds faults are about (the fault carries it, the incident does not).
pub(crate) fn api_version(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "Pod" | "Node" | "Service" | "PersistentVolumeClaim" | "PersistentVolume" => "v1",
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => "apps/v1",
        "Job" | "CronJob" => "batch/v1",
        _ => return None,
    })
}

fn pod_calls(ns: &str, pod: &str, tail: u32) -> Vec<Call> {
    vec![
        call("pod", "pods_get", json!({"name": pod, "namespace": ns})),
        call(
            "log",
            "pods_log",
            json!({"name": pod, "namespace": ns, "tail": tail}),
        ),
        call(
            "log-previous",
            "pods_log",
            json!({"name": pod, "namespace": ns, "previous": true, "tail": tail}),
        ),
    ]
}

/// The calls that need nothing but the fault.
pub(crate) fn first(t: &Target<'_>, tail: u32) -> Vec<Call> {
    let ns = t.namespace.unwrap_or("default");
    match t.kind {
        "Pod" => {
            let mut calls = pod_calls(ns, t.name, tail);
            calls.push(call("events", "events_list", json!({"namespace": ns})));
            calls
        }
        "Node" => vec![
            call(
                "object",
                "resources_get",
                json!({"apiVersion": "v1", "kind": "Node", "name": t.name}),
            ),
            // Node events are recorded in the default namespace.
            call("events", "events_list", json!({"namespace": "default"})),
            call("node-top", "nodes_top", json!({"name": t.name})),
        ],
        kind => {
            let mut calls = Vec::new();
            if let Some(api) = api_version(kind) {
                calls.push(call(
                    "object",
                    "resources_get",
                    json!({"apiVersion": api, "kind": kind, "name": t.name, "namespace": ns}),
                ));
            }
            calls.push(call("events", "events_list", json!({"namespace": ns})));
            calls
        }
    }
}

/// The calls that follow from what was gathered so far (`texts`: answered calls by label).
pub(crate) fn next(
    t: &Target<'_>,
    texts: &HashMap<String, String>,
    done: &dyn Fn(&str) -> bool,
    tail: u32,
) -> Vec<Call> {
    let ns = t.namespace.unwrap_or("default");
    let mut calls = Vec::new();
    // The controller chain: the pod's owner, then its owner (ReplicaSet → Deployment).
    let chain = [("pod", "owner-1"), ("owner-1", "owner-2")];
    for (from, label) in chain {
        if done(label) {
            continue;
        }
        if let Some((api, kind, name)) = texts.get(from).and_then(|y| controller_of(y)) {
            calls.push(call(
                label,
                "resources_get",
                json!({"apiVersion": api, "kind": kind, "name": name, "namespace": ns}),
            ));
        }
    }
    // A workload's pods, then the first unhealthy one in detail.
    if t.kind != "Pod" && t.kind != "Node" && !done("pods") {
        if let Some(selector) = texts.get("object").and_then(|y| selector_of(y)) {
            calls.push(call(
                "pods",
                "pods_list_in_namespace",
                json!({"namespace": ns, "labelSelector": selector}),
            ));
        }
    }
    if t.kind != "Pod" && !done("pod") {
        if let Some(pod) = texts.get("pods").and_then(|table| unhealthy_pod(table)) {
            calls.extend(pod_calls(ns, &pod, tail));
        }
    }
    calls
}

fn parse_yaml(text: &str) -> Option<Value> {
    serde_yaml_ng::from_str(text).ok()
}

/// (apiVersion, kind, name) of the object's controller, from its YAML.
fn controller_of(yaml: &str) -> Option<(String, String, String)> {
    let v = parse_yaml(yaml)?;
    let refs = v.get("metadata")?.get("ownerReferences")?.as_array()?;
    let r = refs
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .or_else(|| refs.first())?;
    let s = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_string);
    Some((s("apiVersion")?, s("kind")?, s("name")?))
}

/// `spec.selector.matchLabels` as an equality selector (`a=b,c=d`).
fn selector_of(yaml: &str) -> Option<String> {
    let v = parse_yaml(yaml)?;
    let labels = v
        .get("spec")?
        .get("selector")?
        .get("matchLabels")?
        .as_object()?;
    let s: Vec<String> = labels
        .iter()
        .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}={v}")))
        .collect();
    (!s.is_empty()).then(|| s.join(","))
}

/// The first pod of a pod table that is not fully ready (else the first pod).
fn unhealthy_pod(table: &str) -> Option<String> {
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next()?.split_whitespace().collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (name_at, ready_at) = (col("NAME")?, col("READY"));
    let mut first = None;
    for line in lines {
        let cells: Vec<&str> = line.split_whitespace().collect();
        let Some(name) = cells.get(name_at) else {
            continue;
        };
        first.get_or_insert_with(|| name.to_string());
        let ready = ready_at
            .and_then(|i| cells.get(i))
            .and_then(|r| r.split_once('/'));
        if ready.is_some_and(|(a, b)| a != b) {
            return Some(name.to_string());
        }
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_owners_and_picks_the_unready_pod() {
        let pod = "metadata:\n  ownerReferences:\n  - apiVersion: apps/v1\n    kind: ReplicaSet\n    name: api-7d9\n    controller: true\n";
        assert_eq!(
            controller_of(pod),
            Some(("apps/v1".into(), "ReplicaSet".into(), "api-7d9".into()))
        );
        let dep = "spec:\n  selector:\n    matchLabels:\n      app: web\n";
        assert_eq!(selector_of(dep).as_deref(), Some("app=web"));
        let table = "NAMESPACE   APIVERSION   KIND   NAME   READY   STATUS\nshop   v1   Pod   web-a   1/1   Running\nshop   v1   Pod   web-b   0/1   ImagePullBackOff\n";
        assert_eq!(unhealthy_pod(table).as_deref(), Some("web-b"));
        assert_eq!(unhealthy_pod("garbage"), None);
    }
}
