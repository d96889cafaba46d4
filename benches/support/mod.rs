//! Shared pieces of the producer-side benchmarks (`ingest`, `storm`): argument parsing, process
//! memory and CPU from `/proc`, the tests' PostgreSQL harness (durability defaults), simulators with
//! a fleet of subscribed clusters feeding the real ingest channel and writer, and percentiles.
//!
//! Nothing here is used by production code; it is included by the benches with `#[path]`.
#![allow(dead_code)]

// The tests' PostgreSQL harness, started with PostgreSQL's durability defaults
// (`PgServer::start_durable`).
#[path = "../../tests/it/support/common/pg.rs"]
pub mod pg;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nightcrier::config::{ClusterConfig, McpConfig, ReconnectConfig, TriageConfig};
use nightcrier::fault::ReceivedFault;
use nightcrier::health::Health;
use nightcrier::incident::ConnectionState;
use nightcrier::ingest::{self, IngestSender, IngestWriter, WriterOptions};
use nightcrier::mcp::{http_client, FaultSink, McpFleet};
use nightcrier::simulate::{SimConfig, SimHandle, Simulator};
use nightcrier::store::{Store, StoreOptions};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The real server's subscription limit per server.
pub const PER_SERVER: usize = 100;

/// `cargo bench --bench X -- [modes...] [--quick] [--key=value...]`.
pub struct Args {
    pub modes: Vec<String>,
    pub quick: bool,
    pub opts: Vec<(String, String)>,
}

impl Args {
    pub fn parse() -> Args {
        let mut a = Args {
            modes: Vec::new(),
            quick: false,
            opts: Vec::new(),
        };
        for arg in std::env::args().skip(1) {
            if arg == "--quick" {
                a.quick = true;
            } else if arg == "--bench" {
                // cargo bench passes it to harness = false binaries too.
            } else if let Some(kv) = arg.strip_prefix("--") {
                let (k, v) = kv.split_once('=').unwrap_or((kv, "true"));
                a.opts.push((k.to_string(), v.to_string()));
            } else {
                a.modes.push(arg);
            }
        }
        a
    }

    /// Whether `mode` was asked for (no modes: all of them).
    pub fn wants(&self, mode: &str) -> bool {
        self.modes.is_empty() || self.modes.iter().any(|m| m == mode)
    }

    /// `--name=N`, else `quick` under `--quick`, else `full`.
    pub fn num(&self, name: &str, full: usize, quick: usize) -> usize {
        match self.opts.iter().rev().find(|(k, _)| k == name) {
            Some((_, v)) => v
                .replace('_', "")
                .parse()
                .unwrap_or_else(|_| panic!("--{name}={v}: expected a whole number")),
            None if self.quick => quick,
            None => full,
        }
    }
}

fn status_field(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Resident memory (VmRSS) of a process, KiB; `pid` "self" for this one.
pub fn rss_kib(pid: &str) -> u64 {
    status_field(pid, "VmRSS:")
}

/// Peak resident memory (VmHWM) of a process, KiB.
pub fn hwm_kib(pid: &str) -> u64 {
    status_field(pid, "VmHWM:")
}

/// User + system CPU time of a process, in clock ticks (`utime` + `stime` of `/proc/pid/stat`).
pub fn cpu_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime 15.
    let get = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(14) + get(15)
}

/// Clock ticks per second (`getconf CLK_TCK`), 100 on Linux in practice.
pub fn ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// A fresh database of one backend. SQLite: a file in a temporary directory. PostgreSQL: a new
/// database on the bench's own server.
pub enum Db {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl Db {
    pub fn sqlite() -> Db {
        Db::Sqlite(tempfile::tempdir().expect("a temporary directory"))
    }

    pub async fn postgres(server: &pg::PgServer) -> Db {
        Db::Postgres(server.fresh_database().await)
    }

