//! Restart recovery: after nightcrier dies, its agent's leader dies with it (parent-death
//! signal) but a grandchild may survive; `kill_leftover_group` finds that group by its pid,
//! verifies the run's marker and kills it. A group without the marker is left alone.

use crate::support::agent as agent_support;

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use agent_support::*;
use nightcrier::agent::{
    kill_leftover_group, live_group_members, live_processes_with_marker, marker_value, AgentRunner,
    MARKER_VAR,
};
use nightcrier::incident::AgentRun;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const ROLE_VAR: &str = "NIGHTCRIER_TEST_CRASH_ROOT";
const INCIDENT_VAR: &str = "NIGHTCRIER_TEST_CRASH_INCIDENT";

/// The pretend nightcrier: runs the stubborn agent and records its pid, until it is killed.
async fn crashing_nightcrier(root: PathBuf, incident_id: Uuid) {
    let config = config(&root, script_agent("stubborn.sh"));
    let mut incident = incident("prod");
    incident.id = incident_id;
    let runner = AgentRunner::new(&config);
    let pid_file = root.join("agent.pid");
    runner
        .run(&incident, &[], 3, CancellationToken::new(), &move |pid| {
            std::fs::write(&pid_file, pid.to_string()).unwrap();
        })
        .await;
    unreachable!("the agent never ends on its own; the parent kills this process");
}

#[tokio::test]
async fn after_a_crash_the_leader_dies_and_restart_kills_the_rest_of_the_group() {
    if let Ok(root) = std::env::var(ROLE_VAR) {
        let id = std::env::var(INCIDENT_VAR).unwrap().parse().unwrap();
        return crashing_nightcrier(root.into(), id).await;
    }
    let root = tempfile::tempdir().unwrap();
    let incident_id = Uuid::now_v7();
    let mut nightcrier = Command::new(std::env::current_exe().unwrap())
        .args([
            // This test's name in the test program (module path without the crate).
            "agent_leftover::after_a_crash_the_leader_dies_and_restart_kills_the_rest_of_the_group",
            "--exact",
            "--nocapture",
        ])
        .env(ROLE_VAR, root.path())
        .env(INCIDENT_VAR, incident_id.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();

    let ws = root.path().join(incident_id.to_string());
    let pid_file = root.path().join("agent.pid");
    wait_for(
        "the agent and its grandchild",
        Duration::from_secs(20),
        || pid_file.exists() && recorded_pids(&ws).len() == 2,
    )
    .await;
    let pgid: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    let grandchild = recorded_pids(&ws)
        .into_iter()
        .find(|(role, _)| role == "grandchild")
        .unwrap()
        .1;

    // nightcrier crashes.
    nightcrier.kill().unwrap();
    nightcrier.wait().unwrap();
    wait_for(
        "the leader's parent-death signal",
        Duration::from_secs(5),
        || !alive(pgid),
    )
    .await;
    assert!(
        alive(grandchild),
        "the grandchild is the leftover to clean up"
    );
    assert!(live_group_members(pgid).contains(&grandchild));

    // The wrong attempt is not ours: nothing is killed.
    assert!(!kill_leftover_group(pgid, incident_id, 2).unwrap());
    assert!(alive(grandchild));

    // Restart recovery, as the worker does it; here the crash came before the pid was recorded,
    // so the group is found by its marker.
    let runner = AgentRunner::new(&config(root.path(), script_agent("stubborn.sh")));
    let mut leftover_incident = incident("prod");
    leftover_incident.id = incident_id;
    runner
        .kill_leftover(&leftover_incident, &agent_run(incident_id, 3, None))
        .await;
    assert!(live_processes_with_marker(incident_id, 3).is_empty());
    assert!(!alive(grandchild));
    // Nothing left to kill the second time.
    assert!(!kill_leftover_group(pgid, incident_id, 3).unwrap());
}

fn agent_run(incident_id: Uuid, attempt: i32, pid: Option<i32>) -> AgentRun {
    AgentRun {
        incident_id,
        attempt,
        worker: "host-1/boot-0".into(),
        started_at: chrono::Utc::now(),
        finished_at: None,
        pid,
        exit_code: None,
        outcome: None,
        reason: None,
        log_path: None,
        usage: None,
    }
}

#[tokio::test]
async fn kill_leftover_kills_the_recorded_group_and_spares_a_reused_pid() {
    let root = tempfile::tempdir().unwrap();
    let runner = AgentRunner::new(&config(root.path(), script_agent("slow.sh")));
    let ours = incident("prod");
    let mut leftover = Command::new("/bin/sh")
        .args(["-c", "trap '' TERM; sleep 300 & wait"])
        .env(MARKER_VAR, marker_value(ours.id, 2))
        .process_group(0)
        .spawn()
        .unwrap();
    let mut bystander = Command::new("sleep")
        .arg("300")
        .process_group(0)
        .spawn()
        .unwrap();
    let (leftover_pid, bystander_pid) = (leftover.id() as i32, bystander.id() as i32);

    runner
        .kill_leftover(&ours, &agent_run(ours.id, 2, Some(leftover_pid)))
        .await;
    let other = incident("prod");
    runner
        .kill_leftover(&other, &agent_run(other.id, 1, Some(bystander_pid)))
        .await;

    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&leftover.wait().unwrap()),
        Some(9)
    );
    assert!(
        live_processes_with_marker(ours.id, 2).is_empty(),
        "its child too"
    );
    assert_eq!(bystander.try_wait().unwrap(), None, "the bystander lives");
    bystander.kill().unwrap();
    bystander.wait().unwrap();
}

#[tokio::test]
async fn a_reused_pid_without_the_marker_is_not_killed() {
    let incident_id = Uuid::now_v7();
    // A group that carries another run's marker, and one with none: both belong to someone else.
    let mut other_run = Command::new("sleep")
        .arg("300")
        .env(MARKER_VAR, marker_value(Uuid::now_v7(), 1))
        .process_group(0)
        .spawn()
        .unwrap();
    let mut unrelated = Command::new("sleep")
        .arg("300")
        .process_group(0)
        .spawn()
        .unwrap();
    for child in [&other_run, &unrelated] {
        let pid = child.id() as i32;
        assert!(!kill_leftover_group(pid, incident_id, 1).unwrap());
        assert!(alive(pid));
    }
    other_run.kill().unwrap();
    unrelated.kill().unwrap();
    other_run.wait().unwrap();
    unrelated.wait().unwrap();
}
