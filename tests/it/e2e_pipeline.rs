//! The real binary end to end: faults from simulated clusters become incidents that stub agents
//! run to `succeeded`; the system log says so and carries no agent output; `/metrics`,
//! `/healthz`, `/readyz` and `status` describe a live run from the outside.

use crate::support::e2e as e2e_support;

use std::collections::HashSet;

use e2e_support::*;
use nightcrier::incident::IncidentStatus;

/// Faults land as incidents, repeats attach, agents run them to `succeeded`, and the system log
/// has the three lines per incident and none of the agent's output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_become_incidents_that_agents_run_to_success() {
    let alpha = simulator("alpha").await;
    let beta = simulator("beta").await;
    let marker = format!("AGENT-ONLY-{}", uuid::Uuid::new_v4().simple());
    let agent = format!(
        "echo \"{marker} stdout $INCIDENT_ID\"\necho \"{marker} stderr\" >&2\nsleep 0.2\n{WRITE_REPORT}\n"
    );
    let rig = Rig::sqlite(&[&alpha, &beta], &agent);
    let mut run = rig.start_run();
    subscribed(&alpha).await;
    subscribed(&beta).await;

    let repeated = emit(&alpha, 0).await;
    for i in 1..3 {
        emit(&alpha, i).await;
    }
    for i in 0..2 {
        emit(&beta, i).await;
    }
    // The same faultId twice more: attaches (open or within the cooldown), no new incident.
    emit(&alpha, 0).await;
    emit(&alpha, 0).await;

    let store = rig.store().await;
    let incidents = all_finished(&store, 5, DEADLINE).await;
    let repeated_id = repeated.fault_id("alpha");
    let rep = wait_until(
        "three occurrences on the repeated fault",
        DEADLINE,
        || async {
            let all = all_incidents(&store).await;
            all.into_iter()
                .find(|i| i.fault_id == repeated_id && i.occurrences == 3)
        },
    )
    .await;
    assert_eq!(
        all_incidents(&store).await.len(),
        5,
        "repeats must not open incidents"
    );
    assert_eq!(rep.cluster, "alpha");

    // The outcome is committed before the "finished" line is logged: wait for every line.
    for i in &incidents {
        run.wait_stdout(&format!("incident {} finished", i.id))
            .await;
    }
    let stdout = run.stdout();
    for i in &incidents {
        assert_eq!(i.status, IncidentStatus::Succeeded, "{i:?}");
        assert_eq!(i.attempt, 1);
        for line in [
            format!("incident {} created", i.id),
            format!(
                "worker started incident {}",
                nightcrier::incident::short_id(i.id)
            ),
            format!("incident {} finished: succeeded", i.id),
        ] {
            assert!(stdout.contains(&line), "no {line:?} in stdout:\n{stdout}");
        }
        let runs = store.agent_runs(i.id).await.unwrap();
        let expected = rig
            .workspace_root()
            .join(i.id.to_string())
            .join("logs/agent.log");
        assert_eq!(
            runs[0].log_path.as_deref(),
            Some(expected.to_str().unwrap()),
            "the run's log path is recorded"
        );
        let log = rig.agent_log(i.id);
        assert!(
            log.contains(&format!("{marker} stdout {}", i.id))
                && log.contains(&format!("{marker} stderr")),
            "agent output missing from logs/agent.log of {}:\n{log}",
            i.id
        );
    }
    assert_eq!(
        stdout.matches(" created").count(),
        5,
        "one creation line per incident:\n{stdout}"
    );
    assert!(
        !stdout.contains(&marker),
        "agent output leaked into stdout:\n{stdout}"
    );
    assert!(
        !run.stderr().contains(&marker),
        "agent output leaked into stderr"
    );
    run.kill9().await;
}

