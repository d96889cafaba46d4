//! The most telling lines of a bundle, most telling first: the last error lines of the previous
//! container's log, the warning events about the object and its pod and owners, the container
//! states and limits, the failing conditions. What the prompt quotes so the agent starts from
//! the evidence instead of re-fetching it.

use std::collections::HashSet;

use serde_json::Value;

use super::Bundle;

/// Lines quoted at most, and characters per line.
const MAX_LINES: usize = 40;
const MAX_LINE_CHARS: usize = 500;
/// Error lines taken from a log, and warning events.
const LOG_LINES: usize = 8;
const EVENT_LINES: usize = 8;

/// Words that make a log line worth quoting.
const TELLING: [&str; 12] = [
    "panic",
    "fatal",
    "error",
    "exception",
    "oom",
    "killed",
    "refused",
    "failed",
    "not set",
    "warn",
    "denied",
    "timeout",
];

/// One quoted line and the bundle file it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Highlight {
    pub file: String,
    pub text: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Highlights {
    pub lines: Vec<Highlight>,
    /// Calls without an answer: `tool (label): why`.
    pub gaps: Vec<String>,
}

fn clip(s: &str) -> String {
    let s = s.trim_end();
    match s.char_indices().nth(MAX_LINE_CHARS) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

fn yaml(text: Option<&str>) -> Option<Value> {
    serde_yaml_ng::from_str(text?).ok()
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(*k))?.as_str()
}

/// The highlights of `bundle`.
pub fn highlights(bundle: &Bundle) -> Highlights {
    let file_of = |label: &str| {
        bundle
            .index
            .calls
            .iter()
            .find(|c| c.label == label)
            .and_then(|c| c.file.clone())
            .unwrap_or_else(|| label.to_string())
    };
    let mut out = Highlights::default();
    let push = |out: &mut Highlights, label: &str, text: String| {
        if out.lines.len() < MAX_LINES && !text.trim().is_empty() {
            out.lines.push(Highlight {
                file: file_of(label),
                text: clip(&text),
            });
        }
    };

    // 1. The previous container's last error lines (else the current log's).
    let log_label = if bundle.text("log-previous").is_some() {
        "log-previous"
    } else {
        "log"
    };
    if let Some(log) = bundle.text(log_label) {
        for line in telling_lines(log) {
            push(&mut out, log_label, line);
        }
    }

    // 2. Warning events about the object, its pod and its owners.
    let mut names: HashSet<String> = HashSet::from([bundle_name(bundle)]);
    for label in ["pod", "owner-1", "owner-2", "object"] {
        if let Some(n) = yaml(bundle.text(label))
            .as_ref()
            .and_then(|v| s(v, &["metadata", "name"]).map(str::to_string))
        {
            names.insert(n);
        }
    }
    if let Some(Value::Array(events)) = bundle
        .text("events")
        .and_then(|t| t.split_once('\n').map(|(_, rest)| rest))
        .and_then(|rest| serde_yaml_ng::from_str::<Value>(rest).ok())
    {
        let mut seen = HashSet::new();
        let warnings: Vec<String> = events
            .iter()
            .filter(|e| e["Type"] == "Warning")
            .filter(|e| s(e, &["InvolvedObject", "Name"]).is_some_and(|n| names.contains(n)))
            .map(|e| {
                format!(
                    "Warning {} ({} {}): {}",
                    s(e, &["Reason"]).unwrap_or(""),
                    s(e, &["InvolvedObject", "Kind"]).unwrap_or(""),
                    s(e, &["InvolvedObject", "Name"]).unwrap_or(""),
                    s(e, &["Message"]).unwrap_or("")
                )
            })
            .filter(|l| seen.insert(l.clone()))
            .collect();
        let start = warnings.len().saturating_sub(EVENT_LINES);
        for w in &warnings[start..] {
            push(&mut out, "events", w.clone());
        }
    }

    // 3. The pod's containers: state, last state, limits, probes; scheduling.
    if let Some(pod) = yaml(bundle.text("pod")) {
        for line in pod_lines(&pod) {
            push(&mut out, "pod", line);
        }
    }

    // 4. The object's failing conditions (Deployment, Job, Node) and the node's metrics.
    if let Some(obj) = yaml(bundle.text("object")) {
        for line in condition_lines(&obj) {
            push(&mut out, "object", line);
        }
    }
    for label in ["owner-2", "owner-1"] {
        if let Some(obj) = yaml(bundle.text(label)) {
            for line in condition_lines(&obj) {
                push(&mut out, label, line);
            }
        }
    }

    // 5. The current log's last lines when they differ from the previous one's.
    if log_label == "log-previous" {
        if let Some(log) = bundle.text("log") {
            if bundle.text("log-previous") != Some(log) {
                for line in telling_lines(log) {
                    push(&mut out, "log", line);
                }
            }
        }
    }

    out.gaps = bundle
        .index
        .gaps()
        .map(|c| {
            format!(
                "{} ({}): {}",
                c.tool,
                c.label,
                clip(c.error.as_deref().unwrap_or("error"))
            )
        })
        .collect();
    if let Some(e) = &bundle.index.session_error {
        out.gaps
            .insert(0, format!("no evidence session: {}", clip(e)));
    }
    out
}

