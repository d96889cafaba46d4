//! Fleet benchmark: three fleet members (each its own store pool, membership task and MCP
//! supervisors, as three processes would have) dividing 1,000 simulated clusters on one
//! PostgreSQL; then one member dies (its tasks are aborted: no hand-over, like SIGKILL).
//!
//! Prints: time to the first division (includes the one-TTL settle), the steady-state database
//! load of the heartbeats (transactions per second from `pg_stat_database` over a window, against
//! the expected processes / heartbeat interval), the heartbeat statement's latency with 333
//! leases, and the time until the dead member's clusters are owned and subscribed again.
//!
//! `cargo bench --bench fleet -- [--clusters=1000] [--heartbeat-ms=2000] [--ttl-ms=10000]
//! [--window-s=20]`. PostgreSQL: a throwaway server with its durability defaults, or
//! `NIGHTCRIER_BENCH_POSTGRES_URL`.

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use nightcrier::config::{ClusterConfig, Config, McpConfig, ReconnectConfig, TriageConfig};
use nightcrier::fault::ReceivedFault;
use nightcrier::fleet::{instance_record, FleetMember, FleetSettings};
use nightcrier::incident::ConnectionState;
use nightcrier::mcp::{http_client, FaultSink, McpFleet};
use nightcrier::simulate::{SimConfig, SimHandle, Simulator};
use nightcrier::store::Store;
use sqlx::Connection;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use support::{ms, percentile, Args, Db, PER_SERVER};

struct NullSink;

impl FaultSink for NullSink {
    fn offer(&self, _fault: ReceivedFault) -> bool {
        true
    }
    fn report_state(&self, _state: ConnectionState) {}
}

struct Member {
    id: String,
    tasks: Vec<JoinHandle<()>>,
    token: CancellationToken,
}

fn cluster(name: String, endpoint: &str) -> ClusterConfig {
    ClusterConfig {
        name,
        mcp: McpConfig::new(endpoint),
        triage: TriageConfig::default(),
        agent: None,
        evidence: Default::default(),
        environment: None,
        labels: Default::default(),
    }
}

async fn start_member(
    n: usize,
    db: &Db,
    clusters: &[ClusterConfig],
    settings: FleetSettings,
) -> Member {
    let store: Store = db.store().await;
    let config = Config {
        clusters: clusters.to_vec(),
        ..Config::default()
    };
    let id = format!("bench-{n}/{}/0", uuid::Uuid::now_v7());
    let member = Arc::new(FleetMember::new(
        store.clone(),
        instance_record(&config, &id, None),
        clusters.iter().map(|c| c.name.clone()).collect(),
        settings,
    ));
    let mcp = McpFleet::new(
        clusters.to_vec(),
        ReconnectConfig::default(),
        http_client(Duration::from_secs(10)).expect("HTTP client"),
        Arc::new(NullSink),
    )
    .with_ownership(member.subscribe());
    let token = CancellationToken::new();
    let tasks = vec![
        tokio::spawn(member.clone().run(token.clone())),
        tokio::spawn(mcp.run(token.clone())),
    ];
    Member { id, tasks, token }
}

/// Held leases per member id.
async fn held(store: &Store) -> std::collections::BTreeMap<String, usize> {
    let (_, leases) = store
        .fleet_status(Duration::from_secs(3600))
        .await
        .expect("fleet status");
    let mut out = std::collections::BTreeMap::new();
    for l in leases.into_iter().filter(|l| l.held) {
        *out.entry(l.owner.unwrap_or_default()).or_default() += 1;
    }
    out
}

async fn wait_until_divided(
    store: &Store,
    sims: &[SimHandle],
    per_sim: &[usize],
    owners: usize,
    clusters: usize,
    limit: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        let h = held(store).await;
        let streams_ok = sims
            .iter()
            .zip(per_sim)
            .all(|(s, n)| s.attached_streams() == *n);
        if h.len() == owners && h.values().sum::<usize>() == clusters && streams_ok {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "not divided within {limit:?}: {h:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// (transactions, row updates of `fleet_instances`, row updates of `cluster_leases`) so far.
async fn counters(url: &str) -> (i64, i64, i64) {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connecting");
    // Backends flush their statistics now and then: wait for a fresh snapshot.
    let _ = sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(&mut conn)
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let row: (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT xact_commit + xact_rollback FROM pg_stat_database \
                 WHERE datname = current_database()), \
                (SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'fleet_instances'), \
                (SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'cluster_leases')",
    )
    .fetch_one(&mut conn)
    .await
    .expect("statistics");
    let _ = conn.close().await;
    row
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run());
}

