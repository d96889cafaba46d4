//! The built-in demo agent (`nightcrier demo-agent`): a stand-in for an AI agent that lets a
//! newcomer see the whole pipeline with nothing installed. It reads `incident.json`, "thinks"
//! for a moment while writing progress lines (which land in `logs/agent.log`), and writes a
//! plausible report that says plainly it is a demo.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum DemoAgentError {
    #[error("environment variable {0} is not set: the demo agent runs under nightcrier")]
    MissingEnv(&'static str),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not JSON: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The facts the report is made of, read leniently from `incident.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub incident_id: String,
    pub cluster: String,
    pub fault_type: String,
    pub severity: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub context: String,
    pub occurrences: i64,
}

fn find<'a>(doc: &'a Value, key: &str) -> Option<&'a Value> {
    // incident.json may hold the incident at the top or under "incident".
    doc.get(key)
        .or_else(|| doc.get("incident").and_then(|i| i.get(key)))
}

fn text(doc: &Value, key: &str, default: &str) -> String {
    find(doc, key)
        .and_then(Value::as_str)
        .unwrap_or(default)
        .to_string()
}

pub fn facts(doc: &Value) -> Facts {
    Facts {
        incident_id: text(doc, "id", "unknown"),
        cluster: text(doc, "cluster", "unknown"),
        fault_type: text(doc, "fault_type", "Unknown"),
        severity: text(doc, "severity", "warning"),
        kind: text(doc, "resource_kind", "Pod"),
        namespace: find(doc, "namespace")
            .and_then(Value::as_str)
            .map(str::to_string),
        name: text(doc, "resource_name", "unknown"),
        context: text(doc, "context", ""),
        occurrences: find(doc, "occurrences")
            .and_then(Value::as_i64)
            .unwrap_or(1),
    }
}

fn likely_cause(fault_type: &str) -> (&'static str, &'static str) {
    match fault_type {
        "CrashLoop" | "PodCrash" => (
            "the container exits shortly after start, most likely a configuration error at boot (a missing environment variable or secret, or a failing dependency check)",
            "Check `kubectl logs --previous` for the first error line; compare the deployment's env and mounted secrets with the last working revision; roll back if the crash started with a rollout.",
        ),
        "NodeUnhealthy" => (
            "the kubelet stopped reporting Ready, most likely memory or disk pressure on the node",
            "Cordon the node, drain it if workloads are affected, and inspect `kubectl describe node` conditions and kubelet logs.",
        ),
        "DeploymentFailure" => (
            "the rollout cannot make progress: new pods do not become ready before the progress deadline",
            "Inspect the new ReplicaSet's pods and events; pause or undo the rollout (`kubectl rollout undo`).",
        ),
        "JobFailure" => (
            "the job's pods exhausted their backoff limit",
            "Read the failed pods' logs, fix the input or image, and re-run the job.",
        ),
        _ => (
            "not determined by the demo agent",
            "Investigate with kubectl: describe the resource, read its events and logs.",
        ),
    }
}

pub fn report(f: &Facts) -> String {
    let (cause, action) = likely_cause(&f.fault_type);
    let resource = match &f.namespace {
        Some(ns) => format!("{} {}/{}", f.kind, ns, f.name),
        None => format!("{} {}", f.kind, f.name),
    };
    format!(
        "# Investigation: {fault} on {resource}\n\n\
         > **DEMO REPORT.** Written by nightcrier's built-in demo agent from the incident data alone. \
         No AI and no cluster were involved; configure a real agent (`agent.preset`) for real triage.\n\n\
         ## Summary\n\n\
         Cluster `{cluster}` reported a **{severity}** `{fault}` fault on {resource} \
         ({occ} occurrence(s)). Incident `{id}`.\n\n\
         ## Root Cause\n\n\
         Root cause (demo guess): {cause}.\n\n\
         ## Evidence\n\n\
         | field | value |\n|---|---|\n\
         | cluster | {cluster} |\n| fault type | {fault} |\n| severity | {severity} |\n\
         | resource | {resource} |\n| occurrences | {occ} |\n\n\
         Server context:\n\n```\n{context}\n```\n\n\
         ## Recommended Actions\n\n{action}\n\n\
         ## Confidence\n\nLow (demo agent: no cluster access).\n",
        fault = f.fault_type,
        cluster = f.cluster,
        severity = f.severity,
        occ = f.occurrences,
        id = f.incident_id,
        context = if f.context.is_empty() { "(none)" } else { &f.context },
    )
}

fn verdict_json(d: &super::diagnose::Diagnosis) -> Value {
    serde_json::json!({
        "root_cause": d.root_cause,
        "confidence": d.confidence,
        "category": d.category,
        "evidence": d.evidence,
    })
}

