//! Two real `nightcrier run` processes sharing one real PostgreSQL: 30 incidents over 4 clusters
//! with `max_concurrent_agents: 2` and one agent per cluster. The limits hold at every instant
//! (checked from the stubs' own start/end times and from the `agent_runs` rows), all 30 finish,
//! and when one process is killed mid-run the other rescues its leases.

use crate::support::common;
use crate::support::e2e as e2e_support;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use e2e_support::*;
use nightcrier::incident::IncidentStatus;
use nightcrier::simulate::SimHandle;
use uuid::Uuid;

/// Records its interval (nanoseconds) in `$D/timeline`, works a little, reports. Runs are told
/// apart by the agent marker (`<incident id>:<attempt>`).
const RECORDING_STUB: &str = r#"D="$INCIDENT_WORKSPACE/../.."
echo "$CLUSTER_NAME $NIGHTCRIER_AGENT_RUN start $(date +%s%N)" >> "$D/timeline"
sleep "$(cat "$D/work")"
printf '# Report\n%0200d\n' 0 > "$REPORT_FILE"
echo "$CLUSTER_NAME $NIGHTCRIER_AGENT_RUN end $(date +%s%N)" >> "$D/timeline"
"#;

const TOTAL: usize = 30;

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128
}

/// One agent run in time: (cluster, start, end) in nanoseconds.
type Span = (String, i128, i128);

/// No instant has more than `total` spans, or more than `per` of one cluster. An end and a start
/// at the same instant do not overlap.
fn check_limits(spans: &[Span], total: usize, per: usize, source: &str) {
    let mut events: Vec<(i128, i32, &str)> = Vec::new();
    for (c, s, e) in spans {
        assert!(s <= e, "{source}: span ends before it starts: {c} {s} {e}");
        events.push((*s, 1, c));
        events.push((*e, -1, c));
    }
    // Ends before starts at the same instant.
    events.sort_by_key(|(t, d, _)| (*t, *d));
    let mut now = 0i32;
    let mut per_cluster: BTreeMap<&str, i32> = BTreeMap::new();
    let mut max_seen = 0;
    for (t, d, c) in events {
        now += d;
        let n = per_cluster.entry(c).or_default();
        *n += d;
        assert!(
            now <= total as i32,
            "{source}: {now} agents ran at once at {t} (limit {total})"
        );
        assert!(
            *n <= per as i32,
            "{source}: {n} agents ran at once on {c} at {t} (limit {per})"
        );
        max_seen = max_seen.max(now);
    }
    // The test means something only if the global limit was actually reached.
    assert_eq!(
        max_seen, total as i32,
        "{source}: never ran {total} at once"
    );
}

/// The stubs' intervals; a start without an end (its agent was killed) ends at `killed_at`.
fn stub_spans(rig: &Rig, killed_at: Option<i128>) -> Vec<Span> {
    let text = std::fs::read_to_string(rig.path().join("timeline")).unwrap_or_default();
    let mut open: BTreeMap<String, (String, i128)> = BTreeMap::new();
    let mut spans = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 4, "bad timeline line {line:?}");
        let t: i128 = f[3].parse().unwrap();
        match f[2] {
            "start" => {
                let prev = open.insert(f[1].to_string(), (f[0].to_string(), t));
                assert!(prev.is_none(), "two starts without an end for {}", f[1]);
            }
            "end" => {
                let (c, s) = open.remove(f[1]).expect("an end without a start");
                spans.push((c, s, t));
            }
            other => panic!("bad timeline event {other}"),
        }
    }
    for (id, (c, s)) in open {
        let end = killed_at.unwrap_or_else(|| panic!("the run of {id} never ended"));
        spans.push((c, s, end));
    }
    spans
}

/// The `agent_runs` rows as spans; an unfinished row ends at `killed_at`.
async fn db_spans(
    store: &nightcrier::store::Store,
    incidents: &[nightcrier::incident::Incident],
    killed_at: Option<i128>,
) -> Vec<Span> {
    let mut spans = Vec::new();
    for i in incidents {
        for r in store.agent_runs(i.id).await.unwrap() {
            let s = r.started_at.timestamp_nanos_opt().unwrap() as i128;
            let e = match r.finished_at {
                Some(f) => f.timestamp_nanos_opt().unwrap() as i128,
                None => killed_at.expect("an unfinished agent run"),
            };
            spans.push((i.cluster.clone(), s, e));
        }
    }
    spans
}

async fn subscribed_by(sim: &SimHandle, n: usize) {
    wait_until("subscriptions", DEADLINE, || async {
        (sim.subscriptions() >= n && sim.attached_streams() >= n).then_some(())
    })
    .await
}

struct Fleet {
    _db: common::TestDb,
    _sims: Vec<SimHandle>,
    rig: Rig,
    a: Proc,
    b: Proc,
}

