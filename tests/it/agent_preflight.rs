//! The permission preflight against a scripted kubectl (answers yes / no / error like the real
//! one), the real kubectl with no reachable cluster, and no kubectl at all.

use crate::support::agent as agent_support;

use std::fs;
use std::path::Path;
use std::time::Duration;

use agent_support::*;
use nightcrier::agent::{
    preflight, preflight_with, AgentRunner, CheckResult, ClusterPermissions, REQUIRED_READS,
};
use nightcrier::incident::IncidentStatus;
use tokio_util::sync::CancellationToken;

fn check<'a>(p: &'a ClusterPermissions, verb: &str, resource: &str) -> &'a CheckResult {
    &p.checks
        .iter()
        .find(|c| c.verb == verb && c.resource == resource)
        .unwrap_or_else(|| panic!("no check {verb} {resource}"))
        .result
}

#[tokio::test]
async fn records_allowed_and_denied_reads() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("prod.kubeconfig");
    fs::write(&kubeconfig, "deny list nodes\ndeny get pods/log\n").unwrap();
    let cluster = cluster("prod", Some(kubeconfig.clone()));

    let perms = preflight_with(
        &fixture("fake-kubectl.sh"),
        &cluster,
        Duration::from_secs(10),
    )
    .await;

    assert_eq!(perms.cluster, "prod");
    assert!(perms.kubectl_found);
    assert_eq!(perms.kubeconfig.as_deref(), Some(kubeconfig.as_path()));
    assert_eq!(perms.checks.len(), REQUIRED_READS.len());
    assert_eq!(check(&perms, "list", "nodes"), &CheckResult::Denied);
    assert_eq!(check(&perms, "get", "pods/log"), &CheckResult::Denied);
    assert_eq!(check(&perms, "list", "pods"), &CheckResult::Allowed);
    assert_eq!(check(&perms, "list", "events"), &CheckResult::Allowed);
    assert_eq!(check(&perms, "list", "replicasets"), &CheckResult::Allowed);
    let missing: Vec<String> = perms
        .missing()
        .map(|c| format!("{} {}", c.verb, c.resource))
        .collect();
    assert_eq!(missing, ["get pods/log", "list nodes"]);
    assert!(!perms.all_allowed());

    // kubectl was asked with the cluster's kubeconfig, cluster-wide for namespaced resources.
    let calls = fs::read_to_string(dir.path().join("prod.kubeconfig.calls")).unwrap();
    let kc = kubeconfig.display().to_string();
    assert!(calls.lines().any(|l| l.starts_with(&format!(
        "--kubeconfig {kc} auth can-i list pods --all-namespaces"
    ))));
    assert!(calls.lines().any(|l| l.starts_with(&format!(
        "--kubeconfig {kc} auth can-i list nodes --request-timeout"
    ))));
    assert_eq!(calls.lines().count(), REQUIRED_READS.len());

    // The result serializes as the workspace file shows it.
    let json = serde_json::to_value(&perms).unwrap();
    assert_eq!(json["kubectl_found"], true);
    assert!(json["checked_at"].is_string());
    assert!(json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["verb"] == "list" && c["resource"] == "nodes" && c["result"] == "denied"));
}

#[tokio::test]
async fn an_unreachable_cluster_is_recorded_as_errors_with_kubectls_message() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kc");
    fs::write(&kubeconfig, "unreachable\n").unwrap();
    let perms = preflight_with(
        &fixture("fake-kubectl.sh"),
        &cluster("prod", Some(kubeconfig)),
        Duration::from_secs(10),
    )
    .await;
    assert!(perms.kubectl_found);
    assert!(perms.checks.iter().all(|c| c.result == CheckResult::Error));
    assert_eq!(
        perms.checks[0].message.as_deref(),
        Some("The connection to the server 10.0.0.1:6443 was refused - did you specify the right host or port?")
    );
}

#[tokio::test]
async fn a_hanging_kubectl_is_bounded_by_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kc");
    fs::write(&kubeconfig, "hang\n").unwrap();
    let perms = preflight_with(
        &fixture("fake-kubectl.sh"),
        &cluster("prod", Some(kubeconfig)),
        Duration::from_millis(500),
    )
    .await;
    assert!(perms.kubectl_found);
    for c in &perms.checks {
        assert_eq!(c.result, CheckResult::Error);
        assert_eq!(c.message.as_deref(), Some("timed out after 500ms"));
    }
}