/// `/metrics` parses as Prometheus text and counts what happened; `/healthz` and `/readyz` are 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_events_incidents_and_runs_by_outcome() {
    let good = simulator("good").await;
    let bad = simulator("bad").await;
    let agent = format!(
        "if [ \"$CLUSTER_NAME\" = bad ]; then echo failing >&2; exit 2; fi\n{WRITE_REPORT}\n"
    );
    let rig = Rig::sqlite(&[&good, &bad], &agent);
    let mut run = rig.start_run();
    let addr = run.http_addr().await;
    subscribed(&good).await;
    subscribed(&bad).await;

    for i in 0..3 {
        emit(&good, i).await;
    }
    emit(&good, 0).await; // a repeat: received, not created
    for i in 0..2 {
        emit(&bad, i).await;
    }
    let store = rig.store().await;
    let incidents = all_finished(&store, 5, DEADLINE).await;
    let outcome = |c: &str, s: IncidentStatus| {
        incidents
            .iter()
            .filter(|i| i.cluster == c && i.status == s)
            .count()
    };
    assert_eq!(outcome("good", IncidentStatus::Succeeded), 3);
    assert_eq!(outcome("bad", IncidentStatus::Failed), 2);

    // Counters are updated after the database: poll until the last run is counted.
    let exp = wait_until("metrics counting every run", DEADLINE, || async {
        let (code, body) = http_get(addr, "/metrics").await;
        assert_eq!(code, 200);
        let exp = prom::parse(&body).unwrap_or_else(|e| panic!("not Prometheus text: {e}\n{body}"));
        let runs = exp.value(
            "nightcrier_agent_runs_total",
            &[("cluster", "bad"), ("outcome", "failed")],
        );
        (runs == Some(2.0)).then_some(exp)
    })
    .await;
    assert!(exp.types.contains_key("nightcrier_events_received_total"));
    assert_eq!(
        exp.value("nightcrier_events_received_total", &[("cluster", "good")]),
        Some(4.0)
    );
    assert_eq!(
        exp.value("nightcrier_events_received_total", &[("cluster", "bad")]),
        Some(2.0)
    );
    assert_eq!(
        exp.value("nightcrier_incidents_created_total", &[("cluster", "good")]),
        Some(3.0)
    );
    assert_eq!(
        exp.value("nightcrier_incidents_created_total", &[("cluster", "bad")]),
        Some(2.0)
    );
    assert_eq!(
        exp.value(
            "nightcrier_agent_runs_total",
            &[("cluster", "good"), ("outcome", "succeeded")]
        ),
        Some(3.0)
    );
    assert_eq!(exp.value("nightcrier_agents_running", &[]), Some(0.0));
    assert_eq!(
        exp.value("nightcrier_mcp_connected", &[("cluster", "good")]),
        Some(1.0)
    );

    assert_eq!(http_get(addr, "/healthz").await.0, 200);
    assert_eq!(http_get(addr, "/readyz").await.0, 200);
    run.kill9().await;
}

/// `status --json` from a second process sees the live run: the cluster subscribed, one incident
/// running, the counts; the human table renders the same facts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reflects_a_live_run_from_another_process() {
    let sim = simulator("live").await;
    // Runs until the test creates the release file next to the workspaces.
    let agent = format!(
        "while [ ! -f \"$INCIDENT_WORKSPACE/../../release\" ]; do sleep 0.05; done\n{WRITE_REPORT}\n"
    );
    let rig = Rig::sqlite(&[&sim], &agent);
    // The default 30 s ping interval: event counts must still reach the database within about
    // a second of a burst (regression: they used to wait for the next ping).
    rig.write_config();
    let _run = rig.start_run();
    subscribed(&sim).await;
    for i in 0..3 {
        emit(&sim, i).await;
    }
    let store = rig.store().await;
    wait_until("one running and two pending", DEADLINE, || async {
        let all = all_incidents(&store).await;
        let n = |s| all.iter().filter(|i| i.status == s).count();
        (n(IncidentStatus::Running) == 1 && n(IncidentStatus::Pending) == 2).then_some(())
    })
    .await;

    // The connection state is saved by the writer about once a second: poll.
    let v = wait_until(
        "status showing the cluster subscribed with 3 events",
        DEADLINE,
        || async {
            let out = rig.cli(&["status", "--json"]).await;
            assert_eq!(out.code(), Some(0), "{}", out.stderr);
            let v = out.json();
            let c = &v["clusters"][0]["connection"];
            (c["state"] == "subscribed" && c["events_received"] == 3).then_some(v)
        },
    )
    .await;
    let clusters = v["clusters"].as_array().expect("clusters");
    assert_eq!(clusters.len(), 1, "{v}");
    let c = &clusters[0];
    assert_eq!(c["name"], "live");
    assert_eq!(c["configured"], true);
    assert_eq!(c["connection"]["state"], "subscribed", "{v}");
    assert_eq!(c["connection"]["events_received"], 3, "{v}");
    assert_eq!(c["running"], 1, "{v}");
    assert_eq!(c["pending"], 2, "{v}");
    assert_eq!(v["totals"]["running"], 1);
    assert_eq!(v["totals"]["pending"], 2);
    assert_eq!(v["totals"]["succeeded"], 0);

    let out = rig.cli(&["status"]).await;
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].starts_with("CLUSTER") && lines[0].contains("CONNECTION"),
        "{}",
        out.stdout
    );
    let row = lines[1];
    assert!(
        row.starts_with("live") && row.contains("subscribed"),
        "{}",
        out.stdout
    );
    // Columns are aligned: the row's fields start where the header's do.
    let col = |s: &str, name: &str| s.find(name).unwrap();
    assert_eq!(
        col(lines[0], "CONNECTION"),
        col(row, "subscribed"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("incidents: pending 2, running 1"),
        "{}",
        out.stdout
    );

    std::fs::write(rig.path().join("release"), "").unwrap();
    let all = all_finished(&store, 3, DEADLINE).await;
    assert!(all.iter().all(|i| i.status == IncidentStatus::Succeeded));
    let out = rig.cli(&["status", "--json"]).await;
    assert_eq!(out.json()["totals"]["succeeded"], 3);
    let ids: HashSet<_> = all.iter().map(|i| i.id).collect();
    assert!(agent_processes(&ids).is_empty());
}

