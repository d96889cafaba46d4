//! Runs benchmark: nightcrier's own cost per agent run, measured from outside, through the
//! release binary.
//!
//! `nightcrier simulate` serves `--clusters` simulated clusters (50) in its own process, each
//! knowing `--incidents / --clusters` faults (60: 3,000 in all). Those faults are recorded as
//! pending incidents in a fresh SQLite file (`Store::record_faults`, the ingest writer's path,
//! related-fault coalescing off so that each fault is one incident), then `nightcrier run` is
//! started on that file, subscribed to the clusters, with `max_concurrent_agents: 5`,
//! `max_agents_per_cluster: 1`, evidence gathering and the per-run MCP endpoint on (the
//! defaults), and an agent that is one `/bin/sh` writing its report with the `printf` builtin.
//! The bench waits until every incident is terminal, stops the process, and reads:
//!
//! - from the database: each run's `started_at` (the claim) and `finished_at` (the completion),
//!   runs per second (runs ÷ first claim to last completion), and violations of either limit
//!   from those recorded times;
//! - from the binary's JSON log (`--log-level` with `nightcrier::run_phases=debug`): the agent
//!   runner's and the worker's phase events of each run, among them the agent process's own
//!   time (just before the spawn until its leader was seen to exit).
//!
//! Overhead = claim → completion − the agent's own time, per run. Prints a per-phase breakdown
//! (p50 and mean of each phase), the load average before and after, and one JSON line:
//! `{"bench":"runs","runs":..,"runs_per_s":..,"total_p50_ms":..,"total_p99_ms":..,
//!   "agent_p50_ms":..,"agent_p99_ms":..,"overhead_p50_ms":..,"overhead_p99_ms":..,
//!   "violations":..,"clusters":..,"concurrency":..,"evidence":..,"cpu_ms_per_run":..}`.
//!
//! `cargo bench --bench runs -- [--incidents=3000] [--clusters=50] [--concurrency=5]
//!  [--repeat=N] [--quick] [no-evidence] [keep]`. `--quick`: 600 incidents. `no-evidence`: the
//! clusters' `evidence.enabled: false` and `agent.mcp_tools: false`. `keep`: the temporary
//! directory (database, config, log) is kept and printed. `NIGHTCRIER_BENCH_BIN=<path>` measures
//! another build of the binary (same harness, same session: before/after comparisons).

