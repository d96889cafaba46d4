//! A fleet of real `nightcrier run` processes on one PostgreSQL, watching 30 simulated clusters
//! (one simulator each, so subscriptions are counted per cluster): the clusters are divided
//! evenly, each subscribed by exactly one process; a killed process's clusters are taken over
//! when their leases expire, a terminated one hands them over, a new one takes its share, a
//! drained one gives all of its clusters away; agent limits hold throughout.

use crate::support::common;
use crate::support::stub;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestDb;
use nightcrier::incident::IncidentStatus;
use nightcrier::simulate::{FaultSpec, SimConfig, SimHandle, Simulator};
use nightcrier::store::{ListFilter, Store};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use stub::Rig;

const CLUSTERS: usize = 30;
/// The fleet's timing in these tests (`fleet.*`).
const HEARTBEAT: Duration = Duration::from_millis(200);
const TTL: Duration = Duration::from_secs(1);
/// How long any one expected state may take to appear before the test fails.
const LIMIT: Duration = Duration::from_secs(20);

struct FleetRig {
    rig: Rig,
    db: TestDb,
    sims: Arc<Vec<SimHandle>>,
    procs: BTreeMap<String, Child>,
}

impl FleetRig {
    async fn new() -> Self {
        let db = TestDb::postgres().await;
        let rig = Rig::with_store(tempfile::tempdir().unwrap(), db.store().await);
        let mut sims = Vec::new();
        for i in 0..CLUSTERS {
            sims.push(
                Simulator::start(SimConfig {
                    context: format!("ctx-{i:02}"),
                    ..SimConfig::default()
                })
                .await
                .unwrap(),
            );
        }
        Self {
            rig,
            db,
            sims: Arc::new(sims),
            procs: BTreeMap::new(),
        }
    }

    fn store(&self) -> &Store {
        &self.rig.store
    }

    /// The configuration of process `instance`: the rig's stub agent, every cluster (named
    /// `brief-NN`, which the stub runs for 50 ms), fast reconnects and the test's fleet timing.
    fn write_config(&self, instance: &str) -> PathBuf {
        self.write_config_for(instance, CLUSTERS)
    }

    /// The configuration with only the first `clusters` clusters.
    fn write_config_for(&self, instance: &str, clusters_n: usize) -> PathBuf {
        let agent = &self.rig.config.agent;
        let quoted: Vec<String> = agent
            .command
            .iter()
            .map(|a| serde_json::to_string(a).unwrap())
            .collect();
        let mut clusters = String::new();
        for (i, sim) in self.sims.iter().enumerate().take(clusters_n) {
            clusters.push_str(&format!(
                "  - name: brief-{i:02}\n    mcp:\n      endpoint: {:?}\n    evidence:\n      enabled: false\n",
                sim.endpoint()
            ));
        }
        let yaml = format!(
            r#"
workspace_root: {workspace}
limits:
  max_concurrent_agents: 2
  max_agents_per_cluster: 1
# One fault, one incident: these tests count incidents per fault (related faults are not their
# subject).
dedup:
  related_window: 0s
reconnect:
  initial_backoff: 20ms
  max_backoff: 200ms
worker:
  poll_interval: 50ms
  heartbeat_interval: 1s
  lease_duration: 30s
  shutdown_grace: 5s
  instance_name: {instance}
fleet:
  heartbeat_interval: {hb}ms
  lease_ttl: {ttl}ms
agent:
  preset: command
  command: [{command}]
  timeout: 60s
  kill_grace: 1s
http:
  listen: ""
clusters:
{clusters}"#,
            workspace = serde_json::to_string(&self.rig.dir.path().join("incidents")).unwrap(),
            command = quoted.join(", "),
            hb = HEARTBEAT.as_millis(),
            ttl = TTL.as_millis(),
        );
        let path = self.rig.dir.path().join(format!("{instance}.yaml"));
        std::fs::write(&path, yaml).unwrap();
        path
    }

