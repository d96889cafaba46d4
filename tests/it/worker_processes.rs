//! The consumer as separate `nightcrier run` processes (the real binary): two of them sharing one
//! PostgreSQL, and a crash (SIGKILL) followed by a restart that cleans up after it.

use crate::support::common;
use crate::support::stub;
use crate::support::worker as worker_support;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::TestDb;
use nightcrier::agent::live_processes_with_marker;
use nightcrier::incident::IncidentStatus;
use nightcrier::worker::RESTART_REASON;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use stub::*;
use worker_support::*;

/// Writes a configuration for one process: the rig's agent, no clusters (this test records the
/// faults itself, as another producer would), no HTTP endpoint.
fn write_config(rig: &Rig, instance: &str, max_concurrent: u32) -> std::path::PathBuf {
    let agent = &rig.config.agent;
    let quoted: Vec<String> = agent
        .command
        .iter()
        .map(|a| serde_json::to_string(a).unwrap())
        .collect();
    let yaml = format!(
        r#"
workspace_root: {workspace}
limits:
  max_concurrent_agents: {max_concurrent}
  max_agents_per_cluster: 1
worker:
  poll_interval: 50ms
  heartbeat_interval: 1s
  lease_duration: 30s
  shutdown_grace: 5s
  instance_name: {instance}
agent:
  preset: command
  command: [{command}]
  timeout: 60s
  kill_grace: 1s
http:
  listen: ""
clusters: []
"#,
        workspace = serde_json::to_string(&rig.dir.path().join("incidents")).unwrap(),
        command = quoted.join(", "),
    );
    let path = rig.dir.path().join(format!("{instance}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    path
}

fn start(config: &Path, database_url: &str, log: &Path) -> Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nightcrier"));
    for (k, _) in std::env::vars() {
        if k.starts_with("NIGHTCRIER_") {
            c.env_remove(k);
        }
    }
    let out = std::fs::File::create(log).unwrap();
    c.args(["run", "--config"])
        .arg(config)
        .env("NIGHTCRIER_DATABASE__URL", database_url)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap()
}

/// The command name of a process.
fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn signal(child: &Child, sig: Signal) {
    kill(Pid::from_raw(child.id() as i32), sig).unwrap();
}

async fn wait_exit(mut child: Child) -> std::process::ExitStatus {
    tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap()
}

fn logs(paths: &[&Path]) -> String {
    paths
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n----\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nightcrier_processes_on_one_postgres_share_the_limits() {
    let db = TestDb::postgres().await;
    let rig = Rig::with_store(tempfile::tempdir().unwrap(), db.store().await);
    let ids = record(
        &rig.store,
        (0..30)
            .map(|i| fault(&format!("brief-{}", i % 4), &format!("p{i}")))
            .collect(),
    )
    .await;
    let (log_a, log_b) = (rig.dir.path().join("a.log"), rig.dir.path().join("b.log"));
    let a = start(&write_config(&rig, "proc-a", 2), &db.url(), &log_a);
    let b = start(&write_config(&rig, "proc-b", 2), &db.url(), &log_b);

    let done = tokio::time::timeout(
        Duration::from_secs(90),
        all_terminal(&rig.store, &ids, Duration::from_secs(90)),
    )
    .await
    .unwrap_or_else(|_| panic!("{}", logs(&[&log_a, &log_b])));
    signal(&a, Signal::SIGTERM);
    signal(&b, Signal::SIGTERM);
    let (sa, sb) = (wait_exit(a).await, wait_exit(b).await);
    assert!(sa.success() && sb.success(), "{}", logs(&[&log_a, &log_b]));

    assert!(done.iter().all(|i| i.status == IncidentStatus::Succeeded));
    assert!(done.iter().all(|i| i.attempt == 1), "each ran exactly once");
    check_timeline(&rig.timeline(), 30, 2, 1);
    let mut owners = HashSet::new();
    for id in &ids {
        for run in rig.store.agent_runs(*id).await.unwrap() {
            owners.insert(run.worker.split('/').next().unwrap().to_string());
        }
    }
    assert_eq!(
        owners,
        HashSet::from(["proc-a".to_string(), "proc-b".to_string()]),
        "both processes ran agents"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_the_restart_kills_the_leftover_agent_and_runs_the_incident_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    let rig = Rig::with_store(dir, store);
    let url = format!(
        "sqlite://{}",
        rig.dir.path().join("nightcrier.db").display()
    );
    let config = write_config(&rig, "solo", 2);
    let ids = record(&rig.store, vec![fault("crash-1", "p")]).await;
    let log1 = rig.dir.path().join("first.log");
    let first = start(&config, &url, &log1);

    // The agent (a shell running `sleep`) is up and its pid recorded; then nightcrier dies.
    eventually("the agent's pid to be recorded", LONG, || async {
        rig.store
            .agent_runs(ids[0])
            .await
            .unwrap()
            .first()
            .and_then(|r| r.pid)
    })
    .await;
    eventually("the agent's sleep to start", LONG, || async {
        let procs = live_processes_with_marker(ids[0], 1);
        procs.iter().any(|p| comm(*p) == "sleep").then_some(())
    })
    .await;
    signal(&first, Signal::SIGKILL);
    wait_exit(first).await;
    // The shell died with its parent; its `sleep` child did not: a leftover of attempt 1.
    let leftover = eventually("only the orphaned sleep to remain", LONG, || async {
        let left = live_processes_with_marker(ids[0], 1);
        (left.len() == 1 && comm(left[0]) == "sleep").then_some(left)
    })
    .await;
    assert_eq!(
        get(&rig.store, ids[0]).await.status,
        IncidentStatus::Running
    );

    let log2 = rig.dir.path().join("second.log");
    let second = start(&config, &url, &log2);
    let done = tokio::time::timeout(LONG, all_terminal(&rig.store, &ids, LONG))
        .await
        .unwrap_or_else(|_| panic!("{}", logs(&[&log1, &log2])));
    signal(&second, Signal::SIGTERM);
    assert!(wait_exit(second).await.success(), "{}", logs(&[&log2]));

    assert!(
        live_processes_with_marker(ids[0], 1).is_empty(),
        "leftover {leftover:?} was killed"
    );
    assert_eq!(
        done[0].status,
        IncidentStatus::Succeeded,
        "{}",
        logs(&[&log2])
    );
    let runs = rig.store.agent_runs(ids[0]).await.unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].reason.as_deref(), Some(RESTART_REASON));
    assert_eq!(runs[1].outcome, Some(IncidentStatus::Succeeded));
}
