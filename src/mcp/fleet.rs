//! One supervisor per configured cluster, each in its own task that is restarted after a panic.
//!
//! A panic in one cluster's supervisor is logged with the cluster's name and that supervisor
//! alone is started again after a backoff; the process and the other clusters go on.
//!
//! In a fleet of processes (`crate::fleet`), only the clusters this process holds a lease on are
//! supervised: a watch channel of held clusters starts and stops supervisors as it changes, and a
//! cluster whose lease is lost has its session stopped (and DELETEd) at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::error;

use super::sink::{ClusterStats, FaultSink, Phase};
use super::supervisor::{Backoff, Supervisor};
use crate::config::{ClusterConfig, ReconnectConfig};
use crate::supervise::panic_message;

/// All clusters' supervisors, stopped together by one token.
pub struct McpFleet {
    clusters: Vec<ClusterConfig>,
    reconnect: ReconnectConfig,
    client: reqwest::Client,
    sink: Arc<dyn FaultSink>,
    /// The clusters this process holds (with their lease epochs), in a fleet; `None`: all.
    owned: Option<watch::Receiver<BTreeMap<String, i64>>>,
}

impl McpFleet {
    /// `client` is the one HTTP client (connection pool) every session shares.
    pub fn new(
        clusters: Vec<ClusterConfig>,
        reconnect: ReconnectConfig,
        client: reqwest::Client,
        sink: Arc<dyn FaultSink>,
    ) -> Self {
        Self {
            clusters,
            reconnect,
            client,
            sink,
            owned: None,
        }
    }

    /// Supervises only the configured clusters named in `owned`, following its changes.
    pub fn with_ownership(mut self, owned: watch::Receiver<BTreeMap<String, i64>>) -> Self {
        self.owned = Some(owned);
        self
    }

    /// Runs every supervisor until `cancel`; sessions are DELETEd on the way out.
    pub async fn run(self, cancel: CancellationToken) {
        if let Some(owned) = self.owned.clone() {
            return self.run_owned(owned, cancel).await;
        }
        let mut tasks = JoinSet::new();
        for cluster in self.clusters {
            tasks.spawn(supervise(
                cluster,
                self.reconnect,
                self.client.clone(),
                self.sink.clone(),
                cancel.clone(),
            ));
        }
        while tasks.join_next().await.is_some() {}
    }

    async fn run_owned(
        self,
        mut owned: watch::Receiver<BTreeMap<String, i64>>,
        cancel: CancellationToken,
    ) {
        let configured: HashMap<String, ClusterConfig> = self
            .clusters
            .iter()
            .map(|c| (c.name.clone(), c.clone()))
            .collect();
        let mut running: HashMap<String, CancellationToken> = HashMap::new();
        let mut tasks = JoinSet::new();
        loop {
            let want: Vec<String> = owned
                .borrow_and_update()
                .keys()
                .filter(|name| configured.contains_key(*name))
                .cloned()
                .collect();
            running.retain(|name, token| {
                let keep = want.contains(name);
                if !keep {
                    tracing::info!(cluster = %name, "cluster no longer held by this process; stopping its session");
                    token.cancel();
                }
                keep
            });
            for name in want {
                if running.contains_key(&name) {
                    continue;
                }
                let Some(cluster) = configured.get(&name) else {
                    continue;
                };
                let token = cancel.child_token();
                tracing::info!(cluster = %name, "cluster held by this process; subscribing");
                tasks.spawn(supervise(
                    cluster.clone(),
                    self.reconnect,
                    self.client.clone(),
                    self.sink.clone(),
                    token.clone(),
                ));
                running.insert(name, token);
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                changed = owned.changed() => {
                    if changed.is_err() {
                        // The fleet task is gone (shutting down): keep what runs until `cancel`.
                        cancel.cancelled().await;
                        break;
                    }
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        while tasks.join_next().await.is_some() {}
    }
}

/// Runs one cluster's supervisor, restarting it after a panic.
async fn supervise(
    cluster: ClusterConfig,
    reconnect: ReconnectConfig,
    client: reqwest::Client,
    sink: Arc<dyn FaultSink>,
    cancel: CancellationToken,
) {
    let stats = Arc::new(ClusterStats::new(cluster.name.clone()));
    let mut backoff = Backoff::new(reconnect.initial_backoff, reconnect.max_backoff);
    let mut rng = StdRng::from_os_rng();
    loop {
        let sup = Supervisor::new(
            cluster.clone(),
            reconnect,
            client.clone(),
            sink.clone(),
            stats.clone(),
        );
        // Aborted on drop, so an aborted fleet never leaks a supervisor.
        let task = AbortOnDropHandle::new(tokio::spawn(sup.run(cancel.clone())));
        let panic = match task.await {
            Ok(()) => return,
            Err(e) if e.is_panic() => panic_message(&*e.into_panic()),
            Err(_) => return, // aborted: we are being shut down
        };
        let delay = backoff.next_delay(&mut rng);
        error!(cluster = %cluster.name, panic = %panic, retry_in = ?delay, "MCP supervisor panicked; restarting it");
        sink.report_state(stats.set_phase(
            Phase::BackingOff,
            None,
            Some(format!("supervisor panicked: {panic}")),
        ));
        metrics::gauge!(crate::telemetry::names::MCP_CONNECTED, "cluster" => cluster.name.clone())
            .set(0.0);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cancel.cancelled() => return,
        }
    }
}
