//! Queue benchmark: the workload graphile-worker and pg-boss are usually measured with, through
//! nightcrier's real claim → run → complete path, so the figures can stand beside theirs.
//!
//! A fresh database (PostgreSQL with its durability defaults, `fsync` on, by default; `sqlite`
//! mode for a SQLite file) gets `--jobs` incidents (20,000) spread over `--clusters` clusters (50),
//! each with a ~600-byte fault context, recorded through `Store::record_faults` before any worker
//! starts. Then the real `WorkerPool` (or two pools on two `Store`s, as two processes would
//! share the database) drains them with `max_concurrent_agents` = `--concurrency` (5) and
//! `max_agents_per_cluster` = 1. The run is an in-process handler that sleeps `--handler-ms`
//! (2 ms), so the figure is the queue's and not fork/exec's; the `true` scenario runs the real
//! `AgentRunner` with `true` as the agent (workspace, prompt, process start and end included).
//!
//! Violations of either limit are counted twice, from the handler's own start/end instants and
//! from the `agent_runs` rows' recorded `started_at`/`finished_at`; both must be 0. Idle pickup
//! latency: with the pool idle, one incident is recorded at a time and the time from the commit of
//! the write (`record_faults` returned) to the handler's start is sampled (`--samples`, 50).
//!
//! Prints a table and one JSON line per scenario:
//! `{"queue":"nightcrier","scenario":..,"backend":..,"jobs_per_s":..,"violations":..,
//!   "pickup_p50_ms":..,"pickup_p99_ms":..,"jobs":..,"clusters":..,"concurrency":..,
//!   "handler_ms":..,"processes":..}`.
//!
//! `cargo bench --bench queue -- [postgres|sqlite] [inproc] [two] [true] [--jobs=N]
//!  [--clusters=N] [--concurrency=N] [--handler-ms=N] [--samples=N] [--repeat=N] [--quick]`.
//! Modes pick scenarios (default: all three on PostgreSQL).

#[path = "support/mod.rs"]
mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nightcrier::agent::{AgentRunner, RunReport};
use nightcrier::config::{AgentPreset, Config};
use nightcrier::fault::{fault_id, Fault, ReceivedFault, ResourceRef};
use nightcrier::incident::{AgentRun, FaultOccurrence, Incident, RunOutcome, RunStatus};
use nightcrier::store::Store;
use nightcrier::worker::{IncidentRunner, PoolSettings, WorkerPool};
use support::{pg::PgServer, Args, Db};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// What runs for a claimed incident.
enum Body {
    /// Sleeps this long in-process.
    Sleep(Duration),
    /// The real agent runner (its command is `true`).
    Agent(AgentRunner),
}

/// One run as the handler saw it.
struct Span {
    cluster: String,
    start: Instant,
    end: Instant,
}

/// Records each run's start and end and reports each start (for the pickup samples).
struct Recorder {
    body: Body,
    spans: Mutex<Vec<Span>>,
    started: mpsc::UnboundedSender<(Uuid, Instant)>,
}

fn done_report(started: Instant) -> RunReport {
    RunReport {
        outcome: RunOutcome {
            status: RunStatus::Succeeded,
            reason: None,
            exit_code: Some(0),
        },
        workspace: Default::default(),
        log_path: Default::default(),
        duration: started.elapsed(),
        pid: None,
        interrupted: false,
        usage: Default::default(),
        retry_later: false,
    }
}

impl IncidentRunner for Recorder {
    async fn run(
        &self,
        incident: &Incident,
        occurrences: &[FaultOccurrence],
        attempt: i32,
        cancel: CancellationToken,
        on_started: &(dyn Fn(u32) + Send + Sync),
    ) -> RunReport {
        let start = Instant::now();
        let _ = self.started.send((incident.id, start));
        let report = match &self.body {
            Body::Sleep(d) => {
                // As an agent runner does once its process exists: the pool records the pid.
                on_started(std::process::id());
                tokio::time::sleep(*d).await;
                done_report(start)
            }
            Body::Agent(runner) => {
                runner
                    .run(incident, occurrences, attempt, cancel, on_started)
                    .await
            }
        };
        let end = Instant::now();
        self.spans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Span {
                cluster: incident.cluster.clone(),
                start,
                end,
            });
        report
    }

    async fn kill_leftover(&self, _incident: &Incident, _run: &AgentRun) {}
}