/// Loose coupling: the MCP connection is lost (the source goes away for good) while an agent
/// runs; the agent is not disturbed, finishes, and its outcome is recorded while the producer
/// backs off and retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_mcp_connection_does_not_stop_a_running_agent() {
    let sim = simulator("gamma").await;
    let gate = tempfile::tempdir().unwrap();
    let release = gate.path().join("release");
    let agent = format!(
        "echo waiting\nwhile [ ! -f '{}' ]; do sleep 0.05; done\necho released\n{WRITE_REPORT}\n",
        release.display()
    );
    let rig = Rig::sqlite(&[&sim], &agent);
    let mut run = rig.start_run();
    subscribed(&sim).await;
    emit(&sim, 0).await;
    let store = rig.store().await;
    let running = wait_until("the agent is running", DEADLINE, || async {
        all_incidents(&store)
            .await
            .into_iter()
            .find(|i| i.status == IncidentStatus::Running)
    })
    .await;

    sim.shutdown().await;
    run.wait_stdout("connection lost").await;
    // The connection is gone and stays gone; the agent still runs.
    assert_eq!(status_of(&store, running.id).await, IncidentStatus::Running);
    std::fs::write(&release, "").unwrap();

    let done = all_finished(&store, 1, DEADLINE).await;
    assert_eq!(done[0].id, running.id);
    assert_eq!(done[0].status, IncidentStatus::Succeeded, "{:?}", done[0]);
    assert!(rig.agent_log(running.id).contains("released"));
    run.assert_alive();
}