/// The report when the evidence showed the cause.
pub fn evidence_report(f: &Facts, d: &super::diagnose::Diagnosis) -> String {
    let resource = match &f.namespace {
        Some(ns) => format!("{} {}/{}", f.kind, ns, f.name),
        None => format!("{} {}", f.kind, f.name),
    };
    let refs: Vec<String> = d.evidence.iter().map(|e| format!("`{e}`")).collect();
    let fence = crate::agent::quote(&d.quote);
    format!(
        "# Investigation: {fault} on {resource}\n\n\
         **Verdict:** {cause} (confidence: {conf})\n\n\
         > **DEMO REPORT.** Written by nightcrier's built-in demo agent from the evidence bundle \
         nightcrier gathered from the (simulated) cluster; no AI was involved.\n\n\
         ## Summary\n\n\
         Cluster `{cluster}` reported a **{severity}** `{fault}` fault on {resource} \
         ({occ} occurrence(s)). Incident `{id}`.\n\n\
         ## Root Cause\n\n{cause}\n\n\
         Hypotheses: the `{fault}` state is the symptom; the line below confirms the cause, and \
         no other warning in the bundle contradicts it.\n\n\
         ## Evidence\n\n\
         From {refs}:\n\n{fence}\n\
         ## Recommended Actions\n\n1. {action}\n\n\
         ## Confidence\n\n{conf_title}: the cause is stated verbatim in the evidence.\n",
        fault = f.fault_type,
        cause = d.root_cause,
        conf = d.confidence,
        conf_title = if d.confidence == "high" {
            "High"
        } else {
            d.confidence
        },
        cluster = f.cluster,
        severity = f.severity,
        occ = f.occurrences,
        id = f.incident_id,
        refs = refs.join(", "),
        action = d.action,
    )
}

fn env_path(name: &'static str) -> Result<PathBuf, DemoAgentError> {
    std::env::var_os(name)
        .map(PathBuf::from)
        .ok_or(DemoAgentError::MissingEnv(name))
}

/// Runs the demo agent as nightcrier starts any agent: paths from `INCIDENT_FILE` and
/// `REPORT_FILE`, progress on stdout.
pub async fn run(think: Duration) -> Result<(), DemoAgentError> {
    let incident_file = env_path("INCIDENT_FILE")?;
    let report_file = env_path("REPORT_FILE")?;
    run_with(&incident_file, &report_file, think).await
}

pub async fn run_with(
    incident_file: &Path,
    report_file: &Path,
    think: Duration,
) -> Result<(), DemoAgentError> {
    let raw = tokio::fs::read(incident_file)
        .await
        .map_err(|source| DemoAgentError::Read {
            path: incident_file.to_path_buf(),
            source,
        })?;
    let doc: Value = serde_json::from_slice(&raw).map_err(|source| DemoAgentError::Parse {
        path: incident_file.to_path_buf(),
        source,
    })?;
    let f = facts(&doc);
    let workspace = incident_file.parent().unwrap_or(Path::new("."));
    let bundle = crate::evidence::load_bundle(workspace);
    let diagnosis = bundle.as_ref().and_then(super::diagnose::diagnose);
    let steps = [
        format!(
            "demo agent: reading incident {} ({} on {})",
            f.incident_id, f.fault_type, f.name
        ),
        format!(
            "demo agent: pretending to run `kubectl describe {} {}`",
            f.kind.to_lowercase(),
            f.name
        ),
        match &bundle {
            Some(b) => format!(
                "demo agent: reading the evidence bundle ({} calls, {} gaps)",
                b.index.calls.len(),
                b.index.gaps().count()
            ),
            None => "demo agent: no evidence bundle; pretending to read events and logs".into(),
        },
        "demo agent: writing output/investigation.md".to_string(),
    ];
    let pause = think / steps.len() as u32;
    for step in steps {
        println!("{step}");
        tokio::time::sleep(pause).await;
    }
    if let Some(parent) = report_file.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|source| DemoAgentError::Write {
                path: parent.to_path_buf(),
                source,
            })?;
    }
    let (text, verdict) = match &diagnosis {
        Some(d) => (evidence_report(&f, d), verdict_json(d)),
        None => (
            report(&f),
            serde_json::json!({"confidence": "inconclusive", "category": "other",
                "missing": "the demo agent recognises only the simulated scenarios' evidence"}),
        ),
    };
    tokio::fs::write(report_file, text)
        .await
        .map_err(|source| DemoAgentError::Write {
            path: report_file.to_path_buf(),
            source,
        })?;
    // Where the prompt tells an agent to put it: VERDICT_FILE of its working directory.
    let verdict_file = crate::agent::Workspace::from_dir(workspace).verdict_file();
    tokio::fs::write(&verdict_file, verdict.to_string())
        .await
        .map_err(|source| DemoAgentError::Write {
            path: verdict_file,
            source,
        })?;
    println!("demo agent: done");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_a_labelled_report_from_the_incident() {
        let dir = tempfile::tempdir().unwrap();
        let inc = dir.path().join("incident.json");
        std::fs::write(
            &inc,
            r#"{"incident":{"id":"0193-x","cluster":"demo-2","fault_type":"CrashLoop","severity":"critical","resource_kind":"Pod","namespace":"shop","resource_name":"cart-7d9","context":"Container entered CrashLoopBackOff state","occurrences":3}}"#,
        )
        .unwrap();
        let out = dir.path().join("output/investigation.md");
        run_with(&inc, &out, Duration::ZERO).await.unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(
            text.starts_with("# Investigation: CrashLoop on Pod shop/cart-7d9"),
            "{text}"
        );
        assert!(text.contains("DEMO REPORT"));
        assert!(text.contains("## Root Cause"));
        assert!(text.contains("| occurrences | 3 |"));
        assert!(text.len() > 100);
    }

    #[tokio::test]
    async fn a_bad_incident_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let inc = dir.path().join("incident.json");
        std::fs::write(&inc, "not json").unwrap();
        let err = run_with(&inc, &dir.path().join("r.md"), Duration::ZERO)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("incident.json is not JSON"), "{err}");
    }
}