#[path = "support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::Utc;
use nightcrier::fault::ReceivedFault;
use nightcrier::incident::IncidentStatus;
use nightcrier::simulate::FaultSpec;
use nightcrier::store::{Store, StoreOptions};
use support::{cpu_ticks, percentile, ticks_per_second, Args};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The binary measured: `NIGHTCRIER_BENCH_BIN` (e.g. a copy of an older build, to compare in
/// one session), else the one cargo built with this bench.
fn bin() -> String {
    std::env::var("NIGHTCRIER_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_nightcrier").into())
}
/// Fault registrations per second per simulated cluster (each subscription still gets each
/// fault once per `--reemit-every`, 1h here).
const SIM_RATE_PER_S: usize = 100;

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Starts `nightcrier simulate` and returns it with its clusters' endpoints, in order.
async fn simulate(clusters: usize, faults: usize) -> (Child, Vec<String>) {
    let mut child = Command::new(bin())
        .args(["simulate", "--listen", "127.0.0.1:0"])
        .args(["--clusters", &clusters.to_string()])
        .args(["--faults", &faults.to_string()])
        .args(["--rate", &format!("{SIM_RATE_PER_S}/s")])
        .args(["--reemit-every", "1h"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("nightcrier simulate starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut endpoints = Vec::with_capacity(clusters);
    while endpoints.len() < clusters {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the simulator prints its endpoints within 60 s")
            .expect("simulator stdout")
            .expect("the simulator prints every endpoint");
        if let Some(e) = line.trim().strip_prefix("endpoint: ") {
            endpoints.push(e.to_string());
        }
    }
    // Keep reading so that the simulator never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, endpoints)
}

/// The faults the simulator's cluster `i` (0-based) knows: its seed is `1 + i`, its context
/// `sim-<i+1>` (see `nightcrier simulate`).
fn cluster_faults(i: usize, faults: usize) -> Vec<ReceivedFault> {
    let cluster = format!("sim-{}", i + 1);
    (0..faults)
        .map(|j| {
            let fault = FaultSpec::generate(j, 1 + i as u64).to_fault(&cluster, "bench");
            ReceivedFault {
                cluster: cluster.clone(),
                raw: serde_json::to_value(&fault).expect("fault serializes"),
                fault,
                received_at: Utc::now(),
                triage_enabled: true,
            }
        })
        .collect()
}

fn config_yaml(dir: &Path, endpoints: &[String], concurrency: usize, evidence: bool) -> String {
    let mut y = format!(
        "database:\n  url: \"sqlite://{db}\"\n\
         workspace_root: \"{ws}\"\n\
         limits:\n  max_concurrent_agents: {concurrency}\n  max_agents_per_cluster: 1\n\
         dedup:\n  related_window: 0s\n\
         http:\n  listen: \"\"\n\
         agent:\n  preset: command\n  mcp_tools: {evidence}\n  kubectl: false\n  command:\n\
         \x20   - /bin/sh\n    - -c\n    - 'printf \"%0200d\\n\" 0 > \"$1\"'\n    - agent\n\
         \x20   - \"{{report_file}}\"\n\
         clusters:\n",
        db = dir.join("bench.db").display(),
        ws = dir.join("incidents").display(),
    );
    for (i, e) in endpoints.iter().enumerate() {
        y.push_str(&format!(
            "  - name: sim-{}\n    mcp:\n      endpoint: \"{e}\"\n    evidence:\n      enabled: {evidence}\n",
            i + 1
        ));
    }
    y
}

/// A run's agent-side and worker-side phase events (microseconds by field name).
#[derive(Default)]
struct RunPhases {
    agent: HashMap<String, u64>,
    worker: HashMap<String, u64>,
}

fn read_phases(log: &Path) -> HashMap<(String, i64), RunPhases> {
    let text = std::fs::read_to_string(log).expect("the run's log");
    let mut out: HashMap<(String, i64), RunPhases> = HashMap::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["target"] != "nightcrier::run_phases" {
            continue;
        }
        let key = (
            v["incident_id"].as_str().unwrap_or_default().to_string(),
            v["attempt"].as_i64().unwrap_or_default(),
        );
        let fields: HashMap<String, u64> = v
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.ends_with("_us"))
            .filter_map(|(k, n)| Some((k.trim_end_matches("_us").to_string(), n.as_u64()?)))
            .collect();
        let entry = out.entry(key).or_default();
        match v["side"].as_str() {
            Some("agent") => entry.agent = fields,
            Some("worker") => entry.worker = fields,
            _ => {}
        }
    }
    out
}

/// Starts while `max` others ran, or while another run of the same cluster ran.
fn violations(spans: &[(String, i64, i64)], max: usize) -> u64 {
    let mut events: Vec<(i64, u8, usize)> = Vec::with_capacity(spans.len() * 2);
    for (i, (_, s, e)) in spans.iter().enumerate() {
        events.push((*s, 1, i));
        events.push((*e, 0, i));
    }
    // Ends at the same instant as a start are taken first.
    events.sort();
    let mut running = 0usize;
    let mut by_cluster: HashMap<&str, usize> = HashMap::new();
    let mut bad = 0;
    for (_, kind, i) in events {
        let n = by_cluster.entry(spans[i].0.as_str()).or_default();
        if kind == 1 {
            running += 1;
            *n += 1;
            if running > max || *n > 1 {
                bad += 1;
            }
        } else {
            running -= 1;
            *n -= 1;
        }
    }
    bad
}

fn ms_us(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    let d: Vec<Duration> = sorted.iter().map(|u| Duration::from_micros(*u)).collect();
    percentile(&d, p).as_secs_f64() * 1000.0
}

struct Opts {
    incidents: usize,
    clusters: usize,
    concurrency: usize,
    evidence: bool,
    keep: bool,
}

async fn one(o: &Opts) -> serde_json::Value {
    let load_before = load_average();
    let dir = tempfile::tempdir().expect("temp dir");
    let faults = o.incidents / o.clusters;
    let started_sim = Instant::now();
    let (mut sim, endpoints) = simulate(o.clusters, faults).await;

    // The pending incidents.
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = Store::connect(StoreOptions {
        url: url.clone(),
        max_connections: 4,
        acquire_timeout: Duration::from_secs(30),
        dedup_cooldown: Duration::from_secs(1800),
    })
    .await
    .expect("store");
    for i in 0..o.clusters {
        store
            .record_faults(&cluster_faults(i, faults))
            .await
            .expect("record");
    }
    let pending: i64 = store
        .status_counts()
        .await
        .expect("counts")
        .iter()
        .filter(|c| c.status == IncidentStatus::Pending)
        .map(|c| c.count)
        .sum();
    let total = (faults * o.clusters) as i64;
    assert_eq!(pending, total, "one pending incident per fault");
    // Every fault registered in its simulated cluster (evidence finds the objects).
    let registered = Duration::from_millis((faults * 1000 / SIM_RATE_PER_S + 500) as u64);
    tokio::time::sleep(registered.saturating_sub(started_sim.elapsed())).await;

    let config = dir.path().join("nightcrier.yaml");
    std::fs::write(
        &config,
        config_yaml(dir.path(), &endpoints, o.concurrency, o.evidence),
    )
    .expect("config");
    let log = dir.path().join("run.jsonl");
    let mut run = Command::new(bin())
        .args(["run", "--log-format", "json"])
        .args([
            "--log-level",
            "warn,sqlx::pool::acquire=error,nightcrier=info,nightcrier::run_phases=debug",
        ])
        .arg("--config")
        .arg(&config)
        .stdout(std::fs::File::create(&log).expect("log file"))
        .stderr(std::fs::File::create(dir.path().join("run.stderr")).expect("stderr file"))
        .kill_on_drop(true)
        .spawn()
        .expect("nightcrier run starts");
    let pid = run.id().expect("pid").to_string();
    let t0 = Instant::now();
    loop {
        let counts = store.status_counts().await.expect("counts");
        let done: i64 = counts
            .iter()
            .filter(|c| c.status.is_terminal())
            .map(|c| c.count)
            .sum();
        if done >= total {
            break;
        }
        if let Ok(Some(status)) = run.try_wait() {
            panic!(
                "nightcrier run exited early ({status}); see {}",
                dir.path().display()
            );
        }
        assert!(
            t0.elapsed() < Duration::from_secs(900),
            "not drained within 15 min: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let wall = t0.elapsed();
    let cpu_ms = cpu_ticks(&pid) as f64 * 1000.0 / ticks_per_second();
    let load_after = load_average();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid.parse().expect("pid")),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let _ = tokio::time::timeout(Duration::from_secs(30), run.wait()).await;
    let _ = sim.kill().await;

    // The runs as recorded.
    let runs: Vec<(String, String, i64, i64, i64, String)> = {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&url).await.expect("sqlite");
        sqlx::query_as(
            "SELECT r.incident_id, i.cluster, r.attempt, r.started_at, r.finished_at, \
             coalesce(r.outcome, '') FROM agent_runs r JOIN incidents i ON i.id = r.incident_id \
             WHERE r.finished_at IS NOT NULL",
        )
        .fetch_all(&mut c)
        .await
        .expect("agent runs")
        .into_iter()
        .map(|(id, c, a, s, e, o): (String, String, i64, i64, i64, String)| (id, c, a, s, e, o))
        .collect()
    };
    let mut outcomes: HashMap<String, usize> = HashMap::new();
    for r in &runs {
        *outcomes.entry(r.5.clone()).or_default() += 1;
    }
    let spans: Vec<(String, i64, i64)> = runs.iter().map(|r| (r.1.clone(), r.3, r.4)).collect();
    let bad = violations(&spans, o.concurrency);
    let first = runs.iter().map(|r| r.3).min().unwrap_or(0);
    let last = runs.iter().map(|r| r.4).max().unwrap_or(0);
    let runs_per_s = runs.len() as f64 / ((last - first).max(1) as f64 / 1e6);

    let phases = read_phases(&log);
    let mut totals = Vec::new();
    let mut agents = Vec::new();
    let mut overheads = Vec::new();
    let mut by_phase: HashMap<String, Vec<u64>> = HashMap::new();
    for (id, _, attempt, s, e, _) in &runs {
        let total_us = u64::try_from(e - s).unwrap_or(0);
        let Some(p) = phases.get(&(id.clone(), *attempt)) else {
            continue;
        };
        let agent_us = p.agent.get("process").copied().unwrap_or(0);
        totals.push(total_us);
        agents.push(agent_us);
        overheads.push(total_us.saturating_sub(agent_us));
        for (side, fields) in [("agent", &p.agent), ("worker", &p.worker)] {
            for (k, v) in fields {
                by_phase.entry(format!("{side}.{k}")).or_default().push(*v);
            }
        }
    }
    for v in [&mut totals, &mut agents, &mut overheads] {
        v.sort_unstable();
    }
    let order = [
        "worker.total",
        "worker.occurrences",
        "worker.runner",
        "agent.total",
        "agent.proxy",
        "agent.evidence",
        "agent.prepare",
        "agent.spawn",
        "agent.process",
        "agent.reap",
        "agent.evaluate",
        "agent.log",
        "agent.usage",
        "worker.bookkeeping",
        "worker.complete",
    ];
    println!(
        "{} runs over {} clusters, {} at a time (1 per cluster), evidence {}: {:.0} runs/s \
         (drain wall {:.2} s), outcomes {:?}; load average before {load_before}, after {load_after}",
        runs.len(),
        o.clusters,
        o.concurrency,
        if o.evidence { "on" } else { "off" },
        runs_per_s,
        wall.as_secs_f64(),
        outcomes,
    );
    println!(
        "  claim → completion p50 {:.2} ms p99 {:.2} ms | agent process p50 {:.2} ms p99 {:.2} ms \
         | overhead p50 {:.2} ms p99 {:.2} ms | violations {bad} | nightcrier CPU {:.2} ms/run \
         | phase events for {} runs",
        pct(&totals, 0.5),
        pct(&totals, 0.99),
        pct(&agents, 0.5),
        pct(&agents, 0.99),
        pct(&overheads, 0.5),
        pct(&overheads, 0.99),
        cpu_ms / runs.len().max(1) as f64,
        totals.len(),
    );
    println!(
        "  {:<20} {:>9} {:>9} {:>9}",
        "phase", "p50 ms", "p99 ms", "mean ms"
    );
    for name in order {
        let Some(v) = by_phase.get_mut(name) else {
            continue;
        };
        v.sort_unstable();
        let mean = v.iter().sum::<u64>() as f64 / v.len().max(1) as f64;
        println!(
            "  {name:<20} {:>9.2} {:>9.2} {:>9.2}",
            pct(v, 0.5),
            pct(v, 0.99),
            ms_us(mean as u64)
        );
    }
    let json = serde_json::json!({
        "bench": "runs",
        "binary": bin(),
        "runs": runs.len(),
        "runs_per_s": (runs_per_s * 10.0).round() / 10.0,
        "total_p50_ms": pct(&totals, 0.5),
        "total_p99_ms": pct(&totals, 0.99),
        "agent_p50_ms": pct(&agents, 0.5),
        "agent_p99_ms": pct(&agents, 0.99),
        "overhead_p50_ms": pct(&overheads, 0.5),
        "overhead_p99_ms": pct(&overheads, 0.99),
        "violations": bad,
        "clusters": o.clusters,
        "concurrency": o.concurrency,
        "evidence": o.evidence,
        "cpu_ms_per_run": cpu_ms / runs.len().max(1) as f64,
        "load_before": load_before,
        "load_after": load_after,
    });
    println!("{json}");
    if o.keep {
        println!("  kept: {}", dir.keep().display());
    }
    json
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let o = Opts {
        incidents: args.num("incidents", 3000, 600),
        clusters: args.num("clusters", 50, 50),
        concurrency: args.num("concurrency", 5, 5),
        evidence: !args.modes.iter().any(|m| m == "no-evidence"),
        keep: args.modes.iter().any(|m| m == "keep"),
    };
    assert!(
        o.clusters > 0 && o.incidents >= o.clusters,
        "--incidents must be at least --clusters"
    );
    for _ in 0..args.num("repeat", 1, 1) {
        one(&o).await;
    }
}
