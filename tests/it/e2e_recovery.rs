//! Whole-process guarantees of the real binary: a `kill -9` with agents running loses nothing and
//! leaves no agent behind once restarted; SIGTERM stops claiming, lets a running agent finish
//! within `worker.shutdown_grace`, or terminates and requeues it when the grace is short.

use crate::support::e2e as e2e_support;

use std::collections::HashSet;
use std::time::Duration;

use e2e_support::*;
use nightcrier::incident::IncidentStatus;
use nix::sys::signal::Signal;

fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next())
                .unwrap_or("");
            state != "Z" && state != "X"
        }
        Err(_) => false,
    }
}

/// Before the restart: leaves a grandchild behind and becomes a long sleep. After: succeeds.
const SLEEPER_UNTIL_RESTART: &str = r#"D="$INCIDENT_WORKSPACE/../.."
if [ ! -f "$D/restarted" ]; then
  sleep 300 &
  exec sleep 300
fi
printf '# Report\n%0200d\n' 0 > "$REPORT_FILE"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_agents_running_loses_nothing_and_leaves_no_agent() {
    let a = simulator("ka").await;
    let b = simulator("kb").await;
    let rig = Rig::sqlite(&[&a, &b], SLEEPER_UNTIL_RESTART);
    let mut run = rig.start_run();
    subscribed(&a).await;
    subscribed(&b).await;
    for i in 0..2 {
        emit(&a, i).await;
        emit(&b, i).await;
    }
    let store = rig.store().await;
    // One running per cluster (their agents asleep), two pending behind them.
    let running = wait_until(
        "two running with their agents started",
        DEADLINE,
        || async {
            let all = all_incidents(&store).await;
            let running: Vec<_> = all
                .iter()
                .filter(|i| i.status == IncidentStatus::Running)
                .cloned()
                .collect();
            if all.len() != 4 || running.len() != 2 {
                return None;
            }
            let ids: HashSet<_> = running.iter().map(|i| i.id).collect();
            // Both shells exec'd into sleep and forked the grandchild: two processes each.
            (agent_processes(&ids).len() == 4).then_some(running)
        },
    )
    .await;
    let mut leaders = Vec::new();
    for i in &running {
        let runs = store.agent_runs(i.id).await.unwrap();
        leaders.push(runs[0].pid.expect("the agent's pid is recorded"));
    }
    let ids: HashSet<_> = all_incidents(&store).await.iter().map(|i| i.id).collect();

    run.kill9().await;

    // The agents' leaders die with nightcrier (parent-death signal).
    wait_until(
        "the agent leaders to die with nightcrier",
        DEADLINE,
        || async { leaders.iter().all(|p| !pid_alive(*p)).then_some(()) },
    )
    .await;
    let survivors = agent_processes(&ids);
    let all = all_incidents(&store).await;
    assert_eq!(
        all.iter()
            .filter(|i| i.status == IncidentStatus::Running)
            .count(),
        2,
        "the database still says running until someone recovers them"
    );

    // Restart with the same configuration; agents succeed from now on.
    std::fs::write(rig.path().join("restarted"), "").unwrap();
    let mut again = rig.start_run();
    let done = all_finished(&store, 4, DEADLINE).await;
    for i in &done {
        assert_eq!(i.status, IncidentStatus::Succeeded, "{i:?}");
        let expected = if running.iter().any(|r| r.id == i.id) {
            2
        } else {
            1
        };
        assert_eq!(i.attempt, expected, "{i:?}");
    }
    // Whatever survived the kill (the grandchildren) was killed at restart.
    wait_until(
        &format!("no agent process left (survivors of the kill: {survivors:?})"),
        DEADLINE,
        || async { agent_processes(&ids).is_empty().then_some(()) },
    )
    .await;
    // The restart says what it recovered, one line per incident.
    let out = again.stdout();
    for r in &running {
        assert!(
            out.lines().any(
                |l| l.contains("requeued an incident a previous run left running")
                    && l.contains(&r.id.to_string())
            ),
            "no recovery line for {}:\n{out}",
            r.id
        );
    }
    again.assert_alive();
    again.signal(Signal::SIGTERM);
    assert_eq!(again.wait_exit(DEADLINE).await.code(), Some(0));
}

