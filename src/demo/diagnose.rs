//! The demo agent's "reasoning": reads the evidence bundle nightcrier gathered and recognises
//! the simulated scenarios' tell-tale lines, so the demo report names the real root cause and
//! cites the evidence file that shows it. Anything else is reported as inconclusive.

use serde_json::Value;

use crate::evidence::Bundle;

/// A root cause found in the evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    pub root_cause: String,
    pub category: &'static str,
    pub confidence: &'static str,
    /// Evidence files (`evidence/NN-label.ext`) that show it.
    pub evidence: Vec<String>,
    /// The line that shows it.
    pub quote: String,
    pub action: String,
}

/// `(evidence/file, text)` of each answered call; for events (a namespace's, not only the
/// object's), only the warnings about the object, its pod and owners.
fn files(b: &Bundle) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = b
        .index
        .calls
        .iter()
        .filter(|c| c.label != "events")
        .filter_map(|c| {
            let text = b.text(&c.label)?;
            Some((format!("evidence/{}", c.file.as_deref()?), text.to_string()))
        })
        .collect();
    let h = crate::evidence::highlights(b);
    let events = h.lines.iter().filter(|l| l.file.ends_with("-events.yaml"));
    out.extend(events.map(|l| (format!("evidence/{}", l.file), l.text.clone())));
    out
}

fn find_line<'a>(files: &'a [(String, String)], needles: &[&str]) -> Option<(String, &'a str)> {
    files.iter().find_map(|(f, t)| {
        t.lines()
            .find(|l| needles.iter().all(|n| l.contains(n)))
            .map(|l| (f.clone(), l.trim()))
    })
}

/// The text between `start` and the next `end` after it.
fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = s.find(start)? + start.len();
    let to = s[from..].find(end)? + from;
    Some(&s[from..to])
}

fn container_field(b: &Bundle, path: &[&str]) -> Option<String> {
    let pod: Value = serde_yaml_ng::from_str(b.text("pod")?).ok()?;
    let c = pod.get("spec")?.get("containers")?.get(0)?;
    let v = path.iter().try_fold(c, |v, k| v.get(*k))?;
    v.as_str()
        .map(str::to_string)
        .or_else(|| Some(v.to_string()))
}

pub fn diagnose(b: &Bundle) -> Option<Diagnosis> {
    let files = files(b);
    let d = |root_cause: String, category, evidence: Vec<String>, quote: &str, action: String| {
        Diagnosis {
            root_cause,
            category,
            confidence: "high",
            evidence,
            quote: quote.to_string(),
            action,
        }
    };
    if let Some((f, line)) = find_line(&files, &["required environment variable", "is not set"]) {
        let var = between(line, "variable ", " is not set").unwrap_or("a variable");
        return Some(d(
            format!("The container exits at start because the required environment variable {var} is not set (panic in the previous container's log)."),
            "configuration",
            vec![f],
            line,
            format!("Restore {var} in the workload's environment (or the Secret it came from) and roll out; compare the env with the last working revision."),
        ));
    }
    if let Some((f, line)) = find_line(&files, &["reason OOMKilled"])
        .or_else(|| find_line(&files, &["reason: OOMKilled"]))
    {
        let limit = container_field(b, &["resources", "limits", "memory"])
            .unwrap_or_else(|| "its limit".into());
        return Some(d(
            format!("The container is OOMKilled: its memory limit of {limit} is below what the app uses while warming its cache (last terminated with reason OOMKilled, exit code 137)."),
            "resources",
            vec![f],
            line,
            format!("Raise the memory limit above the observed peak (it is {limit}), or bound the cache warm-up; set GOMEMLIMIT below the limit."),
        ));
    }
    if let Some((f, line)) = find_line(&files, &["Failed to pull image", "not found"]) {
        let image = between(line, "Failed to pull image \"", "\"").unwrap_or("the image");
        return Some(d(
            format!("The pods cannot start because the image {image} does not exist in the registry (pull fails with not found): the tag is wrong."),
            "image",
            vec![f],
            line,
            "Fix the image tag in the Deployment (or push the missing tag) and roll out; `kubectl rollout undo` restores the last working image.".into(),
        ));
    }
    if let Some((f, line)) = find_line(&files, &["Readiness probe failed", "connection refused"]) {
        let probe_port = between(line, "dial tcp ", ": connect")
            .and_then(|a| a.rsplit(':').next())
            .unwrap_or("?");
        let listen = find_line(&files, &["listening on :"]);
        let app_port = listen
            .as_ref()
            .and_then(|(_, l)| l.rsplit(':').next())
            .unwrap_or("another port");
        let mut evidence = vec![f];
        evidence.extend(listen.as_ref().map(|(f, _)| f.clone()));
        return Some(d(
            format!("The readiness probe checks port {probe_port} but the app listens on port {app_port}, so the pods never become ready."),
            "probe",
            evidence,
            line,
            format!("Point the readinessProbe at port {app_port} (or the named port `http`) and roll out."),
        ));
    }
    if let Some((f, line)) = find_line(&files, &["FailedScheduling", "Insufficient memory"])
        .or_else(|| find_line(&files, &["nodes are available", "Insufficient memory"]))
    {
        let req = container_field(b, &["resources", "requests", "memory"])
            .unwrap_or_else(|| "more memory".into());
        return Some(d(
            format!("The pods stay Pending because each requests {req} of memory and no node has that much allocatable (Insufficient memory on every node)."),
            "scheduling",
            vec![f],
            line,
            format!("Lower the memory request ({req}) to what the app needs, or add a node pool with enough memory."),
        ));
    }
    if let Some((f, line)) =
        find_line(&files, &["garbage collect"]).or_else(|| find_line(&files, &["DiskPressure"]))
    {
        let node = b.index.resource.rsplit(' ').next().unwrap_or("the node");
        return Some(d(
            format!("Node {node} ran out of disk space (image garbage collection could not free any, DiskPressure) and then its kubelet stopped posting status, so the node is NotReady."),
            "node",
            vec![f],
            line,
            format!("Free or grow the disk of {node} (container images, logs), restart the kubelet, and cordon it until it reports Ready."),
        ));
    }
    None
}