/// Related faults through the binary: the simulator's CrashLoop and PodCrash of one pod (two
/// faultIds) and more pods of the same Deployment are one investigation; `incidents show` names
/// them, and the prompt of a run started after they attached lists them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn related_faults_of_one_workload_are_one_investigation() {
    let sim = simulator("gamma").await;
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    // The first run waits until every fault is recorded, so the incident stays open meanwhile.
    let agent = format!(
        "while [ ! -f {go} ]; do sleep 0.05; done\n{WRITE_REPORT}\n",
        go = go.display()
    );
    let mut rig = Rig::sqlite(&[&sim], &agent);
    rig.setup.related_window = std::time::Duration::from_secs(600);
    rig.write_config();
    let _run = rig.start_run();
    subscribed(&sim).await;

    let first = emit(&sim, 0).await;
    emit(&sim, 1).await;
    for suffix in ["b2c4d", "x9z7q", "k5m6n"] {
        let mut pod = first.clone();
        pod.name = pod.name.replace("x2k4q", suffix);
        pod.uid = format!("{}-{suffix}", pod.uid);
        assert!(sim.emit_fault(&pod).await >= 1);
    }
    // A different workload opens its own incident.
    emit(&sim, 5).await;

    let store = rig.store().await;
    let storm_fault = first.fault_id("gamma");
    let storm = wait_until("five occurrences on one incident", DEADLINE, || async {
        all_incidents(&store)
            .await
            .into_iter()
            .find(|i| i.fault_id == storm_fault && i.occurrences == 5)
    })
    .await;
    std::fs::write(&go, "").unwrap();
    let incidents = all_finished(&store, 2, DEADLINE).await;
    assert!(incidents
        .iter()
        .all(|i| i.status == IncidentStatus::Succeeded));

    let id = storm.id.to_string();
    let show = rig.cli(&["incidents", "show", &id]).await;
    assert!(show.status.success(), "{show:?}");
    assert!(show.stdout.contains("related faults"), "{}", show.stdout);
    for name in ["x9z7q", "PodCrash"] {
        assert!(show.stdout.contains(name), "{name}: {}", show.stdout);
    }

    // A run that starts now is told about all four related faults.
    let retry = rig.cli(&["incidents", "retry", &id]).await;
    assert!(retry.status.success(), "{retry:?}");
    wait_until("the second run to finish", DEADLINE, || async {
        let i = store.get(&id).await.ok()?;
        (i.attempt == 2 && i.status.is_terminal()).then_some(())
    })
    .await;
    let prompt = std::fs::read_to_string(rig.workspace_root().join(&id).join("prompt.md"))
        .expect("prompt.md");
    assert!(
        prompt.contains("Related faults attached to this incident (4 "),
        "{prompt}"
    );
    assert!(prompt.contains("PodCrash on Pod"), "{prompt}");
}

/// SIGUSR2 drains a fleet member; a process that runs alone (SQLite) must not die of it (the
/// signal's default action) but say why it ignores it and go on working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr2_on_a_lone_process_is_explained_not_fatal() {
    let sim = simulator("delta").await;
    let rig = Rig::sqlite(&[&sim], &format!("{WRITE_REPORT}\n"));
    let mut run = rig.start_run();
    subscribed(&sim).await;
    run.signal(nix::sys::signal::Signal::SIGUSR2);
    run.wait_stdout("SIGUSR2 ignored").await;
    // Still alive and working: a fault after the signal is investigated.
    emit(&sim, 0).await;
    let store = rig.store().await;
    let done = all_finished(&store, 1, DEADLINE).await;
    assert_eq!(done[0].status, IncidentStatus::Succeeded);
}

/// Dropping the future of `App::run` (a caller that gives up on it) stops what it started: the
/// MCP session, the HTTP listener and the running agent. Without that they would outlive it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_application_future_stops_its_session_listener_and_agent() {
    use nightcrier::agent::live_processes_with_marker;
    use tokio_util::sync::CancellationToken;

    let sim = simulator("alpha").await;
    let rig = Rig::sqlite(&[&sim], "sleep 300\n");
    rig.write_config();
    let config = nightcrier::config::load(Some(&rig.config_path()), Vec::new())
        .expect("configuration")
        .config;
    let app = nightcrier::app::App::build(config)
        .await
        .expect("application")
        .without_preflight();
    let addr = app.http_addr().expect("the HTTP endpoint is on");
    let store = app.store().clone();
    let run = tokio::spawn(app.run(CancellationToken::new(), CancellationToken::new()));
    subscribed(&sim).await;
    emit(&sim, 0).await;
    let id = wait_until("the agent running", DEADLINE, || async {
        let all = all_incidents(&store).await;
        let i = all.first()?;
        (!live_processes_with_marker(i.id, 1).is_empty()).then_some(i.id)
    })
    .await;
    assert_eq!(http_get(addr, "/healthz").await.0, 200);

    run.abort();
    assert!(run.await.expect_err("aborted").is_cancelled());

    wait_until("the agent gone", DEADLINE, || async {
        live_processes_with_marker(id, 1).is_empty().then_some(())
    })
    .await;
    wait_until("the HTTP listener closed", DEADLINE, || async {
        tokio::net::TcpStream::connect(addr)
            .await
            .is_err()
            .then_some(())
    })
    .await;
    wait_until("the MCP stream closed", DEADLINE, || async {
        let spec = nightcrier::simulate::FaultSpec::generate(1, 7);
        (sim.emit_fault(&spec).await == 0).then_some(())
    })
    .await;
}