    pub fn url(&self) -> String {
        match self {
            Db::Sqlite(dir) => format!("sqlite://{}", dir.path().join("nightcrier.db").display()),
            Db::Postgres(url) => url.clone(),
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    /// Options as the defaults of `database.*` and `dedup.*` give them.
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            url: self.url(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
            dedup_cooldown: Duration::from_secs(30 * 60),
        }
    }

    pub async fn store(&self) -> Store {
        Store::connect(self.store_options())
            .await
            .expect("the store opens")
    }

    /// `SELECT count(*) FROM table` on a separate connection.
    pub async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT count(*) FROM {table}");
        match self {
            Db::Sqlite(_) => {
                use sqlx::Connection;
                let mut c = sqlx::SqliteConnection::connect(&self.url())
                    .await
                    .expect("sqlite connection");
                sqlx::query_scalar(&sql)
                    .fetch_one(&mut c)
                    .await
                    .expect("count")
            }
            Db::Postgres(url) => {
                use sqlx::Connection;
                let mut c = sqlx::PgConnection::connect(url)
                    .await
                    .expect("postgres connection");
                sqlx::query_scalar(&sql)
                    .fetch_one(&mut c)
                    .await
                    .expect("count")
            }
        }
    }
}

/// Counts what the readers hand to the ingest channel and stamps each accepted fault in
/// arrival order, then forwards to the real [`IngestSender`].
///
/// The writer is a single task committing in arrival order, and the channel's depth drops only
/// after a commit, so `accepted - depth` is the number of committed faults and the faults
/// committed by a step are the next ones in `stamps`.
pub struct Tap {
    pub sender: IngestSender,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    /// Arrival instants of accepted faults, when recording is on.
    pub stamps: Mutex<Option<Vec<Instant>>>,
}

impl Tap {
    pub fn committed(&self) -> u64 {
        self.accepted
            .load(Ordering::Acquire)
            .saturating_sub(self.sender.depth() as u64)
    }
}

impl FaultSink for Tap {
    fn offer(&self, fault: ReceivedFault) -> bool {
        // The lock orders the stamp with the offer, so stamp i is fault i in the channel.
        // Readers of `stamps` hold the lock too, so they never see a count without its stamp.
        let mut stamps = self.stamps.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let ok = self.sender.offer(fault);
        if ok {
            if let Some(s) = stamps.as_mut() {
                s.push(now);
            }
            self.accepted.fetch_add(1, Ordering::AcqRel);
        } else {
            self.rejected.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    fn report_state(&self, state: ConnectionState) {
        self.sender.report_state(state)
    }
}

/// Simulated servers with `clusters` subscribed clusters spread over them (at most
/// [`PER_SERVER`] each), feeding the real ingest channel and writer on `store`.
pub struct Pipeline {
    pub sims: Vec<Arc<SimHandle>>,
    pub per_sim: Vec<usize>,
    pub tap: Arc<Tap>,
    pub store: Store,
    cancel: CancellationToken,
    writer_cancel: CancellationToken,
    fleet: Option<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
}

pub struct PipelineSpec {
    pub servers: usize,
    pub clusters: usize,
    /// Distinct faults each simulator knows.
    pub faults: usize,
    pub buffer_capacity: usize,
    /// The writer's `batch_linger` instead of the default.
    pub linger: Option<Duration>,
}

impl Pipeline {
    pub async fn start(spec: &PipelineSpec, store: Store) -> Pipeline {
        let mut sims = Vec::new();
        for i in 0..spec.servers {
            let sim = Simulator::start(SimConfig {
                context: format!("bench-{i}"),
                faults: spec.faults.max(1),
                // Every emitted occurrence is delivered: the server's 15-minute re-emission
                // rule would otherwise turn a sustained stream into a handful of events.
                reemit_every: Duration::ZERO,
                ..SimConfig::default()
            })
            .await
            .expect("simulator starts");
            sims.push(Arc::new(sim));
        }
        let per_sim: Vec<usize> = (0..spec.servers)
            .map(|i| spec.clusters / spec.servers + usize::from(i < spec.clusters % spec.servers))
            .collect();
        assert!(
            per_sim.iter().all(|n| *n <= PER_SERVER),
            "more than {PER_SERVER} clusters on one simulated server"
        );
        let configs: Vec<ClusterConfig> = (0..spec.clusters)
            .map(|i| ClusterConfig {
                name: format!("c{i:05}"),
                mcp: McpConfig::new(sims[i % spec.servers].endpoint()),
                triage: TriageConfig::default(),
                agent: None,
                evidence: Default::default(),
                environment: None,
                labels: Default::default(),
            })
            .collect();
        let (sender, receiver) = ingest::channel(spec.buffer_capacity);
        let mut writer_options = WriterOptions::default();
        if let Some(linger) = spec.linger {
            writer_options.batch_linger = linger;
        }
        let writer = IngestWriter::new(receiver, store.clone(), Health::new(), writer_options);
        let tap = Arc::new(Tap {
            sender,
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            stamps: Mutex::new(None),
        });
        let cancel = CancellationToken::new();
        let writer_cancel = CancellationToken::new();
        let fleet = McpFleet::new(
            configs,
            ReconnectConfig::default(),
            http_client(Duration::from_secs(10)).expect("HTTP client"),
            tap.clone() as Arc<dyn FaultSink>,
        );
        let fleet = tokio::spawn(fleet.run(cancel.clone()));
        let writer = tokio::spawn(writer.run(writer_cancel.clone()));
        let p = Pipeline {
            sims,
            per_sim,
            tap,
            store,
            cancel,
            writer_cancel,
            fleet: Some(fleet),
            writer: Some(writer),
        };
        p.wait_subscribed(Duration::from_secs(120)).await;
        p
    }

    pub async fn wait_subscribed(&self, limit: Duration) -> Duration {
        let start = Instant::now();
        while self
            .sims
            .iter()
            .zip(&self.per_sim)
            .any(|(s, n)| s.subscriptions() < *n || s.attached_streams() < *n)
        {
            assert!(
                start.elapsed() < limit,
                "clusters not all subscribed within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        start.elapsed()
    }

    pub fn delivered(&self) -> u64 {
        self.sims.iter().map(|s| s.delivered()).sum()
    }

    /// Waits until everything delivered so far is committed (or `limit` passes); returns
    /// whether it was.
    pub async fn wait_committed(&self, target: u64, limit: Duration) -> bool {
        let start = Instant::now();
        loop {
            let done = self.tap.committed()
                + self.tap.rejected.load(Ordering::Relaxed)
                + self.tap.sender.dropped();
            if done >= target && self.tap.sender.depth() == 0 {
                return true;
            }
            if start.elapsed() > limit {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(f) = self.fleet.take() {
            let _ = f.await;
        }
        self.writer_cancel.cancel();
        if let Some(w) = self.writer.take() {
            let _ = w.await;
        }
        for s in self.sims.drain(..) {
            if let Ok(s) = Arc::try_unwrap(s) {
                s.shutdown().await;
            }
        }
        self.store.close().await;
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.writer_cancel.cancel();
        if let Some(f) = self.fleet.take() {
            f.abort();
        }
        if let Some(w) = self.writer.take() {
            w.abort();
        }
    }
}
