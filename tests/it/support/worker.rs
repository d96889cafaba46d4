//! Shared by the worker tests: a SQLite store in a temp dir, faults, pool settings, and runners
//! that stand in for the agent where a test needs to control it (panic, block, record).
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nightcrier::agent::RunReport;
use nightcrier::fault::ReceivedFault;
use nightcrier::incident::{AgentRun, FaultOccurrence, Incident, RunOutcome, RunStatus};
use nightcrier::store::Store;
use nightcrier::worker::{IncidentRunner, PoolSettings};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub async fn sqlite_store(dir: &tempfile::TempDir) -> Store {
    super::common::sqlite_store(dir.path()).await
}

pub async fn store_at(url: &str) -> Store {
    Store::connect(super::common::store_options(url))
        .await
        .expect("store connects")
}

pub use super::common::pod_fault as fault;

/// Records one incident per fault, one transaction each (so creation order is distinct).
pub async fn record(store: &Store, faults: Vec<ReceivedFault>) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for f in faults {
        let r = store.record_faults(&[f]).await.expect("record_faults");
        assert!(r[0].created);
        ids.push(r[0].incident_id);
    }
    ids
}

/// Fast settings for tests; each test changes what it is about.
pub fn settings(instance: &str) -> PoolSettings {
    PoolSettings {
        max_concurrent_agents: 5,
        max_agents_per_cluster: 1,
        poll_interval: Duration::from_secs(2),
        lease_duration: Duration::from_secs(30),
        heartbeat_interval: Duration::from_secs(5),
        rescue_interval: Duration::from_secs(30),
        max_attempts: 3,
        shutdown_grace: Duration::from_secs(30),
        terminate_timeout: Duration::from_secs(10),
        instance: instance.into(),
    }
}

pub async fn get(store: &Store, id: Uuid) -> Incident {
    store.get(&id.to_string()).await.expect("incident exists")
}

pub use super::eventually;

/// Waits until every incident in `ids` is terminal; returns them.
pub async fn all_terminal(store: &Store, ids: &[Uuid], limit: Duration) -> Vec<Incident> {
    eventually("all incidents to finish", limit, || async {
        let mut out = Vec::new();
        for id in ids {
            let inc = get(store, *id).await;
            if !inc.status.is_terminal() {
                return None;
            }
            out.push(inc);
        }
        Some(out)
    })
    .await
}

/// What a [`FakeRunner`] does with one incident.
#[derive(Debug, Clone)]
pub enum Act {
    /// Reports success after this long.
    Succeed(Duration),
    /// Reports failure with this exit code at once.
    Exit(i32),
    Panic(&'static str),
    /// Runs until cancelled; then reports an interruption.
    UntilCancelled,
    /// Runs until the test calls [`FakeRunner::release`] (or cancel), then succeeds.
    UntilReleased,
}

#[derive(Debug, Clone)]
pub struct Span {
    pub incident_id: Uuid,
    pub cluster: String,
    pub attempt: i32,
    pub start: Instant,
    pub end: Option<Instant>,
    pub cancelled: bool,
}

type Plan = Box<dyn Fn(&Incident) -> Act + Send + Sync>;

/// Stands in for the agent where a test must control what it does (the real agent cannot be
/// told to panic). Records every run and every leftover kill request.
pub struct FakeRunner {
    plan: Plan,
    spans: Mutex<Vec<Span>>,
    started: watch::Sender<usize>,
    release: CancellationToken,
    pub killed: Mutex<Vec<(Uuid, i32, Option<i32>)>>,
}

impl FakeRunner {
    pub fn new(plan: impl Fn(&Incident) -> Act + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Self {
            plan: Box::new(plan),
            spans: Mutex::new(Vec::new()),
            started: watch::channel(0).0,
            release: CancellationToken::new(),
            killed: Mutex::new(Vec::new()),
        })
    }

    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }

    pub fn release(&self) {
        self.release.cancel();
    }

    /// Waits until `n` runs have started.
    pub async fn wait_started(&self, n: usize, limit: Duration) {
        let mut rx = self.started.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {n} runs to start"))
            .unwrap();
    }
}

fn report(status: RunStatus, reason: Option<&str>, exit: Option<i32>) -> RunReport {
    let interrupted = reason == Some("interrupted");
    RunReport {
        outcome: RunOutcome {
            status,
            reason: reason.map(str::to_string),
            exit_code: exit,
        },
        workspace: PathBuf::new(),
        log_path: PathBuf::new(),
        duration: Duration::ZERO,
        pid: None,
        interrupted,
        usage: Default::default(),
        retry_later: false,
    }
}

impl IncidentRunner for FakeRunner {
    async fn run(
        &self,
        incident: &Incident,
        _occurrences: &[FaultOccurrence],
        attempt: i32,
        cancel: CancellationToken,
        on_started: &(dyn Fn(u32) + Send + Sync),
    ) -> RunReport {
        let index = {
            let mut spans = self.spans.lock().unwrap();
            spans.push(Span {
                incident_id: incident.id,
                cluster: incident.cluster.clone(),
                attempt,
                start: Instant::now(),
                end: None,
                cancelled: false,
            });
            spans.len() - 1
        };
        on_started(std::process::id());
        self.started.send_modify(|c| *c += 1);
        let act = (self.plan)(incident);
        let (report, cancelled) = match act {
            Act::Succeed(d) => tokio::select! {
                _ = tokio::time::sleep(d) => (report(RunStatus::Succeeded, None, Some(0)), false),
                _ = cancel.cancelled() => (report(RunStatus::Failed, Some("interrupted"), None), true),
            },
            Act::Exit(code) => (
                report(
                    RunStatus::Failed,
                    Some(&format!("exit code {code}")),
                    Some(code),
                ),
                false,
            ),
            Act::Panic(msg) => panic!("{msg}"),
            Act::UntilCancelled => {
                cancel.cancelled().await;
                (report(RunStatus::Failed, Some("interrupted"), None), true)
            }
            Act::UntilReleased => tokio::select! {
                _ = self.release.cancelled() => (report(RunStatus::Succeeded, None, Some(0)), false),
                _ = cancel.cancelled() => (report(RunStatus::Failed, Some("interrupted"), None), true),
            },
        };
        let mut spans = self.spans.lock().unwrap();
        spans[index].end = Some(Instant::now());
        spans[index].cancelled = cancelled;
        report
    }

    async fn kill_leftover(&self, incident: &Incident, run: &AgentRun) {
        self.killed
            .lock()
            .unwrap()
            .push((incident.id, run.attempt, run.pid));
    }
}