/// Waits for a release file, then reports.
const WAITS_FOR_RELEASE: &str = r#"D="$INCIDENT_WORKSPACE/../.."
echo started
while [ ! -f "$D/release" ]; do sleep 0.05; done
printf '# Report\n%0200d\n' 0 > "$REPORT_FILE"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_claiming_and_lets_the_running_agent_finish() {
    let sim = simulator("gr").await;
    let mut rig = Rig::sqlite(&[&sim], WAITS_FOR_RELEASE);
    rig.setup.shutdown_grace = Duration::from_secs(30);
    rig.write_config();
    let mut run = rig.start_run();
    subscribed(&sim).await;
    emit(&sim, 0).await;
    emit(&sim, 1).await;
    let store = rig.store().await;
    let (first, second) = wait_until("one running, one pending", DEADLINE, || async {
        let all = all_incidents(&store).await;
        let r = all.iter().find(|i| i.status == IncidentStatus::Running)?;
        let p = all.iter().find(|i| i.status == IncidentStatus::Pending)?;
        Some((r.clone(), p.clone()))
    })
    .await;
    wait_until("the agent to start", DEADLINE, || async {
        rig.agent_log(first.id).contains("started").then_some(())
    })
    .await;

    run.signal(Signal::SIGTERM);
    run.wait_stdout("stopping gracefully").await;
    run.wait_stdout("shutting down").await;
    // Still running: the agent is inside its grace.
    run.assert_alive();
    assert_eq!(status_of(&store, first.id).await, IncidentStatus::Running);

    std::fs::write(rig.path().join("release"), "").unwrap();
    let code = run.wait_exit(DEADLINE).await;
    assert_eq!(code.code(), Some(0), "{}", run.stdout());
    let f = store.get(&first.id.to_string()).await.unwrap();
    assert_eq!(f.status, IncidentStatus::Succeeded);
    // Nothing new was claimed after the signal.
    let s = store.get(&second.id.to_string()).await.unwrap();
    assert_eq!(s.status, IncidentStatus::Pending);
    assert_eq!(s.attempt, 0);
    assert!(run
        .stdout()
        .contains(&format!("incident {} finished: succeeded", first.id)));
    assert!(run.stdout().contains("nightcrier stopped"));
}

/// First attempt sleeps (as one process: `exec`), second succeeds.
const SLEEPS_ONCE: &str = r#"D="$INCIDENT_WORKSPACE/../.."
if [ ! -f "$D/seen-$INCIDENT_ID" ]; then
  touch "$D/seen-$INCIDENT_ID"
  exec sleep 300
fi
printf '# Report\n%0200d\n' 0 > "$REPORT_FILE"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_short_grace_terminates_and_requeues() {
    let sim = simulator("sg").await;
    let mut rig = Rig::sqlite(&[&sim], SLEEPS_ONCE);
    rig.setup.shutdown_grace = Duration::from_millis(500);
    rig.write_config();
    let mut run = rig.start_run();
    subscribed(&sim).await;
    emit(&sim, 0).await;
    let store = rig.store().await;
    let inc = wait_until("the incident running with its agent", DEADLINE, || async {
        let all = all_incidents(&store).await;
        let i = all
            .into_iter()
            .find(|i| i.status == IncidentStatus::Running)?;
        let ids = HashSet::from([i.id]);
        (!agent_processes(&ids).is_empty()).then_some(i)
    })
    .await;

    run.signal(Signal::SIGTERM);
    let code = run.wait_exit(DEADLINE).await;
    assert_eq!(code.code(), Some(0), "{}", run.stdout());
    assert!(
        run.stdout()
            .contains(&format!("incident {} interrupted by shutdown", inc.id)),
        "{}",
        run.stdout()
    );
    let after = store.get(&inc.id.to_string()).await.unwrap();
    assert_eq!(after.status, IncidentStatus::Pending, "{after:?}");
    assert_eq!(after.attempt, 1, "the interrupted attempt is counted");
    assert!(agent_processes(&HashSet::from([inc.id])).is_empty());
    let runs = store.agent_runs(inc.id).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert!(runs[0].finished_at.is_some(), "{runs:?}");

    // The next start runs it again.
    let _again = rig.start_run();
    let done = all_finished(&store, 1, DEADLINE).await;
    assert_eq!(done[0].status, IncidentStatus::Succeeded);
    assert_eq!(done[0].attempt, 2);
}

/// A second SIGTERM during the grace stops at once: the agent is terminated and the incident
/// given back, long before the (two-minute) grace would have ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_stops_at_once_and_requeues() {
    let sim = simulator("twice").await;
    let mut rig = Rig::sqlite(&[&sim], WAITS_FOR_RELEASE);
    rig.setup.shutdown_grace = Duration::from_secs(120);
    rig.write_config();
    let mut run = rig.start_run();
    subscribed(&sim).await;
    emit(&sim, 0).await;
    let store = rig.store().await;
    let inc = wait_until("the agent started", DEADLINE, || async {
        let all = all_incidents(&store).await;
        let i = all
            .into_iter()
            .find(|i| i.status == IncidentStatus::Running)?;
        rig.agent_log(i.id).contains("started").then_some(i)
    })
    .await;

    run.signal(Signal::SIGTERM);
    run.wait_stdout("stopping gracefully").await;
    run.assert_alive();
    // Signals within 300 ms are one request (timeout(1) signals the process and its group); a
    // person's second Ctrl-C comes later than that.
    tokio::time::sleep(Duration::from_millis(500)).await;
    run.assert_alive();
    run.signal(Signal::SIGTERM);
    // DEADLINE (40 s) is far below the grace: only the immediate stop can end it in time.
    let code = run.wait_exit(DEADLINE).await;
    assert_eq!(code.code(), Some(0), "{}", run.stdout());
    assert!(
        run.stdout().contains("stopping at once"),
        "{}",
        run.stdout()
    );
    let after = store.get(&inc.id.to_string()).await.unwrap();
    assert_eq!(after.status, IncidentStatus::Pending, "{after:?}");
    assert_eq!(after.attempt, 1);
    assert!(agent_processes(&HashSet::from([inc.id])).is_empty());
}