/// ~600 bytes, as a kubernetes-mcp-server fault context with a few log lines.
fn context(i: usize) -> String {
    let mut s = format!(
        "Back-off restarting failed container app in pod bench-{i} (restarts: 7). Last state: \
         terminated, exit code 1, reason Error. Recent log lines: "
    );
    while s.len() < 600 {
        s.push_str("panic: connection refused dialing postgres:5432; retrying in 10s. ");
    }
    s.truncate(600);
    s
}

fn fault(cluster: &str, name: &str, i: usize) -> ReceivedFault {
    let uid = format!("uid-{name}");
    let fault = Fault {
        subscription_id: "bench".into(),
        cluster: cluster.into(),
        fault_id: fault_id(cluster, "CrashLoop", &uid, "app"),
        fault_type: "CrashLoop".into(),
        severity: "critical".into(),
        resource: ResourceRef {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: name.into(),
            namespace: Some("default".into()),
            uid,
        },
        context: context(i),
        timestamp: Utc::now().to_rfc3339(),
    };
    let raw = serde_json::to_value(&fault).expect("fault serializes");
    ReceivedFault {
        cluster: cluster.into(),
        fault,
        received_at: Utc::now(),
        raw,
        triage_enabled: true,
    }
}

/// Intervals that broke a limit: a start while `max` others were already running (overall), or
/// while another run of the same cluster was (`per_cluster` = 1 in this workload, but counted
/// for any value). Ends at the same instant as a start are taken first.
fn violations<T: PartialOrd + Copy>(
    spans: &[(String, T, T)],
    max: usize,
    per_cluster: usize,
) -> u64 {
    // (time, kind: 0 = end before 1 = start, index)
    let mut events: Vec<(T, u8, usize)> = Vec::with_capacity(spans.len() * 2);
    for (i, (_, s, e)) in spans.iter().enumerate() {
        events.push((*s, 1, i));
        events.push((*e, 0, i));
    }
    events.sort_by(|a, b| {
        a.0.partial_cmp(&b.0)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.1.cmp(&b.1))
    });
    let mut running = 0usize;
    let mut by_cluster: std::collections::HashMap<&str, usize> = Default::default();
    let mut bad = 0u64;
    for (_, kind, i) in events {
        let c = spans[i].0.as_str();
        if kind == 1 {
            running += 1;
            let n = by_cluster.entry(c).or_default();
            *n += 1;
            if running > max || *n > per_cluster {
                bad += 1;
            }
        } else {
            running -= 1;
            *by_cluster.entry(c).or_default() -= 1;
        }
    }
    bad
}

/// The runs as recorded in the database: (cluster, started_at, finished_at).
async fn recorded_runs(db: &Db) -> Vec<(String, DateTime<Utc>, DateTime<Utc>)> {
    use sqlx::Connection;
    const SQL: &str = "SELECT i.cluster, r.started_at, r.finished_at FROM agent_runs r \
                       JOIN incidents i ON i.id = r.incident_id";
    match db {
        Db::Postgres(url) => {
            let mut c = sqlx::PgConnection::connect(url).await.expect("postgres");
            sqlx::query_as::<_, (String, DateTime<Utc>, Option<DateTime<Utc>>)>(SQL)
                .fetch_all(&mut c)
                .await
                .expect("agent runs")
        }
        Db::Sqlite(_) => {
            let mut c = sqlx::SqliteConnection::connect(&db.url())
                .await
                .expect("sqlite");
            sqlx::query_as::<_, (String, DateTime<Utc>, Option<DateTime<Utc>>)>(SQL)
                .fetch_all(&mut c)
                .await
                .expect("agent runs")
        }
    }
    .into_iter()
    .map(|(c, s, e)| (c, s, e.expect("every run finished")))
    .collect()
}

async fn terminal(store: &Store) -> i64 {
    store
        .status_counts()
        .await
        .expect("status counts")
        .iter()
        .filter(|c| c.status.is_terminal())
        .map(|c| c.count)
        .sum()
}

struct Workload {
    jobs: usize,
    clusters: usize,
    concurrency: u32,
    handler: Duration,
    samples: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum Scenario {
    InProcess,
    TwoPools,
    TrueProcess,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::InProcess => "inproc",
            Scenario::TwoPools => "two",
            Scenario::TrueProcess => "true",
        }
    }
}