fn bundle_name(bundle: &Bundle) -> String {
    let r = &bundle.index.resource;
    let last = r.rsplit(' ').next().unwrap_or(r);
    last.rsplit('/').next().unwrap_or(last).to_string()
}

/// The last telling lines of a log (else its last three lines), in order.
fn telling_lines(log: &str) -> Vec<String> {
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    let telling: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| {
            let low = l.to_lowercase();
            TELLING.iter().any(|w| low.contains(w))
        })
        .collect();
    let pick = if telling.is_empty() {
        &lines[lines.len().saturating_sub(3)..]
    } else {
        &telling[telling.len().saturating_sub(LOG_LINES)..]
    };
    pick.iter().map(|l| l.to_string()).collect()
}

fn pod_lines(pod: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let empty = Vec::new();
    let statuses = pod["status"]["containerStatuses"]
        .as_array()
        .unwrap_or(&empty);
    for c in statuses {
        let name = s(c, &["name"]).unwrap_or("?");
        if let Some(w) = c["state"]["waiting"].as_object() {
            let reason = w.get("reason").and_then(Value::as_str).unwrap_or("");
            let msg = w.get("message").and_then(Value::as_str).unwrap_or("");
            out.push(format!("container {name}: waiting {reason} {msg}"));
        }
        for (when, t) in [
            ("terminated", &c["state"]["terminated"]),
            ("last terminated", &c["lastState"]["terminated"]),
        ] {
            if t.is_object() {
                out.push(format!(
                    "container {name}: {when} with reason {} (exit code {}), restarts {}",
                    s(t, &["reason"]).unwrap_or("?"),
                    t["exitCode"],
                    c["restartCount"]
                ));
            }
        }
    }
    for c in pod["spec"]["containers"].as_array().unwrap_or(&empty) {
        let name = s(c, &["name"]).unwrap_or("?");
        let r = &c["resources"];
        if r.is_object() && r.as_object().is_some_and(|m| !m.is_empty()) {
            out.push(format!(
                "container {name}: resources {}",
                serde_json::to_string(r).unwrap_or_default()
            ));
        }
        if let Some(p) = c.get("readinessProbe") {
            let ports: Vec<String> = c["ports"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .map(|p| p["containerPort"].to_string())
                .collect();
            out.push(format!(
                "container {name}: readinessProbe {} (containerPorts: {})",
                serde_json::to_string(p).unwrap_or_default(),
                ports.join(", ")
            ));
        }
        if let Some(image) = s(c, &["image"]) {
            out.push(format!("container {name}: image {image}"));
        }
    }
    out.extend(condition_lines(pod));
    out
}

/// Conditions that say something is wrong (`Ready` not True, `*Pressure` not False, ...).
fn condition_lines(obj: &Value) -> Vec<String> {
    let kind = s(obj, &["kind"]).unwrap_or("");
    let name = s(obj, &["metadata", "name"]).unwrap_or("");
    let empty = Vec::new();
    obj["status"]["conditions"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .filter(|c| {
            let typ = s(c, &["type"]).unwrap_or("");
            let status = s(c, &["status"]).unwrap_or("");
            let bad_when_true = typ.ends_with("Pressure")
                || typ == "NetworkUnavailable"
                || typ == "Failed"
                || typ == "ReplicaFailure";
            if bad_when_true {
                status != "False"
            } else {
                status != "True"
            }
        })
        .map(|c| {
            format!(
                "{kind} {name} condition {}={}: {} {}",
                s(c, &["type"]).unwrap_or(""),
                s(c, &["status"]).unwrap_or(""),
                s(c, &["reason"]).unwrap_or(""),
                s(c, &["message"]).unwrap_or("")
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines_come_last_few_and_in_order() {
        let log = "INFO start\nINFO loading\npanic: DATABASE_URL is not set\n\ngoroutine 1\n";
        assert_eq!(telling_lines(log), vec!["panic: DATABASE_URL is not set"]);
        assert_eq!(telling_lines("a\nb\nc\nd\n"), vec!["b", "c", "d"]);
    }

    #[test]
    fn conditions_that_are_fine_are_not_quoted() {
        let node: Value = serde_json::json!({"kind": "Node", "metadata": {"name": "n1"},
            "status": {"conditions": [
                {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown", "message": "Kubelet stopped posting node status."},
                {"type": "MemoryPressure", "status": "False"},
                {"type": "DiskPressure", "status": "True", "reason": "KubeletHasDiskPressure", "message": "disk"}]}});
        let lines = condition_lines(&node);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("Ready=Unknown"));
    }
}
