//! Sustained throughput and receive→commit latency through the whole producer path, with agents
//! idle and with every agent slot busy, next to the raw insert limit of the same backend.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nightcrier::agent::AgentRunner;
use nightcrier::config::{AgentPreset, Config, DatabaseUrl};
use nightcrier::incident::IncidentStatus;
use nightcrier::simulate::FaultSpec;
use nightcrier::store::Store;
use nightcrier::worker::{PoolSettings, WorkerPool};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::support::{ms, percentile, pg::PgServer, Args, Db, Pipeline, PipelineSpec};

/// Most events emitted and not yet committed during the throughput run: keeps the measurement
/// on sustained commit speed, far below the buffer (no drops), with a batch always waiting.
const WINDOW: u64 = 20_000;

struct Sizes {
    servers: usize,
    clusters: usize,
    faults: usize,
    events: u64,
    rate: u64,
    seconds: u64,
    agents: u32,
    /// `--sync-commit=off`: `database.ingest_synchronous_commit: off` (PostgreSQL).
    sync_commit: bool,
    /// `--linger-ms=N`: the writer's `ingest.batch_linger`.
    linger: Option<Duration>,
    /// `--only-idle`: skip the run with every agent slot busy.
    only_idle: bool,
}

pub async fn backend(args: &Args, pg: Option<&PgServer>) {
    let clusters = args.num("clusters", 100, 100);
    let sizes = Sizes {
        servers: clusters.div_ceil(10),
        clusters,
        faults: args.num("faults", 500, 500),
        events: args.num("events", 100_000, 10_000) as u64,
        rate: args.num("rate", 1_000, 1_000) as u64,
        seconds: args.num("seconds", 10, 3) as u64,
        agents: args.num("agents", 5, 5) as u32,
        sync_commit: !args
            .opts
            .iter()
            .any(|(k, v)| k == "sync-commit" && v == "off"),
        linger: args
            .opts
            .iter()
            .any(|(k, _)| k == "linger-ms")
            .then(|| Duration::from_millis(args.num("linger-ms", 5, 5) as u64)),
        only_idle: args.opts.iter().any(|(k, _)| k == "only-idle"),
    };
    let fresh = || async {
        match pg {
            Some(pg) => Db::postgres(pg).await,
            None => Db::sqlite(),
        }
    };

    let db = fresh().await;
    let raw = super::raw::insert_rows(&db, sizes.events).await;
    println!(
        "\n== {}: {} clusters on {} simulated servers, {} events, latency at {}/s for {}s ==",
        db.backend(),
        sizes.clusters,
        sizes.servers,
        sizes.events,
        sizes.rate,
        sizes.seconds
    );
    println!(
        "ingest_synchronous_commit: {}, batch_linger: {}",
        if sizes.sync_commit { "on" } else { "off" },
        sizes.linger.map_or_else(
            || "default".to_string(),
            |l| format!("{} ms", l.as_millis())
        )
    );
    println!(
        "raw limit: {:.0} rows/s ({} rows, minimal insert loop, 500 per transaction)",
        raw, sizes.events
    );
    println!(
        "{:<14} {:>10} {:>7} {:>9} {:>9} {:>9} {:>8} {:>8}",
        "agents", "events/s", "of raw", "lat p50", "lat p99", "lat max", "samples", "dropped"
    );
    let runs: &[bool] = if sizes.only_idle {
        &[false]
    } else {
        &[false, true]
    };
    for &busy in runs {
        let db = fresh().await;
        let r = measure(&db, &sizes, busy).await;
        println!(
            "{:<14} {:>10.0} {:>6.0}% {:>9} {:>9} {:>9} {:>8} {:>8}",
            if busy {
                format!("{} busy", sizes.agents)
            } else {
                "idle".to_string()
            },
            r.events_per_s,
            100.0 * r.events_per_s / raw,
            ms(r.p50),
            ms(r.p99),
            ms(r.max),
            r.samples,
            r.dropped
        );
    }
}

struct Figures {
    events_per_s: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    samples: usize,
    dropped: u64,
}