struct Outcome {
    jobs_per_s: f64,
    runner_violations: u64,
    recorded_violations: u64,
    pickup: Vec<Duration>,
    pickup_with_write: Vec<Duration>,
    statuses: Vec<(String, i64)>,
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    support::percentile(sorted, p).as_secs_f64() * 1000.0
}

async fn scenario(db: &Db, w: &Workload, which: Scenario) -> Outcome {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut config = Config {
        workspace_root: dir.path().join("incidents"),
        ..Config::default()
    };
    config.agent.preset = AgentPreset::Command;
    config.agent.command = vec!["true".into()];
    let pools = if which == Scenario::TwoPools { 2 } else { 1 };
    let (tx, mut started) = mpsc::unbounded_channel();
    let mut stores = Vec::new();
    let mut recorders = Vec::new();
    for _ in 0..pools {
        stores.push(db.store().await);
        recorders.push(Arc::new(Recorder {
            body: match which {
                Scenario::TrueProcess => Body::Agent(AgentRunner::new(&config)),
                _ => Body::Sleep(w.handler),
            },
            spans: Mutex::new(Vec::new()),
            started: tx.clone(),
        }));
    }
    let store = stores[0].clone();

    // Enqueue everything first, in the ingest writer's batch size.
    let faults: Vec<ReceivedFault> = (0..w.jobs)
        .map(|i| fault(&format!("q{:02}", i % w.clusters), &format!("job-{i}"), i))
        .collect();
    for chunk in faults.chunks(500) {
        store.record_faults(chunk).await.expect("enqueue");
    }
    drop(faults);

    let soft = CancellationToken::new();
    let hard = CancellationToken::new();
    let mut tasks = Vec::new();
    let t0 = Instant::now();
    for (i, (s, r)) in stores.iter().zip(&recorders).enumerate() {
        let mut settings = PoolSettings::from_config(&config);
        settings.instance = format!("bench-{i}");
        settings.max_concurrent_agents = w.concurrency;
        settings.max_agents_per_cluster = 1;
        let pool = WorkerPool::new(s.clone(), r.clone(), settings);
        tasks.push(tokio::spawn(pool.run(soft.clone(), hard.clone())));
    }
    // The handlers' own count first (polling the database's counts over 20,000 rows would load
    // the very server being measured), then the database's word that every run is recorded.
    let ended = || {
        recorders
            .iter()
            .map(|r| r.spans.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum::<usize>()
    };
    while ended() < w.jobs {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    while terminal(&store).await < w.jobs as i64 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let took = t0.elapsed();
    while started.try_recv().is_ok() {}

    // Idle pickup: the pools are idle; one incident at a time.
    let mut pickup = Vec::with_capacity(w.samples);
    let mut pickup_with_write = Vec::with_capacity(w.samples);
    let warmup = 3;
    for i in 0..w.samples + warmup {
        let f = fault(
            &format!("q{:02}", i % w.clusters),
            &format!("pickup-{i}"),
            i,
        );
        let before = Instant::now();
        let rec = store.record_faults(&[f]).await.expect("record");
        let committed = Instant::now();
        let (id, at) = tokio::time::timeout(Duration::from_secs(30), started.recv())
            .await
            .expect("picked up within 30 s")
            .expect("channel open");
        assert_eq!(
            id, rec[0].incident_id,
            "the started run is the one recorded"
        );
        if i >= warmup {
            pickup.push(at.saturating_duration_since(committed));
            pickup_with_write.push(at.saturating_duration_since(before));
        }
        while !store
            .get(&id.to_string())
            .await
            .expect("the incident")
            .status
            .is_terminal()
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // Let the pool settle back to waiting.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pickup.sort();
    pickup_with_write.sort();

    soft.cancel();
    for t in tasks {
        t.await.expect("pool stops");
    }
    let spans: Vec<(String, Instant, Instant)> = recorders
        .iter()
        .flat_map(|r| {
            std::mem::take(&mut *r.spans.lock().unwrap_or_else(|p| p.into_inner()))
                .into_iter()
                .map(|s| (s.cluster, s.start, s.end))
        })
        .collect();
    let limit = w.concurrency as usize;
    let runner_violations = violations(&spans, limit, 1);
    let runs = recorded_runs(db).await;
    assert_eq!(
        runs.len(),
        w.jobs + w.samples + warmup,
        "one agent run per incident"
    );
    let recorded_violations = violations(&runs, limit, 1);
    let mut statuses: Vec<(String, i64)> = Vec::new();
    for c in store.status_counts().await.expect("counts") {
        match statuses.iter_mut().find(|(s, _)| *s == c.status.as_str()) {
            Some((_, n)) => *n += c.count,
            None => statuses.push((c.status.to_string(), c.count)),
        }
    }
    for s in stores {
        s.close().await;
    }
    Outcome {
        jobs_per_s: w.jobs as f64 / took.as_secs_f64(),
        runner_violations,
        recorded_violations,
        pickup,
        pickup_with_write,
        statuses,
    }
}

fn main() {
    let args = Args::parse();
    let w = Workload {
        jobs: args.num("jobs", 20_000, 2_000),
        clusters: args.num("clusters", 50, 50),
        concurrency: args.num("concurrency", 5, 5) as u32,
        handler: Duration::from_millis(args.num("handler-ms", 2, 2) as u64),
        samples: args.num("samples", 50, 20),
    };
    let repeat = args.num("repeat", 1, 1);
    let named = |m: &str| args.modes.iter().any(|x| x == m);
    let sqlite = named("sqlite");
    let postgres = named("postgres") || !sqlite;
    let any_scenario = ["inproc", "two", "true"].iter().any(|m| named(m));
    let scenarios: Vec<Scenario> = [
        Scenario::InProcess,
        Scenario::TwoPools,
        Scenario::TrueProcess,
    ]
    .into_iter()
    .filter(|s| !any_scenario || named(s.name()))
    .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async {
        let server = postgres.then(PgServer::start_durable);
        println!(
            "{:<9} {:<7} {:>6} {:>8} {:>10} {:>11} {:>12} {:>12} {:>14}  statuses",
            "backend",
            "scenario",
            "jobs",
            "clusters",
            "jobs/s",
            "violations",
            "pickup p50",
            "pickup p99",
            "p50/p99+write"
        );
        let mut json = Vec::new();
        for _ in 0..repeat {
            for &which in &scenarios {
                let mut dbs = Vec::new();
                if sqlite {
                    dbs.push(Db::sqlite());
                }
                if let Some(server) = &server {
                    dbs.push(Db::postgres(server).await);
                }
                for db in &dbs {
                    let o = scenario(db, &w, which).await;
                    let violations = o.runner_violations + o.recorded_violations;
                    let (p50, p99) = (pct(&o.pickup, 0.5), pct(&o.pickup, 0.99));
                    println!(
                        "{:<9} {:<7} {:>6} {:>8} {:>10.0} {:>5} + {:<5} {:>9.2} ms {:>9.2} ms {:>6.1}/{:<6.1}  {:?}",
                        db.backend(),
                        which.name(),
                        w.jobs,
                        w.clusters,
                        o.jobs_per_s,
                        o.runner_violations,
                        o.recorded_violations,
                        p50,
                        p99,
                        pct(&o.pickup_with_write, 0.5),
                        pct(&o.pickup_with_write, 0.99),
                        o.statuses,
                    );
                    json.push(
                        serde_json::json!({
                            "queue": "nightcrier",
                            "scenario": which.name(),
                            "backend": db.backend(),
                            "jobs_per_s": (o.jobs_per_s * 10.0).round() / 10.0,
                            "violations": violations,
                            "pickup_p50_ms": (p50 * 100.0).round() / 100.0,
                            "pickup_p99_ms": (p99 * 100.0).round() / 100.0,
                            "jobs": w.jobs,
                            "clusters": w.clusters,
                            "concurrency": w.concurrency,
                            "handler_ms": if which == Scenario::TrueProcess {
                                serde_json::Value::from("true")
                            } else {
                                serde_json::Value::from(w.handler.as_millis() as u64)
                            },
                            "processes": if which == Scenario::TwoPools { 2 } else { 1 },
                        })
                        .to_string(),
                    );
                }
            }
        }
        println!();
        for line in json {
            println!("{line}");
        }
    });
}