    fn log(&self, instance: &str) -> PathBuf {
        self.rig.dir.path().join(format!("{instance}.log"))
    }

    fn start(&mut self, instance: &str) {
        self.start_with(instance, CLUSTERS);
    }

    fn start_with(&mut self, instance: &str, clusters: usize) {
        let config = self.write_config_for(instance, clusters);
        let child = nightcrier(
            &["run", "--config"],
            &config,
            &self.db.url(),
            &self.log(instance),
        )
        .spawn()
        .unwrap();
        self.procs.insert(instance.to_string(), child);
    }

    fn signal(&self, instance: &str, sig: Signal) {
        kill(Pid::from_raw(self.procs[instance].id() as i32), sig).unwrap();
    }

    async fn wait_exit(&mut self, instance: &str) -> std::process::ExitStatus {
        let mut child = self.procs.remove(instance).unwrap();
        tokio::task::spawn_blocking(move || child.wait().unwrap())
            .await
            .unwrap()
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for name in ["a", "b", "c", "d"] {
            if let Ok(text) = std::fs::read_to_string(self.log(name)) {
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                out.push_str(&format!("---- {name}\n"));
                for l in tail.into_iter().rev() {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out
    }

    /// Held leases per instance name (`<name>/<boot>/<pid>` → `<name>`).
    async fn owners(&self) -> BTreeMap<String, Option<String>> {
        let (_, leases) = self.store().fleet_status(TTL).await.unwrap();
        leases
            .into_iter()
            .map(|l| {
                let owner = l
                    .held
                    .then(|| l.owner.map(|o| o.split('/').next().unwrap().to_string()))
                    .flatten();
                (l.cluster, owner)
            })
            .collect()
    }

    /// Waits until the held leases are divided as `want` (instance → count) and every cluster's
    /// simulator has exactly one attached subscription stream.
    async fn wait_division(&self, want: &[(&str, usize)], what: &str) -> Duration {
        let started = Instant::now();
        loop {
            let owners = self.owners().await;
            let mut counts: BTreeMap<String, usize> = BTreeMap::new();
            for o in owners.values().flatten() {
                *counts.entry(o.clone()).or_default() += 1;
            }
            let expected: BTreeMap<String, usize> =
                want.iter().map(|(n, c)| (n.to_string(), *c)).collect();
            let streams: Vec<usize> = self.sims.iter().map(|s| s.attached_streams()).collect();
            if owners.len() == CLUSTERS && counts == expected && streams.iter().all(|n| *n == 1) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < LIMIT,
                "timed out waiting for {what}: owners {counts:?}, streams {streams:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Emits one new fault on every simulator and waits until each is an incident; returns them.
    async fn emit_round(&self, seed: u64) -> Vec<uuid::Uuid> {
        let started = Instant::now();
        for (i, sim) in self.sims.iter().enumerate() {
            // A new owner's stream may be attached a moment before its subscription exists:
            // emit until the fault is delivered, and never to more than one subscriber.
            loop {
                let delivered = sim.emit_fault(&FaultSpec::generate(i, seed)).await;
                assert!(delivered <= 1, "cluster {i} has {delivered} subscribers");
                if delivered == 1 {
                    break;
                }
                assert!(
                    started.elapsed() < LIMIT,
                    "cluster {i} has no subscriber\n{}",
                    self.logs()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        loop {
            let mut ids = Vec::new();
            for i in 0..CLUSTERS {
                let fid = FaultSpec::generate(i, seed).fault_id(&format!("ctx-{i:02}"));
                let found = self
                    .store()
                    .list(&ListFilter {
                        cluster: Some(format!("brief-{i:02}")),
                        limit: Some(1000),
                        ..ListFilter::default()
                    })
                    .await
                    .unwrap()
                    .into_iter()
                    .filter(|inc| inc.fault_id == fid)
                    .collect::<Vec<_>>();
                if let [one] = found.as_slice() {
                    assert_eq!(one.occurrences, 1, "the fault was written once");
                    ids.push(one.id);
                }
            }
            if ids.len() == CLUSTERS {
                return ids;
            }
            assert!(
                started.elapsed() < LIMIT,
                "only {} of {CLUSTERS} faults of round {seed} recorded\n{}",
                ids.len(),
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_succeeded(&self, ids: &[uuid::Uuid]) {
        let started = Instant::now();
        loop {
            let mut done = 0;
            for id in ids {
                let inc = self.store().get(&id.to_string()).await.unwrap();
                if inc.status == IncidentStatus::Succeeded {
                    assert_eq!(inc.attempt, 1, "incident {id} ran exactly once");
                    done += 1;
                }
            }
            if done == ids.len() {
                return;
            }
            assert!(
                started.elapsed() < LIMIT * 3,
                "{done} of {} incidents succeeded\n{}",
                ids.len(),
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The stub agents' timeline never had more than 2 runs at once, nor 2 on one cluster.
    fn check_limits(&self, runs: usize) {
        let lines = self.rig.timeline();
        let mut spans = Vec::new();
        let clusters: HashSet<String> = lines.iter().map(|l| l.0.clone()).collect();
        for c in clusters {
            let starts = lines.iter().filter(|l| l.0 == c && l.1 == "start");
            let ends = lines.iter().filter(|l| l.0 == c && l.1 == "end");
            for (s, e) in starts.zip(ends) {
                spans.push((c.clone(), s.2, e.2));
            }
        }
        assert_eq!(spans.len(), runs, "every run ended");
        for (c, s, _) in &spans {
            let live: Vec<_> = spans
                .iter()
                .filter(|(_, s2, e2)| s2 <= s && e2 > s)
                .collect();
            assert!(live.len() <= 2, "{} agents at once", live.len());
            assert!(
                live.iter().filter(|(c2, _, _)| c2 == c).count() <= 1,
                "two agents at once on {c}"
            );
        }
    }
}

fn nightcrier(args: &[&str], config: &Path, database_url: &str, log: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nightcrier"));
    for (k, _) in std::env::vars() {
        if k.starts_with("NIGHTCRIER_") {
            c.env_remove(k);
        }
    }
    let out = std::fs::File::create(log).unwrap();
    c.args(args)
        .arg(config)
        .env("NIGHTCRIER_DATABASE__URL", database_url)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    c
}

/// A one-shot command (`status`, `drain`) against the fleet's database; output captured.
fn cli(args: &[&str], config: &Path, database_url: &str) -> std::process::Output {
    cli_env(args, config, database_url, &[])
}

fn cli_env(
    args: &[&str],
    config: &Path,
    database_url: &str,
    env: &[(&str, &Path)],
) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nightcrier"));
    for (k, _) in std::env::vars() {
        if k.starts_with("NIGHTCRIER_") {
            c.env_remove(k);
        }
    }
    c.envs(env.iter().copied());
    c.args(args)
        .arg("--config")
        .arg(config)
        .env("NIGHTCRIER_DATABASE__URL", database_url)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

impl Drop for FleetRig {
    fn drop(&mut self) {
        for child in self.procs.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_divide_the_clusters_and_take_over_after_sigkill_and_sigterm() {
    let mut f = FleetRig::new().await;
    for name in ["a", "b", "c"] {
        f.start(name);
    }
    f.wait_division(&[("a", 10), ("b", 10), ("c", 10)], "10/10/10")
        .await;
    let first = f.emit_round(1).await;
    // Each cluster was subscribed once, by one session, in the whole division.
    for sim in f.sims.iter() {
        assert_eq!(sim.subscriptions(), 1, "each cluster subscribed once");
        assert_eq!(sim.sessions_created(), 1, "no cluster moved while dividing");
    }
    // No agent runs while a process dies (an interrupted run would be retried: a second attempt).
    f.wait_succeeded(&first).await;

    // SIGKILL: nothing is handed over; the leases expire and the survivors take them.
    f.signal("a", Signal::SIGKILL);
    let killed = Instant::now();
    f.wait_exit("a").await;
    f.wait_division(&[("b", 15), ("c", 15)], "a's clusters taken over")
        .await;
    eprintln!(
        "after SIGKILL: re-owned and re-subscribed in {:?} (lease TTL {TTL:?})",
        killed.elapsed()
    );
    let survivors = std::fs::read_to_string(f.log("b")).unwrap()
        + &std::fs::read_to_string(f.log("c")).unwrap();
    assert!(survivors.contains("took the cluster over"), "{survivors}");
    let second = f.emit_round(2).await;
    f.wait_succeeded(&second).await;

    // SIGTERM: b hands its clusters over before it exits.
    f.signal("b", Signal::SIGTERM);
    let termed = Instant::now();
    let status = f.wait_exit("b").await;
    assert!(status.success(), "{}", f.logs());
    let b_log = std::fs::read_to_string(f.log("b")).unwrap();
    assert!(b_log.contains("left the fleet"), "{b_log}");
    f.wait_division(&[("c", 30)], "b's clusters handed to c")
        .await;
    eprintln!(
        "after SIGTERM: re-owned and re-subscribed in {:?}",
        termed.elapsed()
    );
    let third = f.emit_round(3).await;

    let all: Vec<_> = first.into_iter().chain(second).chain(third).collect();
    f.wait_succeeded(&all).await;
    f.signal("c", Signal::SIGTERM);
    assert!(f.wait_exit("c").await.success(), "{}", f.logs());
    f.check_limits(all.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_process_takes_a_fair_share_and_a_drained_one_hands_everything_over() {
    let mut f = FleetRig::new().await;
    for name in ["a", "b", "c"] {
        f.start(name);
    }
    f.wait_division(&[("a", 10), ("b", 10), ("c", 10)], "10/10/10")
        .await;
    // 30 over 4 is 8/8/7/7, the larger shares to the first ids in order.
    f.start("d");
    f.wait_division(
        &[("a", 8), ("b", 8), ("c", 7), ("d", 7)],
        "a fair share for d",
    )
    .await;
    let ids = f.emit_round(1).await;

    let config = f.write_config("cli");
    let out = cli(&["drain", "d"], &config, &f.db.url());
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("drain requested: d/"), "{said}");
    f.wait_division(&[("a", 10), ("b", 10), ("c", 10)], "d drained")
        .await;
    // The hand-over is in the logs of both sides.
    let d_log = std::fs::read_to_string(f.log("d")).unwrap();
    assert!(d_log.contains("draining"), "{d_log}");
    assert!(d_log.contains("handed clusters over"), "{d_log}");
    let takers: String = ["a", "b", "c"]
        .iter()
        .map(|n| std::fs::read_to_string(f.log(n)).unwrap())
        .collect();
    assert!(takers.contains("handed over"), "{takers}");

    // `status` shows the four processes and every cluster's owner.
    let out = cli(&["status", "--json"], &config, &f.db.url());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    let instances = report["fleet"]["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 4, "{text}");
    for i in instances {
        assert_eq!(i["alive"], true);
        let name = i["id"].as_str().unwrap().split('/').next().unwrap();
        assert_eq!(i["draining"], name == "d", "{i}");
        assert_eq!(i["clusters_owned"], if name == "d" { 0 } else { 10 });
    }
    assert_eq!(
        report["fleet"]["leases"].as_array().unwrap().len(),
        CLUSTERS
    );

    f.wait_succeeded(&ids).await;

    // The fleet shares workspace_root: `tail` from any configuration reads a run's log. With a
    // workspace_root of its own, `tail` names the process and host that has the log.
    let id = ids[0].to_string();
    let out = cli(&["tail", &id, "--no-follow"], &config, &f.db.url());
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{said}");
    assert!(said.contains("succeeded"), "{said}");
    assert!(!said.contains("not in this workspace_root"), "{said}");
    let elsewhere = tempfile::tempdir().unwrap();
    let out = cli_env(
        &["tail", &id, "--no-follow"],
        &config,
        &f.db.url(),
        &[("NIGHTCRIER_WORKSPACE_ROOT", elsewhere.path())],
    );
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{said}");
    assert!(said.contains("ran on fleet instance"), "{said}");
    assert!(said.contains("(host "), "{said}");

    for name in ["a", "b", "c", "d"] {
        f.signal(name, Signal::SIGTERM);
    }
    for name in ["a", "b", "c", "d"] {
        assert!(f.wait_exit(name).await.success(), "{}", f.logs());
    }
    f.check_limits(ids.len());
}

/// Emits a new distinct fault every `every`, round-robin over the clusters, each until one
/// subscriber received it (a real server keeps reporting a persistent fault); returns the
/// (cluster index, seed) of every fault emitted when `stop` is cancelled.
fn steady_flow(
    sims: Arc<Vec<SimHandle>>,
    every: Duration,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<Vec<(usize, u64)>> {
    tokio::spawn(async move {
        let mut emitted = Vec::new();
        let mut k = 0u64;
        while !stop.is_cancelled() {
            let i = (k as usize) % sims.len();
            let seed = 10_000 + k;
            let spec = FaultSpec::generate(i, seed);
            let started = Instant::now();
            loop {
                let delivered = sims[i].emit_fault(&spec).await;
                assert!(delivered <= 1, "cluster {i} has {delivered} subscribers");
                if delivered == 1 {
                    break;
                }
                assert!(
                    started.elapsed() < LIMIT,
                    "cluster {i} had no subscriber for {LIMIT:?}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            emitted.push((i, seed));
            k += 1;
            tokio::time::sleep(every).await;
        }
        emitted
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_a_steady_fault_flow_records_every_fault_and_runs_each_once() {
    let mut f = FleetRig::new().await;
    for name in ["a", "b", "c"] {
        f.start(name);
    }
    f.wait_division(&[("a", 10), ("b", 10), ("c", 10)], "10/10/10")
        .await;
    let stop = tokio_util::sync::CancellationToken::new();
    let flow = steady_flow(f.sims.clone(), Duration::from_millis(100), stop.clone());
    for (name, others) in [("a", ["b", "c"]), ("b", ["a", "c"]), ("c", ["a", "b"])] {
        f.signal(name, Signal::SIGTERM);
        assert!(f.wait_exit(name).await.success(), "{}", f.logs());
        f.wait_division(&[(others[0], 15), (others[1], 15)], "handed over")
            .await;
        f.start(name);
        f.wait_division(&[("a", 10), ("b", 10), ("c", 10)], "back to 10/10/10")
            .await;
    }
    stop.cancel();
    let emitted = flow.await.unwrap();
    assert!(
        emitted.len() >= 30,
        "the flow ran: {} faults",
        emitted.len()
    );

    // A fault the server wrote to a stream in the instant its session was being closed (a
    // hand-over) reached no process: like the real server, the simulator reports a persistent
    // fault again, and every new subscription gets it once. So every fault is reported again.
    let mut again = 0;
    for (i, seed) in &emitted {
        let delivered = f.sims[*i].emit_fault(&FaultSpec::generate(*i, *seed)).await;
        assert!(delivered <= 1, "cluster {i} has {delivered} subscribers");
        again += delivered;
    }

    // Every fault is one incident, and each incident ran once.
    let started = Instant::now();
    let ids = loop {
        let all = f
            .store()
            .list(&ListFilter {
                limit: Some(10_000),
                ..ListFilter::default()
            })
            .await
            .unwrap();
        let mut ids = Vec::new();
        for (i, seed) in &emitted {
            let fid = FaultSpec::generate(*i, *seed).fault_id(&format!("ctx-{i:02}"));
            let found: Vec<_> = all.iter().filter(|inc| inc.fault_id == fid).collect();
            assert!(
                found.len() <= 1,
                "fault {fid} opened {} incidents",
                found.len()
            );
            if let Some(inc) = found.first() {
                ids.push(inc.id);
            }
        }
        if ids.len() == emitted.len() {
            break ids;
        }
        assert!(
            started.elapsed() < LIMIT,
            "{} of {} faults recorded\n{}",
            ids.len(),
            emitted.len(),
            f.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    f.wait_succeeded(&ids).await;
    for name in ["a", "b", "c"] {
        f.signal(name, Signal::SIGTERM);
    }
    for name in ["a", "b", "c"] {
        assert!(f.wait_exit(name).await.success(), "{}", f.logs());
    }
    f.check_limits(ids.len());
    eprintln!(
        "rolling restart: {} faults, {again} reported again to a new subscription; each is one \
         incident, run once",
        ids.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_with_another_configuration_says_so_and_takes_only_its_own_clusters() {
    let mut f = FleetRig::new().await;
    f.start("a");
    f.wait_division(&[("a", 30)], "a alone").await;
    // `e` is configured for the first 15 clusters only: another fingerprint.
    f.start_with("e", 15);
    let cli_config = f.write_config("cli");
    let started = Instant::now();
    loop {
        let e_log = std::fs::read_to_string(f.log("e")).unwrap_or_default();
        let a_log = std::fs::read_to_string(f.log("a")).unwrap_or_default();
        let needle = "different cluster or agent configuration";
        if e_log.contains(needle) && a_log.contains(needle) {
            break;
        }
        assert!(started.elapsed() < LIMIT, "no warning\n{}", f.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = cli(&["status", "--json"], &cli_config, &f.db.url());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hashes: Vec<(String, String)> = report["fleet"]["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let name = i["id"]
                .as_str()
                .unwrap()
                .split('/')
                .next()
                .unwrap()
                .to_string();
            (name, i["config_hash"].as_str().unwrap().to_string())
        })
        .collect();
    let mine = report["fleet"]["config_hash"].as_str().unwrap();
    for (name, hash) in &hashes {
        assert_eq!(hash == mine, name == "a", "{hashes:?}");
    }
    let out = cli(&["status"], &cli_config, &f.db.url());
    assert!(String::from_utf8_lossy(&out.stdout).contains("(differs)"));
    // Not balanced against a: a keeps its 30 (nothing is given to a process that might not
    // take it).
    f.wait_division(&[("a", 30)], "a keeps all").await;

    // a dies: e takes the 15 clusters it is configured for, and no other.
    f.signal("a", Signal::SIGKILL);
    f.wait_exit("a").await;
    let started = Instant::now();
    loop {
        let owners = f.owners().await;
        let e: Vec<&String> = owners
            .iter()
            .filter(|(_, o)| o.as_deref() == Some("e"))
            .map(|(c, _)| c)
            .collect();
        let held = owners.values().filter(|o| o.is_some()).count();
        if e.len() == 15 && held == 15 {
            let expected: Vec<String> = (0..15).map(|i| format!("brief-{i:02}")).collect();
            assert_eq!(e, expected.iter().collect::<Vec<_>>());
            break;
        }
        assert!(
            e.iter().all(|c| c.as_str() < "brief-15"),
            "a cluster e is not configured for was taken: {owners:?}"
        );
        assert!(started.elapsed() < LIMIT, "{owners:?}\n{}", f.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...and subscribes to them (the other 15 have no subscriber left).
    let started = Instant::now();
    while !f.sims.iter().take(15).all(|s| s.attached_streams() == 1) {
        assert!(
            started.elapsed() < LIMIT,
            "e did not subscribe\n{}",
            f.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(f.sims.iter().skip(15).all(|s| s.attached_streams() == 0));
    f.signal("e", Signal::SIGTERM);
    assert!(f.wait_exit("e").await.success(), "{}", f.logs());
}