async fn two_processes(work: &str, lease: Duration) -> Fleet {
    let db = common::TestDb::postgres().await;
    let mut sims = Vec::new();
    for c in 1..=4 {
        sims.push(simulator(&format!("pg-{c}")).await);
    }
    let refs: Vec<&SimHandle> = sims.iter().collect();
    let dir = tempfile::tempdir().unwrap();
    let mut rig = Rig::with_url(dir, db.url(), &refs, RECORDING_STUB);
    std::fs::write(rig.path().join("work"), work).unwrap();
    rig.setup.max_concurrent_agents = 2;
    rig.setup.max_agents_per_cluster = 1;
    rig.setup.lease_duration = lease;
    rig.setup.heartbeat_interval = Duration::from_secs(1);
    rig.setup.rescue_interval = Duration::from_secs(1);
    rig.setup.poll_interval = Duration::from_millis(300);
    rig.write_config();
    let a_cfg = rig.write_config_as("a.yaml", "e2e-a");
    let b_cfg = rig.write_config_as("b.yaml", "e2e-b");
    let a = Proc::spawn(&["run", "--config", &a_cfg.display().to_string()]);
    let b = Proc::spawn(&["run", "--config", &b_cfg.display().to_string()]);
    // The fleet divides the clusters: each is subscribed by one of the two processes.
    for s in &sims {
        subscribed_by(s, 1).await;
    }
    // 30 distinct faults: 8, 8, 7, 7.
    for i in 0..TOTAL {
        emit(&sims[i % 4], i / 4).await;
    }
    Fleet {
        _db: db,
        _sims: sims,
        rig,
        a,
        b,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_the_limits_and_finish_all_30() {
    let mut fleet = two_processes("0.2", Duration::from_secs(30)).await;
    let store = fleet.rig.store().await;
    let done = all_finished(&store, TOTAL, Duration::from_secs(50)).await;
    assert!(done
        .iter()
        .all(|i| i.status == IncidentStatus::Succeeded && i.attempt == 1));
    let ids: HashSet<Uuid> = done.iter().map(|i| i.id).collect();
    assert_eq!(ids.len(), TOTAL);

    // Both processes did work (the claim is shared, not one process hoarding it).
    let mut workers = HashSet::new();
    for i in &done {
        for r in store.agent_runs(i.id).await.unwrap() {
            workers.insert(r.worker.split('/').next().unwrap().to_string());
        }
    }
    assert_eq!(
        workers,
        HashSet::from(["e2e-a".to_string(), "e2e-b".to_string()]),
        "both processes ran agents"
    );

    check_limits(&stub_spans(&fleet.rig, None), 2, 1, "stub timeline");
    check_limits(&db_spans(&store, &done, None).await, 2, 1, "agent_runs");
    fleet.a.assert_alive();
    fleet.b.assert_alive();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_killed_mid_run_its_leases_are_rescued_by_the_other() {
    let mut fleet = two_processes("0.8", Duration::from_secs(3)).await;
    let store = fleet.rig.store().await;
    // Kill A while it holds a lease, after some work is done.
    let held = wait_until(
        "A running an incident after a few finished",
        DEADLINE,
        || async {
            let all = all_incidents(&store).await;
            let finished = all.iter().filter(|i| i.status.is_terminal()).count();
            let a_running: Vec<Uuid> = all
                .iter()
                .filter(|i| {
                    i.status == IncidentStatus::Running
                        && i.lease_owner
                            .as_deref()
                            .is_some_and(|o| o.starts_with("e2e-a/"))
                })
                .map(|i| i.id)
                .collect();
            (finished >= 4 && !a_running.is_empty()).then_some(a_running)
        },
    )
    .await;
    fleet.a.kill9().await;
    let killed_at = now_ns();

    let done = all_finished(&store, TOTAL, Duration::from_secs(55)).await;
    assert!(
        done.iter().all(|i| i.status == IncidentStatus::Succeeded),
        "{:?}",
        done.iter()
            .filter(|i| i.status != IncidentStatus::Succeeded)
            .collect::<Vec<_>>()
    );
    for id in &held {
        let i = done.iter().find(|i| i.id == *id).unwrap();
        assert_eq!(i.attempt, 2, "rescued and run again: {i:?}");
        let runs = store.agent_runs(*id).await.unwrap();
        assert!(runs[0].worker.starts_with("e2e-a/"), "{runs:?}");
        assert!(runs[1].worker.starts_with("e2e-b/"), "{runs:?}");
    }
    let ids: HashSet<Uuid> = done.iter().map(|i| i.id).collect();
    check_limits(
        &stub_spans(&fleet.rig, Some(killed_at)),
        2,
        1,
        "stub timeline",
    );
    check_limits(
        &db_spans(&store, &done, Some(killed_at)).await,
        2,
        1,
        "agent_runs",
    );
    wait_until("no agent process left", DEADLINE, || async {
        agent_processes(&ids).is_empty().then_some(())
    })
    .await;
    fleet.b.assert_alive();
}