async fn measure(db: &Db, sizes: &Sizes, busy: bool) -> Figures {
    let store = db.store().await;
    store.set_ingest_synchronous_commit(sizes.sync_commit);
    let p = Pipeline::start(
        &PipelineSpec {
            servers: sizes.servers,
            clusters: sizes.clusters,
            faults: sizes.faults,
            buffer_capacity: nightcrier::config::IngestConfig::default().buffer_capacity,
            linger: sizes.linger,
        },
        store.clone(),
    )
    .await;
    let specs: Vec<Arc<Vec<FaultSpec>>> = (0..sizes.servers)
        .map(|s| {
            Arc::new(
                (0..sizes.faults)
                    .map(|i| FaultSpec::generate(i, s as u64))
                    .collect(),
            )
        })
        .collect();
    let pool = if busy {
        Some(start_agents(db, &store, sizes, &p, &specs).await)
    } else {
        None
    };

    // Throughput: every server emits its share as fast as the window allows.
    let base = p.delivered();
    // Each emit reaches every cluster subscribed to that server.
    let emits = (sizes.events / sizes.clusters as u64).max(1);
    let start = Instant::now();
    let mut emitters = Vec::new();
    for (i, sim) in p.sims.iter().enumerate() {
        let sim = sim.clone();
        let specs = specs[i].clone();
        let tap = p.tap.clone();
        let all: Vec<_> = p.sims.clone();
        emitters.push(tokio::spawn(async move {
            for n in 0..emits {
                while all
                    .iter()
                    .map(|s| s.delivered())
                    .sum::<u64>()
                    .saturating_sub(tap.committed())
                    > WINDOW
                {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                sim.emit_fault(&specs[n as usize % specs.len()]).await;
            }
        }));
    }
    for e in emitters {
        e.await.expect("emitter");
    }
    let delivered = p.delivered();
    assert!(
        p.wait_committed(delivered, Duration::from_secs(300)).await,
        "throughput run did not drain"
    );
    let events_per_s = (delivered - base) as f64 / start.elapsed().as_secs_f64();

    let lat = latency(&p, &specs, sizes).await;
    let dropped = p.tap.sender.dropped();
    let counted = db.count("fault_occurrences").await as u64;
    assert_eq!(
        counted,
        p.tap.accepted.load(Ordering::Relaxed),
        "every accepted event is a committed row"
    );
    if let Some((cancel, task)) = pool {
        cancel.cancel();
        let _ = task.await;
    }
    p.stop().await;
    Figures {
        events_per_s,
        p50: percentile(&lat, 0.50),
        p99: percentile(&lat, 0.99),
        max: lat.last().copied().unwrap_or_default(),
        samples: lat.len(),
        dropped,
    }
}

/// Paced emission at `sizes.rate` events/s; each sample is from the fault's hand-off to the
/// channel (right after the reader parsed it) to the first 1 ms poll that sees it committed.
async fn latency(p: &Pipeline, specs: &[Arc<Vec<FaultSpec>>], sizes: &Sizes) -> Vec<Duration> {
    let base = {
        let mut stamps = p.tap.stamps.lock().unwrap_or_else(|e| e.into_inner());
        *stamps = Some(Vec::new());
        p.tap.accepted.load(Ordering::Acquire)
    };
    let stop = CancellationToken::new();
    let tap = p.tap.clone();
    let poll_stop = stop.clone();
    let poller = tokio::spawn(async move {
        let mut seen = base;
        let mut samples = Vec::new();
        loop {
            {
                let stamps = tap.stamps.lock().unwrap_or_else(|e| e.into_inner());
                let committed = tap.committed();
                let now = Instant::now();
                if let Some(s) = stamps.as_ref() {
                    for i in seen..committed {
                        samples.push(now - s[(i - base) as usize]);
                    }
                }
                seen = seen.max(committed);
            }
            if poll_stop.is_cancelled() {
                return samples;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    // One emit reaches every cluster on that server: pace emits so events/s is `rate`.
    let per_emit = (sizes.clusters / sizes.servers).max(1) as u64;
    let interval = Duration::from_secs_f64(per_emit as f64 / sizes.rate as f64);
    let mut tick = tokio::time::interval(interval);
    let end = Instant::now() + Duration::from_secs(sizes.seconds);
    let before = p.delivered();
    let mut n = 0usize;
    while Instant::now() < end {
        tick.tick().await;
        let s = n % p.sims.len();
        p.sims[s]
            .emit_fault(&specs[s][(n / p.sims.len()) % specs[s].len()])
            .await;
        n += 1;
    }
    let delivered = p.delivered() - before;
    let target = base + delivered;
    let t = Instant::now();
    while p.tap.committed() < target && t.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    stop.cancel();
    let mut samples = poller.await.expect("latency poller");
    *p.tap.stamps.lock().unwrap_or_else(|e| e.into_inner()) = None;
    samples.sort();
    samples
}

/// A worker pool whose agents (`sleep`) hold every slot, its queue kept non-empty so it keeps
/// claiming, heartbeating and checking limits while ingest runs.
async fn start_agents(
    db: &Db,
    store: &Store,
    sizes: &Sizes,
    p: &Pipeline,
    specs: &[Arc<Vec<FaultSpec>>],
) -> (CancellationToken, JoinHandle<()>) {
    let dir = tempfile::tempdir().expect("workspace directory").keep();
    let mut c = Config::default();
    c.database.url = DatabaseUrl::new(db.url());
    c.workspace_root = dir;
    c.limits.max_concurrent_agents = sizes.agents;
    c.agent.preset = AgentPreset::Command;
    c.agent.timeout = Duration::from_secs(3600);
    c.agent.command = vec!["sleep".into(), "3600".into()];
    let pool = WorkerPool::new(
        store.clone(),
        Arc::new(AgentRunner::new(&c)),
        PoolSettings::from_config(&c),
    );
    let cancel = CancellationToken::new();
    let task = tokio::spawn(pool.run(cancel.clone(), cancel.clone()));
    // Open incidents on every cluster, so the queue outlives the slots.
    for (s, sim) in p.sims.iter().enumerate() {
        sim.emit_fault(&specs[s][0]).await;
    }
    assert!(
        p.wait_committed(p.delivered(), Duration::from_secs(60))
            .await
    );
    let t = Instant::now();
    loop {
        let running: i64 = store
            .status_counts()
            .await
            .expect("status counts")
            .iter()
            .filter(|c| c.status == IncidentStatus::Running)
            .map(|c| c.count)
            .sum();
        if running >= i64::from(sizes.agents) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "agents did not fill every slot ({running} of {} running)",
            sizes.agents
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (cancel, task)
}
