//! Fault injection against the whole process (the real binary, real loopback HTTP, a real
//! database): PostgreSQL stopped for 10 s under a steady flow of events; fault sources killed and
//! restarted again and again under load; hostile notifications (10 MiB, deep nesting, invalid
//! UTF-8, a frame that never ends). Each time the process stays up and bounded, loses nothing it
//! was handed, and returns to its baseline of tasks and connections.

use crate::support::common;
use crate::support::e2e as e2e_support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e_support::*;
use nightcrier::incident::IncidentStatus;
use nightcrier::simulate::{FaultSpec, SimHandle};
use nightcrier::store::Store;
use serde_json::json;

/// Faults emitted round-robin over some simulators at a steady pace until stopped.
struct Flow {
    stop: Arc<AtomicBool>,
    delivered: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

/// Every `every`, one occurrence on each simulator, cycling over `distinct` faults (so after
/// the first round they attach to existing incidents, as an event storm does).
fn steady_flow(sims: Vec<Arc<SimHandle>>, distinct: usize, every: Duration) -> Flow {
    let stop = Arc::new(AtomicBool::new(false));
    let delivered = Arc::new(AtomicU64::new(0));
    let (s, d) = (stop.clone(), delivered.clone());
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        let mut i = 0usize;
        while !s.load(Ordering::Relaxed) {
            tick.tick().await;
            let spec = FaultSpec::generate(i % distinct, 7);
            for sim in &sims {
                d.fetch_add(sim.emit_fault(&spec).await as u64, Ordering::Relaxed);
            }
            i += 1;
        }
    });
    Flow {
        stop,
        delivered,
        task,
    }
}

impl Flow {
    fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Stops the flow; returns how many notifications reached nightcrier's streams.
    async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the flow task");
        self.delivered.load(Ordering::Relaxed)
    }
}

/// Occurrences recorded (all incidents, or one cluster's).
async fn occurrences(store: &Store, cluster: Option<&str>) -> i64 {
    all_incidents(store)
        .await
        .iter()
        .filter(|i| cluster.is_none_or(|c| i.cluster == c))
        .map(|i| i.occurrences)
        .sum()
}

fn assert_no_panic(run: &Proc) {
    let (out, err) = (run.stdout(), run.stderr());
    assert!(
        !out.contains("panick") && !err.contains("panick"),
        "a task panicked\nstdout:\n{out}\nstderr:\n{err}"
    );
}

