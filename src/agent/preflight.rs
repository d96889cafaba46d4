//! The permission preflight: before agents run against a cluster, ask the API server (through
//! `kubectl auth can-i`, with the same kubeconfig the agent gets) whether the reads triage needs
//! are allowed. The result is advice for humans and agents (`cluster_permissions.json`), never a
//! reason to stop: a missing kubectl or a denied read is a warning.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::process::Command;
use tokio::time::Instant;

use crate::config::ClusterConfig;

/// The reads triage needs: (verb, resource). Namespaced ones are asked cluster-wide.
pub const REQUIRED_READS: &[(&str, &str)] = &[
    ("get", "pods"),
    ("list", "pods"),
    ("watch", "pods"),
    ("get", "pods/log"),
    ("list", "events"),
    ("get", "deployments"),
    ("list", "deployments"),
    ("get", "replicasets"),
    ("list", "replicasets"),
    ("get", "services"),
    ("list", "services"),
    ("get", "nodes"),
    ("list", "nodes"),
];
/// A sensible bound for the whole preflight of one cluster.
pub const DEFAULT_PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(15);
const CLUSTER_SCOPED: &[&str] = &["nodes"];
/// kubectl processes at once: each is a sizeable Go binary.
const CONCURRENCY: usize = 4;
const MAX_MESSAGE_CHARS: usize = 300;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterPermissions {
    pub cluster: String,
    pub checked_at: DateTime<Utc>,
    /// The kubectl that was run.
    pub kubectl: PathBuf,
    pub kubectl_found: bool,
    /// `None`: kubectl's own default (in-cluster or `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    pub checks: Vec<PermissionCheck>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionCheck {
    pub verb: String,
    pub resource: String,
    pub result: CheckResult,
    /// Why the check could not be answered (kubectl's error), or kubectl's note on a denial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckResult {
    Allowed,
    Denied,
    /// Not answered: no kubectl, unreachable API server, timeout...
    Error,
}

impl ClusterPermissions {
    /// The checks that were not answered `allowed`.
    pub fn missing(&self) -> impl Iterator<Item = &PermissionCheck> {
        self.checks
            .iter()
            .filter(|c| c.result != CheckResult::Allowed)
    }

    pub fn all_allowed(&self) -> bool {
        self.kubectl_found && self.missing().next().is_none()
    }
}

/// [`preflight_with`] using `kubectl` from `PATH`.
pub async fn preflight(cluster: &ClusterConfig, timeout: Duration) -> ClusterPermissions {
    preflight_with(Path::new("kubectl"), cluster, timeout).await
}

/// Runs every check of [`REQUIRED_READS`], all within `timeout`, and logs a warning when
/// something is missing.
pub async fn preflight_with(
    kubectl: &Path,
    cluster: &ClusterConfig,
    timeout: Duration,
) -> ClusterPermissions {
    let kubeconfig = cluster.triage.kubeconfig.as_deref();
    let deadline = Instant::now() + timeout;
    // A plain loop, not a stream combinator over a closure: closures taking `&str` tuples make
    // the future not provably `Send` for any lifetime, and the app spawns the preflight.
    let mut outcomes: Vec<(PermissionCheck, bool)> = Vec::with_capacity(REQUIRED_READS.len());
    for chunk in REQUIRED_READS.chunks(CONCURRENCY) {
        let mut pending = Vec::with_capacity(chunk.len());
        for &(verb, resource) in chunk {
            pending.push(check(
                kubectl, kubeconfig, verb, resource, deadline, timeout,
            ));
        }
        outcomes.extend(futures::future::join_all(pending).await);
    }
    let kubectl_found = outcomes.iter().all(|(_, found)| *found);
    let perms = ClusterPermissions {
        cluster: cluster.name.clone(),
        checked_at: Utc::now(),
        kubectl: kubectl.to_path_buf(),
        kubectl_found,
        kubeconfig: kubeconfig.map(Path::to_path_buf),
        checks: outcomes.into_iter().map(|(c, _)| c).collect(),
    };
    log(&perms);
    perms
}

/// One `kubectl auth can-i`; the bool is false when kubectl itself could not be found.
async fn check(
    kubectl: &Path,
    kubeconfig: Option<&Path>,
    verb: &str,
    resource: &str,
    deadline: Instant,
    timeout: Duration,
) -> (PermissionCheck, bool) {
    let result = |result, message: Option<String>| PermissionCheck {
        verb: verb.to_string(),
        resource: resource.to_string(),
        result,
        message,
    };
    let mut cmd = Command::new(kubectl);
    if let Some(kc) = kubeconfig {
        cmd.arg("--kubeconfig").arg(kc);
    } else {
        // The agent does not inherit nightcrier's KUBECONFIG either: ask what it will see.
        cmd.env_remove("KUBECONFIG");
    }
    cmd.args(["auth", "can-i", verb, resource]);
    if !CLUSTER_SCOPED.contains(&resource) {
        cmd.arg("--all-namespaces");
    }
    cmd.arg(format!("--request-timeout={}s", timeout.as_secs().max(1)))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = match tokio::time::timeout_at(deadline, cmd.output()).await {
        Err(_) => {
            let msg = format!("timed out after {}", humantime::format_duration(timeout));
            return (result(CheckResult::Error, Some(msg)), true);
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            let msg = format!("kubectl not found ({})", kubectl.display());
            return (result(CheckResult::Error, Some(msg)), false);
        }
        Ok(Err(e)) => {
            let msg = format!("cannot run {}: {e}", kubectl.display());
            return (result(CheckResult::Error, Some(msg)), true);
        }
        Ok(Ok(output)) => output,
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let answer = stdout.lines().next().unwrap_or("").trim();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last_err = stderr
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(|l| l.chars().take(MAX_MESSAGE_CHARS).collect::<String>());
    let checked = if answer == "yes" {
        result(CheckResult::Allowed, None)
    } else if answer == "no" || answer.starts_with("no ") {
        let note = answer
            .strip_prefix("no")
            .map(|s| s.trim_start_matches([' ', '-']).trim());
        result(
            CheckResult::Denied,
            note.filter(|n| !n.is_empty()).map(String::from),
        )
    } else {
        let msg = last_err.unwrap_or_else(|| format!("kubectl exited with {}", output.status));
        result(CheckResult::Error, Some(msg))
    };
    (checked, true)
}

fn log(perms: &ClusterPermissions) {
    let cluster = perms.cluster.as_str();
    if !perms.kubectl_found {
        tracing::warn!(
            cluster,
            kubectl = %perms.kubectl.display(),
            "kubectl not found: cluster permissions not verified (agents will likely fail to read the cluster)"
        );
        return;
    }
    let missing: Vec<String> = perms
        .missing()
        .map(|c| {
            let kind = match c.result {
                CheckResult::Denied => "denied",
                _ => "unknown",
            };
            format!("{} {} ({kind})", c.verb, c.resource)
        })
        .collect();
    if missing.is_empty() {
        tracing::info!(cluster, "cluster permissions verified for triage");
    } else {
        let first_error = perms
            .missing()
            .find_map(|c| c.message.as_deref())
            .unwrap_or("");
        tracing::warn!(
            cluster,
            missing = %missing.join(", "),
            first_error,
            "triage may be unable to read parts of the cluster"
        );
    }
}
