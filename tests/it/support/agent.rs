//! Shared helpers of the agent runtime's integration tests: a configuration whose agent is a
//! small shell script, an incident, and waiting on conditions with a deadline.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use nightcrier::agent::AgentRunner;
use nightcrier::config::{AgentConfig, AgentPreset, ClusterConfig, Config, TriageConfig};
use nightcrier::incident::{FaultOccurrence, Incident};

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/agents")
        .join(name)
}

/// An agent block running `sh <fixture> {prompt_file} {report_file}`, with short bounds.
pub fn script_agent(script: &str) -> AgentConfig {
    AgentConfig {
        preset: AgentPreset::Command,
        command: vec![
            "/bin/sh".into(),
            fixture(script).display().to_string(),
            "{prompt_file}".into(),
            "{report_file}".into(),
        ],
        timeout: Duration::from_secs(20),
        kill_grace: Duration::from_millis(300),
        ..AgentConfig::default()
    }
}

pub use super::common::incident;

/// A cluster whose MCP server is never reached, triage on with `kubeconfig`.
pub fn cluster(name: &str, kubeconfig: Option<PathBuf>) -> ClusterConfig {
    ClusterConfig {
        triage: TriageConfig {
            enabled: true,
            kubeconfig,
        },
        ..super::common::cluster(name, "http://127.0.0.1:1/mcp")
    }
}

pub fn config(root: &Path, agent: AgentConfig) -> Config {
    Config {
        workspace_root: root.to_path_buf(),
        agent,
        clusters: vec![cluster("prod", None)],
        ..Config::default()
    }
}

pub fn occurrences(incident: &Incident, n: i64) -> Vec<FaultOccurrence> {
    (1..=n)
        .map(|id| FaultOccurrence {
            id,
            incident_id: incident.id,
            cluster: incident.cluster.clone(),
            fault_id: incident.fault_id.clone(),
            fault_type: incident.fault_type.clone(),
            severity: incident.severity.clone(),
            namespace: incident.namespace.clone(),
            resource_kind: incident.resource_kind.clone(),
            resource_name: incident.resource_name.clone(),
            resource_uid: incident.resource_uid.clone(),
            context: format!("restart count: {}", id + 2),
            server_timestamp: format!("2026-11-30T01:0{id}:00+01:00"),
            received_at: Utc::now(),
            raw: serde_json::json!({ "faultId": incident.fault_id, "n": id }),
        })
        .collect()
}

/// Runs attempt 1 of `incident` (one occurrence) with a fresh runner, to its end.
pub async fn run_once(config: &Config, incident: &Incident) -> nightcrier::agent::RunReport {
    AgentRunner::new(config)
        .run(
            incident,
            &occurrences(incident, 1),
            1,
            tokio_util::sync::CancellationToken::new(),
            &|_| {},
        )
        .await
}

/// [`super::eventually`] for a plain condition.
pub async fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    super::eventually(what, within, async || cond().then_some(())).await
}

/// Whether `pid` is a live (non-zombie) process.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next().map(String::from));
            !matches!(state.as_deref(), Some("Z") | Some("X") | None)
        }
        Err(_) => false,
    }
}

/// The pids a fixture wrote to `output/pids.txt` (`<role> <pid>` per line).
pub fn recorded_pids(workspace: &Path) -> Vec<(String, i32)> {
    std::fs::read_to_string(workspace.join("output/pids.txt"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (role, pid) = l.split_once(' ')?;
            Some((role.to_string(), pid.trim().parse().ok()?))
        })
        .collect()
}