#[tokio::test]
async fn the_real_kubectl_without_a_cluster_records_errors_without_failing() {
    let kubectl = Path::new("/usr/bin/kubectl");
    assert!(
        kubectl.exists(),
        "this machine is expected to have /usr/bin/kubectl"
    );
    let dir = tempfile::tempdir().unwrap();
    // A kubeconfig pointing at a port nothing listens on.
    let kubeconfig = dir.path().join("kc.yaml");
    fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n\
         contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n\
         users:\n- name: u\n  user:\n    token: t\n",
    )
    .unwrap();
    let perms = preflight(&cluster("prod", Some(kubeconfig)), Duration::from_secs(20)).await;
    assert!(perms.kubectl_found);
    assert_eq!(perms.checks.len(), REQUIRED_READS.len());
    for c in &perms.checks {
        assert_eq!(c.result, CheckResult::Error, "{c:?}");
        assert!(c.message.as_deref().is_some_and(|m| !m.is_empty()), "{c:?}");
    }
}

#[tokio::test]
async fn a_missing_kubectl_is_a_warning_not_a_failure() {
    let perms = preflight_with(
        Path::new("/nonexistent/kubectl"),
        &cluster("prod", None),
        Duration::from_secs(5),
    )
    .await;
    assert!(!perms.kubectl_found);
    assert!(perms.checks.iter().all(|c| c.result == CheckResult::Error
        && c.message.as_deref() == Some("kubectl not found (/nonexistent/kubectl)")));
}

#[tokio::test]
async fn the_runner_copies_the_latest_preflight_into_each_workspace() {
    let root = tempfile::tempdir().unwrap();
    let kubeconfig = root.path().join("prod.kubeconfig");
    fs::write(&kubeconfig, "deny watch pods\n").unwrap();
    let mut config = config(root.path(), script_agent("success.sh"));
    let mut off = cluster("off", None);
    off.triage.enabled = false;
    config.clusters = vec![cluster("prod", Some(kubeconfig)), off];
    let runner = AgentRunner::new(&config).with_kubectl(fixture("fake-kubectl.sh"));

    let results = runner.preflight_all(Duration::from_secs(10)).await;
    assert_eq!(
        results.len(),
        1,
        "only clusters with triage enabled are checked"
    );
    assert_eq!(runner.permissions("prod"), Some(results[0].clone()));
    assert_eq!(runner.permissions("off"), None);

    let incident = incident("prod");
    let report = runner
        .run(&incident, &[], 1, CancellationToken::new(), &|_| {})
        .await;
    assert_eq!(report.outcome.status, IncidentStatus::Succeeded);
    let written: ClusterPermissions = serde_json::from_str(
        &fs::read_to_string(report.workspace.join("cluster_permissions.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(written, results[0]);
    assert_eq!(check(&written, "watch", "pods"), &CheckResult::Denied);
}

/// Said at start (the app logs these), not at the first incident: a preset whose API key is
/// neither inherited nor in `agent.env`, per agent block in force.
#[test]
fn a_missing_api_key_is_named_per_agent_block() {
    use nightcrier::agent::AgentRunner;
    use nightcrier::config::{AgentPreset, Secret};

    let root = tempfile::tempdir().unwrap();
    let mut config = agent_support::config(root.path(), agent_support::script_agent("x"));
    config.agent.preset = AgentPreset::Claude;
    let mut codex = config.agent.clone();
    codex.preset = AgentPreset::Codex;
    config.clusters[0].agent = Some(codex);

    let none = AgentRunner::new(&config).with_inherited_env(Default::default());
    let problems = none.missing_api_keys();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].starts_with("agent: preset `claude` has no API key"));
    assert!(problems[0].contains("ANTHROPIC_API_KEY or ANTHROPIC_AUTH_TOKEN"));
    assert!(problems[1].contains("preset `codex`"));
    assert!(problems[1].contains("CODEX_API_KEY or OPENAI_API_KEY"));

    // An inherited OPENAI_API_KEY serves codex; an `agent.env` key serves claude.
    config
        .agent
        .env
        .insert("ANTHROPIC_API_KEY".into(), Secret::new("sk-ant"));
    let inherited = [("OPENAI_API_KEY".to_string(), Secret::new("sk-oai"))]
        .into_iter()
        .collect();
    let both = AgentRunner::new(&config).with_inherited_env(inherited);
    assert_eq!(both.missing_api_keys(), Vec::<String>::new());
}