/// Sum of a counter over every label set that has `cluster`.
fn per_cluster(m: &prom::Exposition, name: &str, cluster: &str) -> f64 {
    m.samples
        .iter()
        .filter(|s| s.name == name && s.labels.get("cluster").is_some_and(|c| c == cluster))
        .map(|s| s.value)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_for_10s_under_steady_flow_loses_no_event() {
    let db = common::TestDb::postgres().await;
    let a = Arc::new(simulator("outage-a").await);
    let b = Arc::new(simulator("outage-b").await);
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut rig = Rig::with_url(dir, db.url(), &[&a, &b], WRITE_REPORT);
    // Fail fast while the server is down; short leases so a run whose outcome could not be
    // recorded in the outage comes back quickly.
    rig.setup.db_acquire_timeout = Duration::from_secs(1);
    rig.setup.lease_duration = Duration::from_secs(4);
    rig.setup.heartbeat_interval = Duration::from_secs(1);
    rig.setup.rescue_interval = Duration::from_secs(1);
    rig.write_config();
    let mut run = rig.start_run();
    let addr = run.http_addr().await;
    subscribed(&a).await;
    subscribed(&b).await;

    // 100 events/s over 20 faults per cluster.
    let flow = steady_flow(vec![a.clone(), b.clone()], 20, Duration::from_millis(20));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let server = db.pg_server().expect("a PostgreSQL server");
    server.stop_async().await;
    let stopped = Instant::now();
    let delivered_at_stop = flow.delivered();

    let body = wait_until("/readyz to report the outage", DEADLINE, || async {
        let (code, body) = http_get(addr, "/readyz").await;
        (code == 503).then_some(body)
    })
    .await;
    assert!(
        body.contains("database") || body.contains("ingest"),
        "{body}"
    );
    // Not only the readiness ping: the writer itself failed and holds the events.
    wait_until("ingest to be degraded", DEADLINE, || async {
        let m = metrics(addr).await;
        (m.value("nightcrier_ingest_degraded", &[]) == Some(1.0)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(stopped.elapsed())).await;
    let delivered_in_outage = flow.delivered() - delivered_at_stop;
    let buffered = metrics(addr)
        .await
        .value("nightcrier_ingest_buffer_depth", &[])
        .unwrap_or(0.0);
    server.start_again_async().await;
    let restarted = Instant::now();

    wait_until("/readyz to be ready again", DEADLINE, || async {
        (http_get(addr, "/readyz").await.0 == 200).then_some(())
    })
    .await;
    let ready_after = restarted.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let delivered = flow.finish().await;
    run.assert_alive();
    assert!(
        delivered_in_outage >= 500,
        "the flow stalled in the outage: {delivered_in_outage} events"
    );
    assert!(
        buffered >= 100.0,
        "events of the outage were not held in the buffer ({buffered})"
    );

    // Every delivered event is in the database, as an occurrence row and in the counts.
    let store = rig.store().await;
    wait_until("every delivered event to be recorded", DEADLINE, || async {
        (occurrences(&store, None).await == delivered as i64).then_some(())
    })
    .await;
    eprintln!(
        "outage {:?}: {delivered_in_outage} events delivered in it, {buffered} buffered at its \
         end, ready {ready_after:?} after the restart, {delivered} events in all, all recorded \
         {:?} after the restart",
        restarted - stopped,
        restarted.elapsed()
    );
    let pool = sqlx::PgPool::connect(&db.url()).await.expect("connecting");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM fault_occurrences")
        .fetch_one(&pool)
        .await
        .expect("counting occurrences");
    assert_eq!(rows, delivered as i64, "occurrence rows");
    let m = metrics(addr).await;
    for cluster in ["outage-a", "outage-b"] {
        assert_eq!(
            per_cluster(&m, "nightcrier_events_dropped_total", cluster),
            0.0,
            "{cluster}: events dropped"
        );
    }
    assert_eq!(m.value("nightcrier_ingest_degraded", &[]), Some(0.0));

    // The consumer came through too: every incident ends, and succeeds (a run whose outcome
    // could not be written is rescued and run again).
    let all = all_finished(&store, 40, DEADLINE).await;
    let failed: Vec<_> = all
        .iter()
        .filter(|i| i.status != IncidentStatus::Succeeded)
        .map(|i| (i.id, i.status, i.failure_reason.clone()))
        .collect();
    assert!(failed.is_empty(), "not succeeded: {failed:?}");
    assert_no_panic(&run);
}

/// Tasks alive (from `/metrics`) and open sockets (from `/proc`) of the process.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Vitals {
    tasks: f64,
    sockets: usize,
}

async fn vitals(addr: std::net::SocketAddr, pid: i32) -> Vitals {
    let m = metrics(addr).await;
    Vitals {
        tasks: m
            .value("nightcrier_runtime_alive_tasks", &[])
            .expect("the task gauge"),
        sockets: open_sockets(pid),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_sources_killed_and_restarted_under_load_leak_no_task_or_connection() {
    let mut sims = Vec::new();
    for name in ["churn-a", "churn-b", "churn-c"] {
        sims.push(Arc::new(simulator(name).await));
    }
    let refs: Vec<&SimHandle> = sims.iter().map(|s| s.as_ref()).collect();
    let rig = Rig::sqlite(&refs, WRITE_REPORT);
    let mut run = rig.start_run();
    let addr = run.http_addr().await;
    let pid = run.pid();
    for s in &sims {
        subscribed(s).await;
    }
    let flow = steady_flow(sims.clone(), 10, Duration::from_millis(20));
    let store = rig.store().await;
    // Settled: 10 incidents per cluster, all handled; later occurrences only attach.
    all_finished(&store, 30, DEADLINE).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline = vitals(addr, pid).await;

    // Kills (the port refuses connections for a while) and restarts, one source at a time and
    // all at once, while events keep coming.
    // Each source: one restart, one kill, three restarts of all; every round waits until all
    // are subscribed again, so each round costs each affected source a session.
    for round in 0..9 {
        let sim = &sims[round / 3];
        match round % 3 {
            0 => sim.restart().await.expect("restarting a source"),
            1 => {
                sim.stop_serving().await;
                tokio::time::sleep(Duration::from_millis(1500)).await;
                sim.serve_again().await.expect("serving again");
            }
            _ => {
                for s in &sims {
                    s.restart().await.expect("restarting a source");
                }
            }
        }
        run.assert_alive();
        for s in &sims {
            subscribed(s).await;
        }
    }

    // All back: one session, subscription and stream each.
    for s in &sims {
        wait_until("one live subscription per source", DEADLINE, || async {
            (s.sessions() == 1 && s.subscriptions() == 1 && s.attached_streams() == 1).then_some(())
        })
        .await;
    }
    // And events after the last restart are ingested.
    let mark = occurrences(&store, None).await;
    wait_until("events to flow after the restarts", DEADLINE, || async {
        (occurrences(&store, None).await >= mark + 90).then_some(())
    })
    .await;
    flow.finish().await;

    let m = metrics(addr).await;
    for s in &sims {
        let reconnects = per_cluster(&m, "nightcrier_mcp_reconnects_total", s.context());
        assert!(
            reconnects >= 5.0,
            "{}: {reconnects} reconnects counted",
            s.context()
        );
    }
    assert!(
        m.samples
            .iter()
            .all(|s| s.name != "nightcrier_task_restarts_total" || s.value == 0.0),
        "a supervised task restarted (it panicked)"
    );

    // Back to the baseline once the dust settles: nothing left over from the 15 lost sessions
    // (a leaked session would keep a task and its stream's socket).
    let start = Instant::now();
    loop {
        let now = vitals(addr, pid).await;
        if now.tasks <= baseline.tasks && now.sockets <= baseline.sockets {
            eprintln!("baseline {baseline:?}, after the restarts {now:?}");
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "not back to the baseline {baseline:?} after {DEADLINE:?}: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    run.assert_alive();
    assert_no_panic(&run);
}

/// An SSE frame carrying a fault notification whose `data` is `data` (raw JSON text).
fn notification_frame(data: &[u8]) -> Vec<u8> {
    let mut frame =
        b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\
\"params\":{\"level\":\"warning\",\"logger\":\"kubernetes/faults\",\"data\":"
            .to_vec();
    frame.extend_from_slice(data);
    frame.extend_from_slice(b"}}\n\n");
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_notifications_leave_the_process_up_bounded_and_ingesting() {
    let good = Arc::new(simulator("hostile-good").await);
    let bad = Arc::new(simulator("hostile-bad").await);
    let rig = Rig::sqlite(&[&good, &bad], WRITE_REPORT);
    let mut run = rig.start_run();
    let addr = run.http_addr().await;
    let pid = run.pid();
    subscribed(&good).await;
    subscribed(&bad).await;
    let store = rig.store().await;
    let flow = steady_flow(vec![good.clone()], 5, Duration::from_millis(20));
    wait_until("the good source's events", DEADLINE, || async {
        (occurrences(&store, Some("hostile-good")).await > 0).then_some(())
    })
    .await;
    let baseline_rss = rss_kib(pid);

    // Each hostile notification is followed by a valid fault on the same stream, which must
    // still be ingested.
    let big = "x".repeat(10 << 20);
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        (
            "10 MiB notification",
            notification_frame(
                json!({"faultId": "big", "context": big})
                    .to_string()
                    .as_bytes(),
            ),
        ),
        (
            "100,000 levels of nesting",
            notification_frame(
                format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).as_bytes(),
            ),
        ),
        (
            "invalid UTF-8",
            notification_frame(b"{\"faultId\":\"\xff\xfe\xfd\",\"faultType\":\"\xc3\x28\"}"),
        ),
    ];
    for (n, (what, frame)) in hostile.into_iter().enumerate() {
        assert_eq!(bad.inject_raw(frame).await, 1, "{what} was not delivered");
        emit(&bad, n).await;
        wait_until(
            &format!("the valid fault after {what}"),
            DEADLINE,
            || async {
                (occurrences(&store, Some("hostile-bad")).await == n as i64 + 1).then_some(())
            },
        )
        .await;
        run.assert_alive();
    }
    let malformed = per_cluster(
        &metrics(addr).await,
        "nightcrier_events_malformed_total",
        "hostile-bad",
    );
    assert_eq!(malformed, 3.0, "each hostile notification counted once");

    // A frame that never ends: 96 MiB of one data line. Memory stays bounded and the other
    // source's events keep flowing meanwhile.
    let good_before = occurrences(&store, Some("hostile-good")).await;
    let mut peak_rss = 0;
    assert_eq!(bad.inject_raw(&b"event: message\ndata: "[..]).await, 1);
    let chunk = vec![b'a'; 1 << 20];
    for _ in 0..96 {
        assert_eq!(bad.inject_raw(chunk.clone()).await, 1, "the stream broke");
        peak_rss = peak_rss.max(rss_kib(pid));
    }
    wait_until(
        "the good source's events during the endless frame",
        DEADLINE,
        || async {
            (occurrences(&store, Some("hostile-good")).await >= good_before + 50).then_some(())
        },
    )
    .await;
    peak_rss = peak_rss.max(rss_kib(pid));
    run.assert_alive();
    // Unbounded buffering would hold the 96 MiB; the bound is `mcp.max_event_bytes` (4 MiB).
    let growth_mib = peak_rss.saturating_sub(baseline_rss) / 1024;
    assert!(
        growth_mib < 40,
        "resident memory grew by {growth_mib} MiB (baseline {baseline_rss} KiB, peak {peak_rss} KiB)"
    );
    // The frame ends at last; the stream is still usable.
    assert_eq!(bad.inject_raw(&b"\n\n"[..]).await, 1);
    emit(&bad, 3).await;
    wait_until(
        "a valid fault after the endless frame",
        DEADLINE,
        || async { (occurrences(&store, Some("hostile-bad")).await == 4).then_some(()) },
    )
    .await;
    flow.finish().await;
    assert_eq!(
        bad.stream_sessions_created(),
        1,
        "the hostile stream cost the session"
    );
    eprintln!("RSS baseline {baseline_rss} KiB, peak {peak_rss} KiB");
    run.assert_alive();
    assert_no_panic(&run);
}