async fn run() {
    let args = Args::parse();
    let clusters_n = args.num("clusters", 1000, 100);
    let heartbeat = Duration::from_millis(args.num("heartbeat-ms", 2000, 2000) as u64);
    let ttl = Duration::from_millis(args.num("ttl-ms", 10_000, 10_000) as u64);
    let window = Duration::from_secs(args.num("window-s", 20, 5) as u64);
    let settings = FleetSettings {
        heartbeat_interval: heartbeat,
        lease_ttl: ttl,
    };

    let server = tokio::task::spawn_blocking(support::pg::PgServer::start_durable)
        .await
        .expect("starting PostgreSQL");
    let db = Db::postgres(&server).await;
    let url = db.url();

    let servers = clusters_n.div_ceil(PER_SERVER);
    let mut sims = Vec::new();
    for i in 0..servers {
        sims.push(
            Simulator::start(SimConfig {
                context: format!("fleet-{i}"),
                // Room for the dead member's sessions, which the server keeps.
                max_subscriptions_total: 10 * PER_SERVER,
                ..SimConfig::default()
            })
            .await
            .expect("simulator starts"),
        );
    }
    // Cluster i is on server i % servers.
    let per_sim: Vec<usize> = (0..servers)
        .map(|i| clusters_n / servers + usize::from(i < clusters_n % servers))
        .collect();
    let clusters: Vec<ClusterConfig> = (0..clusters_n)
        .map(|i| {
            let sim = i % servers;
            cluster(format!("c{i:04}"), &sims[sim].endpoint())
        })
        .collect();
    let observer = db.store().await;
    let started = Instant::now();
    let mut members = Vec::new();
    for n in 0..3 {
        members.push(start_member(n, &db, &clusters, settings).await);
    }
    let first = wait_until_divided(
        &observer,
        &sims,
        &per_sim,
        3,
        clusters_n,
        ttl * 6 + Duration::from_secs(60),
    )
    .await;
    let division = held(&observer).await;
    eprintln!(
        "divided after {} ms (since start {:?}): {division:?}",
        ms(first),
        started.elapsed()
    );

    // Steady state: only the three membership tasks talk to the database.
    tokio::time::sleep(heartbeat * 2).await;
    let before = counters(&url).await;
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    let after = counters(&url).await;
    let elapsed = t0.elapsed().as_secs_f64();
    // Every heartbeat statement updates its member's registry row once.
    let beats = (after.1 - before.1) as f64 / elapsed;
    let renewals = (after.2 - before.2) as f64 / elapsed;
    let tps = (after.0 - before.0) as f64 / elapsed;
    let expected = 3.0 / heartbeat.as_secs_f64();

    // The heartbeat statement itself, for a member holding a third of the leases.
    let names: Vec<String> = clusters.iter().map(|c| c.name.clone()).collect();
    let mut lat = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        observer
            .fleet_beat(&members[1].id, &names, ttl)
            .await
            .expect("beat");
        lat.push(t.elapsed());
    }
    lat.sort();

    // Death: member 0's tasks are aborted (no hand-over, sessions cut, leases left to expire).
    let dead = members.remove(0);
    for t in &dead.tasks {
        t.abort();
    }
    let reown = wait_until_divided(
        &observer,
        &sims,
        &per_sim,
        2,
        clusters_n,
        ttl * 3 + Duration::from_secs(60),
    )
    .await;
    let after_death = held(&observer).await;

    println!();
    println!(
        "fleet: 3 members, {clusters_n} clusters on {servers} simulated servers, heartbeat {} ms, lease TTL {} ms",
        ms(heartbeat),
        ms(ttl)
    );
    println!("| measure | figure |");
    println!("|---|---|");
    println!(
        "| first division (join + one-TTL settle + subscribe) | {} ms ({:?}) |",
        ms(first),
        division.values().collect::<Vec<_>>()
    );
    println!(
        "| heartbeat statements, steady state ({elapsed:.0} s window) | {beats:.2}/s (3 members / {} ms = {expected:.2}/s) |",
        ms(heartbeat)
    );
    println!("| lease rows renewed by them | {renewals:.0}/s |");
    println!(
        "| all transactions on the database in the window (incl. the 2 measuring ones) | {tps:.2}/s |"
    );
    println!(
        "| heartbeat statement, 1 member of 3, {} leases renewed | p50 {} ms / p99 {} ms |",
        clusters_n / 3,
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99))
    );
    println!(
        "| SIGKILL-like death → {} clusters owned and subscribed again | {} ms ({:?}) |",
        division.values().next().copied().unwrap_or(0),
        ms(reown),
        after_death.values().collect::<Vec<_>>()
    );
    for m in &members {
        m.token.cancel();
    }
    for m in members {
        for t in m.tasks {
            let _ = t.await;
        }
    }
}
